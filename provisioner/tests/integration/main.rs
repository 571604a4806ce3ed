//! kiln-provisioner integration tests: one binary, a module per boot service.

mod dhcp;
mod http;
mod support;
mod tftp;
