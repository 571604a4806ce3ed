//! kiln-provisioner: kiln's control plane: the boot services ([`boot`]: TFTP, HTTP iPXE scripts, DHCP and
//! ProxyDHCP) and the node lifecycle engine ([`lifecycle`]: state handlers, remediation, the worker pool).

pub mod boot;
pub mod lifecycle;
