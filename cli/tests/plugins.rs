//! `mgha plugin` end to end, with real processes: a module checked offline and through a
//! daemon, installed on the Active of a Primary + Standby pair, replicated and loaded on the
//! Standby, used by an object that replicates too, and removed only once that object is gone.
//!
//! The example plugins come from scripts/build-plugins, found like the core's and the C ABI's
//! tests find them (`MGHA_EXAMPLE_PLUGINS_DIR`, which scripts/test sets, or where that script
//! puts them). The test fails when the variable names a directory without them; it skips, saying
//! so, only when the variable is unset and the default directory does not hold them either.

mod support;

use std::path::PathBuf;

use serde_json::{json, Value};
use support::*;

const EXIT_VALIDATION: i32 = 4;
const EXIT_NOT_FOUND: i32 = 5;
const EXIT_CONFLICT: i32 = 6;
const EXIT_READ_ONLY: i32 = 7;

/// Where scripts/test tells the tests to find the compiled example plugins.
const EXAMPLES_ENV: &str = "MGHA_EXAMPLE_PLUGINS_DIR";

/// A module that is valid WebAssembly but imports a function outside the host table.
const IMPORTS_ENV: &[u8] = &[
    0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, // magic, version 1
    0x01, 0x04, 0x01, 0x60, 0x00, 0x00, // type section: () -> ()
    0x02, 0x09, 0x01, 0x03, b'e', b'n', b'v', 0x01, b'f', 0x00, 0x00, // import env.f
];

/// The compiled `vpn_community` example, or `None` (with a note) when the examples were never
/// built and nobody said where they are.
fn vpn_module() -> Option<PathBuf> {
    let default = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../plugins/target/wasm32-unknown-unknown/release");
    let path = match std::env::var_os(EXAMPLES_ENV) {
        Some(dir) => PathBuf::from(dir).join("vpn_community.wasm"),
        None if default.join("vpn_community.wasm").is_file() => default.join("vpn_community.wasm"),
        None => {
            eprintln!(
                "note: skipped: the example plugins are not built in {} and {EXAMPLES_ENV} is unset; run \
                 scripts/build-plugins (scripts/test does) and set {EXAMPLES_ENV} to the directory it prints",
                default.display()
            );
            return None;
        }
    };
    assert!(
        path.is_file(),
        "{} does not exist: run scripts/build-plugins and set {EXAMPLES_ENV} to the directory it prints",
        path.display()
    );
    Some(path)
}

/// A changeset file of `changes`.
fn changeset(scratch: &Scratch, name: &str, changes: Value) -> PathBuf {
    scratch.file(name, &json!({"message": name, "changes": changes}).to_string())
}

/// `mgha plugin list --json` of a node: its plugins by name.
fn plugins(node: &Node) -> Vec<Value> {
    ok_json(&["plugin", "list", "-d", node.d(), "--json"])["plugins"].as_array().expect("plugins").clone()
}

#[test]
fn refused_modules_exit_nonzero_with_the_reason() {
    let scratch = Scratch::new();
    let text = scratch.file("text.wasm", "this is not WebAssembly\n");
    let err = fails(&["plugin", "check", s(&text)], EXIT_VALIDATION);
    assert!(err.contains("text.wasm: refused") && err.contains("not a WebAssembly module"), "{err}");

    let imports = scratch.path("imports.wasm");
    std::fs::write(&imports, IMPORTS_ENV).expect("write");
    let err = fails(&["plugin", "check", s(&imports)], EXIT_VALIDATION);
    assert!(err.contains("imports env.f") && err.contains("mgha_host_v1"), "{err}");

    let missing = scratch.path("missing.wasm");
    let err = fails(&["plugin", "check", s(&missing)], 1);
    assert!(err.contains("missing.wasm") && err.contains("cannot open"), "{err}");

    // A module over the size limit is refused by its size, before anything compiles it.
    let big = scratch.path("big.wasm");
    std::fs::write(&big, vec![0u8; 2 * 1024 * 1024]).expect("write");
    let err = fails(&["plugin", "check", s(&big)], 8);
    assert!(err.contains("2097152 bytes, over the limit"), "{err}");

    // Installing on a stopped node (--offline) refuses the same way and publishes nothing.
    let p = scratch.init("p");
    let err = fails(&["plugin", "install", "--offline", "-d", p.d(), s(&text)], EXIT_VALIDATION);
    assert!(err.contains("nothing was published") && err.contains("not a WebAssembly module"), "{err}");
    assert_eq!(p.status()["head"]["seq"], 0);
    let err = fails(&["plugin", "remove", "--offline", "-d", p.d(), "vpn"], EXIT_NOT_FOUND);
    assert!(err.contains("no plugin 'vpn'"), "{err}");
}

