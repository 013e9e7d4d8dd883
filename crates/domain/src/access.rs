//! Roles, permissions and store scope: who may do what, and where. Every operation states
//! the one permission it needs; a role is a fixed set of permissions.

use serde::{Deserialize, Serialize};

use crate::error::FieldError;

/// One thing an identity may do. The string form (`customer.read`) is stable: API tokens
/// store their scopes in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Permission {
    #[serde(rename = "customer.read")]
    CustomerRead,
    #[serde(rename = "customer.write")]
    CustomerWrite,
    /// See phone, e-mail, ID number and address unmasked. Every use is audited.
    #[serde(rename = "customer.reveal")]
    CustomerReveal,
    #[serde(rename = "customer.merge")]
    CustomerMerge,
    #[serde(rename = "customer.import")]
    CustomerImport,
    #[serde(rename = "transaction.read")]
    TransactionRead,
    #[serde(rename = "transaction.write")]
    TransactionWrite,
    #[serde(rename = "transaction.import")]
    TransactionImport,
    #[serde(rename = "audit.read")]
    AuditRead,
    #[serde(rename = "staff.manage")]
    StaffManage,
    #[serde(rename = "store.manage")]
    StoreManage,
    #[serde(rename = "token.manage")]
    TokenManage,
    /// See cards, balances and their history.
    #[serde(rename = "card.read")]
    CardRead,
    /// Issue cards, activate, freeze, report lost, replace, set PINs.
    #[serde(rename = "card.write")]
    CardWrite,
    /// Close a card, refunding or forfeiting what is left on it.
    #[serde(rename = "card.close")]
    CardClose,
    /// Configure card products and tiers.
    #[serde(rename = "product.manage")]
    ProductManage,
    /// Top up stored value.
    #[serde(rename = "value.load")]
    ValueLoad,
    /// Pay from stored value, check out, move value between a customer's cards.
    #[serde(rename = "value.spend")]
    ValueSpend,
    /// Refund payments and checkouts.
    #[serde(rename = "value.refund")]
    ValueRefund,
    /// Reconciliation reports and alerts across the business.
    #[serde(rename = "ledger.read")]
    LedgerRead,
    /// Acknowledge unusual-activity alerts after looking into them.
    #[serde(rename = "ledger.review")]
    LedgerReview,
    /// See members' points, lots, tiers, coupons and mall orders.
    #[serde(rename = "loyalty.read")]
    LoyaltyRead,
    /// Record offline sales for points, issue and cancel coupons, place and cancel mall
    /// orders, move points between members and partners.
    #[serde(rename = "loyalty.write")]
    LoyaltyWrite,
    /// Configure the programme (earning rules, expiry, tiers), coupon templates, mall
    /// rewards and partners; run the loyalty jobs.
    #[serde(rename = "loyalty.manage")]
    LoyaltyManage,
    /// Put a member on a tier by hand for a while, audited.
    #[serde(rename = "tier.override")]
    TierOverride,
    /// Credit or debit a member's points by hand with a reason (a goodwill gesture, a
    /// correction, an opening balance carried over from another system), audited.
    #[serde(rename = "points.adjust")]
    PointsAdjust,
    /// See analysis runs, their segments and members (customer ids, no personal data), and
    /// export them.
    #[serde(rename = "analysis.read")]
    AnalysisRead,
    /// Run an analysis of the whole business's purchases and store its segments.
    #[serde(rename = "analysis.run")]
    AnalysisRun,
}

