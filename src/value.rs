//! The dynamic, JSON-like element type of manifests and untyped streams.
//!
//! Integers and floats stay distinct (`2` is not `2.0`), null is an ordinary value, maps keep
//! their keys sorted. `Value` serializes as plain JSON to human-readable formats (serde_json)
//! and as a compact tagged form to binary ones (bincode), so the same type serves files and links.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{Deserializer, MapAccess, SeqAccess, Visitor};
use serde::ser::{SerializeMap, SerializeSeq, Serializer};
use serde::{Deserialize, Serialize};

/// A JSON-like value: the element type of untyped (manifest) streams.
#[derive(Clone, Debug, PartialEq, Default)]
pub enum Value {
    /// JSON null: an ordinary value that flows like any other.
    #[default]
    Null,
    /// A boolean.
    Bool(bool),
    /// A 64-bit signed integer.
    Int(i64),
    /// A 64-bit float.
    Float(f64),
    /// A UTF-8 string.
    Str(String),
    /// An array (also tuples and IoTPy's `(t, v)` pairs).
    Array(Vec<Value>),
    /// A map with string keys, sorted.
    Map(BTreeMap<String, Value>),
}

impl Value {
    /// The name of this value's type, for error messages (`"i64"`, `"string"`, ...).
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Null => "null",
            Value::Bool(_) => "bool",
            Value::Int(_) => "i64",
            Value::Float(_) => "f64",
            Value::Str(_) => "string",
            Value::Array(_) => "array",
            Value::Map(_) => "map",
        }
    }

    /// True for `Value::Null`.
    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }

    /// The bytes the value holds besides its fixed size (a string's text, an array's or a
    /// map's elements): what a link's byte bound counts.
    pub fn heap_bytes(&self) -> usize {
        let v = std::mem::size_of::<Value>();
        match self {
            Value::Null | Value::Bool(_) | Value::Int(_) | Value::Float(_) => 0,
            Value::Str(s) => s.len(),
            Value::Array(a) => a.iter().map(|x| v + x.heap_bytes()).sum(),
            Value::Map(m) => m
                .iter()
                .map(|(k, x)| 2 * v + k.len() + x.heap_bytes())
                .sum(),
        }
    }

    /// The value as f64 if it is a number (integers are widened).
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Int(i) => Some(*i as f64),
            Value::Float(f) => Some(*f),
            _ => None,
        }
    }

    /// The value as i64 if it is an integer.
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            _ => None,
        }
    }

    /// The array's items, if this is an array.
    pub fn as_array(&self) -> Option<&[Value]> {
        match self {
            Value::Array(a) => Some(a),
            _ => None,
        }
    }

    /// Parses one JSON text into a value (integers that fit i64 stay integers).
    pub fn from_json(text: &str) -> Result<Value, serde_json::Error> {
        serde_json::from_str(text)
    }

    /// Writes this value as compact JSON; returns how many non-finite floats were written as null.
    pub fn write_json(&self, out: &mut String) -> usize {
        let mut nonfinite = 0;
        write_json_into(self, out, &mut nonfinite);
        nonfinite
    }

    /// This value as a compact JSON string (non-finite floats become null).
    pub fn to_json(&self) -> String {
        let mut s = String::new();
        self.write_json(&mut s);
        s
    }

    /// Converts a TOML value (from a manifest) into a value; datetimes become strings.
    pub fn from_toml(v: &toml::Value) -> Value {
        match v {
            toml::Value::String(s) => Value::Str(s.clone()),
            toml::Value::Integer(i) => Value::Int(*i),
            toml::Value::Float(f) => Value::Float(*f),
            toml::Value::Boolean(b) => Value::Bool(*b),
            toml::Value::Datetime(d) => Value::Str(d.to_string()),
            toml::Value::Array(a) => Value::Array(a.iter().map(Value::from_toml).collect()),
            toml::Value::Table(t) => Value::Map(
                t.iter()
                    .map(|(k, v)| (k.clone(), Value::from_toml(v)))
                    .collect(),
            ),
        }
    }
}

