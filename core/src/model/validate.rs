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

/// Characters that display as nothing, or reorder or break the text around them: bidi
/// controls (U+202E makes `gnp.exe` of `exe.png`), zero-width characters (`web\u{200b}1` looks like
/// `web1`), the BOM, line and paragraph separators, and the other format characters that Unicode
/// makes invisible. A name holding one could pass for another name.
pub fn is_invisible(c: char) -> bool {
    matches!(c,
        '\u{00AD}' | '\u{034F}' | '\u{061C}' | '\u{115F}' | '\u{1160}' | '\u{17B4}' | '\u{17B5}'
        | '\u{180B}'..='\u{180F}' | '\u{200B}'..='\u{200F}' | '\u{2028}'..='\u{202E}'
        | '\u{2060}'..='\u{206F}' | '\u{3164}' | '\u{FE00}'..='\u{FE0F}' | '\u{FEFF}' | '\u{FFA0}'
        | '\u{FFF0}'..='\u{FFFB}' | '\u{1D173}'..='\u{1D17A}' | '\u{E0000}'..='\u{E0FFF}')
}

/// Checks a line of audit text (an author, a revision message): it goes to logs and terminals
/// as it is, so a control character (a newline forging a log line, an escape sequence
/// recolouring a terminal) or an invisible one is refused, not escaped.
pub fn validate_text(what: &str, text: &str) -> Result<()> {
    match text.chars().find(|&c| c.is_control() || is_invisible(c)) {
        Some(c) => Err(Error::InvalidText {
            what: what.into(),
            reason: format!("holds the control or invisible character U+{:04X}", c as u32),
        }),
        None => Ok(()),
    }
}

/// Checks a name: non-empty, bounded, printable, nothing invisible.
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
    if let Some(c) = name.chars().find(|&c| is_invisible(c)) {
        return Err(bad(&format!(
            "the name contains the invisible or direction-changing character U+{:04X}",
            c as u32
        )));
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
            Constraint::Prefix { address, length } => {
                if let (Some(a), Some(l)) = (fields.get(address), fields.get(length)) {
                    if let Some(network) = host_bits_set(a, l) {
                        return Err(field_err(
                            address,
                            format!("has host bits set past the prefix length; the network is {network}"),
                        ));
                    }
                }
            }
        }
    }
    Ok(())
}

/// The network address of `address`/`length` when `address` has bits set past the prefix;
/// `None` when it has none, or the values are not an address and a length.
fn host_bits_set(address: &Value, length: &Value) -> Option<String> {
    let (a, len) = (address.as_str()?, u32::try_from(length.as_u64()?).ok()?);
    if let Ok(v4) = a.parse::<Ipv4Addr>() {
        let mask = u32::MAX.checked_shl(32u32.checked_sub(len)?).unwrap_or(0);
        let net = u32::from(v4) & mask;
        return (net != u32::from(v4)).then(|| format!("{}/{len}", Ipv4Addr::from(net)));
    }
    let v6 = a.parse::<Ipv6Addr>().ok()?;
    let mask = u128::MAX.checked_shl(128u32.checked_sub(len)?).unwrap_or(0);
    let net = u128::from(v6) & mask;
    (net != u128::from(v6)).then(|| format!("{}/{len}", Ipv6Addr::from(net)))
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
        FieldKind::String => match v.as_str() {
            // Free text may span lines, but nothing else that steers a terminal or a log.
            Some(s) => match s.chars().find(|&c| (c.is_control() && c != '\n' && c != '\t') || is_invisible(c)) {
                Some(c) => Err(format!("holds the control or invisible character U+{:04X}", c as u32)),
                None => Ok(()),
            },
            None => want("a string"),
        },
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

/// Parses "443" or "8000-8080" into an inclusive range of valid ports. Only decimal digits, as
/// they are stored: no sign, no spaces, no leading zero, so a port has one spelling.
pub fn parse_port_range(s: &str) -> Option<(u16, u16)> {
    fn port(s: &str) -> Option<u16> {
        let canonical = !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) && !s.starts_with('0');
        canonical.then(|| s.parse::<u16>().ok()).flatten()
    }
    let (lo, hi) = match s.split_once('-') {
        Some((a, b)) => (port(a)?, port(b)?),
        None => {
            let p = port(s)?;
            (p, p)
        }
    };
    (lo <= hi).then_some((lo, hi))
}

