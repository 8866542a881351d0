//! Replication between engines in one process over real TCP and mutual TLS on loopback.

use std::sync::Arc;
use std::time::Duration;

use mgha_core::collision::ResolveHow;
use mgha_core::engine::{Engine, EngineOptions};
use mgha_core::{ChangeSet, Error, ErrorCode};
use mgha_sync::cluster::{init_primary, issue_join_key, join_secondary};
use mgha_sync::pki::TlsFiles;
use mgha_sync::{SyncConfig, SyncRuntime, SyncStatus};

struct Node {
    engine: Arc<Engine>,
    runtime: Option<SyncRuntime>,
    _dir: tempfile::TempDir,
}

fn cfg(listen: &str) -> SyncConfig {
    SyncConfig {
        listen: listen.into(),
        heartbeat_ms: 100,
        peer_timeout_ms: 1000,
        reconnect_ms: 50,
        ..Default::default()
    }
}

fn free_addr() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").to_string()
}

async fn start(engine: Arc<Engine>, listen: &str) -> SyncRuntime {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    SyncRuntime::start(engine.clone(), TlsFiles::new(engine.dir()), cfg(listen)).await.expect("runtime starts")
}

async fn primary(options: EngineOptions) -> Node {
    let dir = tempfile::tempdir().expect("tempdir");
    let listen = free_addr();
    let engine = Arc::new(init_primary(dir.path(), "a", &listen, options).expect("init"));
    let runtime = start(engine.clone(), &listen).await;
    Node { engine, runtime: Some(runtime), _dir: dir }
}

async fn secondary(p: &Node, name: &str) -> Node {
    let dir = tempfile::tempdir().expect("tempdir");
    let listen = free_addr();
    let key = issue_join_key(&p.engine, 60_000).expect("key").to_string();
    let peer = p.runtime.as_ref().expect("running").local_addr().to_string();
    let engine = Arc::new(
        join_secondary(dir.path(), name, &peer, &key, &listen, EngineOptions::default()).await.expect("joins"),
    );
    let runtime = start(engine.clone(), &listen).await;
    Node { engine, runtime: Some(runtime), _dir: dir }
}

fn hosts(prefix: &str, n: usize) -> ChangeSet {
    let changes = (0..n)
        .map(|i| {
            serde_json::json!({"op": "put", "type": "host", "name": format!("{prefix}{i}"),
                "fields": {"ipv4-address": format!("10.{}.{}.{}", i / 65536 % 256, i / 256 % 256, i % 256)}})
        })
        .collect::<Vec<_>>();
    serde_json::from_value(serde_json::json!({"message": prefix, "changes": changes})).expect("changeset")
}

