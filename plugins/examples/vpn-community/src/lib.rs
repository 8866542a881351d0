//! Example plugin `vpn`: site-to-site VPN communities, type `vpn.community`.
//!
//! A community joins gateways (references to `host` objects) under one encryption suite. The
//! plugin checks what the schema cannot (two distinct gateways at least; a star's center is one
//! of its gateways) and merges communities itself: gateways as a set (both sides' additions
//! kept, either side's removals applied), the encryption suite by strength (a collision never
//! weakens a community), every other field three-way with a conflict when both sides changed it.

use mgha_plugin::{
    set_union, whole_conflict, Description, FieldError, FieldKind, FieldMerge, FieldSpec, MergeInput, MergeOutput,
    MergeStrategy, Object, Plugin, TypeSchema, Value,
};

const COMMUNITY: &str = "vpn.community";
/// Encryption suites, weakest first.
const SUITES: &[&str] = &["aes-128", "aes-256", "aes-256-gcm"];

struct Vpn;

impl Plugin for Vpn {
    fn describe() -> Description {
        let host = || FieldKind::reference(&["host"]);
        Description {
            name: "vpn".into(),
            version: "1.0.0".into(),
            types: vec![TypeSchema::new(
                COMMUNITY,
                vec![
                    FieldSpec::new("gateways", FieldKind::list(host())).required().merge(MergeStrategy::SetUnion),
                    FieldSpec::new("encryption", FieldKind::one_of(SUITES)).required(),
                    FieldSpec::new("topology", FieldKind::one_of(&["meshed", "star"])),
                    FieldSpec::new("center", host()),
                    FieldSpec::new("comments", FieldKind::String),
                ],
            )],
            merge: vec![COMMUNITY.into()],
        }
    }

    fn validate(o: &Object) -> Result<(), Vec<FieldError>> {
        let gateways: Vec<&str> = match o.get("gateways") {
            Some(Value::Array(items)) => items.iter().filter_map(Value::as_str).collect(),
            _ => Vec::new(),
        };
        let mut distinct = gateways.clone();
        distinct.sort_unstable();
        distinct.dedup();
        let mut errors = Vec::new();
        if distinct.len() < 2 {
            errors.push(FieldError::new("gateways", "a community joins at least two distinct gateways"));
        }
        let star = o.get("topology").and_then(Value::as_str) == Some("star");
        match o.get("center").and_then(Value::as_str) {
            Some(c) if !gateways.contains(&c) => {
                errors.push(FieldError::new("center", "the center is one of the gateways"))
            }
            None if star => errors.push(FieldError::new("center", "a star community names its center")),
            _ => {}
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }

    fn merge(input: MergeInput) -> MergeOutput {
        let Some(mut merge) = FieldMerge::new(&input) else {
            return whole_conflict(&input);
        };
        merge
            .field("gateways", |base, active, branch| set_union(base, active, branch).map(Some).ok_or(()))
            .field("encryption", |_, active, branch| stronger(active, branch));
        merge.finish()
    }
}

/// The stronger of two suites; a conflict when either is missing or unknown.
fn stronger(active: Option<&Value>, branch: Option<&Value>) -> Result<Option<Value>, ()> {
    let rank = |v: Option<&Value>| v.and_then(Value::as_str).and_then(|s| SUITES.iter().position(|x| *x == s));
    match (rank(active), rank(branch)) {
        (Some(a), Some(b)) if b > a => Ok(branch.cloned()),
        (Some(_), Some(_)) => Ok(active.cloned()),
        _ => Err(()),
    }
}

mgha_plugin::export!(Vpn);
