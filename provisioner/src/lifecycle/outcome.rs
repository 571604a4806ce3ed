//! What a state handler decides, and the failure classes remediation policy is written against.

use std::fmt;
use std::time::Duration;

use kiln_inventory::NodeState;
use serde::{Deserialize, Serialize};

/// A handler's decision for one look at a node.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Nothing to do yet; look again after `recheck_in` (or sooner, when an event wakes the node).
    Wait {
        /// What the node waits for, in words.
        reason: String,
        /// When to look again at the latest.
        recheck_in: Duration,
        /// The node is ready and only waits for its turn at a shared limit (a rack's power-on rate): when due
        /// it goes ahead of routine rechecks, like a woken node, instead of joining the back of the queue.
        turn: bool,
    },
    /// The state's work is done: move on.
    Transition {
        /// The next state.
        to: NodeState,
        /// Why, for the event log.
        reason: String,
    },
    /// The state's work failed: the node goes to remediation with this failure.
    Fail(Failure),
}

impl Outcome {
    /// A wait.
    pub fn wait(reason: impl Into<String>, recheck_in: Duration) -> Self {
        Outcome::Wait {
            reason: reason.into(),
            recheck_in,
            turn: false,
        }
    }

    /// A wait for a turn at a shared limit (see [`Outcome::Wait::turn`]).
    pub fn wait_turn(reason: impl Into<String>, recheck_in: Duration) -> Self {
        Outcome::Wait {
            reason: reason.into(),
            recheck_in,
            turn: true,
        }
    }

    /// A transition.
    pub fn to(to: NodeState, reason: impl Into<String>) -> Self {
        Outcome::Transition {
            to,
            reason: reason.into(),
        }
    }

    /// A failure without evidence beyond its reason.
    pub fn fail(class: FailureClass, reason: impl Into<String>) -> Self {
        Outcome::Fail(Failure::new(class, reason))
    }
}

/// Why a node failed a step: the class picks the remediation ladder; reason and evidence are kept.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Failure {
    /// The class.
    pub class: FailureClass,
    /// One sentence a technician can act on.
    pub reason: String,
    /// Whatever backs it up (a verdict, a transcript, a bisection).
    #[serde(default)]
    pub evidence: serde_json::Value,
}

impl Failure {
    /// A failure with no extra evidence.
    pub fn new(class: FailureClass, reason: impl Into<String>) -> Self {
        Self {
            class,
            reason: reason.into(),
            evidence: serde_json::Value::Null,
        }
    }

    /// Attaches evidence.
    pub fn with_evidence(mut self, evidence: serde_json::Value) -> Self {
        self.evidence = evidence;
        self
    }
}

/// Failure classes; each has its own action ladder in the [`super::policy::Policy`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureClass {
    /// The BMC did not answer (connection refused, timeouts, persistent 5xx).
    BmcUnreachable,
    /// The BMC refused the stored credentials.
    BmcAuth,
    /// The node did not report after a boot was asked for.
    BootTimeout,
    /// The hardware the agent found does not match the SKU.
    HardwareMismatch,
    /// The image write failed or its digest did not match.
    ImageWrite,
    /// The installed OS presented a different SSH host key than its agent reported.
    HostKeyMismatch,
    /// The post-image check failed (no driver, wrong GPU count, SSH refused).
    PostImageCheck,
    /// The burn-in verdict failed.
    BurnIn,
    /// The node failed the multi-node NCCL test (found by bisection).
    Fabric,
    /// The node stayed in a state longer than its SLA.
    SlaExceeded,
    /// Secure erase failed after a lease.
    Wipe,
    /// A handler run did not finish within its deadline (a BMC or SSH call that never returned): the run was
    /// abandoned and the node's claim released.
    HandlerDeadline,
    /// The node passed every absolute floor but sits further below its hall's fleet baseline (the median of
    /// the hall's nodes of its SKU) than the SKU allows, and the SKU gates on it (`gates.fleet_gate`).
    FleetOutlier,
}

impl FailureClass {
    /// Every class.
    pub const ALL: [FailureClass; 13] = [
        FailureClass::BmcUnreachable,
        FailureClass::BmcAuth,
        FailureClass::BootTimeout,
        FailureClass::HardwareMismatch,
        FailureClass::ImageWrite,
        FailureClass::HostKeyMismatch,
        FailureClass::PostImageCheck,
        FailureClass::BurnIn,
        FailureClass::Fabric,
        FailureClass::SlaExceeded,
        FailureClass::Wipe,
        FailureClass::HandlerDeadline,
        FailureClass::FleetOutlier,
    ];

    /// The words a quarantine reason starts with.
    pub fn label(self) -> &'static str {
        match self {
            FailureClass::BmcUnreachable => "BMC unreachable",
            FailureClass::BmcAuth => "BMC rejected the credentials",
            FailureClass::BootTimeout => "no report after boot",
            FailureClass::HardwareMismatch => "hardware does not match the SKU",
            FailureClass::ImageWrite => "image write failed",
            FailureClass::HostKeyMismatch => "SSH host key mismatch",
            FailureClass::PostImageCheck => "post-image check failed",
            FailureClass::BurnIn => "burn-in failed",
            FailureClass::Fabric => "NCCL fabric test failed",
            FailureClass::SlaExceeded => "state SLA exceeded",
            FailureClass::Wipe => "secure erase failed",
            FailureClass::HandlerDeadline => "handler exceeded its deadline",
            FailureClass::FleetOutlier => "below the hall's fleet baseline",
        }
    }

    /// The snake_case name used in policy files.
    pub fn as_str(self) -> &'static str {
        match self {
            FailureClass::BmcUnreachable => "bmc_unreachable",
            FailureClass::BmcAuth => "bmc_auth",
            FailureClass::BootTimeout => "boot_timeout",
            FailureClass::HardwareMismatch => "hardware_mismatch",
            FailureClass::ImageWrite => "image_write",
            FailureClass::HostKeyMismatch => "host_key_mismatch",
            FailureClass::PostImageCheck => "post_image_check",
            FailureClass::BurnIn => "burn_in",
            FailureClass::Fabric => "fabric",
            FailureClass::SlaExceeded => "sla_exceeded",
            FailureClass::Wipe => "wipe",
            FailureClass::HandlerDeadline => "handler_deadline",
            FailureClass::FleetOutlier => "fleet_outlier",
        }
    }
}

impl fmt::Display for FailureClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
