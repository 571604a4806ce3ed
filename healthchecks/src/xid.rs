//! XID and NVSwitch SXid event catalogs: what each event means and what kiln does about it, as data
//! (`profiles/xid.toml`, `profiles/sxid.toml`). Kernel log lines are read by [`crate::kernlog`].

use std::sync::OnceLock;

use serde::{Deserialize, Serialize};

const BUILTIN_XIDS: &str = include_str!("../profiles/xid.toml");
const BUILTIN_SXIDS: &str = include_str!("../profiles/sxid.toml");

/// What an XID or SXid event means for the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum XidAction {
    /// Count it; does not fail a run on its own.
    Note,
    /// Fail the run.
    Fail,
    /// Fail; the GPU needs a reset before a retest.
    Reset,
    /// Fail; hardware replacement likely.
    Rma,
}

impl XidAction {
    /// True when the event fails the run.
    pub fn fails(self) -> bool {
        self != XidAction::Note
    }
}

/// One catalog entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct XidRule {
    /// XID number.
    pub code: u64,
    /// What kiln does about it.
    pub action: XidAction,
    /// What it means, for humans.
    pub meaning: String,
}

#[derive(Debug, Deserialize)]
struct XidFile {
    xid: Vec<XidRule>,
}

#[derive(Debug, Deserialize)]
struct SxidFile {
    sxid: Vec<XidRule>,
}

fn catalog() -> &'static [XidRule] {
    static CATALOG: OnceLock<Vec<XidRule>> = OnceLock::new();
    CATALOG.get_or_init(|| match toml::from_str::<XidFile>(BUILTIN_XIDS) {
        Ok(file) => file.xid,
        Err(err) => {
            // The table ships inside the binary and a unit test parses it, so this is unreachable in a
            // tested build; an empty table still fails every XID (unknown XIDs fail).
            tracing::error!(error = %err, "built-in XID table is malformed");
            Vec::new()
        }
    })
}

/// The rule for an XID; unlisted XIDs fail as `unknown XID`.
pub fn classify(code: u64) -> XidRule {
    catalog()
        .iter()
        .find(|r| r.code == code)
        .cloned()
        .unwrap_or(XidRule {
            code,
            action: XidAction::Fail,
            meaning: "unknown XID (not in kiln's catalog)".to_string(),
        })
}

fn sxid_catalog() -> &'static [XidRule] {
    static CATALOG: OnceLock<Vec<XidRule>> = OnceLock::new();
    CATALOG.get_or_init(|| match toml::from_str::<SxidFile>(BUILTIN_SXIDS) {
        Ok(file) => file.sxid,
        Err(err) => {
            // Tested like the XID table; an empty table still fails every SXid whose line says Fatal or
            // states no severity.
            tracing::error!(error = %err, "built-in SXid table is malformed");
            Vec::new()
        }
    })
}

/// The rule for an NVSwitch SXid, given the severity its log line states (`Some(true)` for `Fatal`,
/// `Some(false)` for `Non-fatal`, `None` when the line says neither).
///
/// A listed SXid takes the catalog's action, raised to `fail` when the line says Fatal. An unlisted SXid fails
/// when Fatal, is a note when Non-fatal, and fails when the severity is not stated (unknown is not healthy).
pub fn classify_sxid(code: u64, fatal: Option<bool>) -> XidRule {
    match sxid_catalog().iter().find(|r| r.code == code) {
        Some(rule) if fatal == Some(true) && !rule.action.fails() => XidRule {
            code,
            action: XidAction::Fail,
            meaning: format!("{} (reported fatal)", rule.meaning),
        },
        Some(rule) => rule.clone(),
        None => {
            let (action, meaning) = match fatal {
                Some(true) => (XidAction::Fail, "unknown SXid reported fatal"),
                Some(false) => (XidAction::Note, "unknown SXid reported non-fatal"),
                None => (XidAction::Fail, "unknown SXid with no stated severity"),
            };
            XidRule {
                code,
                action,
                meaning: format!("{meaning} (not in kiln's catalog)"),
            }
        }
    }
}

/// XID numbers in kernel log lines written by the NVIDIA driver (`NVRM: Xid (PCI:0000:18:00): 79, pid=…`).
/// Other lines (SXid lines included) are ignored; a line that mentions an Xid but cannot be read is reported
/// as XID 999 (unknown, failing). [`crate::kernlog::scan`] gives the full events.
pub fn kernel_log_xids(lines: &[String]) -> Vec<u64> {
    use crate::kernlog::{KernelEventKind, LineOutcome, parse_line};
    lines
        .iter()
        .filter_map(|line| match parse_line(line) {
            LineOutcome::Event(e) if e.kind == KernelEventKind::Xid => Some(e.code),
            LineOutcome::Unparsed(KernelEventKind::Xid) => Some(999),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_table_parses_and_maps_reference_actions() {
        let file: XidFile = toml::from_str(BUILTIN_XIDS).expect("built-in XID table parses");
        assert!(file.xid.len() >= 15);
        assert_eq!(classify(79).action, XidAction::Rma);
        assert_eq!(classify(13).action, XidAction::Note);
        assert_eq!(classify(48).action, XidAction::Reset);
        assert!(classify(9999).action.fails());
        assert_eq!(classify(149).action, XidAction::Fail);
        assert_eq!(classify(154).action, XidAction::Reset);
    }

    #[test]
    fn builtin_sxid_table_parses_and_severity_rules_hold() {
        let file: SxidFile = toml::from_str(BUILTIN_SXIDS).expect("built-in SXid table parses");
        assert!(file.sxid.len() >= 50);
        let mut codes: Vec<u64> = file.sxid.iter().map(|r| r.code).collect();
        codes.sort_unstable();
        codes.dedup();
        assert_eq!(codes.len(), file.sxid.len(), "each SXid is listed once");
        assert_eq!(classify_sxid(11012, Some(false)).action, XidAction::Note);
        assert_eq!(classify_sxid(11012, Some(true)).action, XidAction::Fail);
        assert_eq!(classify_sxid(20034, Some(true)).action, XidAction::Reset);
        assert_eq!(classify_sxid(65000, Some(true)).action, XidAction::Fail);
        assert_eq!(classify_sxid(65000, Some(false)).action, XidAction::Note);
        assert_eq!(classify_sxid(65000, None).action, XidAction::Fail);
    }

    #[test]
    fn kernel_log_xid_lines_are_read() {
        let lines: Vec<String> = [
            "[  812.123] NVRM: Xid (PCI:0000:18:00): 79, pid=4242, name=gpu_burn, GPU has fallen off the bus.",
            "[  813.000] nvidia-nvswitch0: link up",
            "NVRM: Xid (PCI:0000:2a:00): garbled",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        assert_eq!(kernel_log_xids(&lines), vec![79, 999]);
    }
}
