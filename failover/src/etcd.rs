//! The etcd arbiter: who is Active is a leader key under a lease in an existing etcd cluster, in
//! the manner of Patroni. etcd's linearizable transactions give "at most one holder", its leases
//! give "a holder that stops renewing disappears", and we add nothing to its consensus.
//!
//! # Keys (under the configured prefix, e.g. `/mgha/<cluster_id>`)
//!
//! - `<prefix>/leader`: the [`Holder`] as JSON (`{"node_id":…,"epoch":…}`), under the holder's
//!   *hold lease*. Absent means there is no holder: the lease lapsed, so the holder is stale.
//! - `<prefix>/epoch`: the highest epoch ever granted, in decimal, under no lease, so it survives
//!   every expiry.
//! - `<prefix>/reports/<node_id>`: the node's latest [`Report`] as JSON, under its *node lease*, so
//!   the reports of dead nodes vanish by themselves.
//!
//! Every domain of the cluster but the global one has the same three keys under
//! `<prefix>/domains/<domain id>` ([`EtcdBackend::for_domain`]); the global domain keeps the keys
//! right under the prefix, so an etcd written before domains stays valid.
//!
//! # Leases
//!
//! Both leases have a TTL of `ceil(failover_after_ms / 1000)` seconds (etcd TTLs are whole seconds,
//! and etcd raises a TTL below its minimum, about 1.5 election timeouts, to that minimum). The node
//! lease is granted at [`EtcdArbiter::connect`] and kept alive by [`Arbiter::observe`]; the hold
//! lease is granted by [`Arbiter::acquire`] and kept alive only by [`Arbiter::renew`]. Two leases,
//! not one, because every node reports at every heartbeat: with one lease a node that keeps
//! reporting would keep its leader key alive after it stopped renewing (a fenced or handed-over
//! Active), and no Standby would ever see the holder stale. For the same reason a server has one
//! client and one node lease for all its domains ([`EtcdBackend`]; `observe` in any domain keeps
//! it alive, at most one keep-alive per half heartbeat) but one hold lease per domain it holds: a
//! hold must lapse when *that* domain's renewals stop, whatever its other domains do.
//!
//! Safety margin: a keep-alive makes etcd expire the lease no sooner than TTL after etcd received
//! it, hence no sooner than TTL ≥ `failover_after_ms` after the keep-alive was *sent*, and every
//! call that relies on the lease sends its keep-alive first. etcd may keep a lease *longer*: when
//! the etcd cluster itself elects a new leader, the new leader extends every lease by its
//! election timeout. That delays a failover but never shortens a hold.
//!
//! # Operations (each one bounded by `max(heartbeat_ms / 2, 200 ms)`)
//!
//! - `renew(h)`: one keep-alive round trip on the hold lease, then a transaction comparing the
//!   leader key's value with exactly `h`. If the value is `h` but sits under another lease (after a
//!   [`Arbiter::transfer`] the key is still under the previous holder's lease), it is rewritten
//!   under our own hold lease by a transaction comparing the value again. Any failure is an
//!   error; the driver fences the node when renewals keep failing. A lapsed hold lease (the
//!   keep-alive answers TTL 0) is forgotten, so a later acquire grants a fresh one.
//! - `observe(me)`: a keep-alive on the node lease (a fresh lease if it lapsed), then one
//!   transaction that puts our report and reads the leader, the epoch key and all reports.
//!   `stale` = the leader key is absent; `highest_epoch` = max(epoch key, leader's epoch).
//! - `acquire(me, expected, highest_known)`: a keep-alive on our hold lease (or a grant of one,
//!   so the new hold lasts a TTL from the start of the call, when the driver starts counting),
//!   a read of the leader and epoch keys, then one transaction: if the leader key is absent (`create_revision == 0`), or with `expected` its value is exactly
//!   `expected`, and the epoch key's `mod_revision` is still what we read (0 if absent), put
//!   leader = `{me, new}` under our hold lease and epoch = `new`, where
//!   `new = epoch::next(max(highest_known, stored epoch, leader epoch), me.tag)`. A failed
//!   comparison is `Ok(None)`. The etcd revision of that transaction also grows with every
//!   grant, but the fencing token is the epoch carried in the value: a ballot (`round << 16 |
//!   tag`), comparable with the epochs of manual changeovers.
//! - `transfer(from, to, e)`: a keep-alive on our hold lease and a read of the epoch key, then one
//!   transaction: if the leader value is exactly `from` and the epoch
//!   key unchanged, put leader = `{to, e}` under our hold lease and epoch = `e` (`e` must be above
//!   every granted epoch). We then stop renewing that lease: if `to` never takes over, the key
//!   lapses TTL later and an election follows; if it does, its first renew moves the key to its
//!   own hold lease.
//! - `status()`: per endpoint, the Status RPC (version, member, leader, raft term and index in
//!   `detail`) and a linearizable read of the leader key; `has_quorum` = some endpoint answered
//!   that read.
//! - `close()`: the server's own (global) handle revokes the node lease, so its reports in every
//!   domain disappear at once; a domain's handle deletes its report in that domain only. The hold lease is left
//!   to lapse: the driver closes at shutdown while the engine may still publish until its own
//!   lease runs out, and a Standby must not take over before that; a clean stop of the Active
//!   therefore fails over after the TTL, like a crash.

