//! Static NVML checks of a node against its SKU profile: inventory, memory health, links, thermals, XIDs.

use std::path::Path;

use serde_json::json;

use super::{GpuNvml, GpuSnapshot, THROTTLE_FAILING_MASK, XidEvent};
use crate::sku::SkuProfile;
use crate::verdict::{Check, CheckStatus, RunKind, Verdict, now_unix_s};
use crate::xid;

/// Runs every static check on the local node with the NVML library at `lib_path`.
///
/// Never panics and never errors: missing NVML, or a GPU that does not answer, is a failing check.
pub fn check_node(lib_path: &Path, profile: &SkuProfile) -> Verdict {
    let started = now_unix_s();
    let nvml = match GpuNvml::open(lib_path) {
        Ok(nvml) => nvml,
        Err(err) => {
            let reason = format!("{err}: {}", err_source(&err));
            tracing::error!(lib = %lib_path.display(), error = %reason, "NVML unavailable");
            let check = Check::fail(
                "nvml.available",
                "node",
                reason,
                None,
                "NVML cannot be loaded: driver missing or broken, node cannot be verified",
            );
            return Verdict::new(
                RunKind::NvmlCheck,
                &profile.id,
                started,
                vec![check],
                json!({}),
            );
        }
    };
    let mut checks = vec![Check::pass(
        "nvml.available",
        "node",
        lib_path.display().to_string(),
        None,
        "NVML loaded",
    )];
    let count = match nvml.gpu_count() {
        Ok(n) => n,
        Err(err) => {
            checks.push(Check::fail(
                "gpu.count",
                "node",
                err.to_string(),
                None,
                "NVML cannot count GPUs",
            ));
            return Verdict::new(RunKind::NvmlCheck, &profile.id, started, checks, json!({}));
        }
    };
    checks.push(Check::judged(
        count == profile.gpus_per_node,
        "gpu.count",
        "node",
        count,
        Some(json!(profile.gpus_per_node)),
        if count == profile.gpus_per_node {
            "all GPUs present"
        } else {
            "GPU count differs from the SKU"
        },
    ));
    let xids = match nvml.xid_watch() {
        Ok(watch) => watch.drain(),
        Err(err) => {
            checks.push(Check::fail(
                "xid.watch",
                "node",
                err.to_string(),
                None,
                "cannot watch XID events",
            ));
            Vec::new()
        }
    };
    let mut snapshots = Vec::new();
    for index in 0..count {
        match nvml.snapshot(index) {
            Ok(snap) => {
                checks.extend(judge_gpu(&snap, profile));
                snapshots.push(snap);
            }
            Err(err) => checks.push(Check::fail(
                "gpu.responds",
                &format!("gpu{index}"),
                err.to_string(),
                None,
                "GPU does not answer NVML (fallen off the bus or broken)",
            )),
        }
    }
    checks.extend(judge_xids(&xids));
    let evidence = json!({
        "driver_version": nvml.driver_version().ok(),
        "gpus": snapshots,
        "xids": xids,
    });
    Verdict::new(RunKind::NvmlCheck, &profile.id, started, checks, evidence)
}

fn err_source(err: &super::NvmlOpenError) -> String {
    use std::error::Error as _;
    err.source().map(ToString::to_string).unwrap_or_default()
}

