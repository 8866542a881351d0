//! Backups: write an online backup of an open engine, verify a backup file, restore one into a
//! new data directory. The file format is docs/storage.md's.
//!
//! A backup is written to a new private temporary file beside `PATH` (mode 0600, never through a
//! link; `mgha_core::private`), verified end to end, and only then renamed to `PATH`,
//! so a file under the final name is always a complete, checked backup (as `mgha backup` does).

use std::ffi::c_char;
use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};

use mgha_core::backup::{restore_backup, verify_backup, BackupSummary};

use crate::args::{text, Out};
use crate::engine::{core_of, mgha_engine};
use crate::error::{mgha_status, FfiError, FfiResult};
use crate::strings::json_c_string;
use mgha_node::NodeConfig;

fn open(path: &Path) -> FfiResult<File> {
    File::open(path).map_err(|e| {
        let status = match e.kind() {
            std::io::ErrorKind::NotFound => mgha_status::MGHA_NOT_FOUND,
            _ => mgha_status::MGHA_IO,
        };
        FfiError::new(status, format!("{}: {e}", path.display()))
    })
}

fn verify_file(path: &Path) -> FfiResult<BackupSummary> {
    // A backup's plugins are loaded to check the objects of their types.
    mgha_plugin_host::install();
    let mut input = BufReader::new(open(path)?);
    Ok(verify_backup(path, &mut input, &mut |_| {})?)
}

/// Writes an online, consistent backup of the engine's store to `path`, which must not exist.
/// Publishes go on meanwhile; the backup holds the state and retained history at one revision.
#[no_mangle]
pub unsafe extern "C" fn mgha_engine_backup(engine: *const mgha_engine, path: *const c_char) -> mgha_status {
    ffi_boundary!(status: {
        let core = core_of(engine)?;
        // SAFETY: a C string valid for the call (API contract).
        let path = PathBuf::from(unsafe { text(path, "path") }?);
        mgha_node::backup::write_verified_backup(&core, &path)?;
        Ok(())
    })
}

/// Checks a backup file end to end (framing, checksum, every object, state hash, hash chain)
/// and returns its summary as JSON `{"header": {...}, "bytes"}`, freed with `mgha_string_free`.
#[no_mangle]
pub unsafe extern "C" fn mgha_backup_verify(path: *const c_char, out_summary_json: *mut *mut c_char) -> mgha_status {
    ffi_boundary!(status: {
        // SAFETY (two calls): a C string and an out-parameter valid for the call (API contract).
        let path = unsafe { text(path, "path") }?;
        let out = unsafe { Out::new(out_summary_json, "out_summary_json") }?;
        out.set(json_c_string(&verify_file(Path::new(path))?)?);
        Ok(())
    })
}

/// Verifies the backup at `path` and restores it into the `data_dir` of `config_toml` (only
/// that key is used; the others are checked), which must not hold a node yet. The restored node
/// has the backup's data but no certificates: opened with `mgha_engine_open`, it runs without
/// peers.
#[no_mangle]
pub unsafe extern "C" fn mgha_backup_restore(path: *const c_char, config_toml: *const c_char) -> mgha_status {
    ffi_boundary!(status: {
        // SAFETY (two calls): C strings valid for the call (API contract).
        let path = Path::new(unsafe { text(path, "path") }?);
        let config = NodeConfig::parse(unsafe { text(config_toml, "config_toml") }?)?;
        mgha_plugin_host::install();
        let mut input = BufReader::new(open(path)?);
        restore_backup(path, &mut input, config.data_dir()?, &mut |_| {})?;
        Ok(())
    })
}
