//! Staff accounts: create, change, reset passwords, disable. A manager may manage only staff
//! of lower rank in their own store; nobody can remove the last active administrator.

use cardcrm_domain::{
    FieldError, FieldErrors,
    access::{Role, StoreScope},
    limits, text,
};
use cardcrm_store::repo::{
    organisation,
    staff::{self as repo, StaffRecord},
};
use serde::{Deserialize, Serialize};

use crate::{
    Services, audit,
    auth::check_password,
    clock::format_ms,
    crypto,
    error::{ServiceError, ServiceResult},
    identity::{Access, ActorKind, Identity, perm},
    view::{Page, cursor_decode_id, cursor_encode_id, page_limit},
};

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct StaffView {
    pub id: i64,
    pub username: String,
    pub display_name: String,
    pub role: String,
    pub store_id: Option<i64>,
    pub status: String,
    pub locked_until: Option<String>,
    pub last_login_at: Option<String>,
    pub password_changed_at: String,
    pub created_at: String,
    pub updated_at: String,
}

impl From<&StaffRecord> for StaffView {
    fn from(record: &StaffRecord) -> Self {
        Self {
            id: record.id,
            username: record.username.clone(),
            display_name: record.display_name.clone(),
            role: record.role.clone(),
            store_id: record.store_id,
            status: record.status.clone(),
            locked_until: record.locked_until_ms.map(format_ms),
            last_login_at: record.last_login_at_ms.map(format_ms),
            password_changed_at: format_ms(record.password_changed_at_ms),
            created_at: format_ms(record.created_at_ms),
            updated_at: format_ms(record.updated_at_ms),
        }
    }
}

