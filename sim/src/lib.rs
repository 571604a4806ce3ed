//! kiln-sim: virtual nodes (simulated BMC, fake NVML, the real agent library) at hall scale for `kiln demo`,
//! integration tests and benchmarks. Not built yet: see the lifecycle/simulator issue.
