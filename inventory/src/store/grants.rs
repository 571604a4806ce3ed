//! Boot grants and the per-boot tokens they issue.
//!
//! A token goes only to a network boot the engine asked for: the engine opens a grant for the node when it
//! records a PXE boot intent ([`Store::open_boot_grant`]), with a window as long as it waits for that boot. The
//! first script fetch inside the window, from the address kiln's DHCP server leased to the MAC (when it leased
//! one), claims the grant and gets the token ([`Store::claim_boot_grant`]); every later fetch for the same grant
//! is refused and counted, as a possible spoof. The token is bound to the fetching address and expires; a report
//! is accepted only with a live token, from that address ([`Store::check_boot_token`]).
//!
//! Invariant: a boot token is stored only as its SHA-256; checking compares the hashes in constant time.

use std::net::{IpAddr, Ipv4Addr};

use chrono::{DateTime, Utc};
use rand::RngCore;

use super::boot::TokenOwner;
use super::tokens::hash as token_hash;
use super::{Store, get};
use crate::clock::{from_millis, to_millis};
use crate::error::StoreError;
use crate::model::{MacAddr, NodeId};

/// What a script fetch got from [`Store::claim_boot_grant`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GrantClaim {
    /// The grant was open: here is the boot's token (shown once, stored only as its hash).
    Issued {
        /// The token for the ramdisk's kernel command line.
        token: String,
    },
    /// The engine asked for no network boot of this node.
    NoGrant,
    /// The engine's boot request was too long ago.
    WindowClosed {
        /// When the window ended.
        ended_at: DateTime<Utc>,
    },
    /// This boot's token was already handed out: a second fetch is a possible spoof.
    AlreadyIssued {
        /// Address the token went to.
        to: String,
        /// When.
        at: DateTime<Utc>,
    },
    /// The fetch came from another address than the one leased to the MAC.
    WrongAddress {
        /// The leased address.
        leased: Ipv4Addr,
    },
}

/// What [`Store::check_boot_token`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenCheck {
    /// The token is live and presented from its address.
    Valid(TokenOwner),
    /// Not the token issued to this MAC (or none was).
    Wrong,
    /// The token's time is up.
    Expired {
        /// When it expired.
        at: DateTime<Utc>,
    },
    /// The right token from the wrong address (stolen, or a spoof).
    WrongAddress {
        /// The address the token is bound to.
        bound: String,
    },
}

/// The canonical text of an address (an IPv4-mapped IPv6 address is written as IPv4).
pub fn canonical_ip(ip: IpAddr) -> String {
    ip.to_canonical().to_string()
}

