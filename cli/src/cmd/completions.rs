//! `kiln completions bash|zsh|fish`: shell completion scripts, generated from the clap definition.

use clap_complete::Shell;

/// Print a shell completion script (e.g. `kiln completions bash > /etc/bash_completion.d/kiln`).
#[derive(Debug, clap::Args)]
pub struct Args {
    /// bash, zsh, fish, elvish or powershell.
    #[arg(value_enum)]
    shell: Shell,
}

/// Writes the script for `args.shell` describing `command` to stdout. A closed pipe (`| head`) is not an error.
pub fn exec(args: Args, command: &mut clap::Command) -> std::io::Result<()> {
    use std::io::Write;
    let name = command.get_name().to_string();
    // Rendered into memory first: clap_complete panics when its writer fails.
    let mut script = Vec::new();
    clap_complete::generate(args.shell, command, name, &mut script);
    match std::io::stdout().lock().write_all(&script) {
        Err(err) if err.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other,
    }
}
