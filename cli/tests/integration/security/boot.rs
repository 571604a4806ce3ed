//! Boot tokens attacked from the segment: `kiln boot serve` runs as a child process; the test process is both
//! the real node (from 127.0.0.1, the address "leased" to its MAC) and the attacker (from 127.0.0.2, another
//! loopback source address). The attacker fetches scripts, presents a sniffed token from its own address and
//! replays a captured report; every attempt must fail, and the spoofs must be in the node's history.

use std::net::IpAddr;
use std::process::{Child, Stdio};
use std::time::Duration;

use kiln_inventory::{NewLease, Store, StoreOptions};

use crate::sim_site::{kiln, run_ok};

const MANIFEST: &str = "hall,rack,slot,serial,sku,bmc_address,bmc_protocol,bmc_user,bmc_password,boot_mac\n\
H1,R1,1,SN1,h100-sxm-80gb,127.0.0.1:1,redfish,admin,pw,52:54:00:5e:00:01\n\
H1,R1,2,SN2,h100-sxm-80gb,127.0.0.1:2,redfish,admin,pw,52:54:00:5e:00:02\n";

struct Served {
    child: Child,
    base: String,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn client(from: &str) -> reqwest::Client {
    // kiln's own client installs the process's TLS provider first.
    drop(kiln_images::http_client());
    reqwest::Client::builder()
        .local_address(from.parse::<IpAddr>().expect("ip"))
        .timeout(Duration::from_secs(20))
        .build()
        .expect("client")
}

async fn serve(dir: &std::path::Path) -> Served {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    std::fs::create_dir_all(dir.join("assets")).expect("assets");
    std::fs::write(dir.join("assets/vmlinuz"), b"kernel").expect("kernel");
    std::fs::write(dir.join("assets/initramfs.img"), b"initrd").expect("initrd");
    let base = format!("http://127.0.0.1:{port}");
    let mut command = kiln(dir);
    command
        .args([
            "boot",
            "serve",
            "--http-listen",
            &format!("127.0.0.1:{port}"),
        ])
        .args(["--boot-url", &base, "--boot-assets", "assets"])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let child = command.spawn().expect("kiln boot serve starts");
    let served = Served { child, base };
    for _ in 0..200 {
        if client("127.0.0.1")
            .get(format!("{}/boot/assets/vmlinuz", served.base))
            .send()
            .await
            .is_ok()
        {
            return served;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("kiln boot serve did not come up");
}

fn token_of(script: &str) -> Option<String> {
    script
        .split_whitespace()
        .find_map(|w| w.strip_prefix("kiln.token="))
        .filter(|t| !t.is_empty())
        .map(str::to_string)
}

async fn fetch(from: &str, base: &str, mac: &str) -> String {
    client(from)
        .get(format!("{base}/boot/{mac}.ipxe"))
        .send()
        .await
        .expect("script")
        .text()
        .await
        .expect("text")
}

async fn post_report(from: &str, base: &str, token: &str, body: &serde_json::Value) -> u16 {
    client(from)
        .post(format!("{base}/agent/v1/report"))
        .bearer_auth(token)
        .json(body)
        .send()
        .await
        .expect("report")
        .status()
        .as_u16()
}

#[tokio::test]
async fn spoofed_fetches_stolen_tokens_and_replays_fail() {
    let dir = tempfile::tempdir().expect("dir");
    std::fs::write(dir.path().join("m.csv"), MANIFEST).expect("manifest");
    let mut import = kiln(dir.path());
    import.args(["rack", "import", "m.csv"]);
    run_ok(import);
    let store = Store::open(StoreOptions::new(format!(
        "sqlite://{}",
        dir.path().join("kiln.db").display()
    )))
    .await
    .expect("store");
    // SN1's MAC holds a DHCP reservation at 127.0.0.1 (what kiln's DHCP server records for a real node).
    let sn1 = store.node_by_serial("SN1").await.expect("SN1");
    store
        .bind_dhcp_lease(&NewLease {
            ip: "127.0.0.1".parse().expect("ip"),
            mac: sn1.boot_mac,
            node_id: Some(sn1.id),
            hostname: None,
            pinned: true,
            expires_at: store.now() + chrono::Duration::hours(1),
        })
        .await
        .expect("lease");
    let served = serve(dir.path()).await;
    let base = served.base.clone();
    let (mac1, mac2) = ("52:54:00:5e:00:01", "52:54:00:5e:00:02");

    // 1. No boot asked for: nobody gets a token.
    assert_eq!(token_of(&fetch("127.0.0.2", &base, mac2).await), None);
    assert_eq!(token_of(&fetch("127.0.0.1", &base, mac2).await), None);

    // 2. A boot of SN1 asked for: the attacker's fetch (not from the leased address) gets nothing, and does not
    //    use the grant up; the real node's fetch gets the token; a second fetch gets nothing.
    for serial in ["SN1", "SN2"] {
        let mut grant = kiln(dir.path());
        grant.args(["boot", "grant", serial, "--window", "10m"]);
        run_ok(grant);
    }
    assert_eq!(token_of(&fetch("127.0.0.2", &base, mac1).await), None);
    let token = token_of(&fetch("127.0.0.1", &base, mac1).await).expect("the real node's token");
    assert_eq!(token_of(&fetch("127.0.0.1", &base, mac1).await), None);
    // SN2 has no lease: the first fetch binds the token to its address; a later fetch from elsewhere is a spoof.
    let token2 = token_of(&fetch("127.0.0.1", &base, mac2).await).expect("SN2's token");
    assert_eq!(token_of(&fetch("127.0.0.2", &base, mac2).await), None);

    // 3. The token, sniffed off the wire, is useless from the attacker's address on both report endpoints.
    let report = |nonce: &str| {
        serde_json::json!({
            "boot_mac": mac1, "seq": 1, "nonce": nonce, "agent_version": "attacker",
            "step": "booted", "environment": "installed", "kernel": "6.1",
            "ssh_host_key": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIEvil", "ssh_address": "127.0.0.2:22"
        })
    };
    assert_eq!(
        post_report("127.0.0.2", &base, &token, &report("a-1")).await,
        401
    );
    let boot_report = client("127.0.0.2")
        .post(format!("{base}/boot/report/{mac1}"))
        .bearer_auth(&token)
        .body("booted")
        .send()
        .await
        .expect("boot report")
        .status()
        .as_u16();
    assert_eq!(boot_report, 401);
    assert_eq!(
        post_report("127.0.0.2", &base, &token2, &report("a-2")).await,
        401
    );

    // 4. A report without a nonce is refused; the real node's report is accepted once, its replay refused.
    let mut no_nonce = report("x");
    no_nonce.as_object_mut().expect("object").remove("nonce");
    assert_eq!(
        post_report("127.0.0.1", &base, &token, &no_nonce).await,
        400
    );
    let mut written = report("run-7");
    written["step"] = "image_written".into();
    written["sha256"] = "00".repeat(32).into();
    written["disk_bytes"] = 1024.into();
    written["elapsed_ms"] = 5.into();
    written["downloaded_bytes"] = 1024.into();
    let first = post_report("127.0.0.1", &base, &token, &written).await;
    assert_eq!(first, 200, "the real node's report");
    assert_eq!(
        post_report("127.0.0.1", &base, &token, &written).await,
        409,
        "a replayed report"
    );
    let reports = store.agent_reports_after(sn1.id, 0).await.expect("reports");
    assert_eq!(reports.len(), 1, "the replay stored nothing: {reports:?}");

    // 5. The operator sees each spoof in the node's history.
    let history = |id| {
        let store = store.clone();
        async move {
            store
                .node_events(id)
                .await
                .expect("events")
                .into_iter()
                .map(|e| e.reason)
                .collect::<Vec<_>>()
                .join("\n")
        }
    };
    let events = history(sn1.id).await;
    assert!(
        events.contains("possible spoof: script fetch from 127.0.0.2, but DHCP leased 127.0.0.1"),
        "{events}"
    );
    assert!(
        events.contains("possible spoof: a second script fetch for one boot, from 127.0.0.1"),
        "{events}"
    );
    let sn2 = store.node_by_serial("SN2").await.expect("SN2");
    let events = history(sn2.id).await;
    assert!(
        events.contains("possible spoof: a second script fetch for one boot, from 127.0.0.2"),
        "{events}"
    );
    assert!(
        events.contains("kiln asked for no network boot"),
        "{events}"
    );
}
