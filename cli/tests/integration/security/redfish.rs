//! Hostile Redfish links: `kiln bmc inspect`, run as a child process, against a BMC whose links point at another
//! host (`//host`, backslashes, encoded separators, `user@` forms, another port or scheme). kiln must fail with
//! an error naming the link, and not one request (least of all the password posted to a session service) may
//! reach the other listener.

use kiln_bmc_sim::links::{LinkKind, LinkPlace, LinkTrapBmc, PASSWORD};

/// Runs `kiln bmc inspect` against `bmc` (pinned to its certificate) and returns (success, stdout + stderr).
async fn inspect(bmc: &LinkTrapBmc, url: &str) -> (bool, String) {
    let fingerprint = bmc.fingerprint.expect("https BMC").to_string();
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_kiln"));
    command
        .args(["bmc", "inspect", "--redfish", url, "--fingerprint"])
        .arg(&fingerprint)
        .args(["--password-env", "HOSTILE_BMC_PASSWORD", "--timeout-s", "5"])
        .env_remove("KILN_BMC_PASSWORD")
        .env("HOSTILE_BMC_PASSWORD", PASSWORD);
    let out = tokio::task::spawn_blocking(move || command.output())
        .await
        .expect("join")
        .expect("kiln runs");
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_hostile_bmc_fixture_would_catch_a_client_that_followed_a_link() {
    let bmc = LinkTrapBmc::start(None, true).await.expect("fixture");
    let (ok, text) = inspect(&bmc, &bmc.url).await;
    assert!(ok, "an honest BMC is inspected: {text}");
    assert!(bmc.trap_hits().is_empty(), "{:?}", bmc.trap_hits());
    let (ok, text) = inspect(&bmc, &bmc.trap_url).await;
    assert!(ok, "the other host answers like a BMC: {text}");
    assert!(
        bmc.trap_hits().iter().any(|hit| hit.password_in_body),
        "{:?}",
        bmc.trap_hits()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kiln_bmc_inspect_refuses_links_that_leave_the_bmc() {
    let places = [
        LinkPlace::Sessions,
        LinkPlace::Systems,
        LinkPlace::SystemMember,
    ];
    for place in places {
        for kind in LinkKind::ALL {
            let bmc = LinkTrapBmc::start(Some((kind, place)), true)
                .await
                .expect("hostile BMC");
            let link = bmc.link.clone().expect("hostile link");
            let (ok, text) = inspect(&bmc, &bmc.url).await;
            let case = format!("{kind:?} at {place:?}, link {link:?}");
            let hits = bmc.trap_hits();
            assert!(
                hits.is_empty(),
                "{case}: requests reached the other host: {hits:?}"
            );
            assert!(!ok, "{case}: kiln bmc inspect succeeded: {text}");
            assert!(
                text.contains("refused link") && text.contains(&format!("{link:?}")),
                "{case}: the failure names the link: {text}"
            );
        }
    }
}