/// True for the variants that own no memory (null, bool, integer, float).
#[inline]
fn is_scalar(v: &Value) -> bool {
    matches!(
        v,
        Value::Null | Value::Bool(_) | Value::Int(_) | Value::Float(_)
    )
}

/// `batch` as the `Value`s it is, when its element type is `Value`.
pub(crate) fn as_values<T: 'static>(batch: &[T]) -> Option<&[Value]> {
    (std::any::TypeId::of::<T>() == std::any::TypeId::of::<Value>()).then(|| {
        // SAFETY: T is Value (checked just above), so the slice is a slice of Values.
        unsafe { std::slice::from_raw_parts(batch.as_ptr() as *const Value, batch.len()) }
    })
}

/// True if every element of `vs` is a scalar: a branch per 16 elements, not per element.
pub(crate) fn all_scalars(vs: &[Value]) -> bool {
    vs.chunks(16)
        .all(|c| c.iter().fold(true, |all, v| all & is_scalar(v)))
}

/// True if every element of `vs` is a float (as [`all_scalars`]).
pub(crate) fn all_floats(vs: &[Value]) -> bool {
    vs.chunks(16).all(|c| {
        c.iter()
            .fold(true, |all, v| all & matches!(v, Value::Float(_)))
    })
}

/// Empties `vs`. A batch of scalars (the common batch of numbers) is emptied after one scan
/// instead of a drop call per element.
pub fn clear_values(vs: &mut Vec<Value>) {
    if all_scalars(vs) {
        // SAFETY: scalars own no memory, so not running their drop leaks nothing.
        unsafe { vs.set_len(0) }
    } else {
        vs.clear();
    }
}

/// Empties a batch of any element type, the way [`clear_values`] does for [`Value`]s.
#[allow(clippy::ptr_arg)] // `Vec`s (sized) to downcast through `Any`
pub fn clear_batch<T: 'static>(vs: &mut Vec<T>) {
    match (vs as &mut dyn std::any::Any).downcast_mut::<Vec<Value>>() {
        Some(values) => clear_values(values),
        None => vs.clear(),
    }
}

/// Drops a batch, the way [`clear_batch`] empties one.
pub fn drop_batch<T: 'static>(mut vs: Vec<T>) {
    clear_batch(&mut vs);
}

/// Replaces the contents of `dst` with a copy of `vs` made as one block copy, if every element
/// is a scalar (null, bool, integer, float); false (and `dst` untouched) otherwise.
pub(crate) fn copy_scalars_into(vs: &[Value], dst: &mut Vec<Value>) -> bool {
    if !all_scalars(vs) {
        return false;
    }
    clear_values(dst);
    dst.reserve(vs.len());
    // SAFETY: the scalar variants own no memory, so a bitwise copy of one is a clone of it
    // (nothing is dropped twice); `dst` is empty with room for `vs.len()` elements and does not
    // overlap `vs`.
    unsafe {
        std::ptr::copy_nonoverlapping(vs.as_ptr(), dst.as_mut_ptr(), vs.len());
        dst.set_len(vs.len());
    }
    true
}

/// Formats a float in shortest round-trip form that always carries a `.` or an exponent.
pub fn format_float(f: f64, out: &mut String) {
    use std::fmt::Write;
    // Rust's Debug for f64 is shortest round-trip and keeps ".0" on integral values.
    let _ = write!(out, "{f:?}");
}

fn write_json_into(v: &Value, out: &mut String, nonfinite: &mut usize) {
    use std::fmt::Write;
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Int(i) => {
            let _ = write!(out, "{i}");
        }
        Value::Float(f) => {
            if f.is_finite() {
                format_float(*f, out);
            } else {
                *nonfinite += 1;
                out.push_str("null");
            }
        }
        Value::Str(s) => write_json_string(s, out),
        Value::Array(a) => {
            out.push('[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_json_into(x, out, nonfinite);
            }
            out.push(']');
        }
        Value::Map(m) => {
            out.push('{');
            for (i, (k, x)) in m.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_json_string(k, out);
                out.push_str(": ");
                write_json_into(x, out, nonfinite);
            }
            out.push('}');
        }
    }
}

