//! Test helpers: drive an [`Operator`] directly, with any batching and port interleaving.

use proptest::prelude::*;

use crate::operator::{OpError, OpResult, Operator, Outputs};

/// Runs `op` on `inputs[port]` = the batches of that port, delivered in the port order given
/// by `order` (each entry, taken modulo the number of ports, delivers that port's next batch;
/// what `order` leaves over is delivered port by port). A port's `on_end` follows its last
/// batch at once; `finish` comes last. Returns what each of the `n_out` outputs received, or
/// the first error (with the outputs gathered before it).
pub(crate) fn try_run_batched<O: Operator>(
    mut op: O,
    inputs: Vec<Vec<Vec<O::In>>>,
    order: &[usize],
    n_out: usize,
) -> (Vec<Vec<O::Out>>, OpResult) {
    let mut got: Vec<Vec<O::Out>> = (0..n_out).map(|_| Vec::new()).collect();
    let r = drive(&mut op, inputs, order, n_out, &mut got);
    (got, r)
}

fn drive<O: Operator>(
    op: &mut O,
    inputs: Vec<Vec<Vec<O::In>>>,
    order: &[usize],
    n_out: usize,
    got: &mut [Vec<O::Out>],
) -> OpResult {
    let n_in = inputs.len();
    let mut out = Outputs::new(n_out);
    let collect = |out: &mut Outputs<O::Out>, got: &mut [Vec<O::Out>]| {
        for (p, g) in got.iter_mut().enumerate() {
            g.extend(out.take(p));
        }
    };
    op.start(&mut out)?;
    collect(&mut out, got);
    let mut queues: Vec<std::collections::VecDeque<Vec<O::In>>> =
        inputs.into_iter().map(Into::into).collect();
    let mut ended = vec![false; n_in];
    let rest = (0..n_in).flat_map(|p| std::iter::repeat(p).take(queues[p].len() + 1));
    let order: Vec<usize> = order.iter().map(|o| o % n_in.max(1)).chain(rest).collect();
    for port in order {
        if n_in == 0 || ended[port] {
            continue;
        }
        if let Some(b) = queues[port].pop_front() {
            op.on_batch(port, b, &mut out)?;
            collect(&mut out, got);
        }
        if queues[port].is_empty() {
            ended[port] = true;
            op.on_end(port, &mut out)?;
            collect(&mut out, got);
        }
    }
    op.finish(&mut out)?;
    collect(&mut out, got);
    Ok(())
}

/// [`try_run_batched`] that panics on an operator error (tests only).
pub(crate) fn run_batched<O: Operator>(
    op: O,
    inputs: Vec<Vec<Vec<O::In>>>,
    order: &[usize],
    n_out: usize,
) -> Vec<Vec<O::Out>> {
    let (got, r) = try_run_batched(op, inputs, order, n_out);
    if let Err(e) = r {
        panic!("operator failed: {e}");
    }
    got
}

/// Cuts `xs` into consecutive batches whose sizes cycle through `sizes` (each at least 1).
pub(crate) fn chunks<T: Clone>(xs: &[T], sizes: &[usize]) -> Vec<Vec<T>> {
    let mut res = vec![];
    let mut i = 0;
    let mut k = 0;
    while i < xs.len() {
        let s = sizes
            .get(k % sizes.len().max(1))
            .copied()
            .unwrap_or(1)
            .max(1);
        let j = (i + s).min(xs.len());
        res.push(xs[i..j].to_vec());
        i = j;
        k += 1;
    }
    res
}

/// Every input as one single batch, delivered port by port.
pub(crate) fn whole<T>(inputs: Vec<Vec<T>>) -> Vec<Vec<Vec<T>>> {
    inputs.into_iter().map(|x| vec![x]).collect()
}

/// Round-robin driver: runs `op` over `inputs` (per input port, its batches in order) and returns what each of its
/// `n_out` outputs received. Batches are delivered round-robin over the ports; a port's
/// `on_end` follows its last batch; `finish` follows the last `on_end`.
pub(crate) fn run_rr<O: Operator>(
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
    run_rr(op, inputs.into_iter().map(|x| vec![x]).collect(), n_out)
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
