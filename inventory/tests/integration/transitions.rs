//! The lifecycle diagram enforced by the store: every allowed arrow works, forbidden ones change nothing, and
//! concurrent movers of one node see exactly one winner.

use std::collections::{HashMap, VecDeque};

use kiln_inventory::{NodeId, NodeState, StoreError};

use crate::both_backends;
use crate::support::{TestDb, csv_rows};

both_backends!(
    every_allowed_transition,
    forbidden_transitions_change_nothing,
    concurrent_transitions_one_winner
);

/// A shortest path of allowed arrows from enrolled to `target`.
fn path_to(target: NodeState) -> Vec<NodeState> {
    let mut previous: HashMap<NodeState, NodeState> = HashMap::new();
    let mut queue = VecDeque::from([NodeState::Enrolled]);
    while let Some(state) = queue.pop_front() {
        for next in NodeState::ALL {
            if state.can_transition_to(next)
                && next != NodeState::Enrolled
                && !previous.contains_key(&next)
            {
                previous.insert(next, state);
                queue.push_back(next);
            }
        }
    }
    let mut path = vec![target];
    while let Some(prev) = previous.get(path.last().expect("non-empty")) {
        path.push(*prev);
        if *prev == NodeState::Enrolled {
            break;
        }
    }
    path.reverse();
    path
}

async fn walk_to(db: &TestDb, node: NodeId, target: NodeState) {
    let path = path_to(target);
    assert_eq!(
        path.first(),
        Some(&NodeState::Enrolled),
        "{target} is reachable"
    );
    for pair in path.windows(2) {
        db.store
            .transition(node, pair[0], pair[1], "test", "walk")
            .await
            .expect("walk");
    }
}

fn all_pairs() -> Vec<(NodeState, NodeState)> {
    NodeState::ALL
        .iter()
        .flat_map(|from| NodeState::ALL.iter().map(move |to| (*from, *to)))
        .collect()
}

async fn every_allowed_transition(db: TestDb) {
    let allowed: Vec<_> = all_pairs()
        .into_iter()
        .filter(|(from, to)| from.can_transition_to(*to))
        .collect();
    assert!(
        allowed.len() > 25,
        "the diagram has {} arrows",
        allowed.len()
    );
    db.import_csv(&csv_rows(1, allowed.len() as u32))
        .await
        .expect("import");
    let nodes = db
        .store
        .list_nodes(&Default::default())
        .await
        .expect("nodes");
    for ((from, to), node) in allowed.into_iter().zip(nodes) {
        walk_to(&db, node.id, from).await;
        let before = db.store.node(node.id).await.expect("node");
        let event = db
            .store
            .transition(node.id, from, to, "engine:a", "because")
            .await
            .expect("allowed");
        let after = db.store.node(node.id).await.expect("node");
        assert_eq!(after.state, to, "{from} → {to}");
        assert_eq!(after.version, before.version + 1);
        assert_eq!(
            after.next_check_at.is_some(),
            to.is_active(),
            "{to} scheduling"
        );
        let events = db.store.node_events(node.id).await.expect("events");
        assert_eq!(events.last(), Some(&event));
        assert_eq!(
            (event.from_state, event.to_state, event.actor.as_str()),
            (Some(from), Some(to), "engine:a")
        );
    }
}

async fn forbidden_transitions_change_nothing(db: TestDb) {
    use NodeState::*;
    let forbidden = [
        (Enrolled, Available),
        (Enrolled, Leased),
        (Discovering, Imaging),
        (BurnIn, Available),
        (Available, Wiping),
        (Leased, Available),
        (Quarantined, Available),
        (Quarantined, Remediating),
        (Remediating, Available),
        (Remediating, Remediating),
        (Wiping, Available),
        (Imaging, Enrolled),
    ];
    for (from, to) in forbidden {
        assert!(
            !from.can_transition_to(to),
            "{from} → {to} must be forbidden"
        );
    }
    db.import_csv(&csv_rows(1, forbidden.len() as u32))
        .await
        .expect("import");
    let nodes = db
        .store
        .list_nodes(&Default::default())
        .await
        .expect("nodes");
    for ((from, to), node) in forbidden.into_iter().zip(nodes) {
        walk_to(&db, node.id, from).await;
        let before = db.store.node(node.id).await.expect("node");
        let events_before = db.store.node_events(node.id).await.expect("events").len();
        let err = db
            .store
            .transition(node.id, from, to, "t", "nope")
            .await
            .expect_err("forbidden");
        assert!(
            matches!(err, StoreError::TransitionNotAllowed { from: f, to: t, .. } if f == from && t == to),
            "{err}"
        );
        assert_eq!(
            db.store.node(node.id).await.expect("node"),
            before,
            "nothing changed"
        );
        assert_eq!(
            db.store.node_events(node.id).await.expect("events").len(),
            events_before
        );
    }

    // A stale expectation (the optimistic check) is a typed error and changes nothing either.
    let node = db.store.node_by_serial("SN1-0").await.expect("node");
    let err = db
        .store
        .transition(node.id, Imaging, Booting, "t", "stale")
        .await
        .expect_err("stale");
    assert!(
        matches!(
            err,
            StoreError::StateChanged {
                expected: Imaging,
                actual: Enrolled,
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(db.store.node(node.id).await.expect("node"), node);
}

async fn concurrent_transitions_one_winner(db: TestDb) {
    db.import_csv(&csv_rows(1, 1)).await.expect("import");
    let node = db.store.node_by_serial("SN1-0").await.expect("node");
    for round in 0..3 {
        let (from, to) = [
            (NodeState::Enrolled, NodeState::Discovering),
            (NodeState::Discovering, NodeState::Inspecting),
            (NodeState::Inspecting, NodeState::Imaging),
        ][round];
        let mut tasks = tokio::task::JoinSet::new();
        for worker in 0..8 {
            let store = db.store.clone();
            tasks.spawn(async move {
                store
                    .transition(node.id, from, to, &format!("worker-{worker}"), "race")
                    .await
            });
        }
        let mut wins = 0;
        while let Some(result) = tasks.join_next().await {
            match result.expect("task") {
                Ok(_) => wins += 1,
                Err(StoreError::StateChanged { actual, .. }) => assert_eq!(actual, to),
                Err(other) => panic!("unexpected error: {other}"),
            }
        }
        assert_eq!(wins, 1, "exactly one of 8 concurrent movers wins");
    }
    let events = db.store.node_events(node.id).await.expect("events");
    assert_eq!(events.len(), 4, "enrollment plus one event per round");
}
