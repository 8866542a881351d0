//! The domains of a cluster, as one server holds them.
//!
//! A domain is one revisioned database with its own Active. The cluster's first domain,
//! [`GLOBAL_DOMAIN`], is the data directory's own store: it is on every server, it holds the
//! member list and the **registry** of the other domains (objects of the managed type
//! [`DOMAIN_TYPE`], written only here), and it is where single-domain use happens. Every other
//! domain has replicas on the servers its registry object names (`replicas`, the first where it
//! was created Active), each in `DIR/domains/NAME/`, a store of the same layout as the data
//! directory's. [`Domains::reconcile`] brings a server's replicas in line with the registry
//! whenever the global domain's head moves: it creates the replicas placed here (the first
//! replica Active, the others Standby, which a full sync fills), sets each domain's member list to
//! its replicas, and archives the store of a domain that left this server, so that nothing is
//! ever deleted.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use mgha_core::changeset::{ChangeInput, ChangeSet};
use mgha_core::engine::{Engine, EngineOptions};
use mgha_core::model::Uid;
use mgha_core::node::{Designation, NodeState, Role};
use mgha_core::ErrorCode;
use serde_json::{json, Map, Value};

use crate::error::Result;
use crate::placement;
use mgha_sync::wire::Member;

/// The name of a cluster's first domain: the data directory's own store, on every server.
pub const GLOBAL_DOMAIN: &str = "global";
/// Where a server keeps its replicas of the other domains, inside its data directory.
pub const DOMAINS_DIR: &str = "domains";
/// Where the store of a domain that left this server is kept, inside its data directory.
pub const ARCHIVED_DOMAINS_DIR: &str = "archive/domains";
/// The managed type of the registry's objects in the global domain.
pub const DOMAIN_TYPE: &str = "domain";
/// The author of the registry's revisions when the caller names none.
pub const REGISTRY_AUTHOR: &str = "mgha-domains";
/// The meta key under which a domain's store records the domain id it is a replica of, so a
/// store left by a deleted domain of the same name is never taken for the new one.
const META_DOMAIN_ID: &str = "domain_id";

/// Why a domain operation was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DomainError {
    /// No domain of that name in the registry.
    #[error("no domain named '{name}' (`mgha domain list` shows them)")]
    Unknown { name: String },
    /// The domain exists but this server holds no replica of it.
    #[error("this server holds no replica of domain '{name}'; its replicas are on {}", replicas.join(", "))]
    NotHere { name: String, replicas: Vec<String> },
    /// A domain of that name exists already.
    #[error("domain '{name}' already exists")]
    Exists { name: String },
    /// A delete without `force` of a domain that holds objects.
    #[error("domain '{name}' holds {objects} objects; delete them first, or delete with --force (a backup is written first)")]
    NotEmpty { name: String, objects: u64 },
    /// The global domain cannot be created, deleted, moved or given a retention of its own.
    #[error("'{GLOBAL_DOMAIN}' is the cluster's first domain, on every server; it cannot be {what}")]
    Global { what: &'static str },
    /// A delete asked of a server that holds no replica, so cannot tell whether the domain
    /// holds objects.
    #[error(
        "this server holds no replica of domain '{name}', so it cannot tell whether the domain holds objects; delete \
         it on one of {} (which hold it), or with --force (each replica's store is archived)",
        replicas.join(", ")
    )]
    Unchecked { name: String, replicas: Vec<String> },
    /// A name that cannot name a domain (it names a directory on every server that holds it).
    #[error("'{name}' cannot name a domain: use 1 to {DOMAIN_NAME_BYTES_MAX} letters, digits, '-', '_' or '.', starting with a letter or digit")]
    InvalidName { name: String },
}

/// Longest domain name, in bytes.
pub const DOMAIN_NAME_BYTES_MAX: usize = 64;

/// Checks that `name` can name a domain: it is a directory name on every server that holds a
/// replica, so only letters, digits, `-`, `_` and `.`, starting with a letter or digit.
pub fn check_name(name: &str) -> std::result::Result<(), DomainError> {
    let ok = !name.is_empty()
        && name.len() <= DOMAIN_NAME_BYTES_MAX
        && name.as_bytes()[0].is_ascii_alphanumeric()
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.');
    if ok {
        Ok(())
    } else {
        Err(DomainError::InvalidName { name: name.to_string() })
    }
}

