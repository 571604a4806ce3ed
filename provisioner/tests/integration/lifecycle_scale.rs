//! Two provisioner instances on one PostgreSQL database share a 256-node bring-up: no node is handled by both
//! at once, and each does a share of the burn-ins (the wall times are printed; speed is measured by benchmarks).

use std::sync::Arc;
use std::time::{Duration, Instant};

use kiln_inventory::{NodeFilter, NodeState, ScratchDatabase, Store, StoreOptions};
use tokio_util::sync::CancellationToken;

use crate::lifecycle_support::Hall;

const PG_ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/test";
const RACKS: usize = 128;
/// Two per rack: the fake NCCL answers from the recorded 1- and 2-node outputs.
const PER_RACK: usize = 2;
/// Burn-in time per node: the simulated work that two instances split.
const BURN_IN: Duration = Duration::from_millis(1000);

async fn bring_up(engines: usize) -> (Duration, Arc<Hall>, Vec<String>, ScratchDatabase) {
    let scratch = ScratchDatabase::create(PG_ADMIN_URL, "kiln_lc")
        .await
        .expect("PostgreSQL at 127.0.0.1:5432 (KILN_TEST_PG=off skips)");
    let key = kiln_inventory::SecretKey::generate();
    let open = || async {
        Store::open(StoreOptions::new(scratch.url.clone()).key(Some(key.clone())))
            .await
            .expect("store")
    };
    let hall = Arc::new(Hall::real_time(open().await, RACKS, PER_RACK, "kiln-a", BURN_IN).await);
    let mut instances = vec![hall.engine.clone()];
    if engines > 1 {
        instances.push(hall.second_engine(open().await, "kiln-b"));
    }
    let cancel = CancellationToken::new();
    let started = Instant::now();
    let mut tasks = Vec::new();
    for engine in instances {
        let cancel = cancel.clone();
        tasks.push(tokio::spawn(async move { engine.run(cancel).await }));
    }
    let player = {
        let hall = hall.clone();
        let cancel = cancel.clone();
        tokio::spawn(async move {
            while !cancel.is_cancelled() {
                hall.play().await;
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
    };
    let deadline = started + Duration::from_secs(180);
    loop {
        let nodes = hall
            .store
            .list_nodes(&NodeFilter::default())
            .await
            .expect("nodes");
        if nodes.iter().all(|n| n.state == NodeState::Available) {
            break;
        }
        if Instant::now() >= deadline
            && let Some(stuck) = nodes.iter().find(|n| n.state != NodeState::Available)
        {
            let events = hall.store.node_events(stuck.id).await.expect("events");
            let rack: Vec<(String, NodeState, Option<chrono::DateTime<chrono::Utc>>)> = nodes
                .iter()
                .filter(|n| n.rack == stuck.rack)
                .map(|n| (n.serial.clone(), n.state, n.next_check_at))
                .collect();
            panic!(
                "{} stuck in {}: {:#?}\nits rack: {rack:#?}",
                stuck.serial,
                stuck.state,
                events.iter().rev().take(5).collect::<Vec<_>>()
            );
        }
        assert!(
            Instant::now() < deadline,
            "bring-up with {engines} engine(s) did not finish: {:?}",
            nodes
                .iter()
                .filter(|n| n.state != NodeState::Available)
                .map(|n| (&n.serial, n.state))
                .take(10)
                .collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let elapsed = started.elapsed();
    cancel.cancel();
    for task in tasks {
        let _ = task.await;
    }
    let _ = player.await;
    let actors: Vec<String> = {
        let mut actors = Vec::new();
        for node in hall
            .store
            .list_nodes(&NodeFilter::default())
            .await
            .expect("nodes")
        {
            for event in hall.store.node_events(node.id).await.expect("events") {
                if event.to_state.is_some()
                    && event.actor.starts_with("kiln-")
                    && !actors.contains(&event.actor)
                {
                    actors.push(event.actor.clone());
                }
            }
        }
        actors
    };
    (elapsed, hall, actors, scratch)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_provisioners_share_a_bringup_without_double_handling() {
    if std::env::var("KILN_TEST_PG").as_deref() == Ok("off") {
        eprintln!("KILN_TEST_PG=off: skipped");
        return;
    }
    let (one, _, actors_one, scratch_one) = bring_up(1).await;
    assert_eq!(actors_one, vec!["kiln-a".to_string()]);
    let (two, hall, mut actors_two, scratch_two) = bring_up(2).await;
    actors_two.sort();
    assert_eq!(
        actors_two,
        vec!["kiln-a".to_string(), "kiln-b".to_string()],
        "both instances worked"
    );
    // Wall time on a shared 2-core machine is a benchmark's business (`kiln bench bringup`), not a test's: it is
    // printed, and the split of the work is what is asserted.
    eprintln!("256 nodes: one instance {one:?}, two instances {two:?}");
    // No node's burn-in ran on both instances at overlapping times (it runs once per node, by one owner).
    let log = hall.access.log.lock().expect("lock").clone();
    let by_a = log.iter().filter(|run| run.instance == "kiln-a").count();
    let by_b = log.len() - by_a;
    assert!(
        by_a * 10 >= log.len() && by_b * 10 >= log.len(),
        "the two instances share the burn-ins: kiln-a ran {by_a}, kiln-b {by_b} of {}",
        log.len()
    );
    for a in &log {
        for b in &log {
            if a.serial == b.serial && a.instance != b.instance {
                assert!(
                    a.end <= b.start || b.end <= a.start,
                    "{} handled by {} and {} at once",
                    a.serial,
                    a.instance,
                    b.instance
                );
            }
        }
    }
    let per_node = log.len();
    assert_eq!(per_node, RACKS * PER_RACK, "one burn-in per node");
    hall.store.close().await;
    let _ = scratch_one.drop_now().await;
    let _ = scratch_two.drop_now().await;
}
