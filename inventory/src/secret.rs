//! Secrets at rest: BMC passwords are sealed with AES-256-GCM under the site key, which comes from a key file or
//! `KILN_SECRET_KEY`. A [`Secret`] never shows its value in `Debug` or `Display`.

use std::fmt;
use std::path::{Path, PathBuf};

use aes_gcm::aead::{Aead, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use rand::RngCore;
use zeroize::{Zeroize, Zeroizing};

/// Environment variable holding the site key (64 hex digits or base64 of 32 bytes).
pub const SECRET_KEY_ENV: &str = "KILN_SECRET_KEY";

/// Prefix of sealed values, so a future format can be told apart.
const SEALED_PREFIX: &str = "v1:";
const NONCE_LEN: usize = 12;

/// A secret string (a BMC password, a token). Its value is only reachable through [`Secret::expose`], is wiped
/// from memory on drop, and prints as `***`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret value, for the moment it is sent to a BMC.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl Drop for Secret {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// What went wrong with the site key or a sealed value.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// The key material is not 32 bytes in hex or base64.
    #[error("secret key from {origin} is not 32 bytes written as 64 hex digits or base64")]
    BadKeyFormat {
        /// Where the key came from (the file path or the variable name).
        origin: String,
    },
    /// The key file could not be read or written.
    #[error("cannot access secret key file {path}")]
    KeyFile {
        /// The key file.
        path: PathBuf,
        /// The I/O failure.
        #[source]
        source: std::io::Error,
    },
    /// A sealed value does not open with this key: the key is not the one the value was sealed with, or the
    /// stored value was altered.
    #[error(
        "{what} cannot be decrypted with this secret key (wrong KILN_SECRET_KEY or key file, or the stored value was altered)"
    )]
    WrongKey {
        /// What was being decrypted.
        what: String,
    },
    /// A stored value is not in kiln's sealed format.
    #[error("{what} is not a kiln-sealed value")]
    Malformed {
        /// What was being decrypted.
        what: String,
    },
    /// No key was configured but one is needed.
    #[error("no secret key: set KILN_SECRET_KEY or pass --key-file (needed to {purpose})")]
    Missing {
        /// What needed the key.
        purpose: String,
    },
}

/// The site's AES-256-GCM key.
#[derive(Clone)]
pub struct SecretKey {
    cipher: Aes256Gcm,
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretKey(***)")
    }
}

impl SecretKey {
    /// A new random key.
    pub fn generate() -> Self {
        let mut bytes = Zeroizing::new([0u8; 32]);
        rand::rngs::OsRng.fill_bytes(bytes.as_mut());
        Self::from_bytes(&bytes)
    }

    fn from_bytes(bytes: &[u8; 32]) -> Self {
        Self {
            cipher: Aes256Gcm::new(bytes.into()),
        }
    }

    /// Parses key material: 64 hex digits or base64 of 32 bytes, surrounding whitespace ignored.
    pub fn parse(text: &str, origin: &str) -> Result<Self, SecretError> {
        let text = text.trim();
        let bad = || SecretError::BadKeyFormat {
            origin: origin.to_string(),
        };
        let bytes = Zeroizing::new(if text.len() == 64 {
            hex::decode(text).map_err(|_| bad())?
        } else {
            BASE64.decode(text).map_err(|_| bad())?
        });
        let array: &[u8; 32] = bytes.as_slice().try_into().map_err(|_| bad())?;
        Ok(Self::from_bytes(array))
    }

    /// Reads the key from `KILN_SECRET_KEY` if set, else from `file` if it exists; `None` when neither is there.
    pub fn load(file: &Path) -> Result<Option<Self>, SecretError> {
        if let Ok(value) = std::env::var(SECRET_KEY_ENV) {
            return Self::parse(&value, SECRET_KEY_ENV).map(Some);
        }
        match std::fs::read_to_string(file) {
            Ok(text) => Self::parse(&text, &file.display().to_string()).map(Some),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(SecretError::KeyFile {
                path: file.to_path_buf(),
                source,
            }),
        }
    }

