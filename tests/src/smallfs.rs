//! A small filesystem for the disk-full tests: a tmpfs of a few MiB mounted on a fresh temporary
//! directory, filled on demand and unmounted when the guard drops, also when a test panics.
//! Mounting needs root (CI runs the tests as root); elsewhere [`SmallFs::mount`] says why it
//! could not, for the test to print and skip.

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Comment bytes of each of 400 hosts in the publish that meets a full disk: such a revision is
/// larger than the space a publish log keeps ahead of its appends (at most 1 MiB), so it needs
/// space the disk no longer has.
pub const BIG_COMMENT_BYTES: usize = 4000;

/// File that [`SmallFs::fill`] writes and [`SmallFs::free`] deletes.
const FILLER: &str = "filler";

/// A mounted tmpfs; dropping it unmounts it (and removes a mount point it made).
#[derive(Debug)]
pub struct SmallFs {
    path: PathBuf,
    /// The temporary mount point of [`SmallFs::mount`], removed once unmounted.
    owned: Option<tempfile::TempDir>,
}

impl SmallFs {
    /// Mounts a tmpfs of `bytes` on a new temporary directory, or says why it cannot.
    pub fn mount(bytes: u64) -> Result<SmallFs, String> {
        let dir = tempfile::tempdir().map_err(|e| format!("no temporary directory: {e}"))?;
        let mut fs = SmallFs::mount_at(dir.path(), bytes)?;
        fs.owned = Some(dir);
        Ok(fs)
    }

    /// Mounts a tmpfs of `bytes` on `path` (created if missing; it should be empty), or says why
    /// it cannot. A node's data directory can be the mount point itself, so that its log, kept
    /// beside it, stays writable.
    pub fn mount_at(path: &Path, bytes: u64) -> Result<SmallFs, String> {
        std::fs::create_dir_all(path).map_err(|e| format!("cannot create {}: {e}", path.display()))?;
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={bytes},mode=0700"), "tmpfs"])
            .arg(path)
            .output()
            .map_err(|e| format!("cannot run mount: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "mount -t tmpfs refused ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(SmallFs { path: path.to_path_buf(), owned: None })
    }

    /// The mount point.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Fills the filesystem with a filler file until a write fails for lack of space, then
    /// gives `leave_bytes` back. Returns the filler's path.
    pub fn fill(&self, leave_bytes: u64) -> io::Result<PathBuf> {
        let path = self.path().join(FILLER);
        let mut file = std::fs::OpenOptions::new().create(true).append(true).open(&path)?;
        let chunk = vec![0xa5u8; 64 * 1024];
        loop {
            match file.write(&chunk) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => break,
                Err(e) => return Err(e),
            }
        }
        // Single bytes, so that not even a partial page is left.
        while file.write(&[0xa5]).is_ok_and(|n| n == 1) {}
        let len = file.metadata()?.len();
        file.set_len(len.saturating_sub(leave_bytes))?;
        Ok(path)
    }

    /// Deletes the filler file, freeing the space [`SmallFs::fill`] took.
    pub fn free(&self) -> io::Result<()> {
        std::fs::remove_file(self.path().join(FILLER))
    }
}

impl Drop for SmallFs {
    fn drop(&mut self) {
        let unmounted = Command::new("umount").arg(&self.path).status().is_ok_and(|s| s.success());
        if !unmounted {
            // A process of the test may still hold a file open: detach it now, it goes when
            // that process does.
            let _ = Command::new("umount").arg("-l").arg(&self.path).status();
        }
        drop(self.owned.take());
    }
}
