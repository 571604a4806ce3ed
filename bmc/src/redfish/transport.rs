//! HTTP plumbing for one Redfish BMC: TLS policy, authentication (session with basic fallback), bounded
//! bodies, no redirects, and mapping of HTTP outcomes onto [`BmcError`].

use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderValue};
use reqwest::{Method, StatusCode, Url};
use serde_json::Value;
use tracing::debug;

use super::model::{ErrorBody, parse_resource};
use super::tls::{CertFingerprint, TlsPolicy, client_config};
use crate::{BmcError, Credentials, Password};

/// How the client authenticates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMode {
    /// Create a session (`X-Auth-Token`); fall back to basic auth if the BMC has no session service.
    SessionOrBasic,
    /// Create a session; fail if the BMC cannot.
    Session,
    /// HTTP basic auth on every request (cheapest for one-off calls such as a fleet power sweep).
    Basic,
}

/// An authenticated session on the BMC.
#[derive(Debug, Clone)]
struct Session {
    token: Password,
    location: Option<String>,
}

/// What kiln currently uses to authenticate.
#[derive(Debug, Clone)]
enum AuthState {
    /// Nothing yet.
    None,
    /// A session.
    Session(Session),
    /// The BMC has no session service; basic auth it is.
    Basic,
}

/// A response whose body has been read within the size limit.
#[derive(Debug)]
pub(crate) struct RfResponse {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl RfResponse {
    /// The `ETag` header, if any.
    pub fn etag(&self) -> Option<String> {
        self.headers
            .get(reqwest::header::ETAG)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    }

    /// The `Location` header, if any.
    pub fn location(&self) -> Option<String> {
        self.headers
            .get(reqwest::header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    }
}

/// Settings of a [`Transport`].
#[derive(Debug, Clone)]
pub(crate) struct TransportConfig {
    pub base: Url,
    pub credentials: Credentials,
    pub tls: Option<TlsPolicy>,
    pub auth: AuthMode,
    pub request_timeout: Duration,
    pub max_body_bytes: usize,
}

/// One BMC's HTTP client.
#[derive(Debug)]
pub(crate) struct Transport {
    http: reqwest::Client,
    base: Url,
    addr: String,
    credentials: Credentials,
    auth_mode: AuthMode,
    auth: tokio::sync::Mutex<AuthState>,
    sessions_path: Mutex<Option<String>>,
    pinned: Option<CertFingerprint>,
    seen_fingerprint: Option<Arc<Mutex<Option<CertFingerprint>>>>,
    request_timeout: Duration,
    max_body_bytes: usize,
}

impl Transport {
    /// Builds the HTTP client for one BMC. `https` needs a TLS policy; `http` is allowed for tests and labs.
    pub(crate) fn new(config: TransportConfig) -> Result<Self, BmcError> {
        let addr = match config.base.port_or_known_default() {
            Some(port) => format!("{}:{port}", config.base.host_str().unwrap_or("?")),
            None => config.base.to_string(),
        };
        let cfg_err = |detail: String| BmcError::Config {
            addr: addr.clone(),
            detail,
        };
        // reqwest's rustls needs a process provider even for plain http; install kiln's one (ring).
        super::tls::crypto_provider();
        let mut builder = reqwest::Client::builder()
            // A redirect could send credentials elsewhere: refuse them and report.
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .timeout(config.request_timeout)
            .connect_timeout(config.request_timeout)
            .pool_max_idle_per_host(2)
            .user_agent("kiln-bmc");
        let mut seen_fingerprint = None;
        let mut pinned = None;
        match (config.base.scheme(), config.tls) {
            ("http", _) => {}
            ("https", Some(policy)) => {
                let (tls, seen) = client_config(policy).map_err(|err| cfg_err(err.to_string()))?;
                builder = builder.use_preconfigured_tls(tls);
                seen_fingerprint = Some(seen);
                if let TlsPolicy::Pinned(fingerprint) = policy {
                    pinned = Some(fingerprint);
                }
            }
            ("https", None) => {
                return Err(cfg_err(
                    "https without a pinned certificate fingerprint; probe and pin it, or choose insecure".into(),
                ));
            }
            (scheme, _) => return Err(cfg_err(format!("unsupported URL scheme {scheme:?}"))),
        }
        let http = builder
            .build()
            .map_err(|err| cfg_err(format!("cannot build HTTP client: {err}")))?;
        Ok(Transport {
            http,
            base: config.base,
            addr,
            credentials: config.credentials,
            auth_mode: config.auth,
            auth: tokio::sync::Mutex::new(AuthState::None),
            sessions_path: Mutex::new(None),
            pinned,
            seen_fingerprint,
            request_timeout: config.request_timeout,
            max_body_bytes: config.max_body_bytes,
        })
    }

