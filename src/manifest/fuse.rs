//! Which operators of a manifest run fused (one actor for a chain; see the private
//! `manifest::fused` module).
//!
//! A chain is a maximal run `A -> B -> ...` of at least two operators where:
//! - every operator is of a fusable kind ([`KINDS`]: element-wise, one input, one output, no
//!   end note) and runs in this process;
//! - no operator is on a feedback cycle;
//! - every stream between two of them has exactly one consumer (the next operator), the
//!   `block` overflow policy and the default capacity (a declared `capacity` bounds batches,
//!   which a `map_list` sees, so such a stream keeps its link);
//! - consecutive operators have the same `group` (or none).
//!
//! `TRIBUTARY_NO_FUSION=1` turns fusion off (every operator its own actor, as before).

use std::collections::HashMap;

use crate::cycle::cycles;
use crate::manifest::build::{output_check, BuildError};
use crate::manifest::fused::{Fused, Stage};
use crate::manifest::kinds_build::build_op;
use crate::manifest::schema::{Manifest, Overflow, StreamType, DEFAULT_CAPACITY};
use crate::pipeline::{Graph, Stream};
use crate::registry::Registry;
use crate::supervisor::plan::Plan;
use crate::Value;

/// The kinds that fuse: one call per element or per batch, no end-of-stream work of their own
/// beyond `start` (`prepend`), no notes.
pub const KINDS: &[&str] = &[
    "map_element",
    "filter_element",
    "exponential_smoothing",
    "map_list",
    "prepend",
];

/// The environment variable that turns fusion off (any value but empty and `0`).
pub const NO_FUSION_ENV: &str = "TRIBUTARY_NO_FUSION";

/// True when `TRIBUTARY_NO_FUSION` asks for every operator to run as its own actor.
pub fn disabled() -> bool {
    std::env::var_os(NO_FUSION_ENV).is_some_and(|v| !v.is_empty() && v != "0")
}

/// The fused chains of process `proc`, each a list of operator indices in stream order.
pub fn chains(m: &Manifest, plan: &Plan, proc: usize) -> Vec<Vec<usize>> {
    let n = m.operators.len();
    let mut consumers: HashMap<&str, usize> = HashMap::new();
    for o in &m.operators {
        for s in &o.inputs {
            *consumers.entry(s.as_str()).or_default() += 1;
        }
    }
    let mut adj = vec![vec![]; n];
    for (c, f) in plan.feeds.iter().enumerate() {
        for &p in f {
            adj[p].push(c);
        }
    }
    let comp = cycles(&adj);
    let fusable = |i: usize| {
        let d = &m.operators[i];
        plan.op_proc[i] == proc
            && comp[i].is_none()
            && d.inputs.len() == 1
            && d.outputs.len() == 1
            && KINDS.contains(&d.kind.as_str())
    };
    // prev[j] = i when the link from operator i into operator j fuses.
    let prev: Vec<Option<usize>> = (0..n)
        .map(|j| {
            let i = *plan.feeds[j].first()?;
            if i == j || !fusable(i) || !fusable(j) {
                return None;
            }
            let s = &m.operators[j].inputs[0];
            let decl = m.stream(s);
            let fuses = consumers.get(s.as_str()) == Some(&1)
                && m.operators[i].outputs[0] == *s
                && decl.overflow == Overflow::Block
                && decl.capacity == DEFAULT_CAPACITY
                && m.operators[i].group == m.operators[j].group;
            fuses.then_some(i)
        })
        .collect();
    let mut next = vec![None; n];
    for (j, p) in prev.iter().enumerate() {
        if let Some(i) = *p {
            next[i] = Some(j);
        }
    }
    let mut out = vec![];
    for head in 0..n {
        if prev[head].is_some() || next[head].is_none() {
            continue;
        }
        let mut chain = vec![head];
        let mut at = head;
        while let Some(j) = next[at] {
            chain.push(j);
            at = j;
        }
        out.push(chain);
    }
    out
}

/// The fused chains of one process while its graph is built: each operator of a chain is
/// built (with the ordinary builder, in manifest order, so build errors come out as unfused)
/// into a stage; the chain's node is added once its last stage is ready.
pub(crate) struct Fusion {
    chains: Vec<Vec<usize>>,
    chain_of: HashMap<usize, usize>,
    ready: Vec<HashMap<usize, Stage>>,
}

impl Fusion {
    /// The chains of process `proc` (none when fusion is off).
    pub(crate) fn new(m: &Manifest, plan: &Plan, proc: usize) -> Fusion {
        let chains = if disabled() {
            vec![]
        } else {
            chains(m, plan, proc)
        };
        let chain_of = chains
            .iter()
            .enumerate()
            .flat_map(|(c, ops)| ops.iter().map(move |&i| (i, c)))
            .collect();
        let ready = chains.iter().map(|_| HashMap::new()).collect();
        Fusion {
            chains,
            chain_of,
            ready,
        }
    }

    /// The chain operator `i` belongs to: its operator indices.
    pub(crate) fn chain_of(&self, i: usize) -> Option<&[usize]> {
        self.chain_of.get(&i).map(|&c| self.chains[c].as_slice())
    }

