//! One TFTP read transfer: option negotiation, then DATA windows with retransmission until the last block is
//! acknowledged.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio::net::UdpSocket;
use tokio_util::sync::CancellationToken;

use super::TftpConfig;
use super::packet::{
    ErrorCode, MAX_PACKET, Mode, Packet, RequestOption, encode_data, encode_error, encode_oack,
    parse,
};
use super::path::{PathRefused, resolve_in_root};

/// A read request accepted by the listener.
pub(super) struct Request {
    pub peer: SocketAddr,
    pub filename: String,
    pub mode: Mode,
    pub options: Vec<RequestOption>,
}

/// What was agreed with the client.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Negotiated {
    blksize: usize,
    windowsize: u64,
    timeout: Duration,
    /// Options to confirm in an OACK (empty: no OACK, plain RFC 1350).
    accepted: Vec<(&'static str, String)>,
}

fn negotiate(options: &[RequestOption], size: u64, config: &TftpConfig) -> Negotiated {
    let mut agreed = Negotiated {
        blksize: 512,
        windowsize: 1,
        timeout: config.retransmit_timeout,
        accepted: Vec::new(),
    };
    for option in options {
        let value = option.value.trim();
        match option.name.as_str() {
            "blksize" => {
                if let Ok(asked) = value.parse::<u32>()
                    && (8..=65464).contains(&asked)
                {
                    let granted = asked.min(u32::from(config.max_blksize.max(8)));
                    agreed.blksize = granted as usize;
                    agreed.accepted.push(("blksize", granted.to_string()));
                }
            }
            // curl refuses an OACK with tsize 0 as illegal; an empty file's size shows from its one empty block.
            "tsize" if size > 0 => agreed.accepted.push(("tsize", size.to_string())),
            "timeout" => {
                if let Ok(seconds) = value.parse::<u8>()
                    && seconds >= 1
                {
                    agreed.timeout = Duration::from_secs(u64::from(seconds));
                    agreed.accepted.push(("timeout", seconds.to_string()));
                }
            }
            "windowsize" => {
                if let Ok(asked) = value.parse::<u16>()
                    && asked >= 1
                {
                    let granted = asked.min(config.max_windowsize.max(1));
                    agreed.windowsize = u64::from(granted);
                    agreed.accepted.push(("windowsize", granted.to_string()));
                }
            }
            // Unknown options are left out of the OACK, which is how RFC 2347 says to refuse them.
            _ => {}
        }
    }
    agreed
}

/// How a transfer ended, for the log.
enum Ending {
    Done {
        bytes: u64,
    },
    /// The client sent an ERROR (EDK2's size probe ends this way with code 8).
    ClientAborted {
        code: ErrorCode,
        message: String,
    },
    TimedOut {
        block: u64,
    },
    Cancelled,
    Io(std::io::Error),
}

