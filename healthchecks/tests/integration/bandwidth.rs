//! nvbandwidth and ib_write_bw parsers and judges over fixtures written from the tools' documented formats.

use kiln_health::CheckStatus;
use kiln_health::bandwidth::{
    BandwidthParseError, BwUnit, NvbandwidthFloors, judge_ib_write_bw, judge_nvbandwidth,
    mib_per_s_to_gbps, parse_ib_write_bw, parse_nvbandwidth,
};
use proptest::prelude::*;

use crate::support::fixture;

fn aznhc_floors() -> NvbandwidthFloors {
    NvbandwidthFloors {
        h2d_min_gbps: Some(48.0),
        d2h_min_gbps: Some(48.0),
        d2d_min_gbps: Some(335.0),
    }
}

#[test]
fn nvbandwidth_reads_every_testcase_matrix_and_sum() {
    let r = parse_nvbandwidth(&fixture("bandwidth/nvbandwidth_h100_healthy.txt")).expect("parses");
    assert_eq!(r.version.as_deref(), Some("v0.7"));
    let names: Vec<&str> = r.testcases.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "host_to_device_memcpy_ce",
            "device_to_host_memcpy_ce",
            "host_to_device_bidirectional_memcpy_ce",
            "device_to_device_memcpy_read_ce",
            "device_to_device_bidirectional_memcpy_read_ce",
            "device_to_device_bidirectional_memcpy_read_ce",
            "device_to_device_bidirectional_memcpy_read_ce",
            "host_device_latency_sm",
        ]
    );
    let h2d = r.testcase("host_to_device_memcpy_ce").expect("h2d");
    assert_eq!(h2d.unit, "GB/s");
    assert_eq!(h2d.column_labels.len(), 8);
    assert_eq!(h2d.cells.len(), 1, "one CPU row");
    let sum: f64 = h2d.cells[0].iter().flatten().sum();
    assert!(
        (h2d.sum.expect("sum") - sum).abs() < 0.05,
        "{:?} vs {sum}",
        h2d.sum
    );
    let d2d = r.testcase("device_to_device_memcpy_read_ce").expect("d2d");
    assert_eq!((d2d.cells.len(), d2d.cells[0].len()), (8, 8));
    assert!((0..8).all(|i| d2d.cells[i][i].is_none()), "diagonal is N/A");
    assert!(d2d.cells[0][1].is_some_and(|v| v > 380.0));
    assert!(r.testcases[6].description.contains("Total"));
    assert_eq!(r.testcases[7].unit, "ns");
    assert_eq!(r.waived.len(), 1);
    assert!(r.errors.is_empty(), "{:?}", r.errors);
}

#[test]
fn nvbandwidth_healthy_node_passes_aznhc_floors() {
    let r = parse_nvbandwidth(&fixture("bandwidth/nvbandwidth_h100_healthy.txt")).expect("parses");
    let checks = judge_nvbandwidth(&r, &aznhc_floors());
    assert_eq!(checks.len(), 8 + 8 + 56, "8 H2D, 8 D2H, 8x7 peer pairs");
    assert!(
        checks.iter().all(|c| c.status == CheckStatus::Pass),
        "{checks:#?}"
    );
    assert!(
        checks
            .iter()
            .any(|c| c.name == "bandwidth.d2d" && c.subject == "gpu0-gpu7")
    );
    assert!(
        checks
            .iter()
            .any(|c| c.name == "bandwidth.h2d" && c.subject == "gpu3")
    );
    assert!(judge_nvbandwidth(&r, &NvbandwidthFloors::default()).is_empty());
}

#[test]
fn nvbandwidth_downtrained_gpu_and_bad_peer_fail_with_values() {
    let r = parse_nvbandwidth(&fixture("bandwidth/nvbandwidth_h100_degraded.txt")).expect("parses");
    let checks = judge_nvbandwidth(&r, &aznhc_floors());
    let failed: Vec<(&str, &str)> = checks
        .iter()
        .filter(|c| c.failed())
        .map(|c| (c.name.as_str(), c.subject.as_str()))
        .collect();
    assert_eq!(
        failed,
        [
            ("bandwidth.h2d", "gpu5"),
            ("bandwidth.d2h", "gpu5"),
            ("bandwidth.d2d", "gpu2-gpu6"),
            ("bandwidth.d2d", "gpu6-gpu2"),
        ]
    );
    let h2d = checks.iter().find(|c| c.failed()).expect("h2d failure");
    assert!(h2d.measured.as_f64().is_some_and(|v| v < 27.0 && v > 25.0));
    assert_eq!(h2d.threshold, Some(serde_json::json!({ "min_gbps": 48.0 })));
    let na = &checks
        .iter()
        .find(|c| c.subject == "gpu2-gpu6")
        .expect("pair");
    assert!(na.measured.is_null() && na.reason.contains("N/A"), "{na:?}");
    let slow = checks
        .iter()
        .find(|c| c.subject == "gpu6-gpu2")
        .expect("pair");
    assert!(slow.reason.contains("below the floor"), "{slow:?}");
}

