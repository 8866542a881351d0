//! Property tests of the three-way merge over random (base, active, branch) versions: a side that
//! did not change yields to the one that did, the merge is deterministic and independent of input
//! order, set union keeps every addition and applies every removal, swapping the sides changes
//! nothing but the side names, and preferring a side gives that side's value in every conflict.
//!
//! Values come from small pools so that the sides often agree, often disagree, and the generated
//! triples meet every rule: trivial, field by field, conflicts and delete against modify.

use std::collections::{BTreeMap, BTreeSet};

use mgha_core::merge::{
    merge_object, merge_states, resolve, Conflict, MergeOutcome, Resolution, Side, NAME_FIELD, WHOLE_OBJECT,
};
use mgha_core::model::{FieldKind, FieldSpec, Fields, MergeStrategy, Schemas, TypeSchema};
use mgha_core::{Object, Uid};
use proptest::prelude::*;
use serde_json::{json, Value};

type Version = Option<Object>;
type Triple = (Version, Version, Version);

/// The test type: one field per strategy, and `extra`, which the schema does not know.
fn widget_schema() -> TypeSchema {
    let spec = |name: &str, kind: FieldKind, merge: MergeStrategy| FieldSpec {
        name: name.into(),
        kind,
        required: false,
        merge,
    };
    let int = || FieldKind::Int { min: None, max: None };
    TypeSchema {
        name: "widget".into(),
        fields: vec![
            spec("members", FieldKind::List { item: Box::new(FieldKind::String) }, MergeStrategy::SetUnion),
            spec("level", int(), MergeStrategy::Max),
            spec("floor", int(), MergeStrategy::Min),
            spec("note", FieldKind::String, MergeStrategy::Replace),
        ],
        constraints: vec![],
    }
}

fn uid(n: u128) -> Uid {
    Uid(uuid::Uuid::from_u128(n))
}

/// A list of distinct members in random order, as a publish stores them.
fn members() -> impl Strategy<Value = Value> {
    prop::collection::vec(0..6u8, 0..5).prop_map(|v| {
        let mut seen = BTreeSet::new();
        let distinct: Vec<String> = v.into_iter().filter(|m| seen.insert(*m)).map(|m| format!("m{m}")).collect();
        json!(distinct)
    })
}

/// Mostly integers, sometimes a string, so that Max and Min also meet values they cannot compare.
fn threshold() -> impl Strategy<Value = Value> {
    prop_oneof![4 => (0..4i64).prop_map(Value::from), 1 => Just(json!("high"))]
}

fn word() -> impl Strategy<Value = Value> {
    prop::sample::select(vec!["a", "b", "c"]).prop_map(Value::from)
}

/// Fields of a widget (`group` = false) or of a built-in group; `extra` is in neither schema.
fn fields(group: bool) -> BoxedStrategy<Fields> {
    let names = if group {
        ["members", "tags", "comments", "color", "extra"]
    } else {
        ["members", "level", "floor", "note", "extra"]
    };
    let second = if group { members().boxed() } else { threshold().boxed() };
    let third = if group { word().boxed() } else { threshold().boxed() };
    (members(), second, third, word(), word())
        .prop_map(|(a, b, c, d, e)| [a, b, c, d, e])
        .prop_flat_map(|values| (Just(values), any::<u8>()))
        .prop_map(move |(values, present)| {
            let mut f = Fields::new();
            for (i, (k, v)) in names.into_iter().zip(values).enumerate() {
                // Each field present with odds 3 in 4.
                if present & (3 << (2 * (i % 4))) != 0 {
                    f.insert(k.into(), v);
                }
            }
            f
        })
        .boxed()
}

fn version(group: bool) -> impl Strategy<Value = Version> {
    let type_name = if group { "group" } else { "widget" };
    prop::option::weighted(0.85, (prop::sample::select(vec!["x", "y", "z"]), fields(group))).prop_map(move |o| {
        o.map(|(name, fields)| Object { type_name: type_name.into(), uid: uid(1), name: name.into(), fields })
    })
}

