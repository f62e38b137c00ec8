//! `tributary graph`: the pipeline as Graphviz DOT, one cluster per group.

use std::fmt::Write;

use crate::manifest::Manifest;

fn quote(s: &str) -> String {
    let escaped = s
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n");
    format!("\"{escaped}\"")
}

/// Renders the manifest's operators as nodes and its streams as labelled edges.
pub fn to_dot(m: &Manifest) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "digraph {} {{",
        quote(m.name.as_deref().unwrap_or("pipeline"))
    );
    let _ = writeln!(
        out,
        "  rankdir=LR;\n  node [shape=box, fontname=\"Helvetica\"];"
    );
    let node = |o: &crate::manifest::OperatorDecl| {
        format!(
            "  {} [label={}];",
            quote(&o.name),
            quote(&format!("{}\n{}", o.name, o.op))
        )
    };
    for o in m.operators.iter().filter(|o| o.group.is_none()) {
        let _ = writeln!(out, "{}", node(o));
    }
    for (i, g) in m.groups.iter().enumerate() {
        let _ = writeln!(
            out,
            "  subgraph cluster_{i} {{\n    label={};",
            quote(&format!("{} ({:?})", g.name, g.placement).to_lowercase())
        );
        for o in m
            .operators
            .iter()
            .filter(|o| o.group.as_deref() == Some(g.name.as_str()))
        {
            let _ = writeln!(out, "  {}", node(o));
        }
        let _ = writeln!(out, "  }}");
    }
    for c in &m.operators {
        for s in &c.inputs {
            if let Some(p) = m.producer(s) {
                let _ = writeln!(
                    out,
                    "  {} -> {} [label={}];",
                    quote(&p.name),
                    quote(&c.name),
                    quote(s)
                );
            }
        }
    }
    out.push_str("}\n");
    out
}
