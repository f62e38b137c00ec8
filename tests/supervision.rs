//! Supervision with the real binary: killed workers are restarted per their group's policy and
//! the outputs equal those of a run without failures; restarts run out; temporary and
//! transient groups; data errors and sources that cannot replay are not retried.
//!
//! Timeouts are generous (a loaded 2-core machine); nothing asserts a speed.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;

/// A paced run of about 1.5 s over three process groups: a stateful map, a window, a file and
/// standard output. `GROUP_EXTRA` is added to every group.
const PACED: &str = r#"
[[group]]
name = "a"
backoff = ["20ms", "200ms"]
GROUP_EXTRA

[[group]]
name = "b"
backoff = ["20ms", "200ms"]
GROUP_EXTRA

[[group]]
name = "c"
backoff = ["20ms", "200ms"]
GROUP_EXTRA

[[operator]]
name = "src"
op = "source.range"
out = "x"
start = 0
end = 1500
interval = "1ms"
group = "a"

[[operator]]
name = "acc"
op = "map_element"
group = "b"
in = "x"
out = "y"
fn = "[x + state, state + 1]"
state = 0

[[operator]]
name = "win"
op = "map_window"
in = "y"
out = "w"
window = 10
step = 3
agg = "sum"
group = "c"

[[operator]]
name = "file"
op = "sink.file"
in = "w"
path = "out/w.jsonl"

[[operator]]
name = "show"
op = "sink.stdout"
in = "w"
"#;

/// Runs `manifest` with `extra` arguments; returns (exit code, stdout, stderr, out/w.jsonl).
fn run(m: &Path, extra: &[&str]) -> (Option<i32>, String, String, String) {
    let out_dir = m.parent().unwrap().join("out");
    let _ = std::fs::remove_dir_all(&out_dir);
    let child = start_with(m, extra, Stdio::piped());
    let (status, stdout, err) = finish_with_stdout(child, Duration::from_secs(120));
    let file = std::fs::read_to_string(out_dir.join("w.jsonl")).unwrap_or_default();
    (status.code(), stdout, err, file)
}

/// The expected output of [`PACED`], computed here.
fn expected() -> String {
    expected_for(1500)
}

/// The expected output of [`PACED`] over a range of `n`.
fn expected_for(n: i64) -> String {
    let y: Vec<i64> = (0..n).map(|x| x + x).collect();
    let mut out = String::new();
    let mut i = 0;
    while i + 10 <= y.len() {
        out.push_str(&format!("{}\n", y[i..i + 10].iter().sum::<i64>()));
        i += 3;
    }
    out
}

#[test]
fn killed_workers_are_restarted_and_the_outputs_are_those_of_a_run_without_failures() {
    let dir = tempfile::tempdir().unwrap();
    let m = write_manifest(dir.path(), &PACED.replace("GROUP_EXTRA", ""));
    for seed in ["1", "2"] {
        let (code, stdout, err, file) = run(
            &m,
            &[
                "--chaos-kills",
                "3",
                "--chaos-every",
                "250ms",
                "--chaos-seed",
                seed,
            ],
        );
        assert_eq!(code, Some(0), "{err}");
        assert!(err.contains("chaos: killed the worker"), "no kill: {err}");
        // Each killed group alone comes back from its last checkpoint.
        assert!(err.contains("restarting from the last checkpoint"), "{err}");
        assert!(!err.contains("restarting the pipeline"), "{err}");
        assert!(err.contains("restart(s) (crashed"), "no summary: {err}");
        assert_eq!(file, expected(), "the file differs (seed {seed})");
        assert_eq!(stdout, expected(), "standard output differs (seed {seed})");
    }
    assert_no_process_of(&m);
}

#[test]
fn more_restarts_than_allowed_stop_the_run_naming_the_group() {
    let dir = tempfile::tempdir().unwrap();
    let m = write_manifest(
        dir.path(),
        &PACED
            .replace("GROUP_EXTRA", "max_restarts = 1")
            .replace("end = 1500", "end = 100000"),
    );
    let (code, _, err, _) = run(&m, &["--chaos-kills", "5", "--chaos-every", "150ms"]);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("failed 2 times within 60s (max_restarts = 1): giving up"),
        "{err}"
    );
    assert!(err.contains("SIGKILL"), "the cause is not named: {err}");
    assert_no_process_of(&m);
}

