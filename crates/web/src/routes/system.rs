//! Health, metrics and the API document.

use axum::{
    extract::State,
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use cardcrm_service::services::Health;

use crate::AppState;

/// Whether the service and its database answer.
#[utoipa::path(get, path = "/healthz", tag = "system",
    responses((status = 200, description = "Healthy", body = Health), (status = 503, description = "The database does not answer", body = Health)))]
pub async fn healthz(State(state): State<AppState>) -> Response {
    let health = state.services.health().await;
    let status = if health.status == "ok" { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, axum::Json(health)).into_response()
}

/// Prometheus metrics in the text exposition format.
#[utoipa::path(get, path = "/metrics", tag = "system",
    responses((status = 200, description = "Prometheus text exposition", content_type = "text/plain", body = String)))]
pub async fn metrics(State(state): State<AppState>) -> Response {
    let mut response = state.metrics.render(state.services.database().sqlite_reprepares()).into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"));
    response
}

/// This API's OpenAPI 3.1 document.
#[utoipa::path(get, path = "/api/v1/openapi.json", tag = "system",
    responses((status = 200, description = "The OpenAPI document", content_type = "application/json", body = Object)))]
pub async fn openapi_document(State(state): State<AppState>) -> Response {
    let body = state.openapi.get().cloned().unwrap_or_else(|| "{}".into());
    let mut response = body.into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}
