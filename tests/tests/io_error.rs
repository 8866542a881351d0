//! I/O errors other than a full disk, injected into the real store's writes and syncs
//! (`StorageFaults`): a publish that meets EIO fails cleanly with code `io` and leaves nothing
//! half-committed, the store reopens itself, and publishing works again once the fault stops,
//! in the same process; a Standby whose apply meets EIO shows *apply failing* with the cause on
//! the Active and catches up by itself once the fault stops.

use std::sync::Arc;
use std::time::{Duration, Instant};

use mgha_core::engine::{Engine, EngineOptions};
use mgha_core::status::{SyncStatus, WriteFaultKind};
use mgha_core::store::{log_path, StorageFaults, STORE_FILE};
use mgha_core::{ErrorCode, NodeState};
use mgha_tests::inproc::{hosts, Cluster};

/// Generous bound on recovery after the fault stops (the store retries a failed reopen each
/// second).
const RECOVERY: Duration = Duration::from_secs(20);

fn faulty_options(faults: &Arc<StorageFaults>) -> EngineOptions {
    EngineOptions { storage_faults: Some(faults.clone()), ..Default::default() }
}

/// Probes until the store writes again, within [`RECOVERY`].
fn wait_writable(engine: &Engine) {
    let deadline = Instant::now() + RECOVERY;
    while engine.probe_write().is_some() {
        assert!(Instant::now() < deadline, "the store never wrote again: {:?}", engine.store_fault());
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn eio_on_every_write_fails_a_publish_cleanly_and_publishing_resumes_once_it_stops() {
    let dir = tempfile::tempdir().expect("tempdir");
    let faults = StorageFaults::new();
    let node = dir.path().join("node");
    let engine = Engine::create(&node, &NodeState::new_primary("a"), faulty_options(&faults)).expect("create");
    let first = engine.publish("admin", &hosts("before", 20, 100)).expect("publish");

    faults.fail_writes(0);
    let err = engine.publish("admin", &hosts("during", 50, 100)).expect_err("every write fails");
    assert_eq!(err.code(), ErrorCode::Io, "{err}");
    assert!(faults.injected() > 0, "the publish never reached the disk");
    let fault = engine.store_fault().expect("the store records why it cannot write");
    assert_eq!(fault.kind, WriteFaultKind::Io, "{fault}");
    assert_eq!(engine.status().expect("status").store_fault.map(|f| f.kind), Some(WriteFaultKind::Io));

    // Every later publish is tried afresh and fails the same clean way, never with redb's latch.
    for _ in 0..3 {
        let again = engine.publish("admin", &hosts("during", 50, 100)).expect_err("still failing");
        assert_eq!(again.code(), ErrorCode::Io, "{again}");
        assert!(!again.to_string().contains("Previous I/O"), "the store stayed latched: {again}");
    }
    assert!(engine.probe_write().is_some(), "the probe cannot write either");

    // The fault stops: no restart, the store writes again, nothing of the failed publishes is
    // there, and the next revision follows the last acknowledged one.
    faults.heal();
    wait_writable(&engine);
    assert_eq!(engine.store().head().expect("head"), first.head());
    assert!(engine.store().get("host", "during0").is_err(), "a host of a failed publish is visible");
    let after = engine.publish("admin", &hosts("after", 50, 100)).expect("publish after the fault");
    assert_eq!(after.seq, first.seq + 1);
    assert_eq!(engine.store_fault(), None);

    // Reopened from scratch, without faults: exactly the acknowledged revisions, intact.
    drop(engine);
    let engine = Engine::open(&node, EngineOptions::default()).expect("reopen");
    assert_eq!(engine.check().expect("the store verifies").head, after.head());
    assert!(engine.store().get("host", "before19").is_ok());
    assert!(engine.store().get("host", "during0").is_err());
}

/// One transient failing call, at each of the first positions of a publish's writes and syncs
/// to the store file itself (no publish log): each failed publish leaves the store whole (all of
/// the revision or none of it), the store reopens at once, and the very next publish succeeds.
#[test]
fn a_single_eio_anywhere_in_a_commit_leaves_it_whole_or_absent() {
    let faults = StorageFaults::new();
    single_faults(EngineOptions { publish_log: false, ..faulty_options(&faults) }, &faults, 24);
}

/// The same with the publish log, where a publish makes one append and one sync: a failed one
/// reopens the store on what is durable, the file and the log, and every acknowledged revision
/// is still there.
#[test]
fn a_single_eio_in_the_publish_log_leaves_the_publish_whole_or_absent() {
    let faults = StorageFaults::new();
    single_faults(faulty_options(&faults), &faults, 2);
}

/// Rounds of one failing call each: writes at even rounds, syncs at odd ones, each after
/// `round / 2` calls that pass.
fn single_faults(options: EngineOptions, faults: &Arc<StorageFaults>, rounds: u64) {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = dir.path().join("node");
    let engine = Engine::create(&node, &NodeState::new_primary("a"), options).expect("create");
    engine.publish("admin", &hosts("base", 20, 100)).expect("publish");
    let mut acknowledged = Vec::new();
    let mut failed = 0;
    for (round, syncs) in (0..rounds).map(|i| (i, i % 2 == 1)) {
        let after = round / 2;
        if syncs {
            faults.fail_one_sync(after);
        } else {
            faults.fail_one_write(after);
        }
        let before = engine.store().head().expect("head");
        let name = format!("r{round}-");
        let injected = faults.injected();
        let result = engine.publish("admin", &hosts(&name, 30, 200));
        faults.heal();
        let head = engine.store().head().expect("head after the fault");
        let present = (0..30).filter(|i| engine.store().get("host", &format!("{name}{i}")).is_ok()).count();
        match result {
            Ok(rev) => {
                assert_eq!(head, rev.head());
                assert_eq!(present, 30);
            }
            Err(e) => {
                assert!(faults.injected() > injected, "round {round}: failed without a fault: {e}");
                assert_eq!(e.code(), ErrorCode::Io, "round {round}: {e}");
                failed += 1;
                // A commit whose last sync failed may still have landed; never a part of it.
                if head == before {
                    assert_eq!(present, 0, "round {round}: part of a failed publish is visible");
                } else {
                    assert_eq!(head.seq, before.seq + 1, "round {round}");
                    assert_eq!(present, 30, "round {round}: part of a publish landed");
                }
            }
        }
        let next = engine.publish("admin", &hosts(&format!("n{round}-"), 2, 10)).expect("the next publish");
        assert_eq!(next.seq, engine.store().head().expect("head").seq);
        acknowledged.push(format!("n{round}-1"));
    }
    assert!(failed >= rounds / 2, "only {failed} of {rounds} publishes met their fault");
    // The files as a crash would leave them (copied while the store is open, so no checkpoint
    // on close): what only the publish log held is applied at the open, checked, and nothing
    // acknowledged is missing.
    assert!(engine.store().logged_revisions() > 0 || rounds > 2, "the test needs revisions only the log holds");
    let crashed = dir.path().join("crashed");
    std::fs::create_dir(&crashed).expect("mkdir");
    let file = node.join(STORE_FILE);
    for from in [file.clone(), log_path(&file)] {
        if from.exists() {
            std::fs::copy(&from, crashed.join(from.file_name().expect("name"))).expect("copy");
        }
    }
    drop(engine);
    for at in [crashed, node] {
        let reopened = Engine::open(&at, EngineOptions::default()).expect("reopen");
        reopened.check().expect("the store verifies");
        for name in &acknowledged {
            assert!(reopened.store().get("host", name).is_ok(), "acknowledged host {name} is gone");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_standby_whose_apply_meets_eio_shows_apply_failing_and_catches_up_once_it_stops() {
    let mut c = Cluster::start(0, false, EngineOptions::default()).await;
    let faults = StorageFaults::new();
    c.join_with("s1", faulty_options(&faults)).await;
    c.engine(0).publish("admin", &hosts("first", 5, 10)).expect("publish");
    c.converged(Duration::from_secs(30)).await;

    faults.fail_writes(0);
    let active = c.engine(0).clone();
    let rev = tokio::task::spawn_blocking(move || active.publish("admin", &hosts("during", 20, 100)))
        .await
        .expect("publisher")
        .expect("the active publishes");
    let deadline = tokio::time::Instant::now() + RECOVERY;
    let shown = loop {
        let status = c.engine(0).status().expect("status");
        if let Some(p) = status.peers.iter().find(|p| p.name == "s1" && p.status == SyncStatus::ApplyFailing) {
            break p.clone();
        }
        assert!(tokio::time::Instant::now() < deadline, "the active never showed s1 apply failing: {:?}", status.peers);
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let cause = shown.apply_error.clone().expect("the cause is shown");
    assert!(cause.contains("i/o error"), "{cause}");
    assert_eq!(c.engine(1).store_fault().map(|f| f.kind), Some(WriteFaultKind::Io));
    // Its store may be closed meanwhile (reopening it needs a write too): either way it serves
    // nothing of the revision it could not apply.
    assert!(c.engine(1).store().get("host", "during19").is_err());
    assert!(shown.head.seq < rev.seq, "{shown:?}");

    faults.heal();
    // A store that could not reopen while the fault lasted stays closed until its next retry.
    let deadline = tokio::time::Instant::now() + RECOVERY;
    while c.engine(1).store().head().ok() != Some(rev.head()) {
        assert!(tokio::time::Instant::now() < deadline, "s1 never caught up");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    c.converged(RECOVERY).await;
    let deadline = tokio::time::Instant::now() + RECOVERY;
    loop {
        let status = c.engine(0).status().expect("status");
        let s1 = status.peers.iter().find(|p| p.name == "s1").expect("s1 listed");
        if s1.status == SyncStatus::Synchronized && s1.apply_error.is_none() && c.engine(1).store_fault().is_none() {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "s1 never showed synchronized again: {s1:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(c.engine(1).store().get("host", "during19").is_ok());
}
