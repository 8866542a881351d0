//! A Standby's store damaged at many seeded positions heals, in process with real sync runtimes:
//! for each position (the file's header, the object payloads, any byte of the pages in use) the
//! stopped Standby's file gets one flipped bit; reopened, it either refuses to open (`corrupt` or
//! `io`, never a panic), or opens and, once a full check has run (as the scrub would), is back at
//! the Active's head and state hash with a store that verifies, whether the flip hit a live
//! record (a full sync replaces the store), a record the quick check reads (it opens
//! quarantined and heals), or a page no longer used (nothing to heal).

use mgha_tests::seeded::XorShift;
use std::sync::Arc;
use std::time::Duration;

use mgha_core::engine::EngineOptions;
use mgha_core::store::STORE_FILE;
use mgha_core::ErrorCode;
use mgha_sync::pki::TlsFiles;
use mgha_sync::SyncRuntime;
use mgha_tests::inproc::{hosts, test_sync_config, Cluster, Node};

/// Positions tried: a third in the header's first 4 KiB, a third around object payloads, a third
/// on any non-zero byte.
const POSITIONS: usize = 201;

/// Stops `node`'s runtime and waits until its engine is released (the store file closed).
async fn stop(node: Node) -> (tempfile::TempDir, String) {
    let Node { engine, runtime, listen, dir } = node;
    if let Some(runtime) = runtime {
        runtime.shutdown().await;
    }
    let mut engine = engine;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        match Arc::try_unwrap(engine) {
            Ok(e) => {
                drop(e);
                break;
            }
            Err(shared) => {
                assert!(tokio::time::Instant::now() < deadline, "the standby's engine is still held");
                engine = shared;
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
    (dir, listen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_standby_damaged_at_seeded_positions_refuses_to_open_or_heals_to_the_actives_state() {
    let mut c = Cluster::start(1, false, EngineOptions::default()).await;
    for r in 0..6 {
        c.engine(0).publish("admin", &hosts(&format!("r{r}-"), 20, 40)).expect("publish");
    }
    c.converged(Duration::from_secs(30)).await;
    let mut rng = XorShift(0x6d67_6861_0000_0013);
    let (mut refused, mut healed_by_sync) = (0, 0);
    for n in 0..POSITIONS {
        let node = c.nodes.pop().expect("the standby");
        let (dir, listen) = stop(node).await;
        let path = dir.path().join(STORE_FILE);
        let pristine = std::fs::read(&path).expect("read the store");
        let at = match n % 3 {
            0 => rng.below(4096.min(pristine.len())),
            1 => {
                let payloads: Vec<usize> =
                    pristine.windows(5).enumerate().filter(|(_, w)| *w == b"10.1.").map(|(i, _)| i).collect();
                payloads[rng.below(payloads.len())] + rng.below(12)
            }
            _ => {
                let used: Vec<usize> = (0..pristine.len()).filter(|&i| pristine[i] != 0).collect();
                used[rng.below(used.len())]
            }
        };
        let mut damaged = pristine.clone();
        damaged[at] ^= 1 << rng.below(8);
        std::fs::write(&path, &damaged).expect("write the damaged copy");
        let what = format!("flip {n} at byte {at} of {}", pristine.len());

        let engine = match mgha_sync::open_engine(dir.path(), EngineOptions::default()) {
            Ok(e) => Arc::new(e),
            Err(e) => {
                assert!(matches!(e.code(), ErrorCode::Corrupt | ErrorCode::Io), "{what}: {e}");
                refused += 1;
                eprintln!("{what}: refused to open: {e}");
                // Not a case this test can heal: the node record is unreadable.
                std::fs::write(&path, &pristine).expect("put the intact copy back");
                Arc::new(mgha_sync::open_engine(dir.path(), EngineOptions::default()).expect("the intact copy opens"))
            }
        };
        let archived_before = engine.archived();
        // What the scrub would find, found at once.
        let _ = engine.check();
        let runtime = match SyncRuntime::start(
            engine.clone(),
            TlsFiles::new(dir.path()),
            test_sync_config(&listen, None),
        )
        .await
        {
            Ok(r) => r,
            Err(e) => {
                // The flip hit a cluster record the runtime reads as it starts (the members):
                // it refuses to run, naming it, as `mgha run` would.
                assert!(matches!(e.code(), ErrorCode::Corrupt), "{what}: {e}");
                refused += 1;
                eprintln!("{what}: refused to run: {e}");
                let (dir, listen) = stop(Node { engine, runtime: None, listen, dir }).await;
                std::fs::write(&path, &pristine).expect("put the intact copy back");
                let engine = Arc::new(
                    mgha_sync::open_engine(dir.path(), EngineOptions::default()).expect("the intact copy opens"),
                );
                let runtime =
                    SyncRuntime::start(engine.clone(), TlsFiles::new(dir.path()), test_sync_config(&listen, None))
                        .await
                        .expect("the intact copy runs");
                c.nodes.push(Node { engine, runtime: Some(runtime), listen, dir });
                continue;
            }
        };
        c.nodes.push(Node { engine: engine.clone(), runtime: Some(runtime), listen, dir });
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        let active = c.engine(0).store().head().expect("head");
        while engine.damage().is_some() || engine.store().head().ok() != Some(active) {
            assert!(tokio::time::Instant::now() < deadline, "{what}: the standby never healed: {:?}", engine.damage());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        engine.store().check().unwrap_or_else(|e| panic!("{what}: the healed store does not verify: {e}"));
        if engine.archived() != archived_before {
            healed_by_sync += 1;
        }
    }
    eprintln!("{POSITIONS} positions: {refused} refused to open, {healed_by_sync} healed by a full sync");
    assert!(healed_by_sync > 0, "no flip needed a heal");
}
