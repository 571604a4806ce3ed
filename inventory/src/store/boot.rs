//! Network boot: DHCP leases (so addresses survive a provisioner restart), machines seen on the provisioning
//! network that no manifest enrolled ("discovered, unenrolled", for a technician to adopt), and the per-boot
//! tokens a ramdisk's agent presents when it reports.
//!
//! Invariant: a boot token is stored only as its SHA-256; checking compares the hashes in constant time.

use std::net::Ipv4Addr;

use chrono::{DateTime, Utc};
use sqlx::any::AnyRow;

use super::{Store, get, get_opt_time, get_parsed, get_time};
use crate::clock::to_millis;
use crate::error::StoreError;
use crate::model::{MacAddr, NodeId};

/// Where a DHCP lease stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LeaseState {
    /// The client holds the address until `expires_at`.
    Bound,
    /// The client gave the address back; it stays associated with the MAC so the MAC gets it again.
    Released,
    /// A client reported the address in use by someone else (DHCPDECLINE); it is not offered until
    /// `expires_at`.
    Declined,
}

impl LeaseState {
    fn as_str(self) -> &'static str {
        match self {
            LeaseState::Bound => "bound",
            LeaseState::Released => "released",
            LeaseState::Declined => "declined",
        }
    }
}

impl std::str::FromStr for LeaseState {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "bound" => Ok(LeaseState::Bound),
            "released" => Ok(LeaseState::Released),
            "declined" => Ok(LeaseState::Declined),
            other => Err(format!("unknown lease state {other:?}")),
        }
    }
}

/// An address handed out (or refused) by kiln's DHCP server.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DhcpLease {
    /// The address.
    pub ip: Ipv4Addr,
    /// The client holding it (`None` for a declined address).
    pub mac: Option<MacAddr>,
    /// The enrolled node with that boot MAC, if any.
    pub node_id: Option<NodeId>,
    /// Host name the client asked for (option 12), if any.
    pub hostname: Option<String>,
    /// Bound, released or declined.
    pub state: LeaseState,
    /// A reservation: never expires and is never given to another MAC.
    pub pinned: bool,
    /// When a bound lease lapses, or when a declined address may be offered again.
    pub expires_at: DateTime<Utc>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
}

impl DhcpLease {
    /// Whether the address is spoken for at `now` (by a bound or pinned client, or because it was declined).
    pub fn holds_address(&self, now: DateTime<Utc>) -> bool {
        self.pinned || (self.state != LeaseState::Released && self.expires_at > now)
    }
}

/// What [`Store::bind_dhcp_lease`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeaseWrite {
    /// The lease is recorded.
    Written,
    /// Another client (or a decline) holds the address; nothing changed.
    AddressTaken {
        /// The MAC holding it (`None`: the address is declined).
        by: Option<MacAddr>,
    },
}

/// A new or renewed lease, as the DHCP server wants it recorded.
#[derive(Debug, Clone)]
pub struct NewLease<'a> {
    /// The address.
    pub ip: Ipv4Addr,
    /// The client.
    pub mac: MacAddr,
    /// The enrolled node with that boot MAC, if any.
    pub node_id: Option<NodeId>,
    /// Host name the client asked for.
    pub hostname: Option<&'a str>,
    /// Whether this is a reservation.
    pub pinned: bool,
    /// When it lapses.
    pub expires_at: DateTime<Utc>,
}

/// A machine that asked to boot on the provisioning network but is not enrolled.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DiscoveredMachine {
    /// Its boot MAC.
    pub mac: MacAddr,
    /// First request seen.
    pub first_seen_at: DateTime<Utc>,
    /// Latest request seen.
    pub last_seen_at: DateTime<Utc>,
    /// Address it was last given.
    pub last_ip: Option<Ipv4Addr>,
    /// Firmware architecture it announced (option 93), e.g. `bios`, `x86_64-efi`.
    pub client_arch: Option<String>,
    /// Vendor class it announced (option 60).
    pub vendor_class: Option<String>,
    /// How many boot requests were seen.
    pub seen_count: i64,
    /// When the discovery ramdisk reported from it, if it has.
    pub reported_at: Option<DateTime<Utc>>,
}

/// One boot request from a machine, as the boot services saw it.
#[derive(Debug, Clone, Default)]
pub struct BootSighting<'a> {
    /// Address given, if any.
    pub ip: Option<Ipv4Addr>,
    /// Firmware architecture.
    pub client_arch: Option<&'a str>,
    /// Vendor class.
    pub vendor_class: Option<&'a str>,
}

/// Whom a boot token belongs to, when it matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenOwner {
    /// An enrolled node.
    Node(NodeId),
    /// A discovered, unenrolled machine.
    Unenrolled,
}

