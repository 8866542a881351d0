//! The example plugins (plugins/examples, compiled from source by scripts/build-plugins) against
//! the engine: their declarations, their validation, their merges (the `vpn` plugin's own, the
//! `threat` plugin's per-field strategies), a collision resolved by merge, and the same merge
//! giving byte-identical output in two separate processes.
//!
//! These tests fail, never skip, when the example plugins are not built: see
//! [`plugin_support::examples_dir`].

mod plugin_support;

use std::process::Command;

use mgha_core::collision::ResolveHow;
use mgha_core::merge::{merge_states_with, MergeOutcome, Method, Resolution, Side};
use mgha_core::model::Fields;
use mgha_core::store::Branch;
use mgha_core::{Error, Object, Uid};
use plugin_support::{delete, example, node, put, Node};
use serde_json::{json, Value};

/// With both example plugins and three hosts.
fn node_with_examples(name: &str) -> Node {
    let n = node(name);
    n.engine.plugin_install("admin", &example("vpn_community")).expect("vpn installs");
    n.engine.plugin_install("admin", &example("threat_profile")).expect("threat installs");
    for (i, h) in ["gw1", "gw2", "gw3"].iter().enumerate() {
        put(&n.engine, "host", h, json!({"ipv4-address": format!("10.0.0.{}", i + 1)})).expect("host");
    }
    n
}

fn object(type_name: &str, uid: u128, name: &str, fields: Value) -> Option<Object> {
    let Value::Object(fields) = fields else { panic!("fields are a map") };
    Some(Object { type_name: type_name.into(), uid: Uid(uuid::Uuid::from_u128(uid)), name: name.into(), fields })
}

#[test]
fn the_examples_pass_check_and_declare_their_types() {
    let n = node("a");
    let vpn = n.engine.plugin_check(&example("vpn_community")).expect("vpn checks");
    assert_eq!((vpn.name.as_str(), vpn.version.as_str()), ("vpn", "1.0.0"));
    assert_eq!(
        (vpn.type_names.clone(), vpn.merge.clone()),
        (vec!["vpn.community".into()], vec!["vpn.community".into()])
    );
    let threat = n.engine.plugin_check(&example("threat_profile")).expect("threat checks");
    assert_eq!((threat.type_names.clone(), threat.merge.len()), (vec!["threat.profile".to_string()], 0));
    assert!(vpn.module_bytes < mgha_core::plugin::limits::PLUGIN_MODULE_BYTES_MAX);
}

#[test]
fn vpn_communities_are_validated_by_the_plugin() {
    let n = node_with_examples("a");
    let e = &n.engine;
    let community = |fields: Value| put(e, "vpn.community", "corp", fields);
    let err = community(json!({"gateways": ["gw1"], "encryption": "aes-256"})).expect_err("one gateway");
    assert!(
        matches!(&err, Error::InvalidField { field, reason, .. }
        if field == "gateways" && reason.contains("at least two distinct gateways")),
        "{err}"
    );
    let err = community(json!({"gateways": ["gw1", "gw2"], "encryption": "des"})).expect_err("schema enum");
    assert!(matches!(&err, Error::InvalidField { field, .. } if field == "encryption"), "{err}");
    let err = community(json!({"gateways": ["gw1", "gw2"], "encryption": "aes-256", "topology": "star"}))
        .expect_err("star without center");
    assert!(err.to_string().contains("names its center"), "{err}");
    community(json!({"gateways": ["gw1", "gw2"], "encryption": "aes-256", "topology": "star", "center": "gw1"}))
        .expect("valid");
    let err = delete(e, "host", "gw2").expect_err("a gateway in use");
    assert!(matches!(err, Error::StillReferenced { .. }), "{err}");
}

