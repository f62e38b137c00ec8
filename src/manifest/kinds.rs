//! The table of operator kinds: for each `op`, its family, stream shapes, function use and keys.

use std::collections::BTreeMap;

/// The family of an operator kind: decides the `fn` bindings and which value checks apply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    /// A built-in source (`source.*`, `source_fn`).
    Source,
    /// A built-in sink (`sink.*`).
    Sink,
    /// One element at a time (`map_element`, `filter_element`, `copy`, ...).
    Element,
    /// Batches (`map_list`, `sink_list`, `merge_list`).
    List,
    /// Count windows (`map_window`, `merge_window`, ...).
    Window,
    /// Timed windows (`timed_window`).
    TimedWindow,
    /// Several inputs, one output (`zip_map`, `mix`, the arithmetic zips, ...).
    Merge,
    /// One input, several outputs (`split_element`, `unzip`, ...).
    Split,
    /// Several inputs and outputs (`multi_element`).
    Many,
    /// The low-level `iot`, `iot_merge`.
    Iot,
    /// A kind registered by an embedding application: its values are not checked.
    Custom,
}

/// How many streams an `in` or `out` takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arity {
    /// No streams: the key is not allowed (`in` of a source, `out` of a sink).
    None,
    /// One stream, written as a name (a one-name list is accepted).
    One,
    /// An ordered list of one or more streams, written as a list.
    List,
    /// A name or a list of names.
    OneOrList,
    /// A list of exactly this many streams.
    Exactly(usize),
}

/// Whether a kind needs a function.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FnUse {
    /// No `fn` (nor `params`); `state` only where listed as a key.
    No,
    /// `fn` is required; `state` and `params` are allowed.
    Required,
    /// Exactly one of `fn` or `agg` (window reducers); `state` and `params` allowed.
    FnOrAgg,
}

/// The description of one operator kind.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KindSpec {
    /// The `op` name.
    pub name: String,
    /// For an alias, the canonical kind it means.
    pub alias_of: Option<String>,
    /// The family.
    pub family: Family,
    /// Shape of `in`.
    pub inputs: Arity,
    /// Shape of `out`.
    pub outputs: Arity,
    /// Whether `fn` is needed.
    pub func: FnUse,
    /// Kind-specific keys that must be present.
    pub required: Vec<String>,
    /// Kind-specific keys that may be present.
    pub optional: Vec<String>,
}

/// Keys every operator takes.
pub const COMMON_KEYS: [&str; 5] = ["name", "op", "in", "out", "group"];

impl KindSpec {
    /// A custom kind: name, shapes, function use, required and optional kind-specific keys.
    pub fn new(
        name: &str,
        inputs: Arity,
        outputs: Arity,
        func: FnUse,
        required: &[&str],
        optional: &[&str],
    ) -> KindSpec {
        KindSpec {
            name: name.to_string(),
            alias_of: None,
            family: Family::Custom,
            inputs,
            outputs,
            func,
            required: required.iter().map(|s| s.to_string()).collect(),
            optional: optional.iter().map(|s| s.to_string()).collect(),
        }
    }

    /// The canonical kind name (the alias target, or the name itself).
    pub fn canonical(&self) -> &str {
        self.alias_of.as_deref().unwrap_or(&self.name)
    }

    /// True for sources (no `in`).
    pub fn is_source(&self) -> bool {
        self.inputs == Arity::None
    }

    /// True for sinks (no `out`).
    pub fn is_sink(&self) -> bool {
        self.outputs == Arity::None
    }

    /// Every key this kind accepts, common ones included, in a stable order.
    pub fn valid_keys(&self) -> Vec<String> {
        let mut keys: Vec<String> = vec!["name".into(), "op".into()];
        if self.inputs != Arity::None {
            keys.push("in".into());
        }
        if self.outputs != Arity::None {
            keys.push("out".into());
        }
        keys.push("group".into());
        match self.func {
            FnUse::No => {}
            FnUse::Required => keys.extend(["fn".into(), "state".into(), "params".into()]),
            FnUse::FnOrAgg => {
                keys.extend(["fn".into(), "agg".into(), "state".into(), "params".into()])
            }
        }
        for k in self.required.iter().chain(&self.optional) {
            if !keys.contains(k) {
                keys.push(k.clone());
            }
        }
        if self.is_source() && !keys.iter().any(|k| k == "interval") {
            keys.push("interval".into());
        }
        keys
    }

    /// True if `key` is accepted by this kind.
    pub fn accepts_key(&self, key: &str) -> bool {
        self.valid_keys().iter().any(|k| k == key)
    }
}

use Arity::{Exactly, List, None as No_, One, OneOrList};
use Family::*;
use FnUse::{FnOrAgg, No as NoFn, Required as NeedFn};

/// One row of the built-in table: name, family, in, out, fn, required keys, optional keys.
type Row = (
    &'static str,
    Family,
    Arity,
    Arity,
    FnUse,
    &'static [&'static str],
    &'static [&'static str],
);