impl Permission {
    pub const ALL: [Permission; 28] = [
        Self::CustomerRead,
        Self::CustomerWrite,
        Self::CustomerReveal,
        Self::CustomerMerge,
        Self::CustomerImport,
        Self::TransactionRead,
        Self::TransactionWrite,
        Self::TransactionImport,
        Self::AuditRead,
        Self::StaffManage,
        Self::StoreManage,
        Self::TokenManage,
        Self::CardRead,
        Self::CardWrite,
        Self::CardClose,
        Self::ProductManage,
        Self::ValueLoad,
        Self::ValueSpend,
        Self::ValueRefund,
        Self::LedgerRead,
        Self::LedgerReview,
        Self::LoyaltyRead,
        Self::LoyaltyWrite,
        Self::LoyaltyManage,
        Self::TierOverride,
        Self::PointsAdjust,
        Self::AnalysisRead,
        Self::AnalysisRun,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::CustomerRead => "customer.read",
            Self::CustomerWrite => "customer.write",
            Self::CustomerReveal => "customer.reveal",
            Self::CustomerMerge => "customer.merge",
            Self::CustomerImport => "customer.import",
            Self::TransactionRead => "transaction.read",
            Self::TransactionWrite => "transaction.write",
            Self::TransactionImport => "transaction.import",
            Self::AuditRead => "audit.read",
            Self::StaffManage => "staff.manage",
            Self::StoreManage => "store.manage",
            Self::TokenManage => "token.manage",
            Self::CardRead => "card.read",
            Self::CardWrite => "card.write",
            Self::CardClose => "card.close",
            Self::ProductManage => "product.manage",
            Self::ValueLoad => "value.load",
            Self::ValueSpend => "value.spend",
            Self::ValueRefund => "value.refund",
            Self::LedgerRead => "ledger.read",
            Self::LedgerReview => "ledger.review",
            Self::LoyaltyRead => "loyalty.read",
            Self::LoyaltyWrite => "loyalty.write",
            Self::LoyaltyManage => "loyalty.manage",
            Self::TierOverride => "tier.override",
            Self::PointsAdjust => "points.adjust",
            Self::AnalysisRead => "analysis.read",
            Self::AnalysisRun => "analysis.run",
        }
    }

    pub fn parse(raw: &str) -> Result<Self, FieldError> {
        Self::ALL.into_iter().find(|permission| permission.as_str() == raw).ok_or_else(|| {
            FieldError::new("scopes", "permission.unknown", format!("`{raw}` is not a permission"))
        })
    }
}

/// A staff role. Ranked: a role may only manage staff of a lower rank.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Admin,
    Manager,
    /// Front desk / cashier 收银
    Clerk,
    /// Customer service 客服
    ServiceAgent,
    Marketer,
    Analyst,
}

impl Role {
    pub const ALL: [Role; 6] =
        [Self::Admin, Self::Manager, Self::Clerk, Self::ServiceAgent, Self::Marketer, Self::Analyst];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Admin => "admin",
            Self::Manager => "manager",
            Self::Clerk => "clerk",
            Self::ServiceAgent => "service_agent",
            Self::Marketer => "marketer",
            Self::Analyst => "analyst",
        }
    }

    pub fn parse(raw: &str) -> Result<Self, FieldError> {
        let lower = raw.trim().to_lowercase();
        let alias = match lower.as_str() {
            "cashier" | "收银" => "clerk",
            "service" | "agent" | "客服" => "service_agent",
            "店长" => "manager",
            "管理员" => "admin",
            other => other,
        };
        Self::ALL.into_iter().find(|role| role.as_str() == alias).ok_or_else(|| {
            FieldError::new(
                "role",
                "role.unknown",
                format!(
                    "`{raw}` is not a role; use admin, manager, clerk, service_agent, marketer or analyst"
                ),
            )
        })
    }

    fn rank(self) -> u8 {
        match self {
            Self::Admin => 3,
            Self::Manager => 2,
            Self::Clerk | Self::ServiceAgent | Self::Marketer | Self::Analyst => 1,
        }
    }

    /// Whether this role may create or change staff holding `other`.
    pub fn outranks(self, other: Role) -> bool {
        self == Role::Admin || self.rank() > other.rank()
    }

    pub fn permissions(self) -> &'static [Permission] {
        use Permission::*;
        match self {
            Self::Admin => &Permission::ALL,
            Self::Manager => &[
                CustomerRead,
                CustomerWrite,
                CustomerReveal,
                CustomerMerge,
                CustomerImport,
                TransactionRead,
                TransactionWrite,
                TransactionImport,
                StaffManage,
                CardRead,
                CardWrite,
                CardClose,
                ValueLoad,
                ValueSpend,
                ValueRefund,
                LedgerRead,
                LedgerReview,
                LoyaltyRead,
                LoyaltyWrite,
                TierOverride,
                PointsAdjust,
                AnalysisRead,
                AnalysisRun,
            ],
            Self::Clerk => &[
                CustomerRead,
                CustomerWrite,
                TransactionRead,
                TransactionWrite,
                CardRead,
                CardWrite,
                ValueLoad,
                ValueSpend,
                LoyaltyRead,
                LoyaltyWrite,
            ],
            Self::ServiceAgent => &[
                CustomerRead,
                CustomerWrite,
                CustomerReveal,
                TransactionRead,
                CardRead,
                CardWrite,
                LoyaltyRead,
                LoyaltyWrite,
            ],
            Self::Marketer => &[CustomerRead, CardRead, LoyaltyRead, LoyaltyWrite, AnalysisRead],
            Self::Analyst => {
                &[CustomerRead, TransactionRead, CardRead, LedgerRead, LoyaltyRead, AnalysisRead, AnalysisRun]
            }
        }
    }

    pub fn has(self, permission: Permission) -> bool {
        self.permissions().contains(&permission)
    }
}

