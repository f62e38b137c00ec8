//! The wire format of batches between processes, in one place so it can be swapped.
//!
//! A batch starts with one format byte:
//! - `0`: bincode 2 over serde (any element type);
//! - `1`..`6`: a batch of one primitive type (`f64`, `i64`, `u64`, `f32`, `i32`, `u32`) as its
//!   raw native-endian bytes: one copy each way, no per-element serialization;
//! - `7`, `8`: a batch of [`Value`]s that are all floats (all integers), sent as raw `f64`
//!   (`i64`) bytes — what a manifest's typed `f64`/`i64` stream carries.
//!
//! Both ends run on the same machine (shared memory), so native endianness is the format's.

use std::any::{Any, TypeId};

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::Value;

/// A batch that could not be encoded or decoded.
#[derive(Debug, thiserror::Error)]
#[error("wire format: {0}")]
pub struct CodecError(String);

fn config() -> bincode::config::Configuration {
    bincode::config::standard()
}

const SERDE: u8 = 0;
const VALUE_F64: u8 = 7;
const VALUE_I64: u8 = 8;

/// The format byte of a primitive element type, if `T` is one.
fn primitive<T: 'static>() -> Option<(u8, usize)> {
    let t = TypeId::of::<T>();
    [
        (TypeId::of::<f64>(), 1, 8),
        (TypeId::of::<i64>(), 2, 8),
        (TypeId::of::<u64>(), 3, 8),
        (TypeId::of::<f32>(), 4, 4),
        (TypeId::of::<i32>(), 5, 4),
        (TypeId::of::<u32>(), 6, 4),
    ]
    .into_iter()
    .find(|(id, _, _)| *id == t)
    .map(|(_, tag, size)| (tag, size))
}

/// The raw bytes of a slice of plain numbers.
///
/// # Safety
/// `T` must be a primitive number type (no padding, every byte initialized).
unsafe fn bytes_of<T>(batch: &[T]) -> &[u8] {
    std::slice::from_raw_parts(batch.as_ptr() as *const u8, std::mem::size_of_val(batch))
}

/// A vector of `n` primitive numbers read from `bytes` (native endian).
fn vec_from_bytes<P: Copy + Default + 'static>(bytes: &[u8]) -> Vec<P> {
    let n = bytes.len() / std::mem::size_of::<P>();
    let mut v = vec![P::default(); n];
    // SAFETY: `v` holds exactly `bytes.len()` bytes of plain numbers, for which every bit
    // pattern is valid; the two buffers do not overlap.
    unsafe {
        std::ptr::copy_nonoverlapping(bytes.as_ptr(), v.as_mut_ptr() as *mut u8, bytes.len());
    }
    v
}

/// Where an encoding goes: a growing vector, or a fixed window (the free space of a ring).
trait Out {
    /// Appends `bytes`; false when they do not fit.
    fn put(&mut self, bytes: &[u8]) -> bool;

    /// Bytes written so far.
    fn len(&self) -> usize;

    /// Forgets what was written after the first `len` bytes.
    fn truncate(&mut self, len: usize);

    /// The bytes that can still be written, if bounded.
    fn room(&self) -> Option<usize> {
        None
    }

    /// Appends `tag` and the 8 bytes `num` gives for each of `values`: Ok(true) when done,
    /// Ok(false), writing nothing, when it gives none for one of them, Err(NoRoom) when they
    /// do not fit.
    fn put_numbers(
        &mut self,
        tag: u8,
        values: &[Value],
        num: impl Fn(&Value) -> Option<[u8; 8]>,
    ) -> Result<bool, NoRoom>;
}

/// Writes `tag` and the 8 bytes `num` gives for each of `values` into `dst` (of exactly that
/// length); false at the first value it gives none for.
#[inline(always)]
fn fill_numbers(
    dst: &mut [u8],
    tag: u8,
    values: &[Value],
    num: impl Fn(&Value) -> Option<[u8; 8]>,
) -> bool {
    dst[0] = tag;
    for (c, v) in dst[1..].chunks_exact_mut(8).zip(values) {
        match num(v) {
            Some(b) => c.copy_from_slice(&b),
            None => return false,
        }
    }
    true
}

