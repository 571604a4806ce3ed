//! Stored times: milliseconds since the Unix epoch. The clocks themselves live in kiln-model.

use chrono::{DateTime, TimeZone, Utc};

pub use kiln_model::{Clock, SystemClock};

/// Milliseconds since the Unix epoch: how times are stored.
pub(crate) fn to_millis(at: DateTime<Utc>) -> i64 {
    at.timestamp_millis()
}

/// The inverse of [`to_millis`]; out-of-range values (never written by kiln) clamp to the epoch.
pub(crate) fn from_millis(ms: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(ms).single().unwrap_or_default()
}
