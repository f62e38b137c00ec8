//! One builder per `op` kind: the manifest's keys and `fn` turned into calls of the Rust API.

use crate::emit::Emit;
use crate::manifest::build::{typecheck, BuildError, Func};
use crate::manifest::schema::{Format as MFormat, StreamType};
use crate::manifest::schema::{Manifest, OperatorDecl};
use crate::manifest::script_ops::ScriptBatch;
use crate::operator::exec::{ExecCommand, ExecSink};
use crate::operator::sink::WriteSink;
use crate::operator::source::{FileSource, Format, IterSource, OnError, SourceFn, TypeCheck};
use crate::operator::timed::Timed;
use crate::operator::window::{self, Count};
use crate::operator::OpError;
use crate::pipeline::{Graph, Stream};
use crate::recovery::{SkipWritten, Slot};
use crate::registry::Registry;
use crate::Value;

/// A window function: a script or a built-in reducer.
type Reducer = Box<dyn FnMut(&[Value]) -> Result<Emit<Value>, OpError> + Send>;

fn bad(d: &OperatorDecl, message: impl Into<String>) -> BuildError {
    BuildError::Operator {
        operator: d.name.clone(),
        message: message.into(),
    }
}

fn func(m: &Manifest, d: &OperatorDecl) -> Result<Func, BuildError> {
    Func::of(m, d)?.ok_or_else(|| bad(d, "needs `fn`"))
}

/// A source's values checked against the type of the stream it feeds.
fn typed_values(
    m: &Manifest,
    d: &OperatorDecl,
    vals: Vec<Value>,
) -> Result<Vec<Value>, BuildError> {
    let ty = m.stream(&d.outputs[0]).ty;
    vals.into_iter()
        .enumerate()
        .map(|(i, v)| typecheck(ty, v).map_err(|e| bad(d, format!("value {}: {e}", i + 1))))
        .collect()
}

