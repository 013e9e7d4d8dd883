//! Errors as RFC 9457 `application/problem+json`: a stable machine `code`, the HTTP status,
//! a sentence for people, and the offending field when there is one. Internal failures are
//! logged with the request id and answered without internals.

use axum::{
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use cardcrm_domain::FieldError;
use cardcrm_service::ServiceError;
use cardcrm_service::StoreError;
use cardcrm_service::import::ImportReport;
use serde::Serialize;

/// The body of every error response.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Problem {
    /// `urn:cardcrm:problem:<code>`.
    #[serde(rename = "type")]
    pub problem_type: String,
    pub title: String,
    pub status: u16,
    /// Stable and machine readable, e.g. `validation.failed`, `customer.not_found`.
    pub code: String,
    pub detail: String,
    /// The first offending field, when the problem is about input.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// Every offending field.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<ProblemField>,
    /// The permission that was missing (403).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub permission: Option<String>,
    /// The line of an import file the problem is on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<u64>,
    /// The report of a rejected import.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub report: Option<ImportReport>,
    /// The current version, when the caller's copy was stale.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub current_version: Option<i64>,
    #[serde(skip)]
    pub retry_after_seconds: Option<u64>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ProblemField {
    pub field: String,
    pub code: String,
    pub message: String,
}

impl From<&FieldError> for ProblemField {
    fn from(error: &FieldError) -> Self {
        Self { field: error.field.clone(), code: error.code.to_owned(), message: error.message.clone() }
    }
}

impl Problem {
    pub fn new(status: StatusCode, code: &str, detail: impl Into<String>) -> Self {
        Self {
            problem_type: format!("urn:cardcrm:problem:{code}"),
            title: status.canonical_reason().unwrap_or("Error").to_owned(),
            status: status.as_u16(),
            code: code.to_owned(),
            detail: detail.into(),
            field: None,
            errors: Vec::new(),
            permission: None,
            line: None,
            report: None,
            current_version: None,
            retry_after_seconds: None,
        }
    }

    pub fn with_field(mut self, field: impl Into<String>) -> Self {
        self.field = Some(field.into());
        self
    }

    pub fn status(&self) -> StatusCode {
        StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = self.status();
        let retry = self.retry_after_seconds;
        let body = serde_json::to_vec(&self).unwrap_or_else(|_| b"{}".to_vec());
        let mut response = (status, body).into_response();
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/problem+json"));
        if let Some(seconds) = retry
            && let Ok(value) = HeaderValue::from_str(&seconds.to_string())
        {
            response.headers_mut().insert(header::RETRY_AFTER, value);
        }
        response
    }
}

/// A handler error: a service error or a problem built by the web layer itself.
#[derive(Debug)]
pub struct ApiError(pub Box<Problem>);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        self.0.into_response()
    }
}

impl From<Problem> for ApiError {
    fn from(problem: Problem) -> Self {
        Self(Box::new(problem))
    }
}

impl From<ServiceError> for ApiError {
    fn from(error: ServiceError) -> Self {
        Self(Box::new(problem_of(error)))
    }
}

fn not_found_code(entity: &str) -> String {
    format!("{}.not_found", entity.replace(' ', "_"))
}

/// Maps a service error to its problem. Internal errors are logged here.
pub fn problem_of(error: ServiceError) -> Problem {
    match error {
        ServiceError::Invalid(errors) => {
            let detail = errors.0.iter().map(|error| error.message.clone()).collect::<Vec<_>>().join("; ");
            let mut problem = Problem::new(StatusCode::UNPROCESSABLE_ENTITY, "validation.failed", detail);
            problem.field = errors.0.first().map(|error| error.field.clone());
            problem.errors = errors.0.iter().map(ProblemField::from).collect();
            problem
        }
        ServiceError::NotFound { entity, id } => Problem::new(
            StatusCode::NOT_FOUND,
            &not_found_code(entity),
            format!("{entity} {id} does not exist"),
        ),
        ServiceError::Conflict { code, message } => Problem::new(StatusCode::CONFLICT, code, message),
        ServiceError::StaleVersion { entity, id, current_version } => {
            let mut problem = Problem::new(
                StatusCode::PRECONDITION_FAILED,
                "version.stale",
                format!(
                    "{entity} {id} was changed by someone else (now version {current_version}); reload and retry"
                ),
            );
            problem.current_version = Some(current_version);
            problem
        }
        ServiceError::Unauthenticated { code, message } => {
            Problem::new(StatusCode::UNAUTHORIZED, code, message)
        }
        ServiceError::Locked { until } => {
            let mut problem = Problem::new(
                StatusCode::LOCKED,
                "auth.locked",
                format!("too many failed logins; the account is locked until {until}"),
            );
            problem.retry_after_seconds = Some(60);
            problem
        }
        ServiceError::Forbidden { permission, message } => {
            let mut problem = Problem::new(StatusCode::FORBIDDEN, "permission.denied", message);
            problem.permission = permission.map(|permission| permission.as_str().to_owned());
            problem
        }
        ServiceError::TooLarge { what, limit } => Problem::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "request.too_large",
            format!("{what} exceeds the limit of {limit}"),
        ),
        ServiceError::ImportRejected { errors_total, report } => {
            let first = report.errors.first().cloned();
            let mut problem = Problem::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "import.rejected",
                format!(
                    "{} of {} rows are invalid ({errors_total} problems); nothing was written{}",
                    report.rows_rejected,
                    report.rows_total,
                    first
                        .as_ref()
                        .map(|error| format!("; first: line {}: {}", error.line, error.message))
                        .unwrap_or_default()
                ),
            );
            problem.line = first.as_ref().map(|error| error.line);
            problem.field = first.map(|error| error.field).filter(|field| !field.is_empty());
            problem.report = Some(*report);
            problem
        }
        ServiceError::BadFile { code, line, message } => {
            let mut problem = Problem::new(StatusCode::BAD_REQUEST, code, message);
            problem.line = line;
            problem
        }
        ServiceError::Store(StoreError::Busy | StoreError::Conflict) => {
            let mut problem = Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "storage.busy",
                "the database is busy; retry shortly",
            );
            problem.retry_after_seconds = Some(1);
            problem
        }
        ServiceError::Store(StoreError::UniqueViolation { target }) => {
            tracing::warn!(%target, "unique constraint violated");
            Problem::new(
                StatusCode::CONFLICT,
                "conflict.duplicate",
                "a record with the same key already exists",
            )
        }
        ServiceError::Store(StoreError::Closed) => Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "storage.unavailable",
            "the service is shutting down",
        ),
        other => {
            tracing::error!(error = %other, "internal error");
            Problem::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal.error",
                "an internal error occurred; it has been logged",
            )
        }
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