use std::future::Future;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use etcd_client::{Client, Compare, CompareOp, ConnectOptions, GetOptions, KeyValue, PutOptions, Txn, TxnOp};
use etcd_client::{TxnOpResponse, TxnResponse};
use mgha_core::roles::machine::epoch;
use mgha_core::{Error, Result, Uid};
use mgha_sync::failover::{Arbiter, ArbiterMember, ArbiterStatus, FailoverTiming, Holder, HolderState, Report};
use tokio::task::JoinSet;

/// The floor of the per-call timeout: below this a loaded etcd answers too late too often.
const CALL_TIMEOUT_MIN_MS: u64 = 200;
/// How long [`EtcdArbiter::connect`] waits for the first answer of any endpoint.
const CONNECT_TIMEOUT_MS: u64 = 5_000;
/// Pause between connection attempts within that time.
const CONNECT_RETRY_MS: u64 = 200;
/// At most this many reports are read (an mgha cluster has a handful of nodes).
const REPORTS_MAX: i64 = 64;
/// etcd's "no lease".
const NO_LEASE: i64 = 0;

/// Where the etcd cluster is and what this node uses of it.
#[derive(Clone, Debug)]
pub struct EtcdConfig {
    /// `host:port` or `http://host:port` of each etcd member.
    pub endpoints: Vec<String>,
    /// The key prefix of this mgha cluster, e.g. `/mgha/<cluster_id>`.
    pub prefix: String,
    pub timing: FailoverTiming,
    /// This node: whose leases these are.
    pub node_id: Uid,
}

/// The key names under the prefix.
#[derive(Clone, Debug)]
struct Keys {
    leader: String,
    epoch: String,
    reports: String,
}

impl Keys {
    fn new(prefix: &str) -> Keys {
        Keys {
            leader: format!("{prefix}/leader"),
            epoch: format!("{prefix}/epoch"),
            reports: format!("{prefix}/reports/"),
        }
    }

    fn report(&self, node_id: Uid) -> String {
        format!("{}{node_id}", self.reports)
    }
}

/// What every domain's arbiter of one server shares: the connections to etcd and the node lease
/// that carries the server's reports.
struct Shared {
    node_id: Uid,
    endpoints: Vec<String>,
    /// The cluster's prefix: the global domain's keys, and `<prefix>/domains/<id>` for the others.
    prefix: String,
    ttl_s: i64,
    call_timeout: Duration,
    /// A keep-alive of the node lease sent less than this ago is enough for another report.
    keep_alive_every: Duration,
    /// Balanced over every endpoint; cloning shares the connections.
    client: Client,
    /// One client per endpoint, for `status`.
    members: Vec<(String, Client)>,
    /// Carries our reports in every domain; kept alive by `observe`.
    node_lease: AtomicI64,
    /// When the last keep-alive of the node lease that etcd answered was sent.
    node_lease_kept: Mutex<Option<Instant>>,
}

/// An [`Arbiter`] backed by an etcd cluster (v3 API), for one domain of this server.
pub struct EtcdArbiter {
    shared: Arc<Shared>,
    keys: Keys,
    /// Carries the leader key while we hold it; kept alive only by `renew`. [`NO_LEASE`]: none.
    /// One per domain: a hold must lapse when that domain's renewals stop, whatever the others do.
    hold_lease: AtomicI64,
    /// The report this handle last put and the node lease it went under: `observe` puts it again
    /// only when it changed or the lease did (a lapsed lease took the key with it), so an idle
    /// domain's look is one read.
    reported: Mutex<Option<(Report, i64)>>,
    /// Whether `close` revokes the node lease: only the server's own (global) handle does.
    owner: bool,
}

