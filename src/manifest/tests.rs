//! Tests of manifest loading and validation: every check, with its line and column.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::*;
use crate::Value;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/manifests")
}

fn ok(text: &str) -> Manifest {
    match parse(text, Path::new("pipeline.toml")) {
        Ok(m) => m,
        Err(d) => panic!("unexpected errors:\n{}", d.render()),
    }
}

fn errs(text: &str) -> Vec<Diagnostic> {
    match parse(text, Path::new("pipeline.toml")) {
        Ok(_) => panic!("expected errors, manifest was accepted"),
        Err(d) => {
            assert!(d.has_errors());
            d.errors().cloned().collect()
        }
    }
}

/// The single error of `text`; panics (showing them) if there is not exactly one.
fn one_err(text: &str) -> Diagnostic {
    let e = errs(text);
    assert_eq!(
        e.len(),
        1,
        "expected one error, got:\n{}",
        Diagnostics(e.clone()).render()
    );
    e.into_iter().next().unwrap()
}

fn at(d: &Diagnostic, line: usize, col: usize) {
    assert_eq!((d.line, d.col), (line, col), "wrong position for: {d}");
}

const SRC_SINK: &str = r#"
[[operator]]
name = "src"
op = "source.range"
out = "x"
end = 3

[[operator]]
name = "w"
op = "sink.file"
in = "y"
path = "out/y.jsonl"
"#;

/// A source of `x` (lines 2-6), `middle` (from line 7), a sink of `y`.
fn with(middle: &str) -> String {
    let (a, b) = SRC_SINK.split_at(SRC_SINK.find("\n[[operator]]\nname = \"w\"").unwrap());
    format!("{a}\n{middle}{b}")
}

#[test]
fn acceptance_fixtures_parse() {
    let mut n = 0;
    for entry in std::fs::read_dir(fixtures()).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        if name.starts_with("13-") || name.starts_with("14-") {
            continue;
        }
        let m = load(&path).unwrap_or_else(|d| panic!("{name}:\n{}", d.render()));
        assert!(!m.operators.is_empty());
        assert!(m.warnings.is_empty(), "{name}: {:?}", m.warnings);
        n += 1;
    }
    assert_eq!(n, 13);
}

#[test]
fn case_13_two_producers() {
    let d = load(&fixtures().join("13-bad-two-producers.toml")).unwrap_err();
    assert_eq!(d.errors().count(), 1, "{}", d.render());
    let e = d.errors().next().unwrap();
    at(e, 13, 7);
    assert!(e.message.contains("\"x\""));
    assert!(e.message.contains("\"a\" (line 6)"));
    assert!(e.message.contains("\"b\""));
    let text = d.render();
    assert!(text.contains("13-bad-two-producers.toml:13:7: stream \"x\" is produced by both"));
}

#[test]
fn case_14_missing_window() {
    let d = load(&fixtures().join("14-bad-missing-window.toml")).unwrap_err();
    assert_eq!(d.errors().count(), 1, "{}", d.render());
    let e = d.errors().next().unwrap();
    at(e, 10, 1);
    assert_eq!(
        e.message,
        "operator \"sum_every_4\" (map_window) needs `window`"
    );
    assert_eq!(e.hint.as_deref(), Some("add `window = <integer >= 1>`"));
}

#[test]
fn rendering_is_cargo_style() {
    let text = std::fs::read_to_string(fixtures().join("14-bad-missing-window.toml")).unwrap();
    let d = parse(&text, Path::new("pipeline.toml")).unwrap_err();
    let r = d.iter().next().unwrap().to_string();
    let expect =
        "error: pipeline.toml:10:1: operator \"sum_every_4\" (map_window) needs `window`\n  \
                  --> pipeline.toml:10:1\n   |\n10 | [[operator]]\n   | ^^^^^^^^^^^^\n   \
                  = hint: add `window = <integer >= 1>`\n";
    assert_eq!(r, expect);
    assert!(d.to_string().contains("1 error"));
    // usable with `?`
    fn f(t: &str) -> Result<Manifest, Box<dyn std::error::Error>> {
        Ok(parse(t, Path::new("p.toml"))?)
    }
    assert!(f(&text).is_err());
}

