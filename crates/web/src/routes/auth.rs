//! Console sign-in: a session cookie (HttpOnly, SameSite=Strict) plus a CSRF token that
//! state-changing requests echo in `X-CSRF-Token`.

use axum::{
    Json,
    extract::State,
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use cardcrm_service::{auth::LoginOutcome, staff::StaffView};
use serde::{Deserialize, Serialize};

use crate::{
    AppState,
    extract::{ApiJson, Caller, ClientInfo, SESSION_COOKIE},
    openapi::Errors,
    problem::ApiResult,
};

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    pub username: String,
    pub password: String,
}

fn session_cookie(state: &AppState, value: &str, max_age_seconds: i64) -> HeaderValue {
    let secure = if state.services.settings().http.secure_cookies { "; Secure" } else { "" };
    let cookie = format!(
        "{SESSION_COOKIE}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age_seconds}{secure}"
    );
    HeaderValue::from_str(&cookie).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// Signs a staff member in. Five failed attempts lock the account for a while.
#[utoipa::path(post, path = "/api/v1/auth/login", tag = "auth", request_body = LoginRequest,
    responses((status = 200, description = "Signed in; the session cookie is set", body = LoginOutcome), Errors,
        (status = 423, description = "Locked after repeated failures", body = crate::problem::Problem, content_type = "application/problem+json")))]
pub async fn login(
    State(state): State<AppState>,
    client: ClientInfo,
    ApiJson(body): ApiJson<LoginRequest>,
) -> ApiResult<Response> {
    state.login_limiter.check(&format!("login:{}", client.ip.clone().unwrap_or_default()))?;
    let outcome = state.services.login(&body.username, &body.password, client.ip, client.user_agent).await?;
    let max_age = state.services.settings().security.session_ttl_minutes * 60;
    let cookie = session_cookie(&state, &outcome.session_token, max_age);
    let mut response = Json(outcome).into_response();
    response.headers_mut().insert(header::SET_COOKIE, cookie);
    Ok(response)
}

/// Ends the current console session (called with a token, there is none to end).
#[utoipa::path(post, path = "/api/v1/auth/logout", tag = "auth",
    responses((status = 204, description = "Signed out"), Errors), security(("session" = []), ("token" = [])))]
pub async fn logout(State(state): State<AppState>, caller: Caller) -> ApiResult<Response> {
    if let Some(token) = &caller.session_token {
        state.services.logout(token, &caller.identity).await?;
    }
    let mut response = StatusCode::NO_CONTENT.into_response();
    response.headers_mut().insert(header::SET_COOKIE, session_cookie(&state, "", 0));
    Ok(response)
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Me {
    /// `staff`, `token` or `system`.
    pub kind: String,
    pub id: Option<i64>,
    pub name: String,
    pub role: Option<String>,
    pub store_id: Option<i64>,
    pub permissions: Vec<String>,
    pub staff: Option<StaffView>,
}

/// Who the caller is and what they may do.
#[utoipa::path(get, path = "/api/v1/auth/me", tag = "auth",
    responses((status = 200, description = "OK", body = Me), Errors), security(("session" = []), ("token" = [])))]
pub async fn me(State(state): State<AppState>, caller: Caller) -> ApiResult<Json<Me>> {
    let identity = &caller.identity;
    let staff = state.services.whoami(identity).await?;
    Ok(Json(Me {
        kind: identity.kind.as_str().to_owned(),
        id: identity.id,
        name: identity.name.clone(),
        role: identity.role.map(|role| role.as_str().to_owned()),
        store_id: identity.scope.store_id(),
        permissions: identity
            .permissions()
            .into_iter()
            .map(|permission| permission.as_str().to_owned())
            .collect(),
        staff,
    }))
}
