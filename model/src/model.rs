//! The inventory's domain types: what the store reads and writes. Values are parsed at the edge
//! ([`MacAddr`], [`BmcProtocol`], [`NodeState`]) so that the inside never handles raw strings.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::state::NodeState;

/// A node's database id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(transparent)]
pub struct NodeId(pub i64);

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// An Ethernet MAC address, shown as lowercase `aa:bb:cc:dd:ee:ff`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MacAddr(pub [u8; 6]);

/// Text that is not a MAC address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a MAC address (expected six hex octets like 3c:ec:ef:01:02:03)")]
pub struct BadMac(pub String);

impl FromStr for MacAddr {
    type Err = BadMac;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || BadMac(s.to_string());
        let trimmed = s.trim();
        let parts: Vec<&str> = trimmed.split([':', '-']).collect();
        let octets: Vec<&str> = if parts.len() == 6 {
            parts
        } else if trimmed.len() == 12 && trimmed.is_ascii() {
            (0..6).map(|i| &trimmed[i * 2..i * 2 + 2]).collect()
        } else {
            return Err(bad());
        };
        let mut mac = [0u8; 6];
        for (slot, octet) in mac.iter_mut().zip(octets) {
            if octet.len() != 2 {
                return Err(bad());
            }
            *slot = u8::from_str_radix(octet, 16).map_err(|_| bad())?;
        }
        Ok(MacAddr(mac))
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b, c, d, e, g] = self.0;
        write!(f, "{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{g:02x}")
    }
}

impl Serialize for MacAddr {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for MacAddr {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// How kiln talks to a BMC.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BmcProtocol {
    /// DMTF Redfish over HTTPS.
    Redfish,
    /// IPMI 2.0 RMCP+ (lanplus) over UDP 623.
    Ipmi,
}

impl BmcProtocol {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            BmcProtocol::Redfish => "redfish",
            BmcProtocol::Ipmi => "ipmi",
        }
    }
}

impl fmt::Display for BmcProtocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A protocol name kiln does not speak.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown BMC protocol {0:?} (expected redfish or ipmi)")]
pub struct UnknownProtocol(pub String);

impl FromStr for BmcProtocol {
    type Err = UnknownProtocol;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "redfish" => Ok(BmcProtocol::Redfish),
            "ipmi" | "lanplus" => Ok(BmcProtocol::Ipmi),
            _ => Err(UnknownProtocol(s.to_string())),
        }
    }
}

/// A node's BMC as stored; the password stays sealed and is only available through
/// kiln-inventory's `Store::bmc_credentials`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BmcEndpoint {
    /// Database id.
    pub id: i64,
    /// Host, host:port or URL the BMC answers on.
    pub address: String,
    /// Redfish or IPMI.
    pub protocol: BmcProtocol,
    /// Vendor, once discovery has read it.
    pub vendor: Option<String>,
    /// Login name.
    pub username: String,
    /// SHA-256 fingerprint of the BMC's TLS certificate, pinned on first use.
    pub tls_fingerprint: Option<String>,
}

/// A hardware model kiln knows how to verify.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Sku {
    /// Id used in manifests, e.g. `h100-sxm-80gb`.
    pub id: String,
    /// Human description.
    pub description: String,
    /// GPUs per node.
    pub gpu_count: i64,
    /// GPU product name as NVML reports it.
    pub gpu_model: String,
    /// Memory per GPU.
    pub gpu_memory_gib: i64,
}

/// A server in a rack slot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Node {
    /// Database id.
    #[cfg_attr(feature = "openapi", schema(value_type = i64))]
    pub id: NodeId,
    /// Chassis serial number (unique).
    pub serial: String,
    /// Site name.
    pub site: String,
    /// Hall name.
    pub hall: String,
    /// Rack name.
    pub rack: String,
    /// Slot (rack unit position) in the rack.
    pub slot: i64,
    /// Expected hardware model.
    pub sku: String,
    /// Lifecycle state.
    pub state: NodeState,
    /// MAC of the NIC that PXE-boots.
    #[cfg_attr(feature = "openapi", schema(value_type = String, example = "3c:ec:ef:0a:01:01"))]
    pub boot_mac: MacAddr,
    /// The node's BMC.
    pub bmc: BmcEndpoint,
    /// The hall lease the node is counted in, when leased.
    pub lease_id: Option<i64>,
    /// Taken out of allocation by a technician (not leased while set).
    pub drained: bool,
    /// Bumped on every change; optimistic concurrency.
    pub version: i64,
    /// When the node entered its current state.
    pub state_entered_at: DateTime<Utc>,
    /// When the lifecycle engine should look at the node next (`None`: not scheduled). A time in the past
    /// means due now; a new, woken or newly transitioned node is set back by an hour per lifecycle step (up to
    /// twelve) so claims take it before routine rechecks, nodes further along the lifecycle first.
    pub next_check_at: Option<DateTime<Utc>>,
    /// Provisioner instance holding the node's work claim.
    pub claimed_by: Option<String>,
    /// When that claim lapses.
    pub claim_expires_at: Option<DateTime<Utc>>,
    /// When the node was enrolled.
    pub created_at: DateTime<Utc>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
}

