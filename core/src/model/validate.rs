//! Validation of an object's fields against its type's schema, and the walk over its reference
//! fields that resolves names into uids (on publish) and lists what an object refers to (for the
//! reference index).

use serde_json::Value;
use std::net::{Ipv4Addr, Ipv6Addr};

use super::object::{Fields, Uid};
use super::schema::{Constraint, FieldKind, TypeSchema};
use crate::error::{Error, Result};
use crate::limits::{FIELD_DEPTH_MAX, NAME_BYTES_MAX};

/// The literal that stands for "any object" in `RefsOrAny` fields. Written as the string or,
/// as Check Point's management API writes it, as the one-item list `["Any"]`; stored as the
/// string either way, so both spellings publish the same object.
pub const ANY: &str = "Any";

/// Whether `v` is the list spelling of [`ANY`], `["Any"]`.
fn is_any_list(v: &Value) -> bool {
    v.as_array().is_some_and(|items| items.len() == 1 && items[0].as_str() == Some(ANY))
}

/// Checks a name: non-empty, bounded, printable.
pub fn validate_name(type_name: &str, name: &str) -> Result<()> {
    let bad =
        |reason: &str| Error::InvalidObject { type_name: type_name.into(), name: name.into(), reason: reason.into() };
    if name.trim().is_empty() {
        return Err(bad("the name is empty"));
    }
    if name.len() > NAME_BYTES_MAX {
        return Err(bad(&format!("the name is over {NAME_BYTES_MAX} bytes")));
    }
    if name.chars().any(char::is_control) {
        return Err(bad("the name contains control characters"));
    }
    Ok(())
}

/// Checks every field against the schema: known names, kinds, required fields, constraints.
/// References are checked for form only; whether they resolve is the store's business.
pub fn validate_fields(schema: &TypeSchema, name: &str, fields: &Fields) -> Result<()> {
    let field_err = |field: &str, reason: String| Error::InvalidField {
        type_name: schema.name.clone(),
        name: name.into(),
        field: field.into(),
        reason,
    };
    for (key, value) in fields {
        let Some(spec) = schema.field(key) else {
            let known: Vec<&str> = schema.fields.iter().map(|f| f.name.as_str()).collect();
            return Err(field_err(key, format!("unknown field (known: {})", known.join(", "))));
        };
        check_depth(value, 0).map_err(|r| field_err(key, r))?;
        if !value.is_null() {
            check_kind(&spec.kind, value).map_err(|r| field_err(key, r))?;
        }
    }
    for spec in &schema.fields {
        if spec.required && fields.get(&spec.name).is_none_or(Value::is_null) {
            return Err(field_err(&spec.name, "required field is missing".into()));
        }
    }
    let present = |f: &str| fields.get(f).is_some_and(|v| !v.is_null());
    for c in &schema.constraints {
        match c {
            Constraint::AnyOf { fields: names } => {
                if !names.iter().any(|f| present(f)) {
                    return Err(Error::InvalidObject {
                        type_name: schema.name.clone(),
                        name: name.into(),
                        reason: format!("needs at least one of: {}", names.join(", ")),
                    });
                }
            }
            Constraint::Together { fields: names } => {
                let n = names.iter().filter(|f| present(f)).count();
                if n != 0 && n != names.len() {
                    return Err(Error::InvalidObject {
                        type_name: schema.name.clone(),
                        name: name.into(),
                        reason: format!("fields {} go together: give all or none", names.join(", ")),
                    });
                }
            }
            Constraint::Ordered { first, last } => {
                if let (Some(a), Some(b)) = (fields.get(first), fields.get(last)) {
                    if ordered_pair(a, b) == Some(false) {
                        return Err(field_err(last, format!("is before '{first}'")));
                    }
                }
            }
        }
    }
    Ok(())
}

