//! Benchmarks between OS processes, each measured side by side with its baseline in one run:
//!
//! (a) throughput of a typed f64 stream through tributary's link stack (Channel -> writer
//!     thread -> bincode -> shared-memory ring -> reader thread -> Channel -> sink actor)
//!     against raw f64 bytes written in batches of 1024 into the same kind of ring;
//! (b) one-way latency at 1 kHz (CLOCK_MONOTONIC send stamps) through the same two paths:
//!     the stamps are taken by a source operator of the producing graph and stamped again by
//!     a sink operator of the consuming graph; the raw ring's are written by a thread and read
//!     by a thread blocked on the ring's futex (and, as a second floor, by a tokio event loop
//!     woken by the ring's eventfd doorbell, which is how tributary's consumers wait). A third
//!     variant feeds the stamps from a thread outside the producing graph (`source_channel`):
//!     one more wake-up, inside the producing process. A fourth has a plain thread push the
//!     stamps into the link that feeds the ring (no producing graph: the thread encodes and
//!     writes the frame itself, then sleeps), which isolates the consumer's share. Rounds
//!     alternate the variants;
//!     `PBENCH_LAT_ROUNDS` (default 5) sets how many;
//! (c) `tributary run` of a manifest with 4 process groups (and the same with threads):
//!     time to the first output in the sink's file and to completion.
//!
//! The bench re-executes itself (`PBENCH_ROLE` selects the child role) as the consumer
//! process; ring memfds reach it with `ShmRegion::pass_to_child` at fd 3.
//!
//!   cargo build --release && cargo bench --bench process
//!
//! `PBENCH_PARTS=b cargo bench --bench process` runs only (b) (any of `a`, `b`, `c`).

use std::io::{BufRead, BufReader, Write};
use std::os::fd::{FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tributary::link::remote::{spawn_reader, spawn_writer};
use tributary::shm::{Ring, RingReader, ShmRegion};
use tributary::{Gen, Graph, LinkConfig, OpResult, Operator, Outputs, Overflow};

const ROLE_ENV: &str = "PBENCH_ROLE";
const CHILD_FD: i32 = 3;
/// The ring size `tributary run` gives a cross-process link (supervisor::process::RING_BYTES).
const RING_BYTES: usize = 1 << 20;
const N: u64 = 10_000_000;
const BATCH: usize = 1024;
const LAT_MSGS: usize = 2000;
const LAT_WARMUP: usize = 50;
/// The Rust-graph default link capacity (elements).
const LINK_CAP: usize = 8192;

fn mono_ns() -> i64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec * 1_000_000_000 + ts.tv_nsec
}

fn value(i: u64) -> f64 {
    (i % 1000) as f64 * 0.5
}

fn expected_sum() -> f64 {
    let per_cycle: f64 = (0..1000).map(value).sum();
    per_cycle * (N / 1000) as f64 + (0..N % 1000).map(value).sum::<f64>()
}

fn link_cfg() -> LinkConfig {
    LinkConfig {
        capacity: LINK_CAP,
        overflow: Overflow::Block,
        ..LinkConfig::default()
    }
}

// ---------------------------------------------------------------- child (consumer) roles

fn child_reader() -> RingReader {
    // SAFETY: the parent placed a ring memfd at CHILD_FD with `pass_to_child`; nothing else
    // in this process owns that fd.
    let fd = unsafe { OwnedFd::from_raw_fd(CHILD_FD) };
    let region = ShmRegion::from_fd(fd).expect("map ring memfd");
    Ring::reader_from_region(region).expect("ring reader")
}

fn ready() {
    println!("ready");
    std::io::stdout().flush().unwrap();
}

