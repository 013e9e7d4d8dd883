//! The HTTP surface of cardcrm: the JSON API under `/api/v1` with its OpenAPI document,
//! `/healthz` and `/metrics`. Errors are problem+json; bodies, rates, concurrency and time
//! per request are bounded. This crate turns HTTP into service calls and back; it holds no
//! business rules and no SQL.

pub mod extract;
pub mod limits;
pub mod metrics;
pub mod openapi;
pub mod problem;
pub mod routes;

use std::{
    net::SocketAddr,
    sync::atomic::{AtomicU64, Ordering},
    sync::{Arc, OnceLock},
    time::Duration,
};

use axum::{
    Router,
    extract::{DefaultBodyLimit, Request, State},
    http::{HeaderValue, StatusCode, header},
    middleware::{self, Next},
    response::{IntoResponse, Response},
};
use cardcrm_service::Services;
use tower::limit::ConcurrencyLimitLayer;

use crate::{extract::RequestId, limits::RateLimiter, metrics::Metrics, problem::Problem};

/// What every handler can reach: one shared context, so handing it to a handler or a
/// middleware is one reference count, not one per field.
#[derive(Clone)]
pub struct AppState(Arc<AppContext>);

impl std::ops::Deref for AppState {
    type Target = AppContext;
    fn deref(&self) -> &AppContext {
        &self.0
    }
}

pub struct AppContext {
    pub services: Services,
    pub metrics: Arc<Metrics>,
    /// Per authenticated caller.
    pub limiter: Arc<RateLimiter>,
    /// Per address, for the login endpoint.
    pub login_limiter: Arc<RateLimiter>,
    /// The OpenAPI document, rendered once.
    pub openapi: Arc<OnceLock<String>>,
}

/// Builds the application: routes, OpenAPI document, and the layers that bound every request.
pub fn app(services: Services) -> Router {
    let settings = services.settings().clone();
    let http = &settings.http;
    let state = AppState(Arc::new(AppContext {
        services,
        metrics: Arc::new(Metrics::new()),
        limiter: Arc::new(RateLimiter::new(http.rate_limit_per_second, http.rate_limit_burst)),
        login_limiter: Arc::new(RateLimiter::new(
            http.login_attempts_per_minute.div_ceil(60).max(1),
            http.login_attempts_per_minute.max(1),
        )),
        openapi: Arc::new(OnceLock::new()),
    }));
    let (router, document) = routes::api(http.import_body_limit_bytes).split_for_parts();
    let _ = state.openapi.set(render(&document));
    let timeout = Duration::from_millis(http.request_timeout_ms);
    router
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(http.body_limit_bytes))
        .layer(ConcurrencyLimitLayer::new(http.concurrency_limit))
        .layer(middleware::from_fn_with_state(timeout, time_limit))
        .layer(middleware::from_fn_with_state(state.clone(), metrics::record))
        .layer(middleware::from_fn(request_context))
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(panicked))
        .with_state(state)
}

fn render(document: &utoipa::openapi::OpenApi) -> String {
    serde_json::to_string_pretty(document).unwrap_or_else(|_| "{}".into())
}

/// The OpenAPI document of every route, without building the application.
pub fn openapi_json() -> String {
    render(&routes::api(0).split_for_parts().1)
}

/// Serves `app` on `listener` until `shutdown` completes, then drains open requests.
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>())
        .with_graceful_shutdown(shutdown)
        .await
}

static REQUEST_COUNTER: AtomicU64 = AtomicU64::new(1);

/// Gives every request an id (the caller's `X-Request-Id` when it is sane) and every
/// response the headers an API carrying personal data needs.
async fn request_context(mut request: Request, next: Next) -> Response {
    let id = request
        .headers()
        .get("x-request-id")
        .and_then(|value| value.to_str().ok())
        .filter(|value| {
            !value.is_empty()
                && value.len() <= 64
                && value.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        })
        .map(str::to_owned)
        .unwrap_or_else(|| {
            format!("r{:x}-{:x}", std::process::id(), REQUEST_COUNTER.fetch_add(1, Ordering::Relaxed))
        });
    request.extensions_mut().insert(RequestId(id.clone()));
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(&id) {
        headers.insert("x-request-id", value);
    }
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.entry(header::CACHE_CONTROL).or_insert(HeaderValue::from_static("no-store"));
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    response
}

async fn time_limit(State(limit): State<Duration>, request: Request, next: Next) -> Response {
    match tokio::time::timeout(limit, next.run(request)).await {
        Ok(response) => response,
        Err(_) => Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "request.timeout",
            format!("the request took longer than {} ms", limit.as_millis()),
        )
        .into_response(),
    }
}

fn panicked(_: Box<dyn std::any::Any + Send + 'static>) -> Response {
    tracing::error!("a request handler panicked");
    Problem::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal.error",
        "an internal error occurred; it has been logged",
    )
    .into_response()
}

async fn not_found(request: Request) -> Response {
    Problem::new(
        StatusCode::NOT_FOUND,
        "route.not_found",
        format!("no route for {} {}", request.method(), request.uri().path()),
    )
    .into_response()
}

async fn method_not_allowed(request: Request) -> Response {
    Problem::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "route.method_not_allowed",
        format!("{} is not allowed on {}", request.method(), request.uri().path()),
    )
    .into_response()
}