#[test]
fn missing_file() {
    let d = load(Path::new("/nonexistent/dir/pipeline.toml")).unwrap_err();
    let e = d.iter().next().unwrap();
    assert!(e.message.contains("/nonexistent/dir/pipeline.toml"));
    assert_eq!(e.line, 0);
}

#[test]
fn toml_syntax_error() {
    let e = errs("name = \"a\"\n[[operator]]\nname = \n");
    assert!(e[0].message.starts_with("invalid TOML"));
    assert_eq!(e[0].line, 3);
    let e = errs("[[operator]]\nname = \"a\"\nname = \"b\"\n");
    assert!(e[0].message.contains("duplicate key"));
    at(&e[0], 3, 1);
}

#[test]
fn three_errors_at_once() {
    let text = with(
        r#"[[operator]]
name = "m"
op = "map_elemnt"
in = "x"
out = "y"
fn = "x"

[[operator]]
name = "n"
op = "map_element"
in = "nowhere"
out = "z"
fn = "x"
colour = "red"
"#,
    );
    let e = errs(&text);
    assert_eq!(e.len(), 3, "{}", Diagnostics(e.clone()).render());
    at(&e[0], 10, 6);
    assert!(e[0].message.contains("\"map_elemnt\""));
    assert_eq!(e[0].hint.as_deref(), Some("did you mean \"map_element\"?"));
    at(&e[1], 18, 6);
    assert!(e[1].message.contains("\"nowhere\""));
    at(&e[2], 21, 1);
    assert!(e[2].message.contains("`colour`"));
}

#[test]
fn unknown_top_level_key() {
    let e = one_err(&format!("operators = 1\n{SRC_SINK}").replace("in = \"y\"", "in = \"x\""));
    at(&e, 1, 1);
    assert!(e.message.contains("`operators`"));
    assert!(e.hint.unwrap().contains("did you mean `operator`?"));
}

#[test]
fn missing_name_and_op() {
    let text = with("[[operator]]\nop = \"map_element\"\nin = \"x\"\nout = \"y\"\nfn = \"x\"\n");
    let e = one_err(&text);
    at(&e, 8, 1);
    assert!(e.message.contains("needs `name`"), "{e}");
    let text = with("[[operator]]\nname = \"m\"\nin = \"x\"\nout = \"y\"\n");
    let e = one_err(&text);
    at(&e, 8, 1);
    assert_eq!(e.message, "operator \"m\" needs `op`");
}

#[test]
fn duplicate_operator_names() {
    let text = with(
        "[[operator]]\nname = \"src\"\nop = \"map_element\"\nin = \"x\"\nout = \"y\"\nfn = \"x\"\n",
    );
    let e = one_err(&text);
    at(&e, 9, 8);
    assert!(e
        .message
        .contains("duplicate operator name \"src\" (first used at line 3)"));
}

#[test]
fn unknown_key_lists_valid_keys() {
    let text = with("[[operator]]\nname = \"m\"\nop = \"map_window\"\nin = \"x\"\nout = \"y\"\nagg = \"sum\"\nwindow = 2\nwindw = 3\n");
    let e = one_err(&text);
    at(&e, 15, 1);
    assert_eq!(
        e.message,
        "unknown key `windw` in operator \"m\" (map_window)"
    );
    let h = e.hint.unwrap();
    assert!(h.starts_with("did you mean `window`?"), "{h}");
    assert!(h.contains("`initial_value`"));
}

