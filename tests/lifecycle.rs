//! The life of a run across processes, with the real binary: signals stop it cleanly, no
//! process outlives the supervisor, a dead temporary worker fails the run, the summary covers every
//! process, drops are counted, memory stays bounded under a slow sink.
//!
//! Timeouts are generous (a loaded 2-core machine); nothing asserts a speed.

mod common;

use std::time::{Duration, Instant};

use common::*;

/// A manifest of a very long run: a range of 10^9 through a slow map in process group `p0`,
/// written by a file sink in the supervisor.
const LONG: &str = r#"
[[group]]
name = "p0"
placement = "process"

[[stream]]
name = "x"
capacity = 64

[[operator]]
name = "src"
op = "source.range"
group = "p0"
out = "x"
start = 0
end = 1000000000

[[operator]]
name = "slow"
op = "map_element"
group = "p0"
in = "x"
out = "y"
fn = "let s = 0; for i in 0..200 { s += i; } x"

[[operator]]
name = "write"
op = "sink.file"
in = "y"
path = "out/y.txt"
"#;

/// Starts the long run, lets it make progress, sends `sig`, and checks a clean stop.
fn stop_cleanly(sig: i32, want: i32) {
    let dir = tempfile::tempdir().unwrap();
    let m = write_manifest(dir.path(), LONG);
    let out = dir.path().join("out/y.txt");
    let child = start(&m, &[]);
    assert!(
        wait_for(Duration::from_secs(60), || std::fs::metadata(&out)
            .map(|x| x.len() > 0)
            .unwrap_or(false)),
        "the sink wrote nothing within a minute"
    );
    assert!(!workers(&m).is_empty(), "the worker is not running");
    signal(child.id(), sig);
    let (status, err) = finish(child, Duration::from_secs(60));
    assert_eq!(status.code(), Some(want), "stderr: {err}");
    let text = std::fs::read_to_string(&out).unwrap();
    assert!(text.ends_with('\n'), "a partial last line");
    let n = text.lines().count();
    assert!(n > 0);
    for (i, line) in text.lines().enumerate() {
        assert_eq!(
            line,
            i.to_string(),
            "line {} is not the expected prefix",
            i + 1
        );
    }
    assert!(n < 1_000_000_000);
    assert!(err.contains("stream y:"), "no summary: {err}");
    assert_no_process_of(&m);
}

#[test]
fn sigint_stops_the_run_cleanly_with_status_130() {
    stop_cleanly(libc::SIGINT, 130);
}

#[test]
fn sigterm_stops_the_run_cleanly_with_status_143() {
    stop_cleanly(libc::SIGTERM, 143);
}

#[test]
fn no_process_outlives_a_supervisor_killed_with_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let m = write_manifest(dir.path(), LONG);
    let mut child = start(&m, &[]);
    assert!(
        wait_for(Duration::from_secs(60), || !workers(&m).is_empty()),
        "the worker did not start"
    );
    signal(child.id(), libc::SIGKILL);
    let _ = child.wait();
    assert!(
        wait_for(Duration::from_secs(2), || procs_with(
            &m.display().to_string()
        )
        .is_empty()),
        "processes outlived the supervisor: {:?}",
        procs_with(&m.display().to_string())
    );
}

#[test]
fn a_temporary_worker_killed_by_a_signal_fails_the_run_naming_its_group() {
    let dir = tempfile::tempdir().unwrap();
    let m = write_manifest(
        dir.path(),
        &LONG.replace(
            "placement = \"process\"",
            "placement = \"process\"\nrestart = \"temporary\"",
        ),
    );
    let child = start(&m, &[]);
    assert!(
        wait_for(Duration::from_secs(60), || !workers(&m).is_empty()),
        "the worker did not start"
    );
    // Let it run a little, then kill the worker.
    std::thread::sleep(Duration::from_millis(500));
    for w in workers(&m) {
        signal(w, libc::SIGKILL);
    }
    let (status, err) = finish(child, Duration::from_secs(60));
    assert!(!status.success());
    assert_ne!(status.code(), None, "the supervisor itself was killed");
    assert!(err.contains("\"p0\""), "the group is not named: {err}");
    assert!(err.contains("SIGKILL"), "the signal is not named: {err}");
    assert!(err.contains("temporary: not restarted"), "{err}");
    assert_no_process_of(&m);
}

#[test]
fn an_operator_failing_in_a_worker_fails_the_run_with_its_message() {
    let dir = tempfile::tempdir().unwrap();
    let m = write_manifest(
        dir.path(),
        r#"
[[group]]
name = "p0"
placement = "process"

[[operator]]
name = "src"
op = "source.range"
out = "x"
start = 0
end = 1000000000

[[operator]]
name = "picky"
op = "map_element"
group = "p0"
in = "x"
out = "y"
fn = 'if x == 5000 { throw "no fives" } x'

[[operator]]
name = "write"
op = "sink.file"
in = "y"
path = "out/y.txt"
"#,
    );
    let (status, err) = finish(start(&m, &[]), Duration::from_secs(120));
    assert_eq!(status.code(), Some(1), "stderr: {err}");
    assert!(err.contains("picky"), "the operator is not named: {err}");
    assert!(err.contains("no fives"), "the message is missing: {err}");
    // A script error restarts the operator in place per the default policy, then gives up.
    assert!(
        err.contains("restarted 5 times within 60s, max_restarts = 5: giving up"),
        "{err}"
    );
    let text = std::fs::read_to_string(dir.path().join("out/y.txt")).unwrap();
    for (i, line) in text.lines().enumerate() {
        assert_eq!(line, i.to_string(), "not a prefix of the expected output");
    }
}

