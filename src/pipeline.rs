//! Build a graph of operators in Rust, join streams with one `connect`, place operators in
//! groups, and run it to completion.
//!
//! ```
//! use tributary::Graph;
//! let mut g = Graph::new();
//! let x = g.source_iter(0..5i64);
//! let y = g.map_element(&x, |v| v * 10);
//! let out = g.collect(&y);
//! g.run().unwrap();
//! assert_eq!(out.take(), vec![0, 10, 20, 30, 40]);
//! ```

use std::any::Any;
use std::collections::HashMap;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::Instant;

use actix::prelude::*;

use crate::actor::{InPort, OpActor, OutPort, Wiring};
use crate::cycle::{cycles, CycleCounter};
use crate::link::local::{Channel, End, LinkConfig};
use crate::operator::checked::{Checked, OutputCheck};
use crate::operator::{Element, Operator};
use crate::run::{OpRestart, OperatorFailure, Report, RunShared};
use crate::value::Value;

/// A typed handle on a stream of the graph being built: an operator's output, or a stream
/// declared with [`Graph::stream`] and fed later with [`Graph::connect`].
pub struct Stream<T> {
    id: usize,
    _t: PhantomData<fn() -> T>,
}

impl<T> Clone for Stream<T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T> Copy for Stream<T> {}

impl<T> std::fmt::Debug for Stream<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Stream#{}", self.id)
    }
}

impl<T> Stream<T> {
    fn new(id: usize) -> Self {
        Stream {
            id,
            _t: PhantomData,
        }
    }

    /// The stream's index in its graph.
    pub fn id(&self) -> usize {
        self.id
    }
}

/// Where a group of operators runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Placement {
    /// On a thread of its own, in this process.
    #[default]
    Thread,
    /// In an OS process of its own (manifests run by the supervisor).
    Process,
}

/// OTP restart policy of a group.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum RestartPolicy {
    /// Always restarted.
    #[default]
    Permanent,
    /// Restarted only after an abnormal exit.
    Transient,
    /// Never restarted.
    Temporary,
}

/// A handle on a group declared with [`Graph::group`].
#[derive(Clone, Debug)]
pub struct Group {
    index: usize,
}

struct GroupSpec {
    name: String,
    placement: Placement,
    #[allow(dead_code)]
    restart: RestartPolicy,
    /// The CPUs its thread runs on (None: any).
    cpus: Option<crate::affinity::CpuSet>,
}

/// A graph that could not run: a stream without producer, a stream fed twice, a cycle of connects.
#[derive(Debug, thiserror::Error)]
pub enum GraphError {
    /// A consumed stream has no producer.
    #[error("stream \"{0}\" is read but nothing produces it (connect an output to it)")]
    NoProducer(String),
    /// A stream is fed twice.
    #[error("stream \"{0}\" is fed by two producers; a stream has exactly one")]
    TwoProducers(String),
    /// Connects that go round in a circle without an operator.
    #[error("stream \"{0}\" is connected to itself through connects alone")]
    ConnectLoop(String),
    /// Process placement asked of a graph run in-process.
    #[error("group \"{0}\" asks for process placement, which needs the supervisor (`tributary run` or cli::main_with); run it with placement Thread, or from a manifest")]
    ProcessPlacement(String),
}

/// Why a run did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The graph is malformed.
    #[error(transparent)]
    Graph(#[from] GraphError),
    /// One or more operators failed.
    #[error("{}", .0.iter().map(|f| f.to_string()).collect::<Vec<_>>().join("; "))]
    Failed(Vec<OperatorFailure>, Box<Report>),
    /// The run was stopped through a [`StopHandle`] before it finished.
    #[error("the run was stopped before it finished")]
    Stopped(Box<Report>),
    /// The actor system could not start.
    #[error("could not start the runtime: {0}")]
    Runtime(String),
}

/// The type-erased body of a node: creates its input links and starts its actor.
pub(crate) trait NodeBody: Send {
    /// Creates an input link; returns it twice (consumer side, producer side) and its drop count.
    fn make_input(
        &self,
        cfg: LinkConfig,
        cycle: Option<Arc<CycleCounter>>,
        count_push: bool,
    ) -> (AnyLink, AnyLink, Arc<dyn LinkDrops>);
    fn spawn(self: Box<Self>, w: ErasedWiring, arbiter: Option<ArbiterHandle>);
    /// The operator itself, as a `Box<Box<dyn Operator<In = .., Out = ..>>>` (for fusion).
    fn into_any_op(self: Box<Self>) -> Box<dyn Any>;
}

/// A type-erased `Arc<Channel<T>>`.
pub(crate) type AnyLink = Box<dyn Any + Send>;

/// A link's drop count, whatever its element type (for the run's report).
pub(crate) trait LinkDrops: Send + Sync {
    /// Elements the link dropped under a lossy overflow policy.
    fn dropped(&self) -> u64;
}

impl<T: Element> LinkDrops for Channel<T> {
    fn dropped(&self) -> u64 {
        self.drops()
    }
}

