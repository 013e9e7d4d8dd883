//! Use cases of cardcrm: every operation a person or an integration can perform, with the
//! identity that performs it, the permission it needs, and the audit record it leaves.
//!
//! This crate knows the domain (`cardcrm-domain`) and the storage interface
//! (`cardcrm-store`), never HTTP and never SQL. Time comes from a [`clock::Clock`] so tests
//! and replays control it.

pub mod analysis;
pub mod audit;
pub mod auth;
pub mod cards;
pub mod checkout;
pub mod clock;
pub mod config;
pub mod crypto;
pub mod customers;
pub mod demo;
pub mod error;
pub mod identity;
pub mod import;
pub mod kpi;
pub mod ledger;
pub mod loyalty;
pub mod parquet_export;
pub mod purchases;
pub mod random;
pub mod rewards;
pub mod segments;
pub mod services;
pub mod staff;
pub mod statements;
pub mod stores;
pub mod view;

pub use cardcrm_store::StoreError;
pub use error::{ServiceError, ServiceResult};
pub use identity::{Access, Identity, perm};
pub use services::Services;
