//! The loyalty engine (C3): the programme and its simulator, members' points, lots, history
//! and tiers, offline sales, points transfers and partner exchanges, coupons 优惠券, the
//! points mall 积分商城, the liability report, events and jobs. Requests that move points
//! need an `Idempotency-Key` header, like those that move money.

use axum::{Json, extract::State, http::StatusCode, response::Response};
use cardcrm_domain::limits::PageSize;
use cardcrm_service::{
    ServiceError,
    loyalty::{
        EnrolmentInput, EnrolmentView, EventView, JobReport, LiabilityView, LotView, MemberView,
        PartnerExchangeInput, PartnerExchangeView, PartnerInput, PartnerView, PointsAdjustmentInput,
        PointsLine, PointsMoveView, PointsReversalView, PointsTransferInput, ProgrammeInput, ProgrammeView,
        SaleInput, SaleRefundInput, SaleView, SimulateInput, SimulateView, TierChangeView, TierOverrideInput,
    },
    perm,
    rewards::{
        CouponView, IssueInput, IssueReport, OrderInput, OrderStatusInput, OrderView, RewardInput,
        RewardView, TemplateInput, TemplateView,
    },
    view::Page,
};
use serde::Deserialize;

use crate::{
    AppState,
    extract::{ApiJson, ApiPath, ApiQuery, Idempotency, Need},
    openapi::Errors,
    problem::ApiResult,
    routes::{ledger::keyed, staff::PageQuery},
};

fn cursor(raw: &Option<String>) -> Result<Option<i64>, ServiceError> {
    raw.as_deref()
        .map(|raw| {
            raw.parse::<i64>().map_err(|_| {
                ServiceError::invalid("cursor", "cursor.invalid", "use next_cursor of the previous page")
            })
        })
        .transpose()
}

fn limit(query: &PageQuery) -> i64 {
    i64::from(query.limit.map_or(50, PageSize::get))
}

/// Versions of the loyalty programme (earning rules, expiry, tiers), newest first.
#[utoipa::path(get, path = "/api/v1/loyalty/programmes", tag = "loyalty",
    responses((status = 200, description = "OK", body = Vec<ProgrammeView>), Errors), security(("session" = []), ("token" = [])))]
pub async fn programmes(
    State(state): State<AppState>,
    need: Need<perm::LoyaltyRead>,
) -> ApiResult<Json<Vec<ProgrammeView>>> {
    Ok(Json(state.services.programmes(need.access()).await?))
}

/// Adds a version of the programme, in force from `effective_from`.
#[utoipa::path(post, path = "/api/v1/loyalty/programmes", tag = "loyalty", request_body = ProgrammeInput,
    responses((status = 201, description = "Created", body = ProgrammeView), Errors), security(("session" = []), ("token" = [])))]
pub async fn create_programme(
    State(state): State<AppState>,
    need: Need<perm::LoyaltyManage>,
    ApiJson(input): ApiJson<ProgrammeInput>,
) -> ApiResult<(StatusCode, Json<ProgrammeView>)> {
    Ok((StatusCode::CREATED, Json(state.services.create_programme(need.access(), input).await?)))
}

/// What a basket would earn for a member at a moment, and which rules fired. Writes nothing.
#[utoipa::path(post, path = "/api/v1/loyalty/simulate", tag = "loyalty", request_body = SimulateInput,
    responses((status = 200, description = "OK", body = SimulateView), Errors), security(("session" = []), ("token" = [])))]
pub async fn simulate(
    State(state): State<AppState>,
    need: Need<perm::LoyaltyRead>,
    ApiJson(input): ApiJson<SimulateInput>,
) -> ApiResult<Json<SimulateView>> {
    Ok(Json(state.services.simulate_earning(need.access(), input).await?))
}

/// A member's points (spendable, pending, owed, expiring), tier and the way to the next.
#[utoipa::path(get, path = "/api/v1/members/{id}", tag = "loyalty", params(("id" = i64, Path, description = "Customer id")),
    responses((status = 200, description = "OK", body = MemberView), Errors), security(("session" = []), ("token" = [])))]
