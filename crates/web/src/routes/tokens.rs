//! API tokens for integrations: scoped, revocable, stored hashed, shown once.

use axum::{Json, extract::State, http::StatusCode};
use cardcrm_service::{
    auth::{ApiTokenRequest, ApiTokenView, NewApiToken},
    perm,
    view::Page,
};

use cardcrm_domain::limits::PageSize;

use crate::{
    AppState,
    extract::{ApiJson, ApiPath, ApiQuery, Need},
    openapi::Errors,
    problem::ApiResult,
    routes::staff::PageQuery,
};

/// Every API token (never the secrets).
#[utoipa::path(get, path = "/api/v1/tokens", tag = "tokens", params(PageQuery),
    responses((status = 200, description = "OK", body = Page<ApiTokenView>), Errors), security(("session" = []), ("token" = [])))]
pub async fn list_tokens(
    State(state): State<AppState>,
    need: Need<perm::TokenManage>,
    ApiQuery(query): ApiQuery<PageQuery>,
) -> ApiResult<Json<Page<ApiTokenView>>> {
    Ok(Json(
        state
            .services
            .list_api_tokens(need.access(), query.cursor, query.limit.map_or(0, PageSize::get))
            .await?,
    ))
}

/// Issues a token with the given scopes; the secret is in this response only.
#[utoipa::path(post, path = "/api/v1/tokens", tag = "tokens", request_body = ApiTokenRequest,
    responses((status = 201, description = "Created", body = NewApiToken), Errors), security(("session" = []), ("token" = [])))]
pub async fn create_token(
    State(state): State<AppState>,
    need: Need<perm::TokenManage>,
    ApiJson(request): ApiJson<ApiTokenRequest>,
) -> ApiResult<(StatusCode, Json<NewApiToken>)> {
    Ok((StatusCode::CREATED, Json(state.services.create_api_token(need.access(), request).await?)))
}

/// Revokes a token at once.
#[utoipa::path(delete, path = "/api/v1/tokens/{id}", tag = "tokens", params(("id" = i64, Path, description = "Token id")),
    responses((status = 200, description = "OK", body = ApiTokenView), Errors), security(("session" = []), ("token" = [])))]
pub async fn revoke_token(
    State(state): State<AppState>,
    need: Need<perm::TokenManage>,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<Json<ApiTokenView>> {
    Ok(Json(state.services.revoke_api_token(need.access(), id).await?))
}
