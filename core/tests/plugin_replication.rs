//! Plugins travel with the replicated configuration: a Standby that applies the revision
//! installing a plugin loads the same module and validates its types, a full-sync snapshot and a
//! restored backup load the plugins they hold and index their objects' references, and removing
//! a plugin replicates too. These drive the same store paths as the sync runtime (apply a
//! revision, build and install a snapshot), without sockets.

mod plugin_support;

use mgha_core::backup::{restore_backup, write_backup};
use mgha_core::engine::{Engine, EngineOptions, SNAPSHOT_FILE};
use mgha_core::store::{SnapshotBuilder, SnapshotPart};
use mgha_core::Error;
use plugin_support::{delete, fixture, node, publish, put, Node};
use serde_json::json;

/// An Active with the `good` plugin, a host and a `good.thing` that refers to it.
fn active_with_plugin() -> Node {
    let a = node("a");
    a.engine.plugin_install("admin", &fixture("good")).expect("installs");
    put(&a.engine, "host", "h1", json!({"ipv4-address": "10.0.0.1"})).expect("host");
    put(&a.engine, "good.thing", "t1", json!({"level": 3, "peer": "h1"})).expect("thing");
    a
}

/// Applies `from`'s revisions after `to`'s head, as a Standby does.
fn replicate(from: &Engine, to: &Engine) {
    let (have, want) = (to.store().head().expect("head").seq, from.store().head().expect("head").seq);
    for seq in have + 1..=want {
        to.apply_replicated(from.store().revision(seq).expect("revision")).expect("applies");
    }
}

/// The plugin runs on `n` and its objects' references hold there.
fn assert_runs_plugin(n: &Engine) {
    let listed = n.plugin_list().expect("lists");
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].error, None, "loaded");
    let e = put(n, "good.thing", "t2", json!({"note": "evil"})).expect_err("the plugin validates here too");
    assert!(e.to_string().contains("no evil here"), "{e}");
    let e = delete(n, "host", "h1").expect_err("t1 refers to h1");
    assert!(matches!(&e, Error::StillReferenced { used_by, .. } if used_by.contains("good.thing 't1'")), "{e}");
    n.store().check().expect("store verifies");
}

#[test]
fn a_standby_applying_the_install_revision_loads_the_plugin() {
    let a = active_with_plugin();
    let b = node("b");
    replicate(&a.engine, &b.engine);
    assert_eq!(b.engine.store().head().expect("head"), a.engine.store().head().expect("head"));
    let (on_a, on_b) = (a.engine.plugin_list().expect("a"), b.engine.plugin_list().expect("b"));
    assert_eq!(on_a, on_b, "the same plugin, module hash and uid on both");
    assert_runs_plugin(&b.engine);

    // Removal replicates like the install did.
    publish(
        &a.engine,
        json!([{"op": "delete", "type": "good.thing", "name": "t1"}, {"op": "delete", "type": "plugin", "name": "good"}]),
    )
    .expect("removed");
    let b2 = node("b2");
    replicate(&a.engine, &b2.engine);
    assert!(b2.engine.plugin_list().expect("lists").is_empty());
    assert!(matches!(put(&b2.engine, "good.thing", "t", json!({})), Err(Error::UnknownType(_))));
}

#[test]
fn a_full_sync_snapshot_brings_plugins_and_their_references() {
    let a = active_with_plugin();
    let c = node("c");
    let path = c.engine.dir().join(SNAPSHOT_FILE);
    let node_state = c.engine.node().expect("node");
    let builder = std::cell::RefCell::new(None::<SnapshotBuilder>);
    a.engine
        .store()
        .snapshot_chunks(
            2,
            1 << 20,
            &mut |info| {
                *builder.borrow_mut() = Some(SnapshotBuilder::begin(&path, &node_state, info)?);
                Ok(())
            },
            &mut |part| {
                let mut b = builder.borrow_mut();
                let b = b.as_mut().expect("begun");
                match part {
                    SnapshotPart::Objects(objects) => b.add_chunk(&objects),
                    SnapshotPart::History(records) => b.add_history(&records),
                }
            },
        )
        .expect("streams");
    let file = builder.into_inner().expect("begun").finish().expect("verifies");
    c.engine.install_snapshot(&file).expect("installs");
    assert_runs_plugin(&c.engine);
}

#[test]
fn a_restored_backup_brings_plugins_and_their_references() {
    let a = active_with_plugin();
    let mut bytes = Vec::new();
    write_backup(&a.engine.store(), &mut bytes, &mut |_| {}).expect("backup");
    let dir = tempfile::tempdir().expect("tempdir");
    restore_backup(std::path::Path::new("mem"), &mut bytes.as_slice(), dir.path(), &mut |_| {}).expect("restores");
    let restored = Engine::open(dir.path(), EngineOptions::default()).expect("opens");
    assert_runs_plugin(&restored);
}

#[test]
fn reopening_a_store_loads_its_plugins() {
    let a = active_with_plugin();
    let dir = a.engine.dir().to_path_buf();
    let Node { engine, dir: _keep } = a;
    drop(engine);
    let reopened = Engine::open(&dir, EngineOptions::default()).expect("opens");
    assert_runs_plugin(&reopened);
}