/// `Some(a <= b)` for two addresses or two integers; `None` when they do not compare.
fn ordered_pair(a: &Value, b: &Value) -> Option<bool> {
    if let (Some(a), Some(b)) = (a.as_i64(), b.as_i64()) {
        return Some(a <= b);
    }
    let (a, b) = (a.as_str()?, b.as_str()?);
    if let (Ok(a), Ok(b)) = (a.parse::<Ipv4Addr>(), b.parse::<Ipv4Addr>()) {
        return Some(a <= b);
    }
    if let (Ok(a), Ok(b)) = (a.parse::<Ipv6Addr>(), b.parse::<Ipv6Addr>()) {
        return Some(a <= b);
    }
    None
}

fn check_depth(v: &Value, depth: usize) -> std::result::Result<(), String> {
    if depth > FIELD_DEPTH_MAX {
        return Err(format!("nested deeper than {FIELD_DEPTH_MAX} levels"));
    }
    match v {
        Value::Array(items) => items.iter().try_for_each(|i| check_depth(i, depth + 1)),
        Value::Object(map) => map.values().try_for_each(|i| check_depth(i, depth + 1)),
        Value::Number(n) if n.is_f64() => {
            Err("floating-point numbers are not supported; use an integer or a string".into())
        }
        _ => Ok(()),
    }
}

fn check_kind(kind: &FieldKind, v: &Value) -> std::result::Result<(), String> {
    let want = |what: &str| Err(format!("expected {what}, got {v}"));
    match kind {
        FieldKind::String => v.as_str().map(|_| ()).ok_or(()).or_else(|_| want("a string")),
        FieldKind::Int { min, max } => {
            let Some(n) = v.as_i64() else {
                return want("an integer");
            };
            if min.is_some_and(|m| n < m) || max.is_some_and(|m| n > m) {
                return Err(format!(
                    "{n} is out of range {}..={}",
                    min.map_or("".into(), |m| m.to_string()),
                    max.map_or("".into(), |m| m.to_string())
                ));
            }
            Ok(())
        }
        FieldKind::Bool => v.as_bool().map(|_| ()).ok_or(()).or_else(|_| want("true or false")),
        FieldKind::Ipv4 => match v.as_str().map(str::parse::<Ipv4Addr>) {
            Some(Ok(_)) => Ok(()),
            _ => want("an IPv4 address"),
        },
        FieldKind::Ipv6 => match v.as_str().map(str::parse::<Ipv6Addr>) {
            Some(Ok(_)) => Ok(()),
            _ => want("an IPv6 address"),
        },
        FieldKind::Port => match v.as_str() {
            Some(s) if parse_port_range(s).is_some() => Ok(()),
            _ => want("a port \"1-65535\" or a range \"LOW-HIGH\""),
        },
        FieldKind::Enum { values } => match v.as_str() {
            Some(s) if values.iter().any(|x| x == s) => Ok(()),
            _ => want(&format!("one of {}", values.join(", "))),
        },
        FieldKind::Date => match v.as_str() {
            Some(s) if is_date(s) => Ok(()),
            _ => want("a date YYYY-MM-DD"),
        },
        FieldKind::Any => Ok(()),
        FieldKind::Ref { .. } => match v.as_str() {
            Some(s) if !s.is_empty() => Ok(()),
            _ => want("a reference (name or uid)"),
        },
        FieldKind::RefsOrAny { .. } => match v {
            Value::String(s) if s == ANY => Ok(()),
            v if is_any_list(v) => Ok(()),
            Value::Array(items) if items.iter().any(|i| i.as_str() == Some(ANY)) => {
                want("\"Any\" alone, not in a list with references")
            }
            Value::Array(items) if !items.is_empty() => {
                items.iter().try_for_each(|i| check_kind(&FieldKind::Ref { types: vec![] }, i))
            }
            _ => want("\"Any\" or a non-empty list of references"),
        },
        FieldKind::List { item } => {
            let Some(items) = v.as_array() else {
                return want("a list");
            };
            items.iter().enumerate().try_for_each(|(i, x)| check_kind(item, x).map_err(|e| format!("item {i}: {e}")))
        }
    }
}