#[test]
fn threat_profiles_are_validated_by_the_plugin() {
    let n = node_with_examples("a");
    let e = &n.engine;
    let ok = json!({"severity-threshold": 2, "confidence-threshold": 50, "action": "prevent"});
    put(e, "threat.profile", "strict-1", ok.clone()).expect("valid");
    let err = put(e, "threat.profile", "Strict One", ok).expect_err("name pattern");
    assert!(matches!(&err, Error::InvalidObject { reason, .. } if reason.contains("lowercase")), "{err}");
    let err = put(
        e,
        "threat.profile",
        "loose",
        json!({"severity-threshold": 2, "confidence-threshold": 10, "action": "prevent"}),
    )
    .expect_err("prevent on low confidence");
    assert!(matches!(&err, Error::InvalidField { field, .. } if field == "confidence-threshold"), "{err}");
    let err =
        put(e, "threat.profile", "range", json!({"severity-threshold": 9, "action": "detect"})).expect_err("range");
    assert!(matches!(&err, Error::InvalidField { field, .. } if field == "severity-threshold"), "{err}");
}

/// The (uid, base, active, branch) versions of one object.
type Versions = (Uid, Option<Object>, Option<Object>, Option<Object>);

/// Versions exercising both plugins and a built-in type.
fn merge_inputs() -> Vec<Versions> {
    let uid = |n: u128| Uid(uuid::Uuid::from_u128(n));
    let vpn = |gws: Value, enc: &str, comments: &str| {
        object("vpn.community", 1, "corp", json!({"gateways": gws, "encryption": enc, "comments": comments}))
    };
    let threat = |sev: i64, prot: Value| {
        object("threat.profile", 2, "edge", json!({"severity-threshold": sev, "action": "detect", "protections": prot}))
    };
    let host = |ip: &str| object("host", 3, "h", json!({"ipv4-address": ip}));
    vec![
        (
            uid(1),
            vpn(json!(["g1", "g2"]), "aes-128", "base"),
            vpn(json!(["g1", "g2", "g3"]), "aes-256", "active"),
            vpn(json!(["g2", "g4"]), "aes-256-gcm", "branch"),
        ),
        (uid(2), threat(4, json!(["a"])), threat(3, json!(["a", "b"])), threat(2, json!(["c"]))),
        (uid(3), host("10.0.0.1"), host("10.0.0.2"), host("10.0.0.3")),
    ]
}

fn merged(n: &Node) -> MergeOutcome {
    let registry = n.engine.store().plugins();
    merge_states_with(registry.schemas(), &*registry, merge_inputs()).expect("merges")
}

#[test]
fn plugins_merge_by_their_own_rules_or_their_schemas_strategies() {
    let n = node_with_examples("a");
    let out = merged(&n);
    let target = |u: u128| {
        let uid = Uid(uuid::Uuid::from_u128(u));
        out.targets.iter().find(|(t, _)| *t == uid).and_then(|(_, o)| o.clone()).expect("a target")
    };
    let community = target(1);
    assert_eq!(community.fields["gateways"], json!(["g2", "g3", "g4"]), "set union: g1 removed, g3 and g4 added");
    assert_eq!(community.fields["encryption"], json!("aes-256-gcm"), "the stronger suite");
    let profile = target(2);
    assert_eq!(profile.fields["severity-threshold"], json!(2), "the stricter threshold");
    assert_eq!(profile.fields["protections"], json!(["b", "c"]));
    let fields: Vec<(&str, &str)> = out.conflicts.iter().map(|c| (c.type_name.as_str(), c.field.as_str())).collect();
    assert_eq!(fields, [("vpn.community", "comments"), ("host", "ipv4-address")]);
    assert_eq!(out.field_merged, 3);

    let registry = n.engine.store().plugins();
    let (_, b, a, r) = &merge_inputs()[0];
    let plugin = registry.plugin_for_type("vpn.community").expect("vpn");
    let one = plugin.merge("vpn.community", b.as_ref(), a.as_ref(), r.as_ref()).expect("merges");
    assert_eq!(one.method, Method::Plugin);
}