    /// Builds operator `i` (of a chain) as a stage; when that completes its chain, returns the
    /// stages in chain order.
    pub(crate) fn build_stage(
        &mut self,
        m: &Manifest,
        i: usize,
        reg: &Registry,
    ) -> Result<Option<Vec<Stage>>, BuildError> {
        let Some(&c) = self.chain_of.get(&i) else {
            return Ok(None);
        };
        let d = &m.operators[i];
        let mut sg = Graph::new();
        let input = sg.stream::<Value>(&d.inputs[0]);
        sg.name_next(&d.name);
        build_op(&mut sg, m, d, &[input], reg, None)?;
        let op = sg
            .into_value_operator()
            .ok_or_else(|| BuildError::Operator {
                operator: d.name.clone(),
                message: format!(
                    "cannot run fused (a bug; {NO_FUSION_ENV}=1 runs every operator on its own)"
                ),
            })?;
        let out = &d.outputs[0];
        let ty = m.stream(out).ty;
        let check = (ty != StreamType::Any).then(|| output_check(ty, out));
        self.ready[c].insert(
            i,
            Stage {
                name: d.name.clone(),
                op,
                check,
            },
        );
        if self.ready[c].len() < self.chains[c].len() {
            return Ok(None);
        }
        let mut ready = std::mem::take(&mut self.ready[c]);
        Ok(Some(
            self.chains[c]
                .iter()
                .filter_map(|k| ready.remove(k))
                .collect(),
        ))
    }
}

/// Adds the node running `stages` fused, reading `input`; returns its output (the last
/// stage's). The node carries the last stage's name.
pub(crate) fn add_fused(g: &mut Graph, stages: Vec<Stage>, input: &Stream<Value>) -> Stream<Value> {
    let (op, info) = Fused::new(stages);
    let names = op.names().to_vec();
    tracing::debug!(operators = %names.join(" -> "), "fused into one actor");
    if let Some(last) = names.last() {
        g.name_next(last);
    }
    let out = g.add_unary("fused", op, &[input]);
    let node = g.last_node();
    g.set_stages(node, info);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn op(name: &str, kind: &str, input: &str, out: &str, extra: &str) -> String {
        format!(
            "[[operator]]\nname = \"{name}\"\nop = \"{kind}\"\nin = \"{input}\"\nout = \"{out}\"\n{extra}\n"
        )
    }

    fn chains_of(text: &str) -> Vec<Vec<String>> {
        let m = crate::manifest::parse(text, Path::new("pipeline.toml")).unwrap();
        let plan = Plan::new(&m);
        (0..plan.procs.len())
            .flat_map(|p| chains(&m, &plan, p))
            .map(|c| c.iter().map(|&i| m.operators[i].name.clone()).collect())
            .collect()
    }

    const SRC: &str =
        "[[operator]]\nname = \"src\"\nop = \"source.list\"\nout = \"x\"\nvalues = [1]\n";
    const SINK: &str = "[[operator]]\nname = \"snk\"\nop = \"sink.null\"\nin = \"d\"\n";

    fn abc(extra_a: &str, extra_b: &str, extra_c: &str, more: &str) -> String {
        format!(
            "{more}{SRC}{}{}{}{SINK}",
            op(
                "a",
                "map_element",
                "x",
                "b",
                &format!("fn = \"x\"\n{extra_a}")
            ),
            op(
                "b",
                "filter_element",
                "b",
                "c",
                &format!("fn = \"true\"\n{extra_b}")
            ),
            op(
                "c",
                "map_list",
                "c",
                "d",
                &format!("fn = \"batch\"\n{extra_c}")
            ),
        )
    }

    #[test]
    fn a_plain_chain_fuses_whole() {
        assert_eq!(chains_of(&abc("", "", "", "")), vec![vec!["a", "b", "c"]]);
    }

    #[test]
    fn a_second_consumer_a_lossy_or_resized_stream_breaks_the_chain() {
        let tap = "[[operator]]\nname = \"tap\"\nop = \"sink.null\"\nin = \"c\"\n";
        assert_eq!(
            chains_of(&format!("{}{tap}", abc("", "", "", ""))),
            vec![vec!["a", "b"]]
        );
        let lossy = "[[stream]]\nname = \"b\"\noverflow = \"drop_oldest\"\n";
        assert_eq!(chains_of(&abc("", "", "", lossy)), vec![vec!["b", "c"]]);
        let sized = "[[stream]]\nname = \"c\"\ncapacity = 8\n";
        assert_eq!(chains_of(&abc("", "", "", sized)), vec![vec!["a", "b"]]);
        // A type is checked inside the chain: it does not break it.
        let typed = "[[stream]]\nname = \"c\"\ntype = \"i64\"\n";
        assert_eq!(
            chains_of(&abc("", "", "", typed)),
            vec![vec!["a", "b", "c"]]
        );
    }

    #[test]
    fn chains_stay_within_one_group() {
        let groups = "[[group]]\nname = \"p\"\n[[group]]\nname = \"t\"\nplacement = \"thread\"\n";
        let m = abc("group = \"p\"", "group = \"p\"", "group = \"t\"", groups);
        assert_eq!(chains_of(&m), vec![vec!["a", "b"]]);
        let m = abc("", "group = \"t\"", "group = \"t\"", groups);
        assert_eq!(chains_of(&m), vec![vec!["b", "c"]]);
    }

    #[test]
    fn operators_on_a_feedback_cycle_and_other_kinds_do_not_fuse() {
        let cycle = format!(
            "{SRC}{}{}{}{}",
            "[[operator]]\nname = \"w\"\nop = \"weave\"\nin = [\"x\", \"fb\"]\nout = \"n\"\n",
            op("m", "map_element", "n", "m", "fn = \"x + 1\""),
            op("f", "filter_element", "m", "fb", "fn = \"x < 10\""),
            "",
        );
        assert!(chains_of(&cycle).is_empty());
        let window = format!(
            "{SRC}{}{}{}",
            op("a", "map_element", "x", "b", "fn = \"x\""),
            op("w", "map_window", "b", "c", "window = 2\nagg = \"sum\""),
            op("c", "map_element", "c", "d", "fn = \"x\""),
        );
        assert!(chains_of(&format!("{window}{SINK}")).is_empty());
    }
}
