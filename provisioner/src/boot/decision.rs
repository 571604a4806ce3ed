//! What a machine gets when it network-boots: chosen from its node's lifecycle state, the same way for the HTTP
//! script endpoint and for `kiln boot explain`.

use std::fmt;

use kiln_inventory::{MacAddr, Node, NodeState, Store, StoreError};

/// Why the kiln ramdisk is booted (`kiln.mode=…`): defined beside the agent's command-line parser, which reads it.
pub use kiln_agent::cmdline::RamdiskMode;

/// What a network boot leads to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case", tag = "action", content = "mode")]
pub enum BootAction {
    /// Boot the kiln ramdisk (kernel + initramfs with the agent).
    Ramdisk(RamdiskMode),
    /// Leave network boot and boot the local disk (iPXE `sanboot` on BIOS, `exit 1` to the firmware's next
    /// boot entry everywhere).
    LocalDisk,
}

impl fmt::Display for BootAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BootAction::Ramdisk(mode) => write!(f, "kiln ramdisk ({})", mode.as_str()),
            BootAction::LocalDisk => f.write_str("boot from local disk"),
        }
    }
}

/// The action for a node in `state`.
pub fn action_for_state(state: NodeState) -> BootAction {
    match state {
        NodeState::Enrolled
        | NodeState::Discovering
        | NodeState::Inspecting
        | NodeState::Remediating => BootAction::Ramdisk(RamdiskMode::Inspect),
        NodeState::Imaging => BootAction::Ramdisk(RamdiskMode::Image),
        NodeState::Wiping => BootAction::Ramdisk(RamdiskMode::Wipe),
        // An installed OS runs these; a quarantined node is left as it is for the technician.
        NodeState::Booting
        | NodeState::BurnIn
        | NodeState::FabricTest
        | NodeState::Available
        | NodeState::Leased
        | NodeState::Quarantined => BootAction::LocalDisk,
    }
}

/// A boot decision with the reason kiln gives for it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct BootDecision {
    /// The MAC that asked.
    pub mac: MacAddr,
    /// The enrolled node with that boot MAC, if any.
    pub node: Option<Node>,
    /// What it gets.
    pub action: BootAction,
    /// Why, in words (also the text of the node event).
    pub reason: String,
}

/// Decides what `mac` gets, from the inventory.
pub async fn decide(store: &Store, mac: MacAddr) -> Result<BootDecision, StoreError> {
    let node = store.node_by_boot_mac(mac).await?;
    let (action, reason) = match &node {
        Some(node) => {
            let action = action_for_state(node.state);
            let reason = format!("node {} is {}: {action}", node.serial, node.state.as_str());
            (action, reason)
        }
        None => (
            BootAction::Ramdisk(RamdiskMode::Discovery),
            format!("{mac} is not the boot MAC of an enrolled node: discovery ramdisk"),
        ),
    };
    Ok(BootDecision {
        mac,
        node,
        action,
        reason,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_state_has_an_action() {
        let ramdisk: Vec<_> = NodeState::ALL
            .into_iter()
            .filter(|state| matches!(action_for_state(*state), BootAction::Ramdisk(_)))
            .collect();
        assert_eq!(
            ramdisk,
            vec![
                NodeState::Enrolled,
                NodeState::Discovering,
                NodeState::Inspecting,
                NodeState::Imaging,
                NodeState::Wiping,
                NodeState::Remediating
            ]
        );
        assert_eq!(
            action_for_state(NodeState::Imaging),
            BootAction::Ramdisk(RamdiskMode::Image)
        );
        assert_eq!(action_for_state(NodeState::Leased), BootAction::LocalDisk);
    }
}
