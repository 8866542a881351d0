//! The engine: a store plus what a running node adds to it: the role check (only the Active
//! publishes), admin sessions with object locks, and revision retention.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use crate::changeset::{ChangeInput, ChangeSet};
use crate::error::{Error, Result};
use crate::group_commit::{Flush, GroupCommit};
use crate::limits::AUTHOR_BYTES_MAX;
use crate::model::validate::validate_text;
use crate::model::{Object, Uid};
use crate::node::{Designation, NodeState, Role};
use crate::replication::{Detached, Replication};
use crate::revision::{Head, Revision};
use crate::roles::{Action as RoleAction, Event as RoleEvent, Refusal, RoleMachine};
use crate::session::{Seen, Sessions};
use crate::status::{FailoverStatus, PeerStatus, StoreFault, SyncStatus};
use crate::store::tables::name_key;
use crate::store::{CommitMeta, StorageFaults, Store, STORE_FILE};

mod health;
mod retention;
mod sessions;
mod users;

/// Where a full sync builds the incoming snapshot before it is swapped in.
pub const SNAPSHOT_FILE: &str = "mgha.redb.sync";

/// A snapshot of a node's state for `mgha status`.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Status {
    pub node: NodeState,
    pub head: Head,
    /// The newest purged revision (0 when nothing was purged).
    pub floor: Head,
    pub objects: u64,
    pub sessions: usize,
    /// The Active this node follows, when it is a Standby that knows it.
    pub active: Option<String>,
    pub peers: Vec<PeerStatus>,
    /// The damage the last full check or scrub found in the store, until one passes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub damage: Option<String>,
    /// Where a damaged store was set aside (`DIR/archive/…`) before a full sync healed it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub archived: Option<String>,
    /// Why the store cannot write, from a failed commit until one succeeds again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub store_fault: Option<StoreFault>,
    /// Automatic failover: the mode, the arbiter and its members (absent in manual mode).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failover: Option<FailoverStatus>,
}

/// Options of an engine.
#[derive(Clone, Debug)]
pub struct EngineOptions {
    /// Keep at least this many revisions; older ones are purged (purge runs every 64 revisions,
    /// so up to N + 63 are kept between purges). `None` keeps everything.
    pub retain_revisions: Option<u64>,
    /// Publish returns only after this many standbys durably applied the revision.
    pub sync_standbys: usize,
    /// How long a synchronous publish waits for its standbys.
    pub sync_timeout_ms: u64,
    /// An admin session unused for this long expires and releases its locks.
    pub session_idle_timeout_ms: u64,
    /// I/O errors injected into the store's writes and syncs, for tests of how a node survives
    /// a failing disk ([`StorageFaults`]); `None` (always, outside tests) reaches the file as is.
    pub storage_faults: Option<Arc<StorageFaults>>,
    /// The size of the store's page cache ([`crate::limits::STORE_CACHE_BYTES`] unless the node
    /// holds many domains: [`crate::limits::domain_store_cache_bytes`]).
    pub store_cache_bytes: usize,
    /// Local publishes become durable by an append to the store's publish log (one small
    /// sequential write), checkpointed into the store in the background of later publishes.
    /// `false` commits each flush to the store directly (for tests of the store's own writes).
    pub publish_log: bool,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            retain_revisions: None,
            sync_standbys: 0,
            sync_timeout_ms: 0,
            session_idle_timeout_ms: crate::session::SESSION_IDLE_TIMEOUT_MS_DEFAULT,
            storage_faults: None,
            store_cache_bytes: crate::limits::STORE_CACHE_BYTES,
            publish_log: true,
        }
    }
}

/// A node's engine. Shared between threads behind an `Arc`.
pub struct Engine {
    /// Swapped whole when a full sync installs a new snapshot; readers hold an `Arc`.
    store: RwLock<Arc<Store>>,
    dir: PathBuf,
    sessions: Mutex<Sessions>,
    options: EngineOptions,
    replication: Arc<dyn Replication>,
    roles: Mutex<RoleMachine>,
    /// What the last full check or scrub found damaged, if anything (`record_damage`).
    damage: Mutex<Option<String>>,
    /// Where the last damaged store was set aside (`set_archived`).
    archived: Mutex<Option<PathBuf>>,
    /// Local revisions committed but not yet durable, sharing one fsync (group_commit.rs).
    group: GroupCommit,
    /// The revisions kept ([`Engine::set_retain_revisions`]); 0 keeps every one. Starts as
    /// [`EngineOptions::retain_revisions`].
    retain: std::sync::atomic::AtomicU64,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Engine({})", self.dir.display())
    }
}

