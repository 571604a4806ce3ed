//! SKU profile loading and lookup.

use kiln_health::SkuCatalog;
use kiln_health::sku::SkuError;

#[test]
fn builtin_profiles_have_the_inventory_ids_and_reference_thresholds() {
    let catalog = SkuCatalog::builtin().expect("built-in profiles parse");
    for id in [
        "h100-sxm-80gb",
        "h200-sxm-141gb",
        "a100-sxm-80gb",
        "b200-sxm-180gb",
    ] {
        let p = catalog.get(id).expect("profile present");
        assert_eq!(p.gpus_per_node, 8, "{id}");
    }
    let h100 = catalog.get("h100-sxm-80gb").expect("h100");
    assert_eq!(
        h100.nccl_threshold(1).map(|t| t.min_busbw_gbps),
        Some(460.0)
    );
    assert_eq!(
        h100.nccl_threshold(3).map(|t| t.nodes),
        Some(2),
        "largest entry not above 3 nodes"
    );
    assert_eq!(h100.nccl_threshold(64).map(|t| t.nodes), Some(4));
    assert_eq!(
        (h100.pcie_gen, h100.pcie_width, h100.nvlink_links),
        (5, 16, 18)
    );
    assert_eq!(h100.retired_pages_max, 63);
    let h200 = catalog.get("h200-sxm-141gb").expect("h200");
    assert_eq!(
        h200.nccl_threshold(1).map(|t| t.min_busbw_gbps),
        Some(431.0)
    );
    assert_eq!(
        catalog
            .match_nvml_name("NVIDIA H100 80GB HBM3")
            .map(|p| p.id.as_str()),
        Some("h100-sxm-80gb")
    );
}

#[test]
fn unknown_id_names_the_known_ones() {
    let catalog = SkuCatalog::builtin().expect("built-in");
    let err = catalog.get("h100-pcie").expect_err("unknown");
    assert!(matches!(err, SkuError::Unknown { .. }));
    assert!(err.to_string().contains("h100-sxm-80gb"));
}

#[test]
fn override_file_replaces_a_profile_and_adds_new_ones() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("skus.toml");
    let builtin = SkuCatalog::builtin().expect("built-in");
    let mut h100 = builtin.get("h100-sxm-80gb").expect("h100").clone();
    h100.nccl[0].min_busbw_gbps = 470.0;
    let mut custom = h100.clone();
    custom.id = "h100-sxm-80gb-lab".to_string();
    #[derive(serde::Serialize)]
    struct File {
        sku: Vec<kiln_health::SkuProfile>,
    }
    std::fs::write(
        &path,
        toml::to_string(&File {
            sku: vec![h100, custom],
        })
        .expect("toml"),
    )
    .expect("write");
    let catalog = SkuCatalog::builtin_with_overrides(&path).expect("loads");
    assert_eq!(
        catalog.get("h100-sxm-80gb").expect("h100").nccl[0].min_busbw_gbps,
        470.0
    );
    assert!(catalog.get("h100-sxm-80gb-lab").is_ok());
    assert!(
        catalog.get("b200-sxm-180gb").is_ok(),
        "built-ins not overridden stay"
    );
}

#[test]
fn malformed_or_inconsistent_profiles_are_clear_errors() {
    assert!(matches!(
        SkuCatalog::from_toml("sku = 3", "test"),
        Err(SkuError::Malformed { .. })
    ));
    let builtin = include_str!("../../profiles/skus.toml");
    let broken = builtin.replacen("gpus_per_node = 8", "gpus_per_node = 0", 1);
    let err = SkuCatalog::from_toml(&broken, "test").expect_err("invalid");
    assert!(err.to_string().contains("gpus_per_node"), "{err}");
    let missing =
        SkuCatalog::builtin_with_overrides(std::path::Path::new("/nonexistent/skus.toml"));
    assert!(matches!(missing, Err(SkuError::Read { .. })));
}

