//! Manifest functions (`fn = "x * 2"`): Rhai scripts compiled once and called per element or batch.
//!
//! [`ScriptFn`] compiles a script against the shared sandboxed engine ([`engine::shared_engine`]),
//! binds the caller's names (`x`, `state`, `window`, ...) and the operator's `params`, and turns
//! results into [`Out`]: `()` emits nothing, `multivalue([..])` several elements, anything else
//! one. Simple numeric expressions (`x * 2`, `x % 2 == 1`) run on a native fast path (the
//! private `fast` module) that falls back to Rhai for anything it does not reproduce exactly.

mod convert;
pub mod engine;
mod fast;
pub mod reduce;
#[cfg(test)]
mod tests;

use std::borrow::Borrow;
use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use rhai::{Dynamic, Engine, EvalAltResult, Position, Scope, AST};

pub use convert::{
    from_dynamic, split_entries, stateful_parts, to_dynamic, to_out, type_name_of, Out,
};
pub use engine::{build_engine, shared_engine, EngineLimits, MultiValue, Null};

use crate::Value;
use fast::{FastExpr, Num, MAX_VARS};

/// What went wrong in a script: its source, its run, or the shape of its result.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScriptErrorKind {
    /// The script does not compile (a manifest error).
    Syntax,
    /// The script failed while running (type error, division by zero, overflow, limits).
    Runtime,
    /// The result has the wrong shape or holds a value that cannot be emitted.
    Shape,
}

/// A script failure, located in the manifest and naming the operator and element (boxed details).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(transparent)]
pub struct ScriptError(pub Box<ScriptErrorDetails>);

impl std::ops::Deref for ScriptError {
    type Target = ScriptErrorDetails;
    fn deref(&self) -> &ScriptErrorDetails {
        &self.0
    }
}

impl std::ops::DerefMut for ScriptError {
    fn deref_mut(&mut self) -> &mut ScriptErrorDetails {
        &mut self.0
    }
}

impl From<ScriptErrorDetails> for ScriptError {
    fn from(d: ScriptErrorDetails) -> Self {
        ScriptError(Box::new(d))
    }
}

/// What a [`ScriptError`] says: kind, operator, manifest location, element and message.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "operator \"{operator}\": {} at {file} line {line}{}: {message}{}",
    kind_text(*.kind),
    column_text(.column),
    element_text(.element)
)]
pub struct ScriptErrorDetails {
    /// Which kind of failure.
    pub kind: ScriptErrorKind,
    /// The operator's name.
    pub operator: String,
    /// The manifest file name used in messages (default `pipeline.toml`).
    pub file: String,
    /// The manifest line (script line mapped through the operator's line offset).
    pub line: usize,
    /// The column within the script line, when known.
    pub column: Option<usize>,
    /// The offending element as JSON text, when known.
    pub element: Option<String>,
    /// Rhai's (or the shape check's) message.
    pub message: String,
}

/// The phrase naming an error kind in messages.
fn kind_text(kind: ScriptErrorKind) -> &'static str {
    match kind {
        ScriptErrorKind::Syntax => "script syntax error",
        ScriptErrorKind::Runtime => "script error",
        ScriptErrorKind::Shape => "bad script result",
    }
}

/// The `, column N` part of messages.
fn column_text(column: &Option<usize>) -> String {
    column.map(|c| format!(", column {c}")).unwrap_or_default()
}

/// The ` (element: ...)` part of messages.
fn element_text(element: &Option<String>) -> String {
    element
        .as_ref()
        .map(|e| format!(" (element: {e})"))
        .unwrap_or_default()
}

/// The longest element text kept in an error.
const MAX_ELEMENT_TEXT: usize = 200;

impl ScriptError {
    /// Records the offending element (as JSON, shortened if long).
    pub fn with_element(mut self, element: &Value) -> Self {
        let mut text = element.to_json();
        if text.len() > MAX_ELEMENT_TEXT {
            let mut cut = MAX_ELEMENT_TEXT;
            while !text.is_char_boundary(cut) {
                cut -= 1;
            }
            text.truncate(cut);
            text.push_str("...");
        }
        self.element = Some(text);
        self
    }

    /// Sets the manifest file name used in messages.
    pub fn with_file(mut self, file: impl Into<String>) -> Self {
        self.file = file.into();
        self
    }
}

