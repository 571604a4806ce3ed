//! The node lifecycle engine: one handler per state, SLAs, remediation policy, and the worker pool that claims
//! due nodes and runs their handlers.

pub mod access;
