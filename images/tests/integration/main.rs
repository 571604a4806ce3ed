//! kiln-images integration tests: one binary.

mod library;
mod qcow2;
mod seed;
mod serve;
mod support;
mod writer;
