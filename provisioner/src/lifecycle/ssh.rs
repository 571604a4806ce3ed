//! The production [`NodeAccess`]: russh to the node's installed OS, accepting only the host key its agent
//! reported, running the command set fixed in [`super::access`].

use std::sync::Arc;
use std::time::Duration;

use kiln_health::Verdict;
use kiln_health::nccl::{
    CommandNcclRunner, NcclRun, NcclRunError, PinnedHost, RemoteOutput, SshClient, shell_quote,
};

use russh::keys::{PrivateKey, PublicKey};

use super::access::{AccessError, NCCL_TEMPLATE, NodeAccess, NodeHost, PostImageFacts};

/// SSH into nodes as `user` with `key`.
#[derive(Debug, Clone)]
pub struct SshNodeAccess {
    client: SshClient,
    /// Limit for each post-image command.
    pub command_timeout: Duration,
    /// GPUs per node, for the NCCL launcher's `{np}` and `{hosts_slots}`.
    pub gpus_per_node: u32,
    /// Limit for one NCCL run.
    pub nccl_timeout: Duration,
}

impl SshNodeAccess {
    /// Access as `user` with `key`.
    pub fn new(user: impl Into<String>, key: PrivateKey) -> Self {
        Self {
            client: SshClient {
                user: user.into(),
                key: Arc::new(key),
                connect_timeout: Duration::from_secs(15),
            },
            command_timeout: Duration::from_secs(30),
            gpus_per_node: 8,
            nccl_timeout: Duration::from_secs(600),
        }
    }

    async fn run(
        &self,
        host: &NodeHost,
        command: &str,
        timeout: Duration,
    ) -> Result<RemoteOutput, AccessError> {
        let host_key = PublicKey::from_openssh(host.host_key.trim()).map_err(|err| {
            AccessError::BadOutput {
                serial: host.serial.clone(),
                command: "pinned host key".into(),
                reason: format!("the reported host key does not parse: {err}"),
            }
        })?;
        let pinned = PinnedHost {
            addr: host.address.clone(),
            host_key,
        };
        self.client
            .exec(&host.serial, &pinned, command, timeout)
            .await
            .map_err(|err| access_error(&host.serial, err))
    }
}

fn access_error(serial: &str, err: NcclRunError) -> AccessError {
    match err {
        NcclRunError::HostKeyMismatch {
            presented, pinned, ..
        } => AccessError::HostKeyMismatch {
            serial: serial.to_string(),
            presented,
            pinned,
        },
        other => AccessError::Unreachable {
            serial: serial.to_string(),
            reason: kiln_bmc::fleet::error_chain(&other),
        },
    }
}

fn finished(host: &NodeHost, command: &str, out: &RemoteOutput) -> Result<(), AccessError> {
    if out.timed_out {
        return Err(AccessError::BadOutput {
            serial: host.serial.clone(),
            command: command.into(),
            reason: "timed out".into(),
        });
    }
    Ok(())
}

/// Counts `GPU n: …` lines of `nvidia-smi -L`.
pub fn count_gpus(listing: &str) -> u32 {
    listing
        .lines()
        .filter(|line| {
            line.trim_start()
                .strip_prefix("GPU ")
                .and_then(|rest| rest.split(':').next())
                .is_some_and(|n| n.trim().parse::<u32>().is_ok())
        })
        .count() as u32
}

#[async_trait::async_trait]
impl NodeAccess for SshNodeAccess {
    async fn post_image_check(&self, host: &NodeHost) -> Result<PostImageFacts, AccessError> {
        let mut transcript = String::new();
        let mut outputs = Vec::new();
        for command in [
            "uname -r",
            "cat /sys/module/nvidia/version",
            "nvidia-smi -L",
        ] {
            let out = self.run(host, command, self.command_timeout).await?;
            finished(host, command, &out)?;
            transcript.push_str(&format!(
                "$ {command}\n{}{}[exit {}]\n",
                out.stdout,
                out.stderr,
                out.exit_code.map_or("?".to_string(), |c| c.to_string())
            ));
            outputs.push(out);
        }
        let kernel = outputs[0].stdout.trim().to_string();
        if outputs[0].exit_code != Some(0)
            || kernel.is_empty()
            || kernel.contains(char::is_whitespace)
        {
            return Err(AccessError::BadOutput {
                serial: host.serial.clone(),
                command: "uname -r".into(),
                reason: format!("not a kernel release: {kernel:?}"),
            });
        }
        let driver = (outputs[1].exit_code == Some(0))
            .then(|| outputs[1].stdout.trim().to_string())
            .filter(|v| !v.is_empty());
        let gpu_count = if outputs[2].exit_code == Some(0) {
            count_gpus(&outputs[2].stdout)
        } else {
            0
        };
        Ok(PostImageFacts {
            kernel,
            driver,
            gpu_count,
            transcript,
        })
    }

    async fn burn_in(&self, host: &NodeHost, duration: Duration) -> Result<Verdict, AccessError> {
        let command = format!(
            "kiln-agent burn-in --json --duration-s {}",
            duration.as_secs().max(1)
        );
        let out = self
            .run(host, &command, duration + Duration::from_secs(120))
            .await?;
        finished(host, &command, &out)?;
        serde_json::from_str(out.stdout.trim()).map_err(|err| AccessError::BadOutput {
            serial: host.serial.clone(),
            command,
            reason: format!("not a verdict: {err}; stderr: {}", out.stderr.trim()),
        })
    }

    async fn nccl(&self, hosts: &[NodeHost]) -> Result<NcclRun, AccessError> {
        let Some(launcher) = hosts.first() else {
            return Err(AccessError::Unreachable {
                serial: String::new(),
                reason: "no hosts for the NCCL test".into(),
            });
        };
        let template = CommandNcclRunner {
            argv_template: NCCL_TEMPLATE.iter().map(|a| a.to_string()).collect(),
            gpus_per_node: self.gpus_per_node,
            timeout: self.nccl_timeout,
            env: Vec::new(),
        };
        let serials: Vec<String> = hosts.iter().map(|h| h.serial.clone()).collect();
        let command = template
            .argv_for(&serials)
            .iter()
            .map(|a| shell_quote(a))
            .collect::<Vec<_>>()
            .join(" ");
        let out = self.run(launcher, &command, self.nccl_timeout).await?;
        Ok(NcclRun {
            hosts: serials,
            exit_code: out.exit_code,
            timed_out: out.timed_out,
            output: format!("{}{}", out.stdout, out.stderr),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::count_gpus;

    #[test]
    fn counts_nvidia_smi_lines() {
        let listing = "GPU 0: NVIDIA H100 80GB HBM3 (UUID: GPU-1)\nGPU 1: NVIDIA H100 80GB HBM3 (UUID: GPU-2)\n";
        assert_eq!(count_gpus(listing), 2);
        assert_eq!(count_gpus("No devices were found\n"), 0);
        assert_eq!(count_gpus("GPU x: nonsense\n"), 0);
    }
}
