//! The QMP bridge against a stand-in QEMU on a Unix socket: power on → `system_reset` then `cont` after the
//! `RESET` event, power off → `stop`, a guest shutdown and the VM ending → the BMC reports `Off`.

use std::time::Duration;

use kiln_bmc::PowerState;
use kiln_bmc_sim::profile::DELL;
use kiln_bmc_sim::qemu::{Qmp, QmpError, bridge};
use kiln_bmc_sim::{SimBmc, Timing};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixListener;
use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::CancellationToken;

/// A stand-in QEMU: greets, answers every command, emits `RESET` after `system_reset`, and sends whatever
/// event the test pushes. Commands it received come out of the returned channel.
fn fake_qemu(
    listener: UnixListener,
) -> (
    mpsc::UnboundedReceiver<String>,
    mpsc::UnboundedSender<Option<Value>>,
) {
    let (commands_tx, commands_rx) = mpsc::unbounded_channel();
    let (push_tx, mut push_rx) = mpsc::unbounded_channel::<Option<Value>>();
    tokio::spawn(async move {
        let (stream, _) = listener.accept().await.expect("accept");
        let (reader, mut writer) = stream.into_split();
        let mut lines = BufReader::new(reader).lines();
        let send = |value: Value| {
            let mut line = value.to_string();
            line.push('\n');
            line
        };
        writer
            .write_all(send(json!({"QMP": {"version": {}, "capabilities": []}})).as_bytes())
            .await
            .expect("greet");
        loop {
            tokio::select! {
                line = lines.next_line() => {
                    let Ok(Some(line)) = line else { return };
                    let command: Value = serde_json::from_str(&line).expect("json command");
                    let name = command["execute"].as_str().unwrap_or_default().to_string();
                    let mut out = send(json!({"return": {}}));
                    if name == "system_reset" {
                        out.push_str(&send(json!({"event": "RESET", "data": {"guest": false}})));
                    }
                    writer.write_all(out.as_bytes()).await.expect("answer");
                    let _ = commands_tx.send(name);
                }
                pushed = push_rx.recv() => match pushed {
                    Some(Some(event)) => writer.write_all(send(event).as_bytes()).await.expect("event"),
                    // None: the VM ends.
                    _ => return,
                },
            }
        }
    });
    (commands_rx, push_tx)
}

async fn next_command(commands: &mut mpsc::UnboundedReceiver<String>) -> String {
    tokio::time::timeout(Duration::from_secs(10), commands.recv())
        .await
        .expect("a command within 10 s")
        .expect("fake QEMU alive")
}

async fn wait_for_power(bmc: &SimBmc, want: PowerState) {
    for _ in 0..1000 {
        if bmc.power() == want {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("power stayed {:?}, wanted {want:?}", bmc.power());
}

#[tokio::test]
async fn power_actions_drive_the_vm_and_the_vm_drives_the_power_state() {
    let dir = tempfile::tempdir().expect("dir");
    let socket = dir.path().join("qmp.sock");
    let (mut commands, push) = fake_qemu(UnixListener::bind(&socket).expect("bind"));
    let (events, _) = broadcast::channel(64);
    let timing = Timing {
        power_on: Duration::ZERO,
        ..Timing::default()
    };
    let bmc = SimBmc::new(0, &DELL, "admin", "password", timing, events.clone());
    let qmp = Qmp::connect(&socket).await.expect("connect");
    assert_eq!(next_command(&mut commands).await, "qmp_capabilities");
    let cancel = CancellationToken::new();
    let running = tokio::spawn(bridge(bmc.clone(), events.subscribe(), qmp, cancel.clone()));

    assert!(bmc.reset("On"));
    assert_eq!(next_command(&mut commands).await, "system_reset");
    assert_eq!(
        next_command(&mut commands).await,
        "cont",
        "cont follows the RESET event"
    );

    // The guest powers itself off: the BMC says Off, and a power-on starts it again.
    push.send(Some(
        json!({"event": "SHUTDOWN", "data": {"guest": true, "reason": "guest-shutdown"}}),
    ))
    .expect("push");
    wait_for_power(&bmc, PowerState::Off).await;
    assert_eq!(
        next_command(&mut commands).await,
        "stop",
        "the published power-off stops the VM"
    );
    assert!(bmc.reset("ForceRestart"));
    assert_eq!(next_command(&mut commands).await, "system_reset");
    assert_eq!(next_command(&mut commands).await, "cont");
    assert_eq!(bmc.power(), PowerState::On);

    // QEMU quitting on its own is not the guest: nothing changes.
    push.send(Some(json!({"event": "SHUTDOWN", "data": {"guest": false}})))
        .expect("push");
    assert!(bmc.reset("ForceOff"));
    assert_eq!(next_command(&mut commands).await, "stop");

    // The VM ends: the bridge returns and the BMC stays Off.
    assert!(bmc.reset("On"));
    assert_eq!(next_command(&mut commands).await, "system_reset");
    assert_eq!(next_command(&mut commands).await, "cont");
    push.send(None).expect("push");
    let ended = tokio::time::timeout(Duration::from_secs(10), running)
        .await
        .expect("bridge ends with the VM")
        .expect("join");
    assert!(ended.is_ok(), "{ended:?}");
    assert_eq!(bmc.power(), PowerState::Off);
}

#[tokio::test]
async fn a_socket_that_is_not_qmp_is_refused() {
    let dir = tempfile::tempdir().expect("dir");
    let socket = dir.path().join("not-qmp.sock");
    let listener = UnixListener::bind(&socket).expect("bind");
    tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.expect("accept");
        let _ = stream.write_all(b"220 smtp.example ESMTP\n").await;
    });
    let err = Qmp::connect(&socket).await.expect_err("not QMP");
    assert!(matches!(err, QmpError::Protocol { .. }), "{err}");
    let err = Qmp::connect(&dir.path().join("absent.sock"))
        .await
        .expect_err("no socket");
    assert!(matches!(err, QmpError::Io { .. }), "{err}");
}
