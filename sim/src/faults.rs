//! Fault placement: which nodes get which fault, chosen from the seed so runs are repeatable, and what kiln is
//! expected to say about each when it quarantines the node.

use std::fmt;

use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;

use crate::config::{EvidenceFaults, FaultFractions};

/// A fault the simulator can plant on a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FaultKind {
    /// The BMC drops every connection: the node can never be powered on.
    DeadBmc,
    /// The BMC fails some requests; retries get through, so the node must still become available.
    FlakyBmc,
    /// One GPU fewer than the SKU has (PCI bus, `nvidia-smi -L`, NCCL ranks).
    WrongGpuCount,
    /// An XID 79 during burn-in.
    XidBurnIn,
    /// NCCL groups containing the node run far below the SKU's bus bandwidth.
    SlowNccl,
    /// The installed OS's SSH server presents a different host key than its agent reported.
    ChangedHostKey,
    /// One GPU thermal-throttles under load (hot, SM clock far below the SKU's): seen only in NVML samples.
    ThrottledGpu,
    /// A hostile node: answers burn-in with a passing verdict of its own instead of evidence.
    ForgedVerdict,
    /// A hostile node: answers burn-in with an empty JSON document.
    EmptyEvidence,
    /// The node's evidence collector fails: `kiln-agent burn-in` exits 1 with an error and no document.
    CollectorFails,
    /// A data disk with a bad sector: the erase in wipe mode fails (a medium error past the disk's first half),
    /// so the node's erase record is a failed one and the engine's wipe ladder runs until it quarantines.
    EraseFails,
    /// One GPU's PCIe link stays at a lower generation under load (idle downshift is normal; this is not).
    PcieDowntrain,
    /// A fatal NVSwitch SXid in the kernel log after the burn-in (seen only by the kernel log scan).
    SxidBurnIn,
    /// Every GPU of the node runs its stress load 7% slower than the hall's other nodes: within every absolute
    /// floor, caught only against the hall's fleet baseline.
    SlowGpu,
}

impl FaultKind {
    /// Every kind, in placement order.
    pub const ALL: [FaultKind; 14] = [
        FaultKind::DeadBmc,
        FaultKind::FlakyBmc,
        FaultKind::WrongGpuCount,
        FaultKind::XidBurnIn,
        FaultKind::SlowNccl,
        FaultKind::ChangedHostKey,
        FaultKind::ThrottledGpu,
        FaultKind::ForgedVerdict,
        FaultKind::EmptyEvidence,
        FaultKind::CollectorFails,
        FaultKind::EraseFails,
        FaultKind::PcieDowntrain,
        FaultKind::SxidBurnIn,
        FaultKind::SlowGpu,
    ];

    /// Short name (`dead-bmc`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            FaultKind::DeadBmc => "dead-bmc",
            FaultKind::FlakyBmc => "flaky-bmc",
            FaultKind::WrongGpuCount => "wrong-gpu-count",
            FaultKind::XidBurnIn => "xid-burn-in",
            FaultKind::SlowNccl => "slow-nccl",
            FaultKind::ChangedHostKey => "changed-host-key",
            FaultKind::ThrottledGpu => "throttled-gpu",
            FaultKind::ForgedVerdict => "forged-verdict",
            FaultKind::EmptyEvidence => "empty-evidence",
            FaultKind::CollectorFails => "collector-fails",
            FaultKind::EraseFails => "erase-fails",
            FaultKind::PcieDowntrain => "pcie-downtrain",
            FaultKind::SxidBurnIn => "sxid-burn-in",
            FaultKind::SlowGpu => "slow-gpu",
        }
    }

    fn fraction(self, fractions: &FaultFractions, evidence: &EvidenceFaults) -> f64 {
        match self {
            FaultKind::DeadBmc => fractions.dead_bmc,
            FaultKind::FlakyBmc => fractions.flaky_bmc,
            FaultKind::WrongGpuCount => fractions.wrong_gpu_count,
            FaultKind::XidBurnIn => fractions.xid_burn_in,
            FaultKind::SlowNccl => fractions.slow_nccl,
            FaultKind::ChangedHostKey => fractions.changed_host_key,
            FaultKind::ThrottledGpu => evidence.throttled_gpu,
            FaultKind::ForgedVerdict => evidence.forged_verdict,
            FaultKind::EmptyEvidence => evidence.empty_evidence,
            FaultKind::CollectorFails => evidence.collector_fails,
            FaultKind::EraseFails => fractions.erase_fails,
            FaultKind::PcieDowntrain => fractions.pcie_downtrain,
            FaultKind::SxidBurnIn => fractions.sxid_burn_in,
            FaultKind::SlowGpu => fractions.slow_gpu,
        }
    }
}

