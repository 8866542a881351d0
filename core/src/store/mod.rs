//! The redb-backed revisioned store: objects, names and references indexes, the revision log
//! with undo records, and node state. Every publish is one redb write transaction committed with
//! immediate durability before it is acknowledged; reads use MVCC snapshots, so diffs, listings
//! and online backups go on while publishes commit.

mod branches;
mod check;
mod commit;
mod cycles;
mod fault;
mod globals;
pub(crate) mod history;
mod inject;
mod plugins;
mod publish_log;
mod read;
pub mod record;
mod replica;
mod scrub;
mod snapshot;
mod space;
pub mod tables;

use redb::{Database, ReadableTable};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use crate::error::{Error, Result};
use crate::limits::STORE_CACHE_BYTES;
use crate::model::{Hash, Object, Schemas, Uid};
use crate::node::NodeState;
use crate::plugin::{PluginLimits, PluginRegistry};
use crate::revision::{Head, Revision};
use tables::*;

pub use branches::{Branch, Resolution as BranchResolution};
pub use check::CheckReport;
pub use commit::{CommitMeta, Target};
pub use fault::write_fault_kind;
pub(crate) use globals::Origin;
pub use globals::{Globals, Users};
pub use inject::StorageFaults;
pub use publish_log::log_path;
pub use scrub::{ScrubBatch, ScrubCursor};
pub use snapshot::{HistoryRecord, SnapshotBuilder, SnapshotInfo, SnapshotPart};
pub use space::{SpaceReport, TableSpace};

/// File name of the database inside a data directory.
pub const STORE_FILE: &str = "mgha.redb";

/// The revisioned configuration store of one node.
pub struct Store {
    /// `None` while closed: a failed write closed it and reopening failed (see `fault.rs`).
    db: RwLock<Option<Database>>,
    path: PathBuf,
    /// The known types and loaded plugins; swapped whole after a revision changes plugins.
    plugins: RwLock<Arc<PluginRegistry>>,
    /// Set when the storage engine panicked inside an operation: it met a damaged page that
    /// its own checks missed. From then on the store takes no writes (see [`Store::guard`]).
    broken: Mutex<Option<String>>,
    /// The last write failure, until a commit succeeds again.
    fault: Mutex<fault::FaultState>,
    /// Held by every write transaction and by a reopen (see `fault.rs`).
    writer: fault::WriterLock,
    /// Reopens so far (`fault.rs`): a commit not durable before one may be lost.
    reopens: std::sync::atomic::AtomicU64,
    /// Faults injected into the file's writes and syncs (`inject.rs`), kept across reopens.
    faults: Option<Arc<StorageFaults>>,
    /// The size of redb's page cache, kept across reopens ([`Store::resize_cache`] changes it).
    cache_bytes: std::sync::atomic::AtomicUsize,
    /// Read transactions alive now (`fault.rs`): a cache resize waits until there are none.
    live_reads: std::sync::atomic::AtomicUsize,
    /// Set when the store failed its quick check at open and was opened anyway, on a Standby
    /// that heals by a full sync: its data is not served ([`Store::quarantine`]).
    quarantine: Mutex<Option<String>>,
    is_quarantined: std::sync::atomic::AtomicBool,
    /// Write failures recorded so far (`fault.rs`), so that an operation records its own
    /// failure once (`guard`) without taking the fault lock on every operation.
    faults_recorded: std::sync::atomic::AtomicU64,
    /// Whether the file records this build's [`FORMAT_VERSION`], as of its open: a format 2
    /// store does not until a commit marks it (`commit.rs`), and only then need commits touch it.
    format_current: std::sync::atomic::AtomicBool,
    /// The other database references may name read-only (`globals.rs`), and the databases
    /// that reference this one; set by whoever opened the store, kept across reopens.
    globals: RwLock<Option<Arc<dyn Globals>>>,
    users: RwLock<Option<Arc<dyn Users>>>,
    /// Where local publishes become durable (`publish_log.rs`); `None` on a store no node
    /// serves (one being built or checked) until it is opened with a log beside it.
    log: Mutex<Option<publish_log::PublishLog>>,
}

