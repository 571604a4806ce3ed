//! A flooding node: an SSH server (in the test process, standing for a node a tenant controlled yesterday) that
//! answers any command with an endless stream. The `kiln` child process reaching it must stop reading at its
//! output cap and fail the step with that reason, with its memory bounded, instead of buffering until the
//! timeout.

use std::sync::Arc;
use std::time::{Duration, Instant};

use russh::keys::PrivateKey;
use russh::server::{Auth, Handler, Msg, Session};
use russh::{Channel, ChannelId, CryptoVec};
use tokio::net::TcpListener;

use crate::sim_site::kiln;

/// How much the flooding node sends at most: past any sane cap, small enough not to hurt the machine when a
/// regression lets kiln buffer all of it.
const FLOOD_BYTES: usize = 512 * 1024 * 1024;
const CHUNK: usize = 256 * 1024;

struct Flood;

impl Handler for Flood {
    type Error = russh::Error;

    async fn auth_publickey_offered(
        &mut self,
        _user: &str,
        _key: &russh::keys::PublicKey,
    ) -> Result<Auth, Self::Error> {
        Ok(Auth::Accept)
    }

    async fn auth_publickey(
        &mut self,
        _user: &str,
        _key: &russh::keys::PublicKey,
    ) -> Result<Auth, Self::Error> {
        Ok(Auth::Accept)
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
        _data: &[u8],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        session.channel_success(channel)?;
        let handle = session.handle();
        tokio::spawn(async move {
            let line =
                "#  out-of-place in-place garbage garbage garbage garbage garbage\n".repeat(64);
            let mut sent = 0;
            while sent < FLOOD_BYTES {
                let mut chunk = String::with_capacity(CHUNK);
                while chunk.len() + line.len() <= CHUNK {
                    chunk.push_str(&line);
                }
                sent += chunk.len();
                if handle
                    .data(channel, CryptoVec::from(chunk.into_bytes()))
                    .await
                    .is_err()
                {
                    return;
                }
            }
            let _ = handle.exit_status_request(channel, 0).await;
            let _ = handle.eof(channel).await;
            let _ = handle.close(channel).await;
        });
        Ok(())
    }
}

fn new_key() -> PrivateKey {
    let mut seed = [0u8; 32];
    rand::RngCore::fill_bytes(&mut rand::thread_rng(), &mut seed);
    PrivateKey::from(russh::keys::ssh_key::private::Ed25519Keypair::from_seed(
        &seed,
    ))
}

/// Starts the flooding SSH server on loopback; returns its address and host key line.
async fn start_flood() -> (String, String) {
    let host_key = new_key();
    let public = host_key.public_key().to_openssh().expect("host key line");
    let config = Arc::new(russh::server::Config {
        keys: vec![host_key],
        auth_rejection_time: Duration::from_millis(10),
        auth_rejection_time_initial: Some(Duration::ZERO),
        inactivity_timeout: Some(Duration::from_secs(300)),
        ..Default::default()
    });
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let config = config.clone();
            tokio::spawn(async move {
                if let Ok(session) = russh::server::run_stream(config, stream, Flood).await {
                    let _ = session.await;
                }
            });
        }
    });
    (addr, public)
}

/// Waits for the child and returns (exit code, peak RSS in KiB). The peak is the kernel's high-water mark of the
/// child's resident set (`VmHWM` in `/proc/PID/status`, monotonic), read every 10 ms while it runs; only growth
/// in its last 10 ms could go unseen. (The workspace forbids `unsafe`, which `wait4`'s rusage would need.)
fn wait_with_peak_rss(mut child: std::process::Child) -> (i32, i64) {
    let status_path = format!("/proc/{}/status", child.id());
    let mut peak = 0;
    loop {
        if let Ok(text) = std::fs::read_to_string(&status_path)
            && let Some(kib) = text
                .lines()
                .find_map(|line| line.strip_prefix("VmHWM:"))
                .and_then(|rest| {
                    rest.trim()
                        .trim_end_matches("kB")
                        .trim()
                        .parse::<i64>()
                        .ok()
                })
        {
            peak = peak.max(kib);
        }
        match child.try_wait() {
            Ok(Some(status)) => return (status.code().unwrap_or(-1), peak),
            Ok(None) => std::thread::sleep(Duration::from_millis(10)),
            Err(err) => panic!("waiting for the kiln child: {err}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flooding_node_is_cut_off_at_the_output_cap() {
    let (addr, host_key) = start_flood().await;
    let dir = tempfile::tempdir().expect("dir");
    let client_key = new_key();
    let key_text = client_key
        .to_openssh(russh::keys::ssh_key::LineEnding::LF)
        .expect("encode key");
    std::fs::write(dir.path().join("id"), key_text.as_bytes()).expect("key");
    std::fs::write(
        dir.path().join("pins"),
        format!("flood-a {addr} {host_key}\nflood-b {addr} {host_key}\n"),
    )
    .expect("pins");
    let mut command = kiln(dir.path());
    command
        .args([
            "health",
            "nccl",
            "--sku",
            "h100-sxm-80gb",
            "--hosts",
            "flood-a,flood-b",
        ])
        .args([
            "--ssh-key",
            "id",
            "--pinned-hosts",
            "pins",
            "--timeout",
            "120s",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let started = Instant::now();
    let mut child = command.spawn().expect("kiln runs");
    let mut stdout = child.stdout.take().expect("stdout");
    let mut stderr = child.stderr.take().expect("stderr");
    let readers = std::thread::spawn(move || {
        let mut out = String::new();
        let mut err = String::new();
        let _ = std::io::Read::read_to_string(&mut stdout, &mut out);
        let _ = std::io::Read::read_to_string(&mut stderr, &mut err);
        (out, err)
    });
    let (code, peak_kib) = tokio::task::spawn_blocking(move || wait_with_peak_rss(child))
        .await
        .expect("wait");
    let (out, err) = readers.join().expect("readers");
    let text = format!("{out}\n{err}");
    eprintln!(
        "kiln health nccl against a flooding node: exit {code}, peak RSS {} MiB, {:?}\n{}",
        peak_kib / 1024,
        started.elapsed(),
        text.chars().take(2000).collect::<String>()
    );
    assert_ne!(code, 0, "a flooded run must fail");
    assert!(
        text.to_lowercase().contains("cap") || text.to_lowercase().contains("limit"),
        "the failure names the output cap: {text}"
    );
    assert!(
        peak_kib < 160 * 1024,
        "kiln's memory stays bounded while a node floods it: peak {} MiB",
        peak_kib / 1024
    );
}
