//! Manifest -> graph: the operators one process runs, joined to the other processes by rings.
//!
//! Every `op` kind is built from the same Rust API an embedding application uses
//! ([`crate::Graph`]), with the manifest's `fn` compiled to a [`ScriptFn`].

use std::collections::HashMap;
use std::sync::Arc;

use crate::cycle::CycleCounter;
use crate::emit::Emit;
use crate::link::local::{LinkConfig, Overflow as LinkOverflow};
use crate::link::remote::{self, Relay};
use crate::manifest::schema::{Manifest, OperatorDecl, Overflow, StreamType};
use crate::operator::checked::{CheckFn, OutputCheck};
use crate::operator::OpError;
use crate::pipeline::{CycleOverride, Graph, Stream};
use crate::recovery::Slot;
use crate::registry::Registry;
use crate::script::{Out, ScriptError, ScriptFn};
use crate::shm::{Ring, ShmRegion};
use crate::supervisor::plan::Plan;
use crate::Value;

/// A manifest that type-checks but cannot be built (a script that does not compile, a bad file).
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// A `fn` does not compile.
    #[error(transparent)]
    Script(#[from] ScriptError),
    /// Anything else, with the operator's name.
    #[error("operator \"{operator}\": {message}")]
    Operator {
        /// The operator.
        operator: String,
        /// What is wrong.
        message: String,
    },
    /// A group cannot be placed as declared (its `cpus`).
    #[error("{0}")]
    Group(String),
    /// A ring to another process could not be set up.
    #[error("link \"{stream}\": {message}")]
    Link {
        /// The stream the ring carries.
        stream: String,
        /// What is wrong.
        message: String,
    },
}

/// The shared memory a process needs: the rings it touches and the cycle counters.
pub struct ProcResources {
    /// Ring regions by plan index (`None` for rings this process does not touch).
    pub rings: Vec<Option<ShmRegion>>,
    /// Counters of cycles spanning processes, one `i64` each.
    pub control: Option<Arc<ShmRegion>>,
    /// Recovery slots, one `u64` per operator of the manifest (see [`crate::recovery`]).
    pub slots: Option<Arc<ShmRegion>>,
    /// Checkpoints, for a worker process that takes them (see [`crate::checkpoint`]).
    pub checkpoints: Option<CheckpointSetup>,
}

/// How a worker process takes checkpoints, and where it resumes when restarted.
pub struct CheckpointSetup {
    /// The process's pause.
    pub quiesce: Arc<crate::checkpoint::Quiesce>,
    /// The worker replaces one that died: it takes over its rings (from `restore`, if the dead
    /// one made a checkpoint; from the start otherwise).
    pub resume: bool,
    /// The last checkpoint of the process that died.
    pub restore: Option<crate::checkpoint::Checkpoint>,
}

/// A process's part of a manifest, ready to run.
pub struct LocalPart {
    /// The graph of the operators this process runs.
    pub graph: Graph,
    /// The ring writers and readers carrying links to and from other processes.
    pub relays: Vec<Relay>,
}

/// Converts a script failure into an operator failure.
pub(crate) fn op_err(mut e: ScriptError) -> OpError {
    // The element is kept apart (the failure report appends it once).
    let element = e.element.take();
    let mut o = OpError::new(e.to_string());
    o.element = element;
    o
}

/// Converts a script result into what an operator emits.
pub(crate) fn emit_of(o: Out) -> Emit<Value> {
    match o {
        Out::Nothing => Emit::Skip,
        Out::One(v) => Emit::One(v),
        Out::Many(v) => Emit::Many(v),
    }
}

/// A manifest function with its state (the stateful form when the operator has `state`).
pub(crate) struct Func {
    f: ScriptFn,
    state: Option<Value>,
    file: String,
}

impl Func {
    /// Compiles the operator's `fn`.
    pub(crate) fn of(m: &Manifest, d: &OperatorDecl) -> Result<Option<Func>, BuildError> {
        let Some(src) = &d.func else {
            return Ok(None);
        };
        let file = m
            .path
            .file_name()
            .map(|s| s.to_string_lossy().to_string())
            .unwrap_or_else(|| "pipeline.toml".into());
        let f = ScriptFn::compile(&src.code, &d.name, src.line, &d.params)
            .map_err(|e| e.with_file(file.clone()))?;
        Ok(Some(Func {
            f,
            state: d.state.clone(),
            file,
        }))
    }