/// Adds the operator `d` reading `inputs`; returns its output streams in `out` order. Kinds
/// that are not built in come from `reg`.
pub fn build_op(
    g: &mut Graph,
    m: &Manifest,
    d: &OperatorDecl,
    inputs: &[Stream<Value>],
    reg: &Registry,
    slot: Option<Slot>,
) -> Result<Vec<Stream<Value>>, BuildError> {
    let one = |s: Stream<Value>| Ok(vec![s]);
    match d.kind.as_str() {
        "source.list" => {
            let vals = d
                .get_array("values")
                .map(|a| a.to_vec())
                .unwrap_or_default();
            let vals = typed_values(m, d, vals)?;
            let src = IterSource::new(vals.into_iter());
            one(g.source_paced_clocked("source.list", src, d.interval(), slot))
        }
        "source.range" => {
            let start = d.get_i64("start").unwrap_or(0);
            let end = d.get_i64("end").unwrap_or(0);
            let step = d.get_i64("step").unwrap_or(1);
            let it = RangeIter {
                next: start,
                end,
                step,
            };
            let src = IterSource::new(it.map(Value::Int));
            one(g.source_paced_clocked("source.range", src, d.interval(), slot))
        }
        "map_element" | "filter_element" if d.state.is_none() => {
            let (f, file) = func(m, d)?.into_parts();
            let filter = d.kind == "filter_element";
            one(g.add_unary(&d.kind, ScriptBatch::new(f, file, filter), &[&inputs[0]]))
        }
        "map_element" => {
            let mut f = func(m, d)?;
            one(g.try_map_element(&inputs[0], move |x: Value| {
                let mut b = vec![("x", x)];
                f.call(&mut b)
            }))
        }
        "filter_element" => {
            let mut f = func(m, d)?;
            one(g.try_filter_element(&inputs[0], move |x: &Value| f.call_filter(x)))
        }
        "sink_element" => {
            let mut f = func(m, d)?;
            g.try_sink_element(&inputs[0], move |x: Value| {
                let mut b = vec![("x", x)];
                f.call_sink(&mut b)
            });
            Ok(vec![])
        }
        "sink.null" => {
            g.sink_element(&inputs[0], |_x: Value| {});
            Ok(vec![])
        }
        "copy" => Ok(g.copy(&inputs[0], d.outputs.len())),
        "prepend" => {
            let vals = d
                .get_array("values")
                .map(|a| a.to_vec())
                .unwrap_or_default();
            one(g.prepend(&inputs[0], vals))
        }
        "exponential_smoothing" => {
            let alpha = d.get_f64("alpha").unwrap_or(0.0);
            let mut s = d.state.as_ref().and_then(Value::as_f64).unwrap_or(0.0);
            one(g.try_map_element(&inputs[0], move |x: Value| {
                let v = x.as_f64().ok_or_else(|| {
                    OpError::new(format!("expected a number, got {x}")).with_element(&x)
                })?;
                s = alpha * s + (1.0 - alpha) * v;
                Ok(Emit::One(Value::Float(s)))
            }))
        }
        "source_fn" => {
            let count = d.get_usize("count").unwrap_or(usize::MAX);
            let mut f = func(m, d)?;
            let ty = m.stream(&d.outputs[0]).ty;
            let name = d.name.clone();
            let src = SourceFn::new(count, move |i| {
                let mut b = vec![("x", Value::Int(i as i64))];
                let e = f.call(&mut b)?;
                check_emit(ty, e, &name)
            });
            one(g.source_paced_clocked("source_fn", src, d.interval(), slot))
        }
        "source.file" | "source.stdin" => {
            let (on_error, tc) = line_checks(m, d);
            let src = match d.kind.as_str() {
                "source.file" => {
                    let path = m.resolve(d.get_str("path").unwrap_or_default());
                    FileSource::new(path, src_format(d), on_error, tc)
                }
                _ => FileSource::stdin(src_format(d), on_error, tc),
            };
            one(g.source_paced_clocked(&d.kind, src, d.interval(), slot))
        }
        "source.exec" => {
            let (on_error, tc) = line_checks(m, d);
            one(g.source_exec(exec_command(m, d), on_error, tc, d.interval()))
        }
        "sink.exec" => {
            let sink = ExecSink::new(exec_command(m, d));
            match slot {
                Some(s) => g.add_sink("sink.exec", SkipWritten::new(sink, s), &[&inputs[0]]),
                None => g.add_sink("sink.exec", sink, &[&inputs[0]]),
            }
            Ok(vec![])
        }
        "sink.file" => {
            let path = m.resolve(d.get_str("path").unwrap_or_default());
            g.sink_file(&inputs[0], path, sink_format(d));
            Ok(vec![])
        }
        "sink.stdout" => {
            let sink = WriteSink::stdout(sink_format(d));
            match slot {
                Some(s) => g.add_sink("sink.stdout", SkipWritten::new(sink, s), &[&inputs[0]]),
                None => g.add_sink("sink.stdout", sink, &[&inputs[0]]),
            }
            Ok(vec![])
        }
        "map_list" => {
            let mut f = func(m, d)?;
            one(g.try_map_list(&inputs[0], move |b: &[Value]| {
                let mut bind = vec![("batch", Value::Array(b.to_vec()))];
                spliced(f.call(&mut bind)?)
            }))
        }
        "sink_list" => {
            let mut f = func(m, d)?;
            g.try_sink_list(&inputs[0], move |b: &[Value]| {
                let mut bind = vec![("batch", Value::Array(b.to_vec()))];
                f.call_sink(&mut bind)
            });
            Ok(vec![])
        }
        "map_window" | "map_window_list" | "sliding_window_with_startup" => {
            let c = count(d)?;
            let list = d.kind == "map_window_list";
            let mut red: Reducer = match d.agg() {
                Some(a) => {
                    let a = agg_of(a);
                    Box::new(move |w: &[Value]| a.reduce(w).map(Emit::One))
                }
                None => {
                    let mut f = func(m, d)?;
                    Box::new(move |w: &[Value]| {
                        let mut b = vec![("window", Value::Array(w.to_vec()))];
                        let e = f.call(&mut b)?;
                        if list {
                            Ok(Emit::Many(spliced(e)?))
                        } else {
                            Ok(e)
                        }
                    })
                }
            };
            if d.kind == "sliding_window_with_startup" {
                one(g.try_sliding_window_with_startup(&inputs[0], c, move |w: &[Value]| red(w)))
            } else {
                let init = d.get("initial_value").cloned();
                one(g.try_map_window_initial(&inputs[0], c, init, move |w: &[Value]| red(w)))
            }
        }
        "sink_window" => {
            let c = count(d)?;
            let mut f = func(m, d)?;
            g.try_sink_window(&inputs[0], c, move |w: &[Value]| {
                let mut b = vec![("window", Value::Array(w.to_vec()))];
                f.call_sink(&mut b)
            });
            Ok(vec![])
        }
        "split_window" => {
            let c = count(d)?;
            let mut f = func(m, d)?;
            let n = d.outputs.len();
            Ok(g.try_split_window(&inputs[0], c, n, move |w: &[Value]| {
                let mut b = vec![("window", Value::Array(w.to_vec()))];
                f.call_split(&mut b, n)
            }))
        }
        "merge_window" | "multi_window" => {
            let n_in = inputs.len();
            let ws = d.get_usize_per_input("window", n_in).unwrap_or_default();
            let ss = d
                .get_usize_per_input("step", n_in)
                .unwrap_or_else(|| vec![1; n_in]);
            let counts: Vec<Count> = ws
                .iter()
                .zip(&ss)
                .map(|(w, s)| Count::new(*w, *s))
                .collect();
            let refs: Vec<&Stream<Value>> = inputs.iter().collect();
            let mut f = func(m, d)?;
            if d.kind == "merge_window" {
                one(g.try_merge_window(&refs, &counts, move |ws: &[&[Value]]| {
                    let mut b = vec![("windows", windows_value(ws))];
                    f.call(&mut b)
                }))
            } else {
                let n = d.outputs.len();
                Ok(
                    g.try_multi_window(&refs, &counts, n, move |ws: &[&[Value]]| {
                        let mut b = vec![("windows", windows_value(ws))];
                        f.call_split(&mut b, n)
                    }),
                )
            }
        }
        "timed_window" => {
            let num = |k: &str| d.get(k).and_then(Value::as_f64);
            let integer = ["duration", "step", "start"]
                .iter()
                .all(|k| d.get(k).map(|v| matches!(v, Value::Int(_))).unwrap_or(true));
            let duration = num("duration").unwrap_or(1.0);
            let p = Timed {
                duration,
                step: num("step").unwrap_or(duration),
                start: num("start").unwrap_or(0.0),
                flush: d.get_bool("flush").unwrap_or(false),
                integer,
            };
            match d.agg() {
                Some(a) => one(g.timed_window_agg_value(&inputs[0], p, agg_of(a))),
                None => {
                    let mut f = func(m, d)?;
                    one(g.try_timed_window_value(&inputs[0], p, move |w: &[Value]| {
                        let mut b = vec![("window", Value::Array(w.to_vec()))];
                        f.call(&mut b)
                    }))
                }
            }
        }
        "zip_map" => {
            let refs: Vec<&Stream<Value>> = inputs.iter().collect();
            let mut f = func(m, d)?;
            one(g.try_zip_map(&refs, move |xs: Vec<Value>| {
                let mut b = vec![("xs", Value::Array(xs))];
                f.call(&mut b)
            }))
        }
        "zip_stream" => {
            let refs: Vec<&Stream<Value>> = inputs.iter().collect();
            one(g.zip_stream_values(&refs))
        }
        "merge_list" => {
            let refs: Vec<&Stream<Value>> = inputs.iter().collect();
            let mut f = func(m, d)?;
            one(g.try_merge_list(&refs, move |bs: Vec<Vec<Value>>| {
                let arr = Value::Array(bs.into_iter().map(Value::Array).collect());
                let mut b = vec![("batches", arr)];
                spliced(f.call(&mut b)?)
            }))
        }
        "timed_zip" => {
            let refs: Vec<&Stream<Value>> = inputs.iter().collect();
            one(g.timed_zip(&refs))
        }
        "timed_mix" => {
            let refs: Vec<&Stream<Value>> = inputs.iter().collect();
            one(g.timed_mix(&refs))
        }
        "merge_asynch" | "blend" => {
            let refs: Vec<&Stream<Value>> = inputs.iter().collect();
            let mut f = func(m, d)?;
            one(g.try_merge_asynch(&refs, move |i: usize, x: Value| {
                let mut b = vec![("x", x), ("i", Value::Int(i as i64))];
                f.call(&mut b)
            }))
        }
        "mix" => {
            let refs: Vec<&Stream<Value>> = inputs.iter().collect();
            one(g.mix_values(&refs))
        }
        "weave" => {
            let refs: Vec<&Stream<Value>> = inputs.iter().collect();
            one(g.weave(&refs))
        }
        "split_element" => {
            let mut f = func(m, d)?;
            let n = d.outputs.len();
            Ok(g.try_split_element(&inputs[0], n, move |x: Value| {
                let mut b = vec![("x", x)];
                f.call_split(&mut b, n)
            }))
        }
        "unzip" => Ok(g.unzip(&inputs[0], d.outputs.len())),
        "separate" => Ok(g.separate(&inputs[0], d.outputs.len())),
        "timed_unzip" => Ok(g.timed_unzip::<Value>(&inputs[0], d.outputs.len())),
        "multi_element" => {
            let refs: Vec<&Stream<Value>> = inputs.iter().collect();
            let mut f = func(m, d)?;
            let n = d.outputs.len();
            Ok(g.try_multi_element(&refs, n, move |xs: Vec<Value>| {
                let mut b = vec![("xs", Value::Array(xs))];
                f.call_split(&mut b, n)
            }))
        }
        "add" | "sub" | "mul" | "div" | "lt" | "le" | "eq" | "ne" | "gt" | "ge" => {
            let (a, b) = (&inputs[0], &inputs[1]);
            one(match d.kind.as_str() {
                "add" => g.add(a, b),
                "sub" => g.sub(a, b),
                "mul" => g.mul(a, b),
                "div" => g.div(a, b),
                k => {
                    let k = k.to_string();
                    g.try_zip_map(&[a, b], move |xs: Vec<Value>| {
                        compare(&k, &xs[0], &xs[1]).map(|r| Emit::One(Value::Bool(r)))
                    })
                }
            })
        }
        other => match reg.builder(other) {
            Some(b) => b(g, d, inputs),
            None => Err(bad(d, format!("the kind `{other}` is not built yet"))),
        },
    }
}