/// Links of one node before they are given their types back.
pub(crate) struct ErasedWiring {
    pub id: usize,
    pub name: Arc<str>,
    pub inputs: Vec<(AnyLink, bool)>,
    pub outputs: Vec<Vec<AnyLink>>,
    pub cycle: Option<Arc<CycleCounter>>,
    pub run: Arc<RunShared>,
    /// Checks of the elements emitted on each output (typed streams).
    pub checks: Vec<Option<OutputCheck>>,
    /// A source fed from outside the graph (`source_channel`, `source.exec`).
    pub channel_source: bool,
    /// In-place restarts after a failure.
    pub restart: Option<OpRestart>,
    /// Where the node resumes (a restarted worker).
    pub restore: Option<crate::checkpoint::NodeCkpt>,
    /// Tasks feeding streams from outside whose first consumer this node is.
    pub feeds: Vec<BoundDriver>,
}

struct Body<O: Operator>(O);

fn downcast<T: 'static>(b: AnyLink) -> Arc<Channel<T>> {
    *b.downcast::<Arc<Channel<T>>>()
        .unwrap_or_else(|_| unreachable!("typed streams join links of one element type"))
}

impl<O: Operator> NodeBody for Body<O> {
    fn make_input(
        &self,
        cfg: LinkConfig,
        cycle: Option<Arc<CycleCounter>>,
        count_push: bool,
    ) -> (AnyLink, AnyLink, Arc<dyn LinkDrops>) {
        let c = Channel::<O::In>::new(cfg);
        if let Some(cycle) = cycle {
            c.set_cycle(cycle, count_push);
        }
        (Box::new(c.clone()), Box::new(c.clone()), c)
    }

    fn spawn(self: Box<Self>, w: ErasedWiring, arbiter: Option<ArbiterHandle>) {
        let wiring = Wiring::<Checked<O>> {
            id: w.id,
            name: w.name,
            inputs: w
                .inputs
                .into_iter()
                .map(|(c, intra)| InPort {
                    chan: downcast::<O::In>(c),
                    intra,
                    ended: false,
                    force_end: false,
                })
                .collect(),
            outputs: w
                .outputs
                .into_iter()
                .map(|links| OutPort {
                    links: links
                        .into_iter()
                        .map(|c| (downcast::<O::Out>(c), Vec::new()))
                        .collect(),
                    count: 0,
                })
                .collect(),
            cycle: w.cycle,
            run: w.run,
            channel_source: w.channel_source,
            restart: w.restart,
            restore: w.restore,
            feeds: w.feeds,
        };
        let op = Checked::new(self.0, w.checks);
        match arbiter {
            Some(a) => {
                OpActor::start_in_arbiter(&a, move |_| OpActor::new(op, wiring));
            }
            None => {
                OpActor::new(op, wiring).start();
            }
        }
    }

    fn into_any_op(self: Box<Self>) -> Box<dyn Any> {
        let op: Box<dyn Operator<In = O::In, Out = O::Out>> = Box::new(self.0);
        Box::new(op)
    }
}

/// An operator from `Value`s to `Value`s, boxed (a stage of a fused node).
pub(crate) type ValueOperator = Box<dyn Operator<In = Value, Out = Value>>;

/// The operators one fused node runs in a single actor (see `crate::manifest::fused`), for
/// the report, the live progress and failures, which name each of them as if unfused.
#[derive(Clone)]
pub(crate) struct Stages {
    /// Every stage but the last (whose name and output are the node's own): its name and the
    /// count of the elements it emitted.
    pub inner: Vec<(String, Arc<AtomicU64>)>,
    /// The name of the stage that failed first, once one has.
    pub failed: Arc<OnceLock<String>>,
}

struct NodeEntry {
    name: String,
    group: Option<usize>,
    inputs: Vec<usize>,
    outputs: Vec<usize>,
    body: Box<dyn NodeBody>,
    cycle: Option<CycleOverride>,
    /// An input link fed from outside the graph (`source_channel`), taken as input 0.
    external: Option<AnyLink>,
    /// Checks of the elements emitted on each output port (see [`Graph::check_output`]).
    checks: Vec<Option<OutputCheck>>,
    /// In-place restarts after a failure (none: a failure ends the run).
    restart: Option<OpRestart>,
}

/// A node's membership in a feedback cycle that spans processes, as the caller computed it.
#[derive(Clone)]
pub struct CycleOverride {
    /// The cycle's counter (in shared memory when the cycle spans processes).
    pub counter: Arc<CycleCounter>,
    /// For each input port: is its producer on the same cycle?
    pub intra: Vec<bool>,
}

struct StreamEntry {
    name: String,
    producer: Option<(usize, usize)>,
    fed_by: Option<usize>,
    link: Option<LinkConfig>,
    /// Set for a stream fed from outside the graph (another process, a thread).
    external: Option<Box<dyn ErasedFeed>>,
    /// Links to consumers outside the graph, attached to this stream's producer.
    drains: Vec<AnyLink>,
    /// Drop counts of `drains`.
    drain_drops: Vec<Arc<dyn LinkDrops>>,
}

/// Elements a link of a graph built in Rust holds before its producer waits, unless set with
/// [`Graph::set_default_link`] or [`Graph::set_link`]. (Manifests default to 1024 per stream,
/// as their contract says.) Larger links mean fewer, larger batches: less overhead per element.
pub const DEFAULT_CAPACITY: usize = 8192;

