//! Property tests of the revisioned store over random histories of hosts, networks, groups,
//! services and service groups: diffs transform one revision's state into another's, state hashes
//! equal a recomputation, revert restores a state, invalid changesets change nothing, and backups
//! round-trip while any damage to them is detected.
//!
//! Each case keeps its own model of the state after every revision (`World::states`), built from
//! the generated steps without asking the store, and compares the store against it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;

use mgha_core::backup::{restore_backup, verify_backup, write_backup};
use mgha_core::engine::EngineOptions;
use mgha_core::model::{Fields, StateHash};
use mgha_core::store::{Store, STORE_FILE};
use mgha_core::{ChangeInput, ChangeSet, Engine, Error, Hash, NodeState, Object, Uid};
use proptest::prelude::*;
use proptest::sample::Index;
use serde_json::{json, Value};
use tempfile::TempDir;

/// Cases per property: enough to meet renames, cycles of reuse and deep groups, small enough
/// that the file runs in seconds in a debug build.
const CASES: u32 = 32;
/// Names per type: few, so that puts often replace and renames often collide.
const NAMES: u8 = 8;

type State = BTreeMap<Uid, Object>;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Host,
    Network,
    Tcp,
    Udp,
    Group,
    ServiceGroup,
}

impl Kind {
    fn of(type_name: &str) -> Kind {
        match type_name {
            "host" => Kind::Host,
            "network" => Kind::Network,
            "service-tcp" => Kind::Tcp,
            "service-udp" => Kind::Udp,
            "group" => Kind::Group,
            "service-group" => Kind::ServiceGroup,
            other => panic!("the generator makes no {other}"),
        }
    }

    fn type_name(self) -> &'static str {
        match self {
            Kind::Host => "host",
            Kind::Network => "network",
            Kind::Tcp => "service-tcp",
            Kind::Udp => "service-udp",
            Kind::Group => "group",
            Kind::ServiceGroup => "service-group",
        }
    }

    /// Names carry a per-type prefix, so a reference by name is never ambiguous.
    fn prefix(self) -> &'static str {
        match self {
            Kind::Host => "h",
            Kind::Network => "n",
            Kind::Tcp => "tcp",
            Kind::Udp => "udp",
            Kind::Group => "g",
            Kind::ServiceGroup => "sg",
        }
    }

    /// The types a group of this kind may hold.
    fn member_types(self) -> &'static [&'static str] {
        match self {
            Kind::Group => &["host", "network", "group"],
            Kind::ServiceGroup => &["service-tcp", "service-udp", "service-group"],
            _ => &[],
        }
    }
}

/// One generated edit, interpreted against the state it meets (see [`Planner::step`]).
#[derive(Clone, Debug)]
enum Step {
    /// Create, or replace the fields of, the object of this kind and name.
    Put {
        kind: Kind,
        name: u8,
        seed: u32,
        members: Vec<(Index, bool)>,
        by_uid: bool,
    },
    Rename {
        pick: Index,
        name: u8,
    },
    /// Change one field of an existing object.
    Edit {
        pick: Index,
        what: u8,
        seed: u32,
        members: Vec<(Index, bool)>,
        by_uid: bool,
    },
    /// Delete an object that nothing refers to.
    Delete {
        pick: Index,
        by_uid: bool,
    },
}

/// One change that makes a changeset invalid.
#[derive(Clone, Debug)]
enum Invalid {
    Dangling { by_uid: bool, pos: Index },
    Duplicate { pick: Index },
    DeleteReferenced { pick: Index },
    Schema { what: u8, pos: Index },
}

fn kind() -> impl Strategy<Value = Kind> {
    prop_oneof![
        3 => Just(Kind::Host),
        2 => Just(Kind::Network),
        1 => Just(Kind::Tcp),
        1 => Just(Kind::Udp),
        3 => Just(Kind::Group),
        2 => Just(Kind::ServiceGroup),
    ]
}

