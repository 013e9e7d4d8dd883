//! Imports through the API: the file is the request body (CSV or XLSX), options are query
//! parameters. The answer is the report; rejected rows can be downloaded as CSV.

use std::sync::Arc;

use axum::{
    Json,
    body::Bytes,
    extract::State,
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use cardcrm_service::{
    ServiceError,
    import::{
        DuplicatePolicy, FileFormat, ImportOptions, ImportReport, ImportSource, ImportView, RejectSink,
        TextEncoding,
    },
    perm,
    view::Page,
};
use serde::Deserialize;

use cardcrm_domain::limits::PageSize;

use crate::{
    AppState,
    extract::{ApiPath, ApiQuery, Caller, Need},
    openapi::Errors,
    problem::{ApiError, ApiResult, Problem},
    routes::staff::PageQuery,
};

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ImportParams {
    /// Shown in the import history; its extension also tells CSV from XLSX.
    pub file_name: Option<String>,
    /// `auto` (default), `csv` or `xlsx`.
    #[param(inline)]
    pub format: Option<FileFormat>,
    /// `auto` (default), `utf-8` or `gbk`.
    pub encoding: Option<String>,
    /// Check everything, write nothing.
    pub dry_run: Option<bool>,
    /// Write the good rows and keep the bad ones for download, instead of writing nothing.
    pub skip_invalid: Option<bool>,
    /// Customers and stores: `error` (default), `skip`, `update` or `create`.
    pub on_duplicate: Option<String>,
    /// Store code for rows that name none.
    pub store: Option<String>,
}

fn options(params: ImportParams, default_name: &str) -> Result<ImportOptions, ServiceError> {
    Ok(ImportOptions {
        file_name: params
            .file_name
            .filter(|name| !name.trim().is_empty())
            .unwrap_or_else(|| default_name.to_owned()),
        format: params.format.unwrap_or_default(),
        encoding: params.encoding.as_deref().map(TextEncoding::parse).transpose()?.unwrap_or_default(),
        dry_run: params.dry_run.unwrap_or(false),
        skip_invalid: params.skip_invalid.unwrap_or(false),
        on_duplicate: params
            .on_duplicate
            .as_deref()
            .map(DuplicatePolicy::parse)
            .transpose()?
            .unwrap_or_default(),
        default_store: params.store,
    })
}

fn answer(report: ImportReport) -> Response {
    let status = if report.status == "committed" { StatusCode::CREATED } else { StatusCode::OK };
    (status, Json(report)).into_response()
}

fn body_or_error(body: Bytes) -> Result<ImportSource, ApiError> {
    if body.is_empty() {
        return Err(Problem::new(
            StatusCode::BAD_REQUEST,
            "import.empty",
            "the request body is empty; send the file as the body",
        )
        .into());
    }
    Ok(ImportSource::Bytes(body.to_vec()))
}

/// Imports customers. One file is one transaction: by default any bad row means nothing is
/// written and the 422 answer reports every problem by line and field.
#[utoipa::path(post, path = "/api/v1/imports/customers", tag = "imports", params(ImportParams),
    request_body(content = Vec<u8>, description = "The CSV or XLSX file", content_type = "text/csv"),
    responses((status = 201, description = "Committed", body = ImportReport), (status = 200, description = "Dry run", body = ImportReport), Errors),
    security(("session" = []), ("token" = [])))]
pub async fn import_customers(
    State(state): State<AppState>,
    need: Need<perm::CustomerImport>,
    ApiQuery(params): ApiQuery<ImportParams>,
    body: Bytes,
) -> ApiResult<Response> {
    let options = options(params, "customers.csv")?;
    let rejects = RejectSink::memory(state.services.settings().import.rejects_kept_max);
    let report = state
        .services
        .import_customers(need.access(), options, body_or_error(body)?, Arc::default(), rejects)
        .await?;
    Ok(answer(report))
}

/// Imports purchase transactions; records whose `external_id` is already stored are skipped.
#[utoipa::path(post, path = "/api/v1/imports/transactions", tag = "imports", params(ImportParams),
    request_body(content = Vec<u8>, description = "The CSV or XLSX file", content_type = "text/csv"),
    responses((status = 201, description = "Committed", body = ImportReport), (status = 200, description = "Dry run", body = ImportReport), Errors),
    security(("session" = []), ("token" = [])))]
pub async fn import_transactions(
    State(state): State<AppState>,
    need: Need<perm::TransactionImport>,
    ApiQuery(params): ApiQuery<ImportParams>,
    body: Bytes,
) -> ApiResult<Response> {
    let options = options(params, "transactions.csv")?;
    let rejects = RejectSink::memory(state.services.settings().import.rejects_kept_max);
    let report = state
        .services
        .import_transactions(need.access(), options, body_or_error(body)?, Arc::default(), rejects)
        .await?;
    Ok(answer(report))
}

/// Imports stores (columns code, name, city, address, time_zone).
#[utoipa::path(post, path = "/api/v1/imports/stores", tag = "imports", params(ImportParams),
    request_body(content = Vec<u8>, description = "The CSV or XLSX file", content_type = "text/csv"),
    responses((status = 201, description = "Committed", body = ImportReport), (status = 200, description = "Dry run", body = ImportReport), Errors),
    security(("session" = []), ("token" = [])))]
pub async fn import_stores(
    State(state): State<AppState>,
    need: Need<perm::StoreManage>,
    ApiQuery(params): ApiQuery<ImportParams>,
    body: Bytes,
) -> ApiResult<Response> {
    let options = options(params, "stores.csv")?;
    let rejects = RejectSink::memory(state.services.settings().import.rejects_kept_max);
    let report = state
        .services
        .import_stores(need.access(), options, body_or_error(body)?, Arc::default(), rejects)
        .await?;
    Ok(answer(report))
}

/// Past imports, newest first.
#[utoipa::path(get, path = "/api/v1/imports", tag = "imports", params(PageQuery),
    responses((status = 200, description = "OK", body = Page<ImportView>), Errors), security(("session" = []), ("token" = [])))]
pub async fn list_imports(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(query): ApiQuery<PageQuery>,
) -> ApiResult<Json<Page<ImportView>>> {
    Ok(Json(
        state
            .services
            .list_imports(&caller.identity, query.cursor, query.limit.map_or(0, PageSize::get))
            .await?,
    ))
}

/// One import with its report.
#[utoipa::path(get, path = "/api/v1/imports/{id}", tag = "imports", params(("id" = i64, Path, description = "Import id")),
    responses((status = 200, description = "OK", body = ImportView), Errors), security(("session" = []), ("token" = [])))]
pub async fn get_import(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<Json<ImportView>> {
    Ok(Json(state.services.get_import(&caller.identity, id).await?))
}

/// The rows an import skipped, as CSV with `_line` and `_errors` columns first.
#[utoipa::path(get, path = "/api/v1/imports/{id}/rejects", tag = "imports", params(("id" = i64, Path, description = "Import id")),
    responses((status = 200, description = "The rejected rows", content_type = "text/csv", body = String), Errors),
    security(("session" = []), ("token" = [])))]
pub async fn import_rejects(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<Response> {
    let csv = state.services.import_rejects(&caller.identity, id).await?;
    let mut response = csv.into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/csv; charset=utf-8"));
    Ok(response)
}
