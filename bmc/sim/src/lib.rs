//! kiln-bmc-sim: a fleet of simulated BMCs speaking real Redfish over HTTPS on loopback, one port and one
//! self-signed certificate per BMC, with vendor profiles ([`profile`]), a power state machine with delays and
//! fault knobs ([`state`]). Power-on, boot override and virtual media changes are published to subscribers
//! ([`SimFleet::subscribe`]) so a node simulator can react. [`hostile`] serves deliberately broken answers and
//! [`links`] links that point away from the BMC for client robustness tests, [`bench`] times kiln's fleet sweep
//! against the fleet, and [`qemu`] puts a QEMU VM behind a BMC (power over QMP; the `kiln-bmc-sim` binary, used
//! by the imaging E2E).

pub mod bench;
pub mod fleet;
pub mod hostile;
pub mod ipmi;
pub mod links;
pub mod profile;
pub mod qemu;
pub mod redfish;
pub mod server;
pub mod state;

pub use fleet::{SimEndpoint, SimFleet, SimFleetConfig};
pub use state::{Faults, SimBmc, SimEvent, SimEventKind, Timing};

/// Why the simulator could not start.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// A listener could not be bound.
    #[error("cannot bind 127.0.0.1:{port}")]
    Bind {
        /// The port asked for (0: any).
        port: u16,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// `base_port + count` does not fit in a port number.
    #[error("ports {base_port}+{count} run past 65535")]
    PortRange {
        /// First port.
        base_port: u16,
        /// Number of BMCs.
        count: usize,
    },
    /// Certificate generation failed.
    #[error("cannot generate a self-signed certificate: {0}")]
    Certificate(String),
    /// TLS configuration failed.
    #[error("cannot configure TLS")]
    Tls(#[source] rustls::Error),
}
