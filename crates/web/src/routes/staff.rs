//! Staff accounts. Needs `staff.manage`; managers manage lower ranks in their own store.

use axum::{Json, extract::State, http::StatusCode};
use cardcrm_service::{
    perm,
    staff::{NewStaff, StaffChange, StaffView, StaffWithPassword},
    view::Page,
};
use serde::Deserialize;

use cardcrm_domain::limits::PageSize;

use crate::{
    AppState,
    extract::{ApiJson, ApiPath, ApiQuery, Need},
    openapi::Errors,
    problem::ApiResult,
};

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// From `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// 1 to 200; 50 by default.
    #[param(value_type = Option<u32>, minimum = 1, maximum = 200)]
    pub limit: Option<PageSize>,
}

/// Staff accounts in the caller's scope.
#[utoipa::path(get, path = "/api/v1/staff", tag = "staff", params(PageQuery),
    responses((status = 200, description = "OK", body = Page<StaffView>), Errors), security(("session" = []), ("token" = [])))]
pub async fn list_staff(
    State(state): State<AppState>,
    need: Need<perm::StaffManage>,
    ApiQuery(query): ApiQuery<PageQuery>,
) -> ApiResult<Json<Page<StaffView>>> {
    Ok(Json(
        state.services.list_staff(need.access(), query.cursor, query.limit.map_or(0, PageSize::get)).await?,
    ))
}

/// Creates a staff account; without a password one is generated and returned once.
#[utoipa::path(post, path = "/api/v1/staff", tag = "staff", request_body = NewStaff,
    responses((status = 201, description = "Created", body = StaffWithPassword), Errors), security(("session" = []), ("token" = [])))]
pub async fn create_staff(
    State(state): State<AppState>,
    need: Need<perm::StaffManage>,
    ApiJson(request): ApiJson<NewStaff>,
) -> ApiResult<(StatusCode, Json<StaffWithPassword>)> {
    Ok((StatusCode::CREATED, Json(state.services.create_staff(need.access(), request).await?)))
}

/// Changes a staff account's name, role, store or status (disabling ends its sessions).
#[utoipa::path(patch, path = "/api/v1/staff/{id}", tag = "staff", params(("id" = i64, Path, description = "Staff id")), request_body = StaffChange,
    responses((status = 200, description = "OK", body = StaffView), Errors), security(("session" = []), ("token" = [])))]
pub async fn change_staff(
    State(state): State<AppState>,
    need: Need<perm::StaffManage>,
    ApiPath(id): ApiPath<i64>,
    ApiJson(change): ApiJson<StaffChange>,
) -> ApiResult<Json<StaffView>> {
    Ok(Json(state.services.change_staff(need.access(), id, change).await?))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasswordReset {
    /// At least 10 characters; absent to generate one.
    #[serde(default)]
    pub password: Option<String>,
}

/// Sets a new password, lifts a lockout and ends the account's sessions.
#[utoipa::path(post, path = "/api/v1/staff/{id}/password", tag = "staff", params(("id" = i64, Path, description = "Staff id")), request_body = PasswordReset,
    responses((status = 200, description = "OK", body = StaffWithPassword), Errors), security(("session" = []), ("token" = [])))]
pub async fn reset_password(
    State(state): State<AppState>,
    need: Need<perm::StaffManage>,
    ApiPath(id): ApiPath<i64>,
    ApiJson(body): ApiJson<PasswordReset>,
) -> ApiResult<Json<StaffWithPassword>> {
    Ok(Json(state.services.reset_staff_password(need.access(), id, body.password).await?))
}