/// What to do about an Active (or a node alone) whose store fails its check at start: nothing
/// can heal it from a peer while it holds the role.
pub const DAMAGED_AT_START_HELP: &str = "This node is not a standby, so it cannot heal itself from an active. Either \
     restore the latest backup into a new directory (`mgha restore --in FILE --data-dir NEW`) and run the node from \
     there, or, in a cluster with a healthy standby, make that standby the active (`mgha changeover --force --yes` \
     on it), remove this member there (`mgha member remove NAME`) and join this node again as a standby into an \
     empty directory (`mgha join-key` on the primary, then `mgha join --name NAME ...`); keep this directory for \
     inspection.";

impl Engine {
    /// Creates a node's store in `dir` (created if missing).
    pub fn create(dir: &Path, node: &NodeState, options: EngineOptions) -> Result<Engine> {
        Engine::create_replicated(dir, node, options, Arc::new(Detached))
    }

    /// [`Engine::create`], with `replication` told of every commit and role change.
    pub fn create_replicated(
        dir: &Path,
        node: &NodeState,
        options: EngineOptions,
        replication: Arc<dyn Replication>,
    ) -> Result<Engine> {
        crate::private::create_dir(dir)?;
        let store =
            Store::create_with(&dir.join(STORE_FILE), node, options.storage_faults.clone(), options.store_cache_bytes)?;
        if options.publish_log {
            store.start_log()?;
        }
        Engine::with_store(dir, store, options, replication)
    }

    /// Opens the node in `dir`.
    pub fn open(dir: &Path, options: EngineOptions) -> Result<Engine> {
        Engine::open_replicated(dir, options, Arc::new(Detached))
    }

    /// [`Engine::open`], with `replication` told of every commit and role change.
    pub fn open_replicated(dir: &Path, options: EngineOptions, replication: Arc<dyn Replication>) -> Result<Engine> {
        // A full sync that a crash interrupted leaves its partial file behind.
        let partial = dir.join(SNAPSHOT_FILE);
        if partial.exists() {
            std::fs::remove_file(&partial)?;
        }
        let store = Store::open_with(&dir.join(STORE_FILE), options.storage_faults.clone(), options.store_cache_bytes)?;
        if options.publish_log {
            store.start_log()?;
        }
        // Every front end opens through here: nothing is served from a store whose head records
        // are damaged. A Standby opens anyway, serving none of its data, to heal by a full sync
        // from its Active; anything else is refused, saying what to do.
        let damaged = match store.quick_check() {
            Ok(_) => None,
            Err(e) if e.code() == crate::error::ErrorCode::Corrupt => match store.node() {
                Ok(node) if node.role == Role::Standby => {
                    tracing::error!(
                        error = %e,
                        "this standby's store failed its check at start: it serves no data and heals by a full \
                         sync from the active"
                    );
                    store.quarantine(&e.to_string());
                    Some(e)
                }
                _ => {
                    let found = match e {
                        Error::Corrupt(found) => found,
                        other => other.to_string(),
                    };
                    return Err(Error::Corrupt(format!("{found}. {DAMAGED_AT_START_HELP}")));
                }
            },
            Err(e) => return Err(e),
        };
        let engine = Engine::with_store(dir, store, options, replication)?;
        engine.record_damage(damaged.as_ref());
        Ok(engine)
    }

    fn with_store(
        dir: &Path,
        store: Store,
        options: EngineOptions,
        replication: Arc<dyn Replication>,
    ) -> Result<Engine> {
        replication.committed(None, store.head()?);
        let node = store.node()?;
        let roles = Mutex::new(RoleMachine::new(node.node_id, node.tag, node.role, node.epoch));
        Ok(Engine {
            roles,
            store: RwLock::new(Arc::new(store)),
            dir: dir.to_path_buf(),
            sessions: Mutex::new(Sessions::new(options.session_idle_timeout_ms)),
            retain: std::sync::atomic::AtomicU64::new(options.retain_revisions.unwrap_or(0)),
            options,
            replication,
            damage: Mutex::new(None),
            archived: Mutex::new(None),
            group: GroupCommit::default(),
        })
    }

