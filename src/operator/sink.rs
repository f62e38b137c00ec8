//! Sinks: streams consumed by a closure, a collector the caller reads, a file, or a channel.

use std::marker::PhantomData;
use std::sync::{Arc, Mutex};

use crate::operator::{Element, OpError, OpResult, Operator, Outputs};
use crate::pipeline::{Graph, Stream};

/// Calls a fallible function on each element.
pub struct SinkElement<T, F> {
    f: F,
    _t: PhantomData<fn(T)>,
}

impl<T: Element, F> Operator for SinkElement<T, F>
where
    F: FnMut(T) -> Result<(), OpError> + Send + 'static,
{
    type In = T;
    type Out = T;

    fn on_batch(&mut self, _port: usize, batch: Vec<T>, _out: &mut Outputs<T>) -> OpResult {
        for x in batch {
            (self.f)(x)?;
        }
        Ok(())
    }
}

/// The elements a [`Graph::collect`] sink gathered; read it after (or during) the run.
#[derive(Clone, Debug)]
pub struct Collector<T> {
    items: Arc<Mutex<Vec<T>>>,
}

impl<T: Clone> Collector<T> {
    /// Takes everything gathered so far.
    pub fn take(&self) -> Vec<T> {
        std::mem::take(&mut *self.items.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// A copy of everything gathered so far.
    pub fn snapshot(&self) -> Vec<T> {
        self.items.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

struct Collect<T> {
    items: Arc<Mutex<Vec<T>>>,
}

impl<T: Element> Operator for Collect<T> {
    type In = T;
    type Out = T;

    fn on_batch(&mut self, _port: usize, mut batch: Vec<T>, _out: &mut Outputs<T>) -> OpResult {
        self.items
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .append(&mut batch);
        Ok(())
    }
}

impl Graph {
    /// `sink_element`: calls `f` on every element (side effects only).
    pub fn sink_element<T, F>(&mut self, s: &Stream<T>, mut f: F)
    where
        T: Element,
        F: FnMut(T) + Send + 'static,
    {
        self.add_sink(
            "sink_element",
            SinkElement {
                f: move |x| {
                    f(x);
                    Ok(())
                },
                _t: PhantomData,
            },
            &[s],
        )
    }

    /// `sink_element` with a fallible function: an `Err` fails the operator.
    pub fn try_sink_element<T, F>(&mut self, s: &Stream<T>, f: F)
    where
        T: Element,
        F: FnMut(T) -> Result<(), OpError> + Send + 'static,
    {
        self.add_sink("sink_element", SinkElement { f, _t: PhantomData }, &[s])
    }

    /// A sink that gathers every element into a [`Collector`] the caller reads.
    pub fn collect<T: Element>(&mut self, s: &Stream<T>) -> Collector<T> {
        let items = Arc::new(Mutex::new(Vec::new()));
        self.add_sink("collect", Collect { items: items.clone() }, &[s]);
        Collector { items }
    }
}
