//! Plugins against the engine, with hand-written WAT fixtures (`tests/plugins/*.wat`): a good
//! plugin's types validate and replicate; hostile modules are refused at check (wrong ABI
//! version, WASI or unknown imports, not WebAssembly) or fail the one call they break (endless
//! loop, memory bomb, trap, garbage or oversized answer, a merge that traps), within their
//! limits, while the engine and the other plugins go on.

mod plugin_support;

use std::time::{Duration, Instant};

use mgha_core::merge::merge_states_with;
use mgha_core::plugin::{Plugin, PluginLimits, PLUGIN_TYPE};
use mgha_core::{Error, ErrorCode, Object, Uid};
use plugin_support::{delete, fixture, fixture_text, node, publish, put};
use serde_json::json;

/// Small budgets, so that hostile calls end quickly.
fn test_limits() -> PluginLimits {
    PluginLimits { fuel_per_call: 20_000_000, call_timeout_ms: 10_000, memory_pages_max: 64, output_bytes_max: 1 << 20 }
}

fn plugin_error(e: &Error) -> (&str, &str, &str) {
    match e {
        Error::Plugin { plugin, call, reason } => (plugin, call, reason),
        other => panic!("expected a plugin error, got {other:?}"),
    }
}

#[test]
fn good_plugin_types_are_validated_by_schema_and_by_the_plugin() {
    let n = node("a");
    let e = &n.engine;
    assert!(matches!(put(e, "good.thing", "t", json!({})), Err(Error::UnknownType(_))));
    let rev = e.plugin_install("admin", &fixture("good")).expect("installs");
    assert_eq!(rev.changes[0].type_name, PLUGIN_TYPE);
    assert!(rev.message.contains("install plugin good 1.0"), "{}", rev.message);

    put(e, "good.thing", "t1", json!({"level": 3, "note": "fine"})).expect("valid");
    let schema_says = put(e, "good.thing", "t2", json!({"level": 11})).expect_err("out of range");
    assert!(matches!(&schema_says, Error::InvalidField { field, .. } if field == "level"), "{schema_says}");
    let plugin_says = put(e, "good.thing", "t3", json!({"note": "pure evil"})).expect_err("the plugin refuses");
    assert!(matches!(&plugin_says, Error::InvalidField { field, .. } if field == "note"), "{plugin_says}");
    assert!(plugin_says.to_string().contains("no evil here (plugin 'good')"), "{plugin_says}");

    let listed = e.plugin_list().expect("lists");
    assert_eq!(listed.len(), 1);
    assert_eq!((listed[0].name.as_str(), listed[0].type_names.as_slice()), ("good", &["good.thing".to_string()][..]));
    assert_eq!(listed[0].error, None);
    e.store().check().expect("store verifies");
}

#[test]
fn check_refuses_modules_that_break_the_abi() {
    let n = node("a");
    let cases: [(&str, Vec<u8>, &str); 5] = [
        ("wrong ABI version", fixture("wrongabi"), "ABI version 2"),
        ("WASI import", fixture("wasi"), "wasi_snapshot_preview1.fd_write: WASI is not available"),
        ("unknown import", fixture("stranger"), "mgha_host_v1.exec: plugins may import only mgha_host_v1.log"),
        ("not WebAssembly", fixture_text("good").into_bytes(), "not a WebAssembly module"),
        ("empty", Vec::new(), "not a WebAssembly module"),
    ];
    let head = n.engine.store().head().expect("head");
    for (what, wasm, why) in cases {
        let e = n.engine.plugin_check(&wasm).expect_err(what);
        let (_, call, reason) = plugin_error(&e);
        assert_eq!(call, "check", "{what}");
        assert!(reason.contains(why), "{what}: {reason}");
        assert_eq!(e.code(), ErrorCode::Validation);
        let e = n.engine.plugin_install("admin", &wasm).expect_err(what);
        assert!(e.to_string().contains(why), "{what}: {e}");
    }
    assert_eq!(n.engine.store().head().expect("head"), head, "a refused install publishes nothing");
    assert!(n.engine.plugin_list().expect("lists").is_empty());
}

