//! `mgha plugin check|install|list|remove`: WebAssembly plugins (docs/plugin-abi.md). `check`
//! needs no node: it loads the module in this process with the limits every node uses (or asks
//! the node given with `--data-dir`). The others go through the [`Backend`] like every command:
//! install and remove are publishes, so they need the Active.

use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{Args, Subcommand};
use mgha_core::plugin::limits::PLUGIN_MODULE_BYTES_MAX;

use crate::client::Backend;
use crate::daemon::plugins;
use crate::output;
use crate::ReadArgs;

#[derive(Args, Debug, Clone)]
pub struct PluginArgs {
    #[command(subcommand)]
    pub command: PluginCommand,
}

#[derive(Subcommand, Debug, Clone)]
pub enum PluginCommand {
    /// Check a WebAssembly module as install would and show what it declares; installs nothing.
    Check(CheckArgs),
    /// Install a plugin, or upgrade the installed one of the same name, as one revision.
    Install(InstallArgs),
    /// List the installed plugins, and whether this node runs each.
    List(ReadArgs),
    /// Remove a plugin as one revision (refused while objects of its types exist).
    Remove(RemoveArgs),
}

#[derive(Args, Debug, Clone)]
pub struct CheckArgs {
    /// Check on this node's daemon instead of in this process.
    #[arg(short = 'd', long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Print the API's JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// The WebAssembly module (.wasm), or - for standard input.
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
}

#[derive(Args, Debug, Clone)]
pub struct InstallArgs {
    #[command(flatten)]
    pub read: ReadArgs,
    /// Who installs (default: $USER).
    #[arg(long)]
    pub author: Option<String>,
    /// The WebAssembly module (.wasm), or - for standard input.
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
}

#[derive(Args, Debug, Clone)]
pub struct RemoveArgs {
    #[command(flatten)]
    pub read: ReadArgs,
    /// Who removes (default: $USER).
    #[arg(long)]
    pub author: Option<String>,
    /// The plugin's name (`mgha plugin list`).
    #[arg(value_name = "NAME")]
    pub name: String,
}

/// `mgha plugin ...`.
pub fn plugin(args: &PluginArgs) -> anyhow::Result<()> {
    match &args.command {
        PluginCommand::Check(a) => check(a),
        PluginCommand::Install(a) => install(a),
        PluginCommand::List(a) => list(a),
        PluginCommand::Remove(a) => remove(a),
    }
}

fn check(args: &CheckArgs) -> anyhow::Result<()> {
    let label = label(&args.file);
    let wasm = read_module(&args.file).with_context(|| format!("{label}: not checked"))?;
    let checked = match &args.data_dir {
        Some(dir) => {
            let node = crate::TargetArgs { data_dir: Some(dir.clone()), ..Default::default() };
            Backend::connect(&node)?.plugin_check(wasm)
        }
        None => plugins::check_offline(&wasm).map_err(anyhow::Error::from),
    };
    let info = checked.with_context(|| format!("{label}: refused"))?;
    if args.json {
        return output::json(&info);
    }
    out!("{}", output::plugin(&info));
    Ok(())
}

fn install(args: &InstallArgs) -> anyhow::Result<()> {
    let label = label(&args.file);
    let wasm = read_module(&args.file).with_context(|| format!("{label}: nothing was published"))?;
    let author = super::write::author(args.author.as_deref());
    let backend = Backend::connect(&args.read.node)?;
    let rev = backend.plugin_install(&author, wasm).map_err(|e| super::write::publish_failed(e, &label))?;
    if args.read.json {
        return output::json(&rev);
    }
    outln!("{}: {}", output::published(&rev), rev.message);
    Ok(())
}

fn list(args: &ReadArgs) -> anyhow::Result<()> {
    let backend = Backend::connect(&args.node)?;
    let plugins = backend.plugins()?;
    if args.json {
        return output::json(&plugins::PluginList { plugins });
    }
    if plugins.is_empty() {
        outln!("no plugins installed");
        return Ok(());
    }
    out!("{}", output::plugins(&plugins));
    Ok(())
}

fn remove(args: &RemoveArgs) -> anyhow::Result<()> {
    let author = super::write::author(args.author.as_deref());
    let backend = Backend::connect(&args.read.node)?;
    let what = format!("plugin '{}'", args.name);
    let rev = backend.plugin_remove(&author, &args.name).map_err(|e| super::write::publish_failed(e, &what))?;
    if args.read.json {
        return output::json(&rev);
    }
    outln!("{}: {}", output::published(&rev), rev.message);
    Ok(())
}

fn label(file: &Path) -> String {
    if file == Path::new("-") {
        "standard input".to_string()
    } else {
        file.display().to_string()
    }
}

/// Reads a module from a file or standard input, refusing one over the module size limit
/// without reading it all.
fn read_module(file: &Path) -> anyhow::Result<Vec<u8>> {
    let input: Box<dyn Read> = if file == Path::new("-") {
        Box::new(std::io::stdin().lock())
    } else {
        Box::new(std::fs::File::open(file).context("cannot open")?)
    };
    let mut wasm = Vec::new();
    input.take(PLUGIN_MODULE_BYTES_MAX as u64 + 1).read_to_end(&mut wasm).context("cannot read")?;
    if wasm.len() > PLUGIN_MODULE_BYTES_MAX && file != Path::new("-") {
        // Only the start was read: the file's own size is the one to name.
        let size = std::fs::metadata(file).map_or(wasm.len(), |m| usize::try_from(m.len()).unwrap_or(usize::MAX));
        plugins::check_size(size)?;
    }
    plugins::check_size(wasm.len())?;
    Ok(wasm)
}