/// [`Out::put_numbers`] through a small buffer, for any [`Out`].
#[inline(always)]
fn put_numbers_in_chunks(
    out: &mut impl Out,
    tag: u8,
    values: &[Value],
    num: impl Fn(&Value) -> Option<[u8; 8]>,
) -> Result<bool, NoRoom> {
    if !values.iter().all(|v| num(v).is_some()) {
        return Ok(false);
    }
    let mut chunk = [0u8; 512];
    if !out.put(&[tag]) {
        return Err(NoRoom);
    }
    for part in values.chunks(chunk.len() / 8) {
        for (c, v) in chunk.chunks_exact_mut(8).zip(part) {
            c.copy_from_slice(&num(v).unwrap_or_default());
        }
        if !out.put(&chunk[..part.len() * 8]) {
            return Err(NoRoom);
        }
    }
    Ok(true)
}

/// An encoding did not fit in its window.
struct NoRoom;

impl Out for Vec<u8> {
    fn put(&mut self, bytes: &[u8]) -> bool {
        self.extend_from_slice(bytes);
        true
    }

    fn len(&self) -> usize {
        Vec::len(self)
    }

    fn truncate(&mut self, len: usize) {
        Vec::truncate(self, len)
    }

    #[inline(always)]
    fn put_numbers(
        &mut self,
        tag: u8,
        values: &[Value],
        num: impl Fn(&Value) -> Option<[u8; 8]>,
    ) -> Result<bool, NoRoom> {
        let start = self.len();
        self.resize(start + 1 + values.len() * 8, 0);
        if !fill_numbers(&mut self[start..], tag, values, num) {
            Vec::truncate(self, start);
            return Ok(false);
        }
        Ok(true)
    }
}

/// A fixed window of memory in two parts (the free space of a ring, which may wrap around
/// its end), written from its start.
pub struct Window<'a> {
    a: &'a mut [u8],
    b: &'a mut [u8],
    at: usize,
}

impl<'a> Window<'a> {
    /// A window over `a` followed by `b`.
    pub fn new(a: &'a mut [u8], b: &'a mut [u8]) -> Self {
        Window { a, b, at: 0 }
    }

    /// Appends `bytes`; false when they do not fit.
    pub fn put_bytes(&mut self, bytes: &[u8]) -> bool {
        self.put(bytes)
    }

    /// Bytes written so far.
    pub fn written(&self) -> usize {
        self.at
    }

    /// Writes `bytes` at `at` (which must lie within what was written).
    pub fn patch(&mut self, at: usize, bytes: &[u8]) {
        let end = self.at;
        self.at = at;
        let ok = self.put(bytes);
        debug_assert!(ok && self.at <= end);
        self.at = end;
    }
}

impl Out for Window<'_> {
    fn put(&mut self, bytes: &[u8]) -> bool {
        let (la, n) = (self.a.len(), bytes.len());
        if n > la + self.b.len() - self.at {
            return false;
        }
        let first = n.min(la.saturating_sub(self.at));
        if first > 0 {
            self.a[self.at..self.at + first].copy_from_slice(&bytes[..first]);
        }
        if first < n {
            let off = self.at + first - la;
            self.b[off..off + n - first].copy_from_slice(&bytes[first..]);
        }
        self.at += n;
        true
    }

    fn len(&self) -> usize {
        self.at
    }

    fn room(&self) -> Option<usize> {
        Some(self.a.len() + self.b.len() - self.at)
    }

    #[inline(always)]
    fn put_numbers(
        &mut self,
        tag: u8,
        values: &[Value],
        num: impl Fn(&Value) -> Option<[u8; 8]>,
    ) -> Result<bool, NoRoom> {
        let need = 1 + values.len() * 8;
        let Some(room) = self.a.get_mut(self.at..self.at + need) else {
            // Not in one piece here (or not at all): through the general path.
            return put_numbers_in_chunks(self, tag, values, num);
        };
        if !fill_numbers(room, tag, values, num) {
            return Ok(false);
        }
        self.at += need;
        Ok(true)
    }

    fn truncate(&mut self, len: usize) {
        self.at = self.at.min(len);
    }
}

