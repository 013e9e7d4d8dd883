//! Purchase records sent one at a time by an integration (a POS, an online shop). Re-sending
//! a record with the same external id returns the stored one instead of counting it twice.

use cardcrm_domain::{FieldError, FieldErrors, customer::Channel, limits, money::Currency, text};
use cardcrm_store::repo::{
    customers as customer_repo, organisation,
    purchases::{self as repo, PurchaseRecord},
};
use serde::{Deserialize, Serialize};

use crate::{
    Services, audit,
    clock::format_ms,
    error::{ServiceError, ServiceResult},
    identity::{Access, perm},
    view::{Page, cursor_decode_moment, cursor_encode_moment, page_limit},
};

#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PurchaseInput {
    pub customer_id: i64,
    #[serde(default)]
    pub store_id: Option<i64>,
    /// RFC 3339, or a local date-time read in the store's time zone.
    pub occurred_at: String,
    /// Integer minor units (fen): 12.50 yuan is 1250.
    pub amount_minor: i64,
    #[serde(default)]
    pub currency: Option<String>,
    #[serde(default)]
    pub category: Option<String>,
    #[serde(default)]
    pub channel: Option<String>,
    /// The sender's id for this purchase; makes re-sending safe.
    #[serde(default)]
    pub external_id: Option<String>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct PurchaseView {
    pub id: i64,
    pub customer_id: i64,
    pub store_id: Option<i64>,
    pub occurred_at: String,
    pub amount_minor: i64,
    pub currency: String,
    pub category: Option<String>,
    pub channel: String,
    pub external_id: Option<String>,
    pub import_id: Option<i64>,
    pub created_at: String,
}

impl From<&PurchaseRecord> for PurchaseView {
    fn from(record: &PurchaseRecord) -> Self {
        Self {
            id: record.id,
            customer_id: record.customer_id,
            store_id: record.store_id,
            occurred_at: format_ms(record.occurred_at_ms),
            amount_minor: record.amount_minor,
            currency: record.currency.clone(),
            category: record.category.clone(),
            channel: record.channel.clone(),
            external_id: record.external_id.clone(),
            import_id: record.import_id,
            created_at: format_ms(record.created_at_ms),
        }
    }
}

/// The result of recording a purchase: `created` is false when it was already stored.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct PurchaseRecorded {
    pub purchase: PurchaseView,
    pub created: bool,
}

/// Product categories are free text, cleaned and bounded.
pub fn parse_category(raw: &str) -> Result<Option<String>, FieldError> {
    cardcrm_domain::customer::parse_bounded_text("category", raw, 64)
}

fn same_purchase(a: &PurchaseRecord, b: &PurchaseRecord) -> bool {
    (a.customer_id, a.store_id, a.occurred_at_ms, a.amount_minor, &a.currency, &a.category, &a.channel)
        == (b.customer_id, b.store_id, b.occurred_at_ms, b.amount_minor, &b.currency, &b.category, &b.channel)
}

