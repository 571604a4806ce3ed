//! The store's error type.

use crate::secret::SecretError;
use crate::state::NodeState;

/// Why a store operation failed. Nothing is changed when one is returned.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database URL is not one kiln understands.
    #[error("database URL {url:?} is not sqlite://PATH, a .db path, or postgres://…")]
    BadUrl {
        /// The URL, password redacted.
        url: String,
    },
    /// Could not connect.
    #[error("cannot open the inventory database {url}")]
    Connect {
        /// The URL, password redacted.
        url: String,
        /// The driver's error.
        #[source]
        source: sqlx::Error,
    },
    /// A migration failed.
    #[error("cannot migrate the inventory database")]
    Migrate(#[source] sqlx::migrate::MigrateError),
    /// A query failed.
    #[error("database error while {op}")]
    Database {
        /// What the store was doing.
        op: &'static str,
        /// The driver's error.
        #[source]
        source: sqlx::Error,
    },
    /// No node has that serial or id.
    #[error("no node {0}")]
    NodeNotFound(String),
    /// No hall by that name or id.
    #[error("no hall {0}")]
    HallNotFound(String),
    /// No lease with that id.
    #[error("no lease {0}")]
    LeaseNotFound(i64),
    /// The lease is not active (already released).
    #[error("lease {0} is not active")]
    LeaseNotActive(i64),
    /// The hall already has an active lease.
    #[error("hall {hall} already has an active lease")]
    HallAlreadyLeased {
        /// The hall.
        hall: String,
    },
    /// The hall's verified nodes do not satisfy the acceptance rule; nothing changed.
    #[error(
        "hall {hall} cannot be leased: {verified} of {total} nodes verified, the acceptance rule needs {required}; not ready: {}",
        shortfall_text(shortfall)
    )]
    LeaseRefused {
        /// The hall.
        hall: String,
        /// Nodes available for the lease.
        verified: i64,
        /// Nodes in the hall.
        total: i64,
        /// Nodes the rule requires.
        required: i64,
        /// The nodes that are not available, as `serial (state)`.
        shortfall: Vec<String>,
    },
    /// A request that cannot be carried out as asked.
    #[error("{0}")]
    Invalid(String),
    /// The lifecycle diagram has no such arrow.
    #[error("node {serial}: transition {from} → {to} is not allowed")]
    TransitionNotAllowed {
        /// The node.
        serial: String,
        /// State the caller expected the node to be in.
        from: NodeState,
        /// Requested state.
        to: NodeState,
    },
    /// The node is no longer in the state the caller saw (someone else moved it).
    #[error("node {serial} is in state {actual}, not {expected} as expected; nothing changed")]
    StateChanged {
        /// The node.
        serial: String,
        /// State the caller expected.
        expected: NodeState,
        /// State found.
        actual: NodeState,
    },
    /// The configured secret key is not the one this inventory's secrets were sealed with.
    #[error(
        "the secret key does not match the one this inventory's BMC passwords were sealed with (check KILN_SECRET_KEY or --key-file)"
    )]
    WrongSecretKey,
    /// A secret could not be sealed or opened.
    #[error(transparent)]
    Secret(#[from] SecretError),
    /// A stored value is not valid.
    #[error("stored {what} is not valid: {detail}")]
    Corrupt {
        /// Which value.
        what: String,
        /// What is wrong with it.
        detail: String,
    },
    /// A manifest could not be imported; nothing was written.
    #[error(transparent)]
    Manifest(#[from] crate::manifest::ManifestErrors),
}

fn shortfall_text(shortfall: &[String]) -> String {
    const SHOWN: usize = 20;
    let mut text = shortfall
        .iter()
        .take(SHOWN)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    if shortfall.len() > SHOWN {
        text.push_str(&format!(" and {} more", shortfall.len() - SHOWN));
    }
    text
}

impl StoreError {
    /// A `map_err` adapter naming the operation.
    pub(crate) fn db(op: &'static str) -> impl FnOnce(sqlx::Error) -> StoreError {
        move |source| StoreError::Database { op, source }
    }
}
