//! A node's domains: looking one up for every front end, creating, deleting and moving them
//! (registry changes published in the global domain, on its Active), changeovers per domain,
//! rebalancing, and the task that keeps this server's replicas in line with the registry.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use futures_util::StreamExt;
use mgha_core::engine::Engine;
use mgha_core::model::Uid;
use mgha_core::revision::Head;
use mgha_sync::{EngineExt, SyncRuntime};

use super::Node;
use crate::contract::{
    DomainBody, DomainCreateBody, DomainDeletedBody, DomainList, DomainPeerBody, DomainRetentionBody, RebalanceBody,
    RebalanceMoveBody, SettingsBody, StatusBody,
};
use crate::domains::{self, DomainError, Domains, Entry, GLOBAL_DOMAIN, REGISTRY_AUTHOR};
use crate::error::{Error, Result};

/// Replicas of a new domain when the caller names neither a count nor servers.
pub const DOMAIN_REPLICAS_DEFAULT: usize = 2;
/// Most planned changeovers a rebalance runs at once (each of a different domain).
pub const REBALANCE_CONCURRENCY: usize = 8;
/// Where a forced delete writes the backup of this server's replica, inside the data directory.
pub const DOMAIN_BACKUPS_DIR: &str = "backups";

type SyncSlot = Arc<tokio::sync::RwLock<Option<SyncRuntime>>>;

/// What a reconcile needs of the node, held by its task.
#[derive(Clone)]
struct Reconciler {
    domains: Arc<Domains>,
    sync: SyncSlot,
    handle: tokio::runtime::Handle,
    scrub_ms: u64,
    /// With automatic failover: the server's arbiter backend and its mode and timing.
    failover:
        Option<(crate::arbiter::ServerArbiter, mgha_sync::failover::FailoverMode, mgha_sync::failover::FailoverTiming)>,
}

impl Node {
    /// The engine of domain `name` on this server (`global`: the node's own engine).
    pub fn domain(&self, name: &str) -> Result<Arc<Engine>> {
        if name == GLOBAL_DOMAIN {
            return self.engine();
        }
        if let Some(replica) = self.domains.get(name) {
            return Ok(replica.engine.clone());
        }
        let entry = domains::entry(self.engine()?.as_ref(), name)?;
        Err(DomainError::NotHere { name: entry.name, replicas: entry.replicas }.into())
    }

    /// Every domain of the cluster, the global one first, each as this server sees it.
    pub fn domains(&self) -> Result<DomainList> {
        let global = self.engine()?;
        let me = global.node()?;
        let members = mgha_sync::membership::members(&global.store())?;
        let mut list = vec![domain_body(
            GLOBAL_DOMAIN,
            me.cluster_id.to_string(),
            members.iter().map(|m| m.name.clone()).collect(),
            Some(&global),
        )?];
        list[0].global = true;
        for entry in domains::registry(&global)? {
            let replica = self.domains.get(&entry.name).filter(|r| r.id == entry.id);
            let mut body = domain_body(
                &entry.name,
                entry.id.to_string(),
                entry.replicas.clone(),
                replica.as_ref().map(|r| &r.engine),
            )?;
            body.retain_revisions = entry.retain_revisions;
            list.push(body);
        }
        Ok(DomainList { domains: list })
    }

    /// The status of domain `name`'s replica on this server, as [`Node::status`] gives the
    /// global domain's.
    pub fn domain_status(&self, name: &str) -> Result<StatusBody> {
        let mut status = StatusBody::of(self.domain(name)?.as_ref())?;
        status.settings = Some(SettingsBody::from(&self.config));
        status.domain = Some(name.to_string());
        Ok(status)
    }