/// `source.range`: integers from `start` (inclusive) to `end` (exclusive) by `step`.
struct RangeIter {
    next: i64,
    end: i64,
    step: i64,
}

impl Iterator for RangeIter {
    type Item = i64;
    fn next(&mut self) -> Option<i64> {
        let more = if self.step > 0 {
            self.next < self.end
        } else {
            self.next > self.end
        };
        if !more {
            return None;
        }
        let v = self.next;
        match self.next.checked_add(self.step) {
            Some(n) => self.next = n,
            None => self.next = self.end,
        }
        Some(v)
    }
}

/// A script result spliced into the output: an array gives its entries.
fn spliced(e: Emit<Value>) -> Result<Vec<Value>, OpError> {
    match e {
        Emit::Skip => Ok(vec![]),
        Emit::One(Value::Array(a)) => Ok(a),
        Emit::Many(v) => Ok(v),
        Emit::One(other) => Err(OpError::new(format!(
            "expected an array to splice, got {other}"
        ))),
    }
}

fn windows_value(ws: &[&[Value]]) -> Value {
    Value::Array(ws.iter().map(|w| Value::Array(w.to_vec())).collect())
}

fn count(d: &OperatorDecl) -> Result<Count, BuildError> {
    let w = d
        .get_usize("window")
        .ok_or_else(|| bad(d, "needs `window`"))?;
    let s = d.get_usize("step").unwrap_or(1);
    let c = Count::new(w, s);
    Ok(if d.get_bool("flush").unwrap_or(false) {
        c.flushed()
    } else {
        c
    })
}