#[test]
fn in_out_shapes() {
    // a zip needs a list
    let e = one_err(&with(
        "[[operator]]\nname = \"z\"\nop = \"zip_map\"\nin = \"x\"\nout = \"y\"\nfn = \"1\"\n",
    ));
    at(&e, 11, 6);
    assert!(e.message.contains("takes a list of streams in `in`"));
    // a split needs a list
    let e = one_err(&with(
        "[[operator]]\nname = \"s\"\nop = \"unzip\"\nin = \"x\"\nout = \"y\"\n",
    ));
    at(&e, 12, 7);
    // a single-stream kind given two
    let e = one_err(&with(
        "[[operator]]\nname = \"m\"\nop = \"map_element\"\nin = [\"x\", \"x\"]\nout = \"y\"\nfn = \"x\"\n",
    ));
    at(&e, 11, 6);
    assert!(e.message.contains("takes one stream"));
    // not a string
    let e = one_err(&with(
        "[[operator]]\nname = \"m\"\nop = \"map_element\"\nin = 3\nout = \"y\"\nfn = \"x\"\n",
    ));
    at(&e, 11, 6);
    // arithmetic zips take exactly two
    let e = one_err(&with(
        "[[operator]]\nname = \"a\"\nop = \"add\"\nin = [\"x\"]\nout = \"y\"\n",
    ));
    assert!(e.message.contains("exactly 2"));
    ok(&with(
        "[[operator]]\nname = \"a\"\nop = \"add\"\nin = [\"x\", \"x\"]\nout = \"y\"\n",
    ));
    // sinks have no out, sources no in
    let text = SRC_SINK.replace("in = \"y\"", "in = \"x\"\nout = \"q\"");
    let e = one_err(&text);
    assert_eq!(
        e.message,
        "operator \"w\" (sink.file) is a sink and takes no `out`"
    );
    at(&e, 12, 1);
    let text = SRC_SINK.replace("out = \"x\"", "out = \"y\"\nin = \"y\"");
    let e = one_err(&text);
    assert!(e.message.contains("is a source and takes no `in`"));
    at(&e, 6, 1);
    // a missing in
    let e = one_err(&with(
        "[[operator]]\nname = \"m\"\nop = \"map_element\"\nout = \"y\"\nfn = \"x\"\n",
    ));
    assert_eq!(e.message, "operator \"m\" (map_element) needs `in`");
    at(&e, 8, 1);
}

#[test]
fn functions_and_aggs() {
    let e = one_err(&with(
        "[[operator]]\nname = \"m\"\nop = \"map_element\"\nin = \"x\"\nout = \"y\"\n",
    ));
    assert_eq!(e.message, "operator \"m\" (map_element) needs `fn`");
    let e = one_err(&with(
        "[[operator]]\nname = \"m\"\nop = \"map_window\"\nin = \"x\"\nout = \"y\"\nwindow = 2\n",
    ));
    assert_eq!(e.message, "operator \"m\" (map_window) needs `fn` or `agg`");
    let e = one_err(&with(
        "[[operator]]\nname = \"m\"\nop = \"map_window\"\nin = \"x\"\nout = \"y\"\nwindow = 2\nfn = \"1\"\nagg = \"sum\"\n",
    ));
    assert!(e.message.contains("both `fn` and `agg`"));
    at(&e, 15, 1);
    let e = one_err(&with("[[operator]]\nname = \"m\"\nop = \"map_window\"\nin = \"x\"\nout = \"y\"\nwindow = 2\nagg = \"median\"\n"));
    at(&e, 14, 7);
    // agg is not for map_window_list; fn is not for copy
    let e = one_err(&with("[[operator]]\nname = \"m\"\nop = \"map_window_list\"\nin = \"x\"\nout = \"y\"\nwindow = 2\nfn = \"[]\"\nagg = \"sum\"\n"));
    assert!(e.message.contains("takes no `agg`"));
    let e = one_err(&with(
        "[[operator]]\nname = \"c\"\nop = \"copy\"\nin = \"x\"\nout = \"y\"\nfn = \"x\"\n",
    ));
    assert_eq!(e.message, "operator \"c\" (copy) takes no `fn`");
    at(&e, 13, 1);
}

