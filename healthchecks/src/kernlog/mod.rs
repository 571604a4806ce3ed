//! Kernel log scan: NVIDIA driver Xid and NVSwitch SXid events from dmesg, `dmesg -T`, `journalctl -k`,
//! syslog or /dev/kmsg text, judged by the catalogs in [`crate::xid`].
//!
//! Xid events logged before kiln's NVML sampling started, and SXids (which exist only in the kernel log), are
//! seen here. The engine scans the whole log at burn-in start and end and judges [`new_events`] only.
//!
//! JSON (`kiln health xid-scan --json`):
//! `{"events":[{"kind":"xid"|"sxid","pci","code","message","timestamp","action","meaning"[,"fatal"]}],
//! "lines_read","unparsed"}`; `timestamp` is the string written in the log or null; `fatal` appears on SXid
//! events whose line states Fatal (true) or Non-fatal (false).

mod line;

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::verdict::{Check, CheckStatus};
use crate::xid::{self, XidAction};

pub use line::{LineOutcome, ParsedEvent, parse_line};

/// How many unreadable lines a scan keeps for humans (all are counted).
const UNPARSED_KEPT: usize = 20;

/// Which driver logged the event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KernelEventKind {
    /// GPU driver event (`NVRM: Xid`).
    Xid,
    /// NVSwitch driver event (`nvidia-nvswitchN: SXid`).
    Sxid,
}

impl KernelEventKind {
    /// `Xid` or `SXid`, as the driver writes it.
    pub fn label(self) -> &'static str {
        match self {
            KernelEventKind::Xid => "Xid",
            KernelEventKind::Sxid => "SXid",
        }
    }
}

/// One Xid or SXid event with the catalog's judgement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KernelEvent {
    /// Xid (GPU) or SXid (NVSwitch).
    pub kind: KernelEventKind,
    /// PCI address of the GPU or switch as written in the log (`0000:18:00`, `0000:05:00.0`).
    pub pci: String,
    /// Event number.
    pub code: u64,
    /// The driver's text after the code (after the severity for SXids).
    pub message: String,
    /// Timestamp as written in the log (`812.123456`, `Sun Feb 23 16:24:18 2025`, ISO, syslog, kmsg µs).
    pub timestamp: Option<String>,
    /// What kiln does about it (catalog action).
    pub action: XidAction,
    /// What it means (catalog).
    pub meaning: String,
    /// SXid only: the line said Fatal (true) or Non-fatal (false); absent when not stated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fatal: Option<bool>,
}

impl KernelEvent {
    /// True when this event fails the node.
    pub fn fails(&self) -> bool {
        self.action.fails()
    }

    /// Identity used to tell the same logged event apart in two scans of the same log.
    fn identity(&self) -> (KernelEventKind, &str, u64, &str, Option<&str>) {
        (
            self.kind,
            &self.pci,
            self.code,
            &self.message,
            self.timestamp.as_deref(),
        )
    }
}

/// Everything a scan of kernel log text found.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KernelScan {
    /// Events in log order. An SXid's `Severity …` and `Data {…}` detail lines are folded into its event.
    pub events: Vec<KernelEvent>,
    /// Lines read.
    pub lines_read: u64,
    /// Lines that mention an Xid or SXid but could not be read (never guessed into an event).
    pub unparsed: u64,
    /// The first unreadable lines, for humans; not part of the JSON contract.
    #[serde(skip)]
    pub unparsed_lines: Vec<String>,
}

impl KernelScan {
    /// True when any event fails the node.
    pub fn fails(&self) -> bool {
        self.events.iter().any(KernelEvent::fails)
    }

    /// The events that fail the node.
    pub fn failing(&self) -> impl Iterator<Item = &KernelEvent> {
        self.events.iter().filter(|e| e.fails())
    }

    /// One line per event and a summary, for `kiln health xid-scan` without `--json`.
    pub fn render_text(&self) -> String {
        let mut out = String::new();
        for e in &self.events {
            let fatal = match e.fatal {
                Some(true) => " fatal",
                Some(false) => " non-fatal",
                None => "",
            };
            out.push_str(&format!(
                "{:<6} {} {} {} at {}{}: {} -- {}\n",
                format!("{:?}", e.action).to_lowercase(),
                e.timestamp.as_deref().unwrap_or("-"),
                e.kind.label(),
                e.code,
                e.pci,
                fatal,
                e.meaning,
                e.message
            ));
        }
        for l in &self.unparsed_lines {
            out.push_str(&format!("unread {l}\n"));
        }
        out.push_str(&format!(
            "{} event(s), {} failing the node; {} line(s) read, {} unreadable Xid/SXid line(s)\n",
            self.events.len(),
            self.failing().count(),
            self.lines_read,
            self.unparsed
        ));
        out
    }
}

/// Scans kernel log text. Never fails: unreadable Xid/SXid lines are counted in `unparsed`.
pub fn scan(text: &str) -> KernelScan {
    let mut out = KernelScan::default();
    for raw in text.lines() {
        out.lines_read += 1;
        match parse_line(raw) {
            LineOutcome::Other => {}
            LineOutcome::Unparsed(_) => {
                out.unparsed += 1;
                if out.unparsed_lines.len() < UNPARSED_KEPT {
                    out.unparsed_lines.push(raw.trim().to_string());
                }
            }
            LineOutcome::Event(parsed) => {
                if parsed.continuation && continues_last(&out.events, &parsed) {
                    continue;
                }
                out.events.push(judge_parsed(parsed));
            }
        }
    }
    out
}

