//! A read-only TFTP server for network boot (RFC 1350 with the option extension RFC 2347 and the options
//! `blksize` RFC 2348, `timeout`/`tsize` RFC 2349 and `windowsize` RFC 7440).
//!
//! The server reads requests on one socket and runs each transfer as a task on its own socket (a new transfer ID,
//! as RFC 1350 asks), so many transfers run at once without an OS thread each.
//!
//! Invariant: only regular files inside the root are served; `..`, absolute paths and symlinks that lead out of
//! the root are refused with an access-violation error and a warning in the log.
//! Invariant: a malformed datagram is dropped with a debug log; nothing a peer sends can panic the server.

mod packet;
mod path;
mod transfer;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

pub use packet::{
    ErrorCode, MAX_PACKET, Mode, Packet, PacketError, RequestOption, encode_ack, encode_error,
    encode_read_request, parse,
};
pub use path::{PathRefused, resolve_in_root};

/// How the TFTP server behaves.
#[derive(Debug, Clone)]
pub struct TftpConfig {
    /// Directory whose files are served (iPXE binaries). Nothing outside it is ever read.
    pub root: PathBuf,
    /// Where to listen for requests (port 69 in production; port 0 in tests).
    pub bind: SocketAddr,
    /// How long to wait for an ACK before sending again, unless the client negotiates `timeout`.
    pub retransmit_timeout: Duration,
    /// How many times a packet is sent again before the transfer is abandoned.
    pub max_retransmits: u32,
    /// Largest block size granted (clients asking for more get this).
    pub max_blksize: u16,
    /// Largest window granted (clients asking for more get this).
    pub max_windowsize: u16,
    /// Most transfers running at once; requests beyond it are answered with an error.
    pub max_transfers: usize,
}

impl TftpConfig {
    /// Defaults for serving `root` on `bind`: 1 s retransmit timeout, 5 retransmits, blocks up to 1468 bytes
    /// (fits a 1500-byte MTU), windows up to 64 blocks, 1024 concurrent transfers.
    pub fn new(root: impl Into<PathBuf>, bind: SocketAddr) -> Self {
        Self {
            root: root.into(),
            bind,
            retransmit_timeout: Duration::from_secs(1),
            max_retransmits: 5,
            max_blksize: 1468,
            max_windowsize: 64,
            max_transfers: 1024,
        }
    }
}

/// Why the TFTP server could not start.
#[derive(Debug, thiserror::Error)]
pub enum TftpError {
    /// The listening socket could not be bound.
    #[error("cannot bind the TFTP server to {addr}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The root directory cannot be used.
    #[error("TFTP root {root} is not a readable directory")]
    Root {
        /// The configured root.
        root: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

/// A bound TFTP server, not yet serving. [`TftpServer::start`] serves in a task; [`TftpServer::run`] serves
/// until cancelled.
#[derive(Debug)]
pub struct TftpServer {
    socket: UdpSocket,
    config: Arc<TftpConfig>,
    root: PathBuf,
}

/// A TFTP server running in a task.
#[derive(Debug)]
pub struct TftpHandle {
    /// Where the server listens (with the real port when bound to port 0).
    pub local_addr: SocketAddr,
    cancel: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl TftpHandle {
    /// Stops accepting requests, cancels running transfers and waits for them to end.
    pub async fn shutdown(self) {
        self.cancel.cancel();
        if let Err(err) = self.task.await {
            tracing::warn!(error = %err, "TFTP server task ended abnormally");
        }
    }
}

impl TftpServer {
    /// Binds the request socket and checks the root.
    pub async fn bind(config: TftpConfig) -> Result<Self, TftpError> {
        let root = std::fs::canonicalize(&config.root).map_err(|source| TftpError::Root {
            root: config.root.clone(),
            source,
        })?;
        if !root.is_dir() {
            return Err(TftpError::Root {
                root: config.root.clone(),
                source: std::io::Error::new(std::io::ErrorKind::NotADirectory, "not a directory"),
            });
        }
        let socket = UdpSocket::bind(config.bind)
            .await
            .map_err(|source| TftpError::Bind {
                addr: config.bind,
                source,
            })?;
        Ok(Self {
            socket,
            config: Arc::new(config),
            root,
        })
    }

    /// The address the server listens on.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.socket.local_addr()
    }

    /// Serves in a background task; returns a handle to stop it.
    pub fn start(self) -> std::io::Result<TftpHandle> {
        let local_addr = self.local_addr()?;
        let cancel = CancellationToken::new();
        let task = tokio::spawn(self.run(cancel.clone()));
        Ok(TftpHandle {
            local_addr,
            cancel,
            task,
        })
    }

    /// Serves requests until `cancel` fires, then cancels the transfers in flight.
    pub async fn run(self, cancel: CancellationToken) {
        let local = self.socket.local_addr().ok();
        tracing::info!(addr = ?local, root = %self.root.display(), "TFTP server listening");
        let slots = Arc::new(Semaphore::new(self.config.max_transfers));
        let mut transfers = JoinSet::new();
        let mut buf = vec![0u8; MAX_PACKET];
        loop {
            let received = tokio::select! {
                () = cancel.cancelled() => break,
                Some(_) = transfers.join_next(), if !transfers.is_empty() => continue,
                received = self.socket.recv_from(&mut buf) => received,
            };
            let (len, peer) = match received {
                Ok(received) => received,
                Err(err) => {
                    // ICMP errors from earlier sends surface here on Linux; they concern one peer only.
                    tracing::debug!(error = %err, "TFTP receive error");
                    continue;
                }
            };
            let request = match parse(&buf[..len]) {
                Ok(packet) => packet,
                Err(err) => {
                    tracing::debug!(%peer, len, error = %err, "dropped a malformed TFTP packet");
                    continue;
                }
            };
            match request {
                Packet::ReadRequest {
                    filename,
                    mode,
                    options,
                } => {
                    let Ok(permit) = slots.clone().try_acquire_owned() else {
                        tracing::warn!(%peer, file = %filename, "too many TFTP transfers; request refused");
                        self.reply_error(peer, ErrorCode::Undefined, "server busy")
                            .await;
                        continue;
                    };
                    let request = transfer::Request {
                        peer,
                        filename,
                        mode,
                        options,
                    };
                    let config = self.config.clone();
                    let root = self.root.clone();
                    let local_ip = self.socket.local_addr().map(|a| a.ip()).ok();
                    let cancel = cancel.child_token();
                    transfers.spawn(async move {
                        transfer::serve(request, &config, &root, local_ip, cancel).await;
                        drop(permit);
                    });
                }
                Packet::WriteRequest { filename } => {
                    tracing::warn!(%peer, file = %filename, "refused a TFTP write request (read-only server)");
                    self.reply_error(peer, ErrorCode::AccessViolation, "read-only server")
                        .await;
                }
                other => {
                    tracing::debug!(%peer, packet = ?other, "ignored a TFTP packet outside any transfer");
                }
            }
        }
        transfers.shutdown().await;
        tracing::info!(addr = ?local, "TFTP server stopped");
    }

    async fn reply_error(&self, peer: SocketAddr, code: ErrorCode, message: &str) {
        if let Err(err) = self
            .socket
            .send_to(&encode_error(code, message), peer)
            .await
        {
            tracing::debug!(%peer, error = %err, "could not send a TFTP error");
        }
    }
}