    /// Creates a domain (on the global domain's Active): on the servers `on` names (the first
    /// Active), or on `replicas` servers (default [`DOMAIN_REPLICAS_DEFAULT`], at most every
    /// server) that hold the fewest replicas. Returns once this server's own replica, if any, is
    /// open; the others follow as the registry reaches their servers.
    pub async fn create_domain(&self, body: DomainCreateBody, author: Option<&str>) -> Result<DomainBody> {
        let global = self.engine()?;
        let author = author.unwrap_or(REGISTRY_AUTHOR).to_string();
        let (g, name) = (global.clone(), body.name.clone());
        let healthy = self.healthy_servers()?;
        blocking(move || {
            let members = mgha_sync::membership::members(&g.store())?;
            let servers = domains::placement_servers(&members, &healthy);
            let placed: Vec<_> = domains::registry(&g)?.iter().map(|e| domains::placement_of(e, None, None)).collect();
            let count = match (&body.on, body.replicas) {
                (_, Some(n)) => n,
                (Some(on), None) => on.len(),
                (None, None) => DOMAIN_REPLICAS_DEFAULT.min(members.len().max(1)),
            };
            let replicas = crate::placement::choose_replicas(&servers, &placed, count, body.on.as_deref())?;
            domains::record(&g, &author, &name, replicas, body.retain_revisions)
        })
        .await?;
        self.reconcile_now().await?;
        self.domain_body_of(&body.name)
    }

    /// Sets how many of its newest revisions domain `name` keeps (on the global domain's Active);
    /// `None`: each server's `retain_revisions` again. Every server applies it to its replica as
    /// the registry reaches it; an Active keeping fewer than before purges at once.
    pub async fn set_domain_retention(&self, name: &str, body: DomainRetentionBody) -> Result<DomainBody> {
        if name == GLOBAL_DOMAIN {
            return Err(DomainError::Global {
                what: "given a retention of its own: set retain_revisions in each server's config",
            }
            .into());
        }
        let global = self.engine()?;
        let n = name.to_string();
        blocking(move || domains::record_retention(&global, REGISTRY_AUTHOR, &n, body.retain_revisions)).await?;
        self.reconcile_now().await?;
        self.domain_body_of(name)
    }

    /// Deletes domain `name` (on the global domain's Active). Refused while this server's replica
    /// holds objects, unless `force`: then a verified backup of it is written first
    /// (`DIR/backups/`). Every server archives its replica's store (`DIR/archive/domains/`), so
    /// nothing is lost either way. A server that holds no replica cannot tell whether the domain
    /// is empty: there only a forced delete goes ahead.
    pub async fn delete_domain(&self, name: &str, force: bool) -> Result<DomainDeletedBody> {
        if name == GLOBAL_DOMAIN {
            return Err(DomainError::Global { what: "deleted" }.into());
        }
        let global = self.engine()?;
        let entry = domains::entry(&global, name)?;
        let replica = self.domains.get(name).filter(|r| r.id == entry.id);
        let backup = match replica {
            Some(replica) => {
                let objects = replica.engine.store().count()?;
                if objects > 0 && !force {
                    return Err(DomainError::NotEmpty { name: name.to_string(), objects }.into());
                }
                if objects > 0 {
                    let dir = global.dir().join(DOMAIN_BACKUPS_DIR);
                    let engine = replica.engine.clone();
                    let path = dir.join(format!("domain-{name}-{}.mghabak", mgha_core::now_ms()));
                    let written = path.clone();
                    blocking(move || {
                        mgha_core::private::create_dir(&dir)?;
                        crate::backup::write_verified_backup(&engine, &written).map(drop)
                    })
                    .await?;
                    Some(path.display().to_string())
                } else {
                    None
                }
            }
            None if !force => {
                return Err(DomainError::Unchecked { name: name.to_string(), replicas: entry.replicas }.into())
            }
            None => None,
        };
        let (g, n) = (global.clone(), name.to_string());
        blocking(move || domains::record_deletion(&g, REGISTRY_AUTHOR, &n)).await?;
        self.reconcile_now().await?;
        Ok(DomainDeletedBody { name: name.to_string(), backup })
    }

