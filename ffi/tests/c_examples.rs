//! The C and C++ examples, compiled with the system's compilers against `include/mgha.h` and
//! linked against the library cargo built for these tests, then run: two engines form a
//! cluster on loopback and swap roles with a planned changeover. The C example also runs under
//! valgrind (memcheck) when it is installed, and is also linked statically against `libmgha.a`.
//! How programs are compiled and run: `common/cc.rs`.

mod common;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use common::cc::{compile, compiler, installed, repo_root, run, run_with};

/// The C example, linked against the shared library, built once per test run.
fn c_example() -> &'static Path {
    static BUILT: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    let (_dir, exe) = BUILT.get_or_init(|| {
        let dir = tempfile::tempdir().expect("tempdir");
        let exe = dir.path().join("cluster-c");
        compile(&compiler("CC", "cc"), "-std=c99", "examples/c/cluster.c", &exe, false);
        (dir, exe)
    });
    exe
}

#[test]
fn c_example_forms_a_cluster() {
    let out = run(&[], c_example());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("b refused a publish: MGHA_READ_ONLY"), "{stdout}");
    assert!(stdout.contains("changed over: b is the Active"), "{stdout}");
    assert!(stdout.contains("a refused a publish: MGHA_READ_ONLY"), "after the changeover: {stdout}");
}

/// What the valgrind run multiplies the example's timeouts by (`MGHA_EXAMPLE_TIME_SCALE`).
const VALGRIND_TIME_SCALE: &str = "10";

#[test]
fn c_example_is_clean_under_valgrind() {
    if !installed("valgrind") {
        println!("note: valgrind is not installed; the C example runs without it in c_example_forms_a_cluster");
        return;
    }
    let suppressions = format!("--suppressions={}", repo_root().join("ffi/tests/valgrind.supp").display());
    // Under memcheck everything runs tens of times slower, and the other tests of this file run
    // the example at the same time: the example multiplies its heartbeat, peer and changeover
    // timeouts and its own waits by this scale, so the whole run, changeover included, is
    // checked here.
    let out = run_with(
        &[
            "valgrind",
            "--tool=memcheck",
            "--error-exitcode=1",
            "--leak-check=full",
            "--errors-for-leak-kinds=definite",
            "--num-callers=40",
            &suppressions,
        ],
        c_example(),
        &[("MGHA_EXAMPLE_TIME_SCALE", VALGRIND_TIME_SCALE)],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("changed over: b is the Active"), "{stdout}");
    assert!(stdout.contains("a refused a publish: MGHA_READ_ONLY"), "after the changeover: {stdout}");
}

#[test]
fn c_example_links_statically() {
    let dir = tempfile::tempdir().expect("tempdir");
    let exe = dir.path().join("cluster-static");
    compile(&compiler("CC", "cc"), "-std=c99", "examples/c/cluster.c", &exe, true);
    run(&[], &exe);
}

#[test]
fn cpp_example_forms_a_cluster() {
    let dir = tempfile::tempdir().expect("tempdir");
    let exe = dir.path().join("cluster-cpp");
    compile(&compiler("CXX", "c++"), "-std=c++17", "examples/cpp/cluster.cpp", &exe, false);
    let out = run(&[], &exe);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        stdout.matches("refused a publish: MGHA_READ_ONLY").count(),
        2,
        "before and after the changeover: {stdout}"
    );
    assert!(stdout.contains("domain lab published revision 1: "), "a domain's revisions are its own: {stdout}");
}
