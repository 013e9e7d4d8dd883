//! Customers over HTTP: masking by role, audited reveals, validation, optimistic locking,
//! search and pagination, timeline, consent, duplicates and merge.

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::support::spawn_app;

#[tokio::test]
async fn personal_data_is_masked_for_a_clerk_and_revealed_to_an_admin_with_an_audit_entry() {
    let app = spawn_app().await;
    let admin = app.admin().await;
    let clerk = app.staff_session("clerk1", "clerk", None).await;
    let customer = app
        .create_customer(
            &clerk,
            json!({"name": "张三", "phone": "+86 138-1234-5678", "email": "Zhang.San@QQ.com", "id_number": "11010519491231002X", "address": "上海市静安区南京西路1号"}),
        )
        .await;
    let id = customer["id"].as_i64().unwrap();
    assert_eq!(customer["phone"], "138****5678");
    assert_eq!(customer["email"], "z***@qq.com");
    assert_eq!(customer["id_number"], "110***********002X");
    assert_eq!(customer["address"], "上海市静安区****");
    assert_eq!(customer["birthday"], "1949-12-31", "filled from the ID number");
    assert_eq!(customer["gender"], "female", "filled from the ID number");

    let refused = app.get(&clerk, &format!("/api/v1/customers/{id}?reveal=true")).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    assert_eq!(refused.body["permission"], "customer.reveal");

    let revealed = app.get(&admin, &format!("/api/v1/customers/{id}?reveal=true")).await;
    assert_eq!(revealed.status, StatusCode::OK, "{}", revealed.text);
    assert_eq!(revealed.body["phone"], "13812345678");
    assert_eq!(revealed.body["email"], "zhang.san@qq.com");
    assert_eq!(revealed.body["id_number"], "11010519491231002X");
    assert_eq!(revealed.body["pii_revealed"], true);

    let audit = app.get(&admin, &format!("/api/v1/audit?action=customer.reveal&entity_id={id}")).await;
    let entries = audit.body["items"].as_array().unwrap();
    assert_eq!(entries.len(), 1, "{}", audit.text);
    assert_eq!(entries[0]["actor_name"], "admin");
    assert_eq!(entries[0]["after"]["revealed_fields"], json!(["phone", "email", "id_number", "address"]));
}