fn members() -> impl Strategy<Value = Vec<(Index, bool)>> {
    prop::collection::vec((any::<Index>(), any::<bool>()), 0..5)
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        5 => (kind(), any::<u8>(), any::<u32>(), members(), any::<bool>())
            .prop_map(|(kind, name, seed, members, by_uid)| Step::Put { kind, name, seed, members, by_uid }),
        1 => (any::<Index>(), any::<u8>()).prop_map(|(pick, name)| Step::Rename { pick, name }),
        3 => (any::<Index>(), any::<u8>(), any::<u32>(), members(), any::<bool>())
            .prop_map(|(pick, what, seed, members, by_uid)| Step::Edit { pick, what, seed, members, by_uid }),
        2 => (any::<Index>(), any::<bool>()).prop_map(|(pick, by_uid)| Step::Delete { pick, by_uid }),
    ]
}

/// A history: mostly small changesets, now and then a large one.
fn history() -> impl Strategy<Value = Vec<Vec<Step>>> {
    let changeset = prop_oneof![
        6 => prop::collection::vec(step(), 1..6),
        1 => prop::collection::vec(step(), 20..50),
    ];
    prop::collection::vec(changeset, 1..14)
}

fn invalid() -> impl Strategy<Value = Invalid> {
    prop_oneof![
        (any::<bool>(), any::<Index>()).prop_map(|(by_uid, pos)| Invalid::Dangling { by_uid, pos }),
        any::<Index>().prop_map(|pick| Invalid::Duplicate { pick }),
        any::<Index>().prop_map(|pick| Invalid::DeleteReferenced { pick }),
        (any::<u8>(), any::<Index>()).prop_map(|(what, pos)| Invalid::Schema { what, pos }),
    ]
}

/// Every uid an object's (stored) fields refer to.
fn references_of(o: &Object) -> Vec<Uid> {
    match o.fields.get("members") {
        Some(Value::Array(items)) => items.iter().filter_map(Value::as_str).filter_map(Uid::parse).collect(),
        _ => Vec::new(),
    }
}

fn referenced(state: &State) -> BTreeSet<Uid> {
    state.values().flat_map(references_of).collect()
}

fn find_by_name<'a>(state: &'a State, type_name: &str, name: &str) -> Option<&'a Object> {
    state.values().find(|o| o.type_name == type_name && o.name == name)
}

fn state_hash(state: &State) -> Hash {
    let mut h = StateHash::default();
    for o in state.values() {
        h.add(o.hash());
    }
    h.to_hash()
}

fn stored_state(store: &Store) -> State {
    store.list(None, usize::MAX).expect("list").into_iter().map(|o| (o.uid, o)).collect()
}

/// Turns generated steps into concrete changes and predicts the state they lead to.
struct Planner {
    next_uid: u128,
}

/// What one planned changeset does.
struct Plan {
    changes: Vec<ChangeInput>,
    after: State,
    /// Names used as references by the latest put of each object in the changeset. The store
    /// resolves names against the changeset's final state, so these names must keep designating
    /// the same object until the end: a step that would free one is skipped.
    name_refs: BTreeMap<Uid, Vec<String>>,
}

impl Planner {
    fn fresh_uid(&mut self) -> Uid {
        self.next_uid += 1;
        Uid(uuid::Uuid::from_u128(0x6d67_6861_0000_4000_8000_0000_0000_0000 | self.next_uid))
    }

    fn plan(&mut self, start: &State, steps: &[Step]) -> Plan {
        let mut plan = Plan { changes: Vec::new(), after: start.clone(), name_refs: BTreeMap::new() };
        for s in steps {
            if let Some(change) = self.step(&mut plan, s) {
                plan.changes.push(change);
            }
        }
        plan
    }

