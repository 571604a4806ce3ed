//! The GPU tools a virtual node's installed OS has besides the burn-in collector: DCGM's diagnostic
//! (`dcgmi diag -r N -j`, JSON of DCGM 3.x's shape) and nvbandwidth (its text matrices). Healthy figures
//! everywhere; the provisioner parses and judges them like a real node's.

use serde_json::{Value, json};

use crate::node::VirtualNode;

/// The DCGM version the simulated nodes report.
pub const DCGM_VERSION: &str = "3.3.7";

/// Host↔device copy bandwidth per GPU a healthy simulated node reaches, GB/s (PCIe Gen5 x16).
pub const H2D_GBPS: f64 = 55.3;

/// Device↔device copy bandwidth between two GPUs of a healthy simulated node, GB/s (NVLink).
pub const D2D_GBPS: f64 = 389.6;

/// DCGM's deployment tests (every level).
const DEPLOYMENT_TESTS: [&str; 9] = [
    "Denylist",
    "NVML Library",
    "CUDA Main Library",
    "Permissions and OS Blocks",
    "Persistence Mode",
    "Environmental Variables",
    "Page Retirement/Row Remap",
    "Graphics Processes",
    "Inforom",
];

/// DCGM's stress tests (level 3 and up).
const STRESS_TESTS: [&str; 4] = [
    "Targeted Stress",
    "Targeted Power",
    "Memory Bandwidth",
    "Diagnostic",
];

/// `dcgmi diag -r level -j` of `node`: every test of the level passing on every GPU.
pub fn dcgm_diag(node: &VirtualNode, level: u8, driver: &str) -> Value {
    let per_gpu = || -> Vec<Value> {
        (0..node.gpus)
            .map(|gpu| json!({ "gpu_id": gpu.to_string(), "status": "Pass" }))
            .collect()
    };
    let once = || json!([{ "status": "Pass" }]);
    let deployment: Vec<Value> = DEPLOYMENT_TESTS
        .iter()
        .map(|name| json!({ "name": name, "results": once() }))
        .collect();
    let mut categories = vec![json!({ "category": "Deployment", "tests": deployment })];
    if level >= 2 {
        categories.push(json!({
            "category": "Integration",
            "tests": [{ "name": "PCIe", "results": per_gpu() }],
        }));
        categories.push(json!({
            "category": "Hardware",
            "tests": [{ "name": "GPU Memory", "results": per_gpu() }],
        }));
    }
    if level >= 3 {
        let stress: Vec<Value> = STRESS_TESTS
            .iter()
            .map(|name| json!({ "name": name, "results": per_gpu() }))
            .collect();
        categories.push(json!({ "category": "Stress", "tests": stress }));
    }
    json!({
        "DCGM GPU Diagnostic": { "test_categories": categories },
        "version": DCGM_VERSION,
        "Driver Version Detected": driver,
        "GPU Device IDs": (0..node.gpus).map(|_| "2330").collect::<Vec<_>>(),
    })
}

/// nvbandwidth's output on `node`: host-to-device, device-to-host and device-to-device copy-engine matrices.
pub fn nvbandwidth(node: &VirtualNode, gpu_name: &str) -> String {
    let gpus = node.gpus as usize;
    let mut out = format!(
        "nvbandwidth Version: v0.7\nBuilt from Git version: v0.7\n\nCUDA Runtime Version: 12040\n\
         CUDA Driver Version: 12040\nDriver Version: {}\n\n",
        crate::answers::DRIVER_VERSION
    );
    for gpu in 0..gpus {
        out.push_str(&format!(
            "Device {gpu}: {gpu_name} (00000000:{:02x}:00)\n",
            0x18 + gpu * 0x10
        ));
    }
    out.push('\n');
    let header: String = (0..gpus).map(|g| format!("{g:>10}")).collect();
    let row = |cells: Vec<String>| -> String { cells.iter().map(|c| format!("{c:>10}")).collect() };
    for (name, title) in [
        (
            "host_to_device_memcpy_ce",
            "memcpy CE CPU(row) -> GPU(column) bandwidth (GB/s)",
        ),
        (
            "device_to_host_memcpy_ce",
            "memcpy CE CPU(row) <- GPU(column) bandwidth (GB/s)",
        ),
    ] {
        out.push_str(&format!("Running {name}.\n{title}\n           {header}\n"));
        out.push_str(&format!(
            "         0 {}\n\n",
            row((0..gpus).map(|_| format!("{H2D_GBPS:.2}")).collect())
        ));
        out.push_str(&format!("SUM {name} {:.2}\n\n", H2D_GBPS * gpus as f64));
    }
    let name = "device_to_device_memcpy_read_ce";
    out.push_str(&format!(
        "Running {name}.\nmemcpy CE GPU(row) <- GPU(column) bandwidth (GB/s)\n           {header}\n"
    ));
    for from in 0..gpus {
        let cells = (0..gpus)
            .map(|to| {
                if to == from {
                    "N/A".to_string()
                } else {
                    format!("{D2D_GBPS:.2}")
                }
            })
            .collect();
        out.push_str(&format!("{from:>10} {}\n", row(cells)));
    }
    let pairs = gpus * gpus.saturating_sub(1);
    out.push_str(&format!("\nSUM {name} {:.2}\n\n", D2D_GBPS * pairs as f64));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::test_node;
    use kiln_health::bandwidth::{NvbandwidthFloors, judge_nvbandwidth, parse_nvbandwidth};
    use kiln_health::dcgm::{judge_dcgm, parse_diag};

    #[test]
    fn the_simulated_dcgm_diag_reads_as_a_passing_diagnostic() {
        let node = test_node(None);
        for level in 1..=4 {
            let text = format!("{:#}", dcgm_diag(&node, level, "550.127.05"));
            let diag = parse_diag(&text).expect("kiln reads the simulated diag");
            let checks = judge_dcgm(&diag, 8);
            assert!(
                checks.iter().all(|c| !c.failed()),
                "level {level}: {checks:?}"
            );
        }
        let r3 = parse_diag(&dcgm_diag(&node, 3, "x").to_string()).expect("diag");
        assert!(r3.tests.iter().any(|t| t.name == "Targeted Stress"));
        assert!(
            r3.tests
                .iter()
                .filter(|t| t.name == "GPU Memory")
                .all(|t| t.results.len() == 8)
        );
    }

    #[test]
    fn the_simulated_nvbandwidth_meets_the_h100_floors_and_fails_higher_ones() {
        let text = nvbandwidth(&test_node(None), "NVIDIA H100 80GB HBM3");
        let result = parse_nvbandwidth(&text).expect("kiln reads the simulated output");
        let floors = NvbandwidthFloors {
            h2d_min_gbps: Some(48.0),
            d2h_min_gbps: Some(48.0),
            d2d_min_gbps: Some(335.0),
        };
        let checks = judge_nvbandwidth(&result, &floors);
        assert!(!checks.is_empty());
        assert!(checks.iter().all(|c| !c.failed()), "{checks:?}");
        let too_high = NvbandwidthFloors {
            d2d_min_gbps: Some(400.0),
            ..floors
        };
        assert!(
            judge_nvbandwidth(&result, &too_high)
                .iter()
                .any(|c| c.failed())
        );
    }
}