#[test]
fn plugin_installs_on_the_active_replicates_and_is_removed_once_unused() {
    let Some(vpn) = vpn_module() else { return };
    let vpn = s(&vpn);
    let scratch = Scratch::new();

    // Offline: no node at all.
    let info = ok_json(&["plugin", "check", "--json", vpn]);
    assert_eq!((&info["name"], &info["version"]), (&json!("vpn"), &json!("1.0.0")), "{info}");
    assert_eq!(info["type_names"], json!(["vpn.community"]));
    assert_eq!(info["merge"], json!(["vpn.community"]));
    assert!(info.get("uid").is_none() && info.get("error").is_none(), "{info}");
    let hash = info["hash"].as_str().expect("hash").to_string();
    let table = ok(&["plugin", "check", vpn]);
    assert!(table.contains("vpn 1.0.0") && table.contains(&hash), "{table}");
    assert!(table.contains("type vpn.community") && table.contains("list of ref to host"), "{table}");

    let mut p = scratch.init("p");
    p.start();
    let mut b = scratch.join(&p, "b");
    b.start();

    // Through a daemon, the same verdicts.
    assert_eq!(ok_json(&["plugin", "check", "-d", p.d(), "--json", vpn]), info);
    let text = scratch.file("text.wasm", "not wasm");
    let err = fails(&["plugin", "check", "-d", b.d(), s(&text)], EXIT_VALIDATION);
    assert!(err.contains("not a WebAssembly module"), "{err}");

    // A Standby refuses the install as it refuses every write, naming the Active.
    wait_converged(&p, &[&b]);
    let err = fails(&["plugin", "install", "-d", b.d(), vpn], EXIT_READ_ONLY);
    assert!(err.contains("read-only standby") && err.contains("'p'"), "{err}");

    let rev = ok_json(&["plugin", "install", "-d", p.d(), "--author", "alice", "--json", vpn]);
    assert_eq!((&rev["seq"], &rev["changes"], &rev["author"]), (&json!(1), &json!(1), &json!("alice")), "{rev}");
    assert_eq!(rev["message"], "install plugin vpn 1.0.0");
    let err = fails(&["plugin", "install", "-d", p.d(), vpn], EXIT_VALIDATION);
    assert!(err.contains("nothing to publish"), "the same module twice: {err}");

    // The Standby applies the revision and loads the module from it.
    wait_until("the standby to load the plugin", || {
        plugins(&b).iter().any(|pl| pl["name"] == "vpn" && pl["hash"] == hash.as_str() && pl.get("error").is_none())
    });
    let listed = plugins(&b);
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0]["type_names"], json!(["vpn.community"]));
    assert!(listed[0]["uid"].is_string(), "{listed:?}");
    let table = ok(&["plugin", "list", "-d", b.d()]);
    let line = table.lines().find(|l| l.starts_with("vpn")).unwrap_or_else(|| panic!("vpn in {table}"));
    assert!(line.contains("vpn.community") && line.contains(&hash[..12]) && line.ends_with("loaded"), "{line}");

    // Objects of its type publish, validated by the plugin, and replicate.
    let gateways = changeset(
        &scratch,
        "gateways",
        json!([{"op": "put", "type": "host", "name": "gw1", "fields": {"ipv4-address": "10.0.0.1"}},
               {"op": "put", "type": "host", "name": "gw2", "fields": {"ipv4-address": "10.0.0.2"}}]),
    );
    ok(&["apply", "-d", p.d(), s(&gateways)]);
    let lonely = changeset(
        &scratch,
        "lonely",
        json!([{"op": "put", "type": "vpn.community", "name": "corp",
                "fields": {"gateways": ["gw1"], "encryption": "aes-256"}}]),
    );
    let err = fails(&["apply", "-d", p.d(), s(&lonely)], EXIT_VALIDATION);
    assert!(err.contains("at least two distinct gateways"), "the plugin's own validation: {err}");
    let corp = changeset(
        &scratch,
        "corp",
        json!([{"op": "put", "type": "vpn.community", "name": "corp",
                "fields": {"gateways": ["gw1", "gw2"], "encryption": "aes-256"}}]),
    );
    ok(&["apply", "-d", p.d(), s(&corp)]);
    wait_converged(&p, &[&b]);
    let on_b = ok_json(&["get", "-d", b.d(), "--json", "vpn.community", "corp"]);
    assert_eq!(on_b["fields"]["encryption"], "aes-256", "{on_b}");

    // Removal is refused while the community exists, and works once it is deleted.
    let err = fails(&["plugin", "remove", "-d", p.d(), "vpn"], EXIT_CONFLICT);
    assert!(err.contains("nothing was published") && err.contains("vpn.community 'corp'"), "{err}");
    let err = fails(&["plugin", "remove", "-d", b.d(), "vpn"], EXIT_READ_ONLY);
    assert!(err.contains("read-only standby"), "{err}");
    let drop_corp =
        changeset(&scratch, "drop-corp", json!([{"op": "delete", "type": "vpn.community", "name": "corp"}]));
    ok(&["apply", "-d", p.d(), s(&drop_corp)]);
    let out = ok(&["plugin", "remove", "-d", p.d(), "vpn"]);
    assert!(out.contains("published") && out.contains("remove plugin vpn 1.0.0"), "{out}");
    wait_converged(&p, &[&b]);
    assert!(plugins(&b).is_empty(), "the standby dropped the plugin too");
    assert_eq!(ok(&["plugin", "list", "-d", b.d()]).trim(), "no plugins installed");
    let err = fails(&["apply", "-d", p.d(), s(&corp)], EXIT_VALIDATION);
    assert!(err.contains("vpn.community"), "the type is gone with its plugin: {err}");

    for node in [&mut b, &mut p] {
        assert_eq!(node.terminate(), Some(0), "{} stops cleanly", node.name);
    }
}
