//! NVML calls nvml-wrapper 0.11 does not wrap (row remapping), made through its raw `nvml-wrapper-sys` bindings.

// Raw FFI into the NVML library: calling a C function through a loaded symbol is unsafe by nature. Kept to this
// file; every call passes a live device handle and pointers to locals.
#![allow(unsafe_code)]

use std::ffi::OsStr;

use nvml_wrapper::Device;
use nvml_wrapper_sys::bindings::NvmlLib;
use serde::{Deserialize, Serialize};

/// Row-remapping state of one GPU (A100 and later).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemappedRows {
    /// Rows remapped for correctable errors.
    pub correctable: u32,
    /// Rows remapped for uncorrectable errors.
    pub uncorrectable: u32,
    /// A remap is pending: the GPU needs a reset.
    pub pending: bool,
    /// A remap failed: the GPU needs replacement.
    pub failure: bool,
}

/// A second handle on the same NVML library, for raw calls.
pub struct RawNvml {
    lib: NvmlLib,
}

impl std::fmt::Debug for RawNvml {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RawNvml")
    }
}

impl RawNvml {
    /// Opens the library at `path` again (the loader returns the instance nvml-wrapper already initialised).
    pub fn open(path: &OsStr) -> Result<Self, String> {
        // SAFETY: loading NVML runs its initialisers, which is what nvml-wrapper already did for this path.
        let lib = unsafe { NvmlLib::new(path) }.map_err(|e| e.to_string())?;
        Ok(Self { lib })
    }

    /// `nvmlDeviceGetRemappedRows` for a device of the same library instance.
    pub fn remapped_rows(&self, device: &Device<'_>) -> Result<RemappedRows, String> {
        let sym = self
            .lib
            .nvmlDeviceGetRemappedRows
            .as_ref()
            .map_err(|e| e.to_string())?;
        let (mut corr, mut unc, mut pending, mut failure) = (0u32, 0u32, 0u32, 0u32);
        // SAFETY: the handle is live for the borrow of `device`; the out-pointers are locals.
        let rc = unsafe {
            sym(
                device.handle(),
                &mut corr,
                &mut unc,
                &mut pending,
                &mut failure,
            )
        };
        if rc != 0 {
            return Err(format!("nvmlDeviceGetRemappedRows returned {rc}"));
        }
        Ok(RemappedRows {
            correctable: corr,
            uncorrectable: unc,
            pending: pending != 0,
            failure: failure != 0,
        })
    }
}

/// The opaque NVML handle of a device as a number, to recognise a device in events even when it no longer
/// answers (a GPU that fell off the bus cannot report its index, but its handle is still the one registered).
pub fn handle_key(device: &Device<'_>) -> usize {
    // SAFETY: the handle is only read as an address, never dereferenced or used to build another Device.
    unsafe { device.handle() as usize }
}