/// A compiled `fn`: compile once, call many times.
pub struct ScriptFn {
    engine: Arc<Engine>,
    ast: AST,
    operator: String,
    line_offset: usize,
    /// Params (as constants) first, then the currently bound names.
    scope: Scope<'static>,
    /// Scope length holding only the params.
    base_len: usize,
    /// The names bound after the params, in order.
    bound: Vec<String>,
    params: BTreeMap<String, Value>,
    fast: Option<FastExpr>,
    fast_enabled: bool,
}

impl fmt::Debug for ScriptFn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScriptFn")
            .field("operator", &self.operator)
            .field("line_offset", &self.line_offset)
            .field("fast", &self.fast.is_some())
            .finish_non_exhaustive()
    }
}

impl ScriptFn {
    /// Compiles `code` for `operator` on the shared engine; script line 1 is manifest line `line_offset`.
    pub fn compile(
        code: &str,
        operator: &str,
        line_offset: usize,
        params: &BTreeMap<String, Value>,
    ) -> Result<ScriptFn, ScriptError> {
        Self::compile_with(shared_engine(), code, operator, line_offset, params)
    }

    /// Compiles `code` on the given engine (e.g. one built with other [`EngineLimits`]).
    ///
    /// The fast path assumes Rhai's built-in operators, as [`build_engine`] leaves them.
    pub fn compile_with(
        engine: Arc<Engine>,
        code: &str,
        operator: &str,
        line_offset: usize,
        params: &BTreeMap<String, Value>,
    ) -> Result<ScriptFn, ScriptError> {
        let ast = engine.compile(code).map_err(|e| {
            let pos = e.position();
            ScriptError::from(ScriptErrorDetails {
                kind: ScriptErrorKind::Syntax,
                operator: operator.to_string(),
                file: "pipeline.toml".into(),
                line: map_line(line_offset, pos),
                column: pos.position(),
                element: None,
                message: e.err_type().to_string(),
            })
        })?;
        let mut scope = Scope::new();
        for (name, v) in params {
            scope.push_constant_dynamic(name.as_str(), to_dynamic(v));
        }
        let base_len = scope.len();
        let fast = FastExpr::from_ast(&ast);
        Ok(ScriptFn {
            engine,
            ast,
            operator: operator.to_string(),
            line_offset,
            scope,
            base_len,
            bound: Vec::new(),
            params: params.clone(),
            fast,
            fast_enabled: true,
        })
    }

    /// The operator this function belongs to.
    pub fn operator(&self) -> &str {
        &self.operator
    }

    /// True when the script is a simple expression that runs on the native fast path.
    pub fn has_fast_path(&self) -> bool {
        self.fast.is_some() && self.fast_enabled
    }

    /// Turns the native fast path on or off (off: every call runs Rhai; for tests and benchmarks).
    pub fn set_fast_path(&mut self, enabled: bool) {
        self.fast_enabled = enabled;
    }

    /// Calls the script with `bindings` (the first one is reported as the element on errors).
    pub fn call<V: Borrow<Value>>(&mut self, bindings: &[(&str, V)]) -> Result<Out, ScriptError> {
        if let Some(v) = self.try_fast(bindings) {
            return Ok(Out::One(v));
        }
        let d = self.call_raw(bindings)?;
        to_out(d).map_err(|m| self.shape_error(m, bindings))
    }

    /// Calls a stateful script: the result must be `[output, next_state]`.
    pub fn call_stateful<V: Borrow<Value>>(
        &mut self,
        bindings: &[(&str, V)],
    ) -> Result<(Out, Value), ScriptError> {
        let d = self.call_raw(bindings)?;
        stateful_parts(d).map_err(|m| self.shape_error(m, bindings))
    }

    /// Calls a split/multi script: the result must be an array (of `n` entries if given), each an `Out`.
    pub fn call_split<V: Borrow<Value>>(
        &mut self,
        bindings: &[(&str, V)],
        n: Option<usize>,
    ) -> Result<Vec<Out>, ScriptError> {
        let d = self.call_raw(bindings)?;
        split_entries(d, n).map_err(|m| self.shape_error(m, bindings))
    }