/// True when one of the 8 bytes of `w` needs an escape in a JSON string: a control
/// character, `"` or a backslash (exact for the word as a whole, which is all that is asked).
#[inline(always)]
fn word_needs_escape(w: u64) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let has_zero = |v: u64| v.wrapping_sub(ONES) & !v & HIGH;
    let below_space = w.wrapping_sub(ONES * 0x20) & !w & HIGH;
    (below_space | has_zero(w ^ (ONES * b'"' as u64)) | has_zero(w ^ (ONES * b'\\' as u64))) != 0
}

fn write_json_string(s: &str, out: &mut String) {
    use std::fmt::Write;
    out.reserve(s.len() + 2);
    out.push('"');
    // Copy runs of bytes that need no escape in one go (long strings are mostly such runs),
    // finding them 8 bytes at a time.
    let bytes = s.as_bytes();
    let mut start = 0;
    let mut i = 0;
    while i < bytes.len() {
        while let Some(w) = bytes.get(i..i + 8) {
            if word_needs_escape(u64::from_le_bytes(w.try_into().expect("8 bytes"))) {
                break;
            }
            i += 8;
        }
        let end = (i + 8).min(bytes.len());
        for (j, &b) in bytes.iter().enumerate().take(end).skip(i) {
            let esc: &str = match b {
                b'"' => "\\\"",
                b'\\' => "\\\\",
                b'\n' => "\\n",
                b'\r' => "\\r",
                b'\t' => "\\t",
                b if b < 0x20 => "",
                _ => continue,
            };
            // `j` is at an ASCII byte, so both slices end on character boundaries.
            out.push_str(&s[start..j]);
            if esc.is_empty() {
                let _ = write!(out, "\\u{:04x}", b);
            } else {
                out.push_str(esc);
            }
            start = j + 1;
        }
        i = end;
    }
    out.push_str(&s[start..]);
    out.push('"');
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_json())
    }
}

macro_rules! value_from {
    ($($t:ty => $variant:ident),*) => {$(
        impl From<$t> for Value {
            fn from(x: $t) -> Value { Value::$variant(x.into()) }
        }
    )*};
}
value_from!(bool => Bool, i64 => Int, i32 => Int, u32 => Int, f64 => Float, f32 => Float, String => Str, &str => Str);

impl From<Vec<Value>> for Value {
    fn from(x: Vec<Value>) -> Value {
        Value::Array(x)
    }
}

impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(x: Option<T>) -> Value {
        x.map_or(Value::Null, Into::into)
    }
}

// The tagged form used by binary (non-human-readable) formats such as bincode.
#[derive(Serialize, Deserialize)]
enum Tagged {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(#[serde(deserialize_with = "string_from_str")] String),
    Array(Vec<Value>),
    Map(BTreeMap<String, Value>),
}

/// A string read from a binary format (which writes a `str` as its bytes) as lent bytes,
/// copied once and then checked to be UTF-8 where the copy is still in cache (`String`'s own
/// deserialization made bincode zero a buffer, fill it and then check it; a lent `str` is
/// checked where it lies, in the ring, and then copied from there again).
fn string_from_str<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    struct Owned;
    impl Visitor<'_> for Owned {
        type Value = String;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a string")
        }
        fn visit_bytes<E: serde::de::Error>(self, b: &[u8]) -> Result<String, E> {
            String::from_utf8(b.to_vec())
                .map_err(|e| E::custom(format!("a string that is not UTF-8: {}", e.utf8_error())))
        }
        fn visit_str<E>(self, s: &str) -> Result<String, E> {
            Ok(s.to_owned())
        }
        fn visit_string<E>(self, s: String) -> Result<String, E> {
            Ok(s)
        }
    }
    d.deserialize_bytes(Owned)
}