#[test]
fn nvbandwidth_waived_and_failed_testcases_fail_their_gates() {
    let r =
        parse_nvbandwidth(&fixture("bandwidth/nvbandwidth_1gpu_waived_error.txt")).expect("parses");
    assert_eq!(r.testcases.len(), 1);
    assert_eq!(r.waived.len(), 1);
    assert_eq!(r.errors.len(), 1);
    assert!(
        r.errors[0].starts_with("device_to_host_memcpy_ce: ERROR"),
        "{:?}",
        r.errors
    );
    let checks = judge_nvbandwidth(&r, &aznhc_floors());
    let status: Vec<(&str, &str, bool)> = checks
        .iter()
        .map(|c| (c.name.as_str(), c.subject.as_str(), c.failed()))
        .collect();
    assert_eq!(
        status,
        [
            ("bandwidth.h2d", "gpu0", false),
            ("bandwidth.d2h", "node", true),
            ("bandwidth.d2d", "node", true),
        ]
    );
}

#[test]
fn nvbandwidth_floors_embed_in_profile_data() {
    let floors: NvbandwidthFloors = toml::from_str("d2d_min_gbps = 335.0").expect("toml");
    assert_eq!(floors.d2d_min_gbps, Some(335.0));
    assert_eq!(floors.h2d_min_gbps, None);
    let back = serde_json::to_value(&floors).expect("json");
    assert_eq!(back["d2d_min_gbps"], 335.0);
}

#[test]
fn nvbandwidth_garbage_is_an_error_and_broken_matrices_are_reported() {
    for input in ["", "hello\nworld\n", "SUM", "Running x."] {
        assert!(
            matches!(
                parse_nvbandwidth(input),
                Err(BandwidthParseError::NotToolOutput { .. })
            ),
            "{input:?}"
        );
    }
    let broken = "Running host_to_device_memcpy_ce.\nmemcpy CE CPU(row) -> GPU(column) bandwidth (GB/s)\n  0  1\n 0  55.1  fast\n\nSUM host_to_device_memcpy_ce 55.1\n";
    let r = parse_nvbandwidth(broken).expect("parses");
    assert!(
        r.errors
            .iter()
            .any(|e| e.contains("unreadable matrix line")),
        "{:?}",
        r.errors
    );
    let checks = judge_nvbandwidth(&r, &aznhc_floors());
    assert!(checks.iter().all(|c| c.failed()), "{checks:#?}");
}

#[test]
fn ib_write_bw_gbits_runs_one_per_hca() {
    let runs =
        parse_ib_write_bw(&fixture("bandwidth/ib_write_bw_gdr_4hca_gbits.txt")).expect("parses");
    let devices: Vec<Option<&str>> = runs.iter().map(|r| r.device.as_deref()).collect();
    assert_eq!(
        devices,
        [
            Some("mlx5_0"),
            Some("mlx5_1"),
            Some("mlx5_2"),
            Some("mlx5_3")
        ]
    );
    assert!(
        runs.iter()
            .all(|r| r.port == 1 && r.link_type.as_deref() == Some("IB"))
    );
    assert_eq!(runs[0].unit, Some(BwUnit::GbitPerSec));
    assert_eq!(runs[0].rows.len(), 1);
    assert_eq!(runs[0].rows[0].bytes, 1_048_576);
    assert_eq!(runs[0].avg_gbps_at_largest, Some(391.84));
    assert!(runs[1].errors.is_empty(), "{:?}", runs[1].errors);
    assert_eq!(
        runs[1].notes.len(),
        1,
        "the CPU frequency warning is a note"
    );
    assert!(runs[3].rows.is_empty());
    assert_eq!(runs[3].errors.len(), 2, "{:?}", runs[3].errors);

    let checks = judge_ib_write_bw(&runs, 375.0);
    let status: Vec<(&str, bool)> = checks
        .iter()
        .map(|c| (c.subject.as_str(), c.failed()))
        .collect();
    assert_eq!(
        status,
        [
            ("mlx5_0:1", false),
            ("mlx5_1:1", false),
            ("mlx5_2:1", true),
            ("mlx5_3:1", true)
        ]
    );
    assert!(checks.iter().all(|c| c.name == "bandwidth.ib_write"));
    assert_eq!(checks[2].measured, 242.17);
    assert!(
        checks[3].reason.contains("Couldn't connect"),
        "{}",
        checks[3].reason
    );
}