    /// Calls the script for a plain value (`()` and `multivalue` are shape errors).
    pub fn call_value<V: Borrow<Value>>(
        &mut self,
        bindings: &[(&str, V)],
    ) -> Result<Value, ScriptError> {
        if let Some(v) = self.try_fast(bindings) {
            return Ok(v);
        }
        let d = self.call_raw(bindings)?;
        if d.is_unit() {
            return Err(self.shape_error("expected a value, got ()".into(), bindings));
        }
        from_dynamic(d).map_err(|m| self.shape_error(m, bindings))
    }

    /// Calls the script and returns Rhai's raw result (never the fast path).
    pub fn call_raw<V: Borrow<Value>>(
        &mut self,
        bindings: &[(&str, V)],
    ) -> Result<Dynamic, ScriptError> {
        self.bind(bindings);
        let r = self
            .engine
            .eval_ast_with_scope::<Dynamic>(&mut self.scope, &self.ast);
        self.scope.rewind(self.base_len + self.bound.len());
        r.map_err(|e| self.runtime_error(&e, bindings))
    }

    /// Calls the script once per element of `xs`, bound to `name`; an error gives its index.
    pub fn call_batch(
        &mut self,
        name: &str,
        xs: &[Value],
    ) -> Result<Vec<Out>, (usize, ScriptError)> {
        match self.call_batch_prefix(name, xs) {
            (out, None) => Ok(out),
            (_, Some(e)) => Err(e),
        }
    }

    /// Like [`ScriptFn::call_batch`], but on an error also returns the results of the elements
    /// before the failing one, so an operator can emit them before it fails.
    pub fn call_batch_prefix(
        &mut self,
        name: &str,
        xs: &[Value],
    ) -> (Vec<Out>, Option<(usize, ScriptError)>) {
        let fast = self.batch_slots(name).zip(self.fast.as_ref());
        // Fast expressions are pure: evaluate every element natively (in one tight loop), note
        // those the fast path leaves to Rhai, then run Rhai on those, in order.
        let mut slow = Vec::new();
        let mut out: Vec<Out> = xs
            .iter()
            .enumerate()
            .map(|(i, x)| {
                let r = fast.and_then(|((mut slots, k), fx)| {
                    slots[k] = Num::of(x)?;
                    fx.eval(&slots)
                });
                match r {
                    Some(r) => Out::One(r.into_value()),
                    None => {
                        slow.push(i);
                        Out::Nothing
                    }
                }
            })
            .collect();
        for i in slow {
            let bindings = [(name, &xs[i])];
            let r = self
                .call_raw(&bindings)
                .and_then(|d| to_out(d).map_err(|m| self.shape_error(m, &bindings)));
            match r {
                Ok(o) => out[i] = o,
                Err(e) => {
                    out.truncate(i);
                    return (out, Some((i, e)));
                }
            }
        }
        (out, None)
    }

    /// The fast path's slots for a batch over `name`: the params filled in and the element's slot.
    /// `map_element` over a whole batch: appends what each element emits to `out`, in order.
    /// On an error, what the elements before the failing one emitted is already in `out`.
    pub fn map_batch(
        &mut self,
        name: &str,
        mut xs: Vec<Value>,
        out: &mut Vec<Value>,
    ) -> Result<(), (usize, ScriptError)> {
        let fast = self.batch_slots(name);
        // The fast path first, in place, up to the first element it leaves to Rhai.
        let done = match (fast, self.fast.as_ref()) {
            (Some((slots, k)), Some(fx)) => fx.map_prefix(slots, k, &mut xs),
            _ => 0,
        };
        if done == xs.len() {
            if out.is_empty() {
                *out = xs;
            } else {
                out.append(&mut xs);
            }
            return Ok(());
        }
        out.reserve(xs.len());
        let mut rest = xs.into_iter();
        out.extend(rest.by_ref().take(done));
        for (i, x) in rest.enumerate() {
            self.map_one(name, fast, &x, out)
                .map_err(|e| (i + done, e))?;
        }
        Ok(())
    }

    /// Appends what `map_element` emits for `x` to `out` (the fast path if it computes it,
    /// else Rhai).
    fn map_one(
        &mut self,
        name: &str,
        fast: Option<([Num; MAX_VARS], usize)>,
        x: &Value,
        out: &mut Vec<Value>,
    ) -> Result<(), ScriptError> {
        if let (Some((mut slots, k)), Some(fx), Some(n)) = (fast, self.fast.as_ref(), Num::of(x)) {
            slots[k] = n;
            if let Some(r) = fx.eval(&slots) {
                out.push(r.into_value());
                return Ok(());
            }
        }
        let bindings = [(name, x)];
        let o = self
            .call_raw(&bindings)
            .and_then(|d| to_out(d).map_err(|m| self.shape_error(m, &bindings)))?;
        o.extend_into(out);
        Ok(())
    }

