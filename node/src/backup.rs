//! A verified backup file of an open engine: what `mgha_engine_backup` (the C ABI) and the
//! backup a forced domain deletion takes both write, so that a file under its final name is
//! always a complete, checked backup.

use std::io::Write;
use std::path::Path;

use mgha_core::backup::{verify_backup, write_backup, BackupSummary};
use mgha_core::engine::Engine;

use crate::error::Result;

/// Writes an online, consistent backup of `engine`'s store to `path`, which must not exist: to a
/// new private temporary file beside it (mode 0600, never through a link), synced and verified
/// end to end, then renamed to `path` and the directory synced. On an error the temporary file
/// is removed and nothing is left under `path`. Publishes go on meanwhile.
pub fn write_verified_backup(engine: &Engine, path: &Path) -> Result<BackupSummary> {
    if path.exists() {
        return Err(mgha_core::Error::InvalidArgument(format!(
            "{} already exists; a backup never replaces a file",
            path.display()
        ))
        .into());
    }
    let partial = mgha_core::private::temp_path(path);
    let result = write_then_rename(engine, path, &partial);
    if result.is_err() {
        let _ = std::fs::remove_file(&partial);
    }
    result
}

fn write_then_rename(engine: &Engine, path: &Path, partial: &Path) -> Result<BackupSummary> {
    let in_file =
        |e: std::io::Error| mgha_core::Error::Io(std::io::Error::new(e.kind(), format!("{}: {e}", partial.display())));
    let file = mgha_core::private::create_file(partial)?;
    let mut writer = std::io::BufWriter::new(file);
    write_backup(&engine.store(), &mut writer, &mut |_| {})?;
    writer.flush().map_err(in_file)?;
    let file = writer.into_inner().map_err(|e| in_file(e.into_error()))?;
    file.sync_all().map_err(in_file)?;
    // A backup's plugins are loaded to check the objects of their types.
    mgha_plugin_host::install();
    let mut input = std::io::BufReader::new(std::fs::File::open(partial).map_err(in_file)?);
    let summary = verify_backup(partial, &mut input, &mut |_| {})?;
    std::fs::rename(partial, path).map_err(in_file)?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(summary)
}