#[test]
fn a_collision_branch_merges_through_the_plugin() {
    let a = node_with_examples("a");
    let b = node("b");
    let seed = json!({"gateways": ["gw1", "gw2"], "encryption": "aes-128"});
    put(&a.engine, "vpn.community", "corp", seed).expect("community");
    for seq in 1..=a.engine.store().head().expect("head").seq {
        b.engine.apply_replicated(a.engine.store().revision(seq).expect("revision")).expect("replicates");
    }
    let fork = a.engine.store().head().expect("head");
    // Both sides change the community while cut off from each other.
    put(&a.engine, "vpn.community", "corp", json!({"gateways": ["gw1", "gw2", "gw3"], "encryption": "aes-256"}))
        .expect("active side");
    let branch_rev =
        put(&b.engine, "vpn.community", "corp", json!({"gateways": ["gw2", "gw3"], "encryption": "aes-256-gcm"}))
            .expect("branch side");
    let node_b = b.engine.node().expect("node");
    let id = a
        .engine
        .store()
        .add_branch(Branch {
            id: 0,
            node_id: node_b.node_id,
            node_name: node_b.name,
            fork,
            revisions: vec![branch_rev],
            detected_ms: 0,
            resolved: None,
            resolved_ms: None,
        })
        .expect("branch kept");
    assert!(a.engine.collision_diff(id).expect("diff").conflicts.is_empty());
    let resolved = a.engine.resolve_collision(id, ResolveHow::Merge(Resolution::Prefer(Side::Active)), "admin");
    assert!(resolved.expect("merged").seq.is_some());
    let merged = a.engine.store().get("vpn.community", "corp").expect("community");
    let uid_of = |h: &str| a.engine.store().get("host", h).expect("host").uid.to_string();
    assert_eq!(merged.fields["gateways"], json!([uid_of("gw2"), uid_of("gw3")]));
    assert_eq!(merged.fields["encryption"], json!("aes-256-gcm"));
    a.engine.store().check().expect("store verifies");
}

/// The helper the next test runs in separate processes: when `MGHA_MERGE_HELPER_OUT` names a
/// file, merges [`merge_inputs`] after `MGHA_MERGE_HELPER_WARMUP` merges on the same instances,
/// and writes the outcome's encoding there as hex. Otherwise it does nothing.
#[test]
fn merge_helper_writes_its_outcome() {
    let Some(out) = std::env::var_os("MGHA_MERGE_HELPER_OUT") else {
        return;
    };
    let warmup: usize = std::env::var("MGHA_MERGE_HELPER_WARMUP").ok().and_then(|w| w.parse().ok()).unwrap_or(0);
    let n = node_with_examples("helper");
    for _ in 0..warmup {
        merged(&n);
    }
    std::fs::write(out, hex(&encode(&merged(&n)))).expect("writes");
}

#[test]
fn the_same_merge_is_byte_identical_in_two_processes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let run = |name: &str, warmup: &str| {
        let out = dir.path().join(name);
        // Captured, so that the helper's test report does not mix with this one's.
        let run = Command::new(std::env::current_exe().expect("test binary"))
            .args(["--exact", "merge_helper_writes_its_outcome", "--test-threads=1"])
            .env("MGHA_MERGE_HELPER_OUT", &out)
            .env("MGHA_MERGE_HELPER_WARMUP", warmup)
            .output()
            .expect("helper runs");
        assert!(run.status.success(), "helper {name} failed: {}", String::from_utf8_lossy(&run.stdout));
        std::fs::read_to_string(out).expect("helper wrote its outcome")
    };
    let (fresh, reused) = (run("fresh", "0"), run("reused", "50"));
    assert!(!fresh.is_empty());
    assert_eq!(fresh, reused, "a fresh and a well-used instance, in two processes, agree byte for byte");
    let here = hex(&encode(&merged(&node_with_examples("here"))));
    assert_eq!(fresh, here);
}

/// The outcome as bytes: canonical object encodings and the conflicts as MessagePack.
fn encode(out: &MergeOutcome) -> Vec<u8> {
    let targets: Vec<(String, Option<Vec<u8>>)> =
        out.targets.iter().map(|(u, o)| (u.to_string(), o.as_ref().map(Object::encode))).collect();
    let conflicts: Vec<Fields> = out
        .conflicts
        .iter()
        .map(|c| match serde_json::to_value(c) {
            Ok(Value::Object(m)) => m,
            other => panic!("a conflict encodes as a map: {other:?}"),
        })
        .collect();
    rmp_serde::to_vec_named(&(targets, conflicts, out.trivial, out.field_merged)).expect("encodes")
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
