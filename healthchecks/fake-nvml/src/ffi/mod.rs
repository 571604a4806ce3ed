//! The exported NVML symbols. Each checks its pointers, looks the GPU up in the scenario, and writes results.

use std::ffi::{CStr, c_char, c_int, c_uint, c_ulonglong, c_void};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Instant;

use nvml_wrapper_sys::bindings::{
    nvmlDevice_st, nvmlDevice_t, nvmlEventData_t, nvmlEventSet_st, nvmlEventSet_t, nvmlMemory_v2_t,
    nvmlReturn_t,
};

use crate::scenario::{Fault, Scenario};

const SUCCESS: nvmlReturn_t = 0;
const UNINITIALIZED: nvmlReturn_t = 1;
const INVALID_ARGUMENT: nvmlReturn_t = 2;
const NOT_SUPPORTED: nvmlReturn_t = 3;
const INSUFFICIENT_SIZE: nvmlReturn_t = 7;
const DRIVER_NOT_LOADED: nvmlReturn_t = 9;
const TIMEOUT: nvmlReturn_t = 10;
const GPU_IS_LOST: nvmlReturn_t = 15;

const EVENT_XID: c_ulonglong = 8;
const THROTTLE_GPU_IDLE: c_ulonglong = 0x1;
const THROTTLE_SW_POWER_CAP: c_ulonglong = 0x4;
const THROTTLE_HW_SLOWDOWN: c_ulonglong = 0x8;
const THROTTLE_HW_THERMAL: c_ulonglong = 0x40;
const THROTTLE_HW_POWER_BRAKE: c_ulonglong = 0x80;

struct State {
    scenario: Scenario,
    started: Instant,
    /// Scenario seconds spent under load so far, as seen by the calls that ask (see [`State::load_s`]).
    load: std::cell::Cell<LoadClock>,
}

/// Time under load, integrated over the calls that read it: an interval counts when the call that opened it saw
/// the GPUs under load.
#[derive(Clone, Copy, Default)]
struct LoadClock {
    last_t: f64,
    last_loaded: bool,
    load_s: f64,
}

impl State {
    fn now_s(&self) -> f64 {
        self.started.elapsed().as_secs_f64() * self.scenario.time_scale
    }

    /// Scenario seconds under load up to now (monotonic).
    fn load_s(&self) -> f64 {
        let t = self.now_s();
        let mut c = self.load.get();
        if c.last_loaded {
            c.load_s += (t - c.last_t).max(0.0);
        }
        c.last_t = t;
        c.last_loaded = self.scenario.under_load();
        self.load.set(c);
        c.load_s
    }
}

static STATE: Mutex<Option<State>> = Mutex::new(None);

struct EventSet {
    registered: Vec<(u32, c_ulonglong)>,
    delivered: Vec<usize>,
}

fn scenario_path() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os(crate::SCENARIO_ENV) {
        return Some(PathBuf::from(p));
    }
    let mut info: libc::Dl_info = unsafe { std::mem::zeroed() };
    // SAFETY: dladdr only reads the address (one of our own functions) and fills `info`.
    let found = unsafe { libc::dladdr(scenario_path as *const c_void, &mut info) };
    if found == 0 || info.dli_fname.is_null() {
        return None;
    }
    // SAFETY: dli_fname is a NUL-terminated path owned by the dynamic loader.
    let lib = unsafe { CStr::from_ptr(info.dli_fname) };
    let lib = PathBuf::from(lib.to_string_lossy().into_owned());
    Some(lib.parent()?.join(crate::SCENARIO_BESIDE_LIBRARY))
}

