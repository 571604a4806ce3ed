//! A site for tests that run the `kiln` binary against a kiln-sim hall in the test process: a working directory
//! with the hall's manifest (`hall.csv`), the provisioner's SSH key (trusted by the hall's SSH servers), an image
//! `sim-os:1` in the catalog, and the port the child kiln must listen on (the hall's nodes boot from it).

use std::path::Path;
use std::process::Command;

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
        let dir = tempfile::tempdir().expect("temp dir");
        let port = stable_free_port();
        let (key, _) = load_or_create_key(&dir.path().join("kiln-ssh.key")).expect("ssh key");
        let mut config = SimConfig::new(nodes);
        config.time_scale = 0.01;
        config.seed = 11;
        config.faults = faults;
        config.ssh = SshMode::Servers {
            client_key: key.public_key().clone(),
        };
        std::fs::create_dir_all(dir.path().join("disks")).expect("disks");
        config.disk = DiskMode::SparseFiles(dir.path().join("disks"));
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
