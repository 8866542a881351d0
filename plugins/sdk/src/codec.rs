//! The MessagePack the ABI speaks, written by hand for the few shapes that cross it: objects and
//! merge inputs in, answers out, and any document (a [`Value`]) inside them. A generic serde
//! codec spends most of a small call in its visitors; this reads and writes the bytes directly.
//!
//! Decoding accepts what the host sends (canonical maps, but any key order is read) and treats
//! anything else as a bug of the host: the caller traps. Encoding writes maps with named keys,
//! integers in their smallest form, and map keys in the order of [`Fields`] (sorted).

use serde_json::{Map, Number, Value};

use crate::types::{Conflict, FieldError, Fields, MergeInput, MergeOutput, Object, ValidateOutput};

/// Deepest document the decoder follows; the host sends at most 32 levels inside an object.
const DEPTH_MAX: usize = 64;

/// Why an input could not be read.
pub type Error = &'static str;

/// A cursor over an input buffer.
pub struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    pub fn new(bytes: &'a [u8]) -> Reader<'a> {
        Reader { bytes, at: 0 }
    }

    /// Whether every byte was read.
    pub fn finished(&self) -> bool {
        self.at == self.bytes.len()
    }

    fn byte(&mut self) -> Result<u8, Error> {
        let b = *self.bytes.get(self.at).ok_or("truncated input")?;
        self.at += 1;
        Ok(b)
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], Error> {
        let end = self.at.checked_add(n).ok_or("truncated input")?;
        let s = self.bytes.get(self.at..end).ok_or("truncated input")?;
        self.at = end;
        Ok(s)
    }

    fn be<const N: usize>(&mut self) -> Result<[u8; N], Error> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    fn len(&mut self, width: u8) -> Result<usize, Error> {
        Ok(match width {
            1 => self.byte()? as usize,
            2 => u16::from_be_bytes(self.be()?) as usize,
            _ => u32::from_be_bytes(self.be()?) as usize,
        })
    }

    /// The length of a map.
    pub fn map_len(&mut self) -> Result<usize, Error> {
        match self.byte()? {
            b @ 0x80..=0x8f => Ok((b & 0x0f) as usize),
            0xde => self.len(2),
            0xdf => self.len(4),
            _ => Err("expected a map"),
        }
    }

    /// A string, borrowed from the input.
    #[inline(always)]
    pub fn str(&mut self) -> Result<&'a str, Error> {
        utf8(self.str_bytes()?)
    }

    /// A string's bytes, unchecked: enough to compare them with a known key.
    #[inline(always)]
    fn str_bytes(&mut self) -> Result<&'a [u8], Error> {
        let len = match self.byte()? {
            b @ 0xa0..=0xbf => (b & 0x1f) as usize,
            0xd9 => self.len(1)?,
            0xda => self.len(2)?,
            0xdb => self.len(4)?,
            _ => return Err("expected a string"),
        };
        self.take(len)
    }

    /// `nil` is consumed and answers true; anything else is left in place.
    pub fn nil(&mut self) -> bool {
        if self.bytes.get(self.at) == Some(&0xc0) {
            self.at += 1;
            return true;
        }
        false
    }

    /// Any value, as a document.
    pub fn value(&mut self) -> Result<Value, Error> {
        self.value_at(0)
    }

    fn value_at(&mut self, depth: usize) -> Result<Value, Error> {
        if depth > DEPTH_MAX {
            return Err("nested too deep");
        }
        let b = self.byte()?;
        let int = |n: i64| Value::Number(Number::from(n));
        Ok(match b {
            0x00..=0x7f => int(b as i64),
            0xe0..=0xff => int(b as i8 as i64),
            0xc0 => Value::Null,
            0xc2 => Value::Bool(false),
            0xc3 => Value::Bool(true),
            0xcc => int(self.byte()? as i64),
            0xcd => int(u16::from_be_bytes(self.be()?) as i64),
            0xce => int(u32::from_be_bytes(self.be()?) as i64),
            0xcf => Value::Number(Number::from(u64::from_be_bytes(self.be()?))),
            0xd0 => int(self.byte()? as i8 as i64),
            0xd1 => int(i16::from_be_bytes(self.be()?) as i64),
            0xd2 => int(i32::from_be_bytes(self.be()?) as i64),
            0xd3 => int(i64::from_be_bytes(self.be()?)),
            0xca => float(f32::from_be_bytes(self.be()?) as f64),
            0xcb => float(f64::from_be_bytes(self.be()?)),
            0xa0..=0xbf | 0xd9..=0xdb => {
                self.at -= 1;
                Value::String(self.str()?.to_owned())
            }
            0x90..=0x9f | 0xdc | 0xdd => {
                let len = match b {
                    0xdc => self.len(2)?,
                    0xdd => self.len(4)?,
                    _ => (b & 0x0f) as usize,
                };
                // Every item takes a byte at least: a length past the input is a lie.
                let mut items = Vec::with_capacity(len.min(self.bytes.len() - self.at));
                for _ in 0..len {
                    items.push(self.value_at(depth + 1)?);
                }
                Value::Array(items)
            }
            0x80..=0x8f | 0xde | 0xdf => {
                self.at -= 1;
                Value::Object(self.map_at(depth)?)
            }
            _ => return Err("binary and extension types are not documents"),
        })
    }

    /// A map of string keys to documents.
    pub fn map(&mut self) -> Result<Fields, Error> {
        self.map_at(0)
    }

    fn map_at(&mut self, depth: usize) -> Result<Map<String, Value>, Error> {
        let len = self.map_len()?;
        // The host sorts keys: collected in order, the map is built without a search per key.
        let mut entries = Vec::with_capacity(len.min(self.bytes.len() - self.at));
        for _ in 0..len {
            let key = self.str()?.to_owned();
            let value = self.value_at(depth + 1)?;
            entries.push((key, value));
        }
        Ok(entries.into_iter().collect())
    }

    /// Skips one value of any kind.
    pub fn skip(&mut self) -> Result<(), Error> {
        self.value().map(drop)
    }

    /// An object: `{fields, name, type, uid}` in any order; fields may be absent.
    pub fn object(&mut self) -> Result<Object, Error> {
        let len = self.map_len()?;
        let (mut type_name, mut uid, mut name, mut fields) = (None, None, None, Fields::new());
        for _ in 0..len {
            match self.str_bytes()? {
                b"fields" => fields = self.map()?,
                b"name" => name = Some(self.str()?.to_owned()),
                b"type" => type_name = Some(self.str()?.to_owned()),
                b"uid" => uid = Some(self.str()?.to_owned()),
                _ => self.skip()?,
            }
        }
        Ok(Object {
            type_name: type_name.ok_or("an object without a type")?,
            uid: uid.ok_or("an object without a uid")?,
            name: name.ok_or("an object without a name")?,
            fields,
        })
    }

    /// Merge's input: `{active?, base?, branch?, type}`; a nil side is an absent one.
    pub fn merge_input(&mut self) -> Result<MergeInput, Error> {
        let len = self.map_len()?;
        let mut input = MergeInput { type_name: String::new(), base: None, active: None, branch: None };
        let mut typed = false;
        for _ in 0..len {
            let key = self.str_bytes()?;
            if key == b"type" {
                input.type_name = self.str()?.to_owned();
                typed = true;
                continue;
            }
            let side = match key {
                b"active" => &mut input.active,
                b"base" => &mut input.base,
                b"branch" => &mut input.branch,
                _ => {
                    self.skip()?;
                    continue;
                }
            };
            *side = if self.nil() { None } else { Some(self.object()?) };
        }
        if !typed {
            return Err("a merge input without a type");
        }
        Ok(input)
    }
}

