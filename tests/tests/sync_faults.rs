//! Replication through a fault-injecting proxy: delay (also for a catch-up of a long backlog),
//! dropped connections, cuts mid-frame, partition then heal. Every scenario ends with equal heads
//! and state hashes on all nodes.

use std::time::Duration;

use mgha_core::engine::EngineOptions;
use mgha_sync::pki::TlsFiles;
use mgha_sync::SyncRuntime;
use mgha_tests::inproc::{hosts, test_sync_config, Cluster};

async fn proxied() -> (Cluster, mgha_tests::proxy::FaultProxy) {
    let mut c = Cluster::start(1, true, EngineOptions::default()).await;
    let proxy = c.proxy.take().expect("proxy");
    (c, proxy)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delayed_link_still_converges() {
    let (c, proxy) = proxied().await;
    proxy.set_delay_ms(30);
    for i in 0..10 {
        c.engine(0).publish("admin", &hosts(&format!("d{i}-"), 5, 200)).expect("publish");
    }
    c.converged(Duration::from_secs(20)).await;
}

/// A Standby away while 3,000 one-object revisions were published comes back over a 40 ms round
/// trip and applies every one of them, in order, with the Active's ids.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catch_up_over_a_delayed_link_applies_every_revision() {
    let (mut c, proxy) = proxied().await;
    c.converged(Duration::from_secs(20)).await;
    let standby = c.nodes[1].runtime.take().expect("runtime");
    standby.shutdown().await;
    let from = c.engine(1).store().head().expect("head").seq;
    let run: Vec<_> = (0..3_000).map(|i| hosts(&format!("w{i}-"), 1, 20)).collect();
    let active = c.engine(0).clone();
    tokio::task::spawn_blocking(move || active.publish_batch("admin", &run).expect("publish"))
        .await
        .expect("publisher");
    let head = c.engine(0).store().head().expect("head");
    assert_eq!(head.seq, from + 3_000);

    proxy.set_delay_ms(20);
    let cfg = test_sync_config(&c.nodes[1].listen, c.advertise_of(1));
    let runtime =
        SyncRuntime::start(c.engine(1).clone(), TlsFiles::new(c.nodes[1].dir.path()), cfg).await.expect("restarts");
    c.nodes[1].runtime = Some(runtime);
    c.converged(Duration::from_secs(120)).await;

    let (active, standby) = (c.engine(0).store(), c.engine(1).store());
    for seq in from + 1..=head.seq {
        let theirs = active.id_at(seq).expect("id on the active");
        assert!(theirs.is_some(), "the active lacks revision {seq}");
        assert_eq!(standby.id_at(seq).expect("id on the standby"), theirs, "revision {seq}");
    }
    assert_eq!(standby.count().expect("count"), active.count().expect("count"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_connections_resume_where_they_stopped() {
    let (c, proxy) = proxied().await;
    for i in 0..10 {
        c.engine(0).publish("admin", &hosts(&format!("r{i}-"), 3, 200)).expect("publish");
        if i % 3 == 0 {
            proxy.drop_connections();
        }
    }
    c.converged(Duration::from_secs(20)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cut_mid_frame_during_full_sync_then_converges() {
    let (c, proxy) = proxied().await;
    proxy.partition();
    // Enough data that a full sync spans many frames, then purge so the standby needs one.
    for i in 0..20 {
        c.engine(0).publish("admin", &hosts(&format!("f{i}-"), 200, 200)).expect("publish");
    }
    c.engine(0).store().purge(1).expect("purge");
    // Connections are cut 40 kB in, in the middle of a frame, until the cut is lifted.
    proxy.cut_after(Some(40_000));
    proxy.heal();
    tokio::time::sleep(Duration::from_millis(500)).await;
    proxy.cut_after(None);
    proxy.drop_connections();
    c.converged(Duration::from_secs(30)).await;
    assert_eq!(c.engine(1).store().count().expect("count"), 4000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partition_then_heal_converges() {
    let (c, proxy) = proxied().await;
    c.engine(0).publish("admin", &hosts("p", 2, 10)).expect("publish");
    c.converged(Duration::from_secs(10)).await;
    proxy.partition();
    for i in 0..5 {
        c.engine(0).publish("admin", &hosts(&format!("q{i}-"), 2, 10)).expect("publish during partition");
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(c.engine(1).store().head().expect("head").seq < c.engine(0).store().head().expect("head").seq);
    proxy.heal();
    c.converged(Duration::from_secs(20)).await;
}
