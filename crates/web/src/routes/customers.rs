//! Customers (C1). Personal fields come masked; `?reveal=true` shows them in full to callers
//! holding `customer.reveal`, and each reveal is audited.

use axum::{
    Json,
    extract::State,
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use cardcrm_service::{
    ServiceError,
    customers::{
        ConsentInput, ConsentView, CustomerCreated, CustomerPatch, CustomerRequest, CustomerSearch,
        CustomerView, DuplicateGroupView, EventInput, MergeOutcome, TimelineItem,
    },
    perm,
    view::Page,
};
use serde::Deserialize;

use cardcrm_domain::limits::PageSize;

use crate::{
    AppState,
    extract::{ApiJson, ApiPath, ApiQuery, Need},
    openapi::Errors,
    problem::ApiResult,
    routes::staff::PageQuery,
};

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SearchParams {
    /// A phone, e-mail or ID number (exact match), or else the start of a name.
    pub q: Option<String>,
    pub phone: Option<String>,
    pub email: Option<String>,
    pub id_number: Option<String>,
    /// With `source_channel` (default `import`).
    pub external_id: Option<String>,
    pub source_channel: Option<String>,
    /// Start of the name.
    pub name: Option<String>,
    pub tag: Option<String>,
    pub store_id: Option<i64>,
    pub city: Option<String>,
    /// Also list customers merged into others.
    pub include_merged: Option<bool>,
    pub cursor: Option<String>,
    /// 1 to 200; 50 by default.
    #[param(value_type = Option<u32>, minimum = 1, maximum = 200)]
    pub limit: Option<PageSize>,
}

/// Finds customers. Exact lookups (phone, e-mail, ID number, external id) reach every store;
/// lists stay within the caller's store.
#[utoipa::path(get, path = "/api/v1/customers", tag = "customers", params(SearchParams),
    responses((status = 200, description = "OK", body = Page<CustomerView>), Errors), security(("session" = []), ("token" = [])))]
pub async fn search_customers(
    State(state): State<AppState>,
    need: Need<perm::CustomerRead>,
    ApiQuery(params): ApiQuery<SearchParams>,
) -> ApiResult<Json<Page<CustomerView>>> {
    let search = CustomerSearch {
        q: params.q,
        phone: params.phone,
        email: params.email,
        id_number: params.id_number,
        external_id: params.external_id,
        source_channel: params.source_channel,
        name: params.name,
        tag: params.tag,
        store_id: params.store_id,
        city: params.city,
        include_merged: params.include_merged.unwrap_or(false),
        cursor: params.cursor,
        limit: params.limit.map_or(0, PageSize::get),
    };
    Ok(Json(state.services.search_customers(need.access(), search).await?))
}

/// Registers a customer. The answer lists existing customers with the same phone, e-mail or
/// ID number, as merge candidates.
#[utoipa::path(post, path = "/api/v1/customers", tag = "customers", request_body = CustomerRequest,
    responses((status = 201, description = "Created", body = CustomerCreated), Errors), security(("session" = []), ("token" = [])))]
pub async fn create_customer(
    State(state): State<AppState>,
    need: Need<perm::CustomerWrite>,
    ApiJson(request): ApiJson<CustomerRequest>,
) -> ApiResult<Response> {
    let created = state.services.create_customer(need.access(), request).await?;
    let etag = etag(created.customer.version);
    let location = format!("/api/v1/customers/{}", created.customer.id);
    let mut response = (StatusCode::CREATED, Json(created)).into_response();
    response.headers_mut().insert(header::ETAG, etag);
    if let Ok(value) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    Ok(response)
}

fn etag(version: i64) -> HeaderValue {
    HeaderValue::from_str(&format!("\"v{version}\"")).unwrap_or_else(|_| HeaderValue::from_static("\"v0\""))
}

/// The version an `If-Match` header asks for.
fn if_match(headers: &HeaderMap) -> Result<Option<i64>, ServiceError> {
    let Some(value) = headers.get(header::IF_MATCH) else { return Ok(None) };
    let text = value.to_str().unwrap_or_default().trim();
    if text == "*" {
        return Ok(None);
    }
    text.trim_start_matches("W/")
        .trim_matches('"')
        .strip_prefix('v')
        .and_then(|version| version.parse().ok())
        .map(Some)
        .ok_or_else(|| {
            ServiceError::invalid(
                "If-Match",
                "if_match.invalid",
                "If-Match must be the ETag of the customer, such as \"v3\"",
            )
        })
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RevealParams {
    /// Show phone, e-mail, ID number and address in full (needs `customer.reveal`; audited).
    pub reveal: Option<bool>,
}

/// One customer with tags and consents. Its `ETag` goes into `If-Match` when changing it.
#[utoipa::path(get, path = "/api/v1/customers/{id}", tag = "customers", params(("id" = i64, Path, description = "Customer id"), RevealParams),
    responses((status = 200, description = "OK", body = CustomerView), Errors), security(("session" = []), ("token" = [])))]
pub async fn get_customer(
    State(state): State<AppState>,
    need: Need<perm::CustomerRead>,
    ApiPath(id): ApiPath<i64>,
    ApiQuery(params): ApiQuery<RevealParams>,
) -> ApiResult<Response> {
    let reveal = if params.reveal.unwrap_or(false) {
        Some(need.identity().grant::<perm::CustomerReveal>()?)
    } else {
        None
    };
    let customer = state.services.get_customer(need.access(), id, reveal).await?;
    let etag = etag(customer.version);
    let mut response = Json(customer).into_response();
    response.headers_mut().insert(header::ETAG, etag);
    Ok(response)
}

