//! Fleet baselines: node figures per metric, the hall's distribution recomputed as they come in, and the
//! nodes below the median.

use kiln_inventory::fleet::{METRIC_NCCL_BUSBW, METRIC_STRESS_THROUGHPUT};

use crate::both_backends;
use crate::support::{TestDb, csv_rows};

both_backends!(
    baselines_follow_the_latest_figure_per_node,
    outliers_need_an_established_baseline
);

async fn baselines_follow_the_latest_figure_per_node(db: TestDb) {
    db.import_csv(&csv_rows(1, 3)).await.expect("import");
    let a = db.store.node_by_serial("SN1-0").await.expect("a");
    let b = db.store.node_by_serial("SN1-1").await.expect("b");
    let first = db
        .store
        .record_node_metric(a.id, METRIC_NCCL_BUSBW, 470.0)
        .await
        .expect("record");
    assert_eq!(first.distribution.nodes, 1);
    assert!(!first.established());
    db.store
        .record_node_metric(b.id, METRIC_NCCL_BUSBW, 480.0)
        .await
        .expect("record");
    // A node measured again replaces its figure, it does not add one.
    let again = db
        .store
        .record_node_metric(a.id, METRIC_NCCL_BUSBW, 490.0)
        .await
        .expect("record");
    assert_eq!(again.distribution.nodes, 2);
    assert_eq!(again.distribution.min, 480.0);
    assert_eq!(again.distribution.max, 490.0);
    let hall = db.store.hall_by_name("H1").await.expect("hall");
    let kept = db.store.fleet_baselines(hall.id).await.expect("baselines");
    assert_eq!(kept.len(), 1);
    assert_eq!(kept[0].metric, METRIC_NCCL_BUSBW);
    assert_eq!(kept[0].sku, "h100-sxm-80gb");
    assert_eq!(kept[0].distribution, again.distribution);
    let err = db
        .store
        .record_node_metric(b.id, METRIC_NCCL_BUSBW, f64::NAN)
        .await
        .expect_err("NaN is refused");
    assert!(err.to_string().contains("not a finite number"), "{err}");
}

async fn outliers_need_an_established_baseline(db: TestDb) {
    db.import_csv(&csv_rows(1, 9)).await.expect("import");
    let hall = db.store.hall_by_name("H1").await.expect("hall");
    for slot in 0..7 {
        let node = db
            .store
            .node_by_serial(&format!("SN1-{slot}"))
            .await
            .expect("node");
        db.store
            .record_node_metric(node.id, METRIC_STRESS_THROUGHPUT, 61_000.0)
            .await
            .expect("record");
    }
    let slow = db.store.node_by_serial("SN1-7").await.expect("slow");
    db.store
        .record_node_metric(slow.id, METRIC_STRESS_THROUGHPUT, 56_730.0)
        .await
        .expect("record");
    // Eight nodes: established; the slow one is 7% below the median.
    let outliers = db
        .store
        .fleet_outliers(hall.id, 0.05)
        .await
        .expect("outliers");
    assert_eq!(outliers.len(), 1, "{outliers:?}");
    assert_eq!(outliers[0].serial, "SN1-7");
    assert!((outliers[0].shortfall - 0.07).abs() < 1e-9);
    assert!(
        db.store
            .fleet_outliers(hall.id, 0.08)
            .await
            .expect("outliers")
            .is_empty()
    );
    // A node of another metric with too few figures is never judged.
    let lone = db.store.node_by_serial("SN1-8").await.expect("lone");
    db.store
        .record_node_metric(lone.id, METRIC_NCCL_BUSBW, 1.0)
        .await
        .expect("record");
    assert_eq!(
        db.store
            .fleet_outliers(hall.id, 0.05)
            .await
            .expect("outliers")
            .len(),
        1
    );
}
