//! SKU profiles: what a healthy node of a GPU model looks like, as data (`profiles/skus.toml`, overridable).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The profiles shipped with kiln.
const BUILTIN_PROFILES: &str = include_str!("../profiles/skus.toml");

/// Why profiles could not be loaded or a SKU found.
#[derive(Debug, thiserror::Error)]
pub enum SkuError {
    /// The profile file could not be read.
    #[error("cannot read SKU profile file {path}")]
    Read {
        /// The file named.
        path: PathBuf,
        /// The I/O failure.
        #[source]
        source: std::io::Error,
    },
    /// The profile text is not valid profile TOML.
    #[error("SKU profiles in {origin} are malformed")]
    Malformed {
        /// Where the text came from (a path or `built-in`).
        origin: String,
        /// What the TOML reader rejected.
        #[source]
        source: toml::de::Error,
    },
    /// A profile is internally inconsistent.
    #[error("SKU profile {id} is invalid: {reason}")]
    Invalid {
        /// The profile's id.
        id: String,
        /// What is wrong with it.
        reason: String,
    },
    /// No profile has the id asked for.
    #[error("no SKU profile with id {id:?} (known: {known})")]
    Unknown {
        /// The id asked for.
        id: String,
        /// The ids that exist, comma-separated.
        known: String,
    },
}

/// An NCCL busbw floor for runs spanning at least `nodes` nodes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NcclThreshold {
    /// Node count this floor starts to apply at.
    pub nodes: u32,
    /// Minimum all_reduce bus bandwidth at large messages, GB/s.
    pub min_busbw_gbps: f64,
}

/// Expected inventory and limits for one GPU SKU.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SkuProfile {
    /// Stable id shared with the inventory (`h100-sxm-80gb`).
    pub id: String,
    /// Human-readable name.
    pub display_name: String,
    /// Substring NVML's device name must contain.
    pub nvml_name_contains: String,
    /// GPUs a node of this SKU has.
    pub gpus_per_node: u32,
    /// Minimum total framebuffer per GPU, MiB (NVML reports slightly less than the marketing size).
    pub memory_min_mib: u64,
    /// VBIOS versions accepted; empty accepts any.
    #[serde(default)]
    pub vbios_allowed: Vec<String>,
    /// Expected PCIe generation (current link under load and max).
    pub pcie_gen: u32,
    /// Expected PCIe link width (lanes).
    pub pcie_width: u32,
    /// NVLink links per GPU that must be active.
    pub nvlink_links: u32,
    /// GPU core temperature limit under load, °C.
    pub max_gpu_temp_c: u32,
    /// HBM temperature limit under load, °C.
    pub max_memory_temp_c: u32,
    /// Expected sustained SM clock under load, MHz.
    pub sm_clock_expected_mhz: u32,
    /// Fraction of the expected SM clock below which a throttled GPU fails.
    pub sm_clock_min_ratio: f64,
    /// Board power limit, W.
    pub power_limit_w: u32,
    /// Retired pages (single + double bit) at or above which the GPU fails.
    pub retired_pages_max: u64,
    /// Uncorrectable row remaps at or above which the GPU fails.
    pub remap_uncorrectable_max: u64,
    /// Default burn-in duration, seconds.
    pub burn_in_duration_s: u64,
    /// Message size from which NCCL rows are judged, bytes.
    pub nccl_min_size_bytes: u64,
    /// NCCL busbw floors by node count.
    pub nccl: Vec<NcclThreshold>,
    /// Seconds the server stays powered off between tenants (wiping's cold power-off): long enough for GPU
    /// HBM and host DRAM to lose their contents. Defaults to [`DEFAULT_COLD_OFF_S`].
    #[serde(default = "default_cold_off_s")]
    pub cold_off_s: u64,
    /// Gates and limits of the deeper checks (DCGM, bandwidth, stress spread, fleet, burn-in under load); every
    /// key is optional, and a profile without a `gates` table gets [`SkuGates::default`].
    #[serde(default)]
    pub gates: SkuGates,
}

