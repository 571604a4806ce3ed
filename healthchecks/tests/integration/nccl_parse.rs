//! Parser tests over recorded fixtures for every format variant, plus property tests (no panics).

use kiln_health::nccl::{ParseError, parse};
use proptest::prelude::*;

use crate::support::fixture;

#[test]
fn newest_format_with_root_column_and_info_noise() {
    let r = parse(&fixture("nccl/all_reduce_h100_1node.txt")).expect("parses");
    assert_eq!(r.collective, "all_reduce");
    assert_eq!(r.nccl_version.as_deref(), Some("2.21.5"));
    assert_eq!(r.ranks, 8);
    assert_eq!(r.hosts, vec!["host-01".to_string()]);
    assert_eq!(r.rows.len(), 31, "8 B .. 8 GiB by factor 2");
    let first = &r.rows[0];
    assert_eq!((first.size_bytes, first.count), (8, 2));
    assert_eq!(first.dtype, "float");
    assert_eq!(first.redop.as_deref(), Some("sum"));
    assert_eq!(first.root, Some(-1));
    let last = r.rows.last().expect("rows");
    assert_eq!(last.size_bytes, 8 << 30);
    assert!(last.out_of_place.busbw_gbps > 470.0 && last.out_of_place.busbw_gbps < 490.0);
    assert_eq!(last.out_of_place.wrong, Some(0));
    assert_eq!(r.avg_busbw_gbps, Some(112.943));
    assert_eq!(r.out_of_bounds, Some(0));
    assert!(r.errors.is_empty(), "{:?}", r.errors);
    assert_eq!(r.devices[3].bus_id, "0000:48:00");
    assert_eq!(r.devices[3].gpu_name, "NVIDIA H100 80GB HBM3");
}

#[test]
fn old_format_without_root_column_and_error_magnitude() {
    let r = parse(&fixture("nccl/all_reduce_a100_old_noroot.txt")).expect("parses");
    assert_eq!(
        r.collective, "all_reduce",
        "inferred from busbw/algbw = 2(n-1)/n"
    );
    assert_eq!(r.nccl_version, None);
    assert_eq!(r.ranks, 8);
    assert_eq!(r.hosts, vec!["dgx-a".to_string()]);
    assert_eq!(r.rows.len(), 13);
    assert!(r.rows.iter().all(|row| row.root.is_none()));
    assert!(
        r.rows.iter().all(|row| row.in_place.wrong == Some(0)),
        "0e+00 reads as 0 wrong"
    );
    assert_eq!(r.devices[0].gpu_name, "A100-SXM4-80GB");
}

#[test]
fn all_gather_with_validation_off_has_null_wrong_and_no_redop() {
    let r = parse(&fixture("nccl/all_gather_h200_nocheck.txt")).expect("parses");
    assert_eq!(r.collective, "all_gather");
    assert!(
        r.rows
            .iter()
            .all(|row| row.redop.is_none() && row.root == Some(-1))
    );
    assert!(
        r.rows
            .iter()
            .all(|row| row.out_of_place.wrong.is_none() && row.in_place.wrong.is_none())
    );
}

#[test]
fn multi_host_rank_list_gives_hosts_in_order() {
    let r = parse(&fixture("nccl/all_reduce_h100_2node.txt")).expect("parses");
    assert_eq!(r.ranks, 16);
    assert_eq!(r.hosts, vec!["host-01".to_string(), "host-02".to_string()]);
    assert_eq!(r.nccl_version.as_deref(), Some("2.19.3"));
    assert_eq!(r.devices[9].host, "host-02");
    assert_eq!(r.devices[9].device, 1);
}

#[test]
fn truncated_run_with_warnings_keeps_rows_and_reports_why() {
    let r = parse(&fixture("nccl/all_reduce_4node_warn_truncated.txt")).expect("parses");
    assert_eq!(r.ranks, 32);
    assert_eq!(r.hosts.len(), 4);
    assert_eq!(r.rows.len(), 20, "the half-printed 21st row is not a row");
    assert_eq!(r.avg_busbw_gbps, None);
    assert!(!r.completed());
    let warns: Vec<_> = r
        .errors
        .iter()
        .filter(|e| e.contains("NCCL WARN"))
        .collect();
    assert_eq!(warns.len(), 2);
    assert!(r.errors.iter().any(|e| e.contains("truncated result row")));
    assert!(
        r.errors
            .iter()
            .any(|e| e.contains("ends before the footer"))
    );
}

#[test]
fn crashed_run_before_any_row_is_nccl_output_with_errors() {
    let r = parse(&fixture("nccl/all_reduce_crash.txt")).expect("parses");
    assert!(r.rows.is_empty());
    assert!(r.errors.iter().any(|e| e.contains("Test NCCL failure")));
    assert!(
        r.errors
            .iter()
            .any(|e| e.contains("Test failure common.cu"))
    );
}

