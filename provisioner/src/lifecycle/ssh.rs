//! The production [`NodeAccess`]: russh to the node's installed OS, accepting only the host key its agent
//! reported, running the command set fixed in [`super::access`].

use std::sync::Arc;
use std::time::Duration;

use kiln_health::nccl::{
    CommandNcclRunner, NcclRun, NcclRunError, PinnedHost, RemoteOutput, SshClient, shell_quote,
};

use russh::keys::{PrivateKey, PublicKey};

pub use kiln_health::ssh_key::{load_or_create_key, public_key_line};

use super::access::{
    AccessError, BurnInReply, NCCL_TEMPLATE, NodeAccess, NodeHost, PostImageFacts, ToolReply,
};

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

/// The burn-in command line for `duration`, SKU `sku` and the `stress` command (see [`super::access`]; the
/// agent's own default tool when `stress` is empty).
pub fn burn_in_command(duration: Duration, sku: &str, stress: &[String]) -> String {
    let mut command = format!(
        "kiln-agent burn-in --json --duration-s {} --sku {}",
        duration.as_secs().max(1),
        shell_quote(sku)
    );
    if !stress.is_empty() {
        command.push_str(" --stress");
        for arg in stress {
            command.push(' ');
            command.push_str(&shell_quote(arg));
        }
    }
    command
}

/// The evidence document of a finished burn-in command: exit 0 and one JSON object on stdout, else why not.
pub fn evidence_document(out: &RemoteOutput) -> Result<serde_json::Value, String> {
    let stderr_tail = || kiln_health::process::tail(out.stderr.trim(), 400);
    if out.exit_code != Some(0) {
        return Err(format!(
            "exited {}, so it collected no evidence; stderr: {}",
            out.exit_code
                .map_or("without a status".to_string(), |c| c.to_string()),
            stderr_tail()
        ));
    }
    match serde_json::from_str::<serde_json::Value>(out.stdout.trim()) {
        Ok(document @ serde_json::Value::Object(_)) => Ok(document),
        Ok(other) => Err(format!(
            "printed JSON that is not an evidence document (a {})",
            match other {
                serde_json::Value::Null => "null",
                serde_json::Value::Bool(_) => "boolean",
                serde_json::Value::Number(_) => "number",
                serde_json::Value::String(_) => "string",
                _ => "list",
            }
        )),
        Err(err) => Err(format!(
            "printed no evidence JSON ({err}); stderr: {}",
            stderr_tail()
        )),
    }
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

    async fn burn_in_evidence(
        &self,
        host: &NodeHost,
        duration: Duration,
        sku: &str,
        stress: &[String],
    ) -> Result<BurnInReply, AccessError> {
        let command = burn_in_command(duration, sku, stress);
        let started = std::time::Instant::now();
        let out = self
            .run(host, &command, duration + Duration::from_secs(120))
            .await?;
        finished(host, &command, &out)?;
        let document = evidence_document(&out).map_err(|reason| AccessError::BadOutput {
            serial: host.serial.clone(),
            command: command.clone(),
            reason,
        })?;
        Ok(BurnInReply {
            document,
            exit_code: out.exit_code,
            wall: started.elapsed(),
        })
    }

    async fn run_tool(
        &self,
        host: &NodeHost,
        command: &str,
        timeout: Duration,
    ) -> Result<ToolReply, AccessError> {
        let out = self.run(host, command, timeout).await?;
        Ok(ToolReply {
            stdout: out.stdout,
            stderr: out.stderr,
            exit_code: out.exit_code,
            timed_out: out.timed_out,
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
    use super::{burn_in_command, count_gpus, evidence_document};
    use kiln_health::nccl::RemoteOutput;

    fn output(stdout: &str, exit_code: Option<i32>) -> RemoteOutput {
        RemoteOutput {
            stdout: stdout.into(),
            stderr: "kiln-agent: NVML gone".into(),
            exit_code,
            timed_out: false,
        }
    }

    #[test]
    fn burn_in_output_must_be_exit_zero_and_one_json_object() {
        assert!(evidence_document(&output("{\"format\":\"x\"}\n", Some(0))).is_ok());
        let err = evidence_document(&output("{}", Some(1))).expect_err("exit 1");
        assert!(
            err.contains("exited 1") && err.contains("NVML gone"),
            "{err}"
        );
        assert!(evidence_document(&output("{}", None)).is_err());
        let err = evidence_document(&output("PASS", Some(0))).expect_err("text");
        assert!(err.contains("no evidence JSON"), "{err}");
        let err = evidence_document(&output("[1]", Some(0))).expect_err("list");
        assert!(err.contains("list"), "{err}");
        assert_eq!(
            burn_in_command(std::time::Duration::from_millis(10), "h100 'x", &[]),
            "kiln-agent burn-in --json --duration-s 1 --sku 'h100 '\\''x'"
        );
        // The SKU's stress tool goes last (the agent takes everything after --stress), each word quoted.
        let fryer: Vec<String> = kiln_health::stress::StressTool::GpuFryer
            .argv_template()
            .iter()
            .map(|a| a.to_string())
            .collect();
        let command = burn_in_command(std::time::Duration::from_secs(300), "h100", &fryer);
        assert!(
            command.ends_with(" --stress gpu-fryer {duration_s}"),
            "{command}"
        );
    }

    #[test]
    fn counts_nvidia_smi_lines() {
        let listing = "GPU 0: NVIDIA H100 80GB HBM3 (UUID: GPU-1)\nGPU 1: NVIDIA H100 80GB HBM3 (UUID: GPU-2)\n";
        assert_eq!(count_gpus(listing), 2);
        assert_eq!(count_gpus("No devices were found\n"), 0);
        assert_eq!(count_gpus("GPU x: nonsense\n"), 0);
    }
}
