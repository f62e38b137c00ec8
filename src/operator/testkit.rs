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

/// What each output of an operator received.
pub(crate) type Got<T> = Vec<Vec<T>>;

/// One step of a run: a batch on a port, or the end of a port.
enum Step<T> {
    Batch(usize, Vec<T>),
    End(usize),
}

/// The steps [`try_run_batched`] takes for `inputs` and `order`, in its order.
fn steps<T>(inputs: Vec<Vec<Vec<T>>>, order: &[usize]) -> Vec<Step<T>> {
    let n_in = inputs.len();
    let mut queues: Vec<std::collections::VecDeque<Vec<T>>> =
        inputs.into_iter().map(Into::into).collect();
    let mut ended = vec![false; n_in];
    let rest: Vec<usize> = (0..n_in)
        .flat_map(|p| std::iter::repeat(p).take(queues[p].len() + 1))
        .collect();
    let order: Vec<usize> = order.iter().map(|o| o % n_in.max(1)).chain(rest).collect();
    let mut out = vec![];
    for port in order {
        if n_in == 0 || ended[port] {
            continue;
        }
        if let Some(b) = queues[port].pop_front() {
            out.push(Step::Batch(port, b));
        }
        if queues[port].is_empty() {
            ended[port] = true;
            out.push(Step::End(port));
        }
    }
    out
}

fn run_steps<O: Operator>(
    op: &mut O,
    steps: Vec<Step<O::In>>,
    out: &mut Outputs<O::Out>,
    got: &mut [Vec<O::Out>],
) {
    let collect = |out: &mut Outputs<O::Out>, got: &mut [Vec<O::Out>]| {
        for (p, g) in got.iter_mut().enumerate() {
            g.extend(out.take(p));
        }
    };
    for s in steps {
        let r = match s {
            Step::Batch(port, b) => op.on_batch(port, b, out),
            Step::End(port) => op.on_end(port, out),
        };
        if let Err(e) = r {
            panic!("operator failed: {e}");
        }
        collect(out, got);
    }
}

/// Runs an operator made by `make` over `inputs` (batches per port, delivered as
/// [`run_batched`] does for `order`) twice: once without interruption, and once interrupted
/// after the first `cut` batches (counted over all ports, modulo their number plus one): the
/// operator is snapshotted there, and a fresh one from `make` is restored from it, started,
/// and given the rest. Ports' ends come after the cut (the uninterrupted run sees the same
/// order). Returns (interrupted, uninterrupted) outputs, which must be equal.
pub(crate) fn run_with_restore<O: Operator>(
    make: impl Fn() -> O,
    inputs: Vec<Vec<Vec<O::In>>>,
    order: &[usize],
    cut: usize,
    n_out: usize,
) -> (Got<O::Out>, Got<O::Out>) {
    let all = steps(inputs, order);
    let n_batches = all.iter().filter(|s| matches!(s, Step::Batch(..))).count();
    let cut = cut % (n_batches + 1);
    // The first `cut` batches, then every end that came among them, then the rest.
    let (mut first, mut ends, mut rest) = (vec![], vec![], vec![]);
    let mut seen = 0;
    for s in all {
        match s {
            Step::Batch(..) if seen < cut => {
                seen += 1;
                first.push(s);
            }
            Step::End(p) if seen < cut => ends.push(Step::End(p)),
            s => rest.push(s),
        }
    }
    ends.extend(rest);
    let second = ends;
    let copy = |v: &Vec<Step<O::In>>| -> Vec<Step<O::In>> {
        v.iter()
            .map(|s| match s {
                Step::Batch(p, b) => Step::Batch(*p, b.clone()),
                Step::End(p) => Step::End(*p),
            })
            .collect()
    };
    let fresh_outputs = || -> Vec<Vec<O::Out>> { (0..n_out).map(|_| Vec::new()).collect() };
    let start = |op: &mut O, out: &mut Outputs<O::Out>, got: &mut [Vec<O::Out>]| {
        op.start(out)
            .unwrap_or_else(|e| panic!("start failed: {e}"));
        for (p, g) in got.iter_mut().enumerate() {
            g.extend(out.take(p));
        }
    };
    let finish = |op: &mut O, out: &mut Outputs<O::Out>, got: &mut [Vec<O::Out>]| {
        op.finish(out)
            .unwrap_or_else(|e| panic!("finish failed: {e}"));
        for (p, g) in got.iter_mut().enumerate() {
            g.extend(out.take(p));
        }
    };

    // Uninterrupted.
    let mut whole = fresh_outputs();
    let mut op = make();
    let mut out = Outputs::new(n_out);
    start(&mut op, &mut out, &mut whole);
    run_steps(&mut op, copy(&first), &mut out, &mut whole);
    run_steps(&mut op, copy(&second), &mut out, &mut whole);
    finish(&mut op, &mut out, &mut whole);

    // Interrupted at the cut.
    let mut got = fresh_outputs();
    let mut op = make();
    let mut out = Outputs::new(n_out);
    start(&mut op, &mut out, &mut got);
    run_steps(&mut op, first, &mut out, &mut got);
    let snap = op
        .snapshot()
        .unwrap_or_else(|e| panic!("snapshot failed: {e}"));
    drop(op);
    let mut op = make();
    if let Some(bytes) = &snap {
        op.restore(bytes)
            .unwrap_or_else(|e| panic!("restore failed: {e}"));
    }
    let mut out = Outputs::new(n_out);
    start(&mut op, &mut out, &mut got);
    run_steps(&mut op, second, &mut out, &mut got);
    finish(&mut op, &mut out, &mut got);
    (got, whole)
}

/// Runs the source made by `make` to its end, and again snapshotted after it has emitted at
/// least `k` elements (one element per `generate` call), restored into a fresh source that
/// emits the rest. Returns (first part + rest, uninterrupted).
pub(crate) fn source_with_restore<O: Operator>(
    make: impl Fn() -> O,
    k: usize,
) -> (Vec<O::Out>, Vec<O::Out>) {
    use crate::operator::Gen;
    let drain = |op: &mut O, got: &mut Vec<O::Out>, stop: Option<usize>| {
        let mut out = Outputs::new(1);
        op.start(&mut out)
            .unwrap_or_else(|e| panic!("start failed: {e}"));
        got.extend(out.take(0));
        loop {
            if stop.is_some_and(|k| got.len() >= k) {
                return;
            }
            let r = op.generate(&mut out, if stop.is_some() { 1 } else { 7 });
            got.extend(out.take(0));
            match r {
                Ok(Gen::More) | Ok(Gen::Wait(_)) => {}
                Ok(Gen::Done) => break,
                Err(e) => panic!("generate failed: {e}"),
            }
        }
        op.finish(&mut out)
            .unwrap_or_else(|e| panic!("finish failed: {e}"));
        got.extend(out.take(0));
    };
    let mut whole = vec![];
    drain(&mut make(), &mut whole, None);
    let mut got = vec![];
    let mut op = make();
    drain(&mut op, &mut got, Some(k));
    let snap = op
        .snapshot()
        .unwrap_or_else(|e| panic!("snapshot failed: {e}"));
    drop(op);
    let mut op = make();
    if let Some(bytes) = &snap {
        op.restore(bytes)
            .unwrap_or_else(|e| panic!("restore failed: {e}"));
    }
    drain(&mut op, &mut got, None);
    (got, whole)
}

/// A proptest strategy for where [`run_with_restore`] cuts.
pub(crate) fn cut() -> impl Strategy<Value = usize> {
    0usize..10_000
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
