//! Operator kinds registered by an embedding application: typed native closures under names.
//!
//! A [`Registry`] holds, for each custom kind, its [`KindSpec`] (checked by manifest
//! validation) and a builder that adds the operator to a [`Graph`]. The typed helpers
//! ([`Registry::map`], [`Registry::filter`], [`Registry::sink`], [`Registry::source`]) convert
//! each [`Value`] to and from the closure's Rust types with serde at the operator boundary
//! ([`crate::convert`]: straight, with strings lent to `&str` fields and ignored parts
//! skipped); an element that does not convert fails the operator, naming the element and the
//! expected type. A closure that returns a [`Value`] has it moved into the stream as it is,
//! the cheapest way to emit large elements.
//!
//! Run manifests that use them with [`crate::cli::main_with`] from the application's own
//! binary: worker processes re-execute that binary, so they know the same kinds.
//!
//! ```
//! use tributary::registry::Registry;
//! let mut reg = Registry::default();
//! reg.map("scale", |p| {
//!     let k = p.f64("factor").unwrap_or(1.0);
//!     move |x: f64| x * k
//! })
//! .required(&["factor"]);
//! assert!(reg.kinds().get("scale").is_some());
//! ```

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::emit::Emit;
use crate::manifest::build::BuildError;
use crate::manifest::kinds::{Arity, FnUse, KindSpec, KindTable};
use crate::manifest::schema::OperatorDecl;
use crate::operator::{load_state, save_state, Gen, OpError, OpResult, Operator, Outputs};
use crate::pipeline::{Graph, Stream};
use crate::Value;

/// Adds one operator of a custom kind to a graph: its declaration and input streams in, its
/// output streams (in `out` order) back.
pub type Builder = Arc<
    dyn Fn(&mut Graph, &OperatorDecl, &[Stream<Value>]) -> Result<Vec<Stream<Value>>, BuildError>
        + Send
        + Sync,
>;

/// The custom operator kinds of an application (empty by default: built-ins only).
#[derive(Clone, Default)]
pub struct Registry {
    kinds: BTreeMap<String, (KindSpec, Builder)>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.kinds.keys()).finish()
    }
}

/// The keys of one operator, as a custom kind's closure factory sees them.
pub struct Params<'a> {
    decl: &'a OperatorDecl,
}

impl<'a> Params<'a> {
    /// The keys of operator `decl`.
    pub fn new(decl: &'a OperatorDecl) -> Self {
        Params { decl }
    }

    /// The operator's name.
    pub fn name(&self) -> &str {
        &self.decl.name
    }

    /// The whole declaration.
    pub fn decl(&self) -> &OperatorDecl {
        self.decl
    }

    /// A kind-specific key, or else an entry of the `params` table.
    pub fn value(&self, key: &str) -> Option<&Value> {
        self.decl.get(key).or_else(|| self.decl.params.get(key))
    }

    /// A key as an f64 (integers are widened).
    pub fn f64(&self, key: &str) -> Option<f64> {
        self.value(key).and_then(Value::as_f64)
    }

    /// A key as an i64 (integers only).
    pub fn i64(&self, key: &str) -> Option<i64> {
        self.value(key).and_then(Value::as_i64)
    }

    /// A key as a bool.
    pub fn bool(&self, key: &str) -> Option<bool> {
        match self.value(key) {
            Some(Value::Bool(b)) => Some(*b),
            _ => None,
        }
    }

    /// A key as a string.
    pub fn str(&self, key: &str) -> Option<&str> {
        match self.value(key) {
            Some(Value::Str(s)) => Some(s),
            _ => None,
        }
    }

    /// A key converted to any deserializable type (`None` if absent or of another shape).
    pub fn get<T: DeserializeOwned>(&self, key: &str) -> Option<T> {
        self.value(key).and_then(|v| from_value(v).ok())
    }
}

/// A registered kind, to declare its keys: `reg.map(...).required(&["factor"])`.
pub struct KindRef<'a> {
    spec: &'a mut KindSpec,
}

impl KindRef<'_> {
    /// Adds kind-specific keys that must be present.
    pub fn required(self, keys: &[&str]) -> Self {
        self.spec
            .required
            .extend(keys.iter().map(|s| s.to_string()));
        self
    }

    /// Adds kind-specific keys that may be present.
    pub fn optional(self, keys: &[&str]) -> Self {
        self.spec
            .optional
            .extend(keys.iter().map(|s| s.to_string()));
        self
    }
}

