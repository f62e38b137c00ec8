//! The typed, validated manifest: streams, groups, supervisor and operators, with defaults applied.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::diagnostic::{Diagnostic, Span};
use crate::Value;

/// A validated pipeline manifest.
#[derive(Clone, Debug, PartialEq)]
pub struct Manifest {
    /// The optional top-level `name`.
    pub name: Option<String>,
    /// The manifest file, as given to `load`/`parse`.
    pub path: PathBuf,
    /// The manifest's directory: relative paths in the manifest resolve against it.
    pub dir: PathBuf,
    /// The `[[stream]]` declarations, in file order.
    pub streams: Vec<StreamDecl>,
    /// The `[[group]]` declarations, in file order (the supervisor's order).
    pub groups: Vec<GroupDecl>,
    /// The `[supervisor]` table (defaults when absent).
    pub supervisor: SupervisorDecl,
    /// The `[[operator]]` entries, in file order.
    pub operators: Vec<OperatorDecl>,
    /// Warnings found while validating (the manifest is still valid).
    pub warnings: Vec<Diagnostic>,
}

impl Manifest {
    /// Resolves a path written in the manifest against the manifest's directory.
    pub fn resolve(&self, p: &str) -> PathBuf {
        let p = Path::new(p);
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.dir.join(p)
        }
    }

    /// The declaration of stream `name`, or the default one when it is not declared.
    pub fn stream(&self, name: &str) -> StreamDecl {
        self.streams
            .iter()
            .find(|s| s.name == name)
            .cloned()
            .unwrap_or_else(|| StreamDecl::default_for(name))
    }

    /// Every stream name used by an operator or declared, in order of first appearance.
    pub fn stream_names(&self) -> Vec<String> {
        let mut seen = std::collections::BTreeSet::new();
        let mut out = Vec::new();
        let declared = self.streams.iter().map(|s| &s.name);
        let used = self
            .operators
            .iter()
            .flat_map(|o| o.outputs.iter().chain(o.inputs.iter()));
        for name in declared.chain(used) {
            if seen.insert(name.clone()) {
                out.push(name.clone());
            }
        }
        out
    }

    /// The operator called `name`.
    pub fn operator(&self, name: &str) -> Option<&OperatorDecl> {
        self.operators.iter().find(|o| o.name == name)
    }

    /// The group called `name`.
    pub fn group(&self, name: &str) -> Option<&GroupDecl> {
        self.groups.iter().find(|g| g.name == name)
    }

    /// The operator that lists `stream` in its `out` (exactly one in a valid manifest).
    pub fn producer(&self, stream: &str) -> Option<&OperatorDecl> {
        self.operators
            .iter()
            .find(|o| o.outputs.iter().any(|s| s == stream))
    }

    /// The operators that list `stream` in their `in`, in file order.
    pub fn consumers(&self, stream: &str) -> Vec<&OperatorDecl> {
        self.operators
            .iter()
            .filter(|o| o.inputs.iter().any(|s| s == stream))
            .collect()
    }
}

/// Element type of a declared stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum StreamType {
    /// Any value (the default).
    #[default]
    Any,
    /// 64-bit integers.
    I64,
    /// 64-bit floats.
    F64,
    /// Booleans.
    Bool,
    /// Strings.
    Str,
}

impl StreamType {
    /// Parses the manifest spelling (`any`, `i64`, `f64`, `bool`, `str`).
    pub fn parse(s: &str) -> Option<StreamType> {
        Some(match s {
            "any" => StreamType::Any,
            "i64" => StreamType::I64,
            "f64" => StreamType::F64,
            "bool" => StreamType::Bool,
            "str" => StreamType::Str,
            _ => return None,
        })
    }

    /// The manifest spelling.
    pub fn as_str(&self) -> &'static str {
        match self {
            StreamType::Any => "any",
            StreamType::I64 => "i64",
            StreamType::F64 => "f64",
            StreamType::Bool => "bool",
            StreamType::Str => "str",
        }
    }

    /// True if `v` is an element of this type (an integer is accepted as an f64).
    pub fn accepts(&self, v: &Value) -> bool {
        match self {
            StreamType::Any => true,
            StreamType::I64 => matches!(v, Value::Int(_)),
            StreamType::F64 => matches!(v, Value::Float(_) | Value::Int(_)),
            StreamType::Bool => matches!(v, Value::Bool(_)),
            StreamType::Str => matches!(v, Value::Str(_)),
        }
    }
}