#[test]
fn bad_values() {
    let cases: &[(&str, &str, usize)] = &[
        ("op = \"map_window\"\nin = \"x\"\nout = \"y\"\nagg = \"sum\"\nwindow = 0\n", "`window`", 14),
        ("op = \"map_window\"\nin = \"x\"\nout = \"y\"\nagg = \"sum\"\nwindow = 2\nstep = 1.5\n", "`step`", 15),
        ("op = \"map_window\"\nin = \"x\"\nout = \"y\"\nagg = \"sum\"\nwindow = 2\nflush = 1\n", "`flush`", 15),
        ("op = \"timed_window\"\nin = \"x\"\nout = \"y\"\nagg = \"sum\"\nduration = 0\n", "`duration`", 14),
        ("op = \"timed_window\"\nin = \"x\"\nout = \"y\"\nagg = \"sum\"\nduration = 1\nstep = -0.5\n", "`step`", 15),
        ("op = \"exponential_smoothing\"\nin = \"x\"\nout = \"y\"\nalpha = \"half\"\n", "`alpha`", 13),
        ("op = \"prepend\"\nin = \"x\"\nout = \"y\"\nvalues = 3\n", "`values`", 13),
        ("op = \"map_element\"\nin = \"x\"\nout = \"y\"\nfn = 3\n", "`fn`", 13),
        ("op = \"map_element\"\nin = \"x\"\nout = \"y\"\nfn = \"x\"\nparams = 3\n", "`params`", 14),
    ];
    for (body, key, line) in cases {
        let e = one_err(&with(&format!("[[operator]]\nname = \"m\"\n{body}")));
        assert!(e.message.contains(key), "{e}");
        assert_eq!(e.line, *line, "{e}");
    }
    // sources and sinks
    let src = |body: &str| {
        format!("[[operator]]\nname = \"s\"\n{body}\n[[operator]]\nname = \"w\"\nop = \"sink.null\"\nin = \"x\"\n")
    };
    for (body, key) in [
        (
            "op = \"source.range\"\nout = \"x\"\nend = 3\nstep = 0",
            "`step`",
        ),
        ("op = \"source.range\"\nout = \"x\"\nend = 3.5", "`end`"),
        ("op = \"source.list\"\nout = \"x\"\nvalues = 1", "`values`"),
        (
            "op = \"source.file\"\nout = \"x\"\npath = \"a\"\nformat = \"json\"",
            "`format`",
        ),
        (
            "op = \"source.exec\"\nout = \"x\"\ncommand = []",
            "`command`",
        ),
        (
            "op = \"source.exec\"\nout = \"x\"\ncommand = \"python3 a.py\"",
            "`command`",
        ),
        (
            "op = \"source.list\"\nout = \"x\"\nvalues = []\ninterval = \"10\"",
            "`interval`",
        ),
        (
            "op = \"source.list\"\nout = \"x\"\nvalues = []\ninterval = 10",
            "`interval`",
        ),
        (
            "op = \"source_fn\"\nout = \"x\"\nfn = \"x\"\ncount = -1",
            "`count`",
        ),
        ("op = \"source.file\"\nout = \"x\"", "needs `path`"),
    ] {
        let e = one_err(&src(body));
        assert!(e.message.contains(key), "{body}: {e}");
    }
    let e = one_err(&src(
        "op = \"source.file\"\nout = \"x\"\npath = \"a\"\nformat = \"json\"",
    ));
    assert_eq!(
        e.hint.as_deref(),
        Some("did you mean \"jsonl\"? expected one of \"lines\", \"jsonl\", \"csv\"")
    );
    ok(&src(
        "op = \"source.list\"\nout = \"x\"\nvalues = []\ninterval = \"1.5ms\"",
    ));
}

