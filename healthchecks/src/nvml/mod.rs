//! NVML access: open the library at run time (real driver or fake-nvml), read per-GPU snapshots and samples,
//! and watch for XID events. Judging lives in [`checks`].

pub mod checks;
mod raw;

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use nvml_wrapper::Nvml;
use nvml_wrapper::bitmasks::event::EventTypes;
use nvml_wrapper::enum_wrappers::device::{
    Clock, EccCounter, MemoryError, RetirementCause, TemperatureSensor,
};
use nvml_wrapper::error::NvmlError;
use nvml_wrapper::struct_wrappers::event::EventData;
use serde::{Deserialize, Serialize};

pub use checks::{check_node, judge_gpu};
pub use raw::RemappedRows;

/// Environment variable naming the NVML library file (the `--nvml-lib` flag wins over it).
pub const NVML_LIB_ENV: &str = "KILN_NVML_LIB";

/// Library loaded when neither `--nvml-lib` nor `KILN_NVML_LIB` names one.
pub const DEFAULT_NVML_LIB: &str = "libnvidia-ml.so.1";

/// Most NVLink links any GPU has (NVML_NVLINK_MAX_LINKS).
const MAX_NVLINK_LINKS: u32 = 18;

/// Throttle reasons that mean the hardware is protecting itself (HW slowdown, SW/HW thermal, power brake).
pub const THROTTLE_FAILING_MASK: u64 = 0x8 | 0x20 | 0x40 | 0x80;

/// Why NVML could not be used at all.
#[derive(Debug, thiserror::Error)]
pub enum NvmlOpenError {
    /// The library could not be loaded or initialised.
    #[error("cannot load or initialise NVML from {path}")]
    Init {
        /// The library path tried.
        path: String,
        /// What nvml-wrapper reported.
        #[source]
        source: NvmlError,
    },
}

/// The library to load: the flag, else `KILN_NVML_LIB`, else the system's `libnvidia-ml.so.1`.
pub fn resolve_lib_path(flag: Option<&Path>) -> PathBuf {
    flag.map(Path::to_path_buf)
        .or_else(|| std::env::var_os(NVML_LIB_ENV).map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from(DEFAULT_NVML_LIB))
}

/// The SKU profile whose NVML name matches GPU 0 of the node, for `--sku` left out.
pub fn detect_sku(lib: &Path, catalog: &crate::sku::SkuCatalog) -> Result<String, String> {
    let nvml = GpuNvml::open(lib).map_err(|e| {
        use std::error::Error as _;
        format!(
            "{e}: {}",
            e.source().map(ToString::to_string).unwrap_or_default()
        )
    })?;
    let name = nvml
        .nvml
        .device_by_index(0)
        .and_then(|d| d.name())
        .map_err(|e| format!("cannot read GPU 0's name: {e}"))?;
    catalog
        .match_nvml_name(&name)
        .map(|p| p.id.clone())
        .ok_or_else(|| format!("no SKU profile matches GPU name {name:?}; pass --sku"))
}

/// An initialised NVML library.
#[derive(Debug)]
pub struct GpuNvml {
    nvml: Nvml,
    raw: Result<raw::RawNvml, String>,
    path: OsString,
}

/// Static facts and counters of one GPU.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GpuSnapshot {
    /// NVML index.
    pub index: u32,
    /// Device name (`NVIDIA H100 80GB HBM3`).
    pub name: String,
    /// GPU UUID.
    pub uuid: String,
    /// Board serial number.
    pub serial: String,
    /// VBIOS version.
    pub vbios: String,
    /// Total framebuffer, MiB.
    pub memory_total_mib: u64,
    /// Uncorrectable ECC errors since boot.
    pub ecc_uncorrected_volatile: u64,
    /// Uncorrectable ECC errors over the GPU's life.
    pub ecc_uncorrected_aggregate: u64,
    /// Pages retired for multiple single-bit errors.
    pub retired_pages_sbe: u64,
    /// Pages retired for double-bit errors.
    pub retired_pages_dbe: u64,
    /// A page retirement awaits a reboot.
    pub retired_pages_pending: bool,
    /// Row remapping state; `None` when the GPU or library does not report it.
    pub remapped_rows: Option<RemappedRows>,
    /// Current PCIe generation (idle GPUs may downshift).
    pub pcie_gen_current: u32,
    /// Maximum PCIe generation of the link.
    pub pcie_gen_max: u32,
    /// Current PCIe link width.
    pub pcie_width_current: u32,
    /// Maximum PCIe link width.
    pub pcie_width_max: u32,
    /// Active state per NVLink link, link number order.
    pub nvlink_active: Vec<bool>,
    /// The live readings at snapshot time.
    pub sample: GpuSample,
}

