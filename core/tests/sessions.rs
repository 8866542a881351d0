//! Admin sessions against every other way to publish: no publish path overwrites an object a
//! session holds locked, a session publish never overwrites a change it did not see, and idle
//! sessions expire with their locks.

use mgha_core::engine::{Engine, EngineOptions};
use mgha_core::NodeState;
use mgha_core::{ChangeInput, ChangeSet, Error, ErrorCode};

fn engine(dir: &std::path::Path, name: &str, options: EngineOptions) -> Engine {
    Engine::create(dir, &NodeState::new_primary(name), options).expect("create")
}

fn host(name: &str, ip: &str) -> ChangeInput {
    let fields = serde_json::from_value(serde_json::json!({ "ipv4-address": ip })).expect("fields");
    ChangeInput::Put { type_name: "host".into(), name: name.into(), uid: None, fields }
}

fn changeset(changes: Vec<ChangeInput>) -> ChangeSet {
    ChangeSet { message: "test".into(), changes }
}

fn ip_of(e: &Engine, name: &str) -> String {
    let o = e.store().get("host", name).expect("host exists");
    serde_json::to_value(&o.fields).expect("json")["ipv4-address"].as_str().expect("ip").to_string()
}

#[test]
fn a_whole_changeset_publish_over_a_locked_object_is_refused_naming_the_session() {
    let dir = tempfile::tempdir().expect("tempdir");
    let e = engine(dir.path(), "n", EngineOptions::default());
    e.publish("setup", &changeset(vec![host("web2", "10.0.0.2"), host("web3", "10.0.0.3")])).expect("setup");
    let alice = e.session_open("alice").expect("open");
    e.session_stage(alice, host("web2", "10.0.0.20")).expect("alice locks web2");

    let err = e.publish("bob", &changeset(vec![host("web2", "10.0.0.99")])).expect_err("web2 is locked");
    assert_eq!(err.code(), ErrorCode::Conflict, "{err}");
    assert!(matches!(&err, Error::Locked { session, owner, .. } if *session == alice && owner == "alice"), "{err}");
    assert!(err.to_string().contains("host 'web2'"), "{err}");
    // A new object under a name a session staged is just as locked.
    let carol = e.session_open("carol").expect("open");
    e.session_stage(carol, host("web9", "10.0.0.9")).expect("carol stages a new host");
    let err = e.publish("bob", &changeset(vec![host("web9", "10.0.0.99")])).expect_err("web9 is locked");
    assert!(matches!(&err, Error::Locked { session, .. } if *session == carol), "{err}");

    e.publish("bob", &changeset(vec![host("web3", "10.0.0.33")])).expect("an unlocked object publishes");
    e.session_publish(alice, "alice's edit").expect("alice publishes");
    assert_eq!(ip_of(&e, "web2"), "10.0.0.20");
    e.publish("bob", &changeset(vec![host("web2", "10.0.0.99")])).expect("unlocked once alice published");
}

#[test]
fn a_revert_over_a_locked_object_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let e = engine(dir.path(), "n", EngineOptions::default());
    let first = e.publish("setup", &changeset(vec![host("web2", "10.0.0.2")])).expect("setup");
    e.publish("setup", &changeset(vec![host("web2", "10.0.0.22")])).expect("change");
    let alice = e.session_open("alice").expect("open");
    e.session_stage(alice, host("web2", "10.0.0.20")).expect("alice locks web2");
    let err = e.revert("bob", first.seq).expect_err("the revert would change web2");
    assert!(matches!(&err, Error::Locked { session, .. } if *session == alice), "{err}");
    e.session_discard(alice).expect("discard");
    e.revert("bob", first.seq).expect("reverts once the lock is gone");
    assert_eq!(ip_of(&e, "web2"), "10.0.0.2");
}