    /// The compiled script and the manifest's file name (for a stateless batch operator).
    pub(crate) fn into_parts(self) -> (ScriptFn, String) {
        (self.f, self.file)
    }

    /// Calls it: returns what to emit (the state, if any, is bound and advanced).
    pub(crate) fn call(
        &mut self,
        bindings: &mut Vec<(&str, Value)>,
    ) -> Result<Emit<Value>, OpError> {
        match &mut self.state {
            None => {
                let r = self.f.call(bindings).map(emit_of);
                r.map_err(|e| op_err(e.with_file(self.file.clone())))
            }
            Some(st) => {
                bindings.push(("state", std::mem::take(st)));
                let r = self.f.call_stateful(bindings);
                let st_back = bindings.pop().map(|b| b.1).unwrap_or_default();
                match r {
                    Ok((out, next)) => {
                        *st = next;
                        Ok(emit_of(out))
                    }
                    Err(e) => {
                        *st = st_back;
                        Err(op_err(e.with_file(self.file.clone())))
                    }
                }
            }
        }
    }

    /// Calls it for a sink: a stateful sink returns just the next state.
    pub(crate) fn call_sink(&mut self, bindings: &mut Vec<(&str, Value)>) -> Result<(), OpError> {
        match &mut self.state {
            None => {
                let r = self.f.call_raw(bindings).map(|_| ());
                r.map_err(|e| op_err(e.with_file(self.file.clone())))
            }
            Some(st) => {
                bindings.push(("state", std::mem::take(st)));
                let r = self.f.call_value(bindings);
                let st_back = bindings.pop().map(|b| b.1).unwrap_or_default();
                match r {
                    Ok(next) => {
                        *st = next;
                        Ok(())
                    }
                    Err(e) => {
                        *st = st_back;
                        Err(op_err(e.with_file(self.file.clone())))
                    }
                }
            }
        }
    }

    /// Calls it for a split or multi operator: one entry per output (`()` emits nothing there).
    pub(crate) fn call_split(
        &mut self,
        bindings: &mut Vec<(&str, Value)>,
        n: usize,
    ) -> Result<Vec<Emit<Value>>, OpError> {
        let file = self.file.clone();
        let err = move |e: ScriptError| op_err(e.with_file(file.clone()));
        if self.state.is_none() {
            let r = self.f.call_split(bindings, Some(n));
            return r.map(|v| v.into_iter().map(emit_of).collect()).map_err(err);
        }
        match self.call(bindings)? {
            Emit::One(Value::Array(a)) if a.len() == n => {
                Ok(a.into_iter().map(Emit::One).collect())
            }
            other => Err(OpError::new(format!(
                "operator \"{}\": expected an array of {n} entries (one per output), got {other:?}",
                self.f.operator()
            ))),
        }
    }

    /// Calls it for a filter: a bool, or `[keep, next_state]` in the stateful form.
    pub(crate) fn call_filter(&mut self, x: &Value) -> Result<bool, OpError> {
        let mut b = vec![("x", x.clone())];
        let v = match &mut self.state {
            None => {
                let r = self.f.call_value(&b);
                r.map_err(|e| op_err(e.with_file(self.file.clone())))?
            }
            Some(st) => {
                b.push(("state", std::mem::take(st)));
                let r = self.f.call_value(&b);
                let st_back = b.pop().map(|b| b.1).unwrap_or_default();
                let v = match r {
                    Ok(v) => v,
                    Err(e) => {
                        *st = st_back;
                        return Err(op_err(e.with_file(self.file.clone())));
                    }
                };
                match v {
                    Value::Array(mut a) if a.len() == 2 => {
                        *st = a.pop().unwrap_or_default();
                        a.pop().unwrap_or_default()
                    }
                    other => {
                        *st = st_back;
                        return Err(OpError::new(format!(
                            "operator \"{}\": a stateful filter must return [keep, next_state], got {other}",
                            self.f.operator()
                        ))
                        .with_element(x));
                    }
                }
            }
        };
        match v {
            Value::Bool(k) => Ok(k),
            other => Err(OpError::new(format!(
                "operator \"{}\": a filter must return a bool, got {} {other}",
                self.f.operator(),
                other.type_name()
            ))
            .with_element(x)),
        }
    }
}

