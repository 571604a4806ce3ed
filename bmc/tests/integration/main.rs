//! Integration tests for kiln-bmc.