impl Serialize for Value {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if !s.is_human_readable() {
            return match self {
                Value::Null => s.serialize_unit_variant("Tagged", 0, "Null"),
                Value::Bool(b) => s.serialize_newtype_variant("Tagged", 1, "Bool", b),
                Value::Int(i) => s.serialize_newtype_variant("Tagged", 2, "Int", i),
                Value::Float(f) => s.serialize_newtype_variant("Tagged", 3, "Float", f),
                Value::Str(x) => s.serialize_newtype_variant("Tagged", 4, "Str", x),
                Value::Array(a) => s.serialize_newtype_variant("Tagged", 5, "Array", a),
                Value::Map(m) => s.serialize_newtype_variant("Tagged", 6, "Map", m),
            };
        }
        match self {
            Value::Null => s.serialize_unit(),
            Value::Bool(b) => s.serialize_bool(*b),
            Value::Int(i) => s.serialize_i64(*i),
            Value::Float(f) if f.is_finite() => s.serialize_f64(*f),
            Value::Float(_) => s.serialize_unit(),
            Value::Str(x) => s.serialize_str(x),
            Value::Array(a) => {
                let mut seq = s.serialize_seq(Some(a.len()))?;
                for x in a {
                    seq.serialize_element(x)?;
                }
                seq.end()
            }
            Value::Map(m) => {
                let mut map = s.serialize_map(Some(m.len()))?;
                for (k, x) in m {
                    map.serialize_entry(k, x)?;
                }
                map.end()
            }
        }
    }
}

impl<'de> Deserialize<'de> for Value {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Value, D::Error> {
        if !d.is_human_readable() {
            return Ok(match Tagged::deserialize(d)? {
                Tagged::Null => Value::Null,
                Tagged::Bool(b) => Value::Bool(b),
                Tagged::Int(i) => Value::Int(i),
                Tagged::Float(f) => Value::Float(f),
                Tagged::Str(s) => Value::Str(s),
                Tagged::Array(a) => Value::Array(a),
                Tagged::Map(m) => Value::Map(m),
            });
        }
        d.deserialize_any(ValueVisitor)
    }
}

struct ValueVisitor;

