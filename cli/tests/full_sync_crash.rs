//! A new member killed with SIGKILL in the middle of its full sync, with real `mgha` daemons:
//! the load goes into a file beside the live store, in one transaction committed at the end, so
//! the kill leaves the live store as it was (empty, checking clean) and a headless partial file;
//! the next start removes that file and the full sync starts again and completes, to the
//! Active's head and state hash.

mod support;

use std::time::{Duration, Instant};

use support::*;

/// The partial file a full sync builds beside the live store (`mgha_core::engine::SNAPSHOT_FILE`).
const PARTIAL: &str = "mgha.redb.sync";

#[test]
fn a_member_killed_during_its_full_sync_keeps_its_store_and_syncs_again() {
    let scratch = Scratch::new();
    let mut p = scratch.init("p");
    p.fast_timers();
    p.start();
    // Enough objects that the load takes a while: the kill lands in its middle.
    for part in 0..4 {
        let name = format!("part{part}");
        ok(&["apply", "-d", p.d(), s(&scratch.file(&format!("{name}.json"), &hosts(&name, 25_000)))]);
    }
    let head = p.status()["head"].clone();
    let mut b = scratch.join(&p, "b");
    b.fast_timers();
    for round in 0..2 {
        b.spawn();
        let partial = b.dir.join(PARTIAL);
        let deadline = Instant::now() + WAIT;
        // The load has begun once the partial file holds data.
        while std::fs::metadata(&partial).map(|m| m.len()).unwrap_or(0) < 1024 * 1024 {
            assert!(Instant::now() < deadline, "round {round}: the full sync did not begin");
            std::thread::sleep(Duration::from_millis(2));
        }
        std::thread::sleep(Duration::from_millis(20 * round));
        b.kill();
        assert!(
            partial.exists(),
            "round {round}: killed after the full sync was installed; the test needs more objects"
        );
        let st = b.status();
        assert_eq!(st["head"]["seq"], 0, "round {round}: the live store is untouched by a partial load: {st}");
        ok(&["check", "--offline", "-d", b.d()]);
    }
    b.start();
    wait_converged(&p, &[&b]);
    assert_eq!(b.status()["head"], head, "the full sync completed to the Active's head and state hash");
    assert!(!b.dir.join(PARTIAL).exists(), "the partial file is gone");
    ok(&["check", "-d", b.d()]);
    assert!(ok(&["get", "-d", b.d(), "host", "part3-24999"]).contains("10.0.97.167"));
}
