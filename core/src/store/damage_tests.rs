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

/// A small deterministic generator (xorshift64*): the flips are the same on every run.
struct Seeded(u64);

impl Seeded {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n.max(1) as u64) as usize
    }
}

/// What a damaged store answered, checked against what was published: every answer must be
/// the state of the revision the store says is its head, or an error. Returns whether the store
/// refused with an error somewhere.
fn answers_match_what_was_published(
    store: &Store,
    states: &[Vec<crate::model::Object>],
    revisions: &[crate::revision::RevisionInfo],
) -> bool {
    let mut refused = false;
    let head = match store.quick_check() {
        Ok(head) => head,
        Err(_) => return true,
    };
    let seq = head.seq as usize;
    assert!(seq < states.len(), "a head no publish made: {head:?}");
    assert_eq!(head.id, if seq == 0 { head.id } else { revisions[seq - 1].id }, "the head's id");
    match store.list(None, 100_000) {
        Ok(objects) => assert_eq!(objects, states[seq], "the listing at revision {seq}"),
        Err(_) => refused = true,
    }
    for o in &states[seq] {
        match store.get(&o.type_name, &o.name) {
            Ok(got) => assert_eq!(&got, o, "{} '{}'", o.type_name, o.name),
            Err(_) => refused = true,
        }
    }
    match store.revisions(None, 1000) {
        Ok(list) => {
            let mut expected: Vec<_> = revisions[..seq].to_vec();
            expected.reverse();
            assert_eq!(list, expected, "the revision list");
        }
        Err(_) => refused = true,
    }
    if seq >= 2 {
        refused |= store.diff(1, seq as u64).is_err();
    }
    refused |= store.check().is_err();
    refused
}

#[test]
fn bytes_flipped_anywhere_in_a_stopped_store_never_panic_nor_serve_unpublished_data() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join(STORE_FILE);
    let mut states = vec![Vec::new()];
    let mut revisions = Vec::new();
    {
        let store = Store::create(&path, &NodeState::new_primary("test")).expect("create store");
        for r in 0..12 {
            let changes: Vec<ChangeInput> =
                (0..15).map(|i| host(&format!("h{r}-{i}"), &format!("200.1.{r}.{i}"))).collect();
            revisions.push(store.publish(&meta(), &changes).expect("publish").info());
            states.push(store.list(None, 100_000).expect("list"));
        }
    }
    let pristine = std::fs::read(&path).expect("read the store");
    // Positions: the header and region headers at the start, the bytes of object payloads (their
    // addresses, found by their text), and bytes anywhere in the pages in use (not zero).
    let mut rng = Seeded(0x6d67_6861_0000_0013);
    let mut positions: Vec<usize> = (0..40).map(|_| rng.below(4096.min(pristine.len()))).collect();
    let payloads: Vec<usize> =
        pristine.windows(6).enumerate().filter(|(_, w)| *w == b"200.1.").map(|(i, _)| i).collect();
    assert!(!payloads.is_empty(), "object payloads are in the file");
    positions.extend((0..60).map(|_| payloads[rng.below(payloads.len())] + rng.below(12)));
    let used: Vec<usize> = (0..pristine.len()).filter(|&i| pristine[i] != 0).collect();
    positions.extend((0..120).map(|_| used[rng.below(used.len())]));
    let mut refused = 0;
    for (n, &at) in positions.iter().enumerate() {
        let mut damaged = pristine.clone();
        damaged[at] ^= 1 << rng.below(8);
        std::fs::write(&path, &damaged).expect("write the damaged copy");
        let outcome = std::panic::catch_unwind(|| match Store::open(&path) {
            Ok(store) => answers_match_what_was_published(&store, &states, &revisions),
            Err(e) => {
                assert!(matches!(e.code(), ErrorCode::Corrupt | ErrorCode::Io), "flip {n} at {at}: {e}");
                true
            }
        });
        match outcome {
            Ok(r) => refused += usize::from(r),
            Err(_) => panic!("flip {n} at byte {at} of {}: a panic reached the caller", pristine.len()),
        }
    }
    assert!(positions.len() >= 200);
    // Most flips land on live records: the store must have noticed a good share of them.
    assert!(refused > positions.len() / 4, "only {refused} of {} flips were refused", positions.len());
}