/// An object can change under a session's lock only on another Active (the session survived a
/// changeover and back): the session's publish must not overwrite that change unseen.
#[test]
fn a_session_publish_over_an_object_changed_since_it_was_staged_is_refused() {
    let (da, db) = (tempfile::tempdir().expect("tempdir"), tempfile::tempdir().expect("tempdir"));
    let a = engine(da.path(), "a", EngineOptions::default());
    let b = engine(db.path(), "b", EngineOptions::default());
    let r1 = a.publish("setup", &changeset(vec![host("web2", "10.0.0.2")])).expect("setup");
    b.apply_replicated(r1).expect("b follows a");
    let alice = a.session_open("alice").expect("open");
    a.session_stage(alice, host("web2", "10.0.0.20")).expect("alice stages web2 on a");
    let r2 = b.publish("bob", &changeset(vec![host("web2", "10.0.0.99")])).expect("bob edits web2 on b");
    a.apply_replicated(r2).expect("a gets bob's edit");

    let err = a.session_publish(alice, "stale").expect_err("alice never saw bob's edit");
    assert_eq!(err.code(), ErrorCode::Conflict, "{err}");
    assert!(matches!(&err, Error::Stale { session, object } if *session == alice && object == "host 'web2'"), "{err}");
    assert_eq!(ip_of(&a, "web2"), "10.0.0.99", "bob's edit stays");
    assert_eq!(a.session_changes(alice).expect("still open").len(), 1);
}

#[test]
fn abandoned_sessions_expire_and_release_their_place_and_locks() {
    let dir = tempfile::tempdir().expect("tempdir");
    let e = engine(dir.path(), "n", EngineOptions { session_idle_timeout_ms: 300, ..Default::default() });
    e.publish("setup", &changeset(vec![host("web2", "10.0.0.2")])).expect("setup");
    let first = e.session_open("abandoned").expect("open");
    e.session_stage(first, host("web2", "10.0.0.20")).expect("locks web2");
    for _ in 1..1024 {
        e.session_open("abandoned").expect("open");
    }
    let err = e.session_open("late").expect_err("the 1,025th session is refused while all are fresh");
    assert_eq!(err.code(), ErrorCode::Busy, "{err}");
    std::thread::sleep(std::time::Duration::from_millis(600));
    let fresh = e.session_open("late").expect("the abandoned sessions expired");
    assert_eq!(e.status().expect("status").sessions, 1);
    assert_eq!(e.session_changes(first).expect_err("expired").code(), ErrorCode::NotFound);
    e.session_stage(fresh, host("web2", "10.0.0.21")).expect("web2 is free again");
    e.session_publish(fresh, "after expiry").expect("publishes");
    assert_eq!(ip_of(&e, "web2"), "10.0.0.21");
}

#[test]
fn the_domain_registry_is_written_only_through_the_managed_publish() {
    let dir = tempfile::tempdir().expect("tempdir");
    let e = engine(dir.path(), "n", EngineOptions::default());
    let fields =
        serde_json::from_value(serde_json::json!({ "replicas": ["a", "b"], "generation": 1 })).expect("fields");
    let put = ChangeInput::Put { type_name: "domain".into(), name: "emea".into(), uid: None, fields };
    for err in [
        e.publish("admin", &changeset(vec![put.clone()])).expect_err("a changeset cannot write the registry"),
        e.publish_batch("admin", &[changeset(vec![put.clone()])]).expect_err("nor a batch"),
        e.session_stage(e.session_open("admin").expect("open"), put.clone()).expect_err("nor a session"),
    ] {
        assert_eq!(err.code(), ErrorCode::InvalidArgument, "{err}");
        assert!(err.to_string().contains("'domain'"), "{err}");
    }
    assert!(e.store().list(Some("domain"), 10).expect("list").is_empty());
    e.publish_managed("mgha-domains", &changeset(vec![put])).expect("the node writes it");
    assert_eq!(e.store().list(Some("domain"), 10).expect("list").len(), 1);
    // A revert restores objects, never the registry: to before the domain existed, it keeps it.
    e.publish("admin", &changeset(vec![host("web1", "10.0.0.1")])).expect("a host");
    e.revert("admin", 0).expect("the host is reverted");
    assert!(e.store().list(Some("host"), 10).expect("list").is_empty());
    assert_eq!(e.store().list(Some("domain"), 10).expect("list").len(), 1);
}
