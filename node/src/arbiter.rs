//! The arbiter of automatic failover, built from the node's configuration (`failover = "quorum"`
//! or `"etcd"`); the engine's failover driver does the rest. Every front end gets it from here.
//! One backend per server (a Raft node, or an etcd client and lease) arbitrates every domain the
//! server hosts, each on its own: [`ServerArbiter::for_domain`].

use std::sync::Arc;

use mgha_core::{Engine, Uid};
use mgha_failover::quorum::{QuorumConfig, QuorumPeer};
use mgha_failover::DomainArbiters;
use mgha_sync::failover::{Arbiter, FailoverMode};
use mgha_sync::pki::TlsFiles;

use crate::config::NodeConfig;
use crate::error::{Error, Result};

/// Where a data node keeps its arbiter's Raft state, inside its data directory.
pub const QUORUM_DIR: &str = "quorum";

/// This server's side of the arbiter, for all its domains.
#[derive(Clone)]
pub struct ServerArbiter {
    /// The id of the cluster's first (global) domain.
    cluster_id: Uid,
    backend: Arc<dyn DomainArbiters>,
}

impl std::fmt::Debug for ServerArbiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ServerArbiter(cluster {})", self.cluster_id)
    }
}

impl ServerArbiter {
    /// The arbiter of the global domain: the server's own handle. The failover driver that
    /// closes it releases the backend (the Raft node stops, the etcd node lease is revoked), so
    /// it is the last driver to stop.
    pub fn global(&self) -> Arc<dyn Arbiter> {
        self.backend.global()
    }

    /// The arbiter of domain `domain` (the cluster id: the global domain): its own holder, epochs
    /// and reports. Ask once per domain and keep it for that domain's driver: with etcd the
    /// handle owns the domain's hold lease. Closing it leaves the backend running.
    pub fn for_domain(&self, domain: Uid) -> Arc<dyn Arbiter> {
        if domain == self.cluster_id {
            return self.global();
        }
        self.backend.for_domain(domain)
    }

    /// Drops what the arbiter keeps of `domain` once it is deleted from the cluster and no
    /// server runs its driver any more. The global domain is never forgotten.
    pub async fn forget_domain(&self, domain: Uid) -> Result<()> {
        if domain == self.cluster_id {
            return Err(mgha_core::Error::InvalidArgument("the cluster's first domain is never deleted".into()).into());
        }
        Ok(self.backend.forget_domain(domain).await?)
    }
}

/// Starts this server's arbiter backend (`engine` is the global domain's), or None in manual
/// mode.
pub async fn start_server(engine: &Arc<Engine>, config: &NodeConfig) -> Result<Option<ServerArbiter>> {
    let node = engine.node()?;
    config.check_quorum_voter(&node.name)?;
    let timing = config.failover_timing();
    let backend: Arc<dyn DomainArbiters> = match config.failover {
        FailoverMode::Manual => return Ok(None),
        FailoverMode::Quorum => {
            let members = config.quorum_members()?;
            let listen = config.quorum_listen.clone().unwrap_or_default();
            let cfg = QuorumConfig {
                name: node.name.clone(),
                listen: listen.clone(),
                members: members.into_iter().map(|m| QuorumPeer { name: m.name, address: m.address }).collect(),
                data_dir: engine.dir().join(QUORUM_DIR),
                timing,
                tls: TlsFiles::new(engine.dir()),
            };
            // The cluster's members are the data nodes; the other voters are witnesses.
            let data_nodes = mgha_sync::membership::members(&engine.store())?.len();
            let arbiter =
                mgha_failover::quorum::QuorumArbiter::start(cfg, data_nodes).await.map_err(|source| Error::Start {
                    what: format!("the quorum arbiter on {listen}"),
                    key: "quorum_listen",
                    source: Box::new(source),
                })?;
            Arc::new(Arc::new(arbiter))
        }
        FailoverMode::Etcd => {
            let prefix = config.etcd_prefix.clone().unwrap_or_else(|| format!("/mgha/{}", node.cluster_id));
            let endpoints = config.etcd_endpoints.join(", ");
            mgha_failover::etcd_backend(config.etcd_endpoints.clone(), prefix, node.node_id, timing).await.map_err(
                |source| Error::Start {
                    what: format!("the etcd arbiter at {endpoints}"),
                    key: "etcd_endpoints",
                    source: Box::new(source),
                },
            )?
        }
    };
    Ok(Some(ServerArbiter { cluster_id: node.cluster_id, backend }))
}