const WIN: &[&str] = &["window"];
const TIMED: &[&str] = &["duration"];

/// The built-in kinds: adding one is adding a line here.
#[rustfmt::skip]
const BUILTIN: &[Row] = &[
    // sources and sinks (MANIFEST.md); every source also takes `interval`
    ("source.list", Source, No_, One, NoFn, &["values"], &[]),
    ("source.range", Source, No_, One, NoFn, &["end"], &["start", "step"]),
    ("source.file", Source, No_, One, NoFn, &["path"], &["format"]),
    ("source.stdin", Source, No_, One, NoFn, &[], &["format"]),
    ("source_fn", Source, No_, One, NeedFn, &[], &["count"]),
    ("source.exec", Source, No_, One, NoFn, &["command"], &[]),
    ("sink.file", Sink, One, No_, NoFn, &["path"], &["format"]),
    ("sink.stdout", Sink, One, No_, NoFn, &[], &["format"]),
    ("sink.exec", Sink, One, No_, NoFn, &["command"], &[]),
    ("sink.null", Sink, One, No_, NoFn, &[], &[]),
    // 2. element
    ("map_element", Element, One, One, NeedFn, &[], &[]),
    ("filter_element", Element, One, One, NeedFn, &[], &[]),
    ("sink_element", Element, One, No_, NeedFn, &[], &[]),
    ("copy", Element, One, OneOrList, NoFn, &[], &[]),
    ("prepend", Element, One, One, NoFn, &["values"], &[]),
    ("exponential_smoothing", Element, One, One, NoFn, &["alpha"], &["state"]),
    // 3. list
    ("map_list", Family::List, One, One, NeedFn, &[], &[]),
    ("sink_list", Family::List, One, No_, NeedFn, &[], &[]),
    ("merge_list", Family::List, List, One, NeedFn, &[], &[]),
    // 4. count windows
    ("map_window", Window, One, One, FnOrAgg, WIN, &["step", "initial_value", "flush"]),
    ("map_window_list", Window, One, One, NeedFn, WIN, &["step", "flush"]),
    ("sink_window", Window, One, No_, NeedFn, WIN, &["step", "flush"]),
    ("split_window", Window, One, List, NeedFn, WIN, &["step", "flush"]),
    ("merge_window", Window, List, One, NeedFn, WIN, &["step"]),
    ("multi_window", Window, List, List, NeedFn, WIN, &["step"]),
    ("sliding_window_with_startup", Window, One, One, FnOrAgg, WIN, &["step", "flush"]),
    // 5. timed windows
    ("timed_window", TimedWindow, One, One, FnOrAgg, TIMED, &["step", "start", "flush"]),
    // 6. merge and zip
    ("zip_map", Merge, List, One, NeedFn, &[], &[]),
    ("zip_stream", Merge, List, One, NoFn, &[], &[]),
    ("timed_zip", Merge, List, One, NoFn, &[], &[]),
    ("merge_asynch", Merge, List, One, NeedFn, &[], &[]),
    ("blend", Merge, List, One, NeedFn, &[], &[]),
    ("mix", Merge, List, One, NoFn, &[], &[]),
    ("weave", Merge, List, One, NoFn, &[], &[]),
    ("timed_mix", Merge, List, One, NoFn, &[], &[]),
    // IoTPy's stream operators as zips of two streams
    ("add", Merge, Exactly(2), One, NoFn, &[], &[]),
    ("sub", Merge, Exactly(2), One, NoFn, &[], &[]),
    ("mul", Merge, Exactly(2), One, NoFn, &[], &[]),
    ("div", Merge, Exactly(2), One, NoFn, &[], &[]),
    ("lt", Merge, Exactly(2), One, NoFn, &[], &[]),
    ("le", Merge, Exactly(2), One, NoFn, &[], &[]),
    ("eq", Merge, Exactly(2), One, NoFn, &[], &[]),
    ("ne", Merge, Exactly(2), One, NoFn, &[], &[]),
    ("gt", Merge, Exactly(2), One, NoFn, &[], &[]),
    ("ge", Merge, Exactly(2), One, NoFn, &[], &[]),
    // 7. split
    ("split_element", Split, One, List, NeedFn, &[], &[]),
    ("unzip", Split, One, List, NoFn, &[], &[]),
    ("separate", Split, One, List, NoFn, &[], &[]),
    ("timed_unzip", Split, One, List, NoFn, &[], &[]),
    // 8. many-to-many
    ("multi_element", Many, List, List, NeedFn, &[], &[]),
    // 10. low level
    ("iot", Iot, One, OneOrList, NeedFn, &[], &[]),
    ("iot_merge", Iot, List, OneOrList, NeedFn, &[], &[]),
];

/// Aliases: (alias, canonical kind).
const ALIASES: &[(&str, &str)] = &[("zip_map_list", "merge_list"), ("unmix", "separate")];

