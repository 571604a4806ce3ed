//! Scenario files: N GPUs of a SKU, idle and load values, and faults injected at given times.
//!
//! Load mode: while the load file exists, GPUs report their load values (utilisation, temperatures, power,
//! clocks) and their PCIe link at `pcie_gen`; idle, they report the idle values and the link downshifted to
//! `pcie_gen_idle`, as real GPUs do. Faults that show only under load: `pcie_downtrain`, `low_power`, and
//! `nvlink_errors` (whose counters grow with the time spent under load).

use std::path::{Path, PathBuf};

use serde::Deserialize;

/// A scenario: what every GPU reports, and which faults to inject when.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// NVML device name every GPU reports.
    pub gpu_name: String,
    /// How many GPUs the node has.
    pub gpu_count: u32,
    /// Framebuffer size per GPU, MiB.
    pub memory_total_mib: u64,
    /// VBIOS version string.
    #[serde(default = "default_vbios")]
    pub vbios: String,
    /// Driver version string.
    #[serde(default = "default_driver")]
    pub driver_version: String,
    /// PCIe generation: the max, and the current one under load unless a fault lowers it.
    pub pcie_gen: u32,
    /// Current PCIe generation while idle (real GPUs downshift the link to save power); never above `pcie_gen`.
    #[serde(default = "default_pcie_gen_idle")]
    pub pcie_gen_idle: u32,
    /// PCIe link width (max, and current unless a fault lowers it).
    pub pcie_width: u32,
    /// GPU utilisation while idle, percent.
    #[serde(default)]
    pub util_idle_pct: u32,
    /// GPU utilisation under load, percent.
    #[serde(default = "default_util_load")]
    pub util_load_pct: u32,
    /// NVLink links per GPU (all active unless a fault takes one down).
    pub nvlink_links: u32,
    /// Whether `nvmlDeviceGetNvLinkErrorCounter` answers (per link); when false it answers NOT_SUPPORTED and
    /// only the all-link totals (field values `NVML_FI_DEV_NVLINK_*_ERROR_COUNT_TOTAL`) report the counters.
    #[serde(default = "default_true")]
    pub nvlink_counters_per_link: bool,
    /// GPU temperature when idle / under load, °C.
    #[serde(default = "default_idle_temp")]
    pub temp_idle_c: u32,
    /// GPU temperature under load, °C.
    #[serde(default = "default_load_temp")]
    pub temp_load_c: u32,
    /// HBM temperature when idle, °C.
    #[serde(default = "default_idle_mem_temp")]
    pub memory_temp_idle_c: u32,
    /// HBM temperature under load, °C.
    #[serde(default = "default_load_mem_temp")]
    pub memory_temp_load_c: u32,
    /// Slowdown temperature threshold NVML reports, °C.
    #[serde(default = "default_slowdown")]
    pub temp_slowdown_c: u32,
    /// Power draw when idle, W.
    #[serde(default = "default_idle_power")]
    pub power_idle_w: u32,
    /// Power draw under load, W.
    #[serde(default = "default_load_power")]
    pub power_load_w: u32,
    /// SM clock when idle, MHz.
    #[serde(default = "default_idle_clock")]
    pub sm_clock_idle_mhz: u32,
    /// SM clock under load (and the max clock), MHz.
    pub sm_clock_max_mhz: u32,
    /// Scenario seconds per real second, so tests compress time (XID at t = 20 s arrives after 20 / scale s).
    #[serde(default = "default_scale")]
    pub time_scale: f64,
    /// GPUs are "under load" while this file exists (the fake stress tool creates it). Relative paths are
    /// relative to the scenario file. Absent: never under load.
    #[serde(default)]
    pub load_file: Option<PathBuf>,
    /// Injected faults.
    #[serde(default)]
    pub fault: Vec<Fault>,
}

fn default_true() -> bool {
    true
}
fn default_pcie_gen_idle() -> u32 {
    1
}
fn default_util_load() -> u32 {
    100
}
fn default_vbios() -> String {
    "96.00.99.00.01".to_string()
}
fn default_driver() -> String {
    "550.54.15".to_string()
}
fn default_idle_temp() -> u32 {
    33
}
fn default_load_temp() -> u32 {
    68
}
fn default_idle_mem_temp() -> u32 {
    36
}
fn default_load_mem_temp() -> u32 {
    74
}
fn default_slowdown() -> u32 {
    87
}
fn default_idle_power() -> u32 {
    72
}
fn default_load_power() -> u32 {
    640
}
fn default_idle_clock() -> u32 {
    345
}
fn default_scale() -> f64 {
    1.0
}

