//! Store formats: deflated history records read back as published, damage in one is found, a
//! format 2 store (every record stored as it is) still opens and reads and is marked format 3 by
//! its first commit, and a store of a format this build does not know is refused by its type.

use redb::ReadableTable;
use serde_json::json;

use super::record::{seal, unseal_history};
use super::tables::*;
use super::{CommitMeta, Store, STORE_FILE};
use crate::changeset::ChangeInput;
use crate::error::{Error, ErrorCode};
use crate::node::NodeState;

/// The first byte of a deflated history record (`record.rs`).
const DEFLATED_TAG: u8 = 0xc1;

fn hosts(prefix: &str, n: usize) -> Vec<ChangeInput> {
    (0..n)
        .map(|i| {
            let fields = match json!({"ipv4-address": format!("10.1.{}.{}", i / 250, i % 250), "comments": "web tier"})
            {
                serde_json::Value::Object(m) => m,
                _ => unreachable!("a JSON object literal"),
            };
            ChangeInput::Put { type_name: "host".into(), name: format!("{prefix}-{i}"), uid: None, fields }
        })
        .collect()
}

fn meta() -> CommitMeta {
    CommitMeta { author: "tester".into(), message: "test".into(), epoch: 1, time_ms: 0 }
}

fn raw(store: &Store, table: redb::TableDefinition<u64, &[u8]>, seq: u64) -> Vec<u8> {
    let txn = store.begin_read().expect("read");
    let t = txn.open_table(table).expect("table");
    let v = t.get(seq).expect("get").expect("present").value().to_vec();
    v
}

fn format(store: &Store) -> u32 {
    let raw = store.meta_raw(META_FORMAT).expect("read").expect("present");
    u32::from_le_bytes(raw.as_slice().try_into().expect("4 bytes"))
}

/// Rewrites the store as a format 2 build wrote it: every history record stored as it is.
fn downgrade_to_format_2(store: &Store) {
    let txn = store.begin_write().expect("write");
    for table in [REVISIONS, UNDO] {
        let mut t = txn.open_table(table).expect("table");
        let all: Vec<(u64, Vec<u8>)> = t
            .iter()
            .expect("iter")
            .map(|e| {
                let (k, v) = e.expect("entry");
                (k.value(), unseal_history(v.value(), String::new).expect("intact").into_owned())
            })
            .collect();
        for (seq, payload) in all {
            t.insert(seq, seal(&payload).as_slice()).expect("insert");
        }
    }
    txn.open_table(META).expect("meta").insert(META_FORMAT, 2u32.to_le_bytes().as_slice()).expect("format");
    store.commit_txn(txn).expect("commit");
}

#[test]
fn history_records_are_stored_deflated_and_read_back_as_published() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Store::create(&dir.path().join(STORE_FILE), &NodeState::new_primary("t")).expect("create");
    let first = store.publish(&meta(), &hosts("web", 200)).expect("publish");
    let second = store.publish(&meta(), &hosts("web", 1).into_iter().chain(hosts("db", 3)).collect::<Vec<_>>());
    let second = second.expect("publish");
    let record = raw(&store, REVISIONS, 1);
    assert_eq!(record[0], DEFLATED_TAG, "a 200-object revision is stored deflated");
    assert!(record.len() * 3 < crate::revision::Revision::encode(&first).len(), "{} bytes", record.len());
    assert_eq!(store.revision(1).expect("read"), first);
    assert_eq!(store.revision(2).expect("read"), second);
    assert_eq!(store.diff(0, 2).expect("diff").objects.len(), 203);
    store.check().expect("the full check verifies every record");
    assert_eq!(format(&store), FORMAT_VERSION);
}

