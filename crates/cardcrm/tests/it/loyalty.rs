//! The loyalty engine through the API, on the server's own clock moved by the test: refunds
//! take points back (and apply the shortfall policy when they were spent), an offline sale
//! sent twice earns once, birthday points follow the store's time zone, tiers rise at once
//! and fall only after the review and the grace period, and the expiry job empties lots at
//! the end of the year, and a referral bonus goes back when the first purchase that paid it is
//! refunded whole. `cardcrm ledger verify` passes after each story.

use std::sync::Arc;

use cardcrm_service::clock::ManualClock;
use jiff::Timestamp;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::{Auth, TestApp, spawn_app_at};

const DAY_MS: i64 = 86_400_000;

async fn app_at(moment: &str) -> (TestApp, Arc<ManualClock>, Auth) {
    let clock = Arc::new(ManualClock::new(moment.parse::<Timestamp>().unwrap()));
    let app = spawn_app_at(clock.clone()).await;
    let password = app.add_staff("boss", "admin", None).await;
    let auth = app.login("boss", &password).await;
    (app, clock, auth)
}

/// Signs in again (sessions expire when the test moves the clock by months).
async fn relogin(app: &TestApp) -> Auth {
    app.login("boss", "correct horse battery staple").await
}

async fn member(app: &TestApp, auth: &Auth, customer_id: i64) -> Value {
    let answer = app.get(auth, &format!("/api/v1/members/{customer_id}")).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
    answer.body
}

async fn checkout(app: &TestApp, auth: &Auth, key: &str, body: Value) -> Value {
    let answer = app.post_keyed(auth, "/api/v1/checkouts", key, body).await;
    assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.text);
    answer.body
}

async fn sale(app: &TestApp, auth: &Auth, key: &str, body: Value) -> Value {
    let answer = app.post_keyed(auth, "/api/v1/loyalty/sales", key, body).await;
    assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.text);
    answer.body
}

async fn job(app: &TestApp, auth: &Auth, name: &str) -> Value {
    let answer = app.post(auth, &format!("/api/v1/loyalty/jobs/{name}"), json!({})).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
    answer.body
}

fn verify_passes(app: &TestApp) {
    let output = app.cli(&["ledger", "verify", "--json"]);
    let report: Value = serde_json::from_slice(&output.stdout).unwrap_or(Value::Null);
    assert!(output.status.success(), "verify failed: {report} {}", String::from_utf8_lossy(&output.stderr));
    assert_eq!(report["points_lot_mismatches"], json!([]), "{report}");
}

#[tokio::test]
async fn a_refund_takes_back_the_points_its_purchase_earned() {
    let (app, _clock, auth) = app_at("2026-06-01T04:00:00Z").await;
    let customer = app.create_customer(&auth, json!({"name": "李雷", "phone": "13800001001"})).await;
    let id = customer["id"].as_i64().unwrap();
    let basket = json!({"customer_id": id, "lines": [{"amount_minor": 6_000, "category": "food"}, {"amount_minor": 4_000}], "external_method": "cash"});
    let receipt = checkout(&app, &auth, "loyalty-buy-0001", basket.clone()).await;
    assert_eq!(receipt["points_earned"]["points"], 100, "{receipt}");
    // The same request again: the stored answer, nothing earned twice.
    let again = app.post_keyed(&auth, "/api/v1/checkouts", "loyalty-buy-0001", basket).await;
    assert_eq!(again.headers["idempotent-replayed"], "true");
    assert_eq!(member(&app, &auth, id).await["points_balance"], 100);

    let operation = receipt["operation_id"].as_i64().unwrap();
    let partial = app
        .post_keyed(
            &auth,
            &format!("/api/v1/operations/{operation}/refunds"),
            "loyalty-ref-0001",
            json!({"amount_minor": 2_500}),
        )
        .await;
    assert_eq!(partial.status, StatusCode::CREATED, "{}", partial.text);
    assert_eq!(partial.body["detail"]["points"]["clawed_back"], 25, "{}", partial.text);
    let now = member(&app, &auth, id).await;
    // A partial refund lowers the spend that counts toward tiers, not the visit.
    assert_eq!(
        (now["points_balance"].as_i64(), now["window_spend_minor"].as_i64(), now["window_visits"].as_i64()),
        (Some(75), Some(7_500), Some(1)),
        "{now}"
    );
    let rest = app
        .post_keyed(&auth, &format!("/api/v1/operations/{operation}/refunds"), "loyalty-ref-0002", json!({}))
        .await;
    assert_eq!(rest.status, StatusCode::CREATED, "{}", rest.text);
    let after = member(&app, &auth, id).await;
    assert_eq!(
        (after["points_balance"].as_i64(), after["points_owed"].as_i64()),
        (Some(0), Some(0)),
        "{after}"
    );
    // Refunded whole, the purchase no longer counts as a visit either.
    assert_eq!(
        (after["window_spend_minor"].as_i64(), after["window_visits"].as_i64()),
        (Some(0), Some(0)),
        "{after}"
    );
    let history = app.get(&auth, &format!("/api/v1/members/{id}/points-history")).await;
    let purposes: Vec<&str> = history.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|line| line["purpose"].as_str().unwrap())
        .collect();
    assert_eq!(purposes, ["points_purchase", "points_clawback", "points_clawback"]);
    assert_eq!(history.body["items"][2]["balance_after"], 0);
    verify_passes(&app);
}

