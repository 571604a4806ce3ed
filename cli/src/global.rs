//! Options every subcommand shares, and the helpers that turn them into a store and a log.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use kiln_inventory::{SecretKey, Store, StoreOptions};

/// JSON on stdout (shared with the benchmarks).
pub use kiln_bench::output::{print_json, print_json_line};

/// Options accepted before or after any subcommand.
#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// Config file (kiln.toml); flags and environment variables override its values. None: built-in defaults.
    #[arg(long, global = true, env = "KILN_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Inventory database: `sqlite://PATH` (created on first use) or `postgres://USER@HOST/DB`.
    #[arg(
        long,
        global = true,
        env = "KILN_DB",
        default_value = "sqlite://kiln.db"
    )]
    pub db: String,
    /// Print machine-readable JSON instead of tables.
    #[arg(long, global = true)]
    pub json: bool,
    /// File holding the site secret key (used when KILN_SECRET_KEY is not set). Created when first needed.
    #[arg(long, global = true, env = "KILN_KEY_FILE")]
    pub key_file: Option<PathBuf>,
    /// A kiln server to talk to (`http://HOST:PORT`) instead of the local database: node, hall, rack and image
    /// reads and the hall and power actions then go over its API.
    #[arg(long, global = true, env = "KILN_SERVER")]
    pub server: Option<String>,
    /// PEM certificates to trust for an `https://` --server: the server's own certificate or the site CA.
    #[arg(long, global = true, env = "KILN_TLS_CA", value_name = "FILE")]
    pub tls_ca: Option<PathBuf>,
    /// API token for --server (`kiln token create` prints one).
    #[arg(long, global = true, env = "KILN_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// File holding the site's ed25519 signing key (hex seed) that signs acceptance records; default
    /// `kiln-signing.key` beside the key file. Created when first needed.
    #[arg(long, global = true, env = "KILN_SIGNING_KEY")]
    pub signing_key: Option<PathBuf>,
    /// More log output on stderr (-v info, -vv debug); RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
}

/// Whether a command needs the site key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyUse {
    /// Use it if there is one (reads never need it).
    IfPresent,
    /// Needed; create a key file when there is no key at all.
    CreateIfMissing,
}

impl GlobalArgs {
    /// The key file path: `--key-file`, else `kiln.key` in the working directory.
    pub fn key_path(&self) -> PathBuf {
        self.key_file
            .clone()
            .unwrap_or_else(|| PathBuf::from("kiln.key"))
    }

    /// The signing key path: `--signing-key`, else `kiln-signing.key` beside the key file.
    pub fn signing_key_path(&self) -> PathBuf {
        self.signing_key
            .clone()
            .unwrap_or_else(|| self.key_path().with_file_name("kiln-signing.key"))
    }

    /// Refuses commands that only work on the local database when `--server` is given.
    pub fn local_only(&self, what: &str) -> anyhow::Result<()> {
        match &self.server {
            Some(server) => anyhow::bail!(
                "{what} works on the local database only; drop --server {server} (or unset KILN_SERVER)"
            ),
            None => Ok(()),
        }
    }

    /// Opens the inventory named by `--db`, applying migrations.
    pub async fn open_store(&self, key_use: KeyUse) -> anyhow::Result<Store> {
        let path = self.key_path();
        let key = match key_use {
            KeyUse::IfPresent => SecretKey::load(&path)?,
            KeyUse::CreateIfMissing => {
                let (key, created) = SecretKey::load_or_create(&path)?;
                if created {
                    eprintln!(
                        "note: created a new site secret key in {} (keep it safe and back it up)",
                        path.display()
                    );
                }
                Some(key)
            }
        };
        Store::open(StoreOptions::new(self.db.clone()).key(key))
            .await
            .context("opening the inventory")
    }
}

/// Logs to stderr; `-v` raises the level, `RUST_LOG` wins when set.
pub fn init_tracing(args: &GlobalArgs) {
    // sqlx's slow-statement warnings are noise on a loaded machine; -vv shows them.
    let default = match args.verbose {
        0 => "warn,sqlx=error",
        1 => "info,sqlx=error",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}