    /// Moves domain `name`'s replica from server `from` to server `to` (on the global domain's
    /// Active): `to` gets a full sync of that domain only, `from` archives its store. The
    /// domain's Active cannot move this way: change it over first.
    pub async fn move_replica(&self, name: &str, from: &str, to: &str) -> Result<DomainBody> {
        if name == GLOBAL_DOMAIN {
            return Err(DomainError::Global { what: "moved" }.into());
        }
        let global = self.engine()?;
        let entry = domains::entry(&global, name)?;
        let placed = domains::placement_of(&entry, self.domain_active(&entry), None);
        let healthy = self.healthy_servers()?;
        let (g, n, f, t) = (global.clone(), name.to_string(), from.to_string(), to.to_string());
        blocking(move || {
            let members = mgha_sync::membership::members(&g.store())?;
            let servers = domains::placement_servers(&members, &healthy);
            let replicas = crate::placement::move_replica(&placed, &f, &t, &servers)?;
            domains::record_replicas(&g, REGISTRY_AUTHOR, &n, replicas)
        })
        .await?;
        self.reconcile_now().await?;
        self.domain_body_of(name)
    }

    /// A planned changeover of domain `domain` to the server named `target` (asked of any
    /// server holding a replica: a Standby forwards it to the domain's Active).
    pub async fn changeover_in(&self, domain: &str, target: &str) -> Result<u64> {
        if domain == GLOBAL_DOMAIN {
            return self.changeover(target).await;
        }
        let replica = self.replica(domain)?;
        let sync = self.sync.read().await;
        let runtime = sync.as_ref().ok_or_else(super::no_peers)?;
        Ok(runtime.changeover_in(replica.id, target).await?)
    }

    /// A forced changeover of domain `domain`: this server's Standby replica becomes its Active.
    pub async fn force_changeover_in(&self, domain: &str) -> Result<u64> {
        if domain == GLOBAL_DOMAIN {
            return self.force_changeover().await;
        }
        let replica = self.replica(domain)?;
        let sync = self.sync.clone().read_owned().await;
        if sync.is_none() {
            return Err(super::no_peers());
        }
        let forced = tokio::task::spawn_blocking(move || sync.as_ref().map(|s| s.force_changeover_in(replica.id)));
        let epoch = forced.await.map_err(|e| Error::Unusable(format!("the changeover task failed: {e}")))?;
        Ok(epoch.ok_or_else(super::no_peers)??)
    }