#[test]
fn degraded_run_reads_wrong_counts_and_out_of_bounds() {
    let r = parse(&fixture("nccl/all_reduce_h100_degraded.txt")).expect("parses");
    assert_eq!(r.out_of_bounds, Some(2));
    let gib = r
        .rows
        .iter()
        .find(|row| row.size_bytes == 1 << 30)
        .expect("1 GiB row");
    assert_eq!(gib.in_place.wrong, Some(5));
    assert_eq!(gib.out_of_place.wrong, Some(0));
}

#[test]
fn json_output_from_dash_j() {
    let r = parse(&fixture("nccl/all_reduce_h100.json")).expect("parses");
    assert_eq!(r.collective, "all_reduce");
    assert_eq!(r.nccl_version.as_deref(), Some("2.27.3"));
    assert_eq!(r.ranks, 8);
    assert_eq!(r.hosts, vec!["host-01".to_string()]);
    assert_eq!(r.rows.len(), 14);
    assert_eq!(r.rows[0].root, Some(-1));
    assert_eq!(r.rows[0].out_of_place.wrong, Some(0));
    assert_eq!(r.avg_busbw_gbps, Some(301.22));
    assert_eq!(r.out_of_bounds, Some(0));
    assert!(r.errors.is_empty(), "{:?}", r.errors);
}

#[test]
fn text_that_is_not_nccl_tests_is_an_error() {
    for input in [
        fixture("nccl/not_nccl.txt"),
        String::new(),
        "hello\nworld\n".to_string(),
    ] {
        assert!(
            matches!(parse(&input), Err(ParseError::NotNcclTests { .. })),
            "{input:?}"
        );
    }
    assert!(matches!(
        parse("{\"a\": 1}"),
        Err(ParseError::BadJson { .. })
    ));
}

#[test]
fn json_contract_has_exactly_the_documented_keys() {
    let r = parse(&fixture("nccl/all_reduce_h100_2node.txt")).expect("parses");
    let v = serde_json::to_value(&r).expect("serializes");
    let mut keys: Vec<&str> = v
        .as_object()
        .expect("object")
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "avg_busbw_gbps",
            "collective",
            "errors",
            "hosts",
            "nccl_version",
            "out_of_bounds",
            "ranks",
            "rows"
        ]
    );
    let row = &v["rows"][0];
    let mut row_keys: Vec<&str> = row
        .as_object()
        .expect("row")
        .keys()
        .map(String::as_str)
        .collect();
    row_keys.sort_unstable();
    assert_eq!(
        row_keys,
        [
            "count",
            "dtype",
            "in_place",
            "out_of_place",
            "redop",
            "root",
            "size_bytes"
        ]
    );
    let mut side: Vec<&str> = row["in_place"]
        .as_object()
        .expect("side")
        .keys()
        .map(String::as_str)
        .collect();
    side.sort_unstable();
    assert_eq!(side, ["algbw_gbps", "busbw_gbps", "time_us", "wrong"]);
    assert_eq!(v["rows"][0]["size_bytes"], 8);
    assert_eq!(v["hosts"][1], "host-02");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn parser_never_panics_on_arbitrary_text(input in "\\PC*") {
        let _ = parse(&input);
    }

    #[test]
    fn parser_never_panics_on_mangled_fixtures(cut in 0usize..6000, noise in "[ -~\\n]{0,80}", line in 0usize..60) {
        let text = fixture("nccl/all_reduce_h100_1node.txt");
        let cut = text.char_indices().map(|(i, _)| i).take_while(|i| *i <= cut).last().unwrap_or(0);
        let mut lines: Vec<String> = text[..cut].lines().map(str::to_string).collect();
        let at = line.min(lines.len());
        lines.insert(at, noise);
        let _ = parse(&lines.join("\n"));
    }

    #[test]
    fn parser_never_panics_on_row_like_tokens(tokens in proptest::collection::vec("(-?[0-9]{1,20}(\\.[0-9]{0,3})?|N/A|sum|none|float|nan|inf|1e\\+308|-1|#wrong|[a-z]{1,4})", 0..20)) {
        let text = format!("# nThread 1 nGpus 8\n{}\n", tokens.join(" "));
        prop_assert!(parse(&text).is_ok());
    }

    #[test]
    fn parser_never_panics_on_arbitrary_json_shapes(input in "\\{\"results\":\\[(\\{\"size\":[0-9]{1,3},\"count\":1,\"type\":\"float\"[^\\]]{0,40}\\},?){0,3}\\][ -~]{0,40}") {
        let _ = parse(&input);
    }
}
