//! `cardcrm analyze` on a purchases file, with no database: the analyst's path.

use std::process::{Command, Output};

use serde_json::Value;

fn analyze(dir: &std::path::Path, args: &[&str]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_cardcrm"));
    command.arg("--data-dir").arg(dir).arg("analyze").args(args).env_remove("RUST_LOG");
    for (key, _) in std::env::vars() {
        if key.starts_with("CARDCRM_") {
            command.env_remove(key);
        }
    }
    command.output().expect("run cardcrm")
}

/// The JSON report of a run that must succeed.
fn report(output: &Output) -> Value {
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_slice(&output.stdout).expect("a JSON report")
}

#[test]
fn rfm_on_a_file_scores_groups_and_names_bad_lines() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("purchases.csv");
    // A buys often and a lot, recently; B bought a lot long ago; C once, little, long ago;
    // D only after the analysis day.
    std::fs::write(
        &file,
        "customer_id,timestamp,amount,category\n\
         A,2026-06-28,1300.00,food\nA,2026-06-20 10:00:00,1250.00,food\nA,2026-06-01,1280.00,drinks\n\
         B,2026-01-05,900.00,\nB,2026-01-06,800.00,\nB,2026-01-07,700.00,\n\
         C,2025-12-01,5.00,\n\
         D,2026-07-02,50.00,\n",
    )
    .unwrap();
    let path = file.to_str().unwrap();
    let output = analyze(dir.path(), &["rfm", "--input", path, "--as-of", "2026-06-30", "--format", "json"]);
    let report = report(&output);
    assert_eq!((report["purchases"].as_i64(), report["purchases_after_as_of"].as_i64()), (Some(8), Some(1)));
    let group = |id: &str| {
        report["customers"].as_array().unwrap().iter().find(|customer| customer["customer_id"] == id).unwrap()
            ["group"]
            .clone()
    };
    assert_eq!(group("A"), "important_value");
    assert_eq!(group("B"), "important_retain");
    assert_eq!(group("C"), "general_win_back");
    assert_eq!(group("D"), "no_purchase");
    let a = report["customers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|customer| customer["customer_id"] == "A")
        .unwrap();
    assert_eq!(
        (a["recency_days"].as_i64(), a["frequency"].as_i64(), a["monetary_minor"].as_i64()),
        (Some(2), Some(3), Some(383_000))
    );

    let table = analyze(dir.path(), &["rfm", "--input", path, "--as-of", "2026-06-30"]);
    assert!(table.status.success());
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(text.contains("4 customers, 3 with purchases"), "{text}");
    assert!(text.lines().any(|line| line.starts_with("important_value") && line.contains(" 1 ")), "{text}");

    let csv = analyze(dir.path(), &["rfm", "--input", path, "--as-of", "2026-06-30", "--format", "csv"]);
    let csv = String::from_utf8_lossy(&csv.stdout);
    assert_eq!(csv.lines().count(), 5, "{csv}");
    assert!(csv.lines().any(|line| line.starts_with("D,0,0,0,,,,no_purchase,")), "{csv}");

    let broken = dir.path().join("broken.csv");
    std::fs::write(&broken, "customer_id,timestamp,amount\nA,2026-06-28,1.00\nB,2026-06-31,2.00\n").unwrap();
    let refused = analyze(dir.path(), &["rfm", "--input", broken.to_str().unwrap(), "--as-of", "2026-06-30"]);
    assert_eq!(refused.status.code(), Some(2));
    let message = String::from_utf8_lossy(&refused.stderr);
    assert!(message.contains("line 3: timestamp"), "{message}");

    // Without --input the database is analysed: this directory's is empty, so the stored run
    // has no customers.
    let no_input = analyze(dir.path(), &["rfm", "--as-of", "2026-06-30"]);
    assert!(no_input.status.success(), "{}", String::from_utf8_lossy(&no_input.stderr));
    let text = String::from_utf8_lossy(&no_input.stdout);
    assert!(text.starts_with("run 1 · rfm as of 2026-06-30 · 0 purchases, 0 customers"), "{text}");
    let recommend = analyze(dir.path(), &["recommend", "--as-of", "2026-06-30"]);
    assert_eq!(recommend.status.code(), Some(2), "recommend reads a file only");
}

