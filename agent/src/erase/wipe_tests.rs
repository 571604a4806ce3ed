//! Disk selection, held disks, arguments, the wipe report and parallel erase over files.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use kiln_model::EraseMethod;

use super::*;
use crate::AgentStep;

fn disk(name: &str, size_bytes: u64) -> DiskInfo {
    DiskInfo {
        name: name.into(),
        model: None,
        serial: None,
        size_bytes,
        rotational: false,
    }
}

#[test]
fn selection_keeps_local_disks_with_device_files_and_says_why_others_are_left_out() {
    let dev = tempfile::tempdir().expect("dev");
    for name in ["nvme0n1", "nvme1n1", "sda", "loop0", "vda"] {
        std::fs::write(dev.path().join(name), b"").expect("file");
    }
    let disks = [
        disk("loop0", 1 << 30),
        disk("nvme0n1", 1 << 30),
        disk("nvme1n1", 1 << 30),
        disk("nvme2n1", 1 << 30),
        disk("sda", 1 << 30),
        disk("vda", 0),
    ];
    let held = BTreeSet::from(["sda".to_string()]);
    let selection = select_disks(&disks, dev.path(), &held);
    assert_eq!(
        selection.disks,
        [dev.path().join("nvme0n1"), dev.path().join("nvme1n1")]
    );
    let left: Vec<&str> = selection.left_out.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(left, ["loop0", "nvme2n1", "sda", "vda"]);
    assert!(
        selection.left_out[2].1.contains("mounted"),
        "{:?}",
        selection.left_out
    );
}

/// A sysfs `class/block` tree: `nvme0n1` with partition `nvme0n1p2`, `dm-0` over `nvme1n1p1`, and `sdb`.
fn sys_tree() -> tempfile::TempDir {
    let tree = tempfile::tempdir().expect("sys");
    let devices = tree.path().join("devices");
    let block = tree.path().join("class/block");
    std::fs::create_dir_all(&block).expect("block");
    let link = |name: &str, target: &Path| {
        std::fs::create_dir_all(target).expect("dir");
        std::os::unix::fs::symlink(target, block.join(name)).expect("link");
    };
    link("nvme0n1", &devices.join("nvme0n1"));
    link("nvme0n1p2", &devices.join("nvme0n1/nvme0n1p2"));
    link("nvme1n1", &devices.join("nvme1n1"));
    link("nvme1n1p1", &devices.join("nvme1n1/nvme1n1p1"));
    link("dm-0", &devices.join("dm-0"));
    link("sdb", &devices.join("sdb"));
    for part in ["nvme0n1/nvme0n1p2", "nvme1n1/nvme1n1p1"] {
        std::fs::write(devices.join(part).join("partition"), "1").expect("partition");
    }
    std::fs::create_dir_all(devices.join("dm-0/slaves/nvme1n1p1")).expect("slaves");
    tree
}

#[test]
fn held_disks_resolve_partitions_and_device_mapper_to_whole_disks() {
    let sys = sys_tree();
    let dev = tempfile::tempdir().expect("dev");
    std::fs::create_dir_all(dev.path().join("mapper")).expect("mapper");
    std::fs::write(dev.path().join("dm-0"), b"").expect("dm");
    std::os::unix::fs::symlink(dev.path().join("dm-0"), dev.path().join("mapper/vg-root"))
        .expect("link");
    let mounts = "rootfs / rootfs rw 0 0\n\
                  /dev/mapper/vg-root / ext4 rw 0 0\n\
                  /dev/nvme0n1p2 /boot ext4 rw 0 0\n\
                  proc /proc proc rw 0 0\n";
    let held = held_disks(mounts, dev.path(), &sys.path().join("class/block"));
    assert_eq!(
        held,
        BTreeSet::from(["nvme0n1".to_string(), "nvme1n1".to_string()])
    );
    // A named device is refused when it is a disk holding a mount.
    let root = tempfile::tempdir().expect("root");
    std::fs::create_dir_all(root.path().join("proc")).expect("proc");
    std::fs::write(root.path().join("proc/mounts"), mounts).expect("mounts");
    let sys_link = root.path().join("sys/class");
    std::fs::create_dir_all(&sys_link).expect("sys");
    std::os::unix::fs::symlink(sys.path().join("class/block"), sys_link.join("block"))
        .expect("link");
    for name in ["nvme0n1", "sdb"] {
        std::fs::write(dev.path().join(name), b"").expect("disk");
    }
    let sources = InspectSources {
        root: root.path().to_path_buf(),
        dmidecode: None,
        lspci_vmm: None,
    };
    let named = [dev.path().join("sdb"), dev.path().join("nvme0n1")];
    assert_eq!(
        mounted_among(&named, &sources, &dev.path().canonicalize().expect("dev")),
        [dev.path().join("nvme0n1")]
    );
    // The ramdisk's own mounts (rootfs, proc, sysfs, devtmpfs) hold no disk.
    assert!(held_disks("rootfs / rootfs rw 0 0\n", dev.path(), sys.path()).is_empty());
}