fn load() -> Result<Scenario, String> {
    let path = scenario_path().ok_or("no scenario: set KILN_FAKE_NVML_SCENARIO")?;
    let text = std::fs::read_to_string(&path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    Scenario::from_toml(&text, path.parent().unwrap_or(Path::new(".")))
        .map_err(|e| format!("scenario {} is malformed: {e}", path.display()))
}

fn init() -> nvmlReturn_t {
    match load() {
        Ok(scenario) => {
            if let Ok(mut st) = STATE.lock() {
                *st = Some(State {
                    scenario,
                    started: Instant::now(),
                    load: std::cell::Cell::new(LoadClock::default()),
                });
            }
            SUCCESS
        }
        Err(e) => {
            eprintln!("fake-nvml: {e}");
            DRIVER_NOT_LOADED
        }
    }
}

/// Runs `f` with the scenario and the current scenario time.
fn with_state(f: impl FnOnce(&State) -> nvmlReturn_t) -> nvmlReturn_t {
    match STATE.lock() {
        Ok(st) => match st.as_ref() {
            Some(s) => f(s),
            None => UNINITIALIZED,
        },
        Err(_) => UNINITIALIZED,
    }
}

/// Runs `f` for a live GPU behind a device handle.
fn with_gpu(
    device: nvmlDevice_t,
    f: impl FnOnce(&Scenario, u32, f64) -> nvmlReturn_t,
) -> nvmlReturn_t {
    with_state(|s| match live_gpu(s, device) {
        Ok(gpu) => f(&s.scenario, gpu, s.now_s()),
        Err(rc) => rc,
    })
}

/// The index of the live GPU behind a device handle, or the error to return.
fn live_gpu(s: &State, device: nvmlDevice_t) -> Result<u32, nvmlReturn_t> {
    let idx = (device as usize).wrapping_sub(1);
    let Ok(gpu) = u32::try_from(idx) else {
        return Err(INVALID_ARGUMENT);
    };
    if device.is_null() || gpu >= s.scenario.gpu_count {
        return Err(INVALID_ARGUMENT);
    }
    if s.scenario.lost(gpu, s.now_s()) {
        return Err(GPU_IS_LOST);
    }
    Ok(gpu)
}

/// Writes a value through an out-pointer.
fn put<T>(out: *mut T, value: T) -> nvmlReturn_t {
    if out.is_null() {
        return INVALID_ARGUMENT;
    }
    // SAFETY: non-null pointer from the caller to a T it owns (NVML's contract).
    unsafe { out.write(value) };
    SUCCESS
}

fn put_str(out: *mut c_char, len: c_uint, value: &str) -> nvmlReturn_t {
    if out.is_null() {
        return INVALID_ARGUMENT;
    }
    let bytes = value.as_bytes();
    if bytes.len() + 1 > len as usize {
        return INSUFFICIENT_SIZE;
    }
    // SAFETY: the caller's buffer holds `len` bytes and we write at most `bytes.len() + 1 <= len`.
    unsafe {
        std::ptr::copy_nonoverlapping(bytes.as_ptr(), out.cast::<u8>(), bytes.len());
        out.add(bytes.len()).write(0);
    }
    SUCCESS
}

#[unsafe(no_mangle)]
extern "C" fn nvmlInit_v2() -> nvmlReturn_t {
    init()
}

#[unsafe(no_mangle)]
extern "C" fn nvmlInitWithFlags(_flags: c_uint) -> nvmlReturn_t {
    init()
}

#[unsafe(no_mangle)]
extern "C" fn nvmlShutdown() -> nvmlReturn_t {
    if let Ok(mut st) = STATE.lock() {
        *st = None;
    }
    SUCCESS
}

#[unsafe(no_mangle)]
extern "C" fn nvmlSystemGetDriverVersion(version: *mut c_char, length: c_uint) -> nvmlReturn_t {
    with_state(|s| put_str(version, length, &s.scenario.driver_version))
}

#[unsafe(no_mangle)]
extern "C" fn nvmlSystemGetNVMLVersion(version: *mut c_char, length: c_uint) -> nvmlReturn_t {
    with_state(|s| {
        put_str(
            version,
            length,
            &format!("12.{}", s.scenario.driver_version),
        )
    })
}

#[unsafe(no_mangle)]
extern "C" fn nvmlSystemGetCudaDriverVersion_v2(version: *mut c_int) -> nvmlReturn_t {
    with_state(|_| put(version, 12040))
}

#[unsafe(no_mangle)]
extern "C" fn nvmlDeviceGetCount_v2(count: *mut c_uint) -> nvmlReturn_t {
    with_state(|s| put(count, s.scenario.gpu_count))
}

#[unsafe(no_mangle)]
extern "C" fn nvmlDeviceGetHandleByIndex_v2(
    index: c_uint,
    device: *mut nvmlDevice_t,
) -> nvmlReturn_t {
    with_state(|s| {
        if index >= s.scenario.gpu_count {
            return INVALID_ARGUMENT;
        }
        if s.scenario.lost(index, s.now_s()) {
            return GPU_IS_LOST;
        }
        // Handles are opaque to callers; index + 1 keeps them non-null.
        put(device, (index as usize + 1) as *mut nvmlDevice_st)
    })
}

#[unsafe(no_mangle)]
extern "C" fn nvmlDeviceGetIndex(device: nvmlDevice_t, index: *mut c_uint) -> nvmlReturn_t {
    with_gpu(device, |_, gpu, _| put(index, gpu))
}

#[unsafe(no_mangle)]
extern "C" fn nvmlDeviceGetName(
    device: nvmlDevice_t,
    name: *mut c_char,
    length: c_uint,
) -> nvmlReturn_t {
    with_gpu(device, |s, _, _| put_str(name, length, &s.gpu_name))
}

#[unsafe(no_mangle)]
extern "C" fn nvmlDeviceGetUUID(
    device: nvmlDevice_t,
    uuid: *mut c_char,
    length: c_uint,
) -> nvmlReturn_t {
    with_gpu(device, |_, gpu, _| {
        put_str(
            uuid,
            length,
            &format!("GPU-fa4e0000-0000-4000-8000-{gpu:012x}"),
        )
    })
}

#[unsafe(no_mangle)]
extern "C" fn nvmlDeviceGetSerial(
    device: nvmlDevice_t,
    serial: *mut c_char,
    length: c_uint,
) -> nvmlReturn_t {
    with_gpu(device, |_, gpu, _| {
        put_str(serial, length, &format!("165002300{gpu:04}"))
    })
}

#[unsafe(no_mangle)]
extern "C" fn nvmlDeviceGetVbiosVersion(
    device: nvmlDevice_t,
    version: *mut c_char,
    length: c_uint,
) -> nvmlReturn_t {
    with_gpu(device, |s, _, _| put_str(version, length, &s.vbios))
}

#[unsafe(no_mangle)]
extern "C" fn nvmlDeviceGetMemoryInfo_v2(
    device: nvmlDevice_t,
    memory: *mut nvmlMemory_v2_t,
) -> nvmlReturn_t {
    with_gpu(device, |s, _, _| {
        let total = s.memory_total_mib * 1024 * 1024;
        let reserved = 512 * 1024 * 1024;
        let used = if s.under_load() { total / 2 } else { 0 };
        put(
            memory,
            nvmlMemory_v2_t {
                version: 2 << 24,
                total,
                reserved,
                free: total - reserved - used,
                used,
            },
        )
    })
}

#[unsafe(no_mangle)]
extern "C" fn nvmlDeviceGetTotalEccErrors(
    device: nvmlDevice_t,
    error_type: c_uint,
    _counter_type: c_uint,
    count: *mut c_ulonglong,
) -> nvmlReturn_t {
    // error_type 1 = uncorrected; corrected errors are not modelled (always 0).
    with_gpu(device, |s, gpu, t| {
        put(
            count,
            if error_type == 1 {
                s.ecc_uncorrectable(gpu, t)
            } else {
                0
            },
        )
    })
}

mod health;
mod load;
