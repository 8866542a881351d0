//! Where the store file's bytes go: each table's entries, the bytes its keys and values take, its
//! B-tree overhead and its fragmentation, from redb's own statistics. For the benchmark's
//! breakdown of the store size and for an operator wondering why a file is as large as it is.
//! And compaction, which gives a store built in bulk the pages its growth left free.

use redb::{ReadableTableMetadata, TableDefinition};
use serde::{Deserialize, Serialize};

use super::tables::*;
use super::Store;
use crate::error::{Error, Result};

/// One table's share of the file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableSpace {
    pub table: String,
    pub entries: u64,
    /// Bytes of the keys and values themselves.
    pub stored_bytes: u64,
    /// Branch pages' keys and the leaves' headers and offsets.
    pub metadata_bytes: u64,
    /// Pages' unused tails (a leaf that is not full, a value in a larger page).
    pub fragmented_bytes: u64,
    pub leaf_pages: u64,
    pub branch_pages: u64,
}

impl TableSpace {
    /// Everything the table's pages take.
    pub fn total_bytes(&self) -> u64 {
        self.stored_bytes + self.metadata_bytes + self.fragmented_bytes
    }
}

/// The file's bytes by table, and what the tables do not account for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpaceReport {
    pub tables: Vec<TableSpace>,
    /// Pages redb has allocated, its own system tables (allocator state, the table directory)
    /// included.
    pub allocated_bytes: u64,
    pub file_bytes: u64,
}

impl Store {
    /// The size of each table and of the file, as of the latest commit.
    pub fn space(&self) -> Result<SpaceReport> {
        self.guard("space", || {
            // Only a write transaction reports allocated pages; it is dropped, never committed.
            let write = self.begin_write()?;
            let db = write.stats()?;
            drop(write);
            let txn = self.begin_read()?;
            fn table<K: redb::Key + 'static, V: redb::Value + 'static>(
                txn: &redb::ReadTransaction,
                def: TableDefinition<K, V>,
                name: &str,
            ) -> Result<TableSpace> {
                let t = txn.open_table(def)?;
                let s = t.stats()?;
                Ok(TableSpace {
                    table: name.to_string(),
                    entries: t.len()?,
                    stored_bytes: s.stored_bytes(),
                    metadata_bytes: s.metadata_bytes(),
                    fragmented_bytes: s.fragmented_bytes(),
                    leaf_pages: s.leaf_pages(),
                    branch_pages: s.branch_pages(),
                })
            }
            let tables = vec![
                table(&txn, OBJECTS, "objects")?,
                table(&txn, NAMES, "names")?,
                table(&txn, REFS, "refs")?,
                table(&txn, REVISIONS, "revisions")?,
                table(&txn, UNDO, "undo")?,
                table(&txn, META, "meta")?,
            ];
            Ok(SpaceReport {
                tables,
                allocated_bytes: db.allocated_pages() * db.page_size() as u64,
                file_bytes: std::fs::metadata(&self.path)?.len(),
            })
        })
    }
}

impl Store {
    /// Moves pages down and truncates the file to the pages in use. redb doubles a file that must
    /// grow, so a store built in bulk (a restore) can end with up to half of its file free. Only
    /// for a store nothing else uses yet: redb needs the database to itself, and refuses (false)
    /// while a read transaction is open. Returns whether anything moved.
    pub(crate) fn compact(&self) -> Result<bool> {
        self.guard("compact", || {
            let _writer = self.writer.lock().unwrap_or_else(|p| p.into_inner());
            let mut db = self.db.write().unwrap_or_else(|p| p.into_inner());
            let Some(db) = db.as_mut() else {
                return Err(Error::Io(std::io::Error::other("the store is closed")));
            };
            match db.compact() {
                Ok(moved) => Ok(moved),
                Err(redb::CompactionError::Storage(e)) => Err(Error::Storage(e.into())),
                // A reader or a savepoint: the file keeps its free pages, nothing is lost.
                Err(_) => Ok(false),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::{CommitMeta, STORE_FILE};
    use super::*;
    use crate::changeset::ChangeInput;
    use crate::node::NodeState;

    fn hosts(from: usize, n: usize) -> Vec<ChangeInput> {
        (from..from + n)
            .map(|i| {
                let mut fields = crate::model::Fields::new();
                fields.insert("ipv4-address".into(), format!("10.2.{}.{}", i / 250, i % 250).into());
                fields.insert("comments".into(), format!("application server number {i}").into());
                ChangeInput::Put { type_name: "host".into(), name: format!("h-{i:06}"), uid: None, fields }
            })
            .collect()
    }

    #[test]
    fn a_store_built_in_bulk_gives_back_its_free_pages_and_keeps_its_data() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Store::create(&dir.path().join(STORE_FILE), &NodeState::new_primary("t")).expect("create");
        let meta = CommitMeta { author: "t".into(), message: "bulk".into(), epoch: 1, time_ms: 0 };
        for r in 0..20 {
            store.publish(&meta, &hosts(r * 1_000, 1_000)).expect("publish");
        }
        let before = store.space().expect("space");
        let listing = store.list(None, 100_000).expect("list");
        assert_eq!(before.tables[0].entries, 20_000);
        store.compact().expect("compact");
        let after = store.space().expect("space");
        assert!(after.file_bytes < before.file_bytes, "{} -> {} bytes", before.file_bytes, after.file_bytes);
        assert!(
            after.file_bytes - after.allocated_bytes < before.file_bytes - before.allocated_bytes,
            "free pages {} -> {}",
            before.file_bytes - before.allocated_bytes,
            after.file_bytes - after.allocated_bytes
        );
        assert_eq!(store.list(None, 100_000).expect("list"), listing);
        store.check().expect("the compacted store verifies");
        store.publish(&meta, &hosts(50_000, 10)).expect("and takes publishes");
    }
}
