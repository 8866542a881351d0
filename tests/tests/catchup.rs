//! Catch-up after a long absence: a Standby stopped while a long run of revisions is published
//! catches up once it starts again, without the connection wedging, and says *lagging* (with
//! the distance) until it has the Active's head, never *synchronized* before.

use std::sync::Arc;
use std::time::Duration;

use mgha_core::engine::{Engine, EngineOptions};
use mgha_core::status::SyncStatus;
use mgha_core::ChangeSet;
use mgha_sync::pki::TlsFiles;
use mgha_sync::SyncRuntime;
use mgha_tests::inproc::{test_sync_config, Cluster};

/// Revisions published while the Standby is away.
fn backlog() -> u64 {
    std::env::var("MGHA_TEST_CATCHUP_REVISIONS").ok().and_then(|v| v.parse().ok()).unwrap_or(200_000)
}

/// Revisions published per durable commit while building the backlog.
const PUBLISH_RUN: usize = 5000;

fn one_host(i: u64) -> ChangeSet {
    let change = serde_json::json!({"op": "put", "type": "host", "name": format!("c{i}"),
        "fields": {"ipv4-address": format!("10.{}.{}.{}", i >> 16 & 255, i >> 8 & 255, i & 255)}});
    serde_json::from_value(serde_json::json!({"message": "", "changes": [change]})).expect("changeset")
}

/// The status of `engine`'s entry for the peer `name`: (status, lag in revisions).
fn entry(engine: &Engine, name: &str) -> Option<(SyncStatus, u64)> {
    let status = engine.status().expect("status");
    status.peers.iter().find(|p| p.name == name).map(|p| (p.status, p.lag_revisions))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn standby_away_for_a_long_backlog_catches_up_and_is_lagging_until_it_has_the_head() {
    let mut c = Cluster::start(1, false, EngineOptions::default()).await;
    c.engine(0).publish("admin", &one_host(u64::MAX >> 40)).expect("first publish");
    c.converged(Duration::from_secs(30)).await;
    let standby = c.nodes[1].runtime.take().expect("runtime");
    standby.shutdown().await;

    let active = c.engine(0).clone();
    let n = backlog();
    let started = std::time::Instant::now();
    tokio::task::spawn_blocking(move || {
        // One revision per host, committed in runs to keep the test short.
        for start in (0..n).step_by(PUBLISH_RUN) {
            let run: Vec<ChangeSet> = (start..n.min(start + PUBLISH_RUN as u64)).map(one_host).collect();
            active.publish_batch("admin", &run).expect("publish");
        }
    })
    .await
    .expect("publisher");
    eprintln!("published {n} revisions in {:?}", started.elapsed());
    let head = c.engine(0).store().head().expect("head");

    let b = c.engine(1).clone();
    let cfg = test_sync_config(&c.nodes[1].listen, None);
    let runtime = SyncRuntime::start(b.clone(), TlsFiles::new(c.nodes[1].dir.path()), cfg).await.expect("restarts");
    c.nodes[1].runtime = Some(runtime);

    let started = std::time::Instant::now();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(300);
    let (mut standby_lagging, mut active_lagging) = (0u64, 0u64);
    loop {
        // Status first, head after: a head read later can only be higher.
        let seen = entry(&b, "a");
        let b_head = b.store().head().expect("head");
        match seen {
            Some((SyncStatus::Synchronized, lag)) => {
                assert_eq!(b_head, head, "the standby said synchronized before it had the active's head");
                assert_eq!(lag, 0);
                break;
            }
            Some((SyncStatus::Lagging, lag)) => {
                // (0 when the status was read just as the last revisions landed.)
                assert!(lag <= head.seq, "lag {lag} at {}", b_head.seq);
                standby_lagging = standby_lagging.max(lag);
            }
            _ => {}
        }
        if let Some((SyncStatus::Lagging, lag)) = entry(c.engine(0), "s1") {
            active_lagging = active_lagging.max(lag);
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no catch-up: the standby is at {} of {}",
            b_head.seq,
            head.seq
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    eprintln!("caught up {n} revisions in {:?}", started.elapsed());
    assert!(standby_lagging > 0, "the standby never said it was lagging");
    assert!(active_lagging > 0, "the active never said the standby was lagging");
    c.converged(Duration::from_secs(30)).await;
    // The Active sees it synchronized too, once its acknowledgement arrives.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while entry(c.engine(0), "s1").map(|e| e.0) != Some(SyncStatus::Synchronized) {
        assert!(tokio::time::Instant::now() < deadline, "the active never saw the standby synchronized");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for node in &mut c.nodes {
        if let Some(r) = node.runtime.take() {
            r.shutdown().await;
        }
    }
    drop::<Arc<Engine>>(b);
}
