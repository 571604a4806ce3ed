//! A fresh SQLite inventory on a manual clock, with a few enrolled nodes.

use std::sync::Arc;

use chrono::{TimeZone, Utc};
use kiln_inventory::{
    MacAddr, ManifestFormat, ManualClock, NodeState, SecretKey, Store, StoreOptions, parse_manifest,
};

/// An inventory in a temporary directory.
pub struct TestStore {
    pub store: Store,
    pub clock: Arc<ManualClock>,
    pub key: SecretKey,
    pub dir: tempfile::TempDir,
}

/// Boot MAC of enrolled node `n` (serials SN0, SN1, …).
pub fn node_mac(n: u8) -> MacAddr {
    MacAddr([0x52, 0x54, 0x00, 0xaa, 0x00, n])
}

impl TestStore {
    /// An inventory with `nodes` enrolled nodes.
    pub async fn with_nodes(nodes: u8) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let clock = Arc::new(ManualClock::new(
            Utc.with_ymd_and_hms(2026, 11, 27, 8, 0, 0)
                .single()
                .expect("time"),
        ));
        let key = SecretKey::generate();
        let store = Self::open_at(&dir, clock.clone(), key.clone()).await;
        if nodes > 0 {
            let mut csv = String::from(
                "hall,rack,slot,serial,sku,bmc_address,bmc_protocol,bmc_user,bmc_password,boot_mac\n",
            );
            for n in 0..nodes {
                csv.push_str(&format!(
                    "H1,R1,{n},SN{n},h100-sxm-80gb,10.1.0.{n},redfish,admin,pw,{}\n",
                    node_mac(n)
                ));
            }
            let rows = parse_manifest(&csv, ManifestFormat::Csv, &|_| None).expect("manifest");
            store
                .import_manifest(&rows, "test-site", "test")
                .await
                .expect("import");
        }
        Self {
            store,
            clock,
            key,
            dir,
        }
    }

    /// Opens (again) the inventory in `dir`.
    pub async fn open_at(
        dir: &tempfile::TempDir,
        clock: Arc<ManualClock>,
        key: SecretKey,
    ) -> Store {
        let url = format!("sqlite://{}", dir.path().join("kiln.db").display());
        Store::open(StoreOptions::new(url).key(Some(key)).clock(clock))
            .await
            .expect("open store")
    }

    /// Moves node SN`n` along allowed arrows from enrolled to `target` (a state on the happy path).
    pub async fn move_node(&self, n: u8, target: NodeState) {
        let node = self
            .store
            .node_by_serial(&format!("SN{n}"))
            .await
            .expect("node");
        let mut state = node.state;
        for next in NodeState::ALL {
            if state == target {
                break;
            }
            if state.can_transition_to(next) && next != NodeState::Remediating {
                self.store
                    .transition(node.id, state, next, "test", "moving for a test")
                    .await
                    .expect("transition");
                state = next;
            }
        }
        assert_eq!(state, target, "could not reach {target}");
    }
}