/// What a bad input line of the source's stream does, and its type check.
fn line_checks(m: &Manifest, d: &OperatorDecl) -> (OnError, Option<TypeCheck>) {
    let sd = m.stream(&d.outputs[0]);
    let on_error = match sd.on_error {
        crate::manifest::schema::OnError::Fail => OnError::Fail,
        crate::manifest::schema::OnError::Skip => OnError::Skip,
    };
    (on_error, type_check_fn(sd.ty))
}

/// The `command` of an exec operator: run in the manifest's directory, with relative paths
/// that name an existing file there resolved against it.
fn exec_command(m: &Manifest, d: &OperatorDecl) -> ExecCommand {
    let written = d.get_strings("command").unwrap_or_default();
    // Absolute, since the command runs in this directory.
    let dir = std::path::absolute(&m.dir).unwrap_or_else(|_| m.dir.clone());
    let argv = written
        .iter()
        .map(|a| {
            let p = std::path::Path::new(a);
            let r = dir.join(p);
            if !p.is_absolute() && !a.is_empty() && r.is_file() {
                r.to_string_lossy().into_owned()
            } else {
                a.clone()
            }
        })
        .collect();
    ExecCommand {
        argv,
        dir: Some(dir),
        label: written.join(" "),
    }
}

fn src_format(d: &OperatorDecl) -> Format {
    match d.effective_format() {
        MFormat::Lines => Format::Lines,
        MFormat::Jsonl => Format::Jsonl,
        MFormat::Csv => Format::Csv,
    }
}

