//! API tokens: random bearer tokens, stored only as SHA-256 hashes.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore;
use sha2::{Digest, Sha256};

use super::{Store, get, get_parsed};
use crate::access::{Principal, Role};
use crate::clock::{from_millis, to_millis};
use crate::error::StoreError;
use crate::secret::Secret;

/// Prefix of kiln API tokens, so they are recognisable in a secret scanner.
const TOKEN_PREFIX: &str = "kiln_";

/// Lowercase hex SHA-256 of a token: the only form in which kiln stores API and boot tokens.
pub(crate) fn hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// `last_used_at` is written at most this often per token, so that authenticating stays a read.
pub const LAST_USED_RESOLUTION_MS: i64 = 60_000;

/// One API token as `kiln token list` shows it: never the token or its hash.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TokenInfo {
    /// The id events name the token by (`token:<id>`).
    pub id: i64,
    /// What the token may do.
    pub role: Role,
    /// The lessee a lessee token belongs to.
    pub lessee: Option<String>,
    /// The label given at creation.
    pub label: Option<String>,
    /// When it was created.
    pub created_at: chrono::DateTime<chrono::Utc>,
    /// When the token stops authenticating; `None`: never.
    pub expires_at: Option<chrono::DateTime<chrono::Utc>>,
    /// When it last authenticated, to within [`LAST_USED_RESOLUTION_MS`]; `None`: never used.
    pub last_used_at: Option<chrono::DateTime<chrono::Utc>>,
    /// When it was revoked; `None`: not revoked.
    pub revoked_at: Option<chrono::DateTime<chrono::Utc>>,
    /// `live`, `expired` or `revoked`, as of the store's clock.
    pub status: &'static str,
}

impl Store {
    /// Creates a token with `role` (lessee tokens name their lessee, which must exist); returns the token, which
    /// is shown this once and stored only as a hash, and its id. It never expires.
    pub async fn create_api_token(
        &self,
        role: Role,
        lessee: Option<&str>,
        label: Option<&str>,
    ) -> Result<(Secret, i64), StoreError> {
        self.create_expiring_api_token(role, lessee, label, None)
            .await
    }

    /// [`Store::create_api_token`] with a lifetime: past `expires_in` from now the token no longer authenticates.
    pub async fn create_expiring_api_token(
        &self,
        role: Role,
        lessee: Option<&str>,
        label: Option<&str>,
        expires_in: Option<Duration>,
    ) -> Result<(Secret, i64), StoreError> {
        let now = self.now();
        let expires_at = match expires_in {
            None => None,
            Some(d) if d.is_zero() => {
                return Err(StoreError::Invalid(
                    "a token's lifetime must be longer than zero".into(),
                ));
            }
            Some(d) => {
                let d = chrono::Duration::from_std(d)
                    .ok()
                    .and_then(|d| now.checked_add_signed(d))
                    .ok_or_else(|| {
                        StoreError::Invalid("the token's lifetime is too long".into())
                    })?;
                Some(to_millis(d))
            }
        };
        let lessee_id = match (role, lessee) {
            (Role::Lessee, Some(name)) => {
                let row = sqlx::query("SELECT id FROM lessees WHERE name = $1")
                    .bind(name)
                    .fetch_optional(&self.read)
                    .await
                    .map_err(StoreError::db("looking up a lessee"))?
                    .ok_or_else(|| StoreError::Invalid(format!("no lessee {name:?}")))?;
                Some(get::<i64>(&row, "id")?)
            }
            (Role::Lessee, None) => {
                return Err(StoreError::Invalid(
                    "a lessee token needs --lessee NAME".into(),
                ));
            }
            (_, Some(_)) => {
                return Err(StoreError::Invalid(format!(
                    "a {role} token cannot name a lessee"
                )));
            }
            (_, None) => None,
        };
        let mut bytes = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        let token = Secret::new(format!("{TOKEN_PREFIX}{}", URL_SAFE_NO_PAD.encode(bytes)));
        let row = sqlx::query(
            "INSERT INTO api_tokens (token_hash, role, lessee_id, label, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
        )
        .bind(hash(token.expose()))
        .bind(role.as_str())
        .bind(lessee_id)
        .bind(label)
        .bind(to_millis(now))
        .bind(expires_at)
        .fetch_one(&self.write)
        .await
        .map_err(StoreError::db("creating an API token"))?;
        Ok((token, get(&row, "id")?))
    }