    /// Spreads the domains' Actives evenly over the healthy servers by planned changeovers, up
    /// to [`REBALANCE_CONCURRENCY`] at once (each loses nothing: a planned changeover hands over
    /// only once the target has every revision). Asked of any server; it changes over only domains whose
    /// Active this server can reach through a replica it holds, and says for each move how it
    /// went. Which replicas of a domain could take over is the domain's Active's view, asked of
    /// each server that holds Actives (one question per server); a server that does not answer
    /// leaves this server's own view for its domains.
    pub async fn rebalance(&self) -> Result<RebalanceBody> {
        let global = self.engine()?;
        let registry = domains::registry(&global)?;
        let members = mgha_sync::membership::members(&global.store())?;
        // The domains this server holds a replica of: for them it knows the Active.
        let held: Vec<_> = registry
            .iter()
            .filter(|e| self.domains.get(&e.name).is_some_and(|r| r.id == e.id))
            .map(|e| (e, self.domain_active(e)))
            .collect();
        let mut eligible = self.eligible_at_actives(&held).await;
        // Healthy: what this server reaches, and every server an Active found synchronized (a
        // Standby of the global domain is connected to its Active only).
        let mut healthy = self.healthy_servers()?;
        healthy.extend(eligible.values().flatten().cloned());
        let servers = domains::placement_servers(&members, &healthy);
        let placed: Vec<_> = held
            .into_iter()
            .map(|(e, active)| {
                let seen = eligible.remove(&e.id).unwrap_or_else(|| self.eligible_replicas(e));
                domains::placement_of(e, active, Some(&seen))
            })
            .collect();
        // Up to REBALANCE_CONCURRENCY changeovers at once, each of its own domain: a slow one
        // holds up no other. The moves are reported in the plan's order.
        let mut moves: Vec<(usize, RebalanceMoveBody)> =
            futures_util::stream::iter(crate::placement::rebalance(&servers, &placed).into_iter().enumerate())
                .map(|(i, m)| async move {
                    // A domain with no Active known here gets one by failover or a forced
                    // changeover, never by a rebalance, which only hands over from a live Active.
                    let outcome = match &m.from {
                        None => Err(format!(
                            "no Active of domain '{}' is known on this server: automatic failover, or a \
                             forced changeover on '{}', gives it one",
                            m.domain, m.to
                        )),
                        Some(_) => self.changeover_in(&m.domain, &m.to).await.map_err(|e| e.to_string()),
                    };
                    let body = RebalanceMoveBody {
                        domain: m.domain,
                        from: m.from,
                        to: m.to,
                        epoch: outcome.as_ref().ok().copied(),
                        error: outcome.err(),
                    };
                    (i, body)
                })
                .buffer_unordered(REBALANCE_CONCURRENCY)
                .collect()
                .await;
        moves.sort_by_key(|(i, _)| *i);
        let moves = moves.into_iter().map(|(_, m)| m).collect();
        Ok(RebalanceBody { moves })
    }

    /// This server's replica of domain `name`.
    fn replica(&self, name: &str) -> Result<Arc<domains::Replica>> {
        match self.domains.get(name) {
            Some(r) => Ok(r),
            None => {
                let entry = domains::entry(self.engine()?.as_ref(), name)?;
                Err(DomainError::NotHere { name: entry.name, replicas: entry.replicas }.into())
            }
        }
    }

    fn domain_body_of(&self, name: &str) -> Result<DomainBody> {
        self.domains()?
            .domains
            .into_iter()
            .find(|d| d.name == name)
            .ok_or_else(|| DomainError::Unknown { name: name.to_string() }.into())
    }

    /// The server whose replica of `entry` is Active, as far as this server knows: its own, the
    /// Active its replica follows, or a peer that said so.
    fn domain_active(&self, entry: &Entry) -> Option<String> {
        let replica = self.domains.get(&entry.name).filter(|r| r.id == entry.id)?;
        active_of(&replica.engine)
    }

    /// The replicas of `entry` that could take its Active role now, as this server sees them
    /// (none when it holds no replica of it).
    fn eligible_replicas(&self, entry: &Entry) -> Vec<String> {
        match self.domains.get(&entry.name).filter(|r| r.id == entry.id) {
            Some(replica) => mgha_sync::runtime::eligible_replicas(&replica.engine),
            None => Vec::new(),
        }
    }

    /// For the domains of `held` (each with the server this one sees as its Active), the
    /// replicas that could take over as their Actives see them: this server's view for those
    /// Active here, the answer of each other Active's server (asked all at once) for the rest.
    /// Domains whose Active is unknown, or whose server did not answer, are left out.
    async fn eligible_at_actives(&self, held: &[(&Entry, Option<String>)]) -> HashMap<Uid, Vec<String>> {
        let me = self.engine().and_then(|g| Ok(g.node()?.name)).ok();
        let mut eligible = HashMap::new();
        let mut elsewhere: BTreeMap<String, Vec<Uid>> = BTreeMap::new();
        for (entry, active) in held {
            match active {
                Some(server) if Some(server) == me.as_ref() => {
                    eligible.insert(entry.id, self.eligible_replicas(entry));
                }
                Some(server) => elsewhere.entry(server.clone()).or_default().push(entry.id),
                None => {}
            }
        }
        let sync = self.sync.read().await;
        let Some(runtime) = sync.as_ref() else {
            return eligible;
        };
        let asked = elsewhere.into_iter().map(|(server, ids)| async move {
            let answer = runtime.ask_eligible(&server, ids).await;
            if let Err(e) = &answer {
                tracing::warn!(%server, error = %e, "rebalance: no answer on which replicas could take over; using this server's view");
            }
            answer.unwrap_or_default()
        });
        for answer in futures_util::future::join_all(asked).await {
            eligible.extend(answer);
        }
        eligible
    }

