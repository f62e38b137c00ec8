//! CPU affinity: the CPUs a group's operators run on (the `cpus` of a manifest's `[[group]]`,
//! or [`crate::Graph::pin_group`]). What a pinned thread or process starts from then on (its
//! threads, the commands of `source.exec` and `sink.exec`) inherits the set.

/// A set of CPUs, ready to apply: built before a fork, applying it allocates nothing.
#[derive(Clone, Copy)]
pub struct CpuSet(libc::cpu_set_t);

impl std::fmt::Debug for CpuSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.cpus()).finish()
    }
}

/// The number of CPUs a set can name.
pub const MAX_CPUS: usize = libc::CPU_SETSIZE as usize;

impl CpuSet {
    /// The set of `cpus`; an error names a CPU beyond what a set can hold.
    pub fn of(cpus: &[usize]) -> Result<CpuSet, String> {
        // SAFETY: a zeroed cpu_set_t is the empty set.
        let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
        for &c in cpus {
            if c >= MAX_CPUS {
                return Err(format!("CPU {c} is beyond the {MAX_CPUS} a set can name"));
            }
            // SAFETY: `c` is within the set (checked above).
            unsafe { libc::CPU_SET(c, &mut set) };
        }
        Ok(CpuSet(set))
    }

    /// The CPUs of this set, in order.
    pub fn cpus(&self) -> Vec<usize> {
        // SAFETY: every index is within the set.
        (0..MAX_CPUS)
            .filter(|&c| unsafe { libc::CPU_ISSET(c, &self.0) })
            .collect()
    }

    /// Restricts the calling thread, and what it starts from then on, to this set.
    /// Async-signal-safe (one system call): usable between fork and exec.
    pub fn apply(&self) -> std::io::Result<()> {
        // SAFETY: `self.0` is a valid cpu_set_t of the size given; pid 0 is the calling thread.
        let r =
            unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &self.0) };
        if r == 0 {
            Ok(())
        } else {
            Err(std::io::Error::last_os_error())
        }
    }

    /// The CPUs the calling thread may run on.
    pub fn current() -> std::io::Result<CpuSet> {
        // SAFETY: a zeroed cpu_set_t is valid for the kernel to fill.
        let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
        // SAFETY: `set` is writable and of the size given; pid 0 is the calling thread.
        let r =
            unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) };
        if r == 0 {
            Ok(CpuSet(set))
        } else {
            Err(std::io::Error::last_os_error())
        }
    }
}

/// Writes CPUs as ranges: `0-3, 6`.
pub fn ranges(cpus: &[usize]) -> String {
    let mut out: Vec<String> = vec![];
    let mut i = 0;
    while i < cpus.len() {
        let mut j = i;
        while j + 1 < cpus.len() && cpus[j + 1] == cpus[j] + 1 {
            j += 1;
        }
        out.push(if j > i {
            format!("{}-{}", cpus[i], cpus[j])
        } else {
            cpus[i].to_string()
        });
        i = j + 1;
    }
    out.join(", ")
}

/// The set for `group`'s `cpus`, once checked to be CPUs this process may run on; the error
/// says which are not and which are.
pub fn for_group(group: &str, cpus: &[usize]) -> Result<CpuSet, String> {
    let set = CpuSet::of(cpus).map_err(|e| format!("group \"{group}\": `cpus`: {e}"))?;
    let here = CpuSet::current()
        .map_err(|e| format!("group \"{group}\": cannot read this process's CPUs: {e}"))?
        .cpus();
    let missing: Vec<usize> = set
        .cpus()
        .into_iter()
        .filter(|c| !here.contains(c))
        .collect();
    if !missing.is_empty() {
        return Err(format!(
            "group \"{group}\": `cpus` names {} {}, which this process may not run on \
             (it may run on {})",
            if missing.len() == 1 { "CPU" } else { "CPUs" },
            ranges(&missing),
            ranges(&here)
        ));
    }
    Ok(set)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_set_names_its_cpus_and_pins_a_thread_to_them() {
        let here = CpuSet::current().unwrap().cpus();
        assert!(!here.is_empty());
        let first = here[0];
        let set = for_group("g", &[first]).unwrap();
        assert_eq!(set.cpus(), vec![first]);
        let seen = std::thread::spawn(move || {
            set.apply().unwrap();
            CpuSet::current().unwrap().cpus()
        })
        .join()
        .unwrap();
        assert_eq!(seen, vec![first]);
        // This thread was not touched.
        assert_eq!(CpuSet::current().unwrap().cpus(), here);
    }

    #[test]
    fn cpus_that_are_not_here_are_named_with_those_that_are() {
        let e = for_group("fast", &[0, MAX_CPUS - 1]).unwrap_err();
        assert!(e.contains("group \"fast\""), "{e}");
        assert!(e.contains(&format!("CPU {}", MAX_CPUS - 1)), "{e}");
        assert!(e.contains("may run on"), "{e}");
        let e = CpuSet::of(&[MAX_CPUS]).unwrap_err();
        assert!(e.contains("beyond"), "{e}");
        assert_eq!(ranges(&[0, 1, 2, 3, 6, 8, 9]), "0-3, 6, 8-9");
    }
}
