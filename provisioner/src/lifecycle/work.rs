//! The engine's durable memory for one node, stored as JSON beside the node row. Handlers record an intent
//! *before* the side effect it guards (write-ahead), so a crash between the two repeats only what is safe to
//! repeat, and every image write is counted with its reason.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use kiln_inventory::{EraseMethod, EraseRecord, Node, NodeState};
use serde::{Deserialize, Serialize};

use super::outcome::{Failure, FailureClass};

/// What the engine asked of the node in its current state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IntentKind {
    /// One-time network boot into the kiln ramdisk.
    PxeBoot,
    /// One-time boot from the local disk.
    DiskBoot,
}

/// A recorded request to the node, valid only in the state entry it was made in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Intent {
    /// What was asked.
    pub kind: IntentKind,
    /// The state the node was in.
    pub state: NodeState,
    /// When the node entered that state (an intent from an earlier visit to the same state is stale).
    pub state_entered_at: DateTime<Utc>,
    /// When it was asked.
    pub at: DateTime<Utc>,
    /// Reports with a higher id answer this intent.
    pub reports_after: i64,
    /// The side effect (BMC calls) completed; `false` after a crash in between means: do it again.
    pub done: bool,
    /// Boots asked in this state entry (a retry after a boot timeout counts up).
    pub boots: u32,
}

/// The record.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Work {
    /// The current intent.
    #[serde(default)]
    pub intent: Option<Intent>,
    /// The SSH host key the installed OS's agent reported (pinned for every later connection).
    #[serde(default)]
    pub host_key: Option<String>,
    /// Where the installed OS's SSH server listens.
    #[serde(default)]
    pub ssh_address: Option<String>,
    /// The failure being remediated (set on entering remediating).
    #[serde(default)]
    pub failure: Option<FailedStep>,
    /// Remediation attempts per class since the node last became available.
    #[serde(default)]
    pub attempts: BTreeMap<FailureClass, u32>,
    /// The last network boot asked (in any state): the inspection after a discovering boot answers it.
    #[serde(default)]
    pub last_pxe: Option<BootMark>,
    /// Image writes asked for this node, ever; each has an event with its reason.
    #[serde(default)]
    pub images_written: u32,
    /// The last transient error seen in the current state, and how many in a row.
    #[serde(default)]
    pub last_error: Option<String>,
    /// Consecutive transient errors in the current state.
    #[serde(default)]
    pub errors: u32,
    /// Time the node spent due but unclaimed (the engine's backlog) since its SLA clock started; the clock
    /// does not count it.
    #[serde(default)]
    pub backlog: Option<Backlog>,
    /// The known-state steps wiping takes before the wipe boot, in the current wiping entry.
    #[serde(default)]
    pub turnover: Option<TurnoverSteps>,
    /// Erase methods that failed on this node in its current turnover (from the agent's erase records).
    #[serde(default)]
    pub erase_failed: Vec<EraseMethod>,
    /// Erase methods the next wipe boot skips (`kiln.erase_skip=`): set by the remediation ladder's
    /// "next method" step from [`Work::erase_failed`], cleared when the disks are erased.
    #[serde(default)]
    pub erase_skip: Vec<EraseMethod>,
    /// The image (name, version) a technician's `kiln node reimage --image` asked for, written instead of the
    /// engine's image until the node is next available.
    #[serde(default)]
    pub image: Option<(String, String)>,
    /// The distinct causes of this turnover's failed erases, oldest first, so a later attempt that skipped
    /// the failing methods still names the first cause when the node is quarantined.
    #[serde(default)]
    pub erase_causes: Vec<String>,
}

/// Wiping's steps before the wipe boot (a cold power-off, a TPM clear, the BIOS reset seam), so a recheck
/// or a restarted engine goes on where it was. Valid only in the state entry it was made in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TurnoverSteps {
    /// When the node entered wiping.
    pub state_entered_at: DateTime<Utc>,
    /// When the BMC powered the server off for the cold power-off.
    pub powered_off_at: Option<DateTime<Utc>>,
    /// The cold power-off lasted its full time.
    pub cold_off_done: bool,
    /// The TPM clear was done or found not offered.
    pub tpm_done: bool,
    /// The BIOS reset step ran.
    pub bios_done: bool,
}

