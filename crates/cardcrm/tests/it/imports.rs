//! Imports from the command line and the API: all-or-nothing by default with the line of
//! every problem, skipping with a reject file on request, dry runs, encodings, XLSX, and
//! transactions that are counted once however often they are sent.

use reqwest::StatusCode;
use serde_json::json;

use crate::support::{Auth, TestApp, spawn_app};

fn write(app: &TestApp, name: &str, contents: &[u8]) -> String {
    let path = app.data_dir.join(name);
    std::fs::write(&path, contents).unwrap();
    path.display().to_string()
}

async fn customer_count(app: &TestApp, admin: &Auth) -> usize {
    app.get(admin, "/api/v1/customers?limit=200").await.body["items"].as_array().unwrap().len()
}

const GOOD_AND_BAD: &str = "姓名,手机,生日,邮箱,标签\n\
张三,138 1234 5678,1990/1/2,zhang@qq.com,vip\n\
李四,12345,1991年2月3日,li@qq.com,\n\
王五,１３９００００１１１１,19920304,,咖啡控;vip\n";

#[tokio::test]
async fn one_bad_row_in_the_middle_writes_nothing_and_names_its_line() {
    let app = spawn_app().await;
    let admin = app.admin().await;
    let file = write(&app, "customers.csv", GOOD_AND_BAD.as_bytes());
    let output = app.cli(&["import", "customers", &file]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("line 3: phone:"), "{stderr}");
    assert!(stderr.contains("nothing was written"), "{stderr}");
    assert_eq!(customer_count(&app, &admin).await, 0);
    let history = app.get(&admin, "/api/v1/imports").await;
    assert_eq!(history.body["items"][0]["status"], "rejected", "{}", history.text);
}

