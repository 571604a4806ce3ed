//! Work claims: one owner per due node, lapsed claims are taken over, renewals and releases.

use std::collections::HashSet;

use chrono::Duration;
use kiln_inventory::{Due, NodeState};

use crate::both_backends;
use crate::support::{TestDb, csv_rows};

both_backends!(
    concurrent_owners_never_share_a_node,
    expired_claim_is_taken_over,
    only_due_nodes_are_claimed,
    claims_say_since_when_the_node_was_due,
    a_turn_wait_is_held_until_due_then_goes_ahead_of_routine_rechecks,
    nodes_further_along_the_lifecycle_are_claimed_first
);

async fn concurrent_owners_never_share_a_node(db: TestDb) {
    db.import_csv(&(csv_rows(1, 40) + &csv_rows(2, 40)))
        .await
        .expect("import");
    let lease = Duration::seconds(60);
    let mut tasks = tokio::task::JoinSet::new();
    for owner in ["prov-a", "prov-b", "prov-c", "prov-d"] {
        let store = db.store.clone();
        tasks.spawn(async move {
            let mut mine = Vec::new();
            loop {
                let claims = store.claim_due_nodes(owner, 3, lease).await.expect("claim");
                if claims.is_empty() {
                    return (owner, mine);
                }
                for claim in claims {
                    assert_eq!(claim.node.claimed_by.as_deref(), Some(owner));
                    mine.push(claim.node.id);
                }
            }
        });
    }
    let mut seen = HashSet::new();
    let mut owners_with_work = 0;
    while let Some(result) = tasks.join_next().await {
        let (owner, mine) = result.expect("task");
        owners_with_work += usize::from(!mine.is_empty());
        for id in mine {
            assert!(
                seen.insert(id),
                "node {id} handed to {owner} and to another owner"
            );
        }
    }
    assert_eq!(seen.len(), 80, "every due node claimed exactly once");
    assert!(owners_with_work >= 1);
}

async fn expired_claim_is_taken_over(db: TestDb) {
    db.import_csv(&csv_rows(1, 2)).await.expect("import");
    let lease = Duration::seconds(30);
    let first = db
        .store
        .claim_due_nodes("prov-a", 10, lease)
        .await
        .expect("claim a");
    assert_eq!(first.len(), 2);
    assert!(
        db.store
            .claim_due_nodes("prov-b", 10, lease)
            .await
            .expect("claim b")
            .is_empty(),
        "held by a"
    );

    // prov-a keeps one node alive, lets the other lapse.
    db.clock.advance(Duration::seconds(20));
    let kept = first[0].node.id;
    assert_eq!(
        db.store
            .renew_claims("prov-a", &[kept], lease)
            .await
            .expect("renew"),
        vec![kept]
    );
    db.clock.advance(Duration::seconds(15));
    let taken = db
        .store
        .claim_due_nodes("prov-b", 10, lease)
        .await
        .expect("take over");
    assert_eq!(
        taken.iter().map(|c| c.node.id).collect::<Vec<_>>(),
        vec![first[1].node.id]
    );
    assert_eq!(taken[0].node.claimed_by.as_deref(), Some("prov-b"));

    // The old owner can neither renew nor release what it lost.
    let lost = first[1].node.id;
    assert!(
        db.store
            .renew_claims("prov-a", &[lost], lease)
            .await
            .expect("renew")
            .is_empty()
    );
    assert!(
        !db.store
            .release_claim("prov-a", lost, None)
            .await
            .expect("release")
    );
    assert!(
        db.store
            .release_claim("prov-b", lost, Some(db.store.now() + Duration::seconds(5)))
            .await
            .expect("release")
    );
    let node = db.store.node(lost).await.expect("node");
    assert_eq!((node.claimed_by, node.claim_expires_at), (None, None));
    assert!(
        db.store
            .claim_due_nodes("prov-c", 10, lease)
            .await
            .expect("not due yet")
            .is_empty()
    );
    db.clock.advance(Duration::seconds(5));
    assert_eq!(
        db.store
            .claim_due_nodes("prov-c", 10, lease)
            .await
            .expect("due")
            .len(),
        1
    );
}

async fn only_due_nodes_are_claimed(db: TestDb) {
    db.import_csv(&csv_rows(1, 3)).await.expect("import");
    let nodes = db
        .store
        .list_nodes(&Default::default())
        .await
        .expect("nodes");
    // A node that needs nobody (quarantined) and one scheduled for later are not handed out.
    db.store
        .transition(
            nodes[0].id,
            NodeState::Enrolled,
            NodeState::Remediating,
            "t",
            "x",
        )
        .await
        .expect("t");
    db.store
        .transition(
            nodes[0].id,
            NodeState::Remediating,
            NodeState::Quarantined,
            "t",
            "x",
        )
        .await
        .expect("t");
    db.store
        .set_next_check(nodes[1].id, Some(db.store.now() + Duration::minutes(5)))
        .await
        .expect("schedule");
    let claims = db
        .store
        .claim_due_nodes("prov-a", 10, Duration::seconds(30))
        .await
        .expect("claim");
    assert_eq!(
        claims.iter().map(|c| c.node.id).collect::<Vec<_>>(),
        vec![nodes[2].id]
    );
    assert_eq!(claims[0].expires_at, db.store.now() + Duration::seconds(30));
}