/// Per-SKU gates of the deeper checks, as data (`[sku.gates]` in the profile file). Unset keys take the
/// defaults documented on each field; `None` thresholds mean "not gated for this SKU".
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SkuGates {
    /// `dcgmi diag -r N` level run at acceptance (1..=4); default [`DEFAULT_DCGM_LEVEL`] (r3, about 15 min).
    pub dcgm_level: u8,
    /// The burn-in's stress tool (`gpu_burn`, `gpu_fryer`, `dcgm_targeted_stress`); default gpu_burn. Its
    /// output parser's per-GPU figures feed the verdict ([`crate::stress`]).
    pub stress_tool: crate::stress::StressTool,
    /// nvbandwidth host→device floor, GB/s.
    pub nvbandwidth_h2d_min_gbps: Option<f64>,
    /// nvbandwidth device→host floor, GB/s.
    pub nvbandwidth_d2h_min_gbps: Option<f64>,
    /// nvbandwidth device↔device (NVLink) floor, GB/s.
    pub nvbandwidth_d2d_min_gbps: Option<f64>,
    /// `ib_write_bw` floor per HCA port, Gb/s.
    pub ib_write_bw_min_gbps: Option<f64>,
    /// HCA ports a node of this SKU has for the compute fabric.
    pub ib_ports: Option<u32>,
    /// Each GPU's stress-tool throughput must be at least this share of the node's best GPU; default
    /// [`DEFAULT_STRESS_GPU_MIN_RATIO`] (gpu-fryer's 10%).
    pub stress_gpu_min_ratio: f64,
    /// A node more than this share below its hall's median (NCCL busbw, stress throughput) is flagged; default
    /// [`DEFAULT_FLEET_OUTLIER_RATIO`].
    pub fleet_outlier_ratio: f64,
    /// Whether a fleet outlier fails acceptance (true) or is only flagged (false, the default).
    pub fleet_gate: bool,
    /// Median power draw under load must reach this, W; `None`: [`POWER_LOAD_DEFAULT_RATIO`] × `power_limit_w`
    /// (see [`SkuProfile::power_load_floor_w`]).
    pub power_load_min_w: Option<f64>,
    /// Most growth of the NVLink CRC error counters (flit + data, summed over links) during a burn-in; default
    /// [`DEFAULT_NVLINK_CRC_GROWTH_MAX`].
    pub nvlink_crc_growth_max: u64,
    /// Most growth of the NVLink replay counter (summed over links) during a burn-in; default
    /// [`DEFAULT_NVLINK_REPLAY_GROWTH_MAX`].
    pub nvlink_replay_growth_max: u64,
    /// Most growth of the NVLink recovery counter (link retrains, summed over links) during a burn-in; default
    /// [`DEFAULT_NVLINK_RECOVERY_GROWTH_MAX`] (any retrain under load fails).
    pub nvlink_recovery_growth_max: u64,
}

/// DCGM diag level when a profile does not set one (r3).
pub const DEFAULT_DCGM_LEVEL: u8 = 3;
/// Share of the node's best GPU each GPU's stress throughput must reach by default.
pub const DEFAULT_STRESS_GPU_MIN_RATIO: f64 = 0.90;
/// Share below the hall median past which a node is a fleet outlier by default.
pub const DEFAULT_FLEET_OUTLIER_RATIO: f64 = 0.05;
/// Share of the board power limit the median power under load must reach when `power_load_min_w` is unset.
pub const POWER_LOAD_DEFAULT_RATIO: f64 = 0.70;
/// Default most growth of NVLink CRC errors during a burn-in.
pub const DEFAULT_NVLINK_CRC_GROWTH_MAX: u64 = 100;
/// Default most growth of NVLink replays during a burn-in.
pub const DEFAULT_NVLINK_REPLAY_GROWTH_MAX: u64 = 100;
/// Default most growth of NVLink recoveries during a burn-in.
pub const DEFAULT_NVLINK_RECOVERY_GROWTH_MAX: u64 = 0;