/// A side derived from `base`: unchanged, replaced by `new` (perhaps deleted or created), or a
/// mix taking each field (and the name) from base or new by the bits of `mask`.
fn derive(base: &Version, new: Version, mode: u8, mask: u8) -> Version {
    match (mode, base, new) {
        (0, _, _) => base.clone(),
        (1, _, new) | (_, None, new) => new,
        (_, Some(b), None) => Some(b.clone()),
        (_, Some(b), Some(n)) => {
            let keys: BTreeSet<&String> = b.fields.keys().chain(n.fields.keys()).collect();
            let mut out = b.clone();
            for (i, k) in keys.into_iter().enumerate() {
                if mask & (1 << i) != 0 {
                    match n.fields.get(k) {
                        Some(v) => out.fields.insert(k.clone(), v.clone()),
                        None => out.fields.remove(k),
                    };
                }
            }
            if mask & 0x80 != 0 {
                out.name = n.name.clone();
            }
            Some(out)
        }
    }
}

fn triple(group: bool) -> impl Strategy<Value = Triple> {
    (version(group), version(group), version(group), 0..4u8, 0..4u8, any::<u8>(), any::<u8>()).prop_map(
        |(base, a_new, b_new, a_mode, b_mode, a_mask, b_mask)| {
            let active = derive(&base, a_new, a_mode, a_mask);
            let branch = derive(&base, b_new, b_mode, b_mask);
            (base, active, branch)
        },
    )
}

/// Triples of groups, each under its own uid.
fn group_states() -> impl Strategy<Value = Vec<(Uid, Version, Version, Version)>> {
    prop::collection::vec(triple(true), 1..24).prop_map(|triples| {
        let with_uid = |v: Version, u: Uid| v.map(|o| Object { uid: u, ..o });
        let mut out = Vec::new();
        for (i, (b, a, r)) in triples.into_iter().enumerate() {
            let u = uid(1000 + i as u128);
            out.push((u, with_uid(b, u), with_uid(a, u), with_uid(r, u)));
        }
        out
    })
}

fn merge_widget(base: &Version, active: &Version, branch: &Version) -> mgha_core::merge::ObjectMerge {
    merge_object(Some(&widget_schema()), base.as_ref(), active.as_ref(), branch.as_ref())
}

/// The members of a version as a set (absent: empty).
fn member_set(v: &Version) -> BTreeSet<String> {
    let list = v.as_ref().and_then(|o| o.fields.get("members")).and_then(Value::as_array);
    list.into_iter().flatten().filter_map(|m| m.as_str().map(str::to_string)).collect()
}

/// Set-union lists sorted: their order is the active's, so swapping the sides may reorder them.
fn normalized(v: &Version) -> Version {
    v.clone().map(|mut o| {
        if let Some(Value::Array(items)) = o.fields.get_mut("members") {
            items.sort_by_key(|i| i.to_string());
        }
        o
    })
}

fn encoded(targets: &[(Uid, Version)]) -> Vec<(Uid, Option<Vec<u8>>)> {
    targets.iter().map(|(u, o)| (*u, o.as_ref().map(Object::encode))).collect()
}

/// The value a conflict's field has in a final version: a field, the name, or the whole object.
fn value_in(version: &Version, c: &Conflict) -> Option<Value> {
    match c.field.as_str() {
        WHOLE_OBJECT => version.as_ref().map(Object::to_json),
        NAME_FIELD => version.as_ref().map(|o| Value::String(o.name.clone())),
        field => version.as_ref().and_then(|o| o.fields.get(field).cloned()),
    }
}

