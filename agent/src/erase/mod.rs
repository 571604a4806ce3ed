//! Disk erase between tenants: `kiln-agent wipe` and the ramdisk's wipe mode.
//!
//! - [`device`]: the seam, [`EraseDevice`], implemented over the kernel ([`linux`]) and by the tests' fake
//!   device.

pub mod device;
pub mod linux;

pub use device::{DeviceError, DeviceInfo, DeviceKind, EraseDevice, EraseProgress};
