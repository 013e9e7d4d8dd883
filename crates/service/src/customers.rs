//! Customers (C1): profiles with personal data sealed at rest and masked on the way out,
//! search, tags, marketing consent per channel, the behaviour timeline, duplicate detection
//! and merge.
//!
//! Store scope: a store-bound identity lists and edits the customers of its own store, but
//! may look any member up by exact phone, e-mail, ID number or id, because members of a
//! chain shop in every branch. Revealing personal data in full needs `customer.reveal` and
//! is audited every time.

use std::collections::{BTreeMap, HashMap};

use cardcrm_domain::{
    FieldError, FieldErrors,
    customer::{Channel, ConsentChannel, CustomerDraft, CustomerInput, EventKind, Gender, mask_address},
    email::Email,
    id_number::{IdKind, IdNumber},
    limits,
    phone::Phone,
    text,
};
use cardcrm_store::{
    Conn, StoreError, StoreResult,
    repo::{
        customers::{
            self as repo, ConsentRecord, CustomerCursor, CustomerQuery, CustomerRecord, EventRecord,
            IndexedField,
        },
        organisation, purchases,
    },
};
use serde::{Deserialize, Deserializer, Serialize};

use crate::{
    Services, audit,
    clock::format_ms,
    crypto::{Seal, Vault},
    error::{ServiceError, ServiceResult},
    identity::{Access, Identity, perm},
    view::{Page, cursor_decode, cursor_decode_moment, cursor_encode, cursor_encode_moment, page_limit},
};

const TABLE: &str = "customers";

fn seal_of(column: &'static str, row_id: i64) -> Seal {
    Seal { table: TABLE, column, row_id }
}

/// The plaintext personal fields of one customer, decrypted.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct OpenedPii {
    pub phone: Option<String>,
    pub email: Option<String>,
    pub id_number: Option<String>,
    pub address: Option<String>,
}

/// Seals personal fields and computes blind indexes of a draft into a record for `id`.
pub fn seal_record(
    vault: &Vault,
    id: i64,
    draft: &CustomerDraft,
    home_store_id: Option<i64>,
    now_ms: i64,
) -> CustomerRecord {
    let seal = |column: &'static str, value: &str| vault.seal(seal_of(column, id), value);
    CustomerRecord {
        id,
        name: draft.name.as_ref().map(|name| name.as_str().to_owned()),
        name_key: draft.name.as_ref().map(|name| name_key(name.as_str())),
        gender: draft.gender.as_str().to_owned(),
        birthday: draft.birthday.map(|date| date.to_string()),
        phone_cipher: draft.phone.as_ref().map(|phone| seal("phone", phone.as_str())),
        phone_index: draft.phone.as_ref().map(|phone| vault.blind_index("phone", phone.as_str()).to_vec()),
        email_cipher: draft.email.as_ref().map(|email| seal("email", email.as_str())),
        email_index: draft.email.as_ref().map(|email| vault.blind_index("email", email.as_str()).to_vec()),
        id_kind: draft.id_number.as_ref().map(|id_number| id_number.kind().as_str().to_owned()),
        id_number_cipher: draft.id_number.as_ref().map(|id_number| seal("id_number", id_number.as_str())),
        id_number_index: draft.id_number.as_ref().map(|id_number| id_number_index(vault, id_number).to_vec()),
        address_cipher: draft.address.as_ref().map(|address| seal("address", address)),
        occupation: draft.occupation.clone(),
        income_band: draft.income_band.map(|band| band.as_str().to_owned()),
        province: draft.province.clone(),
        city: draft.city.clone(),
        source_channel: draft.source_channel.as_str().to_owned(),
        home_store_id,
        external_id: draft.external_id.clone(),
        preferences_json: serde_json::to_string(&draft.preferences).unwrap_or_else(|_| "{}".into()),
        status: "active".into(),
        merged_into_id: None,
        version: 1,
        created_at_ms: now_ms,
        updated_at_ms: now_ms,
    }
}

/// The blind index of an ID number covers its kind too: a passport and a resident ID with
/// the same characters are different documents.
pub fn id_number_index(vault: &Vault, id_number: &IdNumber) -> [u8; crate::crypto::BLIND_INDEX_LENGTH] {
    vault.blind_index("id_number", &format!("{}:{}", id_number.kind().as_str(), id_number.as_str()))
}

/// Lower-cased name for prefix search.
pub fn name_key(name: &str) -> String {
    name.to_lowercase()
}

