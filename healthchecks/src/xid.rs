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
}
