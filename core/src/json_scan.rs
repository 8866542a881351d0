//! A first pass over JSON input before it is parsed into changes: it refuses a key that appears
//! twice in one object (serde_json would silently keep the last value, so `{"port": "443",
//! "port": "22"}` would store what the writer may not have meant), and it counts the changes of
//! a changeset as they stream past, stopping at the limit, so that a changeset of a million
//! changes is refused before a single change is built. It allocates nothing but the keys of the
//! object it is in (borrowed from the input when they hold no escapes).

use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use std::borrow::Cow;
use std::cell::Cell;
use std::collections::HashSet;
use std::fmt;

use crate::error::{Error, Result};
use crate::limits::CHANGESET_CHANGES_MAX;

/// Scans a JSON changeset: no duplicate key anywhere, at most [`CHANGESET_CHANGES_MAX`]
/// changes (`TooMany` as soon as one more is seen).
pub fn scan_changeset(bytes: &[u8]) -> Result<()> {
    scan(bytes, Role::Top)
}

/// Scans one JSON document (a change, an object): no duplicate key anywhere.
pub fn scan_document(bytes: &[u8]) -> Result<()> {
    scan(bytes, Role::Any)
}

fn scan(bytes: &[u8], role: Role) -> Result<()> {
    let over = Cell::new(false);
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let outcome = Scan { role, over: &over }.deserialize(&mut de).and_then(|()| de.end());
    match outcome {
        Ok(()) => Ok(()),
        Err(_) if over.get() => Err(Error::TooMany {
            what: "changes in one changeset".into(),
            count: CHANGESET_CHANGES_MAX + 1,
            max: CHANGESET_CHANGES_MAX,
        }),
        Err(e) => Err(Error::InvalidChangeset(e.to_string())),
    }
}

/// Where in a changeset a value sits: the top-level object, its `changes` list, or anywhere else.
#[derive(Clone, Copy)]
enum Role {
    Top,
    Changes,
    Any,
}

#[derive(Clone, Copy)]
struct Scan<'a> {
    role: Role,
    /// Set when the change limit stopped the scan, so the error becomes `TooMany`.
    over: &'a Cell<bool>,
}

impl<'de> DeserializeSeed<'de> for Scan<'_> {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> std::result::Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Scan<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> std::result::Result<(), E> {
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> std::result::Result<(), E> {
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> std::result::Result<(), E> {
        Ok(())
    }
    fn visit_f64<E>(self, _: f64) -> std::result::Result<(), E> {
        Ok(())
    }
    fn visit_str<E>(self, _: &str) -> std::result::Result<(), E> {
        Ok(())
    }
    fn visit_unit<E>(self) -> std::result::Result<(), E> {
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> std::result::Result<(), A::Error> {
        let item = Scan { role: Role::Any, over: self.over };
        let mut count = 0usize;
        while seq.next_element_seed(item)?.is_some() {
            count += 1;
            if matches!(self.role, Role::Changes) && count > CHANGESET_CHANGES_MAX {
                self.over.set(true);
                return Err(de::Error::custom("too many changes"));
            }
        }
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> std::result::Result<(), A::Error> {
        let mut seen: HashSet<Cow<'de, str>> = HashSet::new();
        while let Some(key) = map.next_key_seed(Key)? {
            let role = match (self.role, key.as_ref()) {
                (Role::Top, "changes") => Role::Changes,
                _ => Role::Any,
            };
            if seen.contains(&key) {
                return Err(de::Error::custom(format!("duplicate key '{key}'")));
            }
            map.next_value_seed(Scan { role, over: self.over })?;
            seen.insert(key);
        }
        Ok(())
    }
}

/// A map key, borrowed from the input when it can be.
struct Key;

impl<'de> DeserializeSeed<'de> for Key {
    type Value = Cow<'de, str>;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> std::result::Result<Cow<'de, str>, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for Key {
    type Value = Cow<'de, str>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a key")
    }

    fn visit_borrowed_str<E>(self, s: &'de str) -> std::result::Result<Cow<'de, str>, E> {
        Ok(Cow::Borrowed(s))
    }

    fn visit_str<E>(self, s: &str) -> std::result::Result<Cow<'de, str>, E> {
        Ok(Cow::Owned(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_duplicate_key_anywhere_is_refused_naming_it() {
        let e = scan_changeset(
            br#"{"changes": [{"op": "put", "type": "service-tcp", "name": "s", "fields": {"port": "443", "port": "22"}}]}"#,
        )
        .expect_err("duplicate inside fields");
        assert_eq!(e.code(), crate::ErrorCode::InvalidArgument, "{e}");
        assert!(e.to_string().contains("duplicate key 'port'") && e.to_string().contains("column"), "{e}");
        assert!(
            scan_document(br#"{"a": {"b": [{"c": 1, "\u0063": 2}]}}"#).is_err(),
            "an escaped spelling is the same key"
        );
        assert!(scan_document(br#"{"a": 1, "b": {"a": 1}}"#).is_ok(), "the same key in two objects is fine");
    }

    #[test]
    fn the_change_count_stops_the_scan_at_the_limit() {
        let change = r#"{"op":"delete","type":"host","name":"h"},"#;
        let mut text = String::from(r#"{"changes": ["#);
        text.push_str(&change.repeat(CHANGESET_CHANGES_MAX));
        text.push_str(r#"{"op":"delete","type":"host","name":"h"}]}"#);
        let e = scan_changeset(text.as_bytes()).expect_err("one over");
        assert_eq!(e.code(), crate::ErrorCode::TooLarge, "{e}");
        let at_limit = text.replacen(change, "", 1);
        scan_changeset(at_limit.as_bytes()).expect("exactly the limit");
    }
}
