//! Every route of the API. All of them are registered here through `OpenApiRouter`, so the
//! OpenAPI document and the router cannot disagree.

pub mod analysis;
pub mod audit;
pub mod auth;
pub mod cards;
pub mod customers;
pub mod imports;
pub mod ledger;
pub mod loyalty;
pub mod purchases;
pub mod staff;
pub mod stores;
pub mod system;
pub mod tokens;

use axum::extract::DefaultBodyLimit;
use utoipa::OpenApi;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::{AppState, openapi::ApiDoc};

pub fn api(import_body_limit_bytes: usize) -> OpenApiRouter<AppState> {
    let imports = OpenApiRouter::new()
        .routes(routes!(imports::import_customers))
        .routes(routes!(imports::import_transactions))
        .routes(routes!(imports::import_stores))
        .layer(DefaultBodyLimit::max(import_body_limit_bytes));
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(system::healthz))
        .routes(routes!(system::metrics))
        .routes(routes!(system::openapi_document))
        .routes(routes!(auth::login))
        .routes(routes!(auth::logout))
        .routes(routes!(auth::me))
        .routes(routes!(stores::list_stores, stores::create_store))
        .routes(routes!(stores::get_store, stores::update_store))
        .routes(routes!(staff::list_staff, staff::create_staff))
        .routes(routes!(staff::change_staff))
        .routes(routes!(staff::reset_password))
        .routes(routes!(tokens::list_tokens, tokens::create_token))
        .routes(routes!(tokens::revoke_token))
        .routes(routes!(audit::list_audit))
        .routes(routes!(customers::search_customers, customers::create_customer))
        .routes(routes!(customers::duplicates))
        .routes(routes!(customers::get_customer, customers::update_customer))
        .routes(routes!(customers::merge))
        .routes(routes!(customers::set_consent))
        .routes(routes!(customers::record_event))
        .routes(routes!(customers::timeline))
        .routes(routes!(purchases::list_purchases))
        .routes(routes!(purchases::record_purchase))
        .routes(routes!(imports::list_imports))
        .routes(routes!(imports::get_import))
        .routes(routes!(imports::import_rejects))
        .routes(routes!(cards::list_tiers))
        .routes(routes!(cards::update_tier))
        .routes(routes!(cards::list_products, cards::create_product))
        .routes(routes!(cards::get_product, cards::update_product))
        .routes(routes!(cards::find_card, cards::issue_card))
        .routes(routes!(cards::get_card))
        .routes(routes!(cards::customer_cards))
        .routes(routes!(cards::credit_accounts))
        .routes(routes!(cards::activate_card))
        .routes(routes!(cards::freeze_card))
        .routes(routes!(cards::unfreeze_card))
        .routes(routes!(cards::set_pin))
        .routes(routes!(ledger::top_up))
        .routes(routes!(ledger::spend))
        .routes(routes!(ledger::transfer))
        .routes(routes!(ledger::replace))
        .routes(routes!(ledger::close))
        .routes(routes!(ledger::balance))
        .routes(routes!(ledger::history))
        .routes(routes!(ledger::statement))
        .routes(routes!(ledger::checkout))
        .routes(routes!(ledger::get_operation))
        .routes(routes!(ledger::refund))
        .routes(routes!(ledger::receipt))
        .routes(routes!(ledger::reconciliation))
        .routes(routes!(ledger::alerts))
        .routes(routes!(ledger::acknowledge_alert))
        .routes(routes!(loyalty::programmes, loyalty::create_programme))
        .routes(routes!(loyalty::simulate))
        .routes(routes!(loyalty::member))
        .routes(routes!(loyalty::lots))
        .routes(routes!(loyalty::points_history))
        .routes(routes!(loyalty::tier_history))
        .routes(routes!(loyalty::tier_override))
        .routes(routes!(loyalty::enrol_member))
        .routes(routes!(loyalty::transfer_points))
        .routes(routes!(loyalty::adjust_points))
        .routes(routes!(loyalty::member_coupons))
        .routes(routes!(loyalty::record_sale))
        .routes(routes!(loyalty::refund_sale))
        .routes(routes!(loyalty::liability))
        .routes(routes!(analysis::runs, analysis::run_analysis))
        .routes(routes!(analysis::run))
        .routes(routes!(analysis::members))
        .routes(routes!(analysis::export))
        .routes(routes!(analysis::kpi))
        .routes(routes!(loyalty::events))
        .routes(routes!(loyalty::run_job))
        .routes(routes!(loyalty::partners, loyalty::create_partner))
        .routes(routes!(loyalty::partner_exchange))
        .routes(routes!(loyalty::templates, loyalty::create_template))
        .routes(routes!(loyalty::retire_template))
        .routes(routes!(loyalty::issue_coupons))
        .routes(routes!(loyalty::cancel_coupon))
        .routes(routes!(loyalty::rewards, loyalty::create_reward))
        .routes(routes!(loyalty::orders, loyalty::place_order))
        .routes(routes!(loyalty::order_status))
        .merge(imports)
}