proptest! {
    #[test]
    fn a_side_without_change_yields_to_the_other((base, active, branch) in triple(false)) {
        let m = merge_widget(&base, &base, &branch);
        prop_assert!(m.conflicts.is_empty());
        prop_assert_eq!(&m.result, &branch);
        let m = merge_widget(&base, &active, &base);
        prop_assert!(m.conflicts.is_empty());
        prop_assert_eq!(&m.result, &active);
    }

    #[test]
    fn merge_is_deterministic_and_ignores_input_order(states in group_states()) {
        let schemas = Schemas::builtin();
        let first = merge_states(&schemas, states.clone());
        let again = merge_states(&schemas, states.clone());
        let reversed = merge_states(&schemas, states.into_iter().rev());
        for other in [&again, &reversed] {
            prop_assert_eq!(encoded(&first.targets), encoded(&other.targets));
            prop_assert_eq!(
                serde_json::to_string(&first.conflicts).expect("encodes"),
                serde_json::to_string(&other.conflicts).expect("encodes")
            );
        }
        let uids: Vec<Uid> = first.targets.iter().map(|t| t.0).collect();
        prop_assert!(uids.windows(2).all(|w| w[0] < w[1]), "targets sorted by uid");
        let keys: Vec<(Uid, &str)> = first.conflicts.iter().map(|c| (c.uid, c.field.as_str())).collect();
        prop_assert!(keys.windows(2).all(|w| w[0] < w[1]), "conflicts sorted by (uid, field)");
    }

    #[test]
    fn set_union_keeps_additions_and_applies_removals((base, active, branch) in triple(false)) {
        prop_assume!(active.is_some() && branch.is_some());
        let m = merge_widget(&base, &active, &branch);
        prop_assert!(m.conflicts.iter().all(|c| c.field != "members"), "set union never conflicts");
        let (b, a, r) = (member_set(&base), member_set(&active), member_set(&branch));
        let removed: BTreeSet<&String> = b.iter().filter(|m| !a.contains(*m) || !r.contains(*m)).collect();
        let want: BTreeSet<String> = a.union(&r).filter(|m| !removed.contains(m)).cloned().collect();
        prop_assert_eq!(member_set(&m.result), want);
        let list = m.result.as_ref().and_then(|o| o.fields.get("members")).and_then(Value::as_array);
        let len = list.map_or(0, Vec::len);
        prop_assert_eq!(len, member_set(&m.result).len(), "no duplicates");
    }

    #[test]
    fn swapping_the_sides_changes_only_the_side_names((base, active, branch) in triple(false)) {
        let ab = merge_widget(&base, &active, &branch);
        let ba = merge_widget(&base, &branch, &active);
        let key = |c: &Conflict, swap: bool| {
            let (x, y) = if swap { (&c.branch, &c.active) } else { (&c.active, &c.branch) };
            (c.field.clone(), c.base.clone(), x.clone(), y.clone())
        };
        let ab_conflicts: Vec<_> = ab.conflicts.iter().map(|c| key(c, false)).collect();
        let ba_conflicts: Vec<_> = ba.conflicts.iter().map(|c| key(c, true)).collect();
        prop_assert_eq!(ab_conflicts, ba_conflicts);
        if ab.conflicts.is_empty() {
            prop_assert_eq!(normalized(&ab.result), normalized(&ba.result));
        }
    }

    #[test]
    fn preferring_a_side_takes_its_value_in_every_conflict(states in group_states()) {
        let outcome: MergeOutcome = merge_states(&Schemas::builtin(), states.clone());
        let active: BTreeMap<Uid, Version> = states.iter().map(|(u, _, a, _)| (*u, a.clone())).collect();
        // The provisional merge already holds the active's values.
        let prefer_active = resolve(&outcome, &Resolution::Prefer(Side::Active)).expect("resolves");
        prop_assert_eq!(&prefer_active, &outcome.targets);
        for side in [Side::Active, Side::Branch] {
            let targets: BTreeMap<Uid, Version> =
                resolve(&outcome, &Resolution::Prefer(side)).expect("resolves").into_iter().collect();
            for c in &outcome.conflicts {
                let fin = targets.get(&c.uid).or_else(|| active.get(&c.uid)).expect("a known uid");
                prop_assert_eq!(value_in(fin, c), c.value(side).cloned(), "{:?} {}", side, c.field);
            }
            for (u, v) in &targets {
                prop_assert_ne!(Some(v), active.get(u), "a target differs from the active's version");
            }
        }
    }
}