async fn claims_say_since_when_the_node_was_due(db: TestDb) {
    db.import_csv(&csv_rows(1, 2)).await.expect("import");
    let nodes = db
        .store
        .list_nodes(&Default::default())
        .await
        .expect("nodes");
    let (rechecked, woken) = (nodes[0].id, nodes[1].id);
    let start = db.store.now();
    db.store
        .set_next_check(rechecked, Some(start + Duration::seconds(5)))
        .await
        .expect("schedule");
    db.store
        .set_next_check(woken, Some(start + Duration::minutes(10)))
        .await
        .expect("schedule");
    db.clock.advance(Duration::seconds(12));
    // A wake moves the node ahead of the queue; the claim still reports when the wake happened.
    db.store.wake_node(woken).await.expect("wake");
    db.clock.advance(Duration::seconds(3));
    let first = db
        .store
        .claim_due_nodes("prov-a", 1, Duration::seconds(30))
        .await
        .expect("claim");
    assert_eq!(first[0].node.id, woken, "the woken node comes first");
    let mut claims = db
        .store
        .claim_due_nodes("prov-a", 10, Duration::seconds(30))
        .await
        .expect("claim");
    claims.extend(first);
    let due = |id| {
        claims
            .iter()
            .find(|c| c.node.id == id)
            .map(|c| c.due_since)
            .expect("claimed")
    };
    assert_eq!(claims.len(), 2);
    assert_eq!(due(rechecked), start + Duration::seconds(5));
    assert_eq!(due(woken), start + Duration::seconds(12));
}

async fn a_turn_wait_is_held_until_due_then_goes_ahead_of_routine_rechecks(db: TestDb) {
    db.import_csv(&csv_rows(1, 2)).await.expect("import");
    let nodes = db
        .store
        .list_nodes(&Default::default())
        .await
        .expect("nodes");
    let (routine, turn) = (nodes[0].id, nodes[1].id);
    let lease = Duration::seconds(30);
    let claims = db
        .store
        .claim_due_nodes("prov-a", 10, lease)
        .await
        .expect("claim");
    assert_eq!(claims.len(), 2);
    let start = db.store.now();
    // The routine recheck is due in 1 s; the node waiting for its rack's power-on turn in 2 s.
    for (id, after, ahead) in [(routine, 1, false), (turn, 2, true)] {
        let released = db
            .store
            .release_claim_seen(
                "prov-a",
                id,
                Some(Due {
                    at: start + Duration::seconds(after),
                    ahead,
                }),
                0,
                None,
            )
            .await
            .expect("release");
        assert!(released);
    }
    db.clock.advance(Duration::milliseconds(1500));
    let due = db
        .store
        .claim_due_nodes("prov-a", 10, lease)
        .await
        .expect("claim");
    assert_eq!(
        due.iter().map(|c| c.node.id).collect::<Vec<_>>(),
        vec![routine],
        "the turn is not due yet"
    );
    db.store
        .release_claim("prov-a", routine, Some(start + Duration::seconds(1)))
        .await
        .expect("release");
    db.clock.advance(Duration::seconds(1));
    let first = db
        .store
        .claim_due_nodes("prov-a", 1, lease)
        .await
        .expect("claim");
    assert_eq!(first[0].node.id, turn, "a due turn goes ahead");
    assert_eq!(first[0].due_since, start + Duration::seconds(2));
}

async fn nodes_further_along_the_lifecycle_are_claimed_first(db: TestDb) {
    db.import_csv(&csv_rows(1, 2)).await.expect("import");
    let nodes = db
        .store
        .list_nodes(&Default::default())
        .await
        .expect("nodes");
    let (enrolled, discovering) = (nodes[0].id, nodes[1].id);
    db.clock.advance(Duration::seconds(5));
    // The enrolled node was due first (imported earlier), but the discovering one is nearer the image slots.
    db.store
        .transition(
            discovering,
            NodeState::Enrolled,
            NodeState::Discovering,
            "t",
            "BMC read",
        )
        .await
        .expect("transition");
    let first = db
        .store
        .claim_due_nodes("prov-a", 1, Duration::seconds(30))
        .await
        .expect("claim");
    assert_eq!(first[0].node.id, discovering);
    assert_eq!(first[0].due_since, db.store.now());
    let next = db
        .store
        .claim_due_nodes("prov-a", 1, Duration::seconds(30))
        .await
        .expect("claim");
    assert_eq!(next[0].node.id, enrolled);
    assert_eq!(next[0].due_since, db.store.now() - Duration::seconds(5));
}
