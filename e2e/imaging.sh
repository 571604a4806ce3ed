#!/usr/bin/env bash
# Imaging end to end, driven by the real lifecycle engine (`kiln serve`), on QEMU VMs (TCG, no KVM) behind
# simulated Redfish BMCs whose power actions reach the VMs over QMP (`kiln-bmc-sim --qmp`):
#
#   enrolled ─(BMC inventory over Redfish)→ discovering ─(one-time PXE boot, power cycle)→ the VM PXE-boots
#   the kiln ramdisk, whose agent reports booted and QEMU's hardware → inspecting ─(hardware matches the SKU)→
#   imaging ─(power cycle)→ the image ramdisk's agent streams the catalog image onto /dev/vda, sha256-verified,
#   and reports it → booting ─(one-time disk boot, power cycle)→ iPXE is told "boot from local disk" → the
#   imaged OS (a boot sector) prints KILN-DISK-BOOTED and ends the VM through isa-debug-exit.
#
# Two rounds run side by side, each in its own network namespace with its own kiln, database and BMC: one writes
# a raw image, the other the same disk as raw.zst. The assertions are on kiln's inventory (events, state, stored
# hardware), the VM's disk and serial console. The engine's later states cannot pass in a VM (booting waits for
# the installed OS's agent and SSH host key, burn_in needs GPUs): the check stops at `booting` + the disk marker.
#
#   e2e/imaging.sh [KILN_BINARY]    (as root; KILN_AGENT and KILN_BMC_SIM default to the binaries beside
#                                    KILN_BINARY; KILN_RAMDISK_DIR reuses a built ramdisk)
#
# Needs: qemu-system-x86 ipxe-qemu ipxe busybox-static iproute2 sqlite3 zstd, and network access for apt-get
# download when it builds the ramdisk. Only addresses inside the namespaces it creates are used (10.81.0.0/24,
# 10.82.0.0/24, their loopbacks). Every VM runs under `timeout` and is killed by pid; ends with "N passed, M failed".
set -uo pipefail
cd "$(dirname "$0")/.."
kiln=${1:-${CARGO_TARGET_DIR:-target}/debug/kiln}
bin_dir=$(dirname "$kiln")
agent=${KILN_AGENT:-$bin_dir/kiln-agent}
bmc_sim=${KILN_BMC_SIM:-$bin_dir/kiln-bmc-sim}
vm_timeout=${KILN_E2E_VM_TIMEOUT:-240}
for binary in "$kiln" "$bmc_sim"; do
    [ -x "$binary" ] || { echo "no binary at $binary (cargo build -p kiln -p kiln-agent -p kiln-bmc-sim)"; exit 1; }
done
. e2e/marker-disk.sh
. e2e/vm-lab.sh

work=$(mktemp -d)
pids=()
namespaces=()
cleanup() {
    # The rounds' own children (VM, BMC, kiln) by their recorded pids, then the rounds.
    for p in $(cat "$work"/round*/pids 2>/dev/null) "${pids[@]}"; do kill "$p" 2>/dev/null; done
    wait 2>/dev/null
    for ns in "${namespaces[@]}"; do ip netns del "$ns" 2>/dev/null; done
    rm -rf "$work"
}
trap cleanup EXIT
passed=0 failed=0
check() {
    if "${@:2}"; then passed=$((passed + 1)); echo "ok   $1"; else failed=$((failed + 1)); echo "FAIL $1"; fi
}

assets=${KILN_RAMDISK_DIR:-$work/ramdisk}
ensure_ramdisk "$assets" "$agent" "$work/tftp"

# The imaged OS, and the same disk compressed.
write_marker_disk "$work/marker.raw"
zstd -q -19 "$work/marker.raw" -o "$work/marker.raw.zst"

# round N VERSION FILE: one node through the engine into its imaged disk, in namespace kiln-e2e-img$N.
# Runs in the background; leaves its logs, database and disk under $work/round$N.
round() {
    local n=$1 version=$2 image=$3
    local dir=$work/round$n ns=kiln-e2e-img$n ip=10.8$n.0.1 mac=52:54:00:e3:00:0$n
    local db=sqlite://$work/round$n/kiln.db k=(--db "sqlite://$work/round$n/kiln.db" --key-file "$work/round$n/k.key")
    mkdir -p "$dir"
    vm_bridge "$ns" "$ip"
    vm_inventory "$kiln" "$dir" "VM$n" "$mac" "$image" "$version"

    # The VM: paused until its BMC powers it on, kept (stopped) when its OS powers off, network boot first.
    truncate -s 16M "$dir/disk.raw"
    ip netns exec "$ns" timeout "$vm_timeout" qemu-system-x86_64 -accel tcg -m 512 -nodefaults -nographic \
        -machine pc,graphics=off -serial "file:$dir/serial.log" -boot n -S -no-shutdown \
        -qmp "unix:$dir/qmp.sock,server,nowait" -device isa-debug-exit,iobase=0xf4,iosize=0x04 \
        -drive file="$dir/disk.raw",format=raw,if=virtio \
        -netdev tap,id=n0,ifname=tap0,script=no,downscript=no -device virtio-net-pci,netdev=n0,mac="$mac" &
    local vm=$!
    ip netns exec "$ns" "$bmc_sim" --port 9443 --user admin --password e2e-pw --qmp "$dir/qmp.sock" \
        > "$dir/bmc.log" 2>&1 &
    local bmc=$!
    ip netns exec "$ns" "$kiln" "${k[@]}" --signing-key "$dir/sign.key" serve --listen "$ip:8080" \
        --image "marker-disk:$version" --image-dir "$dir/images" --ssh-key "$dir/ssh.key" \
        --boot-server-ip "$ip" --dhcp-interface br0 --dhcp-pool "10.8$n.0.100-10.8$n.0.150" \
        --tftp-root "$work/tftp" --tftp-listen "$ip:69" --boot-assets "$assets" \
        --boot-kernel-args "console=ttyS0" > "$dir/serve.log" 2>&1 &
    local serve=$!
    echo "$vm $bmc $serve" > "$dir/pids"
    local start=$SECONDS
    wait "$vm"
    echo $? > "$dir/vm.rc"
    echo "round $n ($version): VM ended (rc $(cat "$dir/vm.rc")) after $((SECONDS - start)) s"
    kill "$serve" "$bmc" 2>/dev/null
    wait "$serve" "$bmc" 2>/dev/null
}

