//! Durable Raft storage of one voter, in one redb file (`DATA_DIR/raft.redb`): the log, the
//! vote, the committed and purged log ids, and the last snapshot with its applied state. Every
//! write is a redb transaction with immediate durability (fsync) before openraft is told it is
//! done, so a restarted voter (the witness included) keeps its vote and never votes twice in a
//! term. The applied state is also shared in memory with the arbiter, with the local instants at
//! which it last changed (what staleness is timed by).

use std::collections::{BTreeMap, HashMap};
use std::fmt::Debug;
use std::io::Cursor;
use std::ops::{Bound, RangeBounds};
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use mgha_core::limits::STORE_WRITE_PROBE_BYTES;
use mgha_core::{Error, Result, Uid};
use mgha_sync::failover::Holder;
use openraft::storage::{LogFlushed, LogState, RaftLogStorage, RaftStateMachine, Snapshot};
use openraft::{
    AnyError, BasicNode, Entry, EntryPayload, LogId, RaftLogReader, RaftSnapshotBuilder, SnapshotMeta, StorageError,
    StorageIOError, StoredMembership, Vote,
};
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use super::state::{ArbiterState, CmdResponse, DomainState, TypeConfig};

/// The file under the data directory.
pub const RAFT_FILE: &str = "raft.redb";

const LOG: TableDefinition<u64, &[u8]> = TableDefinition::new("raft_log");
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("raft_meta");
const VOTE: &str = "vote";
const COMMITTED: &str = "committed";
const PURGED: &str = "purged";
/// The applied state as versions before domains wrote it after every batch; read at open if
/// present, and removed by the next snapshot, which holds the applied state since.
const MACHINE: &str = "machine";
const SNAPSHOT: &str = "snapshot";
/// The record a write probe commits and removes (`reopen`).
const PROBE: &str = "write_probe";

type NodeId = u64;
type StorageResult<T> = std::result::Result<T, StorageError<NodeId>>;

/// The applied state machine, as persisted in every snapshot (built or installed). Applied
/// entries change it in memory only: after a restart Raft applies the log since the last
/// snapshot again (a thousand entries at most), so a batch costs no write however many domains
/// the state holds.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Machine {
    pub last_applied: Option<LogId<NodeId>>,
    pub membership: StoredMembership<NodeId, BasicNode>,
    pub state: ArbiterState,
}

#[derive(Serialize, Deserialize)]
struct StoredSnapshot {
    meta: SnapshotMeta<NodeId, BasicNode>,
    data: Vec<u8>,
}

/// When one domain's holder and reports last changed, as this voter saw them.
#[derive(Clone, Debug)]
pub struct Seen {
    /// When (holder, renewals) last changed here: when this voter stored the log entry of the
    /// change (`Shared::stored`), which is after the call that made it began, though the change
    /// is applied only once committed. A renewal that the killed leader had sent but not
    /// committed, committed by its successor a second or two later, is counted from when it
    /// arrived, not from the election.
    pub holder_at: Instant,
    /// When each node's report last arrived at a new log index here.
    pub reports_at: HashMap<Uid, (u64, Instant)>,
}

impl Seen {
    fn new(now: Instant) -> Seen {
        Seen { holder_at: now, reports_at: HashMap::new() }
    }
}

/// The applied state as this voter sees it, with local times of change per domain (`None`: the
/// global domain). A domain first seen here counts as changed at that moment, so staleness is
/// never judged from before this voter could have seen a renewal.
#[derive(Clone, Debug)]
pub struct View {
    pub machine: Machine,
    pub seen: HashMap<Option<Uid>, Seen>,
}

/// One domain's applied state and when it last changed here: what `observe` reads.
#[derive(Clone, Debug)]
pub struct DomainView {
    pub state: DomainState,
    pub seen: Seen,
}

/// What the state machine shares with the arbiter.
#[derive(Debug)]
pub struct Shared {
    view: Mutex<View>,
    applied: watch::Sender<u64>,
    /// When this voter stored each log entry it has not applied yet, by index: entries applied,
    /// truncated or covered by an installed snapshot leave.
    stored: Mutex<BTreeMap<u64, Instant>>,
}

