//! Serving images over HTTP: `GET`/`HEAD` with single `Range` requests, a strong `ETag` (the sha256) with
//! `If-None-Match`, and bodies streamed as slices of a read-only map of the blob (never buffered whole; see
//! [`crate::mapped`]).
//!
//! Routes (mount the [`image_router`] wherever the API or provisioner wants them):
//! - `/images/sha256/{digest}`: a blob by content address;
//! - `/images/{name}/{version}`: a cataloged image, with `X-Kiln-Sha256` and `X-Kiln-Image-Format` headers.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::cas::ImageLibrary;
use crate::digest::Sha256Digest;
use crate::mapped::{MappedFile, body_stream};

/// Bytes per body chunk (a slice of the map): large enough that per-chunk overhead does not matter.
const BODY_CHUNK_BYTES: usize = 4 * 1024 * 1024;

/// A router serving the library's images (see the module docs for routes).
pub fn image_router(library: ImageLibrary) -> Router {
    Router::new()
        .route("/images/sha256/{digest}", get(by_digest))
        .route("/images/{name}/{version}", get(by_name))
        .with_state(Arc::new(library))
}

/// What a `Range` header asks of a body of `len` bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeRequest {
    /// No usable range: send everything (also for multi-range requests, which RFC 9110 lets a server ignore).
    Full,
    /// Bytes `start..=end`.
    Partial {
        /// First byte.
        start: u64,
        /// Last byte, inclusive.
        end: u64,
    },
    /// The range lies outside the body: answer 416.
    Unsatisfiable,
}

/// Parses a `Range` header value against a body of `len` bytes.
pub fn parse_range(value: &str, len: u64) -> RangeRequest {
    let Some(spec) = value.trim().strip_prefix("bytes=") else {
        return RangeRequest::Full;
    };
    if spec.contains(',') {
        return RangeRequest::Full;
    }
    let Some((first, last)) = spec.trim().split_once('-') else {
        return RangeRequest::Full;
    };
    let (first, last) = (first.trim(), last.trim());
    if first.is_empty() {
        // Suffix range: the last N bytes.
        return match last.parse::<u64>() {
            Ok(0) => RangeRequest::Unsatisfiable,
            Ok(_) if len == 0 => RangeRequest::Unsatisfiable,
            Ok(n) => RangeRequest::Partial {
                start: len.saturating_sub(n),
                end: len - 1,
            },
            Err(_) => RangeRequest::Full,
        };
    }
    let Ok(start) = first.parse::<u64>() else {
        return RangeRequest::Full;
    };
    let end = if last.is_empty() {
        len.saturating_sub(1)
    } else {
        match last.parse::<u64>() {
            Ok(end) if end >= start => end.min(len.saturating_sub(1)),
            _ => return RangeRequest::Full,
        }
    };
    if start >= len {
        return RangeRequest::Unsatisfiable;
    }
    RangeRequest::Partial { start, end }
}

fn etag_matches(if_none_match: &str, etag: &str) -> bool {
    if_none_match
        .split(',')
        .map(|tag| tag.trim().trim_start_matches("W/"))
        .any(|tag| tag == "*" || tag == etag)
}

async fn by_digest(
    State(library): State<Arc<ImageLibrary>>,
    Path(digest): Path<String>,
    headers: HeaderMap,
) -> Response {
    let Ok(digest) = digest.parse::<Sha256Digest>() else {
        return (StatusCode::BAD_REQUEST, "not a sha256 digest\n").into_response();
    };
    serve_blob(&library, digest, &headers, HeaderMap::new()).await
}

