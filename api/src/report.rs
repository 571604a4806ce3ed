//! A lease's acceptance report: per leased node, an acceptance record signed with the site's ed25519 key, plus
//! hall aggregates (GPU count, NCCL bus bandwidth distribution, nodes owed). Built here for both the API and the
//! CLI's local transport, and verified here offline (`kiln health verify REPORT --public-key KEY`).
//!
//! Invariant: the aggregates a verifier can recompute (leased nodes, GPU count, busbw distribution) are derived
//! from the signed records by the same function when building and when verifying.

use chrono::{DateTime, Utc};
use ed25519_dalek::{SigningKey, VerifyingKey};
use kiln_health::burnin::evidence_digest;
use kiln_health::erasure::{self, ErasedBeforeLease, ErasedDevice, ErasureStatus};
use kiln_health::evidence::{self, AcceptanceRecord, EvidenceDigest, EvidenceError, SignedRecord};
use kiln_health::{Check, RunKind, Verdict};
use kiln_inventory::{
    Distribution, FleetBaseline, FleetOutlier, HallLease, HealthRun, Node, NodeFilter, Store,
    StoreError,
};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::ToSchema;

/// Acceptance report of a lease: what the lessee received, with signed evidence behind each node.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AcceptanceReport {
    /// The lease.
    pub lease: HallLease,
    /// Hall name.
    pub hall: String,
    /// When the report was made.
    pub generated_at: DateTime<Utc>,
    /// Public key (hex) that signed the records: a hint; verify against the key you trust.
    pub public_key_hex: String,
    /// Per-node records, by serial.
    pub nodes: Vec<NodeRecord>,
    /// Hall aggregates.
    pub aggregates: Aggregates,
}

/// One node of an acceptance report.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct NodeRecord {
    /// Serial.
    pub serial: String,
    /// Rack.
    pub rack: String,
    /// Slot.
    pub slot: i64,
    /// SKU.
    pub sku: String,
    /// The node's acceptance record (hardware, latest verdict per check kind, NCCL figures), signed.
    #[schema(value_type = Object)]
    pub signed_record: SignedRecord,
}

/// Hall-level figures of an acceptance report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Aggregates {
    /// Nodes in the hall.
    pub nodes_total: i64,
    /// Nodes under the lease.
    pub nodes_leased: i64,
    /// Nodes still owed to the lessee.
    pub nodes_owed: i64,
    /// GPUs across leased nodes (from the signed hardware).
    pub gpu_count: usize,
    /// Distribution of the leased nodes' latest NCCL bus bandwidth, when any node has an NCCL run.
    pub nccl_busbw_gbps: Option<BusbwDistribution>,
    /// The hall's fleet baselines and the leased nodes below them (not signed; see [`FleetSection`]).
    #[serde(default)]
    pub fleet: Option<FleetSection>,
}

/// Distribution of per-node NCCL bus bandwidth, GB/s (nearest-rank percentiles).
pub type BusbwDistribution = Distribution;

/// The hall's fleet baselines at report time: each metric's distribution over the hall's nodes of a SKU, and
/// the leased nodes more than the allowed fraction below the median. Not signed: the hall's other nodes are not
/// in the report, so a verifier cannot recompute it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct FleetSection {
    /// The shortfall below the median from which a node is an outlier (0.05 = 5%).
    pub outlier_ratio: f64,
    /// Baselines kept for the hall.
    pub baselines: Vec<FleetBaseline>,
    /// Leased nodes below their baseline by more than `outlier_ratio`, worst first.
    pub outliers: Vec<FleetOutlier>,
}

/// Why a report could not be made or did not verify.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// The inventory failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The text is not an acceptance report.
    #[error("not a kiln acceptance report")]
    Malformed(#[source] serde_json::Error),
    /// A node's signed record failed verification.
    #[error("node {serial}: signed record does not verify")]
    Record {
        /// The node.
        serial: String,
        /// What failed.
        #[source]
        source: EvidenceError,
    },
    /// A node's signed record says its disks were not (or not verifiably) erased before the lease.
    #[error("node {serial}: erased before this lease: {reason}")]
    Erasure {
        /// The node.
        serial: String,
        /// What is wrong with the erase.
        reason: String,
    },
    /// A record signs another node than the report row it sits in.
    #[error("report row {serial} carries the signed record of node {signed}")]
    Mismatch {
        /// Serial of the row.
        serial: String,
        /// Node named inside the signed record.
        signed: String,
    },
    /// An aggregate differs from what the signed records say.
    #[error("aggregate {what} is {claimed} in the report but {derived} from the signed records")]
    Aggregate {
        /// Which aggregate.
        what: &'static str,
        /// As written in the report.
        claimed: String,
        /// As derived from the signed records.
        derived: String,
    },
}

