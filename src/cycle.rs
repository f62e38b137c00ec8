//! Feedback cycles: finding them in a graph, and knowing when one has gone quiet.
//!
//! Streams on a cycle end when the cycle is quiescent: every stream entering it has ended and
//! no batch is queued or being processed inside it. Each cycle (a strongly connected component
//! of operators) has one counter of reasons to stay alive: one per operator until it has
//! started, one per input port entering the cycle until that port ends, and one per batch
//! in flight on a link inside the cycle until its consumer has processed it (and pushed
//! what it produced, which counts first). The operator that brings it to zero ends the cycle.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

/// The count of reasons a feedback cycle is still alive; zero means quiescent.
///
/// It lives in process memory or, for cycles that span processes, in a shared mapping.
pub struct CycleCounter {
    ptr: *const AtomicI64,
    _owner: Option<Arc<dyn Send + Sync>>,
    local: AtomicI64,
}

// SAFETY: the pointer refers either to `local` or to an AtomicI64 inside a mapping kept
// alive by `_owner`; atomics are safe to share between threads.
unsafe impl Send for CycleCounter {}
// SAFETY: as above.
unsafe impl Sync for CycleCounter {}

impl CycleCounter {
    /// A counter in this process's memory, starting at `initial`.
    pub fn new(initial: i64) -> Arc<Self> {
        Arc::new(CycleCounter {
            ptr: std::ptr::null(),
            _owner: None,
            local: AtomicI64::new(initial),
        })
    }

    /// A counter at `ptr` inside a shared mapping that `owner` keeps alive.
    ///
    /// # Safety
    /// `ptr` must be aligned, valid for as long as `owner` lives, and only accessed atomically.
    pub unsafe fn shared(ptr: *const AtomicI64, owner: Arc<dyn Send + Sync>) -> Arc<Self> {
        Arc::new(CycleCounter {
            ptr,
            _owner: Some(owner),
            local: AtomicI64::new(0),
        })
    }

    fn atomic(&self) -> &AtomicI64 {
        if self.ptr.is_null() {
            &self.local
        } else {
            // SAFETY: guaranteed by the contract of `shared`.
            unsafe { &*self.ptr }
        }
    }

    /// Adds `n` reasons to stay alive.
    pub fn add(&self, n: i64) {
        self.atomic().fetch_add(n, Ordering::AcqRel);
    }

    /// Removes `n` reasons; returns true if the cycle just became quiescent.
    pub fn sub(&self, n: i64) -> bool {
        self.atomic().fetch_sub(n, Ordering::AcqRel) == n
    }

    /// The current count.
    pub fn get(&self) -> i64 {
        self.atomic().load(Ordering::Acquire)
    }
}

/// Strongly connected components of a directed graph given as adjacency lists.
///
/// Returns, for every node, the index of its component if that component is a cycle
/// (more than one node, or a node with an edge to itself), else `None`.
pub fn cycles(adj: &[Vec<usize>]) -> Vec<Option<usize>> {
    let n = adj.len();
    let mut index = vec![usize::MAX; n];
    let mut low = vec![0; n];
    let mut on_stack = vec![false; n];
    let mut stack = vec![];
    let mut comp = vec![usize::MAX; n];
    let mut ncomp = 0;
    let mut next = 0;
    // Iterative Tarjan: (node, next edge to look at).
    for root in 0..n {
        if index[root] != usize::MAX {
            continue;
        }
        let mut work = vec![(root, 0usize)];
        index[root] = next;
        low[root] = next;
        next += 1;
        stack.push(root);
        on_stack[root] = true;
        while let Some(&mut (v, ref mut ei)) = work.last_mut() {
            if *ei < adj[v].len() {
                let w = adj[v][*ei];
                *ei += 1;
                if index[w] == usize::MAX {
                    index[w] = next;
                    low[w] = next;
                    next += 1;
                    stack.push(w);
                    on_stack[w] = true;
                    work.push((w, 0));
                } else if on_stack[w] {
                    low[v] = low[v].min(index[w]);
                }
            } else {
                work.pop();
                if let Some(&(u, _)) = work.last() {
                    low[u] = low[u].min(low[v]);
                }
                if low[v] == index[v] {
                    loop {
                        let w = stack.pop().expect("Tarjan stack holds v");
                        on_stack[w] = false;
                        comp[w] = ncomp;
                        if w == v {
                            break;
                        }
                    }
                    ncomp += 1;
                }
            }
        }
    }
    let mut size = vec![0usize; ncomp];
    for &c in &comp {
        size[c] += 1;
    }
    (0..n)
        .map(|v| {
            let c = comp[v];
            (size[c] > 1 || adj[v].contains(&v)).then_some(c)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_cycles_and_leaves_chains_alone() {
        // 0 -> 1 -> 2 -> 1 (cycle {1,2}), 2 -> 3, 4 -> 4 (self loop)
        let adj = vec![vec![1], vec![2], vec![1, 3], vec![], vec![4]];
        let c = cycles(&adj);
        assert_eq!(c[0], None);
        assert!(c[1].is_some());
        assert_eq!(c[1], c[2]);
        assert_eq!(c[3], None);
        assert!(c[4].is_some());
        assert_ne!(c[4], c[1]);
    }

    #[test]
    fn counter_reports_the_step_to_zero_once() {
        let c = CycleCounter::new(2);
        c.add(1);
        assert!(!c.sub(1));
        assert!(!c.sub(1));
        assert!(c.sub(1));
        assert_eq!(c.get(), 0);
    }
}