/// Checked UTF-8. Nearly every string an object holds is ASCII, which is checked a word at a
/// time without a loop over single bytes: `str::from_utf8` goes byte by byte once compiled to
/// wasm32, and took a fifth of a merge.
#[inline(always)]
fn utf8(bytes: &[u8]) -> Result<&str, Error> {
    if is_ascii(bytes) {
        // SAFETY: every byte is below 0x80: ASCII, which is UTF-8.
        return Ok(unsafe { std::str::from_utf8_unchecked(bytes) });
    }
    std::str::from_utf8(bytes).map_err(|_| "a string is not UTF-8")
}

#[inline(always)]
fn is_ascii(bytes: &[u8]) -> bool {
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let (n, p) = (bytes.len(), bytes.as_ptr());
    if n >= 8 {
        // SAFETY: every read lies within the slice: whole words up to n, then the last eight
        // bytes (overlapping those already read). Unaligned reads are fine on wasm32.
        unsafe {
            let mut high = p.add(n - 8).cast::<u64>().read_unaligned();
            let mut at = 0;
            while at + 8 <= n {
                high |= p.add(at).cast::<u64>().read_unaligned();
                at += 8;
            }
            return high & HIGH == 0;
        }
    }
    if n >= 4 {
        // SAFETY: the first and the last four bytes of at least four.
        let high = unsafe { p.cast::<u32>().read_unaligned() | p.add(n - 4).cast::<u32>().read_unaligned() };
        return high & 0x8080_8080 == 0;
    }
    bytes.iter().fold(0, |high, b| high | b) & 0x80 == 0
}