#[test]
fn cold_off_defaults_to_30_s_and_zero_is_refused() {
    let builtin = SkuCatalog::builtin().expect("built-in");
    let h100 = builtin.get("h100-sxm-80gb").expect("h100").clone();
    assert_eq!(h100.cold_off_s, 30);
    #[derive(serde::Serialize)]
    struct File {
        sku: Vec<kiln_health::SkuProfile>,
    }
    let text = toml::to_string(&File { sku: vec![h100] }).expect("toml");
    assert!(text.contains("cold_off_s = 30\n"), "{text}");
    let unset = text.replace("cold_off_s = 30\n", "");
    let catalog = SkuCatalog::from_toml(&unset, "test").expect("loads without cold_off_s");
    assert_eq!(
        catalog.get("h100-sxm-80gb").expect("h100").cold_off_s,
        kiln_health::sku::DEFAULT_COLD_OFF_S
    );
    let zero = text.replace("cold_off_s = 30\n", "cold_off_s = 0\n");
    let err = SkuCatalog::from_toml(&zero, "test").expect_err("zero");
    assert!(err.to_string().contains("h100-sxm-80gb"), "{err}");
}

#[test]
fn gates_carry_the_reference_figures_and_gb200_trays_have_their_own_profile() {
    let catalog = SkuCatalog::builtin().expect("built-in");
    let h100 = &catalog.get("h100-sxm-80gb").expect("h100").gates;
    assert_eq!(h100.dcgm_level, 3);
    assert_eq!(h100.ib_write_bw_min_gbps, Some(375.0));
    assert_eq!(h100.ib_ports, Some(8));
    assert_eq!(h100.nvbandwidth_d2d_min_gbps, Some(335.0));
    assert_eq!(
        (h100.stress_gpu_min_ratio, h100.fleet_outlier_ratio),
        (0.90, 0.05)
    );
    assert!(!h100.fleet_gate);
    assert_eq!(
        (
            h100.nvlink_crc_growth_max,
            h100.nvlink_replay_growth_max,
            h100.nvlink_recovery_growth_max
        ),
        (100, 100, 0)
    );
    assert_eq!(
        catalog
            .get("h200-sxm-141gb")
            .expect("h200")
            .gates
            .ib_write_bw_min_gbps,
        Some(360.0)
    );
    let gb200 = catalog.get("gb200-nvl-tray").expect("gb200 tray");
    assert_eq!(gb200.gpus_per_node, 4);
    assert_eq!(
        gb200.nccl_threshold(1).map(|t| t.min_busbw_gbps),
        Some(432.0)
    );
    assert_eq!(gb200.power_load_floor_w(), 840.0);
    // "NVIDIA GB200" contains "B200" too: the longer pattern wins.
    for (name, id) in [
        ("NVIDIA GB200", "gb200-nvl-tray"),
        ("NVIDIA B200", "b200-sxm-180gb"),
        ("NVIDIA H200", "h200-sxm-141gb"),
    ] {
        assert_eq!(
            catalog.match_nvml_name(name).map(|p| p.id.as_str()),
            Some(id),
            "{name}"
        );
    }
}

/// The built-in H100 profile as TOML text, without its gates table (so tests can write their own).
fn h100_without_gates() -> String {
    let builtin = SkuCatalog::builtin().expect("built-in");
    let mut h100 = builtin.get("h100-sxm-80gb").expect("h100").clone();
    h100.gates = kiln_health::sku::SkuGates::default();
    #[derive(serde::Serialize)]
    struct File {
        sku: Vec<kiln_health::SkuProfile>,
    }
    let text = toml::to_string(&File { sku: vec![h100] }).expect("toml");
    let at = text.find("[sku.gates]").expect("gates serialized");
    text[..at].to_string()
}