fn link_config(m: &Manifest, stream: &str) -> LinkConfig {
    let s = m.stream(stream);
    LinkConfig {
        capacity: s.capacity,
        // Numbers and booleans hold no bytes besides their own: nothing to count.
        max_bytes: match s.ty {
            StreamType::I64 | StreamType::F64 | StreamType::Bool => usize::MAX,
            StreamType::Any | StreamType::Str => s.max_bytes,
        },
        overflow: match s.overflow {
            Overflow::Block => LinkOverflow::Block,
            Overflow::DropOldest => LinkOverflow::DropOldest,
            Overflow::DropNewest => LinkOverflow::DropNewest,
        },
    }
}

/// Checks an element against its stream's declared type (ints widen to f64 streams).
pub(crate) fn typecheck(ty: StreamType, v: Value) -> Result<Value, String> {
    match (ty, v) {
        (StreamType::F64, Value::Int(i)) => Ok(Value::Float(i as f64)),
        (ty, v) if ty.accepts(&v) => Ok(v),
        (ty, v) => Err(format!(
            "expected {}, found {} {}",
            ty.as_str(),
            v.type_name(),
            v
        )),
    }
}

/// The check of what an operator emits into the typed stream `stream`: an int into an `f64`
/// stream becomes a float; any other element of the wrong type fails the operator.
pub(crate) fn output_check(ty: StreamType, stream: &str) -> OutputCheck {
    Box::new(StreamCheck {
        ty,
        stream: stream.to_string(),
    })
}

/// The check of a typed stream's elements (see [`output_check`]).
struct StreamCheck {
    ty: StreamType,
    stream: String,
}

impl StreamCheck {
    /// The failure for an element the stream's type does not accept.
    fn reject(&self, v: &Value) -> OpError {
        OpError::new(format!(
            "stream \"{}\" has type {}, but the operator emitted {} {v}",
            self.stream,
            self.ty.as_str(),
            v.type_name()
        ))
    }
}

impl CheckFn for StreamCheck {
    fn check(&mut self, v: &mut Value) -> Result<(), OpError> {
        self.check_all(std::slice::from_mut(v)).map_err(|(_, e)| e)
    }

    /// One tight loop per type: an int becomes a float in an `f64` stream, and the first
    /// element of another type than the stream's is rejected.
    fn check_all(&mut self, vs: &mut [Value]) -> Result<(), (usize, OpError)> {
        let bad = match self.ty {
            StreamType::Any => None,
            StreamType::F64 if crate::value::all_floats(vs) => None,
            StreamType::F64 => vs.iter_mut().position(|v| match v {
                Value::Float(_) => false,
                Value::Int(i) => {
                    let f = Value::Float(*i as f64);
                    // SAFETY: `v` is an integer, which owns no memory: overwriting it without
                    // its drop call leaks nothing.
                    unsafe { std::ptr::write(v, f) };
                    false
                }
                _ => true,
            }),
            StreamType::I64 => vs.iter().position(|v| !matches!(v, Value::Int(_))),
            StreamType::Bool => vs.iter().position(|v| !matches!(v, Value::Bool(_))),
            StreamType::Str => vs.iter().position(|v| !matches!(v, Value::Str(_))),
        };
        match bad {
            Some(i) => Err((i, self.reject(&vs[i]))),
            None => Ok(()),
        }
    }
}

