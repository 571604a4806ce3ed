//! Node lifecycle states and the table of allowed transitions (DESIGN.md's diagram).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Where a node is in its life, from enrollment to lease. Stored as its snake_case name.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NodeState {
    /// Imported from a rack manifest; the BMC has not been reached yet.
    Enrolled,
    /// BMC reachable, credentials checked, BMC inventory read; PXE-booting into the kiln ramdisk.
    Discovering,
    /// The agent in the ramdisk reports hardware; it is compared with the SKU.
    Inspecting,
    /// The agent streams the OS image to disk and checks its sha256.
    Imaging,
    /// One-time boot from disk; the SSH host key is pinned.
    Booting,
    /// NVML checks, GPU stress with sampling, single-node NCCL.
    BurnIn,
    /// Multi-node NCCL over the rack.
    FabricTest,
    /// Verified and waiting in a hall that can be leased.
    Available,
    /// Handed to a lessee as part of a hall lease.
    Leased,
    /// Released by a lessee: secure erase, reimage and re-verify before it is available again.
    Wiping,
    /// Something failed or an SLA was exceeded; the remediation ladder runs.
    Remediating,
    /// Remediation gave up; a technician must repair it (`kiln node repair`).
    Quarantined,
}

impl NodeState {
    /// A new node's happy path, from enrollment to available, in order.
    pub const BRING_UP: [NodeState; 8] = [
        NodeState::Enrolled,
        NodeState::Discovering,
        NodeState::Inspecting,
        NodeState::Imaging,
        NodeState::Booting,
        NodeState::BurnIn,
        NodeState::FabricTest,
        NodeState::Available,
    ];

    /// Every state, in lifecycle order.
    pub const ALL: [NodeState; 12] = [
        NodeState::Enrolled,
        NodeState::Discovering,
        NodeState::Inspecting,
        NodeState::Imaging,
        NodeState::Booting,
        NodeState::BurnIn,
        NodeState::FabricTest,
        NodeState::Available,
        NodeState::Leased,
        NodeState::Wiping,
        NodeState::Remediating,
        NodeState::Quarantined,
    ];

    /// The name used in the database, the API and the CLI.
    pub fn as_str(self) -> &'static str {
        match self {
            NodeState::Enrolled => "enrolled",
            NodeState::Discovering => "discovering",
            NodeState::Inspecting => "inspecting",
            NodeState::Imaging => "imaging",
            NodeState::Booting => "booting",
            NodeState::BurnIn => "burn_in",
            NodeState::FabricTest => "fabric_test",
            NodeState::Available => "available",
            NodeState::Leased => "leased",
            NodeState::Wiping => "wiping",
            NodeState::Remediating => "remediating",
            NodeState::Quarantined => "quarantined",
        }
    }

    /// Whether `self → to` is an arrow of the lifecycle diagram.
    pub fn can_transition_to(self, to: NodeState) -> bool {
        use NodeState::*;
        match (self, to) {
            // The happy path.
            (Enrolled, Discovering)
            | (Discovering, Inspecting)
            | (Inspecting, Imaging)
            | (Imaging, Booting)
            | (Booting, BurnIn)
            | (BurnIn, FabricTest)
            | (FabricTest, Available)
            | (Available, Leased)
            // Release: wipe, then reimage and re-verify.
            | (Leased, Wiping)
            | (Wiping, Imaging)
            | (Wiping, Quarantined)
            // Remediation retries a step of the pipeline, or gives up.
            | (Remediating, Enrolled)
            | (Remediating, Discovering)
            | (Remediating, Inspecting)
            | (Remediating, Imaging)
            | (Remediating, Booting)
            | (Remediating, BurnIn)
            | (Remediating, FabricTest)
            | (Remediating, Wiping)
            | (Remediating, Quarantined)
            // A technician's repair sends the node back to be inspected again, or, when it was quarantined
            // before its disks were erased, back to wiping: a repair never skips the erase between tenants.
            | (Quarantined, Inspecting)
            | (Quarantined, Wiping)
            // A technician's reimage or retest of a verified node with no tenant: nothing a tenant wrote is on
            // its disks, so no erase is skipped.
            | (Available, Imaging)
            | (Available, BurnIn)
            | (Available, FabricTest) => true,
            // Any working state can fail into remediation (error or SLA exceeded).
            (from, Remediating) => !matches!(from, Remediating | Quarantined),
            _ => false,
        }
    }

    /// States the lifecycle engine drives; nodes in the others wait for a person or a lease.
    pub fn is_active(self) -> bool {
        !matches!(
            self,
            NodeState::Available | NodeState::Leased | NodeState::Quarantined
        )
    }
}

impl fmt::Display for NodeState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A state name that is not one of kiln's node states.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown node state {0:?} (expected one of: enrolled, discovering, inspecting, imaging, booting, burn_in, fabric_test, available, leased, wiping, remediating, quarantined)"
)]
pub struct UnknownState(pub String);

impl FromStr for NodeState {
    type Err = UnknownState;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let wanted = s.trim().to_ascii_lowercase().replace('-', "_");
        NodeState::ALL
            .into_iter()
            .find(|state| state.as_str() == wanted)
            .ok_or_else(|| UnknownState(s.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for state in NodeState::ALL {
            assert_eq!(state.as_str().parse::<NodeState>(), Ok(state));
            assert_eq!(
                serde_json::to_string(&state).ok(),
                Some(format!("\"{}\"", state.as_str()))
            );
        }
        assert_eq!("burn-in".parse::<NodeState>(), Ok(NodeState::BurnIn));
        assert!("cooking".parse::<NodeState>().is_err());
    }

    #[test]
    fn the_bring_up_path_is_allowed_step_by_step() {
        for step in NodeState::BRING_UP.windows(2) {
            assert!(
                step[0].can_transition_to(step[1]),
                "{} -> {}",
                step[0],
                step[1]
            );
        }
    }

    #[test]
    fn quarantine_only_left_by_repair() {
        let exits: Vec<_> = NodeState::ALL
            .into_iter()
            .filter(|to| NodeState::Quarantined.can_transition_to(*to))
            .collect();
        assert_eq!(exits, vec![NodeState::Inspecting, NodeState::Wiping]);
        assert!(NodeState::Remediating.can_transition_to(NodeState::Wiping));
    }
}