const CHAIN: &str = r#"
[[group]]
name = "p0"
placement = "process"

[[operator]]
name = "src"
op = "source.range"
out = "x"
start = 0
end = 1000

[[operator]]
name = "inc"
op = "map_element"
group = "p0"
in = "x"
out = "y"
fn = "x + 1"

[[operator]]
name = "write"
op = "sink.file"
in = "y"
path = "out/y.txt"
"#;

#[test]
fn the_summary_counts_streams_produced_in_worker_processes() {
    let dir = tempfile::tempdir().unwrap();
    let m = write_manifest(dir.path(), CHAIN);
    let (status, err) = finish(start(&m, &[]), Duration::from_secs(120));
    assert!(status.success(), "stderr: {err}");
    assert!(err.contains("stream x: 1000 elements"), "stderr: {err}");
    assert!(
        err.contains("stream y: 1000 elements"),
        "the worker's stream is missing: {err}"
    );
}

#[test]
fn the_json_summary_is_one_object_line() {
    let dir = tempfile::tempdir().unwrap();
    let m = write_manifest(dir.path(), CHAIN);
    let (status, err) = finish(
        start(&m, &["--log-format", "json"]),
        Duration::from_secs(120),
    );
    assert!(status.success(), "stderr: {err}");
    let line = err
        .lines()
        .find(|l| l.contains("\"summary\""))
        .unwrap_or_else(|| panic!("no summary: {err}"));
    let v: serde_json::Value = serde_json::from_str(line).unwrap();
    assert_eq!(v["status"], "ok");
    assert_eq!(v["streams"]["y"], 1000);
    assert_eq!(v["streams"]["x"], 1000);
}

#[test]
fn a_lossy_stream_into_a_slow_sink_reports_its_drops() {
    let dir = tempfile::tempdir().unwrap();
    let m = write_manifest(
        dir.path(),
        r#"
[[group]]
name = "p0"
placement = "process"

[[stream]]
name = "x"
capacity = 4
overflow = "drop_newest"

[[operator]]
name = "src"
op = "source.range"
out = "x"
start = 0
end = 20000

[[operator]]
name = "slow"
op = "sink_element"
group = "p0"
in = "x"
fn = "let s = 0; for i in 0..300 { s += i; }"
"#,
    );
    let (status, err) = finish(start(&m, &[]), Duration::from_secs(300));
    assert!(status.success(), "stderr: {err}");
    let line = err
        .lines()
        .find(|l| l.contains("stream x:"))
        .unwrap_or_else(|| panic!("no line for x: {err}"));
    let dropped: u64 = line
        .split(", ")
        .nth(1)
        .and_then(|s| s.strip_suffix(" dropped"))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no drops counted: {err}"));
    assert!(dropped > 0 && dropped < 20000, "{line}");
}

/// Resident memory of `pid` in kB.
fn rss_kb(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|n| n.parse().ok())
        })
        .unwrap_or(0)
}

#[test]
fn memory_stays_bounded_under_a_sink_far_slower_than_its_source() {
    // 200 MB for every process of the run together, while the source could produce 10^9
    // elements (several GB) if nothing held it back.
    const BOUND_KB: u64 = 200 * 1024;
    let dir = tempfile::tempdir().unwrap();
    let m = write_manifest(
        dir.path(),
        r#"
[[group]]
name = "p0"
placement = "process"

[[stream]]
name = "x"
capacity = 64

[[operator]]
name = "src"
op = "source.range"
out = "x"
start = 0
end = 1000000000

[[operator]]
name = "slow"
op = "sink_element"
group = "p0"
in = "x"
fn = "let s = 0; for i in 0..2000 { s += i; }"
"#,
    );
    let worst = peak_rss_kb(&m, Duration::from_secs(6));
    assert!(
        worst < BOUND_KB,
        "the run grew to {worst} kB, over {BOUND_KB} kB"
    );
}

