//! kiln-bmc-sim: a fleet of simulated BMCs speaking real Redfish (HTTPS) and IPMI RMCP+ (UDP) on loopback, with
//! fault knobs. Not built yet: see the BMC control issue.
