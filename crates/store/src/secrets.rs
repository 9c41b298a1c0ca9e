//! Secrets at rest: the operator's key ([`SecretKey`]), the cipher that seals each secret value
//! ([`SecretBox`], XChaCha20-Poly1305), the sealed text format, and the steps that concern every sealed
//! column at once: the key check on open, sealing the clear-text rows of older databases, and key rotation.
//!
//! This is the one place that sees a key or a ciphertext. The store seals a value on write and opens it on
//! read, so callers hand it and get back [`SecretValue`]s; no other crate handles ciphertext. A new kind of
//! secret (an alert channel's webhook key, say) needs a column written with [`Store::seal`] and read with
//! [`Store::unseal`], and one [`SealedColumn`] entry in [`SEALED_COLUMNS`] so that the key check, the
//! clear-text migration and rotation cover it.
//!
//! A sealed value is `pw1:<key id>:<base64(nonce ‖ ciphertext ‖ tag)>`: a random 24-byte nonce per value,
//! and as associated data the value's *context* (e.g. `plugin_config/promo/1.0.0/api_key`), so a value
//! copied into another row does not open. The key id (8 hex digits of a domain-separated sha256 of the key)
//! says which key sealed a value, so a wrong key is recognised, and named, before anything is decrypted.
//!
//! Never: log, audit or `Debug`-print a key or a plaintext ([`SecretKey`] and [`SecretValue`] print
//! `[redacted]`), or write plaintext into the database.

use std::collections::BTreeSet;
use std::fmt;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use chacha20poly1305::aead::{Aead, Payload};
use chacha20poly1305::{KeyInit, XChaCha20Poly1305, XNonce};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::Result;

/// The key file a data directory gets when the operator configures no key.
pub const KEY_FILE: &str = "secret.key";

/// The version tag of the sealed format.
const FORMAT: &str = "pw1";
const NONCE_LEN: usize = 24;
const TAG_LEN: usize = 16;

/// A plaintext secret value. Its `Debug` prints `[redacted]`; it is zeroed when dropped.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretValue(Zeroizing<String>);

impl SecretValue {
    pub fn new(value: impl Into<String>) -> SecretValue {
        SecretValue(Zeroizing::new(value.into()))
    }

    /// The plaintext, for the one place that must hand it on (the plugin's `config` host call).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl From<String> for SecretValue {
    fn from(value: String) -> Self {
        SecretValue::new(value)
    }
}

impl From<&str> for SecretValue {
    fn from(value: &str) -> Self {
        SecretValue::new(value)
    }
}

impl fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// A 256-bit key that seals secrets. Its `Debug` shows only its id; it is zeroed when dropped.
#[derive(Clone)]
pub struct SecretKey {
    bytes: Zeroizing<[u8; 32]>,
    id: String,
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecretKey").field("id", &self.id).field("key", &format_args!("[redacted]")).finish()
    }
}

impl SecretKey {
    pub fn from_bytes(bytes: [u8; 32]) -> SecretKey {
        let bytes = Zeroizing::new(bytes);
        let id = hex::encode(&derive(b"plugwatch secret key id v1", &bytes)[..4]);
        SecretKey { bytes, id }
    }

    /// 256 bits from the operating system's CSPRNG.
    ///
    /// # Panics
    /// If the operating system cannot supply random bytes: no key can safely be made then.
    pub fn generate() -> SecretKey {
        let mut bytes = Zeroizing::new([0u8; 32]);
        getrandom::fill(&mut bytes[..]).expect("the operating system's random number generator failed");
        SecretKey::from_bytes(*bytes)
    }

