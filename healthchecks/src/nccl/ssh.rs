//! Multi-node nccl-tests over SSH (russh): connect to the first host with key authentication and a pinned host
//! key, run the launcher there (`mpirun -H … all_reduce_perf …`; mpirun reaches the other nodes itself), and
//! collect output and exit status under a hard timeout, keeping partial output when it fires.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use russh::client::{self, Handle};
use russh::keys::{PrivateKey, PrivateKeyWithHashAlg, PublicKey};
use russh::{ChannelMsg, Disconnect};

use super::judge::NcclRun;
use super::run::{CommandNcclRunner, NcclRunError, NcclRunner};

/// A host kiln may connect to, with the SSH host key it must present (pinned from the agent's report).
#[derive(Debug, Clone)]
pub struct PinnedHost {
    /// `host:port` to connect to.
    pub addr: String,
    /// The host key it must present.
    pub host_key: PublicKey,
}

/// Runs nccl-tests on the first host of a set over SSH.
#[derive(Debug, Clone)]
pub struct SshNcclRunner {
    /// SSH user.
    pub user: String,
    /// Client key for public-key authentication.
    pub key: Arc<PrivateKey>,
    /// Pinned hosts by host name (the names that appear in host lists).
    pub hosts: HashMap<String, PinnedHost>,
    /// The command template run on the first host (same placeholders as [`CommandNcclRunner`]), and the timeout.
    pub command: CommandNcclRunner,
    /// Limit for connecting and authenticating.
    pub connect_timeout: Duration,
}

/// Client handler that accepts only the pinned host key and remembers what was presented.
struct PinnedKeyCheck {
    pinned: PublicKey,
    presented: Arc<Mutex<Option<String>>>,
}

impl client::Handler for PinnedKeyCheck {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        server_public_key: &PublicKey,
    ) -> Result<bool, Self::Error> {
        if let Ok(mut p) = self.presented.lock() {
            *p = Some(fingerprint(server_public_key));
        }
        Ok(server_public_key.key_data() == self.pinned.key_data())
    }
}

fn fingerprint(key: &PublicKey) -> String {
    key.fingerprint(russh::keys::HashAlg::Sha256).to_string()
}

/// Quotes one argument for a POSIX shell (the remote side runs the command line through the user's shell).
fn shell_quote(arg: &str) -> String {
    let plain = !arg.is_empty()
        && arg
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:=,@%+{}".contains(c));
    if plain {
        arg.to_string()
    } else {
        format!("'{}'", arg.replace('\'', "'\\''"))
    }
}

impl SshNcclRunner {
    async fn connect(&self, host: &str) -> Result<Handle<PinnedKeyCheck>, NcclRunError> {
        let pinned = self
            .hosts
            .get(host)
            .ok_or_else(|| NcclRunError::UnknownHost {
                host: host.to_string(),
            })?;
        let presented = Arc::new(Mutex::new(None));
        let handler = PinnedKeyCheck {
            pinned: pinned.host_key.clone(),
            presented: presented.clone(),
        };
        let config = Arc::new(client::Config::default());
        let connected = tokio::time::timeout(
            self.connect_timeout,
            client::connect(config, pinned.addr.as_str(), handler),
        )
        .await;
        let mut session = match connected {
            Err(_) => {
                return Err(NcclRunError::SshTimeout {
                    host: host.to_string(),
                    timeout: self.connect_timeout,
                });
            }
            Ok(Err(russh::Error::UnknownKey)) => {
                let presented = presented
                    .lock()
                    .ok()
                    .and_then(|p| p.clone())
                    .unwrap_or_default();
                return Err(NcclRunError::HostKeyMismatch {
                    host: host.to_string(),
                    presented,
                    pinned: fingerprint(&pinned.host_key),
                });
            }
            Ok(Err(source)) => {
                return Err(NcclRunError::Ssh {
                    host: host.to_string(),
                    source,
                });
            }
            Ok(Ok(s)) => s,
        };
        let key = PrivateKeyWithHashAlg::new(self.key.clone(), None);
        let auth = tokio::time::timeout(
            self.connect_timeout,
            session.authenticate_publickey(&self.user, key),
        )
        .await
        .map_err(|_| NcclRunError::SshTimeout {
            host: host.to_string(),
            timeout: self.connect_timeout,
        })?
        .map_err(|source| NcclRunError::Ssh {
            host: host.to_string(),
            source,
        })?;
        if !auth.success() {
            return Err(NcclRunError::AuthRejected {
                host: host.to_string(),
                user: self.user.clone(),
            });
        }
        Ok(session)
    }
}

impl NcclRunner for SshNcclRunner {
    async fn run(&self, hosts: &[String]) -> Result<NcclRun, NcclRunError> {
        let launcher = hosts.first().ok_or(NcclRunError::NoHosts)?;
        let command_line: Vec<String> = self
            .command
            .argv_for(hosts)
            .iter()
            .map(|a| shell_quote(a))
            .collect();
        let command_line = command_line.join(" ");
        tracing::info!(launcher = %launcher, hosts = ?hosts, command = %command_line, "running nccl-tests over SSH");
        let session = self.connect(launcher).await?;
        let ssh_err = |source| NcclRunError::Ssh {
            host: launcher.clone(),
            source,
        };
        let mut channel = session.channel_open_session().await.map_err(ssh_err)?;
        channel
            .exec(true, command_line.as_bytes())
            .await
            .map_err(ssh_err)?;
        let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
        let mut exit_code = None;
        let mut timed_out = false;
        let deadline = tokio::time::Instant::now() + self.command.timeout;
        loop {
            match tokio::time::timeout_at(deadline, channel.wait()).await {
                Err(_) => {
                    tracing::warn!(launcher = %launcher, "nccl-tests over SSH timed out; closing the channel");
                    timed_out = true;
                    let _ = channel.close().await;
                    break;
                }
                Ok(None) => break,
                Ok(Some(ChannelMsg::Data { data })) => stdout.extend_from_slice(&data),
                Ok(Some(ChannelMsg::ExtendedData { data, .. })) => stderr.extend_from_slice(&data),
                Ok(Some(ChannelMsg::ExitStatus { exit_status })) => {
                    exit_code = i32::try_from(exit_status).ok()
                }
                Ok(Some(_)) => {}
            }
        }
        let _ = session
            .disconnect(Disconnect::ByApplication, "", "en")
            .await;
        Ok(NcclRun {
            hosts: hosts.to_vec(),
            exit_code: if timed_out { None } else { exit_code },
            timed_out,
            output: format!(
                "{}{}",
                String::from_utf8_lossy(&stdout),
                String::from_utf8_lossy(&stderr)
            ),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::shell_quote;

    #[test]
    fn quotes_only_what_needs_quoting() {
        assert_eq!(shell_quote("all_reduce_perf"), "all_reduce_perf");
        assert_eq!(shell_quote("h1:8,h2:8"), "h1:8,h2:8");
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), "'it'\\''s'");
        assert_eq!(shell_quote(""), "''");
    }
}