    /// The BMC's address, for errors and logs.
    pub(crate) fn addr(&self) -> &str {
        &self.addr
    }

    /// A protocol error on this BMC.
    pub(crate) fn protocol(&self, detail: impl Into<String>) -> BmcError {
        BmcError::Protocol {
            addr: self.addr.clone(),
            detail: detail.into(),
        }
    }

    /// Tells the transport where the sessions collection lives (from the service root).
    pub(crate) fn set_sessions_path(&self, path: Option<String>) {
        if let Ok(mut slot) = self.sessions_path.lock() {
            *slot = path;
        }
    }

    /// Resolves a link from the BMC (`@odata.id`, action target, `Location` of a session or task monitor) to a
    /// URL on this BMC, or refuses it with an error naming the link.
    ///
    /// The link is resolved against the BMC's base URL (RFC 3986, as a browser would), and the result must have
    /// the BMC's scheme, host and port and no user information: a scheme-relative `//other-host/x`, an absolute
    /// URL to another port, a downgrade to `http`, or `https://bmc@evil/` would otherwise carry kiln's
    /// credentials elsewhere. Before resolving, links with a backslash or a control character are refused (the
    /// URL parser reads `\` as `/` and drops tabs and newlines, so `/\host` and `/<tab>/host` are `//host`), and
    /// so are encoded slashes and backslashes in the path (`/%2F%2Fhost`, `%5C`), which a server or proxy behind
    /// the BMC's address may decode into the same tricks. Redfish links never need any of these.
    pub(crate) fn resolve(&self, link: &str) -> Result<Url, BmcError> {
        let trimmed = link.trim();
        let refuse = |why: String| {
            self.protocol(format!(
                "refused link {link:?}: {why}; kiln sends requests and credentials only to the BMC at {}",
                origin(&self.base)
            ))
        };
        if trimmed.is_empty() {
            return Err(refuse("it is empty".into()));
        }
        if trimmed.chars().any(|c| c == '\\' || c.is_control()) {
            return Err(refuse(
                "it contains a backslash or a control character".into(),
            ));
        }
        let path_part = trimmed.split(['?', '#']).next().unwrap_or_default();
        let lower = path_part.to_ascii_lowercase();
        if lower.contains("%2f") || lower.contains("%5c") {
            return Err(refuse(
                "its path contains an encoded slash or backslash (%2F, %5C)".into(),
            ));
        }
        let mut url = self
            .base
            .join(trimmed)
            .map_err(|err| refuse(format!("it cannot be resolved: {err}")))?;
        if !url.username().is_empty() || url.password().is_some() {
            return Err(refuse("it carries user information (user@)".into()));
        }
        if url.scheme() != self.base.scheme()
            || url.host() != self.base.host()
            || url.port_or_known_default() != self.base.port_or_known_default()
        {
            return Err(refuse(format!(
                "it resolves to {}, not the BMC",
                origin(&url)
            )));
        }
        url.set_fragment(None);
        Ok(url)
    }

    /// Sends a request without authentication (service root, session login).
    pub(crate) async fn send_anonymous(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<RfResponse, BmcError> {
        let url = self.resolve(path)?;
        let mut request = self.http.request(method, url);
        if let Some(body) = body {
            request = request.json_body(body);
        }
        self.execute(request).await
    }

    /// Sends an authenticated request: logs in first if needed, and logs in again once if the session expired.
    pub(crate) async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        if_match: Option<&str>,
    ) -> Result<RfResponse, BmcError> {
        let url = self.resolve(path)?;
        for attempt in 0..2 {
            let auth = self.current_auth().await?;
            let mut request = self.http.request(method.clone(), url.clone());
            request = match &auth {
                AuthState::Session(session) => {
                    request.header("X-Auth-Token", session.token.expose())
                }
                _ => request.basic_auth(
                    &self.credentials.user,
                    Some(self.credentials.password.expose()),
                ),
            };
            if let Some(body) = body {
                request = request.json_body(body);
            }
            if let Some(tag) = if_match {
                request = request.header(reqwest::header::IF_MATCH, tag);
            }
            let response = self.execute(request).await?;
            if response.status == StatusCode::UNAUTHORIZED
                && attempt == 0
                && matches!(auth, AuthState::Session(_))
            {
                debug!(bmc = %self.addr, "session rejected, logging in again");
                *self.auth.lock().await = AuthState::None;
                continue;
            }
            return Ok(response);
        }
        Err(BmcError::Auth {
            addr: self.addr.clone(),
            tried: "a session, twice",
        })
    }