fn pin_to(cpu: usize) {
    if std::env::var("PBENCH_PIN").is_err() {
        return;
    }
    // SAFETY: a zeroed cpu_set_t is valid; CPU_SET writes within it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

fn child(role: &str) {
    pin_to(1);
    let mut ring = child_reader();
    match role {
        "raw_tput" => {
            ready();
            let mut bytes = vec![0u8; BATCH * 8];
            let (mut count, mut sum) = (0u64, 0.0f64);
            while count < N {
                let n = (BATCH as u64).min(N - count) as usize;
                ring.read_exact(&mut bytes[..n * 8]).expect("read batch");
                sum += bytes[..n * 8]
                    .chunks_exact(8)
                    .map(|c| f64::from_le_bytes(c.try_into().unwrap()))
                    .sum::<f64>();
                count += n as u64;
            }
            println!("done {} {} {}", mono_ns(), count, sum);
        }
        "trib_tput" => {
            let mut g = Graph::new();
            let (feed, s) = g.external_input::<f64>("x");
            g.set_link(&s, link_cfg());
            let out = Arc::new(Mutex::new((0u64, 0.0f64, 0i64)));
            let o2 = out.clone();
            g.sink_list_with_state(&s, (0u64, 0.0f64), move |b: &[f64], st| {
                st.0 += b.len() as u64;
                st.1 += b.iter().sum::<f64>();
                if st.0 == N {
                    *o2.lock().unwrap() = (st.0, st.1, mono_ns());
                }
            });
            let r = spawn_reader("x".into(), ring, feed).expect("reader thread");
            ready();
            g.run().expect("consumer graph");
            r.join().unwrap().expect("ring reader");
            let (count, sum, end) = *out.lock().unwrap();
            let end = if count == N { end } else { mono_ns() };
            println!("done {end} {count} {sum}");
        }
        "raw_lat" => {
            ready();
            let mut lat = Vec::with_capacity(LAT_MSGS);
            let mut msg = [0u8; 8];
            for _ in 0..LAT_MSGS {
                ring.read_exact(&mut msg).expect("read stamp");
                lat.push(mono_ns() - i64::from_le_bytes(msg));
            }
            report_lat(&lat);
        }
        "evloop_lat" => {
            // The raw ring read from a tokio event loop woken by the ring's doorbell (the
            // eventfd the writer hands over): the floor of any reader living in an event loop.
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_io()
                .build()
                .expect("runtime");
            let lat = rt.block_on(async move {
                use tokio::io::unix::AsyncFd;
                let mut lat = Vec::with_capacity(LAT_MSGS);
                let sock = ring.bind_doorbell().expect("doorbell");
                let readable = |fd: OwnedFd| {
                    // SAFETY: `fd` is owned and stays open until the AsyncFd that owns it drops.
                    unsafe { AsyncFd::register_with_interest(fd, tokio::io::Interest::READABLE) }
                        .expect("register")
                };
                let mut bells = vec![readable(sock)];
                ready();
                let mut msg = [0u8; 8];
                let mut got = 0usize;
                let mut rung = 0u32;
                while lat.len() < LAT_MSGS {
                    got += ring.try_read(&mut msg[got..]);
                    if got == 8 {
                        lat.push(mono_ns() - i64::from_le_bytes(msg));
                        got = 0;
                        continue;
                    }
                    // As the link's reader: empty the doorbell now and then, not at every
                    // wake-up (the first datagram brings the writer's eventfd).
                    if rung == 0 || rung >= 32 {
                        if let Some(ev) = ring.drain_doorbell() {
                            bells.push(readable(ev));
                        }
                        rung = 1;
                    }
                    if !ring.arm_doorbell() {
                        continue;
                    }
                    let which = std::future::poll_fn(|cx| {
                        for (i, b) in bells.iter().enumerate() {
                            if let std::task::Poll::Ready(r) = b.poll_read_ready(cx) {
                                r.expect("poll").clear_ready();
                                return std::task::Poll::Ready(i);
                            }
                        }
                        std::task::Poll::Pending
                    })
                    .await;
                    rung = if which == 0 { 0 } else { rung + 1 };
                }
                lat
            });
            report_lat(&lat);
        }
        "trib_lat" => {
            let mut g = Graph::new();
            let (feed, s) = g.external_input::<i64>("t");
            g.set_link(&s, link_cfg());
            let lat = Arc::new(Mutex::new(Vec::with_capacity(LAT_MSGS)));
            let l2 = lat.clone();
            g.sink_element(&s, move |sent: i64| {
                let now = mono_ns();
                l2.lock().unwrap().push(now - sent);
            });
            let r = spawn_reader("t".into(), ring, feed).expect("reader thread");
            ready();
            g.run().expect("consumer graph");
            r.join().unwrap().expect("ring reader");
            let lat = lat.lock().unwrap();
            report_lat(&lat);
        }
        other => panic!("unknown {ROLE_ENV} {other}"),
    }
}

/// Prints the samples after the warm-up, in ns, on one line for the parent.
fn report_lat(lat: &[i64]) {
    let v = &lat[LAT_WARMUP.min(lat.len())..];
    let text: Vec<String> = v.iter().map(i64::to_string).collect();
    println!("lat {}", text.join(" "));
}

/// The p-th percentile (0..=1) of sorted samples.
fn pct(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

// ---------------------------------------------------------------- parent side

struct Consumer {
    child: Child,
    out: BufReader<ChildStdout>,
}

impl Consumer {
    /// Spawns the consumer role with a fresh ring; returns it once the child is ready, and
    /// the region for the producer end.
    fn spawn(role: &str) -> (Consumer, ShmRegion) {
        let region = Ring::create_region(RING_BYTES).expect("ring region");
        let mut cmd = Command::new(std::env::current_exe().expect("current_exe"));
        cmd.env(ROLE_ENV, role).stdout(Stdio::piped());
        region.pass_to_child(&mut cmd, CHILD_FD);
        let mut child = cmd.spawn().expect("spawn consumer process");
        let out = BufReader::new(child.stdout.take().unwrap());
        let mut c = Consumer { child, out };
        assert_eq!(c.line(), "ready", "consumer {role} did not start");
        (c, region)
    }

    fn line(&mut self) -> String {
        let mut s = String::new();
        self.out.read_line(&mut s).expect("read consumer output");
        s.trim().to_string()
    }

    fn finish(mut self) -> String {
        let l = self.line();
        let st = self.child.wait().expect("wait consumer");
        assert!(st.success(), "consumer failed: {st}");
        l
    }
}

fn parse_done(line: &str) -> (i64, u64, f64) {
    let f: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(
        f.first(),
        Some(&"done"),
        "unexpected consumer output {line:?}"
    );
    (
        f[1].parse().unwrap(),
        f[2].parse().unwrap(),
        f[3].parse().unwrap(),
    )
}

/// Elements/s of N f64 from this process to a consumer process.
fn throughput(tributary: bool) -> f64 {
    let (consumer, region) = Consumer::spawn(if tributary { "trib_tput" } else { "raw_tput" });
    let mut w = Ring::writer_from_region(region).expect("ring writer");
    let start = mono_ns();
    if tributary {
        let mut g = Graph::new();
        let x = g.source_iter((0..N).map(value));
        let chan = g.external_output(&x, link_cfg(), None);
        let wt = spawn_writer("x".into(), chan, w).expect("writer thread");
        g.run().expect("producer graph");
        wt.join().unwrap().expect("ring writer");
    } else {
        let mut bytes = Vec::with_capacity(BATCH * 8);
        let mut i = 0u64;
        while i < N {
            let n = (BATCH as u64).min(N - i);
            bytes.clear();
            for k in i..i + n {
                bytes.extend_from_slice(&value(k).to_le_bytes());
            }
            w.write_all(&bytes).expect("write batch");
            i += n;
        }
        w.close();
    }
    let (end, count, sum) = parse_done(&consumer.finish());
    assert_eq!(count, N, "consumer counted {count} elements");
    let want = expected_sum();
    assert!(
        (sum - want).abs() <= want * 1e-9,
        "consumer sum {sum}, expected {want}"
    );
    N as f64 / ((end - start) as f64 / 1e9)
}

/// A source that emits its own send stamp once per `tick`, LAT_MSGS times.
struct Ticker {
    sent: usize,
    next: Instant,
    tick: Duration,
}

impl Operator for Ticker {
    type In = i64;
    type Out = i64;

    fn generate(&mut self, out: &mut Outputs<i64>, _max: usize) -> OpResult<Gen> {
        let now = Instant::now();
        if now >= self.next {
            out.push(mono_ns());
            self.sent += 1;
            if self.sent == LAT_MSGS {
                return Ok(Gen::Done);
            }
            self.next += self.tick;
        }
        Ok(Gen::Wait(self.next.saturating_duration_since(now)))
    }
}

/// How the latency stamps enter the producing process.
#[derive(Clone, Copy, PartialEq)]
enum Stamps {
    /// The raw ring: the timing thread writes them itself.
    Raw,
    /// As `Raw`, read by an event loop woken by the ring's eventfd doorbell.
    RawEventLoop,
    /// A feeder thread sends them into a `source_channel`.
    Feeder,
    /// A source operator of the graph takes them.
    Source,
    /// A thread pushes them into the link that feeds the ring (no producing graph): it
    /// encodes and writes the frame itself, as a producing actor does.
    Direct,
}

/// The samples of one latency round, in microseconds, sorted.
struct Lat(Vec<f64>);

impl Lat {
    fn p50(&self) -> f64 {
        pct(&self.0, 0.50)
    }
    fn p99(&self) -> f64 {
        pct(&self.0, 0.99)
    }
}

fn sleep_until(t: Instant) {
    let now = Instant::now();
    if t > now {
        std::thread::sleep(t - now);
    }
}

/// One-way latency of LAT_MSGS stamps sent one per millisecond (microseconds).
fn latency(stamps: Stamps) -> Lat {
    let tributary = !matches!(stamps, Stamps::Raw | Stamps::RawEventLoop);
    let (consumer, region) = Consumer::spawn(match stamps {
        Stamps::Raw => "raw_lat",
        Stamps::RawEventLoop => "evloop_lat",
        _ => "trib_lat",
    });
    let mut w = Ring::writer_from_region(region).expect("ring writer");
    let tick = Duration::from_millis(1);
    if stamps == Stamps::Source {
        let mut g = Graph::new();
        let t = g.add_unary(
            "ticker",
            Ticker {
                sent: 0,
                next: Instant::now() + tick,
                tick,
            },
            &[],
        );
        let chan = g.external_output(&t, link_cfg(), None);
        let wt = spawn_writer("t".into(), chan, w).expect("writer");
        g.run().expect("producer graph");
        wt.join().unwrap().expect("ring writer");
    } else if stamps == Stamps::Direct {
        let chan = tributary::link::local::Channel::<i64>::new(link_cfg());
        let wt = spawn_writer("t".into(), chan.clone(), w).expect("writer");
        let t0 = Instant::now() + tick;
        for i in 0..LAT_MSGS {
            sleep_until(t0 + tick * i as u32);
            assert!(
                chan.push(vec![mono_ns()]).is_none(),
                "the link refused a stamp"
            );
        }
        chan.close(tributary::link::local::End { cycle: false });
        wt.join().unwrap().expect("ring writer");
    } else if tributary {
        let mut g = Graph::new();
        let (tx, t) = g.source_channel::<i64>(LINK_CAP);
        let chan = g.external_output(&t, link_cfg(), None);
        let wt = spawn_writer("t".into(), chan, w).expect("writer thread");
        let feeder = std::thread::spawn(move || {
            let t0 = Instant::now() + tick;
            for i in 0..LAT_MSGS {
                sleep_until(t0 + tick * i as u32);
                tx.send(mono_ns()).expect("send stamp");
            }
        });
        g.run().expect("producer graph");
        feeder.join().unwrap();
        wt.join().unwrap().expect("ring writer");
    } else {
        let t0 = Instant::now() + tick;
        for i in 0..LAT_MSGS {
            sleep_until(t0 + tick * i as u32);
            w.write_all(&mono_ns().to_le_bytes()).expect("write stamp");
        }
        w.close();
    }
    let line = consumer.finish();
    let f: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(
        f.first(),
        Some(&"lat"),
        "unexpected consumer output {line:?}"
    );
    let mut v: Vec<f64> = f[1..]
        .iter()
        .map(|s| s.parse::<f64>().expect("a latency in ns") / 1e3)
        .collect();
    v.sort_by(f64::total_cmp);
    Lat(v)
}

fn tributary_bin() -> PathBuf {
    if let Some(p) = option_env!("CARGO_BIN_EXE_tributary") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().expect("current_exe");
    let p = exe
        .parent()
        .and_then(Path::parent)
        .map(|d| d.join("tributary"))
        .expect("bench binary has no grandparent directory");
    if !p.exists() {
        eprintln!(
            "error: {} is missing: run `cargo build --release` first",
            p.display()
        );
        std::process::exit(2);
    }
    p
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

const E2E_RUNS: usize = 5;
const TPUT_ROUNDS: usize = 5;

/// Median (time to first output byte, time to completion) in ms of `tributary run`.
fn end_to_end(bin: &Path, dir: &Path, placement: &str) -> (f64, f64, u64) {
    let src = include_str!("../examples/bench/four_groups.toml");
    let out = dir.join(format!("out-{placement}.jsonl"));
    let manifest = src
        .replace("\"process\"", &format!("\"{placement}\""))
        .replace("out/four_groups.jsonl", out.to_str().unwrap());
    let mpath = dir.join(format!("four_groups-{placement}.toml"));
    std::fs::write(&mpath, manifest).unwrap();
    let (mut first, mut total) = (vec![], vec![]);
    let mut lines = 0;
    for _ in 0..E2E_RUNS {
        let _ = std::fs::remove_file(&out);
        let start = Instant::now();
        let mut child = Command::new(bin)
            .arg("run")
            .arg(&mpath)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn tributary run");
        let mut t_first = None;
        let status = loop {
            if t_first.is_none() && std::fs::metadata(&out).is_ok_and(|m| m.len() > 0) {
                t_first = Some(start.elapsed());
            }
            if let Some(st) = child.try_wait().unwrap() {
                break st;
            }
            std::thread::sleep(Duration::from_micros(500));
        };
        let done = start.elapsed();
        assert!(
            status.success(),
            "tributary run ({placement}) failed: {status}"
        );
        let t_first = t_first.unwrap_or(done);
        first.push(t_first.as_secs_f64() * 1e3);
        total.push(done.as_secs_f64() * 1e3);
        lines = std::fs::read_to_string(&out).unwrap().lines().count() as u64;
        // z = 2(x + 1) for x in 0..1 M; multiples of 3 among 2, 4, .., 2 M.
        assert_eq!(
            lines, 333_333,
            "tributary run ({placement}) wrote {lines} lines"
        );
    }
    (median(&mut first), median(&mut total), lines)
}

fn verdict(ok: bool) -> &'static str {
    if ok {
        "met"
    } else {
        "MISSED"
    }
}

fn main() {
    if let Ok(role) = std::env::var(ROLE_ENV) {
        child(&role);
        return;
    }
    // `cargo bench` passes `--bench`; `cargo test --benches` passes nothing: skip there.
    if !std::env::args().any(|a| a == "--bench") {
        println!("process bench: run with `cargo bench --bench process`");
        return;
    }
    let bin = tributary_bin();
    pin_to(0);
    // PBENCH_PARTS=b (say) runs only some of the parts.
    let parts = std::env::var("PBENCH_PARTS").unwrap_or_else(|_| "abc".into());
    if parts.contains('a') {
        bench_throughput();
    }
    if parts.contains('b') {
        bench_latency();
    }
    if parts.contains('c') {
        bench_end_to_end(&bin);
    }
}

fn bench_throughput() {
    println!("(a) f64 stream between two processes, {N} elements, 1 MiB ring, median of {TPUT_ROUNDS} rounds");
    // Alternating rounds, median of each: the machine is shared (2 cores).
    let (mut raws, mut tribs) = (vec![], vec![]);
    for _ in 0..TPUT_ROUNDS {
        raws.push(throughput(false));
        tribs.push(throughput(true));
    }
    let (raw, trib) = (median(&mut raws), median(&mut tribs));
    println!("  raw ring, batches of {BATCH}: {:>12.0} elements/s", raw);
    println!("  tributary link stack:     {:>12.0} elements/s", trib);
    let ratio = trib / raw;
    println!(
        "  ratio tributary/raw: {:.1} % (target >= 25 %: {}); vs IoTPy 92 K/s: {:.0}x",
        ratio * 100.0,
        verdict(ratio >= 0.25),
        trib / 92e3
    );
}

fn bench_latency() {
    // Rounds alternate the variants, so that a change in the machine's other load hits all of
    // them alike; each ratio is taken within a round, and the median round's is the verdict.
    let rounds: usize = std::env::var("PBENCH_LAT_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(5)
        .max(1);
    println!(
        "(b) one-way latency at 1 kHz, {rounds} rounds of {LAT_MSGS} messages ({LAT_WARMUP} warm-up dropped each), us"
    );
    let variants = [
        ("raw futex ring            ", Stamps::Raw),
        ("raw ring, event-loop read ", Stamps::RawEventLoop),
        ("tributary, source in graph", Stamps::Source),
        ("tributary, feeder thread  ", Stamps::Feeder),
        ("thread pushing into link  ", Stamps::Direct),
    ];
    let mut all: Vec<Vec<f64>> = vec![vec![]; variants.len()];
    let mut ratios: Vec<Vec<(f64, f64)>> = vec![vec![]; variants.len()];
    for round in 0..rounds {
        let lats: Vec<Lat> = variants.iter().map(|&(_, st)| latency(st)).collect();
        let raw = &lats[0];
        let line: Vec<String> = variants
            .iter()
            .zip(&lats)
            .map(|((name, _), l)| format!("{} {:.1}/{:.1}", name.trim(), l.p50(), l.p99()))
            .collect();
        eprintln!("  round {}: p50/p99 {}", round + 1, line.join(", "));
        for (i, l) in lats.iter().enumerate() {
            ratios[i].push((l.p50() / raw.p50(), l.p99() / raw.p99()));
            all[i].extend_from_slice(&l.0);
        }
    }
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    for ((name, _), v) in variants.iter().zip(all.iter_mut()) {
        v.sort_by(f64::total_cmp);
        println!(
            "  {name}: p50 {:>7.1}  p99 {:>7.1}  max {:>8.1}  (all rounds)",
            pct(v, 0.5),
            pct(v, 0.99),
            v[v.len() - 1]
        );
    }
    for (i, name) in [
        (1, "raw ring, event-loop read "),
        (2, "tributary, source in graph"),
        (3, "tributary, feeder thread  "),
        (4, "thread pushing into link  "),
    ] {
        let p50 = median(ratios[i].iter().map(|r| r.0).collect());
        let p99 = median(ratios[i].iter().map(|r| r.1).collect());
        let target = if i == 2 {
            format!(" (target <= 1.5x: {})", verdict(p50 <= 1.5))
        } else {
            String::new()
        };
        println!(
            "  {name} p50 ratio to the raw ring, median of the rounds: {p50:.2}x{target}, p99 ratio {p99:.2}x"
        );
    }
}

fn bench_end_to_end(bin: &Path) {
    println!("(c) tributary run, 4 groups, 1 M elements, median of {E2E_RUNS} runs, ms");
    let dir = tempfile::tempdir().expect("temp dir");
    for placement in ["process", "thread"] {
        let (first, total, lines) = end_to_end(bin, dir.path(), placement);
        println!(
            "  placement {placement:<7}: first output {:>7.1}  completion {:>7.1}  ({lines} lines){}",
            first,
            total,
            if placement == "process" {
                format!(" (first output target <= 50 ms: {})", verdict(first <= 50.0))
            } else {
                String::new()
            }
        );
    }
}