/// bincode's view of an [`Out`].
struct Bin<'o, O>(&'o mut O);

impl<O: Out> bincode::enc::write::Writer for Bin<'_, O> {
    fn write(&mut self, bytes: &[u8]) -> Result<(), bincode::error::EncodeError> {
        if self.0.put(bytes) {
            Ok(())
        } else {
            Err(bincode::error::EncodeError::UnexpectedEnd)
        }
    }
}

/// Appends the encoding of `batch` to `out`.
pub fn encode<T: Serialize + 'static>(batch: &[T], out: &mut Vec<u8>) -> Result<(), CodecError> {
    encode_to(batch, out).map(|_| ())
}

/// Writes the encoding of `batch` into `w` from its start: Ok(false) when it does not fit
/// (what `w` holds is then of no use).
pub fn encode_into(batch: &[impl Serialize + 'static], w: &mut Window) -> Result<bool, CodecError> {
    encode_to(batch, w)
}

/// Appends the encoding of `batch` to `out`; Ok(false) when it does not fit.
#[inline]
fn encode_to<T: Serialize + 'static, O: Out>(batch: &[T], out: &mut O) -> Result<bool, CodecError> {
    if let Some((tag, _)) = primitive::<T>() {
        // SAFETY: `primitive` only matches plain number types.
        return Ok(out.put(&[tag]) && out.put(unsafe { bytes_of(batch) }));
    }
    if let Some(values) = crate::value::as_values(batch).filter(|v| !v.is_empty()) {
        let float = |v: &Value| match v {
            Value::Float(f) => Some(f.to_ne_bytes()),
            _ => None,
        };
        let int = |v: &Value| match v {
            Value::Int(i) => Some(i.to_ne_bytes()),
            _ => None,
        };
        let numbers = match values[0] {
            Value::Float(_) => out.put_numbers(VALUE_F64, values, float),
            Value::Int(_) => out.put_numbers(VALUE_I64, values, int),
            _ => Ok(false),
        };
        match numbers {
            Ok(true) => return Ok(true),
            Ok(false) => {}
            Err(NoRoom) => return Ok(false),
        }
    }
    if let Some(room) = out.room() {
        // A bounded window: size the encoding first (cheap: a string counts its length), so
        // that a batch too large for it is not half written and thrown away.
        let mut size = bincode::enc::write::SizeWriter::default();
        bincode::serde::encode_into_writer(batch, &mut size, config())
            .map_err(|e| CodecError(e.to_string()))?;
        if 1 + size.bytes_written > room {
            return Ok(false);
        }
    }
    let start = out.len();
    if !out.put(&[SERDE]) {
        return Ok(false);
    }
    match bincode::serde::encode_into_writer(batch, Bin(out), config()) {
        Ok(()) => Ok(true),
        Err(bincode::error::EncodeError::UnexpectedEnd) => Ok(false),
        Err(e) => {
            out.truncate(start);
            Err(CodecError(e.to_string()))
        }
    }
}

/// Turns a `Vec<P>` into the `Vec<T>` it is (P and T are the same type).
fn same<P: 'static, T: 'static>(v: Vec<P>) -> Result<Vec<T>, CodecError> {
    let b: Box<dyn Any> = Box::new(v);
    b.downcast::<Vec<T>>()
        .map(|b| *b)
        .map_err(|_| CodecError("a batch of another element type".into()))
}