/// What a verified report says.
#[derive(Debug, Clone, Serialize)]
pub struct VerifiedReport {
    /// The lease.
    pub lease_id: i64,
    /// Hall name.
    pub hall: String,
    /// Signed node records checked.
    pub nodes: usize,
    /// GPUs across them.
    pub gpu_count: usize,
    /// Whether every verdict of every record passed.
    pub all_verdicts_passed: bool,
    /// Records whose disks were erased (and verified) after a previous tenant; the rest are first leases or
    /// records made before kiln signed erasures.
    pub nodes_erased_before_lease: usize,
    /// Nodes still owed (not signed: as the report states it).
    pub nodes_owed: i64,
}

/// Builds lease `lease_id`'s report, signing each leased node's record with `key`.
pub async fn build(
    store: &Store,
    key: &SigningKey,
    lease_id: i64,
) -> Result<AcceptanceReport, ReportError> {
    let lease = store.lease(lease_id).await?;
    let hall = store.hall(lease.hall_id).await?;
    let filter = NodeFilter {
        hall: Some(hall.name.clone()),
        ..NodeFilter::default()
    };
    let mut leased: Vec<Node> = store
        .list_nodes(&filter)
        .await?
        .into_iter()
        .filter(|n| n.lease_id == Some(lease_id))
        .collect();
    leased.sort_by(|a, b| a.serial.cmp(&b.serial));
    let now = store.now();
    let created_at_unix_s = u64::try_from(now.timestamp()).unwrap_or(0);
    let previous = previous_lease(&store.hall_leases(hall.id).await?, &lease);
    let mut nodes = Vec::with_capacity(leased.len());
    let mut records = Vec::with_capacity(leased.len());
    for node in leased {
        let hardware = store.hardware(node.id).await?;
        let runs = store.health_runs(node.id).await?;
        let record = AcceptanceRecord {
            node: node.serial.clone(),
            sku: node.sku.clone(),
            hardware: json!(hardware),
            firmware: json!({
                "vbios": hardware.gpus.iter().map(|g| g.vbios.clone()).collect::<Vec<_>>(),
            }),
            image_digest: None,
            verdicts: latest_verdicts(&node.sku, &runs),
            evidence_sha256: evidence_digests(&runs),
            nccl: nccl_figures(&runs),
            created_at_unix_s,
            erased_before_lease: Some(
                erased_before(store, &node, &lease, previous.as_ref(), now).await?,
            ),
        };
        let signed_record = evidence::sign(&record, key).map_err(|source| ReportError::Record {
            serial: node.serial.clone(),
            source,
        })?;
        records.push(record);
        nodes.push(NodeRecord {
            serial: node.serial,
            rack: node.rack,
            slot: node.slot,
            sku: node.sku,
            signed_record,
        });
    }
    let (gpu_count, nccl_busbw_gbps) = derive(&records);
    let nodes_leased = nodes.len() as i64;
    let fleet = fleet_section(store, hall.id, &nodes).await?;
    Ok(AcceptanceReport {
        lease,
        hall: hall.name,
        generated_at: now,
        public_key_hex: hex::encode(key.verifying_key().as_bytes()),
        aggregates: Aggregates {
            nodes_total: hall.nodes,
            nodes_leased,
            nodes_owed: (hall.nodes - nodes_leased).max(0),
            gpu_count,
            nccl_busbw_gbps,
            fleet,
        },
        nodes,
    })
}

/// The outlier ratio a report uses: the SKU profiles' `fleet_outlier_ratio` is applied by the engine; the report
/// lists nodes more than this below the median.
pub const REPORT_OUTLIER_RATIO: f64 = 0.05;

async fn fleet_section(
    store: &Store,
    hall_id: i64,
    leased: &[NodeRecord],
) -> Result<Option<FleetSection>, StoreError> {
    let baselines = store.fleet_baselines(hall_id).await?;
    if baselines.is_empty() {
        return Ok(None);
    }
    let serials: std::collections::HashSet<&str> =
        leased.iter().map(|n| n.serial.as_str()).collect();
    let outliers = store
        .fleet_outliers(hall_id, REPORT_OUTLIER_RATIO)
        .await?
        .into_iter()
        .filter(|o| serials.contains(o.serial.as_str()))
        .collect();
    Ok(Some(FleetSection {
        outlier_ratio: REPORT_OUTLIER_RATIO,
        baselines,
        outliers,
    }))
}