impl Default for SkuGates {
    fn default() -> Self {
        Self {
            dcgm_level: DEFAULT_DCGM_LEVEL,
            stress_tool: crate::stress::StressTool::GpuBurn,
            nvbandwidth_h2d_min_gbps: None,
            nvbandwidth_d2h_min_gbps: None,
            nvbandwidth_d2d_min_gbps: None,
            ib_write_bw_min_gbps: None,
            ib_ports: None,
            stress_gpu_min_ratio: DEFAULT_STRESS_GPU_MIN_RATIO,
            fleet_outlier_ratio: DEFAULT_FLEET_OUTLIER_RATIO,
            fleet_gate: false,
            power_load_min_w: None,
            nvlink_crc_growth_max: DEFAULT_NVLINK_CRC_GROWTH_MAX,
            nvlink_replay_growth_max: DEFAULT_NVLINK_REPLAY_GROWTH_MAX,
            nvlink_recovery_growth_max: DEFAULT_NVLINK_RECOVERY_GROWTH_MAX,
        }
    }
}

impl SkuGates {
    /// Why these gates are inconsistent, for `power_limit_w`; `None` when they are fine.
    fn problem(&self, power_limit_w: u32) -> Option<String> {
        if !(1..=4).contains(&self.dcgm_level) {
            return Some(format!(
                "gates.dcgm_level must be 1..=4 (dcgmi diag -r), got {}",
                self.dcgm_level
            ));
        }
        let ratios = [
            ("stress_gpu_min_ratio", self.stress_gpu_min_ratio),
            ("fleet_outlier_ratio", self.fleet_outlier_ratio),
        ];
        for (key, v) in ratios {
            if !(v.is_finite() && v > 0.0 && v <= 1.0) {
                return Some(format!("gates.{key} must be within (0, 1], got {v}"));
            }
        }
        let floors = [
            ("nvbandwidth_h2d_min_gbps", self.nvbandwidth_h2d_min_gbps),
            ("nvbandwidth_d2h_min_gbps", self.nvbandwidth_d2h_min_gbps),
            ("nvbandwidth_d2d_min_gbps", self.nvbandwidth_d2d_min_gbps),
            ("ib_write_bw_min_gbps", self.ib_write_bw_min_gbps),
            ("power_load_min_w", self.power_load_min_w),
        ];
        for (key, v) in floors {
            if let Some(v) = v
                && !(v.is_finite() && v > 0.0)
            {
                return Some(format!("gates.{key} must be positive, got {v}"));
            }
        }
        if let Some(w) = self.power_load_min_w
            && w > f64::from(power_limit_w)
        {
            return Some(format!(
                "gates.power_load_min_w ({w} W) is above power_limit_w ({power_limit_w} W): no healthy board \
                 could pass"
            ));
        }
        if self.ib_ports == Some(0) {
            return Some("gates.ib_ports must be at least 1 when set".to_string());
        }
        None
    }
}

/// The cold power-off between tenants when a profile does not set one, seconds.
pub const DEFAULT_COLD_OFF_S: u64 = 30;

fn default_cold_off_s() -> u64 {
    DEFAULT_COLD_OFF_S
}

impl SkuProfile {
    /// The busbw floor for a run over `nodes` nodes: the entry with the largest node count not above `nodes`.
    pub fn nccl_threshold(&self, nodes: u32) -> Option<&NcclThreshold> {
        self.nccl
            .iter()
            .filter(|t| t.nodes <= nodes.max(1))
            .max_by_key(|t| t.nodes)
    }

    /// The floor of the median power draw under load, W: `gates.power_load_min_w`, else
    /// [`POWER_LOAD_DEFAULT_RATIO`] × `power_limit_w`.
    pub fn power_load_floor_w(&self) -> f64 {
        // Rounded to 0.1 W so that 0.7 × 700 reads 490, not 489.99999999999994.
        self.gates.power_load_min_w.unwrap_or_else(|| {
            (f64::from(self.power_limit_w) * POWER_LOAD_DEFAULT_RATIO * 10.0).round() / 10.0
        })
    }

