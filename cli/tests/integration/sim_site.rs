//! A site for tests that run the `kiln` binary against a kiln-sim hall in the test process: a working directory
//! with the hall's manifest (`hall.csv`), the provisioner's SSH key (trusted by the hall's SSH servers), an image
//! `sim-os:1` in the catalog, and the port the child kiln must listen on (the hall's nodes boot from it).

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use kiln_inventory::{Node, NodeFilter, NodeState, Store, StoreOptions};

use kiln_provisioner::lifecycle::ssh::load_or_create_key;
use kiln_sim::{DiskMode, FaultFractions, SimConfig, SimHall, SshMode};

/// `kiln --db sqlite://kiln.db --key-file kiln.key` in `dir`.
pub fn kiln(dir: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_kiln"));
    command
        .current_dir(dir)
        .env_remove(kiln_inventory::SECRET_KEY_ENV)
        .env_remove("KILN_SERVER")
        .args(["--db", "sqlite://kiln.db", "--key-file", "kiln.key"]);
    command
}

/// Runs `command` and fails the test with its stderr unless it succeeds.
pub fn run_ok(mut command: Command) {
    let out = command.output().expect("kiln runs");
    assert!(
        out.status.success(),
        "{command:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The site.
pub struct SimSite {
    pub dir: tempfile::TempDir,
    pub port: u16,
    pub hall: SimHall,
}

/// A free loopback port below Linux's ephemeral range (32768–60999), for a server that is restarted on the
/// same port: a port from `bind(0)` lies in that range, and while the server is down any outgoing
/// connection of another test may be given it as its local port, which then keeps every restart from
/// binding ("address already in use").
fn stable_free_port() -> u16 {
    use rand::Rng;
    let mut rng = rand::thread_rng();
    for _ in 0..1000 {
        let port = rng.gen_range(20_000..32_000);
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free loopback port in 20000..32000");
}

impl SimSite {
    /// A hall of `nodes` (8 per rack, time compressed 100×, seed 11) with `faults`.
    pub async fn start(nodes: usize, faults: FaultFractions) -> Self {
        Self::start_with(nodes, |config| config.faults = faults).await
    }

    /// [`SimSite::start`]'s hall (no faults) with `configure` applied to its config last.
    pub async fn start_with(nodes: usize, configure: impl FnOnce(&mut SimConfig)) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let port = stable_free_port();
        let (key, _) = load_or_create_key(&dir.path().join("kiln-ssh.key")).expect("ssh key");
        let mut config = SimConfig::new(nodes);
        config.time_scale = 0.01;
        config.seed = 11;
        config.ssh = SshMode::Servers {
            client_key: key.public_key().clone(),
        };
        std::fs::create_dir_all(dir.path().join("disks")).expect("disks");
        config.disk = DiskMode::SparseFiles(dir.path().join("disks"));
        configure(&mut config);
        let hall = SimHall::start(config, &format!("http://127.0.0.1:{port}"))
            .await
            .expect("simulated hall");
        std::fs::write(dir.path().join("hall.csv"), hall.manifest_csv()).expect("manifest");
        std::fs::write(dir.path().join("os.img"), vec![7u8; 256 * 1024]).expect("image");
        let mut image = kiln(dir.path());
        image.args([
            "image",
            "--image-dir",
            "images",
            "add",
            "os.img",
            "--name",
            "sim-os",
            "--version",
            "1",
        ]);
        run_ok(image);
        SimSite { dir, port, hall }
    }
}

/// `kiln serve` in `dir` on `port` as instance `instance` (time compressed 100×, the site's SSH key and image),
/// its log appended to `serve.log`.
pub fn serve(dir: &Path, port: u16, instance: &str) -> Child {
    let mut command = kiln(dir);
    command
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .args(["--time-scale", "100", "--ssh-key", "kiln-ssh.key"])
        .args(["--image", "sim-os:1", "--image-dir", "images"])
        .args(["--instance", instance])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(dir.join("serve.log"))
                .map(Stdio::from)
                .unwrap_or_else(|_| Stdio::null()),
        );
    command.spawn().expect("kiln serve starts")
}

/// The inventory `kiln` keeps in `dir`.
pub async fn open_inventory(dir: &Path) -> Store {
    Store::open(StoreOptions::new(format!(
        "sqlite://{}",
        dir.join("kiln.db").display()
    )))
    .await
    .expect("read the inventory")
}

/// `store`'s nodes once every one is available or quarantined, or as they stand after `limit` (polled every
/// `poll`).
pub async fn settled_nodes(store: &Store, limit: Duration, poll: Duration) -> Vec<Node> {
    let deadline = Instant::now() + limit;
    loop {
        let nodes = store
            .list_nodes(&NodeFilter::default())
            .await
            .expect("nodes");
        let settled = nodes
            .iter()
            .all(|n| matches!(n.state, NodeState::Available | NodeState::Quarantined));
        if settled || Instant::now() > deadline {
            return nodes;
        }
        tokio::time::sleep(poll).await;
    }
}
