//! `kiln bmc firmware` (the firmware inventory) and `kiln bmc bios [set KEY=VALUE...]` (BIOS attributes, pending
//! changes, and changes sent as differences only).

use clap::Subcommand;
use kiln_bmc::{BiosSettings, Bmc};
use serde_json::Value;

use super::Target;
use crate::GlobalArgs;

#[derive(Debug, Subcommand)]
pub(super) enum BiosAction {
    /// PATCH the BIOS settings object with the attributes that differ, and say when they apply.
    Set {
        #[command(flatten)]
        target: Target,
        /// `KEY=VALUE` pairs; a value is read as JSON where it parses (`true`, `3`), else as a string.
        #[arg(required = true, value_parser = parse_attribute)]
        attributes: Vec<(String, Value)>,
    },
}

/// `KEY=VALUE` → the key and the value, JSON where it parses (numbers, booleans), a string otherwise.
fn parse_attribute(text: &str) -> Result<(String, Value), String> {
    let (key, value) = text
        .split_once('=')
        .filter(|(key, _)| !key.trim().is_empty())
        .ok_or_else(|| format!("{text:?} is not KEY=VALUE"))?;
    let value = match serde_json::from_str::<Value>(value) {
        Ok(value @ (Value::Bool(_) | Value::Number(_))) => value,
        _ => Value::String(value.to_string()),
    };
    Ok((key.trim().to_string(), value))
}

/// Prints the firmware inventory (warnings on stderr).
pub(super) async fn show_firmware(bmc: &dyn Bmc, global: &GlobalArgs) -> anyhow::Result<()> {
    let inventory = bmc.firmware().await?;
    for warning in &inventory.warnings {
        eprintln!("warning: {warning}");
    }
    if global.json {
        println!("{}", inventory.contract_json());
        return Ok(());
    }
    let rows: Vec<Vec<String>> = inventory
        .components
        .iter()
        .map(|c| {
            vec![
                c.id.clone(),
                c.name.clone().unwrap_or_else(|| "-".into()),
                c.version.clone().unwrap_or_else(|| "-".into()),
                match c.updateable {
                    Some(true) => "yes".into(),
                    Some(false) => "no".into(),
                    None => "-".into(),
                },
            ]
        })
        .collect();
    println!(
        "{}",
        crate::table::render(&["ID", "NAME", "VERSION", "UPDATEABLE"], &rows)
    );
    Ok(())
}

/// Prints the BIOS settings, or sends the changes `action` asks for and says when they apply.
pub(super) async fn bios(
    bmc: &dyn Bmc,
    action: Option<BiosAction>,
    global: &GlobalArgs,
) -> anyhow::Result<()> {
    let Some(BiosAction::Set { attributes, .. }) = action else {
        let bios = bmc.bios().await?;
        for warning in &bios.warnings {
            eprintln!("warning: {warning}");
        }
        if global.json {
            println!("{}", bios.contract_json());
        } else {
            println!("{}", bios_text(&bios));
        }
        return Ok(());
    };
    let changes: serde_json::Map<String, Value> = attributes.into_iter().collect();
    let change = bmc.set_bios(&changes).await?;
    if global.json {
        println!("{}", serde_json::json!(change));
    } else if change.changed.is_empty() {
        println!("nothing to change: every attribute already has that value");
    } else {
        println!(
            "asked for {} change(s) ({}); they apply {}",
            change.changed.len(),
            change
                .changed
                .keys()
                .cloned()
                .collect::<Vec<_>>()
                .join(", "),
            match change.applies.as_str() {
                "OnReset" => "at the next reset (power cycle the server)",
                "Immediate" => "immediately",
                other => other,
            }
        );
    }
    Ok(())
}

fn bios_text(bios: &BiosSettings) -> String {
    let shown = |v: &Value| match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let mut out = String::new();
    for (key, value) in &bios.attributes {
        out.push_str(&format!("{key} = {}", shown(value)));
        if let Some(pending) = bios.pending.get(key) {
            out.push_str(&format!("  (pending: {})", shown(pending)));
        }
        out.push('\n');
    }
    for (key, value) in bios
        .pending
        .iter()
        .filter(|(k, _)| !bios.attributes.contains_key(*k))
    {
        out.push_str(&format!("{key} (new, pending) = {}\n", shown(value)));
    }
    if !bios.apply_times.is_empty() {
        out.push_str(&format!("changes apply: {}\n", bios.apply_times.join(", ")));
    }
    out.trim_end().to_string()
}
