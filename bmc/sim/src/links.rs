//! A hostile BMC whose links point away from it, for the test that kiln never sends a request (least of all its
//! credentials) anywhere but the BMC it was asked to talk to.
//!
//! [`LinkTrapBmc`] is a small but complete Redfish BMC over HTTPS (or plain HTTP) on loopback: service root,
//! session service, one system with a reset action. Exactly one of its links is hostile: a [`LinkKind`] (a
//! scheme-relative `//host`, backslash and encoded tricks, `user@` forms, another port or scheme) placed where
//! a [`LinkPlace`] says (the Systems link, the sessions link kiln posts the password to, a collection member,
//! a task monitor or a session's `Location`). Beside it runs a second listener, the "other host", that serves
//! the same honest BMC and records every request it gets: a client that follows the hostile link succeeds
//! there, so a test that asserts [`LinkTrapBmc::trap_hits`] is empty fails against such a client. The other
//! host holds the BMC's own certificate (an attacker who controls the BMC has its key), so certificate pinning
//! alone does not stop the request. When the BMC serves HTTPS, plain-HTTP requests to the BMC's own port (a
//! downgrade) are answered and recorded as trap hits too.

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use kiln_bmc::redfish::CertFingerprint;
use serde_json::json;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use crate::SimError;
use crate::server::{SimCert, serve_connection};

/// The BMC's password; a request body containing it means credentials were sent.
pub const PASSWORD: &str = "link-trap-password";

const ROOT: &str = "/redfish/v1/";
const SESSIONS: &str = "/redfish/v1/SessionService/Sessions";
const SESSION: &str = "/redfish/v1/SessionService/Sessions/1";
const SYSTEMS: &str = "/redfish/v1/Systems";
const SYSTEM: &str = "/redfish/v1/Systems/1";
const RESET: &str = "/redfish/v1/Systems/1/Actions/ComputerSystem.Reset";
const TASK: &str = "/redfish/v1/TaskService/Tasks/1";

/// The shape of the hostile link. `T` below is the other host (`127.0.0.1:TRAP_PORT`), `B` the BMC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkKind {
    /// `//T/path`: scheme-relative, starts with `/`.
    SchemeRelative,
    /// `\\T\path`: the URL parser reads `\` as `/` in http(s).
    Backslashes,
    /// `/\T/path`.
    SlashBackslash,
    /// `/<tab>/T/path`: the URL parser drops tabs, leaving `//T/path`.
    TabInside,
    /// `/%2F%2FT/path`: encoded slashes, which a server behind the BMC's address may decode.
    EncodedSlashes,
    /// `/%5C%5CT/path`: encoded backslashes.
    EncodedBackslashes,
    /// `//kiln@T/path`: scheme-relative with user information.
    UserinfoSchemeRelative,
    /// `https://B@T/path`: looks like the BMC, is the other host.
    BmcAsUserinfo,
    /// `https://evil@B/path`: the BMC, with user information of the link's own.
    UserinfoOnBmc,
    /// `https://127.0.0.1:TRAP_PORT/path`: absolute, same host, another port.
    OtherPort,
    /// `http://B/path` when the BMC serves https (and the reverse): same host and port, another scheme.
    OtherScheme,
}

impl LinkKind {
    /// Every kind.
    pub const ALL: [LinkKind; 11] = [
        LinkKind::SchemeRelative,
        LinkKind::Backslashes,
        LinkKind::SlashBackslash,
        LinkKind::TabInside,
        LinkKind::EncodedSlashes,
        LinkKind::EncodedBackslashes,
        LinkKind::UserinfoSchemeRelative,
        LinkKind::BmcAsUserinfo,
        LinkKind::UserinfoOnBmc,
        LinkKind::OtherPort,
        LinkKind::OtherScheme,
    ];

