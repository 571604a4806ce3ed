//! A stub provisioner for the simulator's tests: it renders boot scripts with kiln's real
//! `BootHttp::render_script` (and real `image_args` over a catalog holding the test image) for an action the test
//! chooses per MAC, serves that image, and records agent reports after checking their token.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use kiln_agent::AgentReport;
use kiln_images::Sha256Digest;
use kiln_inventory::{ImageFormat, MacAddr, NewImage, Store, StoreOptions};
use kiln_provisioner::boot::decision::{BootAction, BootDecision};
use kiln_provisioner::boot::http::{BootHttp, BootHttpConfig};
use tokio::net::TcpListener;

/// A report as received, with the token it carried.
#[derive(Debug, Clone)]
pub struct Received {
    pub token: String,
    pub report: AgentReport,
}

pub struct StubState {
    boot: BootHttp,
    default_action: Mutex<BootAction>,
    actions: Mutex<HashMap<MacAddr, BootAction>>,
    issued: Mutex<Vec<(MacAddr, String)>>,
    pub reports: Mutex<Vec<Received>>,
    pub fetches: Mutex<Vec<MacAddr>>,
    image: Bytes,
}

pub struct Stub {
    pub url: String,
    pub state: Arc<StubState>,
    pub image_sha256: String,
    pub image: Bytes,
    _dir: tempfile::TempDir,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Stub {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A 3 MiB raw image with data, zeros and a tail.
pub fn test_image() -> Vec<u8> {
    let mut image = vec![0u8; 3 << 20];
    for (i, byte) in image[..1 << 20].iter_mut().enumerate() {
        *byte = (i % 251) as u8;
    }
    image[(3 << 20) - 4..].copy_from_slice(b"kiln");
    image
}

impl Stub {
    /// Serves on `listener`; every MAC gets `default_action` until told otherwise.
    pub async fn start(listener: TcpListener, default_action: BootAction) -> Stub {
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let dir = tempfile::tempdir().expect("dir");
        let store = Store::open(StoreOptions::new(format!(
            "sqlite://{}",
            dir.path().join("stub.db").display()
        )))
        .await
        .expect("store");
        let image = Bytes::from(test_image());
        let image_sha256 = Sha256Digest::of(&image).to_hex();
        store
            .add_image(&NewImage {
                name: "sim-os".into(),
                version: "1".into(),
                os: None,
                format: ImageFormat::Raw,
                size_bytes: image.len() as i64,
                sha256: image_sha256.clone(),
                signature: None,
                signing_key_id: None,
            })
            .await
            .expect("image");
        let mut config = BootHttpConfig::new(url.clone(), dir.path());
        config.image = Some(("sim-os".into(), "1".into()));
        let state = Arc::new(StubState {
            boot: BootHttp::new(store, config),
            default_action: Mutex::new(default_action),
            actions: Mutex::new(HashMap::new()),
            issued: Mutex::new(Vec::new()),
            reports: Mutex::new(Vec::new()),
            fetches: Mutex::new(Vec::new()),
            image: image.clone(),
        });
        let app = Router::new()
            .route("/boot/{script}", get(script))
            .route("/images/sha256/{digest}", get(serve_image))
            .route(kiln_agent::REPORT_PATH, post(report))
            .with_state(state.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Stub {
            url,
            state,
            image_sha256,
            image,
            _dir: dir,
            task,
        }
    }

    pub fn set_action(&self, mac: MacAddr, action: BootAction) {
        self.state.actions.lock().expect("lock").insert(mac, action);
    }

    pub fn set_default(&self, action: BootAction) {
        *self.state.default_action.lock().expect("lock") = action;
        self.state.actions.lock().expect("lock").clear();
    }

    pub fn reports_for(&self, mac: MacAddr) -> Vec<Received> {
        let reports = self.state.reports.lock().expect("lock");
        reports
            .iter()
            .filter(|r| r.report.boot_mac == Some(mac))
            .cloned()
            .collect()
    }

    pub fn tokens_for(&self, mac: MacAddr) -> Vec<String> {
        let issued = self.state.issued.lock().expect("lock");
        issued
            .iter()
            .filter(|(m, _)| *m == mac)
            .map(|(_, t)| t.clone())
            .collect()
    }

    /// Waits until `mac` has at least `n` reports; panics after `limit`.
    pub async fn wait_reports(&self, mac: MacAddr, n: usize, limit: Duration) -> Vec<Received> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let reports = self.reports_for(mac);
            if reports.len() >= n {
                return reports;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{mac}: {} of {n} reports after {limit:?}: {reports:#?}",
                reports.len()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

async fn script(
    State(state): State<Arc<StubState>>,
    Path(file): Path<String>,
) -> Result<String, StatusCode> {
    let mac: MacAddr = file
        .strip_suffix(".ipxe")
        .and_then(|m| m.parse().ok())
        .ok_or(StatusCode::NOT_FOUND)?;
    state.fetches.lock().expect("lock").push(mac);
    let action = state
        .actions
        .lock()
        .expect("lock")
        .get(&mac)
        .copied()
        .unwrap_or(*state.default_action.lock().expect("lock"));
    let token = match action {
        BootAction::Ramdisk(_) => {
            let mut issued = state.issued.lock().expect("lock");
            let token = format!("stub-token-{}", issued.len() + 1);
            issued.push((mac, token.clone()));
            Some(token)
        }
        BootAction::LocalDisk => None,
    };
    let extra = state
        .boot
        .image_args(action, None)
        .await
        .map_err(|_| StatusCode::INTERNAL_SERVER_ERROR)?;
    let decision = BootDecision {
        mac,
        node: None,
        action,
        reason: format!("stub: {action}"),
    };
    Ok(state
        .boot
        .render_script(&decision, token.as_deref(), &extra))
}

async fn serve_image(
    State(state): State<Arc<StubState>>,
    Path(digest): Path<String>,
) -> Result<Bytes, StatusCode> {
    if digest == Sha256Digest::of(&state.image).to_hex() {
        Ok(state.image.clone())
    } else {
        Err(StatusCode::NOT_FOUND)
    }
}

async fn report(
    State(state): State<Arc<StubState>>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let Some(token) = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
    else {
        return StatusCode::UNAUTHORIZED;
    };
    let Ok(report) = serde_json::from_slice::<AgentReport>(&body) else {
        return StatusCode::BAD_REQUEST;
    };
    let known = report.boot_mac.is_some_and(|mac| {
        state
            .issued
            .lock()
            .expect("lock")
            .iter()
            .any(|(m, t)| *m == mac && t == token)
    });
    if !known {
        return StatusCode::UNAUTHORIZED;
    }
    state.reports.lock().expect("lock").push(Received {
        token: token.to_string(),
        report,
    });
    StatusCode::OK
}