impl DomainError {
    /// The stable code of this refusal.
    pub fn code(&self) -> ErrorCode {
        match self {
            DomainError::Unknown { .. } | DomainError::NotHere { .. } => ErrorCode::NotFound,
            DomainError::Exists { .. } | DomainError::NotEmpty { .. } | DomainError::Unchecked { .. } => {
                ErrorCode::Conflict
            }
            DomainError::Global { .. } | DomainError::InvalidName { .. } => ErrorCode::InvalidArgument,
        }
    }
}

/// One domain of the registry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// The domain id: the uid of its registry object.
    pub id: Uid,
    pub name: String,
    /// The servers that hold a replica, by name; the first is where it was created Active.
    pub replicas: Vec<String>,
    /// 1 when created, one more at every change of its replicas: only a server that finds the
    /// domain at generation 1 and itself first creates its replica Active.
    pub generation: u64,
    /// The revisions the domain keeps; `None`: each server's `retain_revisions` applies.
    pub retain_revisions: Option<u64>,
}

impl Entry {
    fn of(object: &mgha_core::Object) -> Option<Entry> {
        let replicas = object
            .fields
            .get("replicas")?
            .as_array()?
            .iter()
            .map(|v| v.as_str().map(str::to_string))
            .collect::<Option<Vec<_>>>()?;
        let generation = object.fields.get("generation").and_then(Value::as_u64).unwrap_or(1);
        let retain_revisions = object.fields.get("retain_revisions").and_then(Value::as_u64);
        Some(Entry { id: object.uid, name: object.name.clone(), replicas, generation, retain_revisions })
    }

    /// The registry object's fields.
    fn fields(&self) -> Map<String, Value> {
        let mut fields = Map::new();
        fields.insert("replicas".into(), json!(self.replicas));
        fields.insert("generation".into(), json!(self.generation));
        if let Some(keep) = self.retain_revisions {
            fields.insert("retain_revisions".into(), json!(keep));
        }
        fields
    }
}

/// The registry: every domain but the global one, by name.
pub fn registry(global: &Engine) -> Result<Vec<Entry>> {
    let store = global.store();
    let objects = store.list(Some(DOMAIN_TYPE), mgha_core::limits::DOMAINS_MAX)?;
    Ok(objects.iter().filter_map(Entry::of).collect())
}

/// The registry entry of domain `name`.
pub fn entry(global: &Engine, name: &str) -> Result<Entry> {
    registry(global)?
        .into_iter()
        .find(|e| e.name == name)
        .ok_or_else(|| DomainError::Unknown { name: name.to_string() }.into())
}

/// The servers of the cluster as placement sees them: every member, healthy when `healthy`
/// names it.
pub fn placement_servers(members: &[Member], healthy: &[String]) -> Vec<placement::Server> {
    members.iter().map(|m| placement::Server { name: m.name.clone(), healthy: healthy.contains(&m.name) }).collect()
}

/// A registry entry as placement sees it, with what this server knows of its Active and of
/// which replicas could take the role.
pub fn placement_of(entry: &Entry, active: Option<String>, eligible: Option<&[String]>) -> placement::DomainPlacement {
    placement::DomainPlacement {
        name: entry.name.clone(),
        replicas: entry
            .replicas
            .iter()
            .map(|r| placement::Replica { server: r.clone(), eligible: eligible.is_none_or(|e| e.contains(r)) })
            .collect(),
        active,
    }
}

/// Publishes a registry change in the global domain (its Active only, as every publish).
fn publish(global: &Engine, author: &str, message: String, change: ChangeInput) -> Result<()> {
    global.publish_managed(author, &ChangeSet { message, changes: vec![change] })?;
    Ok(())
}

/// Records a new domain on `replicas` (names of cluster members; the first creates it Active).
pub fn record(
    global: &Engine,
    author: &str,
    name: &str,
    replicas: Vec<String>,
    retain_revisions: Option<u64>,
) -> Result<Entry> {
    check_name(name)?;
    check_retention(retain_revisions)?;
    if name == GLOBAL_DOMAIN {
        return Err(DomainError::Global { what: "created again" }.into());
    }
    if registry(global)?.iter().any(|e| e.name == name) {
        return Err(DomainError::Exists { name: name.to_string() }.into());
    }
    let draft = Entry { id: Uid::new_random(), name: name.to_string(), replicas, generation: 1, retain_revisions };
    let change = ChangeInput::Put {
        type_name: DOMAIN_TYPE.into(),
        name: name.into(),
        uid: Some(draft.id.to_string()),
        fields: draft.fields(),
    };
    publish(global, author, format!("create domain {name} on {}", draft.replicas.join(", ")), change)?;
    entry(global, name)
}