    /// Sends a request and checks the status: 2xx is returned, everything else becomes a typed error.
    pub(crate) async fn send_ok(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        if_match: Option<&str>,
        operation: &str,
    ) -> Result<RfResponse, BmcError> {
        let response = self.send(method, path, body, if_match).await?;
        self.check_status(response, operation)
    }

    /// GETs a resource and parses it leniently.
    pub(crate) async fn get<T: serde::de::DeserializeOwned + Default>(
        &self,
        path: &str,
    ) -> Result<(T, RfResponse), BmcError> {
        let response = self
            .send_ok(Method::GET, path, None, None, &format!("GET {path}"))
            .await?;
        let parsed = parse_resource(&response.body)
            .map_err(|err| self.protocol(format!("GET {path}: {err}")))?;
        Ok((parsed, response))
    }

    /// Maps a non-2xx response onto an error.
    pub(crate) fn check_status(
        &self,
        response: RfResponse,
        operation: &str,
    ) -> Result<RfResponse, BmcError> {
        let status = response.status;
        if status.is_success() {
            return Ok(response);
        }
        let detail = parse_resource::<ErrorBody>(&response.body)
            .ok()
            .and_then(|body| body.summary())
            .unwrap_or_else(|| {
                status
                    .canonical_reason()
                    .unwrap_or("no reason given")
                    .to_string()
            });
        Err(match status {
            StatusCode::UNAUTHORIZED => BmcError::Auth {
                addr: self.addr.clone(),
                tried: match self.auth_mode {
                    AuthMode::Basic => "basic auth",
                    AuthMode::Session => "a session",
                    AuthMode::SessionOrBasic => {
                        "a session, or basic auth where sessions are refused"
                    }
                },
            },
            StatusCode::SERVICE_UNAVAILABLE | StatusCode::TOO_MANY_REQUESTS => BmcError::Busy {
                addr: self.addr.clone(),
                detail,
            },
            s if s.is_redirection() => {
                let target = response.location().unwrap_or_default();
                self.protocol(format!("{operation}: redirect ({s}) to {target:?} refused"))
            }
            s => BmcError::Rejected {
                addr: self.addr.clone(),
                operation: operation.to_string(),
                status: s.as_u16(),
                detail,
            },
        })
    }