/// The etcd arbiters of one server: one client and one node lease for all its domains.
pub struct EtcdBackend {
    global: Arc<EtcdArbiter>,
}

impl EtcdBackend {
    /// Connects as [`EtcdArbiter::connect`] does; `cfg.prefix` is the cluster's prefix.
    pub async fn connect(cfg: EtcdConfig) -> Result<EtcdBackend> {
        Ok(EtcdBackend { global: Arc::new(EtcdArbiter::connect(cfg).await?) })
    }

    /// The arbiter of the global domain (the keys right under the prefix, as before domains).
    /// Closing it revokes the node lease of every domain: it is closed last, at shutdown.
    pub fn global(&self) -> Arc<EtcdArbiter> {
        self.global.clone()
    }

    /// The arbiter of another domain, under `<prefix>/domains/<domain>`.
    pub fn for_domain(&self, domain: Uid) -> Arc<EtcdArbiter> {
        Arc::new(self.global.for_domain(domain))
    }

    /// Deletes every key of `domain` (a domain deleted from the cluster, whose drivers have
    /// stopped); a hold lease of it lapses by itself.
    pub async fn forget_domain(&self, domain: Uid) -> Result<()> {
        let arbiter = self.global.for_domain(domain);
        let prefix = format!("{}/domains/{domain}/", arbiter.shared.prefix);
        let mut kv = arbiter.shared.client.kv_client();
        let delete = kv.delete(prefix, Some(etcd_client::DeleteOptions::new().with_prefix()));
        arbiter.bounded("forget", async { delete.await.map(|_| ()).map_err(etcd_error("forget")) }).await
    }
}

fn arbiter_error(msg: impl std::fmt::Display) -> Error {
    Error::Peer(format!("etcd arbiter: {msg}"))
}

fn etcd_error(what: &'static str) -> impl FnOnce(etcd_client::Error) -> Error {
    move |e| arbiter_error(format_args!("{what}: {e}"))
}

fn holder_json(holder: Holder) -> Result<String> {
    serde_json::to_string(&holder).map_err(|e| arbiter_error(format_args!("encoding the holder: {e}")))
}

fn parse_holder(kv: &KeyValue) -> Result<Holder> {
    serde_json::from_slice(kv.value())
        .map_err(|e| arbiter_error(format_args!("the leader key holds no holder ({e}): {:?}", kv.value_str())))
}

/// The epoch key's value (0 if absent) and its `mod_revision` (0 if absent).
fn parse_epoch(kv: Option<&KeyValue>) -> Result<(u64, i64)> {
    let Some(kv) = kv else { return Ok((0, 0)) };
    let value = std::str::from_utf8(kv.value()).ok().and_then(|s| s.parse::<u64>().ok());
    match value {
        Some(epoch) => Ok((epoch, kv.mod_revision())),
        None => Err(arbiter_error(format_args!("the epoch key holds no number: {:?}", kv.value_str()))),
    }
}

/// The key-values of the `index`th operation of a transaction, which must be a get.
fn range_kvs(resp: &TxnResponse, index: usize) -> Result<Vec<KeyValue>> {
    match resp.op_responses().into_iter().nth(index) {
        Some(TxnOpResponse::Get(get)) => Ok(get.kvs().to_vec()),
        _ => Err(arbiter_error(format_args!("transaction answer {index} is not a read"))),
    }
}

enum KeepAlive {
    Alive,
    /// etcd answered TTL 0: the lease lapsed and its keys are gone.
    Lapsed,
}