/// The peak of the summed resident memory of every process of the run of `m` (which must
/// not end by itself) over `span`, in kB; the run is killed afterwards.
fn peak_rss_kb(m: &std::path::Path, span: Duration) -> u64 {
    let mut child = start(m, &[]);
    let pid = child.id();
    assert!(
        wait_for(Duration::from_secs(60), || !workers(m).is_empty()),
        "the worker did not start"
    );
    let mut worst = 0;
    let until = Instant::now() + span;
    while Instant::now() < until {
        let mut pids = procs_with(&m.display().to_string());
        if !pids.contains(&pid) {
            pids.push(pid);
        }
        let total: u64 = pids.iter().map(|&p| rss_kb(p)).sum();
        worst = worst.max(total);
        assert!(
            child.try_wait().unwrap().is_none(),
            "the run ended: the sink is not slow"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    signal(pid, libc::SIGKILL);
    let _ = child.wait();
    assert!(wait_for(Duration::from_secs(5), || procs_with(
        &m.display().to_string()
    )
    .is_empty()));
    worst
}

#[test]
fn large_elements_are_bounded_in_bytes_not_only_in_count() {
    // Lines of 1 MB as fast as `cat` writes them, into a sink far slower: the stream's
    // 1024-element capacity would hold 1 GB; its `capacity_bytes` holds it to 16 MiB per link.
    const BOUND_KB: u64 = 200 * 1024;
    let dir = tempfile::tempdir().unwrap();
    let line = format!("\"{}\"\n", "x".repeat(1_000_000));
    let frame = dir.path().join("frame.json");
    std::fs::write(&frame, line).unwrap();
    let m = write_manifest(
        dir.path(),
        &format!(
            r#"
[[group]]
name = "p0"
placement = "process"

[[stream]]
name = "x"
capacity_bytes = "16 MiB"

[[operator]]
name = "src"
op = "source.exec"
out = "x"
command = ["sh", "-c", "while :; do cat '{}'; done"]

[[operator]]
name = "slow"
op = "sink_element"
group = "p0"
in = "x"
fn = "let s = 0; for i in 0..100000 {{ s += i; }}"
"#,
            frame.display()
        ),
    );
    let worst = peak_rss_kb(&m, Duration::from_secs(8));
    assert!(
        worst < BOUND_KB,
        "the run grew to {worst} kB, over {BOUND_KB} kB"
    );
}

#[test]
fn a_stop_handle_ends_a_graph_gracefully_with_a_prefix_of_its_output() {
    let mut g = tributary::Graph::new();
    let x = g.source_iter(0i64..);
    let y = g.map_element(&x, |v| v + 1);
    let out = g.collect(&y);
    let stop = g.stop_handle();
    std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(200));
        stop.stop();
    });
    let report = g.run().expect("a graceful stop ends the run normally");
    let got = out.take();
    assert!(!got.is_empty());
    assert_eq!(report.count("map_element#1"), Some(got.len() as u64));
    for (i, v) in got.iter().enumerate() {
        assert_eq!(*v, i as i64 + 1);
    }
}

#[test]
fn a_graph_report_counts_the_drops_of_a_lossy_link() {
    let mut g = tributary::Graph::new();
    let x = g.source_iter(0i64..100_000);
    g.set_link(
        &x,
        tributary::LinkConfig {
            capacity: 4,
            overflow: tributary::Overflow::DropNewest,
            ..tributary::LinkConfig::default()
        },
    );
    let seen = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let s2 = seen.clone();
    g.sink_element(&x, move |_v: i64| {
        s2.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    });
    let report = g.run().unwrap();
    let dropped = report.total_drops();
    assert!(dropped > 0, "{report:?}");
    assert_eq!(
        dropped + seen.load(std::sync::atomic::Ordering::Relaxed),
        100_000
    );
}

/// A stream made in a worker and read in the supervisor by three consumers: the first (which
/// runs the ring reader in its own actor) is fast, the second slow, the third on a thread of its
/// own. Every consumer gets every element, in order.
#[test]
fn a_stream_from_another_process_reaches_every_consumer_whatever_their_speed_and_thread() {
    let dir = tempfile::tempdir().unwrap();
    let m = write_manifest(
        dir.path(),
        r#"
[[group]]
name = "p0"
placement = "process"

[[group]]
name = "t"
placement = "thread"

[[stream]]
name = "x"
capacity = 16

[[operator]]
name = "src"
op = "source.range"
group = "p0"
out = "x"
start = 0
end = 20000

[[operator]]
name = "fast"
op = "sink.file"
in = "x"
path = "out/fast.txt"

[[operator]]
name = "slow"
op = "map_element"
in = "x"
out = "y"
fn = "let s = 0; for i in 0..100 { s += i; } x"

[[operator]]
name = "slow_write"
op = "sink.file"
in = "y"
path = "out/slow.txt"

[[operator]]
name = "threaded"
op = "sink.file"
group = "t"
in = "x"
path = "out/thread.txt"
"#,
    );
    let (status, err) = finish(start(&m, &[]), Duration::from_secs(120));
    assert!(status.success(), "stderr: {err}");
    let want: String = (0..20000).map(|i| format!("{i}\n")).collect();
    for f in ["fast", "slow", "thread"] {
        let got = std::fs::read_to_string(dir.path().join(format!("out/{f}.txt"))).unwrap();
        assert!(got == want, "out/{f}.txt differs: {} bytes", got.len());
    }
}
