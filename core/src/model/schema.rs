//! Object type schemas: field kinds, required fields, cross-field constraints and per-field merge
//! strategies. Schemas are data, not code, so that plugin types (which describe themselves as
//! MessagePack) and built-in types share one validator and one merge.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// What a field may hold.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum FieldKind {
    String,
    Int {
        min: Option<i64>,
        max: Option<i64>,
    },
    Bool,
    Ipv4,
    Ipv6,
    /// A port ("443") or an inclusive range ("8000-8080"), as a string.
    Port,
    Enum {
        values: Vec<String>,
    },
    /// A calendar date, `YYYY-MM-DD`.
    Date,
    /// Any document.
    Any,
    /// A reference to one object of one of `types`: written as a name or uid, stored as uid.
    Ref {
        types: Vec<String>,
    },
    /// The string "Any", or a list of references.
    RefsOrAny {
        types: Vec<String>,
    },
    List {
        item: Box<FieldKind>,
    },
}

/// How concurrent edits of one field are combined in a three-way merge.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum MergeStrategy {
    /// One side's value wins; a change on both sides to different values is a conflict.
    #[default]
    Replace,
    /// Lists merged as sets: additions from both sides kept, removals from either side applied.
    SetUnion,
    /// The larger value wins (stricter thresholds, longer retention).
    Max,
    /// The smaller value wins.
    Min,
}

/// One field of a type.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldSpec {
    pub name: String,
    #[serde(flatten)]
    pub kind: FieldKind,
    #[serde(default)]
    pub required: bool,
    #[serde(default)]
    pub merge: MergeStrategy,
}

/// A rule across several fields.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "rule", rename_all = "kebab-case")]
pub enum Constraint {
    /// At least one of these fields is present.
    AnyOf { fields: Vec<String> },
    /// All of these fields, or none.
    Together { fields: Vec<String> },
    /// When both are present, `first` is not above `last` (addresses or integers).
    Ordered { first: String, last: String },
    /// When both are present, the address in `address` has no bits set past the prefix length
    /// in `length`: `10.1.0.0/16`, never `10.1.2.3/16` (which names no network of its own).
    Prefix { address: String, length: String },
}

/// The schema of one object type.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TypeSchema {
    pub name: String,
    pub fields: Vec<FieldSpec>,
    #[serde(default)]
    pub constraints: Vec<Constraint>,
}

impl TypeSchema {
    pub fn field(&self, name: &str) -> Option<&FieldSpec> {
        self.fields.iter().find(|f| f.name == name)
    }
}

/// All known types, by name.
#[derive(Clone, Debug)]
pub struct Schemas {
    types: BTreeMap<String, TypeSchema>,
}

impl Default for Schemas {
    fn default() -> Self {
        Schemas::builtin()
    }
}

impl Schemas {
    /// The built-in types of a security management server.
    pub fn builtin() -> Schemas {
        let mut types = BTreeMap::new();
        for t in builtin_types() {
            types.insert(t.name.clone(), t);
        }
        Schemas { types }
    }

    pub fn get(&self, type_name: &str) -> Option<&TypeSchema> {
        self.types.get(type_name)
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.types.keys().map(String::as_str)
    }

    pub fn iter(&self) -> impl Iterator<Item = &TypeSchema> {
        self.types.values()
    }

    /// Adds (or replaces) a type: how plugin types join the built-in ones.
    pub fn insert(&mut self, schema: TypeSchema) -> Option<TypeSchema> {
        self.types.insert(schema.name.clone(), schema)
    }
}

/// The names of the built-in types.
pub const BUILTIN_TYPES: &[&str] = &[
    "host",
    "network",
    "address-range",
    "group",
    "service-tcp",
    "service-udp",
    "service-group",
    "access-layer",
    "access-rule",
    "policy-package",
    "user",
    "user-group",
    "administrator",
    "system-setting",
    "domain",
];

/// Built-in types that only the node writes: the domain registry of a cluster's first domain
/// (`mgha domain create`). An admin changeset or session that touches one is refused.
pub const MANAGED_TYPES: &[&str] = &["domain"];

const NETWORK_OBJECTS: &[&str] = &["host", "network", "address-range", "group"];
const SERVICES: &[&str] = &["service-tcp", "service-udp", "service-group"];
const AUTH_METHODS: &[&str] = &["password", "certificate", "radius"];

fn f(name: &str, kind: FieldKind) -> FieldSpec {
    FieldSpec { name: name.into(), kind, required: false, merge: MergeStrategy::Replace }
}
fn required(name: &str, kind: FieldKind) -> FieldSpec {
    FieldSpec { required: true, ..f(name, kind) }
}
fn members(types: &[&str]) -> FieldSpec {
    FieldSpec { merge: MergeStrategy::SetUnion, ..f("members", FieldKind::List { item: Box::new(refs(types)) }) }
}
fn refs(types: &[&str]) -> FieldKind {
    FieldKind::Ref { types: strings(types) }
}
fn refs_or_any(types: &[&str]) -> FieldKind {
    FieldKind::RefsOrAny { types: strings(types) }
}
fn enumeration(values: &[&str]) -> FieldKind {
    FieldKind::Enum { values: strings(values) }
}
fn int(min: i64, max: i64) -> FieldKind {
    FieldKind::Int { min: Some(min), max: Some(max) }
}
fn strings(s: &[&str]) -> Vec<String> {
    s.iter().map(|s| s.to_string()).collect()
}
fn any_of(fields: &[&str]) -> Constraint {
    Constraint::AnyOf { fields: strings(fields) }
}
fn together(fields: &[&str]) -> Constraint {
    Constraint::Together { fields: strings(fields) }
}
fn prefix(address: &str, length: &str) -> Constraint {
    Constraint::Prefix { address: address.into(), length: length.into() }
}
fn ordered(first: &str, last: &str) -> Constraint {
    Constraint::Ordered { first: first.into(), last: last.into() }
}

