//! A simulated BMC whose server is a QEMU VM: the BMC's power events are forwarded over QMP (QEMU's JSON control
//! socket, `-qmp unix:SOCK,server,nowait`), so kiln drives a real (virtual) machine through real Redfish.
//!
//! - power on (after the BMC's power-on delay) → `system_reset`, then `cont` once QEMU reports the `RESET`
//!   (a `cont` sent before the reset is carried out is refused after a guest shutdown);
//! - power off → `stop`;
//! - the guest powering itself off (QEMU's `SHUTDOWN` event; run the VM with `-no-shutdown` so it stays) or the
//!   VM ending → the BMC reports `Off`, as a real BMC would ([`SimBmc::server_powered_off`]).
//!
//! Start the VM paused (`-S`) so it runs only once kiln powers it on. The boot override is not forwarded: the VM
//! network-boots first and kiln's boot script (chosen from the node's state) sends it to the ramdisk or to its
//! disk, as with a server whose boot order is PXE first.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::state::{SimBmc, SimEvent, SimEventKind};

/// Why the QMP bridge stopped.
#[derive(Debug, thiserror::Error)]
pub enum QmpError {
    /// The socket could not be opened, read or written.
    #[error("QMP socket {path}: {op}")]
    Io {
        /// The socket.
        path: PathBuf,
        /// What was being done.
        op: &'static str,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// QEMU said something that is not QMP, or refused the handshake.
    #[error("QMP socket {path}: {detail}")]
    Protocol {
        /// The socket.
        path: PathBuf,
        /// What was wrong.
        detail: String,
    },
    /// QEMU closed the socket (the VM ended).
    #[error("QMP socket {path}: QEMU closed it")]
    Closed {
        /// The socket.
        path: PathBuf,
    },
}

/// An open QMP session past the capabilities handshake.
#[derive(Debug)]
pub struct Qmp {
    path: PathBuf,
    lines: tokio::io::Lines<BufReader<OwnedReadHalf>>,
    writer: OwnedWriteHalf,
}

impl Qmp {
    /// Connects to `path`, reads QEMU's greeting and enters command mode.
    pub async fn connect(path: &Path) -> Result<Self, QmpError> {
        let io = |op| {
            let path = path.to_path_buf();
            move |source| QmpError::Io { path, op, source }
        };
        let stream = UnixStream::connect(path).await.map_err(io("connecting"))?;
        let (reader, writer) = stream.into_split();
        let mut qmp = Qmp {
            path: path.to_path_buf(),
            lines: BufReader::new(reader).lines(),
            writer,
        };
        let greeting = qmp.next_message().await?;
        if greeting.get("QMP").is_none() {
            return Err(qmp.protocol(format!("expected the QMP greeting, got {greeting}")));
        }
        qmp.send("qmp_capabilities").await?;
        loop {
            let answer = qmp.next_message().await?;
            if answer.get("return").is_some() {
                return Ok(qmp);
            }
            if let Some(error) = answer.get("error") {
                return Err(qmp.protocol(format!("qmp_capabilities refused: {error}")));
            }
        }
    }

    fn protocol(&self, detail: String) -> QmpError {
        QmpError::Protocol {
            path: self.path.clone(),
            detail,
        }
    }

    /// Sends a command without waiting for its answer (answers and events arrive through
    /// [`Qmp::next_message`]).
    pub async fn send(&mut self, command: &str) -> Result<(), QmpError> {
        let mut line = json!({ "execute": command }).to_string();
        line.push('\n');
        self.writer
            .write_all(line.as_bytes())
            .await
            .map_err(|source| QmpError::Io {
                path: self.path.clone(),
                op: "writing",
                source,
            })
    }

    /// The next message from QEMU: a command's answer (`return` / `error`) or an event (`event`).
    pub async fn next_message(&mut self) -> Result<Value, QmpError> {
        let line = self
            .lines
            .next_line()
            .await
            .map_err(|source| QmpError::Io {
                path: self.path.clone(),
                op: "reading",
                source,
            })?
            .ok_or_else(|| QmpError::Closed {
                path: self.path.clone(),
            })?;
        serde_json::from_str(&line)
            .map_err(|err| self.protocol(format!("not JSON ({err}): {line:?}")))
    }
}

/// Forwards `bmc`'s power events (read from `events`, the fleet's channel) to the VM behind `qmp` until
/// `cancel` fires or QEMU closes the socket (the VM ended: `Ok`).
pub async fn bridge(
    bmc: Arc<SimBmc>,
    mut events: broadcast::Receiver<SimEvent>,
    mut qmp: Qmp,
    cancel: CancellationToken,
) -> Result<(), QmpError> {
    let mut cont_after_reset = false;
    loop {
        tokio::select! {
            () = cancel.cancelled() => return Ok(()),
            event = events.recv() => match event {
                Ok(SimEvent { bmc: index, kind }) if index == bmc.index => match kind {
                    SimEventKind::PoweredOn { boot_target } => {
                        info!(bmc = index, ?boot_target, "power on: resetting and running the VM");
                        qmp.send("system_reset").await?;
                        cont_after_reset = true;
                    }
                    SimEventKind::PoweredOff => {
                        info!(bmc = index, "power off: stopping the VM");
                        cont_after_reset = false;
                        qmp.send("stop").await?;
                    }
                    _ => {}
                },
                Ok(_) => {}
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    warn!(bmc = bmc.index, missed, "missed BMC events");
                }
                Err(broadcast::error::RecvError::Closed) => return Ok(()),
            },
            message = qmp.next_message() => {
                let message = match message {
                    Err(QmpError::Closed { .. }) => {
                        info!(bmc = bmc.index, "QEMU closed its QMP socket: the VM ended");
                        bmc.server_powered_off();
                        return Ok(());
                    }
                    other => other?,
                };
                match message.get("event").and_then(Value::as_str) {
                    Some("RESET") if cont_after_reset => {
                        cont_after_reset = false;
                        qmp.send("cont").await?;
                    }
                    // `guest: false` is QEMU's own doing (a `quit`), not the server's.
                    Some("SHUTDOWN") if message["data"]["guest"] == json!(true) => {
                        info!(bmc = bmc.index, data = %message["data"], "the guest powered off");
                        bmc.server_powered_off();
                    }
                    _ => {
                        if let Some(error) = message.get("error") {
                            warn!(bmc = bmc.index, %error, "QEMU refused a command");
                        }
                    }
                }
            }
        }
    }
}
