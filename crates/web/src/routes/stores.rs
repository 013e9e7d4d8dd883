//! Stores 门店.

use axum::{Json, extract::State, http::StatusCode};
use cardcrm_service::{
    perm,
    stores::{StoreInput, StoreView},
};

use crate::{
    AppState,
    extract::{ApiJson, ApiPath, Caller, Need},
    openapi::Errors,
    problem::ApiResult,
};

/// Every store.
#[utoipa::path(get, path = "/api/v1/stores", tag = "stores",
    responses((status = 200, description = "OK", body = Vec<StoreView>), Errors), security(("session" = []), ("token" = [])))]
pub async fn list_stores(State(state): State<AppState>, caller: Caller) -> ApiResult<Json<Vec<StoreView>>> {
    Ok(Json(state.services.list_stores(&caller.identity).await?))
}

/// Opens a store. Needs `store.manage`.
#[utoipa::path(post, path = "/api/v1/stores", tag = "stores", request_body = StoreInput,
    responses((status = 201, description = "Created", body = StoreView), Errors), security(("session" = []), ("token" = [])))]
pub async fn create_store(
    State(state): State<AppState>,
    need: Need<perm::StoreManage>,
    ApiJson(input): ApiJson<StoreInput>,
) -> ApiResult<(StatusCode, Json<StoreView>)> {
    Ok((StatusCode::CREATED, Json(state.services.create_store(need.access(), input).await?)))
}

/// One store.
#[utoipa::path(get, path = "/api/v1/stores/{id}", tag = "stores", params(("id" = i64, Path, description = "Store id")),
    responses((status = 200, description = "OK", body = StoreView), Errors), security(("session" = []), ("token" = [])))]
pub async fn get_store(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<Json<StoreView>> {
    Ok(Json(state.services.get_store(&caller.identity, id).await?))
}

/// Changes a store's name, address, time zone or status. Needs `store.manage`.
#[utoipa::path(patch, path = "/api/v1/stores/{id}", tag = "stores", params(("id" = i64, Path, description = "Store id")), request_body = StoreInput,
    responses((status = 200, description = "OK", body = StoreView), Errors), security(("session" = []), ("token" = [])))]
pub async fn update_store(
    State(state): State<AppState>,
    need: Need<perm::StoreManage>,
    ApiPath(id): ApiPath<i64>,
    ApiJson(input): ApiJson<StoreInput>,
) -> ApiResult<Json<StoreView>> {
    Ok(Json(state.services.update_store(need.access(), id, input).await?))
}