impl Drop for Store {
    /// Closing writes the storage engine's allocator state back, which reads it first: on a
    /// damaged file that can panic like any other read (see [`Store::guard`]). The panic is
    /// caught and logged here, so that closing a damaged store never unwinds into the caller
    /// (or aborts a thread that is already unwinding).
    fn drop(&mut self) {
        // What only the publish log holds goes into the store file, so that the file alone is
        // whole once the node stopped (the log would be applied at the next open otherwise).
        if self.logged_revisions() > 0 {
            match catch_unwind(AssertUnwindSafe(|| self.checkpoint())) {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    tracing::warn!(store = %self.path.display(), error = %e, "closing the store: no checkpoint (the publish log is applied at the next open)")
                }
                Err(_) => {
                    tracing::error!(store = %self.path.display(), "closing the store: the checkpoint panicked (the publish log is applied at the next open)")
                }
            }
        }
        let db = self.db.get_mut().unwrap_or_else(|p| p.into_inner()).take();
        if let Err(payload) = catch_unwind(AssertUnwindSafe(move || drop(db))) {
            tracing::error!(
                store = %self.path.display(),
                "closing the store: {} (the file is left as redb's recovery finds it at the next open)",
                engine_panic(payload.as_ref())
            );
        }
    }
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Store({})", self.path.display())
    }
}

/// The seams [`Store::set_globals`] set: the other database references may name, and the
/// databases that reference this one.
pub type GlobalsSeams = (Option<Arc<dyn Globals>>, Option<Arc<dyn Users>>);

impl Store {
    /// Creates a new, empty store at `path` for `node`. Fails if a store is already there.
    pub fn create(path: &Path, node: &NodeState) -> Result<Store> {
        Store::create_with(path, node, None, STORE_CACHE_BYTES)
    }

    /// [`Store::create`], with `faults` injected into the file's writes and syncs when given,
    /// and a page cache of `cache_bytes`.
    pub fn create_with(
        path: &Path,
        node: &NodeState,
        faults: Option<Arc<StorageFaults>>,
        cache_bytes: usize,
    ) -> Result<Store> {
        if path.exists() {
            return Err(Error::InvalidArgument(format!("{} already exists", path.display())));
        }
        Store::clear_log(path)?;
        // redb initializes an empty file in place: creating it first gives it its private mode
        // from the first byte.
        drop(crate::private::create_file(path)?);
        let db = open_db(path, true, faults.as_ref(), cache_bytes).map_err(|e| map_open_error(path, e))?;
        let store = Store::from_db(db, path, faults, cache_bytes);
        let txn = store.begin_write()?;
        {
            let mut meta = txn.open_table(META)?;
            meta.insert(META_FORMAT, FORMAT_VERSION.to_le_bytes().as_slice())?;
            meta.insert(META_NODE, encode(node).as_slice())?;
            meta.insert(META_HEAD, encode(&Head::default()).as_slice())?;
            meta.insert(META_FLOOR, encode(&Head::default()).as_slice())?;
            // Create every table so readers never meet a missing one.
            txn.open_table(OBJECTS)?;
            txn.open_table(NAMES)?;
            txn.open_table(REFS)?;
            txn.open_table(REVISIONS)?;
            txn.open_table(UNDO)?;
        }
        store.commit_txn(txn)?;
        store.format_current.store(true, std::sync::atomic::Ordering::Relaxed);
        Ok(store)
    }

    /// Opens an existing store. A second process opening the same file gets [`Error::InUse`].
    pub fn open(path: &Path) -> Result<Store> {
        Store::open_with(path, None, STORE_CACHE_BYTES)
    }

