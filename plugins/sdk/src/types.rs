//! The values that cross the plugin ABI (docs/plugin-abi.md), as Rust types with serde: what
//! `describe` declares (types, fields, kinds, merge strategies, constraints), the object that
//! `validate` and `merge` receive, and what they answer. Builders keep declarations short.

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

/// An object's fields: a document of maps, lists, strings, integers, booleans and null. Never
/// floats: the host refuses an answer that holds one.
pub type Fields = serde_json::Map<String, Value>;

/// An object as the host sends it (and as `merge` answers it).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Object {
    #[serde(rename = "type")]
    pub type_name: String,
    /// The uid, as hyphenated text.
    pub uid: String,
    pub name: String,
    #[serde(default)]
    pub fields: Fields,
}

impl Object {
    /// A field's value; `None` when absent.
    pub fn get(&self, field: &str) -> Option<&Value> {
        self.fields.get(field)
    }
}

/// What `describe` answers.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Description {
    /// The plugin's name: a lowercase word (letters, digits, dashes), at most 32 bytes.
    pub name: String,
    pub version: String,
    /// Each named `<plugin name>.<type>`.
    pub types: Vec<TypeSchema>,
    /// The types whose three-way merge [`crate::Plugin::merge`] performs.
    #[serde(default)]
    pub merge: Vec<String>,
}

/// The schema of one type, as the engine's validator reads it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TypeSchema {
    pub name: String,
    pub fields: Vec<FieldSpec>,
    #[serde(default)]
    pub constraints: Vec<Constraint>,
}

impl TypeSchema {
    pub fn new(name: &str, fields: Vec<FieldSpec>) -> TypeSchema {
        TypeSchema { name: name.into(), fields, constraints: Vec::new() }
    }

    pub fn constraint(mut self, c: Constraint) -> TypeSchema {
        self.constraints.push(c);
        self
    }
}

/// One field: its kind, whether it is required, and how a three-way merge combines it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FieldSpec {
    pub name: String,
    #[serde(flatten)]
    pub kind: FieldKind,
    #[serde(default)]
    pub required: bool,
    #[serde(default)]
    pub merge: MergeStrategy,
}

impl FieldSpec {
    pub fn new(name: &str, kind: FieldKind) -> FieldSpec {
        FieldSpec { name: name.into(), kind, required: false, merge: MergeStrategy::Replace }
    }

    pub fn required(mut self) -> FieldSpec {
        self.required = true;
        self
    }

    pub fn merge(mut self, strategy: MergeStrategy) -> FieldSpec {
        self.merge = strategy;
        self
    }
}

/// What a field may hold.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum FieldKind {
    String,
    Int {
        #[serde(default)]
        min: Option<i64>,
        #[serde(default)]
        max: Option<i64>,
    },
    Bool,
    Ipv4,
    Ipv6,
    /// "443" or "8000-8080".
    Port,
    Enum {
        values: Vec<String>,
    },
    /// `YYYY-MM-DD`.
    Date,
    Any,
    /// A reference (written as a name or uid, stored as uid) to an object of one of `types`:
    /// built-in types or the plugin's own.
    Ref {
        types: Vec<String>,
    },
    /// "Any", or a list of references.
    RefsOrAny {
        types: Vec<String>,
    },
    List {
        item: Box<FieldKind>,
    },
}

impl FieldKind {
    pub fn int(min: i64, max: i64) -> FieldKind {
        FieldKind::Int { min: Some(min), max: Some(max) }
    }

    pub fn one_of(values: &[&str]) -> FieldKind {
        FieldKind::Enum { values: values.iter().map(|v| v.to_string()).collect() }
    }

    pub fn reference(types: &[&str]) -> FieldKind {
        FieldKind::Ref { types: types.iter().map(|v| v.to_string()).collect() }
    }

    pub fn list(item: FieldKind) -> FieldKind {
        FieldKind::List { item: Box::new(item) }
    }
}

/// How the engine merges a field when the type has no merge of its own.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum MergeStrategy {
    /// A change on both sides to different values is a conflict.
    #[default]
    Replace,
    /// Lists as sets: additions of both sides kept, removals of either applied.
    SetUnion,
    /// The larger value wins.
    Max,
    /// The smaller value wins.
    Min,
}

/// A rule across fields.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "rule", rename_all = "kebab-case")]
pub enum Constraint {
    AnyOf { fields: Vec<String> },
    Together { fields: Vec<String> },
    Ordered { first: String, last: String },
}

/// One reason an object is invalid; an empty `field` is about the whole object.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FieldError {
    pub field: String,
    pub reason: String,
}

impl FieldError {
    pub fn new(field: &str, reason: impl Into<String>) -> FieldError {
        FieldError { field: field.into(), reason: reason.into() }
    }
}

/// What `validate` answers.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ValidateOutput {
    pub ok: bool,
    pub errors: Vec<FieldError>,
}

/// What `merge` receives: the object at the fork point (`base`), on the Active and on the
/// collision branch; a side is `None` where the object does not exist. The trivial cases (only
/// one side changed, or both alike) never reach the plugin.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MergeInput {
    #[serde(rename = "type")]
    pub type_name: String,
    #[serde(default)]
    pub base: Option<Object>,
    #[serde(default)]
    pub active: Option<Object>,
    #[serde(default)]
    pub branch: Option<Object>,
}

/// What `merge` answers: the merged object (`None` deletes it) and the fields it could not
/// merge. Where there are conflicts, `result` holds the active's value in each conflicting field.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct MergeOutput {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<Object>,
    pub conflicts: Vec<Conflict>,
}

/// A field both sides changed in ways the plugin cannot combine: `name` for the object's name,
/// `*` for the whole object (values are then whole objects). A value is `None` where absent.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Conflict {
    pub field: String,
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "present")]
    pub base: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "present")]
    pub active: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "present")]
    pub branch: Option<Value>,
}

/// A present key is `Some`, even when it holds nil.
fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(d).map(Some)
}