/// Parses "443" or "8000-8080" into an inclusive range of valid ports.
pub fn parse_port_range(s: &str) -> Option<(u16, u16)> {
    let (lo, hi) = match s.split_once('-') {
        Some((a, b)) => (a.trim().parse::<u16>().ok()?, b.trim().parse::<u16>().ok()?),
        None => {
            let p = s.trim().parse::<u16>().ok()?;
            (p, p)
        }
    };
    (lo >= 1 && lo <= hi).then_some((lo, hi))
}

fn is_date(s: &str) -> bool {
    let b = s.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return false;
    }
    let num = |r: std::ops::Range<usize>| s[r].parse::<u32>().ok();
    matches!((num(0..4), num(5..7), num(8..10)), (Some(_), Some(m), Some(d)) if (1..=12).contains(&m) && (1..=31).contains(&d))
}

/// Calls `resolve(field, allowed types, reference)` for every reference in `fields`, replacing
/// the reference with what it returns (a name becomes a uid).
pub fn resolve_refs(
    schema: &TypeSchema,
    fields: &mut Fields,
    mut resolve: impl FnMut(&str, &[String], &str) -> Result<Uid>,
) -> Result<()> {
    for spec in &schema.fields {
        let Some(value) = fields.get_mut(&spec.name) else {
            continue;
        };
        if matches!(spec.kind, FieldKind::RefsOrAny { .. }) && is_any_list(value) {
            *value = Value::String(ANY.into());
            continue;
        }
        walk_refs_mut(&spec.kind, value, &mut |types, r| {
            let uid = resolve(&spec.name, types, r)?;
            Ok(uid.to_string())
        })?;
    }
    Ok(())
}

fn walk_refs_mut(kind: &FieldKind, v: &mut Value, f: &mut dyn FnMut(&[String], &str) -> Result<String>) -> Result<()> {
    match (kind, v) {
        (FieldKind::Ref { types }, Value::String(s)) => {
            *s = f(types, s)?;
        }
        (FieldKind::RefsOrAny { types }, Value::Array(items)) => {
            for item in items {
                if let Value::String(s) = item {
                    *s = f(types, s)?;
                }
            }
        }
        (FieldKind::List { item }, Value::Array(items)) => {
            for x in items {
                walk_refs_mut(item, x, f)?;
            }
        }
        _ => {}
    }
    Ok(())
}

/// Every uid that a stored (resolved) object refers to, with the field it sits in.
pub fn references(schema: &TypeSchema, fields: &Fields) -> Vec<(String, Uid)> {
    let mut out = Vec::new();
    for spec in &schema.fields {
        if let Some(v) = fields.get(&spec.name) {
            collect_refs(&spec.kind, v, &mut |s| {
                if let Some(uid) = Uid::parse(s) {
                    out.push((spec.name.clone(), uid));
                }
            });
        }
    }
    out
}