/// Records how many revisions domain `name` keeps (`None`: each server's `retain_revisions`).
pub fn record_retention(global: &Engine, author: &str, name: &str, retain_revisions: Option<u64>) -> Result<Entry> {
    check_retention(retain_revisions)?;
    let mut e = entry(global, name)?;
    let shown = |n: Option<u64>| n.map_or("the servers' setting".to_string(), |n| format!("{n} revisions"));
    let message = format!("domain {name}: keeps {} (was {})", shown(retain_revisions), shown(e.retain_revisions));
    e.retain_revisions = retain_revisions;
    rewrite(global, author, message, &e)
}

/// Publishes `e` as domain `e.name`'s registry entry, with `message`; the entry as recorded.
fn rewrite(global: &Engine, author: &str, message: String, e: &Entry) -> Result<Entry> {
    let change = ChangeInput::Put {
        type_name: DOMAIN_TYPE.into(),
        name: e.name.clone(),
        uid: Some(e.id.to_string()),
        fields: e.fields(),
    };
    publish(global, author, message, change)?;
    entry(global, &e.name)
}

/// A domain keeps at least one revision (its head).
fn check_retention(retain_revisions: Option<u64>) -> Result<()> {
    if retain_revisions == Some(0) {
        return Err(mgha_core::Error::InvalidArgument(
            "retain_revisions must be at least 1 (leave it out to follow the servers' setting)".into(),
        )
        .into());
    }
    Ok(())
}

/// Records new replicas for domain `name` (a replica moved or added), one generation on.
pub fn record_replicas(global: &Engine, author: &str, name: &str, replicas: Vec<String>) -> Result<Entry> {
    let mut e = entry(global, name)?;
    let message = format!("domain {name}: replicas {} -> {}", e.replicas.join(", "), replicas.join(", "));
    e.replicas = replicas;
    e.generation += 1;
    rewrite(global, author, message, &e)
}

/// Removes domain `name` from the registry: every server archives its replica.
pub fn record_deletion(global: &Engine, author: &str, name: &str) -> Result<()> {
    let e = entry(global, name)?;
    let change = ChangeInput::Delete { type_name: DOMAIN_TYPE.into(), name: None, uid: Some(e.id.to_string()) };
    publish(global, author, format!("delete domain {name}"), change)
}

/// A domain's replica on this server.
pub struct Replica {
    pub id: Uid,
    pub name: String,
    pub engine: Arc<Engine>,
}

impl std::fmt::Debug for Replica {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Replica({} {})", self.name, self.id)
    }
}

/// What a reconcile changed, for the sync runtime to follow.
#[derive(Debug, Default)]
pub struct Changes {
    /// Replicas opened or created: to be served and followed.
    pub added: Vec<Arc<Replica>>,
    /// Replicas let go (their stores archived): to be served no more.
    pub removed: Vec<Arc<Replica>>,
    /// Domains whose member list changed (a replica moved).
    pub members_changed: Vec<Uid>,
    /// Every domain the registry holds now (a removed replica of one not among them was
    /// deleted, not moved).
    pub registered: Vec<Uid>,
}

/// The replicas this server holds, kept in line with the registry.
pub struct Domains {
    dir: PathBuf,
    options: EngineOptions,
    held: RwLock<BTreeMap<String, Arc<Replica>>>,
    /// One reconcile at a time.
    reconciling: Mutex<()>,
    /// The domains placed here at the last reconcile: the page-cache budget's divisor.
    placed: std::sync::atomic::AtomicUsize,
}

impl std::fmt::Debug for Domains {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Domains({})", self.dir.display())
    }
}

impl Domains {
    /// The domains of the server whose data directory is `dir`; none held until
    /// [`Domains::reconcile`].
    pub fn new(dir: &Path, options: EngineOptions) -> Domains {
        Domains {
            dir: dir.to_path_buf(),
            options,
            held: RwLock::default(),
            reconciling: Mutex::new(()),
            placed: std::sync::atomic::AtomicUsize::new(0),
        }
    }