/// A graph of operators under construction; `run` executes it.
pub struct Graph {
    nodes: Vec<NodeEntry>,
    streams: Vec<StreamEntry>,
    groups: Vec<GroupSpec>,
    errors: Vec<GraphError>,
    current_group: Option<usize>,
    next_name: Option<String>,
    next_restart: Option<OpRestart>,
    default_link: LinkConfig,
    stop: StopHandle,
    /// Ticks while the runtime's main thread is free to run tasks (a watchdog reads it).
    heartbeat: Option<Arc<std::sync::atomic::AtomicU64>>,
    /// Fused nodes by index: the operators each runs (see [`Graph::set_stages`]).
    stages: HashMap<usize, Stages>,
    /// Checkpoints: the pause of this process, if it takes them.
    quiesce: Option<Arc<crate::checkpoint::Quiesce>>,
    /// Where each node resumes, by node index (a restarted worker).
    restore: HashMap<usize, crate::checkpoint::NodeCkpt>,
    /// Called on the runtime thread once every actor started.
    on_start: Vec<Box<dyn FnOnce() + Send>>,
}

/// Stops a run from another thread (a signal handler, a failed neighbour process).
#[derive(Clone, Default)]
pub struct StopHandle {
    inner: Arc<Mutex<StopState>>,
}

#[derive(Default)]
struct StopState {
    stopped: bool,
    killed: bool,
    run: Option<Arc<RunShared>>,
    /// Fused nodes of the run, whose inner stages `progress` lists too.
    stages: HashMap<usize, Stages>,
}

impl StopHandle {
    fn lock(&self) -> std::sync::MutexGuard<'_, StopState> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Stops the run gracefully, now or as soon as it starts: sources end, what is in flight
    /// drains, sinks flush; the run then ends normally.
    pub fn stop(&self) {
        let mut g = self.lock();
        g.stopped = true;
        if let Some(r) = &g.run {
            r.request_stop();
        }
    }

    /// Stops the run at once, dropping what is in flight (a second Ctrl-C).
    pub fn kill(&self) {
        let mut g = self.lock();
        g.stopped = true;
        g.killed = true;
        if let Some(r) = &g.run {
            r.cancel();
        }
    }

    /// True once `stop` (or `kill`) was called.
    pub fn is_stopped(&self) -> bool {
        self.lock().stopped
    }

    /// Elements produced so far by each operator of the running graph (consumed, for a sink).
    pub fn progress(&self) -> Vec<(String, u64)> {
        let g = self.lock();
        let Some(run) = g.run.as_ref() else {
            return vec![];
        };
        let mut out = vec![];
        for (id, p) in run.progress().into_iter().enumerate() {
            if let Some(st) = g.stages.get(&id) {
                for (name, n) in &st.inner {
                    out.push((name.clone(), n.load(Ordering::Relaxed)));
                }
            }
            out.push(p);
        }
        out
    }

    fn attach(&self, run: Arc<RunShared>, stages: HashMap<usize, Stages>) {
        let mut g = self.lock();
        g.stages = stages;
        if g.killed {
            run.cancel();
        } else if g.stopped {
            run.request_stop();
        }
        g.run = Some(run);
    }
}

impl Default for Graph {
    fn default() -> Self {
        Self::new()
    }
}

impl Graph {
    /// An empty graph.
    pub fn new() -> Self {
        Graph {
            nodes: vec![],
            streams: vec![],
            groups: vec![],
            errors: vec![],
            current_group: None,
            next_name: None,
            default_link: LinkConfig {
                capacity: DEFAULT_CAPACITY,
                ..LinkConfig::default()
            },
            stop: StopHandle::default(),
            heartbeat: None,
            next_restart: None,
            stages: HashMap::new(),
            quiesce: None,
            restore: HashMap::new(),
            on_start: vec![],
        }
    }

    /// Makes this graph's run take checkpoints through `q` (a worker process).
    pub(crate) fn set_quiesce(&mut self, q: Arc<crate::checkpoint::Quiesce>) {
        self.quiesce = Some(q);
    }

    /// Node `node` resumes from `c` (a restarted worker).
    pub(crate) fn restore_node(&mut self, node: usize, c: crate::checkpoint::NodeCkpt) {
        self.restore.insert(node, c);
    }

    /// Calls `f` on the runtime thread once every actor started (to spawn tasks there).
    pub(crate) fn on_start(&mut self, f: Box<dyn FnOnce() + Send>) {
        self.on_start.push(f);
    }

    /// How many operator nodes the graph has.
    pub(crate) fn node_count(&self) -> usize {
        self.nodes.len()
    }

    /// A counter that the runtime's main thread bumps every 50 ms while it is free to run
    /// tasks: it stops moving when an operator there hangs (a watchdog's heartbeat).
    pub fn heartbeat(&mut self) -> Arc<std::sync::atomic::AtomicU64> {
        self.heartbeat.get_or_insert_with(Default::default).clone()
    }

    /// A handle that stops the run from another thread.
    pub fn stop_handle(&self) -> StopHandle {
        self.stop.clone()
    }

    /// Sets the link settings used by streams that have none of their own.
    pub fn set_default_link(&mut self, cfg: LinkConfig) {
        self.default_link = cfg;
    }