    /// The link text for `path`, with the BMC at `bmc` (`host:port`) over `scheme` and the other host at
    /// `trap` (`host:port`).
    pub fn link(self, scheme: &str, bmc: &str, trap: &str, path: &str) -> String {
        let other_scheme = if scheme == "https" { "http" } else { "https" };
        let backslashed = path.replace('/', "\\");
        match self {
            LinkKind::SchemeRelative => format!("//{trap}{path}"),
            LinkKind::Backslashes => format!("\\\\{trap}{backslashed}"),
            LinkKind::SlashBackslash => format!("/\\{trap}{path}"),
            LinkKind::TabInside => format!("/\t/{trap}{path}"),
            LinkKind::EncodedSlashes => format!("/%2F%2F{trap}{path}"),
            LinkKind::EncodedBackslashes => format!("/%5C%5C{trap}{path}"),
            LinkKind::UserinfoSchemeRelative => format!("//kiln@{trap}{path}"),
            LinkKind::BmcAsUserinfo => format!("{scheme}://{bmc}@{trap}{path}"),
            LinkKind::UserinfoOnBmc => format!("{scheme}://evil@{bmc}{path}"),
            LinkKind::OtherPort => format!("{scheme}://{trap}{path}"),
            LinkKind::OtherScheme => format!("{other_scheme}://{bmc}{path}"),
        }
    }
}

/// Where the hostile link sits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkPlace {
    /// The service root's `Systems` link (read with credentials).
    Systems,
    /// The service root's `Links.Sessions`: kiln posts the user name and password there.
    Sessions,
    /// The first member of the Systems collection.
    SystemMember,
    /// The `Location` of the 202 answer to a reset: the task monitor kiln polls with its session.
    TaskMonitor,
    /// The `Location` of the created session: where kiln sends its token to log out.
    SessionLocation,
}

impl LinkPlace {
    /// Every place.
    pub const ALL: [LinkPlace; 5] = [
        LinkPlace::Systems,
        LinkPlace::Sessions,
        LinkPlace::SystemMember,
        LinkPlace::TaskMonitor,
        LinkPlace::SessionLocation,
    ];

    /// The honest path the hostile link stands in for.
    fn honest_path(self) -> &'static str {
        match self {
            LinkPlace::Systems => SYSTEMS,
            LinkPlace::Sessions => SESSIONS,
            LinkPlace::SystemMember => SYSTEM,
            LinkPlace::TaskMonitor => TASK,
            LinkPlace::SessionLocation => SESSION,
        }
    }
}

/// One request that reached the other host (or the BMC's port over the wrong scheme).
#[derive(Debug, Clone)]
pub struct TrapHit {
    /// Which listener got it: `"other host"` or `"BMC port over plain http"`.
    pub listener: &'static str,
    /// The request method.
    pub method: String,
    /// The request path and query.
    pub path: String,
    /// Whether it carried `Authorization` or `X-Auth-Token`.
    pub authenticated: bool,
    /// Whether its body contained the BMC password.
    pub password_in_body: bool,
}

#[derive(Debug)]
struct Shared {
    /// The hostile link and where it goes; `None` for an honest BMC (the other host serves that).
    hostile: Option<(LinkPlace, String)>,
    /// `Some(name)` on a listener that records its requests.
    records: Option<&'static str>,
    hits: Arc<Mutex<Vec<TrapHit>>>,
}

impl Shared {
    fn link(&self, place: LinkPlace) -> String {
        match &self.hostile {
            Some((at, link)) if *at == place => link.clone(),
            _ => place.honest_path().to_string(),
        }
    }
}

/// A running hostile BMC and its other host. Dropping it stops both.
#[derive(Debug)]
pub struct LinkTrapBmc {
    /// The BMC's URL, `https://127.0.0.1:PORT` (or `http://`).
    pub url: String,
    /// The other host's URL (same scheme).
    pub trap_url: String,
    /// The BMC's certificate fingerprint when it serves https (the other host has the same certificate).
    pub fingerprint: Option<CertFingerprint>,
    /// The hostile link exactly as served (`None` for an honest BMC).
    pub link: Option<String>,
    hits: Arc<Mutex<Vec<TrapHit>>>,
    cancel: CancellationToken,
}

