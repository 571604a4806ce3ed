//! XID event catalog: what each XID means and what kiln does about it, as data (`profiles/xid.toml`).

use std::sync::OnceLock;

use serde::{Deserialize, Serialize};

const BUILTIN_XIDS: &str = include_str!("../profiles/xid.toml");

/// What an XID event means for the run.
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

/// XID numbers in kernel log lines written by the NVIDIA driver (`NVRM: Xid (PCI:0000:18:00): 79, pid=…`).
/// Other lines are ignored; a line whose number does not parse is reported as XID 999 (unknown, failing).
pub fn kernel_log_xids(lines: &[String]) -> Vec<u64> {
    lines
        .iter()
        .filter_map(|line| {
            let at = line.find("NVRM: Xid")?;
            let rest = &line[at + "NVRM: Xid".len()..];
            // The PCI address in parentheses, then `: N,`.
            let after = rest.find("):").map_or(rest, |i| &rest[i + 2..]);
            let digits: String = after
                .trim_start()
                .chars()
                .take_while(char::is_ascii_digit)
                .collect();
            Some(digits.parse().unwrap_or(999))
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
