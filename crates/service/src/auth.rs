//! Authentication: staff log in with a password and get a console session (an opaque
//! cookie token plus a CSRF token); integrations use API tokens with explicit scopes. Both
//! are stored only as hashes. Repeated failed logins lock the account for a while.

use std::{collections::HashMap, sync::Mutex};

use cardcrm_domain::{
    FieldError,
    access::{Permission, Role, StoreScope},
    limits,
};
use cardcrm_store::repo::staff::{self as repo, ApiTokenRecord, SessionRecord, StaffRecord};
use serde::{Deserialize, Serialize};

use crate::{
    Services, audit,
    clock::format_ms,
    crypto::{self, random_token, token_hash},
    error::{ServiceError, ServiceResult},
    identity::{Access, Identity, perm},
    staff::StaffView,
    view::{Page, cursor_decode_id, cursor_encode_id, page_limit},
};

pub const SESSION_TOKEN_PREFIX: &str = "ccs_";
pub const API_TOKEN_PREFIX: &str = "ccrm_";
const MINUTE_MS: i64 = 60_000;
/// How long a validated API token is trusted without asking the database again.
const TOKEN_CACHE_MS: i64 = 5_000;
/// Sessions and tokens record use at most this often.
const TOUCH_INTERVAL_MS: i64 = 60_000;

/// Recently validated API tokens, so a busy integration does not cost a read per request.
#[derive(Default)]
pub struct TokenCache {
    entries: Mutex<HashMap<Vec<u8>, CachedToken>>,
}

#[derive(Clone)]
struct CachedToken {
    identity: Identity,
    checked_at_ms: i64,
    expires_at_ms: Option<i64>,
}

impl TokenCache {
    fn get(&self, hash: &[u8], now_ms: i64) -> Option<CachedToken> {
        let entries = self.entries.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        entries.get(hash).filter(|entry| now_ms - entry.checked_at_ms < TOKEN_CACHE_MS).cloned()
    }

    fn put(&self, hash: Vec<u8>, entry: CachedToken) {
        let mut entries = self.entries.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if entries.len() > 10_000 {
            entries.clear();
        }
        entries.insert(hash, entry);
    }

    /// Forgets every cached token (after a revocation).
    pub fn clear(&self) {
        self.entries.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).clear();
    }
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct LoginOutcome {
    /// Goes into the session cookie; never shown to scripts.
    #[serde(skip)]
    pub session_token: String,
    /// Send back in the `X-CSRF-Token` header with every state-changing request.
    pub csrf_token: String,
    pub expires_at: String,
    pub staff: StaffView,
}

