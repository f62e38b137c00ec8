//! The supervisor: runs a manifest, starting each process group as an OS process of its own
//! (the same executable in a worker role) linked by shared-memory rings.

pub mod plan;
