#!/usr/bin/env bash
# kiln's DHCP/TFTP/HTTP boot services against real clients in a network namespace: busybox udhcpc posing as PXE
# firmware (BIOS and UEFI vendor classes) and as iPXE, then curl fetching what the answers point at. Asserts on
# the answers and on kiln's inventory (leases, discovered machines, node events).
#
#   e2e/dhcp-real-client.sh [KILN_BINARY]     (as root; needs iproute2, busybox-static, curl)
#
# Only addresses inside the namespace pair it creates (10.77.0.0/24 on a veth) are used. Ends with the line
# "N passed, M failed" and exits non-zero on any failure. Takes a few seconds.
set -uo pipefail
cd "$(dirname "$0")/.."
kiln=${1:-${CARGO_TARGET_DIR:-target}/debug/kiln}
[ -x "$kiln" ] || { echo "no kiln binary at $kiln (cargo build -p kiln)"; exit 1; }
"$kiln" boot --help >/dev/null 2>&1 || { echo "$kiln has no 'boot' subcommand (a stale binary?)"; exit 1; }
command -v busybox >/dev/null || { echo "busybox is needed (apt-get install busybox-static)"; exit 1; }

ns=kiln-e2e-dhcp
work=$(mktemp -d)
pid=
cleanup() {
    [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
    ip netns del "$ns" 2>/dev/null
    ip link del kbt-host 2>/dev/null
    rm -rf "$work"
}
trap cleanup EXIT
passed=0 failed=0
check() { # check NAME COMMAND...
    if "${@:2}"; then passed=$((passed + 1)); echo "ok   $1"; else failed=$((failed + 1)); echo "FAIL $1"; fi
}

ip netns del "$ns" 2>/dev/null; ip link del kbt-host 2>/dev/null
ip netns add "$ns"
ip link add kbt-host type veth peer name kbt-client
ip link set kbt-client netns "$ns"
ip addr add 10.77.0.1/24 dev kbt-host
ip link set kbt-host up
ip netns exec "$ns" ip link set lo up
ip netns exec "$ns" ip link set kbt-client address 52:54:00:aa:00:01 up

mkdir -p "$work/tftp" "$work/assets"
head -c 300000 /dev/urandom > "$work/tftp/undionly.kpxe"
head -c 200000 /dev/urandom > "$work/tftp/ipxe.efi"
echo kernel > "$work/assets/vmlinuz"; echo initrd > "$work/assets/initramfs.img"
printf 'hall,rack,slot,serial,sku,bmc_address,bmc_protocol,bmc_user,bmc_password,boot_mac\nH1,R1,1,SN1,h100-sxm-80gb,10.1.0.1,redfish,admin,pw,52:54:00:aa:00:01\n' > "$work/m.csv"
db="sqlite://$work/kiln.db"
"$kiln" --db "$db" --key-file "$work/k.key" rack import "$work/m.csv" >/dev/null 2>&1
# No lifecycle engine asks for this boot: a technician's grant lets the first script fetch from the node's leased
# address carry a boot token (without one, kiln serves a script that boots nothing).
"$kiln" --db "$db" --key-file "$work/k.key" boot grant SN1 --window 30m >/dev/null || { echo "boot grant SN1 failed"; exit 1; }

"$kiln" --db "$db" -v boot serve --boot-server-ip 10.77.0.1 --dhcp-interface kbt-host \
    --dhcp-pool 10.77.0.100-10.77.0.150 --tftp-root "$work/tftp" --tftp-listen 10.77.0.1:69 \
    --http-listen 10.77.0.1:18081 --boot-assets "$work/assets" > "$work/serve.log" 2>&1 &
pid=$!
for _ in $(seq 100); do grep -q "DHCP server listening" "$work/serve.log" && break; sleep 0.1; done

# The udhcpc hook prints what the server said, one KEY=VALUE per line.
cat > "$work/hook" <<'HOOK'
#!/bin/sh
[ "$1" = bound ] && printf 'ip=%s\nsiaddr=%s\nboot_file=%s\nserverid=%s\n' "$ip" "$siaddr" "$boot_file" "$serverid"
exit 0
HOOK
chmod +x "$work/hook"
ask() { # ask MAC VENDOR [USERCLASS]
    ip netns exec "$ns" ip link set kbt-client address "$1"
    local extra=()
    [ -n "${3:-}" ] && extra=(-x "0x4d:$(printf '%s' "$3" | od -An -tx1 | tr -d ' \n')")
    ip netns exec "$ns" timeout 20 busybox udhcpc -i kbt-client -n -q -f -t 5 -T 1 -V "$2" "${extra[@]}" -s "$work/hook" 2>/dev/null
}

bios=$(ask 52:54:00:aa:00:01 PXEClient:Arch:00000:UNDI:002001)
check "BIOS PXE client gets an address from the pool" grep -q '^ip=10.77.0.1[0-5][0-9]$' <<<"$bios"
check "BIOS PXE client is sent undionly.kpxe from kiln" grep -qx 'boot_file=undionly.kpxe' <<<"$bios"
check "siaddr names kiln's TFTP server" grep -qx 'siaddr=10.77.0.1' <<<"$bios"
# Configure the lease as the firmware would, then fetch what the answer names.
ip netns exec "$ns" ip addr add "$(sed -n 's/^ip=//p' <<<"$bios")/24" dev kbt-client
ip netns exec "$ns" curl -s --max-time 20 -o "$work/got.kpxe" tftp://10.77.0.1/undionly.kpxe
check "the boot file comes over TFTP intact" cmp -s "$work/got.kpxe" "$work/tftp/undionly.kpxe"

uefi=$(ask 02:00:00:00:99:07 PXEClient:Arch:00007:UNDI:003000)
check "UEFI PXE client is sent ipxe.efi" grep -qx 'boot_file=ipxe.efi' <<<"$uefi"
ipxe=$(ask 52:54:00:aa:00:01 PXEClient:Arch:00000:UNDI:002001 iPXE)
check "iPXE gets the HTTP script URL" grep -qx 'boot_file=http://10.77.0.1:18081/boot/52:54:00:aa:00:01.ipxe' <<<"$ipxe"
check "a MAC keeps its address" test "$(grep '^ip=' <<<"$bios")" = "$(grep '^ip=' <<<"$ipxe")"
script=$(ip netns exec "$ns" curl -s --max-time 20 "http://10.77.0.1:18081/boot/52:54:00:aa:00:01.ipxe")
check "the script boots the inspect ramdisk" grep -q 'kiln.mode=inspect' <<<"$script"
token=$(grep -o 'kiln.token=[0-9a-f]*' <<<"$script" | cut -d= -f2)
ip netns exec "$ns" busybox wget -q -O /dev/null --header "Authorization: Bearer $token" --post-data "booted" \
    "http://10.77.0.1:18081/boot/report/52:54:00:aa:00:01"
check "busybox wget's report is accepted" test $? -eq 0

# iPXE solicits an IPv6 router before it boots on; kiln's answer (lifetime 0, no prefix) ends that wait.
cat > "$work/rs.py" <<'PY'
import socket, struct, sys, time
s = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
s.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, b"kbt-client")
s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, 255)
idx = socket.if_nametoindex("kbt-client")
s.settimeout(1.0)
deadline = time.time() + 5
while time.time() < deadline:
    try:
        s.sendto(bytes([133, 0, 0, 0, 0, 0, 0, 0]), ("ff02::2", 0, 0, idx))
    except OSError:
        time.sleep(0.3)  # the link-local address is still in duplicate address detection
        continue
    try:
        data, _ = s.recvfrom(1500)
    except socket.timeout:
        continue
    if data[0] == 134:
        lifetime = struct.unpack("!H", data[6:8])[0]
        print(f"ra flags={data[5]} lifetime={lifetime} len={len(data)}")
        sys.exit(0)
