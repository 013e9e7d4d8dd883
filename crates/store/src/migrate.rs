//! Schema migrations, embedded in the binary and applied in order at start. One SQL file
//! per version serves both backends: `{serial}`, `{int}`, `{blob}` and `{text_c}` become each
//! backend's types, and `-- @sqlite` / `-- @postgres` / `-- @both` mark dialect sections.

use crate::{
    conn::{Backend, Conn},
    error::{StoreError, StoreResult},
};

struct Migration {
    version: i64,
    name: &'static str,
    sql: &'static str,
}

const MIGRATIONS: &[Migration] = &[
    Migration { version: 1, name: "foundation", sql: include_str!("../migrations/0001_foundation.sql") },
    Migration {
        version: 2,
        name: "cards_and_ledger",
        sql: include_str!("../migrations/0002_cards_and_ledger.sql"),
    },
    Migration { version: 3, name: "loyalty", sql: include_str!("../migrations/0003_loyalty.sql") },
    Migration { version: 4, name: "analysis", sql: include_str!("../migrations/0004_analysis.sql") },
    Migration {
        version: 5,
        name: "loyalty_enrolment",
        sql: include_str!("../migrations/0005_loyalty_enrolment.sql"),
    },
];

/// The newest schema version this build knows.
pub fn latest_version() -> i64 {
    MIGRATIONS.last().map_or(0, |migration| migration.version)
}

/// The SQL of one migration as `backend` runs it.
fn render(sql: &str, backend: Backend) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut include = true;
    for line in sql.lines() {
        match line.trim() {
            "-- @sqlite" => include = backend == Backend::Sqlite,
            "-- @postgres" => include = backend == Backend::Postgres,
            "-- @both" => include = true,
            _ if include => {
                out.push_str(line);
                out.push('\n');
            }
            _ => {}
        }
    }
    let replacements: [(&str, &str); 5] = match backend {
        Backend::Sqlite => [
            ("{serial}", "INTEGER PRIMARY KEY"),
            ("{int}", "INTEGER"),
            ("{blob}", "BLOB"),
            ("{text_c}", "TEXT COLLATE BINARY"),
            ("{real}", "REAL"),
        ],
        Backend::Postgres => [
            ("{serial}", "BIGSERIAL PRIMARY KEY"),
            ("{int}", "BIGINT"),
            ("{blob}", "BYTEA"),
            ("{text_c}", "TEXT COLLATE \"C\""),
            ("{real}", "DOUBLE PRECISION"),
        ],
    };
    for (token, replacement) in replacements {
        out = out.replace(token, replacement);
    }
    out
}

const POSTGRES_MIGRATION_LOCK: i64 = 0x0063_6172_6463_726d;

/// Applies every migration not yet applied. Refuses a database that a newer build migrated.
pub(crate) fn run(conn: &mut Conn<'_>) -> StoreResult<()> {
    let backend = conn.backend();
    conn.batch(&render(
        "CREATE TABLE IF NOT EXISTS schema_migrations (version {int} PRIMARY KEY, name TEXT NOT NULL, applied_at_ms {int} NOT NULL)",
        backend,
    ))?;
    if backend == Backend::Postgres {
        conn.execute("SELECT pg_advisory_lock($1)", &[POSTGRES_MIGRATION_LOCK.into()])?;
    }
    let result = apply_pending(conn, backend);
    if backend == Backend::Postgres {
        conn.execute("SELECT pg_advisory_unlock($1)", &[POSTGRES_MIGRATION_LOCK.into()])?;
    }
    result
}

fn apply_pending(conn: &mut Conn<'_>, backend: Backend) -> StoreResult<()> {
    let applied: Vec<i64> =
        conn.query("SELECT version FROM schema_migrations ORDER BY version", &[], |row| row.get(0))?;
    if let Some(newest) = applied.last().filter(|newest| **newest > latest_version()) {
        return Err(StoreError::Migration {
            version: *newest,
            name: "unknown".into(),
            message: format!(
                "the database is at schema version {newest}, newer than this cardcrm knows ({}); upgrade cardcrm",
                latest_version()
            ),
        });
    }
    let begin = if backend == Backend::Sqlite { "BEGIN IMMEDIATE" } else { "BEGIN" };
    for migration in MIGRATIONS.iter().filter(|migration| !applied.contains(&migration.version)) {
        let failed = |error: StoreError| StoreError::Migration {
            version: migration.version,
            name: migration.name.into(),
            message: error.to_string(),
        };
        conn.batch(begin).map_err(failed)?;
        let outcome = conn.batch(&render(migration.sql, backend)).and_then(|()| {
            conn.execute(
                "INSERT INTO schema_migrations (version, name, applied_at_ms) VALUES ($1, $2, $3)",
                &[migration.version.into(), migration.name.into(), now_ms().into()],
            )
        });
        match outcome {
            Ok(_) => conn.batch("COMMIT").map_err(failed)?,
            Err(error) => {
                let _ = conn.batch("ROLLBACK");
                return Err(failed(error));
            }
        }
        tracing::info!(version = migration.version, name = migration.name, "applied migration");
    }
    Ok(())
}

/// Migrations record when they ran; this is bookkeeping, not domain time.
fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.as_millis() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sections_and_tokens_render_per_backend() {
        let sql = "CREATE TABLE t (id {serial}, b {blob});\n-- @sqlite\nSQLITE ONLY;\n-- @postgres\nPG ONLY;\n-- @both\nBOTH;";
        let sqlite = render(sql, Backend::Sqlite);
        assert!(sqlite.contains("id INTEGER PRIMARY KEY, b BLOB"));
        assert!(sqlite.contains("SQLITE ONLY") && !sqlite.contains("PG ONLY") && sqlite.contains("BOTH"));
        let postgres = render(sql, Backend::Postgres);
        assert!(postgres.contains("id BIGSERIAL PRIMARY KEY, b BYTEA"));
        assert!(
            !postgres.contains("SQLITE ONLY") && postgres.contains("PG ONLY") && postgres.contains("BOTH")
        );
    }
}
