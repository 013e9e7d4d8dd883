//! Customer analytics over columns of per-customer figures: quantile scores, RFM and its
//! groups (more analyses join as they are built). No IO, no clock, no database: callers
//! pass the figures and the moment they describe, and get plain values back.

pub mod bgnbd;
pub mod churn;
pub mod clv;
pub mod features;
pub mod gamma_gamma;
pub mod history;
pub mod kmeans;
pub mod kpi;
pub mod lifecycle;
pub mod loyalty;
pub mod optimize;
pub mod parallel;
pub mod quantile;
pub mod recommend;
pub mod rfm;
pub mod special;

/// What an analysis refuses, with the reason in words.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AnalyticsError {
    #[error("{what} must be between {min} and {max}, not {found}")]
    OutOfRange { what: &'static str, min: i64, max: i64, found: i64 },
    #[error("{what}: {length} values where {expected} were expected")]
    LengthMismatch { what: &'static str, length: usize, expected: usize },
    #[error("customer {index}: {what}")]
    InvalidFigure { what: &'static str, index: usize },
}
