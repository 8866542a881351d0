//! `backup`, `verify` and `restore`. A backup is written to a new private temporary file beside
//! `FILE` (mode 0600, never through a link), verified end to end, then renamed into place, so a file under the final name is always a complete, checked backup.
//! Long work shows a progress bar on stderr (hidden when stderr is not a terminal).

use std::fs::File;
use std::io::{BufReader, BufWriter};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context};
use indicatif::{ProgressBar, ProgressStyle};
use mgha_core::backup::{BackupSummary, Progress};
use serde::Serialize;

use crate::client::{Backend, BackupProgress};
use crate::config::NodeConfig;
use crate::output::{self, Table};
use crate::{BackupArgs, RestoreArgs, VerifyArgs};

/// `mgha backup --out FILE`.
pub fn backup(args: &BackupArgs) -> anyhow::Result<()> {
    let backend = Backend::connect(&args.read.node)?;
    let summary = write_verified(&backend, &args.out)?;
    if args.read.json {
        return output::json(&summary);
    }
    outln!("backup {} written and verified", args.out.display());
    out!("{}", summary_table(&summary));
    Ok(())
}

/// Writes a backup of the node behind `backend` to `out` (which must not exist), verifies it,
/// and only then gives it its name.
pub fn write_verified(backend: &Backend, out: &Path) -> anyhow::Result<BackupSummary> {
    if out.exists() {
        bail!("{} already exists; a backup never replaces a file", out.display());
    }
    let partial = mgha_core::private::temp_path(out);
    let result = (|| {
        let file = mgha_core::private::create_file(&partial)
            .with_context(|| format!("{}: cannot create", partial.display()))?;
        let mut writer = BufWriter::new(file);
        // The daemon streams bytes without announcing a total; the local writer counts items.
        let bar = match backend {
            Backend::Remote(_) => spinner("backup"),
            Backend::Local(_) => items_bar("backup"),
        };
        backend
            .backup(&mut writer, &mut |p| match p {
                BackupProgress::Bytes(n) => bar.set_position(n),
                BackupProgress::Items { done, total } => {
                    bar.set_length(total);
                    bar.set_position(done);
                }
            })
            .with_context(|| format!("{}: the backup failed", out.display()))?;
        bar.finish_and_clear();
        let file = writer
            .into_inner()
            .map_err(|e| e.into_error())
            .with_context(|| format!("{}: cannot write", partial.display()))?;
        file.sync_all().with_context(|| format!("{}: cannot write", partial.display()))?;
        let summary = verify_file(&partial)?;
        std::fs::rename(&partial, out)
            .with_context(|| format!("cannot rename {} to {}", partial.display(), out.display()))?;
        Ok(summary)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&partial);
    }
    result
}

/// `mgha verify FILE`.
pub fn verify(args: &VerifyArgs) -> anyhow::Result<()> {
    let summary = verify_file(&args.file)?;
    if args.json {
        return output::json(&summary);
    }
    outln!("backup {} is complete and consistent", args.file.display());
    out!("{}", summary_table(&summary));
    Ok(())
}

/// Checks a backup file end to end, with a progress bar.
pub fn verify_file(path: &Path) -> anyhow::Result<BackupSummary> {
    let file = File::open(path).with_context(|| format!("{}: cannot open", path.display()))?;
    let bar = items_bar("verify");
    let summary = mgha_core::backup::verify_backup(path, &mut BufReader::new(file), &mut progress_to(&bar))?;
    bar.finish_and_clear();
    Ok(summary)
}

/// What `mgha restore` reports.
#[derive(Debug, Serialize)]
pub struct Restored {
    pub data_dir: PathBuf,
    pub admin: std::net::SocketAddr,
    pub status: crate::api::StatusBody,
}

