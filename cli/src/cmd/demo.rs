//! `kiln demo`: a simulated hall from rack to inventory on a fresh SQLite database.
//!
//! Today it enrolls the bundled example hall (4 racks × 8 HGX H100 nodes) and prints it; the lifecycle and
//! simulator issues extend this same command into the full bring-up from rack to lease.

use std::path::PathBuf;

use anyhow::Context;
use kiln_inventory::{
    ManifestFormat, Node, NodeFilter, SecretKey, Store, StoreOptions, parse_manifest,
};

use crate::cmd::hall::render_halls;
use crate::global::print_json;
use crate::{GlobalArgs, table};

/// The bundled example manifest.
const DEMO_MANIFEST: &str = include_str!("../../../examples/hall-a.csv");

/// Run the demo (always on its own fresh SQLite file; `--db` is not used).
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Directory for the demo's database and key (the database is recreated on every run).
    #[arg(long, default_value = "kiln-demo")]
    dir: PathBuf,
}

pub async fn exec(args: Args, global: &GlobalArgs) -> anyhow::Result<()> {
    std::fs::create_dir_all(&args.dir)
        .with_context(|| format!("creating {}", args.dir.display()))?;
    let db_path = args.dir.join("kiln.db");
    for suffix in ["", "-wal", "-shm"] {
        let path = PathBuf::from(format!("{}{suffix}", db_path.display()));
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
            Err(err) => {
                return Err(err)
                    .with_context(|| format!("removing the old demo database {}", path.display()));
            }
        }
    }
    // The demo keeps its own key beside its database so it never touches a real site key.
    let key_path = args.dir.join("kiln.key");
    let key = match std::env::var_os(kiln_inventory::SECRET_KEY_ENV) {
        Some(_) => SecretKey::load(&key_path)?,
        None => Some(SecretKey::load_or_create(&key_path)?.0),
    };
    let url = format!("sqlite://{}", db_path.display());
    let store = Store::open(StoreOptions::new(url.clone()).key(key))
        .await
        .context("creating the demo inventory")?;
    let rows = parse_manifest(DEMO_MANIFEST, ManifestFormat::Csv, &|_| None)?;
    let summary = store.import_manifest(&rows, "demo-site", "demo").await?;
    let halls = store.list_halls().await?;
    let nodes = store.list_nodes(&NodeFilter::default()).await?;
    store.close().await;
    if global.json {
        return print_json(
            &serde_json::json!({"database": url, "import": summary, "halls": halls, "nodes": nodes}),
        );
    }
    println!("kiln demo: fresh inventory at {url}");
    println!(
        "enrolled {} node(s) from the bundled manifest examples/hall-a.csv\n",
        summary.created
    );
    println!("{}\n", render_halls(&halls));
    println!("{}", render_rack_map(&nodes));
    println!(
        "\nnext: `kiln --db {url} node list` or `kiln --db {url} node show {}`",
        nodes.first().map_or("SERIAL", |n| n.serial.as_str())
    );
    Ok(())
}

/// Racks side by side, one line per slot, each node shown as `serial state`.
fn render_rack_map(nodes: &[Node]) -> String {
    let mut racks: Vec<(String, String)> = nodes
        .iter()
        .map(|n| (n.hall.clone(), n.rack.clone()))
        .collect();
    racks.sort();
    racks.dedup();
    let mut slots: Vec<i64> = nodes.iter().map(|n| n.slot).collect();
    slots.sort_unstable();
    slots.dedup();
    let header: Vec<String> = std::iter::once("SLOT".to_string())
        .chain(racks.iter().map(|(hall, rack)| format!("{hall}/{rack}")))
        .collect();
    let rows: Vec<Vec<String>> = slots
        .iter()
        .rev()
        .map(|slot| {
            std::iter::once(format!("U{slot:02}"))
                .chain(racks.iter().map(|(hall, rack)| {
                    nodes
                        .iter()
                        .find(|n| &n.hall == hall && &n.rack == rack && n.slot == *slot)
                        .map_or_else(|| "-".to_string(), |n| format!("{} {}", n.serial, n.state))
                }))
                .collect()
        })
        .collect();
    let header: Vec<&str> = header.iter().map(String::as_str).collect();
    table::render(&header, &rows)
}