impl EtcdArbiter {
    /// Connects to the etcd cluster and grants this node's lease. Fails, naming the endpoints,
    /// when none of them answers within a few seconds.
    pub async fn connect(cfg: EtcdConfig) -> Result<EtcdArbiter> {
        cfg.timing.validate().map_err(Error::InvalidArgument)?;
        if cfg.endpoints.is_empty() {
            return Err(Error::InvalidArgument("etcd arbiter: no endpoints".into()));
        }
        let prefix = cfg.prefix.trim_end_matches('/');
        if prefix.is_empty() {
            return Err(Error::InvalidArgument("etcd arbiter: the key prefix is empty".into()));
        }
        let call_timeout = Duration::from_millis((cfg.timing.heartbeat_ms / 2).max(CALL_TIMEOUT_MIN_MS));
        let options = ConnectOptions::new().with_connect_timeout(call_timeout).with_timeout(call_timeout);
        let bad_endpoint = |e| Error::InvalidArgument(format!("etcd endpoints {:?}: {e}", cfg.endpoints));
        // A member cut off from its cluster's leader refuses at once instead of hanging.
        let client = Client::connect(&cfg.endpoints, Some(options.clone().with_require_leader(true)))
            .await
            .map_err(bad_endpoint)?;
        // The per-endpoint clients of `status` also ask members without a leader, which say so.
        let mut members = Vec::with_capacity(cfg.endpoints.len());
        for endpoint in &cfg.endpoints {
            let member = Client::connect([endpoint], Some(options.clone())).await.map_err(bad_endpoint)?;
            members.push((endpoint.clone(), member));
        }
        let ttl_s = cfg.timing.failover_after_ms.div_ceil(1000).max(1) as i64;
        // Connecting is lazy: the lease grant is the first request. Retried for a while, so that
        // a node starting together with its etcd finds it.
        let mut leases = client.lease_client();
        let deadline = tokio::time::Instant::now() + Duration::from_millis(CONNECT_TIMEOUT_MS);
        let node_lease = loop {
            let last_error = match tokio::time::timeout(call_timeout, leases.grant(ttl_s, None)).await {
                Ok(Ok(lease)) => break lease.id(),
                Ok(Err(e)) => e.to_string(),
                Err(_) => format!("no answer within {} ms", call_timeout.as_millis()),
            };
            if tokio::time::Instant::now() >= deadline {
                return Err(arbiter_error(format_args!(
                    "no etcd endpoint of {} answered within {CONNECT_TIMEOUT_MS} ms (last: {last_error})",
                    cfg.endpoints.join(", ")
                )));
            }
            tokio::time::sleep(Duration::from_millis(CONNECT_RETRY_MS)).await;
        };
        tracing::debug!(endpoints = ?cfg.endpoints, prefix, ttl_s, lease = node_lease, "etcd arbiter connected");
        let shared = Shared {
            node_id: cfg.node_id,
            endpoints: cfg.endpoints.clone(),
            prefix: prefix.to_string(),
            ttl_s,
            call_timeout,
            keep_alive_every: Duration::from_millis(cfg.timing.heartbeat_ms / 2),
            client,
            members,
            node_lease: AtomicI64::new(node_lease),
            node_lease_kept: Mutex::new(Some(Instant::now())),
        };
        Ok(EtcdArbiter {
            shared: Arc::new(shared),
            keys: Keys::new(prefix),
            hold_lease: AtomicI64::new(NO_LEASE),
            reported: Mutex::new(None),
            owner: true,
        })
    }

    /// The arbiter of another domain of this server, sharing this one's client and node lease,
    /// with keys under `<prefix>/domains/<domain>` and a hold lease of its own. Closing it
    /// removes its report and leaves the node lease alone.
    pub fn for_domain(&self, domain: Uid) -> EtcdArbiter {
        let prefix = format!("{}/domains/{domain}", self.shared.prefix);
        EtcdArbiter {
            shared: self.shared.clone(),
            keys: Keys::new(&prefix),
            hold_lease: AtomicI64::new(NO_LEASE),
            reported: Mutex::new(None),
            owner: false,
        }
    }

    /// The TTL of our leases, in seconds.
    pub fn lease_ttl_s(&self) -> i64 {
        self.shared.ttl_s
    }

    /// Runs one arbiter call under the call timeout, so a hung etcd never blocks the driver.
    async fn bounded<T>(&self, what: &str, call: impl Future<Output = Result<T>>) -> Result<T> {
        match tokio::time::timeout(self.shared.call_timeout, call).await {
            Ok(result) => result,
            Err(_) => Err(arbiter_error(format_args!(
                "{what}: etcd ({}) did not answer within {} ms",
                self.shared.endpoints.join(", "),
                self.shared.call_timeout.as_millis()
            ))),
        }
    }

    fn check_me(&self, node_id: Uid, what: &str) -> Result<()> {
        if node_id == self.shared.node_id {
            return Ok(());
        }
        Err(Error::InvalidArgument(format!(
            "etcd arbiter of node {}: {what} for another node {node_id}",
            self.shared.node_id
        )))
    }

