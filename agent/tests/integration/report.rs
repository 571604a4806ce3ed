//! Reports: token, retries with backoff, refusals not retried, and imaging reported step by step.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use kiln_agent::image::{ImagingError, write_and_report};
use kiln_agent::{AgentReport, AgentStep, Backoff, REPORT_PATH, ReportClient, ReportError};
use kiln_images::{ImageFormat, Sha256Digest, Target, WriteRequest};

/// Reports the stand-in accepted, with the Authorization header each came with.
pub type Received = Arc<Mutex<Vec<(Option<String>, AgentReport)>>>;

/// A provisioner stand-in: answers each report with the next scripted status (then 200) and records it.
#[derive(Clone, Default)]
pub struct Provisioner {
    pub statuses: Arc<Mutex<Vec<u16>>>,
    pub calls: Arc<AtomicUsize>,
    pub received: Received,
}

impl Provisioner {
    /// The steps received, by their wire tag.
    pub fn steps(&self) -> Vec<String> {
        self.received
            .lock()
            .expect("lock")
            .iter()
            .map(|(_, r)| {
                serde_json::to_value(&r.step).expect("json")["step"]
                    .as_str()
                    .unwrap_or("")
                    .to_string()
            })
            .collect()
    }
}

async fn report(
    State(p): State<Provisioner>,
    headers: HeaderMap,
    Json(body): Json<AgentReport>,
) -> StatusCode {
    let call = p.calls.fetch_add(1, Ordering::SeqCst);
    let status = p
        .statuses
        .lock()
        .expect("lock")
        .get(call)
        .copied()
        .unwrap_or(200);
    let token = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    if status == 200 {
        p.received.lock().expect("lock").push((token, body));
    }
    StatusCode::from_u16(status).expect("status")
}

/// Serves the report endpoint and `GET /image`; returns the base URL.
pub async fn start(p: &Provisioner, image: Vec<u8>) -> String {
    let router = axum::Router::new()
        .route(REPORT_PATH, post(report))
        .route(
            "/image",
            get(move || {
                let image = image.clone();
                async move { image }
            }),
        )
        .with_state(p.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    format!("http://{addr}")
}

pub fn quick() -> Backoff {
    Backoff {
        max_attempts: 4,
        initial: Duration::from_millis(1),
        max: Duration::from_millis(4),
    }
}

#[tokio::test]
async fn retries_until_the_provisioner_answers() {
    let p = Provisioner {
        statuses: Arc::new(Mutex::new(vec![503, 502, 429])),
        ..Default::default()
    };
    let base = start(&p, vec![]).await;
    let mac = "3c:ec:ef:01:02:03".parse().ok();
    let client = ReportClient::new(&format!("{base}/"), "node-token-1", mac).with_backoff(quick());
    let step = AgentStep::Booted {
        kernel: Some("6.12.0".into()),
        environment: "ramdisk".into(),
        ssh_host_key: None,
        ssh_address: None,
    };
    let sent = client.send(step.clone()).await.expect("delivered");
    assert_eq!(
        p.calls.load(Ordering::SeqCst),
        4,
        "three failures then success"
    );
    let received = p.received.lock().expect("lock").clone();
    assert_eq!(
        received,
        vec![(Some("Bearer node-token-1".to_string()), sent.clone())]
    );
    assert_eq!((sent.seq, sent.boot_mac, sent.step), (1, mac, step));
    let json = serde_json::to_value(&received[0].1).expect("json");
    assert_eq!(
        json["step"], "booted",
        "steps are tagged for the provisioner"
    );
}

#[tokio::test]
async fn refusals_are_not_retried_and_absence_gives_up() {
    let p = Provisioner {
        statuses: Arc::new(Mutex::new(vec![401, 422])),
        ..Default::default()
    };
    let base = start(&p, vec![]).await;
    let client = ReportClient::new(&base, "bad", None).with_backoff(quick());
    let failed = AgentStep::Failed { error: "x".into() };
    let err = client.send(failed.clone()).await.expect_err("401");
    assert!(
        matches!(err, ReportError::Unauthorized { status: 401, .. }),
        "{err}"
    );
    let err = client.send(failed.clone()).await.expect_err("422");
    assert!(
        matches!(err, ReportError::Rejected { status: 422, .. }),
        "{err}"
    );
    assert_eq!(p.calls.load(Ordering::SeqCst), 2, "no retries");

    // A port nobody listens on.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    drop(listener);
    let client = ReportClient::new(&format!("http://{addr}"), "t", None).with_backoff(quick());
    let err = client.send(failed).await.expect_err("nobody there");
    assert!(
        matches!(err, ReportError::Unavailable { attempts: 4, .. }),
        "{err}"
    );
}

#[test]
fn backoff_doubles_up_to_the_cap() {
    let backoff = Backoff {
        max_attempts: 10,
        initial: Duration::from_millis(100),
        max: Duration::from_secs(1),
    };
    let delays: Vec<u128> = (1..=6).map(|n| backoff.delay(n).as_millis()).collect();
    assert_eq!(delays, vec![100, 200, 400, 800, 1000, 1000]);
    assert_eq!(backoff.delay(200), Duration::from_secs(1));
}

#[tokio::test]
async fn imaging_reports_start_and_outcome() {
    let image = vec![7u8; 300_000];
    let p = Provisioner::default();
    let base = start(&p, image.clone()).await;
    let reports = ReportClient::new(&base, "tok", None).with_backoff(quick());
    let dir = tempfile::tempdir().expect("dir");
    let http = kiln_images::http_client();
    let good = WriteRequest::new(
        format!("{base}/image"),
        Sha256Digest::of(&image),
        ImageFormat::Raw,
    );
    let target = Target::file(&dir.path().join("disk"), None).expect("target");
    let written = write_and_report(&http, &reports, &good, target)
        .await
        .expect("write");
    assert_eq!(written.disk_bytes, 300_000);

    let wrong = Sha256Digest::of(b"another image");
    let bad = WriteRequest::new(format!("{base}/image"), wrong, ImageFormat::Raw);
    let target = Target::file(&dir.path().join("disk2"), None).expect("target");
    let err = write_and_report(&http, &reports, &bad, target)
        .await
        .expect_err("mismatch");
    assert!(matches!(err, ImagingError::Write(_)), "{err}");

    assert_eq!(
        p.steps(),
        [
            "image_started",
            "image_written",
            "image_started",
            "image_failed"
        ],
        "no progress report for an image under 16 MiB: the outcome says it all"
    );
    let last = p
        .received
        .lock()
        .expect("lock")
        .last()
        .cloned()
        .expect("one");
    let AgentStep::ImageFailed { error, .. } = last.1.step else {
        panic!("last step is a failure");
    };
    assert!(
        error.contains(&wrong.to_hex()) && error.contains(&Sha256Digest::of(&image).to_hex()),
        "{error}"
    );
}