#[tokio::test]
async fn every_invalid_field_is_reported_with_its_name_and_nothing_is_written() {
    let app = spawn_app().await;
    let admin = app.admin().await;
    let answer = app
        .post(&admin, "/api/v1/customers", json!({"name": "李四", "phone": "12345", "email": "nope", "birthday": "1990-02-30", "consents": {"fax": true}}))
        .await;
    assert_eq!(answer.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(answer.is_problem());
    assert_eq!(answer.code(), "validation.failed");
    assert_eq!(answer.body["field"], "birthday");
    let fields: Vec<&str> = answer.body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|error| error["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, vec!["birthday", "phone", "email", "consents"]);
    let listed = app.get(&admin, "/api/v1/customers").await;
    assert_eq!(listed.body["items"].as_array().unwrap().len(), 0);
}

#[tokio::test]
async fn updates_with_a_stale_version_are_refused_and_null_clears_a_field() {
    let app = spawn_app().await;
    let admin = app.admin().await;
    let customer = app
        .create_customer(
            &admin,
            json!({"name": "王五", "phone": "13900002222", "occupation": "教师", "tags": ["vip"]}),
        )
        .await;
    let id = customer["id"].as_i64().unwrap();
    let first = app
        .raw(
            app.client
                .patch(app.url(&format!("/api/v1/customers/{id}")))
                .header("cookie", cookie(&admin))
                .header("x-csrf-token", csrf(&admin))
                .header("if-match", "\"v1\"")
                .json(&json!({"occupation": null, "tags": ["vip", "咖啡控"], "city": "杭州"})),
        )
        .await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.text);
    assert_eq!(first.body["occupation"], serde_json::Value::Null);
    assert_eq!(first.body["tags"], json!(["vip", "咖啡控"]));
    assert_eq!(first.body["version"], 2);
    assert_eq!(first.headers.get("etag").unwrap(), "\"v2\"");
    let stale = app
        .raw(
            app.client
                .patch(app.url(&format!("/api/v1/customers/{id}")))
                .header("cookie", cookie(&admin))
                .header("x-csrf-token", csrf(&admin))
                .header("if-match", "\"v1\"")
                .json(&json!({"city": "苏州"})),
        )
        .await;
    assert_eq!(stale.status, StatusCode::PRECONDITION_FAILED);
    assert_eq!(stale.code(), "version.stale");
    assert_eq!(stale.body["current_version"], 2);
    let bad = app.patch(&admin, &format!("/api/v1/customers/{id}"), json!({"phone": "1"})).await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(bad.body["field"], "phone");
}

fn cookie(auth: &crate::support::Auth) -> String {
    match auth {
        crate::support::Auth::Session { cookie, .. } => cookie.clone(),
        _ => String::new(),
    }
}

fn csrf(auth: &crate::support::Auth) -> String {
    match auth {
        crate::support::Auth::Session { csrf, .. } => csrf.clone(),
        _ => String::new(),
    }
}

#[tokio::test]
async fn search_by_phone_name_and_tag_with_stable_cursor_pages() {
    let app = spawn_app().await;
    let admin = app.admin().await;
    for index in 0..7 {
        app.create_customer(&admin, json!({"name": format!("王{index}"), "phone": format!("1380000{index:04}"), "tags": if index % 2 == 0 { json!(["vip"]) } else { json!([]) }}))
            .await;
    }
    app.create_customer(&admin, json!({"name": "李雷", "phone": "13900009999"})).await;

    let by_phone = app.get(&admin, "/api/v1/customers?q=138%200000%200003").await;
    let items = by_phone.body["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{}", by_phone.text);
    assert_eq!(items[0]["name"], "王3");

    let mut names = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(cursor) => format!("/api/v1/customers?name=王&limit=3&cursor={cursor}"),
            None => "/api/v1/customers?name=王&limit=3".to_owned(),
        };
        let page = app.get(&admin, &path).await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.text);
        names.extend(
            page.body["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|item| item["name"].as_str().unwrap().to_owned()),
        );
        match page.body["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    assert_eq!(names, (0..7).map(|index| format!("王{index}")).collect::<Vec<_>>());

    let tagged = app.get(&admin, "/api/v1/customers?tag=vip&limit=200").await;
    assert_eq!(tagged.body["items"].as_array().unwrap().len(), 4);
    let garbage = app.get(&admin, "/api/v1/customers?cursor=%%%").await;
    assert_eq!(garbage.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(garbage.body["field"], "cursor");
}

#[tokio::test]
async fn store_bound_clerks_list_their_store_but_find_any_member_by_phone() {
    let app = spawn_app().await;
    let shanghai = app.add_store("SH001").await;
    let beijing = app.add_store("BJ001").await;
    let admin = app.admin().await;
    app.create_customer(&admin, json!({"name": "上海客", "phone": "13811110001", "home_store_id": shanghai}))
        .await;
    app.create_customer(&admin, json!({"name": "北京客", "phone": "13811110002", "home_store_id": beijing}))
        .await;
    let clerk = app.staff_session("sh.clerk", "clerk", Some(shanghai)).await;
    let listed = app.get(&clerk, "/api/v1/customers").await;
    let names: Vec<&str> =
        listed.body["items"].as_array().unwrap().iter().map(|item| item["name"].as_str().unwrap()).collect();
    assert_eq!(names, vec!["上海客"]);
    let other_store = app.get(&clerk, &format!("/api/v1/customers?store_id={beijing}")).await;
    assert_eq!(other_store.status, StatusCode::FORBIDDEN);
    let visiting = app.get(&clerk, "/api/v1/customers?phone=13811110002").await;
    assert_eq!(visiting.body["items"][0]["name"], "北京客");
}

#[tokio::test]
async fn events_purchases_and_consents_build_the_timeline() {
    let app = spawn_app().await;
    let admin = app.admin().await;
    let customer = app
        .create_customer(&admin, json!({"name": "陈七", "phone": "13700003333", "consents": {"sms": true}}))
        .await;
    let id = customer["id"].as_i64().unwrap();
    assert_eq!(customer["consents"][0]["channel"], "sms");

    let visit = app.post(&admin, &format!("/api/v1/customers/{id}/events"), json!({"kind": "visit", "channel": "store", "occurred_at": "2026-01-02 10:00:00", "detail": {"note": "asked about gold card"}})).await;
    assert_eq!(visit.status, StatusCode::CREATED, "{}", visit.text);
    let call = app
        .post(
            &admin,
            &format!("/api/v1/customers/{id}/events"),
            json!({"kind": "call", "channel": "phone", "occurred_at": "2026-01-03T09:00:00+08:00"}),
        )
        .await;
    assert_eq!(call.status, StatusCode::CREATED);
    let purchase = json!({"customer_id": id, "occurred_at": "2026-01-02 12:30:00", "amount_minor": 8800, "category": "餐饮", "external_id": "POS-1-0001"});
    let first = app.post(&admin, "/api/v1/purchases", purchase.clone()).await;
    assert_eq!(first.status, StatusCode::CREATED, "{}", first.text);
    let resent = app.post(&admin, "/api/v1/purchases", purchase.clone()).await;
    assert_eq!(resent.status, StatusCode::OK, "a re-sent purchase is not stored twice");
    assert_eq!(resent.body["purchase"]["id"], first.body["purchase"]["id"]);
    let changed = app.post(&admin, "/api/v1/purchases", json!({"customer_id": id, "occurred_at": "2026-01-02 12:30:00", "amount_minor": 9900, "external_id": "POS-1-0001"})).await;
    assert_eq!(changed.status, StatusCode::CONFLICT);
    assert_eq!(changed.code(), "purchase.external_id_reused");

    let timeline = app.get(&admin, &format!("/api/v1/customers/{id}/timeline?limit=2")).await;
    let items = timeline.body["items"].as_array().unwrap();
    assert_eq!(items[0]["kind"], "call");
    assert_eq!(items[1]["type"], "purchase");
    assert_eq!(items[1]["amount_minor"], 8800);
    let next = timeline.body["next_cursor"].as_str().unwrap();
    let rest = app.get(&admin, &format!("/api/v1/customers/{id}/timeline?limit=2&cursor={next}")).await;
    let rest_items = rest.body["items"].as_array().unwrap();
    assert_eq!(rest_items.len(), 1);
    assert_eq!(rest_items[0]["kind"], "visit");
    assert_eq!(rest_items[0]["occurred_at"], "2026-01-02T02:00:00Z", "local times are read in Asia/Shanghai");

    let withdrawn = app
        .request(
            &admin,
            Method::PUT,
            &format!("/api/v1/customers/{id}/consents/sms"),
            Some(json!({"granted": false, "source": "sms_reply"})),
        )
        .await;
    assert_eq!(withdrawn.status, StatusCode::OK, "{}", withdrawn.text);
    assert_eq!(withdrawn.body[0]["granted"], false);
}

#[tokio::test]
async fn duplicates_are_found_and_merged_into_one_customer() {
    let app = spawn_app().await;
    let admin = app.admin().await;
    let store_customer = app
        .create_customer(
            &admin,
            json!({"name": "周八", "phone": "13600004444", "tags": ["vip"], "source_channel": "store"}),
        )
        .await;
    let wechat = app.post(&admin, "/api/v1/customers", json!({"phone": "136 0000 4444", "email": "zhou@163.com", "tags": ["wechat"], "source_channel": "wechat"})).await;
    assert_eq!(wechat.status, StatusCode::CREATED);
    let survivor = store_customer["id"].as_i64().unwrap();
    assert_eq!(wechat.body["possible_duplicates"], json!([survivor]));
    let merged = wechat.body["customer"]["id"].as_i64().unwrap();
    app.post(
        &admin,
        "/api/v1/purchases",
        json!({"customer_id": merged, "occurred_at": "2026-03-01 10:00", "amount_minor": 1200}),
    )
    .await;

    let groups = app.get(&admin, "/api/v1/customers/duplicates").await;
    assert_eq!(groups.body[0]["field"], "phone", "{}", groups.text);
    assert_eq!(groups.body[0]["customers"].as_array().unwrap().len(), 2);

    let clerk = app.staff_session("clerk1", "clerk", None).await;
    let refused =
        app.post(&clerk, &format!("/api/v1/customers/{survivor}/merge"), json!({"merge_id": merged})).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);

    let outcome =
        app.post(&admin, &format!("/api/v1/customers/{survivor}/merge"), json!({"merge_id": merged})).await;
    assert_eq!(outcome.status, StatusCode::OK, "{}", outcome.text);
    assert_eq!(outcome.body["moved_purchases"], 1);
    assert_eq!(outcome.body["survivor"]["tags"], json!(["vip", "wechat"]));
    assert_eq!(outcome.body["survivor"]["email"], "z***@163.com", "gaps are filled from the merged customer");
    let gone = app.get(&admin, &format!("/api/v1/customers/{merged}")).await;
    assert_eq!(gone.body["status"], "merged");
    assert_eq!(gone.body["merged_into_id"], survivor);
    let purchases = app.get(&admin, &format!("/api/v1/customers/{survivor}/purchases")).await;
    assert_eq!(purchases.body["items"].as_array().unwrap().len(), 1);
    let by_phone = app.get(&admin, "/api/v1/customers?phone=13600004444").await;
    assert_eq!(by_phone.body["items"].as_array().unwrap().len(), 1, "the merged record no longer matches");
    let audit = app.get(&admin, &format!("/api/v1/audit?action=customer.merge&entity_id={survivor}")).await;
    assert_eq!(audit.body["items"][0]["after"]["merged_id"], merged);
    let again =
        app.post(&admin, &format!("/api/v1/customers/{survivor}/merge"), json!({"merge_id": merged})).await;
    assert_eq!(again.status, StatusCode::CONFLICT);
}

#[tokio::test]
async fn steady_lookups_lists_and_timelines_never_make_sqlite_plan_again() {
    let app = spawn_app().await;
    let store = app.add_store("SH001").await;
    let admin = app.admin().await;
    let mut ids = Vec::new();
    for index in 0..4 {
        let customer = app
            .create_customer(
                &admin,
                json!({"name": format!("赵{index}"), "phone": format!("1391111{index:04}"), "home_store_id": store, "tags": ["vip"], "consents": {"sms": true}}),
            )
            .await;
        let id = customer["id"].as_i64().unwrap();
        app.post(
            &admin,
            &format!("/api/v1/customers/{id}/events"),
            json!({"kind": "visit", "channel": "store"}),
        )
        .await;
        ids.push(id);
    }
    let reads = |index: usize| {
        let id = ids[index];
        vec![
            format!("/api/v1/customers?phone=1391111{index:04}"),
            format!("/api/v1/customers?store_id={store}&limit=2"),
            "/api/v1/customers?tag=vip&limit=3".to_owned(),
            format!("/api/v1/customers/{id}"),
            format!("/api/v1/customers/{id}/timeline"),
        ]
    };
    // The first round prepares every statement; later rounds with other values reuse them.
    for path in reads(0) {
        assert_eq!(app.get(&admin, &path).await.status, StatusCode::OK, "{path}");
    }
    let before = app.services.database().sqlite_reprepares();
    for index in 1..4 {
        for path in reads(index) {
            assert_eq!(app.get(&admin, &path).await.status, StatusCode::OK, "{path}");
        }
    }
    assert_eq!(
        app.services.database().sqlite_reprepares(),
        before,
        "a statement was planned again for a new value (write the equality as `IN ($n)`)"
    );
    let metrics = app.raw(app.client.get(app.url("/metrics"))).await;
    assert!(metrics.text.contains("cardcrm_sqlite_statement_reprepares_total"), "{}", metrics.text);
}
