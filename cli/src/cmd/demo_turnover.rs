//! The demo's tenant turnover: the first lessee's lease is released, the engine erases every released node
//! (the sim nodes run the agent's real erase code on their disk files), re-images, burns in and runs the fabric
//! test again, and the hall is leased to the next lessee.

use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};

use kiln_inventory::{EraseMethod, EraseRecord, LeaseOutcome, NodeState, Store};
use serde_json::json;

use crate::progress::{quarantine_reasons, watch};

/// The lessee of the hall after the turnover.
pub const NEXT_LESSEE: &str = "demo-lessee-2";

/// The erase records stored during the turnover, counted.
#[derive(Debug, Default, serde::Serialize)]
pub struct EraseTally {
    /// Records stored (one per disk per erase run, failed runs included).
    pub records: usize,
    /// Of them, erased and verified.
    pub verified: usize,
    /// Of them, failed.
    pub failed: usize,
    /// Verified records per method.
    pub methods: BTreeMap<String, usize>,
}

impl EraseTally {
    fn add(&mut self, record: &EraseRecord) {
        self.records += 1;
        if record.is_ok() {
            self.verified += 1;
            let method = record.method.map_or("?", EraseMethod::as_str);
            *self.methods.entry(method.to_string()).or_default() += 1;
        } else {
            self.failed += 1;
        }
    }
}

/// What the turnover did to the released nodes.
pub struct Turnover {
    /// The lease that was released.
    pub released_lease: i64,
    /// Nodes the release sent to wiping.
    pub released: usize,
    /// Of them, erased and verified (their wipe reported every disk erased).
    pub wiped: usize,
    /// Of them, back to available after re-imaging, burn-in and the fabric test.
    pub reverified: usize,
    /// Of them, quarantined, with the reason.
    pub quarantine_reasons: BTreeMap<String, String>,
    /// The erase records the engine stored for the released nodes since the release.
    pub erase: EraseTally,
    /// The lease to the next lessee (or why there is none).
    pub next_lease: anyhow::Result<LeaseOutcome>,
    /// Whether every released node settled before the deadline.
    pub finished: bool,
    /// Seconds from the release to the next lease.
    pub elapsed_s: f64,
}

impl Turnover {
    /// Nodes leased to [`NEXT_LESSEE`].
    pub fn leased_again(&self) -> usize {
        self.next_lease
            .as_ref()
            .map_or(0, |outcome| outcome.nodes_leased as usize)
    }

    /// The `turnover` object of the demo's `--json` line (contract: `released`, `wiped`, `reverified`,
    /// `leased_again`; the other keys may grow).
    pub fn json(&self) -> serde_json::Value {
        json!({
            "released": self.released,
            "wiped": self.wiped,
            "reverified": self.reverified,
            "leased_again": self.leased_again(),
            "quarantined": self.quarantine_reasons.len(),
            "quarantine_reasons": self.quarantine_reasons,
            "erase": self.erase,
            "released_lease": self.released_lease,
            "lessee": NEXT_LESSEE,
            "lease": self.next_lease.as_ref().ok().map(|o| o.lease.id),
            "finished": self.finished,
            "elapsed_s": self.elapsed_s,
        })
    }

    /// The human summary.
    pub fn print(&self) {
        println!(
            "\nturnover: lease {} released, {} node(s) sent to wiping; {} erased and verified, {} re-verified \
             (re-imaged, burn-in, fabric test), {} quarantined, in {:.1}s",
            self.released_lease,
            self.released,
            self.wiped,
            self.reverified,
            self.quarantine_reasons.len(),
            self.elapsed_s
        );
        let methods: Vec<String> = self
            .erase
            .methods
            .iter()
            .map(|(method, n)| format!("{method} ×{n}"))
            .collect();
        println!(
            "  erase records: {} disk(s) erased and verified ({}), {} failed",
            self.erase.verified,
            if methods.is_empty() {
                "none".to_string()
            } else {
                methods.join(", ")
            },
            self.erase.failed
        );
        for (serial, reason) in &self.quarantine_reasons {
            println!("  quarantined {serial}: {reason}");
        }
        match &self.next_lease {
            Ok(outcome) => println!(
                "leased hall again to {NEXT_LESSEE}: lease {}, {} node(s) handed over, {} owed",
                outcome.lease.id, outcome.nodes_leased, outcome.nodes_owed
            ),
            Err(err) => println!("the hall was not leased again: {err:#}"),
        }
    }
}

/// Releases `lease`, follows the released nodes until they settle or `deadline` passes, and leases the hall to
/// [`NEXT_LESSEE`] with `lease_hall` (the demo's acceptance rule).
pub async fn run<F, Fut>(
    store: &Store,
    hall: &str,
    serials: &HashSet<String>,
    lease: i64,
    json: bool,
    deadline: Duration,
    lease_hall: F,
) -> anyhow::Result<Turnover>
where
    F: FnOnce(usize, usize) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<LeaseOutcome>>,
{
    let started = Instant::now();
    let leased: HashSet<String> = crate::progress::read(store, Some(hall), Some(serials))
        .await?
        .into_iter()
        .filter(|n| n.state == NodeState::Leased)
        .map(|n| n.serial)
        .collect();
    let release_at = store.now();
    let released = kiln_api::routes::leases::release_lease(store, lease, "kiln-demo").await?;
    if !json {
        eprintln!(
            "\nlease {lease} released: {} node(s) sent to wiping (erase, reimage, re-verify)",
            released.nodes_wiping
        );
    }
    let watched = watch(store, Some(hall), Some(&leased), json, deadline).await?;
    let mut wiped = 0;
    let mut erase = EraseTally::default();
    for node in &watched.nodes {
        for stored in store.erase_history(node.id).await? {
            if stored.recorded_at >= release_at {
                erase.add(&stored.record);
            }
        }
        let events = store.node_events(node.id).await?;
        if events.iter().any(|e| {
            e.at >= release_at
                && e.from_state == Some(NodeState::Wiping)
                && e.to_state == Some(NodeState::Imaging)
        }) {
            wiped += 1;
        }
    }
    let reverified = watched
        .nodes
        .iter()
        .filter(|n| n.state == NodeState::Available)
        .count();
    let quarantine_reasons = quarantine_reasons(store, &watched.nodes).await?;
    let all = crate::progress::read(store, Some(hall), Some(serials)).await?;
    let available = all
        .iter()
        .filter(|n| n.state == NodeState::Available)
        .count();
    let next_lease = lease_hall(available, all.len()).await;
    Ok(Turnover {
        released_lease: lease,
        released: leased.len(),
        wiped,
        reverified,
        quarantine_reasons,
        erase,
        next_lease,
        finished: watched.finished,
        elapsed_s: started.elapsed().as_secs_f64(),
    })
}
