//! In-process clusters for tests: engines with real sync runtimes on loopback (real TCP, real
//! mutual TLS), optionally with the Primary's peer port behind a [`FaultProxy`].

use std::sync::Arc;
use std::time::Duration;

use mgha_core::engine::{Engine, EngineOptions};
use mgha_core::ChangeSet;
use mgha_sync::cluster::{init_primary, issue_join_key, join_secondary};
use mgha_sync::pki::TlsFiles;
use mgha_sync::{SyncConfig, SyncRuntime};

use crate::proxy::FaultProxy;

/// A free loopback address (bound then released).
pub fn free_addr() -> String {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.to_string()).unwrap_or_default()
}

/// Short timers so faults show within a test's patience.
pub fn test_sync_config(listen: &str, advertise: Option<String>) -> SyncConfig {
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

/// One node of an in-process cluster.
pub struct Node {
    pub engine: Arc<Engine>,
    pub runtime: Option<SyncRuntime>,
    pub listen: String,
    pub dir: tempfile::TempDir,
}

impl Node {
    pub fn files(&self) -> TlsFiles {
        TlsFiles::new(self.dir.path())
    }
}

/// A Primary and its Secondaries.
pub struct Cluster {
    pub nodes: Vec<Node>,
    /// In front of the Primary's peer port (and, by return routes, of the Secondaries'), when
    /// asked for.
    pub proxy: Option<FaultProxy>,
    /// Applied to every node's [`test_sync_config`].
    tune: fn(&mut SyncConfig),
}

impl Cluster {
    /// A Primary plus `secondaries` Secondaries; with `proxied`, everyone reaches the Primary
    /// through a fault proxy, and the Primary reaches everyone through it too (a return route per
    /// Secondary): a pair of servers shares one link, which either may dial.
    pub async fn start(secondaries: usize, proxied: bool, options: EngineOptions) -> Cluster {
        Cluster::start_tuned(secondaries, proxied, options, |_| {}).await
    }

    /// As [`Cluster::start`], with `tune` applied to every node's sync configuration (a
    /// changeover timeout, say).
    pub async fn start_tuned(
        secondaries: usize,
        proxied: bool,
        options: EngineOptions,
        tune: fn(&mut SyncConfig),
    ) -> Cluster {
        let dir = tempfile::tempdir().expect("tempdir");
        let listen = free_addr();
        let proxy = proxied.then(|| FaultProxy::start(listen.parse().expect("addr")).expect("proxy"));
        let advertise = proxy.as_ref().map(|p| p.addr().to_string());
        let engine = Arc::new(init_primary(dir.path(), "a", &listen, options).expect("init"));
        let mut cfg = test_sync_config(&listen, advertise);
        tune(&mut cfg);
        let runtime = SyncRuntime::start(engine.clone(), TlsFiles::new(dir.path()), cfg).await.expect("primary runs");
        let mut cluster = Cluster { nodes: vec![Node { engine, runtime: Some(runtime), listen, dir }], proxy, tune };
        for i in 0..secondaries {
            cluster.join(&format!("s{}", i + 1)).await;
        }
        cluster
    }

    /// The address joiners and followers use for the Primary.
    pub fn primary_addr(&self) -> String {
        match &self.proxy {
            Some(p) => p.addr().to_string(),
            None => self.nodes[0].runtime.as_ref().map(|r| r.local_addr().to_string()).unwrap_or_default(),
        }
    }

    /// Joins one more Secondary and starts it.
    pub async fn join(&mut self, name: &str) -> usize {
        self.join_with(name, EngineOptions::default()).await
    }

    /// As [`Cluster::join`], the Secondary's engine opened with `options` (injected storage
    /// faults, say).
    pub async fn join_with(&mut self, name: &str, options: EngineOptions) -> usize {
        let dir = tempfile::tempdir().expect("tempdir");
        let listen = free_addr();
        let key = issue_join_key(&self.nodes[0].engine, 60_000).expect("key").to_string();
        // The address the others are told from the join on: a return route when proxied.
        let advertise = self
            .proxy
            .as_ref()
            .map(|p| p.add_return_route(listen.parse().expect("addr")).expect("return route").to_string());
        let told = advertise.clone().unwrap_or_else(|| listen.clone());
        let engine = Arc::new(
            join_secondary(dir.path(), name, &self.primary_addr(), &key, &told, options).await.expect("joins"),
        );
        let mut cfg = test_sync_config(&listen, advertise);
        (self.tune)(&mut cfg);
        let runtime = SyncRuntime::start(engine.clone(), TlsFiles::new(dir.path()), cfg).await.expect("secondary runs");
        self.nodes.push(Node { engine, runtime: Some(runtime), listen, dir });
        self.nodes.len() - 1
    }

    pub fn engine(&self, i: usize) -> &Arc<Engine> {
        &self.nodes[i].engine
    }

    /// The address node `i` advertises to its peers, when it is not its listen address (a
    /// return route of the proxy): to start it again as it was.
    pub fn advertise_of(&self, i: usize) -> Option<String> {
        let node = &self.nodes[i];
        let me = node.engine.node().expect("node").node_id;
        let members = mgha_sync::membership::members(&node.engine.store()).expect("members");
        members.into_iter().find(|m| m.node_id == me).map(|m| m.listen).filter(|l| *l != node.listen)
    }

    /// Waits until every node has the same head, then checks every store end to end.
    pub async fn converged(&self, within: Duration) {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let heads: Vec<_> = self.nodes.iter().map(|n| n.engine.store().head().expect("head")).collect();
            if heads.windows(2).all(|w| w[0] == w[1]) {
                for n in &self.nodes {
                    n.engine.store().check().expect("store verifies");
                }
                return;
            }
            assert!(tokio::time::Instant::now() < deadline, "no convergence: {heads:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// A changeset of `n` hosts named `{prefix}{i}`, each with `pad` bytes of comment.
pub fn hosts(prefix: &str, n: usize, pad: usize) -> ChangeSet {
    let changes: Vec<_> = (0..n)
        .map(|i| {
            serde_json::json!({"op": "put", "type": "host", "name": format!("{prefix}{i}"),
                "fields": {"ipv4-address": format!("10.1.{}.{}", i / 256 % 256, i % 256), "comments": "x".repeat(pad)}})
        })
        .collect();
    serde_json::from_value(serde_json::json!({"message": prefix, "changes": changes})).expect("changeset")
}