    /// A key written as 64 hexadecimal digits or as base64 (standard or URL-safe, padded or not) of 32
    /// bytes; surrounding whitespace is ignored. The error says what is wrong, never what was given.
    pub fn parse(text: &str) -> std::result::Result<SecretKey, String> {
        let text = text.trim();
        let mut bytes = Zeroizing::new([0u8; 32]);
        if text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit()) {
            hex::decode_to_slice(text, &mut bytes[..]).map_err(|e| e.to_string())?;
            return Ok(SecretKey::from_bytes(*bytes));
        }
        if text.is_empty() {
            return Err("it is empty; it must be 32 bytes written as 64 hexadecimal digits or in base64".into());
        }
        let decoded = [STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD]
            .iter()
            .find_map(|engine| engine.decode(text).ok())
            .map(Zeroizing::new);
        match decoded {
            Some(decoded) if decoded.len() == 32 => {
                bytes.copy_from_slice(&decoded);
                Ok(SecretKey::from_bytes(*bytes))
            }
            Some(decoded) => Err(format!(
                "it decodes to {} bytes; it must be 32 bytes written as 64 hexadecimal digits or in base64",
                decoded.len()
            )),
            None => Err(format!(
                "it is {} characters that are neither 64 hexadecimal digits nor base64 of 32 bytes",
                text.chars().count()
            )),
        }
    }

    /// Reads a key file (the key as [`SecretKey::parse`] accepts it). Warns when others may read it.
    pub fn read_file(path: &Path) -> std::result::Result<SecretKey, SecretError> {
        let io = |source| SecretError::KeyFile { path: path.to_owned(), source };
        let text = Zeroizing::new(std::fs::read_to_string(path).map_err(io)?);
        let key =
            SecretKey::parse(&text).map_err(|reason| SecretError::BadKeyFile { path: path.to_owned(), reason })?;
        if let Ok(meta) = std::fs::metadata(path)
            && meta.permissions().mode() & 0o077 != 0
        {
            tracing::warn!(
                message = "The secret key file can be read by other users; make it readable by plugwatch only (chmod 600).",
                path = %path.display(),
            );
        }
        Ok(key)
    }

    /// Writes the key (64 hex digits) to a new file of mode 0600 at `path`, which must not exist: the file
    /// is written in full under a temporary name (`O_EXCL`) and then linked into place, so `path` never holds
    /// a partial key and an existing key is never replaced (`AlreadyExists`).
    pub fn write_new_file(&self, path: &Path) -> std::result::Result<(), SecretError> {
        self.write_file(path, false)
    }

    /// Like [`SecretKey::write_new_file`], but atomically replaces a key file that exists (rotation).
    pub fn replace_file(&self, path: &Path) -> std::result::Result<(), SecretError> {
        self.write_file(path, true)
    }

    fn write_file(&self, path: &Path, replace: bool) -> std::result::Result<(), SecretError> {
        let io = |source| SecretError::KeyFile { path: path.to_owned(), source };
        let mut name = path.file_name().unwrap_or_default().to_owned();
        name.push(format!(".{}.tmp", std::process::id()));
        let temp = path.with_file_name(name);
        let written = (|| {
            let mut file = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&temp)?;
            let text = Zeroizing::new(format!("{}\n", hex::encode(self.bytes.as_ref())));
            file.write_all(text.as_bytes())?;
            file.sync_all()?;
            if replace { std::fs::rename(&temp, path) } else { std::fs::hard_link(&temp, path) }
        })();
        let _ = std::fs::remove_file(&temp);
        written.map_err(io)?;
        if let Some(dir) = path.parent()
            && let Ok(dir) = std::fs::File::open(if dir.as_os_str().is_empty() { Path::new(".") } else { dir })
        {
            let _ = dir.sync_all();
        }
        Ok(())
    }

    /// The key's short fingerprint: 8 hex digits, safe to log and show.
    pub fn id(&self) -> &str {
        &self.id
    }
}

/// sha256 over a domain label, a zero byte and the key.
fn derive(label: &[u8], key: &[u8; 32]) -> Zeroizing<[u8; 32]> {
    let mut hash = Sha256::new();
    hash.update(label);
    hash.update([0]);
    hash.update(key);
    Zeroizing::new(hash.finalize().into())
}

/// Seals and opens secret values with one key.
pub struct SecretBox {
    cipher: XChaCha20Poly1305,
    id: String,
}

impl fmt::Debug for SecretBox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecretBox").field("key_id", &self.id).finish_non_exhaustive()
    }
}

impl SecretBox {
    pub fn new(key: &SecretKey) -> SecretBox {
        // The cipher key is derived from, not equal to, the key whose fingerprint is published as its id.
        let cipher_key = derive(b"plugwatch secret encryption key v1", &key.bytes);
        SecretBox { cipher: XChaCha20Poly1305::new(&(*cipher_key).into()), id: key.id.clone() }
    }

