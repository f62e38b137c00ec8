//! The wire format of batches between processes (bincode 2 over serde), in one place so it
//! can be swapped.

use serde::de::DeserializeOwned;
use serde::Serialize;

/// A batch that could not be encoded or decoded.
#[derive(Debug, thiserror::Error)]
#[error("wire format: {0}")]
pub struct CodecError(String);

fn config() -> bincode::config::Configuration {
    bincode::config::standard()
}

/// Appends the encoding of `batch` to `out`.
pub fn encode<T: Serialize>(batch: &[T], out: &mut Vec<u8>) -> Result<(), CodecError> {
    let bytes =
        bincode::serde::encode_to_vec(batch, config()).map_err(|e| CodecError(e.to_string()))?;
    out.extend_from_slice(&bytes);
    Ok(())
}

/// Decodes a batch encoded by [`encode`].
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<Vec<T>, CodecError> {
    let (v, used): (Vec<T>, usize) = bincode::serde::decode_from_slice(bytes, config())
        .map_err(|e| CodecError(e.to_string()))?;
    if used != bytes.len() {
        return Err(CodecError(format!(
            "{} trailing bytes after a batch",
            bytes.len() - used
        )));
    }
    Ok(v)
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

    #[test]
    fn batches_round_trip() {
        let mut buf = vec![];
        encode(&[1.5f64, -2.0, f64::MAX], &mut buf).unwrap();
        assert_eq!(decode::<f64>(&buf).unwrap(), vec![1.5, -2.0, f64::MAX]);
        let vals = vec![Value::Null, Value::Int(3), Value::Str("x".into())];
        let mut buf = vec![];
        encode(&vals, &mut buf).unwrap();
        assert_eq!(decode::<Value>(&buf).unwrap(), vals);
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

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(decode::<Value>(&[0xff, 0xff, 0xff]).is_err());
    }
}
