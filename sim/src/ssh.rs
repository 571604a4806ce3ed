//! The SSH server of a virtual node's installed OS (russh, the node's ed25519 host key, a loopback port): it
//! accepts only the provisioner's client key, only while the installed OS is up, and answers the fixed
//! command set through [`crate::answers`].

use std::sync::Arc;
use std::time::Duration;

use russh::keys::PublicKey;
use russh::server::{Auth, Handler, Msg, Session};
use russh::{Channel, ChannelId, CryptoVec};
use tokio::net::TcpListener;
use tracing::debug;

use crate::answers::{HallContext, answer};
use crate::node::VirtualNode;

/// Server settings for one node: its presented host key, quick rejections (loopback, tests).
pub fn server_config(node: &VirtualNode) -> Arc<russh::server::Config> {
    Arc::new(russh::server::Config {
        keys: vec![node.presented_key.clone()],
        auth_rejection_time: Duration::from_millis(10),
        auth_rejection_time_initial: Some(Duration::ZERO),
        inactivity_timeout: Some(Duration::from_secs(600)),
        nodelay: true,
        ..Default::default()
    })
}

/// Accepts connections for `node` until the task is aborted.
pub async fn serve(
    hall: Arc<HallContext>,
    node: Arc<VirtualNode>,
    listener: TcpListener,
    client_key: PublicKey,
) {
    let config = server_config(&node);
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(err) => {
                debug!(serial = %node.serial, error = %err, "SSH accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        if !node.os_up() {
            // Nothing listens while the node is off or in the ramdisk.
            drop(stream);
            continue;
        }
        let handler = NodeSession {
            hall: hall.clone(),
            node: node.clone(),
            client_key: client_key.clone(),
        };
        let config = config.clone();
        tokio::spawn(async move {
            match russh::server::run_stream(config, stream, handler).await {
                Ok(session) => {
                    if let Err(err) = session.await {
                        debug!(error = %err, "SSH session ended with an error");
                    }
                }
                Err(err) => debug!(error = %err, "SSH handshake failed"),
            }
        });
    }
}

/// One SSH connection to a node.
struct NodeSession {
    hall: Arc<HallContext>,
    node: Arc<VirtualNode>,
    client_key: PublicKey,
}

impl NodeSession {
    fn accepts(&self, key: &PublicKey) -> Auth {
        if key.key_data() == self.client_key.key_data() {
            Auth::Accept
        } else {
            Auth::reject()
        }
    }
}

impl Handler for NodeSession {
    type Error = russh::Error;

    async fn auth_publickey_offered(
        &mut self,
        _user: &str,
        key: &PublicKey,
    ) -> Result<Auth, Self::Error> {
        Ok(self.accepts(key))
    }

    async fn auth_publickey(&mut self, _user: &str, key: &PublicKey) -> Result<Auth, Self::Error> {
        Ok(self.accepts(key))
    }

    async fn channel_open_session(
        &mut self,
        _channel: Channel<Msg>,
        _session: &mut Session,
    ) -> Result<bool, Self::Error> {
        Ok(true)
    }

    async fn exec_request(
        &mut self,
        channel: ChannelId,
        data: &[u8],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        let line = String::from_utf8_lossy(data).into_owned();
        session.channel_success(channel)?;
        let handle = session.handle();
        let (hall, node) = (self.hall.clone(), self.node.clone());
        // Long commands (burn-in, NCCL) run beside the session so it keeps serving.
        tokio::spawn(async move {
            let reply = answer(&hall, &node, &line).await;
            debug!(serial = %node.serial, command = %line, status = reply.exit_status, "SSH command");
            tokio::time::sleep(reply.takes).await;
            let bytes = CryptoVec::from(reply.output.into_bytes());
            let sent = if reply.exit_status == 127 {
                handle.extended_data(channel, 1, bytes).await
            } else {
                handle.data(channel, bytes).await
            };
            if sent.is_err() {
                return;
            }
            let _ = handle.exit_status_request(channel, reply.exit_status).await;
            let _ = handle.eof(channel).await;
            let _ = handle.close(channel).await;
        });
        Ok(())
    }
}
