//! Naming a BMC to talk to (protocol, address, trust, credentials) and connecting to it: what the CLI and the
//! provisioner both need, so neither builds clients by hand.

use std::time::Duration;

use crate::redfish::{CertFingerprint, RedfishClient, RedfishConfig, TlsPolicy};
use crate::{Bmc, BmcError, Credentials};

/// Default IPMI RMCP+ port.
pub const IPMI_PORT: u16 = 623;

/// How to reach one BMC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// A Redfish service: URL and certificate trust (`None` only for `http://`).
    Redfish {
        /// `https://host[:port]`.
        url: String,
        /// Certificate trust.
        tls: Option<TlsPolicy>,
    },
    /// An IPMI-over-LAN BMC.
    Ipmi {
        /// Host name or address.
        host: String,
        /// UDP port.
        port: u16,
    },
}

impl Endpoint {
    /// A Redfish endpoint; `fingerprint` pins the certificate, `insecure` accepts any (labs), neither is only
    /// valid for `http://` URLs.
    pub fn redfish(url: &str, fingerprint: Option<&str>, insecure: bool) -> Result<Self, BmcError> {
        let config_err = |detail: String| BmcError::Config {
            addr: url.to_string(),
            detail,
        };
        let tls = match (fingerprint, insecure) {
            (Some(_), true) => {
                return Err(config_err(
                    "choose a fingerprint or insecure, not both".into(),
                ));
            }
            (Some(text), false) => Some(TlsPolicy::Pinned(
                text.parse::<CertFingerprint>()
                    .map_err(|err| config_err(err.to_string()))?,
            )),
            (None, true) => Some(TlsPolicy::Insecure),
            (None, false) => None,
        };
        let url = if url.contains("://") {
            url.to_string()
        } else {
            format!("https://{url}")
        };
        Ok(Endpoint::Redfish { url, tls })
    }

    /// An IPMI endpoint from `HOST[:PORT]` (`[v6addr]:port` also accepted).
    pub fn ipmi(text: &str) -> Result<Self, BmcError> {
        let bad = || BmcError::Config {
            addr: text.to_string(),
            detail: "expected HOST[:PORT]".into(),
        };
        let (host, port) = if let Some(rest) = text.strip_prefix('[') {
            let (host, tail) = rest.split_once(']').ok_or_else(bad)?;
            let port = match tail.strip_prefix(':') {
                Some(port) => port.parse().map_err(|_| bad())?,
                None if tail.is_empty() => IPMI_PORT,
                None => return Err(bad()),
            };
            (host.to_string(), port)
        } else {
            match text.rsplit_once(':') {
                Some((host, port)) if !host.contains(':') => {
                    (host.to_string(), port.parse().map_err(|_| bad())?)
                }
                _ => (text.to_string(), IPMI_PORT),
            }
        };
        if host.is_empty() {
            return Err(bad());
        }
        Ok(Endpoint::Ipmi { host, port })
    }
}

impl Endpoint {
    /// Trust on first use: for an `https` Redfish endpoint with no trust decision yet, fetches the certificate
    /// fingerprint, pins it, and returns it so the caller can record it (in the inventory). Returns `None` when
    /// there is nothing to pin (IPMI, `http`, or already pinned / insecure).
    pub async fn pin_on_first_use(
        &mut self,
        timeout: Duration,
    ) -> Result<Option<CertFingerprint>, BmcError> {
        let Endpoint::Redfish { url, tls } = self else {
            return Ok(None);
        };
        if tls.is_some() || !url.starts_with("https://") {
            return Ok(None);
        }
        let parsed = reqwest::Url::parse(url).map_err(|err| BmcError::Config {
            addr: url.clone(),
            detail: format!("bad URL: {err}"),
        })?;
        let host = parsed
            .host_str()
            .ok_or_else(|| BmcError::Config {
                addr: url.clone(),
                detail: "URL has no host".into(),
            })?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let port = parsed.port_or_known_default().unwrap_or(443);
        let fingerprint = crate::redfish::probe_fingerprint(&host, port, timeout).await?;
        *tls = Some(TlsPolicy::Pinned(fingerprint));
        Ok(Some(fingerprint))
    }
}

/// Connection settings that are not part of the address.
#[derive(Debug, Clone, Copy)]
pub struct ConnectOptions {
    /// Limit for one request.
    pub request_timeout: Duration,
}

impl Default for ConnectOptions {
    fn default() -> Self {
        ConnectOptions {
            request_timeout: Duration::from_secs(10),
        }
    }
}

/// A client for `endpoint`, ready to use (nothing is sent yet). Call [`Bmc::close`] when done.
pub fn connect(
    endpoint: &Endpoint,
    credentials: Credentials,
    options: ConnectOptions,
) -> Result<Box<dyn Bmc>, BmcError> {
    match endpoint {
        Endpoint::Redfish { url, tls } => {
            let mut config = RedfishConfig::new(url.clone(), credentials, *tls);
            config.request_timeout = options.request_timeout;
            Ok(Box::new(RedfishClient::new(config)?))
        }
        Endpoint::Ipmi { host, port } => Ok(Box::new(crate::ipmi::IpmiClient::new(
            host,
            *port,
            credentials,
            options.request_timeout,
        )?)),
    }
}
