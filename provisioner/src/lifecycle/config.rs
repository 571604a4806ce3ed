//! Engine settings: SLAs per state, how often to look again, concurrency limits, the image to write. Every
//! duration can be compressed by one factor for the simulator and tests.

use std::collections::BTreeMap;
use std::time::Duration;

use kiln_inventory::NodeState;

use super::policy::Policy;

/// Bounded concurrency per operation kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// BMC calls in flight at once (all nodes).
    pub bmc_calls: usize,
    /// Image writes under way at once (nodes between "write asked" and "written").
    pub image_writes: usize,
    /// Burn-ins running at once.
    pub burn_ins: usize,
    /// Power-ons per rack per second (inrush).
    pub power_ons_per_rack_per_s: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            bmc_calls: 256,
            image_writes: 64,
            burn_ins: 512,
            power_ons_per_rack_per_s: 4,
        }
    }
}

/// NCCL runs fabric_test's deadline allows for: the group's first run, then a bisection (the group again and
/// two halves per level: one bad node in a rack of 64 takes 14 runs).
pub const FABRIC_NCCL_RUNS: u32 = 16;

/// Everything the engine needs to know besides the inventory.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// This instance's name: the claim owner and the actor of its events.
    pub instance: String,
    /// Handlers running at once.
    pub workers: usize,
    /// Nodes claimed per round.
    pub claim_batch: i64,
    /// How long a claim lasts unless renewed (renewed every third of it while a handler runs).
    pub claim_ttl: Duration,
    /// Look for due nodes at least this often when nothing wakes the engine.
    pub poll: Duration,
    /// Longest time a node may stay in a state before it goes to remediation.
    pub sla: BTreeMap<NodeState, Duration>,
    /// How long to wait for the node's report after a boot was asked for.
    pub boot_timeout: Duration,
    /// Default time to look again at a waiting node.
    pub recheck: Duration,
    /// Time to look again after a transient BMC error.
    pub bmc_retry: Duration,
    /// Burn-in duration asked of each node.
    pub burn_in: Duration,
    /// Deadline of one handler run on top of its state's own long work (see [`EngineConfig::deadline_of`]):
    /// a BMC or SSH call that never returns ends the run there, the node fails with `handler_deadline` and
    /// its claim is released instead of being renewed for ever.
    pub handler_deadline: Duration,
    /// Longest time one multi-node NCCL run may take (the SSH runner's own limit on it); fabric_test's
    /// deadline allows [`FABRIC_NCCL_RUNS`] of them (a first run and a bisection).
    pub nccl_run: Duration,
    /// Time a burn_in handler run allows after the burn-in itself for the node's tools: the kernel log reads,
    /// DCGM's diagnostic (r3 is about 15 minutes; kiln's limit on it is 45) and nvbandwidth (limit 30).
    pub node_tools: Duration,
    /// Concurrency limits.
    pub limits: Limits,
    /// How long a BMC client (its session and connection) is kept between a node's operations. Real time:
    /// BMCs expire idle sessions on their own clock, so time compression leaves this alone.
    pub bmc_session_idle: Duration,
    /// BMC clients kept at most (the least recently used is closed beyond this).
    pub bmc_sessions_kept: usize,
    /// Catalog image (name, version) written to nodes.
    pub image: Option<(String, String)>,
    /// Remediation ladders.
    pub policy: Policy,
    /// The time compression applied by [`EngineConfig::compressed`] (1: real time); scales durations that
    /// come from elsewhere, such as a SKU profile's cold power-off ([`EngineConfig::cold_off`]).
    pub time_factor: f64,
}

impl Default for EngineConfig {
    fn default() -> Self {
        let minutes = |m: u64| Duration::from_secs(m * 60);
        let sla = [
            (NodeState::Enrolled, minutes(30)),
            (NodeState::Discovering, minutes(30)),
            (NodeState::Inspecting, minutes(30)),
            (NodeState::Imaging, minutes(60)),
            (NodeState::Booting, minutes(30)),
            (NodeState::BurnIn, minutes(12 * 60)),
            (NodeState::FabricTest, minutes(6 * 60)),
            (NodeState::Remediating, minutes(60)),
            (NodeState::Wiping, minutes(4 * 60)),
        ]
        .into_iter()
        .collect();
        EngineConfig {
            instance: format!("kiln-{}", std::process::id()),
            workers: 64,
            claim_batch: 64,
            claim_ttl: Duration::from_secs(60),
            poll: Duration::from_secs(1),
            sla,
            boot_timeout: minutes(15),
            recheck: Duration::from_secs(30),
            bmc_retry: Duration::from_secs(10),
            burn_in: minutes(4 * 60),
            handler_deadline: minutes(10),
            nccl_run: minutes(10),
            node_tools: minutes(75),
            limits: Limits::default(),
            bmc_session_idle: Duration::from_secs(60),
            bmc_sessions_kept: 4096,
            image: None,
            policy: Policy::default(),
            time_factor: 1.0,
        }
    }
}

