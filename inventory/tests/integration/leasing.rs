//! Hall leasing: atomic, one winner under concurrency, refusals list the shortfall, release and swaps recorded.

use chrono::Duration;
use kiln_inventory::{AcceptanceRule, NodeFilter, NodeState, Role, StoreError};

use crate::both_backends;
use crate::support::{TestDb, csv_rows, make_available};

both_backends!(
    lease_all_or_nothing,
    concurrent_leases_one_winner,
    release_and_swap,
    api_tokens
);

const SERIALS: [&str; 4] = ["SN1-0", "SN1-1", "SN1-2", "SN1-3"];

async fn states(db: &TestDb) -> Vec<(String, NodeState, Option<i64>)> {
    let nodes = db
        .store
        .list_nodes(&NodeFilter::default())
        .await
        .expect("nodes");
    nodes
        .into_iter()
        .map(|n| (n.serial, n.state, n.lease_id))
        .collect()
}

async fn lease_all_or_nothing(db: TestDb) {
    db.import_csv(&csv_rows(1, 4)).await.expect("import");
    make_available(&db, &SERIALS[..3]).await;
    let hall = db.store.hall_by_name("H1").await.expect("hall");
    let lessee = db.store.upsert_lessee("acme", None).await.expect("lessee");
    let before = states(&db).await;
    let now = db.store.now();

    let err = db
        .store
        .lease_hall(
            hall.id,
            lessee.id,
            now,
            None,
            AcceptanceRule::AllNodes,
            "admin",
        )
        .await
        .expect_err("one node is not verified");
    let StoreError::LeaseRefused {
        verified,
        total,
        required,
        shortfall,
        ..
    } = &err
    else {
        panic!("{err}")
    };
    assert_eq!((*verified, *total, *required), (3, 4, 4));
    assert_eq!(shortfall, &vec!["SN1-3 (enrolled)".to_string()]);
    assert!(err.to_string().contains("3 of 4 nodes verified"), "{err}");
    assert_eq!(states(&db).await, before, "a refused lease changes nothing");
    assert!(
        db.store
            .hall_leases(hall.id)
            .await
            .expect("leases")
            .is_empty()
    );

    // Draining a verified node counts it out.
    let drained = db.store.node_by_serial("SN1-0").await.expect("node");
    db.store
        .set_drained(drained.id, true, "tech", "flaky PSU")
        .await
        .expect("drain");
    let rule = AcceptanceRule::MinVerifiedFraction { fraction: 0.5 };
    let outcome = db
        .store
        .lease_hall(
            hall.id,
            lessee.id,
            now,
            Some(now + Duration::days(365)),
            rule,
            "admin",
        )
        .await
        .expect("lease");
    assert_eq!(
        (
            outcome.nodes_leased,
            outcome.nodes_total,
            outcome.nodes_owed
        ),
        (2, 4, 2)
    );
    let after = states(&db).await;
    let lease_id = Some(outcome.lease.id);
    assert_eq!(
        after,
        vec![
            ("SN1-0".to_string(), NodeState::Available, None),
            ("SN1-1".to_string(), NodeState::Leased, lease_id),
            ("SN1-2".to_string(), NodeState::Leased, lease_id),
            ("SN1-3".to_string(), NodeState::Enrolled, None),
        ]
    );
    let leased = db.store.node_by_serial("SN1-1").await.expect("node");
    let last = db
        .store
        .node_events(leased.id)
        .await
        .expect("events")
        .pop()
        .expect("event");
    assert_eq!(
        (last.from_state, last.to_state, last.actor.as_str()),
        (Some(NodeState::Available), Some(NodeState::Leased), "admin")
    );
    let history = db
        .store
        .lease_events(outcome.lease.id)
        .await
        .expect("history");
    assert_eq!(
        history.iter().map(|e| e.kind.as_str()).collect::<Vec<_>>(),
        vec!["leased"]
    );
    assert_eq!(history[0].detail["nodes_owed"], 2);
    let lessee_nodes = NodeFilter {
        lessee: Some("acme".into()),
        ..NodeFilter::default()
    };
    assert_eq!(
        db.store
            .list_nodes(&lessee_nodes)
            .await
            .expect("lessee nodes")
            .len(),
        2
    );

    let again = db
        .store
        .lease_hall(hall.id, lessee.id, now, None, rule, "admin")
        .await
        .expect_err("already leased");
    assert!(
        matches!(again, StoreError::HallAlreadyLeased { .. }),
        "{again}"
    );
}

async fn concurrent_leases_one_winner(db: TestDb) {
    db.import_csv(&csv_rows(1, 4)).await.expect("import");
    make_available(&db, &SERIALS).await;
    let hall = db.store.hall_by_name("H1").await.expect("hall");
    let mut tasks = tokio::task::JoinSet::new();
    for lessee in ["a", "b", "c", "d", "e", "f"] {
        let store = db.store.clone();
        let lessee = store.upsert_lessee(lessee, None).await.expect("lessee");
        tasks.spawn(async move {
            store
                .lease_hall(
                    hall.id,
                    lessee.id,
                    store.now(),
                    None,
                    AcceptanceRule::AllNodes,
                    &lessee.name,
                )
                .await
        });
    }
    let mut winners = Vec::new();
    while let Some(result) = tasks.join_next().await {
        match result.expect("task") {
            Ok(outcome) => winners.push(outcome),
            Err(StoreError::HallAlreadyLeased { .. }) => {}
            Err(other) => panic!("unexpected: {other}"),
        }
    }
    assert_eq!(winners.len(), 1, "exactly one lease wins");
    assert_eq!(winners[0].nodes_leased, 4);
    let lease_id = winners[0].lease.id;
    assert!(
        states(&db)
            .await
            .iter()
            .all(|(_, state, lease)| *state == NodeState::Leased && *lease == Some(lease_id))
    );
    assert_eq!(
        db.store.hall_leases(hall.id).await.expect("leases").len(),
        1
    );
}

