//! Shared by the plugin tests: engines in temp dirs, the hand-written WAT fixtures of
//! `tests/plugins/`, and the example plugins that scripts/build-plugins compiles from source.

#![allow(dead_code)]

use std::path::PathBuf;

use mgha_core::engine::{Engine, EngineOptions};
use mgha_core::{ChangeSet, NodeState, Result, Revision};
use serde_json::{json, Value};

/// Where scripts/test tells the tests to find the compiled example plugins.
pub const EXAMPLES_ENV: &str = "MGHA_EXAMPLE_PLUGINS_DIR";

/// An engine in its own temp dir, removed on drop.
pub struct Node {
    pub engine: Engine,
    pub dir: tempfile::TempDir,
}

/// A fresh Primary, Active, with an empty store.
pub fn node(name: &str) -> Node {
    mgha_plugin_host::install();
    let dir = tempfile::tempdir().expect("tempdir");
    let engine = Engine::create(dir.path(), &NodeState::new_primary(name), EngineOptions::default()).expect("engine");
    Node { engine, dir }
}

/// A WAT fixture of `tests/plugins/`, compiled to WebAssembly.
pub fn fixture(name: &str) -> Vec<u8> {
    mgha_plugin_host::install();
    wat::parse_file(fixture_path(name)).unwrap_or_else(|e| panic!("fixture {name}: {e}"))
}

/// The text of a WAT fixture, for tests that derive variants from it.
pub fn fixture_text(name: &str) -> String {
    mgha_plugin_host::install();
    std::fs::read_to_string(fixture_path(name)).unwrap_or_else(|e| panic!("fixture {name}: {e}"))
}

fn fixture_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/plugins").join(format!("{name}.wat"))
}

/// The directory of the compiled example plugins: `$MGHA_EXAMPLE_PLUGINS_DIR`, or else where
/// scripts/build-plugins puts them. These tests fail (never skip) when neither holds them.
pub fn examples_dir() -> PathBuf {
    let default = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../plugins/target/wasm32-unknown-unknown/release");
    let dir = std::env::var_os(EXAMPLES_ENV).map(PathBuf::from).unwrap_or(default);
    assert!(
        dir.join("vpn_community.wasm").is_file() && dir.join("threat_profile.wasm").is_file(),
        "the example plugins are not built in {}: run scripts/build-plugins (scripts/test does) and set {EXAMPLES_ENV} \
         to the directory it prints",
        dir.display()
    );
    dir
}

/// An example plugin's module: `vpn_community` or `threat_profile`.
pub fn example(name: &str) -> Vec<u8> {
    mgha_plugin_host::install();
    let path = examples_dir().join(format!("{name}.wasm"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Publishes one put.
pub fn put(engine: &Engine, type_name: &str, name: &str, fields: Value) -> Result<Revision> {
    publish(engine, json!([{"op": "put", "type": type_name, "name": name, "fields": fields}]))
}

/// Publishes one delete.
pub fn delete(engine: &Engine, type_name: &str, name: &str) -> Result<Revision> {
    publish(engine, json!([{"op": "delete", "type": type_name, "name": name}]))
}

/// Publishes a list of changes in the changeset's JSON form.
pub fn publish(engine: &Engine, changes: Value) -> Result<Revision> {
    let cs: ChangeSet = serde_json::from_value(json!({"message": "test", "changes": changes})).expect("changeset");
    engine.publish("tester", &cs)
}
