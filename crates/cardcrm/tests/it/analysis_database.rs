//! Analyses of the database: a run is stored with its segments, listed, paged and exported
//! (CSV and Parquet) through the API and the command line, and it agrees with the same
//! analysis of the file the purchases were imported from.

use std::collections::{BTreeMap, BTreeSet};

use parquet::{
    file::reader::{FileReader, SerializedFileReader},
    record::RowAccessor,
};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::{TestApp, spawn_app};

/// Generates stores, customers and purchases, imports them, and returns the directory
/// holding the files and the analysis day (today in the business's time zone: the
/// generator draws purchases up to now).
fn load_generated(app: &TestApp) -> (tempfile::TempDir, String) {
    let files = tempfile::tempdir().unwrap();
    let out = files.path().to_str().unwrap();
    let generated = app.cli(&[
        "generate",
        "--customers",
        "300",
        "--transactions",
        "6000",
        "--duplicate-rate",
        "0",
        "--out",
        out,
    ]);
    assert!(generated.status.success(), "{}", String::from_utf8_lossy(&generated.stderr));
    for (kind, file) in
        [("stores", "stores.csv"), ("customers", "customers.csv"), ("transactions", "transactions.csv")]
    {
        let path = files.path().join(file);
        let imported = app.cli(&["import", kind, path.to_str().unwrap()]);
        assert!(imported.status.success(), "{kind}: {}", String::from_utf8_lossy(&imported.stderr));
    }
    let today = jiff::Zoned::now().with_time_zone(jiff::tz::TimeZone::get("Asia/Shanghai").unwrap()).date();
    (files, today.to_string())
}

fn json_of(output: &std::process::Output) -> Value {
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_slice(&output.stdout).expect("JSON")
}

