//! The arbiter of automatic failover, built from the node's configuration (`failover = "quorum"`
//! or `"etcd"`); the engine's failover driver does the rest. Every front end gets it from here.

use std::sync::Arc;

use mgha_core::Engine;
use mgha_failover::quorum::{QuorumConfig, QuorumPeer};
use mgha_sync::failover::{Arbiter, FailoverMode};
use mgha_sync::pki::TlsFiles;

use crate::config::NodeConfig;
use crate::error::{Error, Result};

/// Where a data node keeps its arbiter's Raft state, inside its data directory.
pub const QUORUM_DIR: &str = "quorum";

/// Starts this node's side of the arbiter, or None in manual mode.
pub async fn start(engine: &Arc<Engine>, config: &NodeConfig) -> Result<Option<Arc<dyn Arbiter>>> {
    let node = engine.node()?;
    config.check_quorum_voter(&node.name)?;
    let timing = config.failover_timing();
    match config.failover {
        FailoverMode::Manual => Ok(None),
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
            Ok(Some(Arc::new(arbiter)))
        }
        FailoverMode::Etcd => {
            let prefix = config.etcd_prefix.clone().unwrap_or_else(|| format!("/mgha/{}", node.cluster_id));
            let endpoints = config.etcd_endpoints.join(", ");
            mgha_failover::etcd_arbiter(config.etcd_endpoints.clone(), prefix, node.node_id, timing)
                .await
                .map(Some)
                .map_err(|source| Error::Start {
                    what: format!("the etcd arbiter at {endpoints}"),
                    key: "etcd_endpoints",
                    source: Box::new(source),
                })
        }
    }
}
