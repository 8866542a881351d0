//! The `plugin` object: how a module travels with the replicated configuration. A plugin is an
//! object of the built-in type `plugin`, named after the plugin, whose fields carry the module
//! (base64, since object fields are documents and have no bytes), its blake3 hash, its version
//! and the types it declares. Installing publishes it in a revision; every node that applies the
//! revision decodes the same bytes, checks their hash and loads them.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use serde_json::Value;

use super::abi::Description;
use crate::model::{FieldKind, FieldSpec, Fields, Hash, MergeStrategy, Object, TypeSchema};

/// The built-in type of plugin objects.
pub const PLUGIN_TYPE: &str = "plugin";
/// The module, base64 (standard alphabet, padded).
pub const WASM_FIELD: &str = "wasm";
/// blake3 of the module bytes, 64 hex digits.
pub const HASH_FIELD: &str = "hash";
/// The version the plugin declares.
pub const VERSION_FIELD: &str = "version";
/// The names of the types the plugin declares, sorted.
pub const TYPES_FIELD: &str = "types";

/// The schema of the `plugin` type. Its fields are checked beyond the schema when committed
/// (see [`super::registry::PluginRegistry::check_commit`]): they must be exactly what the module
/// declares.
pub fn plugin_schema() -> TypeSchema {
    let field = |name: &str, kind: FieldKind| FieldSpec {
        name: name.into(),
        kind,
        required: true,
        merge: MergeStrategy::Replace,
    };
    TypeSchema {
        name: PLUGIN_TYPE.into(),
        fields: vec![
            field(WASM_FIELD, FieldKind::String),
            field(HASH_FIELD, FieldKind::String),
            field(VERSION_FIELD, FieldKind::String),
            field(TYPES_FIELD, FieldKind::List { item: Box::new(FieldKind::String) }),
            FieldSpec { required: false, ..field("comments", FieldKind::String) },
        ],
        constraints: vec![],
    }
}

/// The fields of the object that installs `wasm`, which declared `d`.
pub fn object_fields(wasm: &[u8], d: &Description) -> Fields {
    let mut fields = Fields::new();
    fields.insert(WASM_FIELD.into(), Value::String(BASE64.encode(wasm)));
    fields.insert(HASH_FIELD.into(), Value::String(Hash::of(wasm).to_hex()));
    fields.insert(VERSION_FIELD.into(), Value::String(d.version.clone()));
    fields.insert(TYPES_FIELD.into(), type_names(d).into_iter().map(Value::String).collect());
    fields
}

/// The declared type names, sorted, as the `types` field holds them.
pub fn type_names(d: &Description) -> Vec<String> {
    let mut names: Vec<String> = d.types.iter().map(|t| t.name.clone()).collect();
    names.sort();
    names
}

fn text<'a>(o: &'a Object, field: &str) -> Result<&'a str, String> {
    o.fields.get(field).and_then(Value::as_str).ok_or_else(|| format!("field '{field}' is not a string"))
}

/// The module bytes of a plugin object, checked against its `hash` field.
pub fn wasm(o: &Object) -> Result<Vec<u8>, String> {
    let bytes = BASE64.decode(text(o, WASM_FIELD)?).map_err(|e| format!("field '{WASM_FIELD}' is not base64: {e}"))?;
    let hash = Hash::of(&bytes).to_hex();
    if hash != text(o, HASH_FIELD)? {
        return Err(format!("field '{HASH_FIELD}' does not match the module, whose blake3 is {hash}"));
    }
    Ok(bytes)
}

/// The `hash` field: the module's blake3, or `None` when missing or not hex.
pub fn hash(o: &Object) -> Option<Hash> {
    o.fields.get(HASH_FIELD).and_then(Value::as_str).and_then(Hash::from_hex)
}

/// The `version` field, or "" when missing.
pub fn version(o: &Object) -> String {
    o.fields.get(VERSION_FIELD).and_then(Value::as_str).unwrap_or_default().to_string()
}

/// The `types` field: the types this plugin object claims (those the store knows it by).
pub fn declared_types(o: &Object) -> Vec<String> {
    match o.fields.get(TYPES_FIELD) {
        Some(Value::Array(items)) => items.iter().filter_map(Value::as_str).map(str::to_string).collect(),
        _ => Vec::new(),
    }
}

/// Checks that a plugin object says what its module declares: its name, version and types.
pub fn matches(o: &Object, d: &Description) -> Result<(), String> {
    if o.name != d.name {
        return Err(format!("the object is named '{}' but the module declares plugin '{}'", o.name, d.name));
    }
    let version = text(o, VERSION_FIELD)?;
    if version != d.version {
        return Err(format!("field '{VERSION_FIELD}' is '{version}' but the module declares '{}'", d.version));
    }
    if declared_types(o) != type_names(d) {
        return Err(format!(
            "field '{TYPES_FIELD}' lists {:?} but the module declares {:?}",
            declared_types(o),
            type_names(d)
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Uid;

    fn description() -> Description {
        let t = |n: &str| TypeSchema { name: n.into(), fields: vec![], constraints: vec![] };
        Description { name: "vpn".into(), version: "1.2".into(), types: vec![t("vpn.b"), t("vpn.a")], merge: vec![] }
    }

    #[test]
    fn a_plugin_object_carries_its_module_and_what_it_declares() {
        let wasm = b"\0asm\x01\0\0\0".to_vec();
        let d = description();
        let o = Object {
            type_name: PLUGIN_TYPE.into(),
            uid: Uid::new_random(),
            name: "vpn".into(),
            fields: object_fields(&wasm, &d),
        };
        assert_eq!(super::wasm(&o).expect("decodes"), wasm);
        assert_eq!(hash(&o), Some(Hash::of(&wasm)));
        assert_eq!(declared_types(&o), ["vpn.a", "vpn.b"]);
        assert!(matches(&o, &d).is_ok());
        crate::model::validate::validate_fields(&plugin_schema(), "vpn", &o.fields).expect("fits its schema");
    }

    #[test]
    fn a_tampered_plugin_object_is_refused() {
        let d = description();
        let mut o = Object {
            type_name: PLUGIN_TYPE.into(),
            uid: Uid::new_random(),
            name: "vpn".into(),
            fields: object_fields(b"\0asm\x01\0\0\0", &d),
        };
        o.fields.insert(WASM_FIELD.into(), Value::String(BASE64.encode(b"\0asm\x01\0\0\0\0")));
        assert!(wasm(&o).expect_err("hash").contains("blake3"));
        o.name = "other".into();
        assert!(matches(&o, &d).is_err());
    }
}
