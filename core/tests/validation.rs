//! Validation that matches the model, through a real engine's publish: reference cycles (also
//! closed across publishes), duplicate keys in a changeset, strict ports and dates, names and
//! audit text that cannot hide or forge anything, networks without host bits; references to
//! another database's objects (a domain's to its cluster's global domain) and the refusal to delete
//! one that is used.

use mgha_core::engine::{Engine, EngineOptions};
use mgha_core::{ChangeSet, Error, ErrorCode, NodeState};

fn engine(dir: &std::path::Path) -> Engine {
    Engine::create(dir, &NodeState::new_primary("n"), EngineOptions::default()).expect("create")
}

fn publish(e: &Engine, author: &str, changes: serde_json::Value) -> mgha_core::Result<u64> {
    let text = serde_json::json!({ "message": "test", "changes": changes }).to_string();
    Ok(e.publish(author, &ChangeSet::from_json(text.as_bytes())?)?.seq)
}

fn group(name: &str, members: &[&str]) -> serde_json::Value {
    serde_json::json!({"op": "put", "type": "group", "name": name, "fields": {"members": members}})
}

fn host(name: &str) -> serde_json::Value {
    serde_json::json!({"op": "put", "type": "host", "name": name, "fields": {"ipv4-address": "10.0.0.1"}})
}

fn cycle_of(e: Error) -> Vec<String> {
    match e {
        Error::ReferenceCycle { cycle } => cycle,
        other => panic!("expected a reference cycle, got {other}"),
    }
}

#[test]
fn reference_cycles_are_refused_naming_the_cycle() {
    let dir = tempfile::tempdir().expect("tempdir");
    let e = engine(dir.path());
    publish(&e, "a", serde_json::json!([host("h1")])).expect("setup");
    // Two groups naming each other in one changeset (names resolve within the changeset).
    let two = publish(&e, "a", serde_json::json!([group("A", &["h1"]), group("B", &["A"]), group("A", &["B"])]));
    let cycle = cycle_of(two.expect_err("A -> B -> A"));
    assert_eq!(cycle.first(), cycle.last(), "{cycle:?}");
    assert!(cycle.contains(&"group 'A'".to_string()) && cycle.contains(&"group 'B'".to_string()), "{cycle:?}");
    // A three-group cycle closed across two publishes.
    publish(&e, "a", serde_json::json!([group("A", &["h1"]), group("B", &["A"]), group("C", &["B"])]))
        .expect("a chain");
    let closed = publish(&e, "a", serde_json::json!([group("A", &["C"])])).expect_err("C -> B -> A -> C");
    assert_eq!(closed.code(), ErrorCode::Validation);
    assert_eq!(cycle_of(closed).len(), 4);
    // Service groups and user groups too.
    publish(
        &e,
        "a",
        serde_json::json!([
        {"op": "put", "type": "service-group", "name": "S1", "fields": {"members": []}},
        {"op": "put", "type": "service-group", "name": "S2", "fields": {"members": ["S1"]}},
        {"op": "put", "type": "user-group", "name": "U1", "fields": {"members": []}},
        {"op": "put", "type": "user-group", "name": "U2", "fields": {"members": ["U1"]}}]),
    )
    .expect("acyclic groups");
    let s = publish(
        &e,
        "a",
        serde_json::json!([{"op": "put", "type": "service-group", "name": "S1", "fields": {"members": ["S2"]}}]),
    );
    assert!(cycle_of(s.expect_err("service groups")).contains(&"service-group 'S2'".to_string()));
    let u = publish(
        &e,
        "a",
        serde_json::json!([{"op": "put", "type": "user-group", "name": "U1", "fields": {"members": ["U2"]}}]),
    );
    assert!(cycle_of(u.expect_err("user groups")).contains(&"user-group 'U2'".to_string()));
    // A diamond is not a cycle.
    publish(&e, "a", serde_json::json!([group("D", &["A", "B"])])).expect("D -> A, D -> B -> A is fine");
}

