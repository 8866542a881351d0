//! Reads of a damaged store: a flipped byte in any stored object, revision, undo record or name
//! index entry is an `Error::Corrupt` naming the record, never another object's data or a panic.

use redb::ReadableTable;
use serde_json::json;

use super::tables::*;
use super::{CommitMeta, Store, STORE_FILE};
use crate::changeset::ChangeInput;
use crate::error::{Error, ErrorCode};
use crate::node::NodeState;

fn new_store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Store::create(&dir.path().join(STORE_FILE), &NodeState::new_primary("test")).expect("create store");
    (dir, store)
}

fn host(name: &str, ip: &str) -> ChangeInput {
    let fields = match json!({"ipv4-address": ip}) {
        serde_json::Value::Object(m) => m,
        _ => unreachable!("a JSON object literal"),
    };
    ChangeInput::Put { type_name: "host".into(), name: name.into(), uid: None, fields }
}

fn meta() -> CommitMeta {
    CommitMeta { author: "tester".into(), message: "test".into(), epoch: 1, time_ms: 0 }
}

/// Rewrites the raw value of `key` in a `&[u8]`-keyed table through `f`.
fn damage_bytes_table(
    store: &Store,
    table: redb::TableDefinition<&[u8], &[u8]>,
    key: &[u8],
    f: impl FnOnce(&mut Vec<u8>),
) {
    let txn = store.begin_write().expect("write");
    {
        let mut t = txn.open_table(table).expect("table");
        let mut raw = t.get(key).expect("get").expect("present").value().to_vec();
        f(&mut raw);
        t.insert(key, raw.as_slice()).expect("insert");
    }
    store.commit_txn(txn).expect("commit");
}

fn damage_seq_table(store: &Store, table: redb::TableDefinition<u64, &[u8]>, seq: u64, at: usize) {
    let txn = store.begin_write().expect("write");
    {
        let mut t = txn.open_table(table).expect("table");
        let mut raw = t.get(seq).expect("get").expect("present").value().to_vec();
        raw[at] ^= 0x01;
        t.insert(seq, raw.as_slice()).expect("insert");
    }
    store.commit_txn(txn).expect("commit");
}

fn corrupt_naming(r: Result<impl std::fmt::Debug, Error>, what: &str) {
    match r {
        Err(e) => {
            assert_eq!(e.code(), ErrorCode::Corrupt, "{e}");
            assert!(e.to_string().contains(what), "'{e}' names {what}");
        }
        Ok(v) => panic!("a damaged record was served: {v:?}"),
    }
}

#[test]
fn every_flipped_byte_of_an_object_record_is_corrupt_on_every_read() {
    let (_dir, store) = new_store();
    store.publish(&meta(), &[host("web1", "200.1.1.6"), host("web2", "200.1.1.7")]).expect("publish");
    let web1 = store.get("host", "web1").expect("get");
    let key = web1.uid.as_bytes().to_vec();
    let len = store
        .begin_read()
        .expect("read")
        .open_table(OBJECTS)
        .expect("t")
        .get(key.as_slice())
        .expect("get")
        .expect("some")
        .value()
        .len();
    for at in 0..len {
        damage_bytes_table(&store, OBJECTS, &key, |raw| raw[at] ^= 0x20);
        let uid = web1.uid.to_string();
        corrupt_naming(store.get("host", "web1"), &uid);
        corrupt_naming(store.get("host", &uid), &uid);
        corrupt_naming(store.get_by_uid(&web1.uid), &uid);
        corrupt_naming(store.list(Some("host"), 10), &uid);
        corrupt_naming(store.check(), &uid);
        corrupt_naming(store.scrub_all(1), &uid);
        // A publish that reads the damaged object fails and commits nothing.
        let head = store.head().expect("head");
        corrupt_naming(store.publish(&meta(), &[host("web1", "200.1.1.8")]), &uid);
        assert_eq!(store.head().expect("head"), head);
        corrupt_naming(crate::backup::write_backup(&store, &mut Vec::new(), &mut |_| {}), &uid);
        damage_bytes_table(&store, OBJECTS, &key, |raw| raw[at] ^= 0x20);
    }
    assert_eq!(store.get("host", "web1").expect("repaired"), web1);
    store.check().expect("intact again");
}

#[test]
fn a_truncated_object_record_is_corrupt_not_a_panic() {
    let (_dir, store) = new_store();
    store.publish(&meta(), &[host("web1", "200.1.1.6")]).expect("publish");
    let uid = store.get("host", "web1").expect("get").uid;
    for keep in [0, 1, 31, 32, 40] {
        damage_bytes_table(&store, OBJECTS, uid.as_bytes(), |raw| raw.truncate(keep));
        corrupt_naming(store.get("host", "web1"), &uid.to_string());
    }
}

#[test]
fn a_damaged_revision_or_undo_record_is_corrupt_naming_the_revision() {
    let (_dir, store) = new_store();
    store.publish(&meta(), &[host("web1", "200.1.1.6")]).expect("publish 1");
    store.publish(&meta(), &[host("web1", "200.1.1.7")]).expect("publish 2");
    damage_seq_table(&store, REVISIONS, 1, 10);
    corrupt_naming(store.revision(1), "revision 1");
    corrupt_naming(store.revisions(None, 10), "revision 1");
    corrupt_naming(store.check(), "revision 1");
    corrupt_naming(store.scrub_all(1), "revision 1");
    assert_eq!(store.revision(2).expect("intact").seq, 2);
    damage_seq_table(&store, REVISIONS, 1, 10);
    damage_seq_table(&store, UNDO, 2, 3);
    corrupt_naming(store.diff(1, 2), "undo record of revision 2");
    corrupt_naming(store.scrub_all(1), "undo record of revision 2");
}

#[test]
fn a_name_index_entry_pointing_at_another_object_is_corrupt() {
    let (_dir, store) = new_store();
    store.publish(&meta(), &[host("web1", "200.1.1.6"), host("web2", "200.1.1.7")]).expect("publish");
    let web2 = store.get("host", "web2").expect("get").uid;
    let txn = store.begin_write().expect("write");
    txn.open_table(NAMES)
        .expect("t")
        .insert(name_key("host", "web1").as_str(), web2.as_bytes().as_slice())
        .expect("insert");
    store.commit_txn(txn).expect("commit");
    corrupt_naming(store.get("host", "web1"), "name index");
    corrupt_naming(store.list(Some("host"), 10), "name index");
    corrupt_naming(store.publish(&meta(), &[host("web1", "200.1.1.9")]), "name index");
    assert_eq!(store.get("host", "web2").expect("web2 is intact").uid, web2);
}

#[test]
fn a_scrub_pass_in_small_batches_covers_every_record() {
    let (_dir, store) = new_store();
    for i in 0..5 {
        store
            .publish(&meta(), &[host(&format!("h{i}"), "10.0.0.1"), host(&format!("g{i}"), "10.0.0.2")])
            .expect("publish");
    }
    // 10 objects, and 5 revisions each with its undo record.
    for batch in [1, 3, 1024] {
        assert_eq!(store.scrub_all(batch).expect("intact").records, 15, "batch {batch}");
    }
}
