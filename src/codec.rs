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

/// Appends `tag` and the 8 bytes `num` gives for each of `values`, in one pass; at the first
/// value it gives none for, undoes that and returns false.
#[inline(always)]
fn raw(
    values: &[Value],
    tag: u8,
    out: &mut Vec<u8>,
    num: impl Fn(&Value) -> Option<[u8; 8]>,
) -> bool {
    let start = out.len();
    out.resize(start + 1 + values.len() * 8, 0);
    out[start] = tag;
    for (c, v) in out[start + 1..].chunks_exact_mut(8).zip(values) {
        match num(v) {
            Some(b) => c.copy_from_slice(&b),
            None => {
                out.truncate(start);
                return false;
            }
        }
    }
    true
}

/// Appends the encoding of `batch` to `out`.
pub fn encode<T: Serialize + 'static>(batch: &[T], out: &mut Vec<u8>) -> Result<(), CodecError> {
    if let Some((tag, _)) = primitive::<T>() {
        out.push(tag);
        // SAFETY: `primitive` only matches plain number types.
        out.extend_from_slice(unsafe { bytes_of(batch) });
        return Ok(());
    }
    if TypeId::of::<T>() == TypeId::of::<Value>() && !batch.is_empty() {
        // SAFETY: T is Value (checked just above), so the slice is a slice of Values.
        let values =
            unsafe { std::slice::from_raw_parts(batch.as_ptr() as *const Value, batch.len()) };
        let float = |v: &Value| match v {
            Value::Float(f) => Some(f.to_ne_bytes()),
            _ => None,
        };
        let int = |v: &Value| match v {
            Value::Int(i) => Some(i.to_ne_bytes()),
            _ => None,
        };
        if raw(values, VALUE_F64, out, float) || raw(values, VALUE_I64, out, int) {
            return Ok(());
        }
    }
    out.push(SERDE);
    bincode::serde::encode_into_std_write(batch, out, config())
        .map_err(|e| CodecError(e.to_string()))?;
    Ok(())
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

    #[test]
    fn a_string_that_is_not_utf8_is_an_error() {
        let mut buf = vec![];
        encode(&[Value::Str("ab".into())], &mut buf).unwrap();
        let last = buf.len() - 1;
        buf[last] = 0xff;
        let e = decode::<Value>(&buf).unwrap_err().to_string();
        assert!(e.contains("Utf8"), "{e}");
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
