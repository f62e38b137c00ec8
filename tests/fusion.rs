//! Fusion of element-operator chains (one actor per chain) changes nothing a user sees: the
//! same manifests run with and without `TRIBUTARY_NO_FUSION=1` give the same outputs, exit
//! status, errors and end-of-run summary (every stream with its count).

use std::path::Path;
use std::process::{Command, Stdio};

/// What a run left: exit code, the summary's stream lines and error line, and the outputs.
#[derive(Debug, PartialEq)]
struct Seen {
    code: i32,
    summary: Vec<String>,
    outputs: Vec<(String, String)>,
}

/// Runs `manifest` in a fresh directory, fused or not; returns what it left and its stderr.
fn run(manifest: &str, fused: bool) -> (Seen, String) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("pipeline.toml"), manifest).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_tributary"))
        .args(["run", "pipeline.toml"])
        .current_dir(dir.path())
        .env("NO_COLOR", "1")
        .env("TRIBUTARY_LOG", "debug")
        .env("TRIBUTARY_NO_FUSION", if fused { "0" } else { "1" })
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let summary = stderr
        .lines()
        .filter(|l| l.starts_with("  stream ") || l.starts_with("error:"))
        .map(str::to_string)
        .collect();
    let seen = Seen {
        code: out.status.code().unwrap_or(-1),
        summary,
        outputs: outputs(&dir.path().join("out")),
    };
    (seen, stderr)
}

fn outputs(dir: &Path) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.map(|e| {
                let p = e.unwrap().path();
                let name = p.file_name().unwrap().to_string_lossy().into_owned();
                (name, std::fs::read_to_string(&p).unwrap())
            })
            .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// Runs `manifest` both ways: asserts identical results and that `chains` were fused.
fn same_both_ways(manifest: &str, chains: &[&str]) -> Seen {
    let (plain, plain_err) = run(manifest, false);
    let (fused, fused_err) = run(manifest, true);
    assert!(
        !plain_err.contains("fused into one actor"),
        "TRIBUTARY_NO_FUSION=1 still fused:\n{plain_err}"
    );
    for c in chains {
        assert!(
            fused_err.contains(&format!("operators={c}")),
            "chain {c} was not fused:\n{fused_err}"
        );
    }
    assert_eq!(
        fused, plain,
        "fused run differs\n--- fused stderr:\n{fused_err}\n--- unfused stderr:\n{plain_err}"
    );
    fused
}

const KINDS: &str = r#"
[[stream]]
name = "a"
type = "i64"

[[stream]]
name = "sm"
type = "f64"

[[operator]]
name = "src"
op = "source.range"
out = "x"
start = 0
end = 5000

[[operator]]
name = "running"
op = "map_element"
in = "x"
out = "a"
state = 0
fn = "[x + state, state + 1]"

[[operator]]
name = "keep"
op = "filter_element"
in = "a"
out = "b"
state = 0
fn = "[(x + state) % 3 != 0, state + x % 5]"

[[operator]]
name = "smooth"
op = "exponential_smoothing"
in = "b"
out = "sm"
alpha = 0.5

[[operator]]
name = "twice"
op = "map_list"
in = "sm"
out = "l"
fn = "batch.map(|v| v * 2.0)"

[[operator]]
name = "seed"
op = "prepend"
in = "l"
out = "p"
values = [-1.0, -2.0]

[[operator]]
name = "mv"
op = "map_element"
in = "p"
out = "q"
fn = "if x > 1000.0 { multivalue([x, x]) } else if x < 0.0 { () } else { x }"

[[operator]]
name = "even"
op = "filter_element"
in = "q"
out = "r"
fn = "x > 3.0"

[[operator]]
name = "write"
op = "sink.file"
in = "r"
path = "out/r.jsonl"
"#;

#[test]
fn every_fusable_kind_in_one_chain_gives_the_same_outputs_and_summary() {
    let seen = same_both_ways(
        KINDS,
        &["running -> keep -> smooth -> twice -> seed -> mv -> even"],
    );
    assert_eq!(seen.code, 0);
    assert_eq!(seen.summary.len(), 8, "{:?}", seen.summary);
    assert!(seen
        .summary
        .contains(&"  stream x: 5000 elements".to_string()));
    assert!(seen
        .summary
        .contains(&"  stream a: 5000 elements".to_string()));
}

const PLACED: &str = r#"
[[group]]
name = "w"
placement = "process"

[[group]]
name = "t"
placement = "thread"

