//! Peers that are not what they should be: garbage, no certificate, another cluster's
//! certificate, an oversized frame, a wrong protocol version, forged revisions, join floods.
//! Each is refused, and the cluster goes on replicating.

use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use mgha_core::engine::EngineOptions;
use mgha_core::model::Hash;
use mgha_core::Error;
use mgha_sync::tls::{joiner_client, member_server_name, MemberTls};
use mgha_sync::wire::{read_msg, write_msg, Hello, JoinRequest, Msg, PROTOCOL_VERSION};
use mgha_tests::inproc::{hosts, Cluster};

async fn still_replicates(c: &Cluster, tag: &str) {
    c.engine(0).publish("admin", &hosts(tag, 1, 0)).expect("publish");
    c.converged(Duration::from_secs(10)).await;
}

async fn member_connect(tls: &MemberTls, addr: &str) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    TlsConnector::from(tls.client.clone()).connect(member_server_name(), tcp).await
}

/// Reads until the peer closes or refuses; returns the refusal reason, if any.
async fn refusal(stream: &mut (impl tokio::io::AsyncRead + Unpin)) -> Option<String> {
    match tokio::time::timeout(Duration::from_secs(5), read_msg(stream)).await {
        Ok(Ok(Some(Msg::Refuse { reason }))) => Some(reason),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_bytes_are_dropped() {
    let c = Cluster::start(1, false, EngineOptions::default()).await;
    let mut tcp = TcpStream::connect(c.primary_addr()).await.expect("connect");
    tcp.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n\x00\xff garbage").await.expect("write");
    let mut buf = [0u8; 64];
    let n = tokio::time::timeout(Duration::from_secs(5), tcp.read(&mut buf)).await.expect("closed in time");
    assert!(matches!(n, Ok(_) | Err(_)));
    still_replicates(&c, "g").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unauthenticated_peer_may_only_join() {
    let c = Cluster::start(1, false, EngineOptions::default()).await;
    let fp = MemberTls::load(&c.nodes[0].files()).expect("tls").ca_fingerprint;
    let tcp = TcpStream::connect(c.primary_addr()).await.expect("connect");
    let mut tls = TlsConnector::from(joiner_client(fp).expect("config"))
        .connect(member_server_name(), tcp)
        .await
        .expect("TLS without a client certificate is allowed");
    write_msg(&mut tls, &Msg::Ping { nonce: 1, head: 0 }).await.expect("write");
    let reason = refusal(&mut tls).await.expect("refused");
    assert!(reason.contains("certificate"), "{reason}");
    still_replicates(&c, "u").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificate_of_another_cluster_is_refused() {
    let c = Cluster::start(1, false, EngineOptions::default()).await;
    let other = Cluster::start(0, false, EngineOptions::default()).await;
    let foreign = MemberTls::load(&other.nodes[0].files()).expect("tls");
    // The listener's certificate is not of the other cluster's CA, and ours is not of theirs.
    let result = async {
        let mut s = member_connect(&foreign, &c.primary_addr()).await?;
        // TLS 1.3 reports a refused client certificate on the first read.
        s.write_all(&[0, 0, 0, 1, 0xc0]).await?;
        let mut b = [0u8; 1];
        s.read(&mut b).await
    }
    .await;
    assert!(result.is_err() || matches!(result, Ok(0)), "{result:?}");
    still_replicates(&c, "f").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_frame_closes_the_connection() {
    let c = Cluster::start(1, false, EngineOptions::default()).await;
    let member = MemberTls::load(&c.nodes[1].files()).expect("tls");
    let mut s = member_connect(&member, &c.primary_addr()).await.expect("member connects");
    s.write_all(&u32::MAX.to_be_bytes()).await.expect("write length");
    s.write_all(&[0u8; 1024]).await.expect("write some");
    let mut b = [0u8; 16];
    let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut b)).await.expect("closed in time");
    assert!(matches!(n, Ok(0) | Err(_)), "{n:?}");
    still_replicates(&c, "o").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_protocol_version_is_refused_with_a_reason() {
    let c = Cluster::start(1, false, EngineOptions::default()).await;
    let member = MemberTls::load(&c.nodes[1].files()).expect("tls");
    let node = c.engine(1).node().expect("node");
    let mut s = member_connect(&member, &c.primary_addr()).await.expect("member connects");
    let link = Msg::Link { protocol: PROTOCOL_VERSION + 98, cluster_id: node.cluster_id, node_id: node.node_id };
    write_msg(&mut s, &link).await.expect("write");
    let reason = refusal(&mut s).await.expect("refused");
    assert!(reason.contains("protocol version"), "{reason}");
    still_replicates(&c, "v").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn link_claiming_another_node_is_refused() {
    let c = Cluster::start(2, false, EngineOptions::default()).await;
    let member = MemberTls::load(&c.nodes[1].files()).expect("tls");
    let other = c.engine(2).node().expect("node");
    let mut s = member_connect(&member, &c.primary_addr()).await.expect("member connects");
    let link = Msg::Link { protocol: PROTOCOL_VERSION, cluster_id: other.cluster_id, node_id: other.node_id };
    write_msg(&mut s, &link).await.expect("write");
    let reason = refusal(&mut s).await.expect("refused");
    assert!(reason.contains("certificate"), "{reason}");
    still_replicates(&c, "n").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_that_skips_the_link_message_is_refused() {
    let c = Cluster::start(1, false, EngineOptions::default()).await;
    let member = MemberTls::load(&c.nodes[1].files()).expect("tls");
    let node = c.engine(1).node().expect("node");
    let mut s = member_connect(&member, &c.primary_addr()).await.expect("member connects");
    let hello = Hello {
        protocol: PROTOCOL_VERSION,
        cluster_id: node.cluster_id,
        domain: node.cluster_id,
        node_id: node.node_id,
        name: node.name,
        designation: node.designation,
        role: node.role,
        epoch: node.epoch,
        head: Default::default(),
        listen: String::new(),
        members: vec![],
        damaged: false,
    };
    write_msg(&mut s, &Msg::Hello(hello)).await.expect("write");
    let reason = refusal(&mut s).await.expect("refused");
    assert!(reason.contains("link"), "{reason}");
    still_replicates(&c, "l").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_revisions_change_nothing() {
    let c = Cluster::start(1, false, EngineOptions::default()).await;
    let rev = c.engine(0).publish("admin", &hosts("h", 3, 0)).expect("publish");
    c.converged(Duration::from_secs(10)).await;
    let next = c.engine(0).publish("admin", &hosts("k", 1, 0)).expect("publish");
    let after_next = c.engine(0).publish("admin", &hosts("m", 1, 0)).expect("publish");
    let standby = tempfile::tempdir().expect("tempdir");
    // A fresh copy of the standby's state at `rev`, to try forgeries against.
    let store = c.engine(0).store();
    let node = c.engine(1).node().expect("node");
    let s = mgha_core::store::Store::create(&standby.path().join("s.redb"), &node).expect("store");
    s.apply_replicated(&store.revision(rev.seq).expect("rev")).expect("the genuine first revision applies");
    let head = s.head().expect("head");
    let skipped = s.apply_replicated(&after_next).expect_err("a revision whose parent is not our head");
    assert!(matches!(skipped, Error::Diverged(_)), "{skipped}");
    let mut forged = next.clone();
    forged.parent = head.id;
    forged.state_hash = Hash([9; 32]);
    let e = s.apply_replicated(&forged).expect_err("forged state hash");
    assert!(matches!(e, Error::Diverged(_)), "{e}");
    let mut forged = next.clone();
    forged.parent = head.id;
    if let Some(after) = forged.changes[0].after.as_mut() {
        after.name = "tampered".into();
    }
    let e = s.apply_replicated(&forged).expect_err("tampered content no longer matches the id");
    assert!(matches!(e, Error::Diverged(_)), "{e}");
    assert_eq!(s.head().expect("head"), head, "nothing applied");
    s.check().expect("store intact");
}

/// A join request from `source` (a loopback address: 127.0.0.0/8 is all loopback) with `key`
/// and `name`; the refusal reason.
async fn join_from(c: &Cluster, source: &str, key: &str, name: &str) -> String {
    let fp = MemberTls::load(&c.nodes[0].files()).expect("tls").ca_fingerprint;
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket.bind(format!("{source}:0").parse().expect("source")).expect("bind the source address");
    let tcp = socket.connect(c.primary_addr().parse().expect("address")).await.expect("connect");
    let mut tls =
        TlsConnector::from(joiner_client(fp).expect("config")).connect(member_server_name(), tcp).await.expect("TLS");
    let req = JoinRequest {
        protocol: PROTOCOL_VERSION,
        key_secret: key.into(),
        name: name.into(),
        listen: String::new(),
        csr_pem: String::new(),
        witness: false,
    };
    write_msg(&mut tls, &Msg::JoinRequest(req)).await.expect("write");
    refusal(&mut tls).await.expect("refused")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_key_burst_from_one_source_leaves_other_sources_free_to_join() {
    let mut c = Cluster::start(0, false, EngineOptions::default()).await;
    let mut last = String::new();
    for i in 0..40 {
        last = join_from(&c, "127.0.0.2", &format!("{i:032x}"), &format!("x{i}")).await;
    }
    assert!(last.contains("too many join attempts"), "{last}");
    // The burst's source is locked out; another source is not.
    let other = join_from(&c, "127.0.0.3", &format!("{:032x}", 99), "y").await;
    assert!(other.contains("unknown join key"), "{other}");
    c.join("legit").await;
    c.converged(Duration::from_secs(10)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_key_learns_nothing_about_member_names() {
    let c = Cluster::start(0, false, EngineOptions::default()).await;
    let existing = c.engine(0).node().expect("node").name;
    let reason = join_from(&c, "127.0.0.4", &format!("{:032x}", 7), &existing).await;
    assert!(reason.contains("unknown join key"), "{reason}");
    assert!(!reason.contains(&existing) && !reason.contains("exists"), "{reason}");
}