#[tokio::test]
async fn a_refund_of_spent_points_follows_the_shortfall_policy() {
    let (app, clock, auth) = app_at("2026-06-01T04:00:00Z").await;
    let owes = app.create_customer(&auth, json!({"name": "韩梅梅", "phone": "13800001002"})).await["id"]
        .as_i64()
        .unwrap();
    let earned = checkout(
        &app,
        &auth,
        "policy-buy-0001",
        json!({"customer_id": owes, "lines": [{"amount_minor": 10_000}], "external_method": "cash"}),
    )
    .await;
    // 80 points pay 0.80 of a later basket.
    let spent = checkout(&app, &auth, "policy-use-0001", json!({"customer_id": owes, "lines": [{"amount_minor": 1_000}], "points_to_redeem": 80, "external_method": "cash"})).await;
    assert_eq!(spent["total_minor"], 920, "{spent}");
    let refund = app
        .post_keyed(
            &auth,
            &format!("/api/v1/operations/{}/refunds", earned["operation_id"]),
            "policy-ref-0001",
            json!({}),
        )
        .await;
    assert_eq!(refund.status, StatusCode::CREATED, "{}", refund.text);
    let points = &refund.body["detail"]["points"];
    // 100 earned: 29 left on the account (20 + 9 earned by the second basket), so 29 back and 71 owed.
    assert_eq!(
        (points["clawed_back"].as_i64(), points["shortfall"].as_i64(), points["shortfall_owed"].as_bool()),
        (Some(29), Some(71), Some(true)),
        "{points}"
    );
    let now = member(&app, &auth, owes).await;
    assert_eq!((now["points_balance"].as_i64(), now["points_owed"].as_i64()), (Some(0), Some(71)), "{now}");
    // The next purchase pays the debt first.
    let next = checkout(
        &app,
        &auth,
        "policy-buy-0002",
        json!({"customer_id": owes, "lines": [{"amount_minor": 10_000}], "external_method": "cash"}),
    )
    .await;
    assert_eq!(next["points_earned"]["owed_repaid"], 71, "{next}");
    let now = member(&app, &auth, owes).await;
    assert_eq!((now["points_balance"].as_i64(), now["points_owed"].as_i64()), (Some(29), Some(0)), "{now}");
    // Refunding the basket that used points gives them back to their lots.
    let back = app
        .post_keyed(
            &auth,
            &format!("/api/v1/operations/{}/refunds", spent["operation_id"]),
            "policy-ref-0002",
            json!({}),
        )
        .await;
    assert_eq!(back.status, StatusCode::CREATED, "{}", back.text);
    assert_eq!(back.body["detail"]["points"]["returned"], 80, "{}", back.text);

    // Under deduct_remaining the shortfall is written off instead.
    clock.advance_ms(1_000);
    let version = app.post(&auth, "/api/v1/loyalty/programmes", json!({"effective_from": "2026-06-01T04:00:01Z", "rules": {"refund_shortfall": "deduct_remaining"}})).await;
    assert_eq!(version.status, StatusCode::CREATED, "{}", version.text);
    let writes_off = app.create_customer(&auth, json!({"name": "林涛", "phone": "13800001003"})).await["id"]
        .as_i64()
        .unwrap();
    let earned = checkout(
        &app,
        &auth,
        "policy-buy-0003",
        json!({"customer_id": writes_off, "lines": [{"amount_minor": 10_000}], "external_method": "cash"}),
    )
    .await;
    checkout(&app, &auth, "policy-use-0003", json!({"customer_id": writes_off, "lines": [{"amount_minor": 1_000}], "points_to_redeem": 100, "external_method": "cash"})).await;
    let refund = app
        .post_keyed(
            &auth,
            &format!("/api/v1/operations/{}/refunds", earned["operation_id"]),
            "policy-ref-0003",
            json!({}),
        )
        .await;
    let points = &refund.body["detail"]["points"];
    assert_eq!(
        (points["shortfall"].as_i64(), points["shortfall_owed"].as_bool()),
        (Some(91), Some(false)),
        "{points}"
    );
    let now = member(&app, &auth, writes_off).await;
    assert_eq!((now["points_balance"].as_i64(), now["points_owed"].as_i64()), (Some(0), Some(0)), "{now}");
    verify_passes(&app);
}

#[tokio::test]
async fn an_offline_sale_sent_again_earns_once() {
    let (app, _clock, auth) = app_at("2026-06-01T04:00:00Z").await;
    let store = app.add_store("SH01").await;
    let id = app.create_customer(&auth, json!({"name": "张伟", "phone": "13800001004"})).await["id"]
        .as_i64()
        .unwrap();
    let body = json!({"customer_id": id, "store_id": store, "external_id": "POS7-000123", "lines": [{"amount_minor": 25_000}]});
    let first = sale(&app, &auth, "offline-sync-0001", body.clone()).await;
    assert_eq!(
        (first["points"]["points"].as_i64(), first["duplicate"].as_bool()),
        (Some(250), Some(false)),
        "{first}"
    );
    // The till re-syncs with a new key: recognised by its receipt number.
    let second = sale(&app, &auth, "offline-sync-0002", body).await;
    assert_eq!(
        (second["operation_id"].clone(), second["duplicate"].as_bool()),
        (first["operation_id"].clone(), Some(true)),
        "{second}"
    );
    assert_eq!(member(&app, &auth, id).await["points_balance"], 250);
    let refund = app
        .post_keyed(
            &auth,
            &format!("/api/v1/loyalty/sales/{}/refunds", first["operation_id"]),
            "offline-ref-0001",
            json!({"amount_minor": 5_000}),
        )
        .await;
    assert_eq!(refund.status, StatusCode::CREATED, "{}", refund.text);
    assert_eq!(refund.body["points"]["clawed_back"], 50);
    assert_eq!(member(&app, &auth, id).await["points_balance"], 200);
    verify_passes(&app);
}