    /// One keep-alive round trip. The stream is dropped at once: every call sends its own.
    async fn keep_alive(&self, lease: i64) -> Result<KeepAlive> {
        match self.shared.client.lease_client().keep_alive(lease).await {
            Ok(_) => Ok(KeepAlive::Alive),
            // The client reports a TTL-0 answer (etcd does not know the lease) this way.
            Err(etcd_client::Error::LeaseKeepAliveError(_)) => Ok(KeepAlive::Lapsed),
            Err(e) => Err(etcd_error("lease keep-alive")(e)),
        }
    }

    async fn grant(&self) -> Result<i64> {
        let lease = self
            .shared
            .client
            .lease_client()
            .grant(self.shared.ttl_s, None)
            .await
            .map_err(etcd_error("lease grant"))?;
        Ok(lease.id())
    }

    /// The node lease, kept alive within the last half heartbeat (by this domain's call or
    /// another's), or granted afresh if it lapsed. A report needs no more: the lease only makes
    /// the reports of a dead server vanish, and every domain of a server shares it.
    async fn node_lease_alive(&self) -> Result<i64> {
        let shared = &self.shared;
        let lease = shared.node_lease.load(Ordering::SeqCst);
        let kept = *shared.node_lease_kept.lock().unwrap_or_else(|p| p.into_inner());
        if kept.is_some_and(|at| at.elapsed() < shared.keep_alive_every) {
            return Ok(lease);
        }
        let sent = Instant::now();
        if let KeepAlive::Alive = self.keep_alive(lease).await? {
            *shared.node_lease_kept.lock().unwrap_or_else(|p| p.into_inner()) = Some(sent);
            return Ok(lease);
        }
        let fresh = self.grant().await?;
        tracing::info!(lapsed = lease, fresh, "etcd arbiter: node lease lapsed; granted a new one");
        // Another domain's call may have granted one meanwhile: either lease carries reports.
        shared.node_lease.store(fresh, Ordering::SeqCst);
        *shared.node_lease_kept.lock().unwrap_or_else(|p| p.into_inner()) = Some(sent);
        Ok(fresh)
    }

    /// After a failed report: the next call keeps the node lease alive (or replaces it) first.
    fn node_lease_doubtful(&self) {
        *self.shared.node_lease_kept.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }

    /// The hold lease, kept alive just now (or granted afresh if there is none or it lapsed).
    async fn hold_lease_alive(&self) -> Result<i64> {
        let lease = self.hold_lease.load(Ordering::SeqCst);
        if lease != NO_LEASE {
            if let KeepAlive::Alive = self.keep_alive(lease).await? {
                return Ok(lease);
            }
        }
        let fresh = self.grant().await?;
        self.hold_lease.store(fresh, Ordering::SeqCst);
        Ok(fresh)
    }

    async fn txn(&self, what: &'static str, txn: Txn) -> Result<TxnResponse> {
        self.shared.client.kv_client().txn(txn).await.map_err(etcd_error(what))
    }

    /// Reads the leader and the epoch key in one linearizable transaction.
    async fn read_leader_and_epoch(&self) -> Result<(Option<KeyValue>, Option<KeyValue>)> {
        let txn = Txn::new()
            .and_then([TxnOp::get(self.keys.leader.as_str(), None), TxnOp::get(self.keys.epoch.as_str(), None)]);
        let resp = self.txn("read", txn).await?;
        Ok((range_kvs(&resp, 0)?.into_iter().next(), range_kvs(&resp, 1)?.into_iter().next()))
    }