/// Live readings of one GPU at one instant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GpuSample {
    /// NVML index.
    pub index: u32,
    /// GPU temperature, °C.
    pub temp_c: u32,
    /// HBM temperature, °C; `None` when the GPU or driver does not report it.
    pub memory_temp_c: Option<u32>,
    /// Power draw, W.
    pub power_w: f64,
    /// SM clock, MHz.
    pub sm_clock_mhz: u32,
    /// NVML clock throttle reason bits.
    pub throttle_reasons: u64,
    /// Uncorrectable ECC errors since boot.
    pub ecc_uncorrected_volatile: u64,
    /// GPU utilisation over NVML's last sample period, percent; `None` when not reported (and in evidence
    /// written before kiln read it).
    #[serde(default)]
    pub gpu_util_pct: Option<u32>,
    /// Current PCIe link generation (idle GPUs downshift); `None` when not reported.
    #[serde(default)]
    pub pcie_gen_current: Option<u32>,
    /// Current PCIe link width, lanes; `None` when not reported.
    #[serde(default)]
    pub pcie_width_current: Option<u32>,
    /// NVLink error counters summed over the GPU's links; `None` when the GPU has no NVLink or does not report
    /// them.
    #[serde(default)]
    pub nvlink_errors: Option<NvlinkErrorCounts>,
}

/// NVLink data-link error counters of one GPU, summed over its links (NVML's counters since the last reset).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NvlinkErrorCounts {
    /// CRC errors: flow-control digits (`NVML_NVLINK_ERROR_DL_CRC_FLIT`) plus data (`…_DL_CRC_DATA`).
    pub crc: u64,
    /// Transmit replays (`NVML_NVLINK_ERROR_DL_REPLAY`).
    pub replay: u64,
    /// Transmit recoveries, i.e. link retrains (`NVML_NVLINK_ERROR_DL_RECOVERY`).
    pub recovery: u64,
}

/// An XID event seen on a GPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct XidEvent {
    /// GPU index (`u32::MAX` when NVML could not say which).
    pub gpu: u32,
    /// XID number (999 = unknown).
    pub xid: u64,
}

impl GpuNvml {
    /// Loads and initialises NVML from `path`.
    pub fn open(path: &Path) -> Result<Self, NvmlOpenError> {
        let path_os = path.as_os_str().to_os_string();
        let nvml = Nvml::builder()
            .lib_path(&path_os)
            .init()
            .map_err(|source| NvmlOpenError::Init {
                path: path.display().to_string(),
                source,
            })?;
        let raw = raw::RawNvml::open(&path_os);
        if let Err(err) = &raw {
            tracing::warn!(path = %path.display(), error = %err, "raw NVML bindings unavailable; row remap checks skipped");
        }
        Ok(Self {
            nvml,
            raw,
            path: path_os,
        })
    }

    /// The library path in use.
    pub fn path(&self) -> &OsString {
        &self.path
    }

    /// Number of GPUs NVML sees.
    pub fn gpu_count(&self) -> Result<u32, NvmlError> {
        self.nvml.device_count()
    }

    /// Driver version string.
    pub fn driver_version(&self) -> Result<String, NvmlError> {
        self.nvml.sys_driver_version()
    }

    /// Live readings of one GPU; an error means the GPU did not answer.
    pub fn sample(&self, index: u32) -> Result<GpuSample, NvmlError> {
        let d = self.nvml.device_by_index(index)?;
        Ok(GpuSample {
            index,
            temp_c: d.temperature(TemperatureSensor::Gpu)?,
            memory_temp_c: memory_temp(&d),
            power_w: f64::from(d.power_usage()?) / 1000.0,
            sm_clock_mhz: d.clock_info(Clock::SM)?,
            throttle_reasons: d.current_throttle_reasons()?.bits(),
            ecc_uncorrected_volatile: d
                .total_ecc_errors(MemoryError::Uncorrected, EccCounter::Volatile)?,
            gpu_util_pct: d.utilization_rates().ok().map(|u| u.gpu),
            pcie_gen_current: d.current_pcie_link_gen().ok(),
            pcie_width_current: d.current_pcie_link_width().ok(),
            nvlink_errors: nvlink_errors(&d, index),
        })
    }

