//! Conversions between `Value` and Rhai's `Dynamic`, and the result shapes (`Out`, split, stateful).

use rhai::{Array, Dynamic, ImmutableString, Map};

use super::engine::{MultiValue, Null};
use crate::Value;

/// What one script result emits: nothing (`()`), one element, or several (`multivalue`).
#[derive(Clone, Debug, PartialEq)]
pub enum Out {
    /// `()`: emit nothing (IoTPy's `_no_value`).
    Nothing,
    /// A value: emit it.
    One(Value),
    /// `multivalue([a, b, ...])`: emit each entry as its own element.
    Many(Vec<Value>),
}

impl Out {
    /// The emitted elements, in order.
    pub fn into_vec(self) -> Vec<Value> {
        match self {
            Out::Nothing => Vec::new(),
            Out::One(v) => vec![v],
            Out::Many(vs) => vs,
        }
    }

    /// Appends the emitted elements to `out`.
    pub fn extend_into(self, out: &mut Vec<Value>) {
        match self {
            Out::Nothing => {}
            Out::One(v) => out.push(v),
            Out::Many(vs) => out.extend(vs),
        }
    }
}

/// The script-facing name of a Rhai value's type (`i64`, `string`, `array`, `null`, ...).
pub fn type_name_of(d: &Dynamic) -> &'static str {
    if d.is_unit() {
        "()"
    } else if d.is_int() {
        "i64"
    } else if d.is_float() {
        "f64"
    } else if d.is_bool() {
        "bool"
    } else if d.is_string() {
        "string"
    } else if d.is_char() {
        "char"
    } else if d.is_array() {
        "array"
    } else if d.is_map() {
        "map"
    } else if d.is_blob() {
        "blob"
    } else if d.is::<Null>() {
        "null"
    } else if d.is::<MultiValue>() {
        "multivalue"
    } else if d.is_fnptr() {
        "Fn"
    } else if d.is_timestamp() {
        "timestamp"
    } else if d.is::<std::ops::Range<i64>>() || d.is::<std::ops::RangeInclusive<i64>>() {
        "range"
    } else {
        "an unsupported type"
    }
}

/// Converts a value into a Rhai value (null becomes `NULL`, maps become object maps).
pub fn to_dynamic(v: &Value) -> Dynamic {
    match v {
        Value::Null => Dynamic::from(Null),
        Value::Bool(b) => Dynamic::from_bool(*b),
        Value::Int(i) => Dynamic::from_int(*i),
        Value::Float(f) => Dynamic::from_float(*f),
        Value::Str(s) => Dynamic::from(ImmutableString::from(s.as_str())),
        Value::Array(a) => Dynamic::from_array(a.iter().map(to_dynamic).collect::<Array>()),
        Value::Map(m) => Dynamic::from_map(
            m.iter()
                .map(|(k, v)| (k.as_str().into(), to_dynamic(v)))
                .collect::<Map>(),
        ),
    }
}

/// Converts a Rhai value into a value; `()`, `multivalue` and other Rhai-only types are errors.
pub fn from_dynamic(d: Dynamic) -> Result<Value, String> {
    let d = if d.is_shared() { d.flatten() } else { d };
    if let Ok(i) = d.as_int() {
        return Ok(Value::Int(i));
    }
    if let Ok(f) = d.as_float() {
        return Ok(Value::Float(f));
    }
    if let Ok(b) = d.as_bool() {
        return Ok(Value::Bool(b));
    }
    if d.is_unit() {
        return Err("() inside a value".into());
    }
    if d.is_string() {
        return Ok(Value::Str(d.into_string().unwrap_or_default()));
    }
    if let Ok(c) = d.as_char() {
        return Ok(Value::Str(c.to_string()));
    }
    if d.is::<Null>() {
        return Ok(Value::Null);
    }
    if d.is_array() {
        let a = d.into_array().unwrap_or_default();
        return a
            .into_iter()
            .map(from_dynamic)
            .collect::<Result<_, _>>()
            .map(Value::Array);
    }
    if d.is_map() {
        let m = d.cast::<Map>();
        return m
            .into_iter()
            .map(|(k, v)| from_dynamic(v).map(|v| (k.to_string(), v)))
            .collect::<Result<_, _>>()
            .map(Value::Map);
    }
    if d.is_blob() {
        let b = d.into_blob().unwrap_or_default();
        return Ok(Value::Array(
            b.into_iter().map(|x| Value::Int(i64::from(x))).collect(),
        ));
    }
    if d.is::<MultiValue>() {
        return Err(
            "multivalue(...) inside a value (only a whole result or a result slot may be one)"
                .into(),
        );
    }
    Err(format!(
        "a script value of type {} cannot be emitted",
        d.type_name()
    ))
}

/// Converts a whole result: `()` emits nothing, `multivalue` several, anything else one value.
pub fn to_out(d: Dynamic) -> Result<Out, String> {
    if d.is_unit() {
        return Ok(Out::Nothing);
    }
    if d.is::<MultiValue>() {
        let MultiValue(entries) = d.cast::<MultiValue>();
        return entries
            .into_iter()
            .map(|e| from_dynamic(e).map_err(|m| format!("in multivalue: {m}")))
            .collect::<Result<_, _>>()
            .map(Out::Many);
    }
    from_dynamic(d).map(Out::One)
}

/// Takes an array result apart: each entry is its own `Out`; `n` is the required length, if any.
pub fn split_entries(d: Dynamic, n: Option<usize>) -> Result<Vec<Out>, String> {
    let type_name = type_name_of(&d);
    let Ok(entries) = d.into_array() else {
        return Err(match n {
            Some(n) => format!("expected an array of {n} entries, got {type_name}"),
            None => format!("expected an array, got {type_name}"),
        });
    };
    if let Some(n) = n {
        if entries.len() != n {
            return Err(format!(
                "expected an array of {n} entries, got {} entries",
                entries.len()
            ));
        }
    }
    entries
        .into_iter()
        .enumerate()
        .map(|(i, e)| to_out(e).map_err(|m| format!("entry {i}: {m}")))
        .collect()
}

/// Takes a stateful result `[output, next_state]` apart (the output may be `()` or multivalue).
pub fn stateful_parts(d: Dynamic) -> Result<(Out, Value), String> {
    let type_name = type_name_of(&d);
    let Ok(mut entries) = d.into_array() else {
        return Err(format!(
            "a stateful fn must return [output, next_state], got {type_name}"
        ));
    };
    if entries.len() != 2 {
        return Err(format!(
            "a stateful fn must return [output, next_state], got an array of {} entries",
            entries.len()
        ));
    }
    let state = entries.pop().unwrap_or_default();
    let output = entries.pop().unwrap_or_default();
    let state = from_dynamic(state).map_err(|m| format!("next_state: {m}"))?;
    let output = to_out(output).map_err(|m| format!("output: {m}"))?;
    Ok((output, state))
}