/// Optional fields every built-in type accepts.
pub fn common_fields() -> Vec<FieldSpec> {
    vec![
        f("comments", FieldKind::String),
        f("color", FieldKind::String),
        FieldSpec {
            merge: MergeStrategy::SetUnion,
            ..f("tags", FieldKind::List { item: Box::new(FieldKind::String) })
        },
    ]
}

fn ty(name: &str, mut fields: Vec<FieldSpec>, constraints: Vec<Constraint>) -> TypeSchema {
    fields.extend(common_fields());
    TypeSchema { name: name.into(), fields, constraints }
}

fn builtin_types() -> Vec<TypeSchema> {
    use FieldKind::*;
    vec![
        ty(
            "host",
            vec![f("ipv4-address", Ipv4), f("ipv6-address", Ipv6)],
            vec![any_of(&["ipv4-address", "ipv6-address"])],
        ),
        ty(
            "network",
            vec![f("subnet4", Ipv4), f("mask-length4", int(0, 32)), f("subnet6", Ipv6), f("mask-length6", int(0, 128))],
            vec![
                any_of(&["subnet4", "subnet6"]),
                together(&["subnet4", "mask-length4"]),
                together(&["subnet6", "mask-length6"]),
                prefix("subnet4", "mask-length4"),
                prefix("subnet6", "mask-length6"),
            ],
        ),
        ty(
            "address-range",
            vec![
                f("ipv4-address-first", Ipv4),
                f("ipv4-address-last", Ipv4),
                f("ipv6-address-first", Ipv6),
                f("ipv6-address-last", Ipv6),
            ],
            vec![
                any_of(&["ipv4-address-first", "ipv6-address-first"]),
                together(&["ipv4-address-first", "ipv4-address-last"]),
                together(&["ipv6-address-first", "ipv6-address-last"]),
                ordered("ipv4-address-first", "ipv4-address-last"),
                ordered("ipv6-address-first", "ipv6-address-last"),
            ],
        ),
        ty("group", vec![members(NETWORK_OBJECTS)], vec![]),
        ty("service-tcp", vec![required("port", Port)], vec![]),
        ty("service-udp", vec![required("port", Port)], vec![]),
        ty("service-group", vec![members(SERVICES)], vec![]),
        ty("access-layer", vec![], vec![]),
        ty(
            "access-rule",
            vec![
                required("layer", refs(&["access-layer"])),
                required("position", int(1, i64::from(u32::MAX))),
                f("source", refs_or_any(NETWORK_OBJECTS)),
                f("destination", refs_or_any(NETWORK_OBJECTS)),
                f("service", refs_or_any(SERVICES)),
                required("action", enumeration(&["accept", "drop", "reject"])),
                f("track", enumeration(&["none", "log", "alert"])),
                f("enabled", Bool),
            ],
            vec![],
        ),
        ty(
            "policy-package",
            vec![FieldSpec {
                merge: MergeStrategy::SetUnion,
                ..f("access-layers", List { item: Box::new(refs(&["access-layer"])) })
            }],
            vec![],
        ),
        ty(
            "user",
            vec![f("email", String), f("authentication-method", enumeration(AUTH_METHODS)), f("expiration-date", Date)],
            vec![],
        ),
        ty("user-group", vec![members(&["user", "user-group"])], vec![]),
        ty(
            "administrator",
            vec![f("permissions-profile", String), f("authentication-method", enumeration(AUTH_METHODS))],
            vec![],
        ),
        ty("system-setting", vec![required("value", Any)], vec![]),
        // A domain of the cluster: the servers that hold a replica of it (the first where it
        // was created Active), how often they changed, and the revisions it keeps (absent: each
        // server's `retain_revisions`).
        ty(
            "domain",
            vec![
                required("replicas", List { item: Box::new(String) }),
                f("generation", int(1, i64::MAX)),
                f("retain_revisions", int(1, i64::MAX)),
            ],
            vec![],
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_builtin_type_has_a_schema() {
        let s = Schemas::builtin();
        for t in BUILTIN_TYPES {
            assert!(s.get(t).is_some(), "{t}");
        }
        assert_eq!(s.names().count(), BUILTIN_TYPES.len());
    }

    #[test]
    fn schema_round_trips_as_json() {
        let s = Schemas::builtin();
        let rule = s.get("access-rule").expect("access-rule");
        let json = serde_json::to_string(rule).expect("encodes");
        let back: TypeSchema = serde_json::from_str(&json).expect("decodes");
        assert_eq!(&back, rule);
    }
}