/// Decodes a batch encoded by [`encode`].
pub fn decode<T: DeserializeOwned + 'static>(bytes: &[u8]) -> Result<Vec<T>, CodecError> {
    let (&tag, body) = bytes
        .split_first()
        .ok_or_else(|| CodecError("an empty batch frame".into()))?;
    match tag {
        SERDE => {
            let (v, used): (Vec<T>, usize) = bincode::serde::decode_from_slice(body, config())
                .map_err(|e| CodecError(e.to_string()))?;
            if used != body.len() {
                return Err(CodecError(format!(
                    "{} trailing bytes after a batch",
                    body.len() - used
                )));
            }
            Ok(v)
        }
        1..=6 => {
            let Some((want, size)) = primitive::<T>() else {
                return Err(CodecError(format!(
                    "a batch of primitive type {tag} for a stream of another type"
                )));
            };
            if want != tag || body.len() % size != 0 {
                return Err(CodecError(format!(
                    "a batch of primitive type {tag} ({} bytes) for a stream of type {want}",
                    body.len()
                )));
            }
            match tag {
                1 => same(vec_from_bytes::<f64>(body)),
                2 => same(vec_from_bytes::<i64>(body)),
                3 => same(vec_from_bytes::<u64>(body)),
                4 => same(vec_from_bytes::<f32>(body)),
                5 => same(vec_from_bytes::<i32>(body)),
                _ => same(vec_from_bytes::<u32>(body)),
            }
        }
        VALUE_F64 | VALUE_I64 => {
            if body.len() % 8 != 0 {
                return Err(CodecError(format!("{} bytes of numbers", body.len())));
            }
            let values: Vec<Value> = if tag == VALUE_F64 {
                body.chunks_exact(8)
                    .map(|c| Value::Float(f64::from_ne_bytes(c.try_into().unwrap_or_default())))
                    .collect()
            } else {
                body.chunks_exact(8)
                    .map(|c| Value::Int(i64::from_ne_bytes(c.try_into().unwrap_or_default())))
                    .collect()
            };
            same(values)
        }
        t => Err(CodecError(format!("unknown batch format {t}"))),
    }
}

/// The encoding of one value (an operator's snapshot, for one).
pub fn to_bytes<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, CodecError> {
    bincode::serde::encode_to_vec(value, config()).map_err(|e| CodecError(e.to_string()))
}