    /// [`ScriptFn::map_batch`] reading the batch instead of taking it (it is left as it was,
    /// also on an error).
    pub fn map_batch_ref(
        &mut self,
        name: &str,
        xs: &[Value],
        out: &mut Vec<Value>,
    ) -> Result<(), (usize, ScriptError)> {
        let fast = self.batch_slots(name);
        let done = match (fast, self.fast.as_ref()) {
            (Some((slots, k)), Some(fx)) => fx.map_prefix_into(slots, k, xs, out),
            _ => 0,
        };
        for (i, x) in xs.iter().enumerate().skip(done) {
            self.map_one(name, fast, x, out).map_err(|e| (i, e))?;
        }
        Ok(())
    }

    /// `filter_element` over a whole batch: appends the elements whose result is `true` to
    /// `out`, in order. A result that is not a bool is an error.
    pub fn filter_batch(
        &mut self,
        name: &str,
        xs: Vec<Value>,
        out: &mut Vec<Value>,
    ) -> Result<(), (usize, ScriptError)> {
        let mut xs = xs;
        let fast = self.batch_slots(name);
        // The fast path first, in place, up to the first element it leaves to Rhai.
        let (done, kept) = match (fast, self.fast.as_ref()) {
            (Some((slots, k)), Some(fx)) => fx.filter_prefix(slots, k, &mut xs),
            _ => (0, 0),
        };
        if done == xs.len() {
            xs.truncate(kept);
            if out.is_empty() {
                *out = xs;
            } else {
                out.append(&mut xs);
            }
            return Ok(());
        }
        out.reserve(xs.len() - done + kept);
        let mut rest = xs.into_iter();
        out.extend(rest.by_ref().take(kept));
        // The elements the fast path dropped.
        rest.by_ref().take(done - kept).for_each(drop);
        for (i, x) in rest.enumerate() {
            let i = i + done;
            let keep = self.keeps(name, fast, &x);
            match keep {
                Ok(true) => out.push(x),
                Ok(false) => {}
                Err(e) => return Err((i, e)),
            }
        }
        Ok(())
    }

    /// Whether `filter_element` keeps `x` (the fast path if it decides, else Rhai).
    fn keeps(
        &mut self,
        name: &str,
        fast: Option<([Num; MAX_VARS], usize)>,
        x: &Value,
    ) -> Result<bool, ScriptError> {
        if let (Some((mut slots, k)), Some(fx), Some(n)) = (fast, self.fast.as_ref(), Num::of(x)) {
            slots[k] = n;
            if let Some(Num::B(b)) = fx.eval(&slots) {
                return Ok(b);
            }
        }
        let bindings = [(name, x)];
        match self.call_raw(&bindings) {
            Ok(d) if d.is_bool() => Ok(d.as_bool().unwrap_or(false)),
            Ok(d) => Err(self.shape_error(
                format!("a filter must return a bool, got {}", type_name_of(&d)),
                &bindings,
            )),
            Err(e) => Err(e),
        }
    }

    /// [`ScriptFn::filter_batch`] reading the batch instead of taking it (it is left as it
    /// was, also on an error): the kept elements are cloned into `out`.
    pub fn filter_batch_ref(
        &mut self,
        name: &str,
        xs: &[Value],
        out: &mut Vec<Value>,
    ) -> Result<(), (usize, ScriptError)> {
        let fast = self.batch_slots(name);
        let done = match (fast, self.fast.as_ref()) {
            (Some((slots, k)), Some(fx)) => fx.filter_prefix_into(slots, k, xs, out),
            _ => 0,
        };
        for (i, x) in xs.iter().enumerate().skip(done) {
            match self.keeps(name, fast, x) {
                Ok(true) => out.push(x.clone()),
                Ok(false) => {}
                Err(e) => return Err((i, e)),
            }
        }
        Ok(())
    }