    async fn renew_inner(&self, holder: Holder) -> Result<()> {
        let mut lease = self.hold_lease.load(Ordering::SeqCst);
        let mut lapsed = false;
        if lease != NO_LEASE {
            if let KeepAlive::Lapsed = self.keep_alive(lease).await? {
                // Its leader key is gone with it; the check below fails unless a transfer wrote
                // the key anew under another lease.
                self.hold_lease.store(NO_LEASE, Ordering::SeqCst);
                lease = NO_LEASE;
                lapsed = true;
            }
        }
        let value = holder_json(holder)?;
        let check = Txn::new()
            .when([Compare::value(self.keys.leader.as_str(), CompareOp::Equal, value.as_str())])
            .and_then([TxnOp::get(self.keys.leader.as_str(), None)]);
        let resp = self.txn("renew", check).await?;
        if !resp.succeeded() {
            // Not ours any more: forget the hold lease, it carries nothing of ours.
            self.hold_lease.store(NO_LEASE, Ordering::SeqCst);
            let why = if lapsed { "our hold lease lapsed and " } else { "" };
            return Err(arbiter_error(format_args!(
                "renew: {why}the leader key no longer holds node {} at epoch {}",
                holder.node_id,
                epoch::display(holder.epoch)
            )));
        }
        let key_lease = range_kvs(&resp, 0)?.first().map_or(NO_LEASE, KeyValue::lease);
        if lease != NO_LEASE && key_lease == lease {
            return Ok(());
        }
        // Handed to us by a transfer: the key is still under the previous holder's lease.
        let lease = if lease == NO_LEASE { self.hold_lease_alive().await? } else { lease };
        let rewrite =
            Txn::new().when([Compare::value(self.keys.leader.as_str(), CompareOp::Equal, value.as_str())]).and_then([
                TxnOp::put(self.keys.leader.as_str(), value.as_str(), Some(PutOptions::new().with_lease(lease))),
            ]);
        let resp = self.txn("renew", rewrite).await?;
        if !resp.succeeded() {
            return Err(arbiter_error(format_args!(
                "renew: the leader key changed while moving it under our lease (node {} at epoch {})",
                holder.node_id,
                epoch::display(holder.epoch)
            )));
        }
        Ok(())
    }

    async fn observe_inner(&self, me: &Report) -> Result<HolderState> {
        let lease = self.node_lease_alive().await?;
        let unchanged = self
            .reported
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .is_some_and(|(report, under)| report == me && *under == lease);
        let mut ops = Vec::with_capacity(4);
        if !unchanged {
            ops.push(self.report_put(me, lease)?);
        }
        let first_read = ops.len();
        ops.extend([
            TxnOp::get(self.keys.leader.as_str(), None),
            TxnOp::get(self.keys.epoch.as_str(), None),
            TxnOp::get(self.keys.reports.as_str(), Some(GetOptions::new().with_prefix().with_limit(REPORTS_MAX))),
        ]);
        let resp = match self.txn("observe", Txn::new().and_then(ops)).await {
            Ok(resp) => resp,
            Err(e) => {
                self.node_lease_doubtful();
                *self.reported.lock().unwrap_or_else(|p| p.into_inner()) = None;
                return Err(e);
            }
        };
        if !unchanged {
            *self.reported.lock().unwrap_or_else(|p| p.into_inner()) = Some((me.clone(), lease));
        }
        let holder = range_kvs(&resp, first_read)?.first().map(parse_holder).transpose()?;
        let (stored, _) = parse_epoch(range_kvs(&resp, first_read + 1)?.first())?;
        let mut reports = Vec::new();
        let read = range_kvs(&resp, first_read + 2)?;
        let complete = (read.len() as i64) < REPORTS_MAX;
        for kv in read {
            match serde_json::from_slice::<Report>(kv.value()) {
                Ok(report) => reports.push(report),
                Err(e) => tracing::warn!(key = ?kv.key_str(), "etcd arbiter: skipping a malformed report: {e}"),
            }
        }
        if unchanged && complete && !reports.contains(me) {
            // Our report went without its lease (the domain's keys were deleted, by `forget` or
            // by hand): put it back now rather than stay unseen until it changes.
            self.put_report(me, lease).await?;
            reports.push(me.clone());
        }
        Ok(HolderState {
            // The hold lapses with its lease, on etcd's clock: when is not known here.
            stale_in_ms: None,
            stale: holder.is_none(),
            highest_epoch: stored.max(holder.map_or(0, |h| h.epoch)),
            holder,
            reports,
        })
    }

    /// The put of this node's report under the node lease `lease`.
    fn report_put(&self, me: &Report, lease: i64) -> Result<TxnOp> {
        let report = serde_json::to_string(me).map_err(|e| arbiter_error(format_args!("encoding the report: {e}")))?;
        Ok(TxnOp::put(self.keys.report(me.node_id), report, Some(PutOptions::new().with_lease(lease))))
    }

    /// Puts this node's report under the node lease `lease`.
    async fn put_report(&self, me: &Report, lease: i64) -> Result<()> {
        let put = self.report_put(me, lease)?;
        if let Err(e) = self.txn("observe", Txn::new().and_then([put])).await {
            self.node_lease_doubtful();
            *self.reported.lock().unwrap_or_else(|p| p.into_inner()) = None;
            return Err(e);
        }
        *self.reported.lock().unwrap_or_else(|p| p.into_inner()) = Some((me.clone(), lease));
        Ok(())
    }