/// What a full link does with a new element.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Overflow {
    /// The producer waits (lossless, the default).
    #[default]
    Block,
    /// The oldest buffered element is dropped (and counted).
    DropOldest,
    /// The new element is dropped (and counted).
    DropNewest,
}

impl Overflow {
    /// Parses `block`, `drop_oldest`, `drop_newest`.
    pub fn parse(s: &str) -> Option<Overflow> {
        Some(match s {
            "block" => Overflow::Block,
            "drop_oldest" => Overflow::DropOldest,
            "drop_newest" => Overflow::DropNewest,
            _ => return None,
        })
    }
}

/// What a bad input line of a stream does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum OnError {
    /// The source stops and the run exits non-zero (the default).
    #[default]
    Fail,
    /// The line is reported, counted and skipped.
    Skip,
}

impl OnError {
    /// Parses `fail`, `skip`.
    pub fn parse(s: &str) -> Option<OnError> {
        Some(match s {
            "fail" => OnError::Fail,
            "skip" => OnError::Skip,
            _ => return None,
        })
    }
}

/// Default number of elements buffered per link.
pub const DEFAULT_CAPACITY: usize = 1024;

/// A `[[stream]]` declaration (or the defaults of an undeclared stream).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamDecl {
    /// The stream's name.
    pub name: String,
    /// Element type (default `any`).
    pub ty: StreamType,
    /// Elements buffered per link before the producer waits (default 1024).
    pub capacity: usize,
    /// Bytes of strings, arrays and maps buffered per lossless link before the producer
    /// waits (`capacity_bytes`, default 64 MiB; see [`crate::LinkConfig::max_bytes`]).
    pub max_bytes: usize,
    /// Full-link policy (default `block`).
    pub overflow: Overflow,
    /// Bad-input-line policy (default `fail`).
    pub on_error: OnError,
    /// Span of the `[[stream]]` header; `None` for an undeclared stream.
    pub span: Option<Span>,
}

impl StreamDecl {
    /// The defaults for an undeclared stream called `name`.
    pub fn default_for(name: &str) -> StreamDecl {
        StreamDecl {
            name: name.to_string(),
            ty: StreamType::Any,
            capacity: DEFAULT_CAPACITY,
            max_bytes: crate::link::local::DEFAULT_MAX_BYTES,
            overflow: Overflow::Block,
            on_error: OnError::Fail,
            span: None,
        }
    }
}

/// Where a group's operators run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Placement {
    /// Their own OS process (the default for a declared group).
    #[default]
    Process,
    /// A thread of the supervisor process.
    Thread,
}

impl Placement {
    /// Parses `process`, `thread`.
    pub fn parse(s: &str) -> Option<Placement> {
        Some(match s {
            "process" => Placement::Process,
            "thread" => Placement::Thread,
            _ => return None,
        })
    }
}

/// When a failed group is restarted (OTP meanings).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Restart {
    /// Always restarted (the default).
    #[default]
    Permanent,
    /// Restarted only after an abnormal exit.
    Transient,
    /// Never restarted.
    Temporary,
}

impl Restart {
    /// Parses `permanent`, `transient`, `temporary`.
    pub fn parse(s: &str) -> Option<Restart> {
        Some(match s {
            "permanent" => Restart::Permanent,
            "transient" => Restart::Transient,
            "temporary" => Restart::Temporary,
            _ => return None,
        })
    }
}

/// A `[[group]]` declaration, defaults applied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupDecl {
    /// The group's name.
    pub name: String,
    /// Process (default) or thread.
    pub placement: Placement,
    /// Restart policy (default permanent).
    pub restart: Restart,
    /// More than this many restarts within `within` gives up (default 5).
    pub max_restarts: u32,
    /// The restart-intensity period (default 60 s).
    pub within: Duration,
    /// Restart delay: first and cap (default 100 ms, 10 s).
    pub backoff: (Duration, Duration),
    /// A process group silent for this long is considered hung (default: no heartbeat check).
    pub heartbeat_timeout: Option<Duration>,
    /// The CPUs its operators (and the commands they start) run on (default: any).
    pub cpus: Option<Vec<usize>>,
    /// Span of the `[[group]]` header.
    pub span: Span,
}

