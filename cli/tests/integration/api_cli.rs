//! The technician CLI over the API (`--server`, `KILN_TOKEN`) against a real `kiln serve`, compared with the same
//! commands on the local database; hall lease/report/release; node power through a simulated BMC; the signed
//! report downloaded and verified offline with `kiln health verify`.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use kiln_bmc_sim::{SimFleet, SimFleetConfig, Timing};
use kiln_inventory::{ManifestFormat, NodeState, SecretKey, Store, StoreOptions, parse_manifest};

const PASSWORD: &str = "bmc-pass-Word9";

/// A seeded database, a running `kiln serve` over it, and an admin token.
pub(crate) struct Site {
    pub(crate) dir: tempfile::TempDir,
    pub(crate) db: String,
    pub(crate) server: String,
    pub(crate) admin: String,
    child: Option<Child>,
    _fleet: SimFleet,
}

impl Drop for Site {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Site {
    fn key_file(&self) -> PathBuf {
        self.dir.path().join("kiln.key")
    }

    /// `kiln ARGS` with the site's database and key file and no inherited KILN_* settings.
    pub(crate) fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_kiln"));
        for var in [
            "KILN_SERVER",
            "KILN_TOKEN",
            "KILN_DB",
            "KILN_SIGNING_KEY",
            "KILN_SECRET_KEY",
            "KILN_TLS_CA",
            "KILN_CONFIG",
        ] {
            command.env_remove(var);
        }
        command
            .arg("--db")
            .arg(&self.db)
            .arg("--key-file")
            .arg(self.key_file())
            .args(args);
        command
    }

    /// Runs `kiln ARGS` on the local database.
    pub(crate) async fn local(&self, args: &[&str]) -> Output {
        run(self.command(args)).await
    }

    /// Runs `kiln ARGS` against the server with `token` in KILN_TOKEN.
    pub(crate) async fn remote(&self, token: Option<&str>, args: &[&str]) -> Output {
        let mut command = self.command(args);
        command.env("KILN_SERVER", &self.server);
        if let Some(token) = token {
            command.env("KILN_TOKEN", token);
        }
        run(command).await
    }
}

