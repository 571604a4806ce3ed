//! kiln-provisioner integration tests: one binary, a module per boot service.

mod deadline;
mod dhcp;
mod fake_bmc;
mod gpu_depth;
mod http;
mod lifecycle;
mod lifecycle_scale;
mod lifecycle_support;
mod support;
mod tftp;
mod wipe_support;
mod wiping;
