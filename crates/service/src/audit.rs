//! The audit trail: every write leaves who, what, when, from where, and the state before and
//! after. Personal data appears in it only masked.

use cardcrm_store::{
    Conn, StoreResult,
    repo::audit::{self, AuditFilter, AuditRecord},
};
use serde::Serialize;

use crate::{
    Services,
    clock::format_ms,
    error::ServiceResult,
    identity::{Access, Identity, perm},
    view::{Page, cursor_decode_id, cursor_encode_id},
};

/// Builds an audit record for an action by `identity`.
pub fn entry(
    identity: &Identity,
    at_ms: i64,
    action: &str,
    entity_type: &str,
    entity_id: Option<String>,
    before: Option<serde_json::Value>,
    after: Option<serde_json::Value>,
) -> AuditRecord {
    AuditRecord {
        id: 0,
        at_ms,
        actor_kind: identity.kind.as_str().to_owned(),
        actor_id: identity.id,
        actor_name: identity.name.clone(),
        actor_role: identity.role.map(|role| role.as_str().to_owned()),
        actor_store_id: identity.scope.store_id(),
        source_ip: identity.source_ip.clone(),
        request_id: identity.request_id.clone(),
        action: action.to_owned(),
        entity_type: entity_type.to_owned(),
        entity_id,
        before_json: before.map(|value| value.to_string()),
        after_json: after.map(|value| value.to_string()),
    }
}

/// Serialises a view for the audit log.
pub fn snapshot(value: &impl Serialize) -> Option<serde_json::Value> {
    serde_json::to_value(value).ok()
}

/// Appends an entry inside the caller's unit of work, so the record and the change it
/// describes commit or fail together. (Each argument is one column of the entry.)
#[allow(clippy::too_many_arguments)]
pub fn append(
    conn: &mut Conn<'_>,
    identity: &Identity,
    at_ms: i64,
    action: &str,
    entity_type: &str,
    entity_id: impl ToString,
    before: Option<serde_json::Value>,
    after: Option<serde_json::Value>,
) -> StoreResult<i64> {
    audit::append(
        conn,
        &entry(identity, at_ms, action, entity_type, Some(entity_id.to_string()), before, after),
    )
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct AuditEntryView {
    pub id: i64,
    pub at: String,
    pub actor_kind: String,
    pub actor_id: Option<i64>,
    pub actor_name: String,
    pub actor_role: Option<String>,
    pub actor_store_id: Option<i64>,
    pub source_ip: Option<String>,
    pub request_id: Option<String>,
    pub action: String,
    pub entity_type: String,
    pub entity_id: Option<String>,
    pub before: Option<serde_json::Value>,
    pub after: Option<serde_json::Value>,
}

impl From<AuditRecord> for AuditEntryView {
    fn from(record: AuditRecord) -> Self {
        let parse = |text: Option<String>| text.and_then(|text| serde_json::from_str(&text).ok());
        Self {
            id: record.id,
            at: format_ms(record.at_ms),
            actor_kind: record.actor_kind,
            actor_id: record.actor_id,
            actor_name: record.actor_name,
            actor_role: record.actor_role,
            actor_store_id: record.actor_store_id,
            source_ip: record.source_ip,
            request_id: record.request_id,
            action: record.action,
            entity_type: record.entity_type,
            entity_id: record.entity_id,
            before: parse(record.before_json),
            after: parse(record.after_json),
        }
    }
}

/// What to look for in the audit log.
#[derive(Debug, Clone, Default)]
pub struct AuditQuery {
    pub entity_type: Option<String>,
    pub entity_id: Option<String>,
    pub action: Option<String>,
    pub actor_kind: Option<String>,
    pub actor_id: Option<i64>,
    pub since_ms: Option<i64>,
    pub until_ms: Option<i64>,
    pub cursor: Option<String>,
    pub limit: u32,
}

impl Services {
    /// The audit log, newest first. Admins only (permission `audit.read`).
    pub async fn audit_log(
        &self,
        _access: Access<'_, perm::AuditRead>,
        query: AuditQuery,
    ) -> ServiceResult<Page<AuditEntryView>> {
        let before_id = query.cursor.as_deref().map(cursor_decode_id).transpose()?;
        let limit = crate::view::page_limit(query.limit);
        let filter = AuditFilter {
            entity_type: query.entity_type,
            entity_id: query.entity_id,
            action: query.action,
            actor_kind: query.actor_kind,
            actor_id: query.actor_id,
            since_ms: query.since_ms,
            until_ms: query.until_ms,
            before_id,
        };
        let records = self.database().read(move |conn| audit::list(conn, &filter, limit + 1)).await?;
        Ok(Page::from_overfetch(records, limit, |record| cursor_encode_id(record.id))
            .map(AuditEntryView::from))
    }
}
