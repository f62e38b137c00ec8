//! Benchmarks of the shared-memory ring: f64 batch throughput and ping-pong round trip.

use std::hint::black_box;
use std::thread;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use tributary::shm::{Ring, ShmError};

const BATCH: usize = 1024;

/// Moves `iters` batches of 1024 f64 (encoded little-endian) from a writer thread to a reader thread.
fn f64_batches(iters: u64, ring_capacity: usize) -> Duration {
    let (mut w, mut r) = Ring::create(ring_capacity).expect("ring");
    let reader = thread::spawn(move || {
        let mut bytes = vec![0u8; BATCH * 8];
        let mut sum = 0.0f64;
        for _ in 0..iters {
            r.read_exact(&mut bytes).expect("read batch");
            sum += bytes
                .chunks_exact(8)
                .map(|c| f64::from_le_bytes(c.try_into().unwrap()))
                .sum::<f64>();
        }
        sum
    });
    let values: Vec<f64> = (0..BATCH).map(|i| i as f64 * 0.5).collect();
    let mut bytes = Vec::with_capacity(BATCH * 8);
    let start = Instant::now();
    for _ in 0..iters {
        bytes.clear();
        for v in &values {
            bytes.extend_from_slice(&v.to_le_bytes());
        }
        w.write_all(&bytes).expect("write batch");
    }
    black_box(reader.join().expect("reader thread"));
    start.elapsed()
}

/// Round trips of a 16-byte message over two rings; `spin` 0 forces the futex path.
fn ping_pong(iters: u64, spin: u32) -> Duration {
    let (mut ping_w, mut ping_r) = Ring::create(4096).expect("ring");
    let (mut pong_w, mut pong_r) = Ring::create(4096).expect("ring");
    for s in [&mut ping_w, &mut pong_w] {
        s.set_spin_limit(spin);
    }
    ping_r.set_spin_limit(spin);
    pong_r.set_spin_limit(spin);
    let echo = thread::spawn(move || {
        let mut msg = [0u8; 16];
        loop {
            match ping_r.read_exact(&mut msg) {
                Ok(()) => pong_w.write_all(&msg).expect("pong"),
                Err(ShmError::Eof { .. }) => break,
                Err(e) => panic!("echo: {e}"),
            }
        }
    });
    let mut msg = [7u8; 16];
    let start = Instant::now();
    for i in 0..iters {
        msg[..8].copy_from_slice(&i.to_le_bytes());
        ping_w.write_all(&msg).expect("ping");
        pong_r.read_exact(&mut msg).expect("pong");
    }
    let elapsed = start.elapsed();
    drop(ping_w);
    echo.join().expect("echo thread");
    elapsed
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("shm_ring_throughput");
    g.sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .throughput(Throughput::Elements(BATCH as u64));
    for cap in [64 << 10, 1 << 20] {
        g.bench_function(format!("f64_batch1024_ring{}k", cap >> 10), |b| {
            b.iter_custom(|iters| f64_batches(iters, cap))
        });
    }
    g.finish();

    let mut g = c.benchmark_group("shm_ring_round_trip_16B");
    g.sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    g.bench_function("spin_then_futex", |b| {
        b.iter_custom(|iters| ping_pong(iters, tributary::shm::DEFAULT_SPIN_LIMIT))
    });
    g.bench_function("futex_only", |b| b.iter_custom(|iters| ping_pong(iters, 0)));
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
