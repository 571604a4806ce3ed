//! Load-mode exports: utilisation and NVLink error counters.

use nvml_wrapper_sys::bindings::nvmlUtilization_t;

use super::*;

#[unsafe(no_mangle)]
extern "C" fn nvmlDeviceGetUtilizationRates(
    device: nvmlDevice_t,
    utilization: *mut nvmlUtilization_t,
) -> nvmlReturn_t {
    with_gpu(device, |s, _, _| {
        let gpu = s.utilisation();
        put(
            utilization,
            nvmlUtilization_t {
                gpu,
                memory: gpu / 2,
            },
        )
    })
}

/// Counters of links `0..nvlink_links`; a link past them answers INVALID_ARGUMENT (as NVML does), an unknown
/// counter NOT_SUPPORTED.
#[unsafe(no_mangle)]
extern "C" fn nvmlDeviceGetNvLinkErrorCounter(
    device: nvmlDevice_t,
    link: c_uint,
    counter: c_uint,
    value: *mut c_ulonglong,
) -> nvmlReturn_t {
    with_state(|st| {
        let load_s = st.load_s();
        let gpu = match live_gpu(st, device) {
            Ok(gpu) => gpu,
            Err(rc) => return rc,
        };
        let s = &st.scenario;
        if link >= s.nvlink_links {
            return INVALID_ARGUMENT;
        }
        if counter > 4 || !s.nvlink_counters_per_link {
            return NOT_SUPPORTED;
        }
        put(value, s.nvlink_error_count(gpu, link, counter, load_s))
    })
}
