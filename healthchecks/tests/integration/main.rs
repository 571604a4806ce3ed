//! kiln-health integration tests: one binary, one module per area.

mod bandwidth;
mod burnin;
mod burnin_judge;
mod dcgm;
mod evidence;
mod kernlog;
mod nccl_judge;
mod nccl_parse;
mod nccl_ssh;
mod nvml;
mod sku;
mod stress;
mod support;
