//! The plugin ABI's names and MessagePack encodings (docs/plugin-abi.md is the contract): what
//! the host sends to `mgha_describe`, `mgha_validate` and `mgha_merge`, and how it reads and
//! checks what they answer.
//!
//! Inputs are encoded canonically (maps with keys sorted bytewise, smallest integer forms), so a
//! plugin sees the same bytes on every node. Answers are decoded leniently in form (any key
//! order, compact or named structs) but strictly in content: a float anywhere, a result for
//! another object or a conflict listed twice makes the answer malformed.

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

use super::msgpack::{self, map_len, str};
use crate::limits::FIELD_DEPTH_MAX;
use crate::model::{Fields, Object, TypeSchema, Uid};

/// The ABI version this host speaks; `mgha_abi_version` must return it.
pub const ABI_VERSION: i32 = 1;
/// The only module plugins may import from.
pub const HOST_NAMESPACE: &str = "mgha_host_v1";

/// The exports the host calls.
pub mod export {
    pub const MEMORY: &str = "memory";
    pub const ABI_VERSION: &str = "mgha_abi_version";
    pub const ALLOC: &str = "mgha_alloc";
    pub const FREE: &str = "mgha_free";
    pub const DESCRIBE: &str = "mgha_describe";
    pub const VALIDATE: &str = "mgha_validate";
    pub const MERGE: &str = "mgha_merge";
}

/// What `mgha_describe` answers: the plugin, its types and which of them merge by the plugin.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Description {
    pub name: String,
    pub version: String,
    pub types: Vec<TypeSchema>,
    /// Types whose three-way merge `mgha_merge` performs; the others merge field by field.
    #[serde(default)]
    pub merge: Vec<String>,
}

/// An object as it crosses the ABI: the uid is text, so any language reads it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AbiObject {
    #[serde(rename = "type")]
    pub type_name: String,
    pub uid: String,
    pub name: String,
    #[serde(default)]
    pub fields: Fields,
}

/// What `mgha_validate` answers.
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct ValidateOutput {
    pub ok: bool,
    #[serde(default)]
    pub errors: Vec<FieldError>,
}

/// One reason an object is invalid; an empty `field` is about the object as a whole.
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct FieldError {
    #[serde(default)]
    pub field: String,
    pub reason: String,
}

/// What `mgha_merge` answers. No `result` (or nil) deletes the object.
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct MergeOutput {
    #[serde(default)]
    pub result: Option<AbiObject>,
    #[serde(default)]
    pub conflicts: Vec<AbiConflict>,
}

/// A field the plugin could not merge; a value is absent where the field is absent on that side.
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct AbiConflict {
    pub field: String,
    #[serde(default, deserialize_with = "present")]
    pub base: Option<Value>,
    #[serde(default, deserialize_with = "present")]
    pub active: Option<Value>,
    #[serde(default, deserialize_with = "present")]
    pub branch: Option<Value>,
}

/// A key that is present is `Some`, even when it holds nil: nil is a value, absence is not.
fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(d).map(Some)
}

/// Encodes an object canonically, as validate's input and inside merge's.
pub fn encode_object(buf: &mut Vec<u8>, o: &Object) {
    // Keys in bytewise order: fields < name < type < uid.
    map_len(buf, 4);
    str(buf, "fields");
    msgpack::map(buf, &o.fields);
    str(buf, "name");
    str(buf, &o.name);
    str(buf, "type");
    str(buf, &o.type_name);
    str(buf, "uid");
    // Hyphenated text, formatted on the stack: this runs for every object a plugin sees.
    let mut text = [0u8; uuid::fmt::Hyphenated::LENGTH];
    str(buf, o.uid.0.hyphenated().encode_lower(&mut text));
}

/// Encodes merge's input: `{active?, base?, branch?, type}`, absent sides left out.
pub fn encode_merge_input(
    buf: &mut Vec<u8>,
    type_name: &str,
    base: Option<&Object>,
    active: Option<&Object>,
    branch: Option<&Object>,
) {
    let sides = [("active", active), ("base", base), ("branch", branch)];
    map_len(buf, 1 + sides.iter().filter(|(_, o)| o.is_some()).count());
    for (key, side) in sides {
        if let Some(o) = side {
            str(buf, key);
            encode_object(buf, o);
        }
    }
    str(buf, "type");
    str(buf, type_name);
}

