//! Secrets at rest. Personal fields are sealed with AES-256-GCM under a key id kept beside
//! the ciphertext (so keys can rotate), bound by associated data to their table, column and
//! row (so a ciphertext cannot be moved to another customer). Nonces are 96 random bits from
//! the operating system; a key should seal fewer than 2^32 values (rotate long before: a
//! million customers with four sealed fields updated monthly take over 80 years). Exact lookups use a
//! keyed blind index (HMAC-SHA-256 truncated to 128 bits) under a separate key. Staff
//! passwords use Argon2id; API and session tokens are random and stored as SHA-256.

use std::collections::{BTreeMap, HashMap};

use aes_gcm::{
    Aes256Gcm, Nonce,
    aead::{Aead, KeyInit, Payload},
};
use base64::{Engine, engine::general_purpose::STANDARD, engine::general_purpose::URL_SAFE_NO_PAD};
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use crate::{
    error::ServiceError,
    random::{secure_bytes, secure_fill},
};

const FORMAT_VERSION: u8 = 1;
const NONCE_LENGTH: usize = 12;
const HEADER_LENGTH: usize = 1 + 4 + NONCE_LENGTH;
pub const BLIND_INDEX_LENGTH: usize = 16;

/// Which value a ciphertext belongs to; becomes the associated data.
#[derive(Debug, Clone, Copy)]
pub struct Seal {
    pub table: &'static str,
    pub column: &'static str,
    pub row_id: i64,
}

/// The raw key material of an installation.
#[derive(Clone)]
pub struct KeyMaterial {
    pub encryption_keys: BTreeMap<u32, [u8; 32]>,
    pub active_key_id: u32,
    pub blind_index_key: [u8; 32],
}

impl std::fmt::Debug for KeyMaterial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyMaterial")
            .field("key_ids", &self.encryption_keys.keys().collect::<Vec<_>>())
            .field("active_key_id", &self.active_key_id)
            .finish_non_exhaustive()
    }
}

impl KeyMaterial {
    pub fn generate() -> Self {
        Self {
            encryption_keys: BTreeMap::from([(1, secure_bytes())]),
            active_key_id: 1,
            blind_index_key: secure_bytes(),
        }
    }

    /// Adds a fresh key and makes it the one new values are sealed with.
    pub fn rotate(&mut self) -> u32 {
        let next = self.encryption_keys.keys().max().copied().unwrap_or(0) + 1;
        self.encryption_keys.insert(next, secure_bytes());
        self.active_key_id = next;
        next
    }

    pub fn encode_key(key: &[u8; 32]) -> String {
        STANDARD.encode(key)
    }

    pub fn decode_key(what: &str, encoded: &str) -> Result<[u8; 32], ServiceError> {
        let bytes = STANDARD
            .decode(encoded.trim())
            .map_err(|_| ServiceError::Config(format!("{what} is not valid base64")))?;
        bytes
            .try_into()
            .map_err(|_| ServiceError::Config(format!("{what} must be 32 bytes (44 base64 characters)")))
    }
}

/// Seals, opens and indexes personal data with the installation's keys.
pub struct Vault {
    ciphers: HashMap<u32, Aes256Gcm>,
    active_key_id: u32,
    index_mac: Hmac<Sha256>,
}

impl std::fmt::Debug for Vault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vault").field("active_key_id", &self.active_key_id).finish_non_exhaustive()
    }
}

fn associated_data(seal: Seal) -> String {
    format!("cardcrm:{}.{}:{}", seal.table, seal.column, seal.row_id)
}