/// One injected fault on one GPU, active from `at_s` scenario seconds after nvmlInit.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Fault {
    /// A critical XID event.
    Xid {
        /// GPU index.
        gpu: u32,
        /// Scenario time it fires.
        #[serde(default)]
        at_s: f64,
        /// XID number.
        xid: u64,
    },
    /// Pending row remap (needs a reset).
    RowRemapPending {
        /// GPU index.
        gpu: u32,
    },
    /// Row remap failure.
    RowRemapFailure {
        /// GPU index.
        gpu: u32,
    },
    /// Uncorrectable remaps already done.
    RowRemapsUncorrectable {
        /// GPU index.
        gpu: u32,
        /// Count.
        count: u32,
    },
    /// Retired pages.
    RetiredPages {
        /// GPU index.
        gpu: u32,
        /// Pages retired for multiple single-bit errors.
        #[serde(default)]
        single_bit: u32,
        /// Pages retired for double-bit errors.
        #[serde(default)]
        double_bit: u32,
        /// A retirement is pending.
        #[serde(default)]
        pending: bool,
    },
    /// Uncorrectable ECC errors appear (volatile and aggregate counters rise).
    EccUncorrectable {
        /// GPU index.
        gpu: u32,
        /// Scenario time they appear.
        #[serde(default)]
        at_s: f64,
        /// How many.
        count: u64,
    },
    /// The PCIe link trained at a lower width.
    PcieWidth {
        /// GPU index.
        gpu: u32,
        /// Current width.
        width: u32,
    },
    /// The PCIe link trained at a lower generation.
    PcieGen {
        /// GPU index.
        gpu: u32,
        /// Current generation.
        generation: u32,
    },
    /// One NVLink link inactive.
    NvlinkDown {
        /// GPU index.
        gpu: u32,
        /// Link number.
        link: u32,
    },
    /// Thermal throttling under load: hot, slow, HW thermal slowdown reason set.
    ThermalThrottle {
        /// GPU index.
        gpu: u32,
        /// Temperature while throttling, °C.
        temp_c: u32,
        /// SM clock while throttling, MHz.
        sm_clock_mhz: u32,
    },
    /// HBM overheating under load.
    HbmHot {
        /// GPU index.
        gpu: u32,
        /// HBM temperature under load, °C.
        temp_c: u32,
    },
    /// Power-brake slowdown under load.
    PowerBrake {
        /// GPU index.
        gpu: u32,
    },
    /// The PCIe link trained below the SKU's: under load it stays at `gen` (idle it downshifts as usual, and
    /// the maximum NVML reports stays full, so only a check under load sees it) and at `width` lanes (a trained
    /// width does not change with load: idle too).
    PcieDowntrain {
        /// GPU index.
        gpu: u32,
        /// Generation the link stays at under load.
        #[serde(default, rename = "gen", alias = "generation")]
        generation: Option<u32>,
        /// Width the link trained at.
        #[serde(default)]
        width: Option<u32>,
    },
    /// NVLink error counters grow while the GPU is under load, at these rates per scenario second of load
    /// (reported on one link; kiln sums over links).
    NvlinkErrors {
        /// GPU index.
        gpu: u32,
        /// The link they appear on.
        #[serde(default)]
        link: u32,
        /// CRC errors (reported as flit CRC) per second under load.
        #[serde(default)]
        crc_per_s: f64,
        /// Replays per second under load.
        #[serde(default)]
        replay_per_s: f64,
        /// Recoveries (link retrains) per second under load.
        #[serde(default)]
        recovery_per_s: f64,
    },
    /// The GPU draws only `power_w` under load (it is not doing the work).
    LowPower {
        /// GPU index.
        gpu: u32,
        /// Power draw under load, W.
        power_w: u32,
    },
    /// The GPU falls off the bus: every call about it fails with GPU_IS_LOST from then on.
    GpuLost {
        /// GPU index.
        gpu: u32,
        /// Scenario time it goes.
        #[serde(default)]
        at_s: f64,
    },
}

