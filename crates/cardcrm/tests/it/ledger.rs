//! Stored value over HTTP: concurrency, idempotency, replacement, statements, checkout and
//! refusals, on whichever database the suite runs against.

use std::collections::HashMap;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::{issue_card, spawn_app, stored_value_product, top_up};

async fn balance(app: &crate::support::TestApp, auth: &crate::support::Auth, card_id: i64) -> Value {
    let answer = app.get(auth, &format!("/api/v1/cards/{card_id}/balance")).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
    answer.body
}

fn verify_ok(app: &crate::support::TestApp) {
    let output = app.cli(&["ledger", "verify"]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "ledger verify failed: {stdout} {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("ledger verified: OK"), "{stdout}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_hundred_concurrent_spends_of_ten_against_one_thousand_succeed_exactly_one_hundred_times() {
    let app = spawn_app().await;
    let admin = app.admin().await;
    stored_value_product(&app, &admin, "SV", json!({})).await;
    let (card_id, _, _) = issue_card(&app, &admin, "SV", "13800138000").await;
    top_up(&app, &admin, card_id, 100_000, "load-0001").await;

    let spends = (0..200).map(|index| {
        let (app, admin) = (&app, &admin);
        async move {
            let key = format!("spend-{index:04}");
            let answer = app
                .post_keyed(
                    admin,
                    &format!("/api/v1/cards/{card_id}/spends"),
                    &key,
                    json!({"amount_minor": 1_000}),
                )
                .await;
            (key, answer)
        }
    });
    let answers = futures_util::future::join_all(spends).await;
    let mut first: HashMap<String, (StatusCode, Value)> = HashMap::new();
    let (mut done, mut refused) = (0, 0);
    for (key, answer) in answers {
        match answer.status {
            StatusCode::CREATED => done += 1,
            StatusCode::CONFLICT => {
                assert_eq!(answer.code(), "balance.insufficient", "{}", answer.text);
                refused += 1;
            }
            other => panic!("spend {key}: unexpected {other}: {}", answer.text),
        }
        first.insert(key, (answer.status, answer.body));
    }
    assert_eq!((done, refused), (100, 100));
    assert_eq!(balance(&app, &admin, card_id).await["total_minor"], 0);

    // Every request again with its key: the same answers, nothing moves.
    for (key, (status, body)) in &first {
        let answer = app
            .post_keyed(
                &admin,
                &format!("/api/v1/cards/{card_id}/spends"),
                key,
                json!({"amount_minor": 1_000}),
            )
            .await;
        assert_eq!(answer.status, *status, "{key}: {}", answer.text);
        if *status == StatusCode::CREATED {
            assert_eq!(answer.headers["idempotent-replayed"], "true");
            assert_eq!(answer.body, *body);
        } else {
            assert_eq!(answer.code(), "balance.insufficient");
        }
    }
    assert_eq!(balance(&app, &admin, card_id).await["total_minor"], 0);
    let history = app.get(&admin, &format!("/api/v1/cards/{card_id}/history?limit=200")).await;
    assert_eq!(history.body["items"].as_array().map(Vec::len), Some(101), "one top-up and 100 spends");

    // A key reused for another request is refused, and still nothing moves.
    let reused = app
        .post_keyed(
            &admin,
            &format!("/api/v1/cards/{card_id}/spends"),
            "spend-0000",
            json!({"amount_minor": 2_000}),
        )
        .await;
    assert_eq!(reused.status, StatusCode::CONFLICT);
    assert_eq!(reused.code(), "idempotency_key.reused");
    let reused_top_up = app
        .post_keyed(
            &admin,
            &format!("/api/v1/cards/{card_id}/top-ups"),
            "load-0001",
            json!({"amount_minor": 5, "payment_method": "cash"}),
        )
        .await;
    assert_eq!(reused_top_up.code(), "idempotency_key.reused");
    assert_eq!(balance(&app, &admin, card_id).await["total_minor"], 0);
    verify_ok(&app);
}

#[tokio::test]
async fn a_repeated_top_up_is_answered_from_its_key_even_after_a_restart_of_the_services() {
    let app = spawn_app().await;
    let admin = app.admin().await;
    stored_value_product(
        &app,
        &admin,
        "SV",
        json!({"bonus_rules": [{"min_top_up_minor": 100_000, "bonus_minor": 10_000}]}),
    )
    .await;
    let (card_id, _, _) = issue_card(&app, &admin, "SV", "13800138001").await;
    let first = top_up(&app, &admin, card_id, 100_000, "0f8fad5b-d9cb-469f-a165-70867728950e").await;
    assert_eq!(
        (first["paid_minor"].as_i64(), first["bonus_minor"].as_i64()),
        (Some(100_000), Some(10_000)),
        "充1000送100"
    );
    // A second server over the same database (a restart) answers from the stored key.
    let again = crate::support::spawn_app_on(&app).await;
    let answer = again
        .post_keyed(
            &admin,
            &format!("/api/v1/cards/{card_id}/top-ups"),
            "0f8fad5b-d9cb-469f-a165-70867728950e",
            json!({"amount_minor": 100_000, "payment_method": "cash"}),
        )
        .await;
    assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.text);
    assert_eq!(answer.headers["idempotent-replayed"], "true");
    assert_eq!(answer.body, first);
    assert_eq!(balance(&app, &admin, card_id).await["total_minor"], 110_000);
}

#[tokio::test]
async fn a_lost_card_is_replaced_with_its_balance_and_tier_and_the_old_card_cannot_pay() {
    let app = spawn_app().await;
    let admin = app.admin().await;
    stored_value_product(&app, &admin, "GOLD", json!({"default_tier": "gold", "bonus_rules": [{"min_top_up_minor": 100_000, "bonus_minor": 10_000}]})).await;
    let (card_id, customer_id, _) = issue_card(&app, &admin, "GOLD", "13800138002").await;
    top_up(&app, &admin, card_id, 100_000, "load-lost-1").await;
    let spend = app
        .post_keyed(
            &admin,
            &format!("/api/v1/cards/{card_id}/spends"),
            "pay-lost-1",
            json!({"amount_minor": 11_000}),
        )
        .await;
    assert_eq!(spend.status, StatusCode::CREATED, "{}", spend.text);
    let before = balance(&app, &admin, card_id).await;
    assert_eq!(before["total_minor"], 99_000);

    let frozen =
        app.post(&admin, &format!("/api/v1/cards/{card_id}/freeze"), json!({"reason": "lost"})).await;
    assert_eq!(frozen.status, StatusCode::OK, "{}", frozen.text);
    assert_eq!(frozen.body["status"], "frozen");
    let refused = app
        .post_keyed(
            &admin,
            &format!("/api/v1/cards/{card_id}/spends"),
            "pay-lost-2",
            json!({"amount_minor": 100}),
        )
        .await;
    assert_eq!((refused.status, refused.code()), (StatusCode::CONFLICT, "card.frozen"), "{}", refused.text);

    let replaced = app
        .post_keyed(&admin, &format!("/api/v1/cards/{card_id}/replace"), "replace-lost-1", json!({}))
        .await;
    assert_eq!(replaced.status, StatusCode::CREATED, "{}", replaced.text);
    let new_id = replaced.body["new_card"]["id"].as_i64().expect("new card");
    assert_eq!(replaced.body["new_card"]["tier"], "gold");
    assert_eq!(replaced.body["new_card"]["customer_id"], customer_id);
    assert_eq!(replaced.body["old_card"]["status"], "replaced");
    let after = balance(&app, &admin, new_id).await;
    assert_eq!(
        (after["paid_minor"].clone(), after["bonus_minor"].clone()),
        (before["paid_minor"].clone(), before["bonus_minor"].clone())
    );
    assert_eq!(balance(&app, &admin, card_id).await["total_minor"], 0);

    let old_pays = app
        .post_keyed(
            &admin,
            &format!("/api/v1/cards/{card_id}/spends"),
            "pay-lost-3",
            json!({"amount_minor": 100}),
        )
        .await;
    assert_eq!(
        (old_pays.status, old_pays.code()),
        (StatusCode::CONFLICT, "card.replaced"),
        "{}",
        old_pays.text
    );
    let new_pays = app
        .post_keyed(
            &admin,
            &format!("/api/v1/cards/{new_id}/spends"),
            "pay-lost-4",
            json!({"amount_minor": 100}),
        )
        .await;
    assert_eq!(new_pays.status, StatusCode::CREATED, "{}", new_pays.text);
    // A refund of a payment made with the old card goes to the card that replaced it.
    let spend_id = spend.body["id"].as_i64().expect("operation id");
    let refund = app
        .post_keyed(&admin, &format!("/api/v1/operations/{spend_id}/refunds"), "refund-lost-1", json!({}))
        .await;
    assert_eq!(refund.status, StatusCode::CREATED, "{}", refund.text);
    assert_eq!(refund.body["card_id"], new_id);
    assert_eq!(balance(&app, &admin, new_id).await["total_minor"], 99_000 - 100 + 11_000);
    verify_ok(&app);
}

#[tokio::test]
async fn a_statement_reconciles_and_renders_as_csv_and_html() {
    let app = spawn_app().await;
    let admin = app.admin().await;
    stored_value_product(
        &app,
        &admin,
        "SV",
        json!({"bonus_rules": [{"min_top_up_minor": 50_000, "bonus_minor": 5_000}]}),
    )
    .await;
    let (card_id, _, _) = issue_card(&app, &admin, "SV", "13800138003").await;
    let (second_id, _, _) = issue_card(&app, &admin, "SV", "13800138004").await;
    top_up(&app, &admin, card_id, 50_000, "st-load-1").await;
    top_up(&app, &admin, second_id, 20_000, "st-load-2").await;
    let pay = app
        .post_keyed(
            &admin,
            &format!("/api/v1/cards/{card_id}/spends"),
            "st-pay-1",
            json!({"amount_minor": 22_000}),
        )
        .await;
    let pay_id = pay.body["id"].as_i64().expect("payment");
    let refund = app
        .post_keyed(
            &admin,
            &format!("/api/v1/operations/{pay_id}/refunds"),
            "st-refund-1",
            json!({"amount_minor": 11_000}),
        )
        .await;
    assert_eq!(refund.status, StatusCode::CREATED, "{}", refund.text);
    // The refund goes back in the proportion paid: 20,000 of 22,000 paid money, 2,000 bonus.
    assert_eq!(
        (refund.body["paid_minor"].as_i64(), refund.body["bonus_minor"].as_i64()),
        (Some(10_000), Some(1_000))
    );
    let too_much = app
        .post_keyed(
            &admin,
            &format!("/api/v1/operations/{pay_id}/refunds"),
            "st-refund-2",
            json!({"amount_minor": 11_001}),
        )
        .await;
    assert_eq!(
        (too_much.status, too_much.code()),
        (StatusCode::CONFLICT, "refund.exceeds_remaining"),
        "{}",
        too_much.text
    );

    let today =
        jiff::Zoned::now().with_time_zone(jiff::tz::TimeZone::get("Asia/Shanghai").expect("zone")).date();
    let from = today.checked_sub(jiff::ToSpan::days(3)).expect("date");
    let path = format!("/api/v1/cards/{card_id}/statement?from={from}&to={today}");
    let statement = app.get(&admin, &path).await;
    assert_eq!(statement.status, StatusCode::OK, "{}", statement.text);
    let body = &statement.body;
    let lines = body["lines"].as_array().expect("lines");
    assert_eq!(lines.len(), 3);
    let sum: i64 = lines.iter().map(|line| line["change_minor"].as_i64().unwrap_or(0)).sum();
    assert_eq!(
        body["opening"]["total_minor"].as_i64().unwrap() + sum,
        body["closing"]["total_minor"].as_i64().unwrap()
    );
    assert_eq!(body["closing"]["total_minor"], balance(&app, &admin, card_id).await["total_minor"]);
    assert_eq!(body["closing"]["total_minor"], 55_000 - 22_000 + 11_000);
    // A period before the card existed is empty and balanced.
    let early =
        app.get(&admin, &format!("/api/v1/cards/{card_id}/statement?from=2020-01-01&to=2020-01-31")).await;
    assert_eq!(
        (early.body["opening"]["total_minor"].as_i64(), early.body["closing"]["total_minor"].as_i64()),
        (Some(0), Some(0))
    );

    let csv = app.get(&admin, &format!("{path}&format=csv")).await;
    assert!(csv.content_type.starts_with("text/csv"), "{}", csv.content_type);
    assert_eq!(csv.text.lines().count(), 1 + 1 + 3 + 1, "{}", csv.text);
    assert!(csv.text.lines().last().is_some_and(|line| line.ends_with(",440.00")), "{}", csv.text);
    let html = app.get(&admin, &format!("{path}&format=html")).await;
    assert!(html.content_type.starts_with("text/html"));
    assert!(html.text.contains("期末余额") && html.text.contains("440.00"), "{}", html.text);
    let reversed =
        app.get(&admin, &format!("/api/v1/cards/{card_id}/statement?from={today}&to={from}")).await;
    assert_eq!((reversed.status, reversed.code()), (StatusCode::UNPROCESSABLE_ENTITY, "validation.failed"));

    let receipt = app.get(&admin, &format!("/api/v1/operations/{}/receipt", refund.body["id"])).await;
    assert!(receipt.text.contains("退款 Refund") && receipt.text.contains("110.00"), "{}", receipt.text);

    let report = app.get(&admin, &format!("/api/v1/ledger/reconciliation?date={today}")).await;
    assert_eq!(report.status, StatusCode::OK, "{}", report.text);
    assert_eq!(report.body["balanced"], true, "{}", report.text);
    assert_eq!(report.body["total_closing"]["total_minor"], 44_000 + 20_000);
    verify_ok(&app);
}

#[tokio::test]
async fn checkout_applies_the_tier_discount_pays_from_the_card_and_refunds_exactly() {
    let app = spawn_app().await;
    let admin = app.admin().await;
    let store = app.add_store("SH01").await;
    stored_value_product(&app, &admin, "GOLD", json!({"default_tier": "gold"})).await;
    let gold = app.patch(&admin, "/api/v1/card-tiers/gold", json!({"discount_bp": 1_000})).await;
    assert_eq!(gold.status, StatusCode::OK, "{}", gold.text);
    let (card_id, customer_id, _) = issue_card(&app, &admin, "GOLD", "13800138005").await;
    top_up(&app, &admin, card_id, 10_000, "co-load-1").await;
    let basket = json!({
        "card_id": card_id, "store_id": store,
        "lines": [{"amount_minor": 8_000, "category": "饮品", "name": "拿铁"}, {"amount_minor": 4_000, "category": "甜点", "name": "蛋糕"}],
        "stored_value_minor": 6_000, "external_method": "wechat_pay"
    });
    let receipt = app.post_keyed(&admin, "/api/v1/checkouts", "checkout-0001", basket.clone()).await;
    assert_eq!(receipt.status, StatusCode::CREATED, "{}", receipt.text);
    assert_eq!(receipt.body["subtotal_minor"], 12_000);
    assert_eq!(receipt.body["discount_minor"], 1_200, "gold takes 10% off");
    assert_eq!(receipt.body["total_minor"], 10_800);
    assert_eq!(receipt.body["stored_value_paid_minor"], 6_000);
    assert_eq!(receipt.body["external_minor"], 4_800);
    assert_eq!(balance(&app, &admin, card_id).await["total_minor"], 4_000);
    let purchases = app.get(&admin, &format!("/api/v1/customers/{customer_id}/purchases")).await;
    assert_eq!(purchases.body["items"].as_array().map(Vec::len), Some(2), "{}", purchases.text);
    // The same basket again with its key: the same receipt, nothing paid twice.
    let again = app.post_keyed(&admin, "/api/v1/checkouts", "checkout-0001", basket.clone()).await;
    assert_eq!((again.status, again.body.clone()), (StatusCode::CREATED, receipt.body.clone()));
    assert_eq!(balance(&app, &admin, card_id).await["total_minor"], 4_000);

    let operation_id = receipt.body["operation_id"].as_i64().expect("operation");
    let refund = app
        .post_keyed(&admin, &format!("/api/v1/operations/{operation_id}/refunds"), "co-refund-1", json!({}))
        .await;
    assert_eq!(refund.status, StatusCode::CREATED, "{}", refund.text);
    assert_eq!(refund.body["amount_minor"], 10_800);
    assert_eq!(balance(&app, &admin, card_id).await["total_minor"], 10_000);
    let twice = app
        .post_keyed(
            &admin,
            &format!("/api/v1/operations/{operation_id}/refunds"),
            "co-refund-2",
            json!({"amount_minor": 1}),
        )
        .await;
    assert_eq!(twice.code(), "refund.exceeds_remaining", "{}", twice.text);
    verify_ok(&app);
}

#[tokio::test]
async fn bad_requests_are_refused_with_a_stable_code_and_move_nothing() {
    let app = spawn_app().await;
    let admin = app.admin().await;
    stored_value_product(
        &app,
        &admin,
        "SV",
        json!({"pin_required_above_minor": 50_000, "top_up_max_minor": 1_000_000}),
    )
    .await;
    let (card_id, _, _) = issue_card(&app, &admin, "SV", "13800138006").await;
    top_up(&app, &admin, card_id, 100_000, "bad-load-1").await;
    let spend_path = format!("/api/v1/cards/{card_id}/spends");

    let no_key = app.post(&admin, &spend_path, json!({"amount_minor": 100})).await;
    assert_eq!((no_key.status, no_key.code()), (StatusCode::BAD_REQUEST, "idempotency_key.required"));
    let bad_key = app.post_keyed(&admin, &spend_path, "short", json!({"amount_minor": 100})).await;
    assert_eq!(bad_key.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", bad_key.text);
    let unknown =
        app.post_keyed(&admin, "/api/v1/cards/999999/spends", "bad-0001", json!({"amount_minor": 100})).await;
    assert_eq!(
        (unknown.status, unknown.code()),
        (StatusCode::NOT_FOUND, "card.not_found"),
        "{}",
        unknown.text
    );
    for (amount, key) in [(0, "bad-0002"), (-5, "bad-0003"), (2_000_000_000, "bad-0004")] {
        let answer = app.post_keyed(&admin, &spend_path, key, json!({"amount_minor": amount})).await;
        assert_eq!(answer.status, StatusCode::UNPROCESSABLE_ENTITY, "{amount}: {}", answer.text);
        assert!(answer.is_problem());
    }
    let over_product_max = app
        .post_keyed(
            &admin,
            &format!("/api/v1/cards/{card_id}/top-ups"),
            "bad-0005",
            json!({"amount_minor": 1_000_001, "payment_method": "cash"}),
        )
        .await;
    assert_eq!(over_product_max.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", over_product_max.text);
    let currency = app
        .post_keyed(&admin, &spend_path, "bad-0006", json!({"amount_minor": 100, "currency": "USD"}))
        .await;
    assert_eq!(
        (currency.status, currency.code()),
        (StatusCode::CONFLICT, "currency.mismatch"),
        "{}",
        currency.text
    );
    let no_pin_set = app.post_keyed(&admin, &spend_path, "bad-0007", json!({"amount_minor": 100_001})).await;
    assert_eq!(no_pin_set.code(), "pin.not_set", "{}", no_pin_set.text);
    let set_pin = app
        .request(
            &admin,
            reqwest::Method::PUT,
            &format!("/api/v1/cards/{card_id}/pin"),
            Some(json!({"pin": "284913"})),
        )
        .await;
    assert_eq!(set_pin.status, StatusCode::OK, "{}", set_pin.text);
    let no_pin = app.post_keyed(&admin, &spend_path, "bad-0015", json!({"amount_minor": 60_000})).await;
    assert_eq!(
        (no_pin.status, no_pin.code()),
        (StatusCode::UNPROCESSABLE_ENTITY, "validation.failed"),
        "{}",
        no_pin.text
    );
    let wrong_pin = app
        .post_keyed(&admin, &spend_path, "bad-0008", json!({"amount_minor": 60_000, "pin": "111222"}))
        .await;
    assert_eq!(
        (wrong_pin.status, wrong_pin.code()),
        (StatusCode::CONFLICT, "pin.wrong"),
        "{}",
        wrong_pin.text
    );
    let short = app
        .post_keyed(&admin, &spend_path, "bad-0009", json!({"amount_minor": 100_001, "pin": "284913"}))
        .await;
    assert_eq!(
        (short.status, short.code()),
        (StatusCode::CONFLICT, "balance.insufficient"),
        "{}",
        short.text
    );
    let unknown_field =
        app.post_keyed(&admin, &spend_path, "bad-0010", json!({"amount_minor": 100, "amount": 5})).await;
    assert_eq!(unknown_field.status, StatusCode::BAD_REQUEST);

    app.post(&admin, &format!("/api/v1/cards/{card_id}/freeze"), json!({})).await;
    let frozen = app.post_keyed(&admin, &spend_path, "bad-0011", json!({"amount_minor": 100})).await;
    assert_eq!((frozen.status, frozen.code()), (StatusCode::CONFLICT, "card.frozen"));
    assert_eq!(balance(&app, &admin, card_id).await["total_minor"], 100_000, "nothing moved");
    let history = app.get(&admin, &format!("/api/v1/cards/{card_id}/history")).await;
    assert_eq!(history.body["items"].as_array().map(Vec::len), Some(1));

    // Permissions: a clerk may pay but not refund or close; an analyst may not pay.
    let clerk = app.staff_session("clerk1", "clerk", None).await;
    let analyst = app.staff_session("analyst1", "analyst", None).await;
    let refund = app.post_keyed(&clerk, "/api/v1/operations/1/refunds", "bad-0012", json!({})).await;
    assert_eq!(refund.status, StatusCode::FORBIDDEN);
    let close =
        app.post_keyed(&clerk, &format!("/api/v1/cards/{card_id}/close"), "bad-0013", json!({})).await;
    assert_eq!(close.status, StatusCode::FORBIDDEN);
    let pay = app.post_keyed(&analyst, &spend_path, "bad-0014", json!({"amount_minor": 1})).await;
    assert_eq!(pay.status, StatusCode::FORBIDDEN);
    verify_ok(&app);
}

#[tokio::test]
async fn unusual_activity_raises_alerts_that_managers_acknowledge() {
    let app = spawn_app().await;
    let admin = app.admin().await;
    stored_value_product(&app, &admin, "SV", json!({"top_up_max_minor": 5_000_000})).await;
    let (card_id, _, _) = issue_card(&app, &admin, "SV", "13800138007").await;
    top_up(&app, &admin, card_id, 600_000, "alert-load-1").await;
    let alerts = app.get(&admin, "/api/v1/ledger/alerts").await;
    assert_eq!(alerts.status, StatusCode::OK, "{}", alerts.text);
    let items = alerts.body["items"].as_array().expect("items").clone();
    assert_eq!(items.len(), 1, "{}", alerts.text);
    assert_eq!(items[0]["kind"], "large_top_up");
    let clerk = app.staff_session("clerk2", "clerk", None).await;
    assert_eq!(app.get(&clerk, "/api/v1/ledger/alerts").await.status, StatusCode::FORBIDDEN);
    let id = items[0]["id"].as_i64().expect("alert id");
    let acknowledged = app.post(&admin, &format!("/api/v1/ledger/alerts/{id}/acknowledge"), json!({})).await;
    assert_eq!(acknowledged.status, StatusCode::OK, "{}", acknowledged.text);
    assert_eq!(acknowledged.body["acknowledged_by"], "admin");
    assert_eq!(
        app.get(&admin, "/api/v1/ledger/alerts").await.body["items"].as_array().map(Vec::len),
        Some(0)
    );
    assert_eq!(
        app.get(&admin, "/api/v1/ledger/alerts?all=true").await.body["items"].as_array().map(Vec::len),
        Some(1)
    );
}
