//! Card products 卡种, tiers and cards (C2): issuing, activating, freezing (report lost 挂失),
//! PINs. Moving value lives in `routes::ledger`.

use axum::{Json, extract::State, http::StatusCode};
use cardcrm_service::{
    cards::{
        CardIssued, CardView, FreezeInput, IssueCardInput, PinInput, ProductInput, ProductView, TierInput,
        TierView,
    },
    import::credit::CreditAccountView,
    perm,
};
use serde::Deserialize;

use crate::{
    AppState,
    extract::{ApiJson, ApiPath, ApiQuery, Need},
    openapi::Errors,
    problem::ApiResult,
};

/// The membership tiers (ordinary, silver, gold, platinum) with their discount and points
/// multiplier.
#[utoipa::path(get, path = "/api/v1/card-tiers", tag = "cards",
    responses((status = 200, description = "OK", body = Vec<TierView>), Errors), security(("session" = []), ("token" = [])))]
pub async fn list_tiers(
    State(state): State<AppState>,
    need: Need<perm::CardRead>,
) -> ApiResult<Json<Vec<TierView>>> {
    Ok(Json(state.services.list_tiers(need.access()).await?))
}

/// Changes a tier's name, discount (basis points), points multiplier or benefits.
#[utoipa::path(patch, path = "/api/v1/card-tiers/{code}", tag = "cards", request_body = TierInput,
    params(("code" = String, Path, description = "Tier code, such as `gold`")),
    responses((status = 200, description = "OK", body = TierView), Errors), security(("session" = []), ("token" = [])))]
pub async fn update_tier(
    State(state): State<AppState>,
    need: Need<perm::ProductManage>,
    ApiPath(code): ApiPath<String>,
    ApiJson(input): ApiJson<TierInput>,
) -> ApiResult<Json<TierView>> {
    Ok(Json(state.services.update_tier(need.access(), code, input).await?))
}

/// Every card product.
#[utoipa::path(get, path = "/api/v1/card-products", tag = "cards",
    responses((status = 200, description = "OK", body = Vec<ProductView>), Errors), security(("session" = []), ("token" = [])))]
pub async fn list_products(
    State(state): State<AppState>,
    need: Need<perm::CardRead>,
) -> ApiResult<Json<Vec<ProductView>>> {
    Ok(Json(state.services.list_products(need.access()).await?))
}

/// Creates a card product: a membership card, or a stored-value card 储值卡 with top-up bonus
/// rules (such as 充1000送100) and limits.
#[utoipa::path(post, path = "/api/v1/card-products", tag = "cards", request_body = ProductInput,
    responses((status = 201, description = "Created", body = ProductView), Errors), security(("session" = []), ("token" = [])))]
pub async fn create_product(
    State(state): State<AppState>,
    need: Need<perm::ProductManage>,
    ApiJson(input): ApiJson<ProductInput>,
) -> ApiResult<(StatusCode, Json<ProductView>)> {
    Ok((StatusCode::CREATED, Json(state.services.create_product(need.access(), input).await?)))
}

#[utoipa::path(get, path = "/api/v1/card-products/{id}", tag = "cards", params(("id" = i64, Path, description = "Product id")),
    responses((status = 200, description = "OK", body = ProductView), Errors), security(("session" = []), ("token" = [])))]
pub async fn get_product(
    State(state): State<AppState>,
    need: Need<perm::CardRead>,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<Json<ProductView>> {
    Ok(Json(state.services.get_product(need.access(), id).await?))
}

/// Changes a product; fields left out keep their value. Cards already issued follow the new
/// rules from their next operation.
#[utoipa::path(patch, path = "/api/v1/card-products/{id}", tag = "cards", request_body = ProductInput,
    params(("id" = i64, Path, description = "Product id")),
    responses((status = 200, description = "OK", body = ProductView), Errors), security(("session" = []), ("token" = [])))]
pub async fn update_product(
    State(state): State<AppState>,
    need: Need<perm::ProductManage>,
    ApiPath(id): ApiPath<i64>,
    ApiJson(input): ApiJson<ProductInput>,
) -> ApiResult<Json<ProductView>> {
    Ok(Json(state.services.update_product(need.access(), id, input).await?))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct FindParams {
    /// The full card number, as typed or scanned (spaces allowed).
    pub number: String,
}

/// Issues a card to a customer. The full number is in the answer once; afterwards only its
/// masked form is shown.
#[utoipa::path(post, path = "/api/v1/cards", tag = "cards", request_body = IssueCardInput,
    responses((status = 201, description = "Created", body = CardIssued), Errors), security(("session" = []), ("token" = [])))]