/// A real calendar date `YYYY-MM-DD` (proleptic Gregorian): 2024-02-29 is one, 2023-02-29 and
/// 2024-02-30 are not.
fn is_date(s: &str) -> bool {
    let b = s.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return false;
    }
    let digits =
        |r: std::ops::Range<usize>| b[r.clone()].iter().all(u8::is_ascii_digit).then(|| s[r].parse::<u32>().ok());
    let (Some(Some(y)), Some(Some(m)), Some(Some(d))) = (digits(0..4), digits(5..7), digits(8..10)) else {
        return false;
    };
    let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let days = match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return false,
    };
    (1..=days).contains(&d)
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

/// Every uid that a stored object refers to from a set-valued field (a list of references:
/// group members and the like), with the field. These are the edges a reference cycle runs
/// along, which would make a group contain itself.
pub fn set_references(schema: &TypeSchema, fields: &Fields) -> Vec<(String, Uid)> {
    let mut out = Vec::new();
    for spec in &schema.fields {
        let set_valued = matches!(&spec.kind, FieldKind::RefsOrAny { .. })
            || matches!(&spec.kind, FieldKind::List { item } if matches!(**item, FieldKind::Ref { .. } | FieldKind::RefsOrAny { .. }));
        if let (true, Some(v)) = (set_valued, fields.get(&spec.name)) {
            collect_refs(&spec.kind, v, &mut |s| {
                if let Some(uid) = Uid::parse(s) {
                    out.push((spec.name.clone(), uid));
                }
            });
        }
    }
    out
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
    fn ports_have_one_spelling() {
        for bad in ["+443", " 443", "443 ", "0443", "-443", "44 3", "80 - 90", "0", "65536", ""] {
            assert_eq!(parse_port_range(bad), None, "{bad:?}");
            assert!(check("service-tcp", json!({ "port": bad })).is_err(), "{bad:?}");
        }
        assert_eq!(parse_port_range("65535"), Some((65535, 65535)));
    }

    #[test]
    fn dates_are_real_calendar_days() {
        let user = |d: &str| check("user", json!({ "expiration-date": d }));
        for good in ["2024-02-29", "2000-02-29", "2023-12-31", "2023-04-30"] {
            assert!(user(good).is_ok(), "{good}");
        }
        for bad in [
            "2024-02-30",
            "2023-02-29",
            "1900-02-29",
            "2023-04-31",
            "2023-13-01",
            "2023-00-10",
            "2023-1-01",
            "+023-01-01",
        ] {
            assert!(user(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn names_refuse_invisible_and_direction_changing_characters() {
        for bad in [
            "web\u{200b}1",
            "\u{202e}gnp.exe",
            "\u{feff}web1",
            "web\u{2028}1",
            "web\u{2066}1",
            "web\u{ad}1",
            "a\u{1b}[31m",
        ] {
            let e = validate_name("host", bad).expect_err(bad);
            assert_eq!(e.code(), crate::ErrorCode::Validation, "{e}");
        }
        validate_name("host", "wéb-1 (ü)").expect("visible letters are fine");
    }

    #[test]
    fn networks_with_host_bits_set_are_refused_naming_the_network() {
        let e = check("network", json!({"subnet4": "10.1.2.3", "mask-length4": 8})).expect_err("host bits");
        assert!(e.to_string().contains("10.0.0.0/8"), "{e}");
        assert!(check("network", json!({"subnet4": "10.0.0.0", "mask-length4": 8})).is_ok());
        assert!(check("network", json!({"subnet4": "0.0.0.0", "mask-length4": 0})).is_ok());
        assert!(check("network", json!({"subnet4": "10.1.2.3", "mask-length4": 32})).is_ok());
        let e = check("network", json!({"subnet6": "2001:db8::1", "mask-length6": 64})).expect_err("host bits");
        assert!(e.to_string().contains("2001:db8::/64"), "{e}");
    }

    #[test]
    fn free_text_and_audit_text_refuse_control_characters() {
        let e = check("host", json!({"ipv4-address": "10.0.0.1", "comments": "\u{1b}[31mEVIL"})).expect_err("escape");
        assert!(e.to_string().contains("U+001B"), "{e}");
        assert!(check("host", json!({"ipv4-address": "10.0.0.1", "comments": "two\nlines\tok"})).is_ok());
        let e = validate_text("author", "\u{1b}[31mEVIL\u{1b}[0m\nfake line").expect_err("forged");
        assert_eq!(e.code(), crate::ErrorCode::Validation, "{e}");
        validate_text("message", "web tier: 3 hosts").expect("plain text");
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
