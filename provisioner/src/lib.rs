//! kiln-provisioner: boot services (DHCP/ProxyDHCP, TFTP, HTTP iPXE), the node lifecycle engine, rack bring-up
//! and remediation. Not built yet: see the network-boot and lifecycle issues.
