#!/usr/bin/env bash
# Builds the kiln ramdisk from Debian packages: OUT_DIR/vmlinuz and OUT_DIR/initramfs.img.
#
#   images/ramdisk/build.sh OUT_DIR [AGENT_BINARY]
#
# The kernel comes from linux-image-*-amd64 (the version linux-image-amd64 depends on), userland from
# busybox-static. With AGENT_BINARY (kiln-agent; static, or glibc with its libraries copied in), /init runs
# `kiln-agent run` as its worker (report booted, then inspect and report the hardware, or write kiln.image to the
# disk and report it); without it, /init reports "booted" to the provisioner itself with busybox wget. Either way
# it prints the marker line "KILN-RAMDISK-BOOTED mac=… mode=…" on the console, then powers off (or, after an
# image write, waits for the provisioner to power-cycle the node).
#
# Needs: apt-get (download only, no install), dpkg-deb, cpio or busybox, zstd or gzip. Runs as any user.
set -euo pipefail

out=${1:?usage: build.sh OUT_DIR [AGENT_BINARY]}
agent=${2:-}
here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$out"
out=$(cd "$out" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"

kernel_pkg=$(apt-cache depends linux-image-amd64 | awk '/Depends: linux-image-[0-9]/ {print $2; exit}')
[ -n "$kernel_pkg" ] || { echo "build.sh: cannot find the kernel package linux-image-amd64 depends on" >&2; exit 1; }
echo "build.sh: kernel package $kernel_pkg"
apt-get download -q "$kernel_pkg" busybox-static >/dev/null
dpkg-deb -x "$(ls "$kernel_pkg"_*.deb)" kernel
dpkg-deb -x "$(ls busybox-static_*.deb)" busybox
kver=$(ls kernel/lib/modules | head -n1)

root=$work/root
mkdir -p "$root"/{bin,sbin,proc,sys,dev,tmp,run,etc,lib/modules,usr/share/udhcpc}
cp busybox/bin/busybox "$root/bin/busybox"
# Modules for virtio and NVMe, in load order: each after the ones it needs (virtio_ring before virtio, or there
# is no eth0; crc64 before crc64-rocksoft, or t10-pi, nvme-core and nvme fail with unknown symbols and no NVMe
# disk appears).
modules="virtio_ring virtio virtio_pci_legacy_dev virtio_pci_modern_dev virtio_pci failover net_failover virtio_net virtio_blk crct10dif_common crc-t10dif crc64 crc64-rocksoft t10-pi nvme-core nvme"
: > "$root/lib/modules/load-order"
for name in $modules; do
    found=$(find "kernel/lib/modules/$kver" \( -name "$name.ko" -o -name "$name.ko.xz" -o -name "$name.ko.zst" \) | head -n1)
    [ -n "$found" ] || continue # built into this kernel
    case "$found" in
        *.xz) xz -dc "$found" > "$root/lib/modules/$name.ko" ;;
        *.zst) zstd -qdc "$found" > "$root/lib/modules/$name.ko" ;;
        *) cp "$found" "$root/lib/modules/$name.ko" ;;
    esac
    echo "$name" >> "$root/lib/modules/load-order"
done
if [ -n "$agent" ]; then
    install -m 0755 "$agent" "$root/bin/kiln-agent"
    command -v strip >/dev/null 2>&1 && strip "$root/bin/kiln-agent"
    # A glibc build (no musl target offline): copy its ELF interpreter and shared libraries from this host, at
    # the same paths. A static binary has none ("not a dynamic executable").
    if ldd "$agent" >/dev/null 2>&1; then
        for lib in $(ldd "$agent" | grep -o '/[^ ]*'); do
            mkdir -p "$root$(dirname "$lib")"
            cp -L "$lib" "$root$lib"
        done
    fi
fi
install -m 0755 "$here/init" "$root/init"
install -m 0755 "$here/udhcpc.script" "$root/usr/share/udhcpc/default.script"

cp "$(ls kernel/boot/vmlinuz-*)" "$out/vmlinuz"
# zstd -19 makes the ramdisk about a fifth smaller than gzip -9 and unpacks faster; it is used when the kernel
# can unpack it (CONFIG_RD_ZSTD) and zstd is here, else gzip. KILN_RAMDISK_COMPRESS=gzip forces gzip.
compress="gzip -9"
if [ "${KILN_RAMDISK_COMPRESS:-zstd}" = zstd ] && command -v zstd >/dev/null 2>&1 \
    && grep -qs '^CONFIG_RD_ZSTD=y' kernel/boot/config-*; then
    compress="zstd -19 -q -c"
fi
if command -v cpio >/dev/null 2>&1; then
    (cd "$root" && find . | cpio -o -H newc --quiet) | $compress > "$out/initramfs.img"
else
    (cd "$root" && find . | "$root/bin/busybox" cpio -o -H newc) | $compress > "$out/initramfs.img"
fi
echo "build.sh: wrote $out/vmlinuz (kernel $kver) and $out/initramfs.img ($(du -h "$out/initramfs.img" | cut -f1), ${compress%% *})"
