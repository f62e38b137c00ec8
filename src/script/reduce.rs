//! Array reducers shared by scripts and the built-in `agg`: `sum`, `mean`, `std`, `min`, `max`.

use rhai::Dynamic;

use crate::Value;

/// A number read from an array entry: an i64 or an f64.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Number {
    /// An integer.
    Int(i64),
    /// A float.
    Float(f64),
}

impl Number {
    /// The number widened to f64.
    pub fn as_f64(self) -> f64 {
        match self {
            Number::Int(i) => i as f64,
            Number::Float(f) => f,
        }
    }
}

impl From<Number> for Value {
    fn from(n: Number) -> Value {
        match n {
            Number::Int(i) => Value::Int(i),
            Number::Float(f) => Value::Float(f),
        }
    }
}

impl Number {
    /// The number as a Rhai value (INT or FLOAT).
    pub fn into_dynamic(self) -> Dynamic {
        match self {
            Number::Int(i) => Dynamic::from_int(i),
            Number::Float(f) => Dynamic::from_float(f),
        }
    }
}

/// Something a reducer can read as a number (a `Value` or a Rhai `Dynamic`).
pub trait AsNumber {
    /// The number, or `None` when the entry is not a number.
    fn number(&self) -> Option<Number>;
    /// The entry's type name, for error messages.
    fn kind(&self) -> String;
}

impl AsNumber for Value {
    fn number(&self) -> Option<Number> {
        match self {
            Value::Int(i) => Some(Number::Int(*i)),
            Value::Float(f) => Some(Number::Float(*f)),
            _ => None,
        }
    }
    fn kind(&self) -> String {
        self.type_name().to_string()
    }
}

impl AsNumber for Dynamic {
    fn number(&self) -> Option<Number> {
        if let Ok(i) = self.as_int() {
            Some(Number::Int(i))
        } else if let Ok(f) = self.as_float() {
            Some(Number::Float(f))
        } else {
            None
        }
    }
    fn kind(&self) -> String {
        self.type_name().to_string()
    }
}

/// Reads every entry as a number; the error names the first entry that is not one.
fn numbers<T: AsNumber>(what: &str, xs: &[T]) -> Result<Vec<Number>, String> {
    xs.iter()
        .enumerate()
        .map(|(i, x)| {
            x.number()
                .ok_or_else(|| format!("{what}: entry {i} is {}, not a number", x.kind()))
        })
        .collect()
}

/// Sum: an integer when every entry is an integer (overflow is an error), else a float.
pub fn sum<T: AsNumber>(xs: &[T]) -> Result<Number, String> {
    let ns = numbers("sum", xs)?;
    if ns.iter().any(|n| matches!(n, Number::Float(_))) {
        return Ok(Number::Float(ns.iter().map(|n| n.as_f64()).sum()));
    }
    let mut acc: i64 = 0;
    for n in ns {
        let Number::Int(i) = n else { unreachable!() };
        acc = acc
            .checked_add(i)
            .ok_or_else(|| format!("Addition overflow in sum: {acc} + {i}"))?;
    }
    Ok(Number::Int(acc))
}

/// Arithmetic mean as a float; an empty array is an error.
pub fn mean<T: AsNumber>(xs: &[T]) -> Result<f64, String> {
    let ns = numbers("mean", xs)?;
    if ns.is_empty() {
        return Err("mean of an empty array".into());
    }
    Ok(ns.iter().map(|n| n.as_f64()).sum::<f64>() / ns.len() as f64)
}

/// Population standard deviation as a float; an empty array is an error.
pub fn std<T: AsNumber>(xs: &[T]) -> Result<f64, String> {
    let ns = numbers("std", xs)?;
    if ns.is_empty() {
        return Err("std of an empty array".into());
    }
    let n = ns.len() as f64;
    let m = ns.iter().map(|n| n.as_f64()).sum::<f64>() / n;
    let var = ns
        .iter()
        .map(|x| {
            let d = x.as_f64() - m;
            d * d
        })
        .sum::<f64>()
        / n;
    Ok(var.sqrt())
}

/// True when `a` is strictly less than `b`, comparing integers exactly and mixed pairs as f64.
fn less(a: Number, b: Number) -> bool {
    match (a, b) {
        (Number::Int(x), Number::Int(y)) => x < y,
        _ => a.as_f64() < b.as_f64(),
    }
}

/// Index of the smallest entry (the first one on ties); an empty array is an error.
pub fn argmin<T: AsNumber>(xs: &[T]) -> Result<usize, String> {
    pick("min", xs, less)
}

/// Index of the largest entry (the first one on ties); an empty array is an error.
pub fn argmax<T: AsNumber>(xs: &[T]) -> Result<usize, String> {
    pick("max", xs, |cand, best| less(best, cand))
}

/// Index of the entry preferred by `better(candidate, best)`.
fn pick<T: AsNumber>(
    what: &str,
    xs: &[T],
    better: impl Fn(Number, Number) -> bool,
) -> Result<usize, String> {
    let ns = numbers(what, xs)?;
    let Some(&first) = ns.first() else {
        return Err(format!("{what} of an empty array"));
    };
    let mut best = (0, first);
    for (i, &n) in ns.iter().enumerate().skip(1) {
        if better(n, best.1) {
            best = (i, n);
        }
    }
    Ok(best.0)
}
