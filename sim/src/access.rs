//! [`SimAccess`]: the engine's way into virtual nodes without SSH (scale mode), answering exactly what their
//! SSH servers answer ([`crate::answers`]) and enforcing the same rules: the node must be up at the address
//! its agent reported, and it must present the pinned host key.

use std::sync::Arc;
use std::time::Duration;

use kiln_health::Verdict;
use kiln_health::nccl::NcclRun;
use kiln_provisioner::lifecycle::access::{
    AccessError, BurnInReply, NodeAccess, NodeHost, PostImageFacts, ToolReply,
};
use russh::keys::{HashAlg, PublicKey};

use crate::answers::{self, HallContext};
use crate::faults::FaultKind;
use crate::node::VirtualNode;

/// In-process [`NodeAccess`] to a [`crate::SimHall`]'s nodes.
#[derive(Debug, Clone)]
pub struct SimAccess {
    hall: Arc<HallContext>,
}

fn fingerprint(key: &PublicKey) -> String {
    key.fingerprint(HashAlg::Sha256).to_string()
}

impl SimAccess {
    pub(crate) fn new(hall: Arc<HallContext>) -> Self {
        Self { hall }
    }

    /// The node's evidence judged by kiln-health with the hall's SKU profile, as the provisioner judges it
    /// (tests of the simulator; the engine judges [`NodeAccess::burn_in_evidence`] itself).
    pub async fn burn_in(
        &self,
        host: &NodeHost,
        duration: Duration,
    ) -> Result<Verdict, AccessError> {
        let reply = self
            .burn_in_evidence(host, duration, &self.hall.profile.id, &[])
            .await?;
        Ok(kiln_health::burnin::judge_burn_in_document(
            &reply.document,
            &self.hall.profile,
            duration,
        ))
    }

    /// Connects to `host` as SSH would: reachable, then the host key checked against the pinned one.
    fn connect(&self, host: &NodeHost) -> Result<&Arc<VirtualNode>, AccessError> {
        let unreachable = |reason: String| AccessError::Unreachable {
            serial: host.serial.clone(),
            reason,
        };
        let node = self
            .hall
            .node(&host.serial)
            .ok_or_else(|| unreachable(format!("no simulated node is called {}", host.serial)))?;
        if host.address != node.ssh_address {
            return Err(unreachable(format!(
                "nothing answers at {} (the node reported {})",
                host.address, node.ssh_address
            )));
        }
        if !node.os_up() {
            return Err(unreachable(format!(
                "connection to {} refused: the installed OS is not running",
                host.address
            )));
        }
        let pinned = PublicKey::from_openssh(host.host_key.trim())
            .map_err(|err| unreachable(format!("the pinned host key is unreadable: {err}")))?;
        let presented = node.presented_key.public_key();
        if presented.key_data() != pinned.key_data() {
            return Err(AccessError::HostKeyMismatch {
                serial: host.serial.clone(),
                presented: fingerprint(presented),
                pinned: fingerprint(&pinned),
            });
        }
        Ok(node)
    }
}

#[async_trait::async_trait]
impl NodeAccess for SimAccess {
    async fn post_image_check(&self, host: &NodeHost) -> Result<PostImageFacts, AccessError> {
        let node = self.connect(host)?;
        let mut transcript = String::new();
        let mut replies = Vec::new();
        for command in [
            "uname -r",
            "cat /sys/module/nvidia/version",
            "nvidia-smi -L",
        ] {
            let reply = answers::answer(&self.hall, node, command).await;
            transcript.push_str(&format!("$ {command}\n{}", reply.output));
            replies.push(reply);
        }
        let [kernel, driver, gpus] =
            <[answers::Answer; 3]>::try_from(replies).map_err(|_| AccessError::Unreachable {
                serial: host.serial.clone(),
                reason: "the post-image check lost a command".into(),
            })?;
        let gpu_count = kiln_provisioner::lifecycle::ssh::count_gpus(&gpus.output);
        Ok(PostImageFacts {
            kernel: kernel.output.trim().to_string(),
            driver: (driver.exit_status == 0).then(|| driver.output.trim().to_string()),
            gpu_count,
            transcript,
        })
    }

    async fn burn_in_evidence(
        &self,
        host: &NodeHost,
        duration: Duration,
        sku: &str,
        // The simulator runs its own stress stand-in whatever the SKU names (it prints gpu_burn's output).
        _stress: &[String],
    ) -> Result<BurnInReply, AccessError> {
        let node = self.connect(host)?.clone();
        if node.has(FaultKind::CollectorFails) {
            // What SshNodeAccess makes of the same answer (exit 1, no document).
            return Err(AccessError::BadOutput {
                serial: host.serial.clone(),
                command: "kiln-agent burn-in".into(),
                reason: format!(
                    "exited 1, so it collected no evidence; stderr: {}",
                    answers::COLLECTOR_ERROR.trim()
                ),
            });
        }
        let started = std::time::Instant::now();
        let seconds = duration.as_secs().max(1);
        let document = answers::burn_in_document(&self.hall, &node, seconds, Some(sku)).await;
        if !node.os_up() {
            return Err(AccessError::Unreachable {
                serial: host.serial.clone(),
                reason: "the connection dropped during burn-in: the installed OS went down".into(),
            });
        }
        Ok(BurnInReply {
            document,
            exit_code: Some(0),
            wall: started.elapsed(),
        })
    }

    async fn run_tool(
        &self,
        host: &NodeHost,
        command: &str,
        timeout: Duration,
    ) -> Result<ToolReply, AccessError> {
        let node = self.connect(host)?.clone();
        let reply = answers::answer(&self.hall, &node, command).await;
        if reply.takes > timeout {
            tokio::time::sleep(timeout).await;
            return Ok(ToolReply {
                stdout: String::new(),
                stderr: String::new(),
                exit_code: None,
                timed_out: true,
            });
        }
        tokio::time::sleep(reply.takes).await;
        // The simulator's shell puts everything on stdout; a command it does not have fails like sh's.
        let failed = reply.exit_status != 0;
        Ok(ToolReply {
            stdout: if failed {
                String::new()
            } else {
                reply.output.clone()
            },
            stderr: if failed { reply.output } else { String::new() },
            exit_code: Some(i32::try_from(reply.exit_status).unwrap_or(i32::MAX)),
            timed_out: false,
        })
    }

    async fn nccl(&self, hosts: &[NodeHost]) -> Result<NcclRun, AccessError> {
        let Some(launcher) = hosts.first() else {
            return Err(AccessError::Unreachable {
                serial: String::new(),
                reason: "no hosts to run NCCL on".into(),
            });
        };
        self.connect(launcher)?;
        tokio::time::sleep(self.hall.durations.nccl).await;
        let names: Vec<String> = hosts.iter().map(|h| h.serial.clone()).collect();
        Ok(answers::nccl_run(&self.hall, &names))
    }
}
