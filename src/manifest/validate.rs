//! Turns manifest text into a [`Manifest`], collecting every error with its file:line:col.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use toml::de::{DeTable, DeValue};
use toml::Spanned;

use super::diagnostic::{line_col, Diagnostic, Diagnostics, Severity, Span};
use super::kinds::{closest, Arity, Family, FnUse, KindSpec, KindTable};
use super::schema::*;
use crate::Value;

/// Top-level keys a manifest may hold.
pub const TOP_LEVEL_KEYS: [&str; 5] = ["name", "stream", "group", "supervisor", "operator"];
/// Keys of a `[[stream]]` entry.
pub const STREAM_KEYS: [&str; 6] = [
    "name",
    "type",
    "capacity",
    "capacity_bytes",
    "overflow",
    "on_error",
];
/// Keys of a `[[group]]` entry.
pub const GROUP_KEYS: [&str; 8] = [
    "name",
    "placement",
    "restart",
    "max_restarts",
    "within",
    "backoff",
    "heartbeat_timeout",
    "cpus",
];
/// Keys of the `[supervisor]` table.
pub const SUPERVISOR_KEYS: [&str; 1] = ["strategy"];

type DeItem<'i> = Spanned<DeValue<'i>>;

/// Validates manifest `text` read from `path` against the kinds of `kinds`.
pub fn validate(text: &str, path: &Path, kinds: &KindTable) -> Result<Manifest, Diagnostics> {
    let mut cx = Ctx {
        file: path,
        src: text,
        diags: Diagnostics::new(),
    };
    let (root, errors) = DeTable::parse_recoverable(text);
    if !errors.is_empty() {
        for e in errors {
            let msg = format!("invalid TOML: {}", e.message());
            match e.span() {
                Some(span) => cx.error(span, msg, None),
                None => cx
                    .diags
                    .push(Diagnostic::whole_file(Severity::Error, path, msg)),
            }
        }
        return Err(cx.finish());
    }
    let root = root.into_inner();
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => std::path::PathBuf::from("."),
    };
    let mut m = Manifest {
        name: None,
        path: path.to_path_buf(),
        dir,
        streams: Vec::new(),
        groups: Vec::new(),
        supervisor: SupervisorDecl::default(),
        operators: Vec::new(),
        warnings: Vec::new(),
    };
    let mut ops: Vec<OpInfo> = Vec::new();
    let mut stream_name_spans: Vec<Span> = Vec::new();
    for (key, value) in root.iter() {
        let k = key.get_ref().as_ref();
        match k {
            "name" => match value.get_ref().as_str() {
                Some(s) => m.name = Some(s.to_string()),
                None => cx.type_error(value, "`name`", "a string"),
            },
            "stream" => {
                for item in cx.tables(key, value, "stream") {
                    if let Some((decl, span)) = cx.stream(item) {
                        m.streams.push(decl);
                        stream_name_spans.push(span);
                    }
                }
            }
            "group" => {
                for item in cx.tables(key, value, "group") {
                    if let Some(g) = cx.group(item) {
                        m.groups.push(g);
                    }
                }
            }
            "supervisor" => {
                if let Some(t) = value.get_ref().as_table() {
                    m.supervisor = cx.supervisor(t);
                } else {
                    cx.error(
                        value.span(),
                        format!(
                            "`supervisor` must be a table, found {}",
                            value.get_ref().type_str()
                        ),
                        Some(
                            "write `[supervisor]` followed by `strategy = \"one_for_one\"`".into(),
                        ),
                    );
                }
            }
            "operator" => {
                let items = cx.tables(key, value, "operator");
                for (i, item) in items.into_iter().enumerate() {
                    ops.push(cx.operator(i, item, kinds));
                }
            }
            _ => {
                let hint = match closest(k, TOP_LEVEL_KEYS.iter().copied()) {
                    Some(s) => format!(
                        "did you mean `{s}`? top-level keys are {}",
                        list(&TOP_LEVEL_KEYS)
                    ),
                    None => format!("top-level keys are {}", list(&TOP_LEVEL_KEYS)),
                };
                cx.error(
                    key.span(),
                    format!("unknown top-level key `{k}`"),
                    Some(hint),
                );
            }
        }
    }
    cx.cross_check(&m, &ops, &stream_name_spans);
    m.operators = ops.into_iter().filter_map(|o| o.decl).collect();
    let diags = cx.finish();
    if diags.has_errors() {
        Err(diags)
    } else {
        m.warnings = diags.0;
        Ok(m)
    }
}

/// What validation learned about one operator, beyond its declaration.
struct OpInfo {
    /// The label for messages: `operator "x" (kind)`.
    name: Option<(String, Span)>,
    line: usize,
    is_sink: bool,
    outputs: Vec<(String, Span)>,
    inputs: Vec<(String, Span)>,
    group: Option<(String, Span)>,
    /// The declaration, when the operator itself is valid.
    decl: Option<OperatorDecl>,
}

struct Ctx<'a> {
    file: &'a Path,
    src: &'a str,
    diags: Diagnostics,
}