/// Backlog time that belongs to one run of a node's SLA clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Backlog {
    /// When that clock started.
    pub clock_started: DateTime<Utc>,
    /// Milliseconds the node waited for a claim after it was due.
    pub ms: i64,
}

/// When a boot was asked, and the reports that answer it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BootMark {
    /// When.
    pub at: DateTime<Utc>,
    /// Reports with a higher id came after it.
    pub reports_after: i64,
}

/// A failure with the state it happened in.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FailedStep {
    /// Where it failed.
    pub state: NodeState,
    /// What failed.
    pub failure: Failure,
}

impl Work {
    /// An image write was accepted: the SSH host key pinned for the previous OS no longer applies, and the
    /// first installed-OS report after this write pins the new one (see `handlers::booting::pin_host_key`).
    pub fn image_written(&mut self) {
        self.host_key = None;
        self.ssh_address = None;
    }

    /// Parses a stored record; an unreadable one is logged and replaced by an empty record (the engine then
    /// redoes the current state's steps, which are idempotent).
    pub fn parse(node: &Node, text: Option<&str>) -> Work {
        match text {
            None => Work::default(),
            Some(text) => serde_json::from_str(text).unwrap_or_else(|err| {
                tracing::warn!(node = %node.serial, error = %err, "unreadable work record; starting afresh");
                Work::default()
            }),
        }
    }

    /// The record as stored.
    pub fn to_json(&self) -> String {
        // A struct of plain data always serializes.
        serde_json::to_string(self).unwrap_or_else(|_| "{}".to_string())
    }

    /// The intent made in the node's current state entry, if any.
    pub fn current_intent(&self, node: &Node) -> Option<&Intent> {
        self.intent
            .as_ref()
            .filter(|i| i.state == node.state && i.state_entered_at == node.state_entered_at)
    }

    /// The turnover steps of the node's current wiping entry, started afresh when there are none.
    pub fn turnover_steps(&mut self, node: &Node) -> &mut TurnoverSteps {
        let fresh = TurnoverSteps {
            state_entered_at: node.state_entered_at,
            powered_off_at: None,
            cold_off_done: false,
            tpm_done: false,
            bios_done: false,
        };
        let steps = self.turnover.get_or_insert(fresh);
        if steps.state_entered_at != node.state_entered_at {
            *steps = fresh;
        }
        steps
    }

    /// Notes the methods that failed in a failed erase's records (each failed record's method and the ones it
    /// tried before), for the ladder's "next method" step.
    /// A method that erased and verified another disk of the node is not noted: `kiln.erase_skip` applies to
    /// every disk, and skipping it would fail the disks it works on.
    pub fn note_erase_failures(&mut self, records: &[EraseRecord]) {
        let worked: Vec<EraseMethod> = records
            .iter()
            .filter(|r| r.is_ok())
            .filter_map(|r| r.method)
            .collect();
        for record in records.iter().filter(|r| !r.is_ok()) {
            let failed = record.tried.iter().map(|t| t.method).chain(record.method);
            for method in failed.filter(|m| !worked.contains(m)) {
                if !self.erase_failed.contains(&method) {
                    self.erase_failed.push(method);
                }
            }
        }
    }

    /// Forgets per-state memory (intent, error streak) when the node moves on.
    pub fn leave_state(&mut self) {
        self.turnover = None;
        self.intent = None;
        self.last_error = None;
        self.errors = 0;
        self.backlog = None;
    }

