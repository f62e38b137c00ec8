//! The sandboxed Rhai engine every `fn` runs in, with `NULL`, `multivalue` and the array helpers.

use std::sync::{Arc, OnceLock};

use rhai::module_resolvers::DummyModuleResolver;
use rhai::{Array, Dynamic, Engine, EvalAltResult, Module};

use super::reduce;

/// JSON null inside scripts (the constant `NULL`), distinct from Rhai's unit `()`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Null;

/// The result of `multivalue(array)`: emit each entry as its own element.
#[derive(Clone, Debug)]
pub struct MultiValue(pub Array);

/// Resource bounds applied to every script call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EngineLimits {
    /// Maximum Rhai operations per call (a runaway loop errors instead of hanging).
    pub max_operations: u64,
    /// Maximum string length in bytes.
    pub max_string_size: usize,
    /// Maximum array length.
    pub max_array_size: usize,
    /// Maximum object map size.
    pub max_map_size: usize,
    /// Maximum function call depth.
    pub max_call_levels: usize,
    /// Maximum expression nesting depth (global level).
    pub max_expr_depth: usize,
    /// Maximum expression nesting depth inside functions.
    pub max_fn_expr_depth: usize,
}

impl Default for EngineLimits {
    fn default() -> Self {
        EngineLimits {
            max_operations: 50_000_000,
            max_string_size: 64 << 20,
            max_array_size: 16 << 20,
            max_map_size: 1 << 20,
            max_call_levels: 64,
            max_expr_depth: 128,
            max_fn_expr_depth: 64,
        }
    }
}

/// Builds a sandboxed engine: full standard library, no file modules, no `eval`, bounded calls.
pub fn build_engine(limits: &EngineLimits) -> Engine {
    let mut engine = Engine::new();
    engine
        .set_module_resolver(DummyModuleResolver::new())
        .disable_symbol("eval")
        .set_max_operations(limits.max_operations)
        .set_max_string_size(limits.max_string_size)
        .set_max_array_size(limits.max_array_size)
        .set_max_map_size(limits.max_map_size)
        .set_max_call_levels(limits.max_call_levels)
        .set_max_expr_depths(limits.max_expr_depth, limits.max_fn_expr_depth);
    // Standard output carries only sink data: script output goes to standard error.
    engine.on_print(|s| eprintln!("{s}"));
    engine.on_debug(|s, _src, pos| eprintln!("[script {pos}] {s}"));
    register_extras(&mut engine);
    engine
}

/// The shared engine with default limits, built once.
pub fn shared_engine() -> Arc<Engine> {
    static SHARED: OnceLock<Arc<Engine>> = OnceLock::new();
    SHARED
        .get_or_init(|| Arc::new(build_engine(&EngineLimits::default())))
        .clone()
}

/// A Rhai runtime error carrying only a message.
fn rt_err(msg: String) -> Box<EvalAltResult> {
    msg.into()
}

/// Registers `NULL`, `is_null`, `multivalue` and the array helpers on `engine`.
fn register_extras(engine: &mut Engine) {
    engine.register_type_with_name::<Null>("null");
    engine.register_type_with_name::<MultiValue>("multivalue");

    let mut globals = Module::new();
    globals.set_var("NULL", Null);
    engine.register_global_module(globals.into());

    engine.register_fn("==", |_: Null, _: Null| true);
    engine.register_fn("!=", |_: Null, _: Null| false);
    engine.register_fn("to_string", |_: &mut Null| "null".to_string());
    engine.register_fn("to_debug", |_: &mut Null| "NULL".to_string());
    engine.register_fn("is_null", |v: Dynamic| v.is::<Null>());

    engine.register_fn("multivalue", MultiValue);
    engine.register_fn("to_debug", |m: &mut MultiValue| {
        format!("multivalue({:?})", m.0)
    });

    engine.register_fn(
        "sum",
        |a: &mut Array| -> Result<Dynamic, Box<EvalAltResult>> {
            reduce::sum(a)
                .map(reduce::Number::into_dynamic)
                .map_err(rt_err)
        },
    );
    engine.register_fn("mean", |a: &mut Array| -> Result<f64, Box<EvalAltResult>> {
        reduce::mean(a).map_err(rt_err)
    });
    engine.register_fn("std", |a: &mut Array| -> Result<f64, Box<EvalAltResult>> {
        reduce::std(a).map_err(rt_err)
    });
    engine.register_fn(
        "min",
        |a: &mut Array| -> Result<Dynamic, Box<EvalAltResult>> {
            reduce::argmin(a).map(|i| a[i].clone()).map_err(rt_err)
        },
    );
    engine.register_fn(
        "max",
        |a: &mut Array| -> Result<Dynamic, Box<EvalAltResult>> {
            reduce::argmax(a).map(|i| a[i].clone()).map_err(rt_err)
        },
    );
}