/// Where an identity may act: every store, or one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "store_id")]
pub enum StoreScope {
    All,
    Store(i64),
}

impl StoreScope {
    pub fn from_store_id(store_id: Option<i64>) -> Self {
        store_id.map_or(Self::All, Self::Store)
    }

    pub fn store_id(self) -> Option<i64> {
        match self {
            Self::All => None,
            Self::Store(id) => Some(id),
        }
    }

    /// Whether something belonging to `store_id` (or to no store) is inside this scope.
    /// Records without a store belong to the whole business and are visible to all.
    pub fn covers(self, store_id: Option<i64>) -> bool {
        match (self, store_id) {
            (Self::All, _) | (_, None) => true,
            (Self::Store(mine), Some(theirs)) => mine == theirs,
        }
    }

    /// Whether this scope includes all of `other`.
    pub fn contains(self, other: StoreScope) -> bool {
        match (self, other) {
            (Self::All, _) => true,
            (Self::Store(_), Self::All) => false,
            (Self::Store(mine), Self::Store(theirs)) => mine == theirs,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permission_names_round_trip() {
        for permission in Permission::ALL {
            assert_eq!(Permission::parse(permission.as_str()).unwrap(), permission);
            let json = serde_json::to_string(&permission).unwrap();
            assert_eq!(json, format!("\"{}\"", permission.as_str()));
        }
    }

    #[test]
    fn clerks_cannot_reveal_or_audit_admins_can() {
        assert!(Role::Clerk.has(Permission::ValueSpend) && !Role::Clerk.has(Permission::ValueRefund));
        assert!(!Role::Manager.has(Permission::ProductManage) && Role::Admin.has(Permission::ProductManage));
        assert!(!Role::Clerk.has(Permission::CustomerReveal));
        assert!(!Role::Clerk.has(Permission::AuditRead));
        assert!(Role::Admin.has(Permission::CustomerReveal));
        assert!(Role::Admin.has(Permission::AuditRead));
    }

    #[test]
    fn ranks_and_scopes() {
        assert!(Role::Manager.outranks(Role::Clerk));
        assert!(!Role::Manager.outranks(Role::Manager));
        assert!(Role::Admin.outranks(Role::Admin));
        assert!(StoreScope::All.covers(Some(3)));
        assert!(StoreScope::Store(3).covers(Some(3)));
        assert!(!StoreScope::Store(3).covers(Some(4)));
        assert!(StoreScope::Store(3).covers(None));
        assert!(!StoreScope::Store(3).contains(StoreScope::All));
    }
}
