//! The `tributary` binary end to end: manifests written into a temporary directory, run as a
//! user runs them, with exit status, standard output and standard error checked.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// What one run of the binary gave.
struct Ran {
    code: i32,
    stdout: String,
    stderr: String,
}

/// Runs `tributary <args...>` in `dir`, feeding `stdin` if given.
fn tributary(dir: &Path, args: &[&str], stdin: Option<&str>) -> Ran {
    let mut c = Command::new(env!("CARGO_BIN_EXE_tributary"));
    c.args(args)
        .current_dir(dir)
        .env("NO_COLOR", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        });
    let mut child = c.spawn().expect("the tributary binary starts");
    if let Some(text) = stdin {
        let mut w = child.stdin.take().unwrap();
        w.write_all(text.as_bytes()).unwrap();
    }
    let out = child.wait_with_output().unwrap();
    Ran {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// A temporary directory holding `pipeline.toml` (and whatever else a test writes there).
struct Case {
    dir: tempfile::TempDir,
}

impl Case {
    fn new(manifest: &str) -> Case {
        let c = Case {
            dir: tempfile::tempdir().unwrap(),
        };
        c.write("pipeline.toml", manifest);
        c
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn write(&self, name: &str, text: &str) {
        std::fs::write(self.path(name), text).unwrap();
    }

    fn read(&self, name: &str) -> String {
        std::fs::read_to_string(self.path(name))
            .unwrap_or_else(|e| panic!("{name} was not written: {e}"))
    }

    fn run(&self) -> Ran {
        tributary(self.dir.path(), &["run", "pipeline.toml"], None)
    }

    fn run_with_stdin(&self, stdin: &str) -> Ran {
        tributary(self.dir.path(), &["run", "pipeline.toml"], Some(stdin))
    }

    fn cmd(&self, sub: &str) -> Ran {
        tributary(self.dir.path(), &[sub, "pipeline.toml"], None)
    }
}

fn assert_has(r: &Ran, want: &[&str]) {
    for w in want {
        assert!(
            r.stderr.contains(w),
            "stderr lacks {w:?}:\n{}\n(stdout: {})",
            r.stderr,
            r.stdout
        );
    }
}

const LIST_TO_FILE: &str = r#"
[[operator]]
name = "src"
op = "source.list"
out = "x"
values = [1, 2, 3]

[[operator]]
name = "out"
op = "sink.file"
in = "x"
path = "out.jsonl"
"#;

// ---------------------------------------------------------------- manifest errors

/// Each manifest error alone: exit non-zero, nothing runs, `pipeline.toml:LINE:COL` and the
/// offending name in the message.
#[test]
fn every_manifest_error_kind_names_its_line_and_the_offending_name() {
    let cases: &[(&str, &str, &[&str])] = &[
        (
            "unknown op, with a did-you-mean",
            r#"
[[operator]]
name = "src"
op = "source.lst"
out = "x"
values = [1]
"#,
            &[
                "pipeline.toml:4:6",
                "\"source.lst\"",
                "did you mean \"source.list\"",
            ],
        ),
        (
            "unknown key",
            r#"
[[operator]]
name = "src"
op = "source.list"
out = "x"
values = [1]
colour = "red"
"#,
            &["pipeline.toml:7:1", "`colour`", "\"src\""],
        ),
        (
            "missing required key",
            r#"
[[operator]]
name = "src"
op = "source.list"
out = "x"
values = [1]

[[operator]]
name = "w"
op = "map_window"
in = "x"
out = "y"
fn = "sum(window)"
"#,
            &["pipeline.toml:8:1", "\"w\"", "`window`"],
        ),
        (
            "two producers",
            r#"
[[operator]]
name = "a"
op = "source.list"
out = "x"
values = [1]

[[operator]]
name = "b"
op = "source.list"
out = "x"
values = [2]
"#,
            &["pipeline.toml:11:7", "\"x\"", "\"a\"", "\"b\""],
        ),
        (
            "no producer",
            r#"
[[operator]]
name = "out"
op = "sink.null"
in = "ghost"
"#,
            &["pipeline.toml:5:6", "\"ghost\"", "produced by no operator"],
        ),
        (
            "bad value",
            r#"
[[operator]]
name = "src"
op = "source.list"
out = "x"
values = [1]

[[operator]]
name = "out"
op = "sink.file"
in = "x"
path = "o.txt"
format = "xml"
"#,
            &["pipeline.toml:13:10", "`format`", "\"xml\""],
        ),
        (
            "unknown group",
            r#"
[[operator]]
name = "src"
op = "source.list"
out = "x"
values = [1]
group = "nope"
"#,
            &["pipeline.toml:7:9", "\"nope\""],
        ),
        (
            "TOML syntax error",
            "[[operator]]\nname = \"src\nop = \"source.list\"\n",
            &["pipeline.toml:2:", "invalid TOML"],
        ),
    ];
    for (what, manifest, want) in cases {
        let c = Case::new(manifest);
        let r = c.run();
        assert_ne!(r.code, 0, "{what}: exit status");
        assert_eq!(r.stdout, "", "{what}: nothing on stdout");
        for w in *want {
            assert!(
                r.stderr.contains(w),
                "{what}: stderr lacks {w:?}:\n{}",
                r.stderr
            );
        }
    }
}

#[test]
fn several_manifest_errors_are_reported_at_once() {
    let c = Case::new(
        r#"
[[operator]]
name = "src"
op = "source.lst"
out = "x"
values = [1]

[[operator]]
name = "dbl"
op = "map_element"
in = "y"
out = "z"
fn = "x * 2"
colour = "red"

[[operator]]
name = "out"
op = "sink.file"
in = "z"
path = "o.txt"
format = "xml"
"#,
    );
    let r = c.run();
    assert_ne!(r.code, 0);
    assert_has(
        &r,
        &[
            "pipeline.toml:4:6",
            "pipeline.toml:11:6",
            "pipeline.toml:14:1",
            "pipeline.toml:21:10",
            "4 errors",
        ],
    );
    assert!(!c.path("o.txt").exists(), "nothing ran");
}

// ---------------------------------------------------------------- validate, graph, stdout

#[test]
fn validate_accepts_a_good_manifest_and_rejects_a_bad_one() {
    let c = Case::new(LIST_TO_FILE);
    let r = c.cmd("validate");
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stderr.contains("ok"), "{}", r.stderr);
    assert!(!c.path("out.jsonl").exists(), "validate runs nothing");

    let c = Case::new(&LIST_TO_FILE.replace("sink.file", "sink.fil"));
    let r = c.cmd("validate");
    assert_ne!(r.code, 0);
    assert_has(&r, &["pipeline.toml:", "\"sink.fil\""]);
}

#[test]
fn graph_prints_dot_with_a_cluster_per_group() {
    let c = Case::new(
        r#"
[[group]]
name = "edge"

[[group]]
name = "core"
placement = "thread"

[[operator]]
name = "src"
op = "source.list"
out = "x"
values = [1]
group = "edge"

[[operator]]
name = "dbl"
op = "map_element"
in = "x"
out = "y"
fn = "x * 2"
group = "core"

[[operator]]
name = "out"
op = "sink.null"
in = "y"
"#,
    );
    let r = c.cmd("graph");
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.starts_with("digraph"), "{}", r.stdout);
    assert_eq!(
        r.stdout.matches("subgraph cluster").count(),
        2,
        "{}",
        r.stdout
    );
    for name in ["edge", "core", "src", "dbl", "out"] {
        assert!(r.stdout.contains(name), "{name} missing:\n{}", r.stdout);
    }
}

