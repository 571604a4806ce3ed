//! Integration tests for kiln-bmc-sim: the power state machine in paused time, events, fleet start-up and the
//! sweep benchmark.

mod bench;
mod ipmitool;
mod packets;
mod qemu;
mod state;
