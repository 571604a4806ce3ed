#!/usr/bin/env bash
# The Debian package's life on this machine: install → start → `kiln config check` → upgrade → stop → purge.
#
#   packaging/test-install.sh [BIN_DIR]      (as root; BIN_DIR holds kiln and kiln-agent, default target/debug)
#
# Two packages are built from the same binaries with versions V~ci1 and V~ci2, so the second install is a real
# dpkg upgrade. systemd is not PID 1 on the CI machine, so "start" runs the installed unit's own ExecStartPre and
# ExecStart lines, as its User, in its WorkingDirectory, with its Environment (read from the unit file, not
# repeated here); the unit itself is checked with `systemd-analyze verify`. Ends with "N passed, M failed".
set -uo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)
bin_dir=$(realpath "${1:-${CARGO_TARGET_DIR:-target}/debug}")
[ "$(id -u)" -eq 0 ] || { echo "test-install.sh: needs root (dpkg -i)"; exit 1; }
if dpkg -s kiln >/dev/null 2>&1; then
    echo "test-install.sh: a kiln package is already installed here; not touching it"; exit 1
fi

work=$(mktemp -d)
serve_pid=""
cleanup() {
    [ -n "$serve_pid" ] && kill "$serve_pid" 2>/dev/null
    dpkg --purge kiln >/dev/null 2>&1
    rm -rf /var/lib/kiln /var/log/kiln "$work"
}
trap cleanup EXIT
passed=0 failed=0
check() {
    if "${@:2}"; then passed=$((passed + 1)); echo "ok   $1"; else failed=$((failed + 1)); echo "FAIL $1"; fi
}

base=$(awk -F'"' '/^\[workspace.package\]/{p=1} p && /^version *=/{print $2; exit}' Cargo.toml)
deb1=$(bash packaging/deb/build.sh "$work/v1" --bin-dir "$bin_dir" --version "$base~ci1") || { echo "package build failed"; exit 1; }
deb2=$(bash packaging/deb/build.sh "$work/v2" --bin-dir "$bin_dir" --version "$base~ci2") || { echo "package build failed"; exit 1; }
contents=$(dpkg-deb -c "$deb1")
has_all() {
    local path
    for path in ./usr/bin/kiln ./lib/systemd/system/kiln.service ./usr/lib/kiln/kiln-agent ./usr/share/kiln/ramdisk/build.sh; do
        grep -qF " $path" <<<"$contents" || { echo "the package lacks $path"; return 1; }
    done
}
check "package has its contents" has_all
check "kiln.toml is a conffile" sh -c "dpkg-deb -I '$deb1' conffiles | grep -qx /etc/kiln/kiln.toml"

# Install.
check "dpkg -i (install)" dpkg -i "$deb1"
check "system user kiln exists" getent passwd kiln
check "/var/lib/kiln belongs to kiln, mode 0750" test "$(stat -c '%U %a' /var/lib/kiln)" = "kiln 750"
check "/etc/kiln/kiln.toml is root:kiln 0640" test "$(stat -c '%U:%G %a' /etc/kiln/kiln.toml)" = "root:kiln 640"
check "postinst migrated the database" test -s /var/lib/kiln/kiln.db
if command -v systemd-analyze >/dev/null; then
    check "systemd-analyze verify kiln.service" systemd-analyze verify /lib/systemd/system/kiln.service
fi

# A local edit of the conffile: a free port, so the test does not collide with anything else on the machine.
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
sed -i "s|^listen = .*|listen = \"127.0.0.1:$port\"|" /etc/kiln/kiln.toml
check "config edit applied" grep -q "127.0.0.1:$port" /etc/kiln/kiln.toml

unit=/lib/systemd/system/kiln.service
unit_value() { sed -n "s/^$1=//p" "$unit" | head -n1; }
# setpriv and env exec in turn (no watching parent as with runuser), so a backgrounded as_service's $! is kiln.
as_service() {
    local user; user=$(unit_value User)
    # shellcheck disable=SC2046
    setpriv --reuid="$user" --regid="$user" --init-groups \
        env -C "$(unit_value WorkingDirectory)" HOME="$(unit_value WorkingDirectory)" $(unit_value Environment) "$@"
}
start() {
    # shellcheck disable=SC2046
    as_service $(unit_value ExecStartPre) || return 1
    # shellcheck disable=SC2046
    setpriv --reuid="$(unit_value User)" --regid="$(unit_value User)" --init-groups \
        env -C "$(unit_value WorkingDirectory)" HOME="$(unit_value WorkingDirectory)" $(unit_value Environment) \
        $(unit_value ExecStart) >"$work/serve.log" 2>&1 &
    serve_pid=$!
    for _ in $(seq 100); do
        curl -fsS "http://127.0.0.1:$port/metrics" >/dev/null 2>&1 && return 0
        kill -0 "$serve_pid" 2>/dev/null || break
        sleep 0.2
    done
    cat "$work/serve.log"
    return 1
}
stop() {
    # The unit stops kiln with SIGINT (KillSignal), other supervisors with SIGTERM: either is a clean exit 0.
    kill "-${1:-INT}" "$serve_pid"
    for _ in $(seq 100); do
        kill -0 "$serve_pid" 2>/dev/null || break
        sleep 0.2
    done
    if kill -0 "$serve_pid" 2>/dev/null; then
        echo "kiln serve did not stop within 20 s of SIGINT"; kill -KILL "$serve_pid"
    fi
    wait "$serve_pid"; local rc=$?
    serve_pid=""
    [ "$rc" -eq 0 ] || { echo "kiln serve exited $rc"; tail -n 20 "$work/serve.log"; }
    return $rc
}

check "start: the unit's commands bring the API up" start
check "kiln config check passes as the service sees it" as_service /usr/bin/kiln config check
printf 'hall,rack,slot,serial,sku,bmc_address,bmc_protocol,bmc_user,bmc_password,boot_mac\n' > "$work/m.csv"
printf 'H1,R1,1,PKG1,h100-sxm-80gb,10.1.0.1,redfish,admin,pw,52:54:00:f0:00:01\n' >> "$work/m.csv"
chmod 644 "$work/m.csv"; chmod 755 "$work"
check "rack import into the service's database" as_service /usr/bin/kiln rack import "$work/m.csv"
token=$(as_service /usr/bin/kiln token create --role technician --label pkg-test)
check "the API serves the node with a token" sh -c "curl -fsS -H 'Authorization: Bearer $token' http://127.0.0.1:$port/api/v1/nodes/PKG1 | grep -q PKG1"
check "stop (SIGINT): clean shutdown" stop INT

# Upgrade.
check "dpkg -i (upgrade)" dpkg -i "$deb2"
check "upgraded version installed" test "$(dpkg-query -W -f '${Version}' kiln)" = "$base~ci2"
check "upgrade kept the local config edit" grep -q "127.0.0.1:$port" /etc/kiln/kiln.toml
check "start after upgrade" start
check "data survived the upgrade" sh -c "curl -fsS -H 'Authorization: Bearer $token' http://127.0.0.1:$port/api/v1/nodes/PKG1 | grep -q PKG1"
check "stop after upgrade (SIGTERM): clean shutdown" stop TERM

# Purge.
check "dpkg --purge" dpkg --purge kiln
check "purge removed the user" sh -c '! getent passwd kiln'
check "purge removed /etc/kiln/kiln.toml" test ! -e /etc/kiln/kiln.toml
check "purge kept the state (site keys)" test -s /var/lib/kiln/kiln.db

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
