//! Image signatures: a detached ed25519 signature over the image's 32 sha256 digest bytes, stored base64 in the
//! catalog with the id of the key that made it. Signing the digest (not the file) lets a signature be checked
//! without reading the image again.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};

use crate::digest::Sha256Digest;

/// Why a signature or key was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// The signature text is not base64 of 64 bytes.
    #[error("signature is not base64 of a 64-byte ed25519 signature")]
    MalformedSignature,
    /// The key text is not hex or base64 of a 32-byte ed25519 public key.
    #[error("public key is not hex or base64 of a 32-byte ed25519 key")]
    MalformedKey,
    /// The signature does not verify.
    #[error("signature over sha256:{digest} does not verify with key {key_id}")]
    Invalid {
        /// The image digest.
        digest: Sha256Digest,
        /// The key tried.
        key_id: String,
    },
}

/// Parses a public key given as 64 hex digits or base64 of 32 bytes.
pub fn parse_public_key(text: &str) -> Result<VerifyingKey, SignatureError> {
    let text = text.trim();
    let mut bytes = [0u8; 32];
    if hex::decode_to_slice(text, &mut bytes).is_err() {
        let decoded = STANDARD
            .decode(text)
            .map_err(|_| SignatureError::MalformedKey)?;
        bytes = decoded
            .try_into()
            .map_err(|_| SignatureError::MalformedKey)?;
    }
    VerifyingKey::from_bytes(&bytes).map_err(|_| SignatureError::MalformedKey)
}

/// Signs a digest; returns the base64 signature the catalog stores.
pub fn sign_digest(key: &SigningKey, digest: &Sha256Digest) -> String {
    STANDARD.encode(key.sign(&digest.0).to_bytes())
}

/// Checks a base64 signature over `digest` with `key`.
pub fn verify_digest(
    key: &VerifyingKey,
    key_id: &str,
    digest: &Sha256Digest,
    signature_b64: &str,
) -> Result<(), SignatureError> {
    let bytes: [u8; 64] = STANDARD
        .decode(signature_b64.trim())
        .map_err(|_| SignatureError::MalformedSignature)?
        .try_into()
        .map_err(|_| SignatureError::MalformedSignature)?;
    key.verify(&digest.0, &Signature::from_bytes(&bytes))
        .map_err(|_| SignatureError::Invalid {
            digest: *digest,
            key_id: key_id.to_string(),
        })
}