impl fmt::Display for FaultKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A fault planted on one node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlantedFault {
    /// The node's serial.
    pub serial: String,
    /// The fault.
    pub kind: FaultKind,
    /// A substring kiln's quarantine reason for this node must contain; `None`: the node must end available.
    /// [`FaultKind::EraseFails`] shows only when a lease of the node is released: until then the node ends
    /// available like a healthy one.
    pub expected_reason: Option<String>,
}

/// Quarantine reason substrings, shared with tests of the lifecycle engine.
pub mod reasons {
    /// A dead BMC (the wording).
    pub const BMC_UNREACHABLE: &str = "BMC unreachable";
    /// The XID planted during burn-in, as kiln-health's XID judge words it.
    pub const XID: &str = "XID 79";
    /// A slow NCCL node, as kiln-health's busbw judge words it.
    pub const BUSBW: &str = "busbw";
    /// A changed host key, as `AccessError::HostKeyMismatch` words it.
    pub const HOST_KEY: &str = "host key mismatch";
    /// A throttling GPU, as kiln-health's burn-in judge words the SM clock check.
    pub const SM_CLOCK: &str = "sustained SM clock";
    /// A forged verdict or an empty document instead of burn-in evidence, as the burn-in judge words it.
    pub const NOT_EVIDENCE: &str = "not burn-in evidence";
    /// A burn-in command that exited non-zero, as the burn-in handler words it.
    pub const NO_EVIDENCE: &str = "no burn-in evidence";
    /// A failed erase that ended the wipe ladder, as the wiping handler words it (`secure erase failed: …`;
    /// the first attempts' records carry [`crate::disks::MEDIUM_ERROR`]).
    pub const ERASE_FAILED: &str = "erase failed";
    /// A GPU whose PCIe link stays below the SKU's under load, as the burn-in judge words it.
    pub const PCIE_UNDER_LOAD: &str = "pcie_under_load";
    /// The planted NVSwitch SXid, as the kernel log judge words it.
    pub const SXID: &str = "SXid";
}

/// What kiln says of a node flagged against its hall's fleet baseline ([`FaultKind::SlowGpu`]); the node stays
/// available unless the SKU's `fleet_gate` is on.
pub const FLEET_OUTLIER: &str = "below the hall median";

/// How much slower [`FaultKind::SlowGpu`]'s GPUs run than a healthy node's.
pub const SLOW_GPU_FACTOR: f64 = 0.93;

/// The reason substring for a node of `gpus` × `model` with one GPU missing: the agent's own mismatch text
/// (`expected 8× NVIDIA H100 80GB HBM3, found 7`).
pub fn wrong_gpu_reason(gpus: u32, model: &str) -> String {
    let expected = gpus as usize;
    kiln_agent::Mismatch::Gpus {
        expected,
        model: model.to_string(),
        found: expected.saturating_sub(1),
        other_models: Default::default(),
        missing_bus_ids: Vec::new(),
        unexpected_bus_ids: Vec::new(),
    }
    .to_string()
}