#[test]
fn merge_window_arrays() {
    let base = "[[operator]]\nname = \"a\"\nop = \"source.list\"\nout = \"a\"\nvalues = []\n\
                [[operator]]\nname = \"b\"\nop = \"source.list\"\nout = \"b\"\nvalues = []\n\
                [[operator]]\nname = \"m\"\nop = \"merge_window\"\nin = [\"a\", \"b\"]\nout = \"y\"\nfn = \"1\"\n";
    let sink = "[[operator]]\nname = \"w\"\nop = \"sink.null\"\nin = \"y\"\n";
    let m = ok(&format!("{base}window = [2, 3]\nstep = 1\n{sink}"));
    assert_eq!(
        m.operator("m").unwrap().get_usize_per_input("window", 2),
        Some(vec![2, 3])
    );
    assert_eq!(
        m.operator("m").unwrap().get_usize_per_input("step", 2),
        Some(vec![1, 1])
    );
    let e = one_err(&format!("{base}window = [2, 3, 4]\n{sink}"));
    assert!(e.message.contains("3 values for 2 inputs"));
    let e = one_err(&format!("{base}window = [2, 0]\n{sink}"));
    assert!(e.message.contains("integers >= 1"));
    // only merge/multi windows take arrays
    let e = one_err(&with("[[operator]]\nname = \"m\"\nop = \"map_window\"\nin = \"x\"\nout = \"y\"\nagg = \"sum\"\nwindow = [2]\n"));
    assert!(e.message.contains("must be an integer >= 1"));
}

#[test]
fn stream_rules() {
    // a consumed stream nobody produces, with a suggestion
    let e = one_err(&SRC_SINK.replace("in = \"y\"", "in = \"xx\""));
    at(&e, 11, 6);
    assert!(e
        .message
        .contains("stream \"xx\" is consumed by \"w\" but produced by no operator"));
    assert_eq!(e.hint.as_deref(), Some("did you mean \"x\"?"));
    // a produced stream nobody consumes: a warning only
    let m = ok(&with(
        "[[operator]]\nname = \"m\"\nop = \"map_element\"\nin = \"x\"\nout = \"y\"\nfn = \"x\"\n\
         [[operator]]\nname = \"n\"\nop = \"map_element\"\nin = \"x\"\nout = \"unused\"\nfn = \"x\"\n",
    ));
    assert_eq!(m.warnings.len(), 1);
    assert!(m.warnings[0].message.contains("\"unused\""));
    assert_eq!(m.warnings[0].severity, Severity::Warning);
    // the same operator listing a stream twice
    let e = one_err(&with(
        "[[operator]]\nname = \"c\"\nop = \"copy\"\nin = \"x\"\nout = [\"y\", \"y\"]\n",
    ));
    assert!(e.message.contains("listed twice"));
    at(&e, 12, 13);
}

#[test]
fn stream_declarations() {
    let good = with(
        "[[operator]]\nname = \"m\"\nop = \"map_element\"\nin = \"x\"\nout = \"y\"\nfn = \"x\"\n",
    );
    let m = ok(&format!(
        "[[stream]]\nname = \"x\"\ntype = \"i64\"\ncapacity = 8\noverflow = \"drop_oldest\"\non_error = \"skip\"\n{good}"
    ));
    let x = m.stream("x");
    assert_eq!(
        (x.ty, x.capacity, x.overflow, x.on_error),
        (StreamType::I64, 8, Overflow::DropOldest, OnError::Skip)
    );
    assert_eq!(m.stream("y"), StreamDecl::default_for("y"));
    assert_eq!(m.stream("y").capacity, 1024);

    let e = errs(&format!(
        "[[stream]]\nname = \"x\"\ntype = \"int\"\ncapacity = 0\noverflow = \"drop\"\non_error = \"ignore\"\ncolour = 1\n{good}"
    ));
    assert_eq!(e.len(), 5, "{}", Diagnostics(e.clone()).render());
    at(&e[0], 3, 8);
    assert_eq!(e[0].message, "bad `type` \"int\" in stream \"x\"");
    at(&e[1], 4, 12);
    at(&e[2], 5, 12);
    at(&e[3], 6, 12);
    at(&e[4], 7, 1);
    // missing name, duplicate, declared without producer
    let e = errs(&format!(
        "[[stream]]\ntype = \"i64\"\n[[stream]]\nname = \"x\"\n[[stream]]\nname = \"x\"\n[[stream]]\nname = \"ghost\"\n{good}"
    ));
    assert_eq!(e.len(), 3, "{}", Diagnostics(e.clone()).render());
    at(&e[0], 1, 1);
    assert!(e[0].message.contains("needs `name`"));
    at(&e[1], 6, 8);
    assert!(e[1].message.contains("declared twice"));
    at(&e[2], 8, 8);
    assert!(e[2]
        .message
        .contains("\"ghost\" is declared but produced by no operator"));
}