pub async fn member(
    State(state): State<AppState>,
    need: Need<perm::LoyaltyRead>,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<Json<MemberView>> {
    Ok(Json(state.services.member(need.access(), id).await?))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct LotsQuery {
    /// Spent and expired lots too.
    #[serde(default)]
    pub all: bool,
}

/// A member's points lots 积分批次, soonest expiry first.
#[utoipa::path(get, path = "/api/v1/members/{id}/lots", tag = "loyalty", params(("id" = i64, Path, description = "Customer id"), LotsQuery),
    responses((status = 200, description = "OK", body = Vec<LotView>), Errors), security(("session" = []), ("token" = [])))]
pub async fn lots(
    State(state): State<AppState>,
    need: Need<perm::LoyaltyRead>,
    ApiPath(id): ApiPath<i64>,
    ApiQuery(query): ApiQuery<LotsQuery>,
) -> ApiResult<Json<Vec<LotView>>> {
    Ok(Json(state.services.member_lots(need.access(), id, query.all).await?))
}

/// A member's points history 积分明细 with source and running balance, oldest first.
#[utoipa::path(get, path = "/api/v1/members/{id}/points-history", tag = "loyalty", params(("id" = i64, Path, description = "Customer id"), PageQuery),
    responses((status = 200, description = "OK", body = Page<PointsLine>), Errors), security(("session" = []), ("token" = [])))]
pub async fn points_history(
    State(state): State<AppState>,
    need: Need<perm::LoyaltyRead>,
    ApiPath(id): ApiPath<i64>,
    ApiQuery(query): ApiQuery<PageQuery>,
) -> ApiResult<Json<Page<PointsLine>>> {
    Ok(Json(state.services.points_history(need.access(), id, cursor(&query.cursor)?, limit(&query)).await?))
}

/// A member's tier changes, newest first.
#[utoipa::path(get, path = "/api/v1/members/{id}/tier-history", tag = "loyalty", params(("id" = i64, Path, description = "Customer id")),
    responses((status = 200, description = "OK", body = Vec<TierChangeView>), Errors), security(("session" = []), ("token" = [])))]
pub async fn tier_history(
    State(state): State<AppState>,
    need: Need<perm::LoyaltyRead>,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<Json<Vec<TierChangeView>>> {
    Ok(Json(state.services.tier_history(need.access(), id).await?))
}

/// Puts a member on a tier until a date (audited); the earned tier returns after it.
#[utoipa::path(post, path = "/api/v1/members/{id}/tier-override", tag = "loyalty", request_body = TierOverrideInput, params(("id" = i64, Path, description = "Customer id")),
    responses((status = 200, description = "OK", body = MemberView), Errors), security(("session" = []), ("token" = [])))]
pub async fn tier_override(
    State(state): State<AppState>,
    need: Need<perm::TierOverride>,
    ApiPath(id): ApiPath<i64>,
    ApiJson(input): ApiJson<TierOverrideInput>,
) -> ApiResult<Json<MemberView>> {
    Ok(Json(state.services.override_tier(need.access(), id, input).await?))
}

/// Enrols a customer in the programme 入会: the sign-up bonus once, and who referred them
/// (that member earns the referral bonus on this one's first purchase).
#[utoipa::path(post, path = "/api/v1/members/{id}/enrolment", tag = "loyalty", request_body = EnrolmentInput,
    params(("id" = i64, Path, description = "Customer id"), ("Idempotency-Key" = String, Header, description = "8-128 of A-Z a-z 0-9 - _ . :")),
    responses((status = 201, description = "Enrolled (or the stored answer of a repeat)", body = EnrolmentView), Errors), security(("session" = []), ("token" = [])))]