#[tokio::test]
async fn skip_invalid_writes_the_good_rows_and_a_reject_file() {
    let app = spawn_app().await;
    let admin = app.admin().await;
    let file = write(&app, "customers.csv", GOOD_AND_BAD.as_bytes());
    let rejects = app.data_dir.join("bad-rows.csv");
    let output = app.cli(&[
        "import",
        "customers",
        &file,
        "--skip-invalid",
        "--reject-file",
        rejects.to_str().unwrap(),
        "--json",
    ]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(
        (report["rows_total"].as_u64(), report["rows_inserted"].as_u64(), report["rows_rejected"].as_u64()),
        (Some(3), Some(2), Some(1))
    );
    let rejected = std::fs::read_to_string(&rejects).unwrap();
    let lines: Vec<&str> = rejected.lines().collect();
    assert_eq!(lines[0], "_line,_errors,姓名,手机,生日,邮箱,标签");
    assert!(lines[1].starts_with("3,phone: `12345` is not a phone number"), "{rejected}");
    assert_eq!(lines.len(), 2);
    let wang = app.get(&admin, "/api/v1/customers?phone=13900001111").await;
    assert_eq!(wang.body["items"][0]["name"], "王五", "full-width digits were normalised");
    assert_eq!(wang.body["items"][0]["tags"], json!(["vip", "咖啡控"]));
    assert_eq!(wang.body["items"][0]["source_channel"], "import");
    let zhang = app.get(&admin, "/api/v1/customers?q=zhang@qq.com").await;
    assert_eq!(zhang.body["items"][0]["birthday"], "1990-01-02");

    // The fixed reject file imports as it is: its `_` columns are ignored.
    let fixed = rejected.replace("12345", "13700009999");
    let fixed_path = write(&app, "fixed.csv", fixed.as_bytes());
    let again = app.cli(&["import", "customers", &fixed_path]);
    assert!(again.status.success(), "{}", String::from_utf8_lossy(&again.stderr));
    assert_eq!(customer_count(&app, &admin).await, 3);
}

/// Dry runs, and duplicates against stored customers and inside the file under each policy.
/// `envs` choose the path: row by row into the indexes, or a bulk load that drops them and
/// checks duplicates in memory.
async fn dry_runs_and_duplicate_policies(envs: &[(&str, &str)], bulk: bool) {
    let app = spawn_app().await;
    let admin = app.admin().await;
    let cli = |args: &[&str]| app.cli_with_env(args, envs);
    let file = write(&app, "customers.csv", b"name,phone\nA,13800000001\nB,13800000002\n");
    let dry = cli(&["import", "customers", &file, "--dry-run", "--json"]);
    assert!(dry.status.success());
    let report: serde_json::Value = serde_json::from_slice(&dry.stdout).unwrap();
    assert_eq!(report["status"], "dry_run");
    assert_eq!(report["rows_inserted"], 2);
    assert_eq!(customer_count(&app, &admin).await, 0);

    assert!(cli(&["import", "customers", &file]).status.success());
    let duplicate = cli(&["import", "customers", &file]);
    assert_eq!(duplicate.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&duplicate.stderr).contains("already has this phone"));
    let skipped = cli(&["import", "customers", &file, "--on-duplicate", "skip", "--json"]);
    let report: serde_json::Value = serde_json::from_slice(&skipped.stdout).unwrap();
    assert_eq!(report["rows_skipped"], 2);
    assert_eq!(report["bulk_load"], bulk, "{report}");
    let updated_file = write(&app, "update.csv", b"name,phone,city,tags\nA,13800000001,Shenzhen,new\n");
    let updated = cli(&["import", "customers", &updated_file, "--on-duplicate", "update", "--json"]);
    let report: serde_json::Value = serde_json::from_slice(&updated.stdout).unwrap();
    assert_eq!(report["rows_updated"], 1);
    assert_eq!(report["bulk_load"], bulk, "{report}");
    let a = app.get(&admin, "/api/v1/customers?phone=13800000001").await;
    assert_eq!(a.body["items"][0]["city"], "Shenzhen");
    assert_eq!(a.body["items"][0]["tags"], json!(["new"]));
    let tagged = app.get(&admin, "/api/v1/customers?tag=new").await;
    assert_eq!(tagged.body["items"].as_array().unwrap().len(), 1, "{}", tagged.text);
    let within = write(&app, "twice.csv", b"name,phone\nC,13800000003\nD,138-0000-0003\n");
    let output = cli(&["import", "customers", &within]);
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("line 3: phone: the same phone as line 2"),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let created = cli(&["import", "customers", &file, "--on-duplicate", "create", "--json"]);
    let report: serde_json::Value = serde_json::from_slice(&created.stdout).unwrap();
    assert_eq!(report["rows_inserted"], 2, "{report}");
    assert_eq!(report["bulk_load"], bulk, "{report}");
    let groups = app.get(&admin, "/api/v1/customers/duplicates").await;
    assert_eq!(groups.body.as_array().unwrap().len(), 2, "{}", groups.text);
    assert_eq!(customer_count(&app, &admin).await, 4);
    // Whatever the path, the indexes are all there afterwards (SQLite keeps them by name).
    if app.services.database().backend() == cardcrm_store::Backend::Sqlite {
        let indexes: i64 = app
            .services
            .database()
            .read(|conn| {
                conn.query_one(
                    "SELECT count(*) FROM sqlite_master WHERE type = 'index' AND name IN ('customers_phone_index', \
                     'customers_name_key', 'customer_tags_tag', 'customer_consents_customer')",
                    &[],
                    |row| row.get(0),
                )
            })
            .await
            .unwrap();
        assert_eq!(indexes, 4);
    }
}

#[tokio::test]
async fn a_dry_run_reports_without_writing_and_duplicates_follow_the_policy() {
    dry_runs_and_duplicate_policies(&[], false).await;
}