async fn wait_converged(nodes: &[&Node]) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let heads: Vec<_> = nodes.iter().map(|n| n.engine.store().head().expect("head")).collect();
        if heads.windows(2).all(|w| w[0] == w[1]) {
            for n in nodes {
                n.engine.store().check().expect("store verifies");
            }
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "nodes did not converge: {heads:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_standbys_follow_every_publish() {
    let a = primary(EngineOptions::default()).await;
    a.engine.publish("admin", &hosts("pre", 50)).expect("publish before join");
    let b = secondary(&a, "b").await;
    let c = secondary(&a, "c").await;
    let d = secondary(&a, "d").await;
    wait_converged(&[&a, &b, &c, &d]).await;
    for i in 0..20 {
        a.engine.publish("admin", &hosts(&format!("r{i}-"), 1 + i % 3)).expect("publish");
    }
    wait_converged(&[&a, &b, &c, &d]).await;
    let status = a.engine.status().expect("status");
    assert_eq!(status.peers.len(), 3);
    assert!(status.peers.iter().all(|p| p.status == SyncStatus::Synchronized && p.connected), "{:?}", status.peers);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standby_refuses_publish_naming_the_active() {
    let a = primary(EngineOptions::default()).await;
    let b = secondary(&a, "b").await;
    a.engine.publish("admin", &hosts("x", 1)).expect("publish");
    wait_converged(&[&a, &b]).await;
    let e = b.engine.publish("admin", &hosts("y", 1)).expect_err("standby is read-only");
    assert!(matches!(e, Error::ReadOnly { .. }), "{e}");
    assert!(e.to_string().contains("'a'"), "{e}");
    // A session could never publish there: the Standby refuses to open one, the same way.
    let e = b.engine.session_open("admin").expect_err("no session on a standby");
    assert!(matches!(e, Error::ReadOnly { .. }) && e.to_string().contains("'a'"), "{e}");
    let e = b.engine.resolve_collision(1, ResolveHow::KeepActive, "admin").expect_err("no resolution on a standby");
    assert!(matches!(e, Error::ReadOnly { .. }), "before the branch is looked up: {e}");
    assert_eq!(b.engine.status().expect("status").sessions, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarted_standby_catches_up_with_missed_revisions_only() {
    let a = primary(EngineOptions::default()).await;
    let mut b = secondary(&a, "b").await;
    a.engine.publish("admin", &hosts("x", 10)).expect("publish");
    wait_converged(&[&a, &b]).await;
    let listen = b.runtime.as_ref().expect("running").local_addr().to_string();
    b.runtime.take().expect("running").shutdown().await;
    for i in 0..5 {
        a.engine.publish("admin", &hosts(&format!("m{i}-"), 2)).expect("publish while b is down");
    }
    let before = b.engine.store().head().expect("head");
    let floor = b.engine.store().floor().expect("floor");
    b.runtime = Some(start(b.engine.clone(), &listen).await);
    wait_converged(&[&a, &b]).await;
    // Caught up by revisions (history kept), not by a snapshot (which would move the floor).
    assert_eq!(b.engine.store().floor().expect("floor"), floor);
    assert_eq!(b.engine.store().head().expect("head").seq, before.seq + 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standby_behind_the_purge_point_gets_a_full_sync() {
    let a = primary(EngineOptions::default()).await;
    for i in 0..10 {
        a.engine.publish("admin", &hosts(&format!("p{i}-"), 20)).expect("publish");
    }
    a.engine.store().purge(3).expect("purge");
    let b = secondary(&a, "b").await;
    wait_converged(&[&a, &b]).await;
    assert_eq!(b.engine.store().count().expect("count"), 200);
    a.engine.publish("admin", &hosts("after", 1)).expect("publish");
    wait_converged(&[&a, &b]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn synchronous_publish_waits_for_standbys() {
    let a = primary(EngineOptions { sync_standbys: 1, sync_timeout_ms: 5000, ..Default::default() }).await;
    let b = secondary(&a, "b").await;
    // The first publish may wait for b to connect; afterwards b has it when publish returns.
    for i in 0..5 {
        let engine = a.engine.clone();
        let cs = hosts(&format!("s{i}-"), 1);
        let rev =
            tokio::task::spawn_blocking(move || engine.publish("admin", &cs)).await.expect("join").expect("publish");
        assert!(b.engine.store().head().expect("head").seq >= rev.seq, "standby lacks revision {}", rev.seq);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn join_key_works_once() {
    let a = primary(EngineOptions::default()).await;
    let key = issue_join_key(&a.engine, 60_000).expect("key").to_string();
    let peer = a.runtime.as_ref().expect("running").local_addr().to_string();
    let d1 = tempfile::tempdir().expect("tempdir");
    join_secondary(d1.path(), "b", &peer, &key, &free_addr(), EngineOptions::default()).await.expect("first join");
    let d2 = tempfile::tempdir().expect("tempdir");
    let e = join_secondary(d2.path(), "c", &peer, &key, &free_addr(), EngineOptions::default())
        .await
        .expect_err("second join with the same key");
    assert!(e.to_string().contains("already used"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_of_another_cluster_fails_the_handshake() {
    let a = primary(EngineOptions::default()).await;
    let other = primary(EngineOptions::default()).await;
    let key = issue_join_key(&other.engine, 60_000).expect("key").to_string();
    let peer = a.runtime.as_ref().expect("running").local_addr().to_string();
    let d = tempfile::tempdir().expect("tempdir");
    let e = join_secondary(d.path(), "b", &peer, &key, &free_addr(), EngineOptions::default())
        .await
        .expect_err("CA pinned by the key does not match");
    assert!(e.to_string().contains("TLS"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_join_leaves_no_data_directory_behind() {
    let a = primary(EngineOptions::default()).await;
    let key = issue_join_key(&a.engine, 60_000).expect("key").to_string();
    let peer = a.runtime.as_ref().expect("running").local_addr().to_string();
    let scratch = tempfile::tempdir().expect("tempdir");
    let join = |dir: std::path::PathBuf, name: &'static str, key: String| {
        let peer = peer.clone();
        async move { join_secondary(&dir, name, &peer, &key, &free_addr(), EngineOptions::default()).await }
    };
    join(scratch.path().join("b"), "b", key.clone()).await.expect("first join");

    // Refused by the peer (the key is spent): the directory it created, and the missing
    // parents it created with it, are gone.
    let e = join(scratch.path().join("new/parent/c"), "c", key.clone()).await.expect_err("a used key");
    assert_eq!(e.code(), ErrorCode::Peer, "{e}");
    assert!(!scratch.path().join("new").exists(), "the refused join left its directories behind");

    // A directory that existed stays, with what it held; only what the join wrote goes.
    let kept = scratch.path().join("kept");
    std::fs::create_dir(&kept).expect("mkdir");
    std::fs::write(kept.join("notes.txt"), "mine").expect("write");
    join(kept.clone(), "d", key.clone()).await.expect_err("a used key");
    let left = |dir: &std::path::Path| {
        let mut names: Vec<_> = std::fs::read_dir(dir).expect("dir").map(|e| e.expect("entry").file_name()).collect();
        names.sort();
        names
    };
    assert_eq!(left(&kept), ["notes.txt"], "only what was there before the join");

    // Failing after the peer accepted (the store cannot be created where a dangling link
    // points), the join removes the certificates it wrote, and nothing else.
    std::os::unix::fs::symlink(scratch.path().join("nowhere/mgha.redb"), kept.join("mgha.redb")).expect("symlink");
    let fresh = issue_join_key(&a.engine, 60_000).expect("key").to_string();
    let e = join(kept.clone(), "f", fresh).await.expect_err("no store can be created");
    assert_eq!(e.code(), ErrorCode::Io, "{e}");
    assert_eq!(left(&kept), ["mgha.redb", "notes.txt"], "the certificates are gone, the link and file stay");

    // A malformed key is refused before anything is created.
    let e = join(scratch.path().join("e"), "e", "mgha1.not-a-key".into()).await.expect_err("malformed");
    assert_eq!(e.code(), ErrorCode::InvalidArgument, "{e}");
    assert!(!scratch.path().join("e").exists());
}