pub async fn issue_card(
    State(state): State<AppState>,
    need: Need<perm::CardWrite>,
    ApiJson(input): ApiJson<IssueCardInput>,
) -> ApiResult<(StatusCode, Json<CardIssued>)> {
    Ok((StatusCode::CREATED, Json(state.services.issue_card(need.access(), input).await?)))
}

/// Finds the card with a number.
#[utoipa::path(get, path = "/api/v1/cards", tag = "cards", params(FindParams),
    responses((status = 200, description = "OK", body = CardView), Errors), security(("session" = []), ("token" = [])))]
pub async fn find_card(
    State(state): State<AppState>,
    need: Need<perm::CardRead>,
    ApiQuery(params): ApiQuery<FindParams>,
) -> ApiResult<Json<CardView>> {
    Ok(Json(state.services.find_card(need.access(), &params.number).await?))
}

#[utoipa::path(get, path = "/api/v1/cards/{id}", tag = "cards", params(("id" = i64, Path, description = "Card id")),
    responses((status = 200, description = "OK", body = CardView), Errors), security(("session" = []), ("token" = [])))]
pub async fn get_card(
    State(state): State<AppState>,
    need: Need<perm::CardRead>,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<Json<CardView>> {
    Ok(Json(state.services.get_card(need.access(), id).await?))
}

/// A customer's cards, newest first.
#[utoipa::path(get, path = "/api/v1/customers/{id}/cards", tag = "cards", params(("id" = i64, Path, description = "Customer id")),
    responses((status = 200, description = "OK", body = Vec<CardView>), Errors), security(("session" = []), ("token" = [])))]
pub async fn customer_cards(
    State(state): State<AppState>,
    need: Need<perm::CardRead>,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<Json<Vec<CardView>>> {
    Ok(Json(state.services.cards_of_customer(need.access(), id).await?))
}

/// Activates an issued card (a first top-up also does).
#[utoipa::path(post, path = "/api/v1/cards/{id}/activate", tag = "cards", params(("id" = i64, Path, description = "Card id")),
    responses((status = 200, description = "OK", body = CardView), Errors), security(("session" = []), ("token" = [])))]
pub async fn activate_card(
    State(state): State<AppState>,
    need: Need<perm::CardWrite>,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<Json<CardView>> {
    Ok(Json(state.services.activate_card(need.access(), id).await?))
}

/// Freezes a card; `reason: lost` reports it lost 挂失, after which it can be replaced.
#[utoipa::path(post, path = "/api/v1/cards/{id}/freeze", tag = "cards", request_body = FreezeInput,
    params(("id" = i64, Path, description = "Card id")),
    responses((status = 200, description = "OK", body = CardView), Errors), security(("session" = []), ("token" = [])))]
pub async fn freeze_card(
    State(state): State<AppState>,
    need: Need<perm::CardWrite>,
    ApiPath(id): ApiPath<i64>,
    ApiJson(input): ApiJson<FreezeInput>,
) -> ApiResult<Json<CardView>> {
    Ok(Json(state.services.freeze_card(need.access(), id, input).await?))
}

#[utoipa::path(post, path = "/api/v1/cards/{id}/unfreeze", tag = "cards", params(("id" = i64, Path, description = "Card id")),
    responses((status = 200, description = "OK", body = CardView), Errors), security(("session" = []), ("token" = [])))]
pub async fn unfreeze_card(
    State(state): State<AppState>,
    need: Need<perm::CardWrite>,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<Json<CardView>> {
    Ok(Json(state.services.unfreeze_card(need.access(), id).await?))
}

/// Sets or changes the card's six-digit PIN (changing needs the current one). Unlocks a
/// PIN locked after too many wrong tries.
#[utoipa::path(put, path = "/api/v1/cards/{id}/pin", tag = "cards", request_body = PinInput,
    params(("id" = i64, Path, description = "Card id")),
    responses((status = 200, description = "OK", body = CardView), Errors), security(("session" = []), ("token" = [])))]
pub async fn set_pin(
    State(state): State<AppState>,
    need: Need<perm::CardWrite>,
    ApiPath(id): ApiPath<i64>,
    ApiJson(input): ApiJson<PinInput>,
) -> ApiResult<Json<CardView>> {
    Ok(Json(state.services.set_pin(need.access(), id, input).await?))
}

/// A customer's credit-card accounts (imported from the issuer with `cardcrm import credit`)
/// and their latest 12 statements, numbers masked.
#[utoipa::path(get, path = "/api/v1/customers/{id}/credit-accounts", tag = "cards", params(("id" = i64, Path, description = "Customer id")),
    responses((status = 200, description = "OK", body = Vec<CreditAccountView>), Errors), security(("session" = []), ("token" = [])))]
pub async fn credit_accounts(
    State(state): State<AppState>,
    need: Need<perm::CardRead>,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<Json<Vec<CreditAccountView>>> {
    Ok(Json(state.services.credit_accounts(need.access(), id).await?))
}