/// Converts an element to `T`; the error names the element and the expected type.
pub fn from_value<T: DeserializeOwned>(v: &Value) -> Result<T, OpError> {
    crate::convert::from_value::<T>(v).map_err(|e| {
        OpError::new(format!(
            "element {v} is not a {}: {e}",
            std::any::type_name::<T>()
        ))
        .with_element(v)
    })
}

/// Converts a Rust value to an element.
pub fn to_value<U: Serialize>(u: &U) -> Result<Value, OpError> {
    crate::convert::to_value(u).map_err(convert_error::<U>)
}

/// Converts a Rust value to an element, moving it when it already is a [`Value`].
pub fn into_value<U: Serialize + 'static>(u: U) -> Result<Value, OpError> {
    crate::convert::into_value(u).map_err(convert_error::<U>)
}

fn convert_error<U>(e: crate::convert::ConvertError) -> OpError {
    OpError::new(format!(
        "cannot convert a {} to an element: {e}",
        std::any::type_name::<U>()
    ))
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers (or replaces) a kind with any shape and its builder.
    ///
    /// # Panics
    /// If `spec.name` is a built-in kind (built-ins cannot be overridden).
    pub fn register(&mut self, spec: KindSpec, builder: Builder) -> KindRef<'_> {
        assert!(
            KindTable::builtin().get(&spec.name).is_none(),
            "`{}` is a built-in operator kind",
            spec.name
        );
        let name = spec.name.clone();
        self.kinds.insert(name.clone(), (spec, builder));
        KindRef {
            spec: &mut self.kinds.get_mut(&name).expect("just inserted").0,
        }
    }

    /// Registers a one-input one-output kind: `make(params)` gives the closure for each
    /// operator, called on every element converted to `T`; its `U` is emitted. What the
    /// closure captures is not part of the operator's snapshot (it has none).
    pub fn map<T, U, F, M>(&mut self, name: &str, make: M) -> KindRef<'_>
    where
        T: DeserializeOwned + 'static,
        U: Serialize + 'static,
        F: FnMut(T) -> U + Send + 'static,
        M: Fn(&Params) -> F + Send + Sync + 'static,
    {
        let spec = KindSpec::new(name, Arity::One, Arity::One, FnUse::No, &[], &[]);
        self.register(
            spec,
            Arc::new(move |g, d, inputs| {
                let mut f = make(&Params::new(d));
                Ok(vec![g.try_map_element_ref(&inputs[0], move |x: &Value| {
                    let t = from_value::<T>(x)?;
                    Ok(Emit::One(into_value(f(t))?))
                })])
            }),
        )
    }

    /// Registers a one-input one-output filter: keeps the elements for which the closure
    /// (given each element converted to `T`) is true. What the closure captures is not part
    /// of the operator's snapshot (it has none).
    pub fn filter<T, F, M>(&mut self, name: &str, make: M) -> KindRef<'_>
    where
        T: DeserializeOwned + 'static,
        F: FnMut(&T) -> bool + Send + 'static,
        M: Fn(&Params) -> F + Send + Sync + 'static,
    {
        let spec = KindSpec::new(name, Arity::One, Arity::One, FnUse::No, &[], &[]);
        self.register(
            spec,
            Arc::new(move |g, d, inputs| {
                let mut f = make(&Params::new(d));
                Ok(vec![g.try_filter_element(&inputs[0], move |x: &Value| {
                    Ok(f(&from_value::<T>(x)?))
                })])
            }),
        )
    }

    /// Registers a one-input sink: the closure gets each element converted to `T`. What the
    /// closure captures is not part of the operator's snapshot (it has none).
    pub fn sink<T, F, M>(&mut self, name: &str, make: M) -> KindRef<'_>
    where
        T: DeserializeOwned + 'static,
        F: FnMut(T) + Send + 'static,
        M: Fn(&Params) -> F + Send + Sync + 'static,
    {
        let spec = KindSpec::new(name, Arity::One, Arity::None, FnUse::No, &[], &[]);
        self.register(
            spec,
            Arc::new(move |g, d, inputs| {
                let mut f = make(&Params::new(d));
                g.try_sink_element_ref(&inputs[0], move |x: &Value| {
                    f(from_value::<T>(x)?);
                    Ok(())
                });
                Ok(vec![])
            }),
        )
    }

    /// Registers a source: the closure is called with 0, 1, 2, ... until it returns `None`
    /// (paced by the operator's `interval`, if any). The source's snapshot is the next index:
    /// a restored source goes on calling from there, so the closure should depend on the index
    /// only (what it captures is not part of the snapshot).
    pub fn source<T, F, M>(&mut self, name: &str, make: M) -> KindRef<'_>
    where
        T: Serialize + 'static,
        F: FnMut(usize) -> Option<T> + Send + 'static,
        M: Fn(&Params) -> F + Send + Sync + 'static,
    {
        let spec = KindSpec::new(name, Arity::None, Arity::One, FnUse::No, &[], &[]);
        self.register(
            spec,
            Arc::new(move |g, d, _inputs| {
                let f = make(&Params::new(d));
                let src = NativeSource {
                    f,
                    i: 0,
                    pending: None,
                    _t: std::marker::PhantomData,
                };
                Ok(vec![g.source_paced(&d.kind, src, d.interval())])
            }),
        )
    }

    /// The builder of custom kind `name`.
    pub fn builder(&self, name: &str) -> Option<&Builder> {
        self.kinds.get(name).map(|(_, b)| b)
    }

    /// True if no kind is registered.
    pub fn is_empty(&self) -> bool {
        self.kinds.is_empty()
    }

    /// The kinds a manifest may name: the built-ins plus the registered ones.
    pub fn kinds(&self) -> KindTable {
        let mut t = KindTable::builtin();
        for (spec, _) in self.kinds.values() {
            t.register(spec.clone());
        }
        t
    }
}