#[test]
fn hostile_calls_fail_alone_and_the_engine_goes_on() {
    let n = node("a");
    let e = &n.engine;
    e.store().set_plugin_limits(test_limits()).expect("limits");
    e.plugin_install("admin", &fixture("good")).expect("good installs");
    let hostile = [
        ("loop", "ran out of fuel: the limit is 20000000 per call"),
        ("bomb", "out of memory: the limit is 4 MiB"),
        ("trap", "trapped: unreachable executed"),
        ("garbage", "malformed answer"),
        ("huge", "over the limit of 1048576"),
    ];
    for (name, _) in hostile {
        // Each passes check: only its validate misbehaves.
        e.plugin_install("admin", &fixture(name)).unwrap_or_else(|err| panic!("{name} installs: {err}"));
    }
    for round in 0..2 {
        for (name, why) in hostile {
            let started = Instant::now();
            let err = put(e, &format!("{name}.thing"), &format!("x{round}"), json!({"level": 1})).expect_err(name);
            let (plugin, call, reason) = plugin_error(&err);
            assert_eq!((plugin, call), (name, "validate"), "{err}");
            assert!(reason.contains(why), "{name}: {reason}");
            assert!(started.elapsed() < Duration::from_secs(10), "{name} took {:?}", started.elapsed());
            // The engine and the other plugins go on.
            put(e, "good.thing", &format!("after-{name}-{round}"), json!({"level": 2})).expect("good still works");
            put(e, "host", &format!("h-{name}-{round}"), json!({"ipv4-address": "10.0.0.1"}))
                .expect("hosts still work");
        }
    }
    assert_eq!(e.plugin_list().expect("lists").len(), 1 + hostile.len());
    e.store().check().expect("store verifies");
}

#[test]
fn the_wall_clock_deadline_stops_what_fuel_would_let_run() {
    let limits = PluginLimits { fuel_per_call: u64::MAX / 2, call_timeout_ms: 100, ..test_limits() };
    let plugin = Plugin::load(&fixture("loop"), limits).expect("loads");
    let o =
        Object { type_name: "loop.thing".into(), uid: Uid::new_random(), name: "x".into(), fields: Default::default() };
    let started = Instant::now();
    let e = plugin.validate(&o).expect_err("deadline");
    assert!(plugin_error(&e).2.contains("timed out: the limit is 100 ms"), "{e}");
    assert!(started.elapsed() < Duration::from_secs(5), "took {:?}", started.elapsed());
}

#[test]
fn a_plugin_merge_that_traps_fails_the_merge_not_the_trivial_cases() {
    let n = node("a");
    n.engine.plugin_install("admin", &fixture("badmerge")).expect("installs");
    let registry = n.engine.store().plugins();
    let version = |level: i64| {
        let mut fields = mgha_core::model::Fields::new();
        fields.insert("level".into(), json!(level));
        Some(Object {
            type_name: "badmerge.thing".into(),
            uid: Uid(uuid::Uuid::from_u128(1)),
            name: "x".into(),
            fields,
        })
    };
    let uid = Uid(uuid::Uuid::from_u128(1));
    let trivial = vec![(uid, version(1), version(2), version(1))];
    let outcome = merge_states_with(registry.schemas(), &*registry, trivial).expect("the plugin is not asked");
    assert_eq!(outcome.trivial, 1);
    let both = vec![(uid, version(1), version(2), version(3))];
    let e = merge_states_with(registry.schemas(), &*registry, both).expect_err("the plugin traps");
    assert_eq!(plugin_error(&e), ("badmerge", "merge", "trapped: unreachable executed (a panic or an abort)"));
}

