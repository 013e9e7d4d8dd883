//! Sign-in, sessions, CSRF, lockout, API tokens, role checks and the audit log, over HTTP.

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::support::{Auth, spawn_app};

#[tokio::test]
async fn login_sets_a_strict_http_only_cookie_and_me_reports_the_role() {
    let app = spawn_app().await;
    let password = app.add_staff("li.na", "clerk", None).await;
    let answer = app
        .raw(
            app.client
                .post(app.url("/api/v1/auth/login"))
                .json(&json!({"username": "LI.NA", "password": password})),
        )
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
    let cookie = answer.headers.get("set-cookie").unwrap().to_str().unwrap().to_owned();
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"), "{cookie}");
    assert!(answer.body.get("session_token").is_none(), "the session token is never in the body");
    let session = app.login("li.na", &password).await;
    let me = app.get(&session, "/api/v1/auth/me").await;
    assert_eq!(me.body["role"], "clerk");
    assert!(me.body["permissions"].as_array().unwrap().iter().all(|permission| permission != "audit.read"));
}

#[tokio::test]
async fn wrong_passwords_lock_the_account_and_say_so() {
    let app = spawn_app().await;
    let password = app.add_staff("zhang.wei", "clerk", None).await;
    for _ in 0..4 {
        let answer = app
            .raw(
                app.client
                    .post(app.url("/api/v1/auth/login"))
                    .json(&json!({"username": "zhang.wei", "password": "wrong password"})),
            )
            .await;
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
        assert_eq!(answer.code(), "auth.invalid_credentials");
    }
    let fifth = app
        .raw(
            app.client
                .post(app.url("/api/v1/auth/login"))
                .json(&json!({"username": "zhang.wei", "password": "wrong password"})),
        )
        .await;
    assert_eq!(fifth.status, StatusCode::LOCKED, "{}", fifth.text);
    assert!(fifth.is_problem());
    let right_but_locked = app
        .raw(
            app.client
                .post(app.url("/api/v1/auth/login"))
                .json(&json!({"username": "zhang.wei", "password": password})),
        )
        .await;
    assert_eq!(right_but_locked.code(), "auth.locked");
    let unknown = app
        .raw(
            app.client
                .post(app.url("/api/v1/auth/login"))
                .json(&json!({"username": "nobody", "password": "whatever it is"})),
        )
        .await;
    assert_eq!(unknown.code(), "auth.invalid_credentials", "unknown users look like wrong passwords");
}