/// Decodes an answer; the error says what is wrong with it.
pub fn decode<'a, T: Deserialize<'a>>(bytes: &'a [u8]) -> Result<T, String> {
    rmp_serde::from_slice(bytes).map_err(|e| format!("malformed answer: {e}"))
}

/// Decodes merge's answer: by hand when it has the usual shape, else as [`decode`] does.
pub fn decode_merge_output(bytes: &[u8]) -> Result<MergeOutput, String> {
    msgpack::merge_output(bytes).map_or_else(|| decode(bytes), Ok)
}

/// Decodes validate's answer: by hand when it has the usual shape, else as [`decode`] does.
pub fn decode_validate_output(bytes: &[u8]) -> Result<ValidateOutput, String> {
    msgpack::validate_output(bytes).map_or_else(|| decode(bytes), Ok)
}

impl AbiObject {
    /// Turns a plugin's object back into an engine object, which must be the object the host
    /// asked about (same type and uid).
    pub fn into_object(self, type_name: &str, uid: Uid) -> Result<Object, String> {
        if self.type_name != type_name {
            return Err(format!("malformed answer: result has type '{}', not '{type_name}'", self.type_name));
        }
        if Uid::parse(&self.uid) != Some(uid) {
            return Err(format!("malformed answer: result has uid '{}', not {uid}", self.uid));
        }
        for (k, v) in &self.fields {
            check_document(v, 0).map_err(|e| format!("malformed answer: field '{k}': {e}"))?;
        }
        Ok(Object { type_name: self.type_name, uid, name: self.name, fields: self.fields })
    }
}

/// Documents hold maps, lists, strings, integers, booleans and null: no floats (their bits are
/// where hardware differs), and no deeper than objects may be.
pub fn check_document(v: &Value, depth: usize) -> Result<(), String> {
    if depth > FIELD_DEPTH_MAX {
        return Err(format!("nested deeper than {FIELD_DEPTH_MAX} levels"));
    }
    match v {
        Value::Number(n) if n.is_f64() => Err("holds a float; documents hold integers only".into()),
        Value::Array(items) => items.iter().try_for_each(|i| check_document(i, depth + 1)),
        Value::Object(map) => map.values().try_for_each(|i| check_document(i, depth + 1)),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn object(fields: Value) -> Object {
        let Value::Object(fields) = fields else { panic!("a map") };
        Object { type_name: "x.t".into(), uid: Uid(uuid::Uuid::from_u128(7)), name: "n".into(), fields }
    }

    #[test]
    fn objects_cross_as_maps_with_text_uids() {
        let o = object(json!({"b": [1, "x"], "a": {"z": null, "y": true}}));
        let mut buf = Vec::new();
        encode_object(&mut buf, &o);
        let back: AbiObject = decode(&buf).expect("decodes");
        assert_eq!(back.uid, o.uid.to_string());
        assert_eq!(back.into_object("x.t", o.uid).expect("same object"), o);
    }

    #[test]
    fn merge_input_leaves_absent_sides_out() {
        let o = object(json!({}));
        let mut buf = Vec::new();
        encode_merge_input(&mut buf, "x.t", None, Some(&o), Some(&o));
        let v: Value = rmp_serde::from_slice(&buf).expect("decodes");
        let keys: Vec<&String> = v.as_object().expect("map").keys().collect();
        assert_eq!(keys, ["active", "branch", "type"]);
    }

    #[test]
    fn answers_with_floats_or_another_object_are_malformed() {
        let o = object(json!({}));
        let float = AbiObject { fields: object(json!({"x": 1.5})).fields, ..AbiObject::from_object(&o) };
        assert!(float.into_object("x.t", o.uid).expect_err("float").contains("float"));
        let other = AbiObject { uid: Uid::new_random().to_string(), ..AbiObject::from_object(&o) };
        assert!(other.into_object("x.t", o.uid).expect_err("uid").contains("uid"));
    }

    #[test]
    fn a_present_nil_differs_from_an_absent_value() {
        let bytes = rmp_serde::to_vec_named(&json!({"conflicts": [{"field": "f", "base": null}]})).expect("encodes");
        let out: MergeOutput = decode(&bytes).expect("decodes");
        assert_eq!(out.conflicts[0].base, Some(Value::Null));
        assert_eq!(out.conflicts[0].active, None);
        assert_eq!(out.result, None);
    }

    impl AbiObject {
        fn from_object(o: &Object) -> AbiObject {
            AbiObject {
                type_name: o.type_name.clone(),
                uid: o.uid.to_string(),
                name: o.name.clone(),
                fields: o.fields.clone(),
            }
        }
    }
}
