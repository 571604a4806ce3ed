//! `kiln.toml`: the config file named by `--config FILE` or `KILN_CONFIG`, and how its values meet the flags.
//!
//! Precedence: command-line flags > environment variables (clap's `env =`) > the file > built-in defaults. The
//! command line is parsed once; for every key of [`keys::KEYS`] whose argument came from its default (or is
//! absent), the file's value is added as that flag and the line parsed again, so clap's own parsers check the
//! file's values exactly as they check flags.

pub mod file;
pub mod keys;

use std::ffi::OsString;
use std::path::PathBuf;

use clap::ArgMatches;
use clap::parser::ValueSource;

pub use file::{Loaded, load};
use keys::{KEYS, Key, Kind};

/// The config file the command line names (`--config`, or `KILN_CONFIG`), if any.
pub fn path_of(matches: &ArgMatches) -> Option<PathBuf> {
    matches.get_one::<PathBuf>("config").cloned()
}

/// The subcommand matches deepest in `matches` and the names leading to them (`["rack", "bringup"]`).
fn deepest(matches: &ArgMatches) -> (Vec<String>, &ArgMatches) {
    let mut names = Vec::new();
    let mut current = matches;
    while let Some((name, sub)) = current.subcommand() {
        names.push(name.to_string());
        current = sub;
    }
    (names, current)
}

/// The `--long` flag of argument `id` along the subcommand path `names` of `command`.
fn long_of(command: &clap::Command, names: &[String], id: &str) -> Option<String> {
    let mut current = command;
    let mut found = current
        .get_arguments()
        .find(|a| a.get_id() == id)
        .and_then(|a| a.get_long());
    for name in names {
        current = current.find_subcommand(name)?;
        if let Some(long) = current
            .get_arguments()
            .find(|a| a.get_id() == id)
            .and_then(|a| a.get_long())
        {
            found = Some(long);
        }
    }
    found.map(|long| format!("--{long}"))
}

/// Whether the argument `id` is known to `matches` and took no value from the command line or environment.
fn file_may_set(matches: &ArgMatches, id: &str) -> bool {
    if matches.try_get_raw(id).is_err() {
        return false; // not an argument of this subcommand
    }
    !matches!(
        matches.value_source(id),
        Some(ValueSource::CommandLine | ValueSource::EnvVariable)
    )
}

/// The file's value of `key`, if it sets one.
fn value_of<'a>(loaded: &'a Loaded, key: &Key) -> Option<&'a toml::Value> {
    loaded.table.get(key.section)?.as_table()?.get(key.name)
}