impl GroupDecl {
    /// A group called `name` with every default.
    pub fn default_for(name: &str) -> GroupDecl {
        GroupDecl {
            name: name.to_string(),
            placement: Placement::Process,
            restart: Restart::Permanent,
            max_restarts: 5,
            within: Duration::from_secs(60),
            backoff: (Duration::from_millis(100), Duration::from_secs(10)),
            heartbeat_timeout: None,
            cpus: None,
            span: 0..0,
        }
    }
}

/// Supervisor restart strategy over groups (OTP meanings).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Strategy {
    /// Restart only the failed group (the default).
    #[default]
    OneForOne,
    /// Restart every group.
    OneForAll,
    /// Restart the failed group and those after it in file order.
    RestForOne,
}

impl Strategy {
    /// Parses `one_for_one`, `one_for_all`, `rest_for_one`.
    pub fn parse(s: &str) -> Option<Strategy> {
        Some(match s {
            "one_for_one" => Strategy::OneForOne,
            "one_for_all" => Strategy::OneForAll,
            "rest_for_one" => Strategy::RestForOne,
            _ => return None,
        })
    }
}

/// The `[supervisor]` table.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct SupervisorDecl {
    /// Restart strategy (default one_for_one).
    pub strategy: Strategy,
}

/// A script (`fn`) and where its text starts in the manifest, to map script errors back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScriptSource {
    /// The script text.
    pub code: String,
    /// 1-based manifest line of the script's first line.
    pub line: usize,
    /// 1-based manifest column of the script's first character.
    pub col: usize,
}

impl ScriptSource {
    /// The manifest line of line `script_line` (1-based) of the script.
    pub fn manifest_line(&self, script_line: usize) -> usize {
        self.line + script_line.saturating_sub(1)
    }
}

/// A built-in reducer (`agg`) of the window kinds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Agg {
    /// Sum (integer for integers).
    Sum,
    /// Mean (a float).
    Mean,
    /// The least element, unchanged.
    Min,
    /// The greatest element, unchanged.
    Max,
    /// Population standard deviation (a float).
    Std,
    /// Number of elements (an integer).
    Count,
}

impl Agg {
    /// Every accepted spelling, for messages.
    pub const NAMES: [&'static str; 6] = ["sum", "mean", "min", "max", "std", "count"];

    /// Parses `sum`, `mean`, `min`, `max`, `std`, `count`.
    pub fn parse(s: &str) -> Option<Agg> {
        Some(match s {
            "sum" => Agg::Sum,
            "mean" => Agg::Mean,
            "min" => Agg::Min,
            "max" => Agg::Max,
            "std" => Agg::Std,
            "count" => Agg::Count,
            _ => return None,
        })
    }
}

/// A line format of file, stdin and stdout sources and sinks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// Each line is a string.
    Lines,
    /// Each line is one JSON value.
    Jsonl,
    /// Each line is a CSV row (an array).
    Csv,
}

impl Format {
    /// Every accepted spelling, for messages.
    pub const NAMES: [&'static str; 3] = ["lines", "jsonl", "csv"];

    /// Parses `lines`, `jsonl`, `csv`.
    pub fn parse(s: &str) -> Option<Format> {
        Some(match s {
            "lines" => Format::Lines,
            "jsonl" => Format::Jsonl,
            "csv" => Format::Csv,
            _ => return None,
        })
    }
}

/// One `[[operator]]` entry, validated against its kind.
#[derive(Clone, Debug, PartialEq)]
pub struct OperatorDecl {
    /// Unique name.
    pub name: String,
    /// The `op` as written (an alias stays an alias here).
    pub op: String,
    /// The canonical kind (`merge_list` for `zip_map_list`, `separate` for `unmix`).
    pub kind: String,
    /// Input streams, in order (empty for sources).
    pub inputs: Vec<String>,
    /// Output streams, in order (empty for sinks).
    pub outputs: Vec<String>,
    /// True when `in` was written as a list (even of one name).
    pub inputs_list: bool,
    /// True when `out` was written as a list (even of one name).
    pub outputs_list: bool,
    /// The group, if any (operators without one run in the supervisor process).
    pub group: Option<String>,
    /// The `fn` script, if any.
    pub func: Option<ScriptSource>,
    /// The initial state: present means the stateful form.
    pub state: Option<Value>,
    /// Constants bound by name in `fn`.
    pub params: BTreeMap<String, Value>,
    /// The remaining kind-specific keys (`window`, `path`, `values`, ...).
    pub keys: BTreeMap<String, Value>,
    /// Span of the `[[operator]]` header.
    pub span: Span,
    /// 1-based line of the `[[operator]]` header.
    pub line: usize,
    /// Span of each `in` entry.
    pub input_spans: Vec<Span>,
    /// Span of each `out` entry.
    pub output_spans: Vec<Span>,
}

impl OperatorDecl {
    /// The raw value of a kind-specific key.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.keys.get(key)
    }