/// The XID planted by [`FaultKind::XidBurnIn`].
pub const PLANTED_XID: u64 = 79;

/// Chooses the faulty nodes: a seeded shuffle of node indices, then `round(fraction × nodes)` nodes per kind
/// in [`FaultKind::ALL`] order, each node at most once. Returns one entry per node (`None`: healthy).
pub fn place(
    nodes: usize,
    fractions: &FaultFractions,
    evidence: &EvidenceFaults,
    seed: u64,
) -> Vec<Option<FaultKind>> {
    let mut order: Vec<usize> = (0..nodes).collect();
    order.shuffle(&mut StdRng::seed_from_u64(seed));
    let mut placed = vec![None; nodes];
    let mut next = order.into_iter();
    for kind in FaultKind::ALL {
        let fraction = kind.fraction(fractions, evidence);
        let wanted = if fraction.is_finite() && fraction > 0.0 {
            ((fraction.min(1.0) * nodes as f64).round() as usize).max(1)
        } else {
            0
        };
        for index in next.by_ref().take(wanted) {
            placed[index] = Some(kind);
        }
    }
    placed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placement_is_deterministic_disjoint_and_sized() {
        let fractions = FaultFractions {
            dead_bmc: 0.02,
            flaky_bmc: 0.1,
            wrong_gpu_count: 0.05,
            ..FaultFractions::default()
        };
        let a = place(200, &fractions, &EvidenceFaults::default(), 7);
        assert_eq!(a, place(200, &fractions, &EvidenceFaults::default(), 7));
        assert_ne!(a, place(200, &fractions, &EvidenceFaults::default(), 8));
        let count = |kind| a.iter().filter(|f| **f == Some(kind)).count();
        assert_eq!(count(FaultKind::DeadBmc), 4);
        assert_eq!(count(FaultKind::FlakyBmc), 20);
        assert_eq!(count(FaultKind::WrongGpuCount), 10);
        assert_eq!(count(FaultKind::SlowNccl), 0);
        assert_eq!(a.iter().filter(|f| f.is_none()).count(), 166);
    }

    #[test]
    fn small_fractions_still_plant_one_and_large_ones_stop_at_the_hall() {
        let tiny = FaultFractions {
            xid_burn_in: 0.001,
            ..FaultFractions::default()
        };
        assert_eq!(
            place(4, &tiny, &EvidenceFaults::default(), 1)
                .iter()
                .flatten()
                .count(),
            1
        );
        let all = FaultFractions {
            dead_bmc: 1.0,
            slow_nccl: 1.0,
            ..FaultFractions::default()
        };
        let placed = place(5, &all, &EvidenceFaults::default(), 1);
        assert!(placed.iter().all(|f| *f == Some(FaultKind::DeadBmc)));
        assert!(place(0, &all, &EvidenceFaults::default(), 1).is_empty());
    }

    #[test]
    fn evidence_faults_come_after_the_others() {
        let fractions = FaultFractions {
            dead_bmc: 0.5,
            ..FaultFractions::default()
        };
        let evidence = EvidenceFaults {
            forged_verdict: 0.25,
            empty_evidence: 0.25,
            ..EvidenceFaults::default()
        };
        let placed = place(8, &fractions, &evidence, 3);
        let count = |kind| placed.iter().filter(|f| **f == Some(kind)).count();
        assert_eq!(count(FaultKind::DeadBmc), 4);
        assert_eq!(count(FaultKind::ForgedVerdict), 2);
        assert_eq!(count(FaultKind::EmptyEvidence), 2);
        assert_eq!(count(FaultKind::ThrottledGpu), 0);
    }

    #[test]
    fn wrong_gpu_reason_uses_the_agent_mismatch_words() {
        assert_eq!(
            wrong_gpu_reason(8, "NVIDIA H100 80GB HBM3"),
            "expected 8× NVIDIA H100 80GB HBM3, found 7"
        );
    }
}