#[test]
fn removal_is_refused_while_objects_of_its_types_exist() {
    let n = node("a");
    let e = &n.engine;
    e.plugin_install("admin", &fixture("good")).expect("installs");
    put(e, "good.thing", "keep-me", json!({})).expect("put");
    let err = e.plugin_remove("admin", "good").expect_err("objects remain");
    let (_, call, reason) = plugin_error(&err);
    assert_eq!(call, "remove");
    assert!(reason.contains("good.thing 'keep-me'"), "{reason}");
    // The objects and the plugin may go together, in one revision.
    publish(
        e,
        json!([{"op": "delete", "type": "good.thing", "name": "keep-me"}, {"op": "delete", "type": "plugin", "name": "good"}]),
    )
    .expect("removed together");
    assert!(matches!(put(e, "good.thing", "t", json!({})), Err(Error::UnknownType(_))));
    assert!(matches!(e.plugin_remove("admin", "good"), Err(Error::NotFound(_))));
    e.plugin_install("admin", &fixture("good")).expect("installs again");
    put(e, "good.thing", "t", json!({})).expect("known again");
}

#[test]
fn upgrades_keep_their_objects_valid_or_are_refused() {
    let n = node("a");
    let e = &n.engine;
    e.plugin_install("admin", &fixture("good")).expect("installs");
    put(e, "good.thing", "t", json!({"level": 4})).expect("put");
    // Same type, new version: the object stays valid, so the upgrade goes in.
    let v11 = wat::parse_str(fixture_text("good").replace(r"\a31.0", r"\a31.1")).expect("wat");
    let rev = e.plugin_install("admin", &v11).expect("upgrades");
    assert!(rev.message.contains("upgrade plugin good 1.0 to 1.1"), "{}", rev.message);
    assert!(matches!(e.plugin_install("admin", &v11), Err(Error::EmptyChangeset)));
    // A version that renames the type would orphan the object.
    let renamed = wat::parse_str(fixture_text("good").replace("good.thing", "good.other")).expect("wat");
    let err = e.plugin_install("admin", &renamed).expect_err("drops a type in use");
    assert!(plugin_error(&err).2.contains("objects of type 'good.thing' remain: good.thing 't'"), "{err}");
    delete(e, "good.thing", "t").expect("delete");
    e.plugin_install("admin", &renamed).expect("nothing left to orphan");
    put(e, "good.other", "o", json!({})).expect("the new type is known");
}

#[test]
fn a_tampered_plugin_object_is_refused_by_the_commit() {
    let n = node("a");
    let wasm = fixture("good");
    let info = n.engine.plugin_check(&wasm).expect("checks");
    let mut fields = json!({
        "wasm": base64_of(&wasm), "hash": info.hash.to_hex(), "version": "1.0", "types": ["good.thing"]});
    put(&n.engine, PLUGIN_TYPE, "good", fields.clone()).expect("a hand-made plugin object is fine when true");
    fields["types"] = json!(["good.thing", "good.extra"]);
    let e = put(&n.engine, PLUGIN_TYPE, "good", fields.clone()).expect_err("types do not match");
    assert!(e.to_string().contains("field 'types'"), "{e}");
    fields["hash"] = json!(mgha_core::Hash::of(b"other").to_hex());
    let e = put(&n.engine, PLUGIN_TYPE, "good", fields).expect_err("hash does not match");
    assert!(e.to_string().contains("does not match the module"), "{e}");
}

fn base64_of(bytes: &[u8]) -> String {
    // The engine's own encoding of a plugin object, so the test needs no base64 of its own.
    let d = mgha_core::plugin::Plugin::load(bytes, PluginLimits::default()).expect("loads");
    match mgha_core::plugin::stored::object_fields(bytes, d.description()).remove("wasm") {
        Some(serde_json::Value::String(s)) => s,
        other => panic!("no wasm field: {other:?}"),
    }
}
