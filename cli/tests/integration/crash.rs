//! Crash safety: a bring-up of 64 simulated nodes by a child `kiln serve` that is killed with SIGKILL at random
//! moments (20 times by default; `KILN_CRASH_KILLS=100` for the benchmark run) and restarted each time. At the
//! end every node is available, or quarantined for the reason planted; no node was imaged twice without a
//! recorded reason; the event log of every node is a chain of allowed transitions with no gaps.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use kiln_inventory::NodeState;
use kiln_sim::FaultFractions;
use rand::Rng;

use crate::sim_site::{SimSite, kiln, open_inventory, run_ok, serve, settled_nodes};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bringup_survives_sigkill_at_random_moments() {
    let kills: usize = std::env::var("KILN_CRASH_KILLS")
        .ok()
        .and_then(|k| k.parse().ok())
        .unwrap_or(20);
    let faults = FaultFractions {
        dead_bmc: 0.05,
        wrong_gpu_count: 0.05,
        ..FaultFractions::default()
    };
    let SimSite { dir, port, hall } = SimSite::start(64, faults).await;
    let mut import = kiln(dir.path());
    import.args(["rack", "import", "hall.csv", "--site", "crash"]);
    run_ok(import);

    let mut rng = rand::thread_rng();
    let started = Instant::now();
    for _ in 0..kills {
        let mut child = serve(dir.path(), port, "crash-test");
        tokio::time::sleep(Duration::from_millis(rng.gen_range(300..2000))).await;
        child.kill().expect("SIGKILL");
        let _ = child.wait();
    }
    let killed_after = started.elapsed();
    let mut child = serve(dir.path(), port, "crash-test");
    let store = open_inventory(dir.path()).await;
    let nodes = settled_nodes(&store, Duration::from_secs(240), Duration::from_millis(500)).await;
    let _ = child.kill();
    let _ = child.wait();
    let log = std::fs::read_to_string(dir.path().join("serve.log")).unwrap_or_default();
    let tail: String = log.lines().rev().take(15).collect::<Vec<_>>().join("\n");
    eprintln!("kiln serve's last log lines (newest first):\n{tail}");
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
