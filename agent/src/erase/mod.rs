//! Disk erase between tenants: `kiln-agent wipe` and the ramdisk's wipe mode.
//!
//! - [`device`]: the seam, [`EraseDevice`], implemented over the kernel ([`linux`]), over a file or plain block
//!   device ([`file`]) and by the tests' fake device ([`fake`]);
//! - [`chain`]: one device's method chain, strongest first, falling through to overwrite, one record each;
//! - [`verify`]: sampled read-back (zeros, or changed digests after a crypto erase);
//! - [`wipe`]: which disks a wipe erases, erased in parallel.

pub mod chain;
pub mod device;
pub mod fake;
pub mod file;
pub mod linux;
pub mod progress;
pub mod verify;
pub mod wipe;

pub use chain::{EraseOptions, EraseStep, erase_device, erase_device_reporting};
pub use device::{DeviceError, DeviceInfo, DeviceKind, EraseDevice, EraseProgress};
pub use fake::FakeDevice;
pub use file::{FileDevice, overwrite_zeros};