impl Services {
    pub async fn record_purchase(
        &self,
        access: Access<'_, perm::TransactionWrite>,
        input: PurchaseInput,
    ) -> ServiceResult<PurchaseRecorded> {
        let mut errors = FieldErrors::new();
        if input.amount_minor <= 0 || input.amount_minor > limits::PURCHASE_AMOUNT_MINOR_MAX {
            errors.push(FieldError::new(
                "amount_minor",
                "amount.out_of_range",
                format!("amount_minor must be between 1 and {}", limits::PURCHASE_AMOUNT_MINOR_MAX),
            ));
        }
        let currency = match &input.currency {
            Some(raw) => errors.take("currency", Currency::parse(raw)),
            None => Some(self.currency()),
        };
        let category =
            input.category.as_deref().and_then(|raw| errors.take("category", parse_category(raw))).flatten();
        let channel = match &input.channel {
            Some(raw) => errors.take("channel", Channel::parse(raw)),
            None => Some(Channel::Store),
        };
        let external_id = input
            .external_id
            .as_deref()
            .and_then(|raw| errors.take("external_id", cardcrm_domain::customer::parse_external_id(raw)))
            .flatten();
        let store_id = input.store_id.or(access.scope.store_id());
        access.require_store(store_id)?;
        if !errors.is_empty() {
            return Err(errors.into());
        }
        let identity = access.identity().clone();
        let now_ms = self.now_ms();
        let default_zone = self.default_zone().clone();
        let raw_time = input.occurred_at.clone();
        let customer_id = input.customer_id;
        let amount_minor = input.amount_minor;
        let (record, created) = self
            .database()
            .write(move |conn| {
                let zone = match store_id {
                    Some(id) => {
                        let store = organisation::get(conn, id)?.ok_or_else(|| {
                            ServiceError::invalid(
                                "store_id",
                                "store.unknown",
                                format!("store {id} does not exist"),
                            )
                        })?;
                        jiff::tz::TimeZone::get(&store.time_zone).unwrap_or_else(|_| default_zone.clone())
                    }
                    None => default_zone.clone(),
                };
                let occurred_at_ms = cardcrm_domain::date::parse_moment(&raw_time, &zone)
                    .map_err(|error| error.at("occurred_at"))?
                    .as_millisecond();
                if occurred_at_ms > now_ms + 5 * 60_000 {
                    return Err(ServiceError::invalid(
                        "occurred_at",
                        "occurred_at.future",
                        "the purchase is in the future",
                    ));
                }
                let customer = customer_repo::get(conn, customer_id)?.ok_or_else(|| {
                    ServiceError::invalid(
                        "customer_id",
                        "customer.unknown",
                        format!("customer {customer_id} does not exist"),
                    )
                })?;
                let owner = customer.merged_into_id.unwrap_or(customer.id);
                let record = PurchaseRecord {
                    id: 0,
                    customer_id: owner,
                    store_id,
                    occurred_at_ms,
                    amount_minor,
                    currency: currency.map(|currency| currency.as_str().to_owned()).unwrap_or_default(),
                    category: category.clone(),
                    channel: channel.map(|channel| channel.as_str().to_owned()).unwrap_or_default(),
                    external_id: external_id.clone(),
                    import_id: None,
                    operation_id: None,
                    created_at_ms: now_ms,
                };
                match repo::insert(conn, &record)? {
                    Some(id) => {
                        let stored = PurchaseRecord { id, ..record };
                        audit::append(
                            conn,
                            &identity,
                            now_ms,
                            "purchase.create",
                            "purchase",
                            id,
                            None,
                            audit::snapshot(&PurchaseView::from(&stored)),
                        )?;
                        Ok((stored, true))
                    }
                    None => {
                        let existing =
                            repo::by_external_id(conn, external_id.as_deref().unwrap_or_default())?
                                .ok_or_else(|| {
                                    ServiceError::conflict(
                                        "purchase.conflict",
                                        "the purchase could not be stored",
                                    )
                                })?;
                        if !same_purchase(&existing, &record) {
                            return Err(ServiceError::conflict(
                                "purchase.external_id_reused",
                                format!(
                                    "external id {} was already used for a different purchase ({})",
                                    existing.external_id.clone().unwrap_or_default(),
                                    existing.id
                                ),
                            ));
                        }
                        Ok((existing, false))
                    }
                }
            })
            .await?;
        Ok(PurchaseRecorded { purchase: PurchaseView::from(&record), created })
    }

    pub async fn list_purchases(
        &self,
        _access: Access<'_, perm::TransactionRead>,
        customer_id: i64,
        cursor: Option<String>,
        limit: u32,
    ) -> ServiceResult<Page<PurchaseView>> {
        let before = cursor.as_deref().map(cursor_decode_moment).transpose()?.map(|(at, _, id)| (at, id));
        let limit = page_limit(limit);
        let records = self
            .database()
            .read(move |conn| {
                if customer_repo::get(conn, customer_id)?.is_none() {
                    return Err(ServiceError::not_found("customer", customer_id));
                }
                Ok(repo::of_customer(conn, customer_id, before, limit + 1)?)
            })
            .await?;
        Ok(Page::from_overfetch(records, limit, |record| {
            cursor_encode_moment(record.occurred_at_ms, 1, record.id)
        })
        .map(|record| PurchaseView::from(&record)))
    }
}

/// Cleans a category or returns `None` for an empty one.
pub fn clean_category(raw: &str) -> Option<String> {
    text::clean(raw)
}