#[test]
fn a_profile_without_gates_gets_the_defaults() {
    let catalog = SkuCatalog::from_toml(&h100_without_gates(), "test").expect("loads");
    let p = catalog.get("h100-sxm-80gb").expect("h100");
    assert_eq!(p.gates, kiln_health::sku::SkuGates::default());
    assert_eq!(p.gates.dcgm_level, kiln_health::sku::DEFAULT_DCGM_LEVEL);
    assert_eq!(p.gates.ib_write_bw_min_gbps, None);
    assert_eq!(p.power_load_floor_w(), 490.0, "0.7 × power_limit_w");
    let partial = format!("{}[sku.gates]\nfleet_gate = true\n", h100_without_gates());
    let catalog = SkuCatalog::from_toml(&partial, "test").expect("partial gates");
    let g = &catalog.get("h100-sxm-80gb").expect("h100").gates;
    assert!(g.fleet_gate);
    assert_eq!(g.stress_gpu_min_ratio, 0.90);
}

#[test]
fn inconsistent_gates_are_refused_naming_the_key() {
    for (gates, key) in [
        ("stress_gpu_min_ratio = 0.0", "stress_gpu_min_ratio"),
        ("stress_gpu_min_ratio = 1.2", "stress_gpu_min_ratio"),
        ("fleet_outlier_ratio = -0.05", "fleet_outlier_ratio"),
        ("dcgm_level = 5", "dcgm_level"),
        ("dcgm_level = 0", "dcgm_level"),
        ("ib_write_bw_min_gbps = 0.0", "ib_write_bw_min_gbps"),
        ("nvbandwidth_h2d_min_gbps = nan", "nvbandwidth_h2d_min_gbps"),
        ("ib_ports = 0", "ib_ports"),
        ("power_load_min_w = 900.0", "power_load_min_w"),
    ] {
        let text = format!("{}[sku.gates]\n{gates}\n", h100_without_gates());
        let err = SkuCatalog::from_toml(&text, "test").expect_err(gates);
        assert!(matches!(err, SkuError::Invalid { .. }), "{gates}: {err}");
        let msg = err.to_string();
        assert!(
            msg.contains(key) && msg.contains("h100-sxm-80gb"),
            "{gates}: {msg}"
        );
    }
    let typo = format!("{}[sku.gates]\nfleet_gates = true\n", h100_without_gates());
    let err = SkuCatalog::from_toml(&typo, "test").expect_err("unknown key");
    assert!(matches!(err, SkuError::Malformed { .. }), "{err}");
    use std::error::Error as _;
    assert!(
        err.source()
            .expect("toml error")
            .to_string()
            .contains("fleet_gates"),
        "{err:?}"
    );
}

#[test]
fn the_stress_tool_is_part_of_a_profile_and_an_unknown_one_is_refused() {
    use kiln_health::stress::StressTool;
    let builtin = include_str!("../../profiles/skus.toml");
    let catalog = kiln_health::SkuCatalog::builtin().expect("builtin");
    assert_eq!(
        catalog
            .get("h100-sxm-80gb")
            .expect("h100")
            .gates
            .stress_tool,
        StressTool::GpuBurn
    );
    let fryer = builtin.replacen(
        "[sku.gates]\n",
        "[sku.gates]\nstress_tool = \"gpu_fryer\"\n",
        1,
    );
    let catalog = kiln_health::SkuCatalog::from_toml(&fryer, "test").expect("fryer");
    assert_eq!(
        catalog
            .get("h100-sxm-80gb")
            .expect("h100")
            .gates
            .stress_tool,
        StressTool::GpuFryer
    );
    let bad = builtin.replacen(
        "[sku.gates]\n",
        "[sku.gates]\nstress_tool = \"prime95\"\n",
        1,
    );
    let err = kiln_health::SkuCatalog::from_toml(&bad, "test").expect_err("unknown tool");
    let chain = format!(
        "{err}: {}",
        std::error::Error::source(&err)
            .map(|s| s.to_string())
            .unwrap_or_default()
    );
    assert!(
        chain.contains("prime95") || chain.contains("stress_tool"),
        "{chain}"
    );
}
