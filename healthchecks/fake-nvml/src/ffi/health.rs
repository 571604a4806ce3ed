//! Health-related exports: memory errors, links, thermals, clocks, XID events.

use super::*;

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
    if current {
        s.pcie_current(gpu, width)
    } else if width {
        s.pcie_width
    } else {
        s.pcie_gen
    }
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
    with_gpu(device, |s, gpu, _| put(power_mw, 1000 * s.power_w(gpu)))
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

/// NVML_FI_DEV_MEMORY_TEMP: HBM temperature.
const FIELD_MEMORY_TEMP: c_uint = 82;
/// NVML_FI_DEV_NVLINK_{CRC_FLIT, CRC_DATA, REPLAY, RECOVERY}_ERROR_COUNT_TOTAL, with the per-link counter each
/// totals (nvmlNvLinkErrorCounter_t).
const FIELD_NVLINK_TOTALS: [(c_uint, c_uint); 4] = [(38, 2), (45, 3), (52, 0), (59, 1)];
/// NVML_VALUE_TYPE_UNSIGNED_INT.
const VALUE_TYPE_UINT: c_uint = 1;
/// NVML_VALUE_TYPE_UNSIGNED_LONG_LONG.
const VALUE_TYPE_ULL: c_uint = 3;

/// HBM temperature and the NVLink error totals; other field ids answer NOT_SUPPORTED per entry.
#[unsafe(no_mangle)]
extern "C" fn nvmlDeviceGetFieldValues(
    device: nvmlDevice_t,
    count: c_int,
    values: *mut nvml_wrapper_sys::bindings::nvmlFieldValue_t,
) -> nvmlReturn_t {
    with_state(|st| {
        let load_s = st.load_s();
        let gpu = match live_gpu(st, device) {
            Ok(gpu) => gpu,
            Err(rc) => return rc,
        };
        let s = &st.scenario;
        let Ok(count) = usize::try_from(count) else {
            return INVALID_ARGUMENT;
        };
        if values.is_null() {
            return INVALID_ARGUMENT;
        }
        for i in 0..count {
            // SAFETY: the caller passes an array of `count` field values.
            let entry = unsafe { &mut *values.add(i) };
            let total = FIELD_NVLINK_TOTALS
                .iter()
                .find(|(id, _)| *id == entry.fieldId)
                .map(|(_, counter)| {
                    (0..s.nvlink_links)
                        .map(|link| s.nvlink_error_count(gpu, link, *counter, load_s))
                        .sum::<u64>()
                });
            if entry.fieldId == FIELD_MEMORY_TEMP {
                entry.valueType = VALUE_TYPE_UINT;
                entry.value.uiVal = s.memory_temp(gpu);
                entry.nvmlReturn = SUCCESS;
            } else if let Some(total) = total.filter(|_| s.nvlink_links > 0) {
                entry.valueType = VALUE_TYPE_ULL;
                entry.value.ullVal = total;
                entry.nvmlReturn = SUCCESS;
            } else {
                entry.nvmlReturn = NOT_SUPPORTED;
            }
        }
        SUCCESS
    })
}