start=$SECONDS
for n in 1 2; do
    ip netns del "kiln-e2e-img$n" 2>/dev/null
    ip netns add "kiln-e2e-img$n"
    namespaces+=("kiln-e2e-img$n")
done
round 1 raw "$work/marker.raw" &
pids+=($!)
round 2 zst "$work/marker.raw.zst" &
pids+=($!)
wait "${pids[@]}"
echo "both rounds ended after $((SECONDS - start)) s"

for n in 1 2; do
    dir=$work/round$n
    k=(--db "sqlite://$dir/kiln.db" --key-file "$dir/k.key")
    version=$([ "$n" = 1 ] && echo raw || echo zst)
    digest=$(sha256sum "$work/marker.raw$([ "$n" = 2 ] && echo .zst)" | cut -d' ' -f1)
    r="round $n ($version)"
    events=$("$kiln" "${k[@]}" node show "VM$n")
    check "$r: the imaged disk booted and printed its marker" grep -q "KILN-DISK-BOOTED" "$dir/serial.log"
    check "$r: the VM ended through its disk's exit port" test "$(cat "$dir/vm.rc")" -eq 3
    check "$r: the inspect ramdisk reported" grep -q "KILN-RAMDISK-BOOTED mac=52:54:00:e3:00:0$n mode=inspect report=reported" "$dir/serial.log"
    check "$r: the image ramdisk reported" grep -q "KILN-RAMDISK-BOOTED mac=52:54:00:e3:00:0$n mode=image report=reported" "$dir/serial.log"
    check "$r: the agent wrote /dev/vda" grep -q "kiln-agent: image written to /dev/vda (1048576 bytes, verified)" "$dir/serial.log"
    check "$r: the disk holds the image" cmp -n 1048576 "$work/marker.raw" "$dir/disk.raw"
    check "$r: BMC inventory read over Redfish" grep -q "BMC reachable, credentials accepted" <<<"$events"
    check "$r: the engine asked for PXE boots" grep -q "asked the BMC for a one-time pxe boot" <<<"$events"
    check "$r: agent inspected QEMU's hardware" grep -q "agent inspected the hardware: 0 GPUs, 1 disks, 1 NICs" <<<"$events"
    check "$r: hardware matched the SKU" grep -q "hardware matches SKU qemu-vm" <<<"$events"
    check "$r: image write requested once" test "$(grep -c "image write [0-9]* requested" <<<"$events")" -eq 1
    check "$r: image script served" grep -q "served iPXE script: node VM$n is imaging: kiln ramdisk (image)" <<<"$events"
    check "$r: agent wrote the catalog image" grep -q "agent wrote image $digest (1048576 bytes" <<<"$events"
    check "$r: engine saw it verified" grep -q "image marker-disk $version written and verified (sha256 $digest)" <<<"$events"
    check "$r: the engine asked for a disk boot" grep -q "asked the BMC for a one-time disk boot" <<<"$events"
    check "$r: local-disk script served" grep -q "served iPXE script: node VM$n is booting: boot from local disk" <<<"$events"
    check "$r: node is booting" grep -q '"state": "booting"' <<<"$("$kiln" "${k[@]}" --json node show "VM$n")"
    check "$r: inventory holds the VM's NIC" test "$(sqlite3 "$dir/kiln.db" "SELECT count(*) FROM nics WHERE mac = '52:54:00:e3:00:0$n'")" -eq 1
    check "$r: inventory holds the VM's 16 MiB disk" test "$(sqlite3 "$dir/kiln.db" "SELECT size_bytes FROM disks WHERE name = 'vda'")" = 16777216
    check "$r: inspection names QEMU as the system vendor" grep -q '"vendor": *"QEMU"' <<<"$(sqlite3 "$dir/kiln.db" "SELECT body FROM agent_reports WHERE step = 'inspected'")"
    # Where the time went: seconds from the first event to each state entered, from kiln's own event log.
    echo "$r: $(sqlite3 "$dir/kiln.db" "SELECT group_concat(to_state || ' +' || ((at - (SELECT min(at) FROM node_events)) / 1000) || ' s', ', ')
        FROM node_events WHERE to_state IS NOT NULL")"
done
if [ "$failed" -gt 0 ]; then
    for n in 1 2; do
        for f in serial.log serve.log bmc.log; do echo "--- round $n $f (tail)"; tail -n 40 "$work/round$n/$f"; done
        echo "--- round $n events"; "$kiln" --db "sqlite://$work/round$n/kiln.db" --key-file "$work/round$n/k.key" node show "VM$n" | tail -n 40
    done
fi
echo "imaging E2E: $passed passed, $failed failed in $((SECONDS - start)) s"
[ "$failed" -eq 0 ]