/// Compares two token hashes without stopping at the first difference, so response timing reveals nothing
/// about how much of a guess matched.
fn same_hash(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

fn fresh_token() -> String {
    let mut bytes = [0u8; 24];
    rand::thread_rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

fn millis(d: std::time::Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX / 4)
}

impl Store {
    /// Opens the grant for one network boot of `node`, asked at `intent_at`, claimable for `window`. Replaces
    /// any earlier grant and revokes the node's earlier tokens: a new boot ends the last one's right to report.
    pub async fn open_boot_grant(
        &self,
        node: NodeId,
        intent_at: DateTime<Utc>,
        window: std::time::Duration,
    ) -> Result<(), StoreError> {
        let now = to_millis(self.now());
        let mut tx = self
            .write
            .begin()
            .await
            .map_err(StoreError::db("starting to open a boot grant"))?;
        sqlx::query(
            "INSERT INTO boot_grants (node_id, intent_at, opened_at, window_ends_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (node_id) DO UPDATE SET intent_at = excluded.intent_at, opened_at = excluded.opened_at, \
             window_ends_at = excluded.window_ends_at, issued_at = NULL, issued_mac = NULL, issued_to = NULL, \
             refused_fetches = 0",
        )
        .bind(node.0)
        .bind(to_millis(intent_at))
        .bind(now)
        .bind(now.saturating_add(millis(window)))
        .execute(&mut *tx)
        .await
        .map_err(StoreError::db("opening a boot grant"))?;
        sqlx::query("DELETE FROM boot_tokens WHERE node_id = $1")
            .bind(node.0)
            .execute(&mut *tx)
            .await
            .map_err(StoreError::db("revoking a node's earlier boot tokens"))?;
        tx.commit()
            .await
            .map_err(StoreError::db("committing a boot grant"))
    }

    /// A script fetch for `node`'s boot MAC `mac` from `source`: claims the open grant (once) and issues a
    /// token bound to `source` that lives for `ttl`, or says why not.
    pub async fn claim_boot_grant(
        &self,
        node: NodeId,
        mac: MacAddr,
        source: IpAddr,
        ttl: std::time::Duration,
    ) -> Result<GrantClaim, StoreError> {
        let now = self.now();
        let row = sqlx::query(
            "SELECT intent_at, window_ends_at, issued_at, issued_to FROM boot_grants WHERE node_id = $1",
        )
        .bind(node.0)
        .fetch_optional(&self.write)
        .await
        .map_err(StoreError::db("reading a boot grant"))?;
        let Some(row) = row else {
            return Ok(GrantClaim::NoGrant);
        };
        let intent_at: i64 = get(&row, "intent_at")?;
        let refused = |claim: GrantClaim| async move {
            sqlx::query(
                "UPDATE boot_grants SET refused_fetches = refused_fetches + 1 WHERE node_id = $1",
            )
            .bind(node.0)
            .execute(&self.write)
            .await
            .map_err(StoreError::db("counting a refused script fetch"))?;
            Ok(claim)
        };
        if let Some(at) = get::<Option<i64>>(&row, "issued_at")? {
            let to: Option<String> = get(&row, "issued_to")?;
            return refused(GrantClaim::AlreadyIssued {
                to: to.unwrap_or_default(),
                at: from_millis(at),
            })
            .await;
        }
        let ends: i64 = get(&row, "window_ends_at")?;
        if to_millis(now) > ends {
            return refused(GrantClaim::WindowClosed {
                ended_at: from_millis(ends),
            })
            .await;
        }
        if let Some(lease) = self.dhcp_lease_for_mac(mac).await?
            && lease.mac == Some(mac)
            && lease.holds_address(now)
            && source.to_canonical() != IpAddr::V4(lease.ip)
        {
            return refused(GrantClaim::WrongAddress { leased: lease.ip }).await;
        }
        let token = fresh_token();
        let source = canonical_ip(source);
        let mut tx = self
            .write
            .begin()
            .await
            .map_err(StoreError::db("starting to issue a boot token"))?;
        let claimed = sqlx::query(
            "UPDATE boot_grants SET issued_at = $1, issued_mac = $2, issued_to = $3 \
             WHERE node_id = $4 AND intent_at = $5 AND issued_at IS NULL",
        )
        .bind(to_millis(now))
        .bind(mac.to_string())
        .bind(&source)
        .bind(node.0)
        .bind(intent_at)
        .execute(&mut *tx)
        .await
        .map_err(StoreError::db("claiming a boot grant"))?;
        if claimed.rows_affected() != 1 {
            // Another fetch claimed it between the read and this write.
            drop(tx);
            return refused(GrantClaim::AlreadyIssued {
                to: String::new(),
                at: now,
            })
            .await;
        }
        upsert_token(&mut tx, mac, Some(node), &token, &source, now, ttl).await?;
        tx.commit()
            .await
            .map_err(StoreError::db("committing a boot token"))?;
        Ok(GrantClaim::Issued { token })
    }

    /// A token for the discovery ramdisk of an unenrolled machine (which may only announce itself), bound to
    /// `source` and living for `ttl`.
    pub async fn issue_discovery_token(
        &self,
        mac: MacAddr,
        source: IpAddr,
        ttl: std::time::Duration,
    ) -> Result<String, StoreError> {
        let token = fresh_token();
        let mut conn = self
            .write
            .acquire()
            .await
            .map_err(StoreError::db("connecting to issue a discovery token"))?;
        let source = canonical_ip(source);
        upsert_token(&mut conn, mac, None, &token, &source, self.now(), ttl).await?;
        Ok(token)
    }

    /// Whether `token`, presented from `source`, is the live token of `mac`, and whose it is.
    pub async fn check_boot_token(
        &self,
        mac: MacAddr,
        token: &str,
        source: IpAddr,
    ) -> Result<TokenCheck, StoreError> {
        let row = sqlx::query(
            "SELECT node_id, token_hash, bound_ip, expires_at FROM boot_tokens WHERE mac = $1",
        )
        .bind(mac.to_string())
        .fetch_optional(&self.read)
        .await
        .map_err(StoreError::db("checking a boot token"))?;
        let Some(row) = row else {
            return Ok(TokenCheck::Wrong);
        };
        let stored: String = get(&row, "token_hash")?;
        if !same_hash(&stored, &token_hash(token)) {
            return Ok(TokenCheck::Wrong);
        }
        let expires: Option<i64> = get(&row, "expires_at")?;
        match expires {
            Some(at) if at > to_millis(self.now()) => {}
            Some(at) => {
                return Ok(TokenCheck::Expired {
                    at: from_millis(at),
                });
            }
            None => return Ok(TokenCheck::Expired { at: self.now() }),
        }
        let bound: Option<String> = get(&row, "bound_ip")?;
        let bound = bound.unwrap_or_default();
        if bound != canonical_ip(source) {
            return Ok(TokenCheck::WrongAddress { bound });
        }
        Ok(TokenCheck::Valid(
            match get::<Option<i64>>(&row, "node_id")? {
                Some(id) => TokenOwner::Node(NodeId(id)),
                None => TokenOwner::Unenrolled,
            },
        ))
    }
}

async fn upsert_token(
    conn: &mut sqlx::AnyConnection,
    mac: MacAddr,
    node: Option<NodeId>,
    token: &str,
    source: &str,
    now: DateTime<Utc>,
    ttl: std::time::Duration,
) -> Result<(), StoreError> {
    let now = to_millis(now);
    sqlx::query(
        "INSERT INTO boot_tokens (mac, node_id, token_hash, issued_at, bound_ip, expires_at) \
         VALUES ($1, $2, $3, $4, $5, $6) \
         ON CONFLICT (mac) DO UPDATE SET node_id = excluded.node_id, token_hash = excluded.token_hash, \
         issued_at = excluded.issued_at, bound_ip = excluded.bound_ip, expires_at = excluded.expires_at",
    )
    .bind(mac.to_string())
    .bind(node.map(|id| id.0))
    .bind(token_hash(token))
    .bind(now)
    .bind(source)
    .bind(now.saturating_add(millis(ttl)))
    .execute(conn)
    .await
    .map_err(StoreError::db("issuing a boot token"))?;
    Ok(())
}

/// Used by tests of the window arithmetic.
#[cfg(test)]
mod tests {
    use super::{canonical_ip, same_hash};

    #[test]
    fn mapped_addresses_compare_as_ipv4() {
        let mapped: std::net::IpAddr = "::ffff:10.0.0.7".parse().unwrap();
        assert_eq!(canonical_ip(mapped), "10.0.0.7");
        assert!(same_hash("ab", "ab"));
        assert!(!same_hash("ab", "ac"));
        assert!(!same_hash("ab", "abc"));
    }
}
