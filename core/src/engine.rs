//! The engine: a store plus what a running node adds to it: the role check (only the Active
//! publishes), admin sessions with object locks, and revision retention.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use crate::changeset::{ChangeInput, ChangeSet};
use crate::error::{Error, Result};
use crate::limits::{AUTHOR_BYTES_MAX, OBJECT_BYTES_MAX};
use crate::model::{Object, Uid};
use crate::node::{NodeState, Role};
use crate::revision::{Head, Revision};
use crate::roles::{Action as RoleAction, Event as RoleEvent, Refusal, RoleMachine};
use crate::session::Sessions;
use crate::store::tables::name_key;
use crate::store::{CommitMeta, Store, STORE_FILE};
use crate::sync::state::{PeerStatus, SyncState};

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
    /// Automatic failover: the mode, the arbiter and its members (absent in manual mode).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failover: Option<crate::failover::FailoverStatus>,
}

/// Options of an engine.
#[derive(Clone, Debug, Default)]
pub struct EngineOptions {
    /// Keep at least this many revisions; older ones are purged (purge runs every 64 revisions,
    /// so up to N + 63 are kept between purges). `None` keeps everything.
    pub retain_revisions: Option<u64>,
    /// Publish returns only after this many standbys durably applied the revision.
    pub sync_standbys: usize,
    /// How long a synchronous publish waits for its standbys.
    pub sync_timeout_ms: u64,
}

/// A node's engine. Shared between threads behind an `Arc`.
pub struct Engine {
    /// Swapped whole when a full sync installs a new snapshot; readers hold an `Arc`.
    store: RwLock<Arc<Store>>,
    dir: PathBuf,
    sessions: Mutex<Sessions>,
    options: EngineOptions,
    sync: SyncState,
    roles: Mutex<RoleMachine>,
    /// What the last full check or scrub found damaged, if anything (`record_damage`).
    damage: Mutex<Option<String>>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Engine({})", self.dir.display())
    }
}

/// Purge runs at most once per this many revisions, so it stays off the hot path.
const PURGE_EVERY_REVISIONS: u64 = 64;

impl Engine {
    /// Creates a node's store in `dir` (created if missing).
    pub fn create(dir: &Path, node: &NodeState, options: EngineOptions) -> Result<Engine> {
        crate::private::create_dir(dir)?;
        let store = Store::create(&dir.join(STORE_FILE), node)?;
        Engine::with_store(dir, store, options)
    }

    /// Opens the node in `dir`.
    pub fn open(dir: &Path, options: EngineOptions) -> Result<Engine> {
        // A full sync that a crash interrupted leaves its partial file behind.
        let partial = dir.join(SNAPSHOT_FILE);
        if partial.exists() {
            std::fs::remove_file(&partial)?;
        }
        let store = Store::open(&dir.join(STORE_FILE))?;
        // Every front end opens through here: a store whose head records are damaged is refused
        // before anything is served from it.
        store.quick_check()?;
        Engine::with_store(dir, store, options)
    }

    fn with_store(dir: &Path, store: Store, options: EngineOptions) -> Result<Engine> {
        let sync = SyncState::new(store.head()?);
        let node = store.node()?;
        let roles = Mutex::new(RoleMachine::new(node.node_id, node.tag, node.role, node.epoch));
        Ok(Engine {
            roles,
            store: RwLock::new(Arc::new(store)),
            dir: dir.to_path_buf(),
            sessions: Mutex::default(),
            options,
            sync,
            damage: Mutex::new(None),
        })
    }

    /// Records what a full check or the scrub found: damage (an error with code `corrupt`) is
    /// logged and shown by status and metrics until a later check or scrub pass finds none
    /// (`None`). Other errors (a busy disk, say) say nothing about the store and change nothing.
    pub fn record_damage(&self, found: Option<&Error>) {
        let mut damage = self.damage.lock().unwrap_or_else(|p| p.into_inner());
        match found {
            Some(e) if e.code() == crate::error::ErrorCode::Corrupt => {
                tracing::error!(error = %e, "the store is damaged");
                *damage = Some(e.to_string());
            }
            Some(_) => {}
            None => *damage = None,
        }
    }