#[test]
fn sink_stdout_data_is_alone_on_stdout_and_diagnostics_go_to_stderr() {
    let c = Case::new(
        r#"
[[operator]]
name = "src"
op = "source.list"
out = "x"
values = [1, 2.5, "ab", [5, "ab"]]

[[operator]]
name = "out"
op = "sink.stdout"
in = "x"
"#,
    );
    let r = c.run();
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.stdout, "1\n2.5\n\"ab\"\n[5, \"ab\"]\n");
    assert!(
        r.stderr.contains("done in"),
        "summary on stderr: {}",
        r.stderr
    );
}

// ---------------------------------------------------------------- bad input and script errors

const TYPED_FILE: &str = r#"
[[stream]]
name = "x"
type = "i64"
on_error = "ON_ERROR"

[[operator]]
name = "src"
op = "source.file"
path = "input.jsonl"
out = "x"

[[operator]]
name = "out"
op = "sink.file"
in = "x"
path = "out.jsonl"
"#;

#[test]
fn a_bad_input_line_under_fail_stops_after_the_lines_before_it() {
    let c = Case::new(&TYPED_FILE.replace("ON_ERROR", "fail"));
    c.write("input.jsonl", "1\n2\n\"three\"\n4\n");
    let r = c.run();
    assert_ne!(r.code, 0);
    assert_has(&r, &["input.jsonl:3", "expected i64"]);
    assert_eq!(c.read("out.jsonl"), "1\n2\n");
}

