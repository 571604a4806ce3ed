//! Runs an external tool (stress tool, nccl-tests) with a hard timeout, keeping whatever it printed.

use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::Command;
use tokio::task::JoinHandle;

/// Why a tool could not be run at all (as opposed to running and failing).
#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    /// The command line is empty.
    #[error("empty command line")]
    EmptyCommand,
    /// The program could not be started.
    #[error("cannot start {program}")]
    Spawn {
        /// The program named.
        program: String,
        /// Why exec failed.
        #[source]
        source: std::io::Error,
    },
    /// Waiting for the program failed.
    #[error("lost track of {program} while waiting for it")]
    Wait {
        /// The program named.
        program: String,
        /// The I/O failure.
        #[source]
        source: std::io::Error,
    },
}

/// What a finished (or killed) tool left behind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CapturedRun {
    /// Exit code; `None` when killed by a signal or by our timeout.
    pub exit_code: Option<i32>,
    /// True when the hard timeout killed it.
    pub timed_out: bool,
    /// Standard output (partial when timed out).
    pub stdout: String,
    /// Standard error (partial when timed out).
    pub stderr: String,
    /// Wall time it ran.
    pub elapsed: Duration,
}

type SharedBuf = Arc<Mutex<Vec<u8>>>;

fn drain<R: AsyncRead + Unpin + Send + 'static>(mut reader: R, buf: SharedBuf) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut chunk = [0u8; 8192];
        loop {
            match reader.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if let Ok(mut b) = buf.lock() {
                        b.extend_from_slice(&chunk[..n]);
                    }
                }
            }
        }
    })
}

fn take(buf: &SharedBuf) -> String {
    buf.lock()
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default()
}

/// Runs `argv` with extra environment, killing its whole process group after `timeout`.
///
/// Output is read while the tool runs, so a tool killed for hanging still leaves what it printed as evidence.
pub async fn run_with_timeout(
    argv: &[String],
    env: &[(String, String)],
    timeout: Duration,
) -> Result<CapturedRun, ProcessError> {
    let (program, args) = argv.split_first().ok_or(ProcessError::EmptyCommand)?;
    let mut cmd = Command::new(program);
    cmd.args(args)
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        // Own process group, so a timeout kills the tool's children too (a wrapper script's workers would
        // otherwise keep running and keep our pipes open).
        .process_group(0);
    let started = Instant::now();
    let mut child = cmd.spawn().map_err(|source| ProcessError::Spawn {
        program: program.clone(),
        source,
    })?;
    let out_buf = SharedBuf::default();
    let err_buf = SharedBuf::default();
    let readers = [
        child.stdout.take().map(|s| drain(s, out_buf.clone())),
        child.stderr.take().map(|s| drain(s, err_buf.clone())),
    ];
    let (exit_code, timed_out) = match tokio::time::timeout(timeout, child.wait()).await {
        Ok(status) => {
            let status = status.map_err(|source| ProcessError::Wait {
                program: program.clone(),
                source,
            })?;
            (status.code(), false)
        }
        Err(_) => {
            tracing::warn!(program = %program, timeout_s = timeout.as_secs_f64(), "tool timed out; killing its process group");
            if let Some(pid) = child.id() {
                // `kill -- -PGID` reaches the whole group without unsafe libc calls.
                let _ = Command::new("kill")
                    .args(["-KILL", "--", &format!("-{pid}")])
                    .status()
                    .await;
            }
            let _ = child.kill().await;
            (None, true)
        }
    };
    for reader in readers.into_iter().flatten() {
        // Pipes close when the group is gone; bound the wait in case a grandchild escaped the group.
        if tokio::time::timeout(Duration::from_secs(2), reader)
            .await
            .is_err()
        {
            tracing::warn!(program = %program, "output reader did not finish; keeping partial output");
        }
    }
    Ok(CapturedRun {
        exit_code,
        timed_out,
        stdout: take(&out_buf),
        stderr: take(&err_buf),
        elapsed: started.elapsed(),
    })
}

/// The last `max_chars` characters of a text, for evidence.
pub fn tail(text: &str, max_chars: usize) -> String {
    let count = text.chars().count();
    text.chars().skip(count.saturating_sub(max_chars)).collect()
}