#[test]
fn a_transient_group_stopped_by_sigterm_alone_is_not_restarted_and_the_run_ends() {
    let dir = tempfile::tempdir().unwrap();
    let m = write_manifest(
        dir.path(),
        &PACED
            .replace("GROUP_EXTRA", "restart = \"transient\"")
            .replace("end = 1500", "end = 100000"),
    );
    let child = start_with(&m, &[], Stdio::null());
    assert!(wait_for(Duration::from_secs(60), || workers(&m).len() == 3));
    std::thread::sleep(Duration::from_millis(300));
    // The source's worker (the oldest) stops cleanly: its stream ends early.
    let src = *workers(&m).iter().min().unwrap();
    signal(src, libc::SIGTERM);
    let (status, err) = finish(child, Duration::from_secs(60));
    assert_eq!(status.code(), Some(0), "{err}");
    assert!(err.contains("not restarted"), "{err}");
    let file = std::fs::read_to_string(dir.path().join("out/w.jsonl")).unwrap();
    assert!(!file.is_empty(), "nothing was written");
    assert!(
        expected_for(100000).starts_with(&file),
        "not a prefix of the full output"
    );
    assert_no_process_of(&m);
}

#[test]
fn a_permanent_group_stopped_by_sigterm_alone_is_restarted() {
    let dir = tempfile::tempdir().unwrap();
    let m = write_manifest(dir.path(), &PACED.replace("GROUP_EXTRA", ""));
    let child = start_with(&m, &[], Stdio::null());
    assert!(wait_for(Duration::from_secs(60), || workers(&m).len() == 3));
    std::thread::sleep(Duration::from_millis(300));
    let src = *workers(&m).iter().min().unwrap();
    signal(src, libc::SIGTERM);
    let (status, err) = finish(child, Duration::from_secs(60));
    assert_eq!(status.code(), Some(0), "{err}");
    assert!(err.contains("shut down x1"), "{err}");
    let file = std::fs::read_to_string(dir.path().join("out/w.jsonl")).unwrap();
    assert_eq!(file, expected());
}

#[test]
fn a_data_error_is_not_retried() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("in.txt"), "1\n2\nthree\n4\n").unwrap();
    let m = write_manifest(
        dir.path(),
        r#"
[[group]]
name = "a"

[[stream]]
name = "x"
type = "i64"

[[operator]]
name = "src"
op = "source.file"
path = "in.txt"
format = "jsonl"
out = "x"
group = "a"

[[operator]]
name = "file"
op = "sink.file"
in = "x"
path = "out/w.jsonl"
"#,
    );
    let (code, _, err, file) = run(&m, &[]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("in.txt:3"), "{err}");
    assert!(err.contains("not retried"), "{err}");
    assert!(!err.contains("restarting"), "{err}");
    assert_eq!(file, "1\n2\n");
}

/// A command as a source feeding group "a", which doubles the numbers into a file; the command
/// runs in group `SRC_GROUP` (empty: in the supervisor).
const EXEC_SOURCE: &str = r#"
[[group]]
name = "a"
backoff = ["20ms", "200ms"]

[[group]]
name = "s"

[[operator]]
name = "src"
op = "source.exec"
command = ["sh", "-c", "i=0; while [ $i -lt 400 ]; do echo $i; i=$((i+1)); sleep 0.002; done"]
out = "x"
SRC_GROUP

[[operator]]
name = "inc"
op = "map_element"
fn = "x + 1"
in = "x"
out = "y"
group = "a"

[[operator]]
name = "file"
op = "sink.file"
in = "y"
path = "out/w.jsonl"
"#;