    /// The replica of domain `name` held here.
    pub fn get(&self, name: &str) -> Option<Arc<Replica>> {
        self.held.read().unwrap_or_else(|p| p.into_inner()).get(name).cloned()
    }

    /// Every replica held here, by name.
    pub fn all(&self) -> Vec<Arc<Replica>> {
        self.held.read().unwrap_or_else(|p| p.into_inner()).values().cloned().collect()
    }

    /// Lets go of every replica (at shutdown): their stores close when the last holder drops.
    pub fn clear(&self) -> Vec<Arc<Replica>> {
        let held = std::mem::take(&mut *self.held.write().unwrap_or_else(|p| p.into_inner()));
        held.into_values().collect()
    }

    /// Brings this server's replicas in line with the registry of `global`: opens or creates
    /// the replicas placed here, sets every held domain's member list to its replicas, and
    /// archives the replicas of domains that left this server.
    pub fn reconcile(&self, global: &Arc<Engine>) -> Result<Changes> {
        let global_weak = Arc::downgrade(global);
        let _one = self.reconciling.lock().unwrap_or_else(|p| p.into_inner());
        let me = global.node()?;
        let registry = registry(global)?;
        let members = mgha_sync::membership::members(&global.store())?;
        let mut changes = Changes { registered: registry.iter().map(|e| e.id).collect(), ..Changes::default() };
        let wanted: BTreeMap<&str, &Entry> =
            registry.iter().filter(|e| e.replicas.contains(&me.name)).map(|e| (e.name.as_str(), e)).collect();
        self.placed.store(wanted.len(), std::sync::atomic::Ordering::Relaxed);
        // Replicas no longer placed here (or of a domain deleted and created again under the
        // same name): archived, never deleted.
        let gone: Vec<Arc<Replica>> =
            self.all().into_iter().filter(|r| wanted.get(r.name.as_str()).is_none_or(|e| e.id != r.id)).collect();
        for replica in gone {
            self.held.write().unwrap_or_else(|p| p.into_inner()).remove(&replica.name);
            changes.removed.push(replica);
        }
        for entry in wanted.values() {
            if let Err(e) = check_name(&entry.name) {
                tracing::error!(error = %e, "the registry names a domain that cannot be held here");
                continue;
            }
            let keep = entry.retain_revisions.or(self.options.retain_revisions);
            let replica = match self.get(&entry.name) {
                Some(r) => {
                    share_cache(&r, wanted.len());
                    if r.engine.retain_revisions() != keep {
                        if let Err(e) = r.engine.set_retain_revisions(keep) {
                            tracing::warn!(domain = %entry.name, error = %e, "could not apply the domain's retention");
                        }
                    }
                    r
                }
                None => match self.open_or_create(&me, entry, wanted.len()) {
                    Ok(r) => {
                        self.held.write().unwrap_or_else(|p| p.into_inner()).insert(entry.name.clone(), r.clone());
                        changes.added.push(r.clone());
                        r
                    }
                    Err(e) => {
                        // One domain that cannot open does not keep the others from running; it
                        // is tried again at the next registry change or restart.
                        tracing::error!(domain = %entry.name, error = %e, "cannot open this server's replica of the domain");
                        continue;
                    }
                },
            };
            // Its references may name the global domain's objects (set again each time: the
            // engine carries it over when a full sync replaces the store).
            if replica.engine.store().globals().0.is_none() {
                let view: Arc<dyn mgha_core::store::Globals> = Arc::new(GlobalView(global_weak.clone()));
                replica.engine.store().set_globals(Some(view), None);
            }
            let list: Vec<_> = members.iter().filter(|m| entry.replicas.contains(&m.name)).cloned().collect();
            if mgha_sync::membership::set_domain_members(&replica.engine.store(), &list)? {
                changes.members_changed.push(replica.id);
            }
        }
        Ok(changes)
    }

    /// Gives every held store its share of the page-cache budget where a reconcile found it busy
    /// (`share_cache`); run now and then, so that a store busy at every registry change gets
    /// its share too.
    pub fn share_caches(&self) {
        let placed = self.placed.load(std::sync::atomic::Ordering::Relaxed);
        for replica in self.all() {
            share_cache(&replica, placed);
        }
    }