async fn by_name(
    State(library): State<Arc<ImageLibrary>>,
    Path((name, version)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let image = match library.catalog.image(&name, &version).await {
        Ok(Some(image)) => image,
        Ok(None) => return (StatusCode::NOT_FOUND, "no such image\n").into_response(),
        Err(err) => {
            tracing::warn!(name = %name, version = %version, error = %err, "image catalog lookup failed");
            return (StatusCode::INTERNAL_SERVER_ERROR, "catalog unavailable\n").into_response();
        }
    };
    let Ok(digest) = image.sha256.parse::<Sha256Digest>() else {
        return (
            StatusCode::INTERNAL_SERVER_ERROR,
            "catalog digest invalid\n",
        )
            .into_response();
    };
    let mut extra = HeaderMap::new();
    if let Ok(value) = HeaderValue::from_str(&image.sha256) {
        extra.insert("x-kiln-sha256", value);
    }
    extra.insert(
        "x-kiln-image-format",
        HeaderValue::from_static(image.format.as_str()),
    );
    serve_blob(&library, digest, &headers, extra).await
}

async fn serve_blob(
    library: &ImageLibrary,
    digest: Sha256Digest,
    request: &HeaderMap,
    extra: HeaderMap,
) -> Response {
    let path = library.blobs.path_of(&digest);
    let file = match tokio::fs::File::open(&path).await {
        Ok(file) => file,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            return (StatusCode::NOT_FOUND, "no such image\n").into_response();
        }
        Err(err) => {
            tracing::warn!(path = %path.display(), error = %err, "cannot open image blob");
            return (StatusCode::INTERNAL_SERVER_ERROR, "cannot open image\n").into_response();
        }
    };
    let len = match file.metadata().await {
        Ok(meta) => meta.len(),
        Err(err) => {
            tracing::warn!(path = %path.display(), error = %err, "cannot stat image blob");
            return (StatusCode::INTERNAL_SERVER_ERROR, "cannot read image\n").into_response();
        }
    };
    let etag = format!("\"{}\"", digest.to_hex());
    let mut response_headers = extra;
    if let Ok(value) = HeaderValue::from_str(&etag) {
        response_headers.insert(header::ETAG, value);
    }
    response_headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    if let Some(inm) = request
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        && etag_matches(inm, &etag)
    {
        return (StatusCode::NOT_MODIFIED, response_headers).into_response();
    }
    let range = request
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .map_or(RangeRequest::Full, |v| parse_range(v, len));
    let (status, start, count) = match range {
        RangeRequest::Full => (StatusCode::OK, 0, len),
        RangeRequest::Partial { start, end } => {
            if let Ok(value) = HeaderValue::from_str(&format!("bytes {start}-{end}/{len}")) {
                response_headers.insert(header::CONTENT_RANGE, value);
            }
            (StatusCode::PARTIAL_CONTENT, start, end - start + 1)
        }
        RangeRequest::Unsatisfiable => {
            if let Ok(value) = HeaderValue::from_str(&format!("bytes */{len}")) {
                response_headers.insert(header::CONTENT_RANGE, value);
            }
            return (StatusCode::RANGE_NOT_SATISFIABLE, response_headers).into_response();
        }
    };
    let map = match MappedFile::open(&file.into_std().await, len) {
        Ok(map) => map,
        Err(err) => {
            tracing::warn!(path = %path.display(), error = %err, "cannot map image blob");
            return (StatusCode::INTERNAL_SERVER_ERROR, "cannot read image\n").into_response();
        }
    };
    response_headers.insert(header::CONTENT_LENGTH, HeaderValue::from(count));
    response_headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    tracing::debug!(digest = %digest, start, count, "serving image");
    let body = Body::from_stream(body_stream(map, start, count, BODY_CHUNK_BYTES));
    (status, response_headers, body).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        use RangeRequest::*;
        assert_eq!(parse_range("bytes=0-9", 100), Partial { start: 0, end: 9 });
        assert_eq!(
            parse_range("bytes=90-", 100),
            Partial { start: 90, end: 99 }
        );
        assert_eq!(
            parse_range("bytes=-10", 100),
            Partial { start: 90, end: 99 }
        );
        assert_eq!(
            parse_range("bytes=-500", 100),
            Partial { start: 0, end: 99 }
        );
        assert_eq!(
            parse_range("bytes=50-5000", 100),
            Partial { start: 50, end: 99 }
        );
        assert_eq!(parse_range("bytes=100-", 100), Unsatisfiable);
        assert_eq!(parse_range("bytes=-0", 100), Unsatisfiable);
        assert_eq!(parse_range("bytes=0-", 0), Unsatisfiable);
        assert_eq!(parse_range("bytes=9-3", 100), Full);
        assert_eq!(parse_range("bytes=0-1,5-6", 100), Full);
        assert_eq!(parse_range("items=0-1", 100), Full);
        assert_eq!(parse_range("bytes=x-1", 100), Full);
    }

    #[test]
    fn etags() {
        assert!(etag_matches("\"abc\"", "\"abc\""));
        assert!(etag_matches("\"x\", W/\"abc\"", "\"abc\""));
        assert!(etag_matches("*", "\"abc\""));
        assert!(!etag_matches("\"abd\"", "\"abc\""));
    }
}