pub(crate) async fn run(mut command: Command) -> Output {
    tokio::task::spawn_blocking(move || command.output())
        .await
        .expect("join")
        .expect("kiln runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

pub(crate) fn ok(out: &Output) -> String {
    assert_eq!(
        out.status.code(),
        Some(0),
        "stdout: {}\nstderr: {}",
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stdout)
}

pub(crate) fn failed(out: &Output) -> String {
    assert_eq!(
        out.status.code(),
        Some(1),
        "stdout: {}\nstderr: {}",
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stderr)
}

/// Hall H1 with four available nodes (N-0's BMC simulated, over plain HTTP), started behind `kiln serve`.
pub(crate) async fn site() -> Site {
    let dir = tempfile::tempdir().expect("dir");
    let db = format!("sqlite://{}", dir.path().join("kiln.db").display());
    let fleet = SimFleet::start(SimFleetConfig {
        count: 1,
        tls: false,
        password: PASSWORD.into(),
        ipmi_count: Some(0),
        timing: Timing {
            power_on: std::time::Duration::ZERO,
            ..Timing::default()
        },
        ..SimFleetConfig::default()
    })
    .await
    .expect("fleet");
    let (key, _) = SecretKey::load_or_create(&dir.path().join("kiln.key")).expect("key");
    let store = Store::open(StoreOptions::new(db.clone()).key(Some(key)))
        .await
        .expect("store");
    let mut csv = String::from(
        "hall,rack,slot,serial,sku,bmc_address,bmc_protocol,bmc_user,bmc_password,boot_mac\n",
    );
    for i in 0..4 {
        let bmc = if i == 0 {
            fleet.endpoints()[0].redfish_url.clone()
        } else {
            format!("10.9.0.{i}")
        };
        csv.push_str(&format!(
            "H1,R{},{i},N-{i},h100-sxm-80gb,{bmc},redfish,admin,{PASSWORD},02:00:00:00:09:{i:02x}\n",
            i % 2
        ));
    }
    let rows = parse_manifest(&csv, ManifestFormat::Csv, &|_| None).expect("manifest");
    store
        .import_manifest(&rows, "site", "seed")
        .await
        .expect("import");
    for i in 0..4 {
        let node = store.node_by_serial(&format!("N-{i}")).await.expect("node");
        use NodeState::*;
        let path = [
            Enrolled,
            Discovering,
            Inspecting,
            Imaging,
            Booting,
            BurnIn,
            FabricTest,
            Available,
        ];
        for step in path.windows(2) {
            store
                .transition(node.id, step[0], step[1], "seed", "walk")
                .await
                .expect("walk");
        }
    }
    store.close().await;
    let mut site = Site {
        dir,
        db,
        server: String::new(),
        admin: String::new(),
        child: None,
        _fleet: fleet,
    };
    let token = site.local(&["token", "create", "--role", "admin"]).await;
    site.admin = ok(&token).trim().to_string();
    let mut child = site
        .command(&["serve", "--listen", "127.0.0.1:0", "--no-engine"])
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("kiln serve");
    let stderr = child.stderr.take().expect("stderr");
    site.child = Some(child);
    let server = tokio::task::spawn_blocking(move || {
        let mut lines = BufReader::new(stderr).lines();
        let url = lines.by_ref().find_map(|line| {
            let line = line.ok()?;
            let start = line.find("http://")?;
            let rest = &line[start..];
            Some(rest[..rest.find("/api/v1/")?].to_string())
        });
        // Keep draining so the server never blocks on a full pipe.
        std::thread::spawn(move || lines.for_each(drop));
        url
    })
    .await
    .expect("join")
    .expect("kiln serve printed its address");
    site.server = server;
    site
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_print_the_same_over_the_api_as_on_the_local_database() {
    let site = site().await;
    let admin = Some(site.admin.as_str());
    for args in [
        vec!["node", "list"],
        vec!["node", "list", "--rack", "R1", "--json"],
        vec!["node", "show", "N-2"],
        vec!["hall", "list"],
        vec!["hall", "list", "--json"],
        vec!["rack", "list"],
        vec!["rack", "show", "R0"],
        vec!["image", "list"],
    ] {
        let local = ok(&site.local(&args).await);
        let remote = ok(&site.remote(admin, &args).await);
        assert_eq!(local, remote, "kiln {args:?} differs over the API");
    }
    // A manifest imported over the API (inline passwords) shows up in both views.
    let manifest = site.dir.path().join("h2.csv");
    std::fs::write(
        &manifest,
        format!(
            "hall,rack,slot,serial,sku,bmc_address,bmc_protocol,bmc_user,bmc_password,boot_mac\n\
             H2,S0,0,M-0,h100-sxm-80gb,10.9.1.0,ipmi,admin,{PASSWORD},02:00:00:00:0a:00\n"
        ),
    )
    .expect("manifest");
    let imported = ok(&site
        .remote(admin, &["rack", "import", manifest.to_str().expect("utf8")])
        .await);
    assert!(imported.contains("1 node(s) enrolled"), "{imported}");
    let halls = ok(&site.local(&["hall", "list"]).await);
    assert!(
        halls.contains("H2") && halls.contains("enrolled=1"),
        "{halls}"
    );
    let listed = ok(&site.remote(admin, &["node", "list", "--limit", "3"]).await);
    assert!(
        listed.contains("N-2") && !listed.contains("N-3"),
        "{listed}"
    );
    assert!(listed.ends_with("3 node(s)\n"), "{listed}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_errors_are_clear() {
    let site = site().await;
    let no_token = failed(&site.remote(None, &["node", "list"]).await);
    assert!(
        no_token.contains("401") && no_token.contains("KILN_TOKEN"),
        "{no_token}"
    );
    let bad_token = failed(&site.remote(Some("kiln_nope"), &["hall", "list"]).await);
    assert!(bad_token.contains("invalid or revoked"), "{bad_token}");
    let missing = failed(
        &site
            .remote(Some(&site.admin), &["node", "show", "NOPE"])
            .await,
    );
    assert!(
        missing.contains("404") && missing.contains("no node with serial \"NOPE\""),
        "{missing}"
    );
    let tech = ok(&site
        .local(&["token", "create", "--role", "technician"])
        .await);
    let forbidden = failed(
        &site
            .remote(
                Some(tech.trim()),
                &["hall", "lease", "H1", "--lessee", "acme"],
            )
            .await,
    );
    assert!(
        forbidden.contains("403") && forbidden.contains("may not"),
        "{forbidden}"
    );
    // `kiln token list` shows both tokens as used (each authenticated a remote command above), never a token.
    let listed = ok(&site.local(&["token", "list", "--json"]).await);
    let tokens: serde_json::Value = serde_json::from_str(&listed).expect("token list JSON");
    let tokens = tokens.as_array().expect("an array");
    assert_eq!(tokens.len(), 2, "{listed}");
    assert_eq!(tokens[0]["role"], "admin", "{listed}");
    assert!(tokens[0]["last_used_at"].is_string(), "{listed}");
    assert!(tokens[1]["last_used_at"].is_string(), "{listed}");
    assert!(tokens[1]["expires_at"].is_null(), "{listed}");
    assert_eq!(tokens[1]["status"], "live", "{listed}");
    assert!(
        !listed.contains(&site.admin) && !listed.contains(tech.trim()),
        "{listed}"
    );
    let table = ok(&site.local(&["token", "list"]).await);
    assert!(
        table.contains("LAST USED") && table.contains("technician"),
        "{table}"
    );
    assert!(!table.contains(&site.admin), "{table}");
    let mut command = site.command(&["node", "list"]);
    command.args(["--server", "http://127.0.0.1:1", "--token", "x"]);
    let unreachable = failed(&run(command).await);
    assert!(
        unreachable.contains("cannot reach the kiln server at http://127.0.0.1:1"),
        "{unreachable}"
    );
    let local_only = failed(
        &site
            .remote(Some(&site.admin), &["image", "rm", "a", "1"])
            .await,
    );
    assert!(local_only.contains("local database only"), "{local_only}");
}

/// The site key `kiln serve` created beside the database key, as hex.
fn site_public_key(dir: &Path) -> String {
    let key = kiln_health::evidence::load_signing_key(&dir.join("kiln-signing.key"))
        .expect("kiln serve created the signing key");
    hex::encode(key.verifying_key().as_bytes())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lease_report_verify_release_and_power() {
    let site = site().await;
    let admin = Some(site.admin.as_str());
    let leased = ok(&site
        .remote(
            admin,
            &["hall", "lease", "H1", "--lessee", "acme", "--end", "720h"],
        )
        .await);
    assert!(
        leased.contains("lease 1: hall H1 leased to acme: 4 of 4 node(s), 0 owed"),
        "{leased}"
    );
    let again = failed(
        &site
            .remote(admin, &["hall", "lease", "H1", "--lessee", "acme"])
            .await,
    );
    assert!(
        again.contains("409") && again.contains("already has an active lease"),
        "{again}"
    );

    // Download the report over the API and verify it offline with the site's public key.
    let report = site.dir.path().join("report.json");
    let report_s = report.to_str().expect("utf8");
    let out = site
        .remote(admin, &["hall", "report", "1", "--out", report_s])
        .await;
    ok(&out);
    let public = site_public_key(site.dir.path());
    assert!(text(&out.stderr).contains(&public), "{}", text(&out.stderr));
    let verified = ok(&site
        .local(&["health", "verify", report_s, "--public-key", &public])
        .await);
    assert!(
        verified.contains("report valid: lease 1 of hall H1: 4 signed node record(s)"),
        "{verified}"
    );
    // Tampered reports and strangers' keys fail with exit 1.
    let mut doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report).expect("read")).expect("json");
    doc["nodes"][2]["signed_record"]["record"]["node"] = serde_json::json!("N-9");
    let tampered = site.dir.path().join("tampered.json");
    std::fs::write(&tampered, doc.to_string()).expect("write");
    let tampered_s = tampered.to_str().expect("utf8");
    let refused = failed(
        &site
            .local(&["health", "verify", tampered_s, "--public-key", &public])
            .await,
    );
    assert!(refused.contains("N-2"), "{refused}");
    let stranger = hex::encode(
        kiln_health::evidence::generate_signing_key()
            .verifying_key()
            .as_bytes(),
    );
    failed(
        &site
            .local(&["health", "verify", report_s, "--public-key", &stranger])
            .await,
    );
    // The same report built on the local database verifies with the same key.
    let local_report = site.dir.path().join("local.json");
    let local_s = local_report.to_str().expect("utf8");
    ok(&site.local(&["hall", "report", "1", "--out", local_s]).await);
    ok(&site
        .local(&["health", "verify", local_s, "--public-key", &public])
        .await);

    // Power through the simulated BMC, over the API.
    let power = ok(&site.remote(admin, &["node", "power", "N-0", "off"]).await);
    assert_eq!(power, "N-0: power off done; BMC reports Off\n");

    // Release: nodes go to wiping; with no lifecycle engine running, --wait gives up clearly.
    let waited = site
        .remote(
            admin,
            &[
                "hall",
                "release",
                "1",
                "--wait",
                "--timeout",
                "2s",
                "--poll",
                "1s",
            ],
        )
        .await;
    let message = failed(&waited);
    assert!(
        message
            .contains("gave up after 2s: 0 of 4 node(s) of lease 1 are available again (wiping=4)")
            && message.contains("lifecycle engine"),
        "{message}"
    );
    // Waiting again only follows (the lease is released already); walked back by hand, the wait ends.
    let store = Store::open(StoreOptions::new(site.db.clone()))
        .await
        .expect("store");
    for i in 0..4 {
        let node = store.node_by_serial(&format!("N-{i}")).await.expect("node");
        if i < 3 {
            let now = store.now();
            let record = kiln_inventory::EraseRecord {
                device: "/dev/vda".into(),
                model: String::new(),
                serial: String::new(),
                bytes: 1 << 20,
                method: Some(kiln_inventory::EraseMethod::Overwrite),
                nist: Some(kiln_inventory::NistClass::Clear),
                tried: Vec::new(),
                started_at: now,
                finished_at: now,
                verified: true,
                result: kiln_inventory::EraseResult::Ok,
                error: None,
                verification: None,
            };
            store
                .record_erase(node.id, Some(1), None, &[record])
                .await
                .expect("erase");
        }
        let path: &[NodeState] = if i == 3 {
            &[NodeState::Wiping, NodeState::Quarantined]
        } else {
            &[
                NodeState::Wiping,
                NodeState::Imaging,
                NodeState::Booting,
                NodeState::BurnIn,
                NodeState::FabricTest,
                NodeState::Available,
            ]
        };
        for step in path.windows(2) {
            store
                .transition(node.id, step[0], step[1], "test", "by hand")
                .await
                .expect("walk");
        }
    }
    store.close().await;
    let followed = site
        .remote(admin, &["hall", "release", "1", "--wait", "--poll", "1s"])
        .await;
    let summary = ok(&followed);
    assert!(
        summary.starts_with("lease 1: 3 of 4 node(s) available again, 1 quarantined\nturnover:\n"),
        "{summary}"
    );
    let row = |serial: &str| {
        summary
            .lines()
            .find(|l| l.starts_with(serial))
            .unwrap_or_default()
            .to_string()
    };
    assert!(
        row("N-0").contains("vda: overwrite (clear), verified")
            && row("N-0").contains("re-verified, available"),
        "{summary}"
    );
    assert!(
        row("N-3").contains("not erased") && row("N-3").contains("quarantined: by hand"),
        "{summary}"
    );
    assert!(text(&followed.stderr).contains("already released"));
    let json = ok(&site
        .remote(
            admin,
            &["hall", "release", "1", "--wait", "--poll", "1s", "--json"],
        )
        .await);
    let json: serde_json::Value = serde_json::from_str(&json).expect("json");
    assert_eq!(json["available"], 3, "existing fields stay: {json}");
    let turnover = json["turnover"].as_array().expect("turnover");
    assert_eq!(turnover.len(), 4);
    assert_eq!(turnover[0]["serial"], "N-0");
    assert_eq!(turnover[0]["erased"][0], "vda: overwrite (clear), verified");
    assert_eq!(turnover[0]["reverified"], true);
    assert_eq!(turnover[3]["quarantined"], "by hand");
    // `kiln node show` lists the erase, the same over the API as on the database.
    let shown = ok(&site.remote(admin, &["node", "show", "N-0"]).await);
    assert_eq!(shown, ok(&site.local(&["node", "show", "N-0"]).await));
    assert!(
        shown.contains("erased:     turnover 1 after lease 1"),
        "{shown}"
    );
    let vda = shown
        .lines()
        .find(|l| l.starts_with("/dev/vda"))
        .unwrap_or_default();
    assert!(
        vda.contains("overwrite") && vda.contains("clear") && vda.contains("ok, verified"),
        "{shown}"
    );
    let shown: serde_json::Value = serde_json::from_str(&ok(&site
        .remote(admin, &["node", "show", "N-0", "--json"])
        .await))
    .expect("json");
    assert_eq!(shown["erase_records"][0]["record"]["method"], "overwrite");
    let never = ok(&site.local(&["node", "show", "N-3"]).await);
    assert!(never.contains("erased:     never"), "{never}");
    let nodes = ok(&site
        .remote(admin, &["node", "list", "--state", "available"])
        .await);
    assert!(nodes.ends_with("3 node(s)\n"), "{nodes}");
}

#[test]
fn completions_for_each_shell() {
    let completions = |shell: &str| {
        Command::new(env!("CARGO_BIN_EXE_kiln"))
            .args(["completions", shell])
            .output()
            .expect("kiln runs")
    };
    for (shell, marker) in [
        ("bash", "_kiln()"),
        ("zsh", "#compdef kiln"),
        ("fish", "complete -c kiln"),
    ] {
        let script = ok(&completions(shell));
        assert!(
            script.contains(marker),
            "{shell}: {}",
            &script[..script.len().min(200)]
        );
        assert!(script.contains("release"), "{shell} completes hall release");
    }
    assert_eq!(completions("tcsh").status.code(), Some(2));
}
