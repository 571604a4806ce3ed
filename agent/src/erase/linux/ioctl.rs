//! The two kernel ioctls kiln's erase needs, behind safe wrappers that take a `&File` and slices.
//!
//! This is the only `unsafe` in the agent: `ioctl(2)` has no safe binding in `libc`, and the kernel reads and
//! writes the memory our structs point at. Each wrapper fills every pointer and length field from the slices it
//! borrows for the whole call, so a caller cannot hand the kernel a length that does not match its buffer.
#![allow(unsafe_code)]

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;

/// `NVME_IOCTL_ADMIN_CMD`: `_IOWR('N', 0x41, struct nvme_admin_cmd)` from `<linux/nvme_ioctl.h>`.
pub const NVME_IOCTL_ADMIN_CMD: u64 = 0xC048_4E41;
/// `SG_IO` from `<scsi/sg.h>`.
pub const SG_IO: u64 = 0x2285;

/// `struct nvme_passthru_cmd` (alias `nvme_admin_cmd`), 72 bytes. `addr` and `data_len` are set by
/// [`nvme_admin`] from the data slice; builders leave them zero.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NvmePassthruCmd {
    /// Admin command opcode.
    pub opcode: u8,
    /// Command flags (unused by kiln).
    pub flags: u8,
    /// Reserved.
    pub rsvd1: u16,
    /// Namespace id the command applies to.
    pub nsid: u32,
    /// Command dword 2.
    pub cdw2: u32,
    /// Command dword 3.
    pub cdw3: u32,
    /// Metadata buffer address (unused).
    pub metadata: u64,
    /// Data buffer address, filled by [`nvme_admin`].
    pub addr: u64,
    /// Metadata length (unused).
    pub metadata_len: u32,
    /// Data length in bytes, filled by [`nvme_admin`].
    pub data_len: u32,
    /// Command dword 10.
    pub cdw10: u32,
    /// Command dword 11.
    pub cdw11: u32,
    /// Command dword 12.
    pub cdw12: u32,
    /// Command dword 13.
    pub cdw13: u32,
    /// Command dword 14.
    pub cdw14: u32,
    /// Command dword 15.
    pub cdw15: u32,
    /// How long the kernel waits for the completion, in milliseconds (0: the driver's default).
    pub timeout_ms: u32,
    /// Completion dword 0, written by the kernel.
    pub result: u32,
}

/// Submits an NVMe admin command. `data` is the transfer buffer (the kernel fills it for reads such as
/// Identify, and reads it for writes); empty for commands without data. Returns the completion's status field
/// (0 = success; otherwise status code type and code, see `nvme::NvmeStatus`) and completion dword 0.
pub fn nvme_admin(file: &File, cmd: &NvmePassthruCmd, data: &mut [u8]) -> io::Result<(u16, u32)> {
    let data_len = u32::try_from(data.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NVMe data buffer over 4 GiB"))?;
    let mut raw = NvmePassthruCmd {
        addr: if data.is_empty() {
            0
        } else {
            data.as_mut_ptr() as u64
        },
        data_len,
        result: 0,
        ..*cmd
    };
    // SAFETY: `raw` is a live, correctly laid out `nvme_passthru_cmd` (size checked by a test); `addr` points at
    // `data`, which is exclusively borrowed for the call and is `data_len` bytes long.
    let ret = unsafe {
        libc::ioctl(
            file.as_raw_fd(),
            NVME_IOCTL_ADMIN_CMD as _,
            &mut raw as *mut NvmePassthruCmd,
        )
    };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    // The kernel returns the status field (≤ 0x7fff) on a completion with an error.
    Ok((ret as u16, raw.result))
}

/// `BLKFLSBUF` from `<linux/fs.h>`: `_IO(0x12, 97)`.
pub const BLKFLSBUF: u64 = 0x1261;

/// Writes back and drops the buffer cache of a block device (after a device erase the cache still holds what
/// the disk held before).
pub fn flush_buffers(file: &File) -> io::Result<()> {
    // SAFETY: BLKFLSBUF takes no argument memory; the descriptor is borrowed for the call.
    let ret = unsafe { libc::ioctl(file.as_raw_fd(), BLKFLSBUF as _, 0) };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// `struct sg_io_hdr` from `<scsi/sg.h>` (88 bytes on 64-bit Linux). The `libc` crate does not define it.
#[repr(C)]
#[derive(Debug)]
struct SgIoHdr {
    interface_id: i32,
    dxfer_direction: i32,
    cmd_len: u8,
    mx_sb_len: u8,
    iovec_count: u16,
    dxfer_len: u32,
    dxferp: *mut libc::c_void,
    cmdp: *const u8,
    sbp: *mut u8,
    timeout: u32,
    flags: u32,
    pack_id: i32,
    usr_ptr: *mut libc::c_void,
    status: u8,
    masked_status: u8,
    msg_status: u8,
    sb_len_wr: u8,
    host_status: u16,
    driver_status: u16,
    resid: i32,
    duration: u32,
    info: u32,
}

/// Which way the data of an SG_IO command goes.
#[derive(Debug)]
pub enum SgData<'a> {
    /// No data phase.
    None,
    /// The device sends data into this buffer.
    FromDevice(&'a mut [u8]),
    /// The host sends this buffer to the device.
    ToDevice(&'a [u8]),
}

/// What came back from an SG_IO command, before interpretation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SgOutcome {
    /// SCSI status byte (0 GOOD, 2 CHECK CONDITION, 8 BUSY...).
    pub status: u8,
    /// Host adapter status (`DID_*`; 1 = no connect).
    pub host_status: u16,
    /// Driver status (`DRIVER_*`).
    pub driver_status: u16,
    /// Sense data the device returned (empty when none).
    pub sense: Vec<u8>,
    /// Bytes of the data buffer not transferred.
    pub resid: i32,
}

/// Runs one SCSI command through `SG_IO` (a block device of the sd driver accepts it too).
pub fn sg_io(file: &File, cdb: &[u8], data: SgData<'_>, timeout_ms: u32) -> io::Result<SgOutcome> {
    const SG_DXFER_NONE: i32 = -1;
    const SG_DXFER_TO_DEV: i32 = -2;
    const SG_DXFER_FROM_DEV: i32 = -3;
    let cmd_len = u8::try_from(cdb.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "SCSI CDB over 255 bytes"))?;
    let (dxfer_direction, dxferp, dxfer_len) = match data {
        SgData::None => (SG_DXFER_NONE, std::ptr::null_mut(), 0usize),
        SgData::FromDevice(buf) => (SG_DXFER_FROM_DEV, buf.as_mut_ptr().cast(), buf.len()),
        // The kernel only reads a to-device buffer.
        SgData::ToDevice(buf) => (
            SG_DXFER_TO_DEV,
            buf.as_ptr() as *mut libc::c_void,
            buf.len(),
        ),
    };
    let dxfer_len = u32::try_from(dxfer_len)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "SCSI data buffer over 4 GiB"))?;
    let mut sense = [0u8; 64];
    let mut hdr = SgIoHdr {
        interface_id: i32::from(b'S'),
        dxfer_direction,
        cmd_len,
        mx_sb_len: sense.len() as u8,
        iovec_count: 0,
        dxfer_len,
        dxferp,
        cmdp: cdb.as_ptr(),
        sbp: sense.as_mut_ptr(),
        timeout: timeout_ms,
        flags: 0,
        pack_id: 0,
        usr_ptr: std::ptr::null_mut(),
        status: 0,
        masked_status: 0,
        msg_status: 0,
        sb_len_wr: 0,
        host_status: 0,
        driver_status: 0,
        resid: 0,
        duration: 0,
        info: 0,
    };
    // SAFETY: `hdr` is a correctly laid out `sg_io_hdr` (size checked by a test); `cmdp`, `sbp` and `dxferp` point
    // at the borrowed CDB, the local sense buffer and the borrowed data slice, with their exact lengths, all alive
    // until the ioctl returns (SG_IO is synchronous).
    let ret = unsafe { libc::ioctl(file.as_raw_fd(), SG_IO as _, &mut hdr as *mut SgIoHdr) };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    let written = usize::from(hdr.sb_len_wr).min(sense.len());
    Ok(SgOutcome {
        status: hdr.status,
        host_status: hdr.host_status,
        driver_status: hdr.driver_status,
        sense: sense[..written].to_vec(),
        resid: hdr.resid,
    })
}