impl LinkTrapBmc {
    /// Starts a BMC with the hostile link `kind` at `place` (`None`: an honest BMC), over https when `tls`.
    pub async fn start(
        hostile: Option<(LinkKind, LinkPlace)>,
        tls: bool,
    ) -> Result<Self, SimError> {
        let bind = || async {
            TcpListener::bind(("127.0.0.1", 0))
                .await
                .map_err(|source| SimError::Bind { port: 0, source })
        };
        let bmc_listener = bind().await?;
        let trap_listener = bind().await?;
        let port = |listener: &TcpListener| {
            listener
                .local_addr()
                .map(|addr| addr.port())
                .map_err(|source| SimError::Bind { port: 0, source })
        };
        let bmc_addr = format!("127.0.0.1:{}", port(&bmc_listener)?);
        let trap_addr = format!("127.0.0.1:{}", port(&trap_listener)?);
        let scheme = if tls { "https" } else { "http" };
        let (acceptor, fingerprint) = if tls {
            let cert = SimCert::generate()?;
            (Some(cert.acceptor()?), Some(cert.fingerprint))
        } else {
            (None, None)
        };
        let hostile = hostile.map(|(kind, place)| {
            let link = kind.link(scheme, &bmc_addr, &trap_addr, place.honest_path());
            (place, link)
        });
        let hits = Arc::new(Mutex::new(Vec::new()));
        let router = |hostile: Option<(LinkPlace, String)>, records: Option<&'static str>| {
            Router::new().fallback(answer).with_state(Arc::new(Shared {
                hostile,
                records,
                hits: hits.clone(),
            }))
        };
        let cancel = CancellationToken::new();
        // The BMC: TLS connections get the hostile BMC; plain ones on an https BMC are a downgrade, recorded.
        tokio::spawn(accept(
            bmc_listener,
            acceptor.clone(),
            router(hostile.clone(), None),
            router(None, Some("BMC port over plain http")),
            cancel.clone(),
        ));
        // The other host: honest answers, every request recorded, whatever the scheme.
        let trap = router(None, Some("other host"));
        tokio::spawn(accept(
            trap_listener,
            acceptor,
            trap.clone(),
            trap,
            cancel.clone(),
        ));
        Ok(LinkTrapBmc {
            url: format!("{scheme}://{bmc_addr}"),
            trap_url: format!("{scheme}://{trap_addr}"),
            fingerprint,
            link: hostile.map(|(_, link)| link),
            hits,
            cancel,
        })
    }

    /// Every request that reached the other host or the BMC's port over the wrong scheme.
    pub fn trap_hits(&self) -> Vec<TrapHit> {
        self.hits
            .lock()
            .map(|hits| hits.clone())
            .unwrap_or_default()
    }
}

impl Drop for LinkTrapBmc {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

/// Accepts connections: a TLS ClientHello (first byte 0x16) goes to `tls_router` over `acceptor`, anything else
/// to `plain_router` (on an http-only listener, `tls_router` serves plain connections).
async fn accept(
    listener: TcpListener,
    acceptor: Option<TlsAcceptor>,
    tls_router: Router,
    plain_router: Router,
    cancel: CancellationToken,
) {
    loop {
        let stream = tokio::select! {
            _ = cancel.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(_) => continue,
            },
        };
        let acceptor = acceptor.clone();
        let (tls_router, plain_router) = (tls_router.clone(), plain_router.clone());
        let cancel = cancel.clone();
        tokio::spawn(async move {
            let mut first = [0u8; 1];
            let is_tls = matches!(stream.peek(&mut first).await, Ok(1) if first[0] == 0x16);
            let (router, acceptor) = match acceptor {
                Some(acceptor) if is_tls => (tls_router, Some(acceptor)),
                Some(_) => (plain_router, None),
                None => (tls_router, None),
            };
            tokio::select! {
                _ = cancel.cancelled() => {}
                _ = serve_connection(stream, router, acceptor) => {}
            }
        });
    }
}