pub async fn enrol_member(
    State(state): State<AppState>,
    need: Need<perm::LoyaltyWrite>,
    Idempotency(key): Idempotency,
    ApiPath(id): ApiPath<i64>,
    ApiJson(input): ApiJson<EnrolmentInput>,
) -> ApiResult<Response> {
    Ok(keyed(state.services.enrol_member(need.access(), key, id, input).await?))
}

/// Gives points to another member (family), within the daily limit; expiry is kept.
#[utoipa::path(post, path = "/api/v1/members/{id}/points-transfers", tag = "loyalty", request_body = PointsTransferInput,
    params(("id" = i64, Path, description = "Giving customer id"), ("Idempotency-Key" = String, Header, description = "8-128 of A-Z a-z 0-9 - _ . :")),
    responses((status = 201, description = "Done (or the stored answer of a repeat)", body = PointsMoveView), Errors), security(("session" = []), ("token" = [])))]
pub async fn transfer_points(
    State(state): State<AppState>,
    need: Need<perm::LoyaltyWrite>,
    Idempotency(key): Idempotency,
    ApiPath(id): ApiPath<i64>,
    ApiJson(input): ApiJson<PointsTransferInput>,
) -> ApiResult<Response> {
    Ok(keyed(state.services.transfer_points(need.access(), key, id, input).await?))
}

/// Credits (positive points) or debits (negative) a member's points by hand with a reason:
/// a goodwill gesture, a correction, an opening balance from another system. Audited; does
/// not count toward tiers.
#[utoipa::path(post, path = "/api/v1/members/{id}/points-adjustments", tag = "loyalty", request_body = PointsAdjustmentInput,
    params(("id" = i64, Path, description = "Customer id"), ("Idempotency-Key" = String, Header, description = "8-128 of A-Z a-z 0-9 - _ . :")),
    responses((status = 201, description = "Done (or the stored answer of a repeat)", body = PointsMoveView), Errors), security(("session" = []), ("token" = [])))]
pub async fn adjust_points(
    State(state): State<AppState>,
    need: Need<perm::PointsAdjust>,
    Idempotency(key): Idempotency,
    ApiPath(id): ApiPath<i64>,
    ApiJson(input): ApiJson<PointsAdjustmentInput>,
) -> ApiResult<Response> {
    Ok(keyed(state.services.adjust_points(need.access(), key, id, input).await?))
}

/// A member's coupons.
#[utoipa::path(get, path = "/api/v1/members/{id}/coupons", tag = "loyalty", params(("id" = i64, Path, description = "Customer id"), PageQuery),
    responses((status = 200, description = "OK", body = Page<CouponView>), Errors), security(("session" = []), ("token" = [])))]
pub async fn member_coupons(
    State(state): State<AppState>,
    need: Need<perm::LoyaltyRead>,
    ApiPath(id): ApiPath<i64>,
    ApiQuery(query): ApiQuery<PageQuery>,
) -> ApiResult<Json<Page<CouponView>>> {
    Ok(Json(state.services.member_coupons(need.access(), id, cursor(&query.cursor)?, limit(&query)).await?))
}

/// Records a sale from a till that was offline: it earns points once per store and
/// `external_id`, however often it is sent.
#[utoipa::path(post, path = "/api/v1/loyalty/sales", tag = "loyalty", request_body = SaleInput,
    params(("Idempotency-Key" = String, Header, description = "8-128 of A-Z a-z 0-9 - _ . :")),
    responses((status = 201, description = "Done (or the stored answer of a repeat)", body = SaleView), Errors), security(("session" = []), ("token" = [])))]
pub async fn record_sale(
    State(state): State<AppState>,
    need: Need<perm::LoyaltyWrite>,
    Idempotency(key): Idempotency,
    ApiJson(input): ApiJson<SaleInput>,
) -> ApiResult<Response> {
    Ok(keyed(state.services.record_sale(need.access(), key, input).await?))
}

