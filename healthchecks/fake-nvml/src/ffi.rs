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
}

impl State {
    fn now_s(&self) -> f64 {
        self.started.elapsed().as_secs_f64() * self.scenario.time_scale
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
    with_state(|s| {
        let idx = (device as usize).wrapping_sub(1);
        let Ok(gpu) = u32::try_from(idx) else {
            return INVALID_ARGUMENT;
        };
        if device.is_null() || gpu >= s.scenario.gpu_count {
            return INVALID_ARGUMENT;
        }
        let t = s.now_s();
        if s.scenario.lost(gpu, t) {
            return GPU_IS_LOST;
        }
        f(&s.scenario, gpu, t)
    })
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

fn retired(s: &Scenario, gpu: u32, cause: c_uint) -> (u32, bool) {
    let mut pages = 0;
    let mut pending = false;
    for f in s.faults_for(gpu) {
        if let Fault::RetiredPages {
            single_bit,
            double_bit,
            pending: p,
            ..
        } = f
        {
            pages += if cause == 0 { *single_bit } else { *double_bit };
            pending |= *p;
        }
    }
    (pages, pending)
}

#[unsafe(no_mangle)]
extern "C" fn nvmlDeviceGetRetiredPages(
    device: nvmlDevice_t,
    cause: c_uint,
    page_count: *mut c_uint,
    addresses: *mut c_ulonglong,
) -> nvmlReturn_t {
    nvmlDeviceGetRetiredPages_v2(device, cause, page_count, addresses, std::ptr::null_mut())
}

#[unsafe(no_mangle)]
extern "C" fn nvmlDeviceGetRetiredPages_v2(
    device: nvmlDevice_t,
    cause: c_uint,
    page_count: *mut c_uint,
    addresses: *mut c_ulonglong,
    timestamps: *mut c_ulonglong,
) -> nvmlReturn_t {
    with_gpu(device, |s, gpu, _| {
        if page_count.is_null() {
            return INVALID_ARGUMENT;
        }
        let (pages, _) = retired(s, gpu, cause);
        // SAFETY: checked non-null; NVML's contract: in = capacity, out = count.
        let capacity = unsafe { page_count.read() };
        // SAFETY: as above.
        unsafe { page_count.write(pages) };
        if capacity < pages {
            // nvml-wrapper asks for the count first with capacity 0.
            return if capacity == 0 {
                SUCCESS
            } else {
                INSUFFICIENT_SIZE
            };
        }
        for i in 0..pages as usize {
            // SAFETY: the caller's arrays hold `capacity >= pages` entries when non-null.
            unsafe {
                if !addresses.is_null() {
                    addresses.add(i).write(0x1000 * (i as c_ulonglong + 1));
                }
                if !timestamps.is_null() {
                    timestamps.add(i).write(1_790_000_000 + i as c_ulonglong);
                }
            }
        }
        SUCCESS
    })
}

#[unsafe(no_mangle)]
extern "C" fn nvmlDeviceGetRetiredPagesPendingStatus(
    device: nvmlDevice_t,
    pending: *mut c_uint,
) -> nvmlReturn_t {
    with_gpu(device, |s, gpu, _| {
        put(pending, c_uint::from(retired(s, gpu, 0).1))
    })
}

#[unsafe(no_mangle)]
extern "C" fn nvmlDeviceGetRemappedRows(
    device: nvmlDevice_t,
    corr_rows: *mut c_uint,
    unc_rows: *mut c_uint,
    is_pending: *mut c_uint,
    failure_occurred: *mut c_uint,
) -> nvmlReturn_t {
    with_gpu(device, |s, gpu, _| {
        let (mut unc, mut pending, mut failure) = (0, 0, 0);
        for f in s.faults_for(gpu) {
            match f {
                Fault::RowRemapPending { .. } => pending = 1,
                Fault::RowRemapFailure { .. } => failure = 1,
                Fault::RowRemapsUncorrectable { count, .. } => unc += count,
                _ => {}
            }
        }
        let results = [
            put(corr_rows, 0),
            put(unc_rows, unc),
            put(is_pending, pending),
            put(failure_occurred, failure),
        ];
        results
            .into_iter()
            .find(|r| *r != SUCCESS)
            .unwrap_or(SUCCESS)
    })
}

fn pcie(s: &Scenario, gpu: u32, current: bool, width: bool) -> c_uint {
    let max = if width { s.pcie_width } else { s.pcie_gen };
    if !current {
        return max;
    }
    s.faults_for(gpu)
        .find_map(|f| match (f, width) {
            (Fault::PcieWidth { width: w, .. }, true) => Some(*w),
            (Fault::PcieGen { generation, .. }, false) => Some(*generation),
            _ => None,
        })
        .unwrap_or(max)
}

#[unsafe(no_mangle)]
extern "C" fn nvmlDeviceGetCurrPcieLinkGeneration(
    device: nvmlDevice_t,
    out: *mut c_uint,
) -> nvmlReturn_t {
    with_gpu(device, |s, gpu, _| put(out, pcie(s, gpu, true, false)))
}

#[unsafe(no_mangle)]
extern "C" fn nvmlDeviceGetMaxPcieLinkGeneration(
    device: nvmlDevice_t,
    out: *mut c_uint,
) -> nvmlReturn_t {
    with_gpu(device, |s, gpu, _| put(out, pcie(s, gpu, false, false)))
}

#[unsafe(no_mangle)]
extern "C" fn nvmlDeviceGetCurrPcieLinkWidth(
    device: nvmlDevice_t,
    out: *mut c_uint,
) -> nvmlReturn_t {
    with_gpu(device, |s, gpu, _| put(out, pcie(s, gpu, true, true)))
}

#[unsafe(no_mangle)]
extern "C" fn nvmlDeviceGetMaxPcieLinkWidth(
    device: nvmlDevice_t,
    out: *mut c_uint,
) -> nvmlReturn_t {
    with_gpu(device, |s, gpu, _| put(out, pcie(s, gpu, false, true)))
}

#[unsafe(no_mangle)]
extern "C" fn nvmlDeviceGetNvLinkState(
    device: nvmlDevice_t,
    link: c_uint,
    is_active: *mut c_uint,
) -> nvmlReturn_t {
    with_gpu(device, |s, gpu, _| {
        if link >= s.nvlink_links {
            return INVALID_ARGUMENT;
        }
        let down = s
            .faults_for(gpu)
            .any(|f| matches!(f, Fault::NvlinkDown { link: l, .. } if *l == link));
        put(is_active, c_uint::from(!down))
    })
}

#[unsafe(no_mangle)]
extern "C" fn nvmlDeviceGetTemperature(
    device: nvmlDevice_t,
    sensor: c_uint,
    temp: *mut c_uint,
) -> nvmlReturn_t {
    with_gpu(device, |s, gpu, _| {
        if sensor != 0 {
            return NOT_SUPPORTED;
        }
        let value = match s.throttle(gpu) {
            Some((t, _)) => t,
            None if s.under_load() => s.temp_load_c,
            None => s.temp_idle_c,
        };
        put(temp, value)
    })
}

#[unsafe(no_mangle)]
extern "C" fn nvmlDeviceGetTemperatureThreshold(
    device: nvmlDevice_t,
    threshold: c_uint,
    temp: *mut c_uint,
) -> nvmlReturn_t {
    // 0 = shutdown, 1 = slowdown, 2 = memory max, 3 = GPU max.
    with_gpu(device, |s, _, _| match threshold {
        0 => put(temp, s.temp_slowdown_c + 5),
        1 | 3 => put(temp, s.temp_slowdown_c),
        2 => put(temp, 95),
        _ => NOT_SUPPORTED,
    })
}

#[unsafe(no_mangle)]
extern "C" fn nvmlDeviceGetPowerUsage(device: nvmlDevice_t, power_mw: *mut c_uint) -> nvmlReturn_t {
    with_gpu(device, |s, _, _| {
        put(
            power_mw,
            1000 * if s.under_load() {
                s.power_load_w
            } else {
                s.power_idle_w
            },
        )
    })
}

#[unsafe(no_mangle)]
extern "C" fn nvmlDeviceGetClockInfo(
    device: nvmlDevice_t,
    clock: c_uint,
    mhz: *mut c_uint,
) -> nvmlReturn_t {
    // 1 = SM clock; other domains report the same figures (not judged by kiln).
    with_gpu(device, |s, gpu, _| {
        let _ = clock;
        let value = match s.throttle(gpu) {
            Some((_, c)) => c,
            None if s.under_load() => s.sm_clock_max_mhz,
            None => s.sm_clock_idle_mhz,
        };
        put(mhz, value)
    })
}

#[unsafe(no_mangle)]
extern "C" fn nvmlDeviceGetMaxClockInfo(
    device: nvmlDevice_t,
    _clock: c_uint,
    mhz: *mut c_uint,
) -> nvmlReturn_t {
    with_gpu(device, |s, _, _| put(mhz, s.sm_clock_max_mhz))
}

#[unsafe(no_mangle)]
extern "C" fn nvmlDeviceGetCurrentClocksThrottleReasons(
    device: nvmlDevice_t,
    reasons: *mut c_ulonglong,
) -> nvmlReturn_t {
    with_gpu(device, |s, gpu, _| {
        let mut bits = if s.under_load() {
            THROTTLE_SW_POWER_CAP
        } else {
            THROTTLE_GPU_IDLE
        };
        if s.throttle(gpu).is_some() {
            bits |= THROTTLE_HW_SLOWDOWN | THROTTLE_HW_THERMAL;
        }
        if s.power_brake(gpu) {
            bits |= THROTTLE_HW_SLOWDOWN | THROTTLE_HW_POWER_BRAKE;
        }
        put(reasons, bits)
    })
}

#[unsafe(no_mangle)]
extern "C" fn nvmlDeviceGetSupportedEventTypes(
    device: nvmlDevice_t,
    types: *mut c_ulonglong,
) -> nvmlReturn_t {
    with_gpu(device, |_, _, _| put(types, EVENT_XID))
}

#[unsafe(no_mangle)]
extern "C" fn nvmlEventSetCreate(set: *mut nvmlEventSet_t) -> nvmlReturn_t {
    with_state(|_| {
        let boxed = Box::new(Mutex::new(EventSet {
            registered: Vec::new(),
            delivered: Vec::new(),
        }));
        put(set, Box::into_raw(boxed).cast::<nvmlEventSet_st>())
    })
}

fn with_set(set: nvmlEventSet_t, f: impl FnOnce(&mut EventSet) -> nvmlReturn_t) -> nvmlReturn_t {
    if set.is_null() {
        return INVALID_ARGUMENT;
    }
    // SAFETY: `set` came from nvmlEventSetCreate (a leaked Box<Mutex<EventSet>>) and is not yet freed.
    let set = unsafe { &*set.cast::<Mutex<EventSet>>() };
    match set.lock() {
        Ok(mut s) => f(&mut s),
        Err(_) => INVALID_ARGUMENT,
    }
}

#[unsafe(no_mangle)]
extern "C" fn nvmlDeviceRegisterEvents(
    device: nvmlDevice_t,
    types: c_ulonglong,
    set: nvmlEventSet_t,
) -> nvmlReturn_t {
    with_gpu(device, |_, gpu, _| {
        with_set(set, |s| {
            s.registered.push((gpu, types));
            SUCCESS
        })
    })
}

/// Delivers the earliest due, undelivered XID on a registered GPU; never blocks (returns TIMEOUT when none is due).
#[unsafe(no_mangle)]
extern "C" fn nvmlEventSetWait_v2(
    set: nvmlEventSet_t,
    data: *mut nvmlEventData_t,
    _timeout_ms: c_uint,
) -> nvmlReturn_t {
    with_state(|st| {
        let t = st.now_s();
        with_set(set, |s| {
            let due = st.scenario.fault.iter().enumerate().find(|(i, f)| match f {
                Fault::Xid { gpu, at_s, .. } => {
                    *at_s <= t
                        && !s.delivered.contains(i)
                        && s.registered
                            .iter()
                            .any(|(g, m)| g == gpu && m & EVENT_XID != 0)
                }
                _ => false,
            });
            let Some((i, Fault::Xid { gpu, xid, .. })) = due else {
                return TIMEOUT;
            };
            s.delivered.push(i);
            put(
                data,
                nvmlEventData_t {
                    device: (*gpu as usize + 1) as *mut nvmlDevice_st,
                    eventType: EVENT_XID,
                    eventData: *xid,
                    gpuInstanceId: 0,
                    computeInstanceId: 0,
                },
            )
        })
    })
}

#[unsafe(no_mangle)]
extern "C" fn nvmlEventSetFree(set: nvmlEventSet_t) -> nvmlReturn_t {
    if set.is_null() {
        return INVALID_ARGUMENT;
    }
    // SAFETY: `set` came from nvmlEventSetCreate and is freed exactly once (nvml-wrapper frees on drop).
    drop(unsafe { Box::from_raw(set.cast::<Mutex<EventSet>>()) });
    SUCCESS
}

#[unsafe(no_mangle)]
extern "C" fn nvmlErrorString(result: nvmlReturn_t) -> *const c_char {
    let text: &'static CStr = match result {
        SUCCESS => c"Success",
        UNINITIALIZED => c"Uninitialized",
        INVALID_ARGUMENT => c"Invalid Argument",
        NOT_SUPPORTED => c"Not Supported",
        GPU_IS_LOST => c"GPU is lost",
        _ => c"Unknown Error (fake-nvml)",
    };
    text.as_ptr()
}