fn list(keys: &[&str]) -> String {
    keys.iter()
        .map(|k| format!("`{k}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn quoted(names: &[&str]) -> String {
    names
        .iter()
        .map(|k| format!("\"{k}\""))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A typical value for a key, for "add `key = ...`" hints.
fn example(key: &str) -> &'static str {
    match key {
        "name" => "\"<unique name>\"",
        "op" => "\"<kind>\"",
        "in" | "out" => "\"<stream>\"",
        "fn" => "\"<script>\"",
        "window" => "<integer >= 1>",
        "duration" => "<number > 0>",
        "values" => "[...]",
        "path" => "\"<file>\"",
        "command" => "[\"<program>\", \"<arg>\", ...]",
        "alpha" => "<number>",
        "end" | "start" => "<integer>",
        "agg" => "\"sum\"",
        _ => "...",
    }
}

impl<'a> Ctx<'a> {
    fn finish(mut self) -> Diagnostics {
        self.diags.sort();
        self.diags
    }

    fn error(&mut self, span: Span, msg: impl Into<String>, hint: Option<String>) {
        self.push(Severity::Error, span, msg.into(), hint);
    }

    fn warn(&mut self, span: Span, msg: impl Into<String>, hint: Option<String>) {
        self.push(Severity::Warning, span, msg.into(), hint);
    }

    fn push(&mut self, sev: Severity, span: Span, msg: String, hint: Option<String>) {
        let mut d = Diagnostic::at(sev, self.file, self.src, span, msg);
        d.hint = hint;
        self.diags.push(d);
    }

    fn line(&self, span: &Span) -> usize {
        line_col(self.src, span.start).0
    }

    fn type_error(&mut self, v: &DeItem<'_>, what: &str, expected: &str) {
        self.error(
            v.span(),
            format!(
                "{what} must be {expected}, found {}",
                v.get_ref().type_str()
            ),
            None,
        );
    }

    /// The tables of an array of tables (`[[key]]`), reporting anything else.
    fn tables<'v, 'i>(
        &mut self,
        key: &Spanned<std::borrow::Cow<'i, str>>,
        value: &'v DeItem<'i>,
        what: &str,
    ) -> Vec<(Span, &'v DeTable<'i>)> {
        let mut out = Vec::new();
        match value.get_ref() {
            DeValue::Array(items) => {
                for item in items.iter() {
                    match item.get_ref().as_table() {
                        Some(t) => out.push((item.span(), t)),
                        None => self.error(
                            item.span(),
                            format!(
                                "each `{what}` entry must be a table, found {}",
                                item.get_ref().type_str()
                            ),
                            Some(format!("write each one as a `[[{what}]]` section")),
                        ),
                    }
                }
            }
            other => self.error(
                key.span(),
                format!(
                    "`{what}` must be an array of tables, found {}",
                    other.type_str()
                ),
                Some(format!(
                    "write `[[{what}]]` (double brackets) for each entry"
                )),
            ),
        }
        out
    }

    /// Converts a TOML value to a [`Value`], reporting integers that do not fit an i64.
    fn value(&mut self, v: &DeItem<'_>) -> Value {
        match v.get_ref() {
            DeValue::String(s) => Value::Str(s.to_string()),
            DeValue::Integer(i) => match i64::from_str_radix(i.as_str(), i.radix()) {
                Ok(n) => Value::Int(n),
                Err(_) => {
                    self.error(
                        v.span(),
                        format!("integer {i} does not fit in 64 bits"),
                        None,
                    );
                    Value::Null
                }
            },
            DeValue::Float(f) => Value::Float(f.as_str().parse().unwrap_or(f64::NAN)),
            DeValue::Boolean(b) => Value::Bool(*b),
            DeValue::Datetime(d) => Value::Str(d.to_string()),
            DeValue::Array(a) => Value::Array(a.iter().map(|x| self.value(x)).collect()),
            DeValue::Table(t) => Value::Map(
                t.iter()
                    .map(|(k, x)| (k.get_ref().to_string(), self.value(x)))
                    .collect(),
            ),
        }
    }

    /// Rejects keys not in `allowed`, with a "did you mean" hint.
    fn unknown_keys(&mut self, t: &DeTable<'_>, allowed: &[&str], what: &str) {
        for (k, _) in t.iter() {
            let name = k.get_ref().as_ref();
            if !allowed.contains(&name) {
                let hint = match closest(name, allowed.iter().copied()) {
                    Some(s) => format!("did you mean `{s}`? valid keys: {}", list(allowed)),
                    None => format!("valid keys: {}", list(allowed)),
                };
                self.error(
                    k.span(),
                    format!("unknown key `{name}` in {what}"),
                    Some(hint),
                );
            }
        }
    }

    /// A string-valued key with a fixed set of spellings.
    fn choice<T>(
        &mut self,
        t: &DeTable<'_>,
        key: &str,
        what: &str,
        names: &[&str],
        parse: impl Fn(&str) -> Option<T>,
    ) -> Option<T> {
        let v = t.get(key)?;
        match v.get_ref().as_str() {
            Some(s) => match parse(s) {
                Some(x) => Some(x),
                None => {
                    let hint = match closest(s, names.iter().copied()) {
                        Some(c) => {
                            format!("did you mean \"{c}\"? expected one of {}", quoted(names))
                        }
                        None => format!("expected one of {}", quoted(names)),
                    };
                    self.error(
                        v.span(),
                        format!("bad `{key}` \"{s}\" in {what}"),
                        Some(hint),
                    );
                    None
                }
            },
            None => {
                self.error(
                    v.span(),
                    format!(
                        "`{key}` in {what} must be a string, found {}",
                        v.get_ref().type_str()
                    ),
                    Some(format!("expected one of {}", quoted(names))),
                );
                None
            }
        }
    }

    /// A duration-string value; `positive` rejects zero.
    fn duration(
        &mut self,
        v: &DeItem<'_>,
        key: &str,
        what: &str,
        positive: bool,
    ) -> Option<Duration> {
        let Some(s) = v.get_ref().as_str() else {
            self.error(
                v.span(),
                format!(
                    "`{key}` in {what} must be a duration string, found {}",
                    v.get_ref().type_str()
                ),
                Some("write a number and a unit (ns, us, ms, s, m, h), e.g. \"30s\"".into()),
            );
            return None;
        };
        match parse_duration(s) {
            Ok(d) if positive && d.is_zero() => {
                self.error(
                    v.span(),
                    format!("`{key}` in {what} must be > 0, found \"{s}\""),
                    None,
                );
                None
            }
            Ok(d) => Some(d),
            Err(e) => {
                self.error(v.span(), format!("bad `{key}` in {what}: {e}"), None);
                None
            }
        }
    }

    /// The `name` of a stream or group entry, required, a non-empty string.
    fn entry_name(&mut self, header: &Span, t: &DeTable<'_>, what: &str) -> Option<(String, Span)> {
        match t.get("name") {
            None => {
                let line = self.line(header);
                self.error(
                    header.clone(),
                    format!("{what} entry at line {line} needs `name`"),
                    Some("add `name = \"<unique name>\"`".into()),
                );
                None
            }
            Some(v) => match v.get_ref().as_str() {
                Some("") => {
                    self.error(v.span(), format!("{what} name is empty"), None);
                    None
                }
                Some(s) => Some((s.to_string(), v.span())),
                None => {
                    self.type_error(v, &format!("{what} `name`"), "a string");
                    None
                }
            },
        }
    }

    fn stream(&mut self, (header, t): (Span, &DeTable<'_>)) -> Option<(StreamDecl, Span)> {
        let name = self.entry_name(&header, t, "stream");
        let what = match &name {
            Some((n, _)) => format!("stream \"{n}\""),
            None => "stream".to_string(),
        };
        self.unknown_keys(t, &STREAM_KEYS, &what);
        let mut d = StreamDecl::default_for(name.as_ref().map_or("", |(n, _)| n));
        d.span = Some(header);
        if let Some(ty) = self.choice(
            t,
            "type",
            &what,
            &["any", "i64", "f64", "bool", "str"],
            StreamType::parse,
        ) {
            d.ty = ty;
        }
        if let Some(o) = self.choice(
            t,
            "overflow",
            &what,
            &["block", "drop_oldest", "drop_newest"],
            Overflow::parse,
        ) {
            d.overflow = o;
        }
        if let Some(o) = self.choice(t, "on_error", &what, &["fail", "skip"], OnError::parse) {
            d.on_error = o;
        }
        if let Some(v) = t.get("capacity") {
            match self.int(v) {
                Some(c) if c >= 1 => d.capacity = usize::try_from(c).unwrap_or(usize::MAX),
                _ => self.error(
                    v.span(),
                    format!("`capacity` of {what} must be an integer >= 1"),
                    None,
                ),
            }
        }
        if let Some(v) = t.get("capacity_bytes") {
            let bytes = match v.get_ref() {
                DeValue::Integer(_) => self.int(v).filter(|&b| b >= 1).map(|b| b as u64),
                DeValue::String(s) => parse_bytes(s),
                _ => None,
            };
            match bytes {
                Some(b) => d.max_bytes = usize::try_from(b).unwrap_or(usize::MAX),
                None => self.error(
                    v.span(),
                    format!(
                        "`capacity_bytes` of {what} must be a number of bytes >= 1: an integer, \
                         or a string such as \"64 MiB\""
                    ),
                    Some("units: B, KiB, MiB, GiB (or kB, MB, GB)".into()),
                ),
            }
        }
        name.map(|(_, span)| (d, span))
    }

    fn group(&mut self, (header, t): (Span, &DeTable<'_>)) -> Option<GroupDecl> {
        let name = self.entry_name(&header, t, "group");
        let what = match &name {
            Some((n, _)) => format!("group \"{n}\""),
            None => "group".to_string(),
        };
        self.unknown_keys(t, &GROUP_KEYS, &what);
        let mut g = GroupDecl::default_for(name.as_ref().map_or("", |(n, _)| n));
        g.span = header;
        if let Some(p) = self.choice(
            t,
            "placement",
            &what,
            &["process", "thread"],
            Placement::parse,
        ) {
            g.placement = p;
        }
        if let Some(r) = self.choice(
            t,
            "restart",
            &what,
            &["permanent", "transient", "temporary"],
            Restart::parse,
        ) {
            g.restart = r;
        }
        if let Some(v) = t.get("max_restarts") {
            match self.int(v).and_then(|i| u32::try_from(i).ok()) {
                Some(n) => g.max_restarts = n,
                None => self.error(
                    v.span(),
                    format!("`max_restarts` of {what} must be an integer >= 0"),
                    None,
                ),
            }
        }
        if let Some(v) = t.get("within") {
            if let Some(d) = self.duration(v, "within", &what, true) {
                g.within = d;
            }
        }
        if let Some(v) = t.get("heartbeat_timeout") {
            g.heartbeat_timeout = self.duration(v, "heartbeat_timeout", &what, true);
        }
        if let Some(v) = t.get("cpus") {
            let cpus: Option<Vec<usize>> = match v.get_ref().as_array() {
                Some(a) if !a.is_empty() => a
                    .iter()
                    .map(|c| {
                        self.int(c)
                            .and_then(|i| usize::try_from(i).ok())
                            .filter(|&i| i < crate::affinity::MAX_CPUS)
                    })
                    .collect(),
                _ => None,
            };
            match cpus {
                Some(c) => g.cpus = Some(c),
                None => self.error(
                    v.span(),
                    format!(
                        "`cpus` of {what} must be a non-empty array of CPU numbers (integers \
                         from 0 to {})",
                        crate::affinity::MAX_CPUS - 1
                    ),
                    Some("e.g. `cpus = [0]` or `cpus = [2, 3]`".into()),
                ),
            }
        }
        if let Some(v) = t.get("backoff") {
            match v.get_ref().as_array().map(|a| &a[..]) {
                Some([first, cap]) => {
                    let f = self.duration(first, "backoff", &what, false);
                    let c = self.duration(cap, "backoff", &what, false);
                    if let (Some(f), Some(c)) = (f, c) {
                        if f > c {
                            self.error(
                                v.span(),
                                format!("`backoff` of {what}: the first delay exceeds the cap"),
                                Some("write `backoff = [first, cap]` with first <= cap".into()),
                            );
                        } else {
                            g.backoff = (f, c);
                        }
                    }
                }
                _ => self.error(
                    v.span(),
                    format!("`backoff` of {what} must be an array of two durations [first, cap]"),
                    Some("e.g. `backoff = [\"100ms\", \"10s\"]`".into()),
                ),
            }
        }
        name.map(|_| g)
    }

    fn supervisor(&mut self, t: &DeTable<'_>) -> SupervisorDecl {
        self.unknown_keys(t, &SUPERVISOR_KEYS, "[supervisor]");
        let mut s = SupervisorDecl::default();
        if let Some(st) = self.choice(
            t,
            "strategy",
            "[supervisor]",
            &["one_for_one", "one_for_all", "rest_for_one"],
            Strategy::parse,
        ) {
            s.strategy = st;
        }
        s
    }

    fn int(&mut self, v: &DeItem<'_>) -> Option<i64> {
        match v.get_ref() {
            DeValue::Integer(_) => self.value(v).as_i64(),
            _ => None,
        }
    }

    fn number(&mut self, v: &DeItem<'_>) -> Option<f64> {
        match v.get_ref() {
            DeValue::Integer(_) | DeValue::Float(_) => {
                self.value(v).as_f64().filter(|f| f.is_finite())
            }
            _ => None,
        }
    }

    /// An `in`/`out` value: the names with their spans, and whether it was a list.
    fn streams(
        &mut self,
        v: &DeItem<'_>,
        key: &str,
        label: &str,
    ) -> Option<(Vec<(String, Span)>, bool)> {
        let bad = |cx: &mut Self, span: Span, found: &str| {
            cx.error(
                span,
                format!(
                    "`{key}` of {label} must be a stream name or a list of names, found {found}"
                ),
                Some(format!("write `{key} = \"x\"` or `{key} = [\"x\", \"y\"]`")),
            );
        };
        match v.get_ref() {
            DeValue::String(s) if s.is_empty() => {
                self.error(
                    v.span(),
                    format!("empty stream name in `{key}` of {label}"),
                    None,
                );
                None
            }
            DeValue::String(s) => Some((vec![(s.to_string(), v.span())], false)),
            DeValue::Array(items) => {
                if items.is_empty() {
                    self.error(
                        v.span(),
                        format!("`{key}` of {label} is an empty list"),
                        None,
                    );
                    return None;
                }
                let mut out = Vec::new();
                let mut ok = true;
                for item in items.iter() {
                    match item.get_ref().as_str() {
                        Some("") => {
                            self.error(
                                item.span(),
                                format!("empty stream name in `{key}` of {label}"),
                                None,
                            );
                            ok = false;
                        }
                        Some(s) => out.push((s.to_string(), item.span())),
                        None => {
                            bad(
                                self,
                                item.span(),
                                &format!("a list holding {}", item.get_ref().type_str()),
                            );
                            ok = false;
                        }
                    }
                }
                ok.then_some((out, true))
            }
            other => {
                bad(self, v.span(), other.type_str());
                None
            }
        }
    }

    /// Checks the shape of `in`/`out` against the kind's arity.
    fn arity(
        &mut self,
        v: &DeItem<'_>,
        key: &str,
        label: &str,
        arity: Arity,
        n: usize,
        is_list: bool,
    ) -> bool {
        let msg = match arity {
            Arity::One if n > 1 => Some((
                format!("{label} takes one stream in `{key}`, found a list of {n}"),
                format!("write `{key} = \"<stream>\"`"),
            )),
            Arity::List if !is_list => Some((
                format!("{label} takes a list of streams in `{key}`, found a string"),
                format!("write `{key} = [\"a\", \"b\"]` (order matters)"),
            )),
            Arity::Exactly(k) if !is_list || n != k => Some((
                format!(
                    "{label} takes a list of exactly {k} streams in `{key}`, found {}",
                    if is_list {
                        format!("{n}")
                    } else {
                        "a string".into()
                    }
                ),
                format!("write `{key} = [\"a\", \"b\"]`"),
            )),
            _ => None,
        };
        match msg {
            Some((m, h)) => {
                self.error(v.span(), m, Some(h));
                false
            }
            None => true,
        }
    }

    fn operator(
        &mut self,
        idx: usize,
        (header, t): (Span, &DeTable<'_>),
        kinds: &KindTable,
    ) -> OpInfo {
        let line = self.line(&header);
        let mut ok = true;
        let name = match t.get("name") {
            Some(v) => match v.get_ref().as_str() {
                Some("") => {
                    self.error(v.span(), "operator name is empty", None);
                    None
                }
                Some(s) => Some((s.to_string(), v.span())),
                None => {
                    self.type_error(v, "operator `name`", "a string");
                    None
                }
            },
            None => None,
        };
        let op = match t.get("op") {
            Some(v) => match v.get_ref().as_str() {
                Some(s) => Some((s.to_string(), v.span())),
                None => {
                    self.type_error(v, "operator `op`", "a string naming an operator kind");
                    ok = false;
                    None
                }
            },
            None => None,
        };
        let who = match &name {
            Some((n, _)) => format!("operator \"{n}\""),
            None => format!("operator #{} (line {line})", idx + 1),
        };
        let label = match &op {
            Some((o, _)) => format!("{who} ({o})"),
            None => who.clone(),
        };
        if name.is_none() && t.get("name").is_none() {
            self.error(
                header.clone(),
                format!("{label} needs `name`"),
                Some("add `name = \"<unique name>\"`".into()),
            );
        }
        if name.is_none() {
            ok = false;
        }
        if t.get("op").is_none() {
            self.error(
                header.clone(),
                format!("{label} needs `op`"),
                Some("add `op = \"<kind>\"` (see OPERATORS.md)".into()),
            );
            ok = false;
        }
        let spec: Option<&KindSpec> = match &op {
            Some((o, span)) => match kinds.get(o) {
                Some(s) => Some(s),
                None => {
                    let hint = match kinds.suggest(o) {
                        Some(s) => format!("did you mean \"{s}\"?"),
                        None => "see OPERATORS.md for the operator kinds".to_string(),
                    };
                    self.error(
                        span.clone(),
                        format!("unknown operator kind \"{o}\" in {who}"),
                        Some(hint),
                    );
                    ok = false;
                    None
                }
            },
            None => None,
        };

        // in / out
        let mut io: [(Vec<(String, Span)>, bool); 2] = [(Vec::new(), false), (Vec::new(), false)];
        for (slot, key) in ["in", "out"].into_iter().enumerate() {
            let arity = spec.map(|s| if key == "in" { s.inputs } else { s.outputs });
            match (t.get(key), arity) {
                (Some(_), Some(Arity::None)) => {} // reported as a key the kind does not take
                (Some(v), arity) => match self.streams(v, key, &label) {
                    Some((names, is_list)) => {
                        if let Some(a) = arity {
                            ok &= self.arity(v, key, &label, a, names.len(), is_list);
                        }
                        io[slot] = (names, is_list);
                    }
                    None => ok = false,
                },
                (None, Some(Arity::None)) | (None, None) => {}
                (None, Some(a)) => {
                    let ex = match a {
                        Arity::List | Arity::Exactly(_) => "[\"a\", \"b\"]",
                        _ => "\"<stream>\"",
                    };
                    self.error(
                        header.clone(),
                        format!("{label} needs `{key}`"),
                        Some(format!("add `{key} = {ex}`")),
                    );
                    ok = false;
                }
            }
        }

        let group = match t.get("group") {
            Some(v) => match v.get_ref().as_str() {
                Some(s) => Some((s.to_string(), v.span())),
                None => {
                    self.type_error(v, &format!("`group` of {label}"), "a group name");
                    ok = false;
                    None
                }
            },
            None => None,
        };

        let [(inputs, inputs_list), (outputs, outputs_list)] = io;
        let mut info = OpInfo {
            name: name.clone(),
            line,
            is_sink: spec.is_some_and(|s| s.is_sink()),
            outputs,
            inputs,
            group,
            decl: None,
        };
        let Some(spec) = spec else {
            return info;
        };

        // keys the kind does not take
        let valid = spec.valid_keys();
        let valid_refs: Vec<&str> = valid.iter().map(String::as_str).collect();
        for (k, _) in t.iter() {
            let key = k.get_ref().as_ref();
            if valid_refs.contains(&key) {
                continue;
            }
            ok = false;
            let (msg, hint) = match key {
                "in" if spec.is_source() => (
                    format!("{label} is a source and takes no `in`"),
                    "remove `in`".to_string(),
                ),
                "out" if spec.is_sink() => (
                    format!("{label} is a sink and takes no `out`"),
                    "remove `out`".to_string(),
                ),
                "fn" | "state" | "params" | "agg"
                    if !valid_refs.contains(&"fn") || key == "agg" =>
                {
                    (
                        format!("{label} takes no `{key}`"),
                        format!("valid keys: {}", list(&valid_refs)),
                    )
                }
                _ => (
                    format!("unknown key `{key}` in {label}"),
                    match closest(key, valid_refs.iter().copied()) {
                        Some(s) => format!("did you mean `{s}`? valid keys: {}", list(&valid_refs)),
                        None => format!("valid keys: {}", list(&valid_refs)),
                    },
                ),
            };
            self.error(k.span(), msg, Some(hint));
        }

        // function or reducer
        let has_fn = t.contains_key("fn");
        let has_agg = t.contains_key("agg");
        match spec.func {
            FnUse::Required if !has_fn => {
                self.error(
                    header.clone(),
                    format!("{label} needs `fn`"),
                    Some("add `fn = \"<script>\"`".into()),
                );
                ok = false;
            }
            FnUse::FnOrAgg if !has_fn && !has_agg => {
                self.error(
                    header.clone(),
                    format!("{label} needs `fn` or `agg`"),
                    Some(format!(
                        "add `fn = \"<script>\"` or `agg = ` one of {}",
                        quoted(&Agg::NAMES)
                    )),
                );
                ok = false;
            }
            FnUse::FnOrAgg if has_fn && has_agg => {
                let span = t
                    .get_key_value("agg")
                    .map_or(header.clone(), |(k, _)| k.span());
                self.error(
                    span,
                    format!("{label} has both `fn` and `agg`"),
                    Some("give one of them".into()),
                );
                ok = false;
            }
            _ => {}
        }

        // required kind-specific keys
        for key in &spec.required {
            if !t.contains_key(key.as_str()) {
                self.error(
                    header.clone(),
                    format!("{label} needs `{key}`"),
                    Some(format!("add `{key} = {}`", example(key))),
                );
                ok = false;
            }
        }

        let func = match t.get("fn") {
            Some(v) if valid_refs.contains(&"fn") => match v.get_ref().as_str() {
                Some(code) if code.trim().is_empty() => {
                    self.error(v.span(), format!("`fn` of {label} is empty"), None);
                    ok = false;
                    None
                }
                Some(code) => Some(self.script(code, v.span())),
                None => {
                    self.type_error(v, &format!("`fn` of {label}"), "a string (a Rhai script)");
                    ok = false;
                    None
                }
            },
            _ => None,
        };
        let state = match t.get("state") {
            Some(v) if valid_refs.contains(&"state") => Some(self.value(v)),
            _ => None,
        };
        let mut params = BTreeMap::new();
        if let Some(v) = t.get("params").filter(|_| valid_refs.contains(&"params")) {
            match self.value(v) {
                Value::Map(m) => params = m,
                _ => {
                    self.type_error(
                        v,
                        &format!("`params` of {label}"),
                        "a table (e.g. `{ addend = 2 }`)",
                    );
                    ok = false;
                }
            }
        }

        // kind-specific keys and their values
        let mut keys = BTreeMap::new();
        let n_inputs = info.inputs.len();
        for (k, v) in t.iter() {
            let key = k.get_ref().as_ref();
            if ["name", "op", "in", "out", "group", "fn", "state", "params"].contains(&key)
                || !valid_refs.contains(&key)
            {
                continue;
            }
            if spec.family != Family::Custom {
                ok &= self.check_value(spec, key, v, &label, n_inputs);
            }
            keys.insert(key.to_string(), self.value(v));
        }
        if spec.canonical() == "exponential_smoothing" {
            if let Some(v) = t.get("state") {
                if self.number(v).is_none() {
                    self.error(
                        v.span(),
                        format!("`state` of {label} must be a number"),
                        None,
                    );
                    ok = false;
                }
            }
        }

        if ok {
            info.decl = Some(OperatorDecl {
                name: name.map(|(n, _)| n).unwrap_or_default(),
                op: spec.name.clone(),
                kind: spec.canonical().to_string(),
                inputs: info.inputs.iter().map(|(n, _)| n.clone()).collect(),
                outputs: info.outputs.iter().map(|(n, _)| n.clone()).collect(),
                inputs_list,
                outputs_list,
                group: info.group.as_ref().map(|(g, _)| g.clone()),
                func,
                state,
                params,
                keys,
                span: header,
                line,
                input_spans: info.inputs.iter().map(|(_, s)| s.clone()).collect(),
                output_spans: info.outputs.iter().map(|(_, s)| s.clone()).collect(),
            });
        }
        info
    }

    /// The script of `fn`, with the manifest position of its first character.
    fn script(&self, code: &str, span: Span) -> ScriptSource {
        let raw = &self.src[span.start.min(self.src.len())..];
        let mut offset = span.start;
        if raw.starts_with("'''") || raw.starts_with("\"\"\"") {
            offset += 3;
            // TOML trims a newline right after the opening delimiter
            let rest = &self.src[offset.min(self.src.len())..];
            if rest.starts_with("\r\n") {
                offset += 2;
            } else if rest.starts_with('\n') {
                offset += 1;
            }
        } else if raw.starts_with('\'') || raw.starts_with('"') {
            offset += 1;
        }
        let (line, col) = line_col(self.src, offset);
        ScriptSource {
            code: code.to_string(),
            line,
            col,
        }
    }

    /// Checks the value of a built-in kind's key; false (and an error) when it is bad.
    fn check_value(
        &mut self,
        spec: &KindSpec,
        key: &str,
        v: &DeItem<'_>,
        label: &str,
        n_inputs: usize,
    ) -> bool {
        let kind = spec.canonical();
        let per_input = matches!(kind, "merge_window" | "multi_window");
        let problem: Option<(String, Option<String>)> = match key {
            "window" | "step" if spec.family == Family::Window => {
                let pos_int = |cx: &mut Self, x: &DeItem<'_>| cx.int(x).is_some_and(|i| i >= 1);
                match v.get_ref() {
                    DeValue::Array(items) if per_input => {
                        if items.iter().all(|x| pos_int(self, x)) && !items.is_empty() {
                            (items.len() != n_inputs).then(|| {
                                (
                                    format!(
                                        "`{key}` of {label} lists {} values for {n_inputs} inputs",
                                        items.len()
                                    ),
                                    Some("give one value per input, or a single integer".into()),
                                )
                            })
                        } else {
                            Some((format!("`{key}` of {label} must hold integers >= 1"), None))
                        }
                    }
                    _ if pos_int(self, v) => None,
                    _ => Some((
                        format!("`{key}` of {label} must be an integer >= 1"),
                        per_input.then(|| "or an array of integers >= 1, one per input".into()),
                    )),
                }
            }
            "duration" | "step" if spec.family == Family::TimedWindow => match self.number(v) {
                Some(x) if x > 0.0 => None,
                _ => Some((format!("`{key}` of {label} must be a number > 0"), None)),
            },
            "start" if spec.family == Family::TimedWindow => match self.number(v) {
                Some(_) => None,
                None => Some((format!("`start` of {label} must be a number"), None)),
            },
            "start" | "end" => match self.int(v) {
                Some(_) => None,
                None => Some((format!("`{key}` of {label} must be an integer"), None)),
            },
            "step" => match self.int(v) {
                Some(0) => Some((format!("`step` of {label} must not be 0"), None)),
                Some(_) => None,
                None => Some((format!("`step` of {label} must be an integer"), None)),
            },
            "values" => (!v.get_ref().is_array()).then(|| {
                (
                    format!(
                        "`values` of {label} must be an array, found {}",
                        v.get_ref().type_str()
                    ),
                    Some("e.g. `values = [1, 2, 3]`".into()),
                )
            }),
            "path" => match v.get_ref().as_str() {
                Some(s) if !s.is_empty() => None,
                _ => Some((
                    format!("`path` of {label} must be a non-empty string"),
                    None,
                )),
            },
            "format" => match v.get_ref().as_str() {
                Some(s) if Format::parse(s).is_some() => None,
                Some(s) => Some((
                    format!("bad `format` \"{s}\" in {label}"),
                    Some(match closest(s, Format::NAMES.iter().copied()) {
                        Some(c) => format!(
                            "did you mean \"{c}\"? expected one of {}",
                            quoted(&Format::NAMES)
                        ),
                        None => format!("expected one of {}", quoted(&Format::NAMES)),
                    }),
                )),
                None => Some((
                    format!("`format` of {label} must be a string"),
                    Some(format!("expected one of {}", quoted(&Format::NAMES))),
                )),
            },
            "command" => match v.get_ref().as_array() {
                Some(a) if !a.is_empty() && a.iter().all(|x| x.get_ref().is_str()) => None,
                _ => Some((
                    format!("`command` of {label} must be a non-empty array of strings"),
                    Some("e.g. `command = [\"python3\", \"sensor.py\"]`".into()),
                )),
            },
            "agg" => match v.get_ref().as_str() {
                Some(s) if Agg::parse(s).is_some() => None,
                Some(s) => Some((
                    format!("bad `agg` \"{s}\" in {label}"),
                    Some(format!("expected one of {}", quoted(&Agg::NAMES))),
                )),
                None => Some((
                    format!("`agg` of {label} must be a string"),
                    Some(format!("expected one of {}", quoted(&Agg::NAMES))),
                )),
            },
            "flush" => (!v.get_ref().is_bool())
                .then(|| (format!("`flush` of {label} must be true or false"), None)),
            "alpha" => self
                .number(v)
                .is_none()
                .then(|| (format!("`alpha` of {label} must be a number"), None)),
            "count" => match self.int(v) {
                Some(c) if c >= 0 => None,
                _ => Some((format!("`count` of {label} must be an integer >= 0"), None)),
            },
            "interval" => {
                return self.duration(v, "interval", label, false).is_some();
            }
            _ => None,
        };
        match problem {
            Some((msg, hint)) => {
                self.error(v.span(), msg, hint);
                false
            }
            None => true,
        }
    }

    /// Checks across entries: unique names, one producer per stream, declared groups.
    fn cross_check(&mut self, m: &Manifest, ops: &[OpInfo], stream_name_spans: &[Span]) {
        // unique names
        let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
        for op in ops {
            if let Some((n, span)) = &op.name {
                if let Some(first) = seen.get(n.as_str()) {
                    self.error(
                        span.clone(),
                        format!("duplicate operator name \"{n}\" (first used at line {first})"),
                        Some("operator names must be unique".into()),
                    );
                } else {
                    seen.insert(n, self.line(span));
                }
            }
        }
        let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
        for (s, span) in m.streams.iter().zip(stream_name_spans) {
            if let Some(first) = seen.get(s.name.as_str()) {
                self.error(
                    span.clone(),
                    format!(
                        "stream \"{}\" is declared twice (first at line {first})",
                        s.name
                    ),
                    None,
                );
            } else {
                seen.insert(&s.name, self.line(span));
            }
        }
        let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
        for g in &m.groups {
            if let Some(first) = seen.get(g.name.as_str()) {
                self.error(
                    g.span.clone(),
                    format!(
                        "group \"{}\" is declared twice (first at line {first})",
                        g.name
                    ),
                    None,
                );
            } else {
                seen.insert(&g.name, self.line(&g.span));
            }
        }

        // one producer per stream
        let op_name = |o: &OpInfo| match &o.name {
            Some((n, _)) => format!("\"{n}\""),
            None => format!("the operator at line {}", o.line),
        };
        let mut producer: BTreeMap<&str, (String, usize)> = BTreeMap::new();
        for op in ops {
            for (s, span) in &op.outputs {
                match producer.get(s.as_str()) {
                    Some((first, line)) => {
                        let me = op_name(op);
                        let msg = if *first == me {
                            format!("stream \"{s}\" is listed twice in `out` of {me} (line {line})")
                        } else {
                            format!(
                                "stream \"{s}\" is produced by both {first} (line {line}) and {me}"
                            )
                        };
                        self.error(
                            span.clone(),
                            msg,
                            Some(
                                "a stream has exactly one producer; use `copy` or another name"
                                    .into(),
                            ),
                        );
                    }
                    None => {
                        producer.insert(s, (op_name(op), self.line(span)));
                    }
                }
            }
        }
        let consumed: BTreeSet<&str> = ops
            .iter()
            .flat_map(|o| o.inputs.iter().map(|(s, _)| s.as_str()))
            .collect();
        for op in ops {
            for (s, span) in &op.inputs {
                if !producer.contains_key(s.as_str()) {
                    let hint = match closest(s, producer.keys().copied()) {
                        Some(c) => format!("did you mean \"{c}\"?"),
                        None => format!("add an operator with `out = \"{s}\"`"),
                    };
                    self.error(
                        span.clone(),
                        format!(
                            "stream \"{s}\" is consumed by {} but produced by no operator",
                            op_name(op)
                        ),
                        Some(hint),
                    );
                }
            }
            if !op.is_sink {
                for (s, span) in &op.outputs {
                    if !consumed.contains(s.as_str()) {
                        self.warn(
                            span.clone(),
                            format!(
                                "stream \"{s}\" produced by {} is consumed by no operator",
                                op_name(op)
                            ),
                            Some(
                                "its elements are discarded; `sink.null` makes that explicit"
                                    .into(),
                            ),
                        );
                    }
                }
            }
        }
        for (s, span) in m.streams.iter().zip(stream_name_spans) {
            if !producer.contains_key(s.name.as_str()) && !consumed.contains(s.name.as_str()) {
                self.error(
                    span.clone(),
                    format!(
                        "stream \"{}\" is declared but produced by no operator",
                        s.name
                    ),
                    Some(format!(
                        "add an operator with `out = \"{}\"`, or remove the declaration",
                        s.name
                    )),
                );
            }
        }

        // groups
        let groups: Vec<&str> = m.groups.iter().map(|g| g.name.as_str()).collect();
        let mut used = BTreeSet::new();
        for op in ops {
            if let Some((g, span)) = &op.group {
                used.insert(g.as_str());
                if !groups.contains(&g.as_str()) {
                    let hint = match closest(g, groups.iter().copied()) {
                        Some(c) => format!("did you mean \"{c}\"?"),
                        None => format!("declare it: `[[group]]` with `name = \"{g}\"`"),
                    };
                    self.error(
                        span.clone(),
                        format!("{} names group \"{g}\", which is not declared", op_name(op)),
                        Some(hint),
                    );
                }
            }
        }
        for g in &m.groups {
            if !g.name.is_empty() && !used.contains(g.name.as_str()) {
                self.warn(
                    g.span.clone(),
                    format!("group \"{}\" has no operator", g.name),
                    None,
                );
            }
        }
    }
}

/// A size such as `"64 MiB"`, `"512kB"` or `"1000"` in bytes (at least 1); `None` when it is
/// not one.
fn parse_bytes(s: &str) -> Option<u64> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: f64 = num.parse().ok()?;
    let scale: u64 = match unit.trim() {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "kB" | "KB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        _ => return None,
    };
    let b = (n * scale as f64).round();
    (b >= 1.0 && b < u64::MAX as f64).then_some(b as u64)
}