#[test]
fn clv_on_a_file_fits_both_models_and_reports_every_buyer() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("purchases.csv");
    // 60 customers over 2026 with different habits, deterministic; two purchases on one day
    // count once; C59 buys only after the analysis week.
    let mut text = String::from("customer_id,timestamp,amount\n");
    for customer in 0..59 {
        let every = 5 + customer % 23;
        let mut day = customer % 11;
        while day < 170 {
            let date =
                jiff::civil::Date::constant(2026, 1, 1).checked_add(jiff::Span::new().days(day)).unwrap();
            text.push_str(&format!(
                "C{customer},{date} 12:00:00,{}.{:02}\n",
                20 + customer * 3 % 70,
                day % 100
            ));
            day += every + (day * 7 + customer) % 9;
        }
    }
    text.push_str("C0,2026-01-01 18:00:00,5.00\nC59,2026-07-20,10.00\n");
    std::fs::write(&file, text).unwrap();
    let output = analyze(
        dir.path(),
        &[
            "clv",
            "--input",
            file.to_str().unwrap(),
            "--as-of",
            "2026-06-30",
            "--unit",
            "day",
            "--format",
            "json",
        ],
    );
    let report = report(&output);
    assert_eq!(report["customers"], 59, "C59 has no purchase in the calibration period");
    for model in ["bgnbd", "gamma_gamma"] {
        assert!(report[model]["log_likelihood"].as_f64().unwrap().is_finite(), "{}", report[model]);
    }
    let customers = report["customers_results"].as_array().unwrap();
    let first = customers.iter().find(|customer| customer["customer_id"] == "C0").unwrap();
    // C0 starts on day 0 (two purchases that day: one period) and ends before day 170.
    assert_eq!(first["T"], 180.0, "{first}");
    for customer in customers {
        let alive = customer["probability_alive"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&alive) && customer["clv"].as_f64().unwrap() >= 0.0, "{customer}");
    }

    let table = analyze(dir.path(), &["clv", "--input", file.to_str().unwrap(), "--as-of", "2026-06-30"]);
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(text.contains("BG/NBD") && text.contains("Gamma-Gamma") && text.contains("unit Week"), "{text}");
}

/// Purchases of `customers` customers with deterministic habits over the first half of 2026,
/// written customer by customer (each customer's rows in time order).
fn habits(customers: u32) -> Vec<String> {
    let mut rows = Vec::new();
    for customer in 0..customers {
        let every = 3 + customer % 29;
        let mut day = customer % 13;
        while day < 175 {
            let date =
                jiff::civil::Date::constant(2026, 1, 1).checked_add(jiff::Span::new().days(day)).unwrap();
            rows.push(format!(
                "C{customer},{date} 10:30:00,{}.{:02}",
                10 + (customer * 7 + day) % 300,
                day % 100
            ));
            day += every + (day + customer) % 5;
        }
    }
    rows
}

#[test]
fn clv_reads_a_file_in_time_order_and_one_out_of_order_to_the_same_result() {
    let dir = tempfile::tempdir().unwrap();
    let rows = habits(40);
    let ordered = dir.path().join("ordered.csv");
    let shuffled = dir.path().join("shuffled.csv");
    std::fs::write(&ordered, format!("customer_id,timestamp,amount\n{}\n", rows.join("\n"))).unwrap();
    // Reversed: every customer's purchases run backwards in time.
    let reversed: Vec<&String> = rows.iter().rev().collect();
    std::fs::write(
        &shuffled,
        format!(
            "customer_id,timestamp,amount\n{}\n",
            reversed.iter().map(|row| row.as_str()).collect::<Vec<_>>().join("\n")
        ),
    )
    .unwrap();
    let run = |file: &std::path::Path| {
        let output = analyze(
            dir.path(),
            &[
                "clv",
                "--input",
                file.to_str().unwrap(),
                "--as-of",
                "2026-06-30",
                "--unit",
                "week",
                "--format",
                "json",
            ],
        );
        let mut report = report(&output);
        // Customers are numbered in the order they first appear: compare by id.
        let results = report["customers_results"].as_array_mut().unwrap();
        results.sort_by(|left, right| left["customer_id"].as_str().cmp(&right["customer_id"].as_str()));
        report
    };
    let (streamed, sorted) = (run(&ordered), run(&shuffled));
    assert_eq!(streamed["customers"], 40);
    // The summaries are exact; the fits add the customers up in another order (they are
    // numbered as they first appear), and 40 customers leave the Gamma–Gamma likelihood flat
    // near its top: predictions agree to 1e-6.
    let pairs = streamed["customers_results"]
        .as_array()
        .unwrap()
        .iter()
        .zip(sorted["customers_results"].as_array().unwrap());
    for (left, right) in pairs {
        for exact in ["customer_id", "frequency", "recency", "T", "monetary_value"] {
            assert_eq!(left[exact], right[exact], "{exact} of {}", left["customer_id"]);
        }
        for close in ["clv", "expected_purchases", "probability_alive"] {
            let (left, right) = (left[close].as_f64().unwrap(), right[close].as_f64().unwrap());
            assert!((left - right).abs() <= 1e-6 * left.abs().max(1.0), "{close}: {left} against {right}");
        }
    }
}