impl Shared {
    fn new(machine: Machine, applied: watch::Sender<u64>) -> Shared {
        Shared {
            view: Mutex::new(View { seen: initial_seen(&machine), machine }),
            applied,
            stored: Mutex::new(BTreeMap::new()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, View> {
        self.view.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn stored_times(&self) -> MutexGuard<'_, BTreeMap<u64, Instant>> {
        self.stored.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Notes that the entries at `indexes` arrive in this voter's log now (again, after a
    /// truncation: the later arrival counts).
    fn storing(&self, indexes: impl IntoIterator<Item = u64>) {
        let now = Instant::now();
        let mut stored = self.stored_times();
        for index in indexes {
            stored.insert(index, now);
        }
    }

    /// Forgets the arrival of entries from `index` on (truncated from the log).
    fn truncated(&self, index: u64) {
        self.stored_times().split_off(&index);
    }

    /// Takes the arrival times of entries up to `index` (applied, or covered by a snapshot).
    fn take_stored(&self, index: u64) -> BTreeMap<u64, Instant> {
        let mut stored = self.stored_times();
        let later = stored.split_off(&(index + 1));
        std::mem::replace(&mut *stored, later)
    }

    /// A copy of the applied machine.
    pub fn machine(&self) -> Machine {
        self.lock().machine.clone()
    }

    /// The holder of `domain` now.
    pub fn holder(&self, domain: Option<Uid>) -> Option<Holder> {
        self.lock().machine.state.holder_of(domain)
    }

    /// A copy of one domain's state and times, without copying the others'.
    pub fn domain_view(&self, domain: Option<Uid>) -> DomainView {
        let view = self.lock();
        let state = view.machine.state.domain(domain);
        // Every domain in the state has its times (`apply`, `install`, `reset`); one never named
        // has no holder, so its times do not matter.
        let seen = view.seen.get(&domain).cloned().unwrap_or_else(|| Seen::new(Instant::now()));
        DomainView { state, seen }
    }

    /// Waits until the entry at `index` is applied here, until `deadline`.
    pub async fn wait_applied(&self, index: u64, deadline: tokio::time::Instant) -> bool {
        let mut rx = self.applied.subscribe();
        tokio::time::timeout_at(deadline, rx.wait_for(|applied| *applied >= index)).await.is_ok_and(|r| r.is_ok())
    }

    /// Shows `machine`, read from the store as it was reopened, without noting any change: what
    /// it lacks of the view before is applied again by Raft, and then noted as usual.
    fn reset(&self, machine: Machine) {
        let index = machine.last_applied.map_or(0, |l| l.index);
        {
            let mut view = self.lock();
            view.machine = machine;
            let now = Instant::now();
            let View { machine, seen } = &mut *view;
            for (domain, ..) in machine.state.each_domain() {
                seen.entry(domain).or_insert_with(|| Seen::new(now));
            }
        }
        self.applied.send_replace(index);
    }

    /// Applies committed entries to the machine in place, noting what changed in the domains
    /// they name and when, then wakes waiters. Costs what the entries touch, not the whole state.
    fn apply(&self, entries: impl IntoIterator<Item = Entry<TypeConfig>>) -> Vec<CmdResponse> {
        let now = Instant::now();
        let entries: Vec<Entry<TypeConfig>> = entries.into_iter().collect();
        let stored = entries.last().map(|e| self.take_stored(e.log_id.index)).unwrap_or_default();
        let mut answers = Vec::new();
        let index = {
            let mut view = self.lock();
            let View { machine, seen } = &mut *view;
            for entry in entries {
                machine.last_applied = Some(entry.log_id);
                // An entry stored before this voter started is counted from now.
                let at = stored.get(&entry.log_id.index).copied().unwrap_or(now);
                answers.push(match entry.payload {
                    EntryPayload::Blank => CmdResponse::None,
                    EntryPayload::Normal(cmd) => {
                        let state = &mut machine.state;
                        let before: Vec<_> = cmd
                            .parts()
                            .iter()
                            .map(|part| (state.holder_of(part.domain), state.renewals_of(part.domain)))
                            .collect();
                        let answer = state.apply(&cmd, entry.log_id.index);
                        for (part, before) in cmd.parts().iter().zip(before) {
                            let seen = seen.entry(part.domain).or_insert_with(|| Seen::new(at));
                            if (state.holder_of(part.domain), state.renewals_of(part.domain)) != before {
                                // Never back past a change this voter already counted.
                                seen.holder_at = seen.holder_at.max(at);
                            }
                            if let Some(node) = part.kind.reporter() {
                                if let Some(index) = state.reported_index(part.domain, node) {
                                    if seen.reports_at.get(&node).map(|(i, _)| *i) != Some(index) {
                                        seen.reports_at.insert(node, (index, now));
                                    }
                                }
                            }
                        }
                        answer
                    }
                    EntryPayload::Membership(m) => {
                        machine.membership = StoredMembership::new(Some(entry.log_id), m);
                        CmdResponse::None
                    }
                });
            }
            machine.last_applied.map_or(0, |l| l.index)
        };
        self.applied.send_replace(index);
        answers
    }

    /// Installs a new applied machine (a snapshot): notes what changed and when, then wakes
    /// waiters.
    fn install(&self, machine: Machine) {
        let now = Instant::now();
        let index = machine.last_applied.map_or(0, |l| l.index);
        self.take_stored(index);
        {
            let mut view = self.lock();
            let View { machine: old, seen } = &mut *view;
            for (domain, holder, renewals, reports) in machine.state.each_domain() {
                let seen = seen.entry(domain).or_insert_with(|| Seen::new(now));
                if (old.state.holder_of(domain), old.state.renewals_of(domain)) != (holder, renewals) {
                    seen.holder_at = now;
                }
                for (node, reported) in reports {
                    if seen.reports_at.get(node).map(|(i, _)| *i) != Some(reported.index) {
                        seen.reports_at.insert(*node, (reported.index, now));
                    }
                }
            }
            view.machine = machine;
        }
        self.applied.send_replace(index);
    }
}

fn io_err(e: impl std::fmt::Display) -> AnyError {
    AnyError::error(e.to_string())
}

fn encode<T: Serialize>(value: &T) -> std::result::Result<Vec<u8>, AnyError> {
    rmp_serde::to_vec_named(value).map_err(io_err)
}

fn decode<T: DeserializeOwned>(bytes: &[u8]) -> std::result::Result<T, AnyError> {
    rmp_serde::from_slice(bytes).map_err(io_err)
}

/// Runs redb work on the blocking pool: a commit waits for an fsync.
async fn blocking<T, F>(f: F) -> std::result::Result<T, AnyError>
where
    T: Send + 'static,
    F: FnOnce() -> std::result::Result<T, AnyError> + Send + 'static,
{
    tokio::task::spawn_blocking(f).await.map_err(io_err)?
}

fn get_meta<T: DeserializeOwned>(db: &Database, key: &str) -> std::result::Result<Option<T>, AnyError> {
    let txn = db.begin_read().map_err(io_err)?;
    let table = txn.open_table(META).map_err(io_err)?;
    let value = table.get(key).map_err(io_err)?;
    value.map(|v| decode(v.value())).transpose()
}

/// Writes `items` in one transaction; `durable` waits for the fsync. A lazy commit becomes
/// durable with the next durable one (redb keeps commit order), so a crash loses at most a
/// suffix of lazy commits: the applied state and the committed pointer, which Raft rebuilds
/// from the durable log.
fn put_meta(db: &Database, items: &[(&str, Vec<u8>)], durable: bool) -> std::result::Result<(), AnyError> {
    let mut txn = db.begin_write().map_err(io_err)?;
    if !durable {
        txn.set_durability(redb::Durability::None).map_err(io_err)?;
    }
    {
        let mut table = txn.open_table(META).map_err(io_err)?;
        for (key, value) in items {
            table.insert(*key, value.as_slice()).map_err(io_err)?;
        }
    }
    txn.commit().map_err(io_err)
}

/// Every domain of `machine` as changed now: a voter that just started has seen no renewal.
fn initial_seen(machine: &Machine) -> HashMap<Option<Uid>, Seen> {
    let now = Instant::now();
    machine.state.each_domain().map(|(domain, ..)| (domain, Seen::new(now))).collect()
}

/// Opens (or creates) the store in `dir`.
pub async fn open(dir: &Path) -> Result<(LogStore, StateMachine, Arc<Shared>)> {
    let (db, machine) = open_db(dir).await?;
    let (applied, _) = watch::channel(machine.last_applied.map_or(0, |l| l.index));
    let shared = Arc::new(Shared::new(machine, applied));
    let db = Arc::new(db);
    Ok((LogStore { db: db.clone(), shared: shared.clone() }, StateMachine { db, shared: shared.clone() }, shared))
}

/// Opens the store in `dir` again for a Raft instance that stopped on a storage failure (a full
/// disk), once it can write: a probe record of [`STORE_WRITE_PROBE_BYTES`] is committed and
/// removed first, so that Raft is not restarted only to stop again at its first write. The
/// vote and the log are the file's; `shared` shows the applied state the file holds (a lazy
/// commit of applied state may be gone with the failed handle: Raft applies it again).
pub async fn reopen(dir: &Path, shared: &Arc<Shared>) -> Result<(LogStore, StateMachine)> {
    let (db, machine) = open_db(dir).await?;
    let db = blocking(move || {
        let probe = vec![0u8; STORE_WRITE_PROBE_BYTES];
        put_meta(&db, &[(PROBE, probe)], true)?;
        let txn = db.begin_write().map_err(io_err)?;
        txn.open_table(META).map_err(io_err)?.remove(PROBE).map_err(io_err)?;
        txn.commit().map_err(io_err)?;
        Ok(db)
    })
    .await
    .map_err(|e| Error::Io(std::io::Error::other(format!("the arbiter's storage cannot write yet: {e}"))))?;
    shared.reset(machine);
    let db = Arc::new(db);
    Ok((LogStore { db: db.clone(), shared: shared.clone() }, StateMachine { db, shared: shared.clone() }))
}

/// Opens (or creates) the database in `dir` and reads the applied state it holds.
async fn open_db(dir: &Path) -> Result<(Database, Machine)> {
    std::fs::create_dir_all(dir)?;
    let path = dir.join(RAFT_FILE);
    // A voter closed a moment ago in this process may still be dropping its handle.
    let deadline = Instant::now() + Duration::from_secs(5);
    let db = loop {
        match Database::create(&path) {
            Ok(db) => break db,
            Err(redb::DatabaseError::DatabaseAlreadyOpen) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => return Err(Error::InvalidArgument(format!("{}: {e}", path.display()))),
        }
    };
    let txn = db.begin_write()?;
    txn.open_table(LOG)?;
    txn.open_table(META)?;
    txn.commit()?;
    let corrupt = |e: AnyError| Error::Corrupt(format!("{}: {e}", path.display()));
    let machine = match get_meta::<Machine>(&db, MACHINE).map_err(corrupt)? {
        Some(machine) => machine,
        None => match get_meta::<StoredSnapshot>(&db, SNAPSHOT).map_err(corrupt)? {
            Some(snapshot) => decode(&snapshot.data).map_err(corrupt)?,
            None => Machine::default(),
        },
    };
    Ok((db, machine))
}

/// The log, the vote and the log pointers.
#[derive(Clone)]
pub struct LogStore {
    db: Arc<Database>,
    /// Where the arrival of each entry is noted.
    shared: Arc<Shared>,
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> StorageResult<Vec<Entry<TypeConfig>>> {
        let bounds: (Bound<u64>, Bound<u64>) = (range.start_bound().cloned(), range.end_bound().cloned());
        let db = self.db.clone();
        blocking(move || {
            let txn = db.begin_read().map_err(io_err)?;
            let table = txn.open_table(LOG).map_err(io_err)?;
            let mut entries = Vec::new();
            for item in table.range::<u64>(bounds).map_err(io_err)? {
                let (_, value) = item.map_err(io_err)?;
                entries.push(decode(value.value())?);
            }
            Ok(entries)
        })
        .await
        .map_err(|e| StorageIOError::read_logs(e).into())
    }
}

impl LogStore {
    async fn get<T: DeserializeOwned + Send + 'static>(
        &self,
        key: &'static str,
    ) -> std::result::Result<Option<T>, AnyError> {
        let db = self.db.clone();
        blocking(move || get_meta(&db, key)).await
    }

    async fn put<T: Serialize>(
        &self,
        key: &'static str,
        value: &T,
        durable: bool,
    ) -> std::result::Result<(), AnyError> {
        let bytes = encode(value)?;
        let db = self.db.clone();
        blocking(move || put_meta(&db, &[(key, bytes)], durable)).await
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> StorageResult<LogState<TypeConfig>> {
        let db = self.db.clone();
        let (purged, last) = blocking(move || {
            let purged: Option<LogId<NodeId>> = get_meta(&db, PURGED)?.flatten();
            let txn = db.begin_read().map_err(io_err)?;
            let table = txn.open_table(LOG).map_err(io_err)?;
            let last = match table.last().map_err(io_err)? {
                Some((_, value)) => Some(decode::<Entry<TypeConfig>>(value.value())?.log_id),
                None => None,
            };
            Ok((purged, last))
        })
        .await
        .map_err(StorageIOError::read_logs)?;
        Ok(LogState { last_purged_log_id: purged, last_log_id: last.or(purged) })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> StorageResult<()> {
        self.put(VOTE, vote, true).await.map_err(|e| StorageIOError::write_vote(e).into())
    }

    async fn read_vote(&mut self) -> StorageResult<Option<Vote<NodeId>>> {
        self.get(VOTE).await.map_err(|e| StorageIOError::read_vote(e).into())
    }

    async fn save_committed(&mut self, committed: Option<LogId<NodeId>>) -> StorageResult<()> {
        self.put(COMMITTED, &committed, false).await.map_err(|e| StorageIOError::write(e).into())
    }

    async fn read_committed(&mut self) -> StorageResult<Option<LogId<NodeId>>> {
        Ok(self.get::<Option<LogId<NodeId>>>(COMMITTED).await.map_err(StorageIOError::read)?.flatten())
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> StorageResult<()>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + Send,
        I::IntoIter: Send,
    {
        let mut encoded = Vec::new();
        for entry in entries {
            encoded.push((entry.log_id.index, encode(&entry).map_err(StorageIOError::write_logs)?));
        }
        self.shared.storing(encoded.iter().map(|(index, _)| *index));
        let db = self.db.clone();
        let written = blocking(move || {
            let txn = db.begin_write().map_err(io_err)?;
            {
                let mut table = txn.open_table(LOG).map_err(io_err)?;
                for (index, bytes) in &encoded {
                    table.insert(*index, bytes.as_slice()).map_err(io_err)?;
                }
            }
            txn.commit().map_err(io_err)
        })
        .await;
        match written {
            Ok(()) => {
                callback.log_io_completed(Ok(()));
                Ok(())
            }
            Err(e) => {
                callback.log_io_completed(Err(std::io::Error::other(e.to_string())));
                Err(StorageIOError::write_logs(e).into())
            }
        }
    }

    async fn truncate(&mut self, log_id: LogId<NodeId>) -> StorageResult<()> {
        self.shared.truncated(log_id.index);
        let db = self.db.clone();
        blocking(move || {
            let txn = db.begin_write().map_err(io_err)?;
            {
                let mut table = txn.open_table(LOG).map_err(io_err)?;
                table.retain_in::<u64, _>(log_id.index.., |_, _| false).map_err(io_err)?;
            }
            txn.commit().map_err(io_err)
        })
        .await
        .map_err(|e| StorageIOError::write_logs(e).into())
    }

    async fn purge(&mut self, log_id: LogId<NodeId>) -> StorageResult<()> {
        let db = self.db.clone();
        let purged = encode(&Some(log_id)).map_err(StorageIOError::write_logs)?;
        blocking(move || {
            let txn = db.begin_write().map_err(io_err)?;
            {
                let mut meta = txn.open_table(META).map_err(io_err)?;
                meta.insert(PURGED, purged.as_slice()).map_err(io_err)?;
                let mut table = txn.open_table(LOG).map_err(io_err)?;
                table.retain_in::<u64, _>(..=log_id.index, |_, _| false).map_err(io_err)?;
            }
            txn.commit().map_err(io_err)
        })
        .await
        .map_err(|e| StorageIOError::write_logs(e).into())
    }
}

/// The state machine: applies committed commands, persists the result, builds snapshots.
#[derive(Clone)]
pub struct StateMachine {
    db: Arc<Database>,
    shared: Arc<Shared>,
}

impl StateMachine {
    /// Persists `snapshot` (which holds the applied state) durably: the log it stands for may be
    /// purged from then on. An applied state of an older version goes in the same transaction,
    /// so that the store is opened from the snapshot.
    async fn persist(&self, snapshot: &StoredSnapshot) -> std::result::Result<(), AnyError> {
        let bytes = encode(snapshot)?;
        let db = self.db.clone();
        blocking(move || {
            let txn = db.begin_write().map_err(io_err)?;
            {
                let mut table = txn.open_table(META).map_err(io_err)?;
                table.insert(SNAPSHOT, bytes.as_slice()).map_err(io_err)?;
                table.remove(MACHINE).map_err(io_err)?;
            }
            txn.commit().map_err(io_err)
        })
        .await
    }
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachine {
    async fn build_snapshot(&mut self) -> StorageResult<Snapshot<TypeConfig>> {
        let machine = self.shared.machine();
        let data = encode(&machine).map_err(StorageIOError::read_state_machine)?;
        let snapshot_id = match machine.last_applied {
            Some(last) => format!("{}-{}-{}", last.leader_id, last.index, rand::random::<u32>()),
            None => format!("--{}", rand::random::<u32>()),
        };
        let meta = SnapshotMeta {
            last_log_id: machine.last_applied,
            last_membership: machine.membership.clone(),
            snapshot_id,
        };
        let stored = StoredSnapshot { meta: meta.clone(), data: data.clone() };
        // Durable, with the applied state it holds: the log is purged only up to a snapshot,
        // never past the durable applied state.
        self.persist(&stored).await.map_err(|e| StorageIOError::write_snapshot(Some(meta.signature()), e))?;
        Ok(Snapshot { meta, snapshot: Box::new(Cursor::new(data)) })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = StateMachine;

    async fn applied_state(&mut self) -> StorageResult<(Option<LogId<NodeId>>, StoredMembership<NodeId, BasicNode>)> {
        let machine = self.shared.machine();
        Ok((machine.last_applied, machine.membership))
    }

    async fn apply<I>(&mut self, entries: I) -> StorageResult<Vec<CmdResponse>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + Send,
        I::IntoIter: Send,
    {
        Ok(self.shared.apply(entries))
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> StorageResult<Box<Cursor<Vec<u8>>>> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, BasicNode>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> StorageResult<()> {
        let data = snapshot.into_inner();
        let machine: Machine = decode(&data).map_err(|e| StorageIOError::read_snapshot(Some(meta.signature()), e))?;
        let stored = StoredSnapshot { meta: meta.clone(), data };
        self.persist(&stored).await.map_err(|e| StorageIOError::write_snapshot(Some(meta.signature()), e))?;
        self.shared.install(machine);
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> StorageResult<Option<Snapshot<TypeConfig>>> {
        let db = self.db.clone();
        let stored: Option<StoredSnapshot> =
            blocking(move || get_meta(&db, SNAPSHOT)).await.map_err(|e| StorageIOError::read_snapshot(None, e))?;
        Ok(stored.map(|s| Snapshot { meta: s.meta, snapshot: Box::new(Cursor::new(s.data)) }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quorum::state::{Cmd, CmdKind};
    use mgha_sync::failover::Report;

    fn holder() -> Holder {
        Holder { node_id: Uid::new_random(), epoch: 5 << 16 | 1 }
    }

    fn entry(index: u64, kind: CmdKind) -> Entry<TypeConfig> {
        let log_id = LogId { leader_id: openraft::CommittedLeaderId::new(1, 1), index };
        Entry { log_id, payload: EntryPayload::Normal(Cmd { op: index, domain: None, kind }) }
    }

    #[tokio::test]
    async fn a_change_counts_from_when_its_entry_arrived_not_from_when_it_was_committed() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (_, _, shared) = open(dir.path()).await.expect("opens");
        let h = holder();
        let me = Report {
            node_id: h.node_id,
            name: "a".into(),
            tag: 1,
            role: mgha_core::Role::Standby,
            epoch: 0,
            head_seq: 0,
            writable: true,
            ranks_per_domain: true,
        };
        shared.apply([entry(1, CmdKind::Acquire { me, expected: None, highest_known: h.epoch, renewals: None })]);
        let acquired_at = shared.lock().seen[&None].holder_at;
        let holder = shared.holder(None).expect("a holder");

        // A renewal arrives, and is committed (applied) only later, after an election, say.
        shared.storing([2, 3]);
        let arrived = Instant::now();
        std::thread::sleep(Duration::from_millis(50));
        shared.apply([entry(2, CmdKind::Renew { holder })]);
        let at = shared.lock().seen[&None].holder_at;
        assert!(at > acquired_at && at <= arrived, "counted from its arrival");
        assert!(Instant::now().duration_since(at) >= Duration::from_millis(50));

        // An entry that left the log (truncated) and came again counts from its second arrival;
        // one that arrived before this voter started counts from when it is applied.
        shared.truncated(3);
        std::thread::sleep(Duration::from_millis(10));
        shared.storing([3]);
        let again = Instant::now();
        shared.apply([entry(3, CmdKind::Renew { holder })]);
        let at3 = shared.lock().seen[&None].holder_at;
        assert!(at3 > arrived && at3 <= again, "counted from the second arrival");
        let before = Instant::now();
        shared.apply([entry(4, CmdKind::Renew { holder })]);
        assert!(shared.lock().seen[&None].holder_at >= before, "no arrival noted: counted from now");
        assert!(shared.stored_times().is_empty(), "applied entries leave the record");
    }

    #[tokio::test]
    async fn a_store_opens_from_an_older_applied_state_then_from_its_snapshot() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (old, newer) = (holder(), holder());
        {
            // A store of a version that wrote its applied state after every batch.
            let (db, _) = open_db(dir.path()).await.expect("opens");
            let mut machine = Machine::default();
            machine.state.holder = Some(old);
            put_meta(&db, &[(MACHINE, encode(&machine).expect("encodes"))], true).expect("writes");
        }
        let (_, mut sm, shared) = open(dir.path()).await.expect("opens");
        assert_eq!(shared.holder(None), Some(old), "the older applied state is read");

        // A snapshot holds the applied state from then on, and the older record goes.
        let mut machine = Machine::default();
        machine.state.holder = Some(newer);
        let data = encode(&machine).expect("encodes");
        let meta =
            SnapshotMeta { last_log_id: None, last_membership: StoredMembership::default(), snapshot_id: "s".into() };
        sm.install_snapshot(&meta, Box::new(Cursor::new(data))).await.expect("installs");
        drop((sm, shared));
        let (_, _, shared) = open(dir.path()).await.expect("opens again");
        assert_eq!(shared.holder(None), Some(newer), "opened from the snapshot");
    }
}
