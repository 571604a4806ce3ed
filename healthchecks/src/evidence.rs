//! Signed acceptance records: a node's hardware, firmware, image digest, verdicts and NCCL figures, signed with
//! the site's ed25519 key over a canonical JSON encoding so a lessee can verify them offline.

use std::path::{Path, PathBuf};

pub use ed25519_dalek::SigningKey;
use ed25519_dalek::{Signature, Signer, Verifier, VerifyingKey};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::verdict::Verdict;

/// Signature algorithm named in every signed record.
pub const ALGORITHM: &str = "ed25519";

/// Why a record could not be signed or verified.
#[derive(Debug, thiserror::Error)]
pub enum EvidenceError {
    /// A key file could not be read.
    #[error("cannot read key file {path}")]
    ReadKey {
        /// The file named.
        path: PathBuf,
        /// The I/O failure.
        #[source]
        source: std::io::Error,
    },
    /// A key file could not be written.
    #[error("cannot write key file {path}")]
    WriteKey {
        /// The file named.
        path: PathBuf,
        /// The I/O failure.
        #[source]
        source: std::io::Error,
    },
    /// A key is not 32 bytes of hex.
    #[error("{what} is not a 32-byte hex ed25519 key")]
    BadKey {
        /// Which key (signing key file, public key).
        what: String,
    },
    /// The record is not valid signed-record JSON.
    #[error("signed record is malformed")]
    Malformed {
        /// What serde_json rejected.
        #[source]
        source: serde_json::Error,
    },
    /// The record names an algorithm kiln does not verify.
    #[error("signed record uses algorithm {0:?}, kiln verifies only ed25519")]
    Algorithm(String),
    /// The signature does not match the record and key.
    #[error("signature does not match the record under public key {public_key_hex}")]
    BadSignature {
        /// The key the record was checked against.
        public_key_hex: String,
    },
}

/// What a site attests about one node at hand-over.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AcceptanceRecord {
    /// Node identifier (serial or inventory id).
    pub node: String,
    /// SKU profile id the node was judged against.
    pub sku: String,
    /// Hardware inventory (GPUs with serials/UUIDs, NICs, disks) as reported.
    pub hardware: Value,
    /// Firmware versions (BMC, BIOS, VBIOS, NIC).
    pub firmware: Value,
    /// sha256 of the installed image, hex.
    pub image_digest: Option<String>,
    /// Health verdicts: the provisioner's judgement of the evidence (never a node's own verdict).
    pub verdicts: Vec<Verdict>,
    /// sha256 digests of the raw evidence each verdict judged (canonical JSON bytes, see
    /// [`crate::burnin::evidence_digest`]), so the stored evidence can be matched to this record later.
    #[serde(default)]
    pub evidence_sha256: Vec<EvidenceDigest>,
    /// NCCL figures (avg busbw per run, node counts).
    pub nccl: Value,
    /// When the record was made, seconds since the Unix epoch.
    pub created_at_unix_s: u64,
    /// How the node's disks were erased after the previous tenant, or that there was none (absent from
    /// records made before kiln signed it; see [`crate::erasure::check`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub erased_before_lease: Option<crate::erasure::ErasedBeforeLease>,
}

/// The digest of one health run's raw evidence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EvidenceDigest {
    /// Run kind (`burn_in`, `nccl`, `nvml_check`).
    pub kind: String,
    /// The inventory's health run id, when the evidence is stored there.
    pub health_run: Option<i64>,
    /// sha256 of the evidence's canonical JSON, hex.
    pub sha256: String,
}

/// A record with its signature. `record` is kept as JSON so records with fields newer than this code still verify.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SignedRecord {
    /// The signed content.
    pub record: Value,
    /// Always `ed25519`.
    pub algorithm: String,
    /// Public key of the signer, hex (a hint: verification uses the key the verifier trusts).
    pub public_key_hex: String,
    /// Signature over `canonical_json(record)`, hex.
    pub signature_hex: String,
}

/// JSON with object keys sorted at every level and no insignificant whitespace: the bytes that are signed.
pub fn canonical_json(value: &Value) -> String {
    let mut out = String::new();
    write_canonical(value, &mut out);
    out
}

