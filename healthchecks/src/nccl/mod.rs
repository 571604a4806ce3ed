//! nccl-tests: parse their output, judge busbw against the SKU profile, run them, and bisect failing node sets.

pub mod bisect;
pub mod judge;
pub mod parse;
mod parse_json;
mod report;
pub mod run;
pub mod ssh;

pub use bisect::{BisectOutcome, bisect};
pub use judge::{NcclRun, judge_report, judge_run};
pub use parse::{NcclReport, ParseError, PlacementResult, RankDevice, ResultRow, parse};
pub use run::{CommandNcclRunner, NcclRunError, NcclRunner};
pub use ssh::{
    PinnedHost, RemoteOutput, SshClient, SshNcclRunner, parse_pinned_hosts, shell_quote,
};
