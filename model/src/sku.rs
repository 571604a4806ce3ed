//! Comparing what inspection found with what the node's SKU promises, mismatch by mismatch, in words a
//! technician can act on: "expected 8× NVIDIA H100 80GB HBM3, found 7; missing PCI 0000:9a:00.0".

use std::collections::BTreeMap;
use std::fmt;

use crate::Sku;
use serde::{Deserialize, Serialize};

use crate::Inspection;

/// What a node must have. Built from the inventory's [`Sku`] (GPUs) plus the site's minimums for the rest.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SkuExpectation {
    /// SKU id, for messages.
    pub sku_id: String,
    /// GPUs per node.
    pub gpu_count: usize,
    /// GPU product name (NVML's).
    pub gpu_model: String,
    /// PCI addresses the GPUs must sit at (from a known-good inspection of the same board); empty: any.
    pub gpu_bus_ids: Vec<String>,
    /// Least installed memory.
    pub min_memory_bytes: Option<u64>,
    /// Least number of physical NICs.
    pub min_nics: Option<usize>,
    /// Least link speed, counted over NICs whose link is up.
    pub min_nic_speed_mbps: Option<i64>,
    /// Least number of disks.
    pub min_disks: Option<usize>,
    /// Least size of each counted disk (smaller disks do not count).
    pub min_disk_bytes: Option<u64>,
}

impl From<&Sku> for SkuExpectation {
    fn from(sku: &Sku) -> Self {
        Self {
            sku_id: sku.id.clone(),
            gpu_count: usize::try_from(sku.gpu_count).unwrap_or(0),
            gpu_model: sku.gpu_model.clone(),
            ..Self::default()
        }
    }
}

/// One way a node differs from its SKU.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Mismatch {
    /// GPUs of the right model are missing, extra, of another model, or at unexpected addresses.
    Gpus {
        /// Expected count.
        expected: usize,
        /// Expected model.
        model: String,
        /// GPUs of the expected model found.
        found: usize,
        /// Other models found, with their addresses.
        other_models: BTreeMap<String, Vec<String>>,
        /// Expected addresses with no GPU.
        missing_bus_ids: Vec<String>,
        /// GPUs at addresses not expected.
        unexpected_bus_ids: Vec<String>,
    },
    /// Less memory than required.
    Memory {
        /// Required.
        expected_min_bytes: u64,
        /// Found.
        found_bytes: u64,
    },
    /// Fewer NICs at speed than required.
    Nics {
        /// Required count.
        expected_min: usize,
        /// Required speed, if any.
        min_speed_mbps: Option<i64>,
        /// NICs meeting it.
        found: usize,
        /// NICs below it (name and speed, `None` when the link is down).
        too_slow: Vec<(String, Option<i64>)>,
    },
    /// Fewer big-enough disks than required.
    Disks {
        /// Required count.
        expected_min: usize,
        /// Required size, if any.
        min_bytes: Option<u64>,
        /// Disks meeting it.
        found: usize,
    },
}

fn gib(bytes: u64) -> String {
    format!("{:.1} GiB", bytes as f64 / f64::from(1u32 << 30))
}

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Mismatch::Gpus {
                expected,
                model,
                found,
                other_models,
                missing_bus_ids,
                unexpected_bus_ids,
            } => {
                write!(f, "expected {expected}× {model}, found {found}")?;
                for (other, buses) in other_models {
                    write!(f, "; also {}× {other} at {}", buses.len(), buses.join(", "))?;
                }
                if !missing_bus_ids.is_empty() {
                    write!(f, "; missing PCI {}", missing_bus_ids.join(", "))?;
                }
                if !unexpected_bus_ids.is_empty() {
                    write!(f, "; unexpected PCI {}", unexpected_bus_ids.join(", "))?;
                }
                Ok(())
            }
            Mismatch::Memory {
                expected_min_bytes,
                found_bytes,
            } => write!(
                f,
                "expected at least {} of memory, found {}",
                gib(*expected_min_bytes),
                gib(*found_bytes)
            ),
            Mismatch::Nics {
                expected_min,
                min_speed_mbps,
                found,
                too_slow,
            } => {
                match min_speed_mbps {
                    Some(speed) => write!(
                        f,
                        "expected at least {expected_min} NICs at {speed} Mb/s or more, found {found}"
                    )?,
                    None => write!(f, "expected at least {expected_min} NICs, found {found}")?,
                }
                for (name, speed) in too_slow {
                    match speed {
                        Some(speed) => write!(f, "; {name} at {speed} Mb/s")?,
                        None => write!(f, "; {name} link down")?,
                    }
                }
                Ok(())
            }
            Mismatch::Disks {
                expected_min,
                min_bytes,
                found,
            } => match min_bytes {
                Some(min) => write!(
                    f,
                    "expected at least {expected_min} disks of {} or more, found {found}",
                    gib(*min)
                ),
                None => write!(f, "expected at least {expected_min} disks, found {found}"),
            },
        }
    }
}

