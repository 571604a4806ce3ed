//! Network boot services: TFTP for firmware that needs an iPXE binary, HTTP for iPXE scripts chosen by node state
//! and for the ramdisk, and DHCP (or ProxyDHCP) pointing PXE clients at both.

pub mod decision;
pub mod dhcp;
pub mod http;
pub mod ra;
pub mod tftp;