#[test]
fn a_bad_input_line_under_skip_is_reported_and_counted() {
    let c = Case::new(&TYPED_FILE.replace("ON_ERROR", "skip"));
    c.write("input.jsonl", "1\n2\n{oops\n4\n");
    let r = c.run();
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_has(
        &r,
        &["input.jsonl:3", "invalid JSON", "skipped 1 bad lines"],
    );
    assert_eq!(c.read("out.jsonl"), "1\n2\n4\n");
}

#[test]
fn a_script_error_names_the_operator_the_manifest_line_and_the_element() {
    let c = Case::new(
        r#"
[[operator]]
name = "src"
op = "source.list"
out = "x"
values = [5, 0, 2]

[[operator]]
name = "ratio"
op = "map_element"
in = "x"
out = "y"
fn = "10 / x"

[[operator]]
name = "out"
op = "sink.file"
in = "y"
path = "out.jsonl"
"#,
    );
    let r = c.run();
    assert_ne!(r.code, 0);
    assert_has(&r, &["\"ratio\"", "pipeline.toml line 13", "element: 0"]);
    assert_eq!(c.read("out.jsonl"), "2\n");
}

#[test]
fn operator_outputs_into_typed_streams_are_checked_and_ints_widen_to_floats() {
    let manifest = r#"
[[stream]]
name = "y"
type = "TYPE"

[[operator]]
name = "src"
op = "source.list"
out = "x"
values = [1, 2, 3]

[[operator]]
name = "half"
op = "map_element"
in = "x"
out = "y"
fn = "if x == 3 { \"three\" } else { x }"

[[operator]]
name = "out"
op = "sink.file"
in = "y"
path = "out.jsonl"
"#;
    let c = Case::new(&manifest.replace("TYPE", "f64"));
    let r = c.run();
    assert_ne!(r.code, 0);
    assert_has(&r, &["\"half\"", "\"y\"", "f64", "\"three\""]);
    assert_eq!(c.read("out.jsonl"), "1.0\n2.0\n");

    let widen = manifest.replace(r#"fn = "if x == 3 { \"three\" } else { x }""#, "fn = \"x\"");
    let c = Case::new(&widen.replace("TYPE", "f64"));
    let r = c.run();
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(c.read("out.jsonl"), "1.0\n2.0\n3.0\n");
}

#[test]
fn a_range_into_an_f64_stream_gives_floats_and_into_another_stream_integers() {
    for (ty, want) in [
        ("f64", "0.0\n2.0\n4.0\n"),
        ("i64", "0\n2\n4\n"),
        ("any", "0\n2\n4\n"),
    ] {
        let c = Case::new(&format!(
            r#"
[[stream]]
name = "x"
type = "{ty}"

[[operator]]
name = "src"
op = "source.range"
end = 5
step = 2
out = "x"

[[operator]]
name = "out"
op = "sink.file"
in = "x"
path = "out.jsonl"
"#
        ));
        let r = c.run();
        assert_eq!(r.code, 0, "{ty}: {}", r.stderr);
        assert_eq!(c.read("out.jsonl"), want, "{ty}");
    }
}

// ---------------------------------------------------------------- sources: interval, stdin

#[test]
fn an_interval_paces_every_kind_of_source() {
    let sources = [
        "op = \"source.range\"\nstart = 0\nend = 5",
        "op = \"source.list\"\nvalues = [0, 1, 2, 3, 4]",
        "op = \"source_fn\"\ncount = 5\nfn = \"x\"",
        "op = \"source.file\"\npath = \"in.jsonl\"",
        "op = \"source.exec\"\ncommand = [\"python3\", \"-c\", \"print(0, 1, 2, 3, 4, sep=chr(10))\"]",
    ];
    for src in sources {
        let c = Case::new(&format!(
            r#"
[[operator]]
name = "src"
{src}
interval = "20ms"
out = "x"

[[operator]]
name = "out"
op = "sink.file"
in = "x"
path = "out.jsonl"
"#
        ));
        c.write("in.jsonl", "0\n1\n2\n3\n4\n");
        let t0 = Instant::now();
        let r = c.run();
        let took = t0.elapsed();
        assert_eq!(r.code, 0, "{src}: {}", r.stderr);
        assert_eq!(c.read("out.jsonl"), "0\n1\n2\n3\n4\n", "{src}");
        assert!(took >= Duration::from_millis(80), "{src}: {took:?}");
    }
}

const STDIN_TO_FILE: &str = r#"
[[group]]
name = "edge"

[[stream]]
name = "x"
type = "i64"

[[operator]]
name = "src"
op = "source.stdin"
format = "jsonl"
out = "x"
GROUP

[[operator]]
name = "out"
op = "sink.file"
in = "x"
path = "out.jsonl"
"#;

#[test]
fn source_stdin_reads_standard_input_in_the_supervisor_and_in_a_process_group() {
    for group in ["", "group = \"edge\""] {
        let c = Case::new(&STDIN_TO_FILE.replace("GROUP", group));
        let r = c.run_with_stdin("1\n2\n\n3\n");
        assert_eq!(r.code, 0, "{group}: {}", r.stderr);
        assert_eq!(c.read("out.jsonl"), "1\n2\n3\n", "{group}");

        let r = c.run_with_stdin("1\n2\n\"x\"\n4\n");
        assert_ne!(r.code, 0, "{group}");
        assert_has(&r, &["stdin:3", "expected i64"]);
        assert_eq!(c.read("out.jsonl"), "1\n2\n", "{group}");
    }
}

// ---------------------------------------------------------------- exec nodes

const SENSOR_PY: &str = r#"
import json, sys
for i in range(5):
    print(json.dumps({"t": i, "v": i * 1.5}))
    sys.stdout.flush()
print("")
print(json.dumps([7, "end"]))
"#;

const CONSUME_PY: &str = r#"
import json, sys
with open(sys.argv[1], "w") as out:
    for line in sys.stdin:
        v = json.loads(line)
        out.write(json.dumps(v) + "\n")
print("consumer done")
"#;

const EXEC: &str = r#"
[[group]]
name = "edge"

[[operator]]
name = "sensor"
op = "source.exec"
command = ["python3", "sensor.py"]
out = "x"
GROUP

[[operator]]
name = "pick"
op = "map_element"
in = "x"
out = "y"
fn = "if type_of(x) == \"map\" { x.v } else { x }"

[[operator]]
name = "consumer"
op = "sink.exec"
command = ["python3", "consume.py", "got.jsonl"]
in = "y"
GROUP
"#;

#[test]
fn exec_nodes_run_python_as_source_and_sink_in_the_supervisor_and_in_a_process_group() {
    for group in ["", "group = \"edge\""] {
        let c = Case::new(&EXEC.replace("GROUP", group));
        c.write("sensor.py", SENSOR_PY);
        c.write("consume.py", CONSUME_PY);
        let r = c.run();
        assert_eq!(r.code, 0, "{group}: {}", r.stderr);
        assert_eq!(
            c.read("got.jsonl"),
            "0.0\n1.5\n3.0\n4.5\n6.0\n[7, \"end\"]\n",
            "{group}"
        );
        assert_eq!(r.stdout, "", "the sink command's output is not data");
        assert!(r.stderr.contains("consumer done"), "{}", r.stderr);
    }
}

#[test]
fn a_failing_command_is_an_error_after_what_it_printed() {
    let c = Case::new(
        r#"
[[operator]]
name = "sensor"
op = "source.exec"
command = ["python3", "fail.py"]
out = "x"

[[operator]]
name = "out"
op = "sink.file"
in = "x"
path = "out.jsonl"
"#,
    );
    c.write(
        "fail.py",
        "import sys\nprint(1)\nprint(2)\nsys.stderr.write('fail.py says bye\\n')\nsys.exit(3)\n",
    );
    let r = c.run();
    assert_ne!(r.code, 0);
    assert_has(
        &r,
        &["\"sensor\"", "python3 fail.py", "3", "fail.py says bye"],
    );
    assert_eq!(c.read("out.jsonl"), "1\n2\n");

    // As a sink: the command exits 3.
    let c = Case::new(
        r#"
[[operator]]
name = "src"
op = "source.list"
out = "x"
values = [1, 2]

[[operator]]
name = "consumer"
op = "sink.exec"
command = ["python3", "-c", "import sys; sys.stdin.read(); sys.exit(3)"]
in = "x"
"#,
    );
    let r = c.run();
    assert_ne!(r.code, 0);
    assert_has(&r, &["\"consumer\"", "exit status: 3"]);
}

#[test]
fn a_bad_line_from_a_command_follows_on_error() {
    let manifest = r#"
[[stream]]
name = "x"
on_error = "ON_ERROR"

[[operator]]
name = "sensor"
op = "source.exec"
command = ["python3", "bad.py"]
out = "x"

[[operator]]
name = "out"
op = "sink.file"
in = "x"
path = "out.jsonl"
"#;
    let script = "print(1)\nprint(2)\nprint('{oops')\nprint(4)\n";
    let c = Case::new(&manifest.replace("ON_ERROR", "fail"));
    c.write("bad.py", script);
    let r = c.run();
    assert_ne!(r.code, 0);
    assert_has(&r, &["python3 bad.py:3", "invalid JSON"]);
    assert_eq!(c.read("out.jsonl"), "1\n2\n");

    let c = Case::new(&manifest.replace("ON_ERROR", "skip"));
    c.write("bad.py", script);
    let r = c.run();
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_has(&r, &["python3 bad.py:3", "skipped 1 bad lines"]);
    assert_eq!(c.read("out.jsonl"), "1\n2\n4\n");
}

#[test]
fn a_command_that_cannot_start_is_an_error_naming_it() {
    let c = Case::new(
        r#"
[[operator]]
name = "sensor"
op = "source.exec"
command = ["tributary-no-such-program", "x"]
out = "x"

[[operator]]
name = "out"
op = "sink.null"
in = "x"
"#,
    );
    let r = c.run();
    assert_ne!(r.code, 0);
    assert_has(&r, &["\"sensor\"", "tributary-no-such-program"]);
}

const PINNED: &str = r#"
[[group]]
name = "pinned"
placement = "PLACEMENT"
cpus = [CPU]

[[operator]]
name = "where"
op = "source.exec"
group = "pinned"
command = ["python3", "-c", "import os, json; print(json.dumps(sorted(os.sched_getaffinity(0))))"]
out = "x"

[[operator]]
name = "out"
op = "sink.file"
in = "x"
path = "got.jsonl"
"#;

#[test]
fn a_group_pinned_to_cpus_runs_there_and_so_do_the_commands_it_starts() {
    // The last CPU this test may use: the group, and the command it starts, run on it alone.
    let allowed = tributary::affinity::CpuSet::current().unwrap().cpus();
    let cpu = allowed.last().unwrap().to_string();
    for placement in ["process", "thread"] {
        let c = Case::new(&PINNED.replace("PLACEMENT", placement).replace("CPU", &cpu));
        let r = c.run();
        assert_eq!(r.code, 0, "{placement}: {}", r.stderr);
        assert_eq!(c.read("got.jsonl"), format!("[{cpu}]\n"), "{placement}");
    }
    // A CPU this process may not use: an error that names the group, before anything starts.
    let c = Case::new(
        &PINNED
            .replace("PLACEMENT", "process")
            .replace("CPU", "1023"),
    );
    let r = c.run();
    assert_ne!(r.code, 0);
    assert_has(&r, &["group \"pinned\"", "CPU 1023", "may run on"]);
    assert!(!c.path("got.jsonl").exists(), "nothing ran");
}