    /// The servers this server sees as healthy: itself, and every member its global replica is
    /// connected to.
    fn healthy_servers(&self) -> Result<Vec<String>> {
        let global = self.engine()?;
        let mut healthy = vec![global.node()?.name];
        healthy.extend(global.sync().peers().into_iter().filter(|p| p.connected).map(|p| p.name));
        Ok(healthy)
    }

    /// Opens this server's replicas and starts keeping them in line with the registry: once
    /// now, then whenever the global domain's head moves.
    pub(super) async fn start_domains(&self) -> Result<()> {
        if self.reconciler.set(()).is_err() {
            return Ok(());
        }
        let global = self.engine()?;
        // The global domain asks every domain before one of its objects they use goes.
        let users: Arc<dyn mgha_core::store::Users> = Arc::new(domains::DomainUsers {
            global: Arc::downgrade(&global),
            domains: Arc::downgrade(&self.domains),
            sync: Arc::downgrade(&self.sync),
            handle: self.handle.clone(),
        });
        let (globals, _) = global.store().globals();
        global.store().set_globals(globals, Some(users));
        // A global store that cannot be read now (a damaged Standby's, quarantined until a full
        // sync heals it) keeps no domain from starting later: the task below reconciles at every
        // move of the global head.
        if let Err(e) = self.reconcile_now().await {
            tracing::error!(error = %e, "cannot bring this server's domains in line with the registry now; will try again");
        }
        let reconciler = self.reconciler();
        let mut heads = global.sync().subscribe();
        let weak = Arc::downgrade(&global);
        drop(global);
        self.handle.spawn(async move {
            let mut shares = tokio::time::interval(CACHE_SHARES_EVERY);
            shares.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            // What the last reconcile that succeeded started from.
            let mut seen: Option<Seen> = None;
            loop {
                tokio::select! {
                    changed = heads.changed() => {
                        if changed.is_err() {
                            return;
                        }
                        let head = *heads.borrow_and_update();
                        let Some(global) = weak.upgrade() else { return };
                        if let Some(s) = seen.as_mut().filter(|s| !s.outdated_by(&global, head)) {
                            // Nothing a reconcile depends on changed up to here: look from here next.
                            s.head = head;
                            continue;
                        }
                        let members = mgha_sync::membership::member_records(&global.store()).ok();
                        match reconcile(&reconciler, &global).await {
                            Ok(()) => seen = members.map(|members| Seen { head, members }),
                            Err(e) => {
                                seen = None;
                                tracing::error!(error = %e, "cannot bring this server's domains in line with the registry; will try again");
                            }
                        }
                    }
                    _ = shares.tick() => {
                        let d = reconciler.domains.clone();
                        let _ = tokio::task::spawn_blocking(move || d.share_caches()).await;
                    }
                }
            }
        });
        Ok(())
    }

    /// Reconciles at once (after a registry change made here), so the caller sees its effect.
    async fn reconcile_now(&self) -> Result<()> {
        reconcile(&self.reconciler(), &self.engine()?).await
    }

    fn reconciler(&self) -> Reconciler {
        Reconciler {
            domains: self.domains.clone(),
            sync: self.sync.clone(),
            handle: self.handle.clone(),
            scrub_ms: self.config.scrub_interval_ms,
            failover: self.arbiter.get().map(|a| (a.clone(), self.config.failover, self.config.failover_timing())),
        }
    }
}

