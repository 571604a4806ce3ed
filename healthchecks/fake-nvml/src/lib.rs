//! fake-nvml: a `libnvidia-ml.so` that answers the NVML calls kiln makes from a scenario file, so CI and the
//! demo exercise kiln's real NVML code path (nvml-wrapper, dlopen, raw calls) with injected faults.
//!
//! The scenario comes from `KILN_FAKE_NVML_SCENARIO`, or else from `fake-nvml-scenario.toml` beside the loaded
//! library file (tests copy the library into a temporary directory with its scenario, which keeps parallel tests
//! apart without touching the process environment). Scenario time starts at `nvmlInit`.
//!
//! Never ship this to a real node: it reports whatever the scenario says.

// This crate is a C ABI library: every export takes raw pointers from the caller, which needs `unsafe`.
// The unsafe is confined to `ffi.rs`: null checks and writes through caller-provided out-pointers.
#![allow(unsafe_code)]

mod ffi;
pub mod scenario;

pub use scenario::{Fault, Scenario};

/// File name looked up beside the library when `KILN_FAKE_NVML_SCENARIO` is unset.
pub const SCENARIO_BESIDE_LIBRARY: &str = "fake-nvml-scenario.toml";

/// Environment variable naming the scenario file.
pub const SCENARIO_ENV: &str = "KILN_FAKE_NVML_SCENARIO";