#[test]
fn a_stream_is_bounded_in_bytes_as_written() {
    let good = with(
        "[[operator]]\nname = \"m\"\nop = \"map_element\"\nin = \"x\"\nout = \"y\"\nfn = \"x\"\n",
    );
    for (text, want) in [
        ("\"64 MiB\"", 64 << 20),
        ("\"1.5KiB\"", 1536),
        ("\"2 GB\"", 2_000_000_000),
        ("\"10\"", 10),
        ("4096", 4096),
    ] {
        let m = ok(&format!(
            "[[stream]]\nname = \"x\"\ncapacity_bytes = {text}\n{good}"
        ));
        assert_eq!(m.stream("x").max_bytes, want, "{text}");
    }
    assert_eq!(
        StreamDecl::default_for("y").max_bytes,
        crate::link::local::DEFAULT_MAX_BYTES
    );
    for bad in ["0", "\"lots\"", "\"5 parsecs\"", "-3", "1.5", "\"0 MiB\""] {
        let e = errs(&format!(
            "[[stream]]\nname = \"x\"\ncapacity_bytes = {bad}\n{good}"
        ));
        assert_eq!(e.len(), 1, "{bad}: {}", Diagnostics(e.clone()).render());
        at(&e[0], 3, 18);
        assert!(
            e[0].message.contains("`capacity_bytes` of stream \"x\""),
            "{}",
            e[0].message
        );
    }
}

#[test]
fn groups_and_supervisor() {
    let body = "[[operator]]\nname = \"m\"\nop = \"map_element\"\ngroup = \"edge\"\nin = \"x\"\nout = \"y\"\nfn = \"x\"\n";
    let m = ok(&format!(
        "[supervisor]\nstrategy = \"rest_for_one\"\n\n[[group]]\nname = \"edge\"\nplacement = \"thread\"\n\
         restart = \"transient\"\nmax_restarts = 2\nwithin = \"30s\"\nbackoff = [\"1ms\", \"2s\"]\n\
         heartbeat_timeout = \"500ms\"\ncpus = [0, 3]\n{}",
        with(body)
    ));
    let g = m.group("edge").unwrap();
    assert_eq!(g.cpus, Some(vec![0, 3]));
    assert_eq!(g.placement, Placement::Thread);
    assert_eq!(g.restart, Restart::Transient);
    assert_eq!(g.max_restarts, 2);
    assert_eq!(g.within, Duration::from_secs(30));
    assert_eq!(
        g.backoff,
        (Duration::from_millis(1), Duration::from_secs(2))
    );
    assert_eq!(g.heartbeat_timeout, Some(Duration::from_millis(500)));
    assert_eq!(m.supervisor.strategy, Strategy::RestForOne);
    assert_eq!(m.operator("m").unwrap().group.as_deref(), Some("edge"));

    // defaults
    let m = ok(&format!("[[group]]\nname = \"edge\"\n{}", with(body)));
    let mut d = GroupDecl::default_for("edge");
    d.span = m.groups[0].span.clone();
    assert_eq!(m.groups[0], d);
    assert_eq!(m.supervisor.strategy, Strategy::OneForOne);

    // an undeclared group
    let e = one_err(&format!("[[group]]\nname = \"edg\"\n{}", with(body)));
    at(&e, 13, 9);
    assert!(e.message.contains("group \"edge\", which is not declared"));
    assert_eq!(e.hint.as_deref(), Some("did you mean \"edg\"?"));

    // bad values everywhere
    let e = errs(&format!(
        "[supervisor]\nstrategy = \"one_for_some\"\nextra = 1\n[[group]]\nname = \"edge\"\nplacement = \"fiber\"\n\
         restart = \"always\"\nmax_restarts = -1\nwithin = \"30\"\nbackoff = [\"2s\", \"1s\"]\nheartbeat_timeout = 5\n\
         [[group]]\nname = \"edge\"\n{}",
        with(body)
    ));
    let lines: Vec<usize> = e.iter().map(|d| d.line).collect();
    assert_eq!(
        lines,
        vec![2, 3, 6, 7, 8, 9, 10, 11, 12],
        "{}",
        Diagnostics(e.clone()).render()
    );
    assert!(e[8].message.contains("declared twice"));
    let e = one_err(&format!(
        "[[group]]\nplacement = \"thread\"\n{}",
        with(body).replace("group = \"edge\"\n", "")
    ));
    assert!(e.message.contains("group entry at line 1 needs `name`"));

    // `cpus`: a non-empty array of CPU numbers, each bad value at its place
    for (bad, col) in [
        ("[]", 8),
        ("[-1]", 8),
        ("\"0\"", 8),
        ("[1.5]", 8),
        ("[0, 99999]", 8),
    ] {
        let e = one_err(&format!(
            "[[group]]\nname = \"edge\"\ncpus = {bad}\n{}",
            with(body)
        ));
        at(&e, 3, col);
        assert!(
            e.message.contains("`cpus` of group \"edge\""),
            "{}",
            e.message
        );
        assert_eq!(
            e.hint.as_deref(),
            Some("e.g. `cpus = [0]` or `cpus = [2, 3]`")
        );
    }
}