/// The global domain as a reconcile found it: its head, and the member list it holds.
struct Seen {
    head: Head,
    members: Vec<mgha_sync::wire::Member>,
}

/// Revisions of the global domain looked through, at most, before reconciling anyway.
const SKIP_SCAN_REVISIONS_MAX: u64 = 64;

impl Seen {
    /// Whether the global domain at `head` may ask for another reconcile: a revision since
    /// that changes a domain entry, a history that does not follow on, or another member list.
    /// On a server whose first domain takes publishes, most head moves are its own objects,
    /// and a reconcile (the registry and every held replica looked at, on a blocking thread)
    /// at each one cost more than the publish's own commit.
    fn outdated_by(&self, global: &Engine, head: Head) -> bool {
        if head == self.head {
            return false;
        }
        if head.seq <= self.head.seq || head.seq - self.head.seq > SKIP_SCAN_REVISIONS_MAX {
            return true;
        }
        let mut parent = self.head.id;
        for seq in self.head.seq + 1..=head.seq {
            // The newest is in memory; older ones (a batch applied at once) come from the store.
            let rev = match global.sync().cached(seq) {
                Some(rev) => rev,
                None => match global.store().revision(seq) {
                    Ok(rev) => Arc::new(rev),
                    Err(_) => return true,
                },
            };
            if rev.parent != parent || rev.changes.iter().any(|c| c.type_name == domains::DOMAIN_TYPE) {
                return true;
            }
            parent = rev.id;
        }
        if parent != head.id {
            return true;
        }
        mgha_sync::membership::member_records(&global.store()).map_or(true, |m| m != self.members)
    }
}

/// One reconcile of `domains` with the registry of `global`, followed by the sync runtime: new
/// replicas are served and followed, removed ones stop and are archived, moved ones dial their
/// new members.
async fn reconcile(r: &Reconciler, global: &Arc<Engine>) -> Result<()> {
    let Reconciler { domains, sync, handle, scrub_ms, failover } = r;
    let (d, g) = (domains.clone(), global.clone());
    let changes = blocking(move || d.reconcile(&g)).await?;
    let runtime = sync.read().await;
    for replica in &changes.added {
        crate::scrub::start(handle, &replica.engine, *scrub_ms);
        if let Some(runtime) = runtime.as_ref() {
            runtime.add_domain(replica.id, replica.engine.clone())?;
            // Each domain fails over on its own, with its own arbiter from the server's backend.
            if let Some((arbiter, mode, timing)) = failover {
                runtime.enable_failover_in(replica.id, arbiter.for_domain(replica.id), *mode, *timing)?;
            }
        }
    }
    for id in &changes.members_changed {
        if let Some(runtime) = runtime.as_ref() {
            runtime.members_changed(*id)?;
        }
    }
    for replica in changes.removed {
        if let Some(runtime) = runtime.as_ref() {
            runtime.remove_domain(replica.id).await;
        }
        // A domain deleted from the registry is forgotten by the arbiter too, so its state
        // holds only live domains.
        if let Some((arbiter, _, _)) = failover {
            if !changes.registered.contains(&replica.id) {
                if let Err(e) = arbiter.forget_domain(replica.id).await {
                    tracing::warn!(domain = %replica.name, error = %e, "the arbiter did not forget the deleted domain");
                }
            }
        }
        let d = domains.clone();
        if let Err(e) = blocking(move || d.archive(replica)).await {
            tracing::error!(error = %e, "cannot archive the store of a domain this server left");
        }
    }
    Ok(())
}