/// Floats cross only to be refused by the host; keep them as such.
fn float(f: f64) -> Value {
    Number::from_f64(f).map_or(Value::Null, Value::Number)
}

/// Appends MessagePack to a buffer.
pub struct Writer {
    pub buf: Vec<u8>,
}

impl Writer {
    pub fn with_capacity(capacity: usize) -> Writer {
        Writer { buf: Vec::with_capacity(capacity) }
    }

    fn head(&mut self, fix: u8, fix_max: usize, b16: u8, len: usize) {
        if len <= fix_max {
            self.buf.push(fix | len as u8);
        } else if len <= u16::MAX as usize {
            self.buf.push(b16);
            self.buf.extend_from_slice(&(len as u16).to_be_bytes());
        } else {
            self.buf.push(b16 + 1);
            self.buf.extend_from_slice(&(len as u32).to_be_bytes());
        }
    }

    pub fn map_len(&mut self, len: usize) {
        self.head(0x80, 15, 0xde, len);
    }

    pub fn array_len(&mut self, len: usize) {
        self.head(0x90, 15, 0xdc, len);
    }

    pub fn str(&mut self, s: &str) {
        let len = s.len();
        if len <= 31 {
            self.buf.push(0xa0 | len as u8);
        } else if len <= u8::MAX as usize {
            self.buf.extend_from_slice(&[0xd9, len as u8]);
        } else {
            self.head(0, 0, 0xda, len);
        }
        self.buf.extend_from_slice(s.as_bytes());
    }

    pub fn bool(&mut self, b: bool) {
        self.buf.push(if b { 0xc3 } else { 0xc2 });
    }

    pub fn nil(&mut self) {
        self.buf.push(0xc0);
    }

    fn uint(&mut self, u: u64) {
        match u {
            0..=0x7f => self.buf.push(u as u8),
            0x80..=0xff => self.buf.extend_from_slice(&[0xcc, u as u8]),
            0x100..=0xffff => {
                self.buf.push(0xcd);
                self.buf.extend_from_slice(&(u as u16).to_be_bytes());
            }
            0x1_0000..=0xffff_ffff => {
                self.buf.push(0xce);
                self.buf.extend_from_slice(&(u as u32).to_be_bytes());
            }
            _ => {
                self.buf.push(0xcf);
                self.buf.extend_from_slice(&u.to_be_bytes());
            }
        }
    }

    fn sint(&mut self, i: i64) {
        if i >= 0 {
            return self.uint(i as u64);
        }
        if i >= -32 {
            self.buf.push(i as i8 as u8);
        } else if i >= i8::MIN as i64 {
            self.buf.extend_from_slice(&[0xd0, i as i8 as u8]);
        } else if i >= i16::MIN as i64 {
            self.buf.push(0xd1);
            self.buf.extend_from_slice(&(i as i16).to_be_bytes());
        } else if i >= i32::MIN as i64 {
            self.buf.push(0xd2);
            self.buf.extend_from_slice(&(i as i32).to_be_bytes());
        } else {
            self.buf.push(0xd3);
            self.buf.extend_from_slice(&i.to_be_bytes());
        }
    }

    /// A document. Floats are written as such, and the host refuses the answer.
    pub fn value(&mut self, v: &Value) {
        match v {
            Value::Null => self.nil(),
            Value::Bool(b) => self.bool(*b),
            Value::Number(n) => match (n.as_u64(), n.as_i64()) {
                (Some(u), _) => self.uint(u),
                (None, Some(i)) => self.sint(i),
                _ => {
                    self.buf.push(0xcb);
                    self.buf.extend_from_slice(&n.as_f64().unwrap_or(0.0).to_be_bytes());
                }
            },
            Value::String(s) => self.str(s),
            Value::Array(items) => {
                self.array_len(items.len());
                for item in items {
                    self.value(item);
                }
            }
            Value::Object(map) => self.map(map),
        }
    }

    pub fn map(&mut self, map: &Map<String, Value>) {
        self.map_len(map.len());
        for (k, v) in map {
            self.str(k);
            self.value(v);
        }
    }

    pub fn object(&mut self, o: &Object) {
        self.map_len(4);
        self.str("fields");
        self.map(&o.fields);
        self.str("name");
        self.str(&o.name);
        self.str("type");
        self.str(&o.type_name);
        self.str("uid");
        self.str(&o.uid);
    }