#[cfg(test)]
mod tests {
    use std::mem::{offset_of, size_of};

    use super::*;

    #[test]
    fn nvme_passthru_cmd_matches_the_kernel_layout() {
        // Offsets from <linux/nvme_ioctl.h>, checked with gcc on x86_64: size 72, addr at 24, timeout_ms at 64.
        assert_eq!(size_of::<NvmePassthruCmd>(), 72);
        assert_eq!(offset_of!(NvmePassthruCmd, nsid), 4);
        assert_eq!(offset_of!(NvmePassthruCmd, addr), 24);
        assert_eq!(offset_of!(NvmePassthruCmd, data_len), 36);
        assert_eq!(offset_of!(NvmePassthruCmd, cdw10), 40);
        assert_eq!(offset_of!(NvmePassthruCmd, timeout_ms), 64);
        assert_eq!(offset_of!(NvmePassthruCmd, result), 68);
        // _IOWR('N', 0x41, 72 bytes): dir 3 << 30 | size << 16 | 'N' << 8 | 0x41.
        assert_eq!(
            NVME_IOCTL_ADMIN_CMD,
            (3 << 30) | (72 << 16) | (u64::from(b'N') << 8) | 0x41
        );
    }

    #[test]
    fn sg_io_hdr_matches_the_kernel_layout() {
        // <scsi/sg.h> on 64-bit, checked with gcc: size 88, dxferp 16, cmdp 24, sbp 32, timeout 40, status 64,
        // host_status 68, info 80.
        assert_eq!(size_of::<SgIoHdr>(), 88);
        assert_eq!(offset_of!(SgIoHdr, dxferp), 16);
        assert_eq!(offset_of!(SgIoHdr, cmdp), 24);
        assert_eq!(offset_of!(SgIoHdr, sbp), 32);
        assert_eq!(offset_of!(SgIoHdr, timeout), 40);
        assert_eq!(offset_of!(SgIoHdr, status), 64);
        assert_eq!(offset_of!(SgIoHdr, host_status), 68);
        assert_eq!(offset_of!(SgIoHdr, info), 80);
    }

    #[test]
    fn ioctls_on_a_regular_file_fail_with_an_errno_not_a_crash() {
        let file = tempfile::tempfile().expect("temp file");
        let cmd = NvmePassthruCmd {
            opcode: 0x06,
            cdw10: 1,
            ..Default::default()
        };
        let mut buf = vec![0u8; 4096];
        let err =
            nvme_admin(&file, &cmd, &mut buf).expect_err("a regular file is not an NVMe device");
        assert!(err.raw_os_error().is_some(), "{err}");
        let err = sg_io(
            &file,
            &[0x12, 0, 0, 0, 96, 0],
            SgData::FromDevice(&mut buf[..96]),
            1000,
        )
        .expect_err("a regular file takes no SG_IO");
        assert!(err.raw_os_error().is_some(), "{err}");
    }
}