    async fn acquire_inner(&self, me: &Report, expected: Option<Holder>, highest_known: u64) -> Result<Option<u64>> {
        let lease = self.hold_lease_alive().await?;
        let (leader, epoch_kv) = self.read_leader_and_epoch().await?;
        let (stored, epoch_rev) = parse_epoch(epoch_kv.as_ref())?;
        let leader_epoch = leader.as_ref().and_then(|kv| parse_holder(kv).ok()).map_or(0, |h| h.epoch);
        let new = epoch::next(highest_known.max(stored).max(leader_epoch), me.tag);
        let holder_is_expected = match expected {
            None => Compare::create_revision(self.keys.leader.as_str(), CompareOp::Equal, 0),
            Some(h) => Compare::value(self.keys.leader.as_str(), CompareOp::Equal, holder_json(h)?),
        };
        let value = holder_json(Holder { node_id: me.node_id, epoch: new })?;
        let txn = Txn::new()
            .when([holder_is_expected, Compare::mod_revision(self.keys.epoch.as_str(), CompareOp::Equal, epoch_rev)])
            .and_then([
                TxnOp::put(self.keys.leader.as_str(), value, Some(PutOptions::new().with_lease(lease))),
                TxnOp::put(self.keys.epoch.as_str(), new.to_string(), None),
            ]);
        let resp = self.txn("acquire", txn).await?;
        Ok(resp.succeeded().then_some(new))
    }

    async fn transfer_inner(&self, from: Holder, to: Uid, new: u64) -> Result<()> {
        let lease = self.hold_lease_alive().await?;
        let (_, epoch_kv) = self.read_leader_and_epoch().await?;
        let (stored, epoch_rev) = parse_epoch(epoch_kv.as_ref())?;
        if new <= from.epoch.max(stored) {
            return Err(Error::InvalidArgument(format!(
                "etcd arbiter: transfer at epoch {} is not above the highest granted epoch {}",
                epoch::display(new),
                epoch::display(from.epoch.max(stored))
            )));
        }
        let value = holder_json(Holder { node_id: to, epoch: new })?;
        let txn = Txn::new()
            .when([
                Compare::value(self.keys.leader.as_str(), CompareOp::Equal, holder_json(from)?),
                Compare::mod_revision(self.keys.epoch.as_str(), CompareOp::Equal, epoch_rev),
            ])
            .and_then([
                TxnOp::put(self.keys.leader.as_str(), value, Some(PutOptions::new().with_lease(lease))),
                TxnOp::put(self.keys.epoch.as_str(), new.to_string(), None),
            ]);
        let resp = self.txn("transfer", txn).await?;
        if !resp.succeeded() {
            return Err(arbiter_error(format_args!(
                "transfer: node {} at epoch {} no longer holds the role",
                from.node_id,
                epoch::display(from.epoch)
            )));
        }
        // We stop renewing this lease: the key lapses with it unless `to` moves it to its own.
        self.hold_lease.store(NO_LEASE, Ordering::SeqCst);
        Ok(())
    }
}

/// Asks one endpoint for its status and for a linearizable read of the leader key.
async fn probe(
    endpoint: String,
    mut client: Client,
    leader_key: String,
    timeout: Duration,
) -> (ArbiterMember, Option<Option<Holder>>) {
    let no_answer = || format!("no answer within {} ms", timeout.as_millis());
    let mut kv = client.kv_client();
    let (status, read) = tokio::join!(
        tokio::time::timeout(timeout, client.status()),
        tokio::time::timeout(timeout, kv.get(leader_key, None))
    );
    let leader = matches!(&status, Ok(Ok(s)) if s.header().is_some_and(|h| h.member_id() == s.leader()));
    let status = match status {
        Ok(Ok(s)) => Ok(format!(
            "etcd {}, member {:x}, leader {:x}, raft term {}, raft index {}",
            s.version(),
            s.header().map_or(0, |h| h.member_id()),
            s.leader(),
            s.raft_term(),
            s.raft_index()
        )),
        Ok(Err(e)) => Err(format!("status: {e}")),
        Err(_) => Err(format!("status: {}", no_answer())),
    };
    let read = match read {
        Ok(Ok(resp)) => resp.kvs().first().map(parse_holder).transpose().map_err(|e| e.to_string()),
        Ok(Err(e)) => Err(format!("linearizable read: {e}")),
        Err(_) => Err(format!("linearizable read: {}", no_answer())),
    };
    let healthy = status.is_ok() && read.is_ok();
    let mut detail = match &status {
        Ok(facts) | Err(facts) => facts.clone(),
    };
    if let Err(e) = &read {
        detail.push_str("; ");
        detail.push_str(e);
    }
    let holder = read.ok();
    (ArbiterMember { name: endpoint.clone(), address: endpoint, healthy, leader, detail }, holder)
}

