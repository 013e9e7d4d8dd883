//! Storage for cardcrm: one query layer over embedded SQLite and PostgreSQL.
//!
//! Everything SQL lives in this crate. Above it, services compose repository functions
//! (`repo::*`) inside units of work that [`Database::write`] runs in a transaction on a
//! storage worker thread. This crate knows rows and columns, not domain rules: it never
//! validates a phone number or decides who may see one.

pub mod conn;
pub mod database;
pub mod error;
pub mod migrate;
pub mod repo;
pub mod testing;
pub mod value;

pub use conn::{Backend, Conn, DeferredIndex};
pub use database::{Database, DatabaseOptions, ForeignKeys, Location, redact_url};
pub use error::{StoreError, StoreResult};
pub use value::{FromColumn, Row, Value};
