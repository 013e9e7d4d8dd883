//! Analyses (C4): run an analysis of the business's purchases, list the stored runs, their
//! segments 分群 and members, and export members as CSV or Parquet. Members are customer
//! ids with a score: no personal data leaves through here.

use axum::{
    Json,
    extract::State,
    http::{StatusCode, header},
    response::{IntoResponse, Response},
};
use cardcrm_domain::limits::PageSize;
use cardcrm_service::{
    kpi::KpiView,
    perm,
    segments::{AnalysisRequest, ExportFormat, RunView, SegmentMemberView},
    view::Page,
};
use serde::Deserialize;

use crate::{
    AppState,
    extract::{ApiJson, ApiPath, ApiQuery, Need},
    openapi::Errors,
    problem::ApiResult,
};

/// Runs an analysis over every purchase up to `as_of` and stores it with its segments.
/// Takes seconds for a million customers; the answer is the stored run.
#[utoipa::path(post, path = "/api/v1/analysis/runs", tag = "analysis", request_body = AnalysisRequest,
    responses((status = 201, description = "Created", body = RunView), Errors), security(("session" = []), ("token" = [])))]
pub async fn run_analysis(
    State(state): State<AppState>,
    need: Need<perm::AnalysisRun>,
    ApiJson(request): ApiJson<AnalysisRequest>,
) -> ApiResult<(StatusCode, Json<RunView>)> {
    Ok((StatusCode::CREATED, Json(state.services.run_analysis(need.access(), request).await?)))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct RunsQuery {
    /// rfm, kmeans, lifecycle, churn or clv.
    pub kind: Option<String>,
    pub cursor: Option<String>,
    #[param(value_type = Option<u32>, minimum = 1, maximum = 200)]
    pub limit: Option<PageSize>,
}

/// Stored runs, newest first (without their segments: ask for one run).
#[utoipa::path(get, path = "/api/v1/analysis/runs", tag = "analysis", params(RunsQuery),
    responses((status = 200, description = "OK", body = Page<RunView>), Errors), security(("session" = []), ("token" = [])))]
pub async fn runs(
    State(state): State<AppState>,
    need: Need<perm::AnalysisRead>,
    ApiQuery(query): ApiQuery<RunsQuery>,
) -> ApiResult<Json<Page<RunView>>> {
    let limit = i64::from(query.limit.map_or(50, PageSize::get));
    Ok(Json(state.services.analysis_runs(need.access(), query.kind, query.cursor, limit).await?))
}

/// One run with its figures and segments (code, names, rule, size).
#[utoipa::path(get, path = "/api/v1/analysis/runs/{id}", tag = "analysis", params(("id" = i64, Path, description = "Run id")),
    responses((status = 200, description = "OK", body = RunView), Errors), security(("session" = []), ("token" = [])))]
pub async fn run(
    State(state): State<AppState>,
    need: Need<perm::AnalysisRead>,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<Json<RunView>> {
    Ok(Json(state.services.analysis_run(need.access(), id).await?))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct MembersQuery {
    /// Only this segment (its code).
    pub segment: Option<String>,
    pub cursor: Option<String>,
    #[param(value_type = Option<u32>, minimum = 1, maximum = 200)]
    pub limit: Option<PageSize>,
}

/// A run's members in (segment, customer id) order, a page at a time.
#[utoipa::path(get, path = "/api/v1/analysis/runs/{id}/members", tag = "analysis",
    params(("id" = i64, Path, description = "Run id"), MembersQuery),
    responses((status = 200, description = "OK", body = Page<SegmentMemberView>), Errors), security(("session" = []), ("token" = [])))]
pub async fn members(
    State(state): State<AppState>,
    need: Need<perm::AnalysisRead>,
    ApiPath(id): ApiPath<i64>,
    ApiQuery(query): ApiQuery<MembersQuery>,
) -> ApiResult<Json<Page<SegmentMemberView>>> {
    let limit = i64::from(query.limit.map_or(50, PageSize::get));
    Ok(Json(state.services.analysis_members(need.access(), id, query.segment, query.cursor, limit).await?))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ExportQuery {
    /// csv (default) or parquet.
    pub format: Option<String>,
    /// Only this segment (its code).
    pub segment: Option<String>,
}

/// Every member of a run (or of one segment) as a file: columns run_id, segment,
/// customer_id, score. Audited.
#[utoipa::path(get, path = "/api/v1/analysis/runs/{id}/export", tag = "analysis",
    params(("id" = i64, Path, description = "Run id"), ExportQuery),
    responses((status = 200, description = "The file", content_type = "text/csv"), Errors), security(("session" = []), ("token" = [])))]
pub async fn export(
    State(state): State<AppState>,
    need: Need<perm::AnalysisRead>,
    ApiPath(id): ApiPath<i64>,
    ApiQuery(query): ApiQuery<ExportQuery>,
) -> ApiResult<Response> {
    let format = ExportFormat::parse(query.format.as_deref().unwrap_or("csv"))?;
    let bytes =
        state.services.export_analysis_members(need.access(), id, query.segment.clone(), format).await?;
    let (content_type, extension) = match format {
        ExportFormat::Csv => ("text/csv; charset=utf-8", "csv"),
        ExportFormat::Parquet => ("application/vnd.apache.parquet", "parquet"),
    };
    let name = match &query.segment {
        Some(segment) => format!("analysis-run-{id}-{segment}.{extension}"),
        None => format!("analysis-run-{id}.{extension}"),
    };
    // Segment codes are [a-z0-9_]; anything else was refused as unknown above.
    let disposition = format!("attachment; filename=\"{}\"", name.replace(['"', '\\', '\r', '\n'], "_"));
    Ok(([(header::CONTENT_TYPE, content_type.to_owned()), (header::CONTENT_DISPOSITION, disposition)], bytes)
        .into_response())
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct KpiQuery {
    /// The analysis day, YYYY-MM-DD (default today).
    pub as_of: Option<String>,
    /// Months up to the analysis day's month, 1 to 60 (default 12).
    pub months: Option<usize>,
}

/// Programme KPIs month by month: buyers, new and returning customers, repeat rate, active
/// customers, churn, revenue and basket, retention cohorts, per store and per tier, the
/// stored-value liability at each month's end, points outstanding and the latest CLV.
#[utoipa::path(get, path = "/api/v1/analysis/kpi", tag = "analysis", params(KpiQuery),
    responses((status = 200, description = "OK", body = KpiView), Errors), security(("session" = []), ("token" = [])))]
pub async fn kpi(
    State(state): State<AppState>,
    need: Need<perm::AnalysisRead>,
    ApiQuery(query): ApiQuery<KpiQuery>,
) -> ApiResult<Json<KpiView>> {
    Ok(Json(state.services.kpi_report(need.access(), query.as_of, query.months).await?))
}