    /// Declares a stream to be fed later by [`Graph::connect`] (IoTPy's `Stream(name)`).
    pub fn stream<T: Element>(&mut self, name: &str) -> Stream<T> {
        self.new_stream(name.to_string(), None)
    }

    fn new_stream<T>(&mut self, name: String, producer: Option<(usize, usize)>) -> Stream<T> {
        self.streams.push(StreamEntry {
            name,
            producer,
            fed_by: None,
            link: None,
            external: None,
            drains: vec![],
            drain_drops: vec![],
        });
        Stream::new(self.streams.len() - 1)
    }

    /// Joins an output to an input: every element of `from` flows into `to`.
    ///
    /// `to` must be a stream declared with [`Graph::stream`] that nothing feeds yet.
    pub fn connect<T: Element>(&mut self, from: &Stream<T>, to: &Stream<T>) {
        let e = &mut self.streams[to.id];
        if e.producer.is_some() || e.fed_by.is_some() {
            let name = e.name.clone();
            self.errors.push(GraphError::TwoProducers(name));
            return;
        }
        e.fed_by = Some(from.id);
    }

    /// Sets the capacity and overflow policy of the links that carry `s`.
    pub fn set_link<T>(&mut self, s: &Stream<T>, cfg: LinkConfig) {
        self.streams[s.id].link = Some(cfg);
    }

    /// Renames a stream (names appear in reports and errors).
    pub fn rename<T>(&mut self, s: &Stream<T>, name: &str) {
        self.streams[s.id].name = name.to_string();
    }

    /// The name of a stream.
    pub fn stream_name<T>(&self, s: &Stream<T>) -> &str {
        &self.streams[s.id].name
    }

    /// Declares a group of operators that run together (IoTPy's process in a multicore spec).
    pub fn group(&mut self, name: &str, placement: Placement, restart: RestartPolicy) -> Group {
        self.groups.push(GroupSpec {
            name: name.to_string(),
            placement,
            restart,
            cpus: None,
        });
        Group {
            index: self.groups.len() - 1,
        }
    }

    /// Runs `group`'s thread (and the threads and commands its operators start) on the CPUs
    /// of `cpus` only.
    pub fn pin_group(&mut self, group: &Group, cpus: crate::affinity::CpuSet) {
        self.groups[group.index].cpus = Some(cpus);
    }

    /// Places every operator added inside `f` in `group`.
    pub fn with_group<R>(&mut self, group: &Group, f: impl FnOnce(&mut Graph) -> R) -> R {
        let saved = self.current_group.replace(group.index);
        let r = f(self);
        self.current_group = saved;
        r
    }

    /// Names the next operator added (otherwise it gets `kind#index`).
    pub fn name_next(&mut self, name: &str) -> &mut Self {
        self.next_name = Some(name.to_string());
        self
    }

    /// Makes the operators added next (until changed) restart in place after a failure (a
    /// panic, a script error; not a data error), per `policy`; `None`: a failure ends the run.
    pub fn restart_next(&mut self, policy: Option<OpRestart>) -> &mut Self {
        self.next_restart = policy;
        self
    }

    /// Adds any [`Operator`] reading `inputs` and writing `n_out` new streams: the one
    /// mechanism every family is built on.
    pub fn add_operator<O: Operator>(
        &mut self,
        kind: &str,
        op: O,
        inputs: &[&Stream<O::In>],
        n_out: usize,
    ) -> Vec<Stream<O::Out>> {
        let id = self.nodes.len();
        let name = self
            .next_name
            .take()
            .unwrap_or_else(|| format!("{kind}#{id}"));
        let outputs: Vec<Stream<O::Out>> = (0..n_out)
            .map(|p| {
                let sname = if n_out == 1 {
                    name.clone()
                } else {
                    format!("{name}.{p}")
                };
                self.new_stream(sname, Some((id, p)))
            })
            .collect();
        self.nodes.push(NodeEntry {
            name,
            group: self.current_group,
            inputs: inputs.iter().map(|s| s.id).collect(),
            outputs: outputs.iter().map(|s| s.id).collect(),
            body: Box::new(Body(op)),
            cycle: None,
            external: None,
            checks: (0..n_out).map(|_| None).collect(),
            restart: self.next_restart,
        });
        outputs
    }

    /// Adds an operator whose one input is `chan`, fed from outside the graph (by another
    /// thread) rather than by an operator: the stream ends when `chan` is closed.
    pub(crate) fn add_external_source<O: Operator>(
        &mut self,
        kind: &str,
        op: O,
        chan: Arc<Channel<O::In>>,
    ) -> Stream<O::Out> {
        let s = self.add_operator(kind, op, &[], 1)[0];
        if let Some(n) = self.nodes.last_mut() {
            n.external = Some(Box::new(chan));
        }
        s
    }

    /// Adds an operator with exactly one output.
    pub fn add_unary<O: Operator>(
        &mut self,
        kind: &str,
        op: O,
        inputs: &[&Stream<O::In>],
    ) -> Stream<O::Out> {
        self.add_operator(kind, op, inputs, 1)[0]
    }

