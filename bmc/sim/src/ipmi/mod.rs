//! The simulated BMC's IPMI-over-LAN side: RMCP+ (IPMI 2.0 "lanplus") on UDP with a real session handshake
//! (Open Session, RAKP 1–4, cipher suite 3: RAKP-HMAC-SHA1, HMAC-SHA1-96, AES-CBC-128), so that `ipmitool -I
//! lanplus … power status|on|off|cycle` and `chassis bootdev pxe` work against it.

mod codes;
mod commands;
pub mod fru;
pub mod packet;
mod server;

pub use server::{IpmiServer, bind};
