//! The placement plan of a manifest: which process runs each operator, which links cross
//! processes (one shared-memory ring each), and which feedback cycles span processes.
//!
//! The supervisor and every worker compute the same plan from the same manifest, so only
//! file descriptors need to be handed over.

use std::collections::HashMap;

use crate::cycle::cycles;
use crate::manifest::{Manifest, Placement};

/// One link that crosses processes: input `port` of operator `consumer`, fed by `producer`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RingSpec {
    /// The stream the ring carries.
    pub stream: String,
    /// The producing operator's index.
    pub producer: usize,
    /// The consuming operator's index.
    pub consumer: usize,
    /// The consumer's input port.
    pub port: usize,
    /// Whether the link is inside a feedback cycle that spans processes (its index).
    pub cycle: Option<usize>,
}

/// A feedback cycle whose operators live in more than one process.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SpanningCycle {
    /// Operator indices on the cycle.
    pub ops: Vec<usize>,
    /// The counter's starting value: one per operator plus one per input entering the cycle.
    pub initial: i64,
}

/// Where everything of a manifest runs.
#[derive(Clone, Debug)]
pub struct Plan {
    /// Process names: index 0 is the supervisor, then one per process group, in file order.
    pub procs: Vec<String>,
    /// For each operator: its process index.
    pub op_proc: Vec<usize>,
    /// For each operator: the producer operator index of each input port.
    pub feeds: Vec<Vec<usize>>,
    /// For each operator: the index into `spanning` of its cycle, if it is on one.
    pub op_cycle: Vec<Option<usize>>,
    /// Feedback cycles that span processes.
    pub spanning: Vec<SpanningCycle>,
    /// Links between processes, in a fixed order.
    pub rings: Vec<RingSpec>,
}

impl Plan {
    /// Computes the plan of a validated manifest.
    pub fn new(m: &Manifest) -> Plan {
        let mut procs = vec!["supervisor".to_string()];
        let mut proc_of_group: HashMap<&str, usize> = HashMap::new();
        for g in &m.groups {
            if g.placement == Placement::Process {
                proc_of_group.insert(g.name.as_str(), procs.len());
                procs.push(g.name.clone());
            }
        }
        let op_proc: Vec<usize> = m
            .operators
            .iter()
            .map(|o| {
                o.group
                    .as_deref()
                    .and_then(|g| proc_of_group.get(g).copied())
                    .unwrap_or(0)
            })
            .collect();
        let producer: HashMap<&str, usize> = m
            .operators
            .iter()
            .enumerate()
            .flat_map(|(i, o)| o.outputs.iter().map(move |s| (s.as_str(), i)))
            .collect();
        let feeds: Vec<Vec<usize>> = m
            .operators
            .iter()
            .map(|o| o.inputs.iter().map(|s| producer[s.as_str()]).collect())
            .collect();
        let n = m.operators.len();
        let mut adj = vec![vec![]; n];
        for (c, f) in feeds.iter().enumerate() {
            for &p in f {
                adj[p].push(c);
            }
        }
        let comp = cycles(&adj);
        let mut by_comp: HashMap<usize, Vec<usize>> = HashMap::new();
        for (v, c) in comp.iter().enumerate() {
            if let Some(c) = c {
                by_comp.entry(*c).or_default().push(v);
            }
        }
        let mut comps: Vec<Vec<usize>> = by_comp.into_values().collect();
        comps.sort();
        let mut op_cycle = vec![None; n];
        let mut spanning = vec![];
        for ops in comps {
            let first = op_proc[ops[0]];
            if ops.iter().all(|&v| op_proc[v] == first) {
                continue;
            }
            let idx = spanning.len();
            let mut ext = 0i64;
            for &v in &ops {
                op_cycle[v] = Some(idx);
                ext += feeds[v].iter().filter(|p| comp[**p] != comp[v]).count() as i64;
            }
            spanning.push(SpanningCycle {
                initial: ops.len() as i64 + ext,
                ops,
            });
        }
        let mut rings = vec![];
        for (c, f) in feeds.iter().enumerate() {
            for (port, &p) in f.iter().enumerate() {
                if op_proc[p] != op_proc[c] {
                    let cycle = match (op_cycle[p], op_cycle[c]) {
                        (Some(a), Some(b)) if a == b => Some(a),
                        _ => None,
                    };
                    rings.push(RingSpec {
                        stream: m.operators[c].inputs[port].clone(),
                        producer: p,
                        consumer: c,
                        port,
                        cycle,
                    });
                }
            }
        }
        Plan {
            procs,
            op_proc,
            feeds,
            op_cycle,
            spanning,
            rings,
        }
    }

    /// The index of the process called `name`.
    pub fn proc_index(&self, name: &str) -> Option<usize> {
        self.procs.iter().position(|p| p == name)
    }

    /// True when some operator runs outside the supervisor process.
    pub fn has_workers(&self) -> bool {
        self.procs.len() > 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    const CYCLE: &str = r#"
[[group]]
name = "p1"
[[group]]
name = "p2"
[[group]]
name = "t"
placement = "thread"

[[operator]]
name = "seed"
op = "source.list"
out = "s"
values = [1]

[[operator]]
name = "loop_in"
op = "weave"
in = ["s", "fb"]
out = "n"
group = "p1"

[[operator]]
name = "triple"
op = "map_element"
in = "n"
out = "m"
fn = "x * 3"
group = "p2"

[[operator]]
name = "below"
op = "filter_element"
in = "m"
out = "fb"
fn = "x < 100"
group = "t"

[[operator]]
name = "w"
op = "sink.file"
in = "n"
path = "out/n.jsonl"
"#;

    #[test]
    fn cycles_across_processes_get_a_shared_counter_and_rings() {
        let m = crate::manifest::parse(CYCLE, Path::new("p.toml")).unwrap();
        let plan = Plan::new(&m);
        assert_eq!(plan.procs, vec!["supervisor", "p1", "p2"]);
        assert_eq!(plan.op_proc, vec![0, 1, 2, 0, 0]);
        assert_eq!(plan.spanning.len(), 1);
        // three operators, plus the seed's input entering the cycle
        assert_eq!(plan.spanning[0].initial, 4);
        let on_cycle: Vec<_> = plan
            .rings
            .iter()
            .filter(|r| r.cycle.is_some())
            .map(|r| r.stream.as_str())
            .collect();
        assert_eq!(on_cycle, vec!["fb", "n", "m"]);
        let off: Vec<_> = plan
            .rings
            .iter()
            .filter(|r| r.cycle.is_none())
            .map(|r| r.stream.as_str())
            .collect();
        assert_eq!(off, vec!["s", "n"]);
    }
}
