//! The archive of a data directory (`DIR/archive/`): what a full sync replaced, kept for the
//! administrator. A node whose history diverged from the Active's keeps a backup of its store
//! (`MS-revSEQ.mghabak`); a damaged store is set aside as it is (`MS-damaged.redb`). Both are
//! browsed here, read-only, with every record verified: the daemon's admin API and the CLI's
//! `--offline` path call these same functions.
//!
//! An archive is never opened in place: a backup is verified end to end and restored into a
//! private view directory inside the data directory, a damaged store is copied there and the
//! copy opened, and the view is removed when the [`Archive`] is dropped. Reads of the view go
//! through the store's verified reads, so a damaged record is an `Error::Corrupt` naming it.

use std::io::BufReader;
use std::path::{Path, PathBuf};

use mgha_core::backup::{read_backup_header, restore_backup};
use mgha_core::error::{Error, Result};
use mgha_core::store::{Store, STORE_FILE};

use crate::contract::RevisionInfoBody;
use crate::contract::{ArchiveBody, ArchiveList, ArchiveReason, DiffBody, HeadBody, RevisionBody, RevisionList};

/// The archive's directory inside a data directory.
pub const ARCHIVE_DIR: &str = "archive";
/// The extension of an archived diverged store (a backup file).
const BACKUP_EXT: &str = "mghabak";
/// The extension of a damaged store set aside.
const STORE_EXT: &str = "redb";
/// The prefix of view directories: private, inside the data directory, removed after use.
const VIEW_PREFIX: &str = ".archive-view-";

