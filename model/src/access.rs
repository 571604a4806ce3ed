//! API roles, tokens and hall acceptance rules: the inventory-side types of the web API's access and leasing.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// What an API token may do.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Everything.
    Admin,
    /// Node actions (power, reimage, drain, repair); no lease changes.
    Technician,
    /// Manifest imports and rack bring-up.
    Pipeline,
    /// Read-only, and only the nodes, reports and evidence of the lessee's own leased halls.
    Lessee,
}

impl Role {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Technician => "technician",
            Role::Pipeline => "pipeline",
            Role::Lessee => "lessee",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A role name kiln does not know.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown role {0:?} (expected admin, technician, pipeline or lessee)")]
pub struct UnknownRole(pub String);

impl FromStr for Role {
    type Err = UnknownRole;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "admin" => Ok(Role::Admin),
            "technician" => Ok(Role::Technician),
            "pipeline" => Ok(Role::Pipeline),
            "lessee" => Ok(Role::Lessee),
            _ => Err(UnknownRole(s.to_string())),
        }
    }
}

/// Who is calling, as established from a valid token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Principal {
    /// Token id (for audit; never the token itself).
    pub token_id: i64,
    /// The token's role.
    pub role: Role,
    /// For lessee tokens: the lessee's id and name.
    pub lessee: Option<(i64, String)>,
    /// Free-text label given at creation.
    pub label: Option<String>,
}

impl Principal {
    /// The actor name recorded in events: `token:<id>` plus the label when there is one.
    pub fn actor(&self) -> String {
        match &self.label {
            Some(label) => format!("token:{}:{label}", self.token_id),
            None => format!("token:{}", self.token_id),
        }
    }
}

/// When a hall may be leased.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "rule", rename_all = "snake_case")]
pub enum AcceptanceRule {
    /// Every node of the hall must be available (verified, not drained).
    AllNodes,
    /// At least this fraction (0–1] of the hall's nodes must be available; the rest are owed.
    MinVerifiedFraction {
        /// The fraction, e.g. 0.995.
        fraction: f64,
    },
}

impl AcceptanceRule {
    /// Whether `verified` of `total` nodes satisfies the rule.
    pub fn accepts(self, verified: i64, total: i64) -> bool {
        if total == 0 {
            return false;
        }
        match self {
            AcceptanceRule::AllNodes => verified == total,
            AcceptanceRule::MinVerifiedFraction { fraction } => {
                verified as f64 >= fraction * total as f64
            }
        }
    }

    /// The fewest verified nodes the rule accepts for a hall of `total`.
    pub fn required(self, total: i64) -> i64 {
        match self {
            AcceptanceRule::AllNodes => total,
            AcceptanceRule::MinVerifiedFraction { fraction } => {
                (fraction * total as f64).ceil() as i64
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules() {
        assert!(AcceptanceRule::AllNodes.accepts(10, 10));
        assert!(!AcceptanceRule::AllNodes.accepts(9, 10));
        assert!(!AcceptanceRule::AllNodes.accepts(0, 0));
        let rule = AcceptanceRule::MinVerifiedFraction { fraction: 0.995 };
        assert!(rule.accepts(995, 1000) && !rule.accepts(994, 1000));
        assert_eq!(rule.required(1000), 995);
        let json = serde_json::to_value(rule).ok();
        assert_eq!(
            json,
            Some(serde_json::json!({"rule": "min_verified_fraction", "fraction": 0.995}))
        );
        assert_eq!("Lessee".parse::<Role>(), Ok(Role::Lessee));
        assert!("root".parse::<Role>().is_err());
    }
}
