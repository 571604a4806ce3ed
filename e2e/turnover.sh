#!/usr/bin/env bash
# Tenant turnover end to end: a released node's disks erased by the real agent in the kiln ramdisk, driven by the
# real lifecycle engine (`kiln serve`) through a simulated Redfish BMC whose power actions reach a QEMU VM (TCG)
# over QMP (`kiln-bmc-sim --qmp`):
#
#   wiping ─(cold power-off, TPM clear where offered, one-time PXE boot)→ the VM PXE-boots the kiln ramdisk in
#   wipe mode; `kiln-agent run` erases every local disk with the strongest method each offers, falling through
#   the chain (QEMU's NVMe drive: sanitize and crypto format are not offered, so the chain lands on a user-data
#   Format NVM; the virtio disk: overwrite), verifies by sampled read-back and reports one record per disk →
#   imaging ─(power cycle)→ the image ramdisk writes the catalog image.
#
# The VM has an emulated NVMe drive and a virtio disk, both filled with the previous tenant's pattern. The node is
# put in `wiping` by the fixture (a lease needs a burn-in on GPUs, which a VM cannot pass). Asserts that the
# pattern is gone from both disk files, that each stored erase record names its method and the methods it tried,
# and that the engine went on to imaging.
#
#   e2e/turnover.sh [KILN_BINARY]    (as root; KILN_BMC_SIM defaults to the binary beside KILN_BINARY;
#                                     KILN_RAMDISK_DIR reuses a built ramdisk, else KILN_AGENT is built into one)
#
# Needs: qemu-system-x86 ipxe-qemu ipxe busybox-static iproute2 sqlite3 python3. Only addresses inside the
# namespace it creates are used (10.84.0.0/24, its loopback). The VM runs under `timeout` and is killed by pid.
set -uo pipefail
cd "$(dirname "$0")/.."
kiln=${1:-${CARGO_TARGET_DIR:-target}/debug/kiln}
bin_dir=$(dirname "$kiln")
agent=${KILN_AGENT:-$bin_dir/kiln-agent}
bmc_sim=${KILN_BMC_SIM:-$bin_dir/kiln-bmc-sim}
vm_timeout=${KILN_E2E_VM_TIMEOUT:-420}
for binary in "$kiln" "$bmc_sim"; do
    [ -x "$binary" ] || { echo "no binary at $binary (cargo build -p kiln -p kiln-agent -p kiln-bmc-sim)"; exit 1; }
done
. e2e/marker-disk.sh
. e2e/vm-lab.sh

work=$(mktemp -d)
ns=kiln-e2e-turn
ip=10.84.0.1
mac=52:54:00:e4:00:01
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
    wait 2>/dev/null
    ip netns del "$ns" 2>/dev/null
    rm -rf "$work"
}
trap cleanup EXIT
passed=0 failed=0
check() {
    if "${@:2}"; then passed=$((passed + 1)); echo "ok   $1"; else failed=$((failed + 1)); echo "FAIL $1"; fi
}

assets=${KILN_RAMDISK_DIR:-$work/ramdisk}
ensure_ramdisk "$assets" "$agent" "$work/tftp"
write_marker_disk "$work/marker.raw"

# The previous tenant's data: a 16 MiB disk of one repeated line, on both drives.
pattern=KILN-TENANT-A-DATA
fill() {
    python3 -c "import sys; line=b'$pattern-%07d\n'; sys.stdout.buffer.write(b''.join(line % i for i in range(16*1024*1024 // 27))[:16*1024*1024].ljust(16*1024*1024, b'.'))" > "$1"
}
fill "$work/nvme.raw"
fill "$work/vd.raw"
count() { grep -a -c "$pattern" "$1"; }
check "the fixture filled the NVMe drive with the tenant's pattern" test "$(count "$work/nvme.raw")" -gt 1000
check "the fixture filled the virtio disk with the tenant's pattern" test "$(count "$work/vd.raw")" -gt 1000

ip netns del "$ns" 2>/dev/null
ip netns add "$ns"
vm_bridge "$ns" "$ip"

db=sqlite://$work/kiln.db
k=(--db "$db" --key-file "$work/k.key")
vm_inventory "$kiln" "$work" VM1 "$mac" "$work/marker.raw" raw
# The lease has ended: the node is where `kiln hall release` puts it (the lifecycle engine owns transitions and no
# kiln command sets a state by hand, so the fixture writes the row).
sqlite3 "$work/kiln.db" "UPDATE nodes SET state = 'wiping' WHERE serial = 'VM1'"

