//! tributary: IoTPy's streams, agents and operator catalog as an actor-based, multi-process runtime.

pub mod script;
pub mod value;

pub use value::Value;
