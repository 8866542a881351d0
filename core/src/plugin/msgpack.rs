//! MessagePack for the plugin ABI, written by hand for speed: the canonical encoding of what the
//! host sends (byte for byte what `model::object::encode_value` writes, without its `io::Write`
//! plumbing and per-map allocations), and a reader of answers in their usual shape.
//!
//! The reader is a fast path only. It accepts answers that are maps with string keys holding
//! documents, and gives up (`None`) on anything else: positional arrays, binary, extension types,
//! a key twice, trailing bytes. The caller then decodes the answer with serde, which accepts or
//! refuses it as it always did, so the fast path never changes what an answer means.

use serde_json::{Map, Number, Value};

use super::abi::{AbiConflict, AbiObject, FieldError, MergeOutput, ValidateOutput};
use crate::limits::FIELD_DEPTH_MAX;
use crate::model::Fields;

pub(crate) fn map_len(buf: &mut Vec<u8>, len: usize) {
    head(buf, 0x80, 15, 0xde, len);
}

fn array_len(buf: &mut Vec<u8>, len: usize) {
    head(buf, 0x90, 15, 0xdc, len);
}

/// A fix-length header up to `fix_max`, else the 16-bit form `b16` or the 32-bit one after it.
fn head(buf: &mut Vec<u8>, fix: u8, fix_max: usize, b16: u8, len: usize) {
    if len <= fix_max {
        buf.push(fix | len as u8);
    } else if len <= u16::MAX as usize {
        buf.push(b16);
        buf.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        buf.push(b16 + 1);
        buf.extend_from_slice(&(len as u32).to_be_bytes());
    }
}

pub(crate) fn str(buf: &mut Vec<u8>, s: &str) {
    let len = s.len();
    if len <= 31 {
        buf.push(0xa0 | len as u8);
    } else if len <= u8::MAX as usize {
        buf.extend_from_slice(&[0xd9, len as u8]);
    } else {
        head(buf, 0, 0, 0xda, len);
    }
    buf.extend_from_slice(s.as_bytes());
}

fn uint(buf: &mut Vec<u8>, u: u64) {
    match u {
        0..=0x7f => buf.push(u as u8),
        0x80..=0xff => buf.extend_from_slice(&[0xcc, u as u8]),
        0x100..=0xffff => {
            buf.push(0xcd);
            buf.extend_from_slice(&(u as u16).to_be_bytes());
        }
        0x1_0000..=0xffff_ffff => {
            buf.push(0xce);
            buf.extend_from_slice(&(u as u32).to_be_bytes());
        }
        _ => {
            buf.push(0xcf);
            buf.extend_from_slice(&u.to_be_bytes());
        }
    }
}

/// A negative integer in its smallest form.
fn sint(buf: &mut Vec<u8>, i: i64) {
    if i >= -32 {
        buf.push(i as i8 as u8);
    } else if i >= i64::from(i8::MIN) {
        buf.extend_from_slice(&[0xd0, i as i8 as u8]);
    } else if i >= i64::from(i16::MIN) {
        buf.push(0xd1);
        buf.extend_from_slice(&(i as i16).to_be_bytes());
    } else if i >= i64::from(i32::MIN) {
        buf.push(0xd2);
        buf.extend_from_slice(&(i as i32).to_be_bytes());
    } else {
        buf.push(0xd3);
        buf.extend_from_slice(&i.to_be_bytes());
    }
}

/// A document, canonically: integers in their smallest form, map keys sorted bytewise.
pub(crate) fn value(buf: &mut Vec<u8>, v: &Value) {
    match v {
        Value::Null => buf.push(0xc0),
        Value::Bool(b) => buf.push(if *b { 0xc3 } else { 0xc2 }),
        Value::Number(n) => match (n.as_u64(), n.as_i64()) {
            (Some(u), _) => uint(buf, u),
            (None, Some(i)) => sint(buf, i),
            _ => {
                buf.push(0xcb);
                buf.extend_from_slice(&n.as_f64().unwrap_or(0.0).to_be_bytes());
            }
        },
        Value::String(s) => str(buf, s),
        Value::Array(items) => {
            array_len(buf, items.len());
            for item in items {
                value(buf, item);
            }
        }
        Value::Object(m) => map(buf, m),
    }
}

