//! The test story of cardcrm through its public surfaces: the HTTP API (an app spawned on
//! port 0 with its own database) and the command line (the built binary). Every test runs on
//! SQLite, and on PostgreSQL when TEST_DATABASE_URL names a server.

mod support;

mod analysis;
mod analysis_database;
mod api_access;
mod api_customers;
mod api_errors;
mod cli;
mod crash;
mod imports;
mod ledger;
mod loyalty;
mod openapi;
mod privacy;