/// Takes back the points of (part of) an offline sale the till refunded.
#[utoipa::path(post, path = "/api/v1/loyalty/sales/{id}/refunds", tag = "loyalty", request_body = SaleRefundInput,
    params(("id" = i64, Path, description = "The sale's operation id"), ("Idempotency-Key" = String, Header, description = "8-128 of A-Z a-z 0-9 - _ . :")),
    responses((status = 201, description = "Done (or the stored answer of a repeat)", body = PointsReversalView), Errors), security(("session" = []), ("token" = [])))]
pub async fn refund_sale(
    State(state): State<AppState>,
    need: Need<perm::LoyaltyWrite>,
    Idempotency(key): Idempotency,
    ApiPath(id): ApiPath<i64>,
    ApiJson(input): ApiJson<SaleRefundInput>,
) -> ApiResult<Response> {
    Ok(keyed(state.services.refund_sale(need.access(), key, id, input).await?))
}

/// The points liability: outstanding, expected breakage, value per point.
#[utoipa::path(get, path = "/api/v1/loyalty/liability", tag = "loyalty",
    responses((status = 200, description = "OK", body = LiabilityView), Errors), security(("session" = []), ("token" = [])))]
pub async fn liability(
    State(state): State<AppState>,
    need: Need<perm::LoyaltyRead>,
) -> ApiResult<Json<LiabilityView>> {
    Ok(Json(state.services.points_liability(need.access()).await?))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct EventsQuery {
    pub customer_id: Option<i64>,
    pub cursor: Option<String>,
    #[param(value_type = Option<u32>, minimum = 1, maximum = 200)]
    pub limit: Option<PageSize>,
}

/// Events for engagement (points expiring soon, tier changes), oldest first.
#[utoipa::path(get, path = "/api/v1/loyalty/events", tag = "loyalty", params(EventsQuery),
    responses((status = 200, description = "OK", body = Page<EventView>), Errors), security(("session" = []), ("token" = [])))]
pub async fn events(
    State(state): State<AppState>,
    need: Need<perm::LoyaltyRead>,
    ApiQuery(query): ApiQuery<EventsQuery>,
) -> ApiResult<Json<Page<EventView>>> {
    let limit = i64::from(query.limit.map_or(50, PageSize::get));
    Ok(Json(
        state
            .services
            .loyalty_events(need.access(), query.customer_id, cursor(&query.cursor)?, limit)
            .await?,
    ))
}

/// Runs a loyalty job now: `expire`, `remind` or `tiers` (the server also runs them hourly).
#[utoipa::path(post, path = "/api/v1/loyalty/jobs/{job}", tag = "loyalty", params(("job" = String, Path, description = "expire, remind or tiers")),
    responses((status = 200, description = "OK", body = JobReport), Errors), security(("session" = []), ("token" = [])))]
pub async fn run_job(
    State(state): State<AppState>,
    need: Need<perm::LoyaltyManage>,
    ApiPath(job): ApiPath<String>,
) -> ApiResult<Json<JobReport>> {
    Ok(Json(state.services.run_loyalty_job(need.access(), &job).await?))
}

/// Co-branded partners 联名.
#[utoipa::path(get, path = "/api/v1/partners", tag = "loyalty",
    responses((status = 200, description = "OK", body = Vec<PartnerView>), Errors), security(("session" = []), ("token" = [])))]
pub async fn partners(
    State(state): State<AppState>,
    need: Need<perm::LoyaltyRead>,
) -> ApiResult<Json<Vec<PartnerView>>> {
    Ok(Json(state.services.partners(need.access()).await?))
}

#[utoipa::path(post, path = "/api/v1/partners", tag = "loyalty", request_body = PartnerInput,
    responses((status = 201, description = "Created", body = PartnerView), Errors), security(("session" = []), ("token" = [])))]
pub async fn create_partner(
    State(state): State<AppState>,
    need: Need<perm::LoyaltyManage>,
    ApiJson(input): ApiJson<PartnerInput>,
) -> ApiResult<(StatusCode, Json<PartnerView>)> {
    Ok((StatusCode::CREATED, Json(state.services.create_partner(need.access(), input).await?)))
}