/// The operator kinds a manifest may name: the built-ins plus any registered by the application.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KindTable {
    kinds: BTreeMap<String, KindSpec>,
}

impl Default for KindTable {
    fn default() -> Self {
        KindTable::builtin()
    }
}

impl KindTable {
    /// The built-in kinds of MANIFEST.md and OPERATORS.md (aliases included).
    pub fn builtin() -> KindTable {
        let mut kinds = BTreeMap::new();
        for &(name, family, inputs, outputs, func, required, optional) in BUILTIN {
            let spec = KindSpec {
                name: name.to_string(),
                alias_of: None,
                family,
                inputs,
                outputs,
                func,
                required: required.iter().map(|s| s.to_string()).collect(),
                optional: optional.iter().map(|s| s.to_string()).collect(),
            };
            kinds.insert(name.to_string(), spec);
        }
        for &(alias, target) in ALIASES {
            let mut spec = kinds[target].clone();
            spec.name = alias.to_string();
            spec.alias_of = Some(target.to_string());
            kinds.insert(alias.to_string(), spec);
        }
        KindTable { kinds }
    }

    /// An empty table (only what is registered).
    pub fn empty() -> KindTable {
        KindTable {
            kinds: BTreeMap::new(),
        }
    }

    /// Registers (or replaces) a kind; returns the one it replaced.
    pub fn register(&mut self, spec: KindSpec) -> Option<KindSpec> {
        self.kinds.insert(spec.name.clone(), spec)
    }

    /// Registers `alias` as another name of the existing kind `target`; false if `target` is unknown.
    pub fn register_alias(&mut self, alias: &str, target: &str) -> bool {
        let Some(t) = self.kinds.get(target) else {
            return false;
        };
        let mut spec = t.clone();
        spec.alias_of = Some(t.canonical().to_string());
        spec.name = alias.to_string();
        self.kinds.insert(alias.to_string(), spec);
        true
    }

    /// The kind called `name`.
    pub fn get(&self, name: &str) -> Option<&KindSpec> {
        self.kinds.get(name)
    }

    /// Every kind name, sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.kinds.keys().map(String::as_str)
    }

    /// The closest kind name to `name` (for "did you mean"), if one is close enough.
    pub fn suggest(&self, name: &str) -> Option<&str> {
        closest(name, self.names())
    }
}

/// Levenshtein distance between two strings (in characters).
pub fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur[j + 1] = sub.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

/// The candidate closest to `name`, if within a third of its length in edits (at least 1, at most 3).
pub fn closest<'a>(name: &str, candidates: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    let len = name.chars().count();
    // within a third of the length, and never a complete rewrite of a short name
    let limit = (len / 3).clamp(1, 3).min(len.saturating_sub(1));
    let lower = name.to_lowercase().replace('-', "_");
    candidates
        .map(|c| (edit_distance(&lower, c), c))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_covers_catalog() {
        let t = KindTable::builtin();
        for k in [
            "map_element",
            "filter_element",
            "sink_element",
            "copy",
            "prepend",
            "exponential_smoothing",
            "map_list",
            "sink_list",
            "merge_list",
            "zip_map_list",
            "map_window",
            "map_window_list",
            "sink_window",
            "split_window",
            "merge_window",
            "multi_window",
            "sliding_window_with_startup",
            "timed_window",
            "zip_map",
            "zip_stream",
            "timed_zip",
            "merge_asynch",
            "blend",
            "mix",
            "weave",
            "timed_mix",
            "split_element",
            "unzip",
            "separate",
            "unmix",
            "timed_unzip",
            "multi_element",
            "iot",
            "iot_merge",
            "source.list",
            "source.range",
            "source.file",
            "source.stdin",
            "source_fn",
            "source.exec",
            "sink.file",
            "sink.stdout",
            "sink.exec",
            "sink.null",
            "add",
            "sub",
            "mul",
            "div",
            "lt",
            "le",
            "eq",
            "ne",
            "gt",
            "ge",
        ] {
            assert!(t.get(k).is_some(), "{k} missing");
        }
        assert_eq!(t.get("unmix").unwrap().canonical(), "separate");
        assert_eq!(t.get("zip_map_list").unwrap().canonical(), "merge_list");
        assert!(t.get("source.list").unwrap().accepts_key("interval"));
        assert!(!t.get("sink.file").unwrap().accepts_key("out"));
        assert!(!t.get("copy").unwrap().accepts_key("fn"));
    }

    #[test]
    fn suggestions() {
        let t = KindTable::builtin();
        assert_eq!(t.suggest("map_elemnt"), Some("map_element"));
        assert_eq!(t.suggest("sink.fle"), Some("sink.file"));
        assert_eq!(t.suggest("zzzzzzzzzz"), None);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(closest("q", ["y"].into_iter()), None);
        assert_eq!(closest("xx", ["x"].into_iter()), Some("x"));
    }
}