#[tokio::test]
async fn birthday_points_fire_on_the_day_in_the_store_time_zone() {
    // 2026-03-14 23:30 in Shanghai: the day before the birthday there.
    let (app, clock, auth) = app_at("2026-03-14T15:30:00Z").await;
    let store = app.add_store("SH02").await;
    let id = app
        .create_customer(&auth, json!({"name": "生日会员", "phone": "13800001005", "birthday": "1990-03-15"}))
        .await["id"]
        .as_i64()
        .unwrap();
    let line = json!([{"amount_minor": 10_000}]);
    let before = sale(
        &app,
        &auth,
        "birthday-sale-0001",
        json!({"customer_id": id, "store_id": store, "external_id": "B-1", "lines": line}),
    )
    .await;
    assert_eq!(before["points"]["points"], 100, "{before}");
    clock.set("2026-03-14T16:30:00Z".parse().unwrap()); // 00:30 on the 15th in Shanghai
    let auth = relogin(&app).await;
    let on_day = sale(
        &app,
        &auth,
        "birthday-sale-0002",
        json!({"customer_id": id, "store_id": store, "external_id": "B-2", "lines": line}),
    )
    .await;
    assert_eq!(on_day["points"]["points"], 200, "{on_day}");
    assert!(on_day["points"]["rules"].as_array().unwrap().iter().any(|rule| rule["rule"] == "birthday"));
    clock.set("2026-03-15T16:30:00Z".parse().unwrap()); // the 16th there
    let auth = relogin(&app).await;
    let simulated = app
        .post(&auth, "/api/v1/loyalty/simulate", json!({"customer_id": id, "store_id": store, "lines": line}))
        .await;
    assert_eq!(
        (simulated.body["points"].as_i64(), simulated.body["local_date"].as_str()),
        (Some(100), Some("2026-03-16")),
        "{}",
        simulated.text
    );
    verify_passes(&app);
}

#[tokio::test]
async fn a_member_is_upgraded_at_once_and_downgraded_only_after_review_and_grace() {
    let (app, clock, auth) = app_at("2026-01-10T04:00:00Z").await;
    let (card, id) = {
        let product = crate::support::stored_value_product(&app, &auth, "TIERS", json!({})).await;
        let _ = product;
        let (card, id, _) = crate::support::issue_card(&app, &auth, "TIERS", "13800001006").await;
        (card, id)
    };
    // Silver asks 2,000.00 over 12 months; this one sale gets there.
    let lifted = sale(
        &app,
        &auth,
        "tier-sale-0001",
        json!({"customer_id": id, "external_id": "T-1", "lines": [{"amount_minor": 200_000}]}),
    )
    .await;
    assert_eq!(lifted["points"]["upgraded_to"], "silver", "{lifted}");
    let now = member(&app, &auth, id).await;
    assert_eq!((now["tier"].as_str(), now["next_tier"].as_str()), (Some("silver"), Some("gold")), "{now}");
    assert_eq!(app.get(&auth, &format!("/api/v1/cards/{card}")).await.body["tier"], "silver");

    // A year on, the sale has left the window: the review starts the grace period only.
    clock.set("2027-01-11T04:00:00Z".parse().unwrap());
    let auth = relogin(&app).await;
    job(&app, &auth, "tiers").await;
    let now = member(&app, &auth, id).await;
    assert_eq!(now["tier"], "silver", "{now}");
    assert!(now["grace_until"].is_string(), "{now}");
    clock.advance_ms(25 * DAY_MS);
    let auth = relogin(&app).await;
    job(&app, &auth, "tiers").await;
    assert_eq!(member(&app, &auth, id).await["tier"], "silver");
    clock.advance_ms(6 * DAY_MS);
    let auth = relogin(&app).await;
    let report = job(&app, &auth, "tiers").await;
    assert_eq!(report["changed"], 1, "{report}");
    assert_eq!(member(&app, &auth, id).await["tier"], "ordinary");
    let history = app.get(&auth, &format!("/api/v1/members/{id}/tier-history")).await;
    let reasons: Vec<&str> =
        history.body.as_array().unwrap().iter().map(|change| change["reason"].as_str().unwrap()).collect();
    assert_eq!(reasons, ["downgrade", "grace", "upgrade"]);

    // A manager's override holds a tier until its date, audited.
    let answer = app
        .post(
            &auth,
            &format!("/api/v1/members/{id}/tier-override"),
            json!({"tier": "gold", "until": "2027-06-01T00:00:00Z", "reason": "VIP complaint"}),
        )
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
    assert_eq!(
        (answer.body["tier"].as_str(), answer.body["earned_tier"].as_str()),
        (Some("gold"), Some("ordinary"))
    );
    let clerk = app.staff_session("clerk1", "clerk", None).await;
    let refused = app
        .post(
            &clerk,
            &format!("/api/v1/members/{id}/tier-override"),
            json!({"tier": "gold", "until": "2027-06-01T00:00:00Z", "reason": "x"}),
        )
        .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    verify_passes(&app);
}