    fn step(&mut self, plan: &mut Plan, step: &Step) -> Option<ChangeInput> {
        match step {
            Step::Put { kind, name, seed, members, by_uid } => {
                let type_name = kind.type_name();
                let name = format!("{}{}", kind.prefix(), name % NAMES);
                let existing = find_by_name(&plan.after, type_name, &name).map(|o| o.uid);
                let uid = existing.unwrap_or_else(|| self.fresh_uid());
                let (input, stored, refs) = fields_for(&plan.after, *kind, uid, *seed, members);
                // A new object always gets its uid from us, so the model knows it; an existing
                // one is named by name or by uid.
                let given = (existing.is_none() || *by_uid).then(|| uid.to_string());
                plan.after.insert(uid, Object { type_name: type_name.into(), uid, name: name.clone(), fields: stored });
                plan.name_refs.insert(uid, refs);
                Some(ChangeInput::Put { type_name: type_name.into(), name, uid: given, fields: input })
            }
            Step::Rename { pick, name } => {
                let obj = pick_from(plan.after.values(), pick)?.clone();
                let new_name = format!("{}{}", Kind::of(&obj.type_name).prefix(), name % NAMES);
                if new_name != obj.name && find_by_name(&plan.after, &obj.type_name, &new_name).is_some() {
                    return None;
                }
                if new_name != obj.name && plan.name_refs.values().flatten().any(|n| *n == obj.name) {
                    return None;
                }
                plan.name_refs.insert(obj.uid, Vec::new());
                plan.after.get_mut(&obj.uid)?.name = new_name.clone();
                Some(ChangeInput::Put {
                    type_name: obj.type_name,
                    name: new_name,
                    uid: Some(obj.uid.to_string()),
                    fields: obj.fields,
                })
            }
            Step::Edit { pick, what, seed, members, by_uid } => {
                let obj = pick_from(plan.after.values(), pick)?.clone();
                let kind = Kind::of(&obj.type_name);
                let mut fields = obj.fields.clone();
                match what % 4 {
                    0 => {
                        fields.insert("comments".into(), json!(format!("edit {}", seed % 5)));
                    }
                    1 => {
                        fields.remove("comments");
                    }
                    2 => {
                        // The type's own fields: address, subnet, port or members.
                        let (_, stored, _) = fields_for(&plan.after, kind, obj.uid, *seed, members);
                        for key in ["ipv4-address", "subnet4", "mask-length4", "port", "members"] {
                            match stored.get(key) {
                                Some(v) => fields.insert(key.into(), v.clone()),
                                None => fields.remove(key),
                            };
                        }
                    }
                    _ => {
                        let tags: Vec<Value> =
                            (0..3).filter(|b| seed & (1 << b) != 0).map(|b| json!(format!("tag{b}"))).collect();
                        if tags.is_empty() {
                            fields.remove("tags");
                        } else {
                            fields.insert("tags".into(), Value::Array(tags));
                        }
                    }
                }
                plan.name_refs.insert(obj.uid, Vec::new());
                plan.after.get_mut(&obj.uid)?.fields = fields.clone();
                Some(ChangeInput::Put {
                    type_name: obj.type_name,
                    name: obj.name,
                    uid: by_uid.then(|| obj.uid.to_string()),
                    fields,
                })
            }
            Step::Delete { pick, by_uid } => {
                let used = referenced(&plan.after);
                let obj = pick_from(plan.after.values().filter(|o| !used.contains(&o.uid)), pick)?.clone();
                if plan.name_refs.values().flatten().any(|n| *n == obj.name) {
                    return None;
                }
                plan.after.remove(&obj.uid);
                plan.name_refs.remove(&obj.uid);
                Some(ChangeInput::Delete {
                    type_name: obj.type_name,
                    name: (!by_uid).then(|| obj.name.clone()),
                    uid: by_uid.then(|| obj.uid.to_string()),
                })
            }
        }
    }