/// Verifies a downloaded report offline: every node's signature under `trusted`, each record belonging to its
/// row, and the derivable aggregates matching the signed records.
pub fn verify(text: &str, trusted: &VerifyingKey) -> Result<VerifiedReport, ReportError> {
    let report: AcceptanceReport = serde_json::from_str(text).map_err(ReportError::Malformed)?;
    let mut records = Vec::with_capacity(report.nodes.len());
    for row in &report.nodes {
        let signed = serde_json::to_string(&row.signed_record).map_err(ReportError::Malformed)?;
        let record = evidence::verify(&signed, trusted).map_err(|source| ReportError::Record {
            serial: row.serial.clone(),
            source,
        })?;
        if record.node != row.serial {
            return Err(ReportError::Mismatch {
                serial: row.serial.clone(),
                signed: record.node,
            });
        }
        if let Some(erased) = &record.erased_before_lease {
            erasure::check(erased).map_err(|reason| ReportError::Erasure {
                serial: row.serial.clone(),
                reason,
            })?;
        }
        records.push(record);
    }
    let claimed = &report.aggregates;
    let (gpu_count, busbw) = derive(&records);
    let mismatch = |what, claimed: String, derived: String| ReportError::Aggregate {
        what,
        claimed,
        derived,
    };
    if claimed.nodes_leased != records.len() as i64 {
        return Err(mismatch(
            "nodes_leased",
            claimed.nodes_leased.to_string(),
            records.len().to_string(),
        ));
    }
    if claimed.gpu_count != gpu_count {
        return Err(mismatch(
            "gpu_count",
            claimed.gpu_count.to_string(),
            gpu_count.to_string(),
        ));
    }
    if !Distribution::same(claimed.nccl_busbw_gbps.as_ref(), busbw.as_ref()) {
        return Err(mismatch(
            "nccl_busbw_gbps",
            format!("{:?}", claimed.nccl_busbw_gbps),
            format!("{busbw:?}"),
        ));
    }
    Ok(VerifiedReport {
        lease_id: report.lease.id,
        hall: report.hall,
        nodes: records.len(),
        gpu_count,
        all_verdicts_passed: records
            .iter()
            .all(|r| r.verdicts.iter().all(Verdict::passed)),
        nodes_erased_before_lease: records
            .iter()
            .filter(|r| {
                r.erased_before_lease
                    .as_ref()
                    .is_some_and(|e| e.status == ErasureStatus::Erased)
            })
            .count(),
        nodes_owed: claimed.nodes_owed,
    })
}

/// The hall's lease released last before `lease` started: the previous tenant's.
fn previous_lease(leases: &[HallLease], lease: &HallLease) -> Option<HallLease> {
    leases
        .iter()
        .filter(|l| l.id != lease.id)
        .filter(|l| l.released_at.is_some_and(|at| at <= lease.starts_at))
        .max_by_key(|l| (l.released_at, l.id))
        .cloned()
}

/// The node's erase between `previous` (the last tenant's lease) and `lease`: the latest erase run stored
/// before `lease` ended (or `now`), which must come after the previous lease was released.
async fn erased_before(
    store: &Store,
    node: &Node,
    lease: &HallLease,
    previous: Option<&HallLease>,
    now: DateTime<Utc>,
) -> Result<ErasedBeforeLease, StoreError> {
    let Some(previous) = previous else {
        return Ok(ErasedBeforeLease {
            status: ErasureStatus::FirstLease,
            after_lease: None,
            devices: Vec::new(),
            summary: "first lease of this hall: no earlier tenant, nothing erased".into(),
        });
    };
    let released = previous.released_at.unwrap_or(previous.starts_at);
    let stored = store
        .erase_records_before(node.id, lease.released_at.unwrap_or(now))
        .await?;
    if stored.is_empty() || stored.iter().any(|r| r.recorded_at < released) {
        return Ok(ErasedBeforeLease {
            status: ErasureStatus::NotRecorded,
            after_lease: Some(previous.id),
            devices: Vec::new(),
            summary: format!(
                "no erase of this node is recorded after lease {}",
                previous.id
            ),
        });
    }
    let summary: Vec<String> = stored.iter().map(|r| r.record.summary()).collect();
    let devices = stored
        .iter()
        .map(|r| {
            let record = &r.record;
            ErasedDevice {
                device: record.device.clone(),
                serial: record.serial.clone(),
                method: record.method.map(|m| m.as_str().to_string()),
                nist: record
                    .nist
                    .and_then(|n| serde_json::to_value(n).ok())
                    .and_then(|v| v.as_str().map(str::to_string)),
                started_at: record.started_at.to_rfc3339(),
                finished_at: record.finished_at.to_rfc3339(),
                verified: record.verified,
                result: if record.is_ok() { "ok" } else { "failed" }.into(),
                record_sha256: evidence_digest(&json!(record)),
            }
        })
        .collect();
    Ok(ErasedBeforeLease {
        status: ErasureStatus::Erased,
        after_lease: Some(previous.id),
        devices,
        summary: summary.join("; "),
    })
}

