//! Stored value on the ledger (C2): top-ups, payments, refunds, transfers, replacement 补卡,
//! closing, checkout 快速结账; balances, history, statements 账单 (JSON, CSV, printable
//! HTML), receipts, the daily reconciliation and unusual-activity alerts.
//!
//! Every request that moves value needs an `Idempotency-Key` header. A repeat of a request
//! with its key gets the first answer again, marked `Idempotent-Replayed: true`.

use axum::{
    Json,
    extract::State,
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use cardcrm_domain::limits::PageSize;
use cardcrm_service::{
    checkout::{CheckoutInput, CheckoutReceipt},
    ledger::{
        BalanceView, CloseInput, OperationView, Outcome, RefundInput, ReplaceInput, Replacement, SpendInput,
        TopUpInput, TransferInput,
    },
    perm,
    statements::{AlertView, HistoryLine, Reconciliation, Statement},
    view::Page,
};
use serde::{Deserialize, Serialize};

use crate::{
    AppState,
    extract::{ApiJson, ApiPath, ApiQuery, Idempotency, Need, REPLAYED_HEADER},
    openapi::Errors,
    problem::ApiResult,
    routes::staff::PageQuery,
};

/// A keyed answer: 201 the first time, and the same body with `Idempotent-Replayed: true`
/// when a request is sent again with its key.
pub(crate) fn keyed<T: Serialize>(outcome: Outcome<T>) -> Response {
    let mut response = (StatusCode::CREATED, Json(outcome.value)).into_response();
    response
        .headers_mut()
        .insert(REPLAYED_HEADER, HeaderValue::from_static(if outcome.replayed { "true" } else { "false" }));
    response
}

/// Loads paid money onto a stored-value card; the product's bonus rule adds gifted money to
/// the bonus balance.
#[utoipa::path(post, path = "/api/v1/cards/{id}/top-ups", tag = "ledger", request_body = TopUpInput,
    params(("id" = i64, Path, description = "Card id"), ("Idempotency-Key" = String, Header, description = "8-128 of A-Z a-z 0-9 - _ . :")),
    responses((status = 201, description = "Done (or the stored answer of a repeat)", body = OperationView), Errors),
    security(("session" = []), ("token" = [])))]
pub async fn top_up(
    State(state): State<AppState>,
    need: Need<perm::ValueLoad>,
    Idempotency(key): Idempotency,
    ApiPath(id): ApiPath<i64>,
    ApiJson(input): ApiJson<TopUpInput>,
) -> ApiResult<Response> {
    Ok(keyed(state.services.top_up(need.access(), key, id, input).await?))
}

/// Pays from a card's stored value at a store. A PIN is needed above the product's threshold.
#[utoipa::path(post, path = "/api/v1/cards/{id}/spends", tag = "ledger", request_body = SpendInput,
    params(("id" = i64, Path, description = "Card id"), ("Idempotency-Key" = String, Header, description = "8-128 of A-Z a-z 0-9 - _ . :")),
    responses((status = 201, description = "Done (or the stored answer of a repeat)", body = OperationView), Errors),
    security(("session" = []), ("token" = [])))]
pub async fn spend(
    State(state): State<AppState>,
    need: Need<perm::ValueSpend>,
    Idempotency(key): Idempotency,
    ApiPath(id): ApiPath<i64>,
    ApiJson(input): ApiJson<SpendInput>,
) -> ApiResult<Response> {
    Ok(keyed(state.services.spend(need.access(), key, id, input).await?))
}

/// Moves stored value to another card of the same customer.
#[utoipa::path(post, path = "/api/v1/cards/{id}/transfers", tag = "ledger", request_body = TransferInput,
    params(("id" = i64, Path, description = "Paying card id"), ("Idempotency-Key" = String, Header, description = "8-128 of A-Z a-z 0-9 - _ . :")),
    responses((status = 201, description = "Done (or the stored answer of a repeat)", body = OperationView), Errors),
    security(("session" = []), ("token" = [])))]
