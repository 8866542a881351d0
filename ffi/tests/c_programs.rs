//! C programs of `ffi/tests/c/`, written from docs/c-api.md alone, compiled with `$CC` against
//! `include/mgha.h` and the library cargo built for this run, then run (see `common/cc.rs`):
//! what a C host sees of the status codes, of `fork()`, of the log callback and of domain handles.

mod common;

use std::ffi::CStr;
use std::path::PathBuf;
use std::sync::OnceLock;

use common::cc::{compile_c, repo_root, run};
use mgha::error::mgha_status_name;

/// The C program `ffi/tests/c/<name>.c`, compiled once per test run.
fn program(name: &'static str) -> PathBuf {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    let dir = DIR.get_or_init(|| tempfile::tempdir().expect("tempdir"));
    compile_c(&format!("ffi/tests/c/{name}.c"), dir.path())
}

/// The rows of docs/c-api.md's status table: (name, value).
fn documented_statuses() -> Vec<(String, u32)> {
    let doc = std::fs::read_to_string(repo_root().join("docs/c-api.md")).expect("docs/c-api.md");
    let rows: Vec<(String, u32)> = doc
        .lines()
        .filter_map(|line| {
            let cells: Vec<&str> = line.split('|').map(str::trim).collect();
            let name = cells.get(1)?.strip_prefix("`MGHA_")?.strip_suffix('`')?;
            let value = cells.get(2)?.parse().ok()?;
            Some((format!("MGHA_{name}"), value))
        })
        .collect();
    assert!(!rows.is_empty(), "docs/c-api.md has no status table");
    rows
}

fn status_name(code: u32) -> String {
    // SAFETY: mgha_status_name returns a static NUL-terminated string.
    unsafe { CStr::from_ptr(mgha_status_name(code)) }.to_string_lossy().into_owned()
}

#[test]
fn the_documented_status_table_is_the_library_s() {
    let documented = documented_statuses();
    for (name, value) in &documented {
        assert_eq!(&status_name(*value), name, "docs/c-api.md gives {name} the value {value}");
    }
    let library: Vec<u32> = (0..).take_while(|code| status_name(*code) != "MGHA_UNKNOWN").collect();
    let values: Vec<u32> = documented.iter().map(|(_, value)| *value).collect();
    assert_eq!(values, library, "the table lists every status, in order, once");
}

#[test]
fn a_c_program_meets_every_documented_status() {
    let out = run(&[], &program("status_codes"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!stdout.contains("MISMATCH"), "{stdout}");
    for (name, _) in documented_statuses() {
        if name == "MGHA_PANIC" {
            // Only a bug in the library returns it; the panic boundary has its own unit tests.
            assert!(stdout.contains("not provoked MGHA_PANIC"), "{stdout}");
            continue;
        }
        assert!(stdout.contains(&format!("provoked {name}: ")), "nothing provoked {name}:\n{stdout}");
    }
}

#[test]
fn a_forked_child_is_refused_the_parent_s_handles() {
    let out = run(&[], &program("fork"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("child: mgha_engine_close: MGHA_BUSY"), "{stdout}");
    assert!(stdout.contains("child: done"), "{stdout}");
    assert!(stdout.contains("parent: revision"), "the parent published after the child exited: {stdout}");
}

#[test]
fn a_c_log_callback_receives_the_engine_s_events() {
    let out = run(&[], &program("log_callback"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("listening for peers"), "{stdout}");
    assert!(stdout.contains(&format!("version {} = ", env!("CARGO_PKG_VERSION"))), "{stdout}");
}

#[test]
fn a_c_program_uses_two_domains_of_one_node_through_their_handles() {
    let out = run(&[], &program("domains"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("red's status: has \"domain\":\"red\""), "{stdout}");
    assert!(stdout.contains("blue's handle saw revision 2"), "{stdout}");
    assert!(stdout.contains("mgha_engine_domain(node, \"green\", &missing): MGHA_NOT_FOUND"), "{stdout}");
    assert!(stdout.contains("forced delete: has \"backup\":"), "{stdout}");
    assert!(stdout.contains("blue's web2 after the node opened again: has 10.0.2.2"), "{stdout}");
}
