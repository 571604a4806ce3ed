//! Kernel log scan over fixtures for each timestamp style, SXid severities, unreadable lines, the events new
//! between two scans, their checks, and property tests (no panics on any input).

use kiln_health::kernlog::{
    KernelEventKind, judge_kernel_events, judge_unparsed, new_events, scan,
};
use kiln_health::verdict::CheckStatus;
use kiln_health::xid::{XidAction, kernel_log_xids};
use proptest::prelude::*;

use crate::support::{fixture, fixture_path};

fn codes(text: &str) -> Vec<u64> {
    scan(text).events.iter().map(|e| e.code).collect()
}

#[test]
fn dmesg_seconds_events_actions_and_unparsed_line() {
    let s = scan(&fixture("kernlog/dmesg_seconds.txt"));
    assert_eq!(s.lines_read, 10);
    assert_eq!(
        s.unparsed, 1,
        "the garbled Xid line is counted, not guessed"
    );
    assert_eq!(
        codes(&fixture("kernlog/dmesg_seconds.txt")),
        vec![79, 13, 13, 154]
    );
    let fell = &s.events[0];
    assert_eq!(fell.kind, KernelEventKind::Xid);
    assert_eq!(fell.pci, "0000:18:00");
    assert_eq!(fell.timestamp.as_deref(), Some("812.123456"));
    assert_eq!(fell.action, XidAction::Rma);
    assert_eq!(
        fell.message,
        "pid=4242, name=gpu_burn, GPU has fallen off the bus."
    );
    assert_eq!(s.events[1].action, XidAction::Note);
    assert_eq!(
        s.events[3].action,
        XidAction::Reset,
        "154 to 0x1: GPU reset required"
    );
    assert!(s.events[3].meaning.contains("GPU reset required"));
    assert!(s.fails());
    assert!(s.unparsed_lines[0].contains("garbled"));
}

#[test]
fn ctime_iso_syslog_kmsg_and_bare_lines() {
    let s = scan(&fixture("kernlog/dmesg_ctime.txt"));
    let ts: Vec<_> = s
        .events
        .iter()
        .map(|e| e.timestamp.clone().unwrap())
        .collect();
    assert_eq!(
        ts,
        [
            "Sun Feb 23 16:24:18 2025",
            "Sun Feb 23 16:24:19 2025",
            "Sun Feb  2 03:04:05 2025"
        ]
    );
    assert_eq!(
        s.events.iter().map(|e| e.action).collect::<Vec<_>>(),
        [XidAction::Reset, XidAction::Note, XidAction::Fail],
        "48 reset, 63 note, 149 NETIR fail"
    );

    let s = scan(&fixture("kernlog/journal_iso.txt"));
    assert_eq!(s.lines_read, 4);
    assert_eq!(s.events.len(), 2);
    assert_eq!(
        s.events[0].timestamp.as_deref(),
        Some("2025-02-23T16:24:18.123456+00:00")
    );
    assert_eq!(
        s.events[1].timestamp.as_deref(),
        Some("2025-02-23T16:24:20+0000")
    );
    assert_eq!((s.events[0].code, s.events[1].code), (94, 95));

    let s = scan(&fixture("kernlog/syslog_crlf.txt"));
    assert_eq!(s.lines_read, 3);
    assert_eq!(s.events.len(), 2);
    assert_eq!(
        s.events[0].timestamp.as_deref(),
        Some("Feb 23 16:24:18"),
        "the outer syslog time"
    );
    assert_eq!(s.events[0].code, 74);
    assert!(!s.events[0].message.ends_with('\r'));
    assert_eq!(
        s.events[1].timestamp.as_deref(),
        Some("Feb  3 01:02:04.500001")
    );

    let s = scan(&fixture("kernlog/kmsg.txt"));
    assert_eq!(s.lines_read, 5);
    assert_eq!(s.events.len(), 2);
    assert_eq!(s.events[0].timestamp.as_deref(), Some("812123456"));
    assert_eq!(
        (s.events[0].code, s.events[0].action),
        (119, XidAction::Reset)
    );
    assert_eq!(s.events[1].kind, KernelEventKind::Sxid);
    assert_eq!(s.events[1].fatal, Some(true));

    let s = scan(&fixture("kernlog/no_timestamp.txt"));
    assert_eq!(s.events.len(), 2);
    assert!(s.events.iter().all(|e| e.timestamp.is_none()));
    assert_eq!(
        s.unparsed, 1,
        "an Xid line without a PCI address is unreadable"
    );
}

#[test]
fn sxid_severity_catalog_and_detail_lines() {
    let s = scan(&fixture("kernlog/nvswitch_sxid.txt"));
    assert_eq!(s.lines_read, 10);
    assert_eq!(s.unparsed, 1);
    let got: Vec<(u64, Option<bool>, XidAction)> = s
        .events
        .iter()
        .map(|e| (e.code, e.fatal, e.action))
        .collect();
    assert_eq!(
        got,
        [
            (12028, Some(false), XidAction::Note),
            (20034, Some(true), XidAction::Reset),
            (11012, Some(false), XidAction::Note),
            (31999, Some(false), XidAction::Note),
            (31998, Some(true), XidAction::Fail),
            (24007, None, XidAction::Reset),
        ],
        "Severity/Data lines fold into their event; a lone detail line is still an event"
    );
    assert_eq!(s.events[0].pci, "0000:88:00.0");
    assert_eq!(
        s.events[0].message,
        "Link 32 egress non-posted PRIV error (First)"
    );
    assert!(
        s.events[3]
            .meaning
            .contains("unknown SXid reported non-fatal")
    );
    assert!(s.events.iter().all(|e| e.kind == KernelEventKind::Sxid));
}

