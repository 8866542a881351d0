//! Automatic failover of embedded engines, with real processes: the examples
//! `examples/c/failover.c` and `examples/cpp/failover.cpp`, compiled against `include/mgha.h`
//! (and `mgha.hpp`), each process holding one engine. The Active process is SIGKILLed while a
//! publisher keeps publishing through whichever process takes publishes; another process takes
//! over, and the killed one, started again, rejoins as a Standby. With `sync_standbys = 1`, no
//! acknowledged publish is lost and every node converges.
//!
//! C: three data nodes, a Raft quorum of their own, ten failovers; and once with etcd as the
//! arbiter. C++: two data nodes and `mgha witness` (the binary at `$MGHA_BIN`, else the one
//! `cargo build` put in `target/<profile>`), ten failovers; with two data nodes each round also
//! waits for the killed process to come back before the new Active can acknowledge.
//!
//! Takeover times are printed (run with `--nocapture`), never asserted beyond a generous
//! deadline (`TAKEOVER_DEADLINE`).

mod common;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use common::cc::{compile, compiler};
use common::driver::{fail_over_repeatedly, Arbiter, Cluster};
use common::profile_dir;

/// One cluster at a time: the timing under test should not depend on how many other clusters
/// share the machine's cores.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

/// The C example, built once per test run (C11).
fn c_failover() -> &'static Path {
    static BUILT: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    let (_dir, exe) = BUILT.get_or_init(|| {
        let dir = tempfile::tempdir().expect("tempdir");
        let exe = dir.path().join("failover-c");
        compile(&compiler("CC", "cc"), "-std=c11", "examples/c/failover.c", &exe, false);
        (dir, exe)
    });
    exe
}

#[test]
fn c_engines_fail_over_ten_times_by_quorum_without_losing_a_publish() {
    let _serial = serial();
    let cluster = Cluster::start(c_failover(), &["a", "b", "c"], Arbiter::Quorum);
    fail_over_repeatedly(&cluster, 10, "C, quorum of three data nodes");
}

#[test]
fn c_engines_fail_over_by_etcd() {
    let _serial = serial();
    let cluster = Cluster::start(c_failover(), &["a", "b", "c"], Arbiter::Etcd);
    fail_over_repeatedly(&cluster, 1, "C, etcd");
}

/// `mgha` for the witness: `$MGHA_BIN`, else the workspace build's `target/<profile>/mgha`.
fn mgha_bin() -> PathBuf {
    let path = std::env::var_os("MGHA_BIN").map(PathBuf::from).unwrap_or_else(|| profile_dir().join("mgha"));
    assert!(
        path.is_file(),
        "no mgha binary at {} to run the witness: build it (cargo build -p mgha) or set MGHA_BIN",
        path.display()
    );
    path
}

/// Two data nodes and a witness: with `sync_standbys = 1` the new Active acknowledges publishes
/// once the killed process is back as its Standby, so each round restarts it first.
#[test]
fn cpp_engines_fail_over_ten_times_by_quorum_with_a_witness_without_losing_a_publish() {
    let _serial = serial();
    let dir = tempfile::tempdir().expect("tempdir");
    let exe = dir.path().join("failover-cpp");
    compile(&compiler("CXX", "c++"), "-std=c++17", "examples/cpp/failover.cpp", &exe, false);
    let cluster = Cluster::start(&exe, &["a", "b"], Arbiter::QuorumWithWitness(mgha_bin()));
    fail_over_repeatedly(&cluster, 10, "C++, two data nodes and a witness");
}
