//! Test helpers: drive an [`Operator`] directly with chosen batch splits (no actors).

use proptest::prelude::*;

use crate::operator::{OpError, Operator, Outputs};

/// Runs `op` over `inputs` (per input port, its batches in order) and returns what each of its
/// `n_out` outputs received. Batches are delivered round-robin over the ports; a port's
/// `on_end` follows its last batch; `finish` follows the last `on_end`.
pub(crate) fn run_batched<O: Operator>(
    mut op: O,
    inputs: Vec<Vec<Vec<O::In>>>,
    n_out: usize,
) -> Result<Vec<Vec<O::Out>>, OpError> {
    let mut out = Outputs::new(n_out);
    let mut got: Vec<Vec<O::Out>> = (0..n_out).map(|_| Vec::new()).collect();
    let drain = |out: &mut Outputs<O::Out>, got: &mut Vec<Vec<O::Out>>| {
        for (p, g) in got.iter_mut().enumerate() {
            g.append(&mut out.take(p));
        }
    };
    op.start(&mut out)?;
    drain(&mut out, &mut got);
    let mut queues: Vec<std::collections::VecDeque<Vec<O::In>>> =
        inputs.into_iter().map(Into::into).collect();
    let mut ended = vec![false; queues.len()];
    while ended.iter().any(|e| !e) {
        for (port, q) in queues.iter_mut().enumerate() {
            if ended[port] {
                continue;
            }
            match q.pop_front() {
                Some(b) => op.on_batch(port, b, &mut out)?,
                None => {
                    ended[port] = true;
                    op.on_end(port, &mut out)?;
                }
            }
            drain(&mut out, &mut got);
        }
    }
    op.finish(&mut out)?;
    drain(&mut out, &mut got);
    Ok(got)
}

/// Runs `op` with every input given as one single batch.
pub(crate) fn run_whole<O: Operator>(
    op: O,
    inputs: Vec<Vec<O::In>>,
    n_out: usize,
) -> Result<Vec<Vec<O::Out>>, OpError> {
    run_batched(op, inputs.into_iter().map(|x| vec![x]).collect(), n_out)
}

/// Cuts `xs` into batches at the positions in `cuts` (taken modulo `xs.len() + 1`, sorted);
/// empty batches are kept, since a runtime may deliver them too.
pub(crate) fn split_at<T: Clone>(xs: &[T], cuts: &[usize]) -> Vec<Vec<T>> {
    let mut c: Vec<usize> = cuts.iter().map(|c| c % (xs.len() + 1)).collect();
    c.sort_unstable();
    let mut out = Vec::new();
    let mut prev = 0;
    for x in c {
        out.push(xs[prev..x].to_vec());
        prev = x;
    }
    out.push(xs[prev..].to_vec());
    out
}

/// A proptest strategy for batch cut positions.
pub(crate) fn cuts() -> impl Strategy<Value = Vec<usize>> {
    prop::collection::vec(0usize..10_000, 0..12)
}

#[test]
fn split_at_keeps_every_element_in_order() {
    let b = split_at(&[1, 2, 3, 4], &[3, 1, 1]);
    assert_eq!(b, vec![vec![1], vec![], vec![2, 3], vec![4]]);
}