/// Serves one read request to completion.
pub(super) async fn serve(
    request: Request,
    config: &TftpConfig,
    root: &Path,
    local_ip: Option<IpAddr>,
    cancel: CancellationToken,
) {
    let peer = request.peer;
    let file_name = request.filename.clone();
    let unspecified = match peer {
        SocketAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        SocketAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
    };
    let socket = match UdpSocket::bind(SocketAddr::new(local_ip.unwrap_or(unspecified), 0)).await {
        Ok(socket) => socket,
        Err(err) => {
            tracing::warn!(%peer, file = %file_name, error = %err, "cannot open a TFTP transfer socket");
            return;
        }
    };
    // A connected socket only receives from the client's transfer ID; strays from elsewhere are dropped by the
    // kernel.
    if let Err(err) = socket.connect(peer).await {
        tracing::warn!(%peer, error = %err, "cannot address the TFTP client");
        return;
    }
    let path = match resolve_in_root(root, &request.filename) {
        Ok(path) => path,
        Err(refused) => {
            let code = match &refused {
                PathRefused::NotFound(_) => {
                    tracing::info!(%peer, file = %file_name, "TFTP file not found");
                    ErrorCode::FileNotFound
                }
                PathRefused::NotAFile(_) => {
                    tracing::info!(%peer, file = %file_name, "TFTP request for a non-file");
                    ErrorCode::FileNotFound
                }
                PathRefused::Absolute(_)
                | PathRefused::ParentDir(_)
                | PathRefused::OutsideRoot(_) => {
                    tracing::warn!(%peer, file = %file_name, reason = %refused, "TFTP path traversal refused");
                    ErrorCode::AccessViolation
                }
            };
            send_quietly(&socket, &encode_error(code, &refused.to_string())).await;
            return;
        }
    };
    let started = Instant::now();
    let ending = tokio::select! {
        () = cancel.cancelled() => Ending::Cancelled,
        ending = send_file(&socket, &path, &request, config) => ending,
    };
    let elapsed_ms = started.elapsed().as_millis() as u64;
    match ending {
        Ending::Done { bytes } => {
            tracing::info!(%peer, file = %file_name, bytes, elapsed_ms, "TFTP transfer complete");
        }
        Ending::ClientAborted { code, message } => {
            // EDK2 asks for tsize, then ends the transfer with error 8 once it knows the size: normal.
            tracing::debug!(%peer, file = %file_name, code = code.as_u16(), message, "TFTP client ended the transfer");
        }
        Ending::TimedOut { block } => {
            tracing::warn!(%peer, file = %file_name, block, "TFTP client stopped answering; transfer abandoned");
        }
        Ending::Cancelled => {
            tracing::debug!(%peer, file = %file_name, "TFTP transfer cancelled by shutdown");
        }
        Ending::Io(err) => {
            tracing::warn!(%peer, file = %file_name, error = %err, "TFTP transfer failed");
            send_quietly(&socket, &encode_error(ErrorCode::Undefined, "read error")).await;
        }
    }
}

async fn send_quietly(socket: &UdpSocket, packet: &[u8]) {
    if let Err(err) = socket.send(packet).await {
        tracing::debug!(error = %err, "could not send to the TFTP client");
    }
}

/// What the client answered while the server waited for an ACK.
enum Answer {
    Ack(u16),
    Aborted(ErrorCode, String),
    Silence,
}

/// Waits up to `timeout` for an ACK or ERROR, skipping anything else.
async fn wait_answer(
    socket: &UdpSocket,
    buf: &mut [u8],
    timeout: Duration,
) -> std::io::Result<Answer> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let received = tokio::time::timeout_at(deadline, socket.recv(buf)).await;
        let len = match received {
            Err(_) => return Ok(Answer::Silence),
            Ok(result) => result?,
        };
        match parse(&buf[..len]) {
            Ok(Packet::Ack { block }) => return Ok(Answer::Ack(block)),
            Ok(Packet::Error { code, message }) => return Ok(Answer::Aborted(code, message)),
            Ok(other) => tracing::debug!(packet = ?other, "ignored an unexpected TFTP packet"),
            Err(err) => tracing::debug!(len, error = %err, "dropped a malformed TFTP packet"),
        }
    }
}

async fn send_file(
    socket: &UdpSocket,
    path: &Path,
    request: &Request,
    config: &TftpConfig,
) -> Ending {
    match send_file_inner(socket, path, request, config).await {
        Ok(ending) => ending,
        Err(err) => Ending::Io(err),
    }
}