/// What a valid console session resolves to.
#[derive(Debug, Clone)]
pub struct SessionIdentity {
    pub identity: Identity,
    pub csrf_token: String,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ApiTokenView {
    pub id: i64,
    pub name: String,
    /// The first characters of the token, to recognise it.
    pub prefix: String,
    pub scopes: Vec<String>,
    pub store_id: Option<i64>,
    pub created_by: i64,
    pub created_at: String,
    pub expires_at: Option<String>,
    pub revoked_at: Option<String>,
    pub last_used_at: Option<String>,
}

impl From<&ApiTokenRecord> for ApiTokenView {
    fn from(record: &ApiTokenRecord) -> Self {
        Self {
            id: record.id,
            name: record.name.clone(),
            prefix: record.token_prefix.clone(),
            scopes: record.scopes.split_whitespace().map(str::to_owned).collect(),
            store_id: record.store_id,
            created_by: record.created_by,
            created_at: format_ms(record.created_at_ms),
            expires_at: record.expires_at_ms.map(format_ms),
            revoked_at: record.revoked_at_ms.map(format_ms),
            last_used_at: record.last_used_at_ms.map(format_ms),
        }
    }
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct NewApiToken {
    /// The secret, shown this once. Send it as `Authorization: Bearer <token>`.
    pub token: String,
    pub details: ApiTokenView,
}

#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ApiTokenRequest {
    pub name: String,
    /// Permissions such as `customer.read`; each must be one the creator holds.
    pub scopes: Vec<String>,
    /// Limit the token to one store.
    #[serde(default)]
    pub store_id: Option<i64>,
    /// Days until it stops working; absent for no expiry.
    #[serde(default)]
    pub expires_in_days: Option<u32>,
}

fn invalid_credentials() -> ServiceError {
    ServiceError::unauthenticated("auth.invalid_credentials", "invalid username or password")
}

fn staff_identity(record: &StaffRecord) -> ServiceResult<Identity> {
    let role = Role::parse(&record.role).map_err(|error| ServiceError::Config(error.to_string()))?;
    Ok(Identity::staff(record.id, &record.username, role, StoreScope::from_store_id(record.store_id)))
}

impl Services {
    /// Checks a username and password; on success opens a console session.
    pub async fn login(
        &self,
        username: &str,
        password: &str,
        source_ip: Option<String>,
        user_agent: Option<String>,
    ) -> ServiceResult<LoginOutcome> {
        if password.len() > limits::PASSWORD_LENGTH_MAX || username.len() > limits::USERNAME_LENGTH_MAX {
            return Err(invalid_credentials());
        }
        let username = username.trim().to_lowercase();
        let lookup = username.clone();
        let found = self.database().read(move |conn| repo::by_username(conn, &lookup)).await?;
        let Some(staff) = found else {
            let password = password.to_owned();
            let _ = tokio::task::spawn_blocking(move || crypto::verify_password_dummy(&password)).await;
            return Err(invalid_credentials());
        };
        let now_ms = self.now_ms();
        if let Some(until) = staff.locked_until_ms.filter(|until| *until > now_ms) {
            return Err(ServiceError::Locked { until: format_ms(until) });
        }
        let (hash, attempt) = (staff.password_hash.clone(), password.to_owned());
        let verified = tokio::task::spawn_blocking(move || crypto::verify_password(&attempt, &hash))
            .await
            .unwrap_or(false);
        let security = &self.settings().security;
        let identity = staff_identity(&staff)?.with_origin(source_ip.clone(), None);
        if !verified || staff.status != "active" {
            let failures_max = security.login_failures_max;
            let lockout_ms = security.lockout_minutes * MINUTE_MS;
            let staff_id = staff.id;
            let audit_identity = identity.clone();
            let locked = self
                .database()
                .write(move |conn| {
                    let Some(mut record) = repo::get(conn, staff_id)? else {
                        return Ok::<_, ServiceError>(None);
                    };
                    record.failed_login_count += 1;
                    let mut locked = None;
                    if record.failed_login_count >= failures_max {
                        record.locked_until_ms = Some(now_ms + lockout_ms);
                        record.failed_login_count = 0;
                        locked = record.locked_until_ms;
                    }
                    repo::update(conn, &record)?;
                    let action = if locked.is_some() { "auth.locked" } else { "auth.login_failed" };
                    audit::append(conn, &audit_identity, now_ms, action, "staff", staff_id, None, None)?;
                    Ok(locked)
                })
                .await?;
            return Err(match locked {
                Some(until) => ServiceError::Locked { until: format_ms(until) },
                None => invalid_credentials(),
            });
        }
        let session_token = random_token(SESSION_TOKEN_PREFIX);
        let csrf_token = random_token("");
        let expires_at_ms =
            now_ms + security.session_ttl_minutes.min(security.session_idle_minutes) * MINUTE_MS;
        let session = SessionRecord {
            id: 0,
            token_hash: token_hash(&session_token),
            staff_id: staff.id,
            csrf_token: csrf_token.clone(),
            source_ip,
            user_agent: user_agent.map(|agent| agent.chars().take(300).collect()),
            created_at_ms: now_ms,
            expires_at_ms,
            last_seen_at_ms: now_ms,
        };
        let mut record = staff.clone();
        record.failed_login_count = 0;
        record.locked_until_ms = None;
        record.last_login_at_ms = Some(now_ms);
        let view = StaffView::from(&record);
        self.database()
            .write(move |conn| {
                repo::update(conn, &record)?;
                let session_id = repo::insert_session(conn, &session)?;
                audit::append(conn, &identity, now_ms, "auth.login", "session", session_id, None, None)?;
                Ok::<_, ServiceError>(())
            })
            .await?;
        Ok(LoginOutcome { session_token, csrf_token, expires_at: format_ms(expires_at_ms), staff: view })
    }