[[stream]]
name = "e"
capacity = 16

[[operator]]
name = "src"
op = "source.range"
out = "x"
start = 0
end = 20000

[[operator]]
name = "w1"
op = "map_element"
in = "x"
out = "a"
fn = "x * 3"
group = "w"

[[operator]]
name = "w2"
op = "filter_element"
in = "a"
out = "b"
fn = "x % 2 == 0"
group = "w"

[[operator]]
name = "w3"
op = "map_element"
in = "b"
out = "c"
fn = "x + 1"
group = "w"

[[operator]]
name = "t1"
op = "map_element"
in = "c"
out = "d"
fn = "x - 1"
group = "t"

[[operator]]
name = "t2"
op = "map_element"
in = "d"
out = "e"
fn = "x / 2"
group = "t"

[[operator]]
name = "t3"
op = "map_element"
in = "e"
out = "f"
fn = "x + 7"
group = "t"

[[operator]]
name = "u1"
op = "map_element"
in = "f"
out = "g"
fn = "x * 10"

[[operator]]
name = "u2"
op = "map_element"
in = "g"
out = "h"
fn = "x + 1"

[[operator]]
name = "write_g"
op = "sink.file"
in = "g"
path = "out/g.jsonl"

[[operator]]
name = "write_h"
op = "sink.file"
in = "h"
path = "out/h.jsonl"
"#;

#[test]
fn chains_fuse_within_a_process_group_and_a_thread_group_only() {
    // w1..w3 fuse in the worker (fed by a ring, feeding one); t1 -> t2 fuse, but `e` has a
    // capacity of its own, so t3 stays apart; `g` has two consumers, so u1 and u2 do not fuse.
    let (_, err) = run(PLACED, true);
    assert!(!err.contains("operators=t2 -> t3"), "{err}");
    assert!(!err.contains("-> u1"), "{err}");
    assert!(!err.contains("u1 -> u2"), "{err}");
    let seen = same_both_ways(PLACED, &["w1 -> w2 -> w3", "t1 -> t2"]);
    assert_eq!(seen.code, 0);
    assert_eq!(seen.summary.len(), 9, "{:?}", seen.summary);
}

const FAILING: &str = r#"
[[group]]
name = "t"
placement = "thread"
restart = "temporary"

[[stream]]
name = "b"
type = "i64"

[[operator]]
name = "src"
op = "source.list"
out = "x"
values = [1, 2, 3, 4, 5, 6]
group = "t"

[[operator]]
name = "inc"
op = "map_element"
in = "x"
out = "a"
fn = "x + 1"
group = "t"

[[operator]]
name = "middle"
op = "map_element"
in = "a"
out = "b"
fn = "BODY"
group = "t"

[[operator]]
name = "even"
op = "filter_element"
in = "b"
out = "c"
fn = "FILTER"
group = "t"

[[operator]]
name = "write"
op = "sink.file"
in = "c"
path = "out/c.jsonl"
group = "t"
"#;

fn failing(body: &str, filter: &str) -> Seen {
    let m = FAILING.replace("BODY", body).replace("FILTER", filter);
    let seen = same_both_ways(&m, &["inc -> middle -> even"]);
    assert_ne!(seen.code, 0);
    seen
}

#[test]
fn a_script_error_in_a_fused_stage_names_that_stage() {
    let seen = failing("if x == 5 { x.foo() } else { x }", "x % 2 == 0");
    let err = seen.summary.last().unwrap();
    assert!(err.contains("operator \"middle\" failed"), "{err}");
    assert!(err.contains("(element: 5)"), "{err}");
    // What came before the bad element went through the rest of the chain.
    assert_eq!(seen.outputs, vec![("c.jsonl".into(), "2\n4\n".into())]);
}

#[test]
fn a_type_error_on_a_stream_inside_a_chain_names_its_producer() {
    let seen = failing(r#"if x == 5 { \"five\" } else { x }"#, "x % 2 == 0");
    let err = seen.summary.last().unwrap();
    assert!(
        err.contains("operator \"middle\" failed: stream \"b\" has type i64"),
        "{err}"
    );
}

#[test]
fn a_bad_filter_result_at_the_end_of_a_chain_names_the_filter() {
    let seen = failing("x", "if x == 4 { 1 } else { true }");
    let err = seen.summary.last().unwrap();
    assert!(err.contains("operator \"even\" failed"), "{err}");
    assert!(err.contains("must return a bool"), "{err}");
}