    /// Everything kiln checks on one GPU; an error means the GPU did not answer a call it must answer.
    pub fn snapshot(&self, index: u32) -> Result<GpuSnapshot, NvmlError> {
        let d = self.nvml.device_by_index(index)?;
        let remapped_rows = match &self.raw {
            Ok(raw) => match raw.remapped_rows(&d) {
                Ok(r) => Some(r),
                Err(err) => {
                    tracing::warn!(gpu = index, error = %err, "row remap state unavailable");
                    None
                }
            },
            Err(_) => None,
        };
        let mut nvlink_active = Vec::new();
        for link in 0..MAX_NVLINK_LINKS {
            match d.link_wrapper_for(link).is_active() {
                Ok(active) => nvlink_active.push(active),
                // Links past the GPU's count answer InvalidArg / NotSupported.
                Err(NvmlError::InvalidArg | NvmlError::NotSupported) => break,
                Err(err) => return Err(err),
            }
        }
        Ok(GpuSnapshot {
            index,
            name: d.name()?,
            uuid: d.uuid()?,
            serial: d.serial()?,
            vbios: d.vbios_version()?,
            memory_total_mib: d.memory_info()?.total / (1024 * 1024),
            ecc_uncorrected_volatile: d
                .total_ecc_errors(MemoryError::Uncorrected, EccCounter::Volatile)?,
            ecc_uncorrected_aggregate: d
                .total_ecc_errors(MemoryError::Uncorrected, EccCounter::Aggregate)?,
            retired_pages_sbe: d
                .retired_pages(RetirementCause::MultipleSingleBitEccErrors)?
                .len() as u64,
            retired_pages_dbe: d.retired_pages(RetirementCause::DoubleBitEccError)?.len() as u64,
            retired_pages_pending: d.are_pages_pending_retired()?,
            remapped_rows,
            pcie_gen_current: d.current_pcie_link_gen()?,
            pcie_gen_max: d.max_pcie_link_gen()?,
            pcie_width_current: d.current_pcie_link_width()?,
            pcie_width_max: d.max_pcie_link_width()?,
            nvlink_active,
            sample: self.sample(index)?,
        })
    }

    /// Registers every GPU for critical XID events. A GPU that cannot register is logged and skipped.
    pub fn xid_watch(&self) -> Result<XidWatch<'_>, NvmlError> {
        let mut set = self.nvml.create_event_set()?;
        let mut handles = Vec::new();
        for index in 0..self.gpu_count()? {
            let Ok(device) = self.nvml.device_by_index(index) else {
                continue;
            };
            let key = raw::handle_key(&device);
            set = match device.register_events(EventTypes::CRITICAL_XID_ERROR, set) {
                Ok(set) => {
                    handles.push((key, index));
                    set
                }
                Err(err) => {
                    // nvml-wrapper frees the set when registration fails: start again with the GPUs so far.
                    tracing::warn!(gpu = index, error = %err.error, "cannot watch XID events");
                    let mut fresh = self.nvml.create_event_set()?;
                    let mut kept = Vec::new();
                    for (k, i) in handles.drain(..) {
                        let Ok(d) = self.nvml.device_by_index(i) else {
                            continue;
                        };
                        if let Ok(s) = d.register_events(EventTypes::CRITICAL_XID_ERROR, fresh) {
                            kept.push((k, i));
                            fresh = s;
                        } else {
                            fresh = self.nvml.create_event_set()?;
                        }
                    }
                    handles = kept;
                    fresh
                }
            };
        }
        Ok(XidWatch { set, handles })
    }
}

/// NVLink error counters summed over the GPU's links: per link (`nvmlDeviceGetNvLinkErrorCounter`), else NVML's
/// all-link totals as field values (`NVML_FI_DEV_NVLINK_*_ERROR_COUNT_TOTAL`, for drivers and GPUs that do not
/// answer the per-link call); `None` when neither answers.
fn nvlink_errors(device: &nvml_wrapper::Device<'_>, index: u32) -> Option<NvlinkErrorCounts> {
    per_link_nvlink_errors(device, index).or_else(|| total_nvlink_errors(device))
}

