//! Recovery time: SIGKILL a worker of a running pipeline, and measure the time from the kill to
//! the first new element at the sink (the supervisor notices the death, waits the smallest
//! backoff, restarts the killed worker group from its last checkpoint, which re-reads what its
//! input ring retained, and goes on). The bench counts how many restarts came from a
//! checkpoint and how many fell back to replaying the pipeline from its sources.
//!
//! The pipeline: a source paced at 1 kHz in process group "a" -> a stateful map in group "b" ->
//! `sink.stdout` in the supervisor, which this bench reads line by line. Every ~400 ms it kills
//! the worker of "a" or "b" (alternately); it reports p50 and max over the kills, and checks
//! that the output is exactly 0, 1, 2, ... (nothing lost, nothing repeated).
//!
//!   cargo build --release && cargo bench --bench restart

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const KILLS: usize = 24;

const MANIFEST: &str = r#"
name = "restart-bench"

[[group]]
name = "a"
backoff = ["1ms", "1ms"]
max_restarts = 1000

[[group]]
name = "b"
backoff = ["1ms", "1ms"]
max_restarts = 1000

[[operator]]
name = "src"
op = "source.range"
out = "x"
start = 0
end = 100000000
interval = "1ms"
group = "a"

[[operator]]
name = "count"
op = "map_element"
in = "x"
out = "y"
fn = "[state, state + 1]"
state = 0
group = "b"

[[operator]]
name = "show"
op = "sink.stdout"
in = "y"
"#;

fn tributary_bin() -> PathBuf {
    if let Some(p) = option_env!("CARGO_BIN_EXE_tributary") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().expect("current_exe");
    exe.parent()
        .and_then(Path::parent)
        .map(|d| d.join("tributary"))
        .expect("bench binary has no grandparent directory")
}

/// The pid of the worker of `group` for `manifest`, if it runs.
fn worker(manifest: &Path, group: &str) -> Option<u32> {
    let needle = format!("__worker {} {group}", manifest.display());
    for e in std::fs::read_dir("/proc").ok()?.flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(cmd) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
            continue;
        };
        let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
        if cmd.trim_end().ends_with(&needle) {
            return Some(pid);
        }
    }
    None
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let dir = std::env::temp_dir().join(format!("tributary-restart-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let manifest = dir.join("pipeline.toml");
    std::fs::write(&manifest, MANIFEST).unwrap();
    let mut child = Command::new(tributary_bin())
        .arg("run")
        .arg(&manifest)
        .stdout(Stdio::piped())
        .stderr(Stdio::from(
            std::fs::File::create(dir.join("log")).expect("create the log file"),
        ))
        .spawn()
        .expect("start tributary");
    let stdout = child.stdout.take().unwrap();
    // Every line with the time it arrived.
    let (tx, rx) = mpsc::channel::<(Instant, i64)>();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { return };
            let v: i64 = line.trim().parse().expect("an integer per line");
            if tx.send((Instant::now(), v)).is_err() {
                return;
            }
        }
    });
    let mut next = 0i64;
    let mut check = |v: i64| {
        assert_eq!(v, next, "the output skipped or repeated an element");
        next += 1;
    };
    // Warm up: the run is going.
    let (_, v) = rx.recv_timeout(Duration::from_secs(30)).expect("no output");
    check(v);
    let mut recoveries = vec![];
    for k in 0..KILLS {
        let until = Instant::now() + Duration::from_millis(400);
        while let Ok((_, v)) = rx.recv_timeout(until.saturating_duration_since(Instant::now())) {
            check(v);
        }
        let group = if k % 2 == 0 { "a" } else { "b" };
        let Some(pid) = worker(&manifest, group) else {
            panic!("no worker for group {group}");
        };
        // Whatever is already in flight arrives before the kill takes effect: drain it first.
        while let Ok((_, v)) = rx.try_recv() {
            check(v);
        }
        let killed = Instant::now();
        // SAFETY: kill(2) on a worker of the run this bench started.
        unsafe { libc::kill(pid as i32, libc::SIGKILL) };
        // The first element produced after the kill (not one already in a pipe) ends recovery.
        loop {
            let (t, v) = rx
                .recv_timeout(Duration::from_secs(30))
                .expect("no output after the restart");
            check(v);
            if t.duration_since(killed) > Duration::from_millis(3) {
                recoveries.push(t.duration_since(killed));
                break;
            }
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    let log = std::fs::read_to_string(dir.join("log")).unwrap_or_default();
    let from_checkpoint = log.matches("restarting from the last checkpoint").count();
    let replays = log
        .matches("restarting the pipeline from its sources")
        .count();
    let _ = std::fs::remove_dir_all(&dir);
    recoveries.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!(
        "restart/kill_to_first_new_output: {} kills, p50 {:.1} ms, p90 {:.1} ms, max {:.1} ms (target p50 <= 100 ms); {} elements in order, none lost or repeated; restarts from a checkpoint: {}, replays from the sources: {}",
        recoveries.len(),
        ms(recoveries[recoveries.len() / 2]),
        ms(recoveries[recoveries.len() * 9 / 10]),
        ms(*recoveries.last().unwrap()),
        next,
        from_checkpoint,
        replays
    );
}
