# Sourced by the E2E scripts that drive a QEMU VM through `kiln serve` and `kiln-bmc-sim --qmp` (imaging.sh,
# turnover.sh): the pieces they share.

# ensure_ramdisk ASSETS AGENT TFTP: the kiln ramdisk in ASSETS (built with AGENT unless one is there) and iPXE's
# BIOS loader in TFTP. Exits the script when it cannot.
ensure_ramdisk() {
    local assets=$1 agent=$2 tftp=$3
    if [ ! -s "$assets/initramfs.img" ]; then
        [ -x "$agent" ] || { echo "no kiln-agent binary at $agent (cargo build -p kiln-agent, or set KILN_AGENT)"; exit 1; }
        bash images/ramdisk/build.sh "$assets" "$agent" || { echo "ramdisk build failed"; exit 1; }
    fi
    mkdir -p "$tftp"
    cp -L /usr/lib/ipxe/undionly.kpxe "$tftp/"
}

# vm_bridge NS IP: in the (existing) namespace NS, loopback up and a bridge br0 holding IP/24 with the VM's tap0.
vm_bridge() {
    local ns=$1 ip=$2
    ip netns exec "$ns" ip link set lo up
    ip netns exec "$ns" ip link add br0 type bridge
    ip netns exec "$ns" ip addr add "$ip/24" dev br0
    ip netns exec "$ns" ip link set br0 up
    ip netns exec "$ns" ip tuntap add tap0 mode tap
    ip netns exec "$ns" ip link set tap0 master br0 up
}

# vm_inventory KILN DIR SERIAL MAC IMAGE VERSION: a fresh inventory in DIR/kiln.db (key DIR/k.key) holding one
# node SERIAL (boot MAC MAC, a Redfish BMC at 127.0.0.1:9443, admin / e2e-pw) of SKU qemu-vm, and IMAGE in the
# catalog as marker-disk:VERSION (image store DIR/images).
vm_inventory() {
    local kiln=$1 dir=$2 serial=$3 mac=$4 image=$5 version=$6
    local k=(--db "sqlite://$dir/kiln.db" --key-file "$dir/k.key")
    # A SKU the VM matches (no GPUs): no kiln command adds SKUs, so the fixture writes the row.
    "$kiln" "${k[@]}" db migrate >/dev/null
    sqlite3 "$dir/kiln.db" "INSERT INTO skus (id, description, gpu_count, gpu_model, gpu_memory_gib)
        VALUES ('qemu-vm', 'QEMU TCG test VM, no GPUs', 0, '', 0)"
    printf 'hall,rack,slot,serial,sku,bmc_address,bmc_protocol,bmc_user,bmc_password,boot_mac\n' > "$dir/m.csv"
    printf 'H1,R1,1,%s,qemu-vm,https://127.0.0.1:9443,redfish,admin,e2e-pw,%s\n' "$serial" "$mac" >> "$dir/m.csv"
    "$kiln" "${k[@]}" rack import "$dir/m.csv" >/dev/null
    "$kiln" "${k[@]}" image --image-dir "$dir/images" add "$image" --name marker-disk --version "$version" >/dev/null
}