/// Whether `text` looks like an acceptance report rather than a single signed record.
pub fn is_report(text: &str) -> bool {
    serde_json::from_str::<Value>(text)
        .map(|v| v.get("aggregates").is_some() && v.get("nodes").is_some())
        .unwrap_or(false)
}

/// GPU count and busbw distribution, from signed records only.
fn derive(records: &[AcceptanceRecord]) -> (usize, Option<BusbwDistribution>) {
    let gpus = records
        .iter()
        .map(|r| r.hardware["gpus"].as_array().map_or(0, Vec::len))
        .sum();
    let busbw: Vec<f64> = records
        .iter()
        .filter_map(|r| r.nccl["latest_busbw_gbps"].as_f64())
        .collect();
    (gpus, Distribution::of(busbw))
}

fn run_kind(kind: &str) -> Option<RunKind> {
    match kind {
        "nvml" | "nvml_check" => Some(RunKind::NvmlCheck),
        "burn_in" => Some(RunKind::BurnIn),
        "nccl" => Some(RunKind::Nccl),
        "dcgm" => Some(RunKind::Dcgm),
        "bandwidth" => Some(RunKind::Bandwidth),
        _ => None,
    }
}

/// The latest run of each kind, oldest kind first.
fn latest_runs(runs: &[HealthRun]) -> Vec<&HealthRun> {
    let mut latest: Vec<&HealthRun> = Vec::new();
    for run in runs.iter().rev() {
        if !latest.iter().any(|seen| seen.kind == run.kind) {
            latest.push(run);
        }
    }
    latest.reverse();
    latest
}

/// The raw evidence a run's verdict judged: a burn-in run's `evidence` document (stored beside the
/// provisioner's judgement), else everything the run stored.
fn raw_evidence(run: &HealthRun) -> &Value {
    match run.evidence.get("evidence") {
        Some(document) if run.evidence.get("verdict").is_some() => document,
        _ => &run.evidence,
    }
}

/// The digest of each latest run's raw evidence, recomputed from what the inventory holds.
fn evidence_digests(runs: &[HealthRun]) -> Vec<EvidenceDigest> {
    latest_runs(runs)
        .into_iter()
        .map(|run| EvidenceDigest {
            kind: run.kind.clone(),
            health_run: Some(run.id),
            sha256: evidence_digest(raw_evidence(run)),
        })
        .collect()
}

/// The latest run of each kind as a verdict: the provisioner's judgement stored with the run (`verdict` beside
/// the raw evidence, or the run's evidence itself when it is a verdict), else a verdict with a single check
/// standing for the recorded pass/fail and the raw evidence.
fn latest_verdicts(sku: &str, runs: &[HealthRun]) -> Vec<Verdict> {
    latest_runs(runs)
        .into_iter()
        .filter_map(|run| {
            if let Some(verdict) = run
                .evidence
                .get("verdict")
                .and_then(|v| serde_json::from_value::<Verdict>(v.clone()).ok())
                .filter(|_| run.kind == "burn_in")
            {
                return Some(verdict);
            }
            if let Ok(verdict) = serde_json::from_value::<Verdict>(run.evidence.clone()) {
                return Some(verdict);
            }
            let kind = run_kind(&run.kind)?;
            let name = format!("{}.recorded", run.kind);
            let reason = "recorded in the inventory without a detailed verdict";
            Some(Verdict {
                kind,
                sku: sku.to_string(),
                started_at_unix_s: u64::try_from(run.started_at.timestamp()).unwrap_or(0),
                checks: vec![Check::judged(
                    run.passed, &name, "node", run.passed, None, reason,
                )],
                evidence: run.evidence.clone(),
            })
        })
        .collect()
}

/// The latest NCCL run's bus bandwidth: a stored verdict's `avg_busbw_gbps`, else a plain `busbw_gbps` figure.
fn nccl_figures(runs: &[HealthRun]) -> Value {
    let Some(run) = runs.iter().rev().find(|run| run.kind == "nccl") else {
        return Value::Null;
    };
    let busbw = run.evidence["evidence"]["avg_busbw_gbps"]
        .as_f64()
        .or_else(|| run.evidence["avg_busbw_gbps"].as_f64())
        .or_else(|| run.evidence["busbw_gbps"].as_f64());
    json!({ "health_run": run.id, "passed": run.passed, "latest_busbw_gbps": busbw })
}
