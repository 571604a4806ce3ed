//! The doctor's checks of this host: interfaces and addresses, ports, disk space, boot assets.

use std::collections::BTreeMap;
use std::io::ErrorKind;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};

use nix::net::if_::InterfaceFlags;

use super::{Check, Status};
use crate::BootConfig;

/// One interface as the doctor sees it.
#[derive(Debug, Default)]
struct Interface {
    up: bool,
    loopback: bool,
    v4: Vec<Ipv4Addr>,
}

fn interfaces_now() -> Result<BTreeMap<String, Interface>, nix::Error> {
    let mut found: BTreeMap<String, Interface> = BTreeMap::new();
    for addr in nix::ifaddrs::getifaddrs()? {
        let entry = found.entry(addr.interface_name.clone()).or_default();
        entry.up |= addr.flags.contains(InterfaceFlags::IFF_UP);
        entry.loopback |= addr.flags.contains(InterfaceFlags::IFF_LOOPBACK);
        if let Some(ip) = addr.address.as_ref().and_then(|a| a.as_sockaddr_in()) {
            entry.v4.push(ip.ip());
        }
    }
    Ok(found)
}

/// Interfaces and addresses: the DHCP interface exists, is up and has an IPv4 address; kiln's boot server
/// address is held by an interface.
pub(super) fn interfaces(boot: &BootConfig) -> Check {
    const NAME: &str = "interfaces";
    let found = match interfaces_now() {
        Ok(found) => found,
        Err(err) => {
            return Check::new(NAME, Status::Fail, format!("cannot list interfaces: {err}"));
        }
    };
    let describe = |name: &str, iface: &Interface| {
        let addrs: Vec<String> = iface.v4.iter().map(Ipv4Addr::to_string).collect();
        let state = if iface.up { "up" } else { "down" };
        if addrs.is_empty() {
            format!("{name} ({state}, no IPv4)")
        } else {
            format!("{name} ({state}, {})", addrs.join(" "))
        }
    };
    let listing = found
        .iter()
        .map(|(name, iface)| describe(name, iface))
        .collect::<Vec<_>>()
        .join(", ");
    if let Some(wanted) = &boot.interface {
        match found.get(wanted) {
            None => {
                return Check::new(
                    NAME,
                    Status::Fail,
                    format!("--dhcp-interface {wanted} does not exist; this host has {listing}"),
                );
            }
            Some(iface) if !iface.up || iface.v4.is_empty() => {
                return Check::new(
                    NAME,
                    Status::Fail,
                    format!(
                        "--dhcp-interface {}: needs to be up with an IPv4 address",
                        describe(wanted, iface)
                    ),
                );
            }
            Some(_) => {}
        }
    }
    if let Some(ip) = boot.server_ip {
        let holder = found.iter().find(|(_, iface)| iface.v4.contains(&ip));
        match holder {
            None => {
                return Check::new(
                    NAME,
                    Status::Fail,
                    format!("no interface holds --boot-server-ip {ip}; this host has {listing}"),
                );
            }
            Some((name, _)) if boot.interface.as_ref().is_some_and(|wanted| wanted != name) => {
                return Check::new(
                    NAME,
                    Status::Fail,
                    format!("--boot-server-ip {ip} is on {name}, not on --dhcp-interface"),
                );
            }
            Some(_) => {}
        }
    }
    let usable = found
        .values()
        .any(|iface| iface.up && !iface.loopback && !iface.v4.is_empty());
    if !usable && (boot.any_requested() || boot.server_ip.is_some()) {
        return Check::new(
            NAME,
            Status::Warn,
            format!("no interface other than loopback is up with IPv4: {listing}"),
        );
    }
    Check::new(NAME, Status::Pass, listing)
}

/// Ports free: the API's TCP port and, for the boot services asked for, the DHCP, ProxyDHCP and TFTP UDP ports.
pub(super) async fn ports(listen: SocketAddr, boot: &BootConfig) -> Vec<Check> {
    let mut wanted = vec![("tcp", listen, "--listen")];
    if boot.pool.is_some() || boot.proxy {
        wanted.push(("udp", boot.dhcp_listen, "--dhcp-listen"));
    }
    if boot.proxy {
        wanted.push(("udp", boot.proxy_listen, "--dhcp-proxy-listen"));
    }
    if boot.tftp_root.is_some() {
        wanted.push(("udp", boot.tftp_listen, "--tftp-listen"));
    }
    let mut checks = Vec::new();
    for (proto, addr, flag) in wanted {
        let bound = match proto {
            "tcp" => tokio::net::TcpListener::bind(addr).await.map(drop),
            _ => tokio::net::UdpSocket::bind(addr).await.map(drop),
        };
        let name = format!("port {proto} {addr}");
        checks.push(match bound {
            Ok(()) => Check::new(name, Status::Pass, "free"),
            Err(err) if err.kind() == ErrorKind::AddrInUse => Check::new(
                name,
                Status::Fail,
                format!("in use by another process ({flag}; `ss -lnp` shows which)"),
            ),
            Err(err) if err.kind() == ErrorKind::PermissionDenied => Check::new(
                name,
                Status::Fail,
                "a privileged port: run as root or give kiln CAP_NET_BIND_SERVICE (the packaged unit does)",
            ),
            Err(err) if err.kind() == ErrorKind::AddrNotAvailable => Check::new(
                name,
                Status::Fail,
                format!("{} is not an address of this host ({flag})", addr.ip()),
            ),
            Err(err) => Check::new(name, Status::Fail, format!("cannot bind: {err}")),
        });
    }
    checks
}

