//! The admin bearer token of a node's data directory: 32 random bytes, hex, in `DIR/admin.token`
//! with mode 0600. Whoever can read the data directory's token may administer the node, exactly
//! as whoever can read the store may read the configuration; the file mode keeps other local
//! users out. The daemon checks it; the CLI, the benchmark and test harnesses present it.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use rand::RngCore;

/// File name of the admin token inside a data directory.
pub const TOKEN_FILE: &str = "admin.token";

/// Bytes of randomness in a token (hex doubles the length).
const TOKEN_BYTES: usize = 32;

/// The mode the token file is created with: owner read and write only.
pub const TOKEN_FILE_MODE: u32 = 0o600;

/// Path of the token file in `dir`.
pub fn path(dir: &Path) -> PathBuf {
    dir.join(TOKEN_FILE)
}

/// A fresh token from the operating system's random source.
pub fn generate() -> String {
    let mut bytes = [0u8; TOKEN_BYTES];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Creates `DIR/admin.token` with a fresh token, mode 0600; refuses to replace one.
pub fn write_new(dir: &Path) -> std::io::Result<String> {
    let path = path(dir);
    let token = generate();
    // The mode is set at creation, so the token is never readable by others, not even briefly.
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(TOKEN_FILE_MODE)
        .open(&path)
        .map_err(|e| context(&path, "cannot create the admin token", e))?;
    f.write_all(format!("{token}\n").as_bytes())
        .and_then(|_| f.sync_all())
        .map_err(|e| context(&path, "cannot write the admin token", e))?;
    Ok(token)
}

/// An I/O error that names the file and what was being done.
fn context(path: &Path, what: &str, e: std::io::Error) -> std::io::Error {
    std::io::Error::new(e.kind(), format!("{}: {what}: {e}", path.display()))
}

/// Reads the token from `DIR/admin.token`.
pub fn read(dir: &Path) -> std::io::Result<String> {
    let path = path(dir);
    let invalid =
        |why: String| std::io::Error::new(std::io::ErrorKind::InvalidData, format!("{}: {why}", path.display()));
    let meta = std::fs::metadata(&path).map_err(|e| context(&path, "cannot read the admin token", e))?;
    if meta.permissions().mode() & 0o077 != 0 {
        tracing::warn!(path = %path.display(), "the admin token is readable by other users; chmod 600 it");
    }
    if !meta.is_file() || meta.len() > 1024 {
        return Err(invalid(format!("{} bytes is not an admin token", meta.len())));
    }
    let text = std::fs::read_to_string(&path).map_err(|e| context(&path, "cannot read the admin token", e))?;
    let token = text.trim().to_string();
    if token.is_empty() {
        return Err(invalid("the admin token is empty".into()));
    }
    Ok(token)
}

/// Compares a presented token with the expected one in time that does not depend on where they
/// first differ, so the token cannot be guessed byte by byte from response times.
pub fn matches(expected: &str, given: &str) -> bool {
    let (a, b) = (expected.as_bytes(), given.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_file_is_owner_only() {
        let dir = tempfile::tempdir().expect("tempdir");
        let token = write_new(dir.path()).expect("writes");
        let mode = std::fs::metadata(path(dir.path())).expect("metadata").permissions().mode();
        assert_eq!(mode & 0o777, TOKEN_FILE_MODE, "mode {mode:o}");
        assert_eq!(read(dir.path()).expect("reads"), token);
        assert_eq!(token.len(), 2 * TOKEN_BYTES);
        assert!(token.chars().all(|c| c.is_ascii_hexdigit()));
    }

    #[test]
    fn token_is_never_replaced() {
        let dir = tempfile::tempdir().expect("tempdir");
        let first = write_new(dir.path()).expect("writes");
        assert!(write_new(dir.path()).is_err());
        assert_eq!(read(dir.path()).expect("reads"), first);
    }

    #[test]
    fn tokens_differ_and_compare_exactly() {
        let (a, b) = (generate(), generate());
        assert_ne!(a, b);
        assert!(matches(&a, &a));
        assert!(!matches(&a, &b));
        assert!(!matches(&a, &a[1..]));
        assert!(!matches(&a, ""));
    }
}