#[test]
fn kmeans_on_a_file_makes_stable_profiled_segments_and_can_suggest_k() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("purchases.csv");
    std::fs::write(
        &file,
        format!("customer_id,timestamp,amount\n{}\nLATE,2026-08-01,5\n", habits(300).join("\n")),
    )
    .unwrap();
    let run = |extra: &[&str]| {
        let mut args =
            vec!["kmeans", "--input", file.to_str().unwrap(), "--as-of", "2026-06-30", "--format", "json"];
        args.extend_from_slice(extra);
        let output = analyze(dir.path(), &args);
        report(&output)
    };
    let report = run(&["--clusters", "4", "--restarts", "3"]);
    let customers = report["customers"].as_array().unwrap();
    assert_eq!(customers.len(), 300, "LATE bought only after the analysis day and is left out");
    let profiles = report["profiles"].as_array().unwrap();
    assert_eq!(profiles.len(), 4);
    let sizes: u64 = profiles.iter().map(|profile| profile["customers"].as_u64().unwrap()).sum();
    assert_eq!(sizes, 300);
    for profile in profiles {
        assert!(
            !profile["label"].as_str().unwrap().is_empty()
                && !profile["label_zh"].as_str().unwrap().is_empty()
        );
    }
    // Cluster 0 has the largest centre sum (recency negated): its members buy more often
    // than the last cluster's.
    let frequency = |index: usize| profiles[index]["frequency_mean"].as_f64().unwrap();
    assert!(frequency(0) > frequency(3), "{profiles:?}");
    assert_eq!(
        report["inertia"],
        report["restart_inertias"]
            .as_array()
            .unwrap()
            .iter()
            .min_by(|a, b| a.as_f64().unwrap().total_cmp(&b.as_f64().unwrap()))
            .unwrap()
            .clone()
    );
    // Another seed: the same segments under the same ids.
    let again = run(&["--clusters", "4", "--restarts", "3", "--seed", "7"]);
    let same = again["customers"]
        .as_array()
        .unwrap()
        .iter()
        .zip(customers)
        .filter(|(left, right)| left == right)
        .count();
    assert!(same >= 297, "{same} of 300 customers kept their cluster id");

    let suggested = run(&["--clusters", "auto", "--restarts", "1"]);
    let candidates = suggested["candidates"].as_array().unwrap();
    assert_eq!(candidates.len(), 9, "k from 2 to 10");
    let best = candidates
        .iter()
        .max_by(|a, b| a["silhouette"].as_f64().unwrap().total_cmp(&b["silhouette"].as_f64().unwrap()))
        .unwrap();
    assert_eq!(suggested["clusters"], best["clusters"]);

    let bad = analyze(
        dir.path(),
        &["kmeans", "--input", file.to_str().unwrap(), "--as-of", "2026-06-30", "--clusters", "many"],
    );
    assert_eq!(bad.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("--clusters"),
        "{}",
        String::from_utf8_lossy(&bad.stderr)
    );
}

