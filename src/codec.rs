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
    bincode::serde::encode_into_std_write(batch, out, config())
        .map(drop)
        .map_err(|e| CodecError(e.to_string()))
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
    fn garbage_is_an_error_not_a_panic() {
        assert!(decode::<Value>(&[0xff, 0xff, 0xff]).is_err());
    }
}
