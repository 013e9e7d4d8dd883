//! Domain rules of cardcrm: value types that can only hold valid values, normalisation of
//! messy input, roles and permissions. No IO, no clock, no database: callers pass time in.

pub mod access;
pub mod card;
pub mod customer;
pub mod date;
pub mod email;
pub mod error;
pub mod id_number;
pub mod ledger;
pub mod limits;
pub mod loyalty;
pub mod money;
pub mod phone;
pub mod text;

pub use error::{FieldError, FieldErrors};