#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewStaff {
    pub username: String,
    #[serde(default)]
    pub display_name: Option<String>,
    pub role: String,
    /// The store the account is limited to; absent for all stores.
    #[serde(default)]
    pub store_id: Option<i64>,
    /// At least 10 characters; absent to have one generated and returned once.
    #[serde(default)]
    pub password: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StaffChange {
    #[serde(default)]
    pub display_name: Option<String>,
    #[serde(default)]
    pub role: Option<String>,
    /// `0` or absent keeps the store; use `all_stores` to lift the limit.
    #[serde(default)]
    pub store_id: Option<i64>,
    #[serde(default)]
    pub all_stores: bool,
    /// `active` or `disabled`.
    #[serde(default)]
    pub status: Option<String>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct StaffWithPassword {
    pub staff: StaffView,
    /// Present only when the password was generated; shown this once.
    pub generated_password: Option<String>,
}

/// A username: 3 to 64 of `a-z 0-9 . _ -`, lower-cased.
pub fn parse_username(raw: &str) -> Result<String, FieldError> {
    let cleaned = text::clean(raw).unwrap_or_default().to_lowercase();
    let valid = (3..=limits::USERNAME_LENGTH_MAX).contains(&cleaned.len())
        && cleaned
            .chars()
            .all(|character| character.is_ascii_alphanumeric() || matches!(character, '.' | '_' | '-'));
    if valid {
        Ok(cleaned)
    } else {
        Err(FieldError::new(
            "username",
            "username.invalid",
            "a username has 3 to 64 of a-z, 0-9, dot, underscore, dash",
        ))
    }
}

fn may_manage(actor: &Identity, role: Role, store_id: Option<i64>) -> ServiceResult<()> {
    if actor.kind != ActorKind::System {
        let actor_role = actor.role.unwrap_or(Role::Clerk);
        if !actor_role.outranks(role) {
            return Err(ServiceError::forbidden(format!(
                "a {} cannot manage a {}",
                actor_role.as_str(),
                role.as_str()
            )));
        }
    }
    if !actor.scope.contains(StoreScope::from_store_id(store_id)) {
        return Err(ServiceError::forbidden("you can manage staff only in your own store"));
    }
    Ok(())
}

impl Services {
    pub async fn create_staff(
        &self,
        access: Access<'_, perm::StaffManage>,
        request: NewStaff,
    ) -> ServiceResult<StaffWithPassword> {
        let mut errors = FieldErrors::new();
        let username = errors.take("username", parse_username(&request.username));
        let role = errors.take("role", Role::parse(&request.role));
        let display_name = match request.display_name.as_deref().and_then(text::clean) {
            Some(name) if name.chars().count() > limits::NAME_LENGTH_MAX => {
                errors.push(FieldError::new("display_name", "text.too_long", "the display name is too long"));
                None
            }
            other => other,
        };
        let generated = request.password.is_none().then(crypto::random_password);
        let password = request.password.clone().or_else(|| generated.clone()).unwrap_or_default();
        if let Some(username) = &username {
            errors.take("password", check_password(username, &password));
        }
        if !errors.is_empty() {
            return Err(errors.into());
        }
        let (username, role) = (username.unwrap_or_default(), role.unwrap_or(Role::Clerk));
        may_manage(&access, role, request.store_id)?;
        let hash = tokio::task::spawn_blocking(move || crypto::hash_password(&password))
            .await
            .map_err(|_| ServiceError::Crypto("password hashing stopped".into()))??;
        let now_ms = self.now_ms();
        let record = StaffRecord {
            id: 0,
            display_name: display_name.unwrap_or_else(|| username.clone()),
            username,
            role: role.as_str().to_owned(),
            store_id: request.store_id,
            password_hash: hash,
            status: "active".into(),
            failed_login_count: 0,
            locked_until_ms: None,
            password_changed_at_ms: now_ms,
            last_login_at_ms: None,
            created_at_ms: now_ms,
            updated_at_ms: now_ms,
        };
        let identity = access.identity().clone();
        let view = self
            .database()
            .write(move |conn| {
                if let Some(store_id) = record.store_id {
                    organisation::get(conn, store_id)?.ok_or_else(|| {
                        ServiceError::invalid(
                            "store_id",
                            "store.unknown",
                            format!("store {store_id} does not exist"),
                        )
                    })?;
                }
                if repo::by_username(conn, &record.username)?.is_some() {
                    return Err(ServiceError::conflict(
                        "staff.username_taken",
                        format!("the username {} is taken", record.username),
                    ));
                }
                let mut stored = record.clone();
                stored.id = repo::insert(conn, &record)?;
                let view = StaffView::from(&stored);
                audit::append(
                    conn,
                    &identity,
                    now_ms,
                    "staff.create",
                    "staff",
                    stored.id,
                    None,
                    audit::snapshot(&view),
                )?;
                Ok(view)
            })
            .await?;
        Ok(StaffWithPassword { staff: view, generated_password: generated })
    }

    pub async fn change_staff(
        &self,
        access: Access<'_, perm::StaffManage>,
        id: i64,
        change: StaffChange,
    ) -> ServiceResult<StaffView> {
        let mut errors = FieldErrors::new();
        let role = change.role.as_deref().and_then(|raw| errors.take("role", Role::parse(raw)));
        let status = match change.status.as_deref().map(str::trim) {
            None => None,
            Some(status @ ("active" | "disabled")) => Some(status.to_owned()),
            Some(_) => {
                errors.push(FieldError::new("status", "status.invalid", "status is active or disabled"));
                None
            }
        };
        let display_name = change.display_name.as_deref().and_then(text::clean);
        if !errors.is_empty() {
            return Err(errors.into());
        }
        let identity = access.identity().clone();
        let now_ms = self.now_ms();
        self.database()
            .write(move |conn| {
                let before = repo::get(conn, id)?.ok_or_else(|| ServiceError::not_found("staff", id))?;
                let before_role = Role::parse(&before.role).unwrap_or(Role::Clerk);
                may_manage(&identity, before_role, before.store_id)?;
                let mut after = before.clone();
                if let Some(role) = role {
                    may_manage(&identity, role, before.store_id)?;
                    after.role = role.as_str().to_owned();
                }
                if change.all_stores {
                    after.store_id = None;
                } else if let Some(store_id) = change.store_id.filter(|store| *store > 0) {
                    organisation::get(conn, store_id)?.ok_or_else(|| {
                        ServiceError::invalid(
                            "store_id",
                            "store.unknown",
                            format!("store {store_id} does not exist"),
                        )
                    })?;
                    after.store_id = Some(store_id);
                }
                may_manage(&identity, Role::parse(&after.role).unwrap_or(Role::Clerk), after.store_id)?;
                if let Some(name) = &display_name {
                    after.display_name = name.clone();
                }
                if let Some(status) = &status {
                    after.status = status.clone();
                }
                let removes_admin = before.role == "admin"
                    && before.status == "active"
                    && (after.role != "admin" || after.status != "active");
                if removes_admin && repo::count_active_admins(conn)? <= 1 {
                    return Err(ServiceError::conflict(
                        "staff.last_admin",
                        "this is the last active administrator",
                    ));
                }
                after.updated_at_ms = now_ms;
                repo::update(conn, &after)?;
                if after.status != "active" || after.role != before.role || after.store_id != before.store_id
                {
                    repo::delete_sessions_of(conn, id)?;
                }
                let (before_view, after_view) = (StaffView::from(&before), StaffView::from(&after));
                audit::append(
                    conn,
                    &identity,
                    now_ms,
                    "staff.update",
                    "staff",
                    id,
                    audit::snapshot(&before_view),
                    audit::snapshot(&after_view),
                )?;
                Ok(after_view)
            })
            .await
    }

    /// Sets a new password (generated when `password` is `None`), lifts any lockout and ends
    /// the account's sessions.
    pub async fn reset_staff_password(
        &self,
        access: Access<'_, perm::StaffManage>,
        id: i64,
        password: Option<String>,
    ) -> ServiceResult<StaffWithPassword> {
        let identity = access.identity().clone();
        let current = self
            .database()
            .read(move |conn| repo::get(conn, id))
            .await?
            .ok_or_else(|| ServiceError::not_found("staff", id))?;
        may_manage(&identity, Role::parse(&current.role).unwrap_or(Role::Clerk), current.store_id)?;
        let generated = password.is_none().then(crypto::random_password);
        let password = password.or_else(|| generated.clone()).unwrap_or_default();
        check_password(&current.username, &password)?;
        let hash = tokio::task::spawn_blocking(move || crypto::hash_password(&password))
            .await
            .map_err(|_| ServiceError::Crypto("password hashing stopped".into()))??;
        let now_ms = self.now_ms();
        let view = self
            .database()
            .write(move |conn| {
                let mut record = repo::get(conn, id)?.ok_or_else(|| ServiceError::not_found("staff", id))?;
                record.password_hash = hash.clone();
                record.password_changed_at_ms = now_ms;
                record.failed_login_count = 0;
                record.locked_until_ms = None;
                record.updated_at_ms = now_ms;
                repo::update(conn, &record)?;
                repo::delete_sessions_of(conn, id)?;
                audit::append(conn, &identity, now_ms, "staff.password_reset", "staff", id, None, None)?;
                Ok::<_, ServiceError>(StaffView::from(&record))
            })
            .await?;
        Ok(StaffWithPassword { staff: view, generated_password: generated })
    }

    pub async fn find_staff_by_username(&self, username: &str) -> ServiceResult<Option<StaffView>> {
        let username = username.trim().to_lowercase();
        let record = self.database().read(move |conn| repo::by_username(conn, &username)).await?;
        Ok(record.as_ref().map(StaffView::from))
    }

    pub async fn list_staff(
        &self,
        access: Access<'_, perm::StaffManage>,
        cursor: Option<String>,
        limit: u32,
    ) -> ServiceResult<Page<StaffView>> {
        let after = cursor.as_deref().map(cursor_decode_id).transpose()?.unwrap_or(0);
        let limit = page_limit(limit);
        let store = access.scope.store_id();
        let records = self.database().read(move |conn| repo::list(conn, store, after, limit + 1)).await?;
        Ok(Page::from_overfetch(records, limit, |record| cursor_encode_id(record.id))
            .map(|record| StaffView::from(&record)))
    }

    pub async fn staff_count(&self) -> ServiceResult<i64> {
        Ok(self.database().read(repo::count).await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames() {
        assert_eq!(parse_username(" Li.Na ").unwrap(), "li.na");
        assert!(parse_username("ab").is_err());
        assert!(parse_username("张三").is_err());
    }

    #[test]
    fn passwords() {
        assert!(check_password("lina", "short").is_err());
        assert!(check_password("lina", "my-lina-password").is_err());
        assert!(check_password("lina", "a long enough secret").is_ok());
    }
}