fn collect_refs(kind: &FieldKind, v: &Value, f: &mut dyn FnMut(&str)) {
    match (kind, v) {
        (FieldKind::Ref { .. }, Value::String(s)) => f(s),
        (FieldKind::RefsOrAny { .. }, Value::Array(items)) => items.iter().filter_map(Value::as_str).for_each(f),
        (FieldKind::List { item }, Value::Array(items)) => items.iter().for_each(|x| collect_refs(item, x, f)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::schema::Schemas;
    use serde_json::json;

    fn fields(v: Value) -> Fields {
        match v {
            Value::Object(m) => m,
            _ => Fields::new(),
        }
    }

    fn check(t: &str, v: Value) -> Result<()> {
        let s = Schemas::builtin();
        validate_fields(s.get(t).expect("type"), "x", &fields(v))
    }

    #[test]
    fn host_needs_an_address() {
        assert!(check("host", json!({"ipv4-address": "10.0.0.1"})).is_ok());
        let e = check("host", json!({})).expect_err("no address");
        assert!(e.to_string().contains("ipv4-address"), "{e}");
        let e = check("host", json!({"ipv4-address": "10.0.0.300"})).expect_err("bad address");
        assert!(e.to_string().contains("field 'ipv4-address'"), "{e}");
    }

    #[test]
    fn unknown_fields_are_named() {
        let e = check("host", json!({"ipv4-address": "10.0.0.1", "ipv4-adress": "x"})).expect_err("typo");
        assert!(e.to_string().contains("'ipv4-adress'"), "{e}");
    }

    #[test]
    fn ports_and_ranges() {
        assert_eq!(parse_port_range("443"), Some((443, 443)));
        assert_eq!(parse_port_range("8000-8080"), Some((8000, 8080)));
        assert_eq!(parse_port_range("0"), None);
        assert_eq!(parse_port_range("90-80"), None);
        assert!(check("service-tcp", json!({"port": "70000"})).is_err());
    }

    #[test]
    fn address_range_must_be_ordered() {
        assert!(
            check("address-range", json!({"ipv4-address-first": "10.0.0.1", "ipv4-address-last": "10.0.0.9"})).is_ok()
        );
        assert!(
            check("address-range", json!({"ipv4-address-first": "10.0.0.9", "ipv4-address-last": "10.0.0.1"})).is_err()
        );
        assert!(check("address-range", json!({"ipv4-address-first": "10.0.0.9"})).is_err());
    }

    #[test]
    fn rule_sources_are_any_or_references() {
        let ok = json!({"layer": "l", "position": 1, "source": "Any", "destination": ["web"], "action": "accept"});
        assert!(check("access-rule", ok).is_ok());
        let bad = json!({"layer": "l", "position": 1, "source": "anything", "action": "accept"});
        assert!(check("access-rule", bad).is_err());
        let listed = json!({"layer": "l", "position": 1, "source": ["Any"], "service": ["Any"], "action": "accept"});
        assert!(check("access-rule", listed).is_ok());
        let mixed = json!({"layer": "l", "position": 1, "source": ["Any", "web"], "action": "accept"});
        assert!(check("access-rule", mixed).is_err());
        let bad = json!({"layer": "l", "position": 1, "action": "permit"});
        assert!(check("access-rule", bad).is_err());
    }

    #[test]
    fn floats_are_refused() {
        assert!(check("system-setting", json!({"value": {"x": 1.5}})).is_err());
        assert!(check("system-setting", json!({"value": {"x": 15}})).is_ok());
    }

    #[test]
    fn references_are_found_and_rewritten() {
        let s = Schemas::builtin();
        let g = s.get("group").expect("group");
        let mut f = fields(json!({"members": ["a", "b"]}));
        let uid = Uid::new_random();
        resolve_refs(g, &mut f, |_, _, _| Ok(uid)).expect("resolves");
        let refs = references(g, &f);
        assert_eq!(refs.len(), 2);
        assert!(refs.iter().all(|(field, u)| field == "members" && *u == uid));
    }

    #[test]
    fn any_as_a_list_is_stored_as_the_string() {
        let s = Schemas::builtin();
        let rule = s.get("access-rule").expect("access-rule");
        let mut f = fields(json!({"source": ["Any"], "destination": ["web"], "service": "Any"}));
        let uid = Uid::new_random();
        resolve_refs(rule, &mut f, |_, _, r| if r == "web" { Ok(uid) } else { Err(Error::NotFound(r.into())) })
            .expect("resolves");
        assert_eq!(f.get("source"), Some(&json!("Any")));
        assert_eq!(f.get("service"), Some(&json!("Any")));
        assert_eq!(f.get("destination"), Some(&json!([uid.to_string()])));
    }
}
