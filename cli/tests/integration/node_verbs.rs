//! `kiln node drain|undrain|events|reimage|retest` on the local database and over the API: a drained node is
//! never leased nor counted as available, each change is an event with actor and reason, `events --follow`
//! prints new events once, reimage and retest move a node back into the pipeline or say why they cannot.

use std::io::Read;
use std::process::Stdio;
use std::time::Duration;

use super::api_cli::{failed, ok, run, site};

/// The events `kiln node events SERIAL --json` printed, one object per line.
fn event_lines(out: &str) -> Vec<serde_json::Value> {
    out.lines()
        .map(|line| serde_json::from_str(line).expect("one JSON object per line"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drained_nodes_are_not_leased_nor_counted_and_the_change_is_an_event() {
    let site = site().await;
    let admin = Some(site.admin.as_str());
    let drained = ok(&site
        .local(&["node", "drain", "N-1", "--reason", "fan noise", "--json"])
        .await);
    let drained: serde_json::Value = serde_json::from_str(&drained).expect("json");
    assert_eq!(drained["serial"], "N-1");
    assert_eq!(drained["drained"], true);
    assert_eq!(drained["reason"], "fan noise");

    // Not counted as available: hall list (local and API), rack status.
    for halls in [
        ok(&site.local(&["hall", "list"]).await),
        ok(&site.remote(admin, &["hall", "list"]).await),
    ] {
        assert!(
            halls.contains("available=3 drained=1"),
            "hall list counts a drained node as available: {halls}"
        );
    }
    let racks = ok(&site.local(&["rack", "list"]).await);
    assert!(racks.contains("available=1 drained=1"), "{racks}");

    // The event carries actor and reason.
    let events = event_lines(&ok(&site.local(&["node", "events", "N-1", "--json"]).await));
    let last = events.last().expect("an event");
    assert_eq!(last["reason"], "drained: fan noise");
    assert!(
        last["actor"].as_str().expect("actor").starts_with("cli"),
        "{last}"
    );

    // Never leased: the hall's lease takes the three others.
    let leased = ok(&site
        .remote(
            admin,
            &[
                "hall",
                "lease",
                "H1",
                "--lessee",
                "acme",
                "--min-fraction",
                "0.75",
                "--json",
            ],
        )
        .await);
    let leased: serde_json::Value = serde_json::from_str(&leased).expect("json");
    assert_eq!(leased["nodes_leased"], 3, "{leased}");
    let node = ok(&site.local(&["node", "show", "N-1", "--json"]).await);
    let node: serde_json::Value = serde_json::from_str(&node).expect("json");
    assert_eq!(node["node"]["state"], "available");
    assert!(node["node"]["lease_id"].is_null(), "{node}");

    // Undrained over the API with a technician token: the actor is the token's, the reason kept.
    let tech = ok(&site
        .local(&["token", "create", "--role", "technician"])
        .await);
    let undrained = ok(&site
        .remote(
            Some(tech.trim()),
            &["node", "undrain", "N-1", "--reason", "fan replaced"],
        )
        .await);
    assert_eq!(
        undrained,
        "N-1: undrained (back in allocation); state available\n"
    );
    let events = event_lines(&ok(&site
        .remote(Some(tech.trim()), &["node", "events", "N-1", "--json"])
        .await));
    let last = events.last().expect("an event");
    assert_eq!(last["reason"], "undrained: fan replaced");
    assert!(
        !last["actor"].as_str().expect("actor").starts_with("cli"),
        "{last}"
    );
    let halls = ok(&site.local(&["hall", "list"]).await);
    assert!(!halls.contains("drained="), "{halls}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_and_events_errors_are_clear() {
    let site = site().await;
    let admin = Some(site.admin.as_str());
    let missing = failed(
        &site
            .local(&["node", "drain", "NOPE", "--reason", "x"])
            .await,
    );
    assert!(missing.contains("NOPE"), "{missing}");
    let missing = failed(
        &site
            .remote(admin, &["node", "undrain", "NOPE", "--reason", "x"])
            .await,
    );
    assert!(
        missing.contains("404") && missing.contains("NOPE"),
        "{missing}"
    );
    let missing = failed(&site.local(&["node", "events", "NOPE"]).await);
    assert!(missing.contains("NOPE"), "{missing}");
    let empty = failed(&site.local(&["node", "drain", "N-0", "--reason", " "]).await);
    assert!(empty.contains("--reason must not be empty"), "{empty}");
    // --reason is required.
    let usage = site.local(&["node", "drain", "N-0"]).await;
    assert_eq!(usage.status.code(), Some(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_follow_prints_each_new_event_once() {
    let site = site().await;
    let before = event_lines(&ok(&site.local(&["node", "events", "N-2", "--json"]).await));
    let mut follow = site.command(&["node", "events", "N-2", "--follow", "--json"]);
    follow.stdout(Stdio::piped()).stderr(Stdio::null());
    let mut child = follow.spawn().expect("kiln node events --follow");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    ok(&site
        .local(&["node", "drain", "N-2", "--reason", "one"])
        .await);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    ok(&site
        .local(&["node", "undrain", "N-2", "--reason", "two"])
        .await);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    // SIGINT, as Ctrl-C: the command ends cleanly.
    let pid = child.id().to_string();
    let mut kill = std::process::Command::new("kill");
    kill.args(["-INT", &pid]);
    let status = run(kill).await;
    assert!(status.status.success());
    let exit = tokio::task::spawn_blocking(move || {
        let mut out = String::new();
        child
            .stdout
            .take()
            .expect("stdout")
            .read_to_string(&mut out)
            .expect("read");
        (child.wait().expect("wait"), out)
    })
    .await
    .expect("join");
    assert!(exit.0.success(), "{:?}", exit.0);
    let events = event_lines(&exit.1);
    let ids: Vec<i64> = events
        .iter()
        .map(|e| e["id"].as_i64().expect("id"))
        .collect();
    let mut unique = ids.clone();
    unique.dedup();
    assert_eq!(ids, unique, "an event printed twice: {ids:?}");
    assert_eq!(events.len(), before.len() + 2, "{events:?}");
    let reasons: Vec<&str> = events[before.len()..]
        .iter()
        .map(|e| e["reason"].as_str().expect("reason"))
        .collect();
    assert_eq!(reasons, ["drained: one", "undrained: two"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reimage_and_retest_send_a_node_back_with_actor_and_reason() {
    let site = site().await;
    let admin = Some(site.admin.as_str());
    let reimaged: serde_json::Value = serde_json::from_str(&ok(&site
        .local(&["node", "reimage", "N-0", "--reason", "bad flash", "--json"])
        .await))
    .expect("json");
    assert_eq!(reimaged["state"], "imaging", "{reimaged}");
    assert_eq!(reimaged["verb"], "reimage");
    let events = event_lines(&ok(&site.local(&["node", "events", "N-0", "--json"]).await));
    let last = events.last().expect("an event");
    assert_eq!(
        last["reason"],
        "reimage requested by a technician (bad flash)"
    );
    assert_eq!(last["to_state"], "imaging");
    // Busy now: a second verb says why not.
    let busy = failed(
        &site
            .local(&["node", "retest", "N-0", "--reason", "x"])
            .await,
    );
    assert!(busy.contains("being worked on by the engine"), "{busy}");

    // Over the API with a technician token: --nccl alone is the fabric test only.
    let tech = ok(&site
        .local(&["token", "create", "--role", "technician"])
        .await);
    let retested = ok(&site
        .remote(
            Some(tech.trim()),
            &["node", "retest", "N-1", "--nccl", "--reason", "link flap"],
        )
        .await);
    assert!(
        retested.starts_with("N-1: retest requested; now fabric_test"),
        "{retested}"
    );
    let events = event_lines(&ok(&site.local(&["node", "events", "N-1", "--json"]).await));
    let last = events.last().expect("an event");
    assert_eq!(
        last["reason"],
        "retest (the fabric test) requested by a technician (link flap)"
    );
    assert!(
        !last["actor"].as_str().expect("actor").starts_with("cli"),
        "{last}"
    );
    let retested = ok(&site
        .remote(admin, &["node", "retest", "N-2", "--reason", "r", "--json"])
        .await);
    let retested: serde_json::Value = serde_json::from_str(&retested).expect("json");
    assert_eq!(retested["state"], "burn_in", "{retested}");

    // Errors: an image not in the catalog, a malformed one, a leased node, no reason.
    let unknown = failed(
        &site
            .remote(
                admin,
                &["node", "reimage", "N-3", "--image", "os:9", "--reason", "r"],
            )
            .await,
    );
    assert!(unknown.contains("os:9 is not in the catalog"), "{unknown}");
    let malformed = site
        .local(&["node", "reimage", "N-3", "--image", "os", "--reason", "r"])
        .await;
    assert_eq!(malformed.status.code(), Some(2));
    ok(&site
        .remote(
            admin,
            &[
                "hall",
                "lease",
                "H1",
                "--lessee",
                "acme",
                "--min-fraction",
                "0.25",
            ],
        )
        .await);
    let node: serde_json::Value =
        serde_json::from_str(&ok(&site.local(&["node", "show", "N-3", "--json"]).await))
            .expect("json");
    assert_eq!(node["node"]["state"], "leased", "{node}");
    let refused = failed(
        &site
            .local(&["node", "reimage", "N-3", "--reason", "r"])
            .await,
    );
    assert!(
        refused.contains("it is leased: release its hall"),
        "{refused}"
    );
    let empty = failed(
        &site
            .local(&["node", "retest", "N-3", "--reason", " "])
            .await,
    );
    assert!(empty.contains("--reason must not be empty"), "{empty}");
}
