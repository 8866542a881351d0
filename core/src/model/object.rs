//! Objects, their identifiers and their canonical encoding.
//!
//! The canonical encoding is MessagePack with map keys sorted bytewise at every level, so two
//! equal objects always encode, and therefore hash, to the same bytes on every node.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};
use std::fmt;

use crate::error::{Error, Result};

/// The fields of an object: a document of maps, lists, strings, integers, booleans and null.
pub type Fields = Map<String, Value>;

/// An object's unique, immutable identifier (a UUID).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Uid(pub uuid::Uuid);

impl Uid {
    /// A fresh random uid.
    pub fn new_random() -> Uid {
        Uid(uuid::Uuid::new_v4())
    }
    /// A fresh uid for a new object: a UUIDv7 (milliseconds since the Unix epoch, then 74
    /// random bits), so uids made later sort later. New objects then land together at the end
    /// of the object table instead of each on its own random page, which keeps the pages a
    /// publish rewrites (and fsyncs) few.
    pub fn new_ordered() -> Uid {
        let millis = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        let random = uuid::Uuid::new_v4().into_bytes();
        let mut tail = [0u8; 10];
        tail.copy_from_slice(&random[..10]);
        Uid(uuid::Builder::from_unix_timestamp_millis(millis, &tail).into_uuid())
    }
    /// The 16 bytes used as a storage key.
    pub fn as_bytes(&self) -> &[u8; 16] {
        self.0.as_bytes()
    }
    /// The uid stored under a 16-byte key.
    pub fn from_slice(bytes: &[u8]) -> Result<Uid> {
        uuid::Uuid::from_slice(bytes).map(Uid).map_err(|_| Error::Corrupt(format!("uid of {} bytes", bytes.len())))
    }
    /// Parses the hyphenated text form; `None` when `s` is not a uid.
    pub fn parse(s: &str) -> Option<Uid> {
        uuid::Uuid::try_parse(s).ok().map(Uid)
    }
}

impl fmt::Display for Uid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0.hyphenated())
    }
}

impl fmt::Debug for Uid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self}")
    }
}

/// A 32-byte blake3 digest: object hashes, revision ids and state hashes.
/// Hex in human-readable formats (JSON), raw bytes in MessagePack.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Hash(pub [u8; 32]);

impl Hash {
    pub const ZERO: Hash = Hash([0; 32]);

    pub fn of(bytes: &[u8]) -> Hash {
        Hash(*blake3::hash(bytes).as_bytes())
    }
    pub fn to_hex(&self) -> String {
        let mut s = String::with_capacity(64);
        for b in self.0 {
            s.push_str(&format!("{b:02x}"));
        }
        s
    }
    pub fn from_hex(s: &str) -> Option<Hash> {
        // Hex digits only: `from_str_radix` alone would also take a sign ("+f").
        if s.len() != 64 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        let mut out = [0u8; 32];
        for (i, byte) in out.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).ok()?;
        }
        Some(Hash(out))
    }
    /// The first 12 hex digits, for humans.
    pub fn short(&self) -> String {
        self.to_hex()[..12].to_string()
    }
}

impl fmt::Display for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Hash({})", self.short())
    }
}

impl Serialize for Hash {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            s.serialize_str(&self.to_hex())
        } else {
            s.serialize_bytes(&self.0)
        }
    }
}

impl<'de> Deserialize<'de> for Hash {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Hash, D::Error> {
        use serde::de::Error as _;
        if d.is_human_readable() {
            let s = String::deserialize(d)?;
            Hash::from_hex(&s).ok_or_else(|| D::Error::custom("expected 64 hex digits"))
        } else {
            let b: serde_bytes_compat::Bytes = Deserialize::deserialize(d)?;
            let arr: [u8; 32] = b.0.try_into().map_err(|_| D::Error::custom("expected 32 bytes"))?;
            Ok(Hash(arr))
        }
    }
}

mod serde_bytes_compat {
    //! Accepts MessagePack bin (and, leniently, an array of integers) as a byte vector.
    use serde::de::{Deserializer, SeqAccess, Visitor};
    use std::fmt;

    pub struct Bytes(pub Vec<u8>);

    impl<'de> serde::Deserialize<'de> for Bytes {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Bytes, D::Error> {
            struct V;
            impl<'de> Visitor<'de> for V {
                type Value = Bytes;
                fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                    f.write_str("bytes")
                }
                fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<Bytes, E> {
                    Ok(Bytes(v.to_vec()))
                }
                fn visit_byte_buf<E: serde::de::Error>(self, v: Vec<u8>) -> Result<Bytes, E> {
                    Ok(Bytes(v))
                }
                fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Bytes, A::Error> {
                    let mut out = Vec::new();
                    while let Some(b) = seq.next_element::<u8>()? {
                        out.push(b);
                    }
                    Ok(Bytes(out))
                }
            }
            d.deserialize_bytes(V)
        }
    }
}

/// One configuration object.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Object {
    #[serde(rename = "type")]
    pub type_name: String,
    pub uid: Uid,
    pub name: String,
    #[serde(default)]
    pub fields: Fields,
}

impl fmt::Debug for Object {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} '{}' ({}) {}", self.type_name, self.name, self.uid, Value::Object(self.fields.clone()))
    }
}

impl Object {
    /// The canonical MessagePack encoding (sorted keys at every level).
    pub fn encode(&self) -> Vec<u8> {
        let mut buf = Vec::with_capacity(64 + self.fields.len() * 24);
        self.encode_into(&mut buf);
        buf
    }