/// A source calling `f(i)` until it returns `None`. Its snapshot is `i` and a failure held
/// back.
struct NativeSource<T, F> {
    f: F,
    i: usize,
    pending: Option<OpError>,
    _t: std::marker::PhantomData<fn() -> T>,
}

impl<T, F> Operator for NativeSource<T, F>
where
    T: Serialize + 'static,
    F: FnMut(usize) -> Option<T> + Send + 'static,
{
    type In = Value;
    type Out = Value;

    fn generate(&mut self, out: &mut Outputs<Value>, max: usize) -> OpResult<Gen> {
        if let Some(e) = self.pending.take() {
            return Err(e);
        }
        let o = out.port_mut(0);
        let start = o.len();
        // Large elements (camera frames, say) end a batch early: a batch holds at most
        // `max` elements and about SOURCE_BATCH_BYTES.
        let mut bytes = 0;
        while o.len() - start < max && bytes < crate::operator::SOURCE_BATCH_BYTES {
            let Some(t) = (self.f)(self.i) else {
                return Ok(Gen::Done);
            };
            match into_value(t) {
                Ok(v) => {
                    bytes += v.heap_bytes();
                    o.push(v)
                }
                Err(e) => {
                    let e = OpError {
                        message: format!("call {}: {}", self.i, e.message),
                        ..e
                    };
                    if o.len() > start {
                        self.pending = Some(e);
                        return Ok(Gen::More);
                    }
                    return Err(e);
                }
            }
            self.i += 1;
        }
        Ok(Gen::More)
    }

    fn snapshot(&self) -> OpResult<Option<Vec<u8>>> {
        save_state("a source", &(self.i as u64, &self.pending)).map(Some)
    }

    fn restore(&mut self, state: &[u8]) -> OpResult {
        let (i, pending): (u64, Option<OpError>) = load_state("a source", state)?;
        self.i = i as usize;
        self.pending = pending;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest;
    use std::path::Path;

    #[test]
    fn a_native_source_resumes_at_its_next_index() {
        let make = || NativeSource {
            f: |i: usize| (i < 7).then_some(i * 10),
            i: 0,
            pending: None,
            _t: std::marker::PhantomData,
        };
        for k in 0..9 {
            let (got, want) = crate::operator::testkit::source_with_restore(make, k);
            assert_eq!(got, want, "k = {k}");
        }
    }

    #[test]
    fn a_native_source_of_large_elements_ends_its_batches_early() {
        let mut src = NativeSource {
            f: |i: usize| (i < 100).then(|| "x".repeat(1 << 20)),
            i: 0,
            pending: None,
            _t: std::marker::PhantomData,
        };
        let mut out = Outputs::new(1);
        let mut sizes = vec![];
        loop {
            let g = src.generate(&mut out, 1024).unwrap();
            sizes.push(out.take(0).len());
            if matches!(g, Gen::Done) {
                break;
            }
        }
        // About SOURCE_BATCH_BYTES a batch (4 MiB: 4 strings), every element once.
        assert_eq!(sizes.iter().sum::<usize>(), 100);
        assert!(sizes.iter().all(|&n| n <= 4), "{sizes:?}");
    }

    fn scale_registry() -> Registry {
        let mut reg = Registry::default();
        reg.map("scale", |p| {
            let k = p.f64("factor").unwrap_or(1.0);
            move |x: f64| x * k
        })
        .required(&["factor"]);
        reg.filter("above", |p| {
            let t = p.f64("threshold").unwrap_or(0.0);
            move |x: &f64| *x > t
        })
        .required(&["threshold"]);
        reg
    }

    const MANIFEST: &str = r#"
[[operator]]
name = "src"
op = "source.list"
values = [1, 2.5, 4]
out = "x"

[[operator]]
name = "s"
op = "scale"
factor = 2.0
in = "x"
out = "y"

[[operator]]
name = "a"
op = "above"
threshold = 3
in = "y"
out = "z"

[[operator]]
name = "out"
op = "sink.null"
in = "z"
"#;

    fn decl(m: &manifest::Manifest, name: &str) -> OperatorDecl {
        m.operators.iter().find(|d| d.name == name).unwrap().clone()
    }

    #[test]
    fn typed_map_and_filter_convert() {
        let reg = scale_registry();
        let m = manifest::parse_with(MANIFEST, Path::new("p.toml"), &reg.kinds()).unwrap();
        let mut g = Graph::new();
        let x = g.source_iter(vec![Value::Int(1), Value::Float(2.5), Value::Int(4)]);
        let y = (reg.builder("scale").unwrap())(&mut g, &decl(&m, "s"), &[x]).unwrap();
        let z = (reg.builder("above").unwrap())(&mut g, &decl(&m, "a"), &y).unwrap();
        let out = g.collect(&z[0]);
        g.run().unwrap();
        assert_eq!(out.take(), vec![Value::Float(5.0), Value::Float(8.0)]);
    }

    #[test]
    fn typed_map_fails_clearly_on_wrong_type() {
        let reg = scale_registry();
        let m = manifest::parse_with(MANIFEST, Path::new("p.toml"), &reg.kinds()).unwrap();
        let mut g = Graph::new();
        let x = g.source_iter(vec![Value::Int(1), Value::Str("oops".into())]);
        let y = (reg.builder("scale").unwrap())(&mut g, &decl(&m, "s"), &[x]).unwrap();
        let _out = g.collect(&y[0]);
        let err = format!("{:?}", g.run().unwrap_err());
        assert!(err.contains("oops"), "{err}");
        assert!(err.contains("f64"), "{err}");
    }

    #[test]
    fn validation_knows_registered_kinds_only() {
        let reg = scale_registry();
        assert!(manifest::parse_with(MANIFEST, Path::new("p.toml"), &reg.kinds()).is_ok());
        // the plain table does not know them
        let e = manifest::parse(MANIFEST, Path::new("p.toml")).unwrap_err();
        assert!(
            e.render().contains("unknown operator kind \"scale\""),
            "{}",
            e.render()
        );
        // a typo still gets a suggestion, now among the custom kinds too
        let typo = MANIFEST.replace("op = \"scale\"", "op = \"scalr\"");
        let e = manifest::parse_with(&typo, Path::new("p.toml"), &reg.kinds()).unwrap_err();
        let r = e.render();
        assert!(r.contains("unknown operator kind \"scalr\""), "{r}");
        assert!(r.contains("did you mean \"scale\""), "{r}");
        // a required key is enforced
        let missing = MANIFEST.replace("factor = 2.0\n", "");
        let e = manifest::parse_with(&missing, Path::new("p.toml"), &reg.kinds()).unwrap_err();
        assert!(e.render().contains("factor"), "{}", e.render());
    }

    #[test]
    fn typed_source_and_sink() {
        let mut reg = Registry::default();
        reg.source("count_to", |p| {
            let n = p.i64("n").unwrap_or(0);
            move |i: usize| ((i as i64) < n).then_some(i as i64)
        })
        .required(&["n"]);
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let s2 = seen.clone();
        reg.sink("keep", move |_p| {
            let s = s2.clone();
            move |x: i64| s.lock().unwrap().push(x)
        });
        let text = r#"
[[operator]]
name = "c"
op = "count_to"
n = 3
out = "x"

[[operator]]
name = "k"
op = "keep"
in = "x"
"#;
        let m = manifest::parse_with(text, Path::new("p.toml"), &reg.kinds()).unwrap();
        let mut g = Graph::new();
        let x = (reg.builder("count_to").unwrap())(&mut g, &decl(&m, "c"), &[]).unwrap();
        (reg.builder("keep").unwrap())(&mut g, &decl(&m, "k"), &x).unwrap();
        g.run().unwrap();
        assert_eq!(*seen.lock().unwrap(), vec![0, 1, 2]);
    }
}