/// Checks of one GPU snapshot against the profile.
pub fn judge_gpu(s: &GpuSnapshot, p: &SkuProfile) -> Vec<Check> {
    let gpu = format!("gpu{}", s.index);
    let g = gpu.as_str();
    let mut c = Vec::new();
    c.push(Check::judged(
        s.name.contains(&p.nvml_name_contains),
        "inventory.name",
        g,
        s.name.clone(),
        Some(json!(p.nvml_name_contains)),
        "GPU model must match the SKU",
    ));
    c.push(Check::judged(
        s.memory_total_mib >= p.memory_min_mib,
        "inventory.memory",
        g,
        s.memory_total_mib,
        Some(json!({ "min_mib": p.memory_min_mib })),
        "framebuffer size must match the SKU",
    ));
    let vbios_ok = p.vbios_allowed.is_empty() || p.vbios_allowed.contains(&s.vbios);
    c.push(Check::judged(
        vbios_ok,
        "inventory.vbios",
        g,
        s.vbios.clone(),
        (!p.vbios_allowed.is_empty()).then(|| json!(p.vbios_allowed)),
        "VBIOS must be an approved version",
    ));
    c.push(Check::judged(
        s.ecc_uncorrected_volatile == 0,
        "ecc.uncorrectable",
        g,
        s.ecc_uncorrected_volatile,
        Some(json!(0)),
        "no uncorrectable ECC errors since boot",
    ));
    let retired = s.retired_pages_sbe + s.retired_pages_dbe;
    c.push(Check::judged(
        retired < p.retired_pages_max,
        "retired_pages.total",
        g,
        retired,
        Some(json!({ "below": p.retired_pages_max })),
        "retired pages (single + double bit) must stay below the limit",
    ));
    c.push(Check::judged(
        !s.retired_pages_pending,
        "retired_pages.pending",
        g,
        s.retired_pages_pending,
        Some(json!(false)),
        "a page retirement is pending: reboot needed",
    ));
    match &s.remapped_rows {
        Some(r) => {
            c.push(Check::judged(
                !r.pending,
                "row_remap.pending",
                g,
                r.pending,
                Some(json!(false)),
                "a row remap is pending: GPU reset needed",
            ));
            c.push(Check::judged(
                !r.failure,
                "row_remap.failure",
                g,
                r.failure,
                Some(json!(false)),
                "row remapping failed: RMA",
            ));
            c.push(Check::judged(
                u64::from(r.uncorrectable) < p.remap_uncorrectable_max,
                "row_remap.uncorrectable",
                g,
                r.uncorrectable,
                Some(json!({ "below": p.remap_uncorrectable_max })),
                "uncorrectable row remaps must stay below the limit",
            ));
        }
        None => c.push(Check::new(
            "row_remap.pending",
            g,
            CheckStatus::Note,
            serde_json::Value::Null,
            None,
            "row remap state not reported by this GPU/driver",
        )),
    }
    c.push(Check::judged(
        s.pcie_gen_max >= p.pcie_gen,
        "pcie.gen",
        g,
        json!({ "max": s.pcie_gen_max, "current": s.pcie_gen_current }),
        Some(json!(p.pcie_gen)),
        "PCIe link must support the SKU's generation (idle links may downshift)",
    ));
    c.push(Check::judged(
        s.pcie_width_current >= p.pcie_width,
        "pcie.width",
        g,
        s.pcie_width_current,
        Some(json!(p.pcie_width)),
        "PCIe link trained below full width",
    ));
    let active = s.nvlink_active.iter().filter(|a| **a).count();
    let inactive: Vec<usize> = s
        .nvlink_active
        .iter()
        .enumerate()
        .filter(|(_, a)| !**a)
        .map(|(i, _)| i)
        .collect();
    let links_ok = active as u64 >= u64::from(p.nvlink_links) && inactive.is_empty();
    c.push(Check::judged(
        links_ok,
        "nvlink.active",
        g,
        json!({ "active": active, "inactive_links": inactive }),
        Some(json!(p.nvlink_links)),
        if links_ok {
            "all NVLink links active"
        } else {
            "NVLink link(s) down"
        },
    ));
    c.push(Check::judged(
        s.sample.temp_c < p.max_gpu_temp_c,
        "thermal.temp",
        g,
        s.sample.temp_c,
        Some(json!({ "below_c": p.max_gpu_temp_c })),
        "GPU temperature must stay below the SKU's slowdown limit",
    ));
    if let Some(hbm) = s.sample.memory_temp_c {
        c.push(Check::judged(
            hbm < p.max_memory_temp_c,
            "thermal.memory_temp",
            g,
            hbm,
            Some(json!({ "below_c": p.max_memory_temp_c })),
            "HBM temperature must stay below the SKU's limit",
        ));
    }
    let bad_throttle = s.sample.throttle_reasons & THROTTLE_FAILING_MASK;
    c.push(Check::judged(
        bad_throttle == 0,
        "clocks.throttle",
        g,
        format!("{:#x}", s.sample.throttle_reasons),
        Some(json!(format!("no bits of {THROTTLE_FAILING_MASK:#x}"))),
        "no hardware slowdown, thermal or power-brake throttling",
    ));
    c
}

/// One check per XID event, judged by the XID catalog.
pub fn judge_xids(events: &[XidEvent]) -> Vec<Check> {
    events
        .iter()
        .map(|e| {
            let rule = xid::classify(e.xid);
            let status = if rule.action.fails() {
                CheckStatus::Fail
            } else {
                CheckStatus::Note
            };
            let subject = if e.gpu == u32::MAX {
                "node".to_string()
            } else {
                format!("gpu{}", e.gpu)
            };
            Check::new(
                "xid",
                &subject,
                status,
                e.xid,
                Some(json!(format!("{:?}", rule.action).to_lowercase())),
                &format!("XID {}: {}", e.xid, rule.meaning),
            )
        })
        .collect()
}