/// Generated demo purchases (a quarter of the shoppers stop buying at a random day: the
/// known churn signal) and the day they end on.
fn generated(dir: &std::path::Path) -> (std::path::PathBuf, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_cardcrm"))
        .args(["generate", "--customers", "3000", "--transactions", "60000", "--out"])
        .arg(dir.join("generated"))
        .output()
        .expect("run cardcrm generate");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    // The generator draws purchases up to now; the analysis day is today in the business's zone.
    let zone = jiff::tz::TimeZone::get("Asia/Shanghai").unwrap();
    let today = jiff::Timestamp::now().to_zoned(zone).date().to_string();
    (dir.join("generated").join("transactions.csv"), today)
}

#[test]
fn churn_on_generated_data_finds_the_known_signal_and_reports_auc() {
    let dir = tempfile::tempdir().unwrap();
    let (file, today) = generated(dir.path());
    let output = analyze(
        dir.path(),
        &["churn", "--input", file.to_str().unwrap(), "--as-of", &today, "--format", "json"],
    );
    let report = report(&output);
    let evaluation = &report["evaluation"];
    let (auc, precision, rate) = (
        evaluation["auc"].as_f64().unwrap(),
        evaluation["precision_at_top_k"].as_f64().unwrap(),
        evaluation["churn_rate"].as_f64().unwrap(),
    );
    assert!(auc > 0.75, "the stopped shoppers are found: {evaluation}");
    assert!(
        precision > rate + 0.2,
        "the top of the list holds more churners than the base rate: {evaluation}"
    );
    assert_eq!(evaluation["calibration"].as_array().unwrap().len(), 10);
    let customers = report["customers"].as_array().unwrap();
    assert!(customers.len() > 2_500, "every customer with a purchase is scored: {}", customers.len());
    let risky = customers.iter().find(|customer| customer["probability"].as_f64().unwrap() > 0.8).unwrap();
    assert!(!risky["factors"].as_array().unwrap().is_empty(), "{risky}");

    let table = analyze(dir.path(), &["churn", "--input", file.to_str().unwrap(), "--as-of", &today]);
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(text.contains("AUC") && text.contains("calibration"), "{text}");
    // No history before the training cutoff: refused with the reason, not a panic.
    let early = analyze(dir.path(), &["churn", "--input", file.to_str().unwrap(), "--as-of", "2020-01-01"]);
    assert_eq!(early.status.code(), Some(2), "{}", String::from_utf8_lossy(&early.stderr));
    assert!(
        String::from_utf8_lossy(&early.stderr).contains("training"),
        "{}",
        String::from_utf8_lossy(&early.stderr)
    );
}

#[test]
fn lifecycle_stages_every_buyer_once_and_counts_transitions() {
    let dir = tempfile::tempdir().unwrap();
    let (file, today) = generated(dir.path());
    let output = analyze(
        dir.path(),
        &["lifecycle", "--input", file.to_str().unwrap(), "--as-of", &today, "--format", "json"],
    );
    let report = report(&output);
    let customers = report["customers"].as_array().unwrap();
    let stages = ["new", "growing", "mature", "declining", "won_back", "dormant", "lost"];
    for customer in customers {
        assert!(stages.contains(&customer["stage"].as_str().unwrap()), "{customer}");
    }
    // Every buyer of today is in one transition cell: moved from a stage or entered.
    let transitions = &report["transitions"];
    let moved: u64 = transitions["counts"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|row| row.as_array().unwrap())
        .map(|count| count.as_u64().unwrap())
        .sum();
    let entered: u64 =
        transitions["entered"].as_array().unwrap().iter().map(|count| count.as_u64().unwrap()).sum();
    assert_eq!(moved + entered, customers.len() as u64);
    // A quarter of the shoppers stopped: some are dormant or lost by now.
    assert!(customers.iter().any(|customer| customer["stage"] == "lost" || customer["stage"] == "dormant"));
    let bad = analyze(
        dir.path(),
        &["lifecycle", "--input", file.to_str().unwrap(), "--as-of", &today, "--lost-days", "100"],
    );
    assert_eq!(bad.status.code(), Some(2));
}