    /// Adds the wait between `due_since` and `claimed_at` to the backlog of the SLA clock that started at
    /// `clock_started` (a clock that restarted drops the old clock's backlog; time before the clock started
    /// is not counted). Returns the backlog now counted against that clock, in milliseconds.
    pub fn add_backlog(
        &mut self,
        clock_started: DateTime<Utc>,
        due_since: DateTime<Utc>,
        claimed_at: DateTime<Utc>,
    ) -> i64 {
        let waited = (claimed_at - due_since.max(clock_started))
            .num_milliseconds()
            .max(0);
        let mut backlog = self
            .backlog
            .filter(|b| b.clock_started == clock_started)
            .unwrap_or(Backlog {
                clock_started,
                ms: 0,
            });
        if waited > 0 {
            backlog.ms += waited;
            self.backlog = Some(backlog);
        }
        backlog.ms
    }

    /// [`Work::leave_state`] for a move `from → to`: only the discovering boot may answer the inspection, so
    /// any other way into inspecting (a retry, a repair) forgets the last network boot and boots again. A node that is
    /// available again forgets a technician's image choice.
    pub fn leave_state_for(&mut self, from: NodeState, to: NodeState) {
        self.leave_state();
        if to == NodeState::Inspecting && from != NodeState::Discovering {
            self.last_pxe = None;
        }
        if to == NodeState::Available {
            self.image = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::{Duration, TimeZone};

    use super::*;

    #[test]
    fn backlog_counts_only_waits_after_the_clock_started_and_restarts_with_it() {
        let t = |s: i64| {
            Utc.with_ymd_and_hms(2026, 11, 27, 8, 0, 0)
                .single()
                .expect("time")
                + Duration::seconds(s)
        };
        let mut work = Work::default();
        // Due before the clock started: only the part after the start counts.
        assert_eq!(work.add_backlog(t(10), t(0), t(15)), 5_000);
        // Claimed the moment it was due: nothing new, nothing stored anew.
        let stored = work.backlog;
        assert_eq!(work.add_backlog(t(10), t(20), t(20)), 5_000);
        assert_eq!(work.backlog, stored);
        assert_eq!(work.add_backlog(t(10), t(30), t(42)), 17_000);
        // A claim timestamp before due (a clock step back) adds nothing.
        assert_eq!(work.add_backlog(t(10), t(50), t(45)), 17_000);
        // A new clock (a new write request while imaging) starts from zero.
        assert_eq!(work.add_backlog(t(60), t(60), t(61)), 1_000);
        work.leave_state();
        assert_eq!(work.backlog, None);
    }

    fn record(device: &str, method: EraseMethod, ok: bool) -> EraseRecord {
        EraseRecord {
            device: device.into(),
            model: String::new(),
            serial: String::new(),
            bytes: 1 << 20,
            method: Some(method),
            nist: ok.then(|| method.nist()),
            tried: vec![kiln_inventory::TriedMethod {
                method: EraseMethod::NvmeSanitizeCrypto,
                error: "not supported by the device".into(),
            }],
            started_at: DateTime::UNIX_EPOCH,
            finished_at: DateTime::UNIX_EPOCH,
            verified: ok,
            result: if ok {
                kiln_inventory::EraseResult::Ok
            } else {
                kiln_inventory::EraseResult::Failed
            },
            error: (!ok).then(|| "I/O error".into()),
            verification: None,
        }
    }

    #[test]
    fn a_method_that_worked_on_another_disk_is_not_noted_as_failed() {
        let mut work = Work::default();
        work.note_erase_failures(&[
            record("/dev/nvme0n1", EraseMethod::Overwrite, true),
            record("/dev/nvme1n1", EraseMethod::Overwrite, false),
        ]);
        assert_eq!(work.erase_failed, vec![EraseMethod::NvmeSanitizeCrypto]);
        work.note_erase_failures(&[record("/dev/nvme1n1", EraseMethod::NvmeFormatCrypto, false)]);
        assert_eq!(
            work.erase_failed,
            vec![
                EraseMethod::NvmeSanitizeCrypto,
                EraseMethod::NvmeFormatCrypto
            ]
        );
    }
}
