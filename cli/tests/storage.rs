//! Storage faults as an operator meets them: who may read a node's files, and what a damaged
//! store does. Real `mgha` processes on real files; each test has its own temp dir.

mod support;

use std::path::Path;
use std::process::{Command, Stdio};

use support::*;

/// Runs `mgha ARGS` under `umask 000` (through the shell, as an operator's session would), and
/// requires it to succeed.
fn ok_under_umask_000(args: &[&str]) {
    let out = Command::new("sh")
        .arg("-c")
        .arg("umask 000 && exec \"$0\" \"$@\"")
        .arg(env!("CARGO_BIN_EXE_mgha"))
        .args(args)
        .env("MGHA_LOG", "warn")
        .stdin(Stdio::null())
        .output()
        .expect("sh runs");
    assert!(out.status.success(), "mgha {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// The permission bits as `stat` prints them.
fn stat_mode(path: &Path) -> String {
    let out = Command::new("stat").args(["-c", "%a", s(path)]).output().expect("stat runs");
    assert!(out.status.success(), "stat {}", path.display());
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn data_directory_files_and_backups_are_private_under_umask_000() {
    let scratch = Scratch::new();
    let dir = scratch.path("a");
    let addrs = free_addrs(2);
    ok_under_umask_000(&[
        "init",
        "-d",
        s(&dir),
        "--name",
        "a",
        "--admin",
        &addrs[0].to_string(),
        "--listen",
        &addrs[1].to_string(),
    ]);
    let hosts = scratch.file("hosts.json", &hosts("h", 3));
    ok(&["apply", "-d", s(&dir), s(&hosts)]);
    let backup = scratch.path("a.mghabak");
    ok_under_umask_000(&["backup", "-d", s(&dir), "--out", s(&backup)]);
    let restored = scratch.path("restored");
    ok_under_umask_000(&["restore", "--in", s(&backup), "-d", s(&restored)]);

    for private_dir in [dir.clone(), dir.join("tls"), restored.clone()] {
        assert_eq!(stat_mode(&private_dir), "700", "{}", private_dir.display());
    }
    for file in ["mgha.redb", "mgha.toml", "admin.token", "tls/ca.key", "tls/node.key"] {
        assert_eq!(stat_mode(&dir.join(file)), "600", "{file}");
    }
    assert_eq!(stat_mode(&backup), "600", "backup");
    for file in ["mgha.redb", "mgha.toml", "admin.token"] {
        assert_eq!(stat_mode(&restored.join(file)), "600", "restored {file}");
    }
    // Nothing but the backup itself is left beside it.
    let beside: Vec<String> = std::fs::read_dir(scratch.path(""))
        .expect("ls")
        .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
        .filter(|n| n.contains("partial"))
        .collect();
    assert!(beside.is_empty(), "temporary files left: {beside:?}");
}