#[test]
fn a_duplicate_key_inside_fields_is_refused() {
    let text = br#"{"changes": [{"op": "put", "type": "service-tcp", "name": "https",
        "fields": {"port": "443", "port": "22"}}]}"#;
    let err = ChangeSet::from_json(text).expect_err("port twice");
    assert_eq!(err.code(), ErrorCode::InvalidArgument, "{err}");
    assert!(err.to_string().contains("duplicate key 'port'"), "{err}");
    let change = br#"{"op": "put", "type": "host", "name": "h", "fields": {"ipv4-address": "10.0.0.1", "ipv4-address": "10.0.0.2"}}"#;
    assert!(mgha_core::ChangeInput::from_json(change).is_err());
}

#[test]
fn ports_dates_names_and_networks_are_strict() {
    let dir = tempfile::tempdir().expect("tempdir");
    let e = engine(dir.path());
    let svc =
        |port: &str| serde_json::json!([{"op": "put", "type": "service-tcp", "name": "s", "fields": {"port": port}}]);
    for bad in ["+443", " 443"] {
        assert_eq!(publish(&e, "a", svc(bad)).expect_err(bad).code(), ErrorCode::Validation);
    }
    publish(&e, "a", svc("443")).expect("a plain port");
    let user = |date: &str| serde_json::json!([{"op": "put", "type": "user", "name": "u", "fields": {"expiration-date": date}}]);
    assert_eq!(publish(&e, "a", user("2024-02-30")).expect_err("no such day").code(), ErrorCode::Validation);
    publish(&e, "a", user("2024-02-29")).expect("a leap day");
    for bad in ["web\u{200b}1", "\u{202e}1bew", "\u{feff}web1", "web\u{2028}1"] {
        assert_eq!(publish(&e, "a", serde_json::json!([host(bad)])).expect_err(bad).code(), ErrorCode::Validation);
    }
    let net = |subnet: &str| serde_json::json!([{"op": "put", "type": "network", "name": "n", "fields": {"subnet4": subnet, "mask-length4": 8}}]);
    let err = publish(&e, "a", net("10.1.2.3")).expect_err("host bits set");
    assert!(err.to_string().contains("10.0.0.0/8"), "{err}");
    publish(&e, "a", net("10.0.0.0")).expect("the network itself");
}

#[test]
fn an_author_or_message_with_control_characters_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let e = engine(dir.path());
    let forged = "\u{1b}[31mEVIL\u{1b}[0m\nfake line";
    let err = publish(&e, forged, serde_json::json!([host("h1")])).expect_err("forged author");
    assert!(matches!(err, Error::InvalidText { .. }), "{err}");
    assert_eq!(err.code(), ErrorCode::Validation);
    let cs = ChangeSet {
        message: forged.into(),
        ..ChangeSet::from_json(br#"{"changes": [{"op": "delete", "type": "host", "name": "x"}]}"#).expect("parses")
    };
    assert_eq!(e.publish("admin", &cs).expect_err("forged message").code(), ErrorCode::Validation);
    assert_eq!(e.session_open(forged).expect_err("forged session author").code(), ErrorCode::Validation);
    assert_eq!(e.status().expect("status").head.seq, 0, "nothing was published");
}

#[test]
fn a_revision_of_more_values_than_a_peer_frame_holds_is_refused() {
    use mgha_core::limits::REVISION_VALUES_MAX;
    let dir = tempfile::tempdir().expect("tempdir");
    let e = engine(dir.path());
    // System settings of 900,000 small integers each: under the object limit in bytes, but each
    // integer is a value a Standby would have to decode.
    let setting = |name: &str| serde_json::json!({"op": "put", "type": "system-setting", "name": name, "fields": {"value": vec![0; 900_000]}});
    let five: Vec<_> = (0..5).map(|i| setting(&format!("s{i}"))).collect();
    match publish(&e, "a", serde_json::Value::Array(five)).expect_err("4.5 million values") {
        Error::TooMany { count, max, .. } => {
            assert_eq!(max, REVISION_VALUES_MAX);
            assert!(count > 4_500_000, "{count}");
        }
        other => panic!("expected too many values, got {other}"),
    }
    let four: Vec<_> = (0..4).map(|i| setting(&format!("s{i}"))).collect();
    publish(&e, "a", serde_json::Value::Array(four)).expect("3.6 million values fit");
}