    /// True if the kind-specific key is present.
    pub fn has(&self, key: &str) -> bool {
        self.keys.contains_key(key)
    }

    /// A key as an i64 (integers only).
    pub fn get_i64(&self, key: &str) -> Option<i64> {
        self.get(key).and_then(Value::as_i64)
    }

    /// A key as a usize (non-negative integers only).
    pub fn get_usize(&self, key: &str) -> Option<usize> {
        self.get_i64(key).and_then(|i| usize::try_from(i).ok())
    }

    /// A key as an f64 (integers are widened).
    pub fn get_f64(&self, key: &str) -> Option<f64> {
        self.get(key).and_then(Value::as_f64)
    }

    /// A key as a bool.
    pub fn get_bool(&self, key: &str) -> Option<bool> {
        match self.get(key) {
            Some(Value::Bool(b)) => Some(*b),
            _ => None,
        }
    }

    /// A key as a string.
    pub fn get_str(&self, key: &str) -> Option<&str> {
        match self.get(key) {
            Some(Value::Str(s)) => Some(s),
            _ => None,
        }
    }

    /// A key as an array.
    pub fn get_array(&self, key: &str) -> Option<&[Value]> {
        self.get(key).and_then(Value::as_array)
    }

    /// A duration-string key (`interval = "10ms"`).
    pub fn get_duration(&self, key: &str) -> Option<Duration> {
        self.get_str(key).and_then(|s| parse_duration(s).ok())
    }

    /// A key holding an array of strings (`command`).
    pub fn get_strings(&self, key: &str) -> Option<Vec<String>> {
        self.get_array(key)?
            .iter()
            .map(|v| match v {
                Value::Str(s) => Some(s.clone()),
                _ => None,
            })
            .collect()
    }

    /// A key that is an integer or an array of integers, one per input (`window`, `step` of
    /// `merge_window`/`multi_window`): the per-input values, a scalar repeated `n` times.
    pub fn get_usize_per_input(&self, key: &str, n: usize) -> Option<Vec<usize>> {
        match self.get(key)? {
            Value::Int(i) => Some(vec![usize::try_from(*i).ok()?; n]),
            Value::Array(a) => a
                .iter()
                .map(|v| v.as_i64().and_then(|i| usize::try_from(i).ok()))
                .collect(),
            _ => None,
        }
    }

    /// The `agg` reducer, if given.
    pub fn agg(&self) -> Option<Agg> {
        self.get_str("agg").and_then(Agg::parse)
    }

    /// The `format`, if given (sinks default to jsonl; see [`OperatorDecl::format_or`]).
    pub fn format(&self) -> Option<Format> {
        self.get_str("format").and_then(Format::parse)
    }

    /// The `format`, or `default` when absent.
    pub fn format_or(&self, default: Format) -> Format {
        self.format().unwrap_or(default)
    }

    /// The effective line format: `format` if given; else `jsonl` for sinks, and for sources
    /// the extension of `path` (`.jsonl`/`.json` → jsonl, `.csv` → csv, anything else → lines).
    pub fn effective_format(&self) -> Format {
        if let Some(f) = self.format() {
            return f;
        }
        if self.kind.starts_with("sink.") {
            return Format::Jsonl;
        }
        let ext = self
            .get_str("path")
            .and_then(|p| Path::new(p).extension())
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase);
        match ext.as_deref() {
            Some("jsonl") | Some("json") | Some("ndjson") => Format::Jsonl,
            Some("csv") => Format::Csv,
            _ => Format::Lines,
        }
    }

    /// The source `interval` (pause between elements), if given.
    pub fn interval(&self) -> Option<Duration> {
        self.get_duration("interval")
    }

    /// True when the operator has a `state` (the stateful form).
    pub fn is_stateful(&self) -> bool {
        self.state.is_some()
    }
}