#[tokio::test]
async fn the_expiry_job_empties_lots_at_the_end_of_the_year() {
    let (app, clock, auth) = app_at("2026-06-01T04:00:00Z").await;
    let id = app.create_customer(&auth, json!({"name": "到期会员", "phone": "13800001007"})).await["id"]
        .as_i64()
        .unwrap();
    let first = sale(
        &app,
        &auth,
        "expiry-sale-0001",
        json!({"customer_id": id, "external_id": "E-1", "lines": [{"amount_minor": 30_000}]}),
    )
    .await;
    // Points earned in 2026 expire at the end of 2027 (Shanghai time).
    assert_eq!(first["points"]["expires_at"], "2027-12-31T16:00:00Z", "{first}");
    clock.set("2027-03-01T04:00:00Z".parse().unwrap());
    let auth = relogin(&app).await;
    sale(
        &app,
        &auth,
        "expiry-sale-0002",
        json!({"customer_id": id, "external_id": "E-2", "lines": [{"amount_minor": 10_000}]}),
    )
    .await;
    // Spending takes the lot that expires first.
    checkout(&app, &auth, "expiry-use-0001", json!({"customer_id": id, "lines": [{"amount_minor": 5_000}], "points_to_redeem": 50, "external_method": "cash"})).await;
    let lots = app.get(&auth, &format!("/api/v1/members/{id}/lots")).await.body;
    assert_eq!(lots[0]["points_remaining"], 250, "{lots}");

    clock.set("2027-12-10T04:00:00Z".parse().unwrap());
    let auth = relogin(&app).await;
    job(&app, &auth, "remind").await;
    let events = app.get(&auth, &format!("/api/v1/loyalty/events?customer_id={id}")).await.body;
    let reminder = events["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|event| event["kind"] == "points_expiring")
        .cloned()
        .expect("a reminder");
    assert_eq!(reminder["detail"]["points"], 250, "{reminder}");

    clock.set("2027-12-31T15:59:00Z".parse().unwrap());
    let auth = relogin(&app).await;
    assert_eq!(job(&app, &auth, "expire").await["points"], 0);
    clock.set("2027-12-31T16:00:00Z".parse().unwrap());
    let report = job(&app, &auth, "expire").await;
    assert_eq!((report["points"].as_i64(), report["members"].as_i64()), (Some(250), Some(1)), "{report}");
    let now = member(&app, &auth, id).await;
    // The 2027 lots stay: 100 from the sale and 49 from what the points checkout paid.
    assert_eq!(now["points_balance"], 149, "{now}");
    assert_eq!(job(&app, &auth, "expire").await["points"], 0, "expiry runs once");
    let liability = app.get(&auth, "/api/v1/loyalty/liability").await.body;
    assert_eq!(liability["points_outstanding"], 149, "{liability}");
    verify_passes(&app);
}

/// `cardcrm loyalty run` runs the jobs on the wall clock: points earned in March 2024
/// expired at the end of 2025, long before any day this test runs on.
#[tokio::test]
async fn the_command_line_runs_the_jobs_once() {
    let (app, _clock, auth) = app_at("2024-03-01T04:00:00Z").await;
    let id = app.create_customer(&auth, json!({"name": "命令行会员", "phone": "13800001008"})).await["id"]
        .as_i64()
        .unwrap();
    let earned = sale(
        &app,
        &auth,
        "cli-sale-0001",
        json!({"customer_id": id, "external_id": "C-1", "lines": [{"amount_minor": 30_000}]}),
    )
    .await;
    assert_eq!(earned["points"]["expires_at"], "2025-12-31T16:00:00Z", "{earned}");

    let output = app.cli(&["loyalty", "run", "all", "--json"]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let reports: Vec<Value> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|line| serde_json::from_str(line).expect("a JSON report per line"))
        .collect();
    let jobs: Vec<&str> = reports.iter().map(|report| report["job"].as_str().unwrap()).collect();
    assert_eq!(jobs, ["expire", "remind", "tiers"]);
    assert_eq!((reports[0]["points"].as_i64(), reports[0]["members"].as_i64()), (Some(300), Some(1)));
    assert_eq!(reports[2]["members"], 1, "{}", reports[2]);
    assert_eq!(member(&app, &auth, id).await["points_balance"], 0);
    verify_passes(&app);

    let again = app.cli(&["loyalty", "run", "expire"]);
    assert!(again.status.success());
    let text = String::from_utf8_lossy(&again.stdout);
    let words: Vec<&str> = text.split_whitespace().collect();
    assert!(words.starts_with(&["expire", "members", "0", "·", "points", "0"]), "{text}");

    let unknown = app.cli(&["loyalty", "run", "everything"]);
    assert_eq!(unknown.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("expire"), "names the jobs");
}

/// An annual review of a whole base (enough members that PostgreSQL writes the page in bulk):
/// every member is reviewed once, an ended override gives way, grace comes before every
/// downgrade, and cards follow their member's tier.
#[tokio::test]
async fn an_annual_review_of_many_members_reviews_each_once() {
    const MEMBERS: usize = 130;
    // Units of 70 members: the jobs take two, written at once on PostgreSQL (the first from a
    // staging table, the second row by row).
    let clock = Arc::new(ManualClock::new("2026-01-10T04:00:00Z".parse::<Timestamp>().unwrap()));
    let app =
        crate::support::spawn_app_at_with(clock.clone(), |settings| settings.database.job_block_members = 70)
            .await;
    let password = app.add_staff("boss", "admin", None).await;
    let auth = app.login("boss", &password).await;
    crate::support::stored_value_product(&app, &auth, "REVIEW", json!({})).await;
    let (card, first, _) = crate::support::issue_card(&app, &auth, "REVIEW", "13900000000").await;
    let mut ids = vec![first];
    for index in 1..MEMBERS {
        let phone = format!("139{index:08}");
        ids.push(
            app.create_customer(&auth, json!({"name": "年审会员", "phone": phone})).await["id"]
                .as_i64()
                .unwrap(),
        );
    }
    // Even members buy enough for silver (2,000.00), odd ones 100.00.
    for (index, id) in ids.iter().enumerate() {
        let amount = if index % 2 == 0 { 200_000 } else { 10_000 };
        sale(
            &app,
            &auth,
            &format!("review-sale-{index:04}"),
            json!({"customer_id": id, "external_id": format!("R-{index}"), "lines": [{"amount_minor": amount}]}),
        )
        .await;
    }
    let overridden = ids[1];
    let answer = app
        .post(
            &auth,
            &format!("/api/v1/members/{overridden}/tier-override"),
            json!({"tier": "gold", "until": "2026-06-01T00:00:00Z", "reason": "开业活动"}),
        )
        .await;
    assert!(answer.status.is_success(), "{}", answer.text);
    assert_eq!(app.get(&auth, &format!("/api/v1/cards/{card}")).await.body["tier"], "silver");

    // A year on: nobody bought since, so silver members enter grace and nobody changes tier.
    clock.set("2027-01-11T04:00:00Z".parse().unwrap());
    let auth = relogin(&app).await;
    let report = job(&app, &auth, "tiers").await;
    assert_eq!(
        (report["members"].as_i64(), report["changed"].as_i64()),
        (Some(MEMBERS as i64), Some(0)),
        "{report}"
    );
    let silver = member(&app, &auth, first).await;
    assert_eq!(silver["tier"], "silver", "{silver}");
    assert!(silver["grace_until"].is_string(), "{silver}");
    let ended = member(&app, &auth, overridden).await;
    assert_eq!(ended["tier"], "ordinary", "the override ended in June: {ended}");
    let events = app.get(&auth, &format!("/api/v1/loyalty/events?customer_id={overridden}")).await.body;
    assert!(
        events["items"].as_array().unwrap().iter().any(|event| event["kind"] == "tier_changed"),
        "{events}"
    );

    // After the grace period every silver member is downgraded, once.
    clock.advance_ms(31 * DAY_MS);
    let auth = relogin(&app).await;
    let report = job(&app, &auth, "tiers").await;
    assert_eq!(report["changed"].as_i64(), Some((MEMBERS / 2) as i64), "{report}");
    for id in ids.iter().step_by(2) {
        assert_eq!(member(&app, &auth, *id).await["tier"], "ordinary");
    }
    assert_eq!(app.get(&auth, &format!("/api/v1/cards/{card}")).await.body["tier"], "ordinary");
    let history = app.get(&auth, &format!("/api/v1/members/{first}/tier-history")).await;
    let reasons: Vec<&str> =
        history.body.as_array().unwrap().iter().map(|change| change["reason"].as_str().unwrap()).collect();
    assert_eq!(reasons, ["downgrade", "grace", "upgrade"]);
    assert_eq!(job(&app, &auth, "tiers").await["changed"], 0, "a second run changes nothing");

    // At the end of 2027 (Shanghai) everything earned in 2026 expires, block by block.
    clock.set("2028-01-01T00:00:00Z".parse().unwrap());
    let auth = relogin(&app).await;
    let report = job(&app, &auth, "expire").await;
    let earned = (MEMBERS as i64 / 2) * (2_000 + 100);
    assert_eq!(
        (report["members"].as_i64(), report["points"].as_i64()),
        (Some(MEMBERS as i64), Some(earned)),
        "{report}"
    );
    assert_eq!(job(&app, &auth, "expire").await["points"], 0);
    verify_passes(&app);
}

/// The purposes of a member's points history, oldest first.
async fn purposes(app: &TestApp, auth: &Auth, customer_id: i64) -> Vec<String> {
    let history = app.get(auth, &format!("/api/v1/members/{customer_id}/points-history")).await;
    assert_eq!(history.status, StatusCode::OK, "{}", history.text);
    history.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|line| line["purpose"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn enrolment_pays_the_signup_bonus_once_and_the_referrer_on_the_first_purchase() {
    let (app, clock, auth) = app_at("2026-06-01T04:00:00Z").await;
    let version = app
        .post(
            &auth,
            "/api/v1/loyalty/programmes",
            json!({"effective_from": "2026-06-01T04:00:01Z", "rules": {"signup_bonus_points": 200, "referral_bonus_points": 300}}),
        )
        .await;
    assert_eq!(version.status, StatusCode::CREATED, "{}", version.text);
    clock.advance_ms(1_000);
    let referrer = app.create_customer(&auth, json!({"name": "老会员", "phone": "13800001011"})).await["id"]
        .as_i64()
        .unwrap();
    let newcomer = app.create_customer(&auth, json!({"name": "新会员", "phone": "13800001012"})).await["id"]
        .as_i64()
        .unwrap();
    let enrolment = format!("/api/v1/members/{newcomer}/enrolment");
    let joined = app.post_keyed(&auth, &enrolment, "enrol-0001", json!({"referred_by": referrer})).await;
    assert_eq!(joined.status, StatusCode::CREATED, "{}", joined.text);
    assert_eq!(
        (
            joined.body["signup_points"].as_i64(),
            joined.body["balance_after"].as_i64(),
            joined.body["referred_by"].as_i64()
        ),
        (Some(200), Some(200), Some(referrer)),
        "{}",
        joined.text
    );
    // The same request again answers as before; a second enrolment is refused and pays nothing.
    let again = app.post_keyed(&auth, &enrolment, "enrol-0001", json!({"referred_by": referrer})).await;
    assert_eq!(again.headers["idempotent-replayed"], "true");
    assert_eq!(again.body["operation_id"], joined.body["operation_id"]);
    let twice = app.post_keyed(&auth, &enrolment, "enrol-0002", json!({})).await;
    assert_eq!(
        (twice.status, twice.code()),
        (StatusCode::CONFLICT, "member.already_enrolled"),
        "{}",
        twice.text
    );
    let own = format!("/api/v1/members/{referrer}/enrolment");
    let selfish = app.post_keyed(&auth, &own, "enrol-0003", json!({"referred_by": referrer})).await;
    // Field problems come as a list under `errors`, each with its own code.
    let field_code =
        |answer: &crate::support::Answer| answer.body["errors"][0]["code"].as_str().unwrap_or("").to_owned();
    assert_eq!(
        (selfish.status, field_code(&selfish).as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, "referral.self"),
        "{}",
        selfish.text
    );
    let stranger = app.post_keyed(&auth, &own, "enrol-0004", json!({"referred_by": 987_654})).await;
    assert_eq!(
        (stranger.status, field_code(&stranger).as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, "referral.unknown"),
        "{}",
        stranger.text
    );
    let view = member(&app, &auth, newcomer).await;
    assert_eq!(
        (view["points_balance"].as_i64(), view["referred_by"].as_i64()),
        (Some(200), Some(referrer)),
        "{view}"
    );
    assert!(view["enrolled_at"].is_string(), "{view}");

    // The newcomer's first purchase pays the referrer, once.
    let basket =
        json!({"customer_id": newcomer, "lines": [{"amount_minor": 10_000}], "external_method": "cash"});
    let first = checkout(&app, &auth, "referral-buy-0001", basket.clone()).await;
    assert_eq!(first["points_earned"]["points"], 100, "{first}");
    assert_eq!(
        (
            first["points_earned"]["referral"]["customer_id"].as_i64(),
            first["points_earned"]["referral"]["points"].as_i64()
        ),
        (Some(referrer), Some(300)),
        "{first}"
    );
    let second = checkout(&app, &auth, "referral-buy-0002", basket).await;
    assert!(second["points_earned"]["referral"].is_null(), "{second}");
    assert_eq!(member(&app, &auth, referrer).await["points_balance"], 300);
    assert_eq!(member(&app, &auth, newcomer).await["points_balance"], 400);
    assert_eq!(purposes(&app, &auth, referrer).await, ["points_referral"]);
    assert_eq!(
        purposes(&app, &auth, newcomer).await,
        ["points_signup", "points_purchase", "points_purchase"]
    );
    verify_passes(&app);

    // The referrer gives 250 of the bonus away; then refunds: the second purchase, or part
    // of the first, leave the bonus alone; the first refunded whole takes it back, and what
    // was already given away is owed (the programme's negative-balance policy).
    let given = app
        .post_keyed(
            &auth,
            &format!("/api/v1/members/{referrer}/points-transfers"),
            "referral-give-0001",
            json!({"to_customer_id": newcomer, "points": 250}),
        )
        .await;
    assert_eq!(given.status, StatusCode::CREATED, "{}", given.text);
    let refund = |operation: &Value, key: &'static str, body: Value| {
        let path = format!("/api/v1/operations/{}/refunds", operation["operation_id"]);
        let (app, auth) = (&app, &auth);
        async move {
            let answer = app.post_keyed(auth, &path, key, body).await;
            assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.text);
            answer.body
        }
    };
    refund(&second, "referral-refund-0001", json!({})).await;
    refund(&first, "referral-refund-0002", json!({"amount_minor": 4_000})).await;
    let kept = member(&app, &auth, referrer).await;
    assert_eq!(
        (kept["points_balance"].as_i64(), kept["points_owed"].as_i64()),
        (Some(50), Some(0)),
        "{kept}"
    );
    refund(&first, "referral-refund-0003", json!({})).await;
    let taken = member(&app, &auth, referrer).await;
    assert_eq!(
        (taken["points_balance"].as_i64(), taken["points_owed"].as_i64(), taken["window_points"].as_i64()),
        (Some(0), Some(250), Some(0)),
        "{taken}"
    );
    assert_eq!(
        purposes(&app, &auth, referrer).await,
        ["points_referral", "points_transfer_out", "points_clawback"]
    );
    // A purchase after that is not a first purchase: no bonus again, and it pays off what
    // the referrer owes only through the referrer's own earnings.
    let later = checkout(
        &app,
        &auth,
        "referral-buy-0003",
        json!({"customer_id": newcomer, "lines": [{"amount_minor": 5_000}], "external_method": "cash"}),
    )
    .await;
    assert!(later["points_earned"]["referral"].is_null(), "{later}");
    assert_eq!(member(&app, &auth, referrer).await["points_owed"], 250);
    verify_passes(&app);
}

#[tokio::test]
async fn a_refunded_offline_first_sale_takes_the_referral_bonus_back() {
    let (app, _clock, auth) = app_at("2026-06-01T04:00:00Z").await;
    let version = app
        .post(
            &auth,
            "/api/v1/loyalty/programmes",
            json!({"effective_from": "2026-06-01T04:00:00Z", "rules": {"referral_bonus_points": 300}}),
        )
        .await;
    assert_eq!(version.status, StatusCode::CREATED, "{}", version.text);
    let referrer = app.create_customer(&auth, json!({"name": "老会员", "phone": "13800001031"})).await["id"]
        .as_i64()
        .unwrap();
    let newcomer = app.create_customer(&auth, json!({"name": "新会员", "phone": "13800001032"})).await["id"]
        .as_i64()
        .unwrap();
    let joined = app
        .post_keyed(
            &auth,
            &format!("/api/v1/members/{newcomer}/enrolment"),
            "enrol-0101",
            json!({"referred_by": referrer}),
        )
        .await;
    assert_eq!(joined.status, StatusCode::CREATED, "{}", joined.text);
    let sold = sale(
        &app,
        &auth,
        "referral-sale-0001",
        json!({"customer_id": newcomer, "external_id": "TILL-9-0001", "lines": [{"amount_minor": 8_000}]}),
    )
    .await;
    assert_eq!(member(&app, &auth, referrer).await["points_balance"], 300, "{sold}");
    let path = format!("/api/v1/loyalty/sales/{}/refunds", sold["operation_id"]);
    let refunded = app.post_keyed(&auth, &path, "referral-sale-refund-0001", json!({})).await;
    assert_eq!(refunded.status, StatusCode::CREATED, "{}", refunded.text);
    assert_eq!(
        (
            refunded.body["referral"]["customer_id"].as_i64(),
            refunded.body["referral"]["points"]["clawed_back"].as_i64()
        ),
        (Some(referrer), Some(300)),
        "{}",
        refunded.text
    );
    assert_eq!(member(&app, &auth, referrer).await["points_balance"], 0);
    assert_eq!(member(&app, &auth, newcomer).await["points_balance"], 0);
    // The same request again: the stored answer; nothing taken twice.
    let again = app.post_keyed(&auth, &path, "referral-sale-refund-0001", json!({})).await;
    assert_eq!(again.headers["idempotent-replayed"], "true");
    assert_eq!(again.body["referral"], refunded.body["referral"]);
    verify_passes(&app);
}

#[tokio::test]
async fn a_merge_moves_points_tier_and_later_refunds_to_the_survivor() {
    let (app, _clock, auth) = app_at("2026-06-01T04:00:00Z").await;
    let survivor = app.create_customer(&auth, json!({"name": "王芳", "phone": "13800001021"})).await["id"]
        .as_i64()
        .unwrap();
    let merged =
        app.create_customer(&auth, json!({"name": "王芳 (微信)", "phone": "13800001022"})).await["id"]
            .as_i64()
            .unwrap();
    let buy = |customer: i64, amount: i64| json!({"customer_id": customer, "lines": [{"amount_minor": amount}], "external_method": "cash"});
    checkout(&app, &auth, "merge-buy-0001", buy(survivor, 10_000)).await;
    // The duplicate record reaches silver on its own and pays part of a basket with points.
    let big = checkout(&app, &auth, "merge-buy-0002", buy(merged, 200_000)).await;
    assert_eq!(big["points_earned"]["upgraded_to"], "silver", "{big}");
    let mut with_points = buy(merged, 10_000);
    with_points["points_to_redeem"] = json!(500);
    let spent = checkout(&app, &auth, "merge-buy-0003", with_points).await;
    let earned_with_points = spent["points_earned"]["points"].as_i64().unwrap();
    let held = member(&app, &auth, merged).await["points_balance"].as_i64().unwrap();
    assert_eq!(held, 2_000 - 500 + earned_with_points);

    let answer =
        app.post(&auth, &format!("/api/v1/customers/{survivor}/merge"), json!({"merge_id": merged})).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
    let loyalty = &answer.body["loyalty"];
    assert_eq!(
        (loyalty["points"].as_i64(), loyalty["tier"].as_str()),
        (Some(held), Some("silver")),
        "{loyalty}"
    );
    let now = member(&app, &auth, survivor).await;
    assert_eq!(
        (now["points_balance"].as_i64(), now["tier"].as_str(), now["window_spend_minor"].as_i64()),
        (Some(100 + held), Some("silver"), Some(10_000 + 200_000 + 9_500)),
        "{now}"
    );
    assert_eq!(member(&app, &auth, merged).await["points_balance"], 0);
    assert_eq!(purposes(&app, &auth, survivor).await, ["points_purchase", "points_merge"]);

    // Refunding the basket paid with points after the merge: the 500 points come back to the
    // survivor, and what that basket earned is taken from the survivor.
    let refund = app
        .post_keyed(
            &auth,
            &format!("/api/v1/operations/{}/refunds", spent["operation_id"]),
            "merge-ref-0001",
            json!({}),
        )
        .await;
    assert_eq!(refund.status, StatusCode::CREATED, "{}", refund.text);
    let points = &refund.body["detail"]["points"];
    assert_eq!(
        (points["returned"].as_i64(), points["clawed_back"].as_i64()),
        (Some(500), Some(earned_with_points)),
        "{points}"
    );
    assert_eq!(member(&app, &auth, survivor).await["points_balance"], 100 + held + 500 - earned_with_points);
    assert_eq!(member(&app, &auth, merged).await["points_balance"], 0);
    verify_passes(&app);
}

#[tokio::test]
async fn a_manager_adjusts_points_by_hand_with_a_reason_audited() {
    let (app, _clock, auth) = app_at("2026-06-01T04:00:00Z").await;
    let id = app.create_customer(&auth, json!({"name": "周杰", "phone": "13800001041"})).await["id"]
        .as_i64()
        .unwrap();
    let path = format!("/api/v1/members/{id}/points-adjustments");
    // An opening balance carried over from the old system, expiring when it did there.
    let opening = json!({"points": 500, "reason": "旧系统积分迁移", "expires_at": "2027-03-31T15:59:59Z"});
    let credited = app.post_keyed(&auth, &path, "adjust-0001", opening.clone()).await;
    assert_eq!(credited.status, StatusCode::CREATED, "{}", credited.text);
    assert_eq!(
        (credited.body["points"].as_i64(), credited.body["balance_after"].as_i64()),
        (Some(500), Some(500)),
        "{}",
        credited.text
    );
    let again = app.post_keyed(&auth, &path, "adjust-0001", opening).await;
    assert_eq!(again.headers["idempotent-replayed"], "true");
    assert_eq!(again.body["operation_id"], credited.body["operation_id"]);
    let lots = app.get(&auth, &format!("/api/v1/members/{id}/lots")).await;
    assert_eq!(
        (lots.body[0]["source"].as_str(), lots.body[0]["expires_at"].as_str()),
        (Some("adjustment"), Some("2027-03-31T15:59:59Z")),
        "{}",
        lots.text
    );
    let debited =
        app.post_keyed(&auth, &path, "adjust-0002", json!({"points": -200, "reason": "重复积分更正"})).await;
    assert_eq!(debited.status, StatusCode::CREATED, "{}", debited.text);
    assert_eq!(debited.body["balance_after"], 300, "{}", debited.text);
    let too_much =
        app.post_keyed(&auth, &path, "adjust-0003", json!({"points": -301, "reason": "更正"})).await;
    assert_eq!(
        (too_much.status, too_much.code()),
        (StatusCode::CONFLICT, "points.insufficient"),
        "{}",
        too_much.text
    );

    // Bad input names the field; nothing is written.
    let field_code = |answer: &crate::support::Answer| {
        answer.body["errors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|error| error["code"].as_str().unwrap().to_owned())
            .collect::<Vec<_>>()
    };
    for (body, code) in [
        (json!({"points": 0, "reason": "零"}), "points.out_of_range"),
        (json!({"points": 10, "reason": " "}), "required"),
        (
            json!({"points": -10, "reason": "更正", "expires_at": "2027-01-01T00:00:00Z"}),
            "expires_at.not_for_debit",
        ),
        (json!({"points": 10, "reason": "补偿", "expires_at": "2026-05-01T00:00:00Z"}), "expires_at.past"),
    ] {
        let refused = app.post_keyed(&auth, &path, "adjust-0004", body.clone()).await;
        assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY, "{body}: {}", refused.text);
        assert_eq!(field_code(&refused), [code], "{body}: {}", refused.text);
    }
    // A clerk may not; a manager may.
    let clerk = app.staff_session("till", "clerk", None).await;
    let forbidden =
        app.post_keyed(&clerk, &path, "adjust-0005", json!({"points": 10, "reason": "补偿"})).await;
    assert_eq!(
        (forbidden.status, forbidden.body["permission"].as_str()),
        (StatusCode::FORBIDDEN, Some("points.adjust"))
    );
    let manager = app.staff_session("mgr", "manager", None).await;
    let goodwill =
        app.post_keyed(&manager, &path, "adjust-0006", json!({"points": 50, "reason": "投诉补偿"})).await;
    assert_eq!(goodwill.status, StatusCode::CREATED, "{}", goodwill.text);

    let view = member(&app, &auth, id).await;
    // Adjustments do not count toward tiers.
    assert_eq!(
        (view["points_balance"].as_i64(), view["window_points"].as_i64()),
        (Some(350), Some(0)),
        "{view}"
    );
    assert_eq!(
        purposes(&app, &auth, id).await,
        ["points_adjustment", "points_adjustment", "points_adjustment"]
    );
    let log = app.get(&auth, &format!("/api/v1/audit?entity_type=customer&entity_id={id}")).await;
    let adjustments: Vec<(String, i64)> = log.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|entry| entry["action"] == "points.adjust")
        .map(|entry| {
            (entry["actor_name"].as_str().unwrap().to_owned(), entry["after"]["points"].as_i64().unwrap())
        })
        .collect();
    assert_eq!(adjustments.len(), 3, "{}", log.text);
    assert!(
        adjustments.contains(&("mgr".to_owned(), 50)) && adjustments.contains(&("boss".to_owned(), -200)),
        "{adjustments:?}"
    );
    verify_passes(&app);
}
