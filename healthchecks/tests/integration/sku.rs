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