/// The all-link totals through field values: CRC flit (38), CRC data (45), replay (52), recovery (59).
fn total_nvlink_errors(device: &nvml_wrapper::Device<'_>) -> Option<NvlinkErrorCounts> {
    use nvml_wrapper::enums::device::SampleValue;
    use nvml_wrapper::structs::device::FieldId;
    let ids = [38, 45, 52, 59].map(FieldId);
    let values = device.field_values_for(&ids).ok()?;
    if values.len() != ids.len() {
        return None;
    }
    let mut v = [0u64; 4];
    for (slot, sample) in v.iter_mut().zip(values) {
        *slot = match sample.ok()?.value.ok()? {
            SampleValue::U64(x) => x,
            SampleValue::U32(x) => u64::from(x),
            SampleValue::I64(x) => u64::try_from(x).ok()?,
            SampleValue::F64(_) => return None,
        };
    }
    Some(NvlinkErrorCounts {
        crc: v[0].saturating_add(v[1]),
        replay: v[2],
        recovery: v[3],
    })
}

/// Per-link counters summed over the links that answer; `None` when the first link does not (no NVLink, or a
/// driver without the call) or a link fails in another way (a partial sum would understate growth).
fn per_link_nvlink_errors(
    device: &nvml_wrapper::Device<'_>,
    index: u32,
) -> Option<NvlinkErrorCounts> {
    use nvml_wrapper::enum_wrappers::nv_link::ErrorCounter;
    let mut sum = NvlinkErrorCounts::default();
    let mut links = 0;
    for link in 0..MAX_NVLINK_LINKS {
        let l = device.link_wrapper_for(link);
        let read = (|| {
            Ok::<_, NvmlError>(NvlinkErrorCounts {
                crc: l
                    .error_counter(ErrorCounter::DlCrcFlit)?
                    .saturating_add(l.error_counter(ErrorCounter::DlCrcData)?),
                replay: l.error_counter(ErrorCounter::DlReplay)?,
                recovery: l.error_counter(ErrorCounter::DlRecovery)?,
            })
        })();
        match read {
            Ok(c) => {
                links += 1;
                sum.crc = sum.crc.saturating_add(c.crc);
                sum.replay = sum.replay.saturating_add(c.replay);
                sum.recovery = sum.recovery.saturating_add(c.recovery);
            }
            // Links past the GPU's count answer InvalidArg / NotSupported.
            Err(NvmlError::InvalidArg | NvmlError::NotSupported) => break,
            Err(err) => {
                tracing::debug!(gpu = index, link, error = %err, "NVLink error counters unavailable");
                return None;
            }
        }
    }
    (links > 0).then_some(sum)
}

/// HBM temperature through NVML field values (NVML_FI_DEV_MEMORY_TEMP); not every GPU reports it.
fn memory_temp(device: &nvml_wrapper::Device<'_>) -> Option<u32> {
    use nvml_wrapper::enums::device::SampleValue;
    use nvml_wrapper::structs::device::FieldId;
    const NVML_FI_DEV_MEMORY_TEMP: u32 = 82;
    let values = device
        .field_values_for(&[FieldId(NVML_FI_DEV_MEMORY_TEMP)])
        .ok()?;
    match values.into_iter().next()?.ok()?.value.ok()? {
        SampleValue::U32(v) => Some(v),
        SampleValue::U64(v) => u32::try_from(v).ok(),
        SampleValue::I64(v) => u32::try_from(v).ok(),
        SampleValue::F64(v) => Some(v as u32),
    }
}

/// A registered XID event set.
pub struct XidWatch<'nvml> {
    set: nvml_wrapper::EventSet<'nvml>,
    /// Registered device handles and their indices.
    handles: Vec<(usize, u32)>,
}

impl XidWatch<'_> {
    /// Every XID event available now (does not block).
    pub fn drain(&self) -> Vec<XidEvent> {
        let mut events = Vec::new();
        // Bounded: a storm of events is cut at 1000 per drain so a sampling loop keeps its cadence.
        for _ in 0..1000 {
            match self.set.wait(0) {
                Ok(EventData {
                    device, event_data, ..
                }) => {
                    let xid = match event_data {
                        Some(nvml_wrapper::enums::event::XidError::Value(v)) => v,
                        _ => 999,
                    };
                    let key = raw::handle_key(&device);
                    let gpu = self
                        .handles
                        .iter()
                        .find(|(k, _)| *k == key)
                        .map(|(_, i)| *i)
                        .or_else(|| device.index().ok())
                        .unwrap_or(u32::MAX);
                    events.push(XidEvent { gpu, xid });
                }
                Err(NvmlError::Timeout) => break,
                Err(err) => {
                    tracing::warn!(error = %err, "XID event wait failed");
                    break;
                }
            }
        }
        events
    }
}