    /// Who holds `token`, if it is a live kiln token (not revoked, not expired).
    pub async fn authenticate(&self, token: &str) -> Result<Option<Principal>, StoreError> {
        if !token.starts_with(TOKEN_PREFIX) {
            return Ok(None);
        }
        let now = to_millis(self.now());
        let row = sqlx::query(
            "SELECT t.id, t.role, t.label, t.lessee_id, t.last_used_at, l.name AS lessee_name FROM api_tokens t \
             LEFT JOIN lessees l ON l.id = t.lessee_id WHERE t.token_hash = $1 AND t.revoked_at IS NULL \
             AND (t.expires_at IS NULL OR t.expires_at > $2)",
        )
        .bind(hash(token))
        .bind(now)
        .fetch_optional(&self.read)
        .await
        .map_err(StoreError::db("checking an API token"))?;
        let Some(row) = row else { return Ok(None) };
        let id: i64 = get(&row, "id")?;
        let last_used: Option<i64> = get(&row, "last_used_at")?;
        if last_used.is_none_or(|at| now - at >= LAST_USED_RESOLUTION_MS) {
            sqlx::query("UPDATE api_tokens SET last_used_at = $1 WHERE id = $2")
                .bind(now)
                .bind(id)
                .execute(&self.write)
                .await
                .map_err(StoreError::db("noting an API token's use"))?;
        }
        let lessee = match get::<Option<i64>>(&row, "lessee_id")? {
            Some(id) => Some((id, get::<String>(&row, "lessee_name")?)),
            None => None,
        };
        Ok(Some(Principal {
            token_id: id,
            role: get_parsed(&row, "role")?,
            lessee,
            label: get(&row, "label")?,
        }))
    }

    /// Revokes a token by id; returns whether it was live.
    pub async fn revoke_api_token(&self, id: i64) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE api_tokens SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL",
        )
        .bind(to_millis(self.now()))
        .bind(id)
        .execute(&self.write)
        .await
        .map_err(StoreError::db("revoking an API token"))?;
        Ok(done.rows_affected() == 1)
    }

    /// Every token, oldest first (`include_dead`: revoked and expired ones too).
    pub async fn list_api_tokens(&self, include_dead: bool) -> Result<Vec<TokenInfo>, StoreError> {
        let rows = sqlx::query(
            "SELECT t.id, t.role, t.label, t.created_at, t.expires_at, t.last_used_at, t.revoked_at, l.name AS lessee_name \
             FROM api_tokens t LEFT JOIN lessees l ON l.id = t.lessee_id ORDER BY t.id",
        )
        .fetch_all(&self.read)
        .await
        .map_err(StoreError::db("listing API tokens"))?;
        let now = to_millis(self.now());
        let mut tokens = Vec::with_capacity(rows.len());
        for row in &rows {
            let expires_at: Option<i64> = get(row, "expires_at")?;
            let revoked_at: Option<i64> = get(row, "revoked_at")?;
            let status = match (revoked_at, expires_at) {
                (Some(_), _) => "revoked",
                (None, Some(at)) if at <= now => "expired",
                _ => "live",
            };
            if status != "live" && !include_dead {
                continue;
            }
            tokens.push(TokenInfo {
                id: get(row, "id")?,
                role: get_parsed(row, "role")?,
                lessee: get(row, "lessee_name")?,
                label: get(row, "label")?,
                created_at: from_millis(get(row, "created_at")?),
                expires_at: expires_at.map(from_millis),
                last_used_at: get::<Option<i64>>(row, "last_used_at")?.map(from_millis),
                revoked_at: revoked_at.map(from_millis),
                status,
            });
        }
        Ok(tokens)
    }
}
