//! Replication through a fault-injecting proxy: delay, dropped connections, cuts mid-frame,
//! partition then heal. Every scenario ends with equal heads and state hashes on all nodes.

use std::sync::Arc;
use std::time::Duration;

use mgha_core::cluster::{init_primary, issue_join_key, join_secondary};
use mgha_core::engine::{Engine, EngineOptions};
use mgha_core::sync::pki::TlsFiles;
use mgha_core::sync::{SyncConfig, SyncRuntime};
use mgha_core::ChangeSet;
use mgha_tests::proxy::FaultProxy;

struct Cluster {
    a: Arc<Engine>,
    b: Arc<Engine>,
    proxy: FaultProxy,
    _runtimes: Vec<SyncRuntime>,
    _dirs: Vec<tempfile::TempDir>,
}

fn free_addr() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").to_string()
}

fn cfg(listen: &str, advertise: Option<String>) -> SyncConfig {
    SyncConfig {
        listen: listen.into(),
        advertise,
        heartbeat_ms: 100,
        peer_timeout_ms: 800,
        reconnect_ms: 50,
        handshake_timeout_ms: 2000,
        ..Default::default()
    }
}

/// A Primary whose peer port is reached only through the proxy, and one Secondary.
async fn cluster() -> Cluster {
    let (da, db) = (tempfile::tempdir().expect("tempdir"), tempfile::tempdir().expect("tempdir"));
    let a_listen = free_addr();
    let proxy = FaultProxy::start(a_listen.parse().expect("addr")).expect("proxy");
    let a = Arc::new(init_primary(da.path(), "a", &a_listen, EngineOptions::default()).expect("init"));
    let ra = SyncRuntime::start(a.clone(), TlsFiles::new(da.path()), cfg(&a_listen, Some(proxy.addr().to_string())))
        .await
        .expect("a runs");
    let key = issue_join_key(&a, 60_000).expect("key").to_string();
    let b_listen = free_addr();
    let b = Arc::new(
        join_secondary(db.path(), "b", &proxy.addr().to_string(), &key, &b_listen, EngineOptions::default())
            .await
            .expect("b joins through the proxy"),
    );
    let rb = SyncRuntime::start(b.clone(), TlsFiles::new(db.path()), cfg(&b_listen, None)).await.expect("b runs");
    Cluster { a, b, proxy, _runtimes: vec![ra, rb], _dirs: vec![da, db] }
}

fn hosts(prefix: &str, n: usize) -> ChangeSet {
    let changes: Vec<_> = (0..n)
        .map(|i| {
            serde_json::json!({"op": "put", "type": "host", "name": format!("{prefix}{i}"),
                "fields": {"ipv4-address": format!("10.1.{}.{}", i / 256 % 256, i % 256), "comments": "x".repeat(200)}})
        })
        .collect();
    serde_json::from_value(serde_json::json!({"message": prefix, "changes": changes})).expect("changeset")
}

async fn converged(c: &Cluster, within: Duration) {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let (ha, hb) = (c.a.store().head().expect("head"), c.b.store().head().expect("head"));
        if ha == hb {
            c.a.store().check().expect("a verifies");
            c.b.store().check().expect("b verifies");
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "no convergence: a {ha:?}, b {hb:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delayed_link_still_converges() {
    let c = cluster().await;
    c.proxy.set_delay_ms(30);
    for i in 0..10 {
        c.a.publish("admin", &hosts(&format!("d{i}-"), 5)).expect("publish");
    }
    converged(&c, Duration::from_secs(20)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_connections_resume_where_they_stopped() {
    let c = cluster().await;
    for i in 0..10 {
        c.a.publish("admin", &hosts(&format!("r{i}-"), 3)).expect("publish");
        if i % 3 == 0 {
            c.proxy.drop_connections();
        }
    }
    converged(&c, Duration::from_secs(20)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cut_mid_frame_during_full_sync_then_converges() {
    let c = cluster().await;
    c.proxy.partition();
    // Enough data that a full sync spans many frames, then purge so b needs a full sync.
    for i in 0..20 {
        c.a.publish("admin", &hosts(&format!("f{i}-"), 200)).expect("publish");
    }
    c.a.store().purge(1).expect("purge");
    // The first connections are cut a few kilobytes in, in the middle of a frame.
    c.proxy.cut_after(Some(40_000));
    c.proxy.heal();
    tokio::time::sleep(Duration::from_millis(500)).await;
    c.proxy.cut_after(None);
    c.proxy.drop_connections();
    converged(&c, Duration::from_secs(30)).await;
    assert_eq!(c.b.store().count().expect("count"), 4000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partition_then_heal_converges() {
    let c = cluster().await;
    c.a.publish("admin", &hosts("p", 2)).expect("publish");
    converged(&c, Duration::from_secs(10)).await;
    c.proxy.partition();
    for i in 0..5 {
        c.a.publish("admin", &hosts(&format!("q{i}-"), 2)).expect("publish during partition");
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(c.b.store().head().expect("head").seq < c.a.store().head().expect("head").seq);
    c.proxy.heal();
    converged(&c, Duration::from_secs(20)).await;
}
