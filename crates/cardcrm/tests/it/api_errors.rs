//! Bad input gets a 4xx problem+json that says what and where; never a 500.

use reqwest::StatusCode;
use serde_json::json;

use crate::support::{Auth, spawn_app, spawn_app_with};

fn session_headers(auth: &Auth) -> (String, String) {
    match auth {
        Auth::Session { cookie, csrf } => (cookie.clone(), csrf.clone()),
        _ => unreachable!(),
    }
}

#[tokio::test]
async fn malformed_json_wrong_types_unknown_and_duplicate_fields() {
    let app = spawn_app().await;
    let admin = app.admin().await;
    let (cookie, csrf) = session_headers(&admin);
    let send = |body: &'static str| {
        app.client
            .post(app.url("/api/v1/customers"))
            .header("cookie", cookie.as_str())
            .header("x-csrf-token", csrf.as_str())
            .header("content-type", "application/json")
            .body(body)
    };
    let cases = [
        (r#"{"name": "张三""#, "request.malformed_json", None),
        (r#"{"name": 42}"#, "request.invalid_type", Some("name")),
        (r#"{"name": "张三", "fax": "1"}"#, "request.unknown_field", Some("fax")),
        (r#"{"name": "张三", "name": "李四"}"#, "request.duplicate_field", Some("name")),
        (r#"{"name": "张三", "tags": "vip"}"#, "request.invalid_type", Some("tags")),
        (r#"{"name": "张三"} trailing"#, "request.malformed_json", None),
        // serde reads a struct from an array of its fields; the API refuses it.
        (r#"["张三", null]"#, "request.invalid_type", None),
        (r#""张三""#, "request.invalid_type", None),
    ];
    for (body, code, field) in cases {
        let answer = app.raw(send(body)).await;
        assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{body}: {}", answer.text);
        assert!(answer.is_problem(), "{body}");
        assert_eq!(answer.code(), code, "{body}: {}", answer.text);
        assert_eq!(answer.body["field"].as_str(), field, "{body}: {}", answer.text);
    }
    let wrong_type = app
        .raw(
            app.client
                .post(app.url("/api/v1/customers"))
                .header("cookie", cookie.as_str())
                .header("x-csrf-token", csrf.as_str())
                .header("content-type", "text/plain")
                .body("{}"),
        )
        .await;
    assert_eq!(wrong_type.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert!(wrong_type.is_problem());
}

#[tokio::test]
async fn oversized_bodies_are_refused_before_they_are_read() {
    let app = spawn_app_with(|settings| settings.http.body_limit_bytes = 2_048).await;
    let admin = app.admin().await;
    let big = "x".repeat(10_000);
    let answer = app.post(&admin, "/api/v1/customers", json!({"name": big})).await;
    assert_eq!(answer.status, StatusCode::PAYLOAD_TOO_LARGE, "{}", answer.text);
    assert!(answer.is_problem());
    assert_eq!(answer.code(), "request.too_large");
}

#[tokio::test]
async fn unknown_routes_methods_and_bad_path_parameters_are_problems() {
    let app = spawn_app().await;
    let admin = app.admin().await;
    let missing = app.get(&admin, "/api/v1/nothing-here").await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert_eq!(missing.code(), "route.not_found");
    let method = app.request(&admin, reqwest::Method::DELETE, "/api/v1/customers", None).await;
    assert_eq!(method.status, StatusCode::METHOD_NOT_ALLOWED);
    assert!(method.is_problem());
    let path = app.get(&admin, "/api/v1/customers/not-a-number").await;
    assert_eq!(path.status, StatusCode::BAD_REQUEST);
    assert_eq!(path.code(), "request.invalid_path");
    let absent = app.get(&admin, "/api/v1/customers/999999").await;
    assert_eq!(absent.status, StatusCode::NOT_FOUND);
    assert_eq!(absent.code(), "customer.not_found");
    let query = app.get(&admin, "/api/v1/customers?limit=many").await;
    assert_eq!(query.status, StatusCode::BAD_REQUEST);
    assert_eq!(query.code(), "request.invalid_query");
    for path in ["/api/v1/customers?limit=201", "/api/v1/customers?limit=0", "/api/v1/staff?limit=1000"] {
        let page = app.get(&admin, path).await;
        assert_eq!(page.status, StatusCode::BAD_REQUEST, "{path}: {}", page.text);
        assert_eq!(page.body["field"], "limit", "{path}");
        assert!(page.text.contains("1 to 200"), "{path}: {}", page.text);
    }
    let widest = app.get(&admin, "/api/v1/customers?limit=200").await;
    assert_eq!(widest.status, StatusCode::OK);
}

#[tokio::test]
async fn callers_over_their_rate_are_told_when_to_come_back() {
    let app = spawn_app_with(|settings| {
        settings.http.rate_limit_per_second = 1;
        settings.http.rate_limit_burst = 3;
    })
    .await;
    let admin = app.admin().await;
    let mut statuses = Vec::new();
    for _ in 0..5 {
        statuses.push(app.get(&admin, "/api/v1/stores").await);
    }
    assert!(statuses[..3].iter().all(|answer| answer.status == StatusCode::OK));
    let limited = &statuses[4];
    assert_eq!(limited.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(limited.code(), "rate_limited");
    assert!(limited.headers.get("retry-after").is_some());
}

#[tokio::test]
async fn health_and_metrics_answer_without_credentials() {
    let app = spawn_app().await;
    let health = app.get(&Auth::None, "/healthz").await;
    assert_eq!(health.status, StatusCode::OK);
    assert_eq!(health.body["status"], "ok");
    app.get(&Auth::None, "/api/v1/customers").await;
    let metrics = app.raw(app.client.get(app.url("/metrics"))).await;
    assert!(metrics.content_type.starts_with("text/plain"));
    assert!(
        metrics.text.contains(
            "cardcrm_http_requests_total{method=\"GET\",route=\"/api/v1/customers\",status=\"401\"} 1"
        ),
        "{}",
        metrics.text
    );
    assert!(metrics.text.contains("cardcrm_http_request_duration_seconds_bucket"));
}