/// Opens a customer's sealed fields.
pub fn open_pii(vault: &Vault, record: &CustomerRecord) -> ServiceResult<OpenedPii> {
    let open = |column: &'static str, sealed: &Option<Vec<u8>>| {
        sealed.as_ref().map(|bytes| vault.open(seal_of(column, record.id), bytes)).transpose()
    };
    Ok(OpenedPii {
        phone: open("phone", &record.phone_cipher)?,
        email: open("email", &record.email_cipher)?,
        id_number: open("id_number", &record.id_number_cipher)?,
        address: open("address", &record.address_cipher)?,
    })
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ConsentView {
    pub channel: String,
    pub granted: bool,
    pub source: String,
    pub recorded_by: String,
    pub recorded_at: String,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct CustomerView {
    pub id: i64,
    pub name: Option<String>,
    pub gender: String,
    pub birthday: Option<String>,
    /// Masked (`138****5678`) unless revealed.
    pub phone: Option<String>,
    pub email: Option<String>,
    pub id_kind: Option<String>,
    pub id_number: Option<String>,
    pub address: Option<String>,
    pub occupation: Option<String>,
    pub income_band: Option<String>,
    pub province: Option<String>,
    pub city: Option<String>,
    pub source_channel: String,
    pub home_store_id: Option<i64>,
    pub external_id: Option<String>,
    pub tags: Vec<String>,
    pub preferences: BTreeMap<String, String>,
    /// Marketing consent in force per channel (detail views only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub consents: Option<Vec<ConsentView>>,
    /// `active`, or `merged` (see `merged_into_id`).
    pub status: String,
    pub merged_into_id: Option<i64>,
    /// Changes with every update; send it back as `If-Match` to avoid lost updates.
    pub version: i64,
    pub created_at: String,
    pub updated_at: String,
    /// Whether personal fields are shown in full.
    pub pii_revealed: bool,
}

fn mask_phone(value: &str) -> String {
    Phone::parse(value).map(|phone| phone.masked()).unwrap_or_else(|_| "****".into())
}

fn display_phone(value: &str) -> String {
    Phone::parse(value).map(|phone| phone.display()).unwrap_or_else(|_| value.to_owned())
}

fn mask_email(value: &str) -> String {
    Email::parse(value).map(|email| email.masked()).unwrap_or_else(|_| "***".into())
}

fn mask_id_number(kind: Option<&str>, value: &str) -> String {
    let kind = kind.and_then(|kind| IdKind::parse(kind).ok()).unwrap_or(IdKind::Other);
    IdNumber::parse(kind, value)
        .or_else(|_| IdNumber::parse(IdKind::Other, value))
        .map(|id| id.masked())
        .unwrap_or_else(|_| "****".into())
}

/// Builds the view of a record: personal fields masked, or in full when `reveal`.
pub fn view_of(
    vault: &Vault,
    record: &CustomerRecord,
    tags: Vec<String>,
    consents: Option<Vec<ConsentView>>,
    reveal: bool,
) -> ServiceResult<CustomerView> {
    let pii = open_pii(vault, record)?;
    let show = |value: Option<String>, mask: &dyn Fn(&str) -> String, full: &dyn Fn(&str) -> String| {
        value.map(|value| if reveal { full(&value) } else { mask(&value) })
    };
    let kind = record.id_kind.clone();
    Ok(CustomerView {
        id: record.id,
        name: record.name.clone(),
        gender: record.gender.clone(),
        birthday: record.birthday.clone(),
        phone: show(pii.phone, &mask_phone, &display_phone),
        email: show(pii.email, &mask_email, &|value| value.to_owned()),
        id_kind: record.id_kind.clone(),
        id_number: show(pii.id_number, &|value| mask_id_number(kind.as_deref(), value), &|value| {
            value.to_owned()
        }),
        address: show(pii.address, &mask_address, &|value| value.to_owned()),
        occupation: record.occupation.clone(),
        income_band: record.income_band.clone(),
        province: record.province.clone(),
        city: record.city.clone(),
        source_channel: record.source_channel.clone(),
        home_store_id: record.home_store_id,
        external_id: record.external_id.clone(),
        tags,
        preferences: serde_json::from_str(&record.preferences_json).unwrap_or_default(),
        consents,
        status: record.status.clone(),
        merged_into_id: record.merged_into_id,
        version: record.version,
        created_at: format_ms(record.created_at_ms),
        updated_at: format_ms(record.updated_at_ms),
        pii_revealed: reveal,
    })
}

/// Consent in force per channel: the latest record of each.
fn current_consents(history: &[ConsentRecord]) -> Vec<ConsentView> {
    let mut latest: BTreeMap<&str, &ConsentRecord> = BTreeMap::new();
    for record in history {
        latest.insert(record.channel.as_str(), record);
    }
    latest
        .values()
        .map(|record| ConsentView {
            channel: record.channel.clone(),
            granted: record.granted,
            source: record.source.clone(),
            recorded_by: record.recorded_by.clone(),
            recorded_at: format_ms(record.recorded_at_ms),
        })
        .collect()
}

/// A new customer as sent to the API.
#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields, default)]
pub struct CustomerRequest {
    pub name: Option<String>,
    /// `male`, `female` or `unknown` (男/女 accepted).
    pub gender: Option<String>,
    /// `1990-01-02` (also 1990/1/2, 19900102, 1990年1月2日).
    pub birthday: Option<String>,
    pub phone: Option<String>,
    pub email: Option<String>,
    /// `resident_id` (default), `passport`, `travel_permit`, `other`.
    pub id_kind: Option<String>,
    pub id_number: Option<String>,
    pub occupation: Option<String>,
    /// `below_5k`, `5k_10k`, `10k_20k`, `20k_50k`, `above_50k` (monthly, yuan).
    pub income_band: Option<String>,
    pub province: Option<String>,
    pub city: Option<String>,
    pub address: Option<String>,
    /// `store`, `online_shop`, `app`, `wechat`, `partner`, `phone`, `email`, `import`, `other`.
    pub source_channel: Option<String>,
    /// The customer's id in the sending system; unique per source channel.
    pub external_id: Option<String>,
    pub tags: Option<Vec<String>>,
    pub preferences: Option<BTreeMap<String, String>>,
    pub home_store_id: Option<i64>,
    /// Marketing consent per channel (`sms`, `email`, `phone`, `wechat`, `app_push`, `post`).
    pub consents: Option<BTreeMap<String, bool>>,
}

impl CustomerRequest {
    fn input(&self) -> CustomerInput {
        CustomerInput {
            name: self.name.clone(),
            gender: self.gender.clone(),
            birthday: self.birthday.clone(),
            phone: self.phone.clone(),
            email: self.email.clone(),
            id_kind: self.id_kind.clone(),
            id_number: self.id_number.clone(),
            occupation: self.occupation.clone(),
            income_band: self.income_band.clone(),
            province: self.province.clone(),
            city: self.city.clone(),
            address: self.address.clone(),
            source_channel: self.source_channel.clone(),
            external_id: self.external_id.clone(),
            tags: self.tags.clone(),
            preferences: self.preferences.clone(),
        }
    }
}

pub(crate) fn double_option<'de, D, T>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(deserializer).map(Some)
}