#[test]
fn operator_decl_contents() {
    let text = r#"name = "demo"

[[operator]]
name = "src"
op = "source.list"
out = "x"
values = [1, 2.5, "a", [1, 2], { k = true }]
interval = "10ms"

[[operator]]
name = "sm"
op = "map_window"
in = "x"
out = ["y"]
window = 3
step = 2
state = { total = 0 }
params = { addend = 2 }
fn = '''
let s = sum(window);
[s + addend, state]
'''

[[operator]]
name = "u"
op = "unmix"
in = "y"
out = ["p", "q"]

[[operator]]
name = "w1"
op = "sink.file"
in = "p"
path = "out/p.jsonl"

[[operator]]
name = "w2"
op = "sink.exec"
in = "q"
command = ["python3", "consume.py"]
"#;
    let m = parse(text, Path::new("/tmp/cases/demo/pipeline.toml")).unwrap();
    assert_eq!(m.name.as_deref(), Some("demo"));
    assert_eq!(m.dir, Path::new("/tmp/cases/demo"));
    assert_eq!(
        m.resolve("out/p.jsonl"),
        Path::new("/tmp/cases/demo/out/p.jsonl")
    );
    assert_eq!(m.resolve("/abs/f"), Path::new("/abs/f"));
    assert_eq!(m.operators.len(), 5);
    let src = &m.operators[0];
    assert_eq!(src.line, 3);
    assert_eq!(src.interval(), Some(Duration::from_millis(10)));
    assert_eq!(src.get_array("values").unwrap().len(), 5);
    assert_eq!(src.get_array("values").unwrap()[1], Value::Float(2.5));
    assert!(src.inputs.is_empty());
    let sm = m.operator("sm").unwrap();
    assert_eq!(sm.inputs, vec!["x"]);
    assert_eq!(sm.outputs, vec!["y"]);
    assert!(sm.outputs_list && !sm.inputs_list);
    assert_eq!(sm.get_usize("window"), Some(3));
    assert_eq!(sm.get_i64("step"), Some(2));
    assert_eq!(sm.get_f64("step"), Some(2.0));
    assert!(sm.is_stateful());
    assert!(!sm.has("fn") && !sm.has("state") && !sm.has("params"));
    assert_eq!(sm.params.get("addend"), Some(&Value::Int(2)));
    let f = sm.func.as_ref().unwrap();
    assert_eq!(f.code, "let s = sum(window);\n[s + addend, state]\n");
    assert_eq!((f.line, f.col), (20, 1));
    assert_eq!(f.manifest_line(2), 21);
    assert_eq!(sm.input_spans.len(), 1);
    assert_eq!(&text[sm.input_spans[0].clone()], "\"x\"");
    assert_eq!(&text[sm.span.clone()], "[[operator]]");
    let u = m.operator("u").unwrap();
    assert_eq!((u.op.as_str(), u.kind.as_str()), ("unmix", "separate"));
    assert_eq!(
        m.operator("w1").unwrap().format_or(Format::Jsonl),
        Format::Jsonl
    );
    assert_eq!(m.operator("w1").unwrap().effective_format(), Format::Jsonl);
    assert_eq!(m.operator("src").unwrap().effective_format(), Format::Lines);
    let f = ok(
        "[[operator]]\nname = \"s\"\nop = \"source.file\"\nout = \"x\"\npath = \"in/a.CSV\"\n\
                [[operator]]\nname = \"t\"\nop = \"source.file\"\nout = \"y\"\npath = \"b.jsonl\"\n\
                [[operator]]\nname = \"w\"\nop = \"zip_stream\"\nin = [\"x\", \"y\"]\nout = \"z\"\n\
                [[operator]]\nname = \"o\"\nop = \"sink.stdout\"\nin = \"z\"\nformat = \"csv\"\n",
    );
    assert_eq!(f.operator("s").unwrap().effective_format(), Format::Csv);
    assert_eq!(f.operator("t").unwrap().effective_format(), Format::Jsonl);
    assert_eq!(f.operator("o").unwrap().effective_format(), Format::Csv);
    assert_eq!(
        m.operator("w2").unwrap().get_strings("command"),
        Some(vec!["python3".to_string(), "consume.py".to_string()])
    );
    assert_eq!(m.producer("y").unwrap().name, "sm");
    assert_eq!(m.consumers("x").len(), 1);
    assert_eq!(m.stream_names(), vec!["x", "y", "p", "q"]);
}