/// Every mismatch between `found` and `expected` (empty: the node matches its SKU).
pub fn compare(found: &Inspection, expected: &SkuExpectation) -> Vec<Mismatch> {
    let mut mismatches = Vec::new();
    let matching: Vec<&str> = found
        .gpus
        .iter()
        .filter(|gpu| gpu.model == expected.gpu_model)
        .map(|gpu| gpu.pci_bus_id.as_str())
        .collect();
    let mut other_models: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for gpu in found
        .gpus
        .iter()
        .filter(|gpu| gpu.model != expected.gpu_model)
    {
        other_models
            .entry(gpu.model.clone())
            .or_default()
            .push(gpu.pci_bus_id.clone());
    }
    let (missing_bus_ids, unexpected_bus_ids) = if expected.gpu_bus_ids.is_empty() {
        (Vec::new(), Vec::new())
    } else {
        let missing = expected
            .gpu_bus_ids
            .iter()
            .filter(|bus| !matching.contains(&bus.as_str()))
            .cloned()
            .collect();
        let unexpected = matching
            .iter()
            .filter(|bus| !expected.gpu_bus_ids.iter().any(|e| e == *bus))
            .map(|bus| (*bus).to_string())
            .collect();
        (missing, unexpected)
    };
    if matching.len() != expected.gpu_count
        || !other_models.is_empty()
        || !missing_bus_ids.is_empty()
        || !unexpected_bus_ids.is_empty()
    {
        mismatches.push(Mismatch::Gpus {
            expected: expected.gpu_count,
            model: expected.gpu_model.clone(),
            found: matching.len(),
            other_models,
            missing_bus_ids,
            unexpected_bus_ids,
        });
    }
    if let Some(min) = expected.min_memory_bytes
        && found.memory_bytes < min
    {
        mismatches.push(Mismatch::Memory {
            expected_min_bytes: min,
            found_bytes: found.memory_bytes,
        });
    }
    if let Some(min) = expected.min_nics {
        let fast_enough = |speed: Option<i64>| match expected.min_nic_speed_mbps {
            None => true,
            Some(required) => speed.is_some_and(|s| s >= required),
        };
        let found_count = found
            .nics
            .iter()
            .filter(|n| fast_enough(n.speed_mbps))
            .count();
        if found_count < min {
            mismatches.push(Mismatch::Nics {
                expected_min: min,
                min_speed_mbps: expected.min_nic_speed_mbps,
                found: found_count,
                too_slow: found
                    .nics
                    .iter()
                    .filter(|n| !fast_enough(n.speed_mbps))
                    .map(|n| (n.name.clone(), n.speed_mbps))
                    .collect(),
            });
        }
    }
    if let Some(min) = expected.min_disks {
        let found_count = found
            .disks
            .iter()
            .filter(|d| expected.min_disk_bytes.is_none_or(|m| d.size_bytes >= m))
            .count();
        if found_count < min {
            mismatches.push(Mismatch::Disks {
                expected_min: min,
                min_bytes: expected.min_disk_bytes,
                found: found_count,
            });
        }
    }
    mismatches
}

/// The mismatches as one line per problem, each prefixed with where the node sits (e.g. `slot 4`).
pub fn describe(place: &str, mismatches: &[Mismatch]) -> Vec<String> {
    mismatches.iter().map(|m| format!("{place}: {m}")).collect()
}