    /// Runs a request and reads its body within the size limit.
    async fn execute(&self, request: reqwest::RequestBuilder) -> Result<RfResponse, BmcError> {
        let mut response = request.send().await.map_err(|err| self.map_reqwest(err))?;
        let status = response.status();
        let headers = response.headers().clone();
        let limit = self.max_body_bytes;
        if let Some(length) = response.content_length()
            && length > limit as u64
        {
            return Err(self.protocol(format!(
                "response body of {length} bytes exceeds the {limit}-byte limit"
            )));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|err| self.map_reqwest(err))?
        {
            if body.len() + chunk.len() > limit {
                return Err(self.protocol(format!("response body exceeds the {limit}-byte limit")));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(RfResponse {
            status,
            headers,
            body,
        })
    }

    /// Maps a transport error onto a typed error, recognizing a pinned-certificate mismatch.
    fn map_reqwest(&self, err: reqwest::Error) -> BmcError {
        if let (Some(expected), Some(seen)) = (self.pinned, &self.seen_fingerprint)
            && let Some(actual) = seen.lock().ok().and_then(|slot| *slot)
            && actual != expected
        {
            return BmcError::CertificateMismatch {
                addr: self.addr.clone(),
                expected: expected.to_string(),
                actual: actual.to_string(),
            };
        }
        if err.is_timeout() {
            return BmcError::Timeout {
                addr: self.addr.clone(),
                timeout: self.request_timeout,
            };
        }
        BmcError::Connect {
            addr: self.addr.clone(),
            source: Box::new(err),
        }
    }

    /// The authentication to use now, logging in if there is none yet.
    async fn current_auth(&self) -> Result<AuthState, BmcError> {
        let mut auth = self.auth.lock().await;
        if matches!(*auth, AuthState::None) {
            *auth = match self.auth_mode {
                AuthMode::Basic => AuthState::Basic,
                AuthMode::Session | AuthMode::SessionOrBasic => self.login().await?,
            };
        }
        Ok(auth.clone())
    }

    /// Creates a session, or decides on basic auth when the BMC has no session service and that is allowed.
    async fn login(&self) -> Result<AuthState, BmcError> {
        let path = self
            .sessions_path
            .lock()
            .ok()
            .and_then(|slot| slot.clone())
            .unwrap_or_else(|| "/redfish/v1/SessionService/Sessions".to_string());
        let body = serde_json::json!({
            "UserName": self.credentials.user,
            "Password": self.credentials.password.expose(),
        });
        let response = self
            .send_anonymous(Method::POST, &path, Some(&body))
            .await?;
        let status = response.status;
        let token = response
            .headers
            .get("X-Auth-Token")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        match (status, token) {
            (s, Some(token)) if s.is_success() => {
                let location = response.location();
                if let Some(location) = &location {
                    // Logout sends the session token there: a Location that leaves the BMC is refused now,
                    // loudly, rather than skipped silently at logout.
                    self.resolve(location)?;
                }
                debug!(bmc = %self.addr, "session created");
                Ok(AuthState::Session(Session {
                    token: Password::new(token),
                    location,
                }))
            }
            (StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN, _)
                if self.auth_mode == AuthMode::SessionOrBasic =>
            {
                // Some services (sushy-emulator with basic auth, older BMCs) guard the session endpoint itself
                // with basic auth: try it before concluding the credentials are wrong.
                self.basic_instead_of_session(&path).await
            }
            (StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN, _) => Err(BmcError::Auth {
                addr: self.addr.clone(),
                tried: "session login",
            }),
            (StatusCode::SERVICE_UNAVAILABLE | StatusCode::TOO_MANY_REQUESTS, _) => self
                .check_status(response, "session login")
                .map(|_| AuthState::None),
            _ if self.auth_mode == AuthMode::SessionOrBasic => {
                debug!(bmc = %self.addr, status = %status, "no usable session service, using basic auth");
                Ok(AuthState::Basic)
            }
            (s, None) if s.is_success() => {
                Err(self.protocol("session login answered without an X-Auth-Token"))
            }
            _ => self
                .check_status(response, "session login")
                .map(|_| AuthState::None),
        }
    }

    /// After a refused session login: a GET of the sessions collection with basic auth decides between basic
    /// auth and wrong credentials.
    async fn basic_instead_of_session(&self, sessions: &str) -> Result<AuthState, BmcError> {
        let url = self.resolve(sessions)?;
        let request = self.http.get(url).basic_auth(
            &self.credentials.user,
            Some(self.credentials.password.expose()),
        );
        let response = self.execute(request).await?;
        if response.status.is_success() {
            debug!(bmc = %self.addr, "session login refused but basic auth accepted; using basic auth");
            return Ok(AuthState::Basic);
        }
        match response.status {
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => Err(BmcError::Auth {
                addr: self.addr.clone(),
                tried: "session login, then basic auth",
            }),
            _ => self
                .check_status(response, "basic auth after a refused session login")
                .map(|_| AuthState::None),
        }
    }

    /// Deletes the session, if one exists. Failures are logged, not returned: the BMC expires it anyway.
    pub(crate) async fn logout(&self) {
        let state = std::mem::replace(&mut *self.auth.lock().await, AuthState::None);
        if let AuthState::Session(Session {
            token,
            location: Some(location),
        }) = state
        {
            let request = match self.resolve(&location) {
                Ok(url) => self.http.delete(url).header("X-Auth-Token", token.expose()),
                Err(err) => {
                    debug!(bmc = %self.addr, error = %err, "session location unusable");
                    return;
                }
            };
            if let Err(err) = self.execute(request).await {
                debug!(bmc = %self.addr, error = %err, "session logout failed");
            }
        }
    }

    /// Whether kiln currently holds a session (for tests and diagnostics).
    pub(crate) async fn has_session(&self) -> bool {
        matches!(*self.auth.lock().await, AuthState::Session(_))
    }
}

/// `scheme://host:port` of a URL, for errors.
fn origin(url: &Url) -> String {
    match (url.host_str(), url.port_or_known_default()) {
        (Some(host), Some(port)) => format!("{}://{host}:{port}", url.scheme()),
        (Some(host), None) => format!("{}://{host}", url.scheme()),
        _ => format!("{}:", url.scheme()),
    }
}

/// Adds a JSON body without reqwest's `json` feature (kiln serializes with serde_json itself).
trait JsonBody {
    fn json_body(self, body: &Value) -> Self;
}

impl JsonBody for reqwest::RequestBuilder {
    fn json_body(self, body: &Value) -> Self {
        self.header(
            reqwest::header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )
        .body(body.to_string())
    }
}