#[test]
fn a_damaged_deflated_revision_or_undo_record_is_corrupt_naming_it() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Store::create(&dir.path().join(STORE_FILE), &NodeState::new_primary("t")).expect("create");
    store.publish(&meta(), &hosts("web", 100)).expect("publish");
    // Every object changes again, so that the undo record holds 100 objects and is deflated.
    let mut again = hosts("web", 100);
    for c in &mut again {
        if let ChangeInput::Put { fields, .. } = c {
            fields.insert("comments".into(), json!("changed"));
        }
    }
    store.publish(&meta(), &again).expect("publish");
    for (table, seq, what) in [(REVISIONS, 1, "revision 1"), (UNDO, 2, "undo record of revision 2")] {
        let pristine = raw(&store, table, seq);
        assert_eq!(pristine[0], DEFLATED_TAG, "{what} is deflated");
        for at in [0, 1, 3, 7, pristine.len() / 2, pristine.len() - 33, pristine.len() - 1] {
            let txn = store.begin_write().expect("write");
            let mut bad = pristine.clone();
            bad[at] ^= 0x10;
            txn.open_table(table).expect("t").insert(seq, bad.as_slice()).expect("insert");
            store.commit_txn(txn).expect("commit");
            for err in [
                store.diff(0, 2).map(|_| ()).expect_err("diff"),
                store.check().map(|_| ()).expect_err("check"),
                store.scrub_all(1).map(|_| ()).expect_err("scrub"),
                crate::backup::write_backup(&store, &mut Vec::new(), &mut |_| {}).map(|_| ()).expect_err("backup"),
            ] {
                assert_eq!(err.code(), ErrorCode::Corrupt, "{err}");
                assert!(err.to_string().contains(what), "'{err}' names {what}");
            }
        }
        let txn = store.begin_write().expect("write");
        txn.open_table(table).expect("t").insert(seq, pristine.as_slice()).expect("insert");
        store.commit_txn(txn).expect("commit");
    }
    store.check().expect("intact again");
}

#[test]
fn a_format_2_store_reads_and_its_first_commit_marks_it_format_3() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join(STORE_FILE);
    let (first, second) = {
        let store = Store::create(&path, &NodeState::new_primary("t")).expect("create");
        let first = store.publish(&meta(), &hosts("web", 50)).expect("publish");
        let second = store.publish(&meta(), &hosts("db", 2)).expect("publish");
        downgrade_to_format_2(&store);
        (first, second)
    };
    let store = Store::open(&path).expect("a format 2 store opens");
    assert_eq!(format(&store), 2, "opening writes nothing");
    assert_ne!(raw(&store, REVISIONS, 1)[0], DEFLATED_TAG, "stored as format 2 stored it");
    assert_eq!(store.revision(1).expect("read"), first);
    assert_eq!(store.revision(2).expect("read"), second);
    assert_eq!(store.diff(0, 2).expect("diff").objects.len(), 52);
    store.check().expect("a format 2 store verifies");
    let third = store.publish(&meta(), &hosts("app", 40)).expect("publish on a format 2 store");
    assert_eq!(format(&store), FORMAT_VERSION, "the first commit marks the store format 3");
    assert_eq!(raw(&store, REVISIONS, 3)[0], DEFLATED_TAG, "and writes deflated records");
    assert_eq!(store.revision(3).expect("read"), third);
    store.check().expect("old and new records verify together");
    let mut backup = Vec::new();
    crate::backup::write_backup(&store, &mut backup, &mut |_| {}).expect("backup of a mixed store");
}

#[test]
fn a_store_of_a_newer_format_is_refused_by_its_type() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join(STORE_FILE);
    {
        let store = Store::create(&path, &NodeState::new_primary("t")).expect("create");
        let txn = store.begin_write().expect("write");
        txn.open_table(META)
            .expect("meta")
            .insert(META_FORMAT, (FORMAT_VERSION + 1).to_le_bytes().as_slice())
            .expect("format");
        store.commit_txn(txn).expect("commit");
    }
    let err = Store::open(&path).expect_err("a newer format is refused");
    assert!(
        matches!(err, Error::StoreFormat { found, reads, .. } if found == FORMAT_VERSION + 1 && reads == FORMAT_VERSION),
        "{err:?}"
    );
    assert_eq!(err.code(), ErrorCode::Corrupt);
    assert!(err.to_string().contains(&format!("storage format {}", FORMAT_VERSION + 1)), "{err}");
}
