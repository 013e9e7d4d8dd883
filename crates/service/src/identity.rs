//! Who is acting: every operation carries an [`Identity`] (a staff member through a console
//! session, an integration through an API token, or the system itself from the CLI), and
//! operations state the permission they need in their signature by taking an [`Access`].

use std::marker::PhantomData;

use cardcrm_domain::access::{Permission, Role, StoreScope};

use crate::error::ServiceError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActorKind {
    Staff,
    Token,
    System,
}

impl ActorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Staff => "staff",
            Self::Token => "token",
            Self::System => "system",
        }
    }
}

/// The acting party of one request, with where it came from.
#[derive(Debug, Clone)]
pub struct Identity {
    pub kind: ActorKind,
    /// Staff id or token id; none for the system.
    pub id: Option<i64>,
    /// Username, `token:NAME`, or `system:WHAT`.
    pub name: String,
    pub role: Option<Role>,
    permissions: u64,
    pub scope: StoreScope,
    pub source_ip: Option<String>,
    pub request_id: Option<String>,
}

fn bit(permission: Permission) -> u64 {
    let index = Permission::ALL.iter().position(|candidate| *candidate == permission).unwrap_or(0);
    1 << index
}

fn bits(permissions: &[Permission]) -> u64 {
    permissions.iter().fold(0, |all, permission| all | bit(*permission))
}

impl Identity {
    /// A staff member acting through the console.
    pub fn staff(id: i64, username: &str, role: Role, scope: StoreScope) -> Self {
        Self {
            kind: ActorKind::Staff,
            id: Some(id),
            name: username.to_owned(),
            role: Some(role),
            permissions: bits(role.permissions()),
            scope,
            source_ip: None,
            request_id: None,
        }
    }

    /// An integration acting through an API token: it may do only what its scopes list.
    pub fn token(id: i64, name: &str, scopes: &[Permission], scope: StoreScope) -> Self {
        Self {
            kind: ActorKind::Token,
            id: Some(id),
            name: format!("token:{name}"),
            role: None,
            permissions: bits(scopes),
            scope,
            source_ip: None,
            request_id: None,
        }
    }

    /// The operator at the command line, who owns the installation.
    pub fn system(what: &str) -> Self {
        Self {
            kind: ActorKind::System,
            id: None,
            name: format!("system:{what}"),
            role: Some(Role::Admin),
            permissions: bits(&Permission::ALL),
            scope: StoreScope::All,
            source_ip: None,
            request_id: None,
        }
    }

    pub fn with_origin(mut self, source_ip: Option<String>, request_id: Option<String>) -> Self {
        self.source_ip = source_ip;
        self.request_id = request_id;
        self
    }

    pub fn has(&self, permission: Permission) -> bool {
        self.permissions & bit(permission) != 0
    }

    pub fn permissions(&self) -> Vec<Permission> {
        Permission::ALL.into_iter().filter(|permission| self.has(*permission)).collect()
    }

    /// Proof that this identity holds permission `P`, or `Forbidden`.
    pub fn grant<P: Required>(&self) -> Result<Access<'_, P>, ServiceError> {
        if self.has(P::PERMISSION) {
            Ok(Access { identity: self, required: PhantomData })
        } else {
            Err(ServiceError::Forbidden {
                permission: Some(P::PERMISSION),
                message: format!("{} lacks the permission {}", self.name, P::PERMISSION.as_str()),
            })
        }
    }

    /// Whether the identity may act on something of `store_id`.
    pub fn covers_store(&self, store_id: Option<i64>) -> bool {
        self.scope.covers(store_id)
    }

    pub fn require_store(&self, store_id: Option<i64>) -> Result<(), ServiceError> {
        if self.covers_store(store_id) {
            Ok(())
        } else {
            Err(ServiceError::forbidden(format!(
                "{} may act only in store {}",
                self.name,
                self.scope.store_id().map_or_else(|| "any".to_owned(), |id| id.to_string())
            )))
        }
    }
}

/// A permission as a type, so a signature can demand it.
pub trait Required {
    const PERMISSION: Permission;
}

/// Evidence that `identity` holds permission `P`; only [`Identity::grant`] makes one.
#[derive(Debug)]
pub struct Access<'a, P> {
    identity: &'a Identity,
    required: PhantomData<P>,
}

impl<P> Clone for Access<'_, P> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<P> Copy for Access<'_, P> {}

impl<P> std::ops::Deref for Access<'_, P> {
    type Target = Identity;
    fn deref(&self) -> &Identity {
        self.identity
    }
}

impl<'a, P> Access<'a, P> {
    pub fn identity(&self) -> &'a Identity {
        self.identity
    }
}

/// One marker type per permission.
pub mod perm {
    use super::Required;
    use cardcrm_domain::access::Permission;

    macro_rules! markers {
        ($($name:ident),+) => {$(
            #[derive(Debug, Clone, Copy)]
            pub struct $name;
            impl Required for $name {
                const PERMISSION: Permission = Permission::$name;
            }
        )+};
    }

    markers!(
        CustomerRead,
        CustomerWrite,
        CustomerReveal,
        CustomerMerge,
        CustomerImport,
        TransactionRead,
        TransactionWrite,
        TransactionImport,
        AuditRead,
        StaffManage,
        StoreManage,
        TokenManage,
        CardRead,
        CardWrite,
        CardClose,
        ProductManage,
        ValueLoad,
        ValueSpend,
        ValueRefund,
        LedgerRead,
        LedgerReview,
        LoyaltyRead,
        LoyaltyWrite,
        LoyaltyManage,
        TierOverride,
        PointsAdjust,
        AnalysisRead,
        AnalysisRun
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grants_follow_the_role() {
        let clerk = Identity::staff(1, "li", Role::Clerk, StoreScope::Store(2));
        assert!(clerk.grant::<perm::CustomerRead>().is_ok());
        assert!(matches!(
            clerk.grant::<perm::CustomerReveal>(),
            Err(ServiceError::Forbidden { permission: Some(Permission::CustomerReveal), .. })
        ));
        assert!(clerk.require_store(Some(3)).is_err());
        let token = Identity::token(9, "pos", &[Permission::TransactionWrite], StoreScope::All);
        assert!(token.grant::<perm::TransactionWrite>().is_ok());
        assert!(token.grant::<perm::CustomerRead>().is_err());
        assert!(Identity::system("cli").grant::<perm::AuditRead>().is_ok());
    }
}
