//! Unit tests of the merge: the cases an admin meets after a forced changeover (both sides grew a
//! group, one renamed while the other edited, both moved a host, one deleted what the other
//! edited) and the resolution file that settles them.

use serde_json::{json, Value};

use super::field::{merge_value, Merged};
use super::*;
use crate::model::{FieldKind, FieldSpec};

fn uid(n: u128) -> Uid {
    Uid(uuid::Uuid::from_u128(n))
}

fn obj(type_name: &str, n: u128, name: &str, fields: Value) -> Object {
    let Value::Object(fields) = fields else { panic!("fields must be a JSON object") };
    Object { type_name: type_name.into(), uid: uid(n), name: name.into(), fields }
}

fn host(name: &str, ip: &str) -> Object {
    obj("host", 1, name, json!({"ipv4-address": ip}))
}

fn group(members: &[&str]) -> Object {
    obj("group", 2, "web", json!({ "members": members }))
}

fn merge(base: Option<&Object>, active: Option<&Object>, branch: Option<&Object>) -> ObjectMerge {
    let schemas = Schemas::builtin();
    let type_name = active.or(branch).or(base).map(|o| o.type_name.clone()).unwrap_or_default();
    merge_object(schemas.get(&type_name), base, active, branch)
}

fn states(inputs: Vec<(Option<Object>, Option<Object>, Option<Object>)>) -> MergeOutcome {
    let changed = inputs.into_iter().map(|(b, a, r)| {
        let uid = a.as_ref().or(r.as_ref()).or(b.as_ref()).map(|o| o.uid).expect("some version");
        (uid, b, a, r)
    });
    merge_states(&Schemas::builtin(), changed)
}

#[test]
fn group_members_added_on_both_sides_are_all_kept() {
    let m = merge(Some(&group(&["h1"])), Some(&group(&["h1", "h2"])), Some(&group(&["h1", "h3"])));
    assert!(m.conflicts.is_empty());
    assert_eq!(m.method, Method::Fields);
    assert_eq!(m.result, Some(group(&["h1", "h2", "h3"])));
}

#[test]
fn set_union_applies_removals_from_either_side() {
    let base = group(&["a", "b", "c", "d"]);
    let m = merge(Some(&base), Some(&group(&["a", "c", "d", "x"])), Some(&group(&["d", "c", "b", "y"])));
    // The active dropped b, the branch dropped a; each added one.
    assert_eq!(m.result, Some(group(&["c", "d", "x", "y"])));
    assert!(m.conflicts.is_empty());
}

#[test]
fn set_union_of_a_dropped_field_and_an_emptied_one_is_absent() {
    let base = group(&["a"]);
    let dropped = obj("group", 2, "web", json!({}));
    let emptied = group(&[]);
    for (a, b) in [(&dropped, &emptied), (&emptied, &dropped)] {
        let m = merge(Some(&base), Some(a), Some(b));
        assert_eq!(m.result, Some(dropped.clone()));
    }
}

#[test]
fn rename_on_one_side_and_field_edit_on_the_other_are_both_applied() {
    let m = merge(Some(&host("web1", "10.0.0.1")), Some(&host("web1", "10.0.0.2")), Some(&host("www1", "10.0.0.1")));
    assert!(m.conflicts.is_empty());
    assert_eq!(m.result, Some(host("www1", "10.0.0.2")));
}

#[test]
fn different_address_edits_are_one_conflict_with_all_three_values() {
    let m = merge(Some(&host("web1", "10.0.0.1")), Some(&host("web1", "10.0.0.2")), Some(&host("web1", "10.0.0.3")));
    assert_eq!(m.result, Some(host("web1", "10.0.0.2")), "provisionally the active's value");
    assert_eq!(
        m.conflicts,
        vec![Conflict {
            type_name: "host".into(),
            uid: uid(1),
            name: "web1".into(),
            field: "ipv4-address".into(),
            base: Some(json!("10.0.0.1")),
            active: Some(json!("10.0.0.2")),
            branch: Some(json!("10.0.0.3")),
        }]
    );
}