/// A change to a customer: a field left out stays, a field set to `null` is cleared.
#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields, default)]
pub struct CustomerPatch {
    #[serde(deserialize_with = "double_option")]
    #[schema(value_type = Option<String>)]
    pub name: Option<Option<String>>,
    #[serde(deserialize_with = "double_option")]
    #[schema(value_type = Option<String>)]
    pub gender: Option<Option<String>>,
    #[serde(deserialize_with = "double_option")]
    #[schema(value_type = Option<String>)]
    pub birthday: Option<Option<String>>,
    #[serde(deserialize_with = "double_option")]
    #[schema(value_type = Option<String>)]
    pub phone: Option<Option<String>>,
    #[serde(deserialize_with = "double_option")]
    #[schema(value_type = Option<String>)]
    pub email: Option<Option<String>>,
    #[serde(deserialize_with = "double_option")]
    #[schema(value_type = Option<String>)]
    pub id_kind: Option<Option<String>>,
    #[serde(deserialize_with = "double_option")]
    #[schema(value_type = Option<String>)]
    pub id_number: Option<Option<String>>,
    #[serde(deserialize_with = "double_option")]
    #[schema(value_type = Option<String>)]
    pub occupation: Option<Option<String>>,
    #[serde(deserialize_with = "double_option")]
    #[schema(value_type = Option<String>)]
    pub income_band: Option<Option<String>>,
    #[serde(deserialize_with = "double_option")]
    #[schema(value_type = Option<String>)]
    pub province: Option<Option<String>>,
    #[serde(deserialize_with = "double_option")]
    #[schema(value_type = Option<String>)]
    pub city: Option<Option<String>>,
    #[serde(deserialize_with = "double_option")]
    #[schema(value_type = Option<String>)]
    pub address: Option<Option<String>>,
    #[serde(deserialize_with = "double_option")]
    #[schema(value_type = Option<String>)]
    pub external_id: Option<Option<String>>,
    #[serde(deserialize_with = "double_option")]
    #[schema(value_type = Option<Vec<String>>)]
    pub tags: Option<Option<Vec<String>>>,
    #[serde(deserialize_with = "double_option")]
    #[schema(value_type = Option<BTreeMap<String, String>>)]
    pub preferences: Option<Option<BTreeMap<String, String>>>,
    #[serde(deserialize_with = "double_option")]
    #[schema(value_type = Option<i64>)]
    pub home_store_id: Option<Option<i64>>,
}

