//! The HTTP half of a write: fetch the image, resuming with `Range` after an interruption, and hand the bytes
//! in order to the decoding thread through a bounded channel (so a slow disk slows the download, not memory).

use std::time::Duration;

use bytes::Bytes;
use reqwest::StatusCode;
use reqwest::header::{CONTENT_RANGE, RANGE};
use tokio::sync::mpsc;

use super::WriteError;

/// How the download behaves when the server or network misbehaves.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Attempts in a row that may fail without receiving any bytes before the write gives up.
    pub max_attempts: u32,
    /// Wait before the first retry; doubled after each failure up to `max_backoff`.
    pub initial_backoff: Duration,
    /// Longest wait between attempts.
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 5,
            initial_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(10),
        }
    }
}

/// What the download saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Downloaded {
    /// Bytes received.
    pub bytes: u64,
    /// Size the server announced, if any.
    pub total: Option<u64>,
    /// Requests made.
    pub requests: u32,
    /// Whether the receiver hung up (the decoding thread failed; its error is the one to report).
    pub receiver_gone: bool,
}

/// Parses `bytes START-END/TOTAL`, returning START and TOTAL (when known).
fn parse_content_range(value: &str) -> Option<(u64, Option<u64>)> {
    let rest = value.trim().strip_prefix("bytes ")?;
    let (range, total) = rest.split_once('/')?;
    let (start, _end) = range.split_once('-')?;
    let total = if total == "*" {
        None
    } else {
        Some(total.parse().ok()?)
    };
    Some((start.parse().ok()?, total))
}

/// How one request ended.
enum Attempt {
    /// Everything arrived (or the receiver hung up).
    Done(Downloaded),
    /// Worth retrying: the reason.
    Retry(String),
}

/// Progress shared across attempts.
struct Cursor {
    received: u64,
    total: Option<u64>,
    requests: u32,
}

impl Cursor {
    fn done(&self, receiver_gone: bool) -> Attempt {
        Attempt::Done(Downloaded {
            bytes: self.received,
            total: self.total,
            requests: self.requests,
            receiver_gone,
        })
    }
}

async fn attempt(
    client: &reqwest::Client,
    url: &str,
    cursor: &mut Cursor,
    sink: &mpsc::Sender<Bytes>,
) -> Result<Attempt, WriteError> {
    cursor.requests += 1;
    let mut request = client.get(url);
    if cursor.received > 0 {
        request = request.header(RANGE, format!("bytes={}-", cursor.received));
    }
    let mut response = match request.send().await {
        Ok(response) => response,
        Err(err) => return Ok(Attempt::Retry(format!("request failed: {err}"))),
    };
    let range_ignored = |offset: u64| WriteError::RangeIgnored {
        url: url.to_string(),
        offset,
    };
    match response.status() {
        StatusCode::OK if cursor.received > 0 => return Err(range_ignored(cursor.received)),
        StatusCode::OK => cursor.total = response.content_length(),
        StatusCode::PARTIAL_CONTENT => {
            let range = response
                .headers()
                .get(CONTENT_RANGE)
                .and_then(|v| v.to_str().ok())
                .and_then(parse_content_range);
            match range {
                Some((start, announced)) if start == cursor.received => {
                    cursor.total = announced.or(cursor.total);
                }
                _ => return Err(range_ignored(cursor.received)),
            }
        }
        StatusCode::RANGE_NOT_SATISFIABLE if Some(cursor.received) == cursor.total => {
            // The previous attempt had every byte but its end was not seen cleanly.
            return Ok(cursor.done(false));
        }
        status if status.is_server_error() => {
            return Ok(Attempt::Retry(format!("server answered {status}")));
        }
        status => {
            return Err(WriteError::HttpStatus {
                url: url.to_string(),
                status: status.as_u16(),
            });
        }
    }
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                cursor.received += chunk.len() as u64;
                if sink.send(chunk).await.is_err() {
                    return Ok(cursor.done(true));
                }
            }
            Ok(None) => break,
            Err(err) => {
                return Ok(Attempt::Retry(format!(
                    "connection broke at byte {}: {err}",
                    cursor.received
                )));
            }
        }
    }
    match cursor.total {
        Some(total) if cursor.received < total => Ok(Attempt::Retry(format!(
            "connection ended at byte {} of {total}",
            cursor.received
        ))),
        _ => Ok(cursor.done(false)),
    }
}

/// Downloads `url` into `sink`, resuming at the byte reached after an interruption. Gives up after
/// `retry.max_attempts` failures in a row that brought no new bytes.
pub(crate) async fn download(
    client: &reqwest::Client,
    url: &str,
    retry: &RetryPolicy,
    sink: mpsc::Sender<Bytes>,
) -> Result<Downloaded, WriteError> {
    let mut cursor = Cursor {
        received: 0,
        total: None,
        requests: 0,
    };
    let mut failures = 0u32;
    let mut backoff = retry.initial_backoff;
    loop {
        let before = cursor.received;
        let reason = match attempt(client, url, &mut cursor, &sink).await? {
            Attempt::Done(done) => return Ok(done),
            Attempt::Retry(reason) => reason,
        };
        if cursor.received > before {
            failures = 0;
            backoff = retry.initial_backoff;
        }
        failures += 1;
        if failures >= retry.max_attempts {
            return Err(WriteError::DownloadFailed {
                url: url.to_string(),
                attempts: failures,
                received: cursor.received,
                last_error: reason,
            });
        }
        tracing::info!(
            url,
            received = cursor.received,
            failures,
            backoff_ms = backoff.as_millis() as u64,
            reason = %reason,
            "retrying image download"
        );
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(retry.max_backoff);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_ranges() {
        assert_eq!(
            parse_content_range("bytes 10-99/100"),
            Some((10, Some(100)))
        );
        assert_eq!(parse_content_range("bytes 10-99/*"), Some((10, None)));
        assert_eq!(parse_content_range("bytes */100"), None);
        assert_eq!(parse_content_range("garbage"), None);
    }
}