#[test]
fn arguments_parse_and_bad_ones_are_named() {
    let words = |s: &str| s.split_whitespace().map(String::from).collect::<Vec<_>>();
    let args = WipeArgs::parse(&words(
        "/dev/vdb --json --method overwrite /dev/vdc --samples 4",
    ))
    .expect("parse");
    assert_eq!(
        args.devices,
        [PathBuf::from("/dev/vdb"), PathBuf::from("/dev/vdc")]
    );
    assert!(args.json);
    let options = args.options();
    assert_eq!(options.only, Some(EraseMethod::Overwrite));
    assert_eq!(options.samples, 4);
    assert_eq!(WipeArgs::parse(&[]).expect("empty").options().samples, 16);

    let err = WipeArgs::parse(&words("--method shred")).expect_err("unknown method");
    assert!(
        err.contains("\"shred\"") && err.contains("nvme_sanitize_crypto"),
        "{err}"
    );
    assert!(
        WipeArgs::parse(&words("--samples many"))
            .expect_err("n")
            .contains("many")
    );
    assert!(WipeArgs::parse(&words("--method")).is_err());
    assert!(
        WipeArgs::parse(&words("--force"))
            .expect_err("flag")
            .contains("--force")
    );
}

#[test]
fn files_are_erased_in_parallel_one_record_each_in_order() {
    let dir = tempfile::tempdir().expect("dir");
    let a = dir.path().join("disk-a");
    let b = dir.path().join("disk-b");
    std::fs::write(&a, vec![0x42u8; 3 << 20]).expect("a");
    std::fs::write(&b, vec![0x17u8; 5 << 20]).expect("b");
    let missing = dir.path().join("disk-c");
    let paths = [a.clone(), missing.clone(), b.clone()];
    let steps = std::sync::Mutex::new(Vec::new());
    let records = erase_all(
        &paths,
        &EraseOptions::default(),
        &open_host_device,
        &|path, step| {
            steps
                .lock()
                .expect("lock")
                .push((path.to_path_buf(), step.clone()))
        },
    );
    assert_eq!(records.len(), 3);
    assert_eq!(records[0].device, a.display().to_string());
    assert!(records[0].is_ok() && records[2].is_ok(), "{records:?}");
    assert_eq!(records[2].method, Some(EraseMethod::Overwrite));
    assert!(!records[1].is_ok());
    let error = records[1].error.as_deref().unwrap_or("");
    assert!(
        error.contains("cannot open") && error.contains("disk-c"),
        "{error}"
    );
    for path in [&a, &b] {
        assert!(std::fs::read(path).expect("read").iter().all(|x| *x == 0));
    }
    assert!(steps.lock().expect("lock").iter().any(
        |(p, s)| p == &b && matches!(s, EraseStep::Written { bytes, total } if bytes == total)
    ));

    match wipe_step(records.clone()) {
        AgentStep::WipeFailed { records: r, error } => {
            assert_eq!(r.len(), 3);
            assert!(error.starts_with("disk-c: cannot open"), "{error}");
            assert!(!error.contains("disk-a"), "{error}");
        }
        other => panic!("{other:?}"),
    }
    match wipe_step(vec![records[0].clone(), records[2].clone()]) {
        AgentStep::Wiped { disks, records } => {
            assert_eq!(disks, ["disk-a", "disk-b"]);
            assert_eq!(records.len(), 2);
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        wipe_step(Vec::new()),
        AgentStep::WipeFailed { .. }
    ));
}