    /// A valid changeset plus one invalid change, and a check of the error it must give.
    fn plan_invalid(&mut self, start: &State, steps: &[Step], bad: &Invalid) -> (Vec<ChangeInput>, fn(&Error) -> bool) {
        let plan = self.plan(start, steps);
        let mut changes = plan.changes;
        let state = &plan.after;
        let insert_at = |changes: &mut Vec<ChangeInput>, pos: &Index, c: ChangeInput| {
            let at = pos.index(changes.len() + 1);
            changes.insert(at, c);
        };
        let dangling = |planner: &mut Planner, changes: &mut Vec<ChangeInput>, by_uid: bool, pos: &Index| {
            // "missing…" names and 0xdead… uids are never created, so the change is invalid
            // wherever it stands.
            let target = if by_uid {
                Uid(uuid::Uuid::from_u128(0xdead_0000_0000_4000_8000_0000_0000_0000 | planner.next_uid)).to_string()
            } else {
                "missing-host".to_string()
            };
            let uid = planner.fresh_uid();
            let c = put_input("group", uid, "bad-group", json!({"members": [target]}));
            insert_at(changes, pos, c);
        };
        let is_dangling: fn(&Error) -> bool = |e| matches!(e, Error::DanglingReference { .. });
        let is_schema: fn(&Error) -> bool = |e| matches!(e, Error::InvalidField { .. } | Error::InvalidObject { .. });
        match bad {
            Invalid::Dangling { by_uid, pos } => {
                dangling(self, &mut changes, *by_uid, pos);
                (changes, is_dangling)
            }
            Invalid::Duplicate { pick } => match pick_from(state.values(), pick) {
                Some(o) => {
                    let uid = self.fresh_uid();
                    changes.push(put_input(&o.type_name, uid, &o.name, Value::Object(o.fields.clone())));
                    (changes, |e| matches!(e, Error::DuplicateName { .. }))
                }
                None => {
                    dangling(self, &mut changes, false, pick);
                    (changes, is_dangling)
                }
            },
            Invalid::DeleteReferenced { pick } => {
                let used = referenced(state);
                match pick_from(state.values().filter(|o| used.contains(&o.uid)), pick) {
                    Some(o) => {
                        changes.push(ChangeInput::Delete {
                            type_name: o.type_name.clone(),
                            name: Some(o.name.clone()),
                            uid: None,
                        });
                        // When the changeset also puts a user of the deleted object, the store
                        // meets the problem while resolving that user's references, and reports
                        // it as a dangling reference of the user.
                        (changes, |e| matches!(e, Error::StillReferenced { .. } | Error::DanglingReference { .. }))
                    }
                    None => {
                        dangling(self, &mut changes, true, pick);
                        (changes, is_dangling)
                    }
                }
            }
            Invalid::Schema { what, pos } => {
                let bad_fields = [
                    ("host", json!({"ipv4-address": "10.0.0.256"})),
                    ("host", json!({})),
                    ("host", json!({"ipv4-address": "10.0.0.1", "colour": "red"})),
                    ("network", json!({"subnet4": "10.0.0.0"})),
                    ("network", json!({"subnet4": "10.0.0.0", "mask-length4": 33})),
                    ("service-tcp", json!({"port": "0"})),
                    ("service-udp", json!({})),
                    ("group", json!({"members": "h1"})),
                ];
                let (type_name, fields) = bad_fields[usize::from(*what) % bad_fields.len()].clone();
                // Bad host fields with the high bit of `what` set replace an existing host (as the
                // last change, so no later step overrides them); otherwise they make a new object.
                let existing_host = pick_from(state.values().filter(|o| o.type_name == "host"), pos);
                match existing_host {
                    Some(h) if what & 0x80 != 0 && type_name == "host" => {
                        changes.push(put_input("host", h.uid, &h.name, fields));
                    }
                    _ => {
                        let uid = self.fresh_uid();
                        insert_at(&mut changes, pos, put_input(type_name, uid, "bad-object", fields));
                    }
                }
                (changes, is_schema)
            }
        }
    }
}

fn pick_from<'a>(candidates: impl Iterator<Item = &'a Object>, pick: &Index) -> Option<&'a Object> {
    let all: Vec<&Object> = candidates.collect();
    if all.is_empty() {
        return None;
    }
    Some(all[pick.index(all.len())])
}

fn put_input(type_name: &str, uid: Uid, name: &str, fields: Value) -> ChangeInput {
    let Value::Object(fields) = fields else { panic!("fields must be a JSON object") };
    ChangeInput::Put { type_name: type_name.into(), name: name.into(), uid: Some(uid.to_string()), fields }
}

