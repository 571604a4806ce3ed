//! A fleet of simulated BMCs in one process, each on its own loopback port.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use kiln_bmc::redfish::CertFingerprint;
use tokio::net::TcpListener;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::SimError;
use crate::profile::{self, VendorProfile};
use crate::redfish::{guard, router};
use crate::server::{SimCert, run_listener};
use crate::state::{SimBmc, SimEvent, Timing};

/// How to build a fleet.
#[derive(Debug, Clone)]
pub struct SimFleetConfig {
    /// Number of BMCs.
    pub count: usize,
    /// First Redfish port (BMC i listens on `base_port + i`); `None`: every BMC binds port 0.
    pub base_port: Option<u16>,
    /// Serve HTTPS with a self-signed certificate (else plain HTTP, for tests).
    pub tls: bool,
    /// One certificate per BMC (realistic) or one shared by the fleet (cheaper start for big benchmarks).
    pub cert_per_bmc: bool,
    /// User every BMC accepts.
    pub user: String,
    /// Password every BMC accepts.
    pub password: String,
    /// Hardware timing.
    pub timing: Timing,
    /// Profiles to cycle through (BMC i gets `profiles[i % len]`); empty: all known profiles.
    pub profiles: Vec<&'static VendorProfile>,
    /// How many BMCs (the first ones) also serve IPMI on UDP, on the same port number as their Redfish TCP
    /// port; `None`: all. A 10,000-BMC fleet with both halves needs 20,000 sockets, so benchmarks limit this.
    pub ipmi_count: Option<usize>,
}

impl Default for SimFleetConfig {
    fn default() -> Self {
        SimFleetConfig {
            count: 1,
            base_port: None,
            tls: true,
            cert_per_bmc: true,
            user: "admin".into(),
            password: "password".into(),
            timing: Timing::default(),
            profiles: Vec::new(),
            ipmi_count: None,
        }
    }
}

/// Where one simulated BMC can be reached.
#[derive(Debug, Clone)]
pub struct SimEndpoint {
    /// Index in the fleet.
    pub index: usize,
    /// Vendor profile name.
    pub profile: &'static str,
    /// `https://127.0.0.1:PORT` (or `http://`).
    pub redfish_url: String,
    /// Fingerprint of the BMC's certificate (`None` over plain HTTP).
    pub fingerprint: Option<CertFingerprint>,
    /// UDP port of the IPMI RMCP+ responder on 127.0.0.1, if this BMC serves IPMI.
    pub ipmi_port: Option<u16>,
    /// The BMC's state and fault knobs.
    pub bmc: Arc<SimBmc>,
}

/// A running fleet. Dropping it stops every BMC.
#[derive(Debug)]
pub struct SimFleet {
    endpoints: Vec<SimEndpoint>,
    events: broadcast::Sender<SimEvent>,
    cancel: CancellationToken,
}

impl SimFleet {
    /// Binds and starts every BMC; returns once all are listening.
    pub async fn start(config: SimFleetConfig) -> Result<Self, SimError> {
        let profiles = if config.profiles.is_empty() {
            profile::ALL.to_vec()
        } else {
            config.profiles.clone()
        };
        // A burst of power-ons across the fleet must not overflow the channel: a lagging subscriber (the
        // hall simulator) loses events, such as which device a one-time boot override named.
        let (events, _) = broadcast::channel(config.count.saturating_mul(4).max(4096));
        let cancel = CancellationToken::new();
        let mut routers: HashMap<&'static str, Router<Arc<SimBmc>>> = HashMap::new();
        let shared_cert = if config.tls && !config.cert_per_bmc {
            Some(SimCert::generate()?)
        } else {
            None
        };
        let shared_acceptor = shared_cert.as_ref().map(SimCert::acceptor).transpose()?;
        let mut endpoints = Vec::with_capacity(config.count);
        for index in 0..config.count {
            let profile = profiles[index % profiles.len()];
            let bmc = SimBmc::new(
                index,
                profile,
                &config.user,
                &config.password,
                config.timing,
                events.clone(),
            );
            let base = routers
                .entry(profile.name)
                .or_insert_with(|| router(profile))
                .clone();
            let app = base
                .with_state(bmc.clone())
                .layer(axum::middleware::from_fn_with_state(bmc.clone(), guard));
            let port = match config.base_port {
                Some(base_port) => u16::try_from(index)
                    .ok()
                    .and_then(|offset| base_port.checked_add(offset))
                    .ok_or(SimError::PortRange {
                        base_port,
                        count: config.count,
                    })?,
                None => 0,
            };
            let listener = TcpListener::bind(("127.0.0.1", port))
                .await
                .map_err(|source| SimError::Bind { port, source })?;
            let port = listener
                .local_addr()
                .map_err(|source| SimError::Bind { port, source })?
                .port();
            let (acceptor, fingerprint) = match (&shared_cert, &shared_acceptor, config.tls) {
                (Some(cert), Some(acceptor), _) => (Some(acceptor.clone()), Some(cert.fingerprint)),
                (_, _, true) => {
                    let cert = SimCert::generate()?;
                    (Some(cert.acceptor()?), Some(cert.fingerprint))
                }
                _ => (None, None),
            };
            let scheme = if config.tls { "https" } else { "http" };
            tokio::spawn(run_listener(
                listener,
                app,
                acceptor,
                bmc.clone(),
                cancel.clone(),
            ));
            let ipmi_port = if config.ipmi_count.is_none_or(|n| index < n) {
                // Same number as the TCP port when it is free for UDP, else any port.
                let server = match crate::ipmi::bind(port).await {
                    Ok(server) => server,
                    Err(_) => crate::ipmi::bind(0).await?,
                };
                let ipmi_port = server.port;
                tokio::spawn(server.run(bmc.clone(), cancel.clone()));
                Some(ipmi_port)
            } else {
                None
            };
            endpoints.push(SimEndpoint {
                index,
                profile: profile.name,
                redfish_url: format!("{scheme}://127.0.0.1:{port}"),
                fingerprint,
                ipmi_port,
                bmc,
            });
        }
        info!(
            count = config.count,
            tls = config.tls,
            "simulated BMC fleet started"
        );
        Ok(SimFleet {
            endpoints,
            events,
            cancel,
        })
    }

    /// The BMCs, in index order.
    pub fn endpoints(&self) -> &[SimEndpoint] {
        &self.endpoints
    }

    /// Subscribes to power-on, boot override and virtual media events of every BMC.
    pub fn subscribe(&self) -> broadcast::Receiver<SimEvent> {
        self.events.subscribe()
    }

    /// Stops every BMC (also done on drop).
    pub fn shutdown(&self) {
        self.cancel.cancel();
    }
}

impl Drop for SimFleet {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}
