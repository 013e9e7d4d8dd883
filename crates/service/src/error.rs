//! The service layer's error: what went wrong in terms a caller can act on. The web layer
//! maps each variant to an HTTP status and a stable problem code; the CLI to an exit code.

use cardcrm_domain::{FieldErrors, access::Permission};
use cardcrm_store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// Input fields are invalid; every problem is listed.
    #[error("invalid input: {0}")]
    Invalid(FieldErrors),
    #[error("{entity} {id} not found")]
    NotFound { entity: &'static str, id: String },
    /// The request conflicts with the current state (`code` is stable).
    #[error("{message}")]
    Conflict { code: &'static str, message: String },
    /// The caller's copy is stale: someone changed the record since it was read.
    #[error("{entity} {id} was changed by someone else (now at version {current_version}); reload and retry")]
    StaleVersion { entity: &'static str, id: String, current_version: i64 },
    /// No valid credentials. `code`: `auth.required`, `auth.invalid_credentials`,
    /// `auth.session_expired`, `auth.token_invalid`.
    #[error("{message}")]
    Unauthenticated { code: &'static str, message: &'static str },
    #[error("too many failed logins; the account is locked until {until}")]
    Locked { until: String },
    #[error("{message}")]
    Forbidden { permission: Option<Permission>, message: String },
    #[error("{what} exceeds the limit of {limit}")]
    TooLarge { what: &'static str, limit: u64 },
    /// An import found problems; nothing was written unless rows were skipped on request.
    #[error("the import has {errors_total} invalid rows; nothing was written")]
    ImportRejected { errors_total: u64, report: Box<crate::import::ImportReport> },
    /// A whole-file problem: unreadable, wrong encoding, unknown columns.
    #[error("{message}")]
    BadFile { code: &'static str, line: Option<u64>, message: String },
    #[error("encryption: {0}")]
    Crypto(String),
    #[error("configuration: {0}")]
    Config(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl ServiceError {
    pub fn not_found(entity: &'static str, id: impl ToString) -> Self {
        Self::NotFound { entity, id: id.to_string() }
    }

    pub fn conflict(code: &'static str, message: impl Into<String>) -> Self {
        Self::Conflict { code, message: message.into() }
    }

    pub fn unauthenticated(code: &'static str, message: &'static str) -> Self {
        Self::Unauthenticated { code, message }
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::Forbidden { permission: None, message: message.into() }
    }

    pub fn invalid(field: &str, code: &'static str, message: impl Into<String>) -> Self {
        Self::Invalid(cardcrm_domain::FieldError::new(field, code, message).into())
    }
}

impl From<FieldErrors> for ServiceError {
    fn from(errors: FieldErrors) -> Self {
        Self::Invalid(errors)
    }
}

impl From<cardcrm_domain::FieldError> for ServiceError {
    fn from(error: cardcrm_domain::FieldError) -> Self {
        Self::Invalid(error.into())
    }
}

pub type ServiceResult<T> = Result<T, ServiceError>;
