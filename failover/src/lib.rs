//! Arbiters for automatic failover (see `mgha_sync::failover`): the third vote that decides which
//! node is Active. Two backends, both proven engines rather than a consensus of our own:
//!
//! - [`quorum`]: a small Raft group (openraft) of the data nodes and, with two data nodes, a
//!   data-less witness (`mgha witness`); its replicated state is who is Active at which epoch.
//! - `etcd` (cargo feature `etcd`): a leader key under a lease in an existing etcd cluster, in
//!   the manner of Patroni.

#[cfg(feature = "etcd")]
pub mod etcd;
pub mod quorum;

use std::sync::Arc;

use mgha_core::{Result, Uid};
use mgha_sync::failover::{Arbiter, FailoverTiming};

/// Connects to etcd as the arbiter of node `node_id`, keeping its keys under `prefix`. Without
/// the cargo feature `etcd`, an error that says how to get it.
pub async fn etcd_arbiter(
    endpoints: Vec<String>,
    prefix: String,
    node_id: Uid,
    timing: FailoverTiming,
) -> Result<Arc<dyn Arbiter>> {
    #[cfg(feature = "etcd")]
    {
        let cfg = etcd::EtcdConfig { endpoints, prefix, timing, node_id };
        Ok(Arc::new(etcd::EtcdArbiter::connect(cfg).await?))
    }
    #[cfg(not(feature = "etcd"))]
    {
        let _ = (endpoints, prefix, node_id, timing);
        Err(mgha_core::Error::InvalidArgument(
            "this mgha was built without etcd support; build it with `--features mgha-failover/etcd` (needs protoc)"
                .into(),
        ))
    }
}
