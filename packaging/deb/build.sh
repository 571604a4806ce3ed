#!/usr/bin/env bash
# Builds the kiln Debian package from binaries already built in this workspace:
#
#   packaging/deb/build.sh OUT_DIR [--bin-dir DIR] [--version V]
#
# --bin-dir: where the kiln and kiln-agent binaries are (default target/release); --version: the package version
# (default: the workspace version). The package holds /usr/bin/kiln, /usr/lib/kiln/kiln-agent, the ramdisk build
# script under /usr/share/kiln/ramdisk, /etc/kiln/kiln.toml (a conffile: upgrades keep local edits), the hardened
# kiln.service unit and the maintainer scripts (postinst creates the kiln user and migrates the database).
# Needs dpkg-deb only; prints the path of the .deb it wrote.
set -euo pipefail

usage() { echo "usage: build.sh OUT_DIR [--bin-dir DIR] [--version V]" >&2; exit 2; }
out=${1:-}; [ -n "$out" ] || usage; shift
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
bin_dir="${CARGO_TARGET_DIR:-$repo/target}/release"
version=$(awk -F'"' '/^\[workspace.package\]/{p=1} p && /^version *=/{print $2; exit}' "$repo/Cargo.toml")
while [ $# -gt 0 ]; do
    case "$1" in
        --bin-dir) bin_dir=${2:?--bin-dir needs a directory}; shift 2 ;;
        --version) version=${2:?--version needs a version}; shift 2 ;;
        *) usage ;;
    esac
done
for bin in kiln kiln-agent; do
    [ -x "$bin_dir/$bin" ] || { echo "build.sh: no $bin binary in $bin_dir (cargo build --release -p kiln -p kiln-agent)" >&2; exit 1; }
done
[ -n "$version" ] || { echo "build.sh: cannot read the workspace version from Cargo.toml" >&2; exit 1; }

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
install -D -m 0755 "$bin_dir/kiln" "$stage/usr/bin/kiln"
install -D -m 0755 "$bin_dir/kiln-agent" "$stage/usr/lib/kiln/kiln-agent"
for f in build.sh init udhcpc.script; do
    install -D -m 0755 "$repo/images/ramdisk/$f" "$stage/usr/share/kiln/ramdisk/$f"
done
install -D -m 0640 "$here/kiln.toml" "$stage/etc/kiln/kiln.toml"
install -D -m 0644 "$repo/packaging/kiln.service" "$stage/lib/systemd/system/kiln.service"
install -D -m 0644 "$repo/README.md" "$stage/usr/share/doc/kiln/README.md"
install -D -m 0644 "$repo/examples/kiln.toml" "$stage/usr/share/doc/kiln/examples/kiln.toml"
mkdir -p "$stage/DEBIAN"
for script in postinst prerm postrm; do
    install -m 0755 "$here/$script" "$stage/DEBIAN/$script"
done
echo /etc/kiln/kiln.toml > "$stage/DEBIAN/conffiles"
size_kib=$(du -sk --exclude=DEBIAN "$stage" | cut -f1)
cat > "$stage/DEBIAN/control" <<CONTROL
Package: kiln
Version: $version
Architecture: amd64
Maintainer: kiln developers <kiln@localhost>
Installed-Size: $size_kib
Depends: libc6, adduser, util-linux
Recommends: ipxe, busybox-static, zstd
Suggests: postgresql
Section: admin
Priority: optional
Homepage: https://localhost/kiln
Description: turn racks of new GPU servers into verified, leasable capacity
 kiln PXE-boots and images bare-metal GPU servers over Redfish and IPMI, burns
 them in with NVML and NCCL health checks and keeps the nodes that pass in an
 inventory from which whole halls are leased. This package holds the kiln
 command and control plane (kiln.service), the node agent and the script that
 builds its boot ramdisk.
CONTROL
mkdir -p "$out"
deb="$(cd "$out" && pwd)/kiln_${version}_amd64.deb"
dpkg-deb --build --root-owner-group -Zxz "$stage" "$deb" >/dev/null
echo "$deb"
