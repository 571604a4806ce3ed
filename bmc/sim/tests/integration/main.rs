//! Integration tests for kiln-bmc-sim.
