//! Settings: built-in defaults < TOML file < `CARDCRM_*` environment < command-line flags.
//! Unknown keys are errors wherever they come from. Secrets (database password, keys) are
//! never printed: they serialise as `<redacted>`.

use std::{collections::BTreeMap, net::SocketAddr, path::PathBuf, time::Duration};

use figment::{
    Figment,
    providers::{Env, Format, Serialized, Toml},
};
use serde::{Deserialize, Serialize, Serializer};

use crate::{crypto::KeyMaterial, error::ServiceError};

/// A value that must not be shown: it prints and serialises as `<redacted>`.
#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str("<redacted>")
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    /// Where the SQLite database, the key file and exports live.
    pub data_dir: PathBuf,
    /// `postgres://…` for PostgreSQL; unset means `DATA_DIR/cardcrm.db` (SQLite).
    pub database_url: Option<Secret>,
    /// Address the HTTP server listens on.
    pub listen: String,
    /// Log filter (`info`, `cardcrm=debug,info`).
    pub log: String,
    /// Time zone of stores created without one, and of the business as a whole.
    pub default_time_zone: String,
    /// Currency of amounts given without one.
    pub currency: String,
    pub database: DatabaseSettings,
    pub http: HttpSettings,
    pub security: SecuritySettings,
    pub import: ImportSettings,
    pub ledger: LedgerSettings,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseSettings {
    /// SQLite reader threads, for reads of any size.
    pub sqlite_readers: usize,
    pub postgres_connections: usize,
    /// Most writes committed together in one transaction (group commit) on SQLite.
    pub write_batch_max: usize,
    /// The same on PostgreSQL. 1 by default: PostgreSQL already flushes the commits of
    /// concurrent connections together, and a transaction holding several requests holds
    /// their row locks until the last is done, so unrelated payments wait on each other and
    /// deadlock across connections.
    pub postgres_write_batch_max: usize,
    /// Members per unit of work of a loyalty job (expiry, tier review); at most 100,000.
    pub job_block_members: i64,
    /// Blocks of a loyalty job (expiry, tier review) run at once on PostgreSQL, each on a
    /// connection of its own (at most `postgres_connections`). SQLite has one writer.
    pub postgres_job_parallelism: usize,
    /// How long a commit waits for more writes to join it.
    pub write_linger_ms: u64,
    /// Page cache of each SQLite reader (and of a bulk load).
    pub sqlite_cache_mib: i64,
    /// Page cache of the SQLite writer: small, because SQLite walks all of it at every commit.
    pub sqlite_writer_cache_mib: i64,
    /// How often SQLite's WAL is folded back into the database file, by a thread of its own.
    pub sqlite_checkpoint_interval_ms: u64,
    /// How much of the SQLite file each connection maps into memory (0 turns mapping off).
    pub sqlite_mmap_mib: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpSettings {
    /// Largest JSON request body.
    pub body_limit_bytes: usize,
    /// Largest file uploaded to the import endpoints.
    pub import_body_limit_bytes: usize,
    /// Requests per second per caller (token, staff member or address); 0 turns it off.
    pub rate_limit_per_second: u32,
    pub rate_limit_burst: u32,
    /// Login attempts per minute per address.
    pub login_attempts_per_minute: u32,
    /// Requests handled at once; more wait.
    pub concurrency_limit: usize,
    pub request_timeout_ms: u64,
    /// Mark cookies `Secure` (set when served over HTTPS).
    pub secure_cookies: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SecuritySettings {
    pub session_ttl_minutes: i64,
    pub session_idle_minutes: i64,
    pub login_failures_max: i64,
    pub lockout_minutes: i64,
    /// Encryption keys by id, base64 of 32 bytes. Unset: read or create `DATA_DIR/keys.toml`.
    pub encryption_keys: BTreeMap<String, Secret>,
    /// Id of the key new values are sealed with.
    pub active_key_id: Option<u32>,
    /// Key of the blind index (base64 of 32 bytes), separate from the encryption keys.
    pub blind_index_key: Option<Secret>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LedgerSettings {
    /// Days an idempotency key keeps its answer (a device re-sending within them is safe).
    pub idempotency_days: i64,
    /// A top-up of at least this much raises an alert (0: never).
    pub alert_top_up_minor: i64,
    /// A payment of at least this much raises an alert (0: never).
    pub alert_spend_minor: i64,
    /// More than `velocity_operations_max` operations on one card within
    /// `velocity_window_minutes` raise an alert (0: never).
    pub velocity_window_minutes: i64,
    pub velocity_operations_max: i64,
}

impl Default for LedgerSettings {
    fn default() -> Self {
        Self {
            idempotency_days: 30,
            alert_top_up_minor: 500_000,
            alert_spend_minor: 500_000,
            velocity_window_minutes: 10,
            velocity_operations_max: 10,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ImportSettings {
    /// Most rows one file may have.
    pub rows_max: u64,
    /// Most row errors listed in a report (all are counted).
    pub errors_reported_max: usize,
    /// Rows written per storage round trip.
    pub batch_rows: usize,
    /// Most rejected rows kept for download after an API import.
    pub rejects_kept_max: usize,
    /// Files of at least this many rows (guessed from their size), and not small next to the
    /// table, load with secondary indexes dropped and rebuilt at the end (SQLite).
    pub bulk_rows_min: u64,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            data_dir: default_data_dir(),
            database_url: None,
            listen: "127.0.0.1:8080".into(),
            log: "info".into(),
            default_time_zone: "Asia/Shanghai".into(),
            currency: "CNY".into(),
            database: DatabaseSettings::default(),
            http: HttpSettings::default(),
            security: SecuritySettings::default(),
            import: ImportSettings::default(),
            ledger: LedgerSettings::default(),
        }
    }
}

impl Default for DatabaseSettings {
    fn default() -> Self {
        Self {
            sqlite_readers: 4,
            postgres_connections: 16,
            write_batch_max: 256,
            postgres_write_batch_max: 1,
            write_linger_ms: 0,
            sqlite_cache_mib: 64,
            sqlite_writer_cache_mib: 8,
            sqlite_checkpoint_interval_ms: 1_000,
            postgres_job_parallelism: 2,
            job_block_members: 20_000,
            sqlite_mmap_mib: 1024,
        }
    }
}

impl Default for HttpSettings {
    fn default() -> Self {
        Self {
            body_limit_bytes: 1 << 20,
            import_body_limit_bytes: 64 << 20,
            rate_limit_per_second: 200,
            rate_limit_burst: 400,
            login_attempts_per_minute: 20,
            concurrency_limit: 1024,
            request_timeout_ms: 30_000,
            secure_cookies: false,
        }
    }
}

impl Default for SecuritySettings {
    fn default() -> Self {
        Self {
            session_ttl_minutes: 12 * 60,
            session_idle_minutes: 30,
            login_failures_max: 5,
            lockout_minutes: 15,
            encryption_keys: BTreeMap::new(),
            active_key_id: None,
            blind_index_key: None,
        }
    }
}

impl Default for ImportSettings {
    fn default() -> Self {
        Self {
            rows_max: 50_000_000,
            errors_reported_max: 1_000,
            batch_rows: 5_000,
            rejects_kept_max: 100_000,
            bulk_rows_min: 100_000,
        }
    }
}

/// The per-user data directory (`~/.local/share/cardcrm` on Linux).
pub fn default_data_dir() -> PathBuf {
    directories::ProjectDirs::from("", "", "cardcrm")
        .map(|dirs| dirs.data_dir().to_path_buf())
        .unwrap_or_else(|| PathBuf::from("cardcrm-data"))
}

/// Values given on the command line; they win over everything else.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Overrides {
    #[serde(skip)]
    pub config_file: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_dir: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub database_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<String>,
}

/// Environment variables that configure how settings are found, not settings themselves.
const ENV_NOT_SETTINGS: [&str; 1] = ["config"];

impl Settings {
    /// Loads settings from every layer. The file is `--config`, else `CARDCRM_CONFIG`, else
    /// `DATA_DIR/cardcrm.toml` when it exists.
    pub fn load(overrides: &Overrides) -> Result<Self, ServiceError> {
        let environment = || Env::prefixed("CARDCRM_").split("__").ignore(&ENV_NOT_SETTINGS);
        let explicit_file =
            overrides.config_file.clone().or_else(|| std::env::var_os("CARDCRM_CONFIG").map(PathBuf::from));
        let file = match explicit_file {
            Some(path) => {
                if !path.is_file() {
                    return Err(ServiceError::Config(format!(
                        "config file {} does not exist",
                        path.display()
                    )));
                }
                Some(path)
            }
            None => {
                // Find the data directory without the file, to look for the file inside it.
                let early: Settings = Figment::from(Serialized::defaults(Settings::default()))
                    .merge(environment())
                    .merge(Serialized::globals(overrides))
                    .extract()
                    .map_err(config_error)?;
                Some(early.data_dir.join("cardcrm.toml")).filter(|path| path.is_file())
            }
        };
        let mut figment = Figment::from(Serialized::defaults(Settings::default()));
        if let Some(path) = &file {
            figment = figment.merge(Toml::file_exact(path));
        }
        let settings: Settings = figment
            .merge(environment())
            .merge(Serialized::globals(overrides))
            .extract()
            .map_err(config_error)?;
        settings.validate()?;
        Ok(settings)
    }

    fn validate(&self) -> Result<(), ServiceError> {
        self.listen_address()?;
        jiff::tz::TimeZone::get(&self.default_time_zone).map_err(|_| {
            ServiceError::Config(format!("default_time_zone `{}` is not a time zone", self.default_time_zone))
        })?;
        cardcrm_domain::money::Currency::parse(&self.currency).map_err(|_| {
            ServiceError::Config(format!("currency `{}` is not a currency code", self.currency))
        })?;
        let positive = [
            ("http.body_limit_bytes", self.http.body_limit_bytes as i64),
            ("http.import_body_limit_bytes", self.http.import_body_limit_bytes as i64),
            ("http.concurrency_limit", self.http.concurrency_limit as i64),
            ("database.write_batch_max", self.database.write_batch_max as i64),
            ("database.postgres_write_batch_max", self.database.postgres_write_batch_max as i64),
            ("database.postgres_job_parallelism", self.database.postgres_job_parallelism as i64),
            ("database.job_block_members", self.database.job_block_members),
            ("database.sqlite_writer_cache_mib", self.database.sqlite_writer_cache_mib),
            ("import.batch_rows", self.import.batch_rows as i64),
            ("security.login_failures_max", self.security.login_failures_max),
            ("security.session_ttl_minutes", self.security.session_ttl_minutes),
        ];
        for (name, value) in positive {
            if value <= 0 {
                return Err(ServiceError::Config(format!("{name} must be positive")));
            }
        }
        let block_max = cardcrm_domain::limits::JOB_BLOCK_MEMBERS_MAX;
        if self.database.job_block_members > block_max {
            return Err(ServiceError::Config(format!(
                "database.job_block_members must be at most {block_max}"
            )));
        }
        Ok(())
    }

    pub fn listen_address(&self) -> Result<SocketAddr, ServiceError> {
        self.listen.parse().map_err(|_| {
            ServiceError::Config(format!("listen `{}` is not an address such as 127.0.0.1:8080", self.listen))
        })
    }

    /// The database URL in effect: the configured one, or the SQLite file in the data dir.
    pub fn database_url(&self) -> String {
        match &self.database_url {
            Some(url) => url.expose().to_owned(),
            None => self.data_dir.join("cardcrm.db").display().to_string(),
        }
    }

    pub fn database_options(&self) -> cardcrm_store::DatabaseOptions {
        cardcrm_store::DatabaseOptions {
            sqlite_readers: self.database.sqlite_readers.max(1),
            postgres_connections: self.database.postgres_connections.max(1),
            write_batch_max: self.database.write_batch_max.max(1),
            postgres_write_batch_max: self.database.postgres_write_batch_max.max(1),
            write_linger: Duration::from_millis(self.database.write_linger_ms),
            sqlite_cache_kib: self.database.sqlite_cache_mib.max(1) * 1024,
            sqlite_writer_cache_kib: self.database.sqlite_writer_cache_mib.max(1) * 1024,
            sqlite_checkpoint_interval: Duration::from_millis(
                self.database.sqlite_checkpoint_interval_ms.max(10),
            ),
            sqlite_mmap_bytes: self.database.sqlite_mmap_mib.max(0) << 20,
        }
    }

    /// The effective settings as JSON with every secret replaced by `<redacted>`.
    pub fn redacted(&self) -> serde_json::Value {
        let mut value = serde_json::to_value(self).unwrap_or(serde_json::Value::Null);
        if let Some(object) = value.as_object_mut() {
            object.insert(
                "database_url".into(),
                serde_json::Value::String(cardcrm_store::redact_url(&self.database_url())),
            );
        }
        value
    }

    /// The key material: from settings when given there, else from `DATA_DIR/keys.toml`,
    /// which is created (readable by the owner only) when `create` is true.
    pub fn key_material(&self, create: bool) -> Result<KeyMaterial, ServiceError> {
        let security = &self.security;
        if !security.encryption_keys.is_empty() || security.blind_index_key.is_some() {
            return material_from(security, "the settings");
        }
        let path = self.data_dir.join("keys.toml");
        if path.is_file() {
            let text = std::fs::read_to_string(&path)
                .map_err(|error| ServiceError::Config(format!("cannot read {}: {error}", path.display())))?;
            let file: SecuritySettings = Figment::from(Serialized::defaults(SecuritySettings::default()))
                .merge(Toml::string(&text))
                .extract()
                .map_err(|error| ServiceError::Config(format!("{}: {error}", path.display())))?;
            return material_from(&file, &path.display().to_string());
        }
        if !create {
            return Err(ServiceError::Config(format!(
                "no encryption keys: {} does not exist and none are configured",
                path.display()
            )));
        }
        let material = KeyMaterial::generate();
        write_key_file(&path, &material)?;
        tracing::info!(path = %path.display(), "created a new key file; back it up with the database");
        Ok(material)
    }
}

fn config_error(error: figment::Error) -> ServiceError {
    ServiceError::Config(error.to_string())
}

fn material_from(security: &SecuritySettings, source: &str) -> Result<KeyMaterial, ServiceError> {
    let mut encryption_keys = BTreeMap::new();
    for (id, key) in &security.encryption_keys {
        let id: u32 = id.parse().map_err(|_| {
            ServiceError::Config(format!("{source}: encryption key id `{id}` is not a number"))
        })?;
        encryption_keys
            .insert(id, KeyMaterial::decode_key(&format!("{source}: encryption key {id}"), key.expose())?);
    }
    let Some(active_key_id) = security.active_key_id.or_else(|| encryption_keys.keys().max().copied()) else {
        return Err(ServiceError::Config(format!("{source}: no encryption keys")));
    };
    let blind_index_key = security
        .blind_index_key
        .as_ref()
        .ok_or_else(|| ServiceError::Config(format!("{source}: blind_index_key is missing")))?;
    Ok(KeyMaterial {
        encryption_keys,
        active_key_id,
        blind_index_key: KeyMaterial::decode_key(
            &format!("{source}: blind_index_key"),
            blind_index_key.expose(),
        )?,
    })
}

/// Writes key material as TOML, readable only by its owner.
pub fn write_key_file(path: &std::path::Path, material: &KeyMaterial) -> Result<(), ServiceError> {
    use std::io::Write;
    let mut text = String::from(
        "# cardcrm encryption keys. Keep this file secret and back it up with the database:\n\
         # without it, phone numbers, e-mails, ID numbers and addresses cannot be read.\n",
    );
    text.push_str(&format!("active_key_id = {}\n", material.active_key_id));
    text.push_str(&format!(
        "blind_index_key = \"{}\"\n\n[encryption_keys]\n",
        KeyMaterial::encode_key(&material.blind_index_key)
    ));
    for (id, key) in &material.encryption_keys {
        text.push_str(&format!("\"{id}\" = \"{}\"\n", KeyMaterial::encode_key(key)));
    }
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .map_err(|error| ServiceError::Config(format!("cannot create {}: {error}", parent.display())))?;
    }
    let temporary = path.with_extension("toml.tmp");
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options
        .open(&temporary)
        .map_err(|error| ServiceError::Config(format!("cannot write {}: {error}", temporary.display())))?;
    file.write_all(text.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|error| ServiceError::Config(format!("cannot write {}: {error}", temporary.display())))?;
    std::fs::rename(&temporary, path)
        .map_err(|error| ServiceError::Config(format!("cannot write {}: {error}", path.display())))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_serialise() {
        let mut settings =
            Settings { database_url: Some(Secret::new("postgres://u:hunter2@h/db")), ..Settings::default() };
        settings.security.blind_index_key = Some(Secret::new("c2VjcmV0"));
        let printed = settings.redacted().to_string();
        assert!(!printed.contains("hunter2"), "{printed}");
        assert!(!printed.contains("c2VjcmV0"), "{printed}");
        assert!(printed.contains("postgres://u:***@h/db"));
        assert_eq!(format!("{:?}", Secret::new("x")), "<redacted>");
    }

    #[test]
    fn key_files_round_trip() {
        let directory = tempfile::tempdir().unwrap();
        let settings = Settings { data_dir: directory.path().to_path_buf(), ..Settings::default() };
        assert!(settings.key_material(false).is_err());
        let created = settings.key_material(true).unwrap();
        let read = settings.key_material(false).unwrap();
        assert_eq!(created.encryption_keys, read.encryption_keys);
        assert_eq!(created.blind_index_key, read.blind_index_key);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(directory.path().join("keys.toml")).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }
}
