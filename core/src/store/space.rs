//! Where the store file's bytes go: each table's entries, the bytes its keys and values take, its
//! B-tree overhead and its fragmentation, from redb's own statistics. For the benchmark's
//! breakdown of the store size and for an operator wondering why a file is as large as it is.

use redb::{ReadableTableMetadata, TableDefinition};
use serde::{Deserialize, Serialize};

use super::tables::*;
use super::Store;
use crate::error::Result;

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