    /// Adds an operator with no output (a sink).
    pub fn add_sink<O: Operator>(&mut self, kind: &str, op: O, inputs: &[&Stream<O::In>]) {
        self.add_operator(kind, op, inputs, 0);
    }

    /// A stream fed from outside the graph (another process or thread) through `feed`.
    pub fn external_input<T: Element>(&mut self, name: &str) -> (ExternalFeed<T>, Stream<T>) {
        let s = self.new_stream::<T>(name.to_string(), None);
        let feed = ExternalFeed {
            slot: Arc::new(FeedSlot {
                chans: Mutex::new(None),
                ready: Condvar::new(),
                pending: Mutex::new(vec![]),
                consumer: Mutex::new(None),
                driver: Mutex::new(None),
            }),
        };
        self.streams[s.id].external = Some(Box::new(feed.clone()));
        (feed, s)
    }

    /// A link that receives every element of `s` and is read outside the graph (a ring writer).
    ///
    /// `cycle` puts the link on a feedback cycle that spans processes.
    pub fn external_output<T: Element>(
        &mut self,
        s: &Stream<T>,
        cfg: LinkConfig,
        cycle: Option<Arc<CycleCounter>>,
    ) -> Arc<Channel<T>> {
        let c = Channel::with_cycle(cfg, cycle);
        self.streams[s.id].drains.push(Box::new(c.clone()));
        self.streams[s.id].drain_drops.push(c.clone());
        c
    }

    /// Checks every element the producer of `s` emits on it (e.g. against a typed stream's
    /// type): `check` may rewrite the element, or reject it, which fails the producer with the
    /// returned error (what it emitted before the element still flows). Adds no node.
    pub fn check_output(&mut self, s: &Stream<Value>, check: OutputCheck) {
        if let Some((node, port)) = self.streams[s.id].producer {
            self.nodes[node].checks[port] = Some(check);
        }
    }

    /// The index of the node added last (for [`Graph::set_cycle`]).
    pub fn last_node(&self) -> usize {
        self.nodes.len() - 1
    }

    /// Declares node `node` a member of a feedback cycle computed by the caller (one that
    /// spans processes, which this graph alone cannot see).
    pub fn set_cycle(&mut self, node: usize, cycle: CycleOverride) {
        self.nodes[node].cycle = Some(cycle);
    }

    /// Declares node `node` a fused node running `stages` (see [`Stages`]).
    pub(crate) fn set_stages(&mut self, node: usize, stages: Stages) {
        self.stages.insert(node, stages);
    }

    /// The operator of a graph that holds exactly one node, from `Value`s to `Value`s, with
    /// one input, one output and nothing else attached; `None` otherwise. (Fusion builds each
    /// stage in a graph of its own with the ordinary builders, then takes its operator out.)
    pub(crate) fn into_value_operator(mut self) -> Option<ValueOperator> {
        if !self.errors.is_empty() || self.nodes.len() != 1 {
            return None;
        }
        let n = self.nodes.pop()?;
        if n.inputs.len() != 1
            || n.outputs.len() != 1
            || n.external.is_some()
            || n.cycle.is_some()
            || n.checks.iter().any(Option::is_some)
            || self.streams.iter().any(|s| !s.drains.is_empty())
        {
            return None;
        }
        n.body
            .into_any_op()
            .downcast::<ValueOperator>()
            .ok()
            .map(|b| *b)
    }

    /// Follows connects back to the stream an operator (or an external feed) produces.
    fn resolve(&self, mut s: usize) -> Result<usize, GraphError> {
        let mut steps = 0;
        loop {
            let e = &self.streams[s];
            if e.producer.is_some() || e.external.is_some() {
                return Ok(s);
            }
            match e.fed_by {
                Some(f) => s = f,
                None => return Err(GraphError::NoProducer(e.name.clone())),
            }
            steps += 1;
            if steps > self.streams.len() {
                return Err(GraphError::ConnectLoop(self.streams[s].name.clone()));
            }
        }
    }

    /// Runs the graph until every source is exhausted and every element is processed.
    pub fn run(self) -> Result<Report, RunError> {
        Runner::prepare(self)?.run()
    }
}

/// The typed side of an external feed, erased: receives the links of its consumers.
pub(crate) trait ErasedFeed: Send {
    /// A link to consumer node `node`.
    fn add(&self, link: AnyLink, node: usize);
    fn ready(&self);
    /// The feed's driver (see [`ExternalFeed::set_driver`]) bound to the consumers' links,
    /// and the first consumer node, whose arbiter should run it. Call after `ready`.
    fn take_driver(&self) -> Option<(BoundDriver, Option<usize>)>;
}

/// A feed driver bound to its links, ready to be called on an arbiter thread.
pub(crate) type BoundDriver = Box<dyn FnOnce() -> FeedTask + Send>;

/// The task that feeds a stream from outside (e.g. a ring reader), made on the thread that
/// runs it: the stream's first consumer polls it in its own actor (see
/// `crate::actor::Feeding`), so that what it reads is handled without a hop through a mailbox.
pub(crate) type FeedTask = std::pin::Pin<Box<dyn std::future::Future<Output = ()>>>;

/// Makes the task that feeds a stream from outside, given the links to every consumer.
pub(crate) type FeedDriver<T> = Box<dyn FnOnce(Vec<Arc<Channel<T>>>) -> FeedTask + Send>;