    pub fn validate_output(&mut self, out: &ValidateOutput) {
        self.map_len(2);
        self.str("errors");
        self.array_len(out.errors.len());
        for FieldError { field, reason } in &out.errors {
            self.map_len(2);
            self.str("field");
            self.str(field);
            self.str("reason");
            self.str(reason);
        }
        self.str("ok");
        self.bool(out.ok);
    }

    pub fn merge_output(&mut self, out: &MergeOutput) {
        self.map_len(1 + usize::from(out.result.is_some()));
        self.str("conflicts");
        self.array_len(out.conflicts.len());
        for c in &out.conflicts {
            self.conflict(c);
        }
        if let Some(result) = &out.result {
            self.str("result");
            self.object(result);
        }
    }

    fn conflict(&mut self, c: &Conflict) {
        let sides = [("active", &c.active), ("base", &c.base), ("branch", &c.branch)];
        self.map_len(1 + sides.iter().filter(|(_, v)| v.is_some()).count());
        for (key, value) in sides {
            if let Some(v) = value {
                self.str(key);
                self.value(v);
            }
        }
        self.str("field");
        self.str(&c.field);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn object() -> Object {
        let Value::Object(fields) = json!({
            "a": [1, -1, -33, 200, 70000, -70000, 5_000_000_000u64, u64::MAX, i64::MIN],
            "b": {"x": null, "y": true, "z": false},
            "long": "x".repeat(300),
            "mid": "y".repeat(40),
        }) else {
            unreachable!()
        };
        Object { type_name: "t.t".into(), uid: "u".into(), name: "n".into(), fields }
    }

    #[test]
    fn objects_round_trip_and_match_rmp_serde() {
        let o = object();
        let mut w = Writer::with_capacity(0);
        w.object(&o);
        let back = Reader::new(&w.buf).object().expect("decodes");
        assert_eq!(back, o);
        let theirs: Object = rmp_serde::from_slice(&w.buf).expect("rmp_serde reads it");
        assert_eq!(theirs, o);
        // Canonical: the same bytes as rmp_serde writes a sorted map.
        let canonical = rmp_serde::to_vec_named(&json!({
            "fields": Value::Object(o.fields.clone()), "name": "n", "type": "t.t", "uid": "u"
        }))
        .expect("encodes");
        assert_eq!(w.buf, canonical);
    }

    #[test]
    fn merge_inputs_leave_absent_sides_out() {
        let o = object();
        let bytes = rmp_serde::to_vec_named(&json!({"active": o, "branch": null, "type": "t.t"})).expect("encodes");
        let input = Reader::new(&bytes).merge_input().expect("decodes");
        assert_eq!((input.active, input.base, input.branch), (Some(o), None, None));
    }

    #[test]
    fn answers_decode_as_serde_would() {
        let out = MergeOutput {
            result: Some(object()),
            conflicts: vec![Conflict {
                field: "f".into(),
                base: Some(Value::Null),
                active: None,
                branch: Some(json!(1)),
            }],
        };
        let mut w = Writer::with_capacity(0);
        w.merge_output(&out);
        let theirs: MergeOutput = rmp_serde::from_slice(&w.buf).expect("decodes");
        assert_eq!(theirs, out);
        let ok = ValidateOutput { ok: false, errors: vec![FieldError::new("f", "bad")] };
        let mut w = Writer::with_capacity(0);
        w.validate_output(&ok);
        assert_eq!(rmp_serde::from_slice::<ValidateOutput>(&w.buf).expect("decodes"), ok);
    }

    #[test]
    fn truncated_or_foreign_input_is_an_error() {
        let mut w = Writer::with_capacity(0);
        w.object(&object());
        let cut = &w.buf[..w.buf.len() - 1];
        assert!(Reader::new(cut).object().is_err());
        assert!(Reader::new(&[0xc4, 1, 0]).value().is_err(), "binary");
        assert!(Reader::new(&[0x91; 100]).value().is_err(), "too deep");
        assert!(Reader::new(&[0xa2, 0xc3, 0x28]).str().is_err(), "not UTF-8");
        for text in ["ascii, then ünïcödé, then ascii again", "", "é", "abc", "abcdefé", "abcdefgh", "aaaaaaaaé"]
        {
            let mut w = Writer::with_capacity(0);
            w.str(text);
            assert_eq!(Reader::new(&w.buf).str(), Ok(text));
        }
        for (bytes, ascii) in
            [(&b"abcdefgh\x80"[..], false), (b"\x80bcdefghi", false), (b"abcd\xff", false), (b"ab", true)]
        {
            assert_eq!(is_ascii(bytes), ascii, "{bytes:?}");
        }
    }
}