/// `mgha restore --in FILE --data-dir NEW`.
pub fn restore(args: &RestoreArgs) -> anyhow::Result<()> {
    let restored = restore_node(&args.input, &args.data_dir, args.admin)?;
    if args.json {
        return output::json(&restored);
    }
    let s = &restored.status;
    outln!("restored node '{}' from {} into {}", s.node.name, args.input.display(), args.data_dir.display());
    let mut t = Table::keyed();
    t.row(vec!["revision".into(), format!("{} (id {})", s.head.seq, output::short(&s.head.id))]);
    t.row(vec!["state hash".into(), s.head.state_hash.clone()]);
    t.row(vec!["objects".into(), s.objects.to_string()]);
    t.row(vec![
        "admin API".into(),
        format!("http://{} (new token in {})", restored.admin, crate::token::path(&args.data_dir).display()),
    ]);
    t.print();
    outln!("start it with: mgha run --data-dir {}", args.data_dir.display());
    Ok(())
}

/// Builds a node in `dir` from a backup file: the store, then a new token and a config. The
/// state reported is read back from the restored store, not from the file.
pub fn restore_node(input: &Path, dir: &Path, admin: Option<std::net::SocketAddr>) -> anyhow::Result<Restored> {
    super::init::refuse_existing(dir)?;
    let admin = match admin {
        Some(a) => a,
        None => super::init::free_loopback_addr()?,
    };
    let file = File::open(input).with_context(|| format!("{}: cannot open", input.display()))?;
    let bar = items_bar("restore");
    let summary = mgha_core::backup::restore_backup(input, &mut BufReader::new(file), dir, &mut progress_to(&bar))
        .with_context(|| format!("restoring {} into {}", input.display(), dir.display()))?;
    bar.finish_and_clear();
    let config = NodeConfig::new(&summary.header.node.name, admin);
    config.check().context("the restored node's configuration")?;
    super::init::write_node_files(dir, &config)?;
    let engine = mgha_sync::open_engine(dir, config.engine_options())
        .with_context(|| format!("opening the restored store in {}", dir.display()))?;
    let status = crate::api::StatusBody::of(&engine)?;
    Ok(Restored { data_dir: dir.to_path_buf(), admin, status })
}

/// The contents of a backup as a two-column table.
pub fn summary_table(s: &BackupSummary) -> String {
    let h = &s.header;
    let mut t = Table::keyed();
    t.row(vec![
        "node".into(),
        format!(
            "{} ({}, {} {}, epoch {})",
            h.node.name,
            h.node.node_id,
            h.node.designation,
            h.node.role,
            output::epoch(h.node.epoch)
        ),
    ]);
    t.row(vec!["cluster".into(), h.node.cluster_id.to_string()]);
    t.row(vec!["revision".into(), format!("{} (id {})", h.head.seq, h.head.id.short())]);
    t.row(vec!["state hash".into(), h.head.state_hash.to_hex()]);
    t.row(vec!["history".into(), format!("{} revisions kept (from {})", h.revisions, h.floor.seq + 1)]);
    t.row(vec!["objects".into(), h.objects.to_string()]);
    t.row(vec!["created (UTC)".into(), output::time(h.created_ms)]);
    t.row(vec!["size".into(), format!("{} bytes", s.bytes)]);
    t.render()
}

fn spinner(what: &str) -> ProgressBar {
    let bar = ProgressBar::new_spinner();
    // The template is a constant; fall back to the default style rather than fail a backup.
    if let Ok(style) = ProgressStyle::with_template("{spinner} {prefix} {bytes} ({bytes_per_sec}) {elapsed}") {
        bar.set_style(style);
    }
    bar.set_prefix(what.to_string());
    bar.enable_steady_tick(Duration::from_millis(100));
    bar
}

fn items_bar(what: &str) -> ProgressBar {
    let bar = ProgressBar::new(0);
    if let Ok(style) = ProgressStyle::with_template("{prefix} [{bar:40}] {pos}/{len} objects and revisions {elapsed}") {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_prefix(what.to_string());
    bar
}

fn progress_to(bar: &ProgressBar) -> impl FnMut(Progress) + '_ {
    move |p: Progress| {
        bar.set_length(p.total);
        bar.set_position(p.done);
    }
}
