//! Secrets: random values from the operating system's CSPRNG, their sha256, and argon2id password hashes.
//!
//! Hashing a password takes tens of milliseconds and ~19 MiB (argon2id's default parameters), so it runs on
//! the blocking thread pool, never on an async worker.

use std::sync::OnceLock;

use argon2::password_hash::{PasswordHasher, PasswordVerifier, phc::PasswordHash};
use argon2::{Argon2, password_hash};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};

/// `N` bytes from the operating system's CSPRNG.
///
/// # Panics
/// If the operating system cannot supply random bytes: nothing secret can safely be made then.
fn random_bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    getrandom::fill(&mut bytes).expect("the operating system's random number generator failed");
    bytes
}

/// 256 random bits as 43 base64url characters: a session secret, a CSRF token, or a token secret's body.
pub(crate) fn random_secret() -> String {
    URL_SAFE_NO_PAD.encode(random_bytes::<32>())
}

/// A strong password to print once: 144 random bits as 24 base64url characters.
pub fn generate_password() -> String {
    URL_SAFE_NO_PAD.encode(random_bytes::<18>())
}

/// The sha256 of a high-entropy secret.
pub(crate) fn sha256(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

/// The sha256 of a high-entropy secret, in lowercase hex: what the store keeps instead of the secret.
pub(crate) fn sha256_hex(secret: &str) -> String {
    hex::encode(sha256(secret))
}

/// The argon2id PHC string of `password`, with a fresh salt and the default parameters.
pub(crate) async fn hash_password(password: &str) -> String {
    let password = password.to_owned();
    blocking(move || hash(&password)).await
}

/// Whether `password` matches `phc`. With `None` (no such user) it still hashes, against a dummy, so that
/// the time taken does not tell which usernames exist; the answer is then `false`. `Err` means the stored
/// string is not a valid PHC string.
pub(crate) async fn verify_password(password: &str, phc: Option<String>) -> Result<bool, password_hash::Error> {
    let password = password.to_owned();
    blocking(move || {
        static DUMMY: OnceLock<String> = OnceLock::new();
        let (phc, real) = match &phc {
            Some(phc) => (phc.as_str(), true),
            None => (DUMMY.get_or_init(|| hash(&generate_password())).as_str(), false),
        };
        let parsed = PasswordHash::new(phc)?;
        match Argon2::default().verify_password(password.as_bytes(), &parsed) {
            Ok(()) => Ok(real),
            Err(password_hash::Error::PasswordInvalid) => Ok(false),
            Err(e) => Err(e),
        }
    })
    .await
}

fn hash(password: &str) -> String {
    Argon2::default()
        .hash_password(password.as_bytes())
        .expect("argon2id with its default parameters hashes any password of up to 4 GiB")
        .to_string()
}

/// Runs `f` on the blocking pool. A panic in `f` resumes here.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    match tokio::task::spawn_blocking(f).await {
        Ok(value) => value,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(e) => panic!("a password hashing task did not run: {e}"),
    }
}