/// A domain's row as this server sees it, with its replica's state when it holds one.
fn domain_body(name: &str, id: String, replicas: Vec<String>, engine: Option<&Arc<Engine>>) -> Result<DomainBody> {
    let mut body = DomainBody {
        name: name.to_string(),
        id,
        global: false,
        replicas,
        here: engine.is_some(),
        retain_revisions: None,
        role: None,
        epoch: None,
        active: None,
        head_seq: None,
        objects: None,
        peers: Vec::new(),
    };
    if let Some(engine) = engine {
        let (role, epoch) = engine.role();
        body.role = Some(role.to_string());
        body.epoch = Some(epoch);
        body.active = active_of(engine);
        body.head_seq = Some(engine.sync().head().seq);
        body.objects = Some(engine.store().count()?);
        body.peers = engine
            .sync()
            .peers()
            .into_iter()
            .map(|p| DomainPeerBody {
                name: p.name,
                role: p.role.map(|r| r.to_string()),
                status: crate::contract::sync_status_name(p.status),
                lag_revisions: p.lag_revisions,
                connected: p.connected,
            })
            .collect();
    }
    Ok(body)
}

/// The server whose replica is Active, as this replica knows it.
fn active_of(engine: &Engine) -> Option<String> {
    let (role, _) = engine.role();
    if role == mgha_core::node::Role::Active {
        return engine.node().ok().map(|n| n.name);
    }
    engine.sync().active_hint()
}

/// How often the stores a reconcile found busy are given their page-cache share again.
const CACHE_SHARES_EVERY: std::time::Duration = std::time::Duration::from_secs(60);

/// Runs engine work that may write durably on the blocking pool.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f).await.map_err(|e| Error::Unusable(format!("a domain task failed: {e}")))?
}

#[cfg(test)]
mod tests {
    use super::*;
    use mgha_core::engine::EngineOptions;
    use mgha_core::model::Fields;
    use mgha_core::{ChangeInput, ChangeSet};

    fn host(name: &str) -> ChangeSet {
        let mut fields = Fields::new();
        fields.insert("ipv4-address".into(), serde_json::json!("10.0.0.1"));
        let put = ChangeInput::Put { type_name: "host".into(), name: name.into(), uid: None, fields };
        ChangeSet { message: format!("put {name}"), changes: vec![put] }
    }

    #[test]
    fn only_a_domain_entry_a_rewound_head_or_new_members_ask_for_a_reconcile() {
        let dir = tempfile::tempdir().expect("temp dir");
        let global = mgha_sync::cluster::init_primary(dir.path(), "a", "127.0.0.1:1", EngineOptions::default())
            .expect("a first server");
        let head = global.store().head().expect("head");
        let members = mgha_sync::membership::member_records(&global.store()).expect("members");
        let seen = Seen { head, members: members.clone() };
        assert!(!seen.outdated_by(&global, head));

        // The domain's own objects, one revision and then several since the last look.
        global.publish("t", &host("web1")).expect("publish");
        let one = global.store().head().expect("head");
        assert!(!seen.outdated_by(&global, one));
        for name in ["web2", "web3", "web4"] {
            global.publish("t", &host(name)).expect("publish");
        }
        let several = global.store().head().expect("head");
        assert!(!seen.outdated_by(&global, several));
        // A head that does not follow on from the one seen (another history).
        assert!(seen.outdated_by(&global, Head { id: mgha_core::model::Hash([7; 32]), ..several }));
        assert!(Seen { head: several, members: members.clone() }.outdated_by(&global, head));

        // A domain entry among them.
        domains::record(&global, "t", "red", vec!["a".into()], None).expect("records a domain");
        global.publish("t", &host("web5")).expect("publish");
        let after = global.store().head().expect("head");
        assert!(seen.outdated_by(&global, after));
        let past_it = Seen { head: after, members: members.clone() };
        global.publish("t", &host("web6")).expect("publish");
        assert!(!past_it.outdated_by(&global, global.store().head().expect("head")));

        // Another member list, with no revision at all.
        assert!(!members.is_empty(), "the first server is a member");
        let other = Seen { head: after, members: Vec::new() };
        let now = global.store().head().expect("head");
        assert!(other.outdated_by(&global, now));
        assert!(!Seen { head: now, members }.outdated_by(&global, now));
    }
}
