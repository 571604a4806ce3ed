//! Typed BMC errors. The lifecycle engine asks [`BmcError::is_transient`] to decide whether a retry can help.

use std::time::Duration;

/// Everything that can go wrong talking to one BMC. `Display` says what failed and on which BMC; the underlying
/// cause, where there is one, is the `source()`.
#[derive(Debug, thiserror::Error)]
pub enum BmcError {
    /// The BMC did not answer in time (connect, request or a whole operation).
    #[error("BMC {addr} did not answer within {timeout:?}")]
    Timeout {
        /// The BMC's address as configured.
        addr: String,
        /// The limit that was exceeded.
        timeout: Duration,
    },
    /// The BMC could not be reached or dropped the connection.
    #[error("BMC {addr}: connection failed")]
    Connect {
        /// The BMC's address as configured.
        addr: String,
        /// The transport error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The BMC refused the credentials (HTTP 401, IPMI RAKP failure).
    #[error("BMC {addr} rejected the credentials (tried {tried})")]
    Auth {
        /// The BMC's address as configured.
        addr: String,
        /// The authentication methods tried, in words (`session login, then basic auth`).
        tried: &'static str,
    },
    /// The BMC presented a TLS certificate other than the one pinned for it.
    #[error("BMC {addr} presented certificate {actual}, but {expected} is pinned")]
    CertificateMismatch {
        /// The BMC's address as configured.
        addr: String,
        /// The pinned SHA-256 fingerprint (hex).
        expected: String,
        /// The fingerprint the BMC presented (hex).
        actual: String,
    },
    /// This BMC does not offer what was asked (no such reset type, no virtual media, …).
    #[error("BMC {addr} does not support {what}")]
    Unsupported {
        /// The BMC's address as configured.
        addr: String,
        /// What was asked for.
        what: String,
    },
    /// The BMC is busy or overloaded (HTTP 503/429, session limit, IPMI node busy); retrying later may work.
    #[error("BMC {addr} is busy: {detail}")]
    Busy {
        /// The BMC's address as configured.
        addr: String,
        /// What the BMC said.
        detail: String,
    },
    /// The BMC refused the request (HTTP 4xx/5xx or an IPMI completion code) with the given detail.
    #[error("BMC {addr} refused {operation} with status {status}: {detail}")]
    Rejected {
        /// The BMC's address as configured.
        addr: String,
        /// What kiln was doing.
        operation: String,
        /// HTTP status or IPMI completion code.
        status: u16,
        /// The BMC's message, if it gave one.
        detail: String,
    },
    /// The BMC answered something kiln cannot read (garbage JSON, malformed packet, a redirect, an oversized body).
    #[error("BMC {addr} sent a response kiln cannot read: {detail}")]
    Protocol {
        /// The BMC's address as configured.
        addr: String,
        /// What was wrong with the answer.
        detail: String,
    },
    /// A long-running BMC task ended in failure.
    #[error("BMC {addr}: task {task} ended in state {state}")]
    TaskFailed {
        /// The BMC's address as configured.
        addr: String,
        /// The task monitor URI.
        task: String,
        /// The final task state.
        state: String,
    },
    /// kiln's own configuration for this BMC is unusable (bad URL, bad fingerprint).
    #[error("BMC {addr} is misconfigured: {detail}")]
    Config {
        /// The BMC's address as configured.
        addr: String,
        /// What is wrong.
        detail: String,
    },
}

impl BmcError {
    /// Whether retrying the same operation later may succeed. Timeouts, dropped connections, busy BMCs and
    /// server-side 5xx answers are transient; bad credentials, a certificate mismatch, unsupported features,
    /// unreadable answers and 4xx refusals are permanent until someone changes something.
    pub fn is_transient(&self) -> bool {
        match self {
            BmcError::Timeout { .. } | BmcError::Connect { .. } | BmcError::Busy { .. } => true,
            BmcError::Rejected { status, .. } => *status >= 500,
            BmcError::Auth { .. }
            | BmcError::CertificateMismatch { .. }
            | BmcError::Unsupported { .. }
            | BmcError::Protocol { .. }
            | BmcError::TaskFailed { .. }
            | BmcError::Config { .. } => false,
        }
    }

    /// A short machine-friendly name of the error kind, for summaries and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            BmcError::Timeout { .. } => "timeout",
            BmcError::Connect { .. } => "connect",
            BmcError::Auth { .. } => "auth",
            BmcError::CertificateMismatch { .. } => "certificate_mismatch",
            BmcError::Unsupported { .. } => "unsupported",
            BmcError::Busy { .. } => "busy",
            BmcError::Rejected { .. } => "rejected",
            BmcError::Protocol { .. } => "protocol",
            BmcError::TaskFailed { .. } => "task_failed",
            BmcError::Config { .. } => "config",
        }
    }
}