    /// What replicates this engine ([`Detached`] when nothing does).
    pub fn replication(&self) -> &Arc<dyn Replication> {
        &self.replication
    }

    /// The current store. Hold the `Arc` only for the duration of one operation: a full sync
    /// replaces the store, and the old file is closed once its last holder lets go.
    pub fn store(&self) -> Arc<Store> {
        self.store.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// This node's record, with the role and epoch the role machine holds: the record may lag
    /// them when a step-down could not be written (`role_event`).
    pub fn node(&self) -> Result<NodeState> {
        let mut node = self.store().node()?;
        (node.role, node.epoch) = self.role();
        Ok(node)
    }

    pub fn status(&self) -> Result<Status> {
        Ok(Status {
            node: self.node()?,
            head: self.store().head()?,
            floor: self.store().floor()?,
            objects: self.store().count()?,
            sessions: self.lock_sessions().len(),
            active: self.replication.active_hint(),
            peers: self.peers_with_lag()?,
            damage: self.damage(),
            archived: self.archived().map(|p| p.display().to_string()),
            store_fault: self.store_fault(),
            failover: self.replication.failover(),
        })
    }

    /// The peer table with lag in revisions and milliseconds computed against our head.
    fn peers_with_lag(&self) -> Result<Vec<PeerStatus>> {
        let store = self.store();
        let head = store.head()?;
        let mut peers = self.replication.peers();
        let open_branches: Vec<Uid> =
            store.branches()?.into_iter().filter(|b| b.resolved.is_none()).map(|b| b.node_id).collect();
        for p in &mut peers {
            if open_branches.contains(&p.node_id) {
                // Shown until an administrator resolves the branch, whatever the peer's head.
                p.status = SyncStatus::Collision;
            }
            p.lag_revisions = head.seq.saturating_sub(p.head.seq);
            if p.status == SyncStatus::Lagging && p.head.seq > head.seq {
                // A Standby's entry for the Active it catches up with: the distance is ours.
                p.lag_revisions = p.head.seq - head.seq;
            }
            p.lag_ms = 0;
            if p.lag_revisions > 0 {
                if let Ok(oldest) = store.revision(p.head.seq + 1) {
                    p.lag_ms = crate::now_ms().saturating_sub(oldest.time_ms);
                }
            }
        }
        Ok(peers)
    }

    /// Publishes a changeset as one revision. Only the Active publishes, and not over an object
    /// that an admin session holds locked (`Locked`, naming the session and its author).
    pub fn publish(&self, author: &str, changeset: &ChangeSet) -> Result<Revision> {
        refuse_managed(&changeset.changes)?;
        self.publish_changes(author, changeset.clone(), None).map(Arc::unwrap_or_clone)
    }

    /// [`Engine::publish`] of a changeset the caller gives up: its fields become the objects'
    /// without a copy (a front end that parsed the changeset has no use for it after), and the
    /// revision comes back shared with replication rather than copied.
    pub fn publish_owned(&self, author: &str, changeset: ChangeSet) -> Result<Arc<Revision>> {
        refuse_managed(&changeset.changes)?;
        self.publish_changes(author, changeset, None)
    }

    /// Publishes a changeset that may write the types only the node writes
    /// ([`MANAGED_TYPES`](crate::model::schema::MANAGED_TYPES): the domain registry). For the
    /// node library, never for an admin's changeset.
    pub fn publish_managed(&self, author: &str, changeset: &ChangeSet) -> Result<Revision> {
        self.publish_changes(author, changeset.clone(), None).map(Arc::unwrap_or_clone)
    }

    /// Publishes `changeset`, on behalf of session `session` when there is one: the locks of
    /// that session do not stand in its way, and every object it staged must be as it was when
    /// staged. Both checks run under the role lock, which every local commit holds, so nothing
    /// can commit between them and the commit.
    fn publish_changes(&self, author: &str, changeset: ChangeSet, session: Option<u64>) -> Result<Arc<Revision>> {
        changeset.check()?;
        self.check_users_elsewhere(&changeset.changes)?;
        let ChangeSet { message, changes } = changeset;
        self.publish_shared(author, &message, |store, meta| {
            self.check_unlocked(store, &changes, session)?;
            if let Some(id) = session {
                self.check_unchanged(store, id)?;
            }
            store.publish_owned(meta, changes)
        })
    }

    /// The locks a change takes (its name key, and the uid of the object it names when that
    /// exists) and what its object is now: its lock key with its hash, or its name key and
    /// `None` when it does not exist yet.
    fn change_locks(&self, store: &Store, change: &ChangeInput) -> Result<(Vec<String>, Seen)> {
        let type_name = change.type_name();
        let (name, uid) = match change {
            ChangeInput::Put { name, uid, .. } => (Some(name.as_str()), uid.as_deref()),
            ChangeInput::Delete { name, uid, .. } => (name.as_deref(), uid.as_deref()),
        };
        let mut keys = Vec::new();
        let mut existing = None;
        if let Some(n) = name {
            keys.push(name_key(type_name, n));
            if let Ok(o) = store.get(type_name, n) {
                keys.push(uid_lock_key(&o.uid));
                existing = Some(o);
            }
        }
        if let Some(u) = uid.and_then(Uid::parse) {
            keys.push(uid_lock_key(&u));
            if existing.is_none() {
                existing = store.get_by_uid(&u)?.filter(|o| o.type_name == type_name);
            }
        }
        let seen = match (existing, name) {
            (Some(o), _) => (uid_lock_key(&o.uid), Some(o.hash())),
            (None, Some(n)) => (name_key(type_name, n), None),
            (None, None) => match keys.first() {
                Some(k) => (k.clone(), None),
                None => {
                    return Err(Error::InvalidChangeset(format!("{}: name the object by name or uid", change.label())))
                }
            },
        };
        Ok((keys, seen))
    }

    /// `Locked` if a session other than `except` holds a lock on an object `changes` touch.
    fn check_unlocked(&self, store: &Store, changes: &[ChangeInput], except: Option<u64>) -> Result<()> {
        if !self.lock_sessions().has_locks(except) {
            return Ok(());
        }
        for change in changes {
            // A change that names nothing is refused by the publish itself.
            let Ok((keys, _)) = self.change_locks(store, change) else {
                continue;
            };
            self.check_keys_unlocked(&change.label(), keys.iter().map(String::as_str), except)?;
        }
        Ok(())
    }

    fn check_keys_unlocked<'a>(
        &self,
        label: &str,
        keys: impl Iterator<Item = &'a str>,
        except: Option<u64>,
    ) -> Result<()> {
        let mut sessions = self.lock_sessions();
        for key in keys {
            if let Some((session, owner)) = sessions.holder(key, except) {
                return Err(Error::Locked { object: label.to_string(), session, owner });
            }
        }
        Ok(())
    }