#[tokio::test]
async fn a_database_run_is_stored_with_its_segments_listed_paged_and_exported() {
    let app = spawn_app().await;
    let admin = app.admin().await;
    let (files, as_of) = load_generated(&app);
    let transactions = files.path().join("transactions.csv");

    // The same RFM on the file the purchases came from.
    let from_file = json_of(&app.cli(&[
        "analyze",
        "rfm",
        "--input",
        transactions.to_str().unwrap(),
        "--as-of",
        &as_of,
        "--format",
        "json",
    ]));
    let file_groups: BTreeMap<String, i64> = from_file["groups"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|group| group["group"] != "no_purchase")
        .map(|group| (group["group"].as_str().unwrap().to_owned(), group["customers"].as_i64().unwrap()))
        .collect();

    let answer = app.post(&admin, "/api/v1/analysis/runs", json!({ "kind": "rfm", "as_of": as_of })).await;
    assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.text);
    let run = answer.body;
    let run_id = run["id"].as_i64().unwrap();
    let segments: BTreeMap<String, i64> = run["segments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|segment| (segment["code"].as_str().unwrap().to_owned(), segment["customers"].as_i64().unwrap()))
        .collect();
    for (group, customers) in &file_groups {
        assert_eq!(
            segments.get(group),
            Some(customers),
            "{group}: database {segments:?} against file {file_groups:?}"
        );
    }
    let scored = from_file["cuts"]["scored"].as_i64().unwrap();
    assert_eq!(file_groups.values().sum::<i64>(), scored);
    assert!(scored > 200, "{scored} customers bought");
    assert!(run["segments"][0]["rule"].as_str().unwrap().contains("the means"), "{}", run["segments"][0]);

    // Listed, newest first; one run with its segments.
    let listed = app.get(&admin, "/api/v1/analysis/runs?kind=rfm").await;
    assert_eq!(listed.status, StatusCode::OK, "{}", listed.text);
    assert_eq!(listed.body["items"][0]["id"], run_id);
    let shown = app.get(&admin, &format!("/api/v1/analysis/runs/{run_id}")).await;
    assert_eq!(shown.body["segments"].as_array().unwrap().len(), 18);

    // Paged members of one segment: every customer once, in id order.
    let champions = segments["champions"];
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(cursor) => {
                format!("/api/v1/analysis/runs/{run_id}/members?segment=champions&limit=7&cursor={cursor}")
            }
            None => format!("/api/v1/analysis/runs/{run_id}/members?segment=champions&limit=7"),
        };
        let page = app.get(&admin, &path).await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.text);
        for member in page.body["items"].as_array().unwrap() {
            assert_eq!(member["segment"], "champions");
            let score = member["score"].as_f64().unwrap();
            assert!(score >= 540.0, "champions have R 5: {member}");
            seen.push(member["customer_id"].as_i64().unwrap());
        }
        match page.body["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    assert_eq!(seen.len() as i64, champions);
    assert!(seen.windows(2).all(|pair| pair[0] < pair[1]), "in id order, once each");

    // Exports: CSV through the API, Parquet through the API and the command line.
    let csv = app.get(&admin, &format!("/api/v1/analysis/runs/{run_id}/export")).await;
    assert_eq!(csv.status, StatusCode::OK, "{}", csv.text);
    let lines: Vec<&str> = csv.text.lines().collect();
    assert_eq!(lines[0], "run_id,segment,customer_id,score");
    let total: i64 = segments.values().sum();
    assert_eq!(lines.len() as i64 - 1, total);
    let per_segment: BTreeMap<&str, i64> = lines[1..].iter().fold(BTreeMap::new(), |mut counts, line| {
        *counts.entry(line.split(',').nth(1).unwrap()).or_default() += 1;
        counts
    });
    assert_eq!(per_segment.len(), segments.values().filter(|count| **count > 0).count());
    let parquet_path = files.path().join("champions.parquet");
    let exported = app.cli(&[
        "analyze",
        "export",
        &run_id.to_string(),
        "--segment",
        "champions",
        "--format",
        "parquet",
        "--out",
        parquet_path.to_str().unwrap(),
    ]);
    assert!(exported.status.success(), "{}", String::from_utf8_lossy(&exported.stderr));
    let reader = SerializedFileReader::try_from(parquet_path.as_path()).unwrap();
    assert_eq!(reader.metadata().file_metadata().num_rows(), champions);
    let ids: BTreeSet<i64> =
        reader.get_row_iter(None).unwrap().map(|row| row.unwrap().get_long(2).unwrap()).collect();
    assert_eq!(ids, seen.iter().copied().collect());
    let api_parquet = app.get(&admin, &format!("/api/v1/analysis/runs/{run_id}/export?format=parquet")).await;
    assert_eq!(api_parquet.status, StatusCode::OK);

    // Lifetime value from the command line on the database agrees with the file's fit.
    let clv_file = json_of(&app.cli(&[
        "analyze",
        "clv",
        "--input",
        transactions.to_str().unwrap(),
        "--as-of",
        &as_of,
        "--format",
        "json",
    ]));
    let clv_database = json_of(&app.cli(&["analyze", "clv", "--as-of", &as_of, "--format", "json"]));
    for (model, names) in
        [("bgnbd", ["r", "alpha", "a", "b"].as_slice()), ("gamma_gamma", ["p", "q", "v"].as_slice())]
    {
        for name in names {
            let from_file = clv_file[model]["parameters"][name].as_f64().unwrap();
            let from_database = clv_database["summary"][model]["parameters"][name].as_f64().unwrap();
            // Customers come in another order (file: first appearance; database: id), so the
            // sums round differently and the fit stops a hair apart.
            assert!(
                ((from_file - from_database) / from_file).abs() < 1e-6,
                "{model}.{name}: file {from_file}, database {from_database}"
            );
        }
    }
    let tiers: i64 = clv_database["segments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|tier| tier["customers"].as_i64().unwrap())
        .sum();
    assert_eq!(
        tiers,
        clv_file["customers"].as_i64().unwrap(),
        "every customer with purchases in one value tier"
    );

    // Loyal and potentially loyal customers: the database run holds the file's classes. The
    // quintile scores break ties by position (pandas' rank "first"), so the file is put in
    // the database's order first: by customer (the generator's ids sort as they were
    // imported), each customer's purchases in file order.
    let text = std::fs::read_to_string(&transactions).unwrap();
    let mut lines: Vec<&str> = text.lines().collect();
    let header = lines.remove(0);
    lines.sort_by_key(|line| line.split(',').nth(1).unwrap_or_default().to_owned());
    let by_customer = files.path().join("transactions-by-customer.csv");
    std::fs::write(&by_customer, format!("{header}\n{}\n", lines.join("\n"))).unwrap();
    let loyalty_file = json_of(&app.cli(&[
        "analyze",
        "loyalty",
        "--input",
        by_customer.to_str().unwrap(),
        "--as-of",
        &as_of,
        "--format",
        "json",
    ]));
    let loyalty_database = json_of(&app.cli(&["analyze", "loyalty", "--as-of", &as_of, "--format", "json"]));
    for (index, class) in ["loyal", "potentially_loyal"].iter().enumerate() {
        assert_eq!(loyalty_database["segments"][index]["code"], *class);
        assert_eq!(
            loyalty_database["segments"][index]["customers"], loyalty_file["summary"][class],
            "{class}: {loyalty_database} against {}",
            loyalty_file["summary"]
        );
    }
    assert!(loyalty_file["summary"]["loyal"].as_i64().unwrap() > 0, "{}", loyalty_file["summary"]);

    let runs = app.cli(&["analyze", "runs", "--json"]);
    assert_eq!(json_of(&runs).as_array().unwrap().len(), 3);

    // KPIs month by month: the database's purchases give the file's figures, and the API
    // adds the liability per month and the latest CLV run.
    let kpi_file = json_of(&app.cli(&[
        "analyze",
        "kpi",
        "--input",
        transactions.to_str().unwrap(),
        "--as-of",
        &as_of,
        "--months",
        "6",
        "--format",
        "json",
    ]));
    let kpi = app.get(&admin, &format!("/api/v1/analysis/kpi?as_of={as_of}&months=6")).await;
    assert_eq!(kpi.status, StatusCode::OK, "{}", kpi.text);
    assert_eq!(kpi.body["months"], kpi_file["months"], "same purchases, same KPIs");
    assert_eq!(kpi.body["cohorts"], kpi_file["cohorts"]);
    assert_eq!(kpi.body["months"].as_array().unwrap().len(), 6);
    assert_eq!(kpi.body["stored_value_liability_minor"].as_array().unwrap().len(), 6);
    let last = &kpi.body["months"][5];
    assert!(last["buyers"].as_u64().unwrap() > 0, "{last}");
    assert!(last["active_customers"].as_u64().unwrap() >= last["buyers"].as_u64().unwrap());
    let revenue: i64 = kpi.body["stores"]
        .as_array()
        .unwrap()
        .iter()
        .map(|store| store["revenue_minor"][5].as_i64().unwrap())
        .sum();
    assert_eq!(revenue, last["revenue_minor"].as_i64().unwrap(), "every generated purchase names its store");
    assert!(kpi.body["latest_clv"]["run_id"].as_i64().is_some(), "{}", kpi.body["latest_clv"]);
    let too_long = app.get(&admin, "/api/v1/analysis/kpi?months=61").await;
    assert_eq!(too_long.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", too_long.text);
}

#[tokio::test]
async fn analysis_requests_are_checked_and_permissions_enforced() {
    let app = spawn_app().await;
    let admin = app.admin().await;
    let unknown = app.post(&admin, "/api/v1/analysis/runs", json!({ "kind": "astrology" })).await;
    assert_eq!(unknown.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", unknown.text);
    assert!(unknown.text.contains("kind.unknown"), "{}", unknown.text);
    let settings = app
        .post(
            &admin,
            "/api/v1/analysis/runs",
            json!({ "kind": "kmeans", "clusters": 0, "as_of": "2099-01-01" }),
        )
        .await;
    assert_eq!(settings.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", settings.text);
    for field in ["clusters", "as_of"] {
        assert!(settings.text.contains(&format!("\"{field}\"")), "{field}: {}", settings.text);
    }
    let extra = app.post(&admin, "/api/v1/analysis/runs", json!({ "kind": "rfm", "colour": "red" })).await;
    assert_eq!(extra.status, StatusCode::BAD_REQUEST, "{}", extra.text);
    // Nothing bought yet: K-means has nothing to cluster, and says so.
    let empty = app.post(&admin, "/api/v1/analysis/runs", json!({ "kind": "kmeans" })).await;
    assert_eq!(empty.status, StatusCode::CONFLICT, "{}", empty.text);
    assert!(empty.text.contains("analysis.no_purchases"), "{}", empty.text);
    // An RFM run of no purchases is empty, not an error.
    let nothing = app.post(&admin, "/api/v1/analysis/runs", json!({ "kind": "rfm" })).await;
    assert_eq!(nothing.status, StatusCode::CREATED, "{}", nothing.text);
    assert_eq!(nothing.body["customers"], 0);
    let run_id = nothing.body["id"].as_i64().unwrap();

    let missing = app.get(&admin, "/api/v1/analysis/runs/999999").await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    let no_segment = app.get(&admin, &format!("/api/v1/analysis/runs/{run_id}/members?segment=nope")).await;
    assert_eq!(no_segment.status, StatusCode::NOT_FOUND);
    let bad_format = app.get(&admin, &format!("/api/v1/analysis/runs/{run_id}/export?format=xlsx")).await;
    assert_eq!(bad_format.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", bad_format.text);
    assert!(bad_format.text.contains("format.unknown"), "{}", bad_format.text);

    // A clerk may do neither; a marketer may read and export but not run; a store's
    // manager may not run an analysis of the whole business.
    let clerk = app.staff_session("till", "clerk", None).await;
    assert_eq!(app.get(&clerk, "/api/v1/analysis/runs").await.status, StatusCode::FORBIDDEN);
    let marketer = app.staff_session("reach", "marketer", None).await;
    assert_eq!(app.get(&marketer, &format!("/api/v1/analysis/runs/{run_id}")).await.status, StatusCode::OK);
    let refused = app.post(&marketer, "/api/v1/analysis/runs", json!({ "kind": "rfm" })).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    let store = app.add_store("S1").await;
    let manager = app.staff_session("branch", "manager", Some(store)).await;
    let scoped = app.post(&manager, "/api/v1/analysis/runs", json!({ "kind": "rfm" })).await;
    assert_eq!(scoped.status, StatusCode::FORBIDDEN, "{}", scoped.text);
}
