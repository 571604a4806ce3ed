//! `POST /agent/v1/report`: where node agents report (wire contract in kiln-agent's `report` module). A report
//! is accepted only with the live token of the node's boot MAC, from the address that token is bound to, and
//! only once per nonce: a replay is refused (409) before anything is stored, noted, woken or freed. An accepted
//! report is stored, noted in the node's history and wakes the node's handler at once (a write's start and
//! progress ticks do not wake it).

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Extension;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use kiln_agent::{AgentReport, AgentStep, REPORT_PATH};
use kiln_inventory::{Store, TokenCheck, TokenOwner};
use tokio::sync::Notify;

use super::gates::Gates;
use crate::boot::http::token_refusal;

/// Largest report body accepted (an inspection of a big node is a few tens of KiB).
const MAX_BODY: usize = 1024 * 1024;

#[derive(Clone)]
struct Reports {
    store: Store,
    wake: Arc<Notify>,
    gates: Option<Arc<Gates>>,
}

/// The report endpoint over `store`; `wake` is the engine's waker and `gates` its concurrency gates (`None`
/// where no engine runs).
pub fn report_router(store: Store, wake: Arc<Notify>, gates: Option<Arc<Gates>>) -> Router {
    Router::new()
        .route(REPORT_PATH, post(report))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(Reports { store, wake, gates })
}

fn refuse(status: StatusCode, message: impl Into<String>) -> Response {
    let body = serde_json::json!({"error": status.canonical_reason().unwrap_or("error").to_lowercase().replace(' ', "_"), "message": message.into()});
    (status, axum::Json(body)).into_response()
}

/// The `step` name of a report (`booted`, `inspected`, …).
pub fn step_name(step: &AgentStep) -> &'static str {
    match step {
        AgentStep::Booted { .. } => "booted",
        AgentStep::Inspected { .. } => "inspected",
        AgentStep::ImageStarted { .. } => "image_started",
        AgentStep::ImageProgress { .. } => "image_progress",
        AgentStep::ImageWritten { .. } => "image_written",
        AgentStep::ImageFailed { .. } => "image_failed",
        AgentStep::Wiped { .. } => "wiped",
        AgentStep::WipeFailed { .. } => "wipe_failed",
        AgentStep::WipeProgress { .. } => "wipe_progress",
        AgentStep::Failed { .. } => "failed",
    }
}

fn summary(step: &AgentStep) -> String {
    match step {
        AgentStep::Booted {
            environment,
            kernel,
            ..
        } => format!(
            "agent booted in the {environment} (kernel {})",
            kernel.as_deref().unwrap_or("unknown")
        ),
        AgentStep::Inspected { inspection, .. } => format!(
            "agent inspected the hardware: {} GPUs, {} disks, {} NICs",
            inspection.gpus.len(),
            inspection.disks.len(),
            inspection.nics.len()
        ),
        AgentStep::ImageStarted { sha256, target, .. } => {
            format!("agent started writing image {sha256} to {target}")
        }
        AgentStep::ImageProgress {
            downloaded_bytes, ..
        } => {
            format!("image write: {downloaded_bytes} bytes")
        }
        AgentStep::ImageWritten {
            sha256,
            disk_bytes,
            elapsed_ms,
            ..
        } => format!(
            "agent wrote image {sha256} ({disk_bytes} bytes in {elapsed_ms} ms), digest verified"
        ),
        AgentStep::ImageFailed { error, .. } => format!("agent image write failed: {error}"),
        AgentStep::Wiped { disks, .. } => format!("agent erased {}", disks.join(", ")),
        AgentStep::WipeFailed { error, .. } => format!("agent erase failed: {error}"),
        AgentStep::WipeProgress {
            device,
            method,
            stage,
            percent,
            detail,
        } => {
            let mut text = format!("erase {device}: {stage}");
            if let Some(method) = method {
                text.push_str(&format!(" {method}"));
            }
            if let Some(percent) = percent {
                text.push_str(&format!(" {percent}%"));
            }
            if let Some(detail) = detail {
                text.push_str(&format!(": {detail}"));
            }
            text
        }
        AgentStep::Failed { error } => format!("agent failed: {error}"),
    }
}

