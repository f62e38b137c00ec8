//! tributary: IoTPy's streams, agents and operator catalog as an actor-based, multi-process runtime.
//!
//! Build a [`Graph`], add operators with IoTPy's names, join streams with [`Graph::connect`],
//! and [`Graph::run`] it; or run a manifest with the `tributary` binary.

#![warn(missing_docs)]

pub mod actor;
pub mod affinity;
pub mod checkpoint;
pub mod cli;
pub mod codec;
pub mod convert;
pub mod cycle;
pub mod emit;
pub mod link;
pub mod malloc;
pub mod manifest;
pub mod operator;
mod pacer;
pub mod pipeline;
pub mod recovery;
pub mod registry;
pub mod run;
pub mod script;
pub mod shm;
pub mod supervisor;
pub mod value;

pub use emit::{multivalue, Emit, IntoEmit};
pub use link::local::{LinkConfig, Overflow};
pub use operator::sink::Collector;
pub use operator::{Element, Gen, OpError, OpResult, Operator, Outputs};
pub use pipeline::{
    Graph, GraphError, Group, Placement, RestartPolicy, RunError, StopHandle, Stream,
};
pub use run::{OpRestart, OperatorFailure, Report};
pub use value::Value;