/// Fields of an object of `kind`: as put (references by name or uid), as stored (uids), and the
/// names used as references.
fn fields_for(
    state: &State,
    kind: Kind,
    uid: Uid,
    seed: u32,
    picks: &[(Index, bool)],
) -> (Fields, Fields, Vec<String>) {
    let mut stored = Fields::new();
    let mut input = Fields::new();
    let mut names = Vec::new();
    let [b0, b1, b2, b3] = seed.to_le_bytes();
    match kind {
        Kind::Host => {
            stored.insert("ipv4-address".into(), json!(format!("10.{b2}.{b1}.{b0}")));
        }
        Kind::Network => {
            // A network address has no bits past its prefix (validation refuses host bits).
            let len = 8 + u32::from(b2) % 17;
            let net = u32::from(std::net::Ipv4Addr::new(172, b1, b0, 0)) & (u32::MAX << (32 - len));
            stored.insert("subnet4".into(), json!(std::net::Ipv4Addr::from(net).to_string()));
            stored.insert("mask-length4".into(), json!(len));
        }
        Kind::Tcp | Kind::Udp => {
            let lo = 1 + (seed & 0xffff) % 65000;
            let port = if b2 & 1 == 0 { lo.to_string() } else { format!("{lo}-{}", lo + u32::from(b3)) };
            stored.insert("port".into(), json!(port));
        }
        Kind::Group | Kind::ServiceGroup => {
            let types = kind.member_types();
            // A group holds only groups made before it (uids grow), so no reference cycle can
            // form: validation refuses one.
            let candidates: Vec<&Object> = state
                .values()
                .filter(|o| o.uid != uid && types.contains(&o.type_name.as_str()))
                .filter(|o| !o.type_name.ends_with("group") || o.uid < uid)
                .collect();
            let mut chosen = BTreeSet::new();
            let (mut ins, mut outs) = (Vec::new(), Vec::new());
            if !candidates.is_empty() {
                for (pick, by_name) in picks {
                    let m = candidates[pick.index(candidates.len())];
                    if !chosen.insert(m.uid) {
                        continue;
                    }
                    if *by_name {
                        ins.push(json!(m.name));
                        names.push(m.name.clone());
                    } else {
                        ins.push(json!(m.uid.to_string()));
                    }
                    outs.push(json!(m.uid.to_string()));
                }
            }
            if !outs.is_empty() || b0 & 1 == 0 {
                input.insert("members".into(), Value::Array(ins));
                stored.insert("members".into(), Value::Array(outs));
            }
        }
    }
    if b3 & 0x10 != 0 {
        stored.insert("comments".into(), json!(format!("c{}", b3 % 3)));
    }
    if b3 & 0x20 != 0 {
        stored.insert("color".into(), json!(if b3 & 0x40 != 0 { "red" } else { "blue" }));
    }
    for (k, v) in &stored {
        input.entry(k.clone()).or_insert_with(|| v.clone());
    }
    (input, stored, names)
}

/// A temp engine, its model, and the planner that feeds both.
struct World {
    engine: Engine,
    dir: TempDir,
    /// The state after every revision, indexed by seq (0: empty).
    states: Vec<State>,
    planner: Planner,
}

impl World {
    fn new() -> World {
        let dir = tempfile::tempdir().expect("temp dir");
        let engine =
            Engine::create(&dir.path().join("node"), &NodeState::new_primary("prop"), EngineOptions::default())
                .expect("create engine");
        World { engine, dir, states: vec![State::new()], planner: Planner { next_uid: 0 } }
    }

    /// Publishes every changeset of `history`, checking the store against the model after each.
    fn build(history: &[Vec<Step>]) -> Result<World, TestCaseError> {
        let mut w = World::new();
        for steps in history {
            w.publish_steps(steps)?;
        }
        Ok(w)
    }

    fn store(&self) -> Arc<Store> {
        self.engine.store()
    }

    fn state(&self) -> &State {
        self.states.last().expect("the model always holds revision 0")
    }

    fn head_seq(&self) -> u64 {
        self.states.len() as u64 - 1
    }