/// Every archived store and backup of the node in `data_dir`, oldest first. A backup is
/// described from its header; a damaged store from a copy opened for the purpose, and what
/// cannot be read of it is said in `damage`.
pub fn list(data_dir: &Path) -> Result<ArchiveList> {
    let dir = data_dir.join(ARCHIVE_DIR);
    let mut names = Vec::new();
    match std::fs::read_dir(&dir) {
        Ok(entries) => {
            for entry in entries {
                let entry = entry?;
                let name = entry.file_name().to_string_lossy().into_owned();
                if entry.file_type()?.is_file() && kind_of(&name).is_some() {
                    names.push(name);
                }
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e.into()),
    }
    // Names start with the time they were archived (ms), so this is oldest first.
    names.sort_by_key(|n| (archived_ms(n), n.clone()));
    let archives = names.iter().map(|name| describe(data_dir, name)).collect::<Result<Vec<_>>>()?;
    Ok(ArchiveList { archives })
}

/// One archive opened for reading (see the module's documentation).
pub struct Archive {
    store: Store,
    /// Removed on drop, with the copy or restored store in it.
    _view: tempfile::TempDir,
}

impl Archive {
    /// Opens archive `name` of the node in `data_dir`: a backup only once it verified end to
    /// end (checksum, objects against the state hash, the history's hash chain and undo
    /// records), a damaged store as far as its records verify.
    pub fn open(data_dir: &Path, name: &str) -> Result<Archive> {
        let (path, kind) = locate(data_dir, name)?;
        let view = tempfile::Builder::new().prefix(VIEW_PREFIX).tempdir_in(data_dir)?;
        let store_dir = view.path().join("store");
        let store = match kind {
            Kind::Backup => {
                let mut input = BufReader::new(std::fs::File::open(&path)?);
                restore_backup(&path, &mut input, &store_dir, &mut |_| {})?;
                Store::open(&store_dir.join(STORE_FILE))?
            }
            Kind::Store => {
                mgha_core::private::create_dir(&store_dir)?;
                let copy = store_dir.join(STORE_FILE);
                let mut out = mgha_core::private::create_file(&copy)?;
                std::io::copy(&mut std::fs::File::open(&path)?, &mut out)?;
                drop(out);
                Store::open(&copy)?
            }
        };
        Ok(Archive { store, _view: view })
    }

    /// Revision headers, newest first, at most `limit`, from `before` (exclusive) down.
    pub fn revisions(&self, before: Option<u64>, limit: usize) -> Result<RevisionList> {
        let revisions = self.store.revisions(before, limit)?;
        Ok(RevisionList { revisions: revisions.iter().map(RevisionInfoBody::from).collect() })
    }

    /// One revision with its changes.
    pub fn revision(&self, seq: u64) -> Result<RevisionBody> {
        crate::refs::store_revision(&self.store, seq)
    }

    /// The differences between two of its revisions.
    pub fn diff(&self, from: u64, to: u64) -> Result<DiffBody> {
        crate::refs::store_diff(&self.store, from, to)
    }

    /// The archived store, read-only by convention: the view is thrown away after use.
    pub fn store(&self) -> &Store {
        &self.store
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Backup,
    Store,
}

fn kind_of(name: &str) -> Option<Kind> {
    match Path::new(name).extension().and_then(|e| e.to_str()) {
        Some(BACKUP_EXT) => Some(Kind::Backup),
        Some(STORE_EXT) => Some(Kind::Store),
        _ => None,
    }
}

/// The time at the start of an archive's name, as the node wrote it.
fn archived_ms(name: &str) -> Option<u64> {
    name.split(['-', '.']).next().and_then(|t| t.parse().ok())
}

/// Archive `name`'s path, once `name` is a plain file name of the archive (no directory part,
/// no hidden file) with a known extension.
fn locate(data_dir: &Path, name: &str) -> Result<(PathBuf, Kind)> {
    let plain = !name.is_empty() && !name.starts_with('.') && Path::new(name).file_name() == Some(name.as_ref());
    let kind = kind_of(name).filter(|_| plain).ok_or_else(|| {
        Error::InvalidArgument(format!(
            "'{name}' is not an archive name (a file of {}/{ARCHIVE_DIR}/ ending in .{BACKUP_EXT} or .{STORE_EXT})",
            data_dir.display()
        ))
    })?;
    let path = data_dir.join(ARCHIVE_DIR).join(name);
    match std::fs::symlink_metadata(&path) {
        Ok(m) if m.file_type().is_file() => Ok((path, kind)),
        Ok(_) => Err(Error::InvalidArgument(format!("archive '{name}' is not a regular file"))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(Error::NotFound(format!("archive '{name}'"))),
        Err(e) => Err(e.into()),
    }
}

/// The listing entry of archive `name`.
fn describe(data_dir: &Path, name: &str) -> Result<ArchiveBody> {
    let (path, kind) = locate(data_dir, name)?;
    let bytes = std::fs::metadata(&path)?.len();
    let mut body = ArchiveBody {
        name: name.to_string(),
        reason: match kind {
            Kind::Store => ArchiveReason::Damaged,
            Kind::Backup if name.contains("-rev") => ArchiveReason::Diverged,
            Kind::Backup => ArchiveReason::Backup,
        },
        archived_ms: archived_ms(name),
        bytes,
        head: None,
        floor: None,
        revisions: None,
        damage: None,
    };
    let read = match kind {
        Kind::Backup => std::fs::File::open(&path)
            .map_err(Error::from)
            .and_then(|f| read_backup_header(&path, &mut BufReader::new(f)))
            .map(|h| (h.head, h.floor, h.revisions)),
        Kind::Store => Archive::open(data_dir, name).and_then(|a| {
            let (head, floor) = (a.store.head()?, a.store.floor()?);
            Ok((head, floor, head.seq - floor.seq.min(head.seq)))
        }),
    };
    match read {
        Ok((head, floor, revisions)) => {
            body.head = Some(HeadBody::from(&head));
            body.floor = Some(HeadBody::from(&floor));
            body.revisions = Some(revisions);
        }
        // A damaged archive is listed with what is wrong; the listing goes on.
        Err(e) => body.damage = Some(e.to_string()),
    }
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn archive_names_are_plain_files_of_the_archive() {
        let dir = tempfile::tempdir().expect("tempdir");
        for bad in ["../mgha.redb", "a/b.redb", ".hidden.redb", "x.toml", "", "..", "/etc/passwd"] {
            let e = locate(dir.path(), bad).err().expect("refused");
            assert!(matches!(e, Error::InvalidArgument(_)), "{bad}: {e}");
        }
        assert!(matches!(locate(dir.path(), "1-rev3.mghabak"), Err(Error::NotFound(_))));
        assert_eq!(archived_ms("1733500000000-rev12.mghabak"), Some(1_733_500_000_000));
        assert_eq!(archived_ms("1733500000000-damaged.redb"), Some(1_733_500_000_000));
        assert!(list(dir.path()).expect("no archive dir").archives.is_empty());
    }
}
