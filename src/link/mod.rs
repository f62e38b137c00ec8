//! How a `connect` is carried: in-process queues, and shared-memory rings between processes.

pub mod local;
pub mod remote;
