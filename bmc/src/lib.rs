//! kiln-bmc: the `Bmc` trait (power, one-time boot device, virtual media, system inventory, event log) with a
//! Redfish implementation and an IPMI (RMCP+ lanplus) implementation, plus fleet operations with bounded
//! concurrency. Not built yet: see the BMC control issue.