/// A map with its keys sorted bytewise. serde_json's map is sorted already (unless its
/// `preserve_order` feature is on somewhere in the build): it is written in one pass, and only
/// rewritten from a sorted copy when a key turns out of order.
pub(crate) fn map(buf: &mut Vec<u8>, m: &Map<String, Value>) {
    let start = buf.len();
    map_len(buf, m.len());
    let mut previous: Option<&str> = None;
    let mut sorted = true;
    for (k, v) in m {
        if previous.is_some_and(|p| p.as_bytes() > k.as_bytes()) {
            sorted = false;
            break;
        }
        previous = Some(k);
        str(buf, k);
        value(buf, v);
    }
    if sorted {
        return;
    }
    buf.truncate(start);
    map_len(buf, m.len());
    let mut entries: Vec<(&String, &Value)> = m.iter().collect();
    entries.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    for (k, v) in entries {
        str(buf, k);
        value(buf, v);
    }
}

/// Documents nested deeper than this are left to serde (and then refused by the document check).
const DEPTH_MAX: usize = FIELD_DEPTH_MAX + 2;

/// A cursor over an answer. Every method answers `None` where the fast path gives up.
struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn byte(&mut self) -> Option<u8> {
        let b = *self.bytes.get(self.at)?;
        self.at += 1;
        Some(b)
    }

    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let s = self.bytes.get(self.at..self.at.checked_add(n)?)?;
        self.at += n;
        Some(s)
    }

    fn be<const N: usize>(&mut self) -> Option<[u8; N]> {
        self.take(N)?.try_into().ok()
    }

    fn wide_len(&mut self, b16: u8, b: u8) -> Option<usize> {
        Some(if b == b16 { u16::from_be_bytes(self.be()?) as usize } else { u32::from_be_bytes(self.be()?) as usize })
    }

    fn map_len(&mut self) -> Option<usize> {
        match self.byte()? {
            b @ 0x80..=0x8f => Some((b & 0x0f) as usize),
            b @ (0xde | 0xdf) => self.wide_len(0xde, b),
            _ => None,
        }
    }

    fn array_len(&mut self) -> Option<usize> {
        match self.byte()? {
            b @ 0x90..=0x9f => Some((b & 0x0f) as usize),
            b @ (0xdc | 0xdd) => self.wide_len(0xdc, b),
            _ => None,
        }
    }

    fn str(&mut self) -> Option<&'a str> {
        let len = match self.byte()? {
            b @ 0xa0..=0xbf => (b & 0x1f) as usize,
            0xd9 => self.byte()? as usize,
            b @ (0xda | 0xdb) => self.wide_len(0xda, b)?,
            _ => return None,
        };
        std::str::from_utf8(self.take(len)?).ok()
    }

    fn nil(&mut self) -> bool {
        let nil = self.bytes.get(self.at) == Some(&0xc0);
        self.at += usize::from(nil);
        nil
    }

    /// A document, as serde_json reads it through rmp_serde.
    fn value(&mut self, depth: usize) -> Option<Value> {
        if depth > DEPTH_MAX {
            return None;
        }
        let int = |i: i64| Some(Value::Number(Number::from(i)));
        // serde_json turns a float it cannot hold (NaN, infinities) into null.
        let float = |f: f64| Some(Number::from_f64(f).map_or(Value::Null, Value::Number));
        match self.byte()? {
            b @ 0x00..=0x7f => int(i64::from(b)),
            b @ 0xe0..=0xff => int(i64::from(b as i8)),
            0xc0 => Some(Value::Null),
            0xc2 => Some(Value::Bool(false)),
            0xc3 => Some(Value::Bool(true)),
            0xcc => int(i64::from(self.byte()?)),
            0xcd => int(i64::from(u16::from_be_bytes(self.be()?))),
            0xce => int(i64::from(u32::from_be_bytes(self.be()?))),
            0xcf => Some(Value::Number(Number::from(u64::from_be_bytes(self.be()?)))),
            0xd0 => int(i64::from(self.byte()? as i8)),
            0xd1 => int(i64::from(i16::from_be_bytes(self.be()?))),
            0xd2 => int(i64::from(i32::from_be_bytes(self.be()?))),
            0xd3 => int(i64::from_be_bytes(self.be()?)),
            0xca => float(f64::from(f32::from_be_bytes(self.be()?))),
            0xcb => float(f64::from_be_bytes(self.be()?)),
            0xa0..=0xbf | 0xd9..=0xdb => {
                self.at -= 1;
                Some(Value::String(self.str()?.to_owned()))
            }
            0x90..=0x9f | 0xdc | 0xdd => {
                self.at -= 1;
                let len = self.array_len()?;
                // Every item takes a byte at least: a longer length is a lie.
                let mut items = Vec::with_capacity(len.min(self.bytes.len() - self.at));
                for _ in 0..len {
                    items.push(self.value(depth + 1)?);
                }
                Some(Value::Array(items))
            }
            0x80..=0x8f | 0xde | 0xdf => {
                self.at -= 1;
                Some(Value::Object(self.map(depth)?))
            }
            _ => None,
        }
    }

    /// String keys to documents; a key given twice keeps its last value, as serde_json does.
    fn map(&mut self, depth: usize) -> Option<Fields> {
        let len = self.map_len()?;
        let mut m = Map::new();
        for _ in 0..len {
            let k = self.str()?.to_owned();
            let v = self.value(depth + 1)?;
            m.insert(k, v);
        }
        Some(m)
    }

    /// A struct as a map: calls `field` for each key, gives up on a key seen twice.
    fn fields<const N: usize>(
        &mut self,
        names: [&str; N],
        mut field: impl FnMut(&mut Self, usize) -> Option<()>,
    ) -> Option<()> {
        let len = self.map_len()?;
        let mut seen = [false; N];
        for _ in 0..len {
            let key = self.str()?;
            match names.iter().position(|n| *n == key) {
                Some(i) if !seen[i] => {
                    seen[i] = true;
                    field(self, i)?;
                }
                Some(_) => return None,
                // Unknown keys are ignored (serde's IgnoredAny takes more than documents: give up).
                None => drop(self.value(0)?),
            }
        }
        Some(())
    }

    fn object(&mut self) -> Option<AbiObject> {
        let (mut type_name, mut uid, mut name, mut fields) = (None, None, None, Fields::new());
        self.fields(["type", "uid", "name", "fields"], |r, i| {
            match i {
                0 => type_name = Some(r.str()?.to_owned()),
                1 => uid = Some(r.str()?.to_owned()),
                2 => name = Some(r.str()?.to_owned()),
                _ => fields = r.map(0)?,
            }
            Some(())
        })?;
        Some(AbiObject { type_name: type_name?, uid: uid?, name: name?, fields })
    }

    fn conflict(&mut self) -> Option<AbiConflict> {
        let mut c = AbiConflict { field: String::new(), base: None, active: None, branch: None };
        let mut named = false;
        self.fields(["field", "base", "active", "branch"], |r, i| {
            match i {
                0 => {
                    c.field = r.str()?.to_owned();
                    named = true;
                }
                1 => c.base = Some(r.value(0)?),
                2 => c.active = Some(r.value(0)?),
                _ => c.branch = Some(r.value(0)?),
            }
            Some(())
        })?;
        named.then_some(c)
    }

    fn finished<T>(&self, t: T) -> Option<T> {
        (self.at == self.bytes.len()).then_some(t)
    }
}

