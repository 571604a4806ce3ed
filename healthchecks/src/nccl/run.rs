//! Running nccl-tests: the `NcclRunner` seam (real command, or a fake in tests) and a command-line runner.

use std::future::Future;
use std::time::Duration;

use super::judge::NcclRun;
use crate::process::{ProcessError, run_with_timeout};

/// Why nccl-tests could not be run at all (a run that fails is an `Ok(NcclRun)` the judge fails).
#[derive(Debug, thiserror::Error)]
pub enum NcclRunError {
    /// The local launcher could not be started.
    #[error("cannot run nccl-tests")]
    Process(#[from] ProcessError),
    /// The host set is empty.
    #[error("no hosts to run nccl-tests on")]
    NoHosts,
    /// No host key is pinned for the host: kiln does not trust on first use.
    #[error("no pinned SSH host key for {host}")]
    UnknownHost {
        /// The host.
        host: String,
    },
    /// The host presented a different key than the pinned one.
    #[error("{host} presented SSH host key {presented}, not the pinned {pinned}")]
    HostKeyMismatch {
        /// The host.
        host: String,
        /// Fingerprint presented.
        presented: String,
        /// Fingerprint pinned.
        pinned: String,
    },
    /// Key authentication was refused.
    #[error("{host} refused SSH key authentication for user {user}")]
    AuthRejected {
        /// The host.
        host: String,
        /// The user.
        user: String,
    },
    /// Connecting or authenticating took too long.
    #[error("SSH to {host} did not complete within {timeout:?}")]
    SshTimeout {
        /// The host.
        host: String,
        /// The limit.
        timeout: std::time::Duration,
    },
    /// The run could not be made on the remote side (a node-access layer's own error).
    #[error("remote run failed: {detail}")]
    Remote {
        /// What went wrong.
        detail: String,
    },
    /// The SSH session failed.
    #[error("SSH session with {host} failed")]
    Ssh {
        /// The host.
        host: String,
        /// What russh reported.
        #[source]
        source: russh::Error,
    },
}

/// Runs nccl-tests across a set of hosts. Production uses a command (`all_reduce_perf` locally, or `mpirun`
/// across hosts); tests plug in fakes.
pub trait NcclRunner: Send + Sync {
    /// Runs the test over exactly these hosts and returns what happened (a failing run is `Ok`).
    fn run(&self, hosts: &[String]) -> impl Future<Output = Result<NcclRun, NcclRunError>> + Send;
}

/// Runs a command line built from a template. `{hosts}` expands to `h1,h2`, `{hosts_slots}` to `h1:G,h2:G`
/// (G = GPUs per node, for `mpirun -H`), `{np}` to hosts × GPUs per node, `{gpus}` to GPUs per node.
#[derive(Debug, Clone)]
pub struct CommandNcclRunner {
    /// The argument template, program first.
    pub argv_template: Vec<String>,
    /// GPUs per node, for `{np}` and `{hosts_slots}`.
    pub gpus_per_node: u32,
    /// Hard timeout for one run.
    pub timeout: Duration,
    /// Extra environment for the run (NCCL_DEBUG=INFO is useful evidence).
    pub env: Vec<(String, String)>,
}

impl CommandNcclRunner {
    /// A single-node `all_reduce_perf` over 8 B..8 GiB with validation on.
    pub fn single_node(program: &str, gpus_per_node: u32, timeout: Duration) -> Self {
        let argv = [
            program, "-b", "8", "-e", "8G", "-f", "2", "-g", "{gpus}", "-c", "1",
        ];
        Self {
            argv_template: argv.iter().map(|s| s.to_string()).collect(),
            gpus_per_node,
            timeout,
            env: vec![("NCCL_DEBUG".to_string(), "INFO".to_string())],
        }
    }

    /// The argument vector for a host set.
    pub fn argv_for(&self, hosts: &[String]) -> Vec<String> {
        let np = u64::from(self.gpus_per_node) * hosts.len().max(1) as u64;
        let slots: Vec<String> = hosts
            .iter()
            .map(|h| format!("{h}:{}", self.gpus_per_node))
            .collect();
        self.argv_template
            .iter()
            .map(|a| {
                a.replace("{hosts_slots}", &slots.join(","))
                    .replace("{hosts}", &hosts.join(","))
                    .replace("{np}", &np.to_string())
                    .replace("{gpus}", &self.gpus_per_node.to_string())
            })
            .collect()
    }
}

impl NcclRunner for CommandNcclRunner {
    async fn run(&self, hosts: &[String]) -> Result<NcclRun, NcclRunError> {
        let argv = self.argv_for(hosts);
        tracing::info!(hosts = ?hosts, argv = ?argv, "running nccl-tests");
        let captured = run_with_timeout(&argv, &self.env, self.timeout).await?;
        Ok(NcclRun {
            hosts: hosts.to_vec(),
            exit_code: captured.exit_code,
            timed_out: captured.timed_out,
            output: format!("{}{}", captured.stdout, captured.stderr),
        })
    }
}