pub async fn transfer(
    State(state): State<AppState>,
    need: Need<perm::ValueSpend>,
    Idempotency(key): Idempotency,
    ApiPath(id): ApiPath<i64>,
    ApiJson(input): ApiJson<TransferInput>,
) -> ApiResult<Response> {
    Ok(keyed(state.services.transfer_value(need.access(), key, id, input).await?))
}

/// Replaces a card reported lost (or damaged) 补卡: a new number receives the balance,
/// points and tier in one step, and the old card can no longer pay.
#[utoipa::path(post, path = "/api/v1/cards/{id}/replace", tag = "ledger", request_body = ReplaceInput,
    params(("id" = i64, Path, description = "Card id"), ("Idempotency-Key" = String, Header, description = "8-128 of A-Z a-z 0-9 - _ . :")),
    responses((status = 201, description = "Done (or the stored answer of a repeat)", body = Replacement), Errors),
    security(("session" = []), ("token" = [])))]
pub async fn replace(
    State(state): State<AppState>,
    need: Need<perm::CardWrite>,
    Idempotency(key): Idempotency,
    ApiPath(id): ApiPath<i64>,
    ApiJson(input): ApiJson<ReplaceInput>,
) -> ApiResult<Response> {
    Ok(keyed(state.services.replace_card(need.access(), key, id, input).await?))
}

/// Closes a card: paid value is refunded or forfeited by the product's rule; bonus value is
/// forfeited (breakage).
#[utoipa::path(post, path = "/api/v1/cards/{id}/close", tag = "ledger", request_body = CloseInput,
    params(("id" = i64, Path, description = "Card id"), ("Idempotency-Key" = String, Header, description = "8-128 of A-Z a-z 0-9 - _ . :")),
    responses((status = 201, description = "Done (or the stored answer of a repeat)", body = OperationView), Errors),
    security(("session" = []), ("token" = [])))]
pub async fn close(
    State(state): State<AppState>,
    need: Need<perm::CardClose>,
    Idempotency(key): Idempotency,
    ApiPath(id): ApiPath<i64>,
    ApiJson(input): ApiJson<CloseInput>,
) -> ApiResult<Response> {
    Ok(keyed(state.services.close_card(need.access(), key, id, input).await?))
}

/// Refunds a payment or checkout, fully (no amount) or in part: back to the paid and bonus
/// balances in the proportion they paid, and to the till for what was paid outside the card.
#[utoipa::path(post, path = "/api/v1/operations/{id}/refunds", tag = "ledger", request_body = RefundInput,
    params(("id" = i64, Path, description = "Operation id of the payment or checkout"), ("Idempotency-Key" = String, Header, description = "8-128 of A-Z a-z 0-9 - _ . :")),
    responses((status = 201, description = "Done (or the stored answer of a repeat)", body = OperationView), Errors),
    security(("session" = []), ("token" = [])))]
pub async fn refund(
    State(state): State<AppState>,
    need: Need<perm::ValueRefund>,
    Idempotency(key): Idempotency,
    ApiPath(id): ApiPath<i64>,
    ApiJson(input): ApiJson<RefundInput>,
) -> ApiResult<Response> {
    Ok(keyed(state.services.refund(need.access(), key, id, input).await?))
}

/// Checkout 快速结账 in one atomic call: the member's tier discount, then payment from stored
/// value and/or an outside method, purchase records per line, and a receipt.
#[utoipa::path(post, path = "/api/v1/checkouts", tag = "ledger", request_body = CheckoutInput,
    params(("Idempotency-Key" = String, Header, description = "8-128 of A-Z a-z 0-9 - _ . :")),
    responses((status = 201, description = "Done (or the stored answer of a repeat)", body = CheckoutReceipt), Errors),
    security(("session" = []), ("token" = [])))]
pub async fn checkout(
    State(state): State<AppState>,
    need: Need<perm::ValueSpend>,
    Idempotency(key): Idempotency,
    ApiJson(input): ApiJson<CheckoutInput>,
) -> ApiResult<Response> {
    Ok(keyed(state.services.checkout(need.access(), key, input).await?))
}

