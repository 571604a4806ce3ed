//! What several benchmarks share: a generated hall-sized manifest, and walking nodes along a path of states
//! with concurrent walkers.

use std::time::{Duration, Instant};

use kiln_inventory::{NodeState, Store};

/// Racks per hall in the generated manifest: 128 racks × 32 nodes = 4,096-node halls.
const RACKS_PER_HALL: u32 = 128;

/// A manifest of `nodes` H100 nodes, 32 per rack, 4,096 per hall.
pub fn generate_manifest(nodes: u32) -> String {
    let mut text = String::from(
        "hall,rack,slot,serial,sku,bmc_address,bmc_protocol,bmc_user,bmc_password,boot_mac\n",
    );
    for i in 0..nodes {
        let (rack, slot) = (i / 32, i % 32);
        let hall = rack / RACKS_PER_HALL;
        let [_, b1, b2, b3] = i.to_be_bytes();
        text.push_str(&format!(
            "hall-{hall},r{rack:04},{slot},BENCH-{i:06},h100-sxm-80gb,10.{b1}.{b2}.{b3},redfish,admin,pw{i},02:00:00:{b1:02x}:{b2:02x}:{b3:02x}\n"
        ));
    }
    text
}

/// Walks `nodes` along `path` with 16 concurrent walkers; returns each transition's latency.
pub async fn walk_concurrently(
    store: &Store,
    nodes: &[kiln_inventory::Node],
    path: &[NodeState],
) -> anyhow::Result<Vec<Duration>> {
    let mut walkers = tokio::task::JoinSet::new();
    for chunk in nodes.chunks(nodes.len().div_ceil(16).max(1)) {
        let (store, ids, path) = (
            store.clone(),
            chunk.iter().map(|n| n.id).collect::<Vec<_>>(),
            path.to_vec(),
        );
        walkers.spawn(async move {
            let mut samples = Vec::new();
            for id in ids {
                for step in path.windows(2) {
                    let t = Instant::now();
                    store
                        .transition(id, step[0], step[1], "bench", "prepare lease")
                        .await?;
                    samples.push(t.elapsed());
                }
            }
            anyhow::Ok(samples)
        });
    }
    let mut samples = Vec::new();
    while let Some(result) = walkers.join_next().await {
        samples.extend(result??);
    }
    Ok(samples)
}
