#!/usr/bin/env bash
# Real PXE boots of QEMU VMs (TCG, no KVM) from kiln's own DHCP, TFTP and HTTP boot services:
#   (a) BIOS: SeaBIOS + the NIC's iPXE ROM → DHCP (user class iPXE) → HTTP script → kiln ramdisk → kiln-agent
#       reports booted, inspects, reports the hardware
#   (b) UEFI: OVMF native PXE → TFTP ipxe.efi → iPXE → HTTP script → kiln ramdisk → kiln-agent, as (a)
#   (c) BIOS, node in a boot-from-disk state (available): iPXE → HTTP script → sanboot / exit → the VM boots its
#       disk, whose boot sector prints a marker on the serial port and exits QEMU (isa-debug-exit)
# and asserts on kiln's inventory (events, leases, node state), not only on the serial consoles.
#
#   e2e/pxe-boot.sh [KILN_BINARY]    (as root; KILN_AGENT=PATH, default kiln-agent beside KILN_BINARY)
#
# Needs: qemu-system-x86 ipxe-qemu ovmf ipxe busybox-static iproute2 curl sqlite3, and network access for apt-get download
# (the ramdisk build fetches linux-image-*-amd64 and busybox-static). Only addresses inside the namespace and veth
# it creates (10.78.0.0/24) are used. Every VM runs under `timeout`; ends with "N passed, M failed".
set -uo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)
kiln=${1:-${CARGO_TARGET_DIR:-target}/debug/kiln}
vm_timeout=${KILN_E2E_VM_TIMEOUT:-300}
[ -x "$kiln" ] || { echo "no kiln binary at $kiln (cargo build -p kiln)"; exit 1; }
"$kiln" boot --help >/dev/null 2>&1 || { echo "$kiln has no 'boot' subcommand (a stale binary?)"; exit 1; }

ns=kiln-e2e-pxe
work=$(mktemp -d)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
    wait 2>/dev/null
    ip netns del "$ns" 2>/dev/null
    ip link del kpx-host 2>/dev/null
    rm -rf "$work"
}
trap cleanup EXIT
passed=0 failed=0
check() {
    if "${@:2}"; then passed=$((passed + 1)); echo "ok   $1"; else failed=$((failed + 1)); echo "FAIL $1"; fi
}

# The ramdisk carries the real agent: /init runs `kiln-agent run` (report booted, inspect, report the hardware).
agent=${KILN_AGENT:-$(dirname "$kiln")/kiln-agent}
assets=${KILN_RAMDISK_DIR:-$work/ramdisk}
if [ ! -s "$assets/initramfs.img" ]; then
    [ -x "$agent" ] || { echo "no kiln-agent binary at $agent (cargo build -p kiln-agent, or set KILN_AGENT)"; exit 1; }
    bash images/ramdisk/build.sh "$assets" "$agent" || { echo "ramdisk build failed"; exit 1; }
fi

# Debian's ipxe.efi is a symlink out of /usr/lib/ipxe, which kiln's TFTP (rightly) refuses: serve copies.
mkdir -p "$work/tftp"
cp -L /usr/lib/ipxe/undionly.kpxe /usr/lib/ipxe/ipxe.efi "$work/tftp/"

ip netns del "$ns" 2>/dev/null; ip link del kpx-host 2>/dev/null
ip netns add "$ns"
ip netns exec "$ns" ip link add br0 type bridge
ip netns exec "$ns" ip link set br0 up
ip link add kpx-host type veth peer name kpx-br
ip link set kpx-br netns "$ns"
ip netns exec "$ns" ip link set kpx-br master br0 up
ip addr add 10.78.0.1/24 dev kpx-host
ip link set kpx-host up
for tap in tap0 tap1 tap2; do
    ip netns exec "$ns" ip tuntap add "$tap" mode tap
    ip netns exec "$ns" ip link set "$tap" master br0 up
done

printf 'hall,rack,slot,serial,sku,bmc_address,bmc_protocol,bmc_user,bmc_password,boot_mac\n' > "$work/m.csv"
printf 'H1,R1,1,SN1,h100-sxm-80gb,10.1.0.1,redfish,admin,pw,52:54:00:e2:00:01\n' >> "$work/m.csv"
printf 'H1,R1,2,SN2,h100-sxm-80gb,10.1.0.2,redfish,admin,pw,52:54:00:e2:00:02\n' >> "$work/m.csv"
printf 'H1,R1,3,SN3,h100-sxm-80gb,10.1.0.3,redfish,admin,pw,52:54:00:e2:00:03\n' >> "$work/m.csv"
db="sqlite://$work/kiln.db"
"$kiln" --db "$db" --key-file "$work/k.key" rack import "$work/m.csv" >/dev/null 2>&1
# Case (c)'s node is imaged and available: its boot script must send it to its disk. No kiln command sets a state
# by hand (the lifecycle engine owns transitions), so the fixture writes the row directly.
sqlite3 "$work/kiln.db" "UPDATE nodes SET state = 'available' WHERE serial = 'SN3'"
# No lifecycle engine runs here to ask for these boots: a technician's grant lets each VM's first script fetch
# have a boot token (without one, kiln serves a script that boots nothing).
for n in 1 2; do
    "$kiln" --db "$db" --key-file "$work/k.key" boot grant "SN$n" --window 30m >/dev/null || { echo "boot grant SN$n failed"; exit 1; }
done

# Case (c)'s disk: a boot sector that prints KILN-DISK-BOOTED and exits QEMU (e2e/marker-disk.sh).
. e2e/marker-disk.sh
write_marker_disk "$work/disk.raw"

