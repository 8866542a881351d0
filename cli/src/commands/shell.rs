//! `mgha completions SHELL` and `mgha man`: shell completion scripts and manual pages, generated
//! from the command line definition itself (clap_complete, clap_mangen), so they list exactly
//! the commands and options this binary has.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, CommandFactory};
use clap_complete::Shell;

/// `mgha completions SHELL`.
#[derive(Args, Debug, Clone)]
pub struct CompletionsArgs {
    /// The shell: bash, zsh, fish, elvish or powershell.
    #[arg(value_enum)]
    pub shell: Shell,
}

/// `mgha man [--out DIR]`.
#[derive(Args, Debug, Clone)]
pub struct ManArgs {
    /// Write mgha.1 and a page per command (mgha-status.1, ...) into DIR instead of printing
    /// mgha.1.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
}

/// Prints the completion script of `shell` on stdout.
pub fn completions(args: &CompletionsArgs) -> anyhow::Result<()> {
    let mut cmd = crate::Cli::command();
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut cmd, "mgha", &mut script);
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(&script).and_then(|()| stdout.flush()).context("writing the completion script")
}

/// Prints mgha(1), or writes every page into `--out`.
pub fn man(args: &ManArgs) -> anyhow::Result<()> {
    let cmd = crate::Cli::command();
    match &args.out {
        Some(dir) => {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
            clap_mangen::generate_to(cmd, dir)
                .with_context(|| format!("writing manual pages into {}", dir.display()))?;
            outln!("manual pages written to {}", dir.display());
            Ok(())
        }
        None => {
            let mut page = Vec::new();
            clap_mangen::Man::new(cmd).render(&mut page).context("rendering the manual page")?;
            let mut stdout = std::io::stdout().lock();
            stdout.write_all(&page).and_then(|()| stdout.flush()).context("writing the manual page")
        }
    }
}
