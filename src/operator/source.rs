//! Sources: streams fed from an iterator, a function, a file, or another thread.

use crate::operator::{Element, Gen, OpResult, Operator, Outputs};
use crate::pipeline::{Graph, Stream};

/// Emits the items of an iterator.
pub struct IterSource<I: Iterator> {
    it: I,
}

impl<I> Operator for IterSource<I>
where
    I: Iterator + Send + 'static,
    I::Item: Element,
{
    type In = I::Item;
    type Out = I::Item;

    fn generate(&mut self, out: &mut Outputs<I::Item>, max: usize) -> OpResult<Gen> {
        let o = out.port_mut(0);
        o.extend(self.it.by_ref().take(max));
        Ok(if o.len() < max { Gen::Done } else { Gen::More })
    }
}

impl Graph {
    /// A source that emits every item of `it`, then ends.
    pub fn source_iter<I>(&mut self, it: I) -> Stream<I::Item>
    where
        I: IntoIterator,
        I::IntoIter: Send + 'static,
        I::Item: Element,
    {
        self.add_unary("source_iter", IterSource { it: it.into_iter() }, &[])
    }
}