    /// Like [`SecretKey::load`], but creates a new key file (mode 0600) when there is no key at all.
    /// Returns the key and whether it was just created.
    pub fn load_or_create(file: &Path) -> Result<(Self, bool), SecretError> {
        if let Some(key) = Self::load(file)? {
            return Ok((key, false));
        }
        let mut bytes = Zeroizing::new([0u8; 32]);
        rand::rngs::OsRng.fill_bytes(bytes.as_mut());
        let text = Zeroizing::new(format!("{}\n", hex::encode(bytes.as_ref())));
        write_private(file, text.as_bytes()).map_err(|source| SecretError::KeyFile {
            path: file.to_path_buf(),
            source,
        })?;
        Ok((Self::from_bytes(&bytes), true))
    }

    /// Seals `plain` into the stored text form `v1:<base64(nonce ‖ ciphertext)>`.
    pub fn seal(&self, plain: &Secret) -> String {
        let mut nonce = [0u8; NONCE_LEN];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        // Encryption with a 12-byte nonce and an in-memory buffer cannot fail.
        let sealed = self
            .cipher
            .encrypt(Nonce::from_slice(&nonce), plain.expose().as_bytes())
            .unwrap_or_default();
        let mut blob = nonce.to_vec();
        blob.extend_from_slice(&sealed);
        format!("{SEALED_PREFIX}{}", BASE64.encode(blob))
    }

    /// Opens a value sealed by [`SecretKey::seal`]; `what` names it in errors (never the value).
    pub fn open(&self, sealed: &str, what: &str) -> Result<Secret, SecretError> {
        let malformed = || SecretError::Malformed {
            what: what.to_string(),
        };
        let blob = sealed.strip_prefix(SEALED_PREFIX).ok_or_else(malformed)?;
        let blob = BASE64.decode(blob).map_err(|_| malformed())?;
        if blob.len() < NONCE_LEN + 16 {
            return Err(malformed());
        }
        let (nonce, ciphertext) = blob.split_at(NONCE_LEN);
        let plain = self
            .cipher
            .decrypt(Nonce::from_slice(nonce), ciphertext)
            .map_err(|_| SecretError::WrongKey {
                what: what.to_string(),
            })?;
        let plain = Zeroizing::new(plain);
        let text = std::str::from_utf8(&plain).map_err(|_| malformed())?;
        Ok(Secret::new(text))
    }
}

#[cfg(unix)]
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

#[cfg(not(unix))]
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    std::fs::write(path, bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_open_round_trip_and_wrong_key() {
        let key = SecretKey::generate();
        let sealed = key.seal(&Secret::new("calvin"));
        assert!(!sealed.contains("calvin"));
        assert_eq!(
            key.open(&sealed, "test")
                .map(|s| s.expose().to_string())
                .ok(),
            Some("calvin".into())
        );
        let other = SecretKey::generate();
        let err = other
            .open(&sealed, "BMC password of node X")
            .err()
            .map(|e| e.to_string());
        assert!(err.is_some_and(
            |e| e.contains("BMC password of node X") && e.contains("wrong KILN_SECRET_KEY")
        ));
        assert!(matches!(
            key.open("v1:!!", "x"),
            Err(SecretError::Malformed { .. })
        ));
        assert!(matches!(
            key.open("plain", "x"),
            Err(SecretError::Malformed { .. })
        ));
    }

    #[test]
    fn secret_never_prints() {
        let secret = Secret::new("hunter2");
        assert_eq!(format!("{secret:?} {secret}"), "Secret(***) ***");
        assert_eq!(format!("{:?}", SecretKey::generate()), "SecretKey(***)");
    }

    #[test]
    fn key_formats() {
        let hex_key = "00".repeat(32);
        assert!(SecretKey::parse(&hex_key, "env").is_ok());
        assert!(SecretKey::parse(&BASE64.encode([7u8; 32]), "env").is_ok());
        let err = SecretKey::parse("short", "KILN_SECRET_KEY")
            .err()
            .map(|e| e.to_string());
        assert!(err.is_some_and(|e| e.contains("KILN_SECRET_KEY")));
    }
}