const LEASE_COLUMNS: &str =
    "SELECT ip, mac, node_id, hostname, state, pinned, expires_at, updated_at FROM dhcp_leases";

fn parse_ip(row: &AnyRow, column: &str) -> Result<Ipv4Addr, StoreError> {
    get_parsed(row, column)
}

fn lease_from_row(row: &AnyRow) -> Result<DhcpLease, StoreError> {
    let mac: Option<String> = get(row, "mac")?;
    Ok(DhcpLease {
        ip: parse_ip(row, "ip")?,
        mac: mac
            .map(|text| {
                text.parse()
                    .map_err(|err: crate::BadMac| StoreError::Corrupt {
                        what: "lease MAC".into(),
                        detail: err.to_string(),
                    })
            })
            .transpose()?,
        node_id: get::<Option<i64>>(row, "node_id")?.map(NodeId),
        hostname: get(row, "hostname")?,
        state: get_parsed(row, "state")?,
        pinned: get::<i64>(row, "pinned")? != 0,
        expires_at: get_time(row, "expires_at")?,
        updated_at: get_time(row, "updated_at")?,
    })
}

fn discovered_from_row(row: &AnyRow) -> Result<DiscoveredMachine, StoreError> {
    let last_ip: Option<String> = get(row, "last_ip")?;
    Ok(DiscoveredMachine {
        mac: get_parsed(row, "mac")?,
        first_seen_at: get_time(row, "first_seen_at")?,
        last_seen_at: get_time(row, "last_seen_at")?,
        last_ip: last_ip
            .map(|text| {
                text.parse().map_err(|_| StoreError::Corrupt {
                    what: "discovered machine address".into(),
                    detail: text.clone(),
                })
            })
            .transpose()?,
        client_arch: get(row, "client_arch")?,
        vendor_class: get(row, "vendor_class")?,
        seen_count: get(row, "seen_count")?,
        reported_at: get_opt_time(row, "reported_at")?,
    })
}

impl Store {
    /// Every lease row (bound, released and declined), by address.
    pub async fn dhcp_leases(&self) -> Result<Vec<DhcpLease>, StoreError> {
        let rows = sqlx::query(LEASE_COLUMNS)
            .fetch_all(&self.read)
            .await
            .map_err(StoreError::db("listing DHCP leases"))?;
        let mut leases = rows
            .iter()
            .map(lease_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        leases.sort_by_key(|lease| lease.ip);
        Ok(leases)
    }

    /// The lease row of a MAC, if it has one.
    pub async fn dhcp_lease_for_mac(&self, mac: MacAddr) -> Result<Option<DhcpLease>, StoreError> {
        let sql = format!("{LEASE_COLUMNS} WHERE mac = $1");
        let row = sqlx::query(&sql)
            .bind(mac.to_string())
            .fetch_optional(&self.read)
            .await
            .map_err(StoreError::db("looking up a DHCP lease"))?;
        row.as_ref().map(lease_from_row).transpose()
    }

    /// Records a bound lease in one transaction: the MAC's previous address (if different) is freed, and the
    /// write is refused when another MAC still holds the address or it is declined.
    pub async fn bind_dhcp_lease(&self, lease: &NewLease<'_>) -> Result<LeaseWrite, StoreError> {
        let now = self.now();
        let ip = lease.ip.to_string();
        let mac = lease.mac.to_string();
        let mut tx = self
            .write
            .begin()
            .await
            .map_err(StoreError::db("starting a lease write"))?;
        let sql = format!("{LEASE_COLUMNS} WHERE ip = $1");
        let existing = sqlx::query(&sql)
            .bind(&ip)
            .fetch_optional(&mut *tx)
            .await
            .map_err(StoreError::db("reading a DHCP lease"))?
            .as_ref()
            .map(lease_from_row)
            .transpose()?;
        if let Some(existing) = existing
            && existing.mac != Some(lease.mac)
            && existing.holds_address(now)
        {
            return Ok(LeaseWrite::AddressTaken { by: existing.mac });
        }
        sqlx::query("DELETE FROM dhcp_leases WHERE ip = $1 OR mac = $2")
            .bind(&ip)
            .bind(&mac)
            .execute(&mut *tx)
            .await
            .map_err(StoreError::db("replacing a DHCP lease"))?;
        sqlx::query(
            "INSERT INTO dhcp_leases (ip, mac, node_id, hostname, state, pinned, expires_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(&ip)
        .bind(&mac)
        .bind(lease.node_id.map(|id| id.0))
        .bind(lease.hostname)
        .bind(LeaseState::Bound.as_str())
        .bind(i64::from(lease.pinned))
        .bind(to_millis(lease.expires_at))
        .bind(to_millis(now))
        .execute(&mut *tx)
        .await
        .map_err(StoreError::db("recording a DHCP lease"))?;
        tx.commit()
            .await
            .map_err(StoreError::db("committing a DHCP lease"))?;
        Ok(LeaseWrite::Written)
    }

    /// Marks the MAC's lease on `ip` released (DHCPRELEASE). Returns whether there was such a bound lease.
    pub async fn release_dhcp_lease(&self, mac: MacAddr, ip: Ipv4Addr) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE dhcp_leases SET state = $1, updated_at = $2 WHERE ip = $3 AND mac = $4 AND state = $5",
        )
        .bind(LeaseState::Released.as_str())
        .bind(to_millis(self.now()))
        .bind(ip.to_string())
        .bind(mac.to_string())
        .bind(LeaseState::Bound.as_str())
        .execute(&self.write)
        .await
        .map_err(StoreError::db("releasing a DHCP lease"))?;
        Ok(done.rows_affected() > 0)
    }