/// The card's balance now: paid, bonus and total.
#[utoipa::path(get, path = "/api/v1/cards/{id}/balance", tag = "ledger", params(("id" = i64, Path, description = "Card id")),
    responses((status = 200, description = "OK", body = BalanceView), Errors), security(("session" = []), ("token" = [])))]
pub async fn balance(
    State(state): State<AppState>,
    need: Need<perm::CardRead>,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<Json<BalanceView>> {
    Ok(Json(state.services.balance(need.access(), id).await?))
}

/// The card's operations, newest first, with how each changed its balances.
#[utoipa::path(get, path = "/api/v1/cards/{id}/history", tag = "ledger", params(("id" = i64, Path, description = "Card id"), PageQuery),
    responses((status = 200, description = "OK", body = Page<HistoryLine>), Errors), security(("session" = []), ("token" = [])))]
pub async fn history(
    State(state): State<AppState>,
    need: Need<perm::CardRead>,
    ApiPath(id): ApiPath<i64>,
    ApiQuery(query): ApiQuery<PageQuery>,
) -> ApiResult<Json<Page<HistoryLine>>> {
    Ok(Json(
        state
            .services
            .card_history(need.access(), id, query.cursor, query.limit.map_or(0, PageSize::get))
            .await?,
    ))
}

#[derive(Debug, Clone, Copy, Default, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum StatementFormat {
    #[default]
    Json,
    Csv,
    Html,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct StatementParams {
    /// First day, `YYYY-MM-DD`, in the business's time zone.
    pub from: String,
    /// Last day, inclusive; at most 366 days after `from`.
    pub to: String,
    /// `json` (default), `csv` or `html` (printable).
    #[param(inline)]
    pub format: Option<StatementFormat>,
}

/// The card's statement 账单 for a period: opening balance, every operation with the balance
/// after it, closing balance. As JSON, CSV or a printable HTML page.
#[utoipa::path(get, path = "/api/v1/cards/{id}/statement", tag = "ledger", params(("id" = i64, Path, description = "Card id"), StatementParams),
    responses((status = 200, description = "OK", content((Statement = "application/json"), (String = "text/csv"), (String = "text/html"))), Errors),
    security(("session" = []), ("token" = [])))]
pub async fn statement(
    State(state): State<AppState>,
    need: Need<perm::CardRead>,
    ApiPath(id): ApiPath<i64>,
    ApiQuery(params): ApiQuery<StatementParams>,
) -> ApiResult<Response> {
    let statement = state.services.statement(need.access(), id, &params.from, &params.to).await?;
    Ok(match params.format.unwrap_or_default() {
        StatementFormat::Json => Json(statement).into_response(),
        StatementFormat::Csv => {
            let name = format!(
                "attachment; filename=\"statement-{}-{}-{}.csv\"",
                statement.card_id, statement.from, statement.to
            );
            let mut response =
                ([(header::CONTENT_TYPE, "text/csv; charset=utf-8")], render::statement_csv(&statement))
                    .into_response();
            if let Ok(value) = HeaderValue::from_str(&name) {
                response.headers_mut().insert(header::CONTENT_DISPOSITION, value);
            }
            response
        }
        StatementFormat::Html => {
            let html = render::statement_html(&statement, state.services.default_zone());
            ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], html).into_response()
        }
    })
}

/// One operation with its parts.
#[utoipa::path(get, path = "/api/v1/operations/{id}", tag = "ledger", params(("id" = i64, Path, description = "Operation id")),
    responses((status = 200, description = "OK", body = OperationView), Errors), security(("session" = []), ("token" = [])))]
pub async fn get_operation(
    State(state): State<AppState>,
    need: Need<perm::CardRead>,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<Json<OperationView>> {
    Ok(Json(state.services.get_operation(need.access(), id).await?))
}

/// A printable receipt (小票 / 充值凭证) of an operation.
#[utoipa::path(get, path = "/api/v1/operations/{id}/receipt", tag = "ledger", params(("id" = i64, Path, description = "Operation id")),
    responses((status = 200, description = "OK", content_type = "text/html", body = String), Errors), security(("session" = []), ("token" = [])))]
