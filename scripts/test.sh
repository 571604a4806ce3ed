#!/usr/bin/env bash
# The whole test suite, with its set-up: installs what the tests need on a fresh Debian machine with Rust
# (Debian packages, cargo tools), makes sure PostgreSQL is up, then runs every test of the workspace.
# KILN_TEST_PG=off skips the PostgreSQL half of the store tests.
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages the tests drive as real peers (none missing means no apt run).
# chromium: the hall map page test renders in headless Chromium.
# ipmitool, openipmi: real IPMI peers for the BMC tests (ipmitool client, ipmi_sim BMC).
# curl: real TFTP client for the boot tests; procps: /bin/kill for burn-in process groups; qemu-utils: qemu-img cross-check of the qcow2 reader.
# qemu-system-x86 ipxe-qemu ovmf ipxe busybox-static sqlite3 iproute2 zstd: the network boot and imaging E2E
# (e2e/*.sh, root only).
# python3-venv: a virtual environment for schemathesis (scripts/api-fuzz.sh).
# adduser, util-linux (setpriv): the Debian package's install test (packaging/test-install.sh, root only).
APT_PACKAGES=(chromium ipmitool openipmi curl procps qemu-utils python3-venv
    qemu-system-x86 ipxe-qemu ovmf ipxe busybox-static sqlite3 iproute2 zstd adduser util-linux)
# Two passes: installing one package can remove another (qemu-system-x86 from Debian takes out a backported
# qemu-utils it conflicts with), so whatever the first pass removed is installed again, at a matching version.
SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
updated=""
for pass in 1 2; do
    missing=()
    for pkg in "${APT_PACKAGES[@]}"; do
        dpkg -s "$pkg" 2>/dev/null | grep -q '^Status: install ok installed' || missing+=("$pkg")
    done
    [ ${#missing[@]} -eq 0 ] && break
    echo "test.sh: installing ${missing[*]} (pass $pass)"
    [ -n "$updated" ] || { $SUDO apt-get update -qq; updated=1; }
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}"
done

if ! command -v cargo-nextest >/dev/null 2>&1; then
    echo "test.sh: installing cargo-nextest"
    cargo install cargo-nextest --locked
fi

if [ "${KILN_TEST_PG:-on}" != "off" ]; then
    if ! pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then
        echo "test.sh: starting PostgreSQL"
        pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start || true
        for _ in $(seq 1 30); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 1; done
    fi
    pg_isready -h 127.0.0.1 -p 5432 || { echo "PostgreSQL is not reachable at 127.0.0.1:5432 (set KILN_TEST_PG=off to skip it)"; exit 1; }
fi

cargo nextest run --workspace --no-fail-fast "$@"
cargo test --workspace --doc

# Property-based API test: schemathesis against a seeded `kiln serve`, no 5xx allowed (bounded to 3 minutes).
cargo build -p kiln -p kiln-agent -p kiln-bmc-sim
kiln_bin=$(realpath "${CARGO_TARGET_DIR:-target}")/debug/kiln
scripts/api-fuzz.sh "$kiln_bin"

# Real network boots (needs root for the network namespace and taps; KILN_E2E=off skips them): kiln's DHCP, TFTP
# and HTTP against busybox clients (seconds), then QEMU VMs under TCG, BIOS, UEFI and boot-from-disk (about two
# minutes), then imaging driven by the lifecycle engine through simulated BMCs, raw and raw.zst side by side,
# then a tenant turnover (the agent erases a VM's NVMe and virtio disks, then the image is written); each VM
# under a hard timeout. The ramdisk is built once for both.
if [ "${KILN_E2E:-on}" != "off" ] && [ "$(id -u)" -eq 0 ]; then
    timeout 300 bash e2e/dhcp-real-client.sh "$kiln_bin"
    ramdisk=$(mktemp -d)
    bash images/ramdisk/build.sh "$ramdisk" "$(dirname "$kiln_bin")/kiln-agent"
    KILN_RAMDISK_DIR=$ramdisk timeout 900 bash e2e/pxe-boot.sh "$kiln_bin"
    KILN_RAMDISK_DIR=$ramdisk timeout 600 bash e2e/imaging.sh "$kiln_bin"
    KILN_RAMDISK_DIR=$ramdisk timeout 600 bash e2e/turnover.sh "$kiln_bin"
    rm -rf "$ramdisk"
fi

# The Debian package on this machine (root only; KILN_PACKAGE_TEST=off skips it): build, install, start the
# unit's commands as its user, upgrade keeping the config edit, stop on SIGINT and SIGTERM, purge.
if [ "${KILN_PACKAGE_TEST:-on}" != "off" ] && [ "$(id -u)" -eq 0 ]; then
    timeout 300 bash packaging/test-install.sh "$(dirname "$kiln_bin")"
fi