#[test]
fn different_renames_conflict_on_the_name() {
    let m = merge(Some(&host("web1", "10.0.0.1")), Some(&host("a", "10.0.0.1")), Some(&host("b", "10.0.0.1")));
    assert_eq!(m.conflicts.len(), 1);
    assert_eq!(m.conflicts[0].field, NAME_FIELD);
    assert_eq!(m.conflicts[0].branch, Some(json!("b")));
    assert_eq!(m.result, Some(host("a", "10.0.0.1")));
}

#[test]
fn delete_against_modify_is_a_whole_object_conflict_keeping_the_active() {
    let base = host("web1", "10.0.0.1");
    let edited = host("web1", "10.0.0.2");
    let m = merge(Some(&base), None, Some(&edited));
    assert_eq!(m.method, Method::Whole);
    assert_eq!(m.result, None);
    assert_eq!(m.conflicts.len(), 1);
    let c = &m.conflicts[0];
    assert_eq!((c.field.as_str(), c.active.as_ref(), c.branch.as_ref()), (WHOLE_OBJECT, None, Some(&edited.to_json())));

    let m = merge(Some(&base), Some(&edited), None);
    assert_eq!(m.result, Some(edited));
    assert_eq!(m.conflicts[0].field, WHOLE_OBJECT);
}

#[test]
fn one_sided_changes_are_taken_whole() {
    let h = host("web1", "10.0.0.1");
    let cases = [
        (None, None, Some(&h), Some(&h)), // created on the branch
        (Some(&h), Some(&h), None, None), // deleted on the branch
        (None, Some(&h), None, Some(&h)), // created on the active
        (Some(&h), None, Some(&h), None), // deleted on the active
        (Some(&h), None, None, None),     // deleted on both
    ];
    for (base, active, branch, want) in cases {
        let m = merge(base, active, branch);
        assert_eq!((m.method, m.result.as_ref(), m.conflicts.len()), (Method::Trivial, want, 0));
    }
}

#[test]
fn objects_created_on_both_sides_merge_against_empty_fields() {
    let a = obj("group", 2, "web", json!({"members": ["a"], "comments": "x"}));
    let b = obj("group", 2, "web", json!({"members": ["b"], "color": "red"}));
    let m = merge(None, Some(&a), Some(&b));
    assert!(m.conflicts.is_empty());
    assert_eq!(m.result, Some(obj("group", 2, "web", json!({"members": ["a", "b"], "comments": "x", "color": "red"}))));
}

#[test]
fn different_types_under_one_uid_conflict_whole() {
    let a = obj("host", 1, "x", json!({"ipv4-address": "10.0.0.1"}));
    let b = obj("network", 1, "x", json!({"subnet4": "10.0.0.0", "mask-length4": 8}));
    let m = merge(None, Some(&a), Some(&b));
    assert_eq!((m.method, m.conflicts.len(), m.conflicts[0].field.as_str()), (Method::Whole, 1, WHOLE_OBJECT));
}

#[test]
fn fields_outside_the_schema_merge_by_replace() {
    let set = |v: i64| obj("nosuchtype", 3, "x", json!({"members": [v]}));
    let m = merge(Some(&set(1)), Some(&set(2)), Some(&set(3)));
    assert_eq!(m.conflicts.len(), 1, "no schema: even members conflict");
}

#[test]
fn max_and_min_take_the_extreme_or_conflict_when_incomparable() {
    let (b, a, r) = (json!(5), json!(7), json!(9));
    assert_eq!(merge_value(MergeStrategy::Max, Some(&b), Some(&a), Some(&r)), Merged::Value(Some(json!(9))));
    assert_eq!(merge_value(MergeStrategy::Min, Some(&b), Some(&a), Some(&r)), Merged::Value(Some(json!(7))));
    let (d1, d2) = (json!("2030-01-01"), json!("2029-12-31"));
    assert_eq!(merge_value(MergeStrategy::Max, None, Some(&d1), Some(&d2)), Merged::Value(Some(d1.clone())));
    assert_eq!(merge_value(MergeStrategy::Max, Some(&b), Some(&a), Some(&d1)), Merged::Conflict);
    assert_eq!(merge_value(MergeStrategy::Min, Some(&b), None, Some(&r)), Merged::Conflict);
    assert_eq!(
        merge_value(MergeStrategy::Max, None, Some(&json!(-1)), Some(&json!(u64::MAX))),
        Merged::Value(Some(json!(u64::MAX)))
    );
}