    /// The directory of domain `name`'s replica on this server.
    pub fn dir_of(&self, name: &str) -> PathBuf {
        self.dir.join(DOMAINS_DIR).join(name)
    }

    /// Opens this server's replica of `entry`, one of the `held` domains placed here (the
    /// global one aside), or creates it.
    fn open_or_create(&self, me: &NodeState, entry: &Entry, held: usize) -> Result<Arc<Replica>> {
        let dir = self.dir_of(&entry.name);
        // The domains' page caches share one budget: the more domains, the smaller each.
        let options = EngineOptions {
            store_cache_bytes: mgha_core::limits::domain_store_cache_bytes(held),
            retain_revisions: entry.retain_revisions.or(self.options.retain_revisions),
            ..self.options.clone()
        };
        if dir.join(mgha_core::store::STORE_FILE).exists() {
            let engine = mgha_sync::open_engine(&dir, options.clone())?;
            let id = engine.store().meta_get::<Uid>(META_DOMAIN_ID)?;
            if id == Some(entry.id) {
                return Ok(Arc::new(Replica { id: entry.id, name: entry.name.clone(), engine: Arc::new(engine) }));
            }
            // A store of an earlier domain of the same name: set aside, and a new one made.
            drop(engine);
            archive_dir(&self.dir, &dir, &entry.name)?;
        }
        let active = entry.generation == 1 && entry.replicas.first() == Some(&me.name);
        let node = NodeState {
            node_id: me.node_id,
            name: me.name.clone(),
            cluster_id: me.cluster_id,
            designation: if active { Designation::Primary } else { Designation::Secondary },
            role: if active { Role::Active } else { Role::Standby },
            epoch: if active { mgha_core::roles::machine::epoch::first(me.tag) } else { 0 },
            tag: me.tag,
        };
        mgha_core::private::create_dir(&dir)?;
        let engine = mgha_sync::create_engine(&dir, &node, options)?;
        engine.store().meta_update(META_DOMAIN_ID, |id: &mut Option<Uid>| {
            *id = Some(entry.id);
            Ok(())
        })?;
        tracing::info!(domain = %entry.name, role = %node.role, "created this server's replica of the domain");
        Ok(Arc::new(Replica { id: entry.id, name: entry.name.clone(), engine: Arc::new(engine) }))
    }

    /// Archives the store of a replica this server let go of (once nothing holds its engine).
    pub fn archive(&self, replica: Arc<Replica>) -> Result<PathBuf> {
        let name = replica.name.clone();
        let dir = replica.engine.dir().to_path_buf();
        drop(replica);
        archive_dir(&self.dir, &dir, &name)
    }
}

/// Moves a domain store's directory into `DATA/archive/domains/NAME-TIME`.
fn archive_dir(data: &Path, dir: &Path, name: &str) -> Result<PathBuf> {
    let archive = data.join(ARCHIVED_DOMAINS_DIR);
    mgha_core::private::create_dir(&archive)?;
    let to = archive.join(format!("{name}-{}", mgha_core::now_ms()));
    std::fs::rename(dir, &to)?;
    std::fs::File::open(&archive)?.sync_all()?;
    tracing::warn!(domain = %name, to = %to.display(), "this server no longer holds the domain: its store is archived");
    Ok(to)
}

/// The global domain as the other domains' references see it: read-only, through this
/// server's replica of it.
pub struct GlobalView(pub std::sync::Weak<Engine>);

impl mgha_core::store::Globals for GlobalView {
    fn object(&self, uid: &Uid) -> mgha_core::Result<Option<mgha_core::Object>> {
        match self.0.upgrade() {
            Some(global) => global.store().get_by_uid(uid),
            None => Ok(None),
        }
    }

    fn named(&self, type_name: &str, name: &str) -> mgha_core::Result<Option<Uid>> {
        match self.0.upgrade() {
            Some(global) => global.store().uid_of(type_name, name),
            None => Ok(None),
        }
    }
}

/// Most referrers named per domain when a global object cannot go.
const REFERRERS_NAMED: usize = 3;

/// The domains that reference the global domain's objects, asked before one goes: every domain
/// of the registry, through this server's replica of it, or else by asking a server that holds
/// one over the peer link.
pub struct DomainUsers {
    pub global: std::sync::Weak<Engine>,
    pub domains: std::sync::Weak<Domains>,
    /// The sync runtime that asks other servers, and the runtime it runs on.
    pub sync: std::sync::Weak<tokio::sync::RwLock<Option<mgha_sync::SyncRuntime>>>,
    pub handle: tokio::runtime::Handle,
}

