//! Multi-node NCCL over SSH: a real russh server on loopback runs the launcher command; the client pins the host
//! key and authenticates with a key. Wrong host keys, refused keys and hung runs are handled.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use kiln_health::nccl::{
    CommandNcclRunner, NcclRunError, NcclRunner, PinnedHost, SshNcclRunner, judge_run,
};
use russh::keys::PrivateKey;
use russh::keys::ssh_key::private::Ed25519Keypair;
use russh::server::{self, Auth, Msg, Session};
use russh::{Channel, ChannelId, CryptoVec};
use tokio::io::AsyncReadExt;

use crate::support::{fixture_path, profile};

fn key(seed: u8) -> PrivateKey {
    PrivateKey::from(Ed25519Keypair::from_seed(&[seed; 32]))
}

/// A loopback SSH server that accepts one client key and runs exec requests with `sh -c`, streaming output.
#[derive(Clone)]
struct LoopbackSshd {
    authorized: russh::keys::PublicKey,
}

impl server::Handler for LoopbackSshd {
    type Error = russh::Error;

    async fn auth_publickey(
        &mut self,
        _user: &str,
        key: &russh::keys::PublicKey,
    ) -> Result<Auth, Self::Error> {
        Ok(if key.key_data() == self.authorized.key_data() {
            Auth::Accept
        } else {
            Auth::reject()
        })
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
        let command = String::from_utf8_lossy(data).into_owned();
        session.channel_success(channel)?;
        let handle = session.handle();
        tokio::spawn(async move {
            let child = tokio::process::Command::new("sh")
                .arg("-c")
                .arg(&command)
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::null())
                .kill_on_drop(true)
                .spawn();
            let Ok(mut child) = child else { return };
            if let Some(mut out) = child.stdout.take() {
                let mut buf = [0u8; 4096];
                while let Ok(n) = out.read(&mut buf).await {
                    if n == 0
                        || handle
                            .data(channel, CryptoVec::from_slice(&buf[..n]))
                            .await
                            .is_err()
                    {
                        break;
                    }
                }
            }
            let code = child
                .wait()
                .await
                .ok()
                .and_then(|s| s.code())
                .unwrap_or(255);
            let _ = handle.exit_status_request(channel, code as u32).await;
            let _ = handle.eof(channel).await;
            let _ = handle.close(channel).await;
        });
        Ok(())
    }
}

/// Starts the server on 127.0.0.1:0 with host key seed `host_seed`, accepting client key seed `client_seed`.
async fn start_sshd(host_seed: u8, client_seed: u8) -> String {
    let config = Arc::new(server::Config {
        keys: vec![key(host_seed)],
        auth_rejection_time: Duration::from_millis(1),
        auth_rejection_time_initial: Some(Duration::ZERO),
        ..Default::default()
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    let handler = LoopbackSshd {
        authorized: key(client_seed).public_key().clone(),
    };
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let (config, handler) = (config.clone(), handler.clone());
            tokio::spawn(async move {
                if let Ok(session) = server::run_stream(config, stream, handler).await {
                    let _ = session.await;
                }
            });
        }
    });
    addr
}

fn runner(
    addr: &str,
    pinned_host_seed: u8,
    client_seed: u8,
    argv: &[&str],
    timeout: Duration,
) -> SshNcclRunner {
    let mut hosts = HashMap::new();
    hosts.insert(
        "host-01".to_string(),
        PinnedHost {
            addr: addr.to_string(),
            host_key: key(pinned_host_seed).public_key().clone(),
        },
    );
    SshNcclRunner {
        user: "kiln".to_string(),
        key: Arc::new(key(client_seed)),
        hosts,
        command: CommandNcclRunner {
            argv_template: argv.iter().map(|s| s.to_string()).collect(),
            gpus_per_node: 8,
            timeout,
            env: Vec::new(),
        },
        connect_timeout: Duration::from_secs(10),
    }
}

fn two_nodes() -> Vec<String> {
    vec!["host-01".to_string(), "host-02".to_string()]
}

#[tokio::test]
async fn runs_the_launcher_over_ssh_with_a_pinned_host_key() {
    let addr = start_sshd(1, 2).await;
    let fixture = fixture_path("nccl/all_reduce_h100_2node.txt");
    // The launcher line is expanded per host set; the fake "mpirun" prints a recorded two-node run.
    let script = r##"cat "$0"; echo "# launched with $*""##;
    let argv = [
        "sh",
        "-c",
        script,
        fixture.to_str().expect("utf8"),
        "-H",
        "{hosts_slots}",
        "-np",
        "{np}",
    ];
    let run = runner(&addr, 1, 2, &argv, Duration::from_secs(20))
        .run(&two_nodes())
        .await
        .expect("runs");
    assert_eq!(run.exit_code, Some(0));
    assert!(!run.timed_out);
    assert!(
        run.output
            .contains("# launched with -H host-01:8,host-02:8 -np 16"),
        "{}",
        run.output
    );
    let verdict = judge_run(&run, &profile("h100-sxm-80gb"));
    assert!(verdict.passed(), "{}", verdict.render_table());
}

#[tokio::test]
async fn a_host_key_that_is_not_the_pinned_one_is_refused() {
    let addr = start_sshd(1, 2).await;
    let err = runner(&addr, 9, 2, &["true"], Duration::from_secs(5))
        .run(&two_nodes())
        .await
        .expect_err("mismatch");
    assert!(matches!(err, NcclRunError::HostKeyMismatch { .. }), "{err}");
    assert!(err.to_string().contains("SHA256:"), "{err}");
}

#[tokio::test]
async fn an_unauthorised_client_key_and_an_unpinned_host_are_errors() {
    let addr = start_sshd(1, 2).await;
    let err = runner(&addr, 1, 3, &["true"], Duration::from_secs(5))
        .run(&two_nodes())
        .await
        .expect_err("refused");
    assert!(matches!(err, NcclRunError::AuthRejected { .. }), "{err}");
    let err = runner(&addr, 1, 2, &["true"], Duration::from_secs(5))
        .run(&["node-77".to_string()])
        .await
        .expect_err("unpinned");
    assert!(matches!(err, NcclRunError::UnknownHost { .. }), "{err}");
}

#[tokio::test]
async fn a_hung_remote_run_times_out_with_partial_output() {
    let addr = start_sshd(1, 2).await;
    let argv = [
        "sh",
        "-c",
        "echo '# nThread 1 nGpus 1 minBytes 8'; exec sleep 30",
    ];
    let run = runner(&addr, 1, 2, &argv, Duration::from_millis(1500))
        .run(&two_nodes())
        .await
        .expect("runs");
    assert!(run.timed_out);
    assert_eq!(run.exit_code, None);
    assert!(run.output.contains("nThread"), "{:?}", run.output);
    let verdict = judge_run(&run, &profile("h100-sxm-80gb"));
    assert!(verdict.failures().any(|c| c.name == "nccl.timeout"));
}