impl<'de> Visitor<'de> for ValueVisitor {
    type Value = Value;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        Value::deserialize(d)
    }
    fn visit_bool<E>(self, b: bool) -> Result<Value, E> {
        Ok(Value::Bool(b))
    }
    fn visit_i64<E>(self, i: i64) -> Result<Value, E> {
        Ok(Value::Int(i))
    }
    fn visit_u64<E>(self, u: u64) -> Result<Value, E> {
        Ok(i64::try_from(u).map_or(Value::Float(u as f64), Value::Int))
    }
    fn visit_f64<E>(self, f: f64) -> Result<Value, E> {
        Ok(Value::Float(f))
    }
    fn visit_str<E>(self, s: &str) -> Result<Value, E> {
        Ok(Value::Str(s.to_owned()))
    }
    fn visit_string<E>(self, s: String) -> Result<Value, E> {
        Ok(Value::Str(s))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut v = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096));
        while let Some(x) = seq.next_element()? {
            v.push(x);
        }
        Ok(Value::Array(v))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut m = BTreeMap::new();
        while let Some((k, x)) = map.next_entry::<String, Value>()? {
            m.insert(k, x);
        }
        Ok(Value::Map(m))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clearing_a_batch_empties_it_and_keeps_its_memory_whatever_it_holds() {
        let counted = std::rc::Rc::new(());
        let mut scalars = vec![
            Value::Int(1),
            Value::Float(2.0),
            Value::Null,
            Value::Bool(true),
        ];
        let cap = scalars.capacity();
        clear_values(&mut scalars);
        assert!(scalars.is_empty() && scalars.capacity() == cap);
        // A batch holding memory goes through the drop calls: its strings are freed.
        let mut mixed = vec![Value::Int(1), Value::Str("a".repeat(100))];
        clear_batch(&mut mixed);
        assert!(mixed.is_empty());
        // Other element types are cleared as usual (their drops run).
        let mut others = vec![counted.clone(), counted.clone()];
        clear_batch(&mut others);
        assert!(others.is_empty());
        drop_batch(vec![counted.clone()]);
        assert_eq!(std::rc::Rc::strong_count(&counted), 1);
    }

    #[test]
    fn json_keeps_ints_and_floats_distinct() {
        let v = Value::from_json("[2, 2.0, null, \"a\", {\"k\": 1e21}]").unwrap();
        assert_eq!(
            v,
            Value::Array(vec![
                Value::Int(2),
                Value::Float(2.0),
                Value::Null,
                Value::Str("a".into()),
                Value::Map([("k".to_string(), Value::Float(1e21))].into()),
            ])
        );
        assert_eq!(v.to_json(), "[2, 2.0, null, \"a\", {\"k\": 1e21}]");
    }

    #[test]
    fn floats_always_carry_a_point_or_exponent() {
        for (f, s) in [(2.0, "2.0"), (0.1, "0.1"), (-3.5, "-3.5"), (1e-7, "1e-7")] {
            assert_eq!(Value::Float(f).to_json(), s);
            let back = Value::from_json(s).unwrap();
            assert_eq!(back, Value::Float(f));
        }
    }

    #[test]
    fn nonfinite_floats_are_written_as_null_and_counted() {
        let mut s = String::new();
        let n = Value::Array(vec![Value::Float(f64::NAN), Value::Float(f64::INFINITY)])
            .write_json(&mut s);
        assert_eq!(s, "[null, null]");
        assert_eq!(n, 2);
    }

    #[test]
    fn bincode_round_trips_every_variant() {
        let v = Value::from_json(r#"[null, true, -5, 2.5, "s", [1], {"a": [2.0]}]"#).unwrap();
        let cfg = bincode::config::standard();
        let bytes = bincode::serde::encode_to_vec(&v, cfg).unwrap();
        let (back, _): (Value, usize) = bincode::serde::decode_from_slice(&bytes, cfg).unwrap();
        assert_eq!(back, v);
    }

    #[test]
    fn strings_are_escaped() {
        assert_eq!(Value::Str("a\"b\\\n".into()).to_json(), "\"a\\\"b\\\\\\n\"");
    }
}

#[cfg(test)]
mod json_string_tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn strings_are_written_as_json_reads_them(s in "\\PC*|[\"\\\\\n\r\t\u{1}\u{1f}é€😀a]*") {
            let v = Value::Str(s.clone());
            let text = v.to_json();
            prop_assert_eq!(serde_json::from_str::<String>(&text).unwrap(), s);
        }
    }

    #[test]
    fn escapes_are_found_at_every_offset_of_a_word_and_in_long_strings() {
        let base: Vec<char> = "abcd\u{e9}fghijklmnopq\u{20ac}rstuvwxyz0123456789"
            .chars()
            .collect();
        for special in ['"', '\\', '\n', '\r', '\t', '\u{1}', '\u{1f}', '\u{7f}'] {
            for at in 0..base.len() {
                let mut c = base.clone();
                c.insert(at, special);
                c.push(special);
                let s: String = c.into_iter().collect();
                let text = Value::Str(s.clone()).to_json();
                assert_eq!(serde_json::from_str::<String>(&text).unwrap(), s, "{text}");
                assert!(!text.contains(|c: char| c < ' '), "{text:?}");
            }
        }
        let long = "x".repeat(100_003) + "\"" + "\u{e9}".repeat(1000).as_str();
        let text = Value::Str(long.clone()).to_json();
        assert_eq!(serde_json::from_str::<String>(&text).unwrap(), long);
        assert_eq!(text.len(), long.len() + 3);
    }
}