/// The whole BMC: a handful of resources, one of whose links may be hostile.
async fn answer(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| uri.path().to_string());
    if let Some(listener) = shared.records
        && let Ok(mut hits) = shared.hits.lock()
    {
        hits.push(TrapHit {
            listener,
            method: method.to_string(),
            path: path.clone(),
            authenticated: headers.contains_key(header::AUTHORIZATION)
                || headers.contains_key("x-auth-token"),
            password_in_body: String::from_utf8_lossy(&body).contains(PASSWORD),
        });
    }
    let json = |status: StatusCode, value: serde_json::Value| {
        (
            status,
            [(header::CONTENT_TYPE, "application/json")],
            value.to_string(),
        )
            .into_response()
    };
    let bare = uri.path().trim_end_matches('/');
    match (method, bare) {
        (Method::GET, "/redfish/v1") => json(
            StatusCode::OK,
            json!({
                "@odata.id": ROOT,
                "RedfishVersion": "1.6.0",
                "Systems": { "@odata.id": shared.link(LinkPlace::Systems) },
                "SessionService": { "@odata.id": "/redfish/v1/SessionService" },
                "Links": { "Sessions": { "@odata.id": shared.link(LinkPlace::Sessions) } },
            }),
        ),
        (Method::POST, SESSIONS) => {
            if !String::from_utf8_lossy(&body).contains(PASSWORD) {
                return json(StatusCode::UNAUTHORIZED, json!({}));
            }
            let location = shared.link(LinkPlace::SessionLocation);
            (
                StatusCode::CREATED,
                [
                    (header::CONTENT_TYPE, "application/json".to_string()),
                    (
                        header::HeaderName::from_static("x-auth-token"),
                        "t0ken".into(),
                    ),
                    (header::LOCATION, location),
                ],
                json!({ "@odata.id": SESSION }).to_string(),
            )
                .into_response()
        }
        (Method::DELETE, SESSION) => StatusCode::NO_CONTENT.into_response(),
        (_, _) if !authorized(&headers) => json(StatusCode::UNAUTHORIZED, json!({})),
        (Method::GET, SYSTEMS) => json(
            StatusCode::OK,
            json!({
                "@odata.id": SYSTEMS,
                "Members": [{ "@odata.id": shared.link(LinkPlace::SystemMember) }],
                "Members@odata.count": 1,
            }),
        ),
        (Method::GET, SYSTEM) => json(
            StatusCode::OK,
            json!({
                "@odata.id": SYSTEM,
                "Id": "1",
                "Manufacturer": "Hostile",
                "Model": "Link Trap",
                "SerialNumber": "TRAP-1",
                "PowerState": "Off",
                "Boot": {
                    "BootSourceOverrideEnabled": "Disabled",
                    "BootSourceOverrideTarget": "None",
                    "BootSourceOverrideTarget@Redfish.AllowableValues": ["None", "Pxe", "Hdd"],
                },
                "Actions": { "#ComputerSystem.Reset": {
                    "target": RESET,
                    "ResetType@Redfish.AllowableValues": ["On", "ForceOff", "ForceRestart"],
                } },
            }),
        ),
        (Method::POST, RESET) => (
            StatusCode::ACCEPTED,
            [(header::LOCATION, shared.link(LinkPlace::TaskMonitor))],
            "",
        )
            .into_response(),
        (Method::GET, TASK) => json(
            StatusCode::OK,
            json!({ "@odata.id": TASK, "TaskState": "Completed" }),
        ),
        _ => json(StatusCode::NOT_FOUND, json!({})),
    }
}

/// Whether a request carries the session token or the BMC's basic credentials.
fn authorized(headers: &HeaderMap) -> bool {
    use base64::Engine;
    let token = headers
        .get("x-auth-token")
        .is_some_and(|value| value == "t0ken");
    let basic = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Basic "))
        .and_then(|encoded| {
            base64::engine::general_purpose::STANDARD
                .decode(encoded)
                .ok()
        })
        .is_some_and(|decoded| {
            String::from_utf8_lossy(&decoded).ends_with(&format!(":{PASSWORD}"))
        });
    token || basic
}