    pub fn key_id(&self) -> &str {
        &self.id
    }

    /// `pw1:<key id>:<base64(nonce ‖ ciphertext ‖ tag)>`, bound to `context`.
    pub fn seal(&self, context: &str, value: &SecretValue) -> String {
        let mut nonce = [0u8; NONCE_LEN];
        getrandom::fill(&mut nonce).expect("the operating system's random number generator failed");
        let aad = associated_data(context);
        let sealed = self
            .cipher
            .encrypt(&XNonce::from(nonce), Payload { msg: value.expose().as_bytes(), aad: aad.as_bytes() })
            .expect("XChaCha20-Poly1305 encrypts any value under 256 GiB");
        let mut bytes = Vec::with_capacity(NONCE_LEN + sealed.len());
        bytes.extend_from_slice(&nonce);
        bytes.extend_from_slice(&sealed);
        format!("{FORMAT}:{}:{}", self.id, STANDARD.encode(bytes))
    }

    /// The plaintext of a value sealed for `context` by this key.
    pub fn open(&self, context: &str, sealed: &str) -> std::result::Result<SecretValue, SecretError> {
        let malformed = |reason| SecretError::Malformed { context: context.to_owned(), reason };
        let (id, body) = split_sealed(sealed).ok_or_else(|| malformed("no `pw1:<key id>:` prefix"))?;
        if id != self.id {
            return Err(SecretError::ValueKey {
                context: context.to_owned(),
                stored: id.to_owned(),
                configured: self.id.clone(),
            });
        }
        let bytes = STANDARD.decode(body).map_err(|_| malformed("the body is not base64"))?;
        if bytes.len() < NONCE_LEN + TAG_LEN {
            return Err(malformed("too short for a nonce and a tag"));
        }
        let (nonce, ciphertext) = bytes.split_at(NONCE_LEN);
        let nonce: [u8; NONCE_LEN] = nonce.try_into().expect("split at the nonce length");
        let aad = associated_data(context);
        let plain = self
            .cipher
            .decrypt(&XNonce::from(nonce), Payload { msg: ciphertext, aad: aad.as_bytes() })
            .map(Zeroizing::new)
            .map_err(|_| SecretError::Tampered { context: context.to_owned() })?;
        let text = std::str::from_utf8(&plain).map_err(|_| malformed("the plaintext is not UTF-8"))?;
        Ok(SecretValue::new(text))
    }
}

fn associated_data(context: &str) -> String {
    format!("{FORMAT}\0{context}")
}

/// `(key id, body)` of a sealed value.
pub(crate) fn split_sealed(sealed: &str) -> Option<(&str, &str)> {
    let rest = sealed.strip_prefix(FORMAT)?.strip_prefix(':')?;
    let (id, body) = rest.split_once(':')?;
    (id.len() == 8 && id.bytes().all(|b| b.is_ascii_hexdigit())).then_some((id, body))
}

/// The context a secret is sealed for: the kind of row and what identifies it, joined by `/`
/// (`plugin_config/promo/1.0.0/api_key`). Each [`SealedColumn`]'s query builds the same string in SQL.
pub(crate) fn context(kind: &str, parts: &[&str]) -> String {
    let mut out = kind.to_owned();
    for part in parts {
        out.push('/');
        out.push_str(part);
    }
    out
}

/// Why a secret could not be sealed or opened, or a key not used.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error(
        "the secrets in this database were encrypted with key {stored}; the configured key is {configured} \
         (from {origin}). Start with the key they were encrypted with (see the README's \"Secret key\"); \
         nothing was changed"
    )]
    WrongKey { stored: String, configured: String, origin: String },
    #[error(
        "the secrets in this database were encrypted with key {stored}, but no key is configured and {} does \
         not exist. Set PLUGWATCH_SECRET_KEY or PLUGWATCH_SECRET_KEY_FILE to that key, or restore the key \
         file from its backup; nothing was changed",
        path.display()
    )]
    MissingKey { stored: String, path: PathBuf },
    #[error("secret `{context}` cannot be stored or read: this command was given no secret key")]
    NoKey { context: String },
    #[error("secret `{context}` was encrypted with key {stored}; the configured key is {configured}")]
    ValueKey { context: String, stored: String, configured: String },
    #[error("secret `{context}` failed authentication: it was altered, or moved from another row")]
    Tampered { context: String },
    #[error("secret `{context}` is not a sealed value: {reason}")]
    Malformed { context: String, reason: &'static str },
    #[error("the secret key in {} is invalid: {reason}", path.display())]
    BadKeyFile { path: PathBuf, reason: String },
    #[error("secret key file {}: {source}", path.display())]
    KeyFile { path: PathBuf, source: std::io::Error },
    #[error("the new key is the current key ({0}); rotation needs a different key")]
    SameKey(String),
}