    fn publish_steps(&mut self, steps: &[Step]) -> Result<(), TestCaseError> {
        let current = self.states.last().expect("the model always holds revision 0");
        let plan = self.planner.plan(current, steps);
        if plan.changes.is_empty() {
            return Ok(());
        }
        let cs = ChangeSet { message: "property".into(), changes: plan.changes };
        let result = self.engine.publish("prop", &cs);
        if &plan.after == self.state() {
            prop_assert!(matches!(result, Err(Error::EmptyChangeset)), "a no-op changeset gave {result:?}");
            return Ok(());
        }
        let rev = match result {
            Ok(rev) => rev,
            Err(e) => return Err(TestCaseError::fail(format!("valid changeset refused: {e}\n{cs:#?}"))),
        };
        prop_assert_eq!(rev.seq, self.head_seq() + 1);
        self.states.push(plan.after);
        self.assert_store_is_model()
    }

    fn assert_store_is_model(&self) -> Result<(), TestCaseError> {
        prop_assert_eq!(&stored_state(&self.store()), self.state());
        let head = self.store().head().expect("head");
        prop_assert_eq!(head.seq, self.head_seq());
        prop_assert_eq!(head.state_hash, state_hash(self.state()));
        Ok(())
    }
}

fn apply_diff(w: &World, from: u64, to: u64) -> Result<(), TestCaseError> {
    let diff = w.store().diff(from, to).expect("diff");
    prop_assert_eq!((diff.from, diff.to), (from, to));
    let mut state = w.states[from as usize].clone();
    if let Err(e) = diff.apply(&mut state) {
        return Err(TestCaseError::fail(format!("diff {from}..{to} does not apply: {e}")));
    }
    prop_assert_eq!(&state, &w.states[to as usize], "diff {}..{} applied to {} is not {}", from, to, from, to);
    if w.states[from as usize] == w.states[to as usize] {
        prop_assert!(diff.objects.is_empty(), "equal states {from} and {to} differ by {:?}", diff.objects);
    }
    Ok(())
}