#[test]
fn a_max_field_of_a_schema_is_merged_without_conflict() {
    let schema = TypeSchema {
        name: "limits".into(),
        fields: vec![FieldSpec {
            name: "retention-days".into(),
            kind: FieldKind::Int { min: None, max: None },
            required: false,
            merge: MergeStrategy::Max,
        }],
        constraints: vec![],
    };
    let l = |d: i64| obj("limits", 4, "l", json!({ "retention-days": d }));
    let m = merge_object(Some(&schema), Some(&l(30)), Some(&l(60)), Some(&l(90)));
    assert_eq!((m.result, m.conflicts.len()), (Some(l(90)), 0));
}

#[test]
fn merge_states_lists_only_objects_that_differ_from_the_active_sorted_by_uid() {
    let g = |n: u128, m: &[&str]| obj("group", n, &format!("g{n}"), json!({ "members": m }));
    let out = states(vec![
        (Some(g(9, &["a"])), Some(g(9, &["a", "b"])), Some(g(9, &["a"]))), // active only: no target
        (Some(g(5, &["a"])), Some(g(5, &["a"])), Some(g(5, &["c"]))),      // branch only: target
        (Some(g(7, &["a"])), Some(g(7, &["b"])), Some(g(7, &["a", "c"]))), // field merge: target
        (Some(host("h", "10.0.0.1")), Some(host("h", "10.0.0.2")), Some(host("h", "10.0.0.3"))),
    ]);
    let uids: Vec<Uid> = out.targets.iter().map(|t| t.0).collect();
    assert_eq!(uids, vec![uid(5), uid(7)]);
    assert_eq!(out.targets[1].1, Some(g(7, &["b", "c"])));
    assert_eq!((out.trivial, out.field_merged, out.conflicts.len()), (2, 2, 1));
}

#[test]
fn prefer_branch_turns_a_conflict_into_a_target() {
    let out = states(vec![(Some(host("h", "10.0.0.1")), Some(host("h", "10.0.0.2")), Some(host("h", "10.0.0.3")))]);
    assert!(out.targets.is_empty(), "provisionally the active's version");
    assert_eq!(resolve(&out, &Resolution::Prefer(Side::Active)).expect("resolves"), vec![]);
    let branch = resolve(&out, &Resolution::Prefer(Side::Branch)).expect("resolves");
    assert_eq!(branch, vec![(uid(1), Some(host("h", "10.0.0.3")))]);
}

#[test]
fn resolution_file_applies_explicit_values_and_the_default_side() {
    let h = |name: &str, ip: &str, c: &str| obj("host", 1, name, json!({"ipv4-address": ip, "comments": c}));
    let out = states(vec![
        (Some(h("h", "10.0.0.1", "c0")), Some(h("a", "10.0.0.2", "c1")), Some(h("b", "10.0.0.3", "c2"))),
        (Some(group(&["x"])), None, Some(group(&["x", "y"]))),
    ]);
    let fields: Vec<&str> = out.conflicts.iter().map(|c| c.field.as_str()).collect();
    assert_eq!(fields, vec!["comments", "ipv4-address", "name", "*"]);
    let file = ResolutionFile::from_json(&format!(
        r#"{{"default": "branch", "objects": [
            {{"uid": "{h}", "field": "ipv4-address", "value": "10.0.0.9"}},
            {{"uid": "{h}", "field": "comments", "value": null}},
            {{"uid": "{h}", "field": "name", "take": "active"}}]}}"#,
        h = uid(1)
    ))
    .expect("parses");
    let targets = resolve(&out, &Resolution::Explicit(file)).expect("resolves");
    let want_host = obj("host", 1, "a", json!({"ipv4-address": "10.0.0.9"}));
    assert_eq!(targets, vec![(uid(1), Some(want_host)), (uid(2), Some(group(&["x", "y"])))]);
}

