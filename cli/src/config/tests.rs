//! Config file parsing, error messages and precedence (flag > env > file > default).

use std::path::Path;

use super::*;

/// A small CLI with one flag of each source: `--listen` (default), `--ssh-key` (env), a global `--db`.
fn command() -> clap::Command {
    use clap::{Arg, ArgAction, Command};
    Command::new("kiln")
        .arg(
            Arg::new("config")
                .long("config")
                .global(true)
                .value_parser(clap::value_parser!(PathBuf)),
        )
        .arg(
            Arg::new("db")
                .long("db")
                .global(true)
                .default_value("sqlite://kiln.db"),
        )
        .subcommand(
            Command::new("serve")
                .arg(
                    Arg::new("listen")
                        .long("listen")
                        .default_value("127.0.0.1:8080"),
                )
                .arg(
                    Arg::new("workers")
                        .long("workers")
                        .default_value("64")
                        .value_parser(clap::value_parser!(usize)),
                )
                .arg(
                    Arg::new("ssh_key")
                        .long("ssh-key")
                        .env("KILN_TEST_CONFIG_SSH_KEY_UNSET")
                        .default_value("kiln-ssh.key"),
                )
                .arg(
                    Arg::new("prefix_len")
                        .long("dhcp-prefix-len")
                        .value_parser(clap::value_parser!(u8).range(8..=30)),
                )
                .arg(
                    Arg::new("no_engine")
                        .long("no-engine")
                        .action(ArgAction::SetTrue),
                ),
        )
}

fn loaded(text: &str) -> Loaded {
    file::parse(Path::new("test.toml"), text).expect("valid file")
}

fn run(argv: &[&str], text: &str) -> Result<ArgMatches, ConfigError> {
    let argv: Vec<OsString> = argv.iter().map(OsString::from).collect();
    let cmd = command();
    let first = cmd
        .clone()
        .try_get_matches_from(&argv)
        .expect("argv parses");
    apply(&cmd, &argv, &first, &loaded(text))
}

const FILE: &str = "[database]\nurl = \"sqlite:///file.db\"\n[api]\nlisten = \"0.0.0.0:9000\"\n[engine]\nworkers = 8\nenabled = false\n";

#[test]
fn file_beats_default_and_flag_beats_file() {
    let m = run(&["kiln", "serve"], FILE).expect("applies");
    let serve = m.subcommand_matches("serve").expect("serve");
    assert_eq!(
        serve.get_one::<String>("listen").map(String::as_str),
        Some("0.0.0.0:9000")
    );
    assert_eq!(serve.get_one::<usize>("workers"), Some(&8));
    assert!(
        serve.get_flag("no_engine"),
        "enabled = false sets --no-engine"
    );
    assert_eq!(
        serve.get_one::<String>("db").map(String::as_str),
        Some("sqlite:///file.db")
    );
    // Untouched by the file: the default stays.
    assert_eq!(
        serve.get_one::<String>("ssh_key").map(String::as_str),
        Some("kiln-ssh.key")
    );

    let m = run(
        &[
            "kiln",
            "--db",
            "sqlite://flag.db",
            "serve",
            "--listen",
            "127.0.0.1:1",
        ],
        FILE,
    )
    .expect("applies");
    let serve = m.subcommand_matches("serve").expect("serve");
    assert_eq!(
        serve.get_one::<String>("listen").map(String::as_str),
        Some("127.0.0.1:1")
    );
    assert_eq!(
        serve.get_one::<String>("db").map(String::as_str),
        Some("sqlite://flag.db")
    );
    assert_eq!(serve.get_one::<usize>("workers"), Some(&8));
}

#[test]
fn env_source_is_not_overridden() {
    // An argument whose value came from the environment is left alone (the CLI test covers a real variable).
    let cmd = command();
    let argv: Vec<OsString> = ["kiln", "serve"].iter().map(OsString::from).collect();
    let first = cmd.clone().try_get_matches_from(&argv).expect("parses");
    let (_, sub) = deepest(&first);
    assert!(file_may_set(sub, "listen"));
    assert!(!file_may_set(sub, "no_such_arg"));
}

#[test]
fn unknown_key_names_file_line_and_key() {
    let err = file::parse(
        Path::new("/etc/kiln/kiln.toml"),
        "[api]\nlisten = \"127.0.0.1:1\"\nlisen = 3\n",
    )
    .expect_err("unknown key");
    let text = format!("{err:#}");
    assert!(text.contains("/etc/kiln/kiln.toml"), "{text}");
    assert!(text.contains("line 3"), "{text}");
    assert!(text.contains("lisen"), "{text}");
}

#[test]
fn bad_type_names_line() {
    let err =
        file::parse(Path::new("k.toml"), "[engine]\n\nworkers = \"many\"\n").expect_err("bad type");
    let text = format!("{err:#}");
    assert!(text.contains("k.toml: line 3"), "{text}");
}

#[test]
fn value_rejected_by_flag_parser_names_key_and_line() {
    let err = run(&["kiln", "serve"], "[boot]\n\ndhcp_prefix_len = 40\n").err();
    // A u8 (the typed check passes) out of the flag's 8..=30 range: clap's own parser rejects it.
    let Some(ConfigError::File(err)) = err else {
        panic!("expected a file error")
    };
    let text = format!("{err:#}");
    assert!(
        text.contains("key `boot.dhcp_prefix_len`") && text.contains("line 3"),
        "{text}"
    );
}

#[test]
fn shipped_files_parse() {
    for (name, text) in [
        (
            "examples/kiln.toml",
            include_str!("../../../examples/kiln.toml"),
        ),
        (
            "packaging/deb/kiln.toml",
            include_str!("../../../packaging/deb/kiln.toml"),
        ),
    ] {
        let loaded = file::parse(Path::new(name), text).unwrap_or_else(|e| panic!("{name}: {e:#}"));
        if name.starts_with("examples/") {
            // The annotated example documents every key, set or commented out.
            for key in KEYS {
                let documented = text.lines().any(|line| {
                    let line = line.trim_start_matches('#').trim_start();
                    line.starts_with(&format!("{} =", key.name))
                });
                assert!(
                    documented,
                    "{name} does not document {}.{}",
                    key.section, key.name
                );
            }
        }
        // Every key the example sets is in the key table.
        for (section, table) in &loaded.table {
            for key in table.as_table().expect("tables only").keys() {
                assert!(
                    KEYS.iter().any(|k| k.section == section && k.name == key),
                    "{name}: {section}.{key}"
                );
            }
        }
    }
}

#[test]
fn masks_passwords() {
    assert_eq!(
        mask_url("postgres://kiln:s3cret@db/kiln"),
        "postgres://kiln:***@db/kiln"
    );
    assert_eq!(
        mask_url("postgres://kiln@db/kiln"),
        "postgres://kiln@db/kiln"
    );
    assert_eq!(
        mask_url("sqlite:///var/lib/kiln/kiln.db"),
        "sqlite:///var/lib/kiln/kiln.db"
    );
}