impl Scenario {
    /// Parses a scenario; relative `load_file` paths are resolved against `base_dir`.
    pub fn from_toml(text: &str, base_dir: &Path) -> Result<Self, String> {
        let mut s: Scenario = toml::from_str(text).map_err(|e| e.to_string())?;
        if let Some(load) = &s.load_file
            && load.is_relative()
        {
            s.load_file = Some(base_dir.join(load));
        }
        if !(s.time_scale.is_finite() && s.time_scale > 0.0) {
            return Err("time_scale must be positive".to_string());
        }
        if s.pcie_gen_idle > s.pcie_gen {
            return Err(format!(
                "pcie_gen_idle ({}) is above pcie_gen ({})",
                s.pcie_gen_idle, s.pcie_gen
            ));
        }
        if s.util_idle_pct > 100 || s.util_load_pct > 100 {
            return Err("util_idle_pct and util_load_pct are percentages (0..=100)".to_string());
        }
        for f in &s.fault {
            if let Fault::NvlinkErrors {
                crc_per_s,
                replay_per_s,
                recovery_per_s,
                ..
            } = f
                && [crc_per_s, replay_per_s, recovery_per_s]
                    .iter()
                    .any(|r| !(r.is_finite() && **r >= 0.0))
            {
                return Err("nvlink_errors rates must be finite and not negative".to_string());
            }
        }
        Ok(s)
    }

    /// Current PCIe generation (`width` false) or width (`width` true) of a GPU now: a `pcie_gen`/`pcie_width`
    /// fault fixes it; otherwise the link runs at `pcie_gen` under load and `pcie_gen_idle` idle, capped by a
    /// `pcie_downtrain` fault.
    pub fn pcie_current(&self, gpu: u32, width: bool) -> u32 {
        let fixed = self.faults_for(gpu).find_map(|f| match (f, width) {
            (Fault::PcieWidth { width: w, .. }, true) => Some(*w),
            (Fault::PcieGen { generation, .. }, false) => Some(*generation),
            _ => None,
        });
        if let Some(v) = fixed {
            return v;
        }
        let cap = self.faults_for(gpu).find_map(|f| match f {
            Fault::PcieDowntrain {
                generation: g,
                width: w,
                ..
            } => {
                if width {
                    *w
                } else {
                    *g
                }
            }
            _ => None,
        });
        let normal = match (width, self.under_load()) {
            (true, _) => self.pcie_width,
            (false, true) => self.pcie_gen,
            (false, false) => self.pcie_gen_idle,
        };
        cap.map_or(normal, |c| normal.min(c))
    }

    /// GPU utilisation now, percent.
    pub fn utilisation(&self) -> u32 {
        if self.under_load() {
            self.util_load_pct
        } else {
            self.util_idle_pct
        }
    }

    /// Power draw now, W.
    pub fn power_w(&self, gpu: u32) -> u32 {
        if !self.under_load() {
            return self.power_idle_w;
        }
        self.faults_for(gpu)
            .find_map(|f| match f {
                Fault::LowPower { power_w, .. } => Some(*power_w),
                _ => None,
            })
            .unwrap_or(self.power_load_w)
    }

    /// An NVLink error counter of one link after `load_s` scenario seconds under load. `counter` is NVML's
    /// `nvmlNvLinkErrorCounter_t`: 0 replay, 1 recovery, 2 CRC flit, 3 CRC data, 4 ECC data.
    pub fn nvlink_error_count(&self, gpu: u32, link: u32, counter: u32, load_s: f64) -> u64 {
        self.faults_for(gpu)
            .filter_map(|f| match f {
                Fault::NvlinkErrors {
                    link: l,
                    crc_per_s,
                    replay_per_s,
                    recovery_per_s,
                    ..
                } if *l == link => match counter {
                    0 => Some(*replay_per_s),
                    1 => Some(*recovery_per_s),
                    2 => Some(*crc_per_s),
                    _ => None,
                },
                _ => None,
            })
            .map(|rate| (rate * load_s.max(0.0)).floor() as u64)
            .sum()
    }