    /// [`Store::open`], with `faults` injected into the file's writes and syncs when given, and
    /// a page cache of `cache_bytes`.
    pub fn open_with(path: &Path, faults: Option<Arc<StorageFaults>>, cache_bytes: usize) -> Result<Store> {
        if !path.exists() {
            return Err(Error::NotFound(format!("store at {}", path.display())));
        }
        // redb reads its header and the allocator state at open: a damaged one may panic there.
        let db = catch_unwind(AssertUnwindSafe(|| open_db(path, false, faults.as_ref(), cache_bytes)))
            .map_err(|payload| Error::Corrupt(format!("{}: {}", path.display(), engine_panic(payload.as_ref()))))?
            .map_err(|e| map_open_error(path, e))?;
        let store = Store::from_db(db, path, faults, cache_bytes);
        let format = store.meta_raw(META_FORMAT)?;
        let version = format
            .as_deref()
            .and_then(|b| <[u8; 4]>::try_from(b).ok())
            .map(u32::from_le_bytes)
            .ok_or_else(|| Error::Corrupt(format!("{}: no format version", path.display())))?;
        if !(FORMAT_VERSION_OLDEST..=FORMAT_VERSION).contains(&version) {
            return Err(Error::StoreFormat { path: path.to_path_buf(), found: version, reads: FORMAT_VERSION });
        }
        store.format_current.store(version == FORMAT_VERSION, std::sync::atomic::Ordering::Relaxed);
        store.reload_plugins()?;
        store.open_log()?;
        Ok(store)
    }

    fn from_db(db: Database, path: &Path, faults: Option<Arc<StorageFaults>>, cache_bytes: usize) -> Store {
        Store {
            db: RwLock::new(Some(db)),
            path: path.to_path_buf(),
            plugins: RwLock::new(Arc::new(PluginRegistry::new(PluginLimits::default()))),
            broken: Mutex::new(None),
            fault: Mutex::new(fault::FaultState::default()),
            writer: Mutex::new(()),
            reopens: Default::default(),
            faults,
            cache_bytes: std::sync::atomic::AtomicUsize::new(cache_bytes),
            live_reads: std::sync::atomic::AtomicUsize::new(0),
            quarantine: Mutex::new(None),
            is_quarantined: Default::default(),
            faults_recorded: Default::default(),
            format_current: Default::default(),
            globals: RwLock::new(None),
            users: RwLock::new(None),
            log: Mutex::new(None),
        }
    }

    /// Lets references name the objects of `globals` (read-only), and asks `users` before an
    /// object another database references goes (`globals.rs`).
    pub fn set_globals(&self, globals: Option<Arc<dyn Globals>>, users: Option<Arc<dyn Users>>) {
        *self.globals.write().unwrap_or_else(|p| p.into_inner()) = globals;
        *self.users.write().unwrap_or_else(|p| p.into_inner()) = users;
    }

