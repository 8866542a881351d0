//! The arbiter of automatic failover, built from the node's configuration (`failover = "quorum"`
//! or `"etcd"`); the engine's failover driver does the rest.

use std::sync::Arc;

use anyhow::Context;
use mgha_core::failover::{Arbiter, FailoverMode};
use mgha_core::sync::pki::TlsFiles;
use mgha_core::Engine;
use mgha_failover::quorum::{QuorumConfig, QuorumPeer};

use crate::config::NodeConfig;

/// Where a data node keeps its arbiter's Raft state, inside its data directory.
pub const QUORUM_DIR: &str = "quorum";

/// Starts this node's side of the arbiter, or None in manual mode.
pub async fn arbiter(engine: &Arc<Engine>, config: &NodeConfig) -> anyhow::Result<Option<Arc<dyn Arbiter>>> {
    let node = engine.node().context("reading the node's identity")?;
    let timing = config.failover_timing();
    match config.failover {
        FailoverMode::Manual => Ok(None),
        FailoverMode::Quorum => {
            let members = config.quorum_members()?;
            let listen = config.quorum_listen.clone().context("key 'quorum_listen' is missing")?;
            let cfg = QuorumConfig {
                name: config.name.clone(),
                listen: listen.clone(),
                members: members.into_iter().map(|m| QuorumPeer { name: m.name, address: m.address }).collect(),
                data_dir: engine.dir().join(QUORUM_DIR),
                timing,
                tls: TlsFiles::new(engine.dir()),
            };
            // The cluster's members are the data nodes; the other voters are witnesses.
            let data_nodes =
                mgha_core::sync::membership::members(&engine.store()).context("reading the cluster's members")?.len();
            let arbiter = mgha_failover::quorum::QuorumArbiter::start(cfg, data_nodes)
                .await
                .with_context(|| format!("cannot start the quorum arbiter on {listen} (key 'quorum_listen')"))?;
            Ok(Some(Arc::new(arbiter)))
        }
        FailoverMode::Etcd => {
            let prefix = config.etcd_prefix.clone().unwrap_or_else(|| format!("/mgha/{}", node.cluster_id));
            let arbiter = mgha_failover::etcd_arbiter(config.etcd_endpoints.clone(), prefix, node.node_id, timing)
                .await
                .with_context(|| {
                    format!("cannot use etcd at {} (key 'etcd_endpoints')", config.etcd_endpoints.join(", "))
                })?;
            Ok(Some(arbiter))
        }
    }
}