/// The tokens (`--flag value`…) that set `key` to `value`.
fn tokens(long: &str, key: &Key, value: &toml::Value) -> Vec<OsString> {
    let one = |v: &toml::Value| match v {
        toml::Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    match (key.kind, value) {
        (Kind::Flag, toml::Value::Boolean(true))
        | (Kind::InvertedFlag, toml::Value::Boolean(false)) => {
            vec![long.into()]
        }
        (Kind::Flag | Kind::InvertedFlag, _) => Vec::new(),
        (Kind::List, toml::Value::Array(items)) => items
            .iter()
            .flat_map(|item| [OsString::from(long), OsString::from(one(item))])
            .collect(),
        (_, v) => vec![long.into(), one(v).into()],
    }
}

/// `argv` with the file's values added where `matches` (parsed from `argv`) took no flag or environment value.
///
/// Global keys go right after the program name (any subcommand accepts them there); the others at the end,
/// before a `--` if there is one.
pub fn merged_argv(
    command: &clap::Command,
    argv: &[OsString],
    matches: &ArgMatches,
    loaded: &Loaded,
) -> Vec<OsString> {
    let (names, sub) = deepest(matches);
    let mut front = Vec::new();
    let mut back = Vec::new();
    for key in KEYS {
        let Some(value) = value_of(loaded, key) else {
            continue;
        };
        if !file_may_set(sub, key.arg) {
            continue;
        }
        let Some(long) = long_of(command, &names, key.arg) else {
            continue;
        };
        let add = tokens(&long, key, value);
        if key.global {
            front.extend(add);
        } else {
            back.extend(add);
        }
    }
    let mut out: Vec<OsString> = argv.iter().take(1).cloned().collect();
    out.extend(front);
    let rest = argv.get(1..).unwrap_or_default();
    let split = rest.iter().position(|a| a == "--").unwrap_or(rest.len());
    out.extend(rest[..split].iter().cloned());
    out.extend(back);
    out.extend(rest[split..].iter().cloned());
    out
}

/// Parses `argv` against `command` with the config file applied: the matches the program runs with.
///
/// Errors: the file cannot be read or parsed, or one of its values is rejected by the flag's parser (the
/// message names the file, key and line).
pub fn matches_with_file(
    command: &clap::Command,
    argv: Vec<OsString>,
) -> Result<ArgMatches, ConfigError> {
    let first = command
        .clone()
        .try_get_matches_from(&argv)
        .map_err(ConfigError::Usage)?;
    let Some(path) = path_of(&first) else {
        return Ok(first);
    };
    let loaded = load(&path).map_err(ConfigError::File)?;
    apply(command, &argv, &first, &loaded)
}

/// The matches of `argv` (already parsed as `first`) with `loaded` applied.
pub fn apply(
    command: &clap::Command,
    argv: &[OsString],
    first: &ArgMatches,
    loaded: &Loaded,
) -> Result<ArgMatches, ConfigError> {
    let merged = merged_argv(command, argv, first, loaded);
    command
        .clone()
        .try_get_matches_from(&merged)
        .map_err(|err| {
            ConfigError::File(anyhow::anyhow!(
                "{}: {}",
                loaded.path.display(),
                blame(command, first, loaded, &err)
            ))
        })
}

/// Names the file key behind a clap error about one of the flags the file set.
fn blame(
    command: &clap::Command,
    first: &ArgMatches,
    loaded: &Loaded,
    err: &clap::Error,
) -> String {
    let text = err.to_string();
    let message = text
        .lines()
        .next()
        .unwrap_or_default()
        .trim_start_matches("error: ")
        .to_string();
    let (names, _) = deepest(first);
    for key in KEYS {
        if value_of(loaded, key).is_none() {
            continue;
        }
        if let Some(long) = long_of(command, &names, key.arg)
            && text.contains(&format!("'{long}"))
        {
            let line = file::line_of(&loaded.text, key.section, key.name)
                .map(|l| format!("line {l}, "))
                .unwrap_or_default();
            return format!("{line}key `{}.{}`: {message}", key.section, key.name);
        }
    }
    message
}

/// Why the command line and file could not be turned into matches.
#[derive(Debug)]
pub enum ConfigError {
    /// clap's own usage error (print with `exit`).
    Usage(clap::Error),
    /// The config file is unreadable or invalid.
    File(anyhow::Error),
}

/// The effective value of `key` in `matches` as JSON (`null` when unset), and where it came from.
pub fn effective(matches: &ArgMatches, key: &Key) -> (serde_json::Value, &'static str) {
    use serde_json::Value;
    let source = match matches.value_source(key.arg) {
        Some(ValueSource::CommandLine) => "flag",
        Some(ValueSource::EnvVariable) => "env",
        Some(ValueSource::DefaultValue) => "default",
        _ => "unset",
    };
    let raw: Vec<String> = matches
        .try_get_raw(key.arg)
        .ok()
        .flatten()
        .map(|values| values.map(|v| v.to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    let value = match key.kind {
        Kind::Flag | Kind::InvertedFlag => {
            let set = raw.first().is_some_and(|v| v == "true");
            Value::Bool(set != (key.kind == Kind::InvertedFlag))
        }
        Kind::List => Value::Array(raw.into_iter().map(Value::String).collect()),
        _ => match raw.into_iter().next() {
            None => Value::Null,
            Some(v) => match key.kind {
                Kind::Int => v
                    .parse::<i64>()
                    .map(Value::from)
                    .unwrap_or(Value::String(v)),
                Kind::Float => v
                    .parse::<f64>()
                    .map(Value::from)
                    .unwrap_or(Value::String(v)),
                _ => Value::String(v),
            },
        },
    };
    (value, source)
}

/// A database URL with its password replaced by `***` (`postgres://user:***@host/db`).
pub fn mask_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let (authority, tail) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _password)) => format!("{scheme}://{user}:***@{host}{tail}"),
            None => url.to_string(),
        },
        None => url.to_string(),
    }
}

#[cfg(test)]
mod tests;
