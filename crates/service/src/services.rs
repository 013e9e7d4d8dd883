//! `Services`: the one handle through which every use case runs. It owns the database, the
//! vault and the clock, and checks on start that the configured keys fit the database.

use std::sync::Arc;

use base64::{Engine, engine::general_purpose::STANDARD};
use cardcrm_domain::money::Currency;
use cardcrm_store::{Database, Location, repo::organisation};
use jiff::tz::TimeZone;

use crate::{
    auth::TokenCache,
    clock::Clock,
    config::Settings,
    crypto::{KeyMaterial, Seal, Vault},
    error::{ServiceError, ServiceResult},
};

struct Inner {
    database: Database,
    vault: Vault,
    clock: Arc<dyn Clock>,
    settings: Settings,
    currency: Currency,
    default_zone: TimeZone,
    tokens: TokenCache,
}

/// Cheap to clone; clones share everything.
#[derive(Clone)]
pub struct Services {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Services {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Services").field("backend", &self.inner.database.backend()).finish_non_exhaustive()
    }
}

const INDEX_FINGERPRINT: &str = "vault.blind_index_fingerprint";
const KEY_CHECK_PLAINTEXT: &str = "cardcrm key check";

impl Services {
    /// Opens the database named by the settings (migrating it), loads the keys, and checks
    /// that they are the keys this database was written with. `create_keys` allows a new key
    /// file in the data directory when none exists.
    pub async fn open(settings: Settings, clock: Arc<dyn Clock>, create_keys: bool) -> ServiceResult<Self> {
        let material = settings.key_material(create_keys)?;
        Self::open_with_keys(settings, clock, &material).await
    }

    pub async fn open_with_keys(
        settings: Settings,
        clock: Arc<dyn Clock>,
        material: &KeyMaterial,
    ) -> ServiceResult<Self> {
        let location = Location::parse(&settings.database_url())?;
        let options = settings.database_options();
        let database = tokio::task::spawn_blocking(move || Database::open(&location, &options))
            .await
            .map_err(|_| ServiceError::Config("opening the database panicked".into()))??;
        let vault = Vault::new(material)?;
        let currency =
            Currency::parse(&settings.currency).map_err(|error| ServiceError::Config(error.to_string()))?;
        let default_zone = TimeZone::get(&settings.default_time_zone)
            .map_err(|_| ServiceError::Config(format!("unknown time zone {}", settings.default_time_zone)))?;
        let services = Self {
            inner: Arc::new(Inner {
                database,
                vault,
                clock,
                settings,
                currency,
                default_zone,
                tokens: TokenCache::default(),
            }),
        };
        services.check_keys(material).await?;
        Ok(services)
    }

    /// Records key check values on first use; afterwards refuses keys that do not match.
    async fn check_keys(&self, material: &KeyMaterial) -> ServiceResult<()> {
        let fingerprint = self.vault().index_fingerprint();
        let now_ms = self.now_ms();
        let mut checks = Vec::new();
        for key_id in material.encryption_keys.keys() {
            let single = KeyMaterial {
                encryption_keys: [(*key_id, material.encryption_keys[key_id])].into(),
                active_key_id: *key_id,
                blind_index_key: material.blind_index_key,
            };
            let sealed = Vault::new(&single)?.seal(key_check_seal(*key_id), KEY_CHECK_PLAINTEXT);
            checks.push((*key_id, STANDARD.encode(sealed)));
        }
        let services = self.clone();
        self.database()
            .write(move |conn| {
                match organisation::setting(conn, INDEX_FINGERPRINT)? {
                    Some(stored) if stored != fingerprint => {
                        return Err(ServiceError::Config(
                            "the configured blind index key is not the one this database was written with".into(),
                        ));
                    }
                    Some(_) => {}
                    None => organisation::set_setting(conn, INDEX_FINGERPRINT, &fingerprint, now_ms)?,
                }
                for (key_id, sealed) in &checks {
                    let name = format!("vault.key_check.{key_id}");
                    match organisation::setting(conn, &name)? {
                        Some(stored) => {
                            let bytes = STANDARD.decode(stored).unwrap_or_default();
                            if services.vault().open(key_check_seal(*key_id), &bytes).is_err() {
                                return Err(ServiceError::Config(format!(
                                    "encryption key {key_id} is not the key {key_id} this database was written with"
                                )));
                            }
                        }
                        None => organisation::set_setting(conn, &name, sealed, now_ms)?,
                    }
                }
                Ok(())
            })
            .await
    }

    pub fn database(&self) -> &Database {
        &self.inner.database
    }

    pub fn vault(&self) -> &Vault {
        &self.inner.vault
    }

    pub fn settings(&self) -> &Settings {
        &self.inner.settings
    }

    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.inner.clock
    }

    pub fn now_ms(&self) -> i64 {
        self.inner.clock.now_ms()
    }

    pub fn currency(&self) -> Currency {
        self.inner.currency
    }

    pub fn default_zone(&self) -> &TimeZone {
        &self.inner.default_zone
    }

    /// Today's date in the business's default time zone.
    pub fn today(&self) -> jiff::civil::Date {
        self.inner.clock.now().to_zoned(self.inner.default_zone.clone()).date()
    }

    pub(crate) fn token_cache(&self) -> &TokenCache {
        &self.inner.tokens
    }
}

fn key_check_seal(key_id: u32) -> Seal {
    Seal { table: "system", column: "key_check", row_id: i64::from(key_id) }
}

/// What `/healthz` reports.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct Health {
    /// `ok` or `unavailable`.
    pub status: String,
    /// `sqlite` or `postgres`.
    pub database: String,
    pub version: String,
    pub schema_version: i64,
}

impl Services {
    /// Whether the database answers.
    pub async fn health(&self) -> Health {
        let answered = self.database().read(cardcrm_store::repo::organisation::ping).await;
        Health {
            status: if answered.is_ok() { "ok" } else { "unavailable" }.into(),
            database: self.database().backend().as_str().into(),
            version: env!("CARGO_PKG_VERSION").into(),
            schema_version: cardcrm_store::migrate::latest_version(),
        }
    }
}
