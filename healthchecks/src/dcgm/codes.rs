//! DCGM diagnostic error ids (`error_id` in `dcgmi diag -j`) and their `DCGM_FR_*` names, for the ids a
//! hardware acceptance run meets most (DCGM's `dcgm_errors.h` documents the full list; unknown ids are kept as
//! numbers). Severity and category numbers are named from the same documentation.

/// (id, name) for common failure ids, sorted by id.
const FAILURE_NAMES: &[(u32, &str)] = &[
    (0, "DCGM_FR_OK"),
    (1, "DCGM_FR_UNKNOWN"),
    (3, "DCGM_FR_PCI_REPLAY_RATE"),
    (4, "DCGM_FR_VOLATILE_DBE_DETECTED"),
    (5, "DCGM_FR_VOLATILE_SBE_DETECTED"),
    (6, "DCGM_FR_PENDING_PAGE_RETIREMENTS"),
    (7, "DCGM_FR_RETIRED_PAGES_LIMIT"),
    (8, "DCGM_FR_RETIRED_PAGES_DBE_LIMIT"),
    (9, "DCGM_FR_CORRUPT_INFOROM"),
    (10, "DCGM_FR_CLOCKS_EVENT_THERMAL"),
    (12, "DCGM_FR_CLOCKS_EVENT_POWER"),
    (13, "DCGM_FR_NVLINK_ERROR_THRESHOLD"),
    (14, "DCGM_FR_NVLINK_DOWN"),
    (15, "DCGM_FR_NVSWITCH_FATAL_ERROR"),
    (16, "DCGM_FR_NVSWITCH_NON_FATAL_ERROR"),
    (20, "DCGM_FR_DEVICE_COUNT_MISMATCH"),
    (23, "DCGM_FR_DENYLISTED_DRIVER"),
    (25, "DCGM_FR_GRAPHICS_PROCESSES"),
    (28, "DCGM_FR_BAD_CUDA_ENV"),
    (29, "DCGM_FR_PERSISTENCE_MODE"),
    (30, "DCGM_FR_LOW_BANDWIDTH"),
    (31, "DCGM_FR_HIGH_LATENCY"),
    (40, "DCGM_FR_THERMAL_VIOLATIONS"),
    (42, "DCGM_FR_TEMP_VIOLATION"),
    (43, "DCGM_FR_CLOCKS_EVENT_VIOLATION"),
    (44, "DCGM_FR_INTERNAL"),
    (45, "DCGM_FR_PCIE_GENERATION"),
    (46, "DCGM_FR_PCIE_WIDTH"),
    (47, "DCGM_FR_ABORTED"),
    (48, "DCGM_FR_TEST_DISABLED"),
    (50, "DCGM_FR_STRESS_LEVEL"),
    (51, "DCGM_FR_CUDA_API"),
    (52, "DCGM_FR_FAULTY_MEMORY"),
    (55, "DCGM_FR_ECC_DISABLED"),
    (56, "DCGM_FR_MEMORY_ALLOC"),
    (57, "DCGM_FR_CUDA_DBE"),
    (58, "DCGM_FR_MEMORY_MISMATCH"),
    (59, "DCGM_FR_CUDA_DEVICE"),
    (62, "DCGM_FR_MEMORY_BANDWIDTH"),
    (63, "DCGM_FR_TARGET_POWER"),
    (66, "DCGM_FR_CUDA_CONTEXT"),
    (70, "DCGM_FR_NVLINK_CRC_ERROR_THRESHOLD"),
    (71, "DCGM_FR_NVLINK_ERROR_CRITICAL"),
    (72, "DCGM_FR_ENFORCED_POWER_LIMIT"),
    (79, "DCGM_FR_L1TAG_MISCOMPARE"),
    (80, "DCGM_FR_ROW_REMAP_FAILURE"),
    (81, "DCGM_FR_UNCONTAINED_ERROR"),
    (83, "DCGM_FR_DBE_PENDING_PAGE_RETIREMENTS"),
    (84, "DCGM_FR_UNCORRECTABLE_ROW_REMAP"),
    (85, "DCGM_FR_PENDING_ROW_REMAP"),
    (86, "DCGM_FR_BROKEN_P2P_MEMORY_DEVICE"),
    (87, "DCGM_FR_BROKEN_P2P_WRITER_DEVICE"),
    (95, "DCGM_FR_EUD_TEST_FAILED"),
    (98, "DCGM_FR_PCIE_H_REPLAY_VIOLATION"),
    (99, "DCGM_FR_GPU_EXPECTED_NVLINKS_UP"),
    (100, "DCGM_FR_NVSWITCH_EXPECTED_NVLINKS_UP"),
    (101, "DCGM_FR_XID_ERROR"),
    (102, "DCGM_FR_SBE_VIOLATION"),
    (103, "DCGM_FR_DBE_VIOLATION"),
    (104, "DCGM_FR_PCIE_REPLAY_VIOLATION"),
    (105, "DCGM_FR_SBE_THRESHOLD_VIOLATION"),
    (106, "DCGM_FR_DBE_THRESHOLD_VIOLATION"),
    (107, "DCGM_FR_PCIE_REPLAY_THRESHOLD_VIOLATION"),
    (108, "DCGM_FR_CUDA_FM_NOT_INITIALIZED"),
    (109, "DCGM_FR_SXID_ERROR"),
    (110, "DCGM_FR_GFLOPS_THRESHOLD_VIOLATION"),
    (111, "DCGM_FR_NAN_VALUE"),
    (112, "DCGM_FR_FABRIC_MANAGER_TRAINING_ERROR"),
    (117, "DCGM_FR_TEST_SKIPPED"),
    (118, "DCGM_FR_SRAM_THRESHOLD"),
    (120, "DCGM_FR_FALLEN_OFF_BUS"),
    (125, "DCGM_FR_GPU_RECOVERY_RESET"),
    (126, "DCGM_FR_GPU_RECOVERY_REBOOT"),
    (129, "DCGM_FR_NCCL_ERROR"),
    (131, "DCGM_FR_CONTAINED_ERROR"),
    (132, "DCGM_FR_UNCORRECTABLE_ROW_REMAP_LIMIT"),
];

/// The `DCGM_FR_*` name of an error id, when kiln's table has it.
pub fn failure_name(id: u32) -> Option<&'static str> {
    FAILURE_NAMES
        .binary_search_by_key(&id, |(i, _)| *i)
        .ok()
        .map(|i| FAILURE_NAMES[i].1)
}

/// The name of an error severity (`error_severity`): what DCGM says to do.
pub fn severity_name(severity: u32) -> Option<&'static str> {
    Some(match severity {
        0 => "none",
        1 => "monitor",
        2 => "isolate",
        3 => "unknown",
        4 => "triage",
        5 => "config",
        6 => "reset",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_sorted_and_looks_up() {
        assert!(FAILURE_NAMES.windows(2).all(|w| w[0].0 < w[1].0));
        assert_eq!(failure_name(52), Some("DCGM_FR_FAULTY_MEMORY"));
        assert_eq!(failure_name(14), Some("DCGM_FR_NVLINK_DOWN"));
        assert_eq!(failure_name(9999), None);
        assert_eq!(severity_name(2), Some("isolate"));
    }
}