async fn report(
    State(reports): State<Reports>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(token) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
    else {
        return refuse(StatusCode::UNAUTHORIZED, "missing bearer token");
    };
    let report: AgentReport = match serde_json::from_slice(&body) {
        Ok(report) => report,
        Err(err) => {
            return refuse(
                StatusCode::BAD_REQUEST,
                format!("not an agent report: {err}"),
            );
        }
    };
    let Some(mac) = report.boot_mac else {
        return refuse(StatusCode::BAD_REQUEST, "the report has no boot_mac");
    };
    let Some(source) = peer.map(|Extension(ConnectInfo(addr))| addr.ip().to_canonical()) else {
        tracing::error!("report endpoint served without peer addresses: report refused");
        return refuse(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the server does not know the peer's address",
        );
    };
    let Some(nonce) = report
        .nonce
        .as_deref()
        .filter(|n| !n.is_empty() && n.len() <= 128)
    else {
        return refuse(
            StatusCode::BAD_REQUEST,
            "the report has no nonce (1 to 128 characters)",
        );
    };
    let owner = match reports.store.check_boot_token(mac, token, source).await {
        Ok(TokenCheck::Valid(owner)) => Some(owner),
        Ok(check) => {
            let why = token_refusal(&check, source).unwrap_or_default();
            tracing::warn!(%mac, %source, reason = %why, "agent report refused");
            return refuse(StatusCode::UNAUTHORIZED, why);
        }
        Err(err) => {
            tracing::error!(error = %err, "agent report: inventory error");
            return refuse(StatusCode::SERVICE_UNAVAILABLE, "inventory unavailable");
        }
    };
    let node = match owner {
        Some(TokenOwner::Node(node)) => node,
        Some(TokenOwner::Unenrolled) => {
            return (
                StatusCode::ACCEPTED,
                axum::Json(
                    serde_json::json!({"accepted": false, "reason": "not an enrolled node"}),
                ),
            )
                .into_response();
        }
        None => return refuse(StatusCode::UNAUTHORIZED, "wrong token for this boot MAC"),
    };
    let step = step_name(&report.step);
    let text = String::from_utf8_lossy(&body);
    // Progress ticks are kept but not noted in the history. Neither they nor the start of a write wake the
    // node: its handler has nothing to decide until the write ends (it looks again on its own schedule).
    // A wipe's figures and heartbeats are ticks too; a method starting, verified or failing is noted.
    let tick = match &report.step {
        AgentStep::ImageProgress { .. } => true,
        AgentStep::WipeProgress { stage, .. } => {
            matches!(stage.as_str(), "overwriting" | "running")
        }
        _ => false,
    };
    let wake = !matches!(
        report.step,
        AgentStep::ImageProgress { .. }
            | AgentStep::ImageStarted { .. }
            | AgentStep::WipeProgress { .. }
    );
    let event = (!tick).then(|| summary(&report.step));
    let stored = reports
        .store
        .record_agent_report(node, Some(nonce), step, &text, event.as_deref(), wake)
        .await;
    let id = match stored {
        Ok(Some(id)) => id,
        Ok(None) => {
            tracing::warn!(%mac, node = %node, nonce, step, "replayed agent report refused");
            return refuse(
                StatusCode::CONFLICT,
                format!("a report with nonce {nonce} was already accepted from this node (replay)"),
            );
        }
        Err(err) => {
            tracing::error!(error = %err, "agent report: could not store");
            return refuse(StatusCode::SERVICE_UNAVAILABLE, "inventory unavailable");
        }
    };
    tracing::info!(%mac, node = %node, step, seq = report.seq, "agent report");
    if let Some(gates) = &reports.gates
        && matches!(
            report.step,
            AgentStep::ImageWritten { .. }
                | AgentStep::ImageFailed { .. }
                | AgentStep::Failed { .. }
        )
    {
        // The write is over (or never will be): its slot goes to the next waiter now, not when the engine
        // gets to this report. A node that holds no slot here (another instance's, or none) changes nothing.
        if let Some(next) = gates.finish_image(node)
            && let Err(err) = reports.store.wake_node(next).await
        {
            tracing::warn!(node = %next, error = %err, "could not wake the next image-slot waiter");
        }
    }
    if wake {
        reports.wake.notify_one();
    }
    (
        StatusCode::OK,
        axum::Json(serde_json::json!({"accepted": true, "id": id})),
    )
        .into_response()
}