#[test]
fn a_group_whose_source_cannot_replay_is_not_restarted() {
    let dir = tempfile::tempdir().unwrap();
    let m = write_manifest(
        dir.path(),
        &EXEC_SOURCE
            .replace("SRC_GROUP", "group = \"a\"")
            .replace("$i -lt 400", "1 -eq 1"),
    );
    let (code, _, err, _) = run(&m, &["--chaos-kills", "1", "--chaos-every", "300ms"]);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("not restarted: source \"src\" (source.exec) cannot replay its input"),
        "{err}"
    );
    assert_no_process_of(&m);
}

#[test]
fn a_group_downstream_of_a_source_that_cannot_replay_restarts_from_its_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    // The command runs in the supervisor; only group "a" (and "s", idle) can be killed.
    let m = write_manifest(dir.path(), &EXEC_SOURCE.replace("SRC_GROUP", ""));
    let (code, _, err, file) = run(
        &m,
        &[
            "--chaos-kills",
            "2",
            "--chaos-every",
            "250ms",
            "--chaos-seed",
            "7",
        ],
    );
    assert_eq!(code, Some(0), "{err}");
    assert!(err.contains("restarting from the last checkpoint"), "{err}");
    let want: String = (1..=400).map(|i| format!("{i}\n")).collect();
    assert_eq!(file, want, "lost or repeated elements: {err}");
    assert_no_process_of(&m);
}

/// A manifest of four groups in a chain, source to file, with `strategy`.
fn chain(strategy: &str) -> String {
    format!(
        r#"
[supervisor]
strategy = "{strategy}"

[[group]]
name = "g1"
backoff = ["20ms", "20ms"]
[[group]]
name = "g2"
backoff = ["20ms", "20ms"]
[[group]]
name = "g3"
backoff = ["20ms", "20ms"]
[[group]]
name = "g4"
backoff = ["20ms", "20ms"]

[[operator]]
name = "src"
op = "source.range"
start = 0
end = 3000
interval = "200us"
out = "x"
group = "g1"

[[operator]]
name = "acc"
op = "map_element"
in = "x"
out = "y"
fn = "[x + state, state + 1]"
state = 0
group = "g2"

[[operator]]
name = "win"
op = "map_window"
in = "y"
out = "w"
window = 10
step = 3
agg = "sum"
group = "g3"

[[operator]]
name = "file"
op = "sink.file"
in = "w"
path = "out/w.jsonl"
group = "g4"
"#
    )
}

/// The groups a log line says were restarted with the one that failed.
fn restarted_sets(err: &str) -> Vec<String> {
    err.lines()
        .filter_map(|l| l.split("restarting=").nth(1))
        .map(|s| s.split_whitespace().next().unwrap_or_default().to_string())
        .collect()
}

#[test]
fn the_strategy_says_which_groups_restart_with_the_failed_one_and_outputs_do_not_change() {
    let dir = tempfile::tempdir().unwrap();
    for (strategy, seed) in [
        ("one_for_one", "11"),
        ("rest_for_one", "12"),
        ("one_for_all", "13"),
    ] {
        let m = write_manifest(dir.path(), &chain(strategy));
        let (code, _, err, file) = run(
            &m,
            &[
                "--chaos-kills",
                "3",
                "--chaos-every",
                "150ms",
                "--chaos-seed",
                seed,
            ],
        );
        assert_eq!(code, Some(0), "{strategy}: {err}");
        let sets = restarted_sets(&err);
        assert!(!sets.is_empty(), "{strategy}: no restart: {err}");
        for line in err.lines().filter(|l| l.contains("restarting=")) {
            let failed = line
                .split("group=")
                .nth(1)
                .and_then(|s| s.split_whitespace().next())
                .unwrap();
            let set = line
                .split("restarting=")
                .nth(1)
                .unwrap()
                .split_whitespace()
                .next()
                .unwrap();
            let k: usize = failed[1..].parse().unwrap();
            let want: Vec<String> = match strategy {
                "one_for_one" => vec![failed.to_string()],
                "rest_for_one" => (k..=4).map(|i| format!("g{i}")).collect(),
                _ => (1..=4).map(|i| format!("g{i}")).collect(),
            };
            assert_eq!(set, want.join(","), "{strategy}: {line}");
        }
        assert_eq!(
            file,
            expected_for(3000),
            "{strategy}: the file differs: {err}"
        );
        assert_no_process_of(&m);
    }
}

