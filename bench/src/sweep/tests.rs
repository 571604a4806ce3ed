//! Tests of `kiln bench bmc-sweep`: the peers' keys on a small fleet, and how a peer run is judged.

use std::time::Duration;

use super::{PeerRun, SweepConfig, missing, run, run_tool};

/// A small fleet swept by kiln and every peer: the contract keys are still there, and each new key is a
/// positive number, or its peer says why it was skipped. A failed peer fails the test with its stderr.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sweep_bench_reports_the_parallel_peers() {
    let outcome = run(&SweepConfig {
        count: 12,
        concurrency: 4,
        tls: true,
        peer_timeout: Duration::from_secs(120),
    })
    .await
    .expect("bench runs");
    let line = outcome.json();
    assert_eq!(line["count"], 12);
    assert_eq!(line["failed"], 0, "{:?}", outcome.report.failures_by_kind);
    for key in ["count", "kiln_per_s", "ipmitool_per_s", "ratio", "failed"] {
        assert!(
            line.get(key).is_some(),
            "contract key {key} missing: {line}"
        );
    }
    assert!(
        line["kiln_sweep_s"].as_f64().is_some_and(|s| s > 0.0),
        "{line}"
    );
    assert_eq!(line["concurrency"], 4);
    for (peer, wall, ratio) in [
        (
            "ipmitool_parallel",
            "ipmitool_parallel_s",
            "ratio_vs_ipmitool_parallel",
        ),
        ("curl_parallel", "curl_parallel_s", "ratio_vs_curl_parallel"),
    ] {
        let status = &line["peers"][peer];
        match status["status"].as_str() {
            Some("ok") => {
                assert_eq!(status["successes"], 12, "{peer}: {status}");
                for key in [wall, ratio] {
                    assert!(
                        line[key].as_f64().is_some_and(|v| v > 0.0),
                        "{key} is not a positive number: {line}"
                    );
                }
            }
            Some("skipped") => {
                assert!(
                    status["reason"].as_str().is_some_and(|r| !r.is_empty()),
                    "{peer} skipped without a reason: {status}"
                );
                assert!(line[wall].is_null() && line[ratio].is_null(), "{line}");
            }
            _ => panic!("{peer} neither ran nor was skipped: {status}"),
        }
    }
    // The sequential loop is measured where ipmitool is installed, and only then.
    match &outcome.ipmitool_sequential {
        PeerRun::Ok { successes, .. } => {
            assert_eq!(*successes, 12);
            assert!(line["ratio"].as_f64().is_some_and(|r| r > 0.0), "{line}");
        }
        PeerRun::Skipped { .. } => assert!(line["ratio"].is_null(), "{line}"),
        failed => panic!("sequential ipmitool loop failed: {failed:?}"),
    }
}

#[test]
fn a_missing_tool_is_a_skip_naming_it() {
    assert_eq!(
        missing(&["sh", "kiln-no-such-tool"]),
        Some(PeerRun::Skipped {
            reason: "kiln-no-such-tool not found on PATH".into()
        })
    );
    assert_eq!(missing(&["sh"]), None);
}

fn shell(script: &str) -> tokio::process::Command {
    let mut command = tokio::process::Command::new("sh");
    command.args(["-c", script]);
    command
}

fn lines(stdout: &str) -> usize {
    stdout.lines().filter(|l| *l == "read").count()
}

#[tokio::test]
async fn a_failing_or_short_peer_run_is_failed_with_its_count_and_stderr() {
    let timeout = Duration::from_secs(30);
    let run = run_tool(
        shell("echo read; echo boom >&2; exit 3"),
        None,
        timeout,
        1,
        lines,
    )
    .await;
    let PeerRun::Failed {
        reason,
        successes,
        stderr_tail,
        ..
    } = run
    else {
        panic!("non-zero exit passed: {run:?}");
    };
    assert!(reason.contains("exit status: 3"), "{reason}");
    assert_eq!((successes, stderr_tail.trim()), (1, "boom"));

    let run = run_tool(
        shell("cat"),
        Some(b"read\nnot\n".to_vec()),
        timeout,
        2,
        lines,
    )
    .await;
    let PeerRun::Failed {
        reason, successes, ..
    } = run
    else {
        panic!("one of two passed: {run:?}");
    };
    assert!(reason.contains("1 of 2 BMCs read"), "{reason}");
    assert_eq!(successes, 1);

    let run = run_tool(shell("sleep 5"), None, Duration::from_millis(200), 1, lines).await;
    assert!(
        matches!(&run, PeerRun::Failed { reason, .. } if reason.contains("did not finish")),
        "{run:?}"
    );

    let run = run_tool(
        shell("cat"),
        Some(b"read\nread\n".to_vec()),
        timeout,
        2,
        lines,
    )
    .await;
    assert!(matches!(run, PeerRun::Ok { successes: 2, .. }), "{run:?}");
}
