//! What the CLI prints about plugins: one module's declaration (`mgha plugin check`), with a
//! table of each type's fields, and the installed plugins (`mgha plugin list`).

use std::fmt::Write as _;

use mgha_core::model::{Constraint, FieldKind, MergeStrategy, TypeSchema};

use super::{cut, short, Table, CELL_CHARS_MAX};
use crate::daemon::plugins::PluginBody;

/// `mgha plugin check`: the plugin, then each type it declares with its fields.
pub fn plugin(p: &PluginBody) -> String {
    let mut t = Table::keyed();
    t.row(vec!["plugin".into(), format!("{} {}", p.name, p.version)]);
    t.row(vec!["module".into(), format!("{} bytes, blake3 {}", p.module_bytes, p.hash)]);
    t.row(vec!["types".into(), p.type_names.join(", ")]);
    let merges = if p.merge.is_empty() { "none: every type merges field by field".into() } else { p.merge.join(", ") };
    t.row(vec!["own merge".into(), merges]);
    t.row(vec!["status".into(), plugin_status(p)]);
    let mut out = t.render();
    for schema in &p.types {
        out.push('\n');
        out.push_str(&type_schema(schema));
    }
    out
}

/// `mgha plugin list`: one line per installed plugin.
pub fn plugins(list: &[PluginBody]) -> String {
    let mut t = Table::new(&["NAME", "VERSION", "TYPES", "HASH", "BYTES", "STATUS"]);
    for p in list {
        let bytes = if p.module_bytes == 0 { "?".into() } else { p.module_bytes.to_string() };
        t.row(vec![
            p.name.clone(),
            cut(&p.version, 20),
            cut(&p.type_names.join(", "), CELL_CHARS_MAX),
            short(&p.hash).into(),
            bytes,
            plugin_status(p),
        ]);
    }
    t.render()
}

/// Whether this node runs the plugin: `loaded` (for an installed one), `passes every check` (for
/// a module only checked), or the reason it could not load it.
fn plugin_status(p: &PluginBody) -> String {
    match (&p.error, &p.uid) {
        (Some(e), _) => format!("error: {e}"),
        (None, Some(_)) => "loaded".into(),
        (None, None) => "passes every check (not installed)".into(),
    }
}

/// One type: its name, a table of its fields, and its constraints.
fn type_schema(schema: &TypeSchema) -> String {
    let mut out = format!("type {}\n", schema.name);
    let mut t = Table::new(&["  FIELD", "KIND", "REQUIRED", "MERGE"]);
    for f in &schema.fields {
        t.row(vec![
            format!("  {}", f.name),
            cut(&kind(&f.kind), CELL_CHARS_MAX),
            if f.required { "yes".into() } else { String::new() },
            merge_strategy(f.merge).into(),
        ]);
    }
    out.push_str(&t.render());
    for c in &schema.constraints {
        let _ = writeln!(out, "  constraint: {}", constraint(c));
    }
    out
}

/// A field kind as people read it: `list of ref to host`, `one of a, b`, `int 1..100`.
fn kind(k: &FieldKind) -> String {
    match k {
        FieldKind::String => "string".into(),
        FieldKind::Int { min, max } => match (min, max) {
            (None, None) => "int".into(),
            (lo, hi) => format!(
                "int {}..{}",
                lo.map(|v| v.to_string()).unwrap_or_default(),
                hi.map(|v| v.to_string()).unwrap_or_default()
            ),
        },
        FieldKind::Bool => "bool".into(),
        FieldKind::Ipv4 => "ipv4".into(),
        FieldKind::Ipv6 => "ipv6".into(),
        FieldKind::Port => "port".into(),
        FieldKind::Enum { values } => format!("one of {}", values.join(", ")),
        FieldKind::Date => "date".into(),
        FieldKind::Any => "any".into(),
        FieldKind::Ref { types } => format!("ref to {}", types.join(" or ")),
        FieldKind::RefsOrAny { types } => format!("\"Any\" or refs to {}", types.join(" or ")),
        FieldKind::List { item } => format!("list of {}", kind(item)),
    }
}

fn merge_strategy(m: MergeStrategy) -> &'static str {
    match m {
        MergeStrategy::Replace => "replace",
        MergeStrategy::SetUnion => "set-union",
        MergeStrategy::Max => "max",
        MergeStrategy::Min => "min",
    }
}

fn constraint(c: &Constraint) -> String {
    match c {
        Constraint::AnyOf { fields } => format!("at least one of {}", fields.join(", ")),
        Constraint::Together { fields } => format!("all or none of {}", fields.join(", ")),
        Constraint::Ordered { first, last } => format!("{first} not above {last}"),
        Constraint::Prefix { address, length } => format!("{address} has no bits past the prefix length {length}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vpn(uid: Option<&str>, error: Option<&str>) -> PluginBody {
        PluginBody {
            name: "vpn".into(),
            version: "1.0.0".into(),
            hash: "ab".repeat(32),
            module_bytes: 266_358,
            type_names: vec!["vpn.community".into()],
            types: vec![serde_json::from_value(serde_json::json!({"name": "vpn.community", "fields": [
                {"name": "gateways", "kind": "list", "item": {"kind": "ref", "types": ["host"]}, "required": true,
                 "merge": "set-union"},
                {"name": "encryption", "kind": "enum", "values": ["aes-128", "aes-256"], "required": true},
                {"name": "mtu", "kind": "int", "min": 576, "max": null}],
                "constraints": [{"rule": "together", "fields": ["encryption", "mtu"]}]}))
            .expect("schema")],
            merge: vec!["vpn.community".into()],
            uid: uid.map(str::to_string),
            error: error.map(str::to_string),
        }
    }

    #[test]
    fn a_checked_module_shows_its_types_and_fields() {
        let text = plugin(&vpn(None, None));
        assert!(text.contains("plugin     vpn 1.0.0"), "{text}");
        assert!(text.contains(&format!("266358 bytes, blake3 {}", "ab".repeat(32))), "{text}");
        assert!(text.contains("passes every check (not installed)"), "{text}");
        assert!(text.contains("type vpn.community"), "{text}");
        let gateways = text.lines().find(|l| l.contains("gateways")).expect("gateways line");
        assert!(gateways.contains("list of ref to host") && gateways.contains("yes"), "{gateways}");
        assert!(gateways.trim_end().ends_with("set-union"), "{gateways}");
        assert!(text.contains("one of aes-128, aes-256"), "{text}");
        assert!(text.contains("int 576.."), "{text}");
        assert!(text.contains("constraint: all or none of encryption, mtu"), "{text}");
    }

    #[test]
    fn installed_plugins_show_loaded_or_the_reason() {
        let mut failed = vpn(Some("u2"), Some("plugin 'vpn' check: trapped"));
        failed.name = "broken".into();
        failed.module_bytes = 0;
        let text = plugins(&[vpn(Some("u1"), None), failed]);
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("NAME") && lines[0].contains("STATUS"), "{text}");
        assert!(lines[1].starts_with("vpn") && lines[1].ends_with("loaded"), "{text}");
        assert!(lines[1].contains("abababababab") && lines[1].contains("266358"), "{text}");
        assert!(lines[2].contains("?") && lines[2].ends_with("error: plugin 'vpn' check: trapped"), "{text}");
    }
}