/// Changes a customer: fields left out stay, fields set to null are cleared. Send the
/// `ETag` as `If-Match` to refuse the change if someone else changed the customer first.
#[utoipa::path(patch, path = "/api/v1/customers/{id}", tag = "customers", params(("id" = i64, Path, description = "Customer id")), request_body = CustomerPatch,
    responses((status = 200, description = "OK", body = CustomerView), (status = 412, description = "Changed by someone else since read", body = crate::problem::Problem, content_type = "application/problem+json"), Errors),
    security(("session" = []), ("token" = [])))]
pub async fn update_customer(
    State(state): State<AppState>,
    need: Need<perm::CustomerWrite>,
    ApiPath(id): ApiPath<i64>,
    headers: HeaderMap,
    ApiJson(patch): ApiJson<CustomerPatch>,
) -> ApiResult<Response> {
    let expected = if_match(&headers)?;
    let customer = state.services.update_customer(need.access(), id, patch, expected).await?;
    let etag = etag(customer.version);
    let mut response = Json(customer).into_response();
    response.headers_mut().insert(header::ETAG, etag);
    Ok(response)
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DuplicatesParams {
    /// Most groups; 50 by default.
    #[param(value_type = Option<u32>, minimum = 1, maximum = 200)]
    pub limit: Option<PageSize>,
}

/// Groups of customers sharing a phone, e-mail or ID number.
#[utoipa::path(get, path = "/api/v1/customers/duplicates", tag = "customers", params(DuplicatesParams),
    responses((status = 200, description = "OK", body = Vec<DuplicateGroupView>), Errors), security(("session" = []), ("token" = [])))]
pub async fn duplicates(
    State(state): State<AppState>,
    need: Need<perm::CustomerRead>,
    ApiQuery(params): ApiQuery<DuplicatesParams>,
) -> ApiResult<Json<Vec<DuplicateGroupView>>> {
    Ok(Json(state.services.duplicate_customers(need.access(), params.limit.map_or(0, PageSize::get)).await?))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MergeRequest {
    /// The customer merged into this one; it is marked merged and keeps pointing here.
    pub merge_id: i64,
}

/// Merges another customer into this one: empty fields are filled, tags, consents, events
/// and purchases move over. Needs `customer.merge`; audited.
#[utoipa::path(post, path = "/api/v1/customers/{id}/merge", tag = "customers", params(("id" = i64, Path, description = "The surviving customer")), request_body = MergeRequest,
    responses((status = 200, description = "OK", body = MergeOutcome), Errors), security(("session" = []), ("token" = [])))]
pub async fn merge(
    State(state): State<AppState>,
    need: Need<perm::CustomerMerge>,
    ApiPath(id): ApiPath<i64>,
    ApiJson(request): ApiJson<MergeRequest>,
) -> ApiResult<Json<MergeOutcome>> {
    Ok(Json(state.services.merge_customers(need.access(), id, request.merge_id).await?))
}

/// Records marketing consent for a channel (`sms`, `email`, `phone`, `wechat`, `app_push`,
/// `post`); the history is kept.
#[utoipa::path(put, path = "/api/v1/customers/{id}/consents/{channel}", tag = "customers",
    params(("id" = i64, Path, description = "Customer id"), ("channel" = String, Path, description = "Consent channel")), request_body = ConsentInput,
    responses((status = 200, description = "OK", body = Vec<ConsentView>), Errors), security(("session" = []), ("token" = [])))]
pub async fn set_consent(
    State(state): State<AppState>,
    need: Need<perm::CustomerWrite>,
    ApiPath((id, channel)): ApiPath<(i64, String)>,
    ApiJson(input): ApiJson<ConsentInput>,
) -> ApiResult<Json<Vec<ConsentView>>> {
    Ok(Json(state.services.set_consent(need.access(), id, &channel, input).await?))
}

/// Records a behaviour event (visit, call, app use…) on the customer's timeline.
#[utoipa::path(post, path = "/api/v1/customers/{id}/events", tag = "customers", params(("id" = i64, Path, description = "Customer id")), request_body = EventInput,
    responses((status = 201, description = "Created", body = TimelineItem), Errors), security(("session" = []), ("token" = [])))]
pub async fn record_event(
    State(state): State<AppState>,
    need: Need<perm::CustomerWrite>,
    ApiPath(id): ApiPath<i64>,
    ApiJson(input): ApiJson<EventInput>,
) -> ApiResult<(StatusCode, Json<TimelineItem>)> {
    Ok((StatusCode::CREATED, Json(state.services.record_event(need.access(), id, input).await?)))
}

/// Events and purchases, newest first.
#[utoipa::path(get, path = "/api/v1/customers/{id}/timeline", tag = "customers", params(("id" = i64, Path, description = "Customer id"), PageQuery),
    responses((status = 200, description = "OK", body = Page<TimelineItem>), Errors), security(("session" = []), ("token" = [])))]
pub async fn timeline(
    State(state): State<AppState>,
    need: Need<perm::CustomerRead>,
    ApiPath(id): ApiPath<i64>,
    ApiQuery(query): ApiQuery<PageQuery>,
) -> ApiResult<Json<Page<TimelineItem>>> {
    Ok(Json(
        state
            .services
            .timeline(need.access(), id, query.cursor, query.limit.map_or(0, PageSize::get))
            .await?,
    ))
}