#[test]
fn ib_write_bw_default_units_are_mebibytes_and_convert() {
    let runs = parse_ib_write_bw(&fixture("bandwidth/ib_write_bw_roce_all_sizes_mbsec.txt"))
        .expect("parses");
    assert_eq!(runs.len(), 1);
    let run = &runs[0];
    assert_eq!(run.device.as_deref(), Some("mlx5_4"));
    assert_eq!(run.link_type.as_deref(), Some("Ethernet"));
    assert_eq!(run.unit, Some(BwUnit::MebibytePerSec));
    assert_eq!(run.rows.len(), 23, "2 B .. 8 MiB");
    let gbps = run.avg_gbps_at_largest.expect("figure");
    assert!(
        (gbps - 44983.91 * 1_048_576.0 * 8.0 / 1e9).abs() < 1e-9,
        "{gbps}"
    );
    assert!((mib_per_s_to_gbps(1000.0) - 8.388608).abs() < 1e-12);
    // Newer perftest spells the same unit MiB/sec.
    let newer =
        fixture("bandwidth/ib_write_bw_roce_all_sizes_mbsec.txt").replace("MB/sec", "MiB/sec");
    assert_eq!(
        parse_ib_write_bw(&newer).expect("parses")[0].avg_gbps_at_largest,
        Some(gbps)
    );
    let checks = judge_ib_write_bw(&runs, 375.0);
    assert_eq!(checks.len(), 1);
    assert!(!checks[0].failed(), "{:?}", checks[0]);
    assert!(judge_ib_write_bw(&runs, 380.0)[0].failed());
}

#[test]
fn ib_write_bw_port_setting_and_duplicate_ports_take_the_worst() {
    let text = fixture("bandwidth/ib_write_bw_gdr_4hca_gbits.txt")
        .replace("mlx5_1", "mlx5_0")
        .replace(
            " Link type       : IB",
            " ib_port         : 2\n Link type       : IB",
        );
    let runs = parse_ib_write_bw(&text).expect("parses");
    assert!(runs.iter().all(|r| r.port == 2));
    let checks = judge_ib_write_bw(&runs[..2], 390.0);
    assert_eq!(checks.len(), 1, "both runs are mlx5_0:2");
    assert_eq!(checks[0].subject, "mlx5_0:2");
    assert_eq!(checks[0].measured, 389.02, "the worse of the two");
    assert!(checks[0].failed());
}

#[test]
fn ib_write_bw_garbage_and_no_runs() {
    for input in ["", "random text\n", "1 2 3 4 5\n"] {
        assert!(
            matches!(
                parse_ib_write_bw(input),
                Err(BandwidthParseError::NotToolOutput { .. })
            ),
            "{input:?}"
        );
    }
    let checks = judge_ib_write_bw(&[], 375.0);
    assert_eq!(checks.len(), 1);
    assert!(checks[0].failed() && checks[0].subject == "node");
    let unknown_unit = " #bytes  #iterations  BW peak[Kb/sec]  BW average[Kb/sec]  MsgRate[Mpps]\n 65536 1000 1.0 1.0 0.1\n";
    let runs = parse_ib_write_bw(unknown_unit).expect("a perftest header");
    assert!(
        runs[0].errors[0].contains("unreadable results header"),
        "{:?}",
        runs[0].errors
    );
    assert!(judge_ib_write_bw(&runs, 1.0)[0].failed());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn bandwidth_parsers_never_panic(input in "\\PC*") {
        if let Ok(r) = parse_nvbandwidth(&input) {
            let _ = judge_nvbandwidth(&r, &NvbandwidthFloors { h2d_min_gbps: Some(1.0), d2h_min_gbps: Some(1.0), d2d_min_gbps: Some(1.0) });
        }
        if let Ok(runs) = parse_ib_write_bw(&input) {
            let _ = judge_ib_write_bw(&runs, 1.0);
        }
    }

    #[test]
    fn bandwidth_parsers_never_panic_on_mangled_fixtures(cut in 0usize..12000, noise in "[ -~\\n\\t]{0,80}", line in 0usize..120) {
        for name in ["bandwidth/nvbandwidth_h100_degraded.txt", "bandwidth/ib_write_bw_gdr_4hca_gbits.txt"] {
            let text = fixture(name);
            let cut = text.char_indices().map(|(i, _)| i).take_while(|i| *i <= cut).last().unwrap_or(0);
            let mut lines: Vec<String> = text[..cut].lines().map(str::to_string).collect();
            let at = line.min(lines.len());
            lines.insert(at, noise.clone());
            let joined = lines.join("\n");
            if let Ok(r) = parse_nvbandwidth(&joined) {
                let _ = judge_nvbandwidth(&r, &aznhc_floors());
            }
            if let Ok(runs) = parse_ib_write_bw(&joined) {
                let _ = judge_ib_write_bw(&runs, 375.0);
            }
        }
    }
}
