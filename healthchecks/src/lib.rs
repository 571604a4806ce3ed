//! kiln-health: NVML checks, burn-in runner, nccl-tests runner/parser/judge, SKU profiles and signed verdicts.
//! Not built yet: see the GPU health issue.
