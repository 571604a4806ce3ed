//! What a virtual node's installed OS prints for `dmesg` (the engine reads it at burn-in start and end and scans
//! it for Xid and SXid events): a boot banner and the NVIDIA driver's load, plus the NVSwitch SXid of
//! [`FaultKind::SxidBurnIn`] once a burn-in has put the fabric under load since the last boot.

use crate::answers::{DRIVER_VERSION, INSTALLED_KERNEL};
use crate::faults::FaultKind;
use crate::node::VirtualNode;

/// The SXid planted by [`FaultKind::SxidBurnIn`]: fatal, an NVSwitch egress double-bit ECC error.
pub const PLANTED_SXID: u64 = 12022;

/// `dmesg` of `node` now.
pub fn dmesg(node: &VirtualNode) -> String {
    let burn_ins = node.runtime().burn_ins_since_boot;
    let mut text = format!(
        "[    0.000000] Linux version {INSTALLED_KERNEL} (buildd@kiln-sim) #50-Ubuntu SMP PREEMPT_DYNAMIC\n\
         [    0.000000] Command line: BOOT_IMAGE=/vmlinuz-{INSTALLED_KERNEL} root=LABEL=root ro console=ttyS0\n\
         [    4.512210] nvidia: loading out-of-tree module taints kernel.\n\
         [    4.693004] nvidia-nvlink: Nvlink Core is being initialized, major device number 236\n\
         [    4.871532] NVRM: loading NVIDIA UNIX x86_64 Kernel Module  {DRIVER_VERSION}\n\
         [    5.120047] nvidia-nvswitch0: using MSI\n\
         [   11.402311] systemd[1]: Started kiln-agent.service - kiln node agent.\n"
    );
    if node.has(FaultKind::SxidBurnIn) && burn_ins > 0 {
        text.push_str(&format!(
            "[  612.004512] nvidia-nvswitch1: SXid (PCI:0000:06:00.0): {PLANTED_SXID}, Fatal, Link 17 egress input ECC DBE error\n\
             [  612.004530] nvidia-nvswitch1: SXid (PCI:0000:06:00.0): {PLANTED_SXID}, Severity 1 Engine instance 17 Sub-engine instance 00\n"
        ));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::test_node;
    use kiln_health::kernlog::{new_events, scan};

    #[test]
    fn the_planted_sxid_appears_after_a_burn_in_and_fails_the_scan() {
        let node = test_node(Some(FaultKind::SxidBurnIn));
        let before = scan(&dmesg(&node));
        assert!(
            before.events.is_empty() && before.unparsed == 0,
            "{before:?}"
        );
        node.runtime().burn_ins_since_boot += 1;
        let after = scan(&dmesg(&node));
        let added = new_events(&before, &after);
        assert_eq!(added.len(), 1, "{added:?}");
        assert_eq!(added[0].code, PLANTED_SXID);
        assert!(added[0].fails());
        let healthy = test_node(None);
        healthy.runtime().burn_ins_since_boot += 1;
        assert!(!scan(&dmesg(&healthy)).fails());
    }
}