    /// Resolves a session cookie to the staff member behind it, extending an idle timeout.
    pub async fn authenticate_session(&self, session_token: &str) -> ServiceResult<SessionIdentity> {
        if !session_token.starts_with(SESSION_TOKEN_PREFIX) || session_token.len() > 100 {
            return Err(ServiceError::unauthenticated(
                "auth.session_invalid",
                "the session is not valid; log in again",
            ));
        }
        let hash = token_hash(session_token);
        let (session, staff) = self
            .database()
            .read(move |conn| {
                let Some(session) = repo::session_by_hash(conn, &hash)? else { return Ok((None, None)) };
                let staff = repo::get(conn, session.staff_id)?;
                Ok::<_, ServiceError>((Some(session), staff))
            })
            .await?;
        let (Some(session), Some(staff)) = (session, staff) else {
            return Err(ServiceError::unauthenticated(
                "auth.session_invalid",
                "the session is not valid; log in again",
            ));
        };
        let now_ms = self.now_ms();
        let security = &self.settings().security;
        let absolute_end = session.created_at_ms + security.session_ttl_minutes * MINUTE_MS;
        if now_ms >= session.expires_at_ms || now_ms >= absolute_end || staff.status != "active" {
            return Err(ServiceError::unauthenticated(
                "auth.session_expired",
                "the session has expired; log in again",
            ));
        }
        if now_ms - session.last_seen_at_ms > TOUCH_INTERVAL_MS {
            let expires = (now_ms + security.session_idle_minutes * MINUTE_MS).min(absolute_end);
            let id = session.id;
            self.database().write(move |conn| repo::touch_session(conn, id, now_ms, expires)).await?;
        }
        Ok(SessionIdentity { identity: staff_identity(&staff)?, csrf_token: session.csrf_token })
    }

    pub async fn logout(&self, session_token: &str, identity: &Identity) -> ServiceResult<()> {
        let hash = token_hash(session_token);
        let identity = identity.clone();
        let now_ms = self.now_ms();
        self.database()
            .write(move |conn| {
                repo::delete_session(conn, &hash)?;
                audit::append(
                    conn,
                    &identity,
                    now_ms,
                    "auth.logout",
                    "staff",
                    identity.id.unwrap_or(0),
                    None,
                    None,
                )?;
                Ok::<_, ServiceError>(())
            })
            .await
    }

    /// Resolves a bearer token to the integration behind it.
    pub async fn authenticate_token(&self, token: &str) -> ServiceResult<Identity> {
        if !token.starts_with(API_TOKEN_PREFIX) || token.len() > 100 {
            return Err(ServiceError::unauthenticated("auth.token_invalid", "the API token is not valid"));
        }
        let hash = token_hash(token);
        let now_ms = self.now_ms();
        if let Some(cached) = self.token_cache().get(&hash, now_ms)
            && cached.expires_at_ms.is_none_or(|expires| now_ms < expires)
        {
            return Ok(cached.identity);
        }
        let lookup = hash.clone();
        let record = self.database().read(move |conn| repo::token_by_hash(conn, &lookup)).await?;
        let Some(record) = record else {
            return Err(ServiceError::unauthenticated("auth.token_invalid", "the API token is not valid"));
        };
        if record.revoked_at_ms.is_some() {
            return Err(ServiceError::unauthenticated(
                "auth.token_revoked",
                "the API token has been revoked",
            ));
        }
        if record.expires_at_ms.is_some_and(|expires| now_ms >= expires) {
            return Err(ServiceError::unauthenticated("auth.token_expired", "the API token has expired"));
        }
        let scopes: Vec<Permission> =
            record.scopes.split_whitespace().filter_map(|scope| Permission::parse(scope).ok()).collect();
        let identity =
            Identity::token(record.id, &record.name, &scopes, StoreScope::from_store_id(record.store_id));
        if record.last_used_at_ms.is_none_or(|used| now_ms - used > TOUCH_INTERVAL_MS) {
            let id = record.id;
            self.database().write(move |conn| repo::touch_token(conn, id, now_ms)).await?;
        }
        self.token_cache().put(
            hash,
            CachedToken {
                identity: identity.clone(),
                checked_at_ms: now_ms,
                expires_at_ms: record.expires_at_ms,
            },
        );
        Ok(identity)
    }