struct FeedSlot<T> {
    chans: Mutex<Option<Vec<Arc<Channel<T>>>>>,
    ready: Condvar,
    pending: Mutex<Vec<Arc<Channel<T>>>>,
    /// The first consumer node.
    consumer: Mutex<Option<usize>>,
    driver: Mutex<Option<FeedDriver<T>>>,
}

/// The producer side of a stream fed from outside the graph: push batches from any thread.
pub struct ExternalFeed<T> {
    slot: Arc<FeedSlot<T>>,
}

impl<T> Clone for ExternalFeed<T> {
    fn clone(&self) -> Self {
        ExternalFeed {
            slot: self.slot.clone(),
        }
    }
}

impl<T: Element> ErasedFeed for ExternalFeed<T> {
    fn add(&self, link: AnyLink, node: usize) {
        self.slot
            .pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(downcast::<T>(link));
        self.slot
            .consumer
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_or_insert(node);
    }

    fn take_driver(&self) -> Option<(BoundDriver, Option<usize>)> {
        let d = self
            .slot
            .driver
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()?;
        let links = self.links();
        let node = *self.slot.consumer.lock().unwrap_or_else(|e| e.into_inner());
        Some((Box::new(move || d(links)), node))
    }

    fn ready(&self) {
        let chans =
            std::mem::take(&mut *self.slot.pending.lock().unwrap_or_else(|e| e.into_inner()));
        *self.slot.chans.lock().unwrap_or_else(|e| e.into_inner()) = Some(chans);
        self.slot.ready.notify_all();
    }
}

impl<T: Element> ExternalFeed<T> {
    /// Has the graph, once it runs, call `driver` on the arbiter thread of the stream's
    /// (first) consumer with the links to every consumer, instead of another thread calling
    /// [`ExternalFeed::push`]: the task it returns runs inside that consumer's actor.
    /// A driver the graph never calls (it did not run) is dropped with the graph.
    pub(crate) fn set_driver(&self, driver: FeedDriver<T>) {
        *self.slot.driver.lock().unwrap_or_else(|e| e.into_inner()) = Some(driver);
    }

    /// Blocks until the graph runs, then returns the links to every consumer.
    pub fn links(&self) -> Vec<Arc<Channel<T>>> {
        let mut g = self.slot.chans.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if let Some(c) = g.as_ref() {
                return c.clone();
            }
            g = self.slot.ready.wait(g).unwrap_or_else(|e| e.into_inner());
        }
    }

    /// Pushes a batch to every consumer, waiting while a link is full.
    pub fn push(&self, batch: Vec<T>) {
        let links = self.links();
        let n = links.len();
        let mut batch = Some(batch);
        for (i, l) in links.iter().enumerate() {
            let mut b = if i + 1 == n {
                batch.take().unwrap_or_default()
            } else {
                batch.clone().unwrap_or_default()
            };
            l.push_blocking(&mut b, None);
        }
    }

    /// Ends the stream for every consumer.
    pub fn close(&self, end: End) {
        for l in self.links() {
            l.close(end);
        }
    }
}

/// Where an input port's data comes from.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Feed {
    /// Output `port` of node `node`.
    Node(usize, usize),
    /// The external feed of stream `stream`.
    External(usize),
}

/// A graph checked and ready to start.
struct Runner {
    g: Graph,
    /// For each node and input port: where its data comes from.
    feeds: Vec<Vec<Feed>>,
}

impl Runner {
    fn prepare(mut g: Graph) -> Result<Runner, GraphError> {
        if let Some(e) = g.errors.drain(..).next() {
            return Err(e);
        }
        if let Some(grp) = g.groups.iter().find(|x| x.placement == Placement::Process) {
            // Process placement of Rust graphs needs the worker re-exec machinery of the CLI.
            if g.nodes.iter().any(|n| {
                n.group
                    .map(|i| g.groups[i].name == grp.name)
                    .unwrap_or(false)
            }) {
                return Err(GraphError::ProcessPlacement(grp.name.clone()));
            }
        }
        // Settings and outside consumers given to a connected stream belong to its producer's.
        for i in 0..g.streams.len() {
            if g.streams[i].fed_by.is_none() {
                continue;
            }
            let r = g.resolve(i)?;
            let drains = std::mem::take(&mut g.streams[i].drains);
            g.streams[r].drains.extend(drains);
            let drops = std::mem::take(&mut g.streams[i].drain_drops);
            g.streams[r].drain_drops.extend(drops);
            if g.streams[r].link.is_none() {
                g.streams[r].link = g.streams[i].link;
            }
        }
        let mut feeds = Vec::with_capacity(g.nodes.len());
        for n in &g.nodes {
            let mut f = vec![];
            for &s in &n.inputs {
                let r = g.resolve(s)?;
                f.push(match g.streams[r].producer {
                    Some((p, pp)) => Feed::Node(p, pp),
                    None => Feed::External(r),
                });
            }
            feeds.push(f);
        }
        Ok(Runner { g, feeds })
    }

