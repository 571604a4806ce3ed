//! `kiln bmc sweep`, `kiln bmc sim` and `kiln bench bmc-sweep`: the fleet-sized BMC commands.

use std::collections::HashMap;
use std::time::Duration;

use anyhow::{Context, bail};
use kiln_bmc::PowerState;
use kiln_bmc::fleet::{self, FleetOptions, FleetSummary};
use kiln_bmc::target::ConnectOptions;
use kiln_bmc_sim::{SimFleet, SimFleetConfig, profile};
use kiln_inventory::{BmcObservation, NodeFilter, NodeId, ObservedPower, Store};

use super::connect_node;
use crate::GlobalArgs;
use crate::global::KeyUse;

/// `kiln bmc sweep`: power status over the inventory's BMCs. Credentials are decrypted per BMC, in memory, only
/// when that BMC is queried. What each BMC answered (or why not) is recorded in the inventory as an
/// observation (`kiln node show` prints it); node lifecycle states are left alone.
pub(super) async fn sweep(
    hall: Option<String>,
    concurrency: usize,
    timeout_s: u64,
    insecure: bool,
    global: &GlobalArgs,
) -> anyhow::Result<()> {
    let store = global.open_store(KeyUse::IfPresent).await?;
    let nodes = store
        .list_nodes(&NodeFilter {
            hall,
            ..NodeFilter::default()
        })
        .await?;
    let node_ids: HashMap<String, NodeId> = nodes
        .iter()
        .map(|node| (node.serial.clone(), node.id))
        .collect();
    let targets: Vec<(String, (Store, String))> = nodes
        .into_iter()
        .map(|node| (node.serial.clone(), (store.clone(), node.serial)))
        .collect();
    let options = FleetOptions {
        concurrency,
        attempt_timeout: Duration::from_secs(timeout_s),
        ..FleetOptions::default()
    };
    let connect_options = ConnectOptions {
        request_timeout: Duration::from_secs(timeout_s),
    };
    let summary = fleet::run(targets, options, move |target, _attempt| async move {
        let (store, serial) = &*target;
        let bmc = connect_node(store, serial, insecure, connect_options)
            .await
            .map_err(|err| kiln_bmc::BmcError::Config {
                addr: serial.clone(),
                detail: format!("{err:#}"),
            })?;
        let state = bmc.power_state().await;
        bmc.close().await;
        state
    })
    .await;
    store
        .record_bmc_observations(&observations(&summary, &node_ids))
        .await
        .context("recording the sweep's power states in the inventory")?;
    if global.json {
        let ok: Vec<serde_json::Value> = summary
            .ok
            .iter()
            .map(|(serial, state)| serde_json::json!({ "serial": serial, "power_state": state.contract_str() }))
            .collect();
        println!(
            "{}",
            serde_json::json!({
                "ok": ok,
                "failed": summary.failed,
                "elapsed_s": summary.elapsed.as_secs_f64(),
            })
        );
    } else {
        for (serial, state) in &summary.ok {
            println!("{serial}\t{}", state.contract_str());
        }
        for failure in &summary.failed {
            println!(
                "{}\tFAILED\t{}\t{}",
                failure.target, failure.kind, failure.error
            );
        }
        eprintln!(
            "{} ok, {} failed in {:.1} s",
            summary.ok.len(),
            summary.failed.len(),
            summary.elapsed.as_secs_f64()
        );
    }
    if !summary.failed.is_empty() {
        bail!(
            "{} of {} BMCs failed",
            summary.failed.len(),
            summary.failed.len() + summary.ok.len()
        );
    }
    Ok(())
}

/// The sweep's results as inventory observations. A failure before any BMC was tried (a configuration
/// problem such as a missing site key) says nothing about the BMC and is not recorded.
fn observations(
    summary: &FleetSummary<PowerState>,
    node_ids: &HashMap<String, NodeId>,
) -> Vec<(NodeId, BmcObservation)> {
    let ok = summary.ok.iter().filter_map(|(serial, state)| {
        let power = match state {
            PowerState::On => ObservedPower::On,
            PowerState::Off => ObservedPower::Off,
            PowerState::PoweringOn => ObservedPower::PoweringOn,
            PowerState::PoweringOff => ObservedPower::PoweringOff,
        };
        Some((*node_ids.get(serial)?, BmcObservation::Power(power)))
    });
    let failed = summary
        .failed
        .iter()
        .filter(|failure| failure.kind != "config")
        .filter_map(|failure| {
            let observation = BmcObservation::Failed {
                reachable: !matches!(failure.kind, "timeout" | "connect"),
                kind: failure.kind.to_string(),
                error: failure.error.clone(),
            };
            Some((*node_ids.get(&failure.target)?, observation))
        });
    ok.chain(failed).collect()
}

pub(super) async fn run_sim(
    count: usize,
    base_port: Option<u16>,
    profile_name: Option<String>,
    http: bool,
    power_on_s: f64,
    global: &GlobalArgs,
) -> anyhow::Result<()> {
    let profiles = match profile_name {
        Some(name) => {
            vec![profile::by_name(&name).with_context(|| format!("no vendor profile {name:?}"))?]
        }
        None => Vec::new(),
    };
    let power_on = Duration::try_from_secs_f64(power_on_s)
        .context("--power-on-s must be a non-negative number")?;
    let fleet = SimFleet::start(SimFleetConfig {
        count,
        base_port,
        tls: !http,
        profiles,
        timing: kiln_bmc_sim::Timing {
            power_on,
            ..kiln_bmc_sim::Timing::default()
        },
        ..SimFleetConfig::default()
    })
    .await?;
    let config = SimFleetConfig::default();
    for endpoint in fleet.endpoints() {
        let fingerprint = endpoint.fingerprint.map(|f| f.to_string());
        if global.json {
            println!(
                "{}",
                serde_json::json!({
                    "index": endpoint.index,
                    "profile": endpoint.profile,
                    "redfish": endpoint.redfish_url,
                    "fingerprint": fingerprint,
                    "ipmi": endpoint.ipmi_port.map(|port| format!("127.0.0.1:{port}")),
                    "serial": endpoint.bmc.serial,
                    "user": config.user,
                })
            );
        } else {
            println!(
                "{:>5}  {:<10}  {}  ipmi 127.0.0.1:{}  {}  {}",
                endpoint.index,
                endpoint.profile,
                endpoint.redfish_url,
                endpoint
                    .ipmi_port
                    .map_or("-".to_string(), |port| port.to_string()),
                endpoint.bmc.serial,
                fingerprint.as_deref().unwrap_or("-")
            );
        }
    }
    eprintln!(
        "{} simulated BMCs running (user {:?}, password {:?}); Ctrl-C stops them",
        fleet.endpoints().len(),
        config.user,
        config.password
    );
    tokio::signal::ctrl_c()
        .await
        .context("waiting for Ctrl-C")?;
    fleet.shutdown();
    Ok(())
}