pub async fn receipt(
    State(state): State<AppState>,
    need: Need<perm::CardRead>,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<Response> {
    let operation = state.services.get_operation(need.access(), id).await?;
    let zone_name = &state.services.settings().default_time_zone;
    let html = render::receipt_html(&operation, state.services.default_zone(), zone_name);
    Ok(([(header::CONTENT_TYPE, "text/html; charset=utf-8")], html).into_response())
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ReconciliationParams {
    /// The business day, `YYYY-MM-DD`.
    pub date: String,
}

/// The daily reconciliation: stored-value liability per issuing store at the day's start
/// and end (paid and bonus) with every movement between, and each store's top-ups, spends,
/// refunds and breakage.
#[utoipa::path(get, path = "/api/v1/ledger/reconciliation", tag = "ledger", params(ReconciliationParams),
    responses((status = 200, description = "OK", body = Reconciliation), Errors), security(("session" = []), ("token" = [])))]
pub async fn reconciliation(
    State(state): State<AppState>,
    need: Need<perm::LedgerRead>,
    ApiQuery(params): ApiQuery<ReconciliationParams>,
) -> ApiResult<Json<Reconciliation>> {
    Ok(Json(state.services.reconciliation(need.access(), &params.date).await?))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AlertParams {
    /// Also list acknowledged alerts.
    pub all: Option<bool>,
    pub cursor: Option<String>,
    /// 1 to 200; 50 by default.
    #[param(value_type = Option<u32>, minimum = 1, maximum = 200)]
    pub limit: Option<PageSize>,
}

/// Unusual activity: many operations on one card in a short time, unusually large top-ups
/// or payments. Open ones first.
#[utoipa::path(get, path = "/api/v1/ledger/alerts", tag = "ledger", params(AlertParams),
    responses((status = 200, description = "OK", body = Page<AlertView>), Errors), security(("session" = []), ("token" = [])))]
pub async fn alerts(
    State(state): State<AppState>,
    need: Need<perm::LedgerRead>,
    ApiQuery(params): ApiQuery<AlertParams>,
) -> ApiResult<Json<Page<AlertView>>> {
    Ok(Json(
        state
            .services
            .alerts(
                need.access(),
                params.all.unwrap_or(false),
                params.cursor,
                params.limit.map_or(0, PageSize::get),
            )
            .await?,
    ))
}

/// Marks an alert as looked into.
#[utoipa::path(post, path = "/api/v1/ledger/alerts/{id}/acknowledge", tag = "ledger", params(("id" = i64, Path, description = "Alert id")),
    responses((status = 200, description = "OK", body = AlertView), Errors), security(("session" = []), ("token" = [])))]
