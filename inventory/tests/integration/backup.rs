//! `Store::backup_to`: an online SQLite copy that opens as a store with the same data.

use kiln_inventory::{NodeFilter, Store, StoreOptions};

use crate::support::{TestDb, csv_rows};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_backup_opens_with_the_same_data() {
    let db = TestDb::sqlite().await;
    db.import_csv(&csv_rows(1, 5)).await.expect("import");
    let dir = tempfile::tempdir().expect("temp dir");
    let dest = dir.path().join("backup.db");

    db.store.backup_to(&dest, false).await.expect("backup");
    // The source keeps working after the backup, and later writes do not reach the copy.
    db.import_csv(&csv_rows(2, 3))
        .await
        .expect("import after backup");

    let copy = Store::open(StoreOptions::new(format!("sqlite://{}", dest.display())))
        .await
        .expect("open the backup");
    let nodes = copy
        .list_nodes(&NodeFilter::default())
        .await
        .expect("nodes in the backup");
    let mut serials: Vec<_> = nodes.iter().map(|n| n.serial.clone()).collect();
    serials.sort();
    assert_eq!(serials, ["SN1-0", "SN1-1", "SN1-2", "SN1-3", "SN1-4"]);
    copy.close().await;

    let again = db.store.backup_to(&dest, false).await.expect_err("exists");
    assert!(again.to_string().contains("--force"), "{again}");
    db.store
        .backup_to(&dest, true)
        .await
        .expect("forced backup");
    let copy = Store::open(StoreOptions::new(format!("sqlite://{}", dest.display())))
        .await
        .expect("open the forced backup");
    let count = copy
        .list_nodes(&NodeFilter::default())
        .await
        .expect("nodes")
        .len();
    assert_eq!(count, 8);
    copy.close().await;
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .expect("read dir")
        .map(|e| e.expect("entry").file_name())
        .filter(|n| n.to_string_lossy().contains(".partial"))
        .collect();
    assert!(leftovers.is_empty(), "partial files left: {leftovers:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_backup_points_to_pg_dump() {
    let Some(db) = TestDb::postgres().await else {
        return;
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let err = db
        .store
        .backup_to(&dir.path().join("x.dump"), false)
        .await
        .expect_err("postgres refused");
    assert!(err.to_string().contains("pg_dump -Fc"), "{err}");
}
