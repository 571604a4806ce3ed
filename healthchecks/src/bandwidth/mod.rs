//! Bandwidth gates: read the text of NVIDIA's nvbandwidth and perftest's `ib_write_bw`, and judge the numbers
//! against per-SKU floors (profile data, see `profiles/THRESHOLDS.md` for where the numbers come from).
//!
//! - [`nvbandwidth`]: every testcase matrix (host↔device, device↔device), judged per GPU and per GPU pair;
//! - [`ib_write_bw`]: one run per HCA port, judged on the average bandwidth at the largest message size.
//!
//! Both parsers keep going through noise and record what they could not read; both judges fail what they cannot
//! measure (a floor with no measurement is a failure, never a pass).

pub mod ib_write_bw;
pub mod nvbandwidth;

pub use ib_write_bw::{
    BwUnit, IbWriteBwRow, IbWriteBwRun, judge_ib_write_bw, mib_per_s_to_gbps, parse_ib_write_bw,
};
pub use nvbandwidth::{
    NvbandwidthFloors, NvbandwidthResult, NvbandwidthTestcase, judge_nvbandwidth, parse_nvbandwidth,
};

/// Why a tool's text could not be read at all.
#[derive(Debug, thiserror::Error)]
pub enum BandwidthParseError {
    /// Not one result of the tool was found.
    #[error("input is not {tool} output (no result found in {lines} lines)")]
    NotToolOutput {
        /// Which tool's output was expected (`nvbandwidth`, `ib_write_bw`).
        tool: &'static str,
        /// How many lines were examined.
        lines: usize,
    },
}
