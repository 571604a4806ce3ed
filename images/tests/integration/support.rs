//! Test fixtures: a library on a scratch SQLite inventory, servers on port 0, and a misbehaving image server.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use kiln_images::serve::{RangeRequest, parse_range};
use kiln_images::{ContentStore, ImageLibrary};
use kiln_inventory::{Store, StoreOptions};

/// A library over a fresh SQLite inventory and blob directory, removed with the value.
pub struct TestLibrary {
    pub library: ImageLibrary,
    pub dir: tempfile::TempDir,
}

impl TestLibrary {
    pub async fn new() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Store::open(StoreOptions::new(format!(
            "sqlite://{}",
            dir.path().join("kiln.db").display()
        )))
        .await
        .expect("open store");
        let blobs = ContentStore::new(dir.path().join("images"));
        Self {
            library: ImageLibrary::new(store, blobs),
            dir,
        }
    }

    /// Writes `bytes` to a file in the scratch dir and returns its path.
    pub fn file(&self, name: &str, bytes: &[u8]) -> std::path::PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, bytes).expect("write fixture");
        path
    }
}

/// Serves `router` on 127.0.0.1:0; returns the base URL.
pub async fn serve(router: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr: SocketAddr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    format!("http://{addr}")
}

/// What the faulty server does with one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Serve properly (honouring Range).
    Normal,
    /// Answer with this status and no body.
    Status(u16),
    /// Start properly, then break the connection after this many body bytes.
    CutAfter(usize),
    /// Answer 200 with the whole body whatever the Range says.
    IgnoreRange,
}

/// An image server that follows a script of faults, one per request (then `Normal`).
#[derive(Clone)]
pub struct FaultyServer {
    pub body: Arc<Vec<u8>>,
    pub script: Arc<Mutex<Vec<Fault>>>,
    pub requests: Arc<AtomicUsize>,
    pub ranges_seen: Arc<Mutex<Vec<Option<String>>>>,
}

impl FaultyServer {
    pub fn new(body: Vec<u8>, script: Vec<Fault>) -> Self {
        Self {
            body: Arc::new(body),
            script: Arc::new(Mutex::new(script)),
            requests: Arc::new(AtomicUsize::new(0)),
            ranges_seen: Arc::new(Mutex::new(Vec::new())),
        }
    }

    /// Starts it; returns the image URL.
    pub async fn start(&self) -> String {
        let router = Router::new()
            .route("/image", axum::routing::get(faulty))
            .with_state(self.clone());
        format!("{}/image", serve(router).await)
    }
}

async fn faulty(State(server): State<FaultyServer>, headers: HeaderMap) -> Response {
    let index = server.requests.fetch_add(1, Ordering::SeqCst);
    let fault = server
        .script
        .lock()
        .expect("script lock")
        .get(index)
        .copied()
        .unwrap_or(Fault::Normal);
    let range = headers
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    server
        .ranges_seen
        .lock()
        .expect("ranges lock")
        .push(range.clone());
    let len = server.body.len() as u64;
    let (status, start, end) = match (fault, range.as_deref().map(|r| parse_range(r, len))) {
        (Fault::Status(code), _) => {
            return StatusCode::from_u16(code)
                .expect("valid status")
                .into_response();
        }
        (Fault::IgnoreRange, _) | (_, None | Some(RangeRequest::Full)) => {
            (StatusCode::OK, 0, len as usize)
        }
        (_, Some(RangeRequest::Partial { start, end })) => (
            StatusCode::PARTIAL_CONTENT,
            start as usize,
            end as usize + 1,
        ),
        (_, Some(RangeRequest::Unsatisfiable)) => {
            return StatusCode::RANGE_NOT_SATISFIABLE.into_response();
        }
    };
    let slice = bytes::Bytes::copy_from_slice(&server.body[start..end]);
    let mut response_headers = HeaderMap::new();
    response_headers.insert(header::CONTENT_LENGTH, slice.len().into());
    if status == StatusCode::PARTIAL_CONTENT {
        response_headers.insert(
            header::CONTENT_RANGE,
            format!("bytes {start}-{}/{len}", end - 1)
                .parse()
                .expect("header"),
        );
    }
    let body = match fault {
        Fault::CutAfter(cut) => {
            let cut = cut.min(slice.len());
            let parts: Vec<Result<bytes::Bytes, std::io::Error>> = vec![
                Ok(slice.slice(..cut)),
                Err(std::io::Error::other("fault: connection cut")),
            ];
            Body::from_stream(futures_util::stream::iter(parts))
        }
        _ => Body::from(slice),
    };
    (status, response_headers, body).into_response()
}

/// Deterministic pseudo-random (incompressible) bytes with 64 KiB runs of zeros, so sparse writes have
/// something to skip and compressed images are not trivially small.
pub fn disk_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed ^ 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        // xorshift64*
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        state.wrapping_mul(0x2545_f491_4f6c_dd1d)
    };
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        let run = (64 * 1024).min(len - out.len());
        if next() % 3 == 0 {
            out.resize(out.len() + run, 0);
        } else {
            for _ in 0..run.div_ceil(8) {
                let word = next().to_le_bytes();
                let take = (len - out.len()).min(8);
                out.extend_from_slice(&word[..take]);
            }
        }
    }
    out.truncate(len);
    out
}