#[async_trait]
impl Arbiter for EtcdArbiter {
    async fn renew(&self, holder: Holder) -> Result<()> {
        self.check_me(holder.node_id, "renew")?;
        self.bounded("renew", self.renew_inner(holder)).await
    }

    async fn observe(&self, me: &Report) -> Result<HolderState> {
        self.check_me(me.node_id, "observe")?;
        self.bounded("observe", self.observe_inner(me)).await
    }

    /// Due when it changed or never went, or when the node lease that carries it is due for a
    /// keep-alive (a look keeps it alive; a server whose every domain is Active looks only then).
    fn report_due(&self, me: &Report) -> bool {
        let kept = *self.shared.node_lease_kept.lock().unwrap_or_else(|p| p.into_inner());
        if kept.is_none_or(|at| at.elapsed() >= self.shared.keep_alive_every) {
            return true;
        }
        !self.reported.lock().unwrap_or_else(|p| p.into_inner()).as_ref().is_some_and(|(report, _)| report == me)
    }

    async fn acquire(&self, me: &Report, expected: Option<Holder>, highest_known: u64) -> Result<Option<u64>> {
        self.check_me(me.node_id, "acquire")?;
        self.bounded("acquire", self.acquire_inner(me, expected, highest_known)).await
    }

    async fn transfer(&self, from: Holder, to: Uid, epoch: u64) -> Result<()> {
        self.bounded("transfer", self.transfer_inner(from, to, epoch)).await
    }

    async fn status(&self) -> ArbiterStatus {
        let mut probes = JoinSet::new();
        for (index, (endpoint, client)) in self.shared.members.iter().enumerate() {
            let probe = probe(endpoint.clone(), client.clone(), self.keys.leader.clone(), self.shared.call_timeout);
            probes.spawn(async move { (index, probe.await) });
        }
        let mut answers = Vec::with_capacity(self.shared.members.len());
        while let Some(joined) = probes.join_next().await {
            match joined {
                Ok(answer) => answers.push(answer),
                Err(e) => tracing::warn!("etcd arbiter: a status probe failed: {e}"),
            }
        }
        answers.sort_by_key(|(index, _)| *index);
        let holder = answers.iter().find_map(|(_, (_, read))| *read);
        ArbiterStatus {
            kind: "etcd".into(),
            has_quorum: holder.is_some(),
            holder: holder.flatten(),
            members: answers.into_iter().map(|(_, (member, _))| member).collect(),
        }
    }

    /// The server's own handle revokes the node lease, so its reports in every domain disappear
    /// at once; a domain's handle (the domain left this server, or the server stops) deletes its
    /// report. The hold lease is left to lapse: revoking it would let a Standby take over while
    /// this node's engine may still publish until its own lease (`fence_after_ms` after the last
    /// renewal) runs out.
    async fn close(&self) {
        let timeout = self.shared.call_timeout;
        if !self.owner {
            let mut kv = self.shared.client.kv_client();
            let key = self.keys.report(self.shared.node_id);
            match tokio::time::timeout(timeout, kv.delete(key, None)).await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => {
                    tracing::debug!(prefix = %self.keys.reports, "etcd arbiter: deleting our report at close: {e}")
                }
                Err(_) => {
                    tracing::debug!(prefix = %self.keys.reports, "etcd arbiter: deleting our report at close timed out")
                }
            }
            return;
        }
        let lease = self.shared.node_lease.load(Ordering::SeqCst);
        let mut leases = self.shared.client.lease_client();
        match tokio::time::timeout(timeout, leases.revoke(lease)).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::debug!(lease, "etcd arbiter: revoking the node lease at close: {e}"),
            Err(_) => tracing::debug!(lease, "etcd arbiter: revoking the node lease at close timed out"),
        }
    }
}