#[test]
fn json_contract() {
    let s = scan(&fixture("kernlog/kmsg.txt"));
    let v = serde_json::to_value(&s).expect("serializes");
    let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(keys, ["events", "lines_read", "unparsed"]);
    let xid = &v["events"][0];
    let mut keys: Vec<&str> = xid
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "action",
            "code",
            "kind",
            "meaning",
            "message",
            "pci",
            "timestamp"
        ]
    );
    assert_eq!(xid["kind"], "xid");
    assert_eq!(xid["action"], "reset");
    assert_eq!(xid["code"], 119);
    assert_eq!(v["events"][1]["kind"], "sxid");
    assert_eq!(v["events"][1]["fatal"], true);
    let bare = serde_json::to_value(scan(&fixture("kernlog/no_timestamp.txt"))).unwrap();
    assert!(bare["events"][0]["timestamp"].is_null());
}

#[test]
fn garbage_bytes_do_not_panic_and_real_lines_still_count() {
    let bytes = std::fs::read(fixture_path("kernlog/garbage.bin")).expect("fixture");
    let s = scan(&String::from_utf8_lossy(&bytes));
    assert_eq!(s.events.len(), 1);
    assert_eq!(s.events[0].code, 79);
    assert_eq!(s.unparsed, 1, "the torn SXid line");
}

#[test]
fn new_events_are_a_multiset_difference_across_a_wrapped_ring_buffer() {
    let before = scan(&fixture("kernlog/burnin_start.txt"));
    let after = scan(&fixture("kernlog/burnin_end.txt"));
    let new = new_events(&before, &after);
    let got: Vec<(u64, Option<&str>)> = new
        .iter()
        .map(|e| (e.code, e.timestamp.as_deref()))
        .collect();
    assert_eq!(
        got,
        [
            (63, Some("300.000000")),
            (19084, Some("412.500000")),
            (48, Some("420.000000"))
        ],
        "the first line rotated out; the repeated 63 counts once more"
    );
    assert!(new_events(&after, &after).is_empty());

    let checks = judge_kernel_events(&new, "");
    assert_eq!(checks.len(), 3);
    assert_eq!(checks[0].status, CheckStatus::Note);
    assert_eq!(
        (checks[1].name.as_str(), checks[1].status),
        ("kernel.sxid", CheckStatus::Fail)
    );
    assert_eq!(checks[1].subject, "0000:87:00.0");
    assert_eq!(checks[1].measured, serde_json::json!(19084));
    assert!(
        checks[1].reason.contains("AN1 heartbeat timeout"),
        "{}",
        checks[1].reason
    );
    assert!(checks[1].reason.contains("(non-fatal)"));
    assert_eq!(
        (checks[2].name.as_str(), checks[2].status),
        ("kernel.xid", CheckStatus::Fail)
    );
    assert_eq!(checks[2].threshold, Some(serde_json::json!("reset")));

    let none = judge_kernel_events(&[], "host-02/");
    assert_eq!(none.len(), 1);
    assert_eq!(
        (none[0].name.as_str(), none[0].subject.as_str()),
        ("kernel.events", "host-02/node")
    );
    assert!(!none[0].failed());
}

#[test]
fn unparsed_lines_become_a_note() {
    let s = scan(&fixture("kernlog/no_timestamp.txt"));
    let note = judge_unparsed(&s, "").expect("one unreadable line");
    assert_eq!(note.status, CheckStatus::Note);
    assert_eq!(note.measured, serde_json::json!(1));
    assert!(judge_unparsed(&scan(&fixture("kernlog/journal_iso.txt")), "").is_none());
}

#[test]
fn kernel_log_xids_keeps_its_contract() {
    let lines: Vec<String> = fixture("kernlog/nvswitch_sxid.txt")
        .lines()
        .chain(fixture("kernlog/dmesg_seconds.txt").lines())
        .map(str::to_string)
        .collect();
    assert_eq!(
        kernel_log_xids(&lines),
        vec![79, 13, 13, 154, 999],
        "SXids are not XIDs"
    );
}

proptest! {
    #[test]
    fn scan_never_panics(text in ".{0,400}") {
        let s = scan(&text);
        prop_assert!(s.lines_read as usize <= text.len() + 1);
    }

    #[test]
    fn scan_never_panics_near_the_grammar(
        prefix in prop::sample::select(vec!["", "[ 1.5] ", "[Sun Feb 23 16:24:18 2025] ", "Feb 23 16:24:18 h kernel: ", "6,1,2,-;", "2025-02-23T16:24:18Z "]),
        marker in prop::sample::select(vec!["NVRM: Xid (", "nvidia-nvswitch0: SXid (", "Xid", "SXid ("]),
        tail in "[PCI:0-9a-f.,)( xFatlNon-]{0,40}",
    ) {
        let line = format!("{prefix}{marker}{tail}");
        let s = scan(&line);
        prop_assert_eq!(s.lines_read, 1);
        prop_assert!(s.events.len() + s.unparsed as usize <= 1);
    }
}