impl Vault {
    pub fn new(material: &KeyMaterial) -> Result<Self, ServiceError> {
        if !material.encryption_keys.contains_key(&material.active_key_id) {
            return Err(ServiceError::Config(format!(
                "the active encryption key id {} has no key",
                material.active_key_id
            )));
        }
        let ciphers = material
            .encryption_keys
            .iter()
            .map(|(id, key)| {
                Aes256Gcm::new_from_slice(key)
                    .map(|cipher| (*id, cipher))
                    .map_err(|_| ServiceError::Config(format!("encryption key {id} has the wrong length")))
            })
            .collect::<Result<_, _>>()?;
        let index_mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&material.blind_index_key)
            .map_err(|_| ServiceError::Config("the blind index key has the wrong length".into()))?;
        Ok(Self { ciphers, active_key_id: material.active_key_id, index_mac })
    }

    pub fn active_key_id(&self) -> u32 {
        self.active_key_id
    }

    /// `[version 1][key id u32][nonce 12][ciphertext + tag 16]`.
    pub fn seal(&self, seal: Seal, plaintext: &str) -> Vec<u8> {
        let cipher = &self.ciphers[&self.active_key_id];
        let mut nonce_bytes = [0_u8; NONCE_LENGTH];
        secure_fill(&mut nonce_bytes);
        let aad = associated_data(seal);
        let sealed = cipher
            .encrypt(&Nonce::from(nonce_bytes), Payload { msg: plaintext.as_bytes(), aad: aad.as_bytes() })
            .expect("AES-256-GCM encryption of a short field cannot fail");
        let mut out = Vec::with_capacity(HEADER_LENGTH + sealed.len());
        out.push(FORMAT_VERSION);
        out.extend_from_slice(&self.active_key_id.to_be_bytes());
        out.extend_from_slice(&nonce_bytes);
        out.extend_from_slice(&sealed);
        out
    }

    /// The key id a sealed value was written with.
    pub fn key_id_of(sealed: &[u8]) -> Option<u32> {
        (sealed.len() > HEADER_LENGTH && sealed[0] == FORMAT_VERSION)
            .then(|| u32::from_be_bytes([sealed[1], sealed[2], sealed[3], sealed[4]]))
    }

    pub fn open(&self, seal: Seal, sealed: &[u8]) -> Result<String, ServiceError> {
        let key_id = Self::key_id_of(sealed).ok_or_else(|| {
            ServiceError::Crypto(format!(
                "{}.{} of row {} is not a sealed value",
                seal.table, seal.column, seal.row_id
            ))
        })?;
        let cipher = self.ciphers.get(&key_id).ok_or_else(|| {
            ServiceError::Crypto(format!(
                "encryption key {key_id} is not configured; it is needed to read old data"
            ))
        })?;
        let nonce_bytes: [u8; NONCE_LENGTH] =
            sealed[5..HEADER_LENGTH].try_into().expect("the header length is fixed");
        let aad = associated_data(seal);
        let plaintext = cipher
            .decrypt(&Nonce::from(nonce_bytes), Payload { msg: &sealed[HEADER_LENGTH..], aad: aad.as_bytes() })
            .map_err(|_| {
                ServiceError::Crypto(format!(
                    "{}.{} of row {} does not authenticate (wrong key, or the value was tampered with or moved)",
                    seal.table, seal.column, seal.row_id
                ))
            })?;
        String::from_utf8(plaintext).map_err(|_| ServiceError::Crypto("a sealed value is not UTF-8".into()))
    }

    /// Keyed, deterministic digest of a canonical value for exact-match lookup.
    pub fn blind_index(&self, column: &'static str, canonical: &str) -> [u8; BLIND_INDEX_LENGTH] {
        let mut mac = self.index_mac.clone();
        mac.update(column.as_bytes());
        mac.update(&[0]);
        mac.update(canonical.as_bytes());
        let digest = mac.finalize().into_bytes();
        let mut out = [0_u8; BLIND_INDEX_LENGTH];
        out.copy_from_slice(&digest[..BLIND_INDEX_LENGTH]);
        out
    }

    /// A value that proves, without revealing it, which blind index key is in use.
    pub fn index_fingerprint(&self) -> String {
        hex(&self.blind_index("system", "blind-index-check"))
    }
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// Argon2id (19 MiB, 2 passes, 1 lane: the OWASP baseline) in PHC string form.
pub fn hash_password(password: &str) -> Result<String, ServiceError> {
    use argon2::{Argon2, password_hash::PasswordHasher};
    Argon2::default()
        .hash_password(password.as_bytes())
        .map(|hash| hash.to_string())
        .map_err(|error| ServiceError::Crypto(format!("hashing a password failed: {error}")))
}

pub fn verify_password(password: &str, phc: &str) -> bool {
    use argon2::{
        Argon2,
        password_hash::{PasswordVerifier, phc::PasswordHash},
    };
    match PasswordHash::new(phc) {
        Ok(parsed) => Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok(),
        Err(_) => false,
    }
}

