//! Remediation policy as data: for each failure class, a ladder of actions tried in order, one per attempt.
//! When the ladder is used up the node is quarantined with the reason; nothing retries forever.
//!
//! A policy file (TOML) overrides the default ladders per class:
//! ```toml
//! [ladders]
//! bmc_unreachable = ["retry", "retry", "quarantine"]
//! burn_in = ["rerun_health", "quarantine"]
//! wipe = ["retry", "power_cycle", "next_method", "quarantine"]
//! ```

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::outcome::FailureClass;

/// One remediation step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Go back to the state that failed and do it again.
    Retry,
    /// Power-cycle the server through its BMC, then go back to the state that failed.
    PowerCycle,
    /// Write the image again (back to imaging).
    Reimage,
    /// Run the health checks again (back to burn-in).
    RerunHealth,
    /// Wipe again, skipping the erase methods that failed on this node so far (`kiln.erase_skip=`); for any
    /// other failure, a retry.
    NextMethod,
    /// Give up: a technician must repair the node.
    Quarantine,
}

/// The ladders, by failure class.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Policy {
    /// Actions per class, tried in order; a class missing here is quarantined at once.
    pub ladders: BTreeMap<FailureClass, Vec<Action>>,
}

impl Default for Policy {
    fn default() -> Self {
        use Action::*;
        use FailureClass as C;
        let ladders = [
            (C::BmcUnreachable, vec![Retry, Retry, Quarantine]),
            (C::BmcAuth, vec![Quarantine]),
            (C::BootTimeout, vec![PowerCycle, PowerCycle, Quarantine]),
            (C::HardwareMismatch, vec![Retry, Quarantine]),
            (C::ImageWrite, vec![Retry, Reimage, Quarantine]),
            (C::HostKeyMismatch, vec![Reimage, Quarantine]),
            (C::PostImageCheck, vec![PowerCycle, Reimage, Quarantine]),
            (C::BurnIn, vec![RerunHealth, Quarantine]),
            (C::Fabric, vec![RerunHealth, Quarantine]),
            (C::SlaExceeded, vec![PowerCycle, Retry, Quarantine]),
            (C::HandlerDeadline, vec![PowerCycle, Retry, Quarantine]),
            (C::Wipe, vec![Retry, PowerCycle, NextMethod, Quarantine]),
            // The same node measured again is as slow again: a technician decides.
            (C::FleetOutlier, vec![Quarantine]),
        ]
        .into_iter()
        .collect();
        Policy { ladders }
    }
}

/// A policy file that could not be used.
#[derive(Debug, thiserror::Error)]
#[error("remediation policy: {0}")]
pub struct PolicyError(String);

impl Policy {
    /// The default ladders with the classes named in `text` (TOML) replaced.
    pub fn from_toml(text: &str) -> Result<Self, PolicyError> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct File {
            #[serde(default)]
            ladders: BTreeMap<FailureClass, Vec<Action>>,
        }
        let file: File = toml::from_str(text).map_err(|err| PolicyError(err.to_string()))?;
        let mut policy = Policy::default();
        for (class, ladder) in file.ladders {
            if ladder.is_empty() {
                return Err(PolicyError(format!(
                    "the ladder for {class} is empty (use [\"quarantine\"] to give up at once)"
                )));
            }
            policy.ladders.insert(class, ladder);
        }
        Ok(policy)
    }

    /// The action for the `attempt`-th remediation (0-based) of `class`: past the end of its ladder, quarantine.
    pub fn action(&self, class: FailureClass, attempt: u32) -> Action {
        self.ladders
            .get(&class)
            .and_then(|ladder| ladder.get(attempt as usize))
            .copied()
            .unwrap_or(Action::Quarantine)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ladders_end_in_quarantine() {
        let policy = Policy::default();
        for class in FailureClass::ALL {
            let mut attempt = 0;
            while policy.action(class, attempt) != Action::Quarantine {
                attempt += 1;
                assert!(attempt < 10, "{class} never quarantines");
            }
        }
        assert_eq!(
            policy.action(FailureClass::BmcUnreachable, 0),
            Action::Retry
        );
        assert_eq!(
            policy.action(FailureClass::BmcUnreachable, 2),
            Action::Quarantine
        );
        assert_eq!(policy.action(FailureClass::BmcAuth, 0), Action::Quarantine);
        // A failed erase: retry, power cycle (unfreezes ATA security), the next method, then quarantine.
        let wipe: Vec<Action> = (0..4)
            .map(|a| policy.action(FailureClass::Wipe, a))
            .collect();
        assert_eq!(
            wipe,
            vec![
                Action::Retry,
                Action::PowerCycle,
                Action::NextMethod,
                Action::Quarantine
            ]
        );
    }

    #[test]
    fn file_overrides_a_class_and_rejects_nonsense() {
        let policy = Policy::from_toml(
            "[ladders]\nburn_in = [\"rerun_health\", \"rerun_health\", \"quarantine\"]\n",
        )
        .expect("parses");
        assert_eq!(policy.action(FailureClass::BurnIn, 1), Action::RerunHealth);
        assert_eq!(policy.action(FailureClass::Fabric, 0), Action::RerunHealth);
        let err = Policy::from_toml("[ladders]\nburn_in = [\"pray\"]\n").expect_err("bad action");
        assert!(err.to_string().contains("pray"), "{err}");
        let err = Policy::from_toml("[ladders]\nmystery = [\"retry\"]\n").expect_err("bad class");
        assert!(err.to_string().contains("mystery"), "{err}");
        assert!(Policy::from_toml("[ladders]\nburn_in = []\n").is_err());
    }
}
