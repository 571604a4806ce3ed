//! `kiln config check`: validate the config file and print the effective settings of `kiln serve` (flags and
//! environment applied), with secrets masked.

use std::ffi::OsString;

use anyhow::Context;
use clap::ArgMatches;
use clap::parser::ValueSource;

use crate::GlobalArgs;
use crate::config::{self, keys::KEYS};

/// Config file commands.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: ConfigCommand,
}

#[derive(Debug, clap::Subcommand)]
enum ConfigCommand {
    /// Validate the file named by --config / KILN_CONFIG and print the effective config (secrets masked).
    Check,
}

/// Runs `kiln config check`; `command` is the whole CLI and `matches` what this invocation parsed to.
pub fn exec(
    args: &Args,
    global: &GlobalArgs,
    command: &clap::Command,
    matches: &ArgMatches,
) -> anyhow::Result<()> {
    let ConfigCommand::Check = args.command;
    let path = global
        .config
        .clone()
        .context("no config file given: pass --config FILE or set KILN_CONFIG")?;
    let loaded = config::load(&path)?;
    // This invocation as typed (`matches` has the file applied already).
    let typed = command
        .clone()
        .try_get_matches_from(std::env::args_os())
        .context("parsing the command line")?;
    let typed = typed
        .subcommand_matches("config")
        .and_then(|m| m.subcommand_matches("check"))
        .unwrap_or(matches);
    // The settings `kiln serve` would run with: this invocation's global flags, then env, file, defaults.
    let mut argv: Vec<OsString> = vec!["kiln".into()];
    for key in KEYS.iter().filter(|k| k.global) {
        if typed.value_source(key.arg) == Some(ValueSource::CommandLine)
            && let Ok(Some(values)) = typed.try_get_raw(key.arg)
        {
            for value in values {
                argv.push(format!("--{}", key.arg.replace('_', "-")).into());
                argv.push(value.to_os_string());
            }
        }
    }
    argv.push("serve".into());
    let first = command
        .clone()
        .try_get_matches_from(&argv)
        .context("parsing the serve settings")?;
    let merged = match config::apply(command, &argv, &first, &loaded) {
        Ok(m) => m,
        Err(config::ConfigError::File(err)) => return Err(err),
        Err(config::ConfigError::Usage(err)) => return Err(err.into()),
    };
    let serve = merged
        .subcommand_matches("serve")
        .context("internal: serve matches missing")?;
    let mut sections = serde_json::Map::new();
    let mut lines = Vec::new();
    for key in KEYS {
        let (mut value, mut source) = config::effective(serve, key);
        // The file's values reach clap as flags: a flag the invocation itself did not give came from the file.
        let given = first
            .subcommand_matches("serve")
            .and_then(|m| m.value_source(key.arg));
        if source == "flag" && given != Some(ValueSource::CommandLine) {
            source = "file";
        }
        if key.arg == "db"
            && let Some(url) = value.as_str()
        {
            value = serde_json::Value::String(config::mask_url(url));
        }
        lines.push(format!(
            "{}.{} = {} ({source})",
            key.section, key.name, value
        ));
        let section = sections
            .entry(key.section)
            .or_insert_with(|| serde_json::Value::Object(serde_json::Map::new()));
        if let Some(table) = section.as_object_mut() {
            table.insert(key.name.to_string(), value);
        }
    }
    if global.json {
        let mut out = serde_json::Map::new();
        out.insert("file".into(), path.display().to_string().into());
        out.insert("valid".into(), true.into());
        out.extend(sections);
        crate::global::print_json(&serde_json::Value::Object(out))?;
    } else {
        println!("{}: valid", path.display());
        for line in lines {
            println!("  {line}");
        }
    }
    Ok(())
}