"$kiln" --db "$db" -v boot serve --boot-server-ip 10.78.0.1 --dhcp-interface kpx-host \
    --dhcp-pool 10.78.0.100-10.78.0.150 --tftp-root "$work/tftp" --tftp-listen 10.78.0.1:69 \
    --http-listen 10.78.0.1:8080 --boot-assets "$assets" --boot-kernel-args "console=ttyS0" > "$work/serve.log" 2>&1 &
serve=$!
pids+=("$serve")
for _ in $(seq 100); do grep -q "DHCP server listening" "$work/serve.log" && break; sleep 0.1; done

start=$(date +%s)
cp /usr/share/OVMF/OVMF_VARS.fd "$work/vars.fd"
ip netns exec "$ns" timeout "$vm_timeout" qemu-system-x86_64 -accel tcg -m 512 -nodefaults -nographic \
    -machine pc,graphics=off -serial "file:$work/bios.log" -boot n \
    -netdev tap,id=n0,ifname=tap0,script=no,downscript=no -device virtio-net-pci,netdev=n0,mac=52:54:00:e2:00:01 &
bios=$!
pids+=("$bios")
ip netns exec "$ns" timeout "$vm_timeout" qemu-system-x86_64 -accel tcg -m 512 -nodefaults -nographic \
    -machine q35 -serial "file:$work/uefi.log" \
    -drive if=pflash,format=raw,readonly=on,file=/usr/share/OVMF/OVMF_CODE.fd \
    -drive if=pflash,format=raw,file="$work/vars.fd" \
    -netdev tap,id=n1,ifname=tap1,script=no,downscript=no \
    -device virtio-net-pci,netdev=n1,mac=52:54:00:e2:00:02,romfile= &
uefi=$!
pids+=("$uefi")
ip netns exec "$ns" timeout "$vm_timeout" qemu-system-x86_64 -accel tcg -m 256 -nodefaults -nographic \
    -machine pc,graphics=off -serial "file:$work/disk.log" -boot n \
    -device isa-debug-exit,iobase=0xf4,iosize=0x04 \
    -drive file="$work/disk.raw",format=raw,if=virtio \
    -netdev tap,id=n2,ifname=tap2,script=no,downscript=no -device virtio-net-pci,netdev=n2,mac=52:54:00:e2:00:03 &
disk=$!
pids+=("$disk")
wait "$bios"; bios_rc=$?
echo "BIOS VM ended (rc $bios_rc) after $(( $(date +%s) - start )) s"
wait "$uefi"; uefi_rc=$?
echo "UEFI VM ended (rc $uefi_rc) after $(( $(date +%s) - start )) s"
wait "$disk"; disk_rc=$?
echo "boot-from-disk VM ended (rc $disk_rc) after $(( $(date +%s) - start )) s"
kill "$serve"; wait "$serve" 2>/dev/null

check "BIOS VM printed the ramdisk marker" grep -q "KILN-RAMDISK-BOOTED mac=52:54:00:e2:00:01 mode=inspect report=reported" "$work/bios.log"
check "UEFI VM printed the ramdisk marker" grep -q "KILN-RAMDISK-BOOTED mac=52:54:00:e2:00:02 mode=inspect report=reported" "$work/uefi.log"
check "UEFI firmware fetched ipxe.efi over TFTP" grep -q "TFTP transfer complete.*ipxe.efi" "$work/serve.log"
for n in 1 2; do
    events=$("$kiln" --db "$db" node show "SN$n")
    check "SN$n: DHCP lease for iPXE recorded" grep -q "DHCP lease 10.78.0.1[0-5][0-9] for iPXE" <<<"$events"
    check "SN$n: inspect script served" grep -q "served iPXE script: node SN$n is enrolled: kiln ramdisk (inspect)" <<<"$events"
    check "SN$n: agent reported booted" grep -q "agent booted in the ramdisk" <<<"$events"
    check "SN$n: agent reported its inspection" grep -q "agent inspected the hardware: 0 GPUs, [0-9]* disks, [1-9][0-9]* NICs" <<<"$events"
    # The stored inspection is of this VM: QEMU's DMI vendor, and the NIC with the MAC it booted from.
    inspected=$(sqlite3 "$work/kiln.db" "SELECT r.body FROM agent_reports r JOIN nodes n ON n.id = r.node_id \
        WHERE n.serial = 'SN$n' AND r.step = 'inspected'")
    check "SN$n: inspection lists the VM's NIC 52:54:00:e2:00:0$n" grep -q '"52:54:00:e2:00:0'"$n"'"' <<<"$inspected"
    check "SN$n: inspection names QEMU as the system vendor" grep -q '"vendor": *"QEMU"' <<<"$inspected"
done
check "all three nodes hold pinned leases" test "$("$kiln" --db "$db" --json boot leases | grep -c '"pinned": true')" -eq 3
check "boot-from-disk VM booted its disk" grep -q "KILN-DISK-BOOTED" "$work/disk.log"
check "boot-from-disk VM ended through its disk's exit port" test "$disk_rc" -eq 3
events=$("$kiln" --db "$db" node show SN3)
check "SN3: DHCP lease for iPXE recorded" grep -q "DHCP lease 10.78.0.1[0-5][0-9] for iPXE" <<<"$events"
check "SN3: local-disk script served" grep -q "served iPXE script: node SN3 is available: boot from local disk" <<<"$events"
check "SN3: no ramdisk ran" bash -c '! grep -q "ramdisk reported\|agent booted" <<<"$0"' "$events"
check "SN3: still available" grep -q '"state": "available"' <<<"$("$kiln" --db "$db" --json node show SN3)"
if [ "$failed" -gt 0 ]; then
    for f in bios.log uefi.log disk.log serve.log; do echo "--- $f (tail)"; tail -n 30 "$work/$f"; done
fi
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