    fn run(self) -> Result<Report, RunError> {
        let Runner { mut g, feeds } = self;
        let n = g.nodes.len();
        let mut adj = vec![vec![]; n];
        for (c, f) in feeds.iter().enumerate() {
            for feed in f {
                if let Feed::Node(p, _) = *feed {
                    adj[p].push(c);
                }
            }
        }
        let comp = cycles(&adj);
        // Local cycle counters: one reason per operator (until started) plus one per input
        // entering the cycle (until it ends); elements in flight are added as they move.
        let mut counters: HashMap<usize, Arc<CycleCounter>> = HashMap::new();
        let mut node_cycle: Vec<Option<Arc<CycleCounter>>> = vec![None; n];
        let mut intra_of: Vec<Vec<bool>> = vec![];
        for v in 0..n {
            if let Some(o) = &g.nodes[v].cycle {
                node_cycle[v] = Some(o.counter.clone());
                intra_of.push(o.intra.clone());
                continue;
            }
            let intra: Vec<bool> = feeds[v]
                .iter()
                .map(|f| matches!(*f, Feed::Node(p, _) if comp[v].is_some() && comp[p] == comp[v]))
                .collect();
            if let Some(c) = comp[v] {
                let ext = intra.iter().filter(|x| !**x).count() as i64;
                let counter = counters.entry(c).or_insert_with(|| CycleCounter::new(0));
                counter.add(1 + ext);
                node_cycle[v] = Some(counter.clone());
            }
            intra_of.push(intra);
        }
        let names: Vec<Arc<str>> = g.nodes.iter().map(|x| Arc::from(x.name.as_str())).collect();
        let run = RunShared::new(names.clone());
        if let Some(q) = g.quiesce.take() {
            run.set_quiesce(q);
        }
        let mut restore = std::mem::take(&mut g.restore);
        let on_start = std::mem::take(&mut g.on_start);
        let stages = std::mem::take(&mut g.stages);
        g.stop.attach(run.clone(), stages.clone());
        // Fused nodes by name, for their failures.
        let stage_of: HashMap<Arc<str>, Stages> = stages
            .iter()
            .map(|(&id, st)| (names[id].clone(), st.clone()))
            .collect();
        // Links: one channel per (producer port, consumer port).
        let mut inputs: Vec<Vec<(AnyLink, bool)>> = (0..n).map(|_| vec![]).collect();
        let mut outputs: Vec<Vec<Vec<AnyLink>>> = g
            .nodes
            .iter()
            .map(|x| (0..x.outputs.len()).map(|_| vec![]).collect())
            .collect();
        let mut channel_source = vec![false; n];
        for (c, node) in g.nodes.iter_mut().enumerate() {
            if let Some(link) = node.external.take() {
                inputs[c].push((link, false));
                channel_source[c] = node.inputs.is_empty();
            }
        }
        // Drop counts of every link, by the stream it carries, for the report.
        let mut link_drops: Vec<(usize, Arc<dyn LinkDrops>)> = vec![];
        for c in 0..n {
            for (port, feed) in feeds[c].iter().enumerate() {
                let intra = intra_of[c][port];
                let stream = match *feed {
                    Feed::Node(p, pp) => g.nodes[p].outputs[pp],
                    Feed::External(s) => s,
                };
                let mut cfg = g.streams[stream].link.unwrap_or(g.default_link);
                if intra {
                    // Bounded links on a feedback cycle can deadlock it: cycles are unbounded.
                    cfg.capacity = usize::MAX;
                    cfg.overflow = crate::link::local::Overflow::Block;
                }
                let counter = if intra { node_cycle[c].clone() } else { None };
                match *feed {
                    Feed::Node(p, pp) => {
                        let (a, b, d) = g.nodes[c].body.make_input(cfg, counter, true);
                        link_drops.push((stream, d));
                        inputs[c].push((a, intra));
                        outputs[p][pp].push(b);
                    }
                    Feed::External(s) => {
                        // Elements from outside were counted by their producer already.
                        let (a, b, d) = g.nodes[c].body.make_input(cfg, counter, false);
                        link_drops.push((stream, d));
                        inputs[c].push((a, intra));
                        if let Some(f) = &g.streams[s].external {
                            f.add(b, c);
                        }
                    }
                }
            }
        }
        for (node, outs) in g.nodes.iter().zip(outputs.iter_mut()) {
            for (pp, &s) in node.outputs.iter().enumerate() {
                outs[pp].append(&mut g.streams[s].drains);
                for d in g.streams[s].drain_drops.drain(..) {
                    link_drops.push((s, d));
                }
            }
        }
        for s in &g.streams {
            if let Some(f) = &s.external {
                f.ready();
            }
        }
        let node_groups: Vec<Option<usize>> = g.nodes.iter().map(|x| x.group).collect();
        // Feeds driven by a task (ring readers): inside their first consumer's actor.
        let mut node_feeds: Vec<Vec<BoundDriver>> = (0..n).map(|_| vec![]).collect();
        let mut drivers: Vec<BoundDriver> = vec![];
        for (d, node) in g
            .streams
            .iter()
            .filter_map(|s| s.external.as_ref()?.take_driver())
        {
            match node {
                Some(c) => node_feeds[c].push(d),
                None => drivers.push(d),
            }
        }
        let stream_names: Vec<String> = g.streams.iter().map(|s| s.name.clone()).collect();
        let node_outputs: Vec<Vec<usize>> = g.nodes.iter().map(|x| x.outputs.clone()).collect();
        let group_names: Vec<String> = g.groups.iter().map(|x| x.name.clone()).collect();
        let group_cpus: Vec<Option<crate::affinity::CpuSet>> =
            g.groups.iter().map(|x| x.cpus).collect();
        let mut checks: Vec<Vec<Option<OutputCheck>>> = vec![];
        let mut bodies: Vec<Box<dyn NodeBody>> = vec![];
        let mut restarts: Vec<Option<OpRestart>> = vec![];
        for x in g.nodes {
            checks.push(x.checks);
            bodies.push(x.body);
            restarts.push(x.restart);
        }
        let started = Instant::now();
        let heartbeat = g.heartbeat.take();
        let run2 = run.clone();
        let main = std::thread::Builder::new()
            .name("tributary-main".into())
            .spawn(move || -> Result<(), String> {
                let sys = System::new();
                let arbiters: Vec<Arbiter> = group_names
                    .iter()
                    .zip(&group_cpus)
                    .map(|(name, cpus)| {
                        let a = Arbiter::new();
                        if let Some(set) = *cpus {
                            let name = name.clone();
                            a.spawn_fn(move || {
                                if let Err(e) = set.apply() {
                                    tracing::error!(group = %name, "cannot run on CPUs {set:?}: {e}");
                                }
                            });
                        }
                        a
                    })
                    .collect();
                sys.block_on(async {
                    if let Some(hb) = heartbeat {
                        actix::spawn(async move {
                            loop {
                                hb.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                                actix::clock::sleep(std::time::Duration::from_millis(50)).await;
                            }
                        });
                    }
                    let system = System::current();
                    run2.set_stopper(Box::new(move || system.stop()));
                    let mut inputs = inputs;
                    let mut outputs = outputs;
                    let mut checks = checks;
                    for (id, body) in bodies.into_iter().enumerate() {
                        let w = ErasedWiring {
                            id,
                            name: names[id].clone(),
                            inputs: std::mem::take(&mut inputs[id]),
                            outputs: std::mem::take(&mut outputs[id]),
                            cycle: node_cycle[id].clone(),
                            run: run2.clone(),
                            checks: std::mem::take(&mut checks[id]),
                            channel_source: channel_source[id],
                            restart: restarts[id],
                            restore: restore.remove(&id),
                            feeds: std::mem::take(&mut node_feeds[id]),
                        };
                        let arb = node_groups[id].map(|gi| arbiters[gi].handle());
                        body.spawn(w, arb);
                    }
                    // A stream without consumers: its feed runs on its own.
                    for driver in drivers {
                        actix::spawn(driver());
                    }
                    for f in on_start {
                        f();
                    }
                });
                sys.run().map_err(|e| e.to_string())?;
                for a in arbiters {
                    a.stop();
                    let _ = a.join();
                }
                Ok(())
            })
            .map_err(|e| RunError::Runtime(e.to_string()))?;
        // A panic here is a bug in the runtime itself (operators' panics are caught): what
        // the run waits for may never come, so end now and let a supervisor restart the process.
        let Ok(joined) = main.join() else {
            return Err(RunError::Runtime(
                "the runtime thread panicked (see the log above)".into(),
            ));
        };
        run.wait();
        let crate::run::Outcome {
            mut failures,
            counts,
            notes,
            restarts,
        } = run.outcome();
        // A fused node's failure names the stage that failed, as it would unfused.
        for f in &mut failures {
            let stage = stage_of
                .get(f.operator.as_str())
                .and_then(|st| st.failed.get());
            if let Some(s) = stage {
                f.operator = s.clone();
            }
        }
        let mut report = Report {
            wall: started.elapsed(),
            notes,
            restarts: restarts
                .iter()
                .map(|(op, n, cause)| {
                    format!("operator \"{op}\": {n} restart(s) in place; last cause: {cause}")
                })
                .collect(),
            ..Report::default()
        };
        for (node, outs) in node_outputs.iter().enumerate() {
            // The streams inside a fused node, as their producers would report them unfused.
            if let (Some(st), Some(_)) = (stages.get(&node), counts[node].as_ref()) {
                for (name, n) in &st.inner {
                    report
                        .streams
                        .push((name.clone(), n.load(Ordering::Relaxed)));
                }
            }
            for (p, &s) in outs.iter().enumerate() {
                let c = counts[node]
                    .as_ref()
                    .and_then(|v| v.get(p).copied())
                    .unwrap_or(0);
                report.streams.push((stream_names[s].clone(), c));
            }
        }
        for (s, d) in &link_drops {
            let n = d.dropped();
            if n == 0 {
                continue;
            }
            match report.drops.iter_mut().find(|x| x.0 == stream_names[*s]) {
                Some(x) => x.1 += n,
                None => report.drops.push((stream_names[*s].clone(), n)),
            }
        }
        if let Err(e) = joined {
            return Err(RunError::Runtime(e));
        }
        if !failures.is_empty() {
            return Err(RunError::Failed(failures, Box::new(report)));
        }
        if !run.all_done() {
            return Err(RunError::Stopped(Box::new(report)));
        }
        Ok(report)
    }
}
