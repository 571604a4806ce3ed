//! Technician verbs on one node: `kiln node drain|undrain SERIAL --reason T`, `kiln node reimage SERIAL
//! [--image N:V] --reason T`, `kiln node retest SERIAL [--burn-in] [--nccl] --reason T` and `kiln node events
//! SERIAL [--follow]`, on the local database or over the API (`--server`), each with `--json`.

use std::collections::BTreeSet;
use std::time::Duration;

use kiln_inventory::NodeEvent;

use crate::GlobalArgs;
use crate::client::{ByHand, Client};
use crate::global::{print_json, print_json_line};

/// How often `kiln node events --follow` asks for new events.
const FOLLOW_POLL: Duration = Duration::from_secs(1);

/// `kiln node drain` / `kiln node undrain`.
#[derive(Debug, clap::Args)]
pub struct DrainArgs {
    /// Chassis serial.
    serial: String,
    /// Why (kept in the node's history with who did it).
    #[arg(long)]
    reason: String,
}

/// `kiln node reimage`.
#[derive(Debug, clap::Args)]
pub struct ReimageArgs {
    /// Chassis serial.
    serial: String,
    /// A catalog image to write instead of the engine's (kept for this node until it is next available).
    #[arg(long, value_name = "NAME:VERSION", value_parser = kiln_inventory::parse_image_ref)]
    image: Option<(String, String)>,
    /// Why (kept in the node's history with who did it).
    #[arg(long)]
    reason: String,
}

/// `kiln node retest`.
#[derive(Debug, clap::Args)]
pub struct RetestArgs {
    /// Chassis serial.
    serial: String,
    /// Run burn-in (the fabric test follows, as in bring-up). The default when neither flag is given.
    #[arg(long)]
    burn_in: bool,
    /// Run the fabric (NCCL) test; alone, only the fabric test runs.
    #[arg(long)]
    nccl: bool,
    /// Why (kept in the node's history with who did it).
    #[arg(long)]
    reason: String,
}

/// `kiln node events`.
#[derive(Debug, clap::Args)]
pub struct EventsArgs {
    /// Chassis serial.
    serial: String,
    /// Keep printing new events (polled every second) until Ctrl-C.
    #[arg(long)]
    follow: bool,
}

/// Drains (`drained`) or undrains a node and prints the result.
pub async fn drain(
    args: DrainArgs,
    drained: bool,
    client: &Client,
    global: &GlobalArgs,
) -> anyhow::Result<()> {
    if args.reason.trim().is_empty() {
        anyhow::bail!("--reason must not be empty: it is kept in the node's history");
    }
    let node = client.drain(&args.serial, drained, &args.reason).await?;
    if global.json {
        print_json(&serde_json::json!({
            "serial": node.serial,
            "state": node.state,
            "drained": node.drained,
            "reason": args.reason,
        }))
    } else {
        let what = if node.drained {
            "drained (out of allocation)"
        } else {
            "undrained (back in allocation)"
        };
        println!("{}: {what}; state {}", node.serial, node.state);
        Ok(())
    }
}

/// Sends a node back through imaging and re-verification.
pub async fn reimage(
    args: ReimageArgs,
    client: &Client,
    global: &GlobalArgs,
) -> anyhow::Result<()> {
    let verb = ByHand::Reimage { image: args.image };
    by_hand(&args.serial, &verb, &args.reason, client, global).await
}

/// Runs a node's health checks again.
pub async fn retest(args: RetestArgs, client: &Client, global: &GlobalArgs) -> anyhow::Result<()> {
    let verb = ByHand::Retest {
        burn_in: args.burn_in,
        nccl: args.nccl,
    };
    by_hand(&args.serial, &verb, &args.reason, client, global).await
}

async fn by_hand(
    serial: &str,
    verb: &ByHand,
    reason: &str,
    client: &Client,
    global: &GlobalArgs,
) -> anyhow::Result<()> {
    if reason.trim().is_empty() {
        anyhow::bail!("--reason must not be empty: it is kept in the node's history");
    }
    let node = client.by_hand(serial, verb, reason).await?;
    let (name, image) = match verb {
        ByHand::Reimage { image } => ("reimage", image.as_ref().map(|(n, v)| format!("{n}:{v}"))),
        ByHand::Retest { .. } => ("retest", None),
    };
    if global.json {
        print_json(&serde_json::json!({
            "serial": node.serial,
            "verb": name,
            "state": node.state,
            "image": image,
            "reason": reason,
        }))
    } else {
        println!(
            "{}: {name} requested; now {} (follow it with `kiln node events {} --follow`)",
            node.serial, node.state, node.serial
        );
        Ok(())
    }
}

/// Prints a node's events; with `--follow`, keeps polling for new ones until Ctrl-C.
pub async fn events(args: EventsArgs, client: &Client, global: &GlobalArgs) -> anyhow::Result<()> {
    // Every event printed, by id: a poll prints exactly the events not seen yet, so nothing is printed twice and
    // an event whose id was allocated before one already printed (a later commit) is still printed.
    let mut seen = BTreeSet::new();
    print_new(&client.events(&args.serial).await?, &mut seen, global)?;
    if !args.follow {
        return Ok(());
    }
    let stop = tokio::signal::ctrl_c();
    tokio::pin!(stop);
    loop {
        tokio::select! {
            _ = &mut stop => return Ok(()),
            () = tokio::time::sleep(FOLLOW_POLL) => {}
        }
        print_new(&client.events(&args.serial).await?, &mut seen, global)?;
    }
}

/// Prints the events of `events` whose ids are not in `seen`, adding them.
fn print_new(
    events: &[NodeEvent],
    seen: &mut BTreeSet<i64>,
    global: &GlobalArgs,
) -> anyhow::Result<()> {
    for event in events {
        if !seen.insert(event.id) {
            continue;
        }
        if global.json {
            print_json_line(event)?;
        } else {
            println!("{}", render_event(event));
        }
    }
    Ok(())
}

/// One event as a line: id, time, actor, change, reason.
fn render_event(event: &NodeEvent) -> String {
    format!(
        "#{} {} {} {}: {}",
        event.id,
        event.at.to_rfc3339(),
        event.actor,
        describe_change(event),
        event.reason
    )
}

/// An event's state change: `from → to`, `→ to` (enrollment) or `note`.
pub fn describe_change(event: &NodeEvent) -> String {
    match (event.from_state, event.to_state) {
        (Some(from), Some(to)) => format!("{from} → {to}"),
        (None, Some(to)) => format!("→ {to}"),
        _ => "note".to_string(),
    }
}
