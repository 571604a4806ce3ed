//! The bring-up progress view: nodes per lifecycle state, settled count, rate and ETA, drawn with indicatif
//! bars on a terminal or emitted as JSON lines (`--json`), until every watched node has settled (available,
//! leased or quarantined) or a deadline passes.

use std::collections::{BTreeMap, HashSet};
use std::io::Write;
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use kiln_inventory::{Node, NodeFilter, NodeState, Store};

/// States shown, in lifecycle order (wiping first: a released node starts there).
const SHOWN: [NodeState; 11] = [
    NodeState::Wiping,
    NodeState::Enrolled,
    NodeState::Discovering,
    NodeState::Inspecting,
    NodeState::Imaging,
    NodeState::Booting,
    NodeState::BurnIn,
    NodeState::FabricTest,
    NodeState::Remediating,
    NodeState::Available,
    NodeState::Quarantined,
];

/// Whether a node needs nothing more from the engine.
pub fn settled(state: NodeState) -> bool {
    matches!(
        state,
        NodeState::Available | NodeState::Leased | NodeState::Quarantined
    )
}

/// Counts per state.
pub type Counts = BTreeMap<NodeState, usize>;

/// What the watch saw last.
pub struct Watched {
    /// The nodes, as last read.
    pub nodes: Vec<Node>,
    /// Whether all settled before the deadline.
    pub finished: bool,
    /// How long it watched.
    pub elapsed: Duration,
}

fn count(nodes: &[Node]) -> Counts {
    count_states(nodes.iter().map(|n| n.state))
}

fn count_states(states: impl Iterator<Item = NodeState>) -> Counts {
    let mut counts = Counts::new();
    for state in states {
        *counts.entry(state).or_default() += 1;
    }
    counts
}

/// The watched nodes' states: a cheap read of serial and state only.
async fn read_states(
    store: &Store,
    hall: Option<&str>,
    serials: Option<&HashSet<String>>,
) -> anyhow::Result<Vec<NodeState>> {
    Ok(store
        .node_states(hall)
        .await?
        .into_iter()
        .filter(|(serial, _)| serials.is_none_or(|s| s.contains(serial)))
        .map(|(_, state)| state)
        .collect())
}

/// Reads the watched nodes: those of `hall`, restricted to `serials` when given.
pub async fn read(
    store: &Store,
    hall: Option<&str>,
    serials: Option<&HashSet<String>>,
) -> anyhow::Result<Vec<Node>> {
    let nodes = store
        .list_nodes(&NodeFilter {
            hall: hall.map(str::to_string),
            ..NodeFilter::default()
        })
        .await?;
    Ok(match serials {
        Some(serials) => nodes
            .into_iter()
            .filter(|n| serials.contains(&n.serial))
            .collect(),
        None => nodes,
    })
}

/// Watches until every node settles or `deadline` passes.
pub async fn watch(
    store: &Store,
    hall: Option<&str>,
    serials: Option<&HashSet<String>>,
    json: bool,
    deadline: Duration,
) -> anyhow::Result<Watched> {
    let started = Instant::now();
    let multi = MultiProgress::with_draw_target(if json {
        ProgressDrawTarget::hidden()
    } else {
        ProgressDrawTarget::stderr()
    });
    let style = ProgressStyle::with_template("{prefix:>12} {bar:40.cyan/blue} {pos:>6}/{len}")
        .unwrap_or_else(|_| ProgressStyle::default_bar());
    let header = multi.add(ProgressBar::new_spinner());
    let bars: Vec<(NodeState, ProgressBar)> = SHOWN
        .iter()
        .map(|state| {
            let bar = multi.add(ProgressBar::new(0));
            bar.set_style(style.clone());
            bar.set_prefix(state.as_str());
            (*state, bar)
        })
        .collect();
    let mut last: Option<Counts> = None;
    loop {
        let states = read_states(store, hall, serials).await?;
        let counts = count_states(states.iter().copied());
        let total = states.len();
        let done = states.iter().filter(|s| settled(**s)).count();
        let elapsed = started.elapsed();
        let eta = (done > 0 && done < total)
            .then(|| elapsed.mul_f64((total - done) as f64 / done as f64));
        if last.as_ref() != Some(&counts) {
            if json {
                let states: BTreeMap<&str, usize> =
                    counts.iter().map(|(s, n)| (s.as_str(), *n)).collect();
                let line = serde_json::json!({
                    "event": "progress",
                    "elapsed_s": elapsed.as_secs_f64(),
                    "total": total,
                    "settled": done,
                    "eta_s": eta.map(|d| d.as_secs_f64()),
                    "states": states,
                });
                let mut out = std::io::stdout().lock();
                let _ = writeln!(out, "{line}");
                let _ = out.flush();
            }
            last = Some(counts.clone());
        }
        header.set_message(format!(
            "{done}/{total} settled, {:.0}s elapsed{}",
            elapsed.as_secs_f64(),
            eta.map(|d| format!(", ETA {:.0}s", d.as_secs_f64()))
                .unwrap_or_default()
        ));
        header.tick();
        for (state, bar) in &bars {
            bar.set_length(total as u64);
            bar.set_position(counts.get(state).copied().unwrap_or(0) as u64);
        }
        let finished = total > 0 && done == total;
        if finished || elapsed >= deadline {
            multi.clear().ok();
            return Ok(Watched {
                nodes: read(store, hall, serials).await?,
                finished,
                elapsed,
            });
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The reason each quarantined node was quarantined (from the transition event).
pub async fn quarantine_reasons(
    store: &Store,
    nodes: &[Node],
) -> anyhow::Result<BTreeMap<String, String>> {
    let mut reasons = BTreeMap::new();
    for node in nodes.iter().filter(|n| n.state == NodeState::Quarantined) {
        let events = store.node_events(node.id).await?;
        let reason = events
            .iter()
            .rev()
            .find(|e| e.to_state == Some(NodeState::Quarantined))
            .map(|e| e.reason.clone())
            .unwrap_or_else(|| "quarantined (no event)".to_string());
        reasons.insert(node.serial.clone(), reason);
    }
    Ok(reasons)
}

/// Counts per state as a one-line summary (`available 30, quarantined 2`).
pub fn summary_line(nodes: &[Node]) -> String {
    count(nodes)
        .iter()
        .map(|(state, n)| format!("{state} {n}"))
        .collect::<Vec<_>>()
        .join(", ")
}
