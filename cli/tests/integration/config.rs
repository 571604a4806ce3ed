//! `kiln config check` against the real binary: the shipped files validate, and flag > env > file > default.

use std::process::Command;

fn kiln() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_kiln"));
    command.current_dir(env!("CARGO_MANIFEST_DIR"));
    for var in [
        "KILN_CONFIG",
        "KILN_DB",
        "KILN_KEY_FILE",
        "KILN_SIGNING_KEY",
        "KILN_INSTANCE",
        "KILN_SSH_KEY",
        "KILN_IMAGE_DIR",
    ] {
        command.env_remove(var);
    }
    command
}

fn check_json(command: &mut Command) -> serde_json::Value {
    let out = command.output().expect("runs kiln");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("one JSON object")
}

#[test]
fn shipped_config_files_validate() {
    for file in ["../examples/kiln.toml", "../packaging/deb/kiln.toml"] {
        let json = check_json(kiln().args(["config", "check", "--json", "--config", file]));
        assert_eq!(json["valid"], true, "{file}");
        assert_eq!(json["file"], file);
    }
}

#[test]
fn precedence_flag_env_file_default() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("kiln.toml");
    std::fs::write(
        &path,
        "[database]\nurl = \"postgres://kiln:hunter2@db/kiln\"\n[api]\nlisten = \"0.0.0.0:9000\"\n\
         [engine]\nworkers = 8\nimage_dir = \"/file/images\"\nssh_user = \"file-user\"\n",
    )
    .expect("write");
    let json = check_json(
        kiln()
            .env("KILN_CONFIG", &path)
            .env("KILN_IMAGE_DIR", "/env/images")
            .args(["config", "check", "--json"]),
    );
    assert_eq!(
        json["database"]["url"], "postgres://kiln:***@db/kiln",
        "password masked"
    );
    assert_eq!(json["api"]["listen"], "0.0.0.0:9000", "file beats default");
    assert_eq!(json["engine"]["workers"], 8);
    assert_eq!(json["engine"]["image_dir"], "/env/images", "env beats file");
    assert_eq!(
        json["engine"]["ssh_key"], "kiln-ssh.key",
        "default when nobody sets it"
    );
    let json = check_json(kiln().env("KILN_CONFIG", &path).args([
        "--db",
        "sqlite://flag.db",
        "config",
        "check",
        "--json",
    ]));
    assert_eq!(
        json["database"]["url"], "sqlite://flag.db",
        "flag beats file"
    );
}

#[test]
fn check_errors() {
    let out = kiln().args(["config", "check"]).output().expect("runs");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--config"));
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("bad.toml");
    std::fs::write(&path, "[engine]\nworkers = 4\nwrokers = 5\n").expect("write");
    let out = kiln()
        .arg("--config")
        .arg(&path)
        .args(["config", "check"])
        .output()
        .expect("runs");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bad.toml") && err.contains("line 3") && err.contains("wrokers"),
        "{err}"
    );
}