/// Exchanges a member's points with a partner at its rate.
#[utoipa::path(post, path = "/api/v1/partners/{id}/exchanges", tag = "loyalty", request_body = PartnerExchangeInput,
    params(("id" = i64, Path, description = "Partner id"), ("Idempotency-Key" = String, Header, description = "8-128 of A-Z a-z 0-9 - _ . :")),
    responses((status = 201, description = "Done (or the stored answer of a repeat)", body = PartnerExchangeView), Errors), security(("session" = []), ("token" = [])))]
pub async fn partner_exchange(
    State(state): State<AppState>,
    need: Need<perm::LoyaltyWrite>,
    Idempotency(key): Idempotency,
    ApiPath(id): ApiPath<i64>,
    ApiJson(input): ApiJson<PartnerExchangeInput>,
) -> ApiResult<Response> {
    Ok(keyed(state.services.partner_exchange(need.access(), key, id, input).await?))
}

/// Coupon templates 优惠券模板.
#[utoipa::path(get, path = "/api/v1/coupon-templates", tag = "loyalty", params(PageQuery),
    responses((status = 200, description = "OK", body = Page<TemplateView>), Errors), security(("session" = []), ("token" = [])))]
pub async fn templates(
    State(state): State<AppState>,
    need: Need<perm::LoyaltyRead>,
    ApiQuery(query): ApiQuery<PageQuery>,
) -> ApiResult<Json<Page<TemplateView>>> {
    Ok(Json(state.services.coupon_templates(need.access(), cursor(&query.cursor)?, limit(&query)).await?))
}

#[utoipa::path(post, path = "/api/v1/coupon-templates", tag = "loyalty", request_body = TemplateInput,
    responses((status = 201, description = "Created", body = TemplateView), Errors), security(("session" = []), ("token" = [])))]
pub async fn create_template(
    State(state): State<AppState>,
    need: Need<perm::LoyaltyManage>,
    ApiJson(input): ApiJson<TemplateInput>,
) -> ApiResult<(StatusCode, Json<TemplateView>)> {
    Ok((StatusCode::CREATED, Json(state.services.create_coupon_template(need.access(), input).await?)))
}

/// Stops issuing from a template (issued coupons stay valid).
#[utoipa::path(post, path = "/api/v1/coupon-templates/{id}/retire", tag = "loyalty", params(("id" = i64, Path, description = "Template id")),
    responses((status = 200, description = "OK", body = TemplateView), Errors), security(("session" = []), ("token" = [])))]
pub async fn retire_template(
    State(state): State<AppState>,
    need: Need<perm::LoyaltyManage>,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<Json<TemplateView>> {
    Ok(Json(state.services.retire_coupon_template(need.access(), id).await?))
}

/// Issues coupons to members by id, or to every member of a tier.
#[utoipa::path(post, path = "/api/v1/coupon-templates/{id}/issues", tag = "loyalty", request_body = IssueInput,
    params(("id" = i64, Path, description = "Template id"), ("Idempotency-Key" = String, Header, description = "8-128 of A-Z a-z 0-9 - _ . :")),
    responses((status = 201, description = "Done (or the stored answer of a repeat)", body = IssueReport), Errors), security(("session" = []), ("token" = [])))]
pub async fn issue_coupons(
    State(state): State<AppState>,
    need: Need<perm::LoyaltyWrite>,
    Idempotency(key): Idempotency,
    ApiPath(id): ApiPath<i64>,
    ApiJson(input): ApiJson<IssueInput>,
) -> ApiResult<Response> {
    Ok(keyed(state.services.issue_coupons(need.access(), key, id, input).await?))
}

/// Cancels an unused coupon.
#[utoipa::path(post, path = "/api/v1/coupons/{id}/cancel", tag = "loyalty", params(("id" = i64, Path, description = "Coupon id")),
    responses((status = 200, description = "OK", body = CouponView), Errors), security(("session" = []), ("token" = [])))]