proptest! {
    // PROPTEST_CASES overrides the count for a deeper run.
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(CASES),
        ..ProptestConfig::default()
    })]

    #[test]
    fn diff_between_any_two_revisions_turns_one_state_into_the_other(
        history in history(),
        pairs in prop::collection::vec((any::<Index>(), any::<Index>()), 1..8),
    ) {
        let w = World::build(&history)?;
        let n = w.states.len();
        for (a, b) in &pairs {
            let (a, b) = (a.index(n) as u64, b.index(n) as u64);
            apply_diff(&w, a, b)?;
            apply_diff(&w, b, a)?;
        }
        apply_diff(&w, 0, w.head_seq())?;
        apply_diff(&w, w.head_seq(), 0)?;
    }

    #[test]
    fn state_hash_of_every_revision_equals_a_recomputation(history in history()) {
        let w = World::build(&history)?;
        for (seq, state) in w.states.iter().enumerate().skip(1) {
            let rev = w.store().revision(seq as u64).expect("revision");
            prop_assert_eq!(rev.state_hash, state_hash(state), "revision {}", seq);
            rev.verify_id().expect("revision id matches its content");
        }
        let report = w.store().check().expect("check passes");
        prop_assert_eq!(report.head.seq, w.head_seq());
        prop_assert_eq!(report.objects, w.state().len() as u64);
        prop_assert_eq!(report.revisions, w.head_seq());
    }

    #[test]
    fn revert_restores_the_state_of_the_target_revision_and_keeps_history(
        history in history(),
        targets in prop::collection::vec(any::<Index>(), 1..3),
        after in prop::collection::vec(step(), 0..6),
    ) {
        let mut w = World::build(&history)?;
        for target in &targets {
            let to = target.index(w.states.len()) as u64;
            let before: Vec<_> = w.store().revisions(None, usize::MAX).expect("revisions");
            let head = w.store().head().expect("head");
            let result = w.engine.revert("prop", to);
            if w.states[to as usize] == *w.state() {
                prop_assert!(matches!(result, Err(Error::EmptyChangeset)), "revert to an equal state gave {result:?}");
                prop_assert_eq!(w.store().head().expect("head"), head);
                continue;
            }
            let rev = match result {
                Ok(rev) => rev,
                Err(e) => return Err(TestCaseError::fail(format!("revert to {to} failed: {e}"))),
            };
            prop_assert_eq!(rev.seq, head.seq + 1);
            prop_assert_eq!(rev.parent, head.id);
            let restored = w.states[to as usize].clone();
            w.states.push(restored);
            w.assert_store_is_model()?;
            // History is kept: every earlier revision is still there, unchanged.
            let now: Vec<_> = w.store().revisions(None, usize::MAX).expect("revisions");
            prop_assert_eq!(&now[1..], &before[..]);
            prop_assert!(w.store().diff(to, rev.seq).expect("diff").objects.is_empty());
        }
        // Publishing goes on normally after a revert.
        w.publish_steps(&after)?;
        w.store().check().expect("check passes");
    }

    #[test]
    fn invalid_changeset_changes_nothing(
        history in history(),
        attempts in prop::collection::vec((prop::collection::vec(step(), 0..6), invalid()), 1..5),
    ) {
        let mut w = World::build(&history)?;
        for (steps, bad) in &attempts {
            let head = w.store().head().expect("head");
            let current = w.states.last().expect("the model always holds revision 0");
            let (changes, is_expected) = w.planner.plan_invalid(current, steps, bad);
            let cs = ChangeSet { message: "invalid".into(), changes };
            match w.engine.publish("prop", &cs) {
                Ok(rev) => return Err(TestCaseError::fail(format!("invalid changeset published as {}: {cs:#?}", rev.seq))),
                Err(e) => prop_assert!(is_expected(&e), "{:?} gave an unexpected error: {}\n{:#?}", bad, e, cs),
            }
            prop_assert_eq!(w.store().head().expect("head"), head);
            w.assert_store_is_model()?;
        }
        w.store().check().expect("check passes");
    }

    #[test]
    fn backup_round_trips_and_any_damage_is_detected(
        history in history(),
        flip_at in any::<Index>(),
        flip_mask in 1u8..=255,
        cut_at in any::<Index>(),
    ) {
        let w = World::build(&history)?;
        let name = Path::new("prop.mghabak");
        let mut bytes = Vec::new();
        let written = write_backup(&w.store(), &mut bytes, &mut |_| {}).expect("backup");
        prop_assert_eq!(written.bytes, bytes.len() as u64);
        let verified = verify_backup(name, &mut bytes.as_slice(), &mut |_| {}).expect("verify");
        prop_assert_eq!(verified.header.head, w.store().head().expect("head"));

        let target = w.dir.path().join("restored");
        restore_backup(name, &mut bytes.as_slice(), &target, &mut |_| {}).expect("restore");
        let restored = Store::open(&target.join(STORE_FILE)).expect("open restored");
        prop_assert_eq!(restored.head().expect("head"), w.store().head().expect("head"));
        prop_assert_eq!(restored.floor().expect("floor"), w.store().floor().expect("floor"));
        prop_assert_eq!(&stored_state(&restored), w.state());
        prop_assert_eq!(
            restored.revisions(None, usize::MAX).expect("revisions"),
            w.store().revisions(None, usize::MAX).expect("revisions")
        );
        restored.check().expect("restored store passes check");
        // The undo records came along: a diff over the whole history still rebuilds the state.
        let mut state = State::new();
        restored.diff(0, w.head_seq()).expect("diff").apply(&mut state).expect("apply");
        prop_assert_eq!(&state, w.state());

        let mut damaged = bytes.clone();
        let at = flip_at.index(damaged.len());
        damaged[at] ^= flip_mask;
        prop_assert!(
            verify_backup(name, &mut damaged.as_slice(), &mut |_| {}).is_err(),
            "flipping byte {} of {} with {:#04x} went unnoticed", at, bytes.len(), flip_mask
        );
        let cut = cut_at.index(bytes.len());
        prop_assert!(
            verify_backup(name, &mut &bytes[..cut], &mut |_| {}).is_err(),
            "a backup cut to {} of {} bytes verified", cut, bytes.len()
        );
        // A damaged backup is not restored, and leaves no store behind.
        let target = w.dir.path().join("restored-damaged");
        let refused = restore_backup(name, &mut damaged.as_slice(), &target, &mut |_| {}).is_err();
        prop_assert!(refused, "a damaged backup was restored");
        prop_assert!(!target.join(STORE_FILE).exists());
    }
}
