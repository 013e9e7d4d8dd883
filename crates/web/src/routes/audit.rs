//! The audit log, for administrators (`audit.read`).

use axum::{Json, extract::State};
use cardcrm_service::{
    ServiceError,
    audit::{AuditEntryView, AuditQuery},
    perm,
    view::Page,
};
use serde::Deserialize;

use cardcrm_domain::limits::PageSize;

use crate::{
    AppState,
    extract::{ApiQuery, Need},
    openapi::Errors,
    problem::ApiResult,
};

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuditParams {
    /// `customer`, `staff`, `store`, `api_token`, `import`, `session`…
    pub entity_type: Option<String>,
    pub entity_id: Option<String>,
    /// `customer.reveal`, `customer.update`, `auth.login_failed`…
    pub action: Option<String>,
    /// `staff`, `token` or `system`.
    pub actor_kind: Option<String>,
    pub actor_id: Option<i64>,
    /// RFC 3339; entries at or after.
    pub since: Option<String>,
    /// RFC 3339; entries before.
    pub until: Option<String>,
    pub cursor: Option<String>,
    #[param(value_type = Option<u32>, minimum = 1, maximum = 200)]
    pub limit: Option<PageSize>,
}

fn moment(field: &str, raw: &Option<String>) -> Result<Option<i64>, ServiceError> {
    raw.as_deref()
        .map(|text| {
            cardcrm_domain::date::parse_instant(text)
                .map(|at| at.as_millisecond())
                .map_err(|error| error.at(field).into())
        })
        .transpose()
}

/// Audit entries, newest first.
#[utoipa::path(get, path = "/api/v1/audit", tag = "audit", params(AuditParams),
    responses((status = 200, description = "OK", body = Page<AuditEntryView>), Errors), security(("session" = []), ("token" = [])))]
pub async fn list_audit(
    State(state): State<AppState>,
    need: Need<perm::AuditRead>,
    ApiQuery(params): ApiQuery<AuditParams>,
) -> ApiResult<Json<Page<AuditEntryView>>> {
    let query = AuditQuery {
        since_ms: moment("since", &params.since)?,
        until_ms: moment("until", &params.until)?,
        entity_type: params.entity_type,
        entity_id: params.entity_id,
        action: params.action,
        actor_kind: params.actor_kind,
        actor_id: params.actor_id,
        cursor: params.cursor,
        limit: params.limit.map_or(0, PageSize::get),
    };
    Ok(Json(state.services.audit_log(need.access(), query).await?))
}
