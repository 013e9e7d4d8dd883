//! Storage errors, one enum for both backends, with the cases callers act on made explicit.

/// What went wrong in the storage layer. Unique and foreign-key violations are lifted out of
/// driver errors so the layers above can answer 409 or 422 without knowing the backend.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("unique constraint violated: {target}")]
    UniqueViolation { target: String },
    #[error("foreign key constraint violated: {detail}")]
    ForeignKeyViolation { detail: String },
    #[error("the database is busy; try again")]
    Busy,
    #[error("transaction conflict (deadlock or serialization failure); try again")]
    Conflict,
    #[error("column {column}: {message}")]
    Decode { column: usize, message: String },
    #[error("expected one row, found none")]
    NoRow,
    #[error("migration {version} ({name}) failed: {message}")]
    Migration { version: i64, name: String, message: String },
    #[error(
        "database url `{0}` is not understood; use a file path, sqlite://PATH or postgres://USER@HOST:PORT/DB"
    )]
    BadUrl(String),
    #[error("the storage workers have stopped")]
    Closed,
    #[error("sqlite: {0}")]
    Sqlite(rusqlite::Error),
    #[error("postgres: {0}")]
    Postgres(postgres::Error),
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    #[error("invariant violated: {0}")]
    Invariant(String),
}

impl StoreError {
    /// Whether repeating the whole unit of work may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Busy | Self::Conflict)
    }
}

impl From<rusqlite::Error> for StoreError {
    fn from(error: rusqlite::Error) -> Self {
        use rusqlite::ErrorCode;
        if let rusqlite::Error::SqliteFailure(failure, message) = &error {
            let text = message.clone().unwrap_or_default();
            match (failure.code, failure.extended_code) {
                (ErrorCode::ConstraintViolation, 2067 | 1555) => {
                    let target = text.trim_start_matches("UNIQUE constraint failed: ").to_owned();
                    return Self::UniqueViolation { target };
                }
                (ErrorCode::ConstraintViolation, 787) => return Self::ForeignKeyViolation { detail: text },
                (ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked, _) => return Self::Busy,
                _ => {}
            }
        }
        Self::Sqlite(error)
    }
}

impl From<postgres::Error> for StoreError {
    fn from(error: postgres::Error) -> Self {
        use postgres::error::SqlState;
        if let Some(database_error) = error.as_db_error() {
            let code = database_error.code();
            if *code == SqlState::UNIQUE_VIOLATION {
                let target = database_error.constraint().unwrap_or("unknown").to_owned();
                return Self::UniqueViolation { target };
            }
            if *code == SqlState::FOREIGN_KEY_VIOLATION {
                return Self::ForeignKeyViolation { detail: database_error.message().to_owned() };
            }
            if *code == SqlState::T_R_DEADLOCK_DETECTED || *code == SqlState::T_R_SERIALIZATION_FAILURE {
                return Self::Conflict;
            }
        }
        Self::Postgres(error)
    }
}

pub type StoreResult<T> = Result<T, StoreError>;
