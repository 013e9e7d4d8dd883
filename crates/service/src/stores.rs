//! Stores (门店): where customers shop and staff work, each in its own time zone.

use cardcrm_domain::{FieldError, FieldErrors, limits, text};
use cardcrm_store::repo::organisation::{self as repo, StoreRecord};
use serde::{Deserialize, Serialize};

use crate::{
    Services, audit,
    clock::format_ms,
    error::{ServiceError, ServiceResult},
    identity::{Access, Identity, perm},
};

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct StoreView {
    pub id: i64,
    pub code: String,
    pub name: String,
    pub city: Option<String>,
    pub address: Option<String>,
    pub time_zone: String,
    pub status: String,
    pub created_at: String,
    pub updated_at: String,
}

impl From<&StoreRecord> for StoreView {
    fn from(record: &StoreRecord) -> Self {
        Self {
            id: record.id,
            code: record.code.clone(),
            name: record.name.clone(),
            city: record.city.clone(),
            address: record.address.clone(),
            time_zone: record.time_zone.clone(),
            status: record.status.clone(),
            created_at: format_ms(record.created_at_ms),
            updated_at: format_ms(record.updated_at_ms),
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StoreInput {
    /// Short unique code used in imports (`SH001`); fixed once created.
    #[serde(default)]
    pub code: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub city: Option<String>,
    #[serde(default)]
    pub address: Option<String>,
    /// IANA zone such as `Asia/Shanghai`.
    #[serde(default)]
    pub time_zone: Option<String>,
    /// `active` or `closed`.
    #[serde(default)]
    pub status: Option<String>,
}

/// A store code: 1 to 32 of `A-Z 0-9 - _`, upper-cased.
pub fn parse_store_code(raw: &str) -> Result<String, FieldError> {
    text::parse_code(raw, "store_code.invalid", "store")
}

fn parse_zone(raw: &str) -> Result<String, FieldError> {
    let zone = raw.trim();
    jiff::tz::TimeZone::get(zone).map(|_| zone.to_owned()).map_err(|_| {
        FieldError::new(
            "time_zone",
            "time_zone.invalid",
            format!("`{raw}` is not a time zone such as Asia/Shanghai"),
        )
    })
}

fn optional_text(errors: &mut FieldErrors, field: &str, raw: &Option<String>) -> Option<Option<String>> {
    raw.as_ref().map(|value| {
        errors
            .take(field, cardcrm_domain::customer::parse_bounded_text(field, value, limits::TEXT_LENGTH_MAX))
            .flatten()
    })
}

impl Services {
    pub async fn create_store(
        &self,
        access: Access<'_, perm::StoreManage>,
        input: StoreInput,
    ) -> ServiceResult<StoreView> {
        let mut errors = FieldErrors::new();
        let code = match &input.code {
            Some(raw) => errors.take("code", parse_store_code(raw)),
            None => {
                errors.push(FieldError::new("code", "required", "code is required"));
                None
            }
        };
        let name = input.name.as_deref().and_then(text::clean);
        if name.is_none() {
            errors.push(FieldError::new("name", "required", "name is required"));
        }
        let time_zone = match &input.time_zone {
            Some(raw) => errors.take("time_zone", parse_zone(raw)),
            None => Some(self.settings().default_time_zone.clone()),
        };
        let city = optional_text(&mut errors, "city", &input.city).flatten();
        let address = optional_text(&mut errors, "address", &input.address).flatten();
        if !errors.is_empty() {
            return Err(errors.into());
        }
        let now_ms = self.now_ms();
        let record = StoreRecord {
            id: 0,
            code: code.unwrap_or_default(),
            name: name.unwrap_or_default(),
            city,
            address,
            time_zone: time_zone.unwrap_or_default(),
            status: "active".into(),
            created_at_ms: now_ms,
            updated_at_ms: now_ms,
        };
        self.insert_store(access.identity(), record).await
    }

    pub(crate) async fn insert_store(
        &self,
        identity: &Identity,
        record: StoreRecord,
    ) -> ServiceResult<StoreView> {
        let identity = identity.clone();
        let now_ms = record.created_at_ms;
        self.database()
            .write(move |conn| {
                if repo::by_code(conn, &record.code)?.is_some() {
                    return Err(ServiceError::conflict(
                        "store.code_taken",
                        format!("store code {} is taken", record.code),
                    ));
                }
                let mut stored = record.clone();
                stored.id = repo::insert(conn, &record)?;
                let view = StoreView::from(&stored);
                audit::append(
                    conn,
                    &identity,
                    now_ms,
                    "store.create",
                    "store",
                    stored.id,
                    None,
                    audit::snapshot(&view),
                )?;
                Ok(view)
            })
            .await
    }

    pub async fn update_store(
        &self,
        access: Access<'_, perm::StoreManage>,
        id: i64,
        input: StoreInput,
    ) -> ServiceResult<StoreView> {
        let mut errors = FieldErrors::new();
        if input.code.is_some() {
            errors.push(FieldError::new("code", "store_code.fixed", "a store code cannot change"));
        }
        let time_zone = input.time_zone.as_deref().and_then(|raw| errors.take("time_zone", parse_zone(raw)));
        let status = match input.status.as_deref().map(str::trim) {
            None => None,
            Some(status @ ("active" | "closed")) => Some(status.to_owned()),
            Some(_) => {
                errors.push(FieldError::new("status", "status.invalid", "status is active or closed"));
                None
            }
        };
        let city = optional_text(&mut errors, "city", &input.city);
        let address = optional_text(&mut errors, "address", &input.address);
        let name = input.name.as_deref().map(text::clean);
        if matches!(name, Some(None)) {
            errors.push(FieldError::new("name", "required", "name cannot be empty"));
        }
        if !errors.is_empty() {
            return Err(errors.into());
        }
        let identity = access.identity().clone();
        let now_ms = self.now_ms();
        self.database()
            .write(move |conn| {
                let before = repo::get(conn, id)?.ok_or_else(|| ServiceError::not_found("store", id))?;
                identity.require_store(Some(id))?;
                let mut after = before.clone();
                if let Some(Some(name)) = &name {
                    after.name = name.clone();
                }
                if let Some(city) = &city {
                    after.city = city.clone();
                }
                if let Some(address) = &address {
                    after.address = address.clone();
                }
                if let Some(zone) = &time_zone {
                    after.time_zone = zone.clone();
                }
                if let Some(status) = &status {
                    after.status = status.clone();
                }
                after.updated_at_ms = now_ms;
                repo::update(conn, &after)?;
                let (before_view, after_view) = (StoreView::from(&before), StoreView::from(&after));
                audit::append(
                    conn,
                    &identity,
                    now_ms,
                    "store.update",
                    "store",
                    id,
                    audit::snapshot(&before_view),
                    audit::snapshot(&after_view),
                )?;
                Ok(after_view)
            })
            .await
    }

    /// Every store; any signed-in identity may list them.
    pub async fn list_stores(&self, _identity: &Identity) -> ServiceResult<Vec<StoreView>> {
        let records = self.database().read(repo::list).await?;
        Ok(records.iter().map(StoreView::from).collect())
    }

    pub async fn get_store(&self, _identity: &Identity, id: i64) -> ServiceResult<StoreView> {
        let record = self.database().read(move |conn| repo::get(conn, id)).await?;
        record.as_ref().map(StoreView::from).ok_or_else(|| ServiceError::not_found("store", id))
    }
}