    fn validate(&self) -> Result<(), SkuError> {
        let invalid = |reason: &str| SkuError::Invalid {
            id: self.id.clone(),
            reason: reason.to_string(),
        };
        if self.id.is_empty() {
            return Err(invalid("empty id"));
        }
        if self.nvml_name_contains.is_empty() {
            return Err(invalid(
                "nvml_name_contains is empty (it would match every GPU)",
            ));
        }
        if self.gpus_per_node == 0 {
            return Err(invalid("gpus_per_node is 0"));
        }
        if !(0.0..=1.0).contains(&self.sm_clock_min_ratio) {
            return Err(invalid("sm_clock_min_ratio must be within 0..=1"));
        }
        if self.cold_off_s == 0 {
            return Err(invalid(
                "cold_off_s must be at least 1 (memory must lose power between tenants)",
            ));
        }
        if self.nccl.is_empty() || !self.nccl.iter().any(|t| t.nodes <= 1) {
            return Err(invalid(
                "nccl thresholds must include one for a single node",
            ));
        }
        if self
            .nccl
            .iter()
            .any(|t| !t.min_busbw_gbps.is_finite() || t.min_busbw_gbps <= 0.0)
        {
            return Err(invalid("nccl min_busbw_gbps must be positive"));
        }
        if self.power_limit_w == 0 {
            return Err(invalid("power_limit_w is 0"));
        }
        if let Some(reason) = self.gates.problem(self.power_limit_w) {
            return Err(invalid(&reason));
        }
        Ok(())
    }
}

#[derive(Debug, Deserialize)]
struct ProfileFile {
    sku: Vec<SkuProfile>,
}

/// A set of SKU profiles, looked up by id.
#[derive(Debug, Clone)]
pub struct SkuCatalog {
    profiles: Vec<SkuProfile>,
}

impl SkuCatalog {
    /// The profiles shipped with kiln.
    pub fn builtin() -> Result<Self, SkuError> {
        Self::from_toml(BUILTIN_PROFILES, "built-in")
    }

    /// Profiles from TOML text; `origin` names the source in errors.
    pub fn from_toml(text: &str, origin: &str) -> Result<Self, SkuError> {
        let file: ProfileFile = toml::from_str(text).map_err(|source| SkuError::Malformed {
            origin: origin.to_string(),
            source,
        })?;
        for p in &file.sku {
            p.validate()?;
        }
        Ok(Self { profiles: file.sku })
    }

    /// The built-in profiles with those in `path` layered on top (a profile with the same id replaces the built-in).
    pub fn builtin_with_overrides(path: &Path) -> Result<Self, SkuError> {
        let text = std::fs::read_to_string(path).map_err(|source| SkuError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let overrides = Self::from_toml(&text, &path.display().to_string())?;
        let mut catalog = Self::builtin()?;
        for p in overrides.profiles {
            catalog.profiles.retain(|b| b.id != p.id);
            catalog.profiles.push(p);
        }
        Ok(catalog)
    }

    /// The profile with this id.
    pub fn get(&self, id: &str) -> Result<&SkuProfile, SkuError> {
        self.profiles
            .iter()
            .find(|p| p.id == id)
            .ok_or_else(|| SkuError::Unknown {
                id: id.to_string(),
                known: self.ids().join(", "),
            })
    }

    /// The profile whose NVML name pattern matches a device name, if any; when several match, the longest
    /// pattern wins (`NVIDIA GB200` contains both `B200` and `GB200`: it is a GB200).
    pub fn match_nvml_name(&self, name: &str) -> Option<&SkuProfile> {
        // Reversed: max_by_key keeps the last of equals, and the first listed profile wins a tie.
        self.profiles
            .iter()
            .rev()
            .filter(|p| name.contains(&p.nvml_name_contains))
            .max_by_key(|p| p.nvml_name_contains.len())
    }

    /// All profile ids.
    pub fn ids(&self) -> Vec<&str> {
        self.profiles.iter().map(|p| p.id.as_str()).collect()
    }
}