    /// Whether GPUs are under load now.
    pub fn under_load(&self) -> bool {
        self.load_file.as_ref().is_some_and(|p| p.exists())
    }

    /// Faults for one GPU.
    pub fn faults_for(&self, gpu: u32) -> impl Iterator<Item = &Fault> {
        self.fault.iter().filter(move |f| f.gpu() == gpu)
    }

    /// True when the GPU has fallen off the bus at scenario time `t_s`.
    pub fn lost(&self, gpu: u32, t_s: f64) -> bool {
        self.faults_for(gpu)
            .any(|f| matches!(f, Fault::GpuLost { at_s, .. } if *at_s <= t_s))
    }

    /// Uncorrectable ECC errors at `t_s`.
    pub fn ecc_uncorrectable(&self, gpu: u32, t_s: f64) -> u64 {
        self.faults_for(gpu)
            .filter_map(|f| match f {
                Fault::EccUncorrectable { at_s, count, .. } if *at_s <= t_s => Some(*count),
                _ => None,
            })
            .sum()
    }

    /// The thermal throttle fault of a GPU, when it applies (only under load).
    pub fn throttle(&self, gpu: u32) -> Option<(u32, u32)> {
        if !self.under_load() {
            return None;
        }
        self.faults_for(gpu).find_map(|f| match f {
            Fault::ThermalThrottle {
                temp_c,
                sm_clock_mhz,
                ..
            } => Some((*temp_c, *sm_clock_mhz)),
            _ => None,
        })
    }

    /// HBM temperature now.
    pub fn memory_temp(&self, gpu: u32) -> u32 {
        if !self.under_load() {
            return self.memory_temp_idle_c;
        }
        self.faults_for(gpu)
            .find_map(|f| match f {
                Fault::HbmHot { temp_c, .. } => Some(*temp_c),
                _ => None,
            })
            .unwrap_or(self.memory_temp_load_c)
    }

    /// True when a power-brake fault applies (only under load).
    pub fn power_brake(&self, gpu: u32) -> bool {
        self.under_load()
            && self
                .faults_for(gpu)
                .any(|f| matches!(f, Fault::PowerBrake { .. }))
    }
}

