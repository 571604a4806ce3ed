//! API tokens: random bearer tokens, stored only as SHA-256 hashes.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore;
use sha2::{Digest, Sha256};

use super::{Store, get, get_parsed};
use crate::access::{Principal, Role};
use crate::clock::to_millis;
use crate::error::StoreError;
use crate::secret::Secret;

/// Prefix of kiln API tokens, so they are recognisable in a secret scanner.
const TOKEN_PREFIX: &str = "kiln_";

/// Lowercase hex SHA-256 of a token: the only form in which kiln stores API and boot tokens.
pub(crate) fn hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

impl Store {
    /// Creates a token with `role` (lessee tokens name their lessee, which must exist); returns the token, which
    /// is shown this once and stored only as a hash, and its id.
    pub async fn create_api_token(
        &self,
        role: Role,
        lessee: Option<&str>,
        label: Option<&str>,
    ) -> Result<(Secret, i64), StoreError> {
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
            "INSERT INTO api_tokens (token_hash, role, lessee_id, label, created_at) VALUES ($1, $2, $3, $4, $5) \
             RETURNING id",
        )
        .bind(hash(token.expose()))
        .bind(role.as_str())
        .bind(lessee_id)
        .bind(label)
        .bind(to_millis(self.now()))
        .fetch_one(&self.write)
        .await
        .map_err(StoreError::db("creating an API token"))?;
        Ok((token, get(&row, "id")?))
    }

    /// Who holds `token`, if it is a live kiln token.
    pub async fn authenticate(&self, token: &str) -> Result<Option<Principal>, StoreError> {
        if !token.starts_with(TOKEN_PREFIX) {
            return Ok(None);
        }
        let row = sqlx::query(
            "SELECT t.id, t.role, t.label, t.lessee_id, l.name AS lessee_name FROM api_tokens t \
             LEFT JOIN lessees l ON l.id = t.lessee_id WHERE t.token_hash = $1 AND t.revoked_at IS NULL",
        )
        .bind(hash(token))
        .fetch_optional(&self.read)
        .await
        .map_err(StoreError::db("checking an API token"))?;
        let Some(row) = row else { return Ok(None) };
        let lessee = match get::<Option<i64>>(&row, "lessee_id")? {
            Some(id) => Some((id, get::<String>(&row, "lessee_name")?)),
            None => None,
        };
        Ok(Some(Principal {
            token_id: get(&row, "id")?,
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
}