    /// The damage the last full check or scrub found, until one passes.
    pub fn damage(&self) -> Option<String> {
        self.damage.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// A full check of the store ([`Store::check`]), its outcome recorded for status and metrics.
    pub fn check(&self) -> Result<crate::store::CheckReport> {
        let report = self.store().check();
        self.record_damage(report.as_ref().err());
        report
    }

    /// Replication state shared with the sync runtime.
    pub fn sync(&self) -> &SyncState {
        &self.sync
    }

    /// The current store. Hold the `Arc` only for the duration of one operation: a full sync
    /// replaces the store, and the old file is closed once its last holder lets go.
    pub fn store(&self) -> Arc<Store> {
        self.store.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn node(&self) -> Result<NodeState> {
        self.store().node()
    }

    pub fn status(&self) -> Result<Status> {
        Ok(Status {
            node: self.store().node()?,
            head: self.store().head()?,
            floor: self.store().floor()?,
            objects: self.store().count()?,
            sessions: self.lock_sessions().len(),
            active: self.sync.active_hint(),
            peers: self.peers_with_lag()?,
            damage: self.damage(),
            failover: self.sync.failover(),
        })
    }

    /// The peer table with lag in revisions and milliseconds computed against our head.
    fn peers_with_lag(&self) -> Result<Vec<PeerStatus>> {
        let store = self.store();
        let head = store.head()?;
        let mut peers = self.sync.peers();
        let open_branches: Vec<Uid> =
            store.branches()?.into_iter().filter(|b| b.resolved.is_none()).map(|b| b.node_id).collect();
        for p in &mut peers {
            if open_branches.contains(&p.node_id) {
                // Shown until an administrator resolves the branch, whatever the peer's head.
                p.status = crate::sync::plan::SyncStatus::Collision;
            }
            p.lag_revisions = head.seq.saturating_sub(p.head.seq);
            p.lag_ms = 0;
            if p.lag_revisions > 0 {
                if let Ok(oldest) = store.revision(p.head.seq + 1) {
                    p.lag_ms = crate::now_ms().saturating_sub(oldest.time_ms);
                }
            }
        }
        Ok(peers)
    }

    /// Publishes a changeset as one revision. Only the Active publishes.
    pub fn publish(&self, author: &str, changeset: &ChangeSet) -> Result<Revision> {
        changeset.check()?;
        self.publish_with(author, &changeset.message, |store, meta| store.publish(meta, &changeset.changes))
    }

    /// Runs one local commit under the role lock: the role machine must accept the publish, and
    /// no changeover can start until the commit is done, so a handover never misses a revision.
    pub(crate) fn publish_with(
        &self,
        author: &str,
        message: &str,
        commit: impl FnOnce(&Store, &CommitMeta) -> Result<Revision>,
    ) -> Result<Revision> {
        if author.len() > AUTHOR_BYTES_MAX {
            return Err(Error::TooLarge { what: "author".into(), size: author.len(), max: AUTHOR_BYTES_MAX });
        }
        let rev = {
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
            let rev = commit(&self.store(), &meta)?;
            self.after_publish(&rev);
            rev
        };
        self.wait_standbys(rev.seq)?;
        Ok(rev)
    }

    fn refusal_error(&self, refusal: Refusal) -> Error {
        match refusal {
            Refusal::Standby => Error::ReadOnly { active: self.sync.active_hint() },
            Refusal::LeaseExpired => Error::Fenced,
            Refusal::HandingOver { target } => {
                let name = crate::sync::membership::members(&self.store())
                    .ok()
                    .and_then(|m| m.into_iter().find(|m| m.node_id == target).map(|m| m.name))
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

    /// Feeds the role machine, durably records any new role and epoch before the change takes
    /// effect, and returns the actions for the caller (the sync runtime) to carry out.
    pub fn role_event(&self, event: RoleEvent) -> Result<Vec<RoleAction>> {
        let mut guard = self.lock_roles();
        let mut next = guard.clone();
        let actions = next.handle(event);
        for a in &actions {
            if let RoleAction::Persist { role, epoch } = a {
                let store = self.store();
                let mut node = store.node()?;
                node.role = *role;
                node.epoch = *epoch;
                store.set_node(&node)?;
            }
        }
        let changed = (guard.role, guard.epoch) != (next.role, next.epoch);
        *guard = next;
        drop(guard);
        if changed {
            let (role, epoch) = self.role();
            tracing::info!(%role, epoch = %crate::roles::machine::epoch::display(epoch), "role changed");
            self.sync.role_changed(role, epoch);
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
        let acked = self.sync.wait_acks(seq, needed, timeout);
        if acked < needed {
            return Err(Error::NotReplicated { seq, acked, needed });
        }
        Ok(())
    }

    /// Applies a revision received from the Active (Standby side).
    pub fn apply_replicated(&self, rev: Revision) -> Result<Head> {
        let head = self.store().apply_replicated(&rev)?;
        self.sync.committed(Some(Arc::new(rev)), head);
        Ok(head)
    }

    /// Swaps in a snapshot built by a full sync: the file replaces the live store atomically
    /// (rename), and this node keeps its own identity and role.
    pub fn install_snapshot(&self, snapshot: &Path) -> Result<Head> {
        let mut guard = self.store.write().unwrap_or_else(|p| p.into_inner());
        {
            let incoming = Store::open(snapshot)?;
            guard.copy_local_meta(&incoming)?;
        }
        let live = self.dir.join(STORE_FILE);
        std::fs::rename(snapshot, &live)?;
        std::fs::File::open(&self.dir)?.sync_all()?;
        let store = Store::open(&live)?;
        let head = store.head()?;
        *guard = Arc::new(store);
        drop(guard);
        self.sync.committed(None, head);
        Ok(head)
    }

    /// Persists a new node state (role, epoch).
    pub fn set_node(&self, node: &NodeState) -> Result<()> {
        self.store().set_node(node)
    }

    /// Publishes a revision that restores the state after revision `to`.
    pub fn revert(&self, author: &str, to: u64) -> Result<Revision> {
        self.publish_with(author, &format!("revert to revision {to}"), |store, meta| store.revert(to, meta))
    }

    fn after_publish(&self, rev: &Revision) {
        self.sync.committed(Some(Arc::new(rev.clone())), rev.head());
        if let Some(keep) = self.options.retain_revisions {
            if rev.seq.is_multiple_of(PURGE_EVERY_REVISIONS) {
                if let Err(e) = self.store().purge(keep) {
                    tracing::warn!(error = %e, "purge of old revisions failed; will retry");
                }
            }
        }
    }

    fn lock_sessions(&self) -> std::sync::MutexGuard<'_, Sessions> {
        // A panic while holding the lock leaves the table consistent (every method updates it
        // after its checks), so a poisoned lock is still usable.
        self.sessions.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Opens an admin session for `author`. A Standby refuses at once (`ReadOnly`, naming the
    /// Active when known): its sessions could never publish. An Active that cannot publish for
    /// the moment (its lease lapsed, a changeover running) still opens one; its publish waits
    /// for the role check.
    pub fn session_open(&self, author: &str) -> Result<u64> {
        if author.len() > AUTHOR_BYTES_MAX {
            return Err(Error::TooLarge { what: "author".into(), size: author.len(), max: AUTHOR_BYTES_MAX });
        }
        self.refuse_on_standby()?;
        self.lock_sessions().open(author)
    }

    /// `ReadOnly` on a Standby, for the writes that would otherwise only fail at their publish.
    pub(crate) fn refuse_on_standby(&self) -> Result<()> {
        match self.role().0 {
            Role::Standby => Err(self.refusal_error(Refusal::Standby)),
            Role::Active => Ok(()),
        }
    }

    /// Stages a put or delete in a session, locking the object against other sessions. A put
    /// whose object (as written) is over [`OBJECT_BYTES_MAX`], or that would take the session
    /// past [`SESSION_CHANGES_MAX`](crate::limits::SESSION_CHANGES_MAX) changes or
    /// [`SESSION_BYTES_MAX`](crate::limits::SESSION_BYTES_MAX) of staged objects, is refused
    /// here (`TooLarge`), not at publish; what the session holds stays staged.
    pub fn session_stage(&self, id: u64, change: ChangeInput) -> Result<()> {
        let type_name = change.type_name().to_string();
        if self.store().schemas().get(&type_name).is_none() {
            return Err(Error::UnknownType(type_name));
        }
        let bytes = match &change {
            ChangeInput::Put { type_name, name, fields, .. } => Object::encoded_len(type_name, name, fields),
            ChangeInput::Delete { .. } => 0,
        };
        if bytes > OBJECT_BYTES_MAX {
            return Err(Error::TooLarge { what: change.label(), size: bytes, max: OBJECT_BYTES_MAX });
        }
        let (name, uid) = match &change {
            ChangeInput::Put { name, uid, .. } => (Some(name.clone()), uid.clone()),
            ChangeInput::Delete { name, uid, .. } => (name.clone(), uid.clone()),
        };
        let mut keys = Vec::new();
        if let Some(n) = &name {
            keys.push(name_key(&type_name, n));
            if let Ok(existing) = self.store().get(&type_name, n) {
                keys.push(format!("uid:{}", existing.uid));
            }
        }
        if let Some(u) = uid.as_deref().and_then(Uid::parse) {
            keys.push(format!("uid:{u}"));
        }
        if keys.is_empty() {
            return Err(Error::InvalidChangeset(format!("{}: name the object by name or uid", change.label())));
        }
        self.lock_sessions().stage(id, change, keys, bytes)
    }

    /// The changes staged in a session.
    pub fn session_changes(&self, id: u64) -> Result<Vec<ChangeInput>> {
        Ok(self.lock_sessions().get(id)?.changes.clone())
    }

    /// Publishes a session's changes as one revision and closes it. On a validation error the
    /// session stays open so the admin can fix it.
    pub fn session_publish(&self, id: u64, message: &str) -> Result<Revision> {
        let (author, changes) = {
            let sessions = self.lock_sessions();
            let s = sessions.get(id)?;
            (s.author.clone(), s.changes.clone())
        };
        let rev = self.publish(&author, &ChangeSet { message: message.into(), changes })?;
        self.lock_sessions().close(id)?;
        Ok(rev)
    }

    /// Drops a session's changes and releases its locks.
    pub fn session_discard(&self, id: u64) -> Result<()> {
        self.lock_sessions().close(id).map(|_| ())
    }
}
