//! Many domains between two servers in one process, over real TCP and mutual TLS on loopback:
//! every domain replicates on its own over the one link the two servers share.

use std::sync::Arc;
use std::time::Duration;

use mgha_core::engine::{Engine, EngineOptions};
use mgha_core::model::Uid;
use mgha_core::node::{Designation, NodeState, Role};
use mgha_core::roles::machine::epoch;
use mgha_core::ChangeSet;
use mgha_sync::cluster::{init_primary, issue_join_key, join_secondary};
use mgha_sync::membership::{members, set_domain_members};
use mgha_sync::pki::TlsFiles;
use mgha_sync::tls::{member_server_name, MemberTls};
use mgha_sync::wire::{read_msg, write_msg, Hello, Msg, PROTOCOL_VERSION};
use mgha_sync::{EngineExt, SyncConfig, SyncRuntime, SyncStatus};

struct Server {
    engine: Arc<Engine>,
    runtime: SyncRuntime,
    dir: tempfile::TempDir,
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
    start_with(engine, cfg(listen)).await
}

async fn start_with(engine: Arc<Engine>, cfg: SyncConfig) -> SyncRuntime {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    SyncRuntime::start(engine.clone(), TlsFiles::new(engine.dir()), cfg).await.expect("runtime starts")
}

/// Two servers of one cluster: `a` (the Primary) and `b`, synchronized in the first domain.
async fn two_servers() -> (Server, Server) {
    let dir = tempfile::tempdir().expect("tempdir");
    let listen = free_addr();
    let engine = Arc::new(init_primary(dir.path(), "a", &listen, EngineOptions::default()).expect("init"));
    let runtime = start(engine.clone(), &listen).await;
    let a = Server { engine, runtime, dir };
    let dir = tempfile::tempdir().expect("tempdir");
    let listen = free_addr();
    let key = issue_join_key(&a.engine, 60_000).expect("key").to_string();
    let peer = a.runtime.local_addr().to_string();
    let engine =
        Arc::new(join_secondary(dir.path(), "b", &peer, &key, &listen, EngineOptions::default()).await.expect("joins"));
    let runtime = start(engine.clone(), &listen).await;
    let b = Server { engine, runtime, dir };
    wait_until("b knows both members", || members(&b.engine.store()).map(|m| m.len() == 2).unwrap_or(false)).await;
    (a, b)
}

/// A replica of domain `name` on `server`: Active where `active`, else a Standby that has never
/// synchronized. Its member list is both servers, from the first domain's.
fn replica(server: &Server, id: Uid, name: &str, active: bool) -> Arc<Engine> {
    let node = server.engine.node().expect("node");
    let state = NodeState {
        node_id: node.node_id,
        name: node.name,
        cluster_id: node.cluster_id,
        designation: if active { Designation::Primary } else { Designation::Secondary },
        role: if active { Role::Active } else { Role::Standby },
        epoch: if active { epoch::first(node.tag) } else { 0 },
        tag: node.tag,
    };
    let dir = server.dir.path().join("domains").join(name);
    std::fs::create_dir_all(&dir).expect("domain dir");
    let engine = Arc::new(mgha_sync::create_engine(&dir, &state, EngineOptions::default()).expect("replica"));
    let list = members(&server.engine.store()).expect("members");
    assert!(set_domain_members(&engine.store(), &list).expect("member list set"));
    server.runtime.add_domain(id, engine.clone()).expect("domain added");
    engine
}

fn hosts(prefix: &str, n: usize) -> ChangeSet {
    let changes = (0..n)
        .map(|i| {
            serde_json::json!({"op": "put", "type": "host", "name": format!("{prefix}{i}"),
                "fields": {"ipv4-address": format!("10.0.{}.{}", i / 256 % 256, i % 256)}})
        })
        .collect::<Vec<_>>();
    serde_json::from_value(serde_json::json!({"message": prefix, "changes": changes})).expect("changeset")
}

async fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !done() {
        assert!(tokio::time::Instant::now() < deadline, "not within the deadline: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn converged(x: &Engine, y: &Engine) {
    wait_until("replicas converge", || x.store().head().ok() == y.store().head().ok()).await;
    x.store().check().expect("store verifies");
    y.store().check().expect("store verifies");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_domain_replicates_over_one_link_per_pair() {
    let (a, b) = two_servers().await;
    let (red, blue) = (Uid::new_random(), Uid::new_random());
    // red is Active on a, blue on b: sessions are dialed from both sides.
    let red_a = replica(&a, red, "red", true);
    let red_b = replica(&b, red, "red", false);
    let blue_b = replica(&b, blue, "blue", true);
    let blue_a = replica(&a, blue, "blue", false);
    a.engine.publish("admin", &hosts("g", 2)).expect("global publish");
    red_a.publish("admin", &hosts("r", 3)).expect("red publish");
    blue_b.publish("admin", &hosts("b", 4)).expect("blue publish");
    converged(&a.engine, &b.engine).await;
    converged(&red_a, &red_b).await;
    converged(&blue_b, &blue_a).await;
    // Each domain holds only its own data.
    assert_eq!(red_b.store().head().expect("head").seq, 1);
    assert!(red_b.store().get("host", "r2").is_ok());
    assert!(red_b.store().get("host", "b0").is_err(), "blue's object is not in red");
    assert!(blue_a.store().get("host", "b3").is_ok());
    // One link between the two servers, whatever the number of domains.
    assert_eq!(a.runtime.links(), 1);
    assert_eq!(b.runtime.links(), 1);
    assert_eq!(a.runtime.domains().len(), 3);
    // Publishes keep flowing over it, in every domain at once.
    for i in 0..5 {
        red_a.publish("admin", &hosts(&format!("r{i}-"), 1)).expect("red publish");
        blue_b.publish("admin", &hosts(&format!("b{i}-"), 1)).expect("blue publish");
    }
    converged(&red_a, &red_b).await;
    converged(&blue_b, &blue_a).await;
    assert_eq!((a.runtime.links(), b.runtime.links()), (1, 1));
    // The traffic of a domain is counted per peer in its own replica.
    let b_id = b.engine.node().expect("node").node_id;
    let status = red_a.status().expect("status");
    let peer_b = status.peers.iter().find(|p| p.node_id == b_id).expect("peer b");
    assert!(peer_b.bytes_sent > 0 && peer_b.bytes_received > 0, "{peer_b:?}");
    a.runtime.shutdown().await;
    b.runtime.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_planned_changeover_moves_one_domain_only() {
    let (a, b) = two_servers().await;
    let (red, blue) = (Uid::new_random(), Uid::new_random());
    let red_a = replica(&a, red, "red", true);
    let red_b = replica(&b, red, "red", false);
    let blue_a = replica(&a, blue, "blue", true);
    let blue_b = replica(&b, blue, "blue", false);
    red_a.publish("admin", &hosts("r", 1)).expect("red publish");
    blue_a.publish("admin", &hosts("b", 1)).expect("blue publish");
    converged(&red_a, &red_b).await;
    converged(&blue_a, &blue_b).await;
    let epoch = b.runtime.changeover_in(red, "b").await.expect("red changes over to b");
    assert!(epoch > 0);
    wait_until("red's new Active is b", || red_b.role().0 == Role::Active && red_a.role().0 == Role::Standby).await;
    // blue and the first domain keep their Active.
    assert_eq!(blue_a.role().0, Role::Active);
    assert_eq!(blue_b.role().0, Role::Standby);
    assert_eq!(a.engine.role().0, Role::Active);
    // red now replicates from b, blue still from a.
    red_b.publish("admin", &hosts("r-after", 1)).expect("b publishes red");
    blue_a.publish("admin", &hosts("b-after", 1)).expect("a publishes blue");
    converged(&red_a, &red_b).await;
    converged(&blue_a, &blue_b).await;
    assert_eq!((a.runtime.links(), b.runtime.links()), (1, 1));
    // Asked which replicas could take over, b answers for red only, the domain Active there,
    // from its own view: itself and a, once a is synchronized again.
    let unknown = Uid::new_random();
    wait_until("b to see a synchronized in red", || {
        red_b.sync().peers().iter().any(|p| p.name == "a" && p.connected && p.status == SyncStatus::Synchronized)
    })
    .await;
    let answer = a.runtime.ask_eligible("b", vec![red, blue, unknown]).await.expect("b answers");
    assert_eq!(answer, vec![(red, vec!["b".to_string(), "a".to_string()])]);
    let nobody = a.runtime.ask_eligible("nobody", vec![red]).await;
    assert!(matches!(nobody, Err(mgha_core::Error::NotFound(_))), "{nobody:?}");
    a.runtime.shutdown().await;
    b.runtime.shutdown().await;
}

/// Opens a link to `addr` as the member whose files are `files`, as a server would.
async fn raw_link(
    files: &TlsFiles,
    addr: &str,
    cluster_id: Uid,
    node_id: Uid,
) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    let tls = MemberTls::load(files).expect("tls");
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let mut s =
        tokio_rustls::TlsConnector::from(tls.client.clone()).connect(member_server_name(), tcp).await.expect("TLS");
    write_msg(&mut s, &Msg::Link { protocol: PROTOCOL_VERSION, cluster_id, node_id }).await.expect("write");
    match tokio::time::timeout(Duration::from_secs(5), read_msg(&mut s)).await {
        Ok(Ok(Some(Msg::Link { .. }))) => s,
        other => panic!("expected a link answer, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_for_a_domain_not_hosted_is_refused_naming_it() {
    let (a, b) = two_servers().await;
    // b's own link would win over ours: b stops, and a lets its link go.
    b.runtime.shutdown().await;
    wait_until("a holds no link", || a.runtime.links() == 0).await;
    let node = b.engine.node().expect("node");
    let s =
        raw_link(&TlsFiles::new(b.engine.dir()), &a.runtime.local_addr().to_string(), node.cluster_id, node.node_id)
            .await;
    let mut conn = yamux::Connection::new(
        tokio_util::compat::TokioAsyncReadCompatExt::compat(s),
        yamux::Config::default(),
        yamux::Mode::Client,
    );
    let unknown = Uid::new_random();
    let hello = Hello {
        protocol: PROTOCOL_VERSION,
        cluster_id: node.cluster_id,
        domain: unknown,
        node_id: node.node_id,
        name: node.name,
        designation: node.designation,
        role: Role::Standby,
        epoch: 0,
        head: Default::default(),
        listen: String::new(),
        members: vec![],
        damaged: false,
    };
    // The connection is driven while the stream talks: yamux moves bytes only when polled.
    let (tx, rx) = tokio::sync::oneshot::channel();
    let talk = tokio::spawn(async move {
        let stream: yamux::Stream = rx.await.expect("stream");
        let mut stream = tokio_util::compat::FuturesAsyncReadCompatExt::compat(stream);
        write_msg(&mut stream, &Msg::Hello(hello)).await.expect("write hello");
        tokio::time::timeout(Duration::from_secs(5), read_msg(&mut stream)).await
    });
    let mut tx = Some(tx);
    let drive = std::future::poll_fn(|cx| {
        if let Some(t) = tx.take() {
            match conn.poll_new_outbound(cx) {
                std::task::Poll::Ready(Ok(s)) => {
                    let _ = t.send(s);
                }
                std::task::Poll::Ready(Err(e)) => panic!("open: {e}"),
                std::task::Poll::Pending => tx = Some(t),
            }
        }
        loop {
            match conn.poll_next_inbound(cx) {
                // a's own dial loops may open streams on this link, which stands for b: not
                // this test's, dropped (reset) and left to retry.
                std::task::Poll::Ready(Some(Ok(_))) => continue,
                std::task::Poll::Ready(_) => return std::task::Poll::Ready(()),
                std::task::Poll::Pending => return std::task::Poll::Pending,
            }
        }
    });
    let answer = tokio::select! {
        answer = talk => answer.expect("task"),
        _ = drive => panic!("the link ended before an answer"),
    };
    match answer {
        Ok(Ok(Some(Msg::Refuse { reason }))) => assert!(reason.contains(&unknown.to_string()), "{reason}"),
        other => panic!("expected a refusal, got {other:?}"),
    }
    a.runtime.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn links_dialed_at_once_converge_to_one() {
    let (mut a, mut b) = two_servers().await;
    let ids: Vec<Uid> = (0..6).map(|_| Uid::new_random()).collect();
    // Domain i is Active on a when i is even, on b otherwise: both sides dial.
    let mut replicas = Vec::new();
    for (i, id) in ids.iter().enumerate() {
        let on_a = i % 2 == 0;
        let x = replica(&a, *id, &format!("d{i}"), on_a);
        let y = replica(&b, *id, &format!("d{i}"), !on_a);
        replicas.push((x, y));
    }
    for round in 0..3 {
        // Both servers start again at the same moment, each dialing the other for every
        // domain at once: links that cross end as one.
        let (a_addr, b_addr) = (a.runtime.local_addr().to_string(), b.runtime.local_addr().to_string());
        a.runtime.shutdown().await;
        b.runtime.shutdown().await;
        let (ra, rb) = tokio::join!(start(a.engine.clone(), &a_addr), start(b.engine.clone(), &b_addr));
        (a.runtime, b.runtime) = (ra, rb);
        for (id, (x, y)) in ids.iter().zip(&replicas) {
            a.runtime.add_domain(*id, x.clone()).expect("domain added");
            b.runtime.add_domain(*id, y.clone()).expect("domain added");
        }
        for (i, (x, y)) in replicas.iter().enumerate() {
            let active = if i % 2 == 0 { x } else { y };
            active.publish("admin", &hosts(&format!("d{i}-{round}-"), 1)).expect("publish");
        }
        for (x, y) in &replicas {
            converged(x, y).await;
        }
        wait_until("one live link on each side", || a.runtime.links() == 1 && b.runtime.links() == 1).await;
    }
    // And it stays one: the next publishes use it, no new link is set up.
    let established = (a.runtime.links_established(), b.runtime.links_established());
    for (i, (x, y)) in replicas.iter().enumerate() {
        let active = if i % 2 == 0 { x } else { y };
        active.publish("admin", &hosts(&format!("again{i}-"), 1)).expect("publish");
    }
    for (x, y) in &replicas {
        converged(x, y).await;
    }
    assert_eq!((a.runtime.links_established(), b.runtime.links_established()), established);
    assert_eq!((a.runtime.links(), b.runtime.links()), (1, 1));
    a.runtime.shutdown().await;
    b.runtime.shutdown().await;
}

/// An idle session pings its peer only once every ten heartbeats, less often than the peer
/// timeout here; the link's beats keep the peer heard meanwhile, so neither the sessions nor the
/// link are dropped while nothing is published, and the next publish goes out on them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_sessions_stay_up_on_the_links_beats() {
    let (mut a, mut b) = two_servers().await;
    let quick = |listen: &str| SyncConfig { heartbeat_ms: 50, peer_timeout_ms: 300, ..cfg(listen) };
    let (a_addr, b_addr) = (a.runtime.local_addr().to_string(), b.runtime.local_addr().to_string());
    a.runtime.shutdown().await;
    b.runtime.shutdown().await;
    a.runtime = start_with(a.engine.clone(), quick(&a_addr)).await;
    b.runtime = start_with(b.engine.clone(), quick(&b_addr)).await;
    let red = Uid::new_random();
    let red_a = replica(&a, red, "red", true);
    let red_b = replica(&b, red, "red", false);
    red_a.publish("admin", &hosts("r", 1)).expect("publish");
    a.engine.publish("admin", &hosts("g", 1)).expect("publish");
    converged(&red_a, &red_b).await;
    converged(&a.engine, &b.engine).await;
    let synchronized =
        |e: &Engine| e.sync().peers().iter().any(|p| p.connected && p.status == mgha_sync::SyncStatus::Synchronized);
    wait_until("both Actives see their Standby synchronized", || synchronized(&red_a) && synchronized(&a.engine)).await;
    wait_until("one live link on each side", || a.runtime.links() == 1 && b.runtime.links() == 1).await;
    let established = (a.runtime.links_established(), b.runtime.links_established());
    // Six peer timeouts of idleness: the sessions ping every 500 ms, the link beats every 50 ms.
    tokio::time::sleep(Duration::from_millis(1800)).await;
    assert_eq!((a.runtime.links_established(), b.runtime.links_established()), established, "no link was set up again");
    assert_eq!((a.runtime.links(), b.runtime.links()), (1, 1));
    assert!(synchronized(&red_a) && synchronized(&a.engine), "the sessions stayed up");
    red_a.publish("admin", &hosts("r-after", 1)).expect("publish");
    converged(&red_a, &red_b).await;
    assert_eq!((a.runtime.links_established(), b.runtime.links_established()), established);
    a.runtime.shutdown().await;
    b.runtime.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_domain_is_refused_and_its_sessions_end() {
    let (a, b) = two_servers().await;
    let red = Uid::new_random();
    let red_a = replica(&a, red, "red", true);
    let red_b = replica(&b, red, "red", false);
    red_a.publish("admin", &hosts("r", 1)).expect("publish");
    converged(&red_a, &red_b).await;
    b.runtime.remove_domain(red).await;
    assert_eq!(b.runtime.domains().len(), 1);
    red_a.publish("admin", &hosts("r-after", 1)).expect("publish");
    // b no longer follows red; the first domain still replicates.
    a.engine.publish("admin", &hosts("g", 1)).expect("global publish");
    converged(&a.engine, &b.engine).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(red_b.store().head().expect("head").seq, 1);
    a.runtime.shutdown().await;
    b.runtime.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_follows_only_while_its_domain_lists_the_active() {
    let (a, b) = two_servers().await;
    let red = Uid::new_random();
    let red_a = replica(&a, red, "red", true);
    let red_b = replica(&b, red, "red", false);
    red_a.publish("admin", &hosts("r", 1)).expect("publish");
    converged(&red_a, &red_b).await;
    // b's list of red names only b now: it lets go of a and dials it no more.
    let a_id = a.engine.node().expect("node").node_id;
    let all = members(&b.engine.store()).expect("members");
    let only_b: Vec<_> = all.iter().filter(|m| m.node_id != a_id).cloned().collect();
    assert!(set_domain_members(&red_b.store(), &only_b).expect("list set"));
    b.runtime.members_changed(red).expect("members changed");
    wait_until("b no longer shows a in red", || red_b.status().map(|s| s.peers.is_empty()).unwrap_or(false)).await;
    red_a.publish("admin", &hosts("r-apart", 1)).expect("publish");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(red_b.store().head().expect("head").seq, 1, "b does not follow a member it does not list");
    // Listed again: b dials a and catches up; the first domain never stopped.
    assert!(set_domain_members(&red_b.store(), &all).expect("list set"));
    b.runtime.members_changed(red).expect("members changed");
    converged(&red_a, &red_b).await;
    converged(&a.engine, &b.engine).await;
    assert_eq!((a.runtime.links(), b.runtime.links()), (1, 1));
    a.runtime.shutdown().await;
    b.runtime.shutdown().await;
}
