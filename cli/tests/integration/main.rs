//! Integration tests of the `kiln` binary.

mod bmc;
