//! The kernel implementation of [`super::EraseDevice`]: sysfs classification, block reads and writes, NVMe
//! admin commands and SG_IO (ATA pass-through, SCSI SANITIZE).
