//! `kiln serve --tls-cert/--tls-key`: the technician CLI reaches the API over HTTPS with `--tls-ca`, is told
//! what to do without it, and SIGHUP swaps the certificate (a bad one is refused and the old one kept).

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

struct Pair {
    cert: String,
    key: String,
}

fn pair() -> Pair {
    let names = vec!["localhost".to_string(), "127.0.0.1".to_string()];
    let generated = rcgen::generate_simple_self_signed(names).expect("certificate");
    Pair {
        cert: generated.cert.pem(),
        key: generated.signing_key.serialize_pem(),
    }
}

fn kiln(dir: &Path, args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_kiln"));
    for var in [
        "KILN_SERVER",
        "KILN_TOKEN",
        "KILN_DB",
        "KILN_TLS_CA",
        "KILN_CONFIG",
    ] {
        command.env_remove(var);
    }
    command
        .arg("--db")
        .arg(format!("sqlite://{}", dir.join("kiln.db").display()))
        .arg("--key-file")
        .arg(dir.join("kiln.key"))
        .args(args);
    command
}

fn output(mut command: Command) -> Output {
    command.output().expect("run kiln")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).to_string()
}

/// Waits for a line of the server's stderr containing `needle`.
fn wait_for(lines: &mpsc::Receiver<String>, needle: &str) -> String {
    loop {
        match lines.recv_timeout(Duration::from_secs(30)) {
            Ok(line) if line.contains(needle) => return line,
            Ok(_) => continue,
            Err(err) => panic!("kiln serve never printed {needle:?}: {err}"),
        }
    }
}

#[test]
fn the_cli_reaches_the_api_over_https_and_sighup_swaps_the_certificate() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path();
    let (cert, key) = (path.join("cert.pem"), path.join("key.pem"));
    let first = pair();
    std::fs::write(&cert, &first.cert).expect("cert");
    std::fs::write(&key, &first.key).expect("key");
    let token = output(kiln(path, &["token", "create", "--role", "admin"]));
    assert!(token.status.success(), "{}", stderr(&token));
    let token = String::from_utf8_lossy(&token.stdout).trim().to_string();

    let mut server = kiln(path, &["serve", "--listen", "127.0.0.1:0", "--no-engine"])
        .args(["--tls-listen", "127.0.0.1:0", "--tls-cert"])
        .arg(&cert)
        .arg("--tls-key")
        .arg(&key)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kiln serve");
    let (tx, lines) = mpsc::channel();
    let pipe = server.stderr.take().expect("stderr");
    std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let serving = wait_for(&lines, "serving the API on https://");
    let start = serving.find("https://").expect("url");
    let rest = &serving[start..];
    let url = rest[..rest.find("/api/v1/").expect("path")].to_string();
    wait_for(&lines, "serves only boot endpoints");

    let list = |ca: Option<&Path>| {
        let mut command = kiln(path, &["node", "list", "--json"]);
        command.args(["--server", &url, "--token", &token]);
        if let Some(ca) = ca {
            command.arg("--tls-ca").arg(ca);
        }
        output(command)
    };
    let untrusted = list(None);
    assert_eq!(untrusted.status.code(), Some(1));
    assert!(
        stderr(&untrusted).contains("--tls-ca"),
        "{}",
        stderr(&untrusted)
    );
    let trusted = list(Some(&cert));
    assert!(trusted.status.success(), "{}", stderr(&trusted));

    // SIGHUP: new certificate for new connections; the old CA no longer matches.
    let old_ca = path.join("old-ca.pem");
    std::fs::copy(&cert, &old_ca).expect("copy");
    let second = pair();
    std::fs::write(&cert, &second.cert).expect("cert");
    std::fs::write(&key, &second.key).expect("key");
    let hup = |pid: u32| {
        let sent = Command::new("kill")
            .args(["-HUP", &pid.to_string()])
            .status()
            .expect("kill");
        assert!(sent.success());
    };
    hup(server.id());
    wait_for(&lines, "reloaded the TLS certificate");
    assert!(list(Some(&cert)).status.success());
    assert_eq!(list(Some(&old_ca)).status.code(), Some(1));

    // A half-written certificate is refused and the loaded one keeps serving.
    std::fs::write(&cert, "-----BEGIN CERT").expect("cert");
    hup(server.id());
    let kept = wait_for(&lines, "SIGHUP: kept the old TLS certificate");
    assert!(kept.contains("cert.pem"), "{kept}");
    std::fs::write(&cert, &second.cert).expect("cert");
    assert!(list(Some(&cert)).status.success());

    let sent = Command::new("kill")
        .args(["-TERM", &server.id().to_string()])
        .status()
        .expect("kill");
    assert!(sent.success());
    wait_for(&lines, "SIGTERM: shutting down");
    let status = server.wait().expect("wait");
    assert!(status.success(), "{status:?}");
}
