//! `kiln rack bringup MANIFEST --json` against a simulated hall: JSON progress lines while it runs, a final
//! `done` line, every healthy node available and the planted fault quarantined; then `kiln rack status`.

use kiln_sim::FaultFractions;

use crate::sim_site::{SimSite, kiln};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rack_bringup_drives_a_manifest_to_available_with_json_progress() {
    let faults = FaultFractions {
        wrong_gpu_count: 0.07,
        ..FaultFractions::default()
    };
    let site = SimSite::start(16, faults).await;
    let mut bringup = kiln(site.dir.path());
    bringup.args(["--json", "rack", "bringup", "hall.csv", "--site", "sim"]);
    bringup.args(["--listen", &format!("127.0.0.1:{}", site.port)]);
    bringup.args([
        "--time-scale",
        "100",
        "--ssh-key",
        "kiln-ssh.key",
        "--image-dir",
        "images",
        "--timeout-s",
        "150",
    ]);
    let out = tokio::task::spawn_blocking(move || bringup.output())
        .await
        .expect("join")
        .expect("kiln runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert!(lines.len() >= 3, "progress lines then done: {stdout}");
    assert!(
        lines[..lines.len() - 1]
            .iter()
            .all(|l| l["event"] == "progress" && l["total"] == 16)
    );
    let done = lines.last().expect("done");
    assert_eq!(done["event"], "done");
    let planted = site
        .hall
        .planted_faults()
        .into_iter()
        .filter(|f| f.expected_reason.is_some())
        .count() as u64;
    assert!(planted >= 1, "a fault is planted");
    assert_eq!(done["quarantined"].as_u64(), Some(planted), "{done}");
    assert_eq!(done["available"].as_u64(), Some(16 - planted), "{done}");
    let mut status = kiln(site.dir.path());
    status.args(["--json", "rack", "status"]);
    let out = status.output().expect("kiln runs");
    let racks: serde_json::Value = serde_json::from_slice(&out.stdout).expect("status JSON");
    let racks = racks.as_array().expect("racks");
    assert_eq!(racks.len(), 2, "16 nodes in racks of 8");
    let settled: u64 = racks
        .iter()
        .flat_map(|r| r["states"].as_object().cloned().unwrap_or_default())
        .filter(|(state, _)| state == "available" || state == "quarantined")
        .map(|(_, n)| n.as_u64().unwrap_or(0))
        .sum();
    assert_eq!(settled, 16);

    // The engine read every reachable BMC's firmware: the drift report counts them, a node shows its own.
    let mut drift = kiln(site.dir.path());
    drift.args(["--json", "hall", "firmware"]);
    let out = drift.output().expect("kiln runs");
    let drift: serde_json::Value = serde_json::from_slice(&out.stdout).expect("drift JSON");
    let versions = drift["versions"].as_array().expect("versions");
    let bios: Vec<&serde_json::Value> = versions
        .iter()
        .filter(|v| v["component"] == "BIOS")
        .collect();
    assert_eq!(
        bios.len(),
        1,
        "one BIOS version in the simulated hall: {drift}"
    );
    let read = bios[0]["nodes"].as_u64().expect("count");
    assert!((16 - planted..=16).contains(&read), "{drift}");
    let mut list = kiln(site.dir.path());
    list.args(["--json", "node", "list", "--state", "available"]);
    let out = list.output().expect("kiln runs");
    let listed: serde_json::Value = serde_json::from_slice(&out.stdout).expect("node list JSON");
    let nodes = listed
        .as_array()
        .or_else(|| listed["nodes"].as_array())
        .expect("nodes");
    let serial = nodes
        .iter()
        .find_map(|n| n["serial"].as_str())
        .expect("an available node");
    let mut firmware = kiln(site.dir.path());
    firmware.args(["--json", "node", "firmware", serial]);
    let out = firmware.output().expect("kiln runs");
    let firmware: serde_json::Value = serde_json::from_slice(&out.stdout).expect("firmware JSON");
    let ids: Vec<&str> = firmware["components"]
        .as_array()
        .expect("components")
        .iter()
        .filter_map(|c| c["id"].as_str())
        .collect();
    assert_eq!(ids, ["BIOS", "BMC", "GPU.0", "NIC.Slot.1"], "{firmware}");
    site.hall.shutdown();
}