fn write_canonical(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, key) in keys.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String((*key).clone()).to_string());
                out.push(':');
                if let Some(v) = map.get(*key) {
                    write_canonical(v, out);
                }
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(v, out);
            }
            out.push(']');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}

/// Signs a record with the site key.
pub fn sign(record: &AcceptanceRecord, key: &SigningKey) -> Result<SignedRecord, EvidenceError> {
    let value =
        serde_json::to_value(record).map_err(|source| EvidenceError::Malformed { source })?;
    let signature = key.sign(canonical_json(&value).as_bytes());
    Ok(SignedRecord {
        record: value,
        algorithm: ALGORITHM.to_string(),
        public_key_hex: hex::encode(key.verifying_key().as_bytes()),
        signature_hex: hex::encode(signature.to_bytes()),
    })
}

/// Verifies a signed record (as JSON text) against a trusted public key, offline. Returns the record on success.
pub fn verify(
    signed_json: &str,
    trusted: &VerifyingKey,
) -> Result<AcceptanceRecord, EvidenceError> {
    let signed: SignedRecord =
        serde_json::from_str(signed_json).map_err(|source| EvidenceError::Malformed { source })?;
    if signed.algorithm != ALGORITHM {
        return Err(EvidenceError::Algorithm(signed.algorithm));
    }
    let bad = || EvidenceError::BadSignature {
        public_key_hex: hex::encode(trusted.as_bytes()),
    };
    let sig_bytes: [u8; 64] = hex::decode(&signed.signature_hex)
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(bad)?;
    let signature = Signature::from_bytes(&sig_bytes);
    trusted
        .verify(canonical_json(&signed.record).as_bytes(), &signature)
        .map_err(|_| bad())?;
    serde_json::from_value(signed.record).map_err(|source| EvidenceError::Malformed { source })
}

fn key_bytes(hex_text: &str, what: &str) -> Result<[u8; 32], EvidenceError> {
    hex::decode(hex_text.trim())
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| EvidenceError::BadKey {
            what: what.to_string(),
        })
}

/// Reads a site signing key: a file holding the 32-byte secret seed as hex.
pub fn load_signing_key(path: &Path) -> Result<SigningKey, EvidenceError> {
    let text = std::fs::read_to_string(path).map_err(|source| EvidenceError::ReadKey {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(SigningKey::from_bytes(&key_bytes(
        &text,
        &format!("signing key file {}", path.display()),
    )?))
}

/// Parses a public key given as hex.
pub fn parse_public_key(hex_text: &str) -> Result<VerifyingKey, EvidenceError> {
    let bytes = key_bytes(hex_text, "public key")?;
    VerifyingKey::from_bytes(&bytes).map_err(|_| EvidenceError::BadKey {
        what: "public key".to_string(),
    })
}

/// Reads a public key: the argument is hex itself, or a file holding hex.
pub fn load_public_key(arg: &str) -> Result<VerifyingKey, EvidenceError> {
    if let Ok(key) = parse_public_key(arg) {
        return Ok(key);
    }
    let path = Path::new(arg);
    let text = std::fs::read_to_string(path).map_err(|source| EvidenceError::ReadKey {
        path: path.to_path_buf(),
        source,
    })?;
    parse_public_key(&text)
}

/// A fresh random site key.
pub fn generate_signing_key() -> SigningKey {
    SigningKey::generate(&mut rand::rngs::OsRng)
}

/// Writes a fresh site key to `path` (hex seed, owner-only permissions); refuses to overwrite a file.
pub fn create_signing_key(path: &Path) -> Result<SigningKey, EvidenceError> {
    use std::io::Write;
    let write_err = |source| EvidenceError::WriteKey {
        path: path.to_path_buf(),
        source,
    };
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path).map_err(write_err)?;
    let key = generate_signing_key();
    file.write_all(format!("{}\n", hex::encode(key.to_bytes())).as_bytes())
        .map_err(write_err)?;
    Ok(key)
}

/// Reads the site key at `path`, creating one there when the file does not exist; `true` when created.
pub fn load_or_create_signing_key(path: &Path) -> Result<(SigningKey, bool), EvidenceError> {
    if path.exists() {
        return Ok((load_signing_key(path)?, false));
    }
    Ok((create_signing_key(path)?, true))
}