    fn batch_slots(&self, name: &str) -> Option<([Num; MAX_VARS], usize)> {
        let fx = self.fast.as_ref().filter(|_| self.fast_enabled)?;
        let mut slots = [Num::B(false); MAX_VARS];
        let mut element_slot = None;
        for (k, var) in fx.vars.iter().enumerate() {
            if var == name {
                element_slot = Some(k);
            } else {
                slots[k] = Num::of(self.params.get(var)?)?;
            }
        }
        // An expression that ignores the element is still evaluated per element.
        Some((slots, element_slot.unwrap_or(MAX_VARS - 1)))
    }

    /// Evaluates on the fast path, if the script and these values allow it.
    #[inline]
    fn try_fast<V: Borrow<Value>>(&self, bindings: &[(&str, V)]) -> Option<Value> {
        let fx = self.fast.as_ref().filter(|_| self.fast_enabled)?;
        let mut slots = [Num::B(false); MAX_VARS];
        for (k, var) in fx.vars.iter().enumerate() {
            // Later bindings shadow earlier ones, and bindings shadow params, as in the scope.
            let v = match bindings.iter().rev().find(|(n, _)| *n == var) {
                Some((_, v)) => v.borrow(),
                None => self.params.get(var)?,
            };
            slots[k] = Num::of(v)?;
        }
        fx.eval(&slots).map(Num::into_value)
    }

    /// Puts the bindings in the scope after the params, reusing the entries when names repeat.
    fn bind<V: Borrow<Value>>(&mut self, bindings: &[(&str, V)]) {
        let same = self.bound.len() == bindings.len()
            && self.bound.iter().zip(bindings).all(|(a, (b, _))| a == b);
        if same {
            self.scope.rewind(self.base_len + bindings.len());
            // The bound entries are the last ones: replace their values in place.
            let mut all = true;
            for (name, v) in bindings {
                match self.scope.get_mut(name) {
                    Some(slot) => *slot = to_dynamic(v.borrow()),
                    None => all = false,
                }
            }
            if all {
                return;
            }
        }
        self.scope.rewind(self.base_len);
        self.bound.clear();
        for (name, v) in bindings {
            self.scope.push_dynamic(*name, to_dynamic(v.borrow()));
            self.bound.push((*name).to_string());
        }
    }

    /// A runtime error, located and naming the element.
    fn runtime_error<V: Borrow<Value>>(
        &self,
        err: &EvalAltResult,
        bindings: &[(&str, V)],
    ) -> ScriptError {
        let inner = err.unwrap_inner();
        let pos = inner.position();
        let mut message = inner.to_string();
        let suffix = format!(" ({pos})");
        if !pos.is_none() && message.ends_with(&suffix) {
            message.truncate(message.len() - suffix.len());
        }
        // Rhai spells the string type by its Rust names in some messages.
        let message = message.replace("&str | ImmutableString | String", "string");
        let mut message = message.replace(std::any::type_name::<Null>(), "null");
        if let EvalAltResult::ErrorInFunctionCall(f, ..) = err {
            message.push_str(&format!(" (in call to function '{f}')"));
        }
        let e = ScriptError::from(ScriptErrorDetails {
            kind: ScriptErrorKind::Runtime,
            operator: self.operator.clone(),
            file: "pipeline.toml".into(),
            line: map_line(self.line_offset, pos),
            column: pos.position(),
            element: None,
            message,
        });
        match bindings.first() {
            Some((_, v)) => e.with_element(v.borrow()),
            None => e,
        }
    }

    /// A result-shape error, located at the script's first line and naming the element.
    fn shape_error<V: Borrow<Value>>(
        &self,
        message: String,
        bindings: &[(&str, V)],
    ) -> ScriptError {
        let e = ScriptError::from(ScriptErrorDetails {
            kind: ScriptErrorKind::Shape,
            operator: self.operator.clone(),
            file: "pipeline.toml".into(),
            line: self.line_offset,
            column: None,
            element: None,
            message,
        });
        match bindings.first() {
            Some((_, v)) => e.with_element(v.borrow()),
            None => e,
        }
    }
}

/// Maps a script position to a manifest line: script line 1 is `line_offset`.
fn map_line(line_offset: usize, pos: Position) -> usize {
    match pos.line() {
        Some(l) => line_offset + l.saturating_sub(1),
        None => line_offset,
    }
}
