//! Typed results of health checks: every check says what it measured and the threshold it was judged against.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Outcome of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckStatus {
    /// Within limits.
    Pass,
    /// Outside limits: the node must not be handed over.
    Fail,
    /// Recorded but not failing on its own (e.g. an XID that is usually user code).
    Note,
}

/// One judged measurement.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Check {
    /// Dotted check name (`pcie.width`, `nvlink.active`, `nccl.busbw`).
    pub name: String,
    /// What was checked (`gpu3`, `node`, `host-02`).
    pub subject: String,
    /// Pass, fail or note.
    pub status: CheckStatus,
    /// The measured value (number, string, list).
    pub measured: Value,
    /// The threshold or expectation it was compared with, when there is one.
    pub threshold: Option<Value>,
    /// One sentence a technician can act on.
    pub reason: String,
}

impl Check {
    /// A passing check.
    pub fn pass(
        name: &str,
        subject: &str,
        measured: impl Into<Value>,
        threshold: Option<Value>,
        reason: &str,
    ) -> Self {
        Self::new(
            name,
            subject,
            CheckStatus::Pass,
            measured,
            threshold,
            reason,
        )
    }

    /// A failing check.
    pub fn fail(
        name: &str,
        subject: &str,
        measured: impl Into<Value>,
        threshold: Option<Value>,
        reason: &str,
    ) -> Self {
        Self::new(
            name,
            subject,
            CheckStatus::Fail,
            measured,
            threshold,
            reason,
        )
    }

    /// A passing or failing check depending on `ok`.
    pub fn judged(
        ok: bool,
        name: &str,
        subject: &str,
        measured: impl Into<Value>,
        threshold: Option<Value>,
        reason: &str,
    ) -> Self {
        let status = if ok {
            CheckStatus::Pass
        } else {
            CheckStatus::Fail
        };
        Self::new(name, subject, status, measured, threshold, reason)
    }

    /// A check with an explicit status.
    pub fn new(
        name: &str,
        subject: &str,
        status: CheckStatus,
        measured: impl Into<Value>,
        threshold: Option<Value>,
        reason: &str,
    ) -> Self {
        Self {
            name: name.to_string(),
            subject: subject.to_string(),
            status,
            measured: measured.into(),
            threshold,
            reason: reason.to_string(),
        }
    }

    /// True when this check fails the run.
    pub fn failed(&self) -> bool {
        self.status == CheckStatus::Fail
    }
}

/// Which kind of health run produced a verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunKind {
    /// Static NVML checks on an idle node.
    NvmlCheck,
    /// Stress tool with NVML sampling.
    BurnIn,
    /// nccl-tests run.
    Nccl,
    /// DCGM diagnostic (`dcgmi diag`).
    Dcgm,
    /// Bandwidth tools (nvbandwidth, `ib_write_bw`).
    Bandwidth,
}

impl RunKind {
    /// The health run kind the inventory stores it under (`nvml`, `burn_in`, `nccl`, `dcgm`, `bandwidth`).
    pub fn as_str(self) -> &'static str {
        match self {
            RunKind::NvmlCheck => "nvml",
            RunKind::BurnIn => "burn_in",
            RunKind::Nccl => "nccl",
            RunKind::Dcgm => "dcgm",
            RunKind::Bandwidth => "bandwidth",
        }
    }
}

/// The result of one health run: every check, and pass only if none failed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Verdict {
    /// What kind of run this was.
    pub kind: RunKind,
    /// SKU profile id used for thresholds.
    pub sku: String,
    /// When the run started, seconds since the Unix epoch.
    pub started_at_unix_s: u64,
    /// All checks, failing first.
    pub checks: Vec<Check>,
    /// Free-form evidence (NCCL version, tool output tail, samples summary).
    pub evidence: Value,
}

impl Verdict {
    /// A verdict from checks; sorts failing checks first so humans see them first.
    pub fn new(
        kind: RunKind,
        sku: &str,
        started_at_unix_s: u64,
        mut checks: Vec<Check>,
        evidence: Value,
    ) -> Self {
        checks.sort_by_key(|c| match c.status {
            CheckStatus::Fail => 0,
            CheckStatus::Note => 1,
            CheckStatus::Pass => 2,
        });
        Self {
            kind,
            sku: sku.to_string(),
            started_at_unix_s,
            checks,
            evidence,
        }
    }

    /// True when no check failed.
    pub fn passed(&self) -> bool {
        !self.checks.iter().any(Check::failed)
    }

    /// The failing checks.
    pub fn failures(&self) -> impl Iterator<Item = &Check> {
        self.checks.iter().filter(|c| c.failed())
    }

    /// A plain-text table, failing checks first.
    pub fn render_table(&self) -> String {
        let mut out = format!(
            "{:?} verdict for SKU {}: {}\n",
            self.kind,
            self.sku,
            if self.passed() { "PASS" } else { "FAIL" }
        );
        out.push_str(&format!(
            "{:<6} {:<28} {:<10} {:<22} {:<22} {}\n",
            "status", "check", "subject", "measured", "threshold", "reason"
        ));
        for c in &self.checks {
            let status = match c.status {
                CheckStatus::Pass => "pass",
                CheckStatus::Fail => "FAIL",
                CheckStatus::Note => "note",
            };
            let threshold = c.threshold.as_ref().map(compact).unwrap_or_default();
            out.push_str(&format!(
                "{:<6} {:<28} {:<10} {:<22} {:<22} {}\n",
                status,
                c.name,
                c.subject,
                compact(&c.measured),
                threshold,
                c.reason
            ));
        }
        out
    }
}

fn compact(v: &Value) -> String {
    let s = match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    if s.chars().count() > 22 {
        format!("{}…", s.chars().take(21).collect::<String>())
    } else {
        s
    }
}

/// Seconds since the Unix epoch, for `started_at_unix_s`.
pub fn now_unix_s() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
