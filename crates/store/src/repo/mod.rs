//! Repositories: the SQL for each table group, as plain functions over a [`crate::Conn`].

pub mod audit;
pub mod customers;
pub mod imports;
pub mod organisation;
pub mod purchases;
pub mod staff;

/// Highest page size any repository returns, whatever the caller asks.
pub const PAGE_SIZE_MAX: i64 = 1_000;

pub(crate) fn bounded(limit: i64) -> i64 {
    limit.clamp(1, PAGE_SIZE_MAX)
}