pub async fn cancel_coupon(
    State(state): State<AppState>,
    need: Need<perm::LoyaltyWrite>,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<Json<CouponView>> {
    Ok(Json(state.services.cancel_coupon(need.access(), id).await?))
}

/// Rewards of the points mall 积分商城.
#[utoipa::path(get, path = "/api/v1/rewards", tag = "loyalty", params(PageQuery),
    responses((status = 200, description = "OK", body = Page<RewardView>), Errors), security(("session" = []), ("token" = [])))]
pub async fn rewards(
    State(state): State<AppState>,
    need: Need<perm::LoyaltyRead>,
    ApiQuery(query): ApiQuery<PageQuery>,
) -> ApiResult<Json<Page<RewardView>>> {
    Ok(Json(state.services.rewards(need.access(), cursor(&query.cursor)?, limit(&query)).await?))
}

#[utoipa::path(post, path = "/api/v1/rewards", tag = "loyalty", request_body = RewardInput,
    responses((status = 201, description = "Created", body = RewardView), Errors), security(("session" = []), ("token" = [])))]
pub async fn create_reward(
    State(state): State<AppState>,
    need: Need<perm::LoyaltyManage>,
    ApiJson(input): ApiJson<RewardInput>,
) -> ApiResult<(StatusCode, Json<RewardView>)> {
    Ok((StatusCode::CREATED, Json(state.services.create_reward(need.access(), input).await?)))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct OrdersQuery {
    pub customer_id: Option<i64>,
    pub cursor: Option<String>,
    #[param(value_type = Option<u32>, minimum = 1, maximum = 200)]
    pub limit: Option<PageSize>,
}

/// Mall redemption orders.
#[utoipa::path(get, path = "/api/v1/mall-orders", tag = "loyalty", params(OrdersQuery),
    responses((status = 200, description = "OK", body = Page<OrderView>), Errors), security(("session" = []), ("token" = [])))]
pub async fn orders(
    State(state): State<AppState>,
    need: Need<perm::LoyaltyRead>,
    ApiQuery(query): ApiQuery<OrdersQuery>,
) -> ApiResult<Json<Page<OrderView>>> {
    let limit = i64::from(query.limit.map_or(50, PageSize::get));
    Ok(Json(state.services.orders(need.access(), query.customer_id, cursor(&query.cursor)?, limit).await?))
}

/// Redeems a reward for points (and cash): stock and limits checked, all or nothing.
#[utoipa::path(post, path = "/api/v1/mall-orders", tag = "loyalty", request_body = OrderInput,
    params(("Idempotency-Key" = String, Header, description = "8-128 of A-Z a-z 0-9 - _ . :")),
    responses((status = 201, description = "Done (or the stored answer of a repeat)", body = OrderView), Errors), security(("session" = []), ("token" = [])))]
pub async fn place_order(
    State(state): State<AppState>,
    need: Need<perm::LoyaltyWrite>,
    Idempotency(key): Idempotency,
    ApiJson(input): ApiJson<OrderInput>,
) -> ApiResult<Response> {
    Ok(keyed(state.services.place_order(need.access(), key, input).await?))
}

/// Fulfils or cancels an order; cancelling returns points (to their lots), cash and stock.
#[utoipa::path(post, path = "/api/v1/mall-orders/{id}/status", tag = "loyalty", request_body = OrderStatusInput,
    params(("id" = i64, Path, description = "Order id"), ("Idempotency-Key" = String, Header, description = "8-128 of A-Z a-z 0-9 - _ . :")),
    responses((status = 201, description = "Done (or the stored answer of a repeat)", body = OrderView), Errors), security(("session" = []), ("token" = [])))]
pub async fn order_status(
    State(state): State<AppState>,
    need: Need<perm::LoyaltyWrite>,
    Idempotency(key): Idempotency,
    ApiPath(id): ApiPath<i64>,
    ApiJson(input): ApiJson<OrderStatusInput>,
) -> ApiResult<Response> {
    Ok(keyed(state.services.set_order_status(need.access(), key, id, input).await?))
}
