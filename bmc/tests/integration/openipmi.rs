//! kiln's IPMI client against OpenIPMI's `ipmi_sim` (Debian package `openipmi`), a LAN BMC simulator kiln did
//! not write. Its chassis control is a small script that records what it is told in files.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use kiln_bmc::ipmi::IpmiClient;
use kiln_bmc::{Bmc, BmcError, BootDevice, BootOverride, Credentials, PowerAction, PowerState};

use crate::common::wait_until;

const CHASSIS_SCRIPT: &str = r#"#!/bin/sh
# ipmi_sim chassis control: "<script> <mc> get <parm>..." prints "parm:value"; "set <parm> <value>" records it.
dir="$(dirname "$0")/chassis"
mkdir -p "$dir"
op="$2"; shift 2
case "$op" in
  get) for parm in "$@"; do
         case "$parm" in
           power) echo "power:$(cat "$dir/power" 2>/dev/null || echo 0)" ;;
           boot) echo "boot:$(cat "$dir/boot" 2>/dev/null || echo default)" ;;
         esac
       done ;;
  set) while [ $# -ge 2 ]; do echo "$2" > "$dir/$1"; shift 2; done ;;
esac
"#;

/// FRU device 0 for `ipmi_sim` (`mc_add_fru_data`), laid out by hand from the FRU storage definition: common
/// header (board area at 8, product area at 56), a board area (manufacturer "OpenIPMI Corp", product "Test
/// Board", serial "OBRD-42", part "PN-1") and a product area (manufacturer "OpenIPMI Corp", name "ipmi_sim
/// 9000", part "SIM-9000", version "v2", serial "OIPMI-0001"), each ending in 0xC1, zero padding and its
/// zero checksum.
const FRU_IMAGE: [u8; 120] = [
    0x01, 0x00, 0x00, 0x01, 0x07, 0x00, 0x00, 0xf7, 0x01, 0x06, 0x00, 0x00, 0x00, 0x00, 0xcd, 0x4f,
    0x70, 0x65, 0x6e, 0x49, 0x50, 0x4d, 0x49, 0x20, 0x43, 0x6f, 0x72, 0x70, 0xca, 0x54, 0x65, 0x73,
    0x74, 0x20, 0x42, 0x6f, 0x61, 0x72, 0x64, 0xc7, 0x4f, 0x42, 0x52, 0x44, 0x2d, 0x34, 0x32, 0xc4,
    0x50, 0x4e, 0x2d, 0x31, 0xc0, 0xc1, 0x00, 0x83, 0x01, 0x08, 0x00, 0xcd, 0x4f, 0x70, 0x65, 0x6e,
    0x49, 0x50, 0x4d, 0x49, 0x20, 0x43, 0x6f, 0x72, 0x70, 0xcd, 0x69, 0x70, 0x6d, 0x69, 0x5f, 0x73,
    0x69, 0x6d, 0x20, 0x39, 0x30, 0x30, 0x30, 0xc8, 0x53, 0x49, 0x4d, 0x2d, 0x39, 0x30, 0x30, 0x30,
    0xc2, 0x76, 0x32, 0xca, 0x4f, 0x49, 0x50, 0x4d, 0x49, 0x2d, 0x30, 0x30, 0x30, 0x31, 0xc0, 0xc0,
    0xc1, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x20,
];

/// A running `ipmi_sim`, killed on drop.
struct OpenIpmiSim {
    child: Child,
    dir: PathBuf,
    port: u16,
}

impl Drop for OpenIpmiSim {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl OpenIpmiSim {
    fn start() -> Self {
        // A free UDP port: bind, read, release (ipmi_sim binds it right after).
        let port = std::net::UdpSocket::bind("127.0.0.1:0")
            .and_then(|s| s.local_addr())
            .expect("free port")
            .port();
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let dir =
            std::env::temp_dir().join(format!("kiln-ipmi-sim-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(dir.join("state")).expect("temp dir");
        let script = dir.join("chassis.sh");
        std::fs::write(&script, CHASSIS_SCRIPT).expect("script");
        Command::new("chmod")
            .arg("+x")
            .arg(&script)
            .status()
            .expect("chmod");
        let lan = format!(
            "name \"kiln-test\"\nset_working_mc 0x20\n  startlan 1\n    addr 127.0.0.1 {port}\n    priv_limit admin\n    \
             allowed_auths_callback none md2 md5 straight\n    allowed_auths_user none md2 md5 straight\n    \
             allowed_auths_operator none md2 md5 straight\n    allowed_auths_admin none md2 md5 straight\n    \
             guid a123456789abcdefa123456789abcdef\n  endlan\n  chassis_control \"{} 0x20\"\n  \
             user 2 true \"admin\" \"password\" admin 10 none md2 md5 straight\n",
            script.display()
        );
        std::fs::write(dir.join("lan.conf"), lan).expect("lan.conf");
        let fru: Vec<String> = FRU_IMAGE.iter().map(|b| format!("{b:#04x}")).collect();
        let emu = format!(
            "mc_setbmc 0x20\nmc_add 0x20 0 no-device-sdrs 0x23 9 8 0x9f 0x1291 0xf02 persist_sdr\n\
             sel_enable 0x20 1000 0x0a\nmc_add_fru_data 0x20 0 {} data {}\nmc_enable 0x20\n",
            FRU_IMAGE.len(),
            fru.join(" ")
        );
        std::fs::write(dir.join("sim.emu"), emu).expect("sim.emu");
        let child = Command::new("ipmi_sim")
            .arg("-c")
            .arg(dir.join("lan.conf"))
            .arg("-f")
            .arg(dir.join("sim.emu"))
            .arg("-s")
            .arg(dir.join("state"))
            .arg("-n")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("ipmi_sim must be installed (apt-get install openipmi)");
        OpenIpmiSim { child, dir, port }
    }

    fn client(&self, password: &str) -> IpmiClient {
        IpmiClient::new(
            "127.0.0.1",
            self.port,
            Credentials::new("admin", password),
            Duration::from_millis(500),
        )
        .expect("client")
    }

    fn recorded(&self, parm: &str) -> Option<String> {
        std::fs::read_to_string(self.dir.join("chassis").join(parm))
            .ok()
            .map(|s| s.trim().to_string())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kiln_ipmi_client_against_openipmi_ipmi_sim() {
    let sim = OpenIpmiSim::start();
    let client = sim.client("password");
    let ready = wait_until(Duration::from_secs(15), || async {
        client.power_state().await.is_ok()
    })
    .await;
    assert!(ready, "ipmi_sim did not answer on port {}", sim.port);

    let inventory = client.inventory().await.expect("device id and FRU");
    assert_eq!(
        inventory.serial.as_deref(),
        Some("OIPMI-0001"),
        "{inventory:?}"
    );
    assert_eq!(inventory.model.as_deref(), Some("ipmi_sim 9000"));
    assert_eq!(inventory.manufacturer.as_deref(), Some("OpenIPMI Corp"));
    assert_eq!(
        inventory.bmc_firmware_version.as_deref(),
        Some("9.08"),
        "mc_add's 9 8"
    );
    assert_eq!(client.power_state().await.expect("status"), PowerState::Off);
    client.set_power(PowerAction::On).await.expect("power on");
    assert_eq!(sim.recorded("power").as_deref(), Some("1"));
    assert_eq!(client.power_state().await.expect("status"), PowerState::On);
    client
        .set_boot(BootOverride {
            device: BootDevice::Pxe,
            once: true,
            mode: None,
        })
        .await
        .expect("boot pxe");
    assert_eq!(sim.recorded("boot").as_deref(), Some("pxe"));
    client
        .set_power(PowerAction::ForceOff)
        .await
        .expect("power off");
    assert_eq!(sim.recorded("power").as_deref(), Some("0"));
    assert_eq!(client.power_state().await.expect("status"), PowerState::Off);

    let err = sim
        .client("wrong")
        .power_state()
        .await
        .expect_err("wrong password");
    assert!(matches!(err, BmcError::Auth { .. }), "{err}");
}