sys.exit(1)
PY
ra=$(ip netns exec "$ns" python3 "$work/rs.py")
check "a router solicitation is answered" grep -q '^ra ' <<<"$ra"
check "the advertisement configures nothing (no flags, lifetime 0, no prefix)" grep -qx 'ra flags=0 lifetime=0 len=24' <<<"$ra"
check "serve logged the answer" grep -q "answered a router solicitation" "$work/serve.log"

# kiln doctor on the client side of the segment, as if a second kiln were set up there: kiln's DHCP server is
# "another DHCP server" to it (a real peer answering a real broadcast DISCOVER).
doctor=$(ip netns exec "$ns" "$kiln" --db "sqlite://$work/doctor.db" --json doctor --listen 127.0.0.1:0 \
    --min-free-gib 0 --dhcp-pool 10.77.0.160-10.77.0.170 --dhcp-interface kbt-client --dhcp-listen 0.0.0.0:67 \
    --dhcp-wait 2 2>/dev/null)
check "kiln doctor finds the DHCP server already on the segment" \
    bash -c 'python3 -c "import json,sys; d=json.load(sys.stdin); c=[c for c in d[\"checks\"] if c[\"name\"]==\"dhcp segment\"][0]; sys.exit(0 if c[\"status\"]==\"fail\" and \"10.77.0.1\" in c[\"detail\"] and not d[\"ok\"] else 1)" <<<"$0"' "$doctor"

kill "$pid"; wait "$pid" 2>/dev/null; pid=
quiet=$(ip netns exec "$ns" "$kiln" --db "sqlite://$work/doctor.db" --json doctor --listen 127.0.0.1:0 \
    --min-free-gib 0 --dhcp-pool 10.77.0.160-10.77.0.170 --dhcp-interface kbt-client --dhcp-listen 0.0.0.0:67 \
    --dhcp-wait 1)
check "with kiln stopped the segment is quiet" grep -q '"detail": "no other DHCP server answered in 1.0 s"' <<<"$quiet"
leases=$("$kiln" --db "$db" --json boot leases)
check "the node's lease is pinned in the inventory" grep -q '"pinned": *true' <<<"$leases"
discovered=$("$kiln" --db "$db" --json boot discovered)
check "the unknown UEFI machine is recorded as discovered" grep -q '02:00:00:00:99:07' <<<"$discovered"
events=$("$kiln" --db "$db" node show SN1)
check "node events record the DHCP lease, the script and the report" \
    bash -c 'grep -q "DHCP lease" <<<"$0" && grep -q "served iPXE script" <<<"$0" && grep -q "ramdisk reported: booted" <<<"$0"' "$events"

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