#[test]
fn a_hung_worker_is_caught_by_its_heartbeat_killed_and_restarted() {
    let dir = tempfile::tempdir().unwrap();
    // The command never reads: once the pipe is full, the sink blocks its worker's runtime.
    let m = write_manifest(
        dir.path(),
        r#"
[[group]]
name = "a"
heartbeat_timeout = "1s"
max_restarts = 1
backoff = ["20ms", "20ms"]

[[operator]]
name = "src"
op = "source.range"
start = 0
end = 1000000
out = "x"
group = "a"

[[operator]]
name = "stuck"
op = "sink.exec"
command = ["sh", "-c", "sleep 1000"]
in = "x"
group = "a"
"#,
    );
    let (code, _, err, _) = run(&m, &[]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("no heartbeat: killing the worker"), "{err}");
    assert!(
        err.contains("group \"a\" failed 2 times within 60s (max_restarts = 1): giving up"),
        "{err}"
    );
    assert!(
        err.contains("made no progress for 1s (heartbeat_timeout)"),
        "{err}"
    );
    assert_no_process_of(&m);
}

#[test]
fn operators_that_panic_restart_in_place_and_the_outputs_do_not_change() {
    let dir = tempfile::tempdir().unwrap();
    let m = write_manifest(dir.path(), &PACED.replace("GROUP_EXTRA", ""));
    for seed in ["3", "4", "5"] {
        let (code, stdout, err, file) = run(&m, &["--chaos-panics", "3", "--chaos-seed", seed]);
        assert_eq!(code, Some(0), "{err}");
        assert!(err.contains("chaos: this operator will panic"), "{err}");
        assert!(err.contains("restarting the operator in place"), "{err}");
        assert!(err.contains("restart(s) in place"), "no summary: {err}");
        assert!(!err.contains("restarting the pipeline"), "{err}");
        assert_eq!(file, expected(), "the file differs (seed {seed})");
        assert_eq!(stdout, expected(), "standard output differs (seed {seed})");
    }
}

/// Elements larger than the ring between two process groups (1 MiB) cross it in pieces. A
/// reader that retains what it read for checkpoints must let such a frame through without
/// waiting for a checkpoint, and must never record a checkpoint position inside it. With
/// checkpoints a minute apart, a reader that held the ring until the next one would stall
/// this run for minutes.
#[test]
fn elements_larger_than_the_ring_cross_process_groups_without_waiting_for_checkpoints() {
    let dir = tempfile::tempdir().unwrap();
    let lines: Vec<String> = (0..12)
        .map(|i| format!("{i}:{}", "x".repeat(1_500_000 + i * 1000)))
        .collect();
    std::fs::write(dir.path().join("in.txt"), lines.join("\n") + "\n").unwrap();
    let m = write_manifest(
        dir.path(),
        r#"
name = "big-elements"

[[group]]
name = "a"
placement = "process"

[[group]]
name = "b"
placement = "process"

[[operator]]
name = "src"
op = "source.file"
out = "x"
path = "in.txt"
group = "a"

[[operator]]
name = "out"
op = "sink.file"
in = "x"
path = "out.txt"
format = "lines"
group = "b"
"#,
    );
    let child = Command::new(env!("CARGO_BIN_EXE_tributary"))
        .arg("run")
        .arg(&m)
        .env("TRIBUTARY_CHECKPOINT_MS", "60000")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (status, err) = finish(child, Duration::from_secs(50));
    assert!(status.success(), "the run failed: {err}");
    let out = std::fs::read_to_string(dir.path().join("out.txt")).unwrap();
    assert!(
        out.lines().eq(lines.iter().map(String::as_str)),
        "the output differs from the input ({} lines, {} bytes)",
        out.lines().count(),
        out.len()
    );
}
