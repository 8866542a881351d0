//! Plugin figures: what a call into each example plugin costs (validate and merge of one small
//! object, p50 and mean, from the engine's side: encoding, the call into WebAssembly, decoding and
//! checking the answer), and the three-way merge of 100,000 objects through the `vpn` plugin's
//! own merge next to the built-in merge of a built-in type of the same shape, in the same run and
//! through the same entry points: `merge_states_with`, as a collision merge calls it, and
//! `merge_object_with` for the merge step alone. docs/BENCHMARKS.md, "Plugin figures".

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context};
use mgha_core::engine::EngineOptions;
use mgha_core::merge::{merge_object_with, merge_states_with};
use mgha_core::model::Fields;
use mgha_core::plugin::{Plugin, PluginRegistry};
use mgha_core::{NodeState, Object, Uid};
use serde_json::{json, Value};

use super::report::{Goal, Row, Unit};

/// Goals, from the plugin issue.
const CALL_US_MAX: f64 = 10.0;
const MERGE_OVER_BUILTIN_MAX: f64 = 3.0;

/// The environment variable the bench (and the engine's tests) read the examples' directory from.
pub const PLUGINS_DIR_ENV: &str = "MGHA_EXAMPLE_PLUGINS_DIR";

/// How to get the example plugins, for every message that misses them.
const HOW_TO_BUILD: &str = "build them with scripts/build-plugins (it prints their directory) and run \
     `mgha bench --plugins-dir \"$(scripts/build-plugins)\"`, or set MGHA_EXAMPLE_PLUGINS_DIR";

/// Sizes of the plugin measurements.
#[derive(Clone, Copy, Debug)]
pub struct PluginScale {
    /// Timed calls of each kind, after as many untimed ones.
    pub calls: usize,
    /// Objects of each merge throughput run.
    pub merge_objects: usize,
    /// Merge runs of each kind, alternating; the median counts.
    pub merge_rounds: usize,
}

impl PluginScale {
    pub fn full() -> PluginScale {
        PluginScale { calls: 20_000, merge_objects: 100_000, merge_rounds: 3 }
    }

    pub fn quick() -> PluginScale {
        PluginScale { calls: 200, merge_objects: 1_000, merge_rounds: 1 }
    }
}