fn apply<T: Clone>(current: &mut Option<T>, change: &Option<Option<T>>) {
    if let Some(change) = change {
        current.clone_from(change);
    }
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct CustomerCreated {
    pub customer: CustomerView,
    /// Existing customers with the same phone, e-mail or ID number: candidates for a merge.
    pub possible_duplicates: Vec<i64>,
}

/// Filters for listing customers. `q` is read as a phone, e-mail or ID number when it
/// looks like one (exact match through the blind index), else as a name prefix.
#[derive(Debug, Clone, Default)]
pub struct CustomerSearch {
    pub q: Option<String>,
    pub phone: Option<String>,
    pub email: Option<String>,
    pub id_number: Option<String>,
    pub external_id: Option<String>,
    pub source_channel: Option<String>,
    pub name: Option<String>,
    pub tag: Option<String>,
    pub store_id: Option<i64>,
    pub city: Option<String>,
    pub include_merged: bool,
    pub cursor: Option<String>,
    pub limit: u32,
}

#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EventInput {
    /// `visit`, `browse`, `app_open`, `social`, `call`, `email`, `message`, `meeting`, `note`, `other`.
    pub kind: String,
    pub channel: String,
    /// When it happened (RFC 3339, or local time of the store); absent for now.
    #[serde(default)]
    pub occurred_at: Option<String>,
    #[serde(default)]
    pub store_id: Option<i64>,
    /// Free-form details, a JSON object of at most 4 KiB.
    #[serde(default)]
    pub detail: Option<serde_json::Map<String, serde_json::Value>>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct TimelineItem {
    /// `event` or `purchase`.
    #[serde(rename = "type")]
    pub item_type: String,
    pub id: i64,
    pub occurred_at: String,
    pub channel: String,
    pub store_id: Option<i64>,
    /// Event kind (events only).
    pub kind: Option<String>,
    pub detail: Option<serde_json::Value>,
    pub recorded_by: Option<String>,
    /// Purchases only.
    pub amount_minor: Option<i64>,
    pub currency: Option<String>,
    pub category: Option<String>,
    pub external_id: Option<String>,
}

#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConsentInput {
    pub granted: bool,
    /// How the consent was given: `counter_form`, `app_settings`, `sms_reply`…
    pub source: String,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct DuplicateGroupView {
    /// `phone`, `email` or `id_number`.
    pub field: String,
    pub customers: Vec<CustomerView>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct MergeOutcome {
    pub survivor: CustomerView,
    pub merged_id: i64,
    pub moved_tags: u64,
    pub moved_consents: u64,
    pub moved_events: u64,
    pub moved_purchases: u64,
    /// Points, points owed, tier activity, coupons and mall orders moved to the survivor.
    pub loyalty: crate::loyalty::MergedLoyalty,
}

/// The input a record was made from, for re-validation after a patch.
fn input_of(record: &CustomerRecord, pii: &OpenedPii, tags: Vec<String>) -> CustomerInput {
    CustomerInput {
        name: record.name.clone(),
        gender: Some(record.gender.clone()),
        birthday: record.birthday.clone(),
        phone: pii.phone.clone(),
        email: pii.email.clone(),
        id_kind: record.id_kind.clone(),
        id_number: pii.id_number.clone(),
        occupation: record.occupation.clone(),
        income_band: record.income_band.clone(),
        province: record.province.clone(),
        city: record.city.clone(),
        address: pii.address.clone(),
        source_channel: Some(record.source_channel.clone()),
        external_id: record.external_id.clone(),
        tags: Some(tags),
        preferences: serde_json::from_str(&record.preferences_json).ok(),
    }
}

/// Ids of other customers holding the same phone, e-mail or ID number as `record`.
fn duplicates_of(conn: &mut Conn<'_>, record: &CustomerRecord) -> ServiceResult<Vec<i64>> {
    let mut found = Vec::new();
    for (field, index) in [
        (IndexedField::Phone, &record.phone_index),
        (IndexedField::Email, &record.email_index),
        (IndexedField::IdNumber, &record.id_number_index),
    ] {
        if let Some(index) = index {
            for id in repo::ids_by_index(conn, field, index)? {
                if id != record.id && !found.contains(&id) {
                    found.push(id);
                }
            }
        }
    }
    found.sort_unstable();
    Ok(found)
}

fn parse_consents(raw: &BTreeMap<String, bool>) -> Result<Vec<(ConsentChannel, bool)>, FieldErrors> {
    let mut errors = FieldErrors::new();
    let parsed = raw
        .iter()
        .filter_map(|(channel, granted)| {
            errors.take("consents", ConsentChannel::parse(channel)).map(|channel| (channel, *granted))
        })
        .collect();
    errors.into_result(|| parsed)
}

fn check_store(conn: &mut Conn<'_>, store_id: Option<i64>, field: &str) -> ServiceResult<()> {
    if let Some(store_id) = store_id
        && organisation::get(conn, store_id)?.is_none()
    {
        return Err(ServiceError::invalid(
            field,
            "store.unknown",
            format!("store {store_id} does not exist"),
        ));
    }
    Ok(())
}

fn external_id_taken(conn: &mut Conn<'_>, record: &CustomerRecord) -> ServiceResult<()> {
    if let Some(external_id) = &record.external_id
        && let Some(other) = repo::find_by_external_id(conn, &record.source_channel, external_id)?
        && other.id != record.id
    {
        return Err(ServiceError::conflict(
            "customer.external_id_taken",
            format!(
                "customer {} already has external id {external_id} from {}",
                other.id, record.source_channel
            ),
        ));
    }
    Ok(())
}

/// How a search term reads.
enum Term {
    Phone(Phone),
    Email(Email),
    IdNumber(IdNumber),
    Name(String),
}

fn classify(raw: &str) -> Term {
    let cleaned = text::clean(raw).unwrap_or_default();
    if cleaned.contains('@')
        && let Ok(email) = Email::parse(&cleaned)
    {
        return Term::Email(email);
    }
    let digits = cleaned.chars().filter(char::is_ascii_digit).count();
    if digits >= 15
        && let Ok(id) = IdNumber::parse(IdKind::ResidentId, &cleaned)
    {
        return Term::IdNumber(id);
    }
    if digits >= 7
        && digits * 2 >= cleaned.chars().count()
        && let Ok(phone) = Phone::parse(&cleaned)
    {
        return Term::Phone(phone);
    }
    Term::Name(cleaned)
}

impl Services {
    fn customer_view(
        &self,
        record: &CustomerRecord,
        tags: Vec<String>,
        consents: Option<Vec<ConsentView>>,
        reveal: bool,
    ) -> ServiceResult<CustomerView> {
        view_of(self.vault(), record, tags, consents, reveal)
    }

    pub async fn create_customer(
        &self,
        access: Access<'_, perm::CustomerWrite>,
        request: CustomerRequest,
    ) -> ServiceResult<CustomerCreated> {
        let draft = CustomerDraft::parse(&request.input(), self.today(), Channel::Store);
        let consents = request.consents.as_ref().map(parse_consents).transpose();
        let (draft, consents) = match (draft, consents) {
            (Ok(draft), Ok(consents)) => (draft, consents.unwrap_or_default()),
            (Err(mut errors), Err(more)) => {
                errors.0.extend(more.0);
                return Err(errors.into());
            }
            (Err(errors), Ok(_)) | (Ok(_), Err(errors)) => return Err(errors.into()),
        };
        let home_store_id = request.home_store_id.or(access.scope.store_id());
        access.require_store(home_store_id)?;
        let identity = access.identity().clone();
        let services = self.clone();
        let now_ms = self.now_ms();
        let (record, tags, consent_history, duplicates) = self
            .database()
            .write(move |conn| {
                check_store(conn, home_store_id, "home_store_id")?;
                let id = conn.allocate_ids(TABLE, 1)?[0];
                let record = seal_record(services.vault(), id, &draft, home_store_id, now_ms);
                external_id_taken(conn, &record)?;
                let duplicates = duplicates_of(conn, &record)?;
                repo::insert_many(conn, std::slice::from_ref(&record))?;
                let tags: Vec<String> = draft.tags.iter().map(|tag| tag.as_str().to_owned()).collect();
                repo::add_tags(conn, id, &tags, now_ms)?;
                for (channel, granted) in &consents {
                    repo::insert_consent(
                        conn,
                        &ConsentRecord {
                            id: 0,
                            customer_id: id,
                            channel: channel.as_str().to_owned(),
                            granted: *granted,
                            source: "registration".into(),
                            recorded_by: identity.name.clone(),
                            recorded_at_ms: now_ms,
                        },
                    )?;
                }
                let history = repo::consents_of(conn, id)?;
                let view =
                    services.customer_view(&record, tags.clone(), Some(current_consents(&history)), false)?;
                audit::append(
                    conn,
                    &identity,
                    now_ms,
                    "customer.create",
                    "customer",
                    id,
                    None,
                    audit::snapshot(&view),
                )?;
                Ok::<_, ServiceError>((record, tags, history, duplicates))
            })
            .await?;
        let customer = self.customer_view(&record, tags, Some(current_consents(&consent_history)), false)?;
        Ok(CustomerCreated { customer, possible_duplicates: duplicates })
    }

    /// One customer. With `reveal`, personal fields are shown in full and the reveal is
    /// recorded in the audit log.
    pub async fn get_customer(
        &self,
        access: Access<'_, perm::CustomerRead>,
        id: i64,
        reveal: Option<Access<'_, perm::CustomerReveal>>,
    ) -> ServiceResult<CustomerView> {
        let (record, tags, history) = self
            .database()
            .read(move |conn| {
                let record = repo::get(conn, id)?.ok_or_else(|| ServiceError::not_found("customer", id))?;
                let tags = repo::tags_of(conn, &[id])?.remove(&id).unwrap_or_default();
                let history = repo::consents_of(conn, id)?;
                Ok::<_, ServiceError>((record, tags, history))
            })
            .await?;
        let view = self.customer_view(&record, tags, Some(current_consents(&history)), reveal.is_some())?;
        if reveal.is_some() {
            let identity = access.identity().clone();
            let now_ms = self.now_ms();
            let fields: Vec<&str> = [
                ("phone", record.phone_cipher.is_some()),
                ("email", record.email_cipher.is_some()),
                ("id_number", record.id_number_cipher.is_some()),
                ("address", record.address_cipher.is_some()),
            ]
            .into_iter()
            .filter_map(|(field, present)| present.then_some(field))
            .collect();
            let detail = serde_json::json!({ "revealed_fields": fields });
            self.database()
                .write(move |conn| {
                    audit::append(
                        conn,
                        &identity,
                        now_ms,
                        "customer.reveal",
                        "customer",
                        id,
                        None,
                        Some(detail.clone()),
                    )
                })
                .await?;
        }
        Ok(view)
    }

    pub async fn update_customer(
        &self,
        access: Access<'_, perm::CustomerWrite>,
        id: i64,
        patch: CustomerPatch,
        expected_version: Option<i64>,
    ) -> ServiceResult<CustomerView> {
        let identity = access.identity().clone();
        let services = self.clone();
        let now_ms = self.now_ms();
        let today = self.today();
        let (record, tags) = self
            .database()
            .write(move |conn| {
                let before = repo::get(conn, id)?.ok_or_else(|| ServiceError::not_found("customer", id))?;
                identity.require_store(before.home_store_id)?;
                if before.status != "active" {
                    return Err(ServiceError::conflict(
                        "customer.not_active",
                        format!("customer {id} is {} and cannot change", before.status),
                    ));
                }
                if expected_version.is_some_and(|expected| expected != before.version) {
                    return Err(ServiceError::StaleVersion {
                        entity: "customer",
                        id: id.to_string(),
                        current_version: before.version,
                    });
                }
                let before_tags = repo::tags_of(conn, &[id])?.remove(&id).unwrap_or_default();
                let pii = open_pii(services.vault(), &before)?;
                let mut input = input_of(&before, &pii, before_tags.clone());
                apply(&mut input.name, &patch.name);
                apply(&mut input.gender, &patch.gender);
                apply(&mut input.birthday, &patch.birthday);
                apply(&mut input.phone, &patch.phone);
                apply(&mut input.email, &patch.email);
                apply(&mut input.id_kind, &patch.id_kind);
                apply(&mut input.id_number, &patch.id_number);
                apply(&mut input.occupation, &patch.occupation);
                apply(&mut input.income_band, &patch.income_band);
                apply(&mut input.province, &patch.province);
                apply(&mut input.city, &patch.city);
                apply(&mut input.address, &patch.address);
                apply(&mut input.external_id, &patch.external_id);
                apply(&mut input.tags, &patch.tags);
                apply(&mut input.preferences, &patch.preferences);
                let draft = CustomerDraft::parse(&input, today, Channel::Store)?;
                let mut home_store_id = before.home_store_id;
                if let Some(store) = patch.home_store_id {
                    check_store(conn, store, "home_store_id")?;
                    identity.require_store(store)?;
                    home_store_id = store;
                }
                let mut after = seal_record(services.vault(), id, &draft, home_store_id, now_ms);
                after.created_at_ms = before.created_at_ms;
                after.version = before.version + 1;
                external_id_taken(conn, &after)?;
                if !repo::update(conn, &after, before.version)? {
                    return Err(ServiceError::StaleVersion {
                        entity: "customer",
                        id: id.to_string(),
                        current_version: before.version,
                    });
                }
                let tags: Vec<String> = draft.tags.iter().map(|tag| tag.as_str().to_owned()).collect();
                if tags != before_tags {
                    repo::set_tags(conn, id, &tags, now_ms)?;
                }
                let before_view = services.customer_view(&before, before_tags, None, false)?;
                let after_view = services.customer_view(&after, tags.clone(), None, false)?;
                audit::append(
                    conn,
                    &identity,
                    now_ms,
                    "customer.update",
                    "customer",
                    id,
                    audit::snapshot(&before_view),
                    audit::snapshot(&after_view),
                )?;
                Ok::<_, ServiceError>((after, tags))
            })
            .await?;
        let history = self.database().read(move |conn| repo::consents_of(conn, id)).await?;
        self.customer_view(&record, tags, Some(current_consents(&history)), false)
    }

    pub async fn search_customers(
        &self,
        access: Access<'_, perm::CustomerRead>,
        search: CustomerSearch,
    ) -> ServiceResult<Page<CustomerView>> {
        let mut exact: Option<(IndexedField, Vec<u8>)> = None;
        let mut name_prefix = search.name.as_deref().and_then(text::clean).map(|name| name_key(&name));
        let mut errors = FieldErrors::new();
        if let Some(raw) = &search.phone
            && let Some(phone) = errors.take("phone", Phone::parse(raw))
        {
            exact = Some((IndexedField::Phone, self.vault().blind_index("phone", phone.as_str()).to_vec()));
        }
        if let Some(raw) = &search.email
            && let Some(email) = errors.take("email", Email::parse(raw))
        {
            exact = Some((IndexedField::Email, self.vault().blind_index("email", email.as_str()).to_vec()));
        }
        if let Some(raw) = &search.id_number {
            let parsed =
                IdNumber::parse(IdKind::ResidentId, raw).or_else(|_| IdNumber::parse(IdKind::Passport, raw));
            if let Some(id) = errors.take("id_number", parsed) {
                exact = Some((IndexedField::IdNumber, id_number_index(self.vault(), &id).to_vec()));
            }
        }
        if !errors.is_empty() {
            return Err(errors.into());
        }
        if let Some(q) = search.q.as_deref().filter(|q| text::clean(q).is_some()) {
            match classify(q) {
                Term::Phone(phone) => {
                    exact = Some((
                        IndexedField::Phone,
                        self.vault().blind_index("phone", phone.as_str()).to_vec(),
                    ))
                }
                Term::Email(email) => {
                    exact = Some((
                        IndexedField::Email,
                        self.vault().blind_index("email", email.as_str()).to_vec(),
                    ))
                }
                Term::IdNumber(id) => {
                    exact = Some((IndexedField::IdNumber, id_number_index(self.vault(), &id).to_vec()))
                }
                Term::Name(name) => name_prefix = Some(name_key(&name)),
            }
        }
        let limit = page_limit(search.limit);
        // Exact lookups cross stores (members shop everywhere); lists stay in scope.
        if let Some((field, index)) = exact {
            let found = self.read_with_tags(move |conn| repo::find_by_index(conn, field, &index)).await?;
            return self.customer_page(found, limit, None);
        }
        if let Some(external_id) = search.external_id.as_deref().and_then(text::clean) {
            let channel = match search.source_channel.as_deref() {
                Some(raw) => Channel::parse(raw).map_err(|error| error.at("source_channel"))?,
                None => Channel::Import,
            };
            let found = self
                .read_with_tags(move |conn| {
                    repo::find_by_external_id(conn, channel.as_str(), &external_id).map(Vec::from_iter)
                })
                .await?;
            return self.customer_page(found, limit, None);
        }
        let home_store_id = match (access.scope.store_id(), search.store_id) {
            (Some(mine), Some(asked)) if mine != asked => {
                return Err(ServiceError::forbidden(format!("you may list customers of store {mine} only")));
            }
            (Some(mine), _) => Some(mine),
            (None, asked) => asked,
        };
        let cursor = match search.cursor.as_deref() {
            None => None,
            Some(raw) => {
                let text = cursor_decode(raw)?;
                let bad = || {
                    ServiceError::invalid(
                        "cursor",
                        "cursor.invalid",
                        "the cursor is not one this server gave out",
                    )
                };
                Some(if let Some(rest) = text.strip_prefix("n:") {
                    let (key, id) = rest.rsplit_once('\u{1f}').ok_or_else(bad)?;
                    CustomerCursor::AfterName(key.to_owned(), id.parse().map_err(|_| bad())?)
                } else if let Some(id) = text.strip_prefix("i:") {
                    CustomerCursor::BeforeId(id.parse().map_err(|_| bad())?)
                } else {
                    return Err(bad());
                })
            }
        };
        let query = CustomerQuery {
            name_prefix: name_prefix.clone(),
            tag: search.tag.as_deref().and_then(text::clean),
            home_store_id,
            city: search.city.as_deref().and_then(text::clean),
            include_merged: search.include_merged,
            cursor,
            limit: limit + 1,
        };
        let found = self.read_with_tags(move |conn| repo::search(conn, &query)).await?;
        let by_name = name_prefix.is_some();
        self.customer_page(found, limit, Some(by_name))
    }

    /// Customers and their tags, in one trip to a reader.
    async fn read_with_tags<F>(
        &self,
        find: F,
    ) -> ServiceResult<(Vec<CustomerRecord>, HashMap<i64, Vec<String>>)>
    where
        F: FnOnce(&mut Conn<'_>) -> StoreResult<Vec<CustomerRecord>> + Send + 'static,
    {
        let work = move |conn: &mut Conn<'_>| {
            let records = find(conn)?;
            let ids: Vec<i64> = records.iter().map(|record| record.id).collect();
            let tags = repo::tags_of(conn, &ids)?;
            Ok::<_, StoreError>((records, tags))
        };
        Ok(self.database().read(work).await?)
    }

    fn customer_page(
        &self,
        (records, mut tags): (Vec<CustomerRecord>, HashMap<i64, Vec<String>>),
        limit: i64,
        ordered_by_name: Option<bool>,
    ) -> ServiceResult<Page<CustomerView>> {
        let page = Page::from_overfetch(records, limit, |record| match ordered_by_name {
            Some(true) => cursor_encode(&format!(
                "n:{}\u{1f}{}",
                record.name_key.clone().unwrap_or_default(),
                record.id
            )),
            _ => cursor_encode(&format!("i:{}", record.id)),
        });
        let next_cursor = if ordered_by_name.is_some() { page.next_cursor } else { None };
        let items = page
            .items
            .iter()
            .map(|record| {
                self.customer_view(record, tags.remove(&record.id).unwrap_or_default(), None, false)
            })
            .collect::<ServiceResult<Vec<_>>>()?;
        Ok(Page { items, next_cursor })
    }

    /// Records a behaviour event (visit, call, app use…) on the customer's timeline.
    pub async fn record_event(
        &self,
        access: Access<'_, perm::CustomerWrite>,
        customer_id: i64,
        input: EventInput,
    ) -> ServiceResult<TimelineItem> {
        let mut errors = FieldErrors::new();
        let kind = errors.take("kind", EventKind::parse(&input.kind));
        let channel = errors.take("channel", Channel::parse(&input.channel));
        let detail = serde_json::Value::Object(input.detail.clone().unwrap_or_default());
        let detail_json = detail.to_string();
        if detail_json.len() > limits::EVENT_DETAIL_BYTES_MAX {
            errors.push(FieldError::new(
                "detail",
                "detail.too_large",
                format!("detail is larger than {} bytes", limits::EVENT_DETAIL_BYTES_MAX),
            ));
        }
        let now_ms = self.now_ms();
        let occurred_at_ms = match &input.occurred_at {
            None => Some(now_ms),
            Some(raw) => errors
                .take("occurred_at", cardcrm_domain::date::parse_moment(raw, self.default_zone()))
                .map(|at| at.as_millisecond()),
        };
        if occurred_at_ms.is_some_and(|at| at > now_ms + 5 * 60_000) {
            errors.push(FieldError::new("occurred_at", "occurred_at.future", "the event is in the future"));
        }
        if !errors.is_empty() {
            return Err(errors.into());
        }
        let identity = access.identity().clone();
        let record = EventRecord {
            id: 0,
            customer_id,
            occurred_at_ms: occurred_at_ms.unwrap_or(now_ms),
            kind: kind.map(|kind| kind.as_str().to_owned()).unwrap_or_default(),
            channel: channel.map(|channel| channel.as_str().to_owned()).unwrap_or_default(),
            store_id: input.store_id,
            detail_json,
            recorded_by: identity.name.clone(),
            created_at_ms: now_ms,
        };
        let stored = self
            .database()
            .write(move |conn| {
                let customer = repo::get(conn, customer_id)?.ok_or_else(|| ServiceError::not_found("customer", customer_id))?;
                if customer.status != "active" {
                    return Err(ServiceError::conflict("customer.not_active", format!("customer {customer_id} is {}", customer.status)));
                }
                check_store(conn, record.store_id, "store_id")?;
                let mut stored = record.clone();
                stored.id = repo::insert_event(conn, &record)?;
                audit::append(conn, &identity, now_ms, "customer.event", "customer", customer_id, None,
                    Some(serde_json::json!({"event_id": stored.id, "kind": stored.kind, "channel": stored.channel})))?;
                Ok(stored)
            })
            .await?;
        Ok(event_item(&stored))
    }

    /// Events and purchases of a customer, newest first.
    pub async fn timeline(
        &self,
        _access: Access<'_, perm::CustomerRead>,
        customer_id: i64,
        cursor: Option<String>,
        limit: u32,
    ) -> ServiceResult<Page<TimelineItem>> {
        let limit = page_limit(limit);
        // Order: (time, rank, id) descending, purchases (rank 1) before events (rank 0) at a tie.
        let cursor = cursor.as_deref().map(cursor_decode_moment).transpose()?;
        let (event_before, purchase_before) = match cursor {
            None => (None, None),
            Some((at, 1, id)) => (Some((at, i64::MAX)), Some((at, id))),
            Some((at, _, id)) => (Some((at, id)), Some((at, i64::MIN))),
        };
        let (exists, events, bought) = self
            .database()
            .read(move |conn| {
                let exists = repo::get(conn, customer_id)?.is_some();
                let events = repo::events_of(conn, customer_id, event_before, limit + 1)?;
                let bought = purchases::of_customer(conn, customer_id, purchase_before, limit + 1)?;
                Ok::<_, ServiceError>((exists, events, bought))
            })
            .await?;
        if !exists {
            return Err(ServiceError::not_found("customer", customer_id));
        }
        let mut items: Vec<(i64, u8, i64, TimelineItem)> = events
            .iter()
            .map(|event| (event.occurred_at_ms, 0, event.id, event_item(event)))
            .chain(
                bought
                    .iter()
                    .map(|purchase| (purchase.occurred_at_ms, 1, purchase.id, purchase_item(purchase))),
            )
            .collect();
        items.sort_by_key(|item| std::cmp::Reverse((item.0, item.1, item.2)));
        let page =
            Page::from_overfetch(items, limit, |(at, rank, id, _)| cursor_encode_moment(*at, *rank, *id));
        Ok(page.map(|(_, _, _, item)| item))
    }

    /// Records a marketing consent decision for one channel (the history is kept).
    pub async fn set_consent(
        &self,
        access: Access<'_, perm::CustomerWrite>,
        customer_id: i64,
        channel: &str,
        input: ConsentInput,
    ) -> ServiceResult<Vec<ConsentView>> {
        let channel = ConsentChannel::parse(channel).map_err(|error| error.at("channel"))?;
        let source =
            text::clean(&input.source).filter(|source| source.chars().count() <= 64).ok_or_else(|| {
                ServiceError::invalid(
                    "source",
                    "source.invalid",
                    "say how consent was given (1 to 64 characters)",
                )
            })?;
        let identity = access.identity().clone();
        let now_ms = self.now_ms();
        self.database()
            .write(move |conn| {
                let customer = repo::get(conn, customer_id)?
                    .ok_or_else(|| ServiceError::not_found("customer", customer_id))?;
                if customer.status != "active" {
                    return Err(ServiceError::conflict(
                        "customer.not_active",
                        format!("customer {customer_id} is {}", customer.status),
                    ));
                }
                let record = ConsentRecord {
                    id: 0,
                    customer_id,
                    channel: channel.as_str().to_owned(),
                    granted: input.granted,
                    source: source.clone(),
                    recorded_by: identity.name.clone(),
                    recorded_at_ms: now_ms,
                };
                let before = current_consents(&repo::consents_of(conn, customer_id)?);
                repo::insert_consent(conn, &record)?;
                let after = current_consents(&repo::consents_of(conn, customer_id)?);
                audit::append(
                    conn,
                    &identity,
                    now_ms,
                    "customer.consent",
                    "customer",
                    customer_id,
                    audit::snapshot(&before),
                    audit::snapshot(&after),
                )?;
                Ok(after)
            })
            .await
    }

    /// Customers that share a phone, e-mail or ID number: candidates for merging.
    pub async fn duplicate_customers(
        &self,
        _access: Access<'_, perm::CustomerRead>,
        limit: u32,
    ) -> ServiceResult<Vec<DuplicateGroupView>> {
        let limit = page_limit(limit);
        let groups = self
            .database()
            .read(move |conn| {
                let groups = repo::duplicate_groups(conn, limit)?;
                let mut out = Vec::new();
                for group in groups {
                    let mut records = Vec::new();
                    for id in &group.customer_ids {
                        if let Some(record) = repo::get(conn, *id)? {
                            records.push(record);
                        }
                    }
                    let ids: Vec<i64> = records.iter().map(|record| record.id).collect();
                    let tags = repo::tags_of(conn, &ids)?;
                    out.push((group.field, records, tags));
                }
                Ok::<_, ServiceError>(out)
            })
            .await?;
        groups
            .into_iter()
            .map(|(field, records, mut tags)| {
                let customers = records
                    .iter()
                    .map(|record| {
                        self.customer_view(record, tags.remove(&record.id).unwrap_or_default(), None, false)
                    })
                    .collect::<ServiceResult<Vec<_>>>()?;
                Ok(DuplicateGroupView { field: field.as_str().to_owned(), customers })
            })
            .collect()
    }

    /// Merges `merged_id` into `survivor_id`: the survivor's empty fields are filled from the
    /// other, tags, consents, events and purchases move over, and the other is marked merged.
    pub async fn merge_customers(
        &self,
        access: Access<'_, perm::CustomerMerge>,
        survivor_id: i64,
        merged_id: i64,
    ) -> ServiceResult<MergeOutcome> {
        if survivor_id == merged_id {
            return Err(ServiceError::invalid(
                "merge_id",
                "merge.same_customer",
                "a customer cannot be merged into itself",
            ));
        }
        let identity = access.identity().clone();
        let services = self.clone();
        let now_ms = self.now_ms();
        let today = self.today();
        let zone = self.default_zone().clone();
        let (record, tags, moved, loyalty) = self
            .database()
            .write(move |conn| {
                let survivor = repo::get(conn, survivor_id)?.ok_or_else(|| ServiceError::not_found("customer", survivor_id))?;
                let merged = repo::get(conn, merged_id)?.ok_or_else(|| ServiceError::not_found("customer", merged_id))?;
                for customer in [&survivor, &merged] {
                    identity.require_store(customer.home_store_id)?;
                    if customer.status != "active" {
                        return Err(ServiceError::conflict("customer.not_active", format!("customer {} is {}", customer.id, customer.status)));
                    }
                }
                let survivor_tags = repo::tags_of(conn, &[survivor_id])?.remove(&survivor_id).unwrap_or_default();
                let merged_tags = repo::tags_of(conn, &[merged_id])?.remove(&merged_id).unwrap_or_default();
                let survivor_pii = open_pii(services.vault(), &survivor)?;
                let merged_pii = open_pii(services.vault(), &merged)?;
                let mut input = input_of(&survivor, &survivor_pii, survivor_tags.clone());
                let other = input_of(&merged, &merged_pii, merged_tags.clone());
                let fill = |mine: &mut Option<String>, theirs: &Option<String>| {
                    if mine.as_deref().and_then(text::clean).is_none() {
                        mine.clone_from(theirs);
                    }
                };
                fill(&mut input.name, &other.name);
                if input.gender.as_deref() == Some(Gender::Unknown.as_str()) {
                    input.gender.clone_from(&other.gender);
                }
                fill(&mut input.birthday, &other.birthday);
                fill(&mut input.phone, &other.phone);
                fill(&mut input.email, &other.email);
                if input.id_number.is_none() {
                    input.id_kind.clone_from(&other.id_kind);
                    input.id_number.clone_from(&other.id_number);
                }
                fill(&mut input.occupation, &other.occupation);
                fill(&mut input.income_band, &other.income_band);
                fill(&mut input.province, &other.province);
                fill(&mut input.city, &other.city);
                fill(&mut input.address, &other.address);
                let mut preferences = other.preferences.clone().unwrap_or_default();
                preferences.extend(input.preferences.clone().unwrap_or_default());
                input.preferences = Some(preferences);
                let draft = CustomerDraft::parse(&input, today, Channel::Store)?;
                let mut after = seal_record(services.vault(), survivor_id, &draft, survivor.home_store_id.or(merged.home_store_id), now_ms);
                after.created_at_ms = survivor.created_at_ms.min(merged.created_at_ms);
                after.version = survivor.version + 1;
                if !repo::update(conn, &after, survivor.version)? {
                    return Err(ServiceError::StaleVersion { entity: "customer", id: survivor_id.to_string(), current_version: survivor.version });
                }
                let moved = repo::reassign(conn, merged_id, survivor_id)?;
                // Cards (with their balances, points and tier) and credit records follow.
                cardcrm_store::repo::cards::reassign(conn, merged_id, survivor_id)?;
                // Points (lots with their expiry, points owed), tier activity and the higher
                // tier, coupons and mall orders follow too.
                let actor = crate::ledger::Actor::of(&identity);
                let loyalty = crate::loyalty::merge_loyalty(conn, &actor, merged_id, survivor_id, now_ms, &zone)?;
                let mut closed = merged.clone();
                closed.status = "merged".into();
                closed.merged_into_id = Some(survivor_id);
                closed.version = merged.version + 1;
                closed.updated_at_ms = now_ms;
                if !repo::update(conn, &closed, merged.version)? {
                    return Err(ServiceError::StaleVersion { entity: "customer", id: merged_id.to_string(), current_version: merged.version });
                }
                let tags = repo::tags_of(conn, &[survivor_id])?.remove(&survivor_id).unwrap_or_default();
                let before = serde_json::json!({
                    "survivor": audit::snapshot(&services.customer_view(&survivor, survivor_tags, None, false)?),
                    "merged": audit::snapshot(&services.customer_view(&merged, merged_tags, None, false)?),
                });
                let after_view = services.customer_view(&after, tags.clone(), None, false)?;
                let after_json = serde_json::json!({
                    "survivor": audit::snapshot(&after_view),
                    "merged_id": merged_id,
                    "moved": { "tags": moved.tags, "consents": moved.consents, "events": moved.events, "purchases": moved.purchases },
                    "loyalty": loyalty,
                });
                audit::append(conn, &identity, now_ms, "customer.merge", "customer", survivor_id, Some(before), Some(after_json))?;
                Ok::<_, ServiceError>((after, tags, moved, loyalty))
            })
            .await?;
        let survivor = self.customer_view(&record, tags, None, false)?;
        Ok(MergeOutcome {
            survivor,
            merged_id,
            moved_tags: moved.tags,
            moved_consents: moved.consents,
            moved_events: moved.events,
            moved_purchases: moved.purchases,
            loyalty,
        })
    }

    pub async fn customer_count(&self) -> ServiceResult<i64> {
        Ok(self.database().read(repo::count_active).await?)
    }
}

fn event_item(event: &EventRecord) -> TimelineItem {
    TimelineItem {
        item_type: "event".into(),
        id: event.id,
        occurred_at: format_ms(event.occurred_at_ms),
        channel: event.channel.clone(),
        store_id: event.store_id,
        kind: Some(event.kind.clone()),
        detail: serde_json::from_str(&event.detail_json).ok(),
        recorded_by: Some(event.recorded_by.clone()),
        amount_minor: None,
        currency: None,
        category: None,
        external_id: None,
    }
}

fn purchase_item(purchase: &purchases::PurchaseRecord) -> TimelineItem {
    TimelineItem {
        item_type: "purchase".into(),
        id: purchase.id,
        occurred_at: format_ms(purchase.occurred_at_ms),
        channel: purchase.channel.clone(),
        store_id: purchase.store_id,
        kind: None,
        detail: None,
        recorded_by: None,
        amount_minor: Some(purchase.amount_minor),
        currency: Some(purchase.currency.clone()),
        category: purchase.category.clone(),
        external_id: purchase.external_id.clone(),
    }
}

/// Whether `identity` may act on the customer `record` (its home store is in scope).
pub fn in_scope(identity: &Identity, record: &CustomerRecord) -> bool {
    identity.covers_store(record.home_store_id)
}