pub async fn acknowledge_alert(
    State(state): State<AppState>,
    need: Need<perm::LedgerReview>,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<Json<AlertView>> {
    Ok(Json(state.services.acknowledge_alert(need.access(), id).await?))
}

/// Statements and receipts as CSV and printable HTML.
mod render {
    use std::fmt::Write;

    use cardcrm_service::{clock::format_in_zone, ledger::OperationView, statements::Statement};
    use jiff::tz::TimeZone;

    /// `12345` → `123.45`; `-5` → `-0.05`.
    pub fn money(minor: i64) -> String {
        let sign = if minor < 0 { "-" } else { "" };
        let abs = minor.unsigned_abs();
        format!("{sign}{}.{:02}", abs / 100, abs % 100)
    }

    fn escape(text: &str) -> String {
        let mut out = String::with_capacity(text.len());
        for c in text.chars() {
            match c {
                '&' => out.push_str("&amp;"),
                '<' => out.push_str("&lt;"),
                '>' => out.push_str("&gt;"),
                '"' => out.push_str("&quot;"),
                '\'' => out.push_str("&#39;"),
                other => out.push(other),
            }
        }
        out
    }

    fn kind_label(kind: &str) -> &'static str {
        match kind {
            "top_up" => "充值 Top-up",
            "spend" => "消费 Payment",
            "refund" => "退款 Refund",
            "transfer" => "转账 Transfer",
            "replace" => "补卡 Replacement",
            "close" => "销卡 Close",
            "checkout" => "结账 Checkout",
            _ => "其他 Other",
        }
    }

    /// CSV cells that a spreadsheet would run as a formula are prefixed with `'`.
    fn cell(text: &str) -> String {
        let guarded = if text.starts_with(['=', '+', '-', '@']) && text.parse::<f64>().is_err() {
            format!("'{text}")
        } else {
            text.to_owned()
        };
        if guarded.contains([',', '"', '\n']) {
            format!("\"{}\"", guarded.replace('"', "\"\""))
        } else {
            guarded
        }
    }

    pub fn statement_csv(statement: &Statement) -> String {
        let mut out = String::from(
            "operation_id,kind,occurred_at,store_id,paid_change,bonus_change,change,paid_after,bonus_after,balance_after\n",
        );
        let _ = writeln!(
            out,
            ",opening,{},,,,,{},{},{}",
            cell(&statement.from),
            money(statement.opening.paid_minor),
            money(statement.opening.bonus_minor),
            money(statement.opening.total_minor)
        );
        for line in &statement.lines {
            let _ = writeln!(
                out,
                "{},{},{},{},{},{},{},{},{},{}",
                line.line.operation_id,
                cell(&line.line.kind),
                cell(&line.line.occurred_at),
                line.line.store_id.map(|id| id.to_string()).unwrap_or_default(),
                money(line.line.paid_change_minor),
                money(line.line.bonus_change_minor),
                money(line.line.change_minor),
                money(line.balance_after.paid_minor),
                money(line.balance_after.bonus_minor),
                money(line.balance_after.total_minor)
            );
        }
        let _ = writeln!(
            out,
            ",closing,{},,,,,{},{},{}",
            cell(&statement.to),
            money(statement.closing.paid_minor),
            money(statement.closing.bonus_minor),
            money(statement.closing.total_minor)
        );
        out
    }

    const STYLE: &str = "body{font-family:system-ui,'Noto Sans CJK SC',sans-serif;margin:2em;color:#222}\
        table{border-collapse:collapse;width:100%}th,td{border-bottom:1px solid #ccc;padding:4px 8px;text-align:left}\
        td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}.sum{font-weight:bold}\
        @media print{body{margin:0}button{display:none}}";

    pub fn statement_html(statement: &Statement, zone: &TimeZone) -> String {
        let mut rows = String::new();
        for line in &statement.lines {
            let _ = write!(
                rows,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td class=n>{}</td><td class=n>{}</td><td class=n>{}</td></tr>",
                escape(&format_in_zone(&line.line.occurred_at, zone)),
                line.line.operation_id,
                kind_label(&line.line.kind),
                money(line.line.paid_change_minor),
                money(line.line.bonus_change_minor),
                money(line.balance_after.total_minor)
            );
        }
        if statement.lines.is_empty() {
            rows.push_str("<tr><td colspan=6>本期无交易 No operations in this period</td></tr>");
        }
        format!(
            "<!doctype html><html lang=zh-CN><head><meta charset=utf-8><title>账单 Statement {card}</title><style>{STYLE}</style></head><body>\
             <h1>储值卡账单 Stored-value statement</h1>\
             <p>卡号 Card: {card} · 客户 Customer: {customer} · 币种 Currency: {currency}<br>\
             期间 Period: {from} — {to} ({zone})</p>\
             <table><thead><tr><th>时间 Time ({zone})</th><th>单号 Operation</th><th>类型 Kind</th><th class=n>本金 Paid</th><th class=n>赠送 Bonus</th><th class=n>余额 Balance</th></tr></thead>\
             <tbody><tr class=sum><td colspan=3>期初余额 Opening balance</td><td class=n>{opening_paid}</td><td class=n>{opening_bonus}</td><td class=n>{opening}</td></tr>\
             {rows}\
             <tr class=sum><td colspan=3>期末余额 Closing balance</td><td class=n>{closing_paid}</td><td class=n>{closing_bonus}</td><td class=n>{closing}</td></tr></tbody></table>\
             <p>收入 Credits: {credits} · 支出 Debits: {debits}</p>\
             <p><small>生成于 Generated {generated}</small></p><button onclick=print()>打印 Print</button></body></html>",
            card = escape(&statement.card_number),
            customer = statement.customer_id,
            currency = escape(&statement.currency),
            from = escape(&statement.from),
            to = escape(&statement.to),
            zone = escape(&statement.time_zone),
            opening_paid = money(statement.opening.paid_minor),
            opening_bonus = money(statement.opening.bonus_minor),
            opening = money(statement.opening.total_minor),
            closing_paid = money(statement.closing.paid_minor),
            closing_bonus = money(statement.closing.bonus_minor),
            closing = money(statement.closing.total_minor),
            credits = money(statement.credits_minor),
            debits = money(statement.debits_minor),
            generated = escape(&format_in_zone(&statement.generated_at, zone)),
        )
    }

    pub fn receipt_html(operation: &OperationView, zone: &TimeZone, zone_name: &str) -> String {
        let mut lines = String::new();
        if let Some(items) = operation.detail.get("lines").and_then(|lines| lines.as_array()) {
            for item in items {
                let text = |name: &str| {
                    item.get(name).and_then(|value| value.as_str()).map(escape).unwrap_or_default()
                };
                let number = |name: &str| item.get(name).and_then(serde_json::Value::as_i64).unwrap_or(0);
                let _ = write!(
                    lines,
                    "<tr><td>{}</td><td>{}</td><td class=n>{}</td><td class=n>{}</td><td class=n>{}</td></tr>",
                    text("name"),
                    text("category"),
                    money(number("amount_minor")),
                    money(number("discount_minor")),
                    money(number("net_minor"))
                );
            }
        }
        let items = if lines.is_empty() {
            String::new()
        } else {
            format!(
                "<table><thead><tr><th>品名 Item</th><th>品类 Category</th><th class=n>金额 Amount</th><th class=n>优惠 Discount</th><th class=n>实付 Net</th></tr></thead><tbody>{lines}</tbody></table>"
            )
        };
        let external =
            operation.detail.get("external_minor").and_then(serde_json::Value::as_i64).unwrap_or(0);
        let reverses = operation
            .reverses_operation_id
            .map(|id| format!("<p>原单 Original operation: {id}</p>"))
            .unwrap_or_default();
        format!(
            "<!doctype html><html lang=zh-CN><head><meta charset=utf-8><title>凭证 Receipt {id}</title><style>{STYLE}</style></head><body>\
             <h1>{label}</h1><p>单号 Operation: {id} · 时间 Time: {at} ({zone}) · 门店 Store: {store} · 卡 Card: {card}</p>{reverses}{items}\
             <table><tbody><tr class=sum><td>合计 Total</td><td class=n>{total} {currency}</td></tr>\
             <tr><td>储值本金 Stored value (paid)</td><td class=n>{paid}</td></tr>\
             <tr><td>储值赠送 Stored value (bonus)</td><td class=n>{bonus}</td></tr>\
             <tr><td>其他支付 Other payment {method}</td><td class=n>{external}</td></tr></tbody></table>\
             <button onclick=print()>打印 Print</button></body></html>",
            id = operation.id,
            label = kind_label(&operation.kind),
            at = escape(&format_in_zone(&operation.occurred_at, zone)),
            zone = escape(zone_name),
            store = operation.store_id.map(|id| id.to_string()).unwrap_or_else(|| "—".into()),
            card = operation.card_id.map(|id| id.to_string()).unwrap_or_else(|| "—".into()),
            total = money(operation.amount_minor),
            currency = escape(&operation.currency),
            paid = money(operation.paid_minor),
            bonus = money(operation.bonus_minor),
            method = escape(operation.payment_method.as_deref().unwrap_or("")),
            external = money(external),
        )
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn money_and_cells() {
            assert_eq!(money(12345), "123.45");
            assert_eq!(money(-5), "-0.05");
            assert_eq!(money(0), "0.00");
            assert_eq!(cell("=HYPERLINK(\"x\")"), "\"'=HYPERLINK(\"\"x\"\")\"");
            assert_eq!(cell("-12.50"), "-12.50");
            assert_eq!(escape("<b>&"), "&lt;b&gt;&amp;");
        }
    }
}