/// Merge's answer, when it has the usual shape.
pub(crate) fn merge_output(bytes: &[u8]) -> Option<MergeOutput> {
    let mut r = Reader { bytes, at: 0 };
    let mut out = MergeOutput { result: None, conflicts: Vec::new() };
    r.fields(["result", "conflicts"], |r, i| {
        if i == 0 {
            out.result = if r.nil() { None } else { Some(r.object()?) };
        } else {
            let len = r.array_len()?;
            out.conflicts.reserve(len.min(r.bytes.len()));
            for _ in 0..len {
                out.conflicts.push(r.conflict()?);
            }
        }
        Some(())
    })?;
    r.finished(out)
}

/// Validate's answer, when it has the usual shape.
pub(crate) fn validate_output(bytes: &[u8]) -> Option<ValidateOutput> {
    let mut r = Reader { bytes, at: 0 };
    let (mut ok, mut errors) = (None, Vec::new());
    r.fields(["ok", "errors"], |r, i| {
        if i == 0 {
            ok = Some(match r.byte()? {
                0xc2 => false,
                0xc3 => true,
                _ => return None,
            });
            return Some(());
        }
        for _ in 0..r.array_len()? {
            let (mut field, mut reason) = (String::new(), None);
            r.fields(["field", "reason"], |r, i| {
                let s = r.str()?.to_owned();
                match i {
                    0 => field = s,
                    _ => reason = Some(s),
                }
                Some(())
            })?;
            errors.push(FieldError { field, reason: reason? });
        }
        Some(())
    })?;
    r.finished(ValidateOutput { ok: ok?, errors })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::object::encode_value;
    use serde_json::json;

    fn sample() -> Value {
        json!({
            "zeta": [0, 1, 127, 128, 255, 256, 65535, 65536, 4294967295u64, 4294967296u64, u64::MAX],
            "neg": [-1, -32, -33, -128, -129, -32768, -32769, -2147483648i64, -2147483649i64, i64::MIN],
            "text": ["", "x".repeat(31), "y".repeat(32), "z".repeat(255), "w".repeat(256), "v".repeat(70_000)],
            "nested": {"b": null, "a": [true, false, {"deep": {"er": 1.5}}]},
            "list": (0..20).collect::<Vec<_>>(),
            "map": (0..20).map(|i| (format!("k{i:02}"), json!(i))).collect::<Map<String, Value>>(),
        })
    }

    #[test]
    fn documents_encode_as_the_canonical_encoding() {
        let v = sample();
        let (mut ours, mut canonical) = (Vec::new(), Vec::new());
        value(&mut ours, &v);
        encode_value(&mut canonical, &v);
        assert_eq!(ours, canonical);
    }

    #[test]
    fn documents_read_as_serde_reads_them() {
        let v = sample();
        let bytes = rmp_serde::to_vec_named(&v).expect("encodes");
        let theirs: Value = rmp_serde::from_slice(&bytes).expect("decodes");
        let ours = Reader { bytes: &bytes, at: 0 }.value(0).expect("fast path");
        assert_eq!(ours, theirs);
        // Signed forms of small positive numbers, and a NaN.
        let odd = [0xd0, 0x05, 0xd1, 0x00, 0x07, 0xca, 0x7f, 0xc0, 0x00, 0x00];
        let mut r = Reader { bytes: &odd, at: 0 };
        assert_eq!((r.value(0), r.value(0), r.value(0)), (Some(json!(5)), Some(json!(7)), Some(Value::Null)));
    }

    #[test]
    fn the_usual_answers_take_the_fast_path_and_agree_with_serde() {
        let merge = json!({
            "result": {"type": "x.t", "uid": "u", "name": "n", "fields": {"a": [1, "b"]}, "extra": 1},
            "conflicts": [{"field": "a", "base": null, "branch": 2}],
        });
        let bytes = rmp_serde::to_vec_named(&merge).expect("encodes");
        let theirs: MergeOutput = rmp_serde::from_slice(&bytes).expect("serde reads it");
        assert_eq!(merge_output(&bytes), Some(theirs));
        let deleted = rmp_serde::to_vec_named(&json!({"result": null})).expect("encodes");
        assert_eq!(merge_output(&deleted), Some(MergeOutput { result: None, conflicts: vec![] }));
        let refused = json!({"ok": false, "errors": [{"reason": "r"}, {"field": "f", "reason": "s"}]});
        let bytes = rmp_serde::to_vec_named(&refused).expect("encodes");
        let theirs: ValidateOutput = rmp_serde::from_slice(&bytes).expect("serde reads it");
        assert_eq!(validate_output(&bytes), Some(theirs));
    }

    #[test]
    fn unusual_answers_are_left_to_serde() {
        let positional = rmp_serde::to_vec(&json!([null, []])).expect("encodes");
        assert_eq!(merge_output(&positional), None);
        let twice = [0x82, 0xa2, b'o', b'k', 0xc3, 0xa2, b'o', b'k', 0xc2];
        assert_eq!(validate_output(&twice), None);
        let trailing = [0x81, 0xa2, b'o', b'k', 0xc3, 0xc0];
        assert_eq!(validate_output(&trailing), None);
        let binary = [0x81, 0xa6, b'e', b'r', b'r', b'o', b'r', b's', 0xc4, 0x00];
        assert_eq!(validate_output(&binary), None);
        assert_eq!(validate_output(&[0x80]), None, "ok is required");
    }
}
