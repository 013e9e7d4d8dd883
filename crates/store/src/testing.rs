//! Throwaway databases for tests: a fresh SQLite file, or a fresh PostgreSQL database when
//! `TEST_DATABASE_URL` names a server. Each test gets its own and it is dropped afterwards,
//! so tests never share state and can run in parallel.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::{Location, StoreError, StoreResult};

/// The environment variable that selects PostgreSQL for tests, e.g.
/// `postgres://postgres@127.0.0.1:5432/postgres`.
pub const TEST_DATABASE_URL: &str = "TEST_DATABASE_URL";

/// A database that exists for the life of this value.
pub struct TestDatabase {
    location: Location,
    admin_url: Option<String>,
    name: String,
    _directory: Option<TempDirectory>,
}

/// A directory removed on drop (std has none; tests must not leave files behind).
struct TempDirectory(std::path::PathBuf);

impl Drop for TempDirectory {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

static COUNTER: AtomicU64 = AtomicU64::new(0);

fn unique_name() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.subsec_nanos())
        .unwrap_or(0);
    format!("cardcrm_test_{}_{}_{nanos}", std::process::id(), COUNTER.fetch_add(1, Ordering::Relaxed))
}

/// Replaces the database name in a PostgreSQL URL, keeping any query string.
pub fn with_database(url: &str, database: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let scheme_end = base.find("://").map_or(0, |index| index + 3);
    let host_part = match base[scheme_end..].find('/') {
        Some(index) => &base[..scheme_end + index],
        None => base,
    };
    match query {
        Some(query) => format!("{host_part}/{database}?{query}"),
        None => format!("{host_part}/{database}"),
    }
}

fn admin(url: &str, sql: &str) -> StoreResult<()> {
    let url = url.to_owned();
    let sql = sql.to_owned();
    // The synchronous client runs its own runtime: keep it off any async thread.
    std::thread::spawn(move || -> StoreResult<()> {
        let mut client = postgres::Client::connect(&url, postgres::NoTls)?;
        client.batch_execute(&sql)?;
        Ok(())
    })
    .join()
    .map_err(|_| StoreError::Invariant("admin connection panicked".into()))?
}

impl TestDatabase {
    /// Creates a fresh, empty database of the backend the environment selects.
    pub fn create() -> StoreResult<Self> {
        let name = unique_name();
        match std::env::var(TEST_DATABASE_URL).ok().filter(|url| !url.trim().is_empty()) {
            Some(url) if url.starts_with("postgres") => {
                admin(&url, &format!("CREATE DATABASE {name}"))?;
                Ok(Self {
                    location: Location::Postgres(with_database(&url, &name)),
                    admin_url: Some(url),
                    name,
                    _directory: None,
                })
            }
            _ => {
                let directory = std::env::temp_dir().join(&name);
                std::fs::create_dir_all(&directory)?;
                Ok(Self {
                    location: Location::Sqlite(directory.join("cardcrm.db")),
                    admin_url: None,
                    name,
                    _directory: Some(TempDirectory(directory)),
                })
            }
        }
    }

    pub fn location(&self) -> &Location {
        &self.location
    }

    /// The URL to pass to `--database-url`.
    pub fn url(&self) -> String {
        match &self.location {
            Location::Sqlite(path) => path.display().to_string(),
            Location::Postgres(url) => url.clone(),
        }
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        if let Some(url) = &self.admin_url
            && let Err(error) = admin(url, &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name))
        {
            eprintln!("could not drop test database {}: {error}", self.name);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_name_replacement() {
        assert_eq!(with_database("postgres://u@h:5432/postgres", "x"), "postgres://u@h:5432/x");
        assert_eq!(with_database("postgres://u@h:5432", "x"), "postgres://u@h:5432/x");
        assert_eq!(
            with_database("postgres://u@h/db?sslmode=disable", "x"),
            "postgres://u@h/x?sslmode=disable"
        );
    }
}
