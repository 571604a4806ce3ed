//! Test stores: a fresh SQLite file or a fresh PostgreSQL database per test, on a manual clock.

use std::sync::Arc;

use chrono::{TimeZone, Utc};
use kiln_inventory::{
    ManifestFormat, ManualClock, ScratchDatabase, SecretKey, Store, StoreOptions, parse_manifest,
};

/// Where the tests' PostgreSQL server is; `KILN_TEST_PG=off` skips the PostgreSQL half.
const PG_ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

/// Runs a test body once on SQLite and once on PostgreSQL, as two test functions.
#[macro_export]
macro_rules! both_backends {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$name($crate::support::TestDb::sqlite().await).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                if let Some(db) = $crate::support::TestDb::postgres().await {
                    super::$name(db).await;
                }
            }
        }
    )*};
}

/// A store on a throwaway database, dropped with the value.
pub struct TestDb {
    pub store: Store,
    pub clock: Arc<ManualClock>,
    pub key: SecretKey,
    pub url: String,
    _scratch: Option<ScratchDatabase>,
    _dir: Option<tempfile::TempDir>,
}

impl TestDb {
    pub async fn sqlite() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = format!("sqlite://{}", dir.path().join("kiln.db").display());
        Self::open(url, None, Some(dir)).await
    }

    pub async fn postgres() -> Option<Self> {
        if std::env::var("KILN_TEST_PG").as_deref() == Ok("off") {
            eprintln!("KILN_TEST_PG=off: skipping the PostgreSQL half of this test");
            return None;
        }
        let scratch = ScratchDatabase::create(PG_ADMIN_URL, "kiln_t")
            .await
            .expect("PostgreSQL at 127.0.0.1:5432 (set KILN_TEST_PG=off to skip)");
        Some(Self::open(scratch.url.clone(), Some(scratch), None).await)
    }

    async fn open(
        url: String,
        scratch: Option<ScratchDatabase>,
        dir: Option<tempfile::TempDir>,
    ) -> Self {
        let clock = Arc::new(ManualClock::new(
            Utc.with_ymd_and_hms(2026, 11, 27, 8, 0, 0)
                .single()
                .expect("valid"),
        ));
        let key = SecretKey::generate();
        let store = Store::open(
            StoreOptions::new(url.clone())
                .key(Some(key.clone()))
                .clock(clock.clone()),
        )
        .await
        .expect("open test store");
        Self {
            store,
            clock,
            key,
            url,
            _scratch: scratch,
            _dir: dir,
        }
    }

    /// Imports a CSV manifest body (header added) and returns the store's answer.
    pub async fn import_csv(
        &self,
        rows: &str,
    ) -> Result<kiln_inventory::ImportSummary, kiln_inventory::StoreError> {
        let text = format!("{CSV_HEADER}\n{rows}");
        let rows = parse_manifest(&text, ManifestFormat::Csv, &|_| None)?;
        self.store.import_manifest(&rows, "test-site", "test").await
    }
}

pub const CSV_HEADER: &str =
    "hall,rack,slot,serial,sku,bmc_address,bmc_protocol,bmc_user,bmc_password,boot_mac";

/// `count` valid CSV rows in hall H1, rack R<rack>, serials SN<rack>-<slot>.
pub fn csv_rows(rack: u32, count: u32) -> String {
    (0..count)
        .map(|slot| {
            format!(
                "H1,R{rack},{slot},SN{rack}-{slot},h100-sxm-80gb,10.{rack}.0.{slot},redfish,admin,pw-{rack}-{slot},02:00:00:00:{rack:02x}:{slot:02x}\n"
            )
        })
        .collect()
}

/// Walks `serials` along the happy path to `available`.
pub async fn make_available(db: &TestDb, serials: &[&str]) {
    use kiln_inventory::NodeState::*;
    let path = [
        Enrolled,
        Discovering,
        Inspecting,
        Imaging,
        Booting,
        BurnIn,
        FabricTest,
        Available,
    ];
    for serial in serials {
        let node = db.store.node_by_serial(serial).await.expect("node");
        for step in path.windows(2) {
            db.store
                .transition(node.id, step[0], step[1], "test", "walk")
                .await
                .expect("walk");
        }
    }
}
