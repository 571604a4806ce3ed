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

#[test]
fn alltoall_row_leaves_the_redop_column_blank() {
    let r = parse(&fixture("nccl/alltoall_h100_blank_redop.txt")).expect("parses");
    assert_eq!(r.collective, "alltoall");
    assert_eq!(r.rows.len(), 11, "1 MiB .. 1 GiB");
    assert!(
        r.rows
            .iter()
            .all(|row| row.redop.is_none() && row.root == Some(-1))
    );
    let last = r.rows.last().expect("rows");
    assert_eq!(last.size_bytes, 1 << 30);
    assert_eq!(last.out_of_place.busbw_gbps, 339.81, "{last:?}");
    assert!(last.in_place.busbw_gbps > 0.0 && last.in_place.wrong == Some(0));
    assert!(r.errors.is_empty(), "{:?}", r.errors);
    assert!(r.notes.iter().any(|n| n.contains("blank")), "{:?}", r.notes);
    assert_eq!(r.avg_busbw_gbps, Some(201.442));
}

#[test]
fn open_mpi_tag_output_prefixes_are_stripped() {
    let r = parse(&fixture("nccl/all_reduce_h100_2node_tag_output.txt")).expect("parses");
    assert_eq!(r.collective, "all_reduce");
    assert_eq!(
        r.nccl_version.as_deref(),
        Some("2.23.4"),
        "from a <stderr> INFO line"
    );
    assert_eq!(r.ranks, 16);
    assert_eq!(r.hosts, vec!["gpu-b01".to_string(), "gpu-b02".to_string()]);
    assert_eq!(
        r.rows.len(),
        7,
        "128 MiB .. 8 GiB, the interleaved INFO line skipped"
    );
    assert_eq!(r.avg_busbw_gbps, Some(301.876));
    assert_eq!(r.out_of_bounds, Some(0));
    assert!(r.errors.is_empty(), "{:?}", r.errors);
    assert!(
        r.notes.iter().any(|n| n.contains("--tag-output")),
        "{:?}",
        r.notes
    );
}

#[test]
fn newer_build_per_iteration_columns_and_timestamp_map_by_name() {
    let r = parse(&fixture("nccl/all_reduce_h100_per_iteration_timestamp.txt")).expect("parses");
    assert_eq!(r.rows.len(), 6, "256 MiB .. 8 GiB");
    let first = &r.rows[0];
    assert_eq!(first.size_bytes, 268_435_456);
    assert_eq!(first.out_of_place.time_us, 1151.27);
    assert_eq!(first.out_of_place.busbw_gbps, 408.04);
    assert_eq!(
        first.in_place.time_us, 1155.90,
        "in-place time, not the out-of-place i_min"
    );
    assert_eq!(first.in_place.busbw_gbps, 406.41);
    assert!(r.errors.is_empty(), "{:?}", r.errors);
    assert!(r.notes.is_empty(), "{:?}", r.notes);
}

#[test]
fn an_unnamed_trailing_field_is_ignored_with_a_note() {
    let r = parse(&fixture("nccl/all_reduce_h100_unnamed_extra_column.txt")).expect("parses");
    assert_eq!(r.rows.len(), 6);
    assert_eq!(r.rows[0].in_place.busbw_gbps, 404.72);
    assert_eq!(r.rows[0].in_place.wrong, Some(0));
    assert!(r.errors.is_empty(), "{:?}", r.errors);
    assert!(
        r.notes.iter().any(|n| n.contains("unnamed")),
        "{:?}",
        r.notes
    );
}

#[test]
fn failed_suffix_on_the_average_is_an_error_and_the_value_is_kept() {
    let r = parse(&fixture("nccl/all_reduce_h100_check_failed.txt")).expect("parses");
    assert_eq!(r.avg_busbw_gbps, Some(77.3012));
    assert!(r.completed());
    assert_eq!(r.errors.len(), 1, "{:?}", r.errors);
    assert!(r.errors[0].contains("FAILED"));
    let zero =
        "# nThread 1 nGpus 8\n# Out of bounds values : 0 OK\n# Avg bus bandwidth    : 0 FAILED\n";
    let r = parse(zero).expect("parses");
    assert_eq!(r.avg_busbw_gbps, Some(0.0));
    assert!(r.errors.iter().any(|e| e.contains("FAILED")));
}

#[test]
fn missing_trailer_keeps_the_rows_and_is_flagged() {
    let r = parse(&fixture("nccl/all_reduce_h100_no_trailer.txt")).expect("parses");
    assert_eq!(r.nccl_version.as_deref(), Some("2.21.5"));
    assert_eq!(r.rows.len(), 6, "INFO lines between rows are skipped");
    assert_eq!(r.rows[5].size_bytes, 8 << 30);
    assert_eq!((r.avg_busbw_gbps, r.out_of_bounds), (None, None));
    assert!(!r.completed());
    assert_eq!(r.errors.len(), 1, "{:?}", r.errors);
    assert!(r.errors[0].contains("ends before the footer after 6 result rows"));
}

#[test]
fn slurm_label_and_mpich_rank_prefixes_are_stripped() {
    let base = fixture("nccl/all_reduce_h100_unnamed_extra_column.txt");
    for prefix in ["0: ", "[0] "] {
        let text: String = base.lines().map(|l| format!("{prefix}{l}\n")).collect();
        let r = parse(&text).expect("parses");
        assert_eq!(r.rows.len(), 6, "{prefix:?}");
        assert!(r.errors.is_empty(), "{prefix:?}: {:?}", r.errors);
    }
}

#[test]
fn json_contract_unchanged_for_new_shapes() {
    for f in [
        "nccl/alltoall_h100_blank_redop.txt",
        "nccl/all_reduce_h100_2node_tag_output.txt",
        "nccl/all_reduce_h100_per_iteration_timestamp.txt",
    ] {
        let v = serde_json::to_value(parse(&fixture(f)).expect("parses")).expect("serializes");
        assert!(
            v.get("notes").is_none() && v.get("devices").is_none(),
            "{f}"
        );
        assert_eq!(v["rows"][0].as_object().expect("row").len(), 7, "{f}");
    }
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
    fn parser_never_panics_on_mangled_new_shapes(cut in 0usize..9000, noise in "[ -~\\n]{0,80}", line in 0usize..60, which in 0usize..4) {
        let name = ["nccl/alltoall_h100_blank_redop.txt", "nccl/all_reduce_h100_2node_tag_output.txt",
            "nccl/all_reduce_h100_per_iteration_timestamp.txt", "nccl/all_reduce_h100_no_trailer.txt"][which];
        let text = fixture(name);
        let cut = text.char_indices().map(|(i, _)| i).take_while(|i| *i <= cut).last().unwrap_or(0);
        let mut lines: Vec<String> = text[..cut].lines().map(str::to_string).collect();
        let at = line.min(lines.len());
        lines.insert(at, noise);
        let _ = parse(&lines.join("\n"));
    }

    #[test]
    fn parser_never_panics_on_arbitrary_json_shapes(input in "\\{\"results\":\\[(\\{\"size\":[0-9]{1,3},\"count\":1,\"type\":\"float\"[^\\]]{0,40}\\},?){0,3}\\][ -~]{0,40}") {
        let _ = parse(&input);
    }
}