/// Is `parsed` a detail line of the latest SXid event of the same switch and code?
fn continues_last(events: &[KernelEvent], parsed: &ParsedEvent) -> bool {
    events
        .iter()
        .rev()
        .find(|e| e.kind == KernelEventKind::Sxid && e.pci == parsed.pci)
        .is_some_and(|e| e.code == parsed.code)
}

fn judge_parsed(p: ParsedEvent) -> KernelEvent {
    let rule = match p.kind {
        KernelEventKind::Xid => refine_xid(xid::classify(p.code), &p.message),
        KernelEventKind::Sxid => xid::classify_sxid(p.code, p.fatal),
    };
    KernelEvent {
        kind: p.kind,
        pci: p.pci,
        code: p.code,
        message: p.message,
        timestamp: p.timestamp,
        action: rule.action,
        meaning: rule.meaning,
        fatal: p.fatal,
    }
}

/// Xid 154 says which recovery the GPU now needs: `… changed from 0x0 (None) to 0x1 (GPU Reset Required)`.
fn refine_xid(rule: xid::XidRule, message: &str) -> xid::XidRule {
    if rule.code != 154 {
        return rule;
    }
    let Some(at) = message.rfind("to 0x") else {
        return rule;
    };
    let digits: String = message[at + 5..]
        .chars()
        .take_while(char::is_ascii_hexdigit)
        .collect();
    let (action, meaning) = match u32::from_str_radix(&digits, 16) {
        Ok(0) => (XidAction::Note, "GPU recovery action cleared (none needed)"),
        Ok(1) => (XidAction::Reset, "GPU recovery action: GPU reset required"),
        Ok(2) => (XidAction::Fail, "GPU recovery action: node reboot required"),
        Ok(3) => (
            XidAction::Fail,
            "GPU recovery action: drain peer-to-peer traffic",
        ),
        Ok(4) => (
            XidAction::Reset,
            "GPU recovery action: drain peer-to-peer traffic and reset the GPU",
        ),
        _ => return rule,
    };
    xid::XidRule {
        code: rule.code,
        action,
        meaning: meaning.to_string(),
    }
}

/// The events of `after` that were not in `before`: a multiset difference on (kind, PCI, code, message,
/// timestamp), so the same line logged again counts again, and events that rotated or wrapped out of the ring
/// buffer between the scans are not an issue. Both scans must read the same source (dmesg timestamps restart
/// at boot: a reboot between the scans can hide a repeat at the very same second).
pub fn new_events(before: &KernelScan, after: &KernelScan) -> Vec<KernelEvent> {
    let mut seen: HashMap<_, usize> = HashMap::new();
    for e in &before.events {
        *seen.entry(e.identity()).or_default() += 1;
    }
    after
        .events
        .iter()
        .filter(|e| match seen.get_mut(&e.identity()) {
            Some(n) if *n > 0 => {
                *n -= 1;
                false
            }
            _ => true,
        })
        .cloned()
        .collect()
}

/// Checks for kernel log events: a failing `kernel.xid`/`kernel.sxid` check per event whose action fails the
/// node and a note per noted one (subject: `subject_prefix` followed by the PCI address; measured: the code;
/// threshold: the catalog action), or one passing `kernel.events` check (subject `{subject_prefix}node`) when
/// there are none.
pub fn judge_kernel_events(events: &[KernelEvent], subject_prefix: &str) -> Vec<Check> {
    if events.is_empty() {
        return vec![Check::pass(
            "kernel.events",
            &format!("{subject_prefix}node"),
            0,
            Some(json!(0)),
            "no Xid or SXid events in the kernel log",
        )];
    }
    events
        .iter()
        .map(|e| {
            let status = if e.fails() {
                CheckStatus::Fail
            } else {
                CheckStatus::Note
            };
            let name = match e.kind {
                KernelEventKind::Xid => "kernel.xid",
                KernelEventKind::Sxid => "kernel.sxid",
            };
            let severity = match e.fatal {
                Some(true) => " (fatal)",
                Some(false) => " (non-fatal)",
                None => "",
            };
            let at = e
                .timestamp
                .as_deref()
                .map(|t| format!(" at {t}"))
                .unwrap_or_default();
            Check::new(
                name,
                &format!("{subject_prefix}{}", e.pci),
                status,
                e.code,
                Some(json!(format!("{:?}", e.action).to_lowercase())),
                &format!(
                    "{} {}{severity}{at}: {}; log: {}",
                    e.kind.label(),
                    e.code,
                    e.meaning,
                    shorten(&e.message, 160)
                ),
            )
        })
        .collect()
}

/// A note when a scan found Xid/SXid lines it could not read (they are not judged, so a human should look).
pub fn judge_unparsed(scan: &KernelScan, subject_prefix: &str) -> Option<Check> {
    (scan.unparsed > 0).then(|| {
        Check::new(
            "kernel.unparsed",
            &format!("{subject_prefix}node"),
            CheckStatus::Note,
            scan.unparsed,
            None,
            &format!(
                "kernel log lines mention an Xid or SXid but could not be read; first: {}",
                shorten(scan.unparsed_lines.first().map_or("", String::as_str), 160)
            ),
        )
    })
}

fn shorten(s: &str, max_chars: usize) -> String {
    if s.chars().count() > max_chars {
        format!("{}…", s.chars().take(max_chars).collect::<String>())
    } else {
        s.to_string()
    }
}