impl Fault {
    /// The GPU this fault is on.
    pub fn gpu(&self) -> u32 {
        match self {
            Fault::Xid { gpu, .. }
            | Fault::RowRemapPending { gpu }
            | Fault::RowRemapFailure { gpu }
            | Fault::RowRemapsUncorrectable { gpu, .. }
            | Fault::RetiredPages { gpu, .. }
            | Fault::EccUncorrectable { gpu, .. }
            | Fault::PcieWidth { gpu, .. }
            | Fault::PcieGen { gpu, .. }
            | Fault::NvlinkDown { gpu, .. }
            | Fault::ThermalThrottle { gpu, .. }
            | Fault::HbmHot { gpu, .. }
            | Fault::PowerBrake { gpu }
            | Fault::PcieDowntrain { gpu, .. }
            | Fault::NvlinkErrors { gpu, .. }
            | Fault::LowPower { gpu, .. }
            | Fault::GpuLost { gpu, .. } => *gpu,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = r#"
gpu_name = "NVIDIA H100 80GB HBM3"
gpu_count = 8
memory_total_mib = 81559
pcie_gen = 5
pcie_width = 16
nvlink_links = 18
sm_clock_max_mhz = 1980
"#;

    #[test]
    fn faults_apply_from_their_time_and_only_to_their_gpu() {
        let text = format!(
            "{BASE}\n[[fault]]\nkind = \"gpu_lost\"\ngpu = 3\nat_s = 20\n\n[[fault]]\nkind = \"ecc_uncorrectable\"\ngpu = 1\ncount = 2\nat_s = 5\n"
        );
        let s = Scenario::from_toml(&text, Path::new("/tmp")).expect("parses");
        assert!(!s.lost(3, 19.9));
        assert!(s.lost(3, 20.0));
        assert!(!s.lost(2, 100.0));
        assert_eq!(s.ecc_uncorrectable(1, 4.0), 0);
        assert_eq!(s.ecc_uncorrectable(1, 5.0), 2);
    }

    #[test]
    fn load_file_is_relative_to_the_scenario_and_gates_throttling() {
        let dir = std::env::temp_dir().join(format!("fake-nvml-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let text = format!(
            "load_file = \"busy\"\n{BASE}\n[[fault]]\nkind = \"thermal_throttle\"\ngpu = 0\ntemp_c = 93\nsm_clock_mhz = 1100\n"
        );
        let s = Scenario::from_toml(&text, &dir).expect("parses");
        assert_eq!(s.load_file.as_deref(), Some(dir.join("busy").as_path()));
        assert_eq!(s.throttle(0), None);
        std::fs::write(dir.join("busy"), "").expect("touch");
        assert_eq!(s.throttle(0), Some((93, 1100)));
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }

    #[test]
    fn load_mode_downshifts_idle_and_applies_load_only_faults() {
        let dir = std::env::temp_dir().join(format!("fake-nvml-load-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let text = format!(
            "load_file = \"busy\"\n{BASE}\n[[fault]]\nkind = \"pcie_downtrain\"\ngpu = 1\ngen = 3\n\n\
             [[fault]]\nkind = \"low_power\"\ngpu = 2\npower_w = 150\n\n\
             [[fault]]\nkind = \"nvlink_errors\"\ngpu = 4\nlink = 2\ncrc_per_s = 10\nrecovery_per_s = 0.5\n"
        );
        let s = Scenario::from_toml(&text, &dir).expect("parses");
        assert_eq!((s.pcie_current(0, false), s.pcie_current(1, false)), (1, 1));
        assert_eq!((s.utilisation(), s.power_w(2)), (0, 72));
        std::fs::write(dir.join("busy"), "").expect("touch");
        assert_eq!((s.pcie_current(0, false), s.pcie_current(1, false)), (5, 3));
        assert_eq!(s.pcie_current(1, true), 16);
        assert_eq!(
            (s.utilisation(), s.power_w(2), s.power_w(0)),
            (100, 150, 640)
        );
        assert_eq!(s.nvlink_error_count(4, 2, 2, 30.0), 300);
        assert_eq!(s.nvlink_error_count(4, 2, 1, 30.0), 15);
        assert_eq!(s.nvlink_error_count(4, 0, 2, 30.0), 0, "other link");
        assert_eq!(s.nvlink_error_count(3, 2, 2, 30.0), 0, "other GPU");
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }

    #[test]
    fn old_scenarios_still_parse_and_bad_load_values_are_rejected() {
        let old = format!(
            "{BASE}\n[[fault]]\nkind = \"pcie_gen\"\ngpu = 0\ngeneration = 3\n\n[[fault]]\nkind = \"pcie_width\"\ngpu = 0\nwidth = 8\n"
        );
        let s = Scenario::from_toml(&old, Path::new("/")).expect("old format parses");
        assert_eq!((s.pcie_gen_idle, s.util_load_pct), (1, 100));
        assert_eq!((s.pcie_current(0, false), s.pcie_current(0, true)), (3, 8));
        let alias = format!(
            "{BASE}\n[[fault]]\nkind = \"pcie_downtrain\"\ngpu = 0\ngeneration = 4\nwidth = 8\n"
        );
        let s = Scenario::from_toml(&alias, Path::new("/")).expect("alias parses");
        assert_eq!(
            s.pcie_current(0, true),
            8,
            "a trained width holds at idle too"
        );
        for bad in [
            format!("pcie_gen_idle = 6\n{BASE}"),
            format!("util_load_pct = 101\n{BASE}"),
            format!("{BASE}\n[[fault]]\nkind = \"nvlink_errors\"\ngpu = 0\ncrc_per_s = -1\n"),
            format!("{BASE}\n[[fault]]\nkind = \"low_power\"\ngpu = 0\npower_w = 1\nwatts = 2\n"),
        ] {
            assert!(Scenario::from_toml(&bad, Path::new("/")).is_err(), "{bad}");
        }
    }

    #[test]
    fn unknown_fault_kinds_and_bad_scale_are_rejected() {
        let bad = format!("{BASE}\n[[fault]]\nkind = \"melted\"\ngpu = 0\n");
        assert!(Scenario::from_toml(&bad, Path::new("/")).is_err());
        let bad_scale = format!("time_scale = 0.0\n{BASE}");
        assert!(Scenario::from_toml(&bad_scale, Path::new("/")).is_err());
    }
}
