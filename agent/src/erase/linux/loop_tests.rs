//! Real-peer tests on a loop device (root only; skipped with a printed reason otherwise): the kernel's sysfs
//! classifies it, data reaches the disk, NVMe and SCSI ioctls fail cleanly, and the chain erases it.

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

use kiln_model::{EraseMethod, EraseResult};

use super::*;
use crate::erase::{EraseOptions, erase_device};

/// A loop device over a temp file, detached when dropped.
struct LoopDev {
    path: PathBuf,
    _backing: tempfile::TempDir,
}

impl LoopDev {
    /// Attaches a loop device over `size` bytes of 0x5a, or says why it cannot.
    fn attach(size: usize, read_only: bool) -> Result<Self, String> {
        let backing = tempfile::tempdir().map_err(|e| e.to_string())?;
        let file = backing.path().join("disk.img");
        fs::write(&file, vec![0x5au8; size]).map_err(|e| e.to_string())?;
        let mut cmd = Command::new("losetup");
        cmd.args(["-f", "--show"]);
        if read_only {
            cmd.arg("-r");
        }
        let out = cmd
            .arg(&file)
            .output()
            .map_err(|e| format!("losetup not runnable: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "losetup failed (not root?): {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        let path = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        Ok(LoopDev {
            path,
            _backing: backing,
        })
    }
}

impl Drop for LoopDev {
    fn drop(&mut self) {
        let _ = Command::new("losetup").arg("-d").arg(&self.path).status();
    }
}

fn attach_or_skip(size: usize, read_only: bool) -> Option<LoopDev> {
    match LoopDev::attach(size, read_only) {
        Ok(dev) => Some(dev),
        Err(reason) => {
            eprintln!("skipped: no loop device: {reason}");
            None
        }
    }
}

const SIZE: usize = 8 << 20;

#[test]
fn a_loop_device_is_plain_and_its_data_reaches_the_disk() {
    let Some(lo) = attach_or_skip(SIZE, false) else {
        return;
    };
    let mut d = open(&lo.path).unwrap();
    let info = d.info().clone();
    assert_eq!(info.kind, DeviceKind::Plain);
    assert_eq!(
        (info.bytes, info.block_size, info.read_only),
        (SIZE as u64, 512, false)
    );
    assert_eq!(d.offered(), Ok(vec![]));
    assert!(matches!(
        d.start(EraseMethod::NvmeSanitizeCrypto),
        Err(DeviceError::Unsupported(_))
    ));

    // The family's commands on a device without them: errors naming the command, no panic.
    let cmd = nvme::identify_controller_cmd();
    let mut buf = vec![0u8; nvme::IDENTIFY_LEN];
    let err = ioctl::nvme_admin(&d.control, &cmd, &mut buf).unwrap_err();
    let mapped = map_errno(&err, "NVMe Identify Controller");
    assert!(
        matches!(&mapped, DeviceError::Unsupported(m) if m.contains("Identify")),
        "{mapped}"
    );
    let mut page = vec![0u8; 64];
    let cdb = scsi::report_supported_cdb(scsi::OP_SANITIZE, 3, 64);
    assert!(ioctl::sg_io(&d.control, &cdb, SgData::FromDevice(&mut page), 1000).is_err());
    ioctl::flush_buffers(&d.control).unwrap();

    let verify = crate::erase::verify::AlignedBuf::zeroed(1 << 20);
    d.write_at(1 << 20, verify.as_slice()).unwrap();
    d.flush().unwrap();
    let mut back = crate::erase::verify::AlignedBuf::zeroed(2 << 20);
    d.read_at(0, back.as_mut_slice()).unwrap();
    assert!(back.as_slice()[..1 << 20].iter().all(|b| *b == 0x5a));
    assert!(back.as_slice()[1 << 20..].iter().all(|b| *b == 0));
}

#[test]
fn a_loop_device_through_a_symlink_is_found_by_device_number() {
    let Some(lo) = attach_or_skip(SIZE, false) else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let link = tmp.path().join("by-id-disk");
    std::os::unix::fs::symlink(&lo.path, &link).unwrap();
    let sys = sysfs::describe(&link, Path::new("/sys"));
    assert_eq!(sys.name, lo.path.file_name().unwrap().to_string_lossy());
    assert_eq!(sys.bytes, Some(SIZE as u64));
}

#[test]
fn a_read_only_loop_device_refuses_writes() {
    let Some(lo) = attach_or_skip(SIZE, true) else {
        return;
    };
    let mut d = open(&lo.path).unwrap();
    assert!(d.info().read_only);
    assert_eq!(d.write_at(0, &[0u8; 512]), Err(DeviceError::ReadOnly));
    let record = erase_device(&mut d, &EraseOptions::default());
    assert_eq!(record.result, EraseResult::Failed);
    assert!(!record.verified);
}

#[test]
fn the_chain_erases_a_loop_device_by_overwrite() {
    let Some(lo) = attach_or_skip(SIZE, false) else {
        return;
    };
    let mut d = open(&lo.path).unwrap();
    let record = erase_device(
        &mut d,
        &EraseOptions {
            seed: Some(7),
            ..EraseOptions::default()
        },
    );
    assert_eq!(record.result, EraseResult::Ok, "{record:?}");
    assert_eq!(record.method, Some(EraseMethod::Overwrite));
    assert!(record.verified);
    let mut all = vec![0u8; SIZE];
    File::open(&lo.path).unwrap().read_exact(&mut all).unwrap();
    assert!(
        all.iter().all(|b| *b == 0),
        "the loop device still holds the pattern"
    );
}

/// Against a real NVMe namespace named by `KILN_TEST_NVME` (e.g. QEMU's emulated drive inside a test VM; it
/// is erased): every admin command either works or fails with a mapped error, never a panic.
#[test]
fn nvme_commands_on_the_namespace_in_kiln_test_nvme() {
    let Some(path) = std::env::var_os("KILN_TEST_NVME") else {
        eprintln!("skipped: KILN_TEST_NVME names no NVMe namespace to erase");
        return;
    };
    let mut d = open(Path::new(&path)).unwrap();
    assert_eq!(d.info().kind, DeviceKind::Nvme);
    let offered = d.offered().unwrap();
    eprintln!("offered: {offered:?}");
    for method in DeviceKind::Nvme.chain() {
        let result = d.start(*method).and_then(|()| d.progress());
        eprintln!(
            "{method} (offered: {}): {result:?}",
            offered.contains(method)
        );
    }
}
