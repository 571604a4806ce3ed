//! Checks under load, per GPU: the PCIe link under load, NVLink error-counter growth over the run, and the power
//! drawn under load.
//!
//! A tick is **under load** for a GPU when NVML reported its utilisation at or above [`LOAD_UTIL_MIN_PCT`].
//! Evidence without utilisation (written before kiln read it) falls back to the middle of the run: the ticks left
//! after dropping the first and last [`WINDOW_EDGE_SHARE`] of them (warm-up and wind-down). A GPU whose
//! utilisation was reported but never reached the floor was not loaded by the stress tool: the PCIe and power
//! checks fail for it, since burn-in proved nothing about it under load.
//!
//! Readings a document does not carry ("not reported"): a real NVML always reports the current PCIe link, so
//! missing PCIe under load fails; missing NVLink counters are a note on a SKU without NVLink (`nvlink_links = 0`)
//! and a failure otherwise.

use serde_json::{Value, json};

use crate::nvml::GpuSample;
use crate::sku::SkuProfile;
use crate::verdict::{Check, CheckStatus};

/// Utilisation at or above which a tick counts as under load, percent.
pub const LOAD_UTIL_MIN_PCT: u32 = 50;

/// Share of ticks dropped at each end of the run when utilisation is not in the evidence.
pub const WINDOW_EDGE_SHARE: f64 = 0.10;

/// How the loaded ticks of a GPU were chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoadBasis {
    /// Ticks whose utilisation reached [`LOAD_UTIL_MIN_PCT`].
    Utilisation,
    /// No utilisation in the evidence: the middle of the run.
    MiddleOfRun,
}

impl LoadBasis {
    pub(crate) fn name(self) -> &'static str {
        match self {
            LoadBasis::Utilisation => "utilisation",
            LoadBasis::MiddleOfRun => "middle_of_run",
        }
    }
}

/// The samples of one GPU (in tick order) taken under load, and how they were chosen.
pub fn loaded_samples<'a>(samples: &[&'a GpuSample]) -> (Vec<&'a GpuSample>, LoadBasis) {
    if samples.iter().any(|s| s.gpu_util_pct.is_some()) {
        let loaded = samples
            .iter()
            .filter(|s| s.gpu_util_pct.is_some_and(|u| u >= LOAD_UTIL_MIN_PCT))
            .copied()
            .collect();
        return (loaded, LoadBasis::Utilisation);
    }
    let edge = (samples.len() as f64 * WINDOW_EDGE_SHARE).floor() as usize;
    let middle = samples[edge..samples.len() - edge].to_vec();
    (middle, LoadBasis::MiddleOfRun)
}

/// The under-load checks of GPU `subject` from its successful samples in tick order.
pub fn judge_under_load(samples: &[&GpuSample], subject: &str, p: &SkuProfile) -> Vec<Check> {
    let (loaded, basis) = loaded_samples(samples);
    let load =
        json!({ "basis": basis.name(), "loaded_ticks": loaded.len(), "ticks": samples.len() });
    vec![
        pcie_under_load(&loaded, &load, subject, p),
        power_under_load(&loaded, &load, subject, p),
        nvlink_errors(samples, subject, p),
    ]
}

pub(crate) fn never_loaded(name: &str, subject: &str, load: &Value, expected: Value) -> Check {
    Check::fail(
        name,
        subject,
        json!({ "load": load }),
        Some(expected),
        "the GPU was never under load during burn-in (utilisation below the floor on every tick): the stress \
         tool did not exercise it",
    )
}

fn pcie_under_load(loaded: &[&GpuSample], load: &Value, g: &str, p: &SkuProfile) -> Check {
    const NAME: &str = "burnin.pcie_under_load";
    let expected = json!({ "gen": p.pcie_gen, "width": p.pcie_width });
    if loaded.is_empty() {
        return never_loaded(NAME, g, load, expected);
    }
    let generation = loaded.iter().filter_map(|s| s.pcie_gen_current).max();
    let width = loaded.iter().filter_map(|s| s.pcie_width_current).max();
    let measured = json!({ "gen": generation, "width": width, "load": load });
    match (generation, width) {
        (Some(gen_), Some(w)) => Check::judged(
            gen_ >= p.pcie_gen && w >= p.pcie_width,
            NAME,
            g,
            measured,
            Some(expected),
            if gen_ >= p.pcie_gen && w >= p.pcie_width {
                "PCIe link reached the SKU's generation and width under load"
            } else {
                "PCIe link stayed below the SKU's generation or width under load (downtrained link)"
            },
        ),
        _ => Check::fail(
            NAME,
            g,
            measured,
            Some(expected),
            "the current PCIe link generation or width was not reported under load (NVML always reports it)",
        ),
    }
}

fn power_under_load(loaded: &[&GpuSample], load: &Value, g: &str, p: &SkuProfile) -> Check {
    const NAME: &str = "burnin.power_under_load";
    let floor = p.power_load_floor_w();
    let expected = json!({ "min_w": floor, "limit_w": p.power_limit_w });
    if loaded.is_empty() {
        return never_loaded(NAME, g, load, expected);
    }
    let mut power: Vec<f64> = loaded.iter().map(|s| s.power_w).collect();
    power.sort_by(f64::total_cmp);
    let median = power[power.len() / 2];
    Check::judged(
        median >= floor,
        NAME,
        g,
        json!({ "median_w": median, "load": load }),
        Some(expected),
        if median >= floor {
            "median power draw under load reached the SKU's floor"
        } else {
            "median power draw under load stayed below the SKU's floor (the GPU is not doing the work)"
        },
    )
}

fn nvlink_errors(samples: &[&GpuSample], g: &str, p: &SkuProfile) -> Check {
    const NAME: &str = "burnin.nvlink_errors";
    let gates = &p.gates;
    let expected = json!({
        "crc_growth_max": gates.nvlink_crc_growth_max,
        "replay_growth_max": gates.nvlink_replay_growth_max,
        "recovery_growth_max": gates.nvlink_recovery_growth_max,
    });
    let mut counts = samples.iter().filter_map(|s| s.nvlink_errors);
    let (Some(first), last) = (counts.next(), counts.next_back()) else {
        return if p.nvlink_links == 0 {
            Check::new(
                NAME,
                g,
                CheckStatus::Note,
                Value::Null,
                None,
                "no NVLink error counters reported (the SKU has no NVLink)",
            )
        } else {
            Check::fail(
                NAME,
                g,
                Value::Null,
                Some(expected),
                "NVLink error counters were not reported during burn-in (the SKU has NVLink)",
            )
        };
    };
    let last = last.unwrap_or(first);
    let crc = last.crc.saturating_sub(first.crc);
    let replay = last.replay.saturating_sub(first.replay);
    let recovery = last.recovery.saturating_sub(first.recovery);
    let ok = crc <= gates.nvlink_crc_growth_max
        && replay <= gates.nvlink_replay_growth_max
        && recovery <= gates.nvlink_recovery_growth_max;
    Check::judged(
        ok,
        NAME,
        g,
        json!({
            "crc_growth": crc,
            "replay_growth": replay,
            "recovery_growth": recovery,
            "first": first,
            "last": last,
        }),
        Some(expected),
        if ok {
            "NVLink error counters stayed within the profile's growth limits"
        } else {
            "NVLink error counters grew past the profile's limits during burn-in"
        },
    )
}