    /// Issues an API token whose scopes and store are within the creator's own.
    pub async fn create_api_token(
        &self,
        access: Access<'_, perm::TokenManage>,
        request: ApiTokenRequest,
    ) -> ServiceResult<NewApiToken> {
        let name = cardcrm_domain::text::clean(&request.name)
            .filter(|name| name.chars().count() <= 100)
            .ok_or_else(|| {
                ServiceError::invalid("name", "name.invalid", "give the token a name of 1 to 100 characters")
            })?;
        let mut scopes = Vec::new();
        for raw in &request.scopes {
            let permission = Permission::parse(raw.trim()).map_err(|error| error.at("scopes"))?;
            if !access.has(permission) {
                return Err(ServiceError::Forbidden {
                    permission: Some(permission),
                    message: format!("you cannot grant {} because you do not hold it", permission.as_str()),
                });
            }
            if !scopes.contains(&permission) {
                scopes.push(permission);
            }
        }
        if scopes.is_empty() {
            return Err(ServiceError::invalid("scopes", "scopes.empty", "a token needs at least one scope"));
        }
        let store_scope = StoreScope::from_store_id(request.store_id);
        if !access.scope.contains(store_scope) {
            return Err(ServiceError::forbidden("a token cannot reach stores its creator cannot"));
        }
        let store_scope = match (access.scope, store_scope) {
            (StoreScope::Store(mine), StoreScope::All) => StoreScope::Store(mine),
            (_, scope) => scope,
        };
        let creator =
            access.id.ok_or_else(|| ServiceError::forbidden("only staff members can create tokens"))?;
        let now_ms = self.now_ms();
        let token = random_token(API_TOKEN_PREFIX);
        let record = ApiTokenRecord {
            id: 0,
            name,
            token_hash: token_hash(&token),
            token_prefix: token.chars().take(API_TOKEN_PREFIX.len() + 6).collect(),
            scopes: scopes.iter().map(|scope| scope.as_str()).collect::<Vec<_>>().join(" "),
            store_id: store_scope.store_id(),
            created_by: creator,
            created_at_ms: now_ms,
            expires_at_ms: request.expires_in_days.map(|days| now_ms + i64::from(days) * 24 * 60 * MINUTE_MS),
            revoked_at_ms: None,
            last_used_at_ms: None,
        };
        let identity = access.identity().clone();
        let stored = self
            .database()
            .write(move |conn| {
                let mut stored = record.clone();
                stored.id = repo::insert_token(conn, &record)?;
                let view = ApiTokenView::from(&stored);
                audit::append(
                    conn,
                    &identity,
                    now_ms,
                    "token.create",
                    "api_token",
                    stored.id,
                    None,
                    audit::snapshot(&view),
                )?;
                Ok::<_, ServiceError>(stored)
            })
            .await?;
        Ok(NewApiToken { token, details: ApiTokenView::from(&stored) })
    }

    pub async fn list_api_tokens(
        &self,
        _access: Access<'_, perm::TokenManage>,
        cursor: Option<String>,
        limit: u32,
    ) -> ServiceResult<Page<ApiTokenView>> {
        let after = cursor.as_deref().map(cursor_decode_id).transpose()?.unwrap_or(0);
        let limit = page_limit(limit);
        let records = self.database().read(move |conn| repo::list_tokens(conn, after, limit + 1)).await?;
        Ok(Page::from_overfetch(records, limit, |record| cursor_encode_id(record.id))
            .map(|record| ApiTokenView::from(&record)))
    }

    pub async fn revoke_api_token(
        &self,
        access: Access<'_, perm::TokenManage>,
        id: i64,
    ) -> ServiceResult<ApiTokenView> {
        let identity = access.identity().clone();
        let now_ms = self.now_ms();
        let view = self
            .database()
            .write(move |conn| {
                let before =
                    repo::get_token(conn, id)?.ok_or_else(|| ServiceError::not_found("api token", id))?;
                if !identity.scope.covers(before.store_id) {
                    return Err(ServiceError::not_found("api token", id));
                }
                repo::revoke_token(conn, id, now_ms)?;
                let after =
                    repo::get_token(conn, id)?.ok_or_else(|| ServiceError::not_found("api token", id))?;
                let (before, after) = (ApiTokenView::from(&before), ApiTokenView::from(&after));
                audit::append(
                    conn,
                    &identity,
                    now_ms,
                    "token.revoke",
                    "api_token",
                    id,
                    audit::snapshot(&before),
                    audit::snapshot(&after),
                )?;
                Ok(after)
            })
            .await?;
        self.token_cache().clear();
        Ok(view)
    }

    /// The staff member's own account.
    pub async fn whoami(&self, identity: &Identity) -> ServiceResult<Option<StaffView>> {
        let Some(id) = identity.id.filter(|_| identity.kind == crate::identity::ActorKind::Staff) else {
            return Ok(None);
        };
        let record = self.database().read(move |conn| repo::get(conn, id)).await?;
        Ok(record.as_ref().map(StaffView::from))
    }
}

/// Staff password rules: 10 to 256 characters, not the username.
pub fn check_password(username: &str, password: &str) -> Result<(), FieldError> {
    let length = password.chars().count();
    if length < limits::PASSWORD_LENGTH_MIN {
        return Err(FieldError::new(
            "password",
            "password.too_short",
            format!("a password needs at least {} characters", limits::PASSWORD_LENGTH_MIN),
        ));
    }
    if length > limits::PASSWORD_LENGTH_MAX {
        return Err(FieldError::new(
            "password",
            "password.too_long",
            format!("a password has at most {} characters", limits::PASSWORD_LENGTH_MAX),
        ));
    }
    if password.to_lowercase().contains(&username.to_lowercase()) {
        return Err(FieldError::new(
            "password",
            "password.contains_username",
            "a password must not contain the username",
        ));
    }
    Ok(())
}