/// Another engine's objects, as a domain sees its cluster's global domain.
struct Over(std::sync::Arc<Engine>);

impl mgha_core::store::Globals for Over {
    fn object(&self, uid: &mgha_core::Uid) -> mgha_core::Result<Option<mgha_core::Object>> {
        self.0.store().get_by_uid(uid)
    }
    fn named(&self, type_name: &str, name: &str) -> mgha_core::Result<Option<mgha_core::Uid>> {
        self.0.store().uid_of(type_name, name)
    }
}

/// The databases that use the global one's objects, as the node asks them.
struct UsedBy(std::sync::Arc<Engine>);

impl mgha_core::store::Users for UsedBy {
    fn users(&self, uids: &[mgha_core::Uid]) -> mgha_core::Result<Vec<(mgha_core::Uid, String)>> {
        let mut out = Vec::new();
        for uid in uids {
            for who in self.0.store().referrers(uid, 3)? {
                out.push((*uid, format!("domain 'd' ({who})")));
            }
        }
        Ok(out)
    }

    fn users_elsewhere(&self, _: &[mgha_core::Uid]) -> mgha_core::Result<Vec<(mgha_core::Uid, String)>> {
        Ok(Vec::new())
    }
}

#[test]
fn references_may_name_another_databases_objects_which_then_cannot_go() {
    use std::sync::Arc;
    let (g_dir, d_dir, r_dir) =
        (tempfile::tempdir().expect("dir"), tempfile::tempdir().expect("dir"), tempfile::tempdir().expect("dir"));
    let global = Arc::new(engine(g_dir.path()));
    let domain = Arc::new(engine(d_dir.path()));
    publish(&global, "a", serde_json::json!([host("g-web"), host("shared")])).expect("global objects");
    // Without the seam, a global name is nothing here.
    assert!(matches!(
        publish(&domain, "a", serde_json::json!([group("web", &["g-web"])])),
        Err(Error::DanglingReference { .. })
    ));
    domain.store().set_globals(Some(Arc::new(Over(global.clone()))), None);
    global.store().set_globals(None, Some(Arc::new(UsedBy(domain.clone()))));
    // By name (this database's own object of that name first) and by uid.
    publish(&domain, "a", serde_json::json!([host("shared")])).expect("a local 'shared'");
    let uid = global.store().uid_of("host", "g-web").expect("read").expect("g-web");
    publish(&domain, "a", serde_json::json!([group("web", &["g-web", "shared"]), group("web2", &[&uid.to_string()])]))
        .expect("references to the global object");
    let web = domain.store().get("group", "web").expect("web");
    let local = domain.store().uid_of("host", "shared").expect("read").expect("local shared");
    assert_eq!(web.fields["members"], serde_json::json!([uid.to_string(), local.to_string()]));
    // A global object in use cannot go; the refusal names who uses it.
    let err = publish(&global, "a", serde_json::json!([{"op": "delete", "type": "host", "name": "g-web"}]))
        .expect_err("g-web is used by the domain");
    assert!(
        matches!(&err, Error::StillReferenced { name, used_by, .. } if name == "g-web" && used_by.contains("group 'web'")),
        "{err}"
    );
    publish(&global, "a", serde_json::json!([{"op": "delete", "type": "host", "name": "shared"}]))
        .expect("the global 'shared' is not used");

    // A replica applies the domain's revisions without looking the global object up again.
    let replica = Engine::create(r_dir.path(), &NodeState { ..domain.node().expect("node") }, EngineOptions::default())
        .expect("replica");
    let empty_global = tempfile::tempdir().expect("dir");
    let lagging = Arc::new(engine(empty_global.path()));
    replica.store().set_globals(Some(Arc::new(Over(lagging))), None);
    for seq in 1..=domain.store().head().expect("head").seq {
        replica.apply_replicated(domain.store().revision(seq).expect("revision")).expect("applied");
    }
    assert_eq!(replica.store().head().expect("head"), domain.store().head().expect("head"));
}
