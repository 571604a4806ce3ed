//! Crash safety: a bring-up of 64 simulated nodes by a child `kiln serve` that is killed with SIGKILL at random
//! moments (20 times by default; `KILN_CRASH_KILLS=100` for the benchmark run) and restarted each time. At the
//! end every node is available, or quarantined for the reason planted; no node was imaged twice without a
//! recorded reason; the event log of every node is a chain of allowed transitions with no gaps.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use kiln_inventory::{NodeFilter, NodeState, Store, StoreOptions};
use kiln_provisioner::lifecycle::ssh::load_or_create_key;
use kiln_sim::{DiskMode, FaultFractions, SimConfig, SimHall, SshMode};
use rand::Rng;

fn kiln(dir: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_kiln"));
    command
        .current_dir(dir)
        .env_remove(kiln_inventory::SECRET_KEY_ENV)
        .env_remove("KILN_SERVER")
        .args(["--db", "sqlite://kiln.db", "--key-file", "kiln.key"]);
    command
}

fn run_ok(mut command: Command) {
    let out = command.output().expect("kiln runs");
    assert!(
        out.status.success(),
        "{command:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn serve(dir: &Path, port: u16) -> Child {
    let mut command = kiln(dir);
    command
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .args([
            "--time-scale",
            "100",
            "--ssh-key",
            "kiln-ssh.key",
            "--image",
            "crash-os:1",
        ])
        .args(["--image-dir", "images", "--instance", "crash-test"])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    command.spawn().expect("kiln serve starts")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bringup_survives_sigkill_at_random_moments() {
    let kills: usize = std::env::var("KILN_CRASH_KILLS")
        .ok()
        .and_then(|k| k.parse().ok())
        .unwrap_or(20);
    let dir = tempfile::tempdir().expect("temp dir");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let (key, _) = load_or_create_key(&dir.path().join("kiln-ssh.key")).expect("ssh key");
    let mut config = SimConfig::new(64);
    config.time_scale = 0.01;
    config.seed = 11;
    config.faults = FaultFractions {
        dead_bmc: 0.05,
        wrong_gpu_count: 0.05,
        ..FaultFractions::default()
    };
    config.ssh = SshMode::Servers {
        client_key: key.public_key().clone(),
    };
    std::fs::create_dir_all(dir.path().join("disks")).expect("disks");
    config.disk = DiskMode::SparseFiles(dir.path().join("disks"));
    let hall = SimHall::start(config, &format!("http://127.0.0.1:{port}"))
        .await
        .expect("simulated hall");
    std::fs::write(dir.path().join("hall.csv"), hall.manifest_csv()).expect("manifest");
    std::fs::write(dir.path().join("os.img"), vec![7u8; 256 * 1024]).expect("image");
    let mut import = kiln(dir.path());
    import.args(["rack", "import", "hall.csv", "--site", "crash"]);
    run_ok(import);
    let mut image = kiln(dir.path());
    image.args([
        "image",
        "--image-dir",
        "images",
        "add",
        "os.img",
        "--name",
        "crash-os",
        "--version",
        "1",
    ]);
    run_ok(image);

    let mut rng = rand::thread_rng();
    let started = Instant::now();
    for _ in 0..kills {
        let mut child = serve(dir.path(), port);
        tokio::time::sleep(Duration::from_millis(rng.gen_range(300..2000))).await;
        child.kill().expect("SIGKILL");
        let _ = child.wait();
    }
    let killed_after = started.elapsed();
    let mut child = serve(dir.path(), port);
    let store = Store::open(StoreOptions::new(format!(
        "sqlite://{}",
        dir.path().join("kiln.db").display()
    )))
    .await
    .expect("read the inventory");
    let deadline = Instant::now() + Duration::from_secs(240);
    let nodes = loop {
        let nodes = store
            .list_nodes(&NodeFilter::default())
            .await
            .expect("nodes");
        let settled = nodes
            .iter()
            .all(|n| matches!(n.state, NodeState::Available | NodeState::Quarantined));
        if settled || Instant::now() > deadline {
            break nodes;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let _ = child.kill();
    let _ = child.wait();
    eprintln!(
        "{kills} kills in {killed_after:?}; settled {:?} after the start",
        started.elapsed()
    );

    let planted: BTreeMap<String, Option<String>> = hall
        .planted_faults()
        .into_iter()
        .map(|f| (f.serial, f.expected_reason))
        .collect();
    for node in &nodes {
        let events = store.node_events(node.id).await.expect("events");
        // The log is a chain of allowed transitions.
        let mut state = NodeState::Enrolled;
        for event in &events {
            if let (Some(from), Some(to)) = (event.from_state, event.to_state) {
                assert_eq!(
                    from, state,
                    "{}: gap in the event log at {event:?}",
                    node.serial
                );
                assert!(from.can_transition_to(to), "{}: {from} → {to}", node.serial);
                state = to;
            }
        }
        assert_eq!(
            state, node.state,
            "{}: the log ends where the node is",
            node.serial
        );
        match planted.get(&node.serial).cloned().flatten() {
            Some(expected) => {
                assert_eq!(
                    node.state,
                    NodeState::Quarantined,
                    "{} has a planted fault",
                    node.serial
                );
                let reason = events
                    .iter()
                    .rev()
                    .find(|e| e.to_state == Some(NodeState::Quarantined))
                    .map(|e| e.reason.clone())
                    .unwrap_or_default();
                assert!(
                    reason.contains(&expected),
                    "{}: {reason:?} lacks {expected:?}",
                    node.serial
                );
            }
            None => assert_eq!(
                node.state,
                NodeState::Available,
                "{}: {events:#?}",
                node.serial
            ),
        }
        // Every actual write (counted by the simulated disk) was asked for with its number, and a second
        // write names the failure that called for it.
        let writes = hall
            .node_status(&node.serial)
            .map_or(0, |s| s.images_written);
        let requested: Vec<(u64, &str)> = events
            .iter()
            .filter_map(|e| {
                let rest = e.reason.strip_prefix("image write ")?;
                let n = rest.split_whitespace().next()?.parse().ok()?;
                Some((n, e.reason.as_str()))
            })
            .collect();
        let most = requested.iter().map(|(n, _)| *n).max().unwrap_or(0);
        assert!(
            writes <= most,
            "{}: {writes} writes, {most} asked: {events:#?}",
            node.serial
        );
        for (n, reason) in &requested {
            if *n >= 2 {
                assert!(
                    reason.contains("(after"),
                    "{}: write {n} without a reason: {reason}",
                    node.serial
                );
            }
        }
    }
    store.close().await;
    hall.shutdown();
}