/// A GPU found in a node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Gpu {
    /// NVML index.
    pub index: i64,
    /// Product name.
    pub model: String,
    /// GPU UUID.
    pub uuid: Option<String>,
    /// Board serial.
    pub serial: Option<String>,
    /// PCI bus id, e.g. `0000:18:00.0`.
    pub pci_bus_id: Option<String>,
    /// Framebuffer memory.
    pub memory_mib: Option<i64>,
    /// VBIOS version.
    pub vbios: Option<String>,
}

/// A network interface found in a node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Nic {
    /// Interface name.
    pub name: String,
    /// MAC address.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub mac: MacAddr,
    /// Link speed, when the link is up.
    pub speed_mbps: Option<i64>,
}

/// A disk found in a node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Disk {
    /// Kernel name, e.g. `nvme0n1`.
    pub name: String,
    /// Model string.
    pub model: Option<String>,
    /// Serial number.
    pub serial: Option<String>,
    /// Capacity.
    pub size_bytes: i64,
}

/// What inspection found in a node.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Hardware {
    /// GPUs.
    pub gpus: Vec<Gpu>,
    /// NICs.
    pub nics: Vec<Nic>,
    /// Disks.
    pub disks: Vec<Disk>,
}

/// One line of a node's history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NodeEvent {
    /// Database id (increasing).
    pub id: i64,
    /// The node.
    #[cfg_attr(feature = "openapi", schema(value_type = i64))]
    pub node_id: NodeId,
    /// When it happened.
    pub at: DateTime<Utc>,
    /// Who did it: a user, `engine:<instance>`, `import`, ...
    pub actor: String,
    /// State before (none for enrollment and notes).
    pub from_state: Option<NodeState>,
    /// State after (none for notes).
    pub to_state: Option<NodeState>,
    /// Why.
    pub reason: String,
}

/// A health check run and its evidence.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct HealthRun {
    /// Database id.
    pub id: i64,
    /// The node checked.
    #[cfg_attr(feature = "openapi", schema(value_type = i64))]
    pub node_id: NodeId,
    /// Which check: `nvml`, `burn_in`, `nccl`, ...
    pub kind: String,
    /// The verdict.
    pub passed: bool,
    /// Start.
    pub started_at: DateTime<Utc>,
    /// End, once finished.
    pub finished_at: Option<DateTime<Utc>>,
    /// Measured values, thresholds and tool output.
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub evidence: serde_json::Value,
}

/// A customer that leases halls.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Lessee {
    /// Database id.
    pub id: i64,
    /// Unique name.
    pub name: String,
    /// Contact, free text.
    pub contact: Option<String>,
}

/// A hall handed to a lessee.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct HallLease {
    /// Database id.
    pub id: i64,
    /// The hall.
    pub hall_id: i64,
    /// The lessee.
    pub lessee_id: i64,
    /// Start of the lease.
    pub starts_at: DateTime<Utc>,
    /// End, if fixed.
    pub ends_at: Option<DateTime<Utc>>,
    /// Acceptance rule (e.g. all nodes, or a minimum verified fraction).
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub acceptance: serde_json::Value,
    /// `active` or `released`.
    pub status: String,
    /// When the lease was released.
    pub released_at: Option<DateTime<Utc>>,
}

/// A hall with node counts per state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct HallSummary {
    /// Database id.
    pub id: i64,
    /// Site name.
    pub site: String,
    /// Hall name.
    pub name: String,
    /// Racks in the hall.
    pub racks: i64,
    /// Nodes in the hall.
    pub nodes: i64,
    /// Nodes per state (only states with nodes), in lifecycle order. A drained node that is otherwise available is
    /// counted in `drained`, not under `available`: it is never leased.
    pub states: std::collections::BTreeMap<NodeState, i64>,
    /// Available nodes taken out of allocation (`kiln node drain`).
    #[serde(default)]
    pub drained: i64,
}

/// A work claim handed out by kiln-inventory's `Store::claim_due_nodes`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    /// The node claimed (as it was at claim time).
    pub node: Node,
    /// When the claim lapses unless renewed.
    pub expires_at: DateTime<Utc>,
    /// Since when the node was due (woken, transitioned or its recheck time reached) before this claim took
    /// it: `claimed_at - due_since` is time the node spent in the engine's backlog, not in its own work.
    pub due_since: DateTime<Utc>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mac_forms() {
        let mac: MacAddr = "3C-EC-EF-01-02-0A".parse().unwrap_or(MacAddr([0; 6]));
        assert_eq!(mac.to_string(), "3c:ec:ef:01:02:0a");
        assert_eq!("3cecef01020a".parse::<MacAddr>().ok(), Some(mac));
        for bad in [
            "",
            "3c:ec:ef:01:02",
            "3c:ec:ef:01:02:zz",
            "3c:ec:ef:01:02:0a:0b",
            "3:ec:ef:01:02:0aa",
        ] {
            assert!(bad.parse::<MacAddr>().is_err(), "{bad} parsed");
        }
    }
}