    /// What [`Store::set_globals`] set, to carry over to a store that replaces this one.
    pub fn globals(&self) -> GlobalsSeams {
        (
            self.globals.read().unwrap_or_else(|p| p.into_inner()).clone(),
            self.users.read().unwrap_or_else(|p| p.into_inner()).clone(),
        )
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Every type this store knows: the built-in ones and those of its loaded plugins.
    pub fn schemas(&self) -> Arc<Schemas> {
        self.plugins().schemas().clone()
    }

    /// This node's identity and role.
    pub fn node(&self) -> Result<NodeState> {
        self.guard("node", || self.meta(META_NODE))
    }

    /// Persists this node's identity and role. Only the engine calls it, under its role lock
    /// (`Engine::role_event`, `Engine::set_designation`): role and epoch change nowhere else.
    pub(crate) fn set_node(&self, node: &NodeState) -> Result<()> {
        self.guard("set_node", || {
            let txn = self.begin_write()?;
            txn.open_table(META)?.insert(META_NODE, encode(node).as_slice())?;
            self.commit_txn(txn)?;
            Ok(())
        })
    }

    /// The newest revision.
    pub fn head(&self) -> Result<Head> {
        self.guard("head", || self.meta(META_HEAD))
    }

    /// The newest purged revision: history starts right after it.
    pub fn floor(&self) -> Result<Head> {
        self.guard("floor", || self.meta(META_FLOOR))
    }

    /// Reads a small record of the meta table; `None` when absent.
    pub fn meta_get<T: serde::de::DeserializeOwned>(&self, key: &str) -> Result<Option<T>> {
        self.guard("meta_get", || self.meta_raw(key)?.map(|raw| decode(&raw, key)).transpose())
    }

    /// Reads, changes and durably writes back one meta record in a single transaction.
    pub fn meta_update<T, R>(&self, key: &str, f: impl FnOnce(&mut T) -> Result<R>) -> Result<R>
    where
        T: serde::de::DeserializeOwned + serde::Serialize + Default,
    {
        self.guard("meta_update", || {
            let txn = self.begin_write()?;
            let out = {
                let mut table = txn.open_table(META)?;
                let mut value: T = match table.get(key)? {
                    Some(v) => decode(v.value(), key)?,
                    None => T::default(),
                };
                let out = f(&mut value)?;
                table.insert(key, encode(&value).as_slice())?;
                out
            };
            self.commit_txn(txn)?;
            Ok(out)
        })
    }

    /// What made the storage engine fail in an operation of this store (a damaged page it met),
    /// if anything did: the store then takes no writes until it is replaced.
    pub fn broken(&self) -> Option<String> {
        self.broken.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Serves none of this store's data from now on: every read of objects, revisions and
    /// history answers [`Error::Corrupt`] with `why`. For a store that failed its quick check at
    /// open, kept only until a full sync replaces it; what identifies the node (its record, head
    /// and members) stays readable, so that it can ask its Active for that full sync.
    pub fn quarantine(&self, why: &str) {
        *self.quarantine.lock().unwrap_or_else(|p| p.into_inner()) = Some(why.to_string());
        self.is_quarantined.store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// Why this store's data is not served, when it is not ([`Store::quarantine`]).
    pub fn quarantined(&self) -> Option<String> {
        self.quarantine.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Runs store operation `what` so that a panic inside it (redb's own code meeting a damaged
    /// B-tree page or header that its checks missed) becomes [`Error::Corrupt`] naming it,
    /// never an abort or a half-done answer: every public operation of the store runs through
    /// here. The store is then marked broken and refuses writes from then on.
    pub(crate) fn guard<T>(&self, what: &str, f: impl FnOnce() -> Result<T>) -> Result<T> {
        // The flag first: every operation passes here, and almost no store is quarantined.
        if self.is_quarantined.load(std::sync::atomic::Ordering::Relaxed) && SERVED.contains(&what) {
            if let Some(why) = self.quarantined() {
                return Err(Error::Corrupt(format!(
                    "this node's store is damaged and not served until it heals: {why}"
                )));
            }
        }
        let faults_before = self.faults_recorded();
        match catch_unwind(AssertUnwindSafe(f)) {
            Ok(Err(e)) => {
                self.note_io_error(&e, faults_before);
                Err(e)
            }
            Ok(result) => result,
            Err(payload) => {
                let found = format!("{}: {what}: {}", self.path.display(), engine_panic(payload.as_ref()));
                tracing::error!(store = %self.path.display(), operation = what, "{found}");
                *self.broken.lock().unwrap_or_else(|p| p.into_inner()) = Some(found.clone());
                Err(Error::Corrupt(found))
            }
        }
    }

    fn meta_raw(&self, key: &str) -> Result<Option<Vec<u8>>> {
        let txn = self.begin_read()?;
        let table = txn.open_table(META)?;
        Ok(table.get(key)?.map(|v| v.value().to_vec()))
    }

    fn meta<T: serde::de::DeserializeOwned>(&self, key: &str) -> Result<T> {
        let raw = self.meta_raw(key)?.ok_or_else(|| Error::Corrupt(format!("meta record '{key}' is missing")))?;
        decode(&raw, key)
    }
}

/// The store operations that serve its data (objects, revisions, history, snapshots of them): a
/// quarantined store refuses them.
const SERVED: &[&str] = &[
    "get",
    "get_by_uid",
    "list",
    "list_after",
    "revisions",
    "revision",
    "revision_in",
    "undo_in",
    "diff",
    "changed_since",
    "snapshot_chunks",
    "branch",
];

/// The reason of a panic inside the storage engine, for the error that replaces it.
fn engine_panic(payload: &(dyn std::any::Any + Send)) -> String {
    let message = payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "no message".into());
    format!("the storage engine failed on a damaged page ({message})")
}

fn builder(cache_bytes: usize) -> redb::Builder {
    let mut b = Database::builder();
    b.set_cache_size(cache_bytes);
    b
}

/// Opens (or creates) the database at `path`, behind `faults` when given.
fn open_db(
    path: &Path,
    create: bool,
    faults: Option<&Arc<StorageFaults>>,
    cache_bytes: usize,
) -> Result<Database, redb::DatabaseError> {
    match (faults, create) {
        (None, true) => builder(cache_bytes).create(path),
        (None, false) => builder(cache_bytes).open(path),
        (Some(faults), _) => {
            builder(cache_bytes).create_with_backend(inject::FaultyBackend::open(path, create, faults)?)
        }
    }
}

fn map_open_error(path: &Path, e: redb::DatabaseError) -> Error {
    match e {
        redb::DatabaseError::DatabaseAlreadyOpen => Error::InUse(path.parent().unwrap_or(path).to_path_buf()),
        other => Error::Storage(other.into()),
    }
}

pub(crate) fn encode<T: serde::Serialize>(v: &T) -> Vec<u8> {
    // Serializing plain data into a Vec cannot fail.
    rmp_serde::to_vec_named(v).unwrap_or_default()
}

pub(crate) fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8], what: &str) -> Result<T> {
    rmp_serde::from_slice(bytes).map_err(|e| Error::Corrupt(format!("{what}: {e}")))
}

/// Reads one object by uid from any table handle of `OBJECTS`, verified against its seal.
pub(crate) fn get_object(
    table: &impl ReadableTable<&'static [u8], &'static [u8]>,
    uid: &Uid,
) -> Result<Option<Object>> {
    match table.get(uid.as_bytes().as_slice())? {
        Some(v) => Ok(Some(object_from_record(uid, v.value())?.0)),
        None => Ok(None),
    }
}

/// The object a sealed record of `OBJECTS` holds under `uid`, and its hash, once verified.
pub(crate) fn object_from_record(uid: &Uid, record: &[u8]) -> Result<(Object, Hash)> {
    let what = || format!("object {uid}");
    let (payload, hash) = record::unseal(record, what)?;
    let o = Object::decode(payload).map_err(|e| Error::Corrupt(format!("{}: {e}", what())))?;
    if o.uid != *uid {
        return Err(Error::Corrupt(format!("{}: the record holds object {}", what(), o.uid)));
    }
    Ok((o, hash))
}

/// The revision a sealed record of `REVISIONS` holds under `seq`, once verified.
pub(crate) fn revision_from_record(seq: u64, record: &[u8]) -> Result<Revision> {
    let what = || format!("revision {seq}");
    let payload = record::unseal_history(record, what)?;
    let rev = Revision::decode(&payload).map_err(|e| Error::Corrupt(format!("{}: {e}", what())))?;
    if rev.seq != seq {
        return Err(Error::Corrupt(format!("{}: the record holds revision {}", what(), rev.seq)));
    }
    Ok(rev)
}

/// The undo record of revision `seq` (the objects before it, one per change), once verified.
pub(crate) fn undo_from_record(seq: u64, record: &[u8]) -> Result<Vec<Option<Object>>> {
    let what = || format!("undo record of revision {seq}");
    let payload = record::unseal_history(record, what)?;
    decode(&payload, &what())
}

/// Looks a name up in any table handle of `NAMES`.
pub(crate) fn lookup_name(
    table: &impl ReadableTable<&'static str, &'static [u8]>,
    type_name: &str,
    name: &str,
) -> Result<Option<Uid>> {
    match table.get(name_key(type_name, name).as_str())? {
        Some(v) => Ok(Some(Uid::from_slice(v.value())?)),
        None => Ok(None),
    }
}

/// Looks a name up and reads the object it names, checking that the object found is the one
/// named: a damaged name index is an [`Error::Corrupt`], never another object.
pub(crate) fn get_named(
    names: &impl ReadableTable<&'static str, &'static [u8]>,
    objects: &impl ReadableTable<&'static [u8], &'static [u8]>,
    type_name: &str,
    name: &str,
) -> Result<Option<Object>> {
    let Some(uid) = lookup_name(names, type_name, name)? else {
        return Ok(None);
    };
    match get_object(objects, &uid)? {
        Some(o) if o.type_name == type_name && o.name == name => Ok(Some(o)),
        Some(o) => Err(Error::Corrupt(format!(
            "name index: {type_name} '{name}' points at {} '{}' ({uid})",
            o.type_name, o.name
        ))),
        None => Err(Error::Corrupt(format!("name index: {type_name} '{name}' points at missing object {uid}"))),
    }
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod damage_tests;

#[cfg(test)]
mod format_tests;
