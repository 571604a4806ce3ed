//! kiln-provisioner: kiln's control plane. Today: the boot services ([`boot`]: TFTP, HTTP iPXE scripts, DHCP and
//! ProxyDHCP). The node lifecycle engine, rack bring-up and remediation come with their issues.

pub mod boot;
