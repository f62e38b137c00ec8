//! Keeps large allocations in the C allocator's heap instead of fresh mappings.
//!
//! glibc serves allocations above its mmap threshold (128 KiB at start, raised adaptively
//! up to 32 MiB) with their own mappings, and returns the top of its heap to the OS once more
//! than the trim threshold is free there. A stream of large elements (a 1 MiB camera frame,
//! say) then pays for fresh, zeroed pages at every allocation: on this project's machine
//! kind, two thirds of the one-way latency of a 1 MiB element between two processes was page
//! faults (p50 3.2 ms, 1.3 ms with the thresholds below). Elements of a stream recur at the
//! same sizes, so the memory is better kept: [`tune`] raises both thresholds. What is kept
//! is bounded by the stream's own high-water mark, and by [`TRIM_BYTES`] of free heap top.

/// Allocations up to this size come from the heap (and are reused after they are freed).
pub const MMAP_THRESHOLD_BYTES: i32 = 32 << 20;

/// Free memory at the top of a heap beyond this size goes back to the OS.
pub const TRIM_BYTES: i32 = 64 << 20;

/// Raises the allocator's mmap and trim thresholds (glibc only; a no-op elsewhere, and when
/// the user set `GLIBC_TUNABLES` or `TRIBUTARY_MALLOC=default`). Returns true when it did.
/// `tributary::cli::main_with` calls it first thing; an application that embeds the
/// runtime may call it itself.
pub fn tune() -> bool {
    if std::env::var_os("GLIBC_TUNABLES").is_some()
        || std::env::var("TRIBUTARY_MALLOC").is_ok_and(|v| v == "default")
    {
        return false;
    }
    tune_glibc()
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn tune_glibc() -> bool {
    // SAFETY: mallopt only sets allocator parameters.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES) == 1
            && libc::mallopt(libc::M_TRIM_THRESHOLD, TRIM_BYTES) == 1
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn tune_glibc() -> bool {
    false
}

#[cfg(all(test, target_os = "linux", target_env = "gnu"))]
mod tests {
    /// Minor page faults of this thread so far.
    fn faults() -> i64 {
        // SAFETY: a zeroed rusage is valid and getrusage fills it.
        unsafe {
            let mut u: libc::rusage = std::mem::zeroed();
            libc::getrusage(libc::RUSAGE_THREAD, &mut u);
            u.ru_minflt
        }
    }

    /// Allocates, touches and frees 4 MiB; returns the page faults it took.
    fn churn() -> i64 {
        let before = faults();
        let v = vec![1u8; 4 << 20];
        std::hint::black_box(&v);
        drop(v);
        faults() - before
    }

    #[test]
    fn a_large_block_freed_and_allocated_again_is_reused_without_page_faults() {
        assert!(super::tune(), "mallopt refused");
        churn();
        // 4 MiB is 1024 pages: a fresh mapping faults on each; a reused heap block on none.
        let again: Vec<i64> = (0..3).map(|_| churn()).collect();
        assert!(
            again.iter().all(|&f| f < 64),
            "page faults per 4 MiB allocation after the first: {again:?}"
        );
    }
}
