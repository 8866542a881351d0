//! Private files and directories: a node's data directory is 0700 and everything secret in it
//! (store, config, token, keys, backups, archives) is 0600, whatever the process umask. A umask
//! can only take bits away, so modes are set explicitly after creation, not left to `open`.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Mode of a data directory and of the directories inside it.
pub const DIR_MODE: u32 = 0o700;
/// Mode of every file that holds configuration data, a secret or a copy of the store.
pub const FILE_MODE: u32 = 0o600;

/// Creates `dir` (and its missing ancestors, which keep the umask's mode) as a private directory,
/// and makes an existing one private: a data directory readable by other local users would hand
/// them the store.
pub fn create_dir(dir: &Path) -> io::Result<()> {
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)?;
    }
    match std::fs::DirBuilder::new().mode(DIR_MODE).create(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists && dir.is_dir() => {}
        Err(e) => return Err(e),
    }
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(DIR_MODE))
}

/// Creates a new private file for writing: `O_CREAT|O_EXCL|O_NOFOLLOW`, so an existing file or a
/// symbolic link planted at `path` is refused rather than written through, and mode 0600.
pub fn create_file(path: &Path) -> io::Result<File> {
    let file =
        OpenOptions::new().write(true).create_new(true).mode(FILE_MODE).custom_flags(libc::O_NOFOLLOW).open(path)?;
    file.set_permissions(std::fs::Permissions::from_mode(FILE_MODE))?;
    Ok(file)
}

/// A fresh temporary name beside `path` (same directory, so a rename is atomic), for a file
/// written completely before it takes its final name. Unique per process and call, so a stale
/// file a crash left behind never blocks the next attempt.
pub fn temp_path(path: &Path) -> PathBuf {
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut name = path.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(format!(".{}.{n}.{:x}.partial", std::process::id(), crate::now_ms()));
    path.with_file_name(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(path: &Path) -> u32 {
        std::fs::symlink_metadata(path).expect("stat").permissions().mode() & 0o777
    }

    #[test]
    fn an_existing_open_directory_is_made_private() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("node");
        std::fs::create_dir(&dir).expect("mkdir");
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).expect("chmod");
        create_dir(&dir).expect("create");
        assert_eq!(mode(&dir), DIR_MODE);
        let f = dir.join("f");
        create_file(&f).expect("create");
        assert_eq!(mode(&f), FILE_MODE);
    }

    #[test]
    fn create_file_refuses_a_planted_symlink_and_an_existing_file() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let target = tmp.path().join("target");
        std::fs::write(&target, b"keep").expect("write");
        let link = tmp.path().join("backup.partial");
        std::os::unix::fs::symlink(&target, &link).expect("symlink");
        assert!(create_file(&link).is_err(), "a symlink is not followed");
        assert!(create_file(&target).is_err(), "an existing file is not replaced");
        assert_eq!(std::fs::read(&target).expect("read"), b"keep");
    }

    #[test]
    fn temp_paths_are_distinct_and_beside_the_target() {
        let p = Path::new("/x/y/out.mghabak");
        let (a, b) = (temp_path(p), temp_path(p));
        assert_ne!(a, b);
        assert_eq!(a.parent(), p.parent());
    }
}