impl DomainUsers {
    /// Asks the servers that hold `entry` (this one excepted), the first that answers.
    fn ask(&self, me: &str, entry: &Entry, uids: &[Uid]) -> mgha_core::Result<Vec<(Uid, Vec<String>)>> {
        let Some(sync) = self.sync.upgrade() else {
            return Err(unasked(entry, "this server runs without peers"));
        };
        let mut last = String::from("no other server holds it");
        for server in entry.replicas.iter().filter(|s| *s != me) {
            let asked = self.handle.block_on(async {
                match sync.read().await.as_ref() {
                    Some(runtime) => runtime.ask_uses(server, entry.id, uids.to_vec()).await,
                    None => Err(mgha_core::Error::Peer("this server runs without peers".into())),
                }
            });
            match asked {
                Ok(used) => return Ok(used),
                Err(e) => last = format!("{server}: {e}"),
            }
        }
        Err(unasked(entry, &last))
    }
}

/// Why a delete of global objects cannot be checked against domain `entry`.
fn unasked(entry: &Entry, why: &str) -> mgha_core::Error {
    mgha_core::Error::Peer(format!(
        "cannot tell whether domain '{}' uses the objects deleted: no server holding it answered ({why}); \
         try again once one of {} is reachable",
        entry.name,
        entry.replicas.join(", ")
    ))
}

impl DomainUsers {
    /// Who uses `uids` among the registry's domains: those with a replica here when `here`,
    /// else those without one (asked of a server that holds one).
    fn find(&self, uids: &[Uid], here: bool) -> mgha_core::Result<Vec<(Uid, String)>> {
        let (Some(global), Some(domains)) = (self.global.upgrade(), self.domains.upgrade()) else {
            return Ok(Vec::new());
        };
        let registry = registry(&global).map_err(|e| mgha_core::Error::Peer(e.to_string()))?;
        // The store's record, not `Engine::node`: this may run inside the global domain's
        // commit, under its role lock.
        let me = global.store().node()?.name;
        let mut used = Vec::new();
        for entry in &registry {
            let replica = domains.get(&entry.name).filter(|r| r.id == entry.id);
            let found: Vec<(Uid, Vec<String>)> = match (replica, here) {
                (Some(replica), true) => {
                    let store = replica.engine.store();
                    let mut found = Vec::new();
                    for uid in uids {
                        let by = store.referrers(uid, REFERRERS_NAMED)?;
                        if !by.is_empty() {
                            found.push((*uid, by));
                        }
                    }
                    found
                }
                (None, false) => self.ask(&me, entry, uids)?,
                _ => continue,
            };
            for (uid, by) in found {
                used.push((uid, format!("domain '{}' ({})", entry.name, by.join(", "))));
            }
        }
        Ok(used)
    }
}

impl mgha_core::store::Users for DomainUsers {
    fn users(&self, uids: &[Uid]) -> mgha_core::Result<Vec<(Uid, String)>> {
        self.find(uids, true)
    }

    /// Called by a publish from a plain thread or the blocking pool (every front end publishes
    /// there), never on the runtime's workers, which drive the answer over the network.
    fn users_elsewhere(&self, uids: &[Uid]) -> mgha_core::Result<Vec<(Uid, String)>> {
        self.find(uids, false)
    }
}

/// Gives `replica`'s page cache its share of the budget for `held` domains, when the share it
/// has is well off: a store opened while this server held few domains has a larger one, and
/// without this the shares of domains created one after the other add up to many times the
/// budget. A store that is busy now keeps its cache until a later registry change.
fn share_cache(replica: &Replica, held: usize) {
    let share = mgha_core::limits::domain_store_cache_bytes(held);
    let store = replica.engine.store();
    let has = store.cache_bytes();
    if has <= share + share / 2 && has >= share / 2 {
        return;
    }
    match store.resize_cache(share) {
        Ok(true) => tracing::debug!(domain = %replica.name, from = has, to = share, "resized the domain's page cache"),
        Ok(false) => {}
        Err(e) => tracing::warn!(domain = %replica.name, error = %e, "could not resize the domain's page cache"),
    }
}