async fn release_and_swap(db: TestDb) {
    db.import_csv(&csv_rows(1, 4)).await.expect("import");
    make_available(&db, &SERIALS).await;
    let hall = db.store.hall_by_name("H1").await.expect("hall");
    let lessee = db.store.upsert_lessee("acme", None).await.expect("lessee");
    let spare = db.store.node_by_serial("SN1-3").await.expect("spare");
    db.store
        .set_drained(spare.id, true, "tech", "hold as spare")
        .await
        .expect("drain");
    let rule = AcceptanceRule::MinVerifiedFraction { fraction: 0.75 };
    let outcome = db
        .store
        .lease_hall(hall.id, lessee.id, db.store.now(), None, rule, "admin")
        .await
        .expect("lease");
    db.store
        .set_drained(spare.id, false, "tech", "spare ready")
        .await
        .expect("undrain");

    let failing = db.store.node_by_serial("SN1-1").await.expect("failing");
    let swapped_in = db
        .store
        .swap_leased_node(
            outcome.lease.id,
            failing.id,
            None,
            "tech:bo",
            "XID 79 on GPU 3",
        )
        .await
        .expect("swap");
    assert_eq!(swapped_in, spare.id);
    let failing = db.store.node(failing.id).await.expect("node");
    assert_eq!(
        (failing.state, failing.lease_id),
        (NodeState::Remediating, None)
    );
    let spare = db.store.node(spare.id).await.expect("node");
    assert_eq!(
        (spare.state, spare.lease_id),
        (NodeState::Leased, Some(outcome.lease.id))
    );
    let err = db
        .store
        .swap_leased_node(outcome.lease.id, failing.id, None, "t", "x")
        .await
        .expect_err("not leased");
    assert!(err.to_string().contains("is not a leased node"), "{err}");

    let wiping = db
        .store
        .release_lease(outcome.lease.id, "admin")
        .await
        .expect("release");
    assert_eq!(wiping, 3);
    let after = states(&db).await;
    assert_eq!(
        after
            .iter()
            .filter(|(_, s, _)| *s == NodeState::Wiping)
            .count(),
        3
    );
    assert!(after.iter().all(|(_, _, lease)| lease.is_none()));
    let lease = db.store.lease(outcome.lease.id).await.expect("lease");
    assert_eq!(lease.status, "released");
    assert!(lease.released_at.is_some());
    let kinds: Vec<String> = db
        .store
        .lease_events(lease.id)
        .await
        .expect("history")
        .into_iter()
        .map(|e| e.kind)
        .collect();
    assert_eq!(kinds, vec!["leased", "swap", "released"]);
    assert!(matches!(
        db.store.release_lease(lease.id, "admin").await,
        Err(StoreError::LeaseNotActive(_))
    ));
    // Once released, the hall can be leased again later.
    assert!(
        db.store
            .hall_leases(hall.id)
            .await
            .expect("leases")
            .iter()
            .all(|l| l.status == "released")
    );
}

async fn api_tokens(db: TestDb) {
    let (admin, admin_id) = db
        .store
        .create_api_token(Role::Admin, None, Some("ops"))
        .await
        .expect("admin");
    assert!(admin.expose().starts_with("kiln_"));
    let principal = db
        .store
        .authenticate(admin.expose())
        .await
        .expect("auth")
        .expect("valid");
    assert_eq!(
        (principal.role, principal.token_id, principal.lessee.clone()),
        (Role::Admin, admin_id, None)
    );
    assert_eq!(principal.actor(), format!("token:{admin_id}:ops"));
    assert!(
        db.store
            .authenticate("kiln_forged")
            .await
            .expect("auth")
            .is_none()
    );
    assert!(db.store.authenticate("").await.expect("auth").is_none());

    let err = db
        .store
        .create_api_token(Role::Lessee, None, None)
        .await
        .expect_err("lessee needs a name");
    assert!(err.to_string().contains("--lessee"), "{err}");
    assert!(
        db.store
            .create_api_token(Role::Lessee, Some("ghost"), None)
            .await
            .is_err()
    );
    assert!(
        db.store
            .create_api_token(Role::Technician, Some("acme"), None)
            .await
            .is_err()
    );
    let acme = db.store.upsert_lessee("acme", None).await.expect("lessee");
    let (token, _) = db
        .store
        .create_api_token(Role::Lessee, Some("acme"), None)
        .await
        .expect("lessee token");
    let principal = db
        .store
        .authenticate(token.expose())
        .await
        .expect("auth")
        .expect("valid");
    assert_eq!(principal.lessee, Some((acme.id, "acme".to_string())));

    assert!(db.store.revoke_api_token(admin_id).await.expect("revoke"));
    assert!(
        db.store
            .authenticate(admin.expose())
            .await
            .expect("auth")
            .is_none(),
        "revoked"
    );
    assert!(
        !db.store
            .revoke_api_token(admin_id)
            .await
            .expect("revoke twice")
    );
}