async fn send_file_inner(
    socket: &UdpSocket,
    path: &Path,
    request: &Request,
    config: &TftpConfig,
) -> std::io::Result<Ending> {
    let mut file = tokio::fs::File::open(path).await?;
    let size = file.metadata().await?.len();
    let agreed = negotiate(&request.options, size, config);
    tracing::debug!(peer = %request.peer, file = %request.filename, mode = %request.mode, size, ?agreed, "TFTP read");
    let mut answer_buf = vec![0u8; MAX_PACKET];

    if !agreed.accepted.is_empty() {
        let oack = encode_oack(&agreed.accepted);
        let mut attempts = 0;
        loop {
            socket.send(&oack).await?;
            match wait_answer(socket, &mut answer_buf, agreed.timeout).await? {
                Answer::Ack(0) => break,
                Answer::Ack(_) => {}
                Answer::Aborted(code, message) => {
                    return Ok(Ending::ClientAborted { code, message });
                }
                Answer::Silence => {
                    attempts += 1;
                    if attempts > config.max_retransmits {
                        return Ok(Ending::TimedOut { block: 0 });
                    }
                }
            }
        }
    }

    let blksize = agreed.blksize as u64;
    // Blocks are numbered from 1; the last one is shorter than blksize (possibly empty).
    let last_block = size / blksize + 1;
    let mut base: u64 = 1;
    let mut window = vec![0u8; agreed.blksize * agreed.windowsize as usize];
    let mut packet = Vec::with_capacity(agreed.blksize + 4);
    let mut attempts = 0;
    while base <= last_block {
        let end = (base + agreed.windowsize - 1).min(last_block);
        let offset = (base - 1) * blksize;
        let want = ((end - base + 1) * blksize).min(size - offset) as usize;
        file.seek(std::io::SeekFrom::Start(offset)).await?;
        file.read_exact(&mut window[..want]).await?;
        for block in base..=end {
            let from = ((block - base) * blksize) as usize;
            let to = (from + agreed.blksize).min(want);
            encode_data(&mut packet, block as u16, &window[from.min(to)..to]);
            socket.send(&packet).await?;
        }
        loop {
            match wait_answer(socket, &mut answer_buf, agreed.timeout).await? {
                Answer::Ack(acked) => {
                    // Block numbers wrap at 65535 → 0; count forward from the last acknowledged block.
                    let progress = u64::from(acked.wrapping_sub((base - 1) as u16));
                    if progress == 0 || progress > end - base + 1 {
                        continue; // a duplicate or stale ACK: ignoring it avoids the Sorcerer's Apprentice bug
                    }
                    base += progress;
                    attempts = 0;
                    // A full window acknowledged moves on; a partial one (RFC 7440: the client saw a gap)
                    // resends from the block after the acknowledged one.
                    break;
                }
                Answer::Aborted(code, message) => {
                    return Ok(Ending::ClientAborted { code, message });
                }
                Answer::Silence => {
                    attempts += 1;
                    if attempts > config.max_retransmits {
                        return Ok(Ending::TimedOut { block: base });
                    }
                    tracing::debug!(peer = %request.peer, block = base, attempts, "TFTP retransmit");
                    break;
                }
            }
        }
    }
    Ok(Ending::Done { bytes: size })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn option(name: &str, value: &str) -> RequestOption {
        RequestOption {
            name: name.into(),
            value: value.into(),
        }
    }

    #[test]
    fn negotiation_clamps_and_ignores() {
        let config = TftpConfig::new("/nonexistent", "127.0.0.1:0".parse().expect("addr"));
        let agreed = negotiate(
            &[
                option("tsize", "0"),
                option("blksize", "9000"),
                option("windowsize", "4"),
                option("timeout", "3"),
                option("multicast", ""),
            ],
            1234,
            &config,
        );
        assert_eq!(agreed.blksize, 1468);
        assert_eq!(agreed.windowsize, 4);
        assert_eq!(agreed.timeout, Duration::from_secs(3));
        assert_eq!(
            agreed.accepted,
            vec![
                ("tsize", "1234".to_string()),
                ("blksize", "1468".to_string()),
                ("windowsize", "4".to_string()),
                ("timeout", "3".to_string()),
            ]
        );
        let refused = negotiate(
            &[
                option("blksize", "4"),
                option("timeout", "0"),
                option("windowsize", "x"),
            ],
            1,
            &config,
        );
        assert_eq!(refused.blksize, 512);
        assert_eq!(refused.windowsize, 1);
        assert!(refused.accepted.is_empty());
    }
}
