//! Native source and sink nodes for `bench/compare.sh`: the same source -> sink workload as its
//! dora-rs dataflow, as two operator kinds of this binary placed in two process groups.
//!
//! - `bench_source` (`count`, `size`, `rate`): emits `[seq, t_ns, payload]` `count` times, `t_ns`
//!   the CLOCK_MONOTONIC time of the call, `payload` `size - 16` bytes of 'x' (an empty string
//!   for 16-byte messages). With `rate` (Hz), call `i` first sleeps until `i / rate` s after the
//!   first call: a fixed rate, where `interval` is a pause after each element (`interval = "1ms"`
//!   gives about 480 Hz here). Give it a short `interval` too (`"1us"`), so that the runtime
//!   asks for one element at a time and sends each on its own. It builds each element as a
//!   `Value`, which the runtime moves as it is: the payload is copied once by the node (a
//!   fresh message each time) and once into shared memory on its way to the sink.
//! - `bench_sink` (`count`, `path`, `warmup`): stamps each element on arrival and, once `count`
//!   elements have arrived (or when it is dropped), writes the summary as JSON to `path`: the
//!   fields of `bench/peers/stats.py` (received, lost, latency p50/p99/max in us of the elements
//!   with `seq >= warmup`, msgs/s from the first send to the last arrival).
//!
//! `cargo run --release --example compare_nodes -- run manifest.toml`

use std::process::ExitCode;

use serde::de::IgnoredAny;
use tributary::registry::Registry;
use tributary::Value;

fn mono_ns() -> i64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec * 1_000_000_000 + ts.tv_nsec
}

struct Stats {
    count: usize,
    size: usize,
    warmup: i64,
    path: String,
    seen: Vec<bool>,
    received: usize,
    first_sent: i64,
    last_recv: i64,
    lat_us: Vec<f64>,
    written: bool,
}

impl Stats {
    fn record(&mut self, seq: i64, sent: i64, now: i64) {
        if let Some(s) = usize::try_from(seq).ok().and_then(|i| self.seen.get_mut(i)) {
            if !*s {
                *s = true;
                self.received += 1;
            }
        }
        self.first_sent = self.first_sent.min(sent);
        self.last_recv = self.last_recv.max(now);
        if seq >= self.warmup {
            self.lat_us.push((now - sent) as f64 / 1e3);
        }
        if self.received == self.count {
            self.write();
        }
    }

    fn write(&mut self) {
        if self.written {
            return;
        }
        self.written = true;
        let mut lat = std::mem::take(&mut self.lat_us);
        lat.sort_by(|a, b| a.partial_cmp(b).unwrap());
        let mut o = serde_json::json!({
            "count": self.count,
            "size": self.size,
            "received": self.received,
            "lost": self.count - self.received,
        });
        if !lat.is_empty() {
            let pct = |p: f64| lat[((lat.len() - 1) as f64 * p).round() as usize];
            o["lat_p50_us"] = pct(0.50).into();
            o["lat_p99_us"] = pct(0.99).into();
            o["lat_max_us"] = lat[lat.len() - 1].into();
        }
        if self.received > 0 {
            let dt = (self.last_recv - self.first_sent) as f64 / 1e9;
            o["seconds"] = dt.into();
            o["msgs_per_s"] = (self.received as f64 / dt).into();
            o["mbytes_per_s"] = (self.received as f64 * self.size as f64 / dt / 1e6).into();
        }
        if let Err(e) = std::fs::write(&self.path, o.to_string()) {
            eprintln!("bench_sink: cannot write {}: {e}", self.path);
        }
    }
}

impl Drop for Stats {
    fn drop(&mut self) {
        self.write();
    }
}

fn main() -> ExitCode {
    let mut reg = Registry::default();
    reg.source("bench_source", |p| {
        let count = p.i64("count").unwrap_or(0).max(0) as usize;
        let size = p.i64("size").unwrap_or(16).max(16) as usize;
        let payload = "x".repeat(size - 16);
        let period = p
            .f64("rate")
            .filter(|r| *r > 0.0)
            .map(|r| std::time::Duration::from_secs_f64(1.0 / r));
        let mut t0 = None;
        move |i: usize| {
            if i >= count {
                return None;
            }
            if let Some(period) = period {
                let t0 = *t0.get_or_insert_with(std::time::Instant::now);
                let tick = t0 + period * i as u32;
                let now = std::time::Instant::now();
                if tick > now {
                    std::thread::sleep(tick - now);
                }
            }
            // An element built as a `Value` is moved into the stream as it is (a tuple
            // would be serialized into one, copying the payload).
            Some(Value::Array(vec![
                Value::Int(i as i64),
                Value::Int(mono_ns()),
                Value::Str(payload.clone()),
            ]))
        }
    })
    .required(&["count"])
    .optional(&["size", "rate"]);
    reg.sink("bench_sink", |p| {
        let count = p.i64("count").unwrap_or(0).max(0) as usize;
        let mut st = Stats {
            count,
            size: p.i64("size").unwrap_or(16).max(16) as usize,
            warmup: p.i64("warmup").unwrap_or(0),
            path: p.str("path").unwrap_or("bench_sink.json").to_string(),
            seen: vec![false; count],
            received: 0,
            first_sent: i64::MAX,
            last_recv: i64::MIN,
            lat_us: Vec::with_capacity(count),
            written: false,
        };
        move |(seq, sent, _payload): (i64, i64, IgnoredAny)| {
            let now = mono_ns();
            st.record(seq, sent, now);
        }
    })
    .required(&["count", "path"])
    .optional(&["size", "warmup"]);
    tributary::cli::main_with(reg)
}