ip netns exec "$ns" timeout "$vm_timeout" qemu-system-x86_64 -accel tcg -m 512 -nodefaults -nographic \
    -machine pc,graphics=off -serial "file:$work/serial.log" -boot n -S -no-shutdown \
    -qmp "unix:$work/qmp.sock,server,nowait" -device isa-debug-exit,iobase=0xf4,iosize=0x04 \
    -drive file="$work/nvme.raw",format=raw,if=none,id=nv0 -device nvme,serial=KILNE2ENVME1,drive=nv0 \
    -drive file="$work/vd.raw",format=raw,if=virtio \
    -netdev tap,id=n0,ifname=tap0,script=no,downscript=no -device virtio-net-pci,netdev=n0,mac="$mac" &
vm=$!
pids+=("$vm")
ip netns exec "$ns" "$bmc_sim" --port 9443 --user admin --password e2e-pw --qmp "$work/qmp.sock" \
    > "$work/bmc.log" 2>&1 &
pids+=($!)
ip netns exec "$ns" "$kiln" "${k[@]}" --signing-key "$work/sign.key" serve --listen "$ip:8080" \
    --image "marker-disk:raw" --image-dir "$work/images" --ssh-key "$work/ssh.key" \
    --boot-server-ip "$ip" --dhcp-interface br0 --dhcp-pool "10.84.0.100-10.84.0.150" \
    --tftp-root "$work/tftp" --tftp-listen "$ip:69" --boot-assets "$assets" \
    --boot-kernel-args "console=ttyS0" > "$work/serve.log" 2>&1 &
serve=$!
pids+=("$serve")

# Until the engine has gone on past imaging (booting), or the VM ends, or the time is up.
start=$SECONDS
state=
while kill -0 "$vm" 2>/dev/null; do
    state=$(sqlite3 "$work/kiln.db" "SELECT state FROM nodes WHERE serial = 'VM1'" 2>/dev/null)
    case "$state" in booting | quarantined) break ;; esac
    sleep 2
done
echo "turnover: node reached '$state' after $((SECONDS - start)) s"
kill "$serve" 2>/dev/null
wait "$serve" 2>/dev/null
sleep 1 # the VM's last writes reach its disk files before they are read
kill "$vm" 2>/dev/null
wait "$vm" 2>/dev/null

events=$("$kiln" "${k[@]}" node show VM1)
shown=$("$kiln" "${k[@]}" --json node show VM1)
records=$(python3 - "$shown" <<'PY'
import json, sys
node = json.loads(sys.argv[1])
records = node.get("erase_records") or []
for stored in records:
    r = stored["record"]  # the agent's record (the erase JSON contract) inside the stored row
    tried = ",".join(t["method"] for t in r.get("tried", []))
    print(f'{r["device"]} {r["method"]} {r["result"]} verified={r["verified"]} tried={tried or "-"}')
PY
)
echo "$records"
check "the wipe ramdisk ran the agent and reported" grep -q "KILN-RAMDISK-BOOTED mac=$mac mode=wipe report=reported" "$work/serial.log"
check "the engine powered the node off cold before the wipe" grep -q "cold power-off" <<<"$events"
check "the engine cleared the TPM or recorded that the BMC does not offer it" grep -q "TPM clear" <<<"$events"
check "the BIOS reset seam is recorded, not faked" grep -q "BIOS reset: not managed yet" <<<"$events"
check "no trace of the tenant's pattern on the NVMe drive" test "$(count "$work/nvme.raw")" -eq 0
check "no trace of the tenant's pattern on the virtio disk" test "$(count "$work/vd.raw")" -eq 0
check "an erase record for the NVMe drive, verified" grep -q '^/dev/nvme0n1 nvme_.* ok verified=True' <<<"$records"
check "the NVMe record names the methods tried before the one that worked" \
    grep -q '^/dev/nvme0n1 .* tried=nvme_sanitize_crypto' <<<"$records"
check "an erase record for the virtio disk: overwrite, verified" grep -q '^/dev/vda overwrite ok verified=True' <<<"$records"
check "the agent reported each method as it started (wipe progress)" \
    bash -c 'grep -q "erase /dev/nvme0n1: trying nvme_format_user_data" <<<"$0" && grep -q "erase /dev/vda: trying overwrite" <<<"$0"' "$events"
check "the engine recorded the erase and went on to imaging" grep -q "disks erased" <<<"$events"
check "the image ramdisk wrote the catalog image after the wipe" grep -q "image marker-disk raw written and verified" <<<"$events"
check "the node reached booting" test "$state" = booting
if [ "$failed" -gt 0 ]; then
    for f in serial.log serve.log bmc.log; do echo "--- $f (tail)"; tail -n 60 "$work/$f"; done
    echo "--- events"; tail -n 40 <<<"$events"
fi
echo "turnover E2E: $passed passed, $failed failed in $((SECONDS - start)) s"
[ "$failed" -eq 0 ]