/// Spends the same time as a real verification, for unknown usernames (no timing oracle).
pub fn verify_password_dummy(password: &str) {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let hash = DUMMY.get_or_init(|| hash_password("not a real password").unwrap_or_default());
    let _ = verify_password(password, hash);
}

/// A fresh opaque secret: `prefix` + 43 characters of base64url (256 bits).
pub fn random_token(prefix: &str) -> String {
    format!("{prefix}{}", URL_SAFE_NO_PAD.encode(secure_bytes::<32>()))
}

/// How tokens are stored: their SHA-256 (they are random, so no salt or stretching is needed).
pub fn token_hash(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

/// A readable random password for new staff accounts (about 95 bits).
pub fn random_password() -> String {
    const ALPHABET: &[u8] = b"abcdefghjkmnpqrstuvwxyzABCDEFGHJKMNPQRSTUVWXYZ23456789";
    let bytes: [u8; 20] = secure_bytes();
    let characters: String =
        bytes.iter().map(|byte| ALPHABET[*byte as usize % ALPHABET.len()] as char).collect();
    format!("{}-{}-{}-{}", &characters[0..5], &characters[5..10], &characters[10..15], &characters[15..20])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vault() -> Vault {
        Vault::new(&KeyMaterial::generate()).unwrap()
    }

    const PHONE: Seal = Seal { table: "customers", column: "phone", row_id: 7 };

    #[test]
    fn seal_then_open_round_trips_and_hides_the_value() {
        let vault = vault();
        let sealed = vault.seal(PHONE, "+8613812345678");
        assert!(!sealed.windows(11).any(|window| window == b"13812345678"));
        assert_eq!(vault.open(PHONE, &sealed).unwrap(), "+8613812345678");
        assert_ne!(vault.seal(PHONE, "+8613812345678"), sealed, "nonces are random");
    }

    #[test]
    fn a_value_moved_to_another_row_or_column_does_not_open() {
        let vault = vault();
        let sealed = vault.seal(PHONE, "+8613812345678");
        assert!(vault.open(Seal { row_id: 8, ..PHONE }, &sealed).is_err());
        assert!(vault.open(Seal { column: "email", ..PHONE }, &sealed).is_err());
        let mut tampered = sealed.clone();
        *tampered.last_mut().unwrap() ^= 1;
        assert!(vault.open(PHONE, &tampered).is_err());
    }

    #[test]
    fn old_keys_still_open_after_rotation() {
        let mut material = KeyMaterial::generate();
        let before = Vault::new(&material).unwrap();
        let sealed = before.seal(PHONE, "x@y.cn");
        material.rotate();
        let after = Vault::new(&material).unwrap();
        assert_eq!(Vault::key_id_of(&after.seal(PHONE, "a")), Some(2));
        assert_eq!(after.open(PHONE, &sealed).unwrap(), "x@y.cn");
        assert_eq!(after.blind_index("phone", "+86138"), before.blind_index("phone", "+86138"));
    }

    #[test]
    fn blind_indexes_depend_on_key_column_and_value() {
        let one = vault();
        let two = vault();
        assert_eq!(one.blind_index("phone", "+8613812345678"), one.blind_index("phone", "+8613812345678"));
        assert_ne!(one.blind_index("phone", "+8613812345678"), two.blind_index("phone", "+8613812345678"));
        assert_ne!(one.blind_index("phone", "a"), one.blind_index("email", "a"));
    }

    #[test]
    fn passwords_hash_with_argon2id_and_verify() {
        let hash = hash_password("correct horse battery").unwrap();
        assert!(hash.starts_with("$argon2id$"));
        assert!(verify_password("correct horse battery", &hash));
        assert!(!verify_password("correct horse batterY", &hash));
        assert!(!verify_password("x", "not a hash"));
    }

    #[test]
    fn tokens_are_random_and_hashed() {
        let token = random_token("ccrm_");
        assert!(token.starts_with("ccrm_") && token.len() == 48);
        assert_ne!(token, random_token("ccrm_"));
        assert_eq!(token_hash(&token).len(), 32);
        assert_eq!(random_password().len(), 23);
    }
}