/// Where the store's key comes from.
#[derive(Debug)]
pub enum KeySource {
    /// A key the operator configured; `origin` names where (`PLUGWATCH_SECRET_KEY`, a file) for messages.
    Configured { key: SecretKey, origin: String },
    /// `<data_dir>/secret.key`, generated (256 random bits, mode 0600) on the first start when the database
    /// holds no sealed value.
    DataDir,
    /// No key, for commands that never touch secrets (`plugwatch user`): storing or reading a secret fails
    /// with [`SecretError::NoKey`], and clear-text rows of an older database stay until a start with a key.
    None,
}

/// Where the key in use came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeyOrigin {
    Configured(String),
    /// The data directory's key file; `generated` when this open created it.
    DataDir {
        path: PathBuf,
        generated: bool,
    },
    None,
}

impl fmt::Display for KeyOrigin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyOrigin::Configured(origin) => f.write_str(origin),
            KeyOrigin::DataDir { path, .. } => write!(f, "{}", path.display()),
            KeyOrigin::None => f.write_str("no key"),
        }
    }
}

/// A column holding sealed values, described for the steps that go over every secret.
pub(crate) struct SealedColumn {
    /// The table the column is in: the key check runs before the migrations, when an older database may
    /// not have it yet.
    pub table: &'static str,
    /// Rows whose `sealed` flag equals `$1`, as `(row id INTEGER, context TEXT, value TEXT)`; the context
    /// must be what [`context`] builds for the row on write.
    pub select: &'static str,
    /// Sets row `$2`'s value to `$1` (a sealed value) and its `sealed` flag.
    pub update: &'static str,
}

/// Every sealed column in the schema.
pub(crate) const SEALED_COLUMNS: &[&SealedColumn] = &[&crate::plugins::SECRET_CONFIG, &crate::alerts::CHANNEL_SECRETS];

/// The key in use (replaced by rotation) and where it came from.
pub(crate) struct Keyring {
    pub(crate) current: RwLock<Option<Arc<SecretBox>>>,
    pub(crate) origin: RwLock<KeyOrigin>,
}

/// What a rotation did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rotated {
    pub old_key_id: String,
    pub new_key_id: String,
    /// Values re-encrypted.
    pub values: usize,
}