    /// `Locked` if a session holds a lock on an object that resolved versions would change (by
    /// uid, or by the name a created or renamed object takes): revert and collision resolution.
    pub(crate) fn check_targets_unlocked<'a>(
        &self,
        targets: impl Iterator<Item = (&'a Uid, Option<&'a Object>)>,
    ) -> Result<()> {
        if !self.lock_sessions().has_locks(None) {
            return Ok(());
        }
        for (uid, after) in targets {
            let uid_key = uid_lock_key(uid);
            let name = after.map(|o| name_key(&o.type_name, &o.name));
            let label = after.map(|o| format!("{} '{}'", o.type_name, o.name)).unwrap_or_else(|| uid.to_string());
            self.check_keys_unlocked(&label, std::iter::once(uid_key.as_str()).chain(name.as_deref()), None)?;
        }
        Ok(())
    }

    /// `Stale` if an object that session `id` staged changed since it was staged.
    fn check_unchanged(&self, store: &Store, id: u64) -> Result<()> {
        let seen = self.lock_sessions().get(id)?.seen.clone();
        for (key, then) in seen {
            let (label, now) = match key.strip_prefix("uid:").and_then(Uid::parse) {
                Some(uid) => {
                    let o = store.get_by_uid(&uid)?;
                    let label =
                        o.as_ref().map(|o| format!("{} '{}'", o.type_name, o.name)).unwrap_or_else(|| key.clone());
                    (label, o.map(|o| o.hash()))
                }
                None => {
                    let (t, n) = key.split_once('\0').unwrap_or((key.as_str(), ""));
                    (format!("{t} '{n}'"), store.get(t, n).ok().map(|o| o.hash()))
                }
            };
            if now != then {
                return Err(Error::Stale { object: label, session: id });
            }
        }
        Ok(())
    }

    /// Runs one local commit under the role lock: the role machine must accept the publish, and
    /// no changeover can start until the commit is done, so a handover never misses a revision
    /// (a role change first makes every committed revision durable and announced: see
    /// `role_event`). The commit itself does not wait for the disk; the role lock is released
    /// and the publish then waits for a flush that concurrent publishes share (group commit),
    /// so it is acknowledged, and replicated, only once durable.
    pub(crate) fn publish_with(
        &self,
        author: &str,
        message: &str,
        commit: impl FnOnce(&Store, &CommitMeta) -> Result<Revision>,
    ) -> Result<Revision> {
        self.publish_shared(author, message, commit).map(Arc::unwrap_or_clone)
    }

    /// [`Engine::publish_with`], giving the revision as replication holds it: copied by
    /// whoever needs it to themselves, not here (a revision can hold thousands of objects).
    fn publish_shared(
        &self,
        author: &str,
        message: &str,
        commit: impl FnOnce(&Store, &CommitMeta) -> Result<Revision>,
    ) -> Result<Arc<Revision>> {
        if author.len() > AUTHOR_BYTES_MAX {
            return Err(Error::TooLarge { what: "author".into(), size: author.len(), max: AUTHOR_BYTES_MAX });
        }
        validate_text("author", author)?;
        validate_text("message", message)?;
        let (rev, ticket) = {
            let roles = self.lock_roles();
            if let Err(refusal) = roles.may_publish(crate::mono_ms()) {
                return Err(self.refusal_error(refusal));
            }
            let meta = CommitMeta {
                author: author.into(),
                message: message.into(),
                epoch: roles.epoch,
                time_ms: crate::now_ms(),
            };
            let store = self.store();
            let rev =
                Store::deferring_durability(|| commit(&store, &meta)).inspect_err(|e| self.after_failed_commit(e))?;
            let rev = Arc::new(rev);
            let ticket = self.group.committed(rev.clone(), store.reopens());
            (rev, ticket)
        };
        self.group.wait_durable(ticket, self)?;
        self.wait_standbys(rev.seq)?;
        Ok(rev)
    }

    fn refusal_error(&self, refusal: Refusal) -> Error {
        match refusal {
            Refusal::Standby => Error::ReadOnly { active: self.replication.active_hint() },
            Refusal::LeaseExpired => Error::Fenced,
            Refusal::HandingOver { target } => {
                // The target of a handover is a connected peer, so the peer table names it.
                let name = self
                    .replication
                    .peers()
                    .into_iter()
                    .find(|p| p.node_id == target && !p.name.is_empty())
                    .map(|p| p.name)
                    .unwrap_or_else(|| target.to_string());
                Error::ChangeoverInProgress { target: name }
            }
        }
    }

    fn lock_roles(&self) -> std::sync::MutexGuard<'_, RoleMachine> {
        // The machine is only replaced whole (see role_event), so a poisoned lock holds a
        // consistent state.
        self.roles.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The current role and epoch, as the role machine holds them.
    pub fn role(&self) -> (Role, u64) {
        let m = self.lock_roles();
        (m.role, m.epoch)
    }

    /// Puts publishing under an arbiter's lease (automatic failover): from now on the Active
    /// publishes only until the lease the failover driver renews runs out.
    pub fn set_arbitrated(&self) {
        let mut m = self.lock_roles();
        if m.lease_until_ms.is_none() {
            m.lease_until_ms = Some(0);
        }
    }

    /// The role machine's state (for status and tests).
    pub fn role_machine(&self) -> RoleMachine {
        self.lock_roles().clone()
    }

    /// [`Engine::role_event`] for a lease renewal (every heartbeat of every Active domain) when
    /// it can be done at once, without waiting or writing: the role lock is free and the renewal
    /// changes neither role nor epoch. A renewal only moves the lease, so it needs no flush of
    /// what was committed before it. Any other event may (a planned changeover starts from the
    /// head every committed revision is in), so it gets `None`, as does a renewal that would
    /// change more: the caller then runs [`Engine::role_event`], off the async workers.
    pub fn role_event_at_once(&self, event: &RoleEvent) -> Option<Vec<RoleAction>> {
        if !matches!(event, RoleEvent::Renewed { .. }) {
            return None;
        }
        let mut guard = match self.roles.try_lock() {
            Ok(g) => g,
            Err(std::sync::TryLockError::Poisoned(p)) => p.into_inner(),
            Err(std::sync::TryLockError::WouldBlock) => return None,
        };
        let mut next = guard.clone();
        let actions = next.handle(event.clone());
        let persists = actions.iter().any(|a| matches!(a, RoleAction::Persist { .. }));
        if persists || (guard.role, guard.epoch) != (next.role, next.epoch) {
            return None;
        }
        *guard = next;
        Some(actions)
    }

    /// Feeds the role machine, durably records any new role and epoch before the change takes
    /// effect, and returns the actions for the caller (the sync runtime) to carry out.
    pub fn role_event(&self, event: RoleEvent) -> Result<Vec<RoleAction>> {
        let mut guard = self.lock_roles();
        // No revision committed under the old role may be announced after the change.
        self.group.flush_all(self)?;
        let mut next = guard.clone();
        let actions = next.handle(event);
        for a in &actions {
            if let RoleAction::Persist { role, epoch } = a {
                let store = self.store();
                let persisted = store.node().and_then(|mut node| {
                    node.role = *role;
                    node.epoch = *epoch;
                    store.set_node(&node)
                });
                if let Err(e) = persisted {
                    // A node whose store cannot write (a full disk) cannot record a step-down
                    // (or a Standby a higher epoch) either. Being a Standby is safe unrecorded: it
                    // publishes nothing; after a restart an arbitrated node publishes nothing
                    // until the arbiter confirms it, and any node meets the higher epoch again.
                    let step_down = *role == Role::Standby && *epoch >= guard.epoch;
                    if !(step_down && store.fault().is_some()) {
                        return Err(e);
                    }
                    tracing::error!(error = %e, "stepping down without recording it: the store cannot write");
                }
            }
        }
        let changed = (guard.role, guard.epoch) != (next.role, next.epoch);
        *guard = next;
        drop(guard);
        if changed {
            let (role, epoch) = self.role();
            tracing::info!(%role, epoch = %crate::roles::machine::epoch::display(epoch), "role changed");
            self.replication.role_changed(role, epoch);
        }
        Ok(actions)
    }

    /// With `sync_standbys = N`, waits until N standbys acknowledged `seq`.
    fn wait_standbys(&self, seq: u64) -> Result<()> {
        let needed = self.options.sync_standbys;
        if needed == 0 {
            return Ok(());
        }
        let timeout = std::time::Duration::from_millis(self.options.sync_timeout_ms.max(1));
        let acked = self.replication.wait_acks(seq, needed, timeout);
        if acked < needed {
            return Err(Error::NotReplicated { seq, acked, needed });
        }
        Ok(())
    }

    /// Applies a revision received from the Active (Standby side).
    pub fn apply_replicated(&self, rev: Revision) -> Result<Head> {
        self.apply_replicated_batch(vec![rev])
    }

    /// Applies a run of revisions received from the Active in one durable commit (Standby
    /// side); returns the head after the last. Nothing is reported before it is durable.
    pub fn apply_replicated_batch(&self, revs: Vec<Revision>) -> Result<Head> {
        let first = revs.first().map(|r| r.seq);
        let mut applied = self.store().apply_replicated_batch(revs).inspect_err(|e| self.after_failed_commit(e))?;
        let last = applied.pop().ok_or_else(|| Error::InvalidArgument("no revision to apply".into()))?;
        let head = last.head();
        self.replication.committed(Some(Arc::new(last)), head);
        // A Standby keeps the history its retention says, as its Active does: without this its
        // store grew by every revision ever published.
        self.purge_if_due(first.unwrap_or(head.seq)..=head.seq);
        Ok(head)
    }

    /// Publishes each change set as its own revision, in order, with one durable commit for
    /// all of them: a bulk import that keeps one revision per change set. All or nothing; not
    /// for plugins. Admin sessions' locks are respected as by [`Engine::publish`].
    pub fn publish_batch(&self, author: &str, changesets: &[ChangeSet]) -> Result<Vec<Revision>> {
        for c in changesets {
            c.check()?;
            refuse_managed(&c.changes)?;
            self.check_users_elsewhere(&c.changes)?;
            validate_text("message", &c.message)?;
        }
        let mut revs = Vec::new();
        let last = self.publish_with(author, "", |store, meta| {
            for c in changesets {
                self.check_unlocked(store, &c.changes, None)?;
            }
            revs = store.publish_batch(meta, changesets)?;
            revs.pop().ok_or(Error::EmptyChangeset)
        })?;
        revs.push(last);
        Ok(revs)
    }

    /// Swaps in a snapshot built by a full sync: the file replaces the live store atomically
    /// (rename), and this node keeps its own identity and role.
    pub fn install_snapshot(&self, snapshot: &Path) -> Result<Head> {
        let mut guard = self.store.write().unwrap_or_else(|p| p.into_inner());
        {
            let incoming = Store::open_with(snapshot, self.options.storage_faults.clone(), guard.cache_bytes())?;
            guard.copy_local_meta(&incoming)?;
        }
        // The log beside the file is the live store's: emptied, it passes to the new one.
        guard.retire_log()?;
        let live = self.dir.join(STORE_FILE);
        std::fs::rename(snapshot, &live)?;
        std::fs::File::open(&self.dir)?.sync_all()?;
        let store = Store::open_with(&live, self.options.storage_faults.clone(), guard.cache_bytes())?;
        let (globals, users) = guard.globals();
        store.set_globals(globals, users);
        let head = store.head()?;
        *guard = Arc::new(store);
        drop(guard);
        // A new store: damage found in the one it replaced is history (kept in DIR/archive/).
        if let Some(found) = self.damage() {
            tracing::warn!(damage = %found, "healed: the damaged store was replaced by a full sync");
        }
        self.record_damage(None);
        self.replication.committed(None, head);
        Ok(head)
    }

    /// Makes this node the Primary or a Secondary. Held under the role lock, as role changes
    /// are, so a role event cannot interleave with this read-modify-write of the node record and
    /// lose its role or epoch. Returns the node record as written.
    pub fn set_designation(&self, designation: Designation) -> Result<NodeState> {
        let _roles = self.lock_roles();
        let store = self.store();
        let mut node = store.node()?;
        if node.designation == designation {
            return Err(Error::InvalidArgument(format!("this node is already the {designation}")));
        }
        node.designation = designation;
        store.set_node(&node)?;
        Ok(node)
    }

    /// Publishes a revision that restores the state after revision `to`.
    pub fn revert(&self, author: &str, to: u64) -> Result<Revision> {
        // What did not exist at `to` goes: the databases held elsewhere are asked first, as for
        // a publish's deletes (those held here are asked inside the commit).
        if let Ok(span) = self.store().changed_since(to) {
            let deleted = span
                .iter()
                .filter_map(|(uid, then, now)| match (then, now) {
                    (None, Some(o)) => Some((*uid, o.type_name.as_str(), o.name.clone())),
                    _ => None,
                })
                .collect();
            self.check_deleted_elsewhere(deleted)?;
        }
        self.publish_with(author, &format!("revert to revision {to}"), |store, meta| {
            // What the revert restores; an unknown or purged revision is refused by the revert.
            if let Ok(span) = store.changed_since(to) {
                self.check_targets_unlocked(span.iter().map(|(uid, before, _)| (uid, before.as_ref())))?;
            }
            store.revert(to, meta)
        })
    }

    /// Tells replication of a local revision once it is durable, and purges old ones.
    fn after_publish(&self, rev: Arc<Revision>) {
        let seq = rev.seq;
        let head = rev.head();
        self.replication.committed(Some(rev), head);
        self.purge_if_due(seq..=seq);
    }
}