/// One example plugin: its module file, the small object its figures use, and its row keys.
struct Example {
    /// Short name in labels.
    name: &'static str,
    file: &'static str,
    type_name: &'static str,
    object: fn(u64) -> Object,
    /// validate p50 and mean, merge p50 and mean.
    keys: [[&'static str; 2]; 2],
}

const EXAMPLES: &[Example] = &[
    Example {
        name: "vpn",
        file: "vpn_community.wasm",
        type_name: "vpn.community",
        object: community,
        keys: [
            ["plugin.vpn.validate.p50", "plugin.vpn.validate.mean"],
            ["plugin.vpn.merge.p50", "plugin.vpn.merge.mean"],
        ],
    },
    Example {
        name: "threat",
        file: "threat_profile.wasm",
        type_name: "threat.profile",
        object: profile,
        keys: [
            ["plugin.threat.validate.p50", "plugin.threat.validate.mean"],
            ["plugin.threat.merge.p50", "plugin.threat.merge.mean"],
        ],
    },
];

/// The examples' directory: `--plugins-dir`, else `$MGHA_EXAMPLE_PLUGINS_DIR` (clap reads both);
/// an error saying how to build them when it does not hold them.
pub fn examples_dir(dir: Option<&Path>) -> anyhow::Result<PathBuf> {
    let Some(dir) = dir else {
        bail!("no --plugins-dir and no {PLUGINS_DIR_ENV}: the plugin figures need the example plugins; {HOW_TO_BUILD}");
    };
    for e in EXAMPLES {
        ensure!(
            dir.join(e.file).is_file(),
            "the example plugin {} is not in {}: {HOW_TO_BUILD}",
            e.file,
            dir.display()
        );
    }
    Ok(dir.to_path_buf())
}

/// Installs the examples in a fresh store under `scratch`, then measures.
pub fn run(scratch: &Path, dir: &Path, scale: PluginScale, rows: &mut Vec<Row>) -> anyhow::Result<()> {
    let engine =
        mgha_sync::create_engine(&scratch.join("plugins"), &NodeState::new_primary("bench"), EngineOptions::default())?;
    for e in EXAMPLES {
        let path = dir.join(e.file);
        let wasm = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
        engine.plugin_install("bench", &wasm).with_context(|| format!("installing {}", path.display()))?;
    }
    let registry = engine.store().plugins();
    for e in EXAMPLES {
        let plugin = registry.plugin_for_type(e.type_name).context("an example plugin did not load")?;
        per_call(e, plugin, scale, rows)?;
    }
    throughput(&registry, scale, rows)
}

/// Validate and merge of one small object, call by call.
fn per_call(e: &Example, plugin: &Arc<Plugin>, scale: PluginScale, rows: &mut Vec<Row>) -> anyhow::Result<()> {
    let object = (e.object)(0);
    let bytes = object.encode().len();
    let validate = time_calls(scale.calls, || Ok(plugin.validate(&object)?))?;
    let (base, active, branch) = versions(e.object, 0);
    let merge = time_calls(scale.calls, || {
        let m = plugin.merge(e.type_name, Some(&base), Some(&active), Some(&branch))?;
        ensure!(m.result.is_some(), "the merge deleted the object");
        Ok(())
    })?;
    // A type without a merge of its own merges by its schema's strategies: the engine never calls
    // the export, which answers the SDK's default (the whole object in conflict). Shown, no goal.
    let merge_used = plugin.merges(e.type_name);
    let merge_note = if merge_used { "" } else { " (SDK default, unused)" };
    let calls = [("validate", &validate, "", true), ("merge", &merge, merge_note, merge_used)];
    for ((call, samples, note, goal), [p50_key, mean_key]) in calls.into_iter().zip(e.keys) {
        let label = |stat: &str| format!("plugin {}: {call}{note} per call, {stat} ({bytes}-byte object)", e.name);
        let with_goal = |row: Row| if goal { row.goal(Goal::AtMost(CALL_US_MAX)) } else { row };
        rows.push(with_goal(Row::new(p50_key, label("p50"), percentile_us(samples, 50.0), Unit::Microseconds)));
        rows.push(with_goal(Row::new(mean_key, label("mean"), mean_us(samples), Unit::Microseconds)));
    }
    Ok(())
}

/// Runs `call` `calls` times untimed, then `calls` times timed one by one.
fn time_calls(calls: usize, mut call: impl FnMut() -> anyhow::Result<()>) -> anyhow::Result<Vec<Duration>> {
    for _ in 0..calls {
        call()?;
    }
    let mut samples = Vec::with_capacity(calls);
    for _ in 0..calls {
        let t = Instant::now();
        call()?;
        samples.push(t.elapsed());
    }
    Ok(samples)
}

/// Three-way merges of `scale.merge_objects` objects both sides changed in different fields: the
/// `vpn` plugin's merge of communities next to the built-in merge of groups (the same shape: a
/// set-union list of two references, one more on the active, another field switched on the
/// branch, a comment). Measured as the engine merges a collision branch, all objects in one
/// `merge_states_with` (sorting them, comparing each result with the active's version, dropping
/// the inputs): the figure, with its goal. And the merge step alone, object by object
/// (`merge_object_with`), without a goal: there the plugin's fixed costs (encoding, the call,
/// decoding and checking the answer) weigh most. Runs alternate; the median of each counts.
fn throughput(registry: &PluginRegistry, scale: PluginScale, rows: &mut Vec<Row>) -> anyhow::Result<()> {
    let n = scale.merge_objects;
    let mut runs: [Vec<f64>; 4] = Default::default();
    for _ in 0..scale.merge_rounds {
        runs[0].push(batch_run(registry, group, n)?);
        runs[1].push(batch_run(registry, community, n)?);
        runs[2].push(object_run(registry, group, n)?);
        runs[3].push(object_run(registry, community, n)?);
    }
    let [batch_builtin, batch_plugin, object_builtin, object_plugin] = runs.map(|mut r| {
        r.sort_by(f64::total_cmp);
        r[r.len() / 2] * 1e6 / n as f64
    });
    let bytes = |f: fn(u64) -> Object| f(0).encode().len();
    let (group_bytes, community_bytes) = (bytes(group), bytes(community));
    let figures = [
        (
            ["merge.batch.builtin", "merge.batch.plugin", "merge.batch.ratio"],
            "in one merge",
            batch_builtin,
            batch_plugin,
            Some(Goal::AtMost(MERGE_OVER_BUILTIN_MAX)),
        ),
        (
            ["merge.object.builtin", "merge.object.plugin", "merge.object.ratio"],
            "one by one",
            object_builtin,
            object_plugin,
            None,
        ),
    ];
    for ([builtin_key, plugin_key, ratio_key], how, builtin_us, plugin_us, goal) in figures {
        let label = |what: String| format!("{what}, {n} {how}, per object");
        rows.push(Row::new(
            builtin_key,
            label(format!("built-in merge of groups ({group_bytes} B)")),
            builtin_us,
            Unit::Microseconds,
        ));
        rows.push(Row::new(
            plugin_key,
            label(format!("plugin merge of vpn communities ({community_bytes} B)")),
            plugin_us,
            Unit::Microseconds,
        ));
        let mut ratio =
            Row::new(ratio_key, format!("plugin / built-in merge, {how}"), plugin_us / builtin_us, Unit::Times);
        ratio.goal = goal;
        rows.push(ratio);
    }
    Ok(())
}

/// `n` objects made by `make` merged one by one; the seconds it took.
fn object_run(registry: &PluginRegistry, make: fn(u64) -> Object, n: usize) -> anyhow::Result<f64> {
    let inputs: Vec<_> = (0..n as u64).map(|i| versions(make, i)).collect();
    let type_name = make(0).type_name;
    let schema = registry.schemas().get(&type_name);
    let mut conflicts = 0;
    let t = Instant::now();
    for (b, a, r) in &inputs {
        let merged = merge_object_with(registry, schema, Some(b), Some(a), Some(r))?;
        conflicts += merged.conflicts.len();
    }
    let s = t.elapsed().as_secs_f64();
    ensure!(conflicts == 0, "the {type_name} merge found {conflicts} conflicts");
    Ok(s)
}

/// `n` objects made by `make` merged as one batch; the seconds it took.
fn batch_run(registry: &PluginRegistry, make: fn(u64) -> Object, n: usize) -> anyhow::Result<f64> {
    let type_name = make(0).type_name;
    let inputs: Vec<_> = (0..n as u64)
        .map(|i| {
            let (b, a, r) = versions(make, i);
            (a.uid, Some(b), Some(a), Some(r))
        })
        .collect();
    let t = Instant::now();
    let outcome = merge_states_with(registry.schemas(), registry, inputs)?;
    let s = t.elapsed().as_secs_f64();
    ensure!(outcome.conflicts.is_empty(), "the {type_name} merge found conflicts: {:?}", outcome.conflicts.first());
    ensure!(
        outcome.field_merged == n && outcome.targets.len() == n,
        "the {type_name} merge settled {} of {n} objects by their fields",
        outcome.field_merged
    );
    // Both sides' changes are in every result.
    let Some((_, Some(merged))) = outcome.targets.first() else { bail!("the {type_name} merge deleted an object") };
    let (_, active, branch) = versions(make, 0);
    let (list, switch, _) = shape(&type_name);
    for (field, side) in [(list, &active), (switch, &branch)] {
        ensure!(merged.fields.get(field) == side.fields.get(field), "the {type_name} merge lost the change of {field}");
    }
    Ok(s)
}

/// Per type: the list the active adds to, the field the branch switches, and its new value.
fn shape(type_name: &str) -> (&'static str, &'static str, Value) {
    match type_name {
        "group" => ("members", "color", json!("green")),
        "threat.profile" => ("protections", "action", json!("detect")),
        _ => ("gateways", "encryption", json!("aes-256-gcm")),
    }
}

/// Base, active and branch of object `i`: the active adds one item to a list, the branch switches
/// another field, so that both changed it and a real merge (not a trivial one) runs.
fn versions(make: fn(u64) -> Object, i: u64) -> (Object, Object, Object) {
    let base = make(i);
    let (list, switch, switched) = shape(&base.type_name);
    let mut active = base.clone();
    if let Some(Value::Array(items)) = active.fields.get_mut(list) {
        items.push(Value::String(member(i + 2)));
    }
    let mut branch = base.clone();
    branch.fields.insert(switch.into(), switched);
    (base, active, branch)
}

fn uid(i: u64) -> Uid {
    Uid(uuid::Uuid::from_u128(0x6d67_6861_0000_0000_0000_0000_0000_0000 | u128::from(i)))
}

/// The uid of a referenced host: references cross the ABI as uids.
fn member(i: u64) -> String {
    Uid(uuid::Uuid::from_u128(0x686f_7374_0000_0000_0000_0000_0000_0000 | u128::from(i % 1_000))).to_string()
}

fn object(type_name: &str, i: u64, name: String, fields: Value) -> Object {
    let fields: Fields = match fields {
        Value::Object(map) => map,
        _ => Fields::new(),
    };
    Object { type_name: type_name.into(), uid: uid(i), name, fields }
}

/// A small `vpn.community`: two gateways, a suite, a topology and a comment.
fn community(i: u64) -> Object {
    let fields = json!({
        "gateways": [member(i), member(i + 1)],
        "encryption": "aes-128",
        "topology": "meshed",
        "comments": format!("site-to-site community {i}"),
    });
    object("vpn.community", i, format!("community-{i:06}"), fields)
}

/// A built-in `group` of the same shape: two members, a color, a tag, a comment.
fn group(i: u64) -> Object {
    let fields = json!({
        "members": [member(i), member(i + 1)],
        "color": "blue",
        "tags": ["bench"],
        "comments": format!("site-to-site group {i}"),
    });
    object("group", i, format!("group-{i:06}"), fields)
}

/// A small `threat.profile` that passes the plugin's checks.
fn profile(i: u64) -> Object {
    let fields = json!({
        "severity-threshold": 2,
        "confidence-threshold": 50,
        "action": "prevent",
        "protections": ["ips", "anti-bot"],
        "comments": format!("edge profile {i}"),
    });
    object("threat.profile", i, format!("edge-{i:06}"), fields)
}

fn percentile_us(samples: &[Duration], p: f64) -> f64 {
    super::workload::percentile_ms(samples, p) * 1e3
}

fn mean_us(samples: &[Duration]) -> f64 {
    let total: Duration = samples.iter().sum();
    total.as_secs_f64() * 1e6 / samples.len().max(1) as f64
}