#[test]
fn unresolved_conflicts_are_an_error_that_lists_them() {
    let out = states(vec![
        (Some(host("h", "10.0.0.1")), Some(host("h", "10.0.0.2")), Some(host("h", "10.0.0.3"))),
        (Some(group(&["x"])), Some(group(&["x", "y"])), None),
    ]);
    let file = ResolutionFile::from_json(&format!(
        r#"{{"objects": [{{"uid": "{}", "field": "*", "take": "branch"}}]}}"#,
        uid(2)
    ))
    .expect("parses");
    let err = resolve(&out, &Resolution::Explicit(file)).expect_err("one conflict is left");
    let MergeError::Unresolved { conflicts } = &err else { panic!("unexpected {err}") };
    assert_eq!(conflicts.len(), 1);
    assert_eq!((conflicts[0].uid, conflicts[0].field.as_str()), (uid(1), "ipv4-address"));
    let message = err.to_string();
    assert!(message.contains("host 'h'") && message.contains("ipv4-address"), "{message}");
}

#[test]
fn resolutions_naming_no_conflict_or_misfitting_values_are_refused() {
    let out = states(vec![
        (Some(host("h", "10.0.0.1")), Some(host("a", "10.0.0.2")), Some(host("b", "10.0.0.3"))),
        (Some(group(&["x"])), None, Some(group(&["x", "y"]))),
    ]);
    let with = |objects: Vec<ObjectResolution>| {
        resolve(&out, &Resolution::Explicit(ResolutionFile { default: Some(Side::Active), objects }))
    };
    let value = |n: u128, field: &str, v: Value| ObjectResolution {
        uid: uid(n),
        field: field.into(),
        choice: Choice::Value(v),
    };
    assert!(matches!(with(vec![value(3, "name", json!("x"))]), Err(MergeError::UnknownConflict { .. })));
    assert!(matches!(with(vec![value(1, "color", json!("x"))]), Err(MergeError::UnknownConflict { .. })));
    assert!(matches!(with(vec![value(1, "name", json!(7))]), Err(MergeError::InvalidValue { .. })));
    assert!(matches!(with(vec![value(1, "name", json!(""))]), Err(MergeError::InvalidValue { .. })));
    let other_uid = obj("group", 9, "web", json!({}));
    assert!(matches!(with(vec![value(2, "*", other_uid.to_json())]), Err(MergeError::InvalidValue { .. })));
    let twice = vec![value(1, "name", json!("x")), value(1, "name", json!("y"))];
    assert!(matches!(with(twice), Err(MergeError::DuplicateResolution { .. })));
    // A whole object given back as a value, and null for a deletion, are accepted.
    assert!(with(vec![value(2, "*", group(&["z"]).to_json())]).is_ok());
    assert_eq!(with(vec![value(2, "*", Value::Null)]).expect("resolves"), vec![]);
}

#[test]
fn resolution_file_needs_exactly_one_of_take_and_value() {
    let u = uid(1);
    for bad in [
        format!(r#"{{"objects": [{{"uid": "{u}", "field": "f", "take": "active", "value": 1}}]}}"#),
        format!(r#"{{"objects": [{{"uid": "{u}", "field": "f"}}]}}"#),
        format!(r#"{{"objects": [{{"uid": "{u}", "field": "f", "take": "ours"}}]}}"#),
        r#"{"default": "active", "extra": 1}"#.to_string(),
    ] {
        assert!(matches!(ResolutionFile::from_json(&bad), Err(MergeError::BadFile(_))), "{bad}");
    }
    let ok = format!(r#"{{"objects": [{{"uid": "{u}", "field": "f", "value": null}}]}}"#);
    let file = ResolutionFile::from_json(&ok).expect("parses");
    assert_eq!(file.objects[0].choice, Choice::Value(Value::Null));
    let back = ResolutionFile::from_json(&serde_json::to_string(&file).expect("encodes")).expect("parses");
    assert_eq!(back, file);
}

#[test]
fn conflict_json_keeps_absent_and_null_apart() {
    let c = Conflict {
        type_name: "host".into(),
        uid: uid(1),
        name: "h".into(),
        field: "comments".into(),
        base: None,
        active: Some(Value::Null),
        branch: Some(json!("x")),
    };
    let text = serde_json::to_string(&c).expect("encodes");
    assert!(!text.contains("\"base\"") && text.contains("\"active\":null") && text.contains("\"type\""), "{text}");
    let back: Conflict = serde_json::from_str(&text).expect("decodes");
    assert_eq!(back, c);
}