fn sink_format(d: &OperatorDecl) -> Format {
    match d.format_or(MFormat::Jsonl) {
        MFormat::Lines => Format::Lines,
        MFormat::Jsonl => Format::Jsonl,
        MFormat::Csv => Format::Csv,
    }
}

fn type_check_fn(ty: StreamType) -> Option<TypeCheck> {
    match ty {
        StreamType::Any => None,
        StreamType::I64 => Some(|v: &Value| typecheck(StreamType::I64, v.clone()).map(|_| ())),
        StreamType::F64 => Some(|v: &Value| typecheck(StreamType::F64, v.clone()).map(|_| ())),
        StreamType::Bool => Some(|v: &Value| typecheck(StreamType::Bool, v.clone()).map(|_| ())),
        StreamType::Str => Some(|v: &Value| typecheck(StreamType::Str, v.clone()).map(|_| ())),
    }
}

fn check_emit(ty: StreamType, e: Emit<Value>, op: &str) -> Result<Emit<Value>, OpError> {
    if ty == StreamType::Any {
        return Ok(e);
    }
    let chk =
        |v: Value| typecheck(ty, v).map_err(|m| OpError::new(format!("operator \"{op}\": {m}")));
    Ok(match e {
        Emit::Skip => Emit::Skip,
        Emit::One(v) => Emit::One(chk(v)?),
        Emit::Many(vs) => Emit::Many(vs.into_iter().map(chk).collect::<Result<_, _>>()?),
    })
}

fn agg_of(a: crate::manifest::schema::Agg) -> window::Agg {
    use crate::manifest::schema::Agg as M;
    match a {
        M::Sum => window::Agg::Sum,
        M::Mean => window::Agg::Mean,
        M::Min => window::Agg::Min,
        M::Max => window::Agg::Max,
        M::Std => window::Agg::Std,
        M::Count => window::Agg::Count,
    }
}

/// The comparison zips over values: numbers numerically, strings and bools by their order,
/// `eq`/`ne` on anything; comparing other kinds is an operator error.
fn compare(op: &str, a: &Value, b: &Value) -> Result<bool, OpError> {
    use std::cmp::Ordering;
    if op == "eq" || op == "ne" {
        let same = match (a.as_f64(), b.as_f64()) {
            (Some(x), Some(y)) => x == y,
            _ => a == b,
        };
        return Ok(same == (op == "eq"));
    }
    let ord = match (a, b) {
        (Value::Str(x), Value::Str(y)) => Some(x.cmp(y)),
        (Value::Bool(x), Value::Bool(y)) => Some(x.cmp(y)),
        _ => match (a.as_f64(), b.as_f64()) {
            (Some(x), Some(y)) => x.partial_cmp(&y),
            _ => None,
        },
    };
    let ord = ord.ok_or_else(|| {
        OpError::new(format!(
            "cannot compare {} {a} with {} {b}",
            a.type_name(),
            b.type_name()
        ))
    })?;
    Ok(match op {
        "lt" => ord == Ordering::Less,
        "le" => ord != Ordering::Greater,
        "gt" => ord == Ordering::Greater,
        _ => ord != Ordering::Less,
    })
}
