//! Arbiters for automatic failover (see `mgha_sync::failover`): the third vote that decides which
//! node is Active. Two backends, both proven engines rather than a consensus of our own:
//!
//! - [`quorum`]: a small Raft group (openraft) of the data nodes and, with two data nodes, a
//!   data-less witness (`mgha witness`); its replicated state is who is Active at which epoch.
//! - `etcd` (cargo feature `etcd`): a leader key under a lease in an existing etcd cluster, in
//!   the manner of Patroni.
//!
//! Each domain of a cluster is arbitrated on its own (its own holder, epochs and reports), all
//! of a server's domains through one backend: [`DomainArbiters`].

#[cfg(feature = "etcd")]
pub mod etcd;
pub mod quorum;

use std::sync::Arc;

use mgha_core::{Result, Uid};
use mgha_sync::failover::{Arbiter, FailoverTiming};

/// A server's arbiters: one backend (a Raft node, an etcd client and lease) and an [`Arbiter`] for
/// each domain it hosts, each with its own holder, epochs and reports. The global domain's is the
/// server's own handle: closing it releases the backend, so it is closed last.
#[async_trait::async_trait]
pub trait DomainArbiters: Send + Sync + 'static {
    /// The arbiter of the cluster's first (global) domain.
    fn global(&self) -> Arc<dyn Arbiter>;
    /// The arbiter of another domain, by its id. Cheap; closing it leaves the backend running.
    fn for_domain(&self, domain: Uid) -> Arc<dyn Arbiter>;
    /// Drops what the arbiter keeps of a domain deleted from the cluster, once no server runs
    /// its driver any more (its id is never reused); the global domain is never forgotten.
    async fn forget_domain(&self, domain: Uid) -> Result<()>;
}

#[async_trait::async_trait]
impl DomainArbiters for Arc<quorum::QuorumArbiter> {
    fn global(&self) -> Arc<dyn Arbiter> {
        self.clone()
    }

    fn for_domain(&self, domain: Uid) -> Arc<dyn Arbiter> {
        quorum::QuorumArbiter::for_domain(self, domain)
    }

    async fn forget_domain(&self, domain: Uid) -> Result<()> {
        quorum::QuorumArbiter::forget_domain(self, domain).await
    }
}

#[cfg(feature = "etcd")]
#[async_trait::async_trait]
impl DomainArbiters for etcd::EtcdBackend {
    fn global(&self) -> Arc<dyn Arbiter> {
        etcd::EtcdBackend::global(self)
    }

    fn for_domain(&self, domain: Uid) -> Arc<dyn Arbiter> {
        etcd::EtcdBackend::for_domain(self, domain)
    }

    async fn forget_domain(&self, domain: Uid) -> Result<()> {
        etcd::EtcdBackend::forget_domain(self, domain).await
    }
}

/// Connects to etcd as the arbiters of node `node_id` in every domain: one client and one node
/// lease for all, the global domain's keys under `prefix` and every other domain's under
/// `<prefix>/domains/<domain id>`. Without the cargo feature `etcd`, an error that says how to
/// get it.
pub async fn etcd_backend(
    endpoints: Vec<String>,
    prefix: String,
    node_id: Uid,
    timing: FailoverTiming,
) -> Result<Arc<dyn DomainArbiters>> {
    #[cfg(feature = "etcd")]
    {
        let cfg = etcd::EtcdConfig { endpoints, prefix, timing, node_id };
        Ok(Arc::new(etcd::EtcdBackend::connect(cfg).await?))
    }
    #[cfg(not(feature = "etcd"))]
    {
        let _ = (endpoints, prefix, node_id, timing);
        Err(without_etcd())
    }
}

#[cfg(not(feature = "etcd"))]
fn without_etcd() -> mgha_core::Error {
    mgha_core::Error::InvalidArgument(
        "this mgha was built without etcd support; build it with `--features mgha-failover/etcd` (needs protoc)".into(),
    )
}

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
        Err(without_etcd())
    }
}