#[test]
fn recommend_finds_category_rules_and_suggests_what_a_customer_has_not_bought() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("purchases.csv");
    // Tea buyers mostly buy cakes too; one tea-only customer should be offered cakes first.
    let mut text = String::from("customer_id,timestamp,amount,category\n");
    for customer in 0..40 {
        text.push_str(&format!("C{customer},2026-06-01,10.00,tea\n"));
        if customer % 4 != 0 {
            text.push_str(&format!("C{customer},2026-06-02,20.00,cakes\n"));
        }
        if customer % 5 == 0 {
            text.push_str(&format!("C{customer},2026-06-03,99.00,wine\n"));
        }
    }
    text.push_str("LATE,2026-07-05,10.00,toys\n");
    std::fs::write(&file, text).unwrap();
    let output = analyze(
        dir.path(),
        &[
            "recommend",
            "--input",
            file.to_str().unwrap(),
            "--as-of",
            "2026-06-30",
            "--count",
            "2",
            "--format",
            "json",
        ],
    );
    let report = report(&output);
    assert_eq!(report["customers_with_purchases"], 40, "LATE bought after the day");
    let tea_cakes = report["rules"]
        .as_array()
        .unwrap()
        .iter()
        .find(|rule| rule["if_bought"] == "tea" && rule["also_bought"] == "cakes")
        .unwrap();
    // 30 of the 40 tea buyers bought cakes: confidence 0.75, lift 1 (everyone bought tea).
    assert_eq!(tea_cakes["customers"], 30);
    assert!((tea_cakes["confidence"].as_f64().unwrap() - 0.75).abs() < 1e-12, "{tea_cakes}");
    let c0 = report["customers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|customer| customer["customer_id"] == "C0")
        .unwrap();
    // C0 bought tea and wine: cakes is what the rules offer, by way of one of those.
    assert_eq!(c0["suggestions"][0]["category"], "cakes", "{c0}");
    assert!(c0["suggestions"].as_array().unwrap().len() <= 2);
    let missing = dir.path().join("no-category.csv");
    std::fs::write(&missing, "customer_id,timestamp,amount\nA,2026-06-01,1\n").unwrap();
    let refused =
        analyze(dir.path(), &["recommend", "--input", missing.to_str().unwrap(), "--as-of", "2026-06-30"]);
    assert_eq!(refused.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("category"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
}

#[test]
fn loyalty_calls_steady_long_buyers_loyal_and_never_the_lapsed() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("purchases.csv");
    let as_of = jiff::civil::Date::constant(2026, 6, 30);
    let day = |back: i64| as_of.checked_sub(jiff::Span::new().days(back)).unwrap();
    let mut text = String::from("customer_id,timestamp,amount\n");
    // Regulars: every week for two and a half years, up to the analysis day.
    for customer in 0..5 {
        for week in 0..130 {
            text.push_str(&format!("R{customer},{},{}.00\n", day(week * 7), 80 + customer));
        }
    }
    // Lapsed: every week for two years, the last purchase 400 days ago.
    for customer in 0..5 {
        for week in 0..104 {
            text.push_str(&format!("L{customer},{},90.00\n", day(400 + week * 7)));
        }
    }
    // One purchase each, 200 days ago; and monthly buyers of the last year.
    for customer in 0..5 {
        text.push_str(&format!("O{customer},{},20.00\n", day(200)));
        for month in 0..12 {
            text.push_str(&format!("M{customer},{},30.00\n", day(3 + month * 30)));
        }
    }
    std::fs::write(&file, text).unwrap();
    let output = analyze(
        dir.path(),
        &["loyalty", "--input", file.to_str().unwrap(), "--as-of", "2026-06-30", "--format", "json"],
    );
    let report = report(&output);
    let class = |id: &str| {
        report["customers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|customer| customer["customer_id"] == id)
            .map(|customer| customer["segment"].as_str().unwrap().to_owned())
    };
    for customer in 0..5 {
        assert_eq!(class(&format!("R{customer}")).as_deref(), Some("loyal"), "{report}");
        assert_eq!(class(&format!("L{customer}")), None, "lost customers are never loyal");
        assert_eq!(class(&format!("O{customer}")), None, "dormant one-off buyers are not loyal");
    }
    assert_eq!(report["summary"]["loyal"], 5);
    let score = report["customers"][0]["score"].as_f64().unwrap();
    assert!((70.0..=100.0).contains(&score), "{score}");
}
