//! `kiln completions bash|zsh|fish`: shell completion scripts, generated from the clap definition.

use clap_complete::Shell;

/// Print a shell completion script (e.g. `kiln completions bash > /etc/bash_completion.d/kiln`).
#[derive(Debug, clap::Args)]
pub struct Args {
    /// bash, zsh, fish, elvish or powershell.
    #[arg(value_enum)]
    shell: Shell,
}

/// Writes the script for `args.shell` describing `command` to stdout.
pub fn exec(args: Args, command: &mut clap::Command) {
    let name = command.get_name().to_string();
    clap_complete::generate(args.shell, command, name, &mut std::io::stdout());
}
