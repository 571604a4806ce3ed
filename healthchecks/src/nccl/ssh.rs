//! Multi-node nccl-tests over SSH (russh): connect to the first host with key authentication and a pinned host
//! key, run the launcher there (`mpirun -H … all_reduce_perf …`; mpirun reaches the other nodes itself), and
//! collect output and exit status under a hard timeout, keeping partial output when it fires.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use russh::client::{self, Handle};
use russh::keys::PrivateKeyWithHashAlg;
pub use russh::keys::{PrivateKey, PublicKey};
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

pub use crate::ssh_key::{SshKeyError, load_private_key};

/// A pinned-hosts file line kiln cannot use.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("pinned hosts line {line}: {reason} (expected `NAME HOST:PORT KEYTYPE BASE64`)")]
pub struct PinnedHostsError {
    /// 1-based line number.
    pub line: usize,
    /// What is wrong with it.
    pub reason: String,
}

/// Parses pinned hosts: one `NAME HOST:PORT KEYTYPE BASE64 [comment]` per line (`#` comments, blank lines ok).
/// The key part is an OpenSSH public key, as in the agent's report or a host's `ssh_host_ed25519_key.pub`.
pub fn parse_pinned_hosts(text: &str) -> Result<HashMap<String, PinnedHost>, PinnedHostsError> {
    let mut hosts = HashMap::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let err = |reason: &str| PinnedHostsError {
            line: i + 1,
            reason: reason.to_string(),
        };
        let mut parts = line.splitn(3, char::is_whitespace);
        let (Some(name), Some(addr), Some(key)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(err("too few fields"));
        };
        if !addr.contains(':') {
            return Err(err("address needs a port"));
        }
        let host_key = PublicKey::from_openssh(key.trim())
            .map_err(|e| err(&format!("bad public key: {e}")))?;
        if hosts
            .insert(
                name.to_string(),
                PinnedHost {
                    addr: addr.to_string(),
                    host_key,
                },
            )
            .is_some()
        {
            return Err(err("host listed twice"));
        }
    }
    Ok(hosts)
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
pub fn shell_quote(arg: &str) -> String {
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

impl SshClient {
    async fn connect(
        &self,
        host: &str,
        pinned: &PinnedHost,
    ) -> Result<Handle<PinnedKeyCheck>, NcclRunError> {
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

/// Who kiln is on SSH: user, key, and how long connecting may take.
#[derive(Debug, Clone)]
pub struct SshClient {
    /// SSH user.
    pub user: String,
    /// Client key for public-key authentication.
    pub key: Arc<PrivateKey>,
    /// Limit for connecting and authenticating.
    pub connect_timeout: Duration,
}

/// What one command run over SSH gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteOutput {
    /// Exit status; `None` when it did not finish.
    pub exit_code: Option<i32>,
    /// The hard timeout fired (the output is what came before).
    pub timed_out: bool,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

/// The most output (stdout and stderr together) [`SshClient::exec`] buffers from one command: 16 MiB.
pub const DEFAULT_OUTPUT_CAP: usize = 16 * 1024 * 1024;

impl SshClient {
    /// Runs `command` (a shell command line) on `host` at `pinned.addr`, accepting only the pinned host key,
    /// under a hard `timeout` that keeps the partial output, buffering at most [`DEFAULT_OUTPUT_CAP`] bytes of
    /// output (see [`Self::exec_capped`]).
    pub async fn exec(
        &self,
        host: &str,
        pinned: &PinnedHost,
        command: &str,
        timeout: Duration,
    ) -> Result<RemoteOutput, NcclRunError> {
        self.exec_capped(host, pinned, command, timeout, DEFAULT_OUTPUT_CAP)
            .await
    }

    /// [`Self::exec`] with an explicit cap on the output buffered (stdout and stderr together). A node that
    /// sends more than `output_cap` bytes is cut off: kiln stops reading, closes the channel and the session,
    /// and returns [`NcclRunError::Remote`] saying the output exceeded the cap, so a flooding node costs at
    /// most `output_cap` bytes of memory, never the whole timeout's worth.
    pub async fn exec_capped(
        &self,
        host: &str,
        pinned: &PinnedHost,
        command: &str,
        timeout: Duration,
        output_cap: usize,
    ) -> Result<RemoteOutput, NcclRunError> {
        let session = self.connect(host, pinned).await?;
        let ssh_err = |source| NcclRunError::Ssh {
            host: host.to_string(),
            source,
        };
        let mut channel = session.channel_open_session().await.map_err(ssh_err)?;
        channel
            .exec(true, command.as_bytes())
            .await
            .map_err(ssh_err)?;
        let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
        let mut exit_code = None;
        let mut timed_out = false;
        let deadline = tokio::time::Instant::now() + timeout;
        let mut over_cap = false;
        loop {
            match tokio::time::timeout_at(deadline, channel.wait()).await {
                Err(_) => {
                    tracing::warn!(host = %host, command, "SSH command timed out; closing the channel");
                    timed_out = true;
                    let _ = channel.close().await;
                    break;
                }
                Ok(None) => break,
                Ok(Some(ChannelMsg::Data { data })) => {
                    if stdout.len() + stderr.len() + data.len() > output_cap {
                        over_cap = true;
                        break;
                    }
                    stdout.extend_from_slice(&data)
                }
                Ok(Some(ChannelMsg::ExtendedData { data, .. })) => {
                    if stdout.len() + stderr.len() + data.len() > output_cap {
                        over_cap = true;
                        break;
                    }
                    stderr.extend_from_slice(&data)
                }
                Ok(Some(ChannelMsg::ExitStatus { exit_status })) => {
                    exit_code = i32::try_from(exit_status).ok()
                }
                Ok(Some(_)) => {}
            }
        }
        if over_cap {
            tracing::warn!(host = %host, command, output_cap, "SSH command output over the cap; closing the channel");
            let _ = channel.close().await;
        }
        let _ = session
            .disconnect(Disconnect::ByApplication, "", "en")
            .await;
        if over_cap {
            return Err(NcclRunError::Remote {
                detail: format!(
                    "output of `{command}` on {host} exceeded the cap of {output_cap} bytes; stopped reading \
                     and closed the channel"
                ),
            });
        }
        Ok(RemoteOutput {
            exit_code: if timed_out { None } else { exit_code },
            timed_out,
            stdout: String::from_utf8_lossy(&stdout).into_owned(),
            stderr: String::from_utf8_lossy(&stderr).into_owned(),
        })
    }
}

impl NcclRunner for SshNcclRunner {
    async fn run(&self, hosts: &[String]) -> Result<NcclRun, NcclRunError> {
        let launcher = hosts.first().ok_or(NcclRunError::NoHosts)?;
        let pinned = self
            .hosts
            .get(launcher)
            .ok_or_else(|| NcclRunError::UnknownHost {
                host: launcher.clone(),
            })?;
        let command_line: Vec<String> = self
            .command
            .argv_for(hosts)
            .iter()
            .map(|a| shell_quote(a))
            .collect();
        let command_line = command_line.join(" ");
        tracing::info!(launcher = %launcher, hosts = ?hosts, command = %command_line, "running nccl-tests over SSH");
        let client = SshClient {
            user: self.user.clone(),
            key: self.key.clone(),
            connect_timeout: self.connect_timeout,
        };
        let out = client
            .exec(launcher, pinned, &command_line, self.command.timeout)
            .await?;
        Ok(NcclRun {
            hosts: hosts.to_vec(),
            exit_code: out.exit_code,
            timed_out: out.timed_out,
            output: format!("{}{}", out.stdout, out.stderr),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::{parse_pinned_hosts, shell_quote};

    const KEY: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJ5CFqdiXJXAiTWuTvq8d3n/4pIpAqSPI1WGl7Kz2xjA";

    #[test]
    fn pinned_hosts_file_parses_and_rejects_bad_lines() {
        let text = format!(
            "# site pins\nnode-01 10.0.0.1:22 {KEY} root@node-01\n\nnode-02 10.0.0.2:2222 {KEY}\n"
        );
        let hosts = parse_pinned_hosts(&text).expect("parses");
        assert_eq!(hosts.len(), 2);
        assert_eq!(hosts["node-02"].addr, "10.0.0.2:2222");
        assert_eq!(
            parse_pinned_hosts("node-01 10.0.0.1:22")
                .expect_err("short")
                .line,
            1
        );
        assert!(
            parse_pinned_hosts(&format!("n 10.0.0.1 {KEY}"))
                .expect_err("port")
                .reason
                .contains("port")
        );
        assert!(parse_pinned_hosts("n 1.2.3.4:22 ssh-ed25519 notbase64").is_err());
        assert!(
            parse_pinned_hosts(&format!("n 1:22 {KEY}\nn 2:22 {KEY}"))
                .expect_err("dup")
                .reason
                .contains("twice")
        );
    }

    #[test]
    fn quotes_only_what_needs_quoting() {
        assert_eq!(shell_quote("all_reduce_perf"), "all_reduce_perf");
        assert_eq!(shell_quote("h1:8,h2:8"), "h1:8,h2:8");
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), "'it'\\''s'");
        assert_eq!(shell_quote(""), "''");
    }
}