impl EngineConfig {
    /// Divides every node-facing duration by `factor` (the simulator runs hours of bring-up in seconds). SLAs
    /// (60 s), the boot timeout (20 s), the claim TTL and the poll interval keep floors so a loaded machine does
    /// not lapse claims or fail healthy nodes.
    pub fn compressed(mut self, factor: f64) -> Self {
        let factor = if factor.is_finite() && factor >= 1.0 {
            factor
        } else {
            1.0
        };
        let scale = |d: Duration| d.div_f64(factor);
        // SLAs and the boot timeout are safety nets, not simulated work: they keep floors, so a loaded machine
        // running a compressed hall is not mistaken for failing hardware.
        for sla in self.sla.values_mut() {
            *sla = scale(*sla).max(Duration::from_secs(60));
        }
        self.boot_timeout = scale(self.boot_timeout).max(Duration::from_secs(20));
        self.recheck = scale(self.recheck);
        self.bmc_retry = scale(self.bmc_retry);
        self.burn_in = scale(self.burn_in);
        self.handler_deadline = scale(self.handler_deadline).max(Duration::from_secs(10));
        self.nccl_run = scale(self.nccl_run).max(Duration::from_secs(10));
        self.node_tools = scale(self.node_tools);
        self.claim_ttl = scale(self.claim_ttl).max(Duration::from_secs(5));
        self.poll = scale(self.poll).max(Duration::from_millis(20));
        self.time_factor *= factor;
        self
    }

    /// How long wiping keeps a server off for a profile's `cold_off_s`, under the time compression (simulated
    /// work like the burn-in: no floor).
    pub fn cold_off(&self, cold_off_s: u64) -> Duration {
        let factor = if self.time_factor.is_finite() && self.time_factor >= 1.0 {
            self.time_factor
        } else {
            1.0
        };
        Duration::from_secs(cold_off_s).div_f64(factor)
    }

    /// The deadline of one handler run in `state`: [`EngineConfig::handler_deadline`], plus the burn-in's
    /// duration and [`EngineConfig::node_tools`] in burn_in and [`FABRIC_NCCL_RUNS`] NCCL
    /// runs in fabric_test, at most the state's SLA (a run that outlasts it would fail the SLA anyway) and never
    /// zero.
    pub fn deadline_of(&self, state: NodeState) -> Duration {
        let work = match state {
            NodeState::BurnIn => self.burn_in.saturating_add(self.node_tools),
            NodeState::FabricTest => self.nccl_run.saturating_mul(FABRIC_NCCL_RUNS),
            _ => Duration::ZERO,
        };
        let deadline = self.handler_deadline.saturating_add(work);
        self.sla_of(state)
            .map_or(deadline, |sla| deadline.min(sla))
            .max(Duration::from_millis(1))
    }

    /// The SLA of `state` (`None`: not limited).
    pub fn sla_of(&self, state: NodeState) -> Option<Duration> {
        self.sla.get(&state).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadlines_cover_each_states_own_work_within_its_sla() {
        let config = EngineConfig::default();
        let minutes = |m: u64| Duration::from_secs(m * 60);
        assert_eq!(config.deadline_of(NodeState::Enrolled), minutes(10));
        assert_eq!(
            config.deadline_of(NodeState::BurnIn),
            minutes(4 * 60 + 75 + 10)
        );
        assert_eq!(config.deadline_of(NodeState::FabricTest), minutes(170));
        // A burn-in longer than its SLA is cut at the SLA.
        let long = EngineConfig {
            burn_in: minutes(24 * 60),
            ..EngineConfig::default()
        };
        assert_eq!(long.deadline_of(NodeState::BurnIn), minutes(12 * 60));
        // Compression keeps the floor, so a loaded machine does not fail healthy handler runs.
        let fast = EngineConfig::default().compressed(1e6);
        assert_eq!(
            fast.deadline_of(NodeState::Booting),
            Duration::from_secs(10)
        );
        assert_eq!(
            EngineConfig::default().cold_off(30),
            Duration::from_secs(30)
        );
        assert_eq!(
            EngineConfig::default()
                .compressed(10.0)
                .compressed(3.0)
                .cold_off(30),
            Duration::from_secs(1)
        );
        let zero = EngineConfig {
            handler_deadline: Duration::ZERO,
            ..EngineConfig::default()
        };
        assert!(zero.deadline_of(NodeState::Enrolled) > Duration::ZERO);
    }
}