/// The nearest directory at or above `path` that exists (the image store is created on first use).
fn existing_ancestor(path: &Path) -> Option<PathBuf> {
    let absolute = std::path::absolute(path).ok()?;
    absolute
        .ancestors()
        .find(|p| p.is_dir())
        .map(Path::to_path_buf)
}

fn gib(bytes: u64) -> String {
    format!("{:.1} GiB", bytes as f64 / (1u64 << 30) as f64)
}

/// Disk space for images under `image_dir`.
pub(super) fn disk(image_dir: &Path, min_free: u64) -> Check {
    const NAME: &str = "disk";
    let Some(dir) = existing_ancestor(image_dir) else {
        return Check::new(
            NAME,
            Status::Fail,
            format!("{}: no such place", image_dir.display()),
        );
    };
    let stat = match nix::sys::statvfs::statvfs(&dir) {
        Ok(stat) => stat,
        Err(err) => {
            return Check::new(
                NAME,
                Status::Fail,
                format!("cannot stat {}: {err}", dir.display()),
            );
        }
    };
    let free = stat.blocks_available().saturating_mul(stat.fragment_size());
    let total = stat.blocks().saturating_mul(stat.fragment_size());
    let detail = format!(
        "{} free of {} for images in {} (needs {})",
        gib(free),
        gib(total),
        image_dir.display(),
        gib(min_free)
    );
    let status = if free < min_free {
        Status::Fail
    } else if free < min_free.saturating_mul(2) {
        Status::Warn
    } else {
        Status::Pass
    };
    Check::new(NAME, status, detail)
}

/// The files a boot asset directory must hold, each non-empty.
fn missing_files(dir: &Path, names: &[&str]) -> Vec<String> {
    names
        .iter()
        .filter(|name| {
            std::fs::metadata(dir.join(name))
                .map(|meta| !meta.is_file() || meta.len() == 0)
                .unwrap_or(true)
        })
        .map(|name| (*name).to_string())
        .collect()
}

/// Ramdisk assets (`--boot-assets`: vmlinuz, initramfs.img) and iPXE binaries (`--tftp-root`).
pub(super) fn assets(boot: &BootConfig) -> Vec<Check> {
    let mut checks = Vec::new();
    let mut one = |name: &str, dir: Option<&PathBuf>, files: &[&str], flag: &str, hint: &str| {
        checks.push(match dir {
            None => Check::new(name, Status::Skip, format!("no {flag}")),
            Some(dir) => match missing_files(dir, files) {
                missing if missing.is_empty() => Check::new(
                    name,
                    Status::Pass,
                    format!("{} in {}", files.join(", "), dir.display()),
                ),
                missing => Check::new(
                    name,
                    Status::Fail,
                    format!(
                        "{} missing or empty in {} ({hint})",
                        missing.join(", "),
                        dir.display()
                    ),
                ),
            },
        });
    };
    one(
        "ramdisk",
        boot.assets.as_ref(),
        &["vmlinuz", "initramfs.img"],
        "--boot-assets",
        "build them with images/ramdisk/build.sh DIR",
    );
    one(
        "ipxe",
        boot.tftp_root.as_ref(),
        &["undionly.kpxe", "ipxe.efi"],
        "--tftp-root",
        "copy them from Debian's ipxe package, /usr/lib/ipxe",
    );
    checks
}

/// An SQLite file that does not exist yet: fine if its directory is writable.
pub(super) fn sqlite_file_to_create(version: &str, path: &Path) -> Check {
    let dir = std::path::absolute(path)
        .ok()
        .and_then(|p| p.parent().map(Path::to_path_buf));
    let writable = dir.as_ref().is_some_and(|dir| {
        nix::unistd::access(dir.as_path(), nix::unistd::AccessFlags::W_OK).is_ok()
    });
    if writable {
        Check::new(
            "database",
            Status::Pass,
            format!(
                "SQLite {version}; {} will be created on first use",
                path.display()
            ),
        )
    } else {
        Check::new(
            "database",
            Status::Fail,
            format!(
                "SQLite file {} does not exist and its directory is not writable",
                path.display()
            ),
        )
    }
}
