//! The process that the crash test kills: opens (or creates) an engine in a data directory and
//! publishes changesets until it is killed, printing `published <seq> <id-hex> <state-hash-hex>`
//! only after each publish returned, that is after its redb commit was durable.
//!
//! Usage: `mgha-crash-child DIR SEED [PUBLISHERS]`. It mixes one-object revisions with revisions
//! of about 50 changes (puts, edits and deletes of hosts, and edits of groups that refer to hosts
//! that are never deleted), so a kill lands in commits of several sizes. With PUBLISHERS > 1, as
//! many more threads publish one host each per revision at the same time, so that kills also
//! land in commits that share one fsync (group commit); acknowledgements are then printed in
//! the order the publishes returned, not in revision order.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::PathBuf;

use mgha_core::engine::EngineOptions;
use mgha_core::store::STORE_FILE;
use mgha_core::{ChangeInput, ChangeSet, Engine, Error, NodeState};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;

/// Hosts that come and go: `h0` .. `h{HOSTS-1}`.
const HOSTS: u32 = 400;
/// Hosts that groups refer to, never deleted: `anchor0` ..
const ANCHORS: u32 = 10;
/// Groups, edited now and then: `g0` ..
const GROUPS: u32 = 5;
/// Changes in a large revision.
const LARGE_CHANGES: usize = 50;

fn main() {
    if let Err(e) = run() {
        eprintln!("mgha-crash-child: {e}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), String> {
    let mut args = std::env::args().skip(1);
    let dir = PathBuf::from(args.next().ok_or("usage: mgha-crash-child DIR SEED")?);
    let seed: u64 = args.next().ok_or("usage: mgha-crash-child DIR SEED")?.parse().map_err(|e| format!("seed: {e}"))?;
    let publishers: u32 = match args.next() {
        Some(n) => n.parse().map_err(|e| format!("publishers: {e}"))?,
        None => 1,
    };
    let engine = if dir.join(STORE_FILE).exists() {
        mgha_sync::open_engine(&dir, EngineOptions::default())
    } else {
        mgha_sync::create_engine(&dir, &NodeState::new_primary("crash-child"), EngineOptions::default())
    }
    .map_err(|e| format!("open {}: {e}", dir.display()))?;

    let mut hosts: BTreeSet<u32> = engine
        .store()
        .list(Some("host"), usize::MAX)
        .map_err(|e| e.to_string())?
        .into_iter()
        .filter_map(|o| o.name.strip_prefix('h').and_then(|n| n.parse().ok()))
        .collect();
    if engine.store().get("host", "anchor0").is_err() {
        let changes = (0..ANCHORS).map(|i| host(&format!("anchor{i}"), i)).collect();
        publish(&engine, changes)?;
    }

    let engine = std::sync::Arc::new(engine);
    for t in 1..publishers {
        let engine = engine.clone();
        std::thread::spawn(move || {
            // Hosts of their own (`c<thread>-<k>`), put again and again with a new address.
            let mut k = 0u32;
            loop {
                k = k.wrapping_add(1);
                if let Err(e) = publish(&engine, vec![host(&format!("c{t}-{}", k % 50), k)]) {
                    if !e.starts_with("empty:") {
                        eprintln!("mgha-crash-child: publisher {t}: {e}");
                        std::process::exit(1);
                    }
                }
            }
        });
    }
    let mut rng = StdRng::seed_from_u64(seed);
    // Addresses come from a counter that starts where the head is, so an edit always changes
    // something and a one-change revision is never empty.
    let mut counter = engine.store().head().map_err(|e| e.to_string())?.seq as u32 * 64;
    loop {
        let size = if rng.gen_bool(0.2) { LARGE_CHANGES } else { 1 };
        let mut next = hosts.clone();
        let mut changes = Vec::with_capacity(size);
        for _ in 0..size {
            counter = counter.wrapping_add(1);
            if rng.gen_bool(0.1) {
                let g = rng.gen_range(0..GROUPS);
                let members: Vec<String> =
                    (0..ANCHORS).filter(|_| rng.gen_bool(0.5)).map(|i| format!("anchor{i}")).collect();
                let fields = json!({"members": members, "comments": format!("edit {counter}")});
                changes.push(put("group", &format!("g{g}"), fields));
                continue;
            }
            let h = rng.gen_range(0..HOSTS);
            if next.contains(&h) && rng.gen_bool(0.4) {
                next.remove(&h);
                changes.push(ChangeInput::Delete { type_name: "host".into(), name: Some(format!("h{h}")), uid: None });
            } else {
                next.insert(h);
                changes.push(host(&format!("h{h}"), counter));
            }
        }
        match publish(&engine, changes) {
            Ok(()) => hosts = next,
            // A large changeset whose changes cancel out leaves nothing to publish.
            Err(e) if e.starts_with("empty:") => {}
            Err(e) => return Err(e),
        }
    }
}

fn host(name: &str, n: u32) -> ChangeInput {
    let [_, b, c, d] = n.to_be_bytes();
    put("host", name, json!({"ipv4-address": format!("10.{b}.{c}.{d}")}))
}

fn put(type_name: &str, name: &str, fields: serde_json::Value) -> ChangeInput {
    let serde_json::Value::Object(fields) = fields else { unreachable!("fields are built as JSON objects") };
    ChangeInput::Put { type_name: type_name.into(), name: name.into(), uid: None, fields }
}

/// Publishes, then acknowledges on stdout. Nothing is printed for a publish that did not return.
fn publish(engine: &Engine, changes: Vec<ChangeInput>) -> Result<(), String> {
    let rev = match engine.publish("crash-child", &ChangeSet { message: "crash test".into(), changes }) {
        Ok(rev) => rev,
        Err(Error::EmptyChangeset) => return Err("empty: nothing to publish".into()),
        Err(e) => return Err(format!("publish: {e}")),
    };
    let mut out = std::io::stdout().lock();
    writeln!(out, "published {} {} {}", rev.seq, rev.id.to_hex(), rev.state_hash.to_hex())
        .and_then(|()| out.flush())
        .map_err(|e| format!("stdout: {e}"))
}