/// Chooses the key and checks it against the ids of the keys that sealed the stored values
/// ([`stored_key_ids`]), before anything is written: a key that did not seal them is refused with both ids, and no key is generated while sealed
/// values exist.
pub(crate) fn keyring(stored: &BTreeSet<String>, data_dir: &Path, source: KeySource) -> Result<Keyring> {
    let stored_list = || stored.iter().cloned().collect::<Vec<_>>().join(", ");
    let (key, origin) = match source {
        KeySource::None => (None, KeyOrigin::None),
        KeySource::Configured { key, origin } => (Some(key), KeyOrigin::Configured(origin)),
        KeySource::DataDir => {
            let path = data_dir.join(KEY_FILE);
            if path.exists() {
                (Some(SecretKey::read_file(&path)?), KeyOrigin::DataDir { path, generated: false })
            } else if !stored.is_empty() {
                return Err(SecretError::MissingKey { stored: stored_list(), path }.into());
            } else {
                let key = SecretKey::generate();
                match key.write_new_file(&path) {
                    Ok(()) => (Some(key), KeyOrigin::DataDir { path, generated: true }),
                    // Another process made it first: use theirs.
                    Err(SecretError::KeyFile { source, .. }) if source.kind() == std::io::ErrorKind::AlreadyExists => {
                        (Some(SecretKey::read_file(&path)?), KeyOrigin::DataDir { path, generated: false })
                    }
                    Err(e) => return Err(e.into()),
                }
            }
        }
    };
    if let Some(key) = &key
        && stored.iter().any(|id| id != key.id())
    {
        return Err(SecretError::WrongKey {
            stored: stored_list(),
            configured: key.id().to_owned(),
            origin: origin.to_string(),
        }
        .into());
    }
    Ok(Keyring { current: RwLock::new(key.as_ref().map(|k| Arc::new(SecretBox::new(k)))), origin: RwLock::new(origin) })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(byte: u8) -> SecretKey {
        SecretKey::from_bytes([byte; 32])
    }

    #[test]
    fn a_sealed_value_opens_with_its_key_and_context_only() {
        let sealer = SecretBox::new(&key(1));
        let value = SecretValue::from("sk_live_51Hsecret");
        let sealed = sealer.seal("plugin_config/p/1.0.0/api_key", &value);
        assert!(sealed.starts_with(&format!("pw1:{}:", key(1).id())), "{sealed}");
        assert!(!sealed.contains("sk_live"));
        assert_eq!(sealer.open("plugin_config/p/1.0.0/api_key", &sealed).unwrap(), value);
        // A fresh nonce per value: the same plaintext never seals the same way twice.
        assert_ne!(sealed, sealer.seal("plugin_config/p/1.0.0/api_key", &value));

        let moved = sealer.open("plugin_config/p/1.0.0/other_key", &sealed).unwrap_err();
        assert!(matches!(moved, SecretError::Tampered { .. }), "{moved}");

        let mut bytes = STANDARD.decode(sealed.rsplit(':').next().unwrap()).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        let tampered = format!("pw1:{}:{}", key(1).id(), STANDARD.encode(&bytes));
        let error = sealer.open("plugin_config/p/1.0.0/api_key", &tampered).unwrap_err();
        assert!(matches!(error, SecretError::Tampered { .. }), "{error}");

        let other = SecretBox::new(&key(2));
        let error = other.open("plugin_config/p/1.0.0/api_key", &sealed).unwrap_err().to_string();
        assert!(error.contains(key(1).id()) && error.contains(key(2).id()), "{error}");
    }

    #[test]
    fn keys_parse_from_hex_or_base64_and_bad_ones_say_why() {
        let k = key(7);
        let hex_text = hex::encode([7u8; 32]);
        assert_eq!(SecretKey::parse(&hex_text).unwrap().id(), k.id());
        assert_eq!(SecretKey::parse(&format!("  {}\n", hex_text.to_uppercase())).unwrap().id(), k.id());
        assert_eq!(SecretKey::parse(&STANDARD.encode([7u8; 32])).unwrap().id(), k.id());
        assert_eq!(SecretKey::parse(&URL_SAFE_NO_PAD.encode([7u8; 32])).unwrap().id(), k.id());
        assert!(SecretKey::parse(&STANDARD.encode([7u8; 31])).unwrap_err().contains("31 bytes"));
        assert!(SecretKey::parse(&hex_text[..62]).unwrap_err().contains("62 characters"));
        assert!(SecretKey::parse("").unwrap_err().contains("empty"));
        assert_ne!(key(1).id(), key(2).id());
        assert_eq!(key(1).id().len(), 8);
    }

    #[test]
    fn debug_never_shows_a_key_or_a_value() {
        let k = key(0xab);
        let printed = format!("{k:?} {:?} {:?}", SecretValue::from("hunter2"), SecretBox::new(&k));
        assert!(!printed.contains("hunter2") && !printed.contains("abab"), "{printed}");
        assert!(printed.contains("[redacted]") && printed.contains(k.id()), "{printed}");
    }

    #[test]
    fn a_key_file_is_private_and_never_replaced_by_a_new_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(KEY_FILE);
        let k = SecretKey::generate();
        k.write_new_file(&path).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(SecretKey::read_file(&path).unwrap().id(), k.id());
        let error = SecretKey::generate().write_new_file(&path).unwrap_err();
        assert!(
            matches!(&error, SecretError::KeyFile { source, .. } if source.kind() == std::io::ErrorKind::AlreadyExists)
        );
        assert_eq!(SecretKey::read_file(&path).unwrap().id(), k.id());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1, "no temporary file is left");
    }
}