#[tokio::test]
async fn a_bulk_load_finds_the_same_duplicates_in_memory_and_rebuilds_its_indexes() {
    // On PostgreSQL indexes are never dropped (that would lock readers out), so no bulk load.
    let bulk = std::env::var(cardcrm_store::testing::TEST_DATABASE_URL)
        .map_or(true, |url| !url.starts_with("postgres"));
    dry_runs_and_duplicate_policies(&[("CARDCRM_IMPORT__BULK_ROWS_MIN", "1")], bulk).await;
}

#[tokio::test]
async fn gbk_files_are_read_and_broken_encoding_names_its_line() {
    let app = spawn_app().await;
    let admin = app.admin().await;
    let (gbk, _, _) = encoding_rs::GBK.encode("姓名,手机\n刘德华,13600001234\n");
    let file = write(&app, "gbk.csv", &gbk);
    let output = app.cli(&["import", "customers", &file, "--json"]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["encoding"], "gb18030");
    let found = app.get(&admin, "/api/v1/customers?phone=13600001234").await;
    assert_eq!(found.body["items"][0]["name"], "刘德华");

    let mut broken = b"name,phone\nok,13600000001\nok2,13600000002\n".to_vec();
    broken.extend_from_slice(b"bad\xff\xfe,13600000003\n");
    let file = write(&app, "broken.csv", &broken);
    let output = app.cli(&["import", "customers", &file, "--encoding", "utf-8"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr.contains("line 4") && stderr.contains("not valid UTF-8"), "{stderr}");
    assert_eq!(customer_count(&app, &admin).await, 1, "nothing of the broken file was written");
}

#[tokio::test]
async fn xlsx_workbooks_import_with_numeric_phones_and_date_cells() {
    let app = spawn_app().await;
    let admin = app.admin().await;
    let mut workbook = rust_xlsxwriter::Workbook::new();
    let sheet = workbook.add_worksheet();
    sheet.write_string(0, 0, "姓名").unwrap();
    sheet.write_string(0, 1, "手机号").unwrap();
    sheet.write_string(0, 2, "生日").unwrap();
    sheet.write_string(1, 0, "郭靖").unwrap();
    sheet.write_number(1, 1, 13512345678.0).unwrap();
    let date = rust_xlsxwriter::ExcelDateTime::from_ymd(1988, 8, 8).unwrap();
    let format = rust_xlsxwriter::Format::new().set_num_format("yyyy-mm-dd");
    sheet.write_datetime_with_format(1, 2, &date, &format).unwrap();
    let path = app.data_dir.join("members.xlsx");
    workbook.save(&path).unwrap();
    let output = app.cli(&["import", "customers", path.to_str().unwrap()]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let found = app.get(&admin, "/api/v1/customers?phone=13512345678").await;
    assert_eq!(found.body["items"][0]["name"], "郭靖");
    assert_eq!(found.body["items"][0]["birthday"], "1988-08-08");
}

#[tokio::test]
async fn transactions_resolve_customers_read_store_time_and_count_once() {
    transactions_story(&[], false).await;
}

#[tokio::test]
async fn a_bulk_load_of_transactions_rebuilds_its_index_and_checks_every_reference() {
    let bulk = std::env::var(cardcrm_store::testing::TEST_DATABASE_URL)
        .map_or(true, |url| !url.starts_with("postgres"));
    transactions_story(&[("CARDCRM_IMPORT__BULK_ROWS_MIN", "1")], bulk).await;
}

/// Purchases name their customer three ways, are read in their store's zone, count once
/// however often they are sent, and a row naming nobody known fails the file.
async fn transactions_story(envs: &[(&str, &str)], bulk: bool) {
    let app = spawn_app().await;
    let admin = app.admin().await;
    let cli = |args: &[&str]| app.cli_with_env(args, envs);
    let stores = write(&app, "stores.csv", "code,name,city,time_zone\nSH001,上海店,上海,Asia/Shanghai\nNY001,New York,New York,America/New_York\n".as_bytes());
    assert!(app.cli(&["import", "stores", &stores]).status.success());
    let customers =
        write(&app, "customers.csv", b"external_id,name,phone\nM1,A,13800000001\nM2,B,13800000002\n");
    assert!(app.cli(&["import", "customers", &customers]).status.success());
    let transactions = write(
        &app,
        "transactions.csv",
        "external_id,customer_external_id,phone,store_code,occurred_at,amount,category\n\
         T1,M1,,SH001,2026-01-02 10:00:00,\"1,288.50\",服装\n\
         T2,,138 0000 0002,NY001,2026-01-02 10:00:00,¥35,咖啡茶饮\n"
            .as_bytes(),
    );
    let first = cli(&["import", "transactions", &transactions, "--json"]);
    assert!(first.status.success(), "{}", String::from_utf8_lossy(&first.stderr));
    let report: serde_json::Value = serde_json::from_slice(&first.stdout).unwrap();
    assert_eq!(report["rows_inserted"], 2);
    assert_eq!(report["bulk_load"], bulk, "{report}");
    let second = cli(&["import", "transactions", &transactions, "--json"]);
    let report: serde_json::Value = serde_json::from_slice(&second.stdout).unwrap();
    assert_eq!(
        (report["rows_inserted"].as_u64(), report["rows_skipped"].as_u64()),
        (Some(0), Some(2)),
        "a re-sent file counts once"
    );

    let a =
        app.get(&admin, "/api/v1/customers?phone=13800000001").await.body["items"][0]["id"].as_i64().unwrap();
    let bought = app.get(&admin, &format!("/api/v1/customers/{a}/purchases")).await;
    assert_eq!(bought.body["items"].as_array().unwrap().len(), 1, "{}", bought.text);
    assert_eq!(bought.body["items"][0]["amount_minor"], 128_850);
    assert_eq!(bought.body["items"][0]["occurred_at"], "2026-01-02T02:00:00Z");
    let b =
        app.get(&admin, "/api/v1/customers?phone=13800000002").await.body["items"][0]["id"].as_i64().unwrap();
    let bought = app.get(&admin, &format!("/api/v1/customers/{b}/purchases")).await;
    assert_eq!(bought.body["items"][0]["occurred_at"], "2026-01-02T15:00:00Z", "New York local time");

    let unknown = write(
        &app,
        "unknown.csv",
        b"customer_external_id,occurred_at,amount\nM1,2026-01-03,10\nM404,2026-01-03,10\n",
    );
    let output = cli(&["import", "transactions", &unknown]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr.contains("line 3: customer_external_id: no customer matches"), "{stderr}");
}

#[tokio::test]
async fn the_api_imports_files_and_keeps_rejected_rows_for_download() {
    let app = spawn_app().await;
    let admin = app.admin().await;
    let (cookie, csrf) = match &admin {
        Auth::Session { cookie, csrf } => (cookie.clone(), csrf.clone()),
        _ => unreachable!(),
    };
    let send = |query: &str| {
        app.client
            .post(app.url(&format!("/api/v1/imports/customers?{query}")))
            .header("cookie", cookie.as_str())
            .header("x-csrf-token", csrf.as_str())
            .header("content-type", "text/csv")
            .body(GOOD_AND_BAD)
    };
    let rejected = app.raw(send("file_name=members.csv")).await;
    assert_eq!(rejected.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(rejected.code(), "import.rejected");
    assert_eq!(rejected.body["line"], 3);
    assert_eq!(rejected.body["field"], "phone");
    assert_eq!(rejected.body["report"]["rows_rejected"], 1);
    assert_eq!(customer_count(&app, &admin).await, 0);

    let committed = app.raw(send("file_name=members.csv&skip_invalid=true")).await;
    assert_eq!(committed.status, StatusCode::CREATED, "{}", committed.text);
    let id = committed.body["import_id"].as_i64().unwrap();
    let rows = app
        .raw(
            app.client
                .get(app.url(&format!("/api/v1/imports/{id}/rejects")))
                .header("cookie", cookie.as_str()),
        )
        .await;
    assert_eq!(rows.status, StatusCode::OK, "{}", rows.text);
    assert!(rows.text.starts_with("_line,_errors,"), "{}", rows.text);
    assert!(rows.text.contains("12345"));
    let clerk = app.staff_session("clerk1", "clerk", None).await;
    let refused = app.get(&clerk, &format!("/api/v1/imports/{id}")).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    let unknown_column = app
        .raw(
            app.client
                .post(app.url("/api/v1/imports/customers"))
                .header("cookie", cookie.as_str())
                .header("x-csrf-token", csrf.as_str())
                .body("name,fax\nA,1\n"),
        )
        .await;
    assert_eq!(unknown_column.status, StatusCode::BAD_REQUEST);
    assert_eq!(unknown_column.code(), "import.unknown_column");
    assert_eq!(unknown_column.body["line"], 1);
}

#[tokio::test]
async fn credit_card_records_import_by_phone_or_id_and_show_masked_with_their_statements() {
    let app = spawn_app().await;
    let admin = app.admin().await;
    let first = app.create_customer(&admin, json!({"name": "陈一", "phone": "13811112222"})).await;
    let second = app.create_customer(&admin, json!({"name": "周二", "phone": "13933334444"})).await;
    let second_id = second["id"].as_i64().unwrap();
    let good = format!(
        "卡号,手机号,客户编号,信用额度,账单日,开户日期,账单日期,到期还款日,账单金额,最低还款额,已还金额,还款日期,逾期天数\n\
         4111 1111 1111 1111,138 1111 2222,,50000.00,5,2024-03-01,2026-09-05,2026-09-25,3200.50,320.05,3200.50,2026-09-20,0\n\
         4111111111111111,13811112222,,50000.00,5,2024-03-01,2026-10-05,2026-10-25,5100.00,510.00,0,,17\n\
         5500000000000004,,{second_id},20000,,,,,,,,,\n"
    );
    let bad = good.replace("5500000000000004", "5500000000000005");
    let file = write(&app, "credit-bad.csv", bad.as_bytes());
    let output = app.cli(&["import", "credit", &file]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("line 4: account_number:"), "{stderr}");
    let first_id = first["id"].as_i64().unwrap();
    let none = app.get(&admin, &format!("/api/v1/customers/{first_id}/credit-accounts")).await;
    assert_eq!(none.body.as_array().map(Vec::len), Some(0), "nothing was written: {}", none.text);

    let file = write(&app, "credit.csv", good.as_bytes());
    let output = app.cli(&["import", "credit", &file]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let accounts = app.get(&admin, &format!("/api/v1/customers/{first_id}/credit-accounts")).await;
    assert_eq!(accounts.status, StatusCode::OK, "{}", accounts.text);
    let account = &accounts.body[0];
    assert_eq!(account["account_number"], "4111 **** **** 1111");
    assert_eq!(account["credit_limit_minor"], 5_000_000);
    assert_eq!(account["statements"].as_array().map(Vec::len), Some(2));
    assert_eq!(account["statements"][0]["statement_date"], "2026-10-05", "newest first");
    assert_eq!(account["overdue_days_max"], 17);
    let other = app.get(&admin, &format!("/api/v1/customers/{second_id}/credit-accounts")).await;
    assert_eq!(other.body[0]["credit_limit_minor"], 2_000_000);
    assert_eq!(other.body[0]["statements"].as_array().map(Vec::len), Some(0));
    // The issuer's next export corrects a statement: stored once, replaced, not doubled.
    let corrected = good.replace("5100.00,510.00,0,,17", "5100.00,510.00,5100.00,2026-10-24,0");
    let file = write(&app, "credit-2.csv", corrected.as_bytes());
    assert!(app.cli(&["import", "credit", &file]).status.success());
    let again = app.get(&admin, &format!("/api/v1/customers/{first_id}/credit-accounts")).await;
    assert_eq!(again.body[0]["statements"].as_array().map(Vec::len), Some(2));
    assert_eq!(again.body[0]["overdue_days_max"], 0);
    // The account numbers are sealed at rest.
    let contents = crate::privacy::database_contents(&app);
    let text = String::from_utf8_lossy(&contents);
    assert!(!text.contains("4111111111111111") && !text.contains("5500000000000004"));
}

#[tokio::test]
async fn opening_points_balances_import_once_each_with_its_expiry() {
    let app = spawn_app().await;
    let admin = app.admin().await;
    let first = app.create_customer(&admin, json!({"name": "陈一", "phone": "13811115555"})).await["id"]
        .as_i64()
        .unwrap();
    let second = app.create_customer(&admin, json!({"name": "周二", "phone": "13933336666"})).await["id"]
        .as_i64()
        .unwrap();
    let balance = |customer: i64| {
        let (app, admin) = (&app, &admin);
        async move { app.get(admin, &format!("/api/v1/members/{customer}")).await.body["points_balance"].clone() }
    };
    let good = format!(
        "手机号,客户编号,积分,到期日,原单号,备注\n\
         138 1111 5555,,\"1,200\",2099-12-31,OLD-0001,\n\
         13811115555,,300,,OLD-0002,\n\
         ,{second},50,,OLD-0003,老会员\n"
    );
    // Bad rows name their line and field, and nothing is written.
    let bad = format!(
        "{good}13700000000,,10,,OLD-0004,\n,{second},20,2001-01-01,OLD-0005,\n,{second},0,,OLD-0001,\n"
    );
    let output = app.cli(&["import", "points", &write(&app, "points-bad.csv", bad.as_bytes())]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(2), "{stdout}{stderr}");
    for expected in
        ["line 5: phone: no customer matches", "line 6: expires_on:", "line 7: points:", "line 7: reference:"]
    {
        assert!(stdout.contains(expected) || stderr.contains(expected), "{expected} in {stdout}{stderr}");
    }
    assert_eq!(balance(first).await, json!(0));

    let file = write(&app, "points.csv", good.as_bytes());
    let output = app.cli(&["import", "points", &file]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert_eq!((balance(first).await, balance(second).await), (json!(1_500), json!(50)));
    let lots = app.get(&admin, &format!("/api/v1/members/{first}/lots")).await;
    let dated: Vec<(i64, Option<&str>)> = lots
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|lot| (lot["points_remaining"].as_i64().unwrap(), lot["expires_at"].as_str()))
        .collect();
    // Through the last day in the business's time zone (Asia/Shanghai, UTC+8).
    assert!(dated.contains(&(1_200, Some("2099-12-31T16:00:00Z"))), "{}", lots.text);
    assert_eq!(dated.len(), 2, "{}", lots.text);

    // The same file again: every row was imported before; refused, or skipped on request.
    let again = app.cli(&["import", "points", &file]);
    assert_eq!(again.status.code(), Some(2), "{}", String::from_utf8_lossy(&again.stdout));
    let said =
        format!("{}{}", String::from_utf8_lossy(&again.stdout), String::from_utf8_lossy(&again.stderr));
    assert!(said.contains("line 2: reference: `OLD-0001` was imported before"), "{said}");
    let skipped = app.cli(&["import", "points", &file, "--on-duplicate", "skip"]);
    assert!(skipped.status.success(), "{}", String::from_utf8_lossy(&skipped.stderr));
    assert_eq!((balance(first).await, balance(second).await), (json!(1_500), json!(50)));
    let verified = app.cli(&["ledger", "verify"]);
    assert!(verified.status.success(), "{}", String::from_utf8_lossy(&verified.stdout));
}