    /// Appends the canonical encoding to `buf`.
    pub fn encode_into(&self, buf: &mut Vec<u8>) {
        encode_parts(buf, &self.type_name, &self.uid, &self.name, &self.fields);
    }

    /// The length of the canonical encoding of an object with these parts, without building
    /// the object (a staged put is weighed before it has a uid: every uid encodes alike).
    pub fn encoded_len(type_name: &str, name: &str, fields: &Fields) -> usize {
        let mut buf = Vec::with_capacity(64 + fields.len() * 24);
        encode_parts(&mut buf, type_name, &Uid(uuid::Uuid::nil()), name, fields);
        buf.len()
    }

    /// Decodes a canonical (or any MessagePack) encoding of an object.
    pub fn decode(bytes: &[u8]) -> Result<Object> {
        rmp_serde::from_slice(bytes).map_err(|e| Error::Corrupt(format!("object encoding: {e}")))
    }

    /// blake3 of the canonical encoding.
    pub fn hash(&self) -> Hash {
        Hash::of(&self.encode())
    }

    /// The object as JSON, as the admin API and CLI show it.
    pub fn to_json(&self) -> Value {
        serde_json::json!({
            "type": self.type_name,
            "uid": self.uid.to_string(),
            "name": self.name,
            "fields": Value::Object(self.fields.clone()),
        })
    }
}

fn encode_parts(buf: &mut Vec<u8>, type_name: &str, uid: &Uid, name: &str, fields: &Fields) {
    // Keys in bytewise order: fields < name < type < uid.
    write_map_len(buf, 4);
    write_str(buf, "fields");
    write_map(buf, fields);
    write_str(buf, "name");
    write_str(buf, name);
    write_str(buf, "type");
    write_str(buf, type_name);
    write_str(buf, "uid");
    write_bin(buf, uid.as_bytes());
}

/// Appends the canonical encoding of any document value.
pub fn encode_value(buf: &mut Vec<u8>, v: &Value) {
    match v {
        Value::Null => buf.push(0xc0),
        Value::Bool(b) => buf.push(if *b { 0xc3 } else { 0xc2 }),
        Value::Number(n) => {
            if let Some(u) = n.as_u64() {
                // Infallible: writing to a Vec cannot fail.
                let _ = rmp::encode::write_uint(buf, u);
            } else if let Some(i) = n.as_i64() {
                let _ = rmp::encode::write_sint(buf, i);
            } else {
                let _ = rmp::encode::write_f64(buf, n.as_f64().unwrap_or(0.0));
            }
        }
        Value::String(s) => write_str(buf, s),
        Value::Array(items) => {
            let _ = rmp::encode::write_array_len(buf, items.len() as u32);
            for item in items {
                encode_value(buf, item);
            }
        }
        Value::Object(map) => write_map(buf, map),
    }
}

fn write_map(buf: &mut Vec<u8>, map: &Map<String, Value>) {
    write_map_len(buf, map.len());
    let mut entries: Vec<(&String, &Value)> = map.iter().collect();
    // serde_json's map is already sorted unless `preserve_order` is enabled somewhere in the
    // build; sort anyway so the encoding never depends on a feature flag.
    if !entries.windows(2).all(|w| w[0].0 <= w[1].0) {
        entries.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    }
    for (k, v) in entries {
        write_str(buf, k);
        encode_value(buf, v);
    }
}

fn write_map_len(buf: &mut Vec<u8>, len: usize) {
    let _ = rmp::encode::write_map_len(buf, len as u32);
}

fn write_str(buf: &mut Vec<u8>, s: &str) {
    let _ = rmp::encode::write_str(buf, s);
}

fn write_bin(buf: &mut Vec<u8>, b: &[u8]) {
    let _ = rmp::encode::write_bin(buf, b);
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(fields: Value) -> Object {
        let Value::Object(fields) = fields else { panic!("fields must be a map") };
        Object { type_name: "host".into(), uid: Uid::new_random(), name: "h".into(), fields }
    }

    #[test]
    fn canonical_encoding_round_trips() {
        let o = obj(json!({"ipv4-address": "10.0.0.1", "tags": ["a", "b"], "n": -3, "m": {"z": null, "a": true}}));
        let back = Object::decode(&o.encode()).expect("decodes");
        assert_eq!(back, o);
        assert_eq!(back.encode(), o.encode());
    }

    #[test]
    fn ordered_uids_sort_by_creation_time() {
        let first = Uid::new_ordered();
        std::thread::sleep(std::time::Duration::from_millis(2));
        let second = Uid::new_ordered();
        assert!(first < second, "{first} then {second}");
        assert_eq!(second.0.get_version(), Some(uuid::Version::SortRand));
        assert_ne!(Uid::new_ordered(), Uid::new_ordered());
    }

    #[test]
    fn hash_hex_round_trips() {
        let h = Hash::of(b"abc");
        assert_eq!(Hash::from_hex(&h.to_hex()), Some(h));
        assert_eq!(Hash::from_hex("zz"), None);
        let signed = Hash([0; 32]).to_hex().replacen('0', "+", 1);
        assert_eq!(Hash::from_hex(&signed), None, "a sign is no hex digit: {signed}");
    }

    #[test]
    fn encoded_len_is_the_length_of_the_encoding() {
        let o = obj(json!({"ipv4-address": "10.0.0.1", "comments": "x".repeat(300)}));
        assert_eq!(Object::encoded_len(&o.type_name, &o.name, &o.fields), o.encode().len());
    }
}
