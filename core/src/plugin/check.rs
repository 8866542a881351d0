//! What a plugin may declare. Its name is a namespace: every type it declares is
//! `<plugin>.<type>`, so it can neither redefine a built-in type (whose names hold no dot) nor
//! another plugin's (plugin names are unique, being the names of `plugin` objects). Its schemas
//! must make sense to the shared validator: known kinds, sane ranges, constraints over declared
//! fields, and references only to built-in types or to its own.

use std::collections::BTreeSet;

use super::abi::Description;
use super::limits::{
    PLUGIN_CONSTRAINTS_MAX, PLUGIN_FIELDS_MAX, PLUGIN_NAME_BYTES_MAX, PLUGIN_TYPES_MAX, PLUGIN_VERSION_BYTES_MAX,
};
use crate::limits::TYPE_BYTES_MAX;
use crate::merge::{NAME_FIELD, WHOLE_OBJECT};
use crate::model::{Constraint, FieldKind, Schemas, TypeSchema};

/// Longest field name a plugin type may declare, in bytes.
const FIELD_NAME_BYTES_MAX: usize = 64;
/// Deepest nesting of list kinds.
const KIND_DEPTH_MAX: usize = 4;

/// A lowercase word of letters, digits and dashes that starts with a letter.
fn is_word(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

/// Checks a plugin name: `[a-z][a-z0-9-]*`, at most [`PLUGIN_NAME_BYTES_MAX`] bytes.
pub fn plugin_name(name: &str) -> Result<(), String> {
    if name.len() > PLUGIN_NAME_BYTES_MAX || !is_word(name) {
        return Err(format!(
            "plugin name '{name}' must be a lowercase word of letters, digits and dashes, starting with a \
             letter, of at most {PLUGIN_NAME_BYTES_MAX} bytes"
        ));
    }
    Ok(())
}

/// Checks everything `describe` answered.
pub fn description(d: &Description) -> Result<(), String> {
    plugin_name(&d.name)?;
    if d.version.is_empty() || d.version.len() > PLUGIN_VERSION_BYTES_MAX || d.version.chars().any(char::is_control) {
        return Err(format!("version '{}' must be 1 to {PLUGIN_VERSION_BYTES_MAX} printable bytes", d.version));
    }
    if d.types.is_empty() || d.types.len() > PLUGIN_TYPES_MAX {
        return Err(format!("declares {} types; a plugin declares 1 to {PLUGIN_TYPES_MAX}", d.types.len()));
    }
    let own: BTreeSet<&str> = d.types.iter().map(|t| t.name.as_str()).collect();
    if own.len() != d.types.len() {
        return Err("declares a type twice".into());
    }
    for t in &d.types {
        type_schema(&d.name, t, &own).map_err(|e| format!("type '{}': {e}", t.name))?;
    }
    let mut merged = BTreeSet::new();
    for m in &d.merge {
        if !own.contains(m.as_str()) {
            return Err(format!("merges type '{m}', which it does not declare"));
        }
        if !merged.insert(m) {
            return Err(format!("lists type '{m}' twice under merge"));
        }
    }
    Ok(())
}

fn type_schema(plugin: &str, t: &TypeSchema, own: &BTreeSet<&str>) -> Result<(), String> {
    let local = t.name.strip_prefix(plugin).and_then(|rest| rest.strip_prefix('.'));
    if !local.is_some_and(is_word) || t.name.len() > TYPE_BYTES_MAX {
        return Err(format!("a type name is '{plugin}.' and a lowercase word, at most {TYPE_BYTES_MAX} bytes in all"));
    }
    if t.fields.len() > PLUGIN_FIELDS_MAX || t.constraints.len() > PLUGIN_CONSTRAINTS_MAX {
        return Err(format!("at most {PLUGIN_FIELDS_MAX} fields and {PLUGIN_CONSTRAINTS_MAX} constraints"));
    }
    let mut names = BTreeSet::new();
    for f in &t.fields {
        if f.name.is_empty() || f.name.len() > FIELD_NAME_BYTES_MAX || f.name.chars().any(char::is_control) {
            return Err(format!("field name '{}' must be 1 to {FIELD_NAME_BYTES_MAX} printable bytes", f.name));
        }
        // Merge conflicts name the object's name and the whole object with these.
        if f.name == NAME_FIELD || f.name == WHOLE_OBJECT {
            return Err(format!("field name '{}' is reserved", f.name));
        }
        if !names.insert(f.name.as_str()) {
            return Err(format!("field '{}' is declared twice", f.name));
        }
        kind(&f.kind, own, 0).map_err(|e| format!("field '{}': {e}", f.name))?;
    }
    let known = |f: &String| if names.contains(f.as_str()) { Ok(()) } else { Err(format!("no field '{f}'")) };
    for c in &t.constraints {
        match c {
            Constraint::AnyOf { fields } | Constraint::Together { fields } => {
                if fields.is_empty() {
                    return Err("a constraint names no field".into());
                }
                fields.iter().try_for_each(known)?;
            }
            Constraint::Ordered { first, last } | Constraint::Prefix { address: first, length: last } => {
                known(first)?;
                known(last)?;
            }
        }
    }
    Ok(())
}

fn kind(k: &FieldKind, own: &BTreeSet<&str>, depth: usize) -> Result<(), String> {
    match k {
        FieldKind::Int { min: Some(lo), max: Some(hi) } if lo > hi => Err(format!("min {lo} is above max {hi}")),
        FieldKind::Enum { values } => {
            let distinct: BTreeSet<&String> = values.iter().collect();
            if values.is_empty() || distinct.len() != values.len() {
                return Err("an enum lists one or more distinct values".into());
            }
            Ok(())
        }
        FieldKind::Ref { types } | FieldKind::RefsOrAny { types } => {
            if types.is_empty() {
                return Err("a reference names the types it may refer to".into());
            }
            let builtin = Schemas::builtin();
            for t in types {
                if builtin.get(t).is_none() && !own.contains(t.as_str()) {
                    return Err(format!("refers to '{t}', which is neither a built-in type nor its own"));
                }
            }
            Ok(())
        }
        FieldKind::List { item } => {
            if depth >= KIND_DEPTH_MAX {
                return Err(format!("lists nest at most {KIND_DEPTH_MAX} deep"));
            }
            kind(item, own, depth + 1)
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{FieldSpec, MergeStrategy};

    fn field(name: &str, kind: FieldKind) -> FieldSpec {
        FieldSpec { name: name.into(), kind, required: false, merge: MergeStrategy::Replace }
    }

    fn describe(types: Vec<TypeSchema>) -> Description {
        Description { name: "vpn".into(), version: "1.0.0".into(), types, merge: vec![] }
    }

    fn ty(name: &str, fields: Vec<FieldSpec>) -> TypeSchema {
        TypeSchema { name: name.into(), fields, constraints: vec![] }
    }

    #[test]
    fn types_live_in_the_plugins_namespace() {
        assert!(description(&describe(vec![ty("vpn.community", vec![])])).is_ok());
        for bad in ["host", "vpnx.community", "other.community", "vpn.", "vpn.Community", "plugin"] {
            let e = description(&describe(vec![ty(bad, vec![])])).expect_err(bad);
            assert!(e.contains("'vpn.'"), "{bad}: {e}");
        }
    }

    #[test]
    fn plugin_names_are_words() {
        assert!(plugin_name("threat-profile2").is_ok());
        for bad in ["", "Vpn", "1vpn", "vpn.x", "vpn x", &"v".repeat(PLUGIN_NAME_BYTES_MAX + 1)] {
            assert!(plugin_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn references_reach_only_builtin_or_own_types() {
        let gw = |t: &str| ty("vpn.community", vec![field("gw", FieldKind::Ref { types: vec![t.into()] })]);
        assert!(description(&describe(vec![gw("host")])).is_ok());
        assert!(description(&describe(vec![gw("vpn.community")])).is_ok());
        assert!(description(&describe(vec![gw("threat.profile")])).is_err());
    }

    #[test]
    fn nonsense_schemas_are_refused() {
        let int = FieldKind::Int { min: Some(5), max: Some(1) };
        assert!(description(&describe(vec![ty("vpn.a", vec![field("x", int)])])).is_err());
        let twice = vec![field("x", FieldKind::Bool), field("x", FieldKind::Bool)];
        assert!(description(&describe(vec![ty("vpn.a", twice)])).is_err());
        assert!(description(&describe(vec![ty("vpn.a", vec![field("name", FieldKind::String)])])).is_err());
        let mut d = describe(vec![ty("vpn.a", vec![])]);
        d.merge = vec!["vpn.b".into()];
        assert!(description(&d).is_err());
        let mut d = describe(vec![ty("vpn.a", vec![])]);
        d.types[0].constraints = vec![Constraint::AnyOf { fields: vec!["missing".into()] }];
        assert!(description(&d).is_err());
    }
}