#[test]
fn single_line_script_position() {
    let m = ok(&with("[[operator]]\nname = \"m\"\nop = \"map_element\"\nin = \"x\"\nout = \"y\"\nfn   = \"x + 1\"\n"));
    let f = m.operator("m").unwrap().func.clone().unwrap();
    assert_eq!((f.line, f.col), (13, 9));
    let m = ok(&with("[[operator]]\nname = \"m\"\nop = \"map_element\"\nin = \"x\"\nout = \"y\"\nfn = '''x + 1'''\n"));
    let f = m.operator("m").unwrap().func.clone().unwrap();
    assert_eq!((f.line, f.col), (13, 9));
}

#[test]
fn custom_kinds() {
    let text = with(
        "[[operator]]\nname = \"c\"\nop = \"my.scale\"\nin = \"x\"\nout = \"y\"\nfactor = 3\n",
    );
    let e = one_err(&text);
    assert!(e.message.contains("unknown operator kind \"my.scale\""));
    let mut kinds = KindTable::builtin();
    kinds.register(KindSpec::new(
        "my.scale",
        Arity::One,
        Arity::One,
        FnUse::No,
        &["factor"],
        &["offset"],
    ));
    let m = parse_with(&text, Path::new("pipeline.toml"), &kinds).unwrap();
    assert_eq!(m.operator("c").unwrap().get_i64("factor"), Some(3));
    let bad = text.replace("factor = 3", "offset = 1");
    let d = parse_with(&bad, Path::new("pipeline.toml"), &kinds).unwrap_err();
    assert_eq!(
        d.errors().next().unwrap().message,
        "operator \"c\" (my.scale) needs `factor`"
    );
    assert!(kinds.register_alias("my.mul", "my.scale"));
    assert_eq!(kinds.get("my.mul").unwrap().canonical(), "my.scale");
}

#[test]
fn diagnostics_helpers() {
    let d = Diagnostic::at(
        Severity::Warning,
        Path::new("p.toml"),
        "a = 1\nbé = \"x\"\n",
        12..15,
        "m",
    );
    assert_eq!((d.line, d.col, d.width), (2, 6, 3));
    assert_eq!(d.location(), "p.toml:2:6");
    assert!(d.to_string().starts_with("warning: p.toml:2:6: m\n"));
    let ds = Diagnostics(vec![d]);
    assert!(!ds.has_errors());
}