/// Builds the part of the manifest that process `proc` runs (custom kinds from `reg`).
pub fn build_local(
    m: &Manifest,
    plan: &Plan,
    proc: usize,
    res: &mut ProcResources,
    reg: &Registry,
) -> Result<LocalPart, BuildError> {
    let mut g = Graph::new();
    let mut relays = vec![];
    // Thread groups of this process.
    let mut groups = HashMap::new();
    for gd in &m.groups {
        if gd.placement == crate::manifest::Placement::Thread && proc == 0 {
            let h = g.group(
                &gd.name,
                crate::Placement::Thread,
                crate::RestartPolicy::Permanent,
            );
            if let Some(cpus) = &gd.cpus {
                let set = crate::affinity::for_group(&gd.name, cpus).map_err(BuildError::Group)?;
                g.pin_group(&h, set);
            }
            groups.insert(gd.name.clone(), h);
        }
    }
    // Cycle counters that span processes, mapped from the control region.
    let counters: Vec<Arc<CycleCounter>> = match &res.control {
        Some(region) => (0..plan.spanning.len())
            .map(|i| {
                let owner: Arc<dyn Send + Sync> = region.clone();
                // SAFETY: the region holds one aligned i64 per spanning cycle and lives as long
                // as `owner`; it is only accessed through atomics.
                unsafe {
                    CycleCounter::shared(
                        (region.as_ptr() as *const std::sync::atomic::AtomicI64).add(i),
                        owner,
                    )
                }
            })
            .collect(),
        None => vec![],
    };
    // Streams of this process by name, filled as operators are added; feedback streams are
    // declared up front and connected once their producer exists.
    let local: Vec<usize> = (0..m.operators.len())
        .filter(|&i| plan.op_proc[i] == proc)
        .collect();
    let mut streams: HashMap<String, Stream<Value>> = HashMap::new();
    for &i in &local {
        for s in &m.operators[i].outputs {
            let st = g.stream::<Value>(s);
            g.set_link(&st, link_config(m, s));
            streams.insert(s.clone(), st);
        }
    }
    // Rings into this process: one external input per (consumer, port).
    let mut ring_inputs: HashMap<(usize, usize), Stream<Value>> = HashMap::new();
    for (ri, r) in plan.rings.iter().enumerate() {
        if plan.op_proc[r.consumer] != proc {
            continue;
        }
        let region = res.rings[ri].take().ok_or_else(|| BuildError::Link {
            stream: r.stream.clone(),
            message: "its shared-memory ring was not handed to this process".into(),
        })?;
        let link_err = |e: String| BuildError::Link {
            stream: r.stream.clone(),
            message: e,
        };
        let ck = res.checkpoints.as_ref();
        let from = ck
            .and_then(|c| c.restore.as_ref())
            .and_then(|c| c.input(ri));
        let reader = match ck {
            Some(c) if c.resume => Ring::reader_resume(region, from.map_or(0, |i| i.pos)),
            _ => Ring::reader_from_region(region),
        }
        .map_err(|e| link_err(e.to_string()))?;
        let ctl = ck.map(|c| {
            crate::checkpoint::ReadControl::new(ri, reader.committer(), c.quiesce.clone())
        });
        let (feed, s) = g.external_input::<Value>(&r.stream);
        g.set_link(&s, link_config(m, &r.stream));
        relays.push(
            remote::spawn_reader_with(
                r.stream.clone(),
                reader,
                feed,
                ctl,
                from.and_then(|i| i.end),
            )
            .map_err(|e| link_err(e.to_string()))?,
        );
        ring_inputs.insert((r.consumer, r.port), s);
    }
    // Chains of element operators that run as one actor (see `fuse`).
    let mut fusion = crate::manifest::fuse::Fusion::new(m, plan, proc);
    for &i in &local {
        let d = &m.operators[i];
        // Operator failures restart the operator in place, per its group's policy.
        let policy = crate::supervisor::restart::Policy::for_group(
            m,
            d.group
                .as_deref()
                .unwrap_or(crate::supervisor::restart::SUPERVISOR_GROUP),
        );
        g.restart_next(
            (policy.restart != crate::manifest::schema::Restart::Temporary)
                .then(|| policy.limits()),
        );
        if let Some(chain) = fusion.chain_of(i).map(<[usize]>::to_vec) {
            if let Some(stages) = fusion.build_stage(m, i, reg)? {
                let (head, last) = (&m.operators[chain[0]], &m.operators[chain[chain.len() - 1]]);
                let input = ring_inputs
                    .get(&(chain[0], 0))
                    .copied()
                    .unwrap_or_else(|| streams[&head.inputs[0]]);
                let add = |g: &mut Graph| crate::manifest::fuse::add_fused(g, stages, &input);
                let out = match head.group.as_ref().and_then(|gn| groups.get(gn)) {
                    Some(grp) => {
                        let grp = grp.clone();
                        g.with_group(&grp, add)
                    }
                    None => add(&mut g),
                };
                g.connect(&out, &streams[&last.outputs[0]]);
            }
            continue;
        }
        let inputs: Vec<Stream<Value>> = d
            .inputs
            .iter()
            .enumerate()
            .map(|(port, s)| {
                ring_inputs
                    .get(&(i, port))
                    .copied()
                    .unwrap_or_else(|| streams[s])
            })
            .collect();
        g.name_next(&d.name);
        let slot = res.slots.as_ref().map(|region| {
            let owner: Arc<dyn Send + Sync> = region.clone();
            // SAFETY: the region holds one aligned u64 per operator of the manifest and lives
            // as long as `owner`; it is only accessed through atomics.
            unsafe {
                Slot::shared(
                    (region.as_ptr() as *const std::sync::atomic::AtomicU64).add(i),
                    owner,
                )
            }
        });
        let outs = match d.group.as_ref().and_then(|gn| groups.get(gn)) {
            Some(grp) => {
                let grp = grp.clone();
                g.with_group(&grp, |g| {
                    crate::manifest::kinds_build::build_op(g, m, d, &inputs, reg, slot)
                })?
            }
            None => crate::manifest::kinds_build::build_op(&mut g, m, d, &inputs, reg, slot)?,
        };
        if let Some(c) = plan.op_cycle[i] {
            let intra = plan.feeds[i]
                .iter()
                .map(|&p| plan.op_cycle[p] == Some(c))
                .collect();
            let node = g.last_node();
            g.set_cycle(
                node,
                CycleOverride {
                    counter: counters[c].clone(),
                    intra,
                },
            );
        }
        for (s, o) in d.outputs.iter().zip(outs) {
            let ty = m.stream(s).ty;
            if ty != StreamType::Any {
                g.check_output(&o, output_check(ty, s));
            }
            g.connect(&o, &streams[s]);
        }
    }
    // Rings out of this process.
    for (ri, r) in plan.rings.iter().enumerate() {
        if plan.op_proc[r.producer] != proc {
            continue;
        }
        let region = res.rings[ri].take().ok_or_else(|| BuildError::Link {
            stream: r.stream.clone(),
            message: "its shared-memory ring was not handed to this process".into(),
        })?;
        let link_err = |e: String| BuildError::Link {
            stream: r.stream.clone(),
            message: e,
        };
        let ck = res.checkpoints.as_ref();
        let mut resume = remote::WriterResume::default();
        let writer = match ck {
            Some(c) if c.resume => {
                let state = Ring::state(&region).map_err(|e| link_err(e.to_string()))?;
                let written = c.restore.as_ref().and_then(|c| c.output(ri)).unwrap_or(0);
                resume.skip = state.elems.saturating_sub(written);
                resume.ended = state.writer_closed;
                Ring::writer_resume(region)
            }
            _ => Ring::writer_from_region(region),
        }
        .map_err(|e| link_err(e.to_string()))?;
        resume.checkpoints = ck.map(|c| (c.quiesce.clone(), ri));
        let counter = r.cycle.map(|c| counters[c].clone());
        let chan = g.external_output(&streams[&r.stream], link_config(m, &r.stream), counter);
        relays.push(
            remote::spawn_writer_with(r.stream.clone(), chan, writer, resume)
                .map_err(|e| link_err(e.to_string()))?,
        );
    }
    if let Some(c) = &res.checkpoints {
        g.set_quiesce(c.quiesce.clone());
        if let Some(ck) = &c.restore {
            if ck.nodes.len() != g.node_count() {
                return Err(BuildError::Link {
                    stream: String::new(),
                    message: format!(
                        "the checkpoint has {} operators, the process {}",
                        ck.nodes.len(),
                        g.node_count()
                    ),
                });
            }
            for (i, n) in ck.nodes.iter().enumerate() {
                g.restore_node(i, n.clone());
            }
        }
    }
    Ok(LocalPart { graph: g, relays })
}
