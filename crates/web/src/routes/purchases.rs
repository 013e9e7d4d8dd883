//! Purchase records from integrations.

use axum::{Json, extract::State, http::StatusCode};
use cardcrm_service::{
    perm,
    purchases::{PurchaseInput, PurchaseRecorded, PurchaseView},
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

/// Records a purchase. Sending the same `external_id` again returns the stored purchase
/// (200) instead of counting it twice; the same id with different content is a 409.
#[utoipa::path(post, path = "/api/v1/purchases", tag = "purchases", request_body = PurchaseInput,
    responses((status = 201, description = "Created", body = PurchaseRecorded), (status = 200, description = "Already stored", body = PurchaseRecorded), Errors),
    security(("session" = []), ("token" = [])))]
pub async fn record_purchase(
    State(state): State<AppState>,
    need: Need<perm::TransactionWrite>,
    ApiJson(input): ApiJson<PurchaseInput>,
) -> ApiResult<(StatusCode, Json<PurchaseRecorded>)> {
    let recorded = state.services.record_purchase(need.access(), input).await?;
    let status = if recorded.created { StatusCode::CREATED } else { StatusCode::OK };
    Ok((status, Json(recorded)))
}

/// A customer's purchases, newest first.
#[utoipa::path(get, path = "/api/v1/customers/{id}/purchases", tag = "purchases", params(("id" = i64, Path, description = "Customer id"), PageQuery),
    responses((status = 200, description = "OK", body = Page<PurchaseView>), Errors), security(("session" = []), ("token" = [])))]
pub async fn list_purchases(
    State(state): State<AppState>,
    need: Need<perm::TransactionRead>,
    ApiPath(id): ApiPath<i64>,
    ApiQuery(query): ApiQuery<PageQuery>,
) -> ApiResult<Json<Page<PurchaseView>>> {
    Ok(Json(
        state
            .services
            .list_purchases(need.access(), id, query.cursor, query.limit.map_or(0, PageSize::get))
            .await?,
    ))
}
