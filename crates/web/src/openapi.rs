//! The OpenAPI 3.1 document's frame: title, security schemes, tags, and the error responses
//! every operation shares. Operations come from the `#[utoipa::path]` of each handler, so
//! the document lists exactly the routes the router serves.

use utoipa::{
    Modify, OpenApi,
    openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme},
};

use crate::problem::Problem;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "cardcrm API",
        description = "Card-customer management and loyalty. Money is integer minor units (fen); times are RFC 3339 UTC. Errors are application/problem+json with a stable `code`.",
        license(name = "Apache-2.0")
    ),
    modifiers(&SecuritySchemes),
    components(schemas(Problem)),
    tags(
        (name = "system", description = "Health, metrics, this document"),
        (name = "auth", description = "Console sessions"),
        (name = "stores", description = "Stores 门店"),
        (name = "staff", description = "Staff accounts and roles"),
        (name = "tokens", description = "API tokens for integrations"),
        (name = "audit", description = "Audit log"),
        (name = "customers", description = "Customers 客户 (C1)"),
        (name = "purchases", description = "Purchase records"),
        (name = "imports", description = "CSV and XLSX imports"),
        (name = "cards", description = "Card products 卡种, tiers and cards (C2)"),
        (name = "ledger", description = "Stored value 储值 on a double-entry ledger: top-ups, payments, refunds, checkout, statements, reconciliation (C2). Requests that move value need an Idempotency-Key header."),
        (name = "loyalty", description = "Loyalty programme 忠诚度计划 (C3): earning rules, points lots with expiry, tiers, coupons, the points mall, partners, liability. Requests that move points need an Idempotency-Key header."),
        (name = "analysis", description = "Analyses (C4): RFM, K-means, lifecycle, churn risk and lifetime value over the purchases, stored as runs whose segments 分群 campaigns target; members exported as CSV or Parquet.")
    )
)]
pub struct ApiDoc;

struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "token",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("An API token (`ccrm_…`) from POST /api/v1/tokens"))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "session",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::with_description(
                crate::extract::SESSION_COOKIE,
                "Console session from POST /api/v1/auth/login; state-changing requests also need the X-CSRF-Token header",
            ))),
        );
    }
}

/// The error responses any authenticated operation may give.
#[derive(utoipa::IntoResponses)]
pub enum Errors {
    #[response(
        status = 400,
        description = "Malformed request (bad JSON, unknown field, wrong type)",
        content_type = "application/problem+json"
    )]
    BadRequest(Problem),
    #[response(status = 401, description = "Not signed in", content_type = "application/problem+json")]
    Unauthorized(Problem),
    #[response(
        status = 403,
        description = "Missing permission or CSRF token",
        content_type = "application/problem+json"
    )]
    Forbidden(Problem),
    #[response(status = 404, description = "Not found", content_type = "application/problem+json")]
    NotFound(Problem),
    #[response(
        status = 409,
        description = "Conflicts with the current state",
        content_type = "application/problem+json"
    )]
    Conflict(Problem),
    #[response(status = 413, description = "Body too large", content_type = "application/problem+json")]
    TooLarge(Problem),
    #[response(
        status = 415,
        description = "A body that is not application/json",
        content_type = "application/problem+json"
    )]
    UnsupportedMediaType(Problem),
    #[response(status = 422, description = "Invalid field values", content_type = "application/problem+json")]
    Invalid(Problem),
    #[response(status = 429, description = "Rate limited", content_type = "application/problem+json")]
    RateLimited(Problem),
    #[response(
        status = 503,
        description = "Busy or timed out; retry",
        content_type = "application/problem+json"
    )]
    Unavailable(Problem),
}