/// Parses a duration: a number (integer or decimal) then `ns`, `us` (or `µs`), `ms`, `s`, `m`
/// or `h`, e.g. `"250us"`, `"1.5s"`. Fractions below a nanosecond are truncated.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    if t.is_empty() {
        return Err("empty duration; expected e.g. \"10ms\" or \"1.5s\"".to_string());
    }
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = (&t[..split], t[split..].trim());
    if num.is_empty() {
        return Err(format!(
            "bad duration \"{s}\": it must start with a number, e.g. \"10ms\""
        ));
    }
    let unit_ns: u128 = match unit {
        "ns" => 1,
        "us" | "µs" => 1_000,
        "ms" => 1_000_000,
        "s" => 1_000_000_000,
        "m" => 60_000_000_000,
        "h" => 3_600_000_000_000,
        "" => {
            return Err(format!(
                "duration \"{s}\" has no unit (ns, us, ms, s, m or h)"
            ))
        }
        other => {
            return Err(format!(
                "duration \"{s}\" has an unknown unit \"{other}\" (expected ns, us, ms, s, m or h)"
            ))
        }
    };
    let (int, frac) = match num.split_once('.') {
        Some((i, f)) => (i, f),
        None => (num, ""),
    };
    let digits_ok = |d: &str| d.bytes().all(|b| b.is_ascii_digit());
    if int.is_empty()
        || !digits_ok(int)
        || !digits_ok(frac)
        || (num.contains('.') && frac.is_empty())
    {
        return Err(format!("bad number in duration \"{s}\""));
    }
    let too_long = || format!("duration \"{s}\" is too long");
    let int_val: u128 = int.parse().map_err(|_| too_long())?;
    let mut nanos = int_val.checked_mul(unit_ns).ok_or_else(too_long)?;
    if !frac.is_empty() {
        let frac = &frac[..frac.len().min(18)];
        let f: u128 = frac.parse().map_err(|_| too_long())?;
        nanos += f * unit_ns / 10u128.pow(frac.len() as u32);
    }
    let secs = u64::try_from(nanos / 1_000_000_000).map_err(|_| too_long())?;
    Ok(Duration::new(secs, (nanos % 1_000_000_000) as u32))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("250us"), Ok(Duration::from_micros(250)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("10ms"), Ok(Duration::from_millis(10)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("5ns"), Ok(Duration::from_nanos(5)));
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
        assert_eq!(parse_duration("0.25ms"), Ok(Duration::from_micros(250)));
        assert_eq!(parse_duration("1.0000000001s"), Ok(Duration::new(1, 0)));
        assert_eq!(parse_duration("1.5ns"), Ok(Duration::from_nanos(1)));
        assert_eq!(parse_duration(" 3s "), Ok(Duration::from_secs(3)));
        assert_eq!(parse_duration("7µs"), Ok(Duration::from_micros(7)));
        for bad in [
            "",
            "10",
            "s",
            "-1s",
            "1.s",
            ".5s",
            "1..5s",
            "1e3s",
            "5 parsecs",
            "10 m s",
            "1.2.3s",
            "99999999999999999999999h",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad:?} should be rejected");
        }
        assert!(parse_duration("10").unwrap_err().contains("no unit"));
        assert!(parse_duration("3d").unwrap_err().contains("unknown unit"));
    }

    #[test]
    fn defaults() {
        let s = StreamDecl::default_for("x");
        assert_eq!(s.ty, StreamType::Any);
        assert_eq!(s.capacity, 1024);
        assert_eq!(s.overflow, Overflow::Block);
        assert_eq!(s.on_error, OnError::Fail);
        let g = GroupDecl::default_for("g");
        assert_eq!(g.placement, Placement::Process);
        assert_eq!(g.restart, Restart::Permanent);
        assert_eq!(g.max_restarts, 5);
        assert_eq!(g.within, Duration::from_secs(60));
        assert_eq!(
            g.backoff,
            (Duration::from_millis(100), Duration::from_secs(10))
        );
        assert_eq!(SupervisorDecl::default().strategy, Strategy::OneForOne);
    }
}