#[tokio::test]
async fn state_changing_requests_with_a_cookie_need_the_csrf_token() {
    let app = spawn_app().await;
    let session = app.admin().await;
    let Auth::Session { cookie, .. } = &session else { unreachable!() };
    let forged = app
        .raw(
            app.client
                .post(app.url("/api/v1/customers"))
                .header("cookie", cookie.as_str())
                .json(&json!({"name": "张三"})),
        )
        .await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
    assert_eq!(forged.code(), "auth.csrf");
    let reading =
        app.raw(app.client.get(app.url("/api/v1/customers")).header("cookie", cookie.as_str())).await;
    assert_eq!(reading.status, StatusCode::OK, "reads need no CSRF token");
    let logout = app.request(&session, Method::POST, "/api/v1/auth/logout", None).await;
    assert_eq!(logout.status, StatusCode::NO_CONTENT);
    let after = app.get(&session, "/api/v1/customers").await;
    assert_eq!(after.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn requests_without_credentials_are_refused_with_a_problem() {
    let app = spawn_app().await;
    for path in ["/api/v1/customers", "/api/v1/audit", "/api/v1/stores", "/api/v1/auth/me"] {
        let answer = app.get(&Auth::None, path).await;
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{path}");
        assert!(answer.is_problem());
        assert_eq!(answer.code(), "auth.required");
    }
    let bad_token = app.get(&Auth::Token("ccrm_not-a-real-token".into()), "/api/v1/customers").await;
    assert_eq!(bad_token.code(), "auth.token_invalid");
}

#[tokio::test]
async fn api_tokens_do_only_what_their_scopes_allow_and_die_when_revoked() {
    let app = spawn_app().await;
    let admin = app.admin().await;
    let created = app
        .post(
            &admin,
            "/api/v1/tokens",
            json!({"name": "POS 1", "scopes": ["customer.read", "transaction.write"]}),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    let token = Auth::Token(created.body["token"].as_str().unwrap().to_owned());
    let token_id = created.body["details"]["id"].as_i64().unwrap();
    assert_eq!(app.get(&token, "/api/v1/customers").await.status, StatusCode::OK);
    let write = app.post(&token, "/api/v1/customers", json!({"name": "王五"})).await;
    assert_eq!(write.status, StatusCode::FORBIDDEN);
    assert_eq!(write.body["permission"], "customer.write");
    let listed = app.get(&admin, "/api/v1/tokens").await;
    assert!(!listed.text.contains(created.body["token"].as_str().unwrap()), "secrets are never listed");

    let clerk = app.staff_session("clerk1", "clerk", None).await;
    let escalation = app.post(&clerk, "/api/v1/tokens", json!({"name": "x", "scopes": ["audit.read"]})).await;
    assert_eq!(escalation.status, StatusCode::FORBIDDEN, "a clerk cannot manage tokens at all");

    let revoked = app.request(&admin, Method::DELETE, &format!("/api/v1/tokens/{token_id}"), None).await;
    assert_eq!(revoked.status, StatusCode::OK, "{}", revoked.text);
    let after = app.get(&token, "/api/v1/customers").await;
    assert_eq!(after.status, StatusCode::UNAUTHORIZED);
    assert_eq!(after.code(), "auth.token_revoked");
}

#[tokio::test]
async fn a_clerk_cannot_read_the_audit_log_an_admin_can_and_it_records_writes() {
    let app = spawn_app().await;
    let admin = app.admin().await;
    let clerk = app.staff_session("clerk1", "clerk", None).await;
    let customer = app.create_customer(&clerk, json!({"name": "赵六", "phone": "13800001111"})).await;

    let refused = app.get(&clerk, "/api/v1/audit").await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    assert_eq!(refused.body["permission"], "audit.read");

    let log =
        app.get(&admin, &format!("/api/v1/audit?entity_type=customer&entity_id={}", customer["id"])).await;
    assert_eq!(log.status, StatusCode::OK, "{}", log.text);
    let entry = &log.body["items"][0];
    assert_eq!(entry["action"], "customer.create");
    assert_eq!(entry["actor_name"], "clerk1");
    assert_eq!(entry["actor_role"], "clerk");
    assert_eq!(entry["after"]["phone"], "138****1111", "the audit log holds personal data only masked");
    assert!(!log.text.contains("13800001111"));
}

#[tokio::test]
async fn managers_manage_lower_ranks_in_their_store_only() {
    let app = spawn_app().await;
    let store = app.add_store("SH001").await;
    let other = app.add_store("BJ001").await;
    let manager = app.staff_session("boss", "manager", Some(store)).await;
    let ok = app
        .post(&manager, "/api/v1/staff", json!({"username": "cashier1", "role": "clerk", "store_id": store}))
        .await;
    assert_eq!(ok.status, StatusCode::CREATED, "{}", ok.text);
    assert!(ok.body["generated_password"].as_str().unwrap().len() >= 20);
    let elsewhere = app
        .post(&manager, "/api/v1/staff", json!({"username": "cashier2", "role": "clerk", "store_id": other}))
        .await;
    assert_eq!(elsewhere.status, StatusCode::FORBIDDEN);
    let peer = app
        .post(&manager, "/api/v1/staff", json!({"username": "boss2", "role": "manager", "store_id": store}))
        .await;
    assert_eq!(peer.status, StatusCode::FORBIDDEN);
    let admin = app.admin().await;
    let me = app.get(&admin, "/api/v1/auth/me").await;
    let admin_id = me.body["id"].as_i64().unwrap();
    let demote_last_admin =
        app.patch(&admin, &format!("/api/v1/staff/{admin_id}"), json!({"role": "clerk"})).await;
    assert_eq!(demote_last_admin.status, StatusCode::CONFLICT);
    assert_eq!(demote_last_admin.code(), "staff.last_admin");
}