/// Refuses changes to a type only the node writes, naming it and what writes it.
fn refuse_managed(changes: &[ChangeInput]) -> Result<()> {
    match changes.iter().map(ChangeInput::type_name).find(|t| crate::model::schema::MANAGED_TYPES.contains(t)) {
        Some(t) => Err(Error::InvalidArgument(format!(
            "objects of type '{t}' are the cluster's domain registry: they change only through `mgha domain` (the \
             domain API), not through a changeset"
        ))),
        None => Ok(()),
    }
}

/// The lock key of an existing object, by its uid (a rename does not free it).
fn uid_lock_key(uid: &Uid) -> String {
    format!("uid:{uid}")
}

/// The engine's side of group commit: the flush is an append to the store's publish log (or a
/// checkpoint of the store), and a
/// revision made durable is announced to replication, in commit order.
impl Flush for Engine {
    fn flush(&self, batch: &[Arc<Revision>], committed_at: u64) -> Result<()> {
        self.store().make_durable(batch, committed_at)
    }

    fn announce(&self, batch: &[Arc<Revision>]) {
        for rev in batch {
            self.after_publish(rev.clone());
        }
    }

    fn reopens(&self) -> u64 {
        self.store().reopens()
    }

    fn failed(&self, e: &Error) {
        self.after_failed_commit(e);
    }
}
