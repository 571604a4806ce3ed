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

/// Extra kernel arguments of a wipe boot for `node`: ` kiln.erase_skip=m1,m2` with the erase methods the
/// remediation ladder's "next method" step excludes (kept in the node's work record), empty when none are (or
/// when the node is not wiping). The agent's erase chain then starts after them.
pub async fn wipe_args(store: &Store, node: &Node) -> Result<String, StoreError> {
    if node.state != NodeState::Wiping {
        return Ok(String::new());
    }
    let stored = store.node_work(node.id).await?;
    let work = crate::lifecycle::Work::parse(node, stored.work.as_deref());
    Ok(erase_skip_arg(&work.erase_skip))
}

/// ` kiln.erase_skip=m1,m2` for `methods`, empty for none.
pub fn erase_skip_arg(methods: &[kiln_inventory::EraseMethod]) -> String {
    if methods.is_empty() {
        return String::new();
    }
    let names: Vec<&str> = methods.iter().map(|m| m.as_str()).collect();
    format!(
        " {}={}",
        kiln_agent::cmdline::ERASE_SKIP_ARG,
        names.join(",")
    )
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

    #[test]
    fn the_erase_skip_argument_is_what_the_agent_parses() {
        use kiln_inventory::EraseMethod;
        assert_eq!(erase_skip_arg(&[]), "");
        let skip = [
            EraseMethod::NvmeSanitizeCrypto,
            EraseMethod::NvmeFormatCrypto,
        ];
        let arg = erase_skip_arg(&skip);
        assert_eq!(
            arg,
            " kiln.erase_skip=nvme_sanitize_crypto,nvme_format_crypto"
        );
        let line = format!("kiln.url=http://p kiln.token=t kiln.mode=wipe{arg}");
        let parsed = kiln_agent::cmdline::RamdiskArgs::parse(&line).expect("parses");
        assert_eq!(parsed.erase_skip, skip.to_vec());
    }
}
