//! Pipeline manifests (TOML): loading, validation with located diagnostics, the typed schema.
//!
//! [`load`] reads and validates a manifest file; every error found is reported at once as
//! [`Diagnostics`], each pointing at `FILE:LINE:COL` of the offending value. The operator kinds
//! come from a [`KindTable`]: the built-ins of MANIFEST.md and OPERATORS.md, to which an
//! embedding application may add its own ([`load_with`], [`parse_with`]).
//!
//! Where MANIFEST.md is silent, this module decides:
//! - `source.range` needs `end`; `start` defaults to 0 and `step` to 1 (any non-zero integer).
//! - A single-stream `in`/`out` may also be written as a one-name list; a multi-stream one must
//!   be a list (`add` ... `ge` take exactly two streams).
//! - `format` of a sink defaults to `jsonl`; of a source, to the extension of `path`
//!   ([`OperatorDecl::effective_format`]).
//! - `merge_window`/`multi_window` take `window`/`step` as an integer or one integer per input.
//! - Durations are strings (`"30s"`); a bare number is an error (no unit to guess).
//! - Warnings (the manifest still loads, see [`Manifest::warnings`]): a stream produced but
//!   consumed by no operator, a group with no operator.
//! - A stream declared with `[[stream]]` that no operator produces or consumes is an error;
//!   a consumed stream nobody produces is reported at each consuming `in` entry.
//! - TOML syntax errors stop validation (the rest would only repeat them).

#![warn(missing_docs)]

pub mod build;
pub mod diagnostic;
pub mod fuse;
pub(crate) mod fused;
pub mod kinds;
pub mod kinds_build;
pub mod schema;
mod script_ops;
pub mod validate;

#[cfg(test)]
mod tests;

use std::path::Path;

pub use diagnostic::{Diagnostic, Diagnostics, Severity, Span};
pub use kinds::{Arity, Family, FnUse, KindSpec, KindTable};
pub use schema::{
    parse_duration, Agg, Format, GroupDecl, Manifest, OnError, OperatorDecl, Overflow, Placement,
    Restart, ScriptSource, Strategy, StreamDecl, StreamType, SupervisorDecl,
};

/// Reads and validates the manifest at `path` with the built-in operator kinds.
pub fn load(path: &Path) -> Result<Manifest, Diagnostics> {
    load_with(path, &KindTable::builtin())
}

/// Reads and validates the manifest at `path` with the operator kinds of `kinds`.
pub fn load_with(path: &Path, kinds: &KindTable) -> Result<Manifest, Diagnostics> {
    match std::fs::read_to_string(path) {
        Ok(text) => parse_with(&text, path, kinds),
        Err(e) => Err(Diagnostics(vec![Diagnostic::whole_file(
            Severity::Error,
            path,
            format!("cannot read manifest {}: {e}", path.display()),
        )])),
    }
}

/// Validates manifest `text` (read from `path`, used in diagnostics and to resolve relative
/// paths) with the built-in operator kinds.
pub fn parse(text: &str, path: &Path) -> Result<Manifest, Diagnostics> {
    parse_with(text, path, &KindTable::builtin())
}

/// Validates manifest `text` (read from `path`) with the operator kinds of `kinds`.
pub fn parse_with(text: &str, path: &Path, kinds: &KindTable) -> Result<Manifest, Diagnostics> {
    validate::validate(text, path, kinds)
}