/// Decodes a value encoded by [`to_bytes`]; trailing bytes are an error.
pub fn from_bytes<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
    let (v, used): (T, usize) = bincode::serde::decode_from_slice(bytes, config())
        .map_err(|e| CodecError(e.to_string()))?;
    if used != bytes.len() {
        return Err(CodecError(format!(
            "{} trailing bytes after a value",
            bytes.len() - used
        )));
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Value;

    fn round<T: Serialize + DeserializeOwned + 'static + PartialEq + std::fmt::Debug + Clone>(
        v: &[T],
        format: u8,
    ) {
        let mut buf = vec![];
        encode(v, &mut buf).unwrap();
        assert_eq!(buf[0], format, "format of {v:?}");
        assert_eq!(decode::<T>(&buf).unwrap(), v.to_vec());
    }

    #[test]
    fn batches_round_trip_in_their_format() {
        round(&[1.5f64, -2.0, f64::MAX, f64::NAN.abs().min(0.0)], 1);
        round(&[i64::MIN, 0, 7], 2);
        round(&[u64::MAX, 1], 3);
        round(&[1.5f32], 4);
        round(&[-3i32], 5);
        round(&[3u32], 6);
        round::<f64>(&[], 1);
        round(&[Value::Float(0.5), Value::Float(-1e300)], VALUE_F64);
        round(&[Value::Int(-5), Value::Int(i64::MAX)], VALUE_I64);
        round(&[Value::Null, Value::Int(3), Value::Str("x".into())], SERDE);
        round(&[Value::Int(3), Value::Float(3.0)], SERDE);
        round::<Value>(&[], SERDE);
        round(&["a".to_string()], SERDE);
        round(&[(1u8, true)], SERDE);
        // Strings anywhere in a value (read as lent `str`s, copied once), large and not ASCII.
        let big = "x\u{e9}\u{1F600}".repeat(100_000);
        let map = Value::Map([("k\u{e9}".to_string(), Value::Str(big.clone()))].into());
        round(
            &[
                Value::Str(big),
                Value::Array(vec![map, Value::Str(String::new())]),
            ],
            SERDE,
        );
    }

    /// The encoding of `batch` into a window of `extra` bytes more than it needs, split into
    /// two parts at `split`; None when it did not fit.
    fn in_window<T: Serialize + 'static>(batch: &[T], len: usize, split: usize) -> Option<Vec<u8>> {
        let mut mem = vec![0xAAu8; len];
        let (a, b) = mem.split_at_mut(split.min(len));
        let mut w = Window::new(a, b);
        if !encode_into(batch, &mut w).unwrap() {
            return None;
        }
        let n = w.written();
        mem.truncate(n);
        Some(mem)
    }

    fn same_in_every_window<T: Serialize + 'static>(batch: &[T]) {
        let mut want = vec![];
        encode(batch, &mut want).unwrap();
        let n = want.len();
        for split in [0, 1, 2, 5, 9, n / 2, n.saturating_sub(1), n] {
            assert_eq!(
                in_window(batch, n, split).as_ref(),
                Some(&want),
                "split {split}"
            );
            assert_eq!(
                in_window(batch, n + 7, split).as_ref(),
                Some(&want),
                "split {split}"
            );
            assert_eq!(in_window(batch, n - 1, split), None, "split {split}");
        }
    }

    #[test]
    fn a_window_holds_the_bytes_a_vector_would_wherever_it_is_split() {
        same_in_every_window(&(0..100).map(|i| i as f64).collect::<Vec<_>>());
        same_in_every_window(&[3u32, 4]);
        same_in_every_window(&(0..100).map(|i| Value::Float(i as f64)).collect::<Vec<_>>());
        same_in_every_window(&(0..100).map(Value::Int).collect::<Vec<_>>());
        // Numbers first, then a string: the raw attempt is undone, the generic format follows.
        let mut mixed: Vec<Value> = (0..70).map(Value::Int).collect();
        mixed.push(Value::Str("s\u{e9}".repeat(50)));
        same_in_every_window(&mixed);
        same_in_every_window(&[Value::Str("x".repeat(10_000)), Value::Null]);
        same_in_every_window(&["a".to_string()]);
        // An empty window holds nothing, not even the format byte.
        assert_eq!(in_window(&[1.0f64], 0, 0), None);
        // A batch too large for its window is sized first, not half written.
        let big = vec![Value::Str("y".repeat(4096)); 8];
        let mut mem = vec![0u8; 10_000];
        let (a, b) = mem.split_at_mut(6000);
        let mut w = Window::new(a, b);
        assert!(!encode_into(&big, &mut w).unwrap());
        assert_eq!(w.written(), 0);
        assert!(mem.iter().all(|&x| x == 0), "nothing written");
    }

    #[test]
    fn a_string_that_is_not_utf8_is_an_error() {
        let mut buf = vec![];
        encode(&[Value::Str("ab".into())], &mut buf).unwrap();
        let last = buf.len() - 1;
        buf[last] = 0xff;
        let e = decode::<Value>(&buf).unwrap_err().to_string();
        assert!(e.contains("not UTF-8"), "{e}");
    }

    #[test]
    fn raw_numbers_need_no_serialization() {
        let v: Vec<f64> = (0..1000).map(|i| i as f64).collect();
        let mut buf = vec![];
        encode(&v, &mut buf).unwrap();
        assert_eq!(buf.len(), 1 + 8 * 1000);
    }

    #[test]
    fn garbage_and_mismatches_are_errors_not_panics() {
        assert!(decode::<Value>(&[0, 0xff, 0xff, 0xff]).is_err());
        assert!(decode::<Value>(&[]).is_err());
        assert!(decode::<Value>(&[99]).is_err());
        let mut buf = vec![];
        encode(&[1.0f64], &mut buf).unwrap();
        assert!(decode::<i64>(&buf).is_err());
        assert!(decode::<f64>(&buf[..5]).is_err());
        assert!(decode::<Value>(&[VALUE_F64, 1, 2, 3]).is_err());
    }

    #[test]
    fn values_round_trip_and_trailing_bytes_are_an_error() {
        let x = (3u64, Some(Value::Str("s".into())), vec![1.5f64]);
        let b = to_bytes(&x).unwrap();
        assert_eq!(from_bytes::<(u64, Option<Value>, Vec<f64>)>(&b).unwrap(), x);
        let mut b2 = b.clone();
        b2.push(0);
        assert!(from_bytes::<(u64, Option<Value>, Vec<f64>)>(&b2).is_err());
    }
}