    /// Takes `ip` out of service until `until` (DHCPDECLINE: a client found it in use), dropping any lease on it.
    pub async fn decline_dhcp_address(
        &self,
        ip: Ipv4Addr,
        until: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let mut tx = self
            .write
            .begin()
            .await
            .map_err(StoreError::db("starting a decline"))?;
        sqlx::query("DELETE FROM dhcp_leases WHERE ip = $1")
            .bind(ip.to_string())
            .execute(&mut *tx)
            .await
            .map_err(StoreError::db("dropping a declined lease"))?;
        sqlx::query(
            "INSERT INTO dhcp_leases (ip, mac, node_id, hostname, state, pinned, expires_at, updated_at) \
             VALUES ($1, NULL, NULL, NULL, $2, 0, $3, $4)",
        )
        .bind(ip.to_string())
        .bind(LeaseState::Declined.as_str())
        .bind(to_millis(until))
        .bind(to_millis(self.now()))
        .execute(&mut *tx)
        .await
        .map_err(StoreError::db("recording a declined address"))?;
        tx.commit()
            .await
            .map_err(StoreError::db("committing a decline"))
    }

    /// Records a boot request from a MAC no node has: first sighting creates the row, later ones update it.
    pub async fn record_boot_sighting(
        &self,
        mac: MacAddr,
        sighting: &BootSighting<'_>,
    ) -> Result<(), StoreError> {
        let now = to_millis(self.now());
        sqlx::query(
            "INSERT INTO discovered_machines \
             (mac, first_seen_at, last_seen_at, last_ip, client_arch, vendor_class, seen_count) \
             VALUES ($1, $2, $2, $3, $4, $5, 1) \
             ON CONFLICT (mac) DO UPDATE SET last_seen_at = excluded.last_seen_at, \
             last_ip = COALESCE(excluded.last_ip, discovered_machines.last_ip), \
             client_arch = COALESCE(excluded.client_arch, discovered_machines.client_arch), \
             vendor_class = COALESCE(excluded.vendor_class, discovered_machines.vendor_class), \
             seen_count = discovered_machines.seen_count + 1",
        )
        .bind(mac.to_string())
        .bind(now)
        .bind(sighting.ip.map(|ip| ip.to_string()))
        .bind(sighting.client_arch)
        .bind(sighting.vendor_class)
        .execute(&self.write)
        .await
        .map_err(StoreError::db("recording a discovered machine"))?;
        Ok(())
    }

    /// Machines seen booting that are not enrolled, most recently seen first.
    pub async fn discovered_machines(&self) -> Result<Vec<DiscoveredMachine>, StoreError> {
        let rows = sqlx::query(
            "SELECT mac, first_seen_at, last_seen_at, last_ip, client_arch, vendor_class, seen_count, \
             reported_at FROM discovered_machines ORDER BY last_seen_at DESC, mac",
        )
        .fetch_all(&self.read)
        .await
        .map_err(StoreError::db("listing discovered machines"))?;
        rows.iter().map(discovered_from_row).collect()
    }

    /// Notes that the discovery ramdisk on an unenrolled machine reported in.
    pub async fn mark_discovered_reported(&self, mac: MacAddr) -> Result<(), StoreError> {
        sqlx::query("UPDATE discovered_machines SET reported_at = $1 WHERE mac = $2")
            .bind(to_millis(self.now()))
            .bind(mac.to_string())
            .execute(&self.write)
            .await
            .map_err(StoreError::db("marking a discovered machine reported"))?;
        Ok(())
    }
}
