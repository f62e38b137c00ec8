//! Tests of the script module: engine rules, conversions, result shapes, errors, fast path.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use proptest::prelude::*;

use super::*;

fn no_params() -> BTreeMap<String, Value> {
    BTreeMap::new()
}

fn compile(code: &str) -> ScriptFn {
    ScriptFn::compile(code, "op", 1, &no_params()).expect("compiles")
}

/// Runs `code` with `x` bound, on the plain Rhai path.
fn run_x(code: &str, x: Value) -> Result<Out, ScriptError> {
    let mut f = compile(code);
    f.set_fast_path(false);
    f.call(&[("x", x)])
}

fn one(code: &str, x: Value) -> Value {
    match run_x(code, x) {
        Ok(Out::One(v)) => v,
        other => panic!("{code}: expected one value, got {other:?}"),
    }
}

fn eval(code: &str) -> Value {
    one(code, Value::Null)
}

fn err(code: &str, x: Value) -> ScriptError {
    run_x(code, x).expect_err(code)
}

fn arr(vs: Vec<Value>) -> Value {
    Value::Array(vs)
}

#[test]
fn null_is_not_unit() {
    assert_eq!(eval("NULL"), Value::Null);
    assert_eq!(run_x("()", Value::Int(1)).unwrap(), Out::Nothing);
    assert_eq!(eval("is_null(NULL)"), Value::Bool(true));
    assert_eq!(eval("is_null(())"), Value::Bool(false));
    assert_eq!(eval("is_null(0)"), Value::Bool(false));
    assert_eq!(eval("NULL == NULL"), Value::Bool(true));
    assert_eq!(eval("NULL != NULL"), Value::Bool(false));
    assert_eq!(eval("NULL == 1"), Value::Bool(false));
    assert_eq!(eval("1 == NULL"), Value::Bool(false));
    assert_eq!(eval("NULL != 1"), Value::Bool(true));
    assert_eq!(eval("NULL == ()"), Value::Bool(false));
    assert_eq!(eval("[1, NULL] == [1, NULL]"), Value::Bool(true));
    assert_eq!(eval("NULL.to_string()"), Value::Str("null".into()));
    assert_eq!(eval("type_of(NULL)"), Value::Str("null".into()));
    // A null element comes in as NULL and goes out as null.
    assert_eq!(one("x", Value::Null), Value::Null);
    assert_eq!(one("is_null(x)", Value::Null), Value::Bool(true));
    assert_eq!(
        one("[x, 1]", Value::Null),
        arr(vec![Value::Null, Value::Int(1)])
    );
    // NULL is visible inside script-defined functions too.
    assert_eq!(eval("fn f() { NULL } f()"), Value::Null);
}

#[test]
fn unit_inside_a_value_is_an_error() {
    let e = err("[1, ()]", Value::Int(0));
    assert_eq!(e.kind, ScriptErrorKind::Shape);
    assert!(e.message.contains("() inside a value"), "{e}");
    let e = err("#{a: ()}", Value::Int(0));
    assert!(e.message.contains("() inside a value"), "{e}");
}

#[test]
fn multivalue_emits_each_entry() {
    assert_eq!(
        run_x("multivalue([x, x + 1])", Value::Int(1)).unwrap(),
        Out::Many(vec![Value::Int(1), Value::Int(2)])
    );
    assert_eq!(
        run_x("multivalue([])", Value::Int(1)).unwrap(),
        Out::Many(vec![])
    );
    let e = err("[multivalue([1])]", Value::Int(0));
    assert!(e.message.contains("multivalue"), "{e}");
    assert!(run_x("multivalue([()])", Value::Int(0)).is_err());
    // The case 03 script.
    let code = "let a = x[0];\nlet b = x[1];\nif a > 5 && b > 5 { multivalue([a, b]) }\n\
                else if a > 5 { a }\nelse if b > 5 { b }\nelse { () }";
    let pair = |a, b| arr(vec![Value::Int(a), Value::Int(b)]);
    let mut f = compile(code);
    let got: Vec<Out> = [(10, 10), (2, 20), (30, 3), (4, 4)]
        .iter()
        .map(|&(a, b)| f.call(&[("x", pair(a, b))]).unwrap())
        .collect();
    assert_eq!(
        got,
        vec![
            Out::Many(vec![Value::Int(10), Value::Int(10)]),
            Out::One(Value::Int(20)),
            Out::One(Value::Int(30)),
            Out::Nothing
        ]
    );
}

#[test]
fn stateful_shapes() {
    let mut f = compile("[x + state, state + 1]");
    let (out, s) = f
        .call_stateful(&[("x", Value::Int(10)), ("state", Value::Int(1))])
        .unwrap();
    assert_eq!((out, s), (Out::One(Value::Int(11)), Value::Int(2)));
    let mut f = compile("[(), state]");
    let (out, _) = f.call_stateful(&[("state", Value::Int(1))]).unwrap();
    assert_eq!(out, Out::Nothing);
    let mut f = compile("[multivalue([1, 2]), state]");
    let (out, _) = f.call_stateful(&[("state", Value::Int(1))]).unwrap();
    assert_eq!(out, Out::Many(vec![Value::Int(1), Value::Int(2)]));
    for bad in ["x", "[x]", "[x, x, x]", "[x, ()]"] {
        let mut f = compile(bad);
        let e = f
            .call_stateful(&[("x", Value::Int(1)), ("state", Value::Int(0))])
            .expect_err(bad);
        assert_eq!(e.kind, ScriptErrorKind::Shape, "{bad}: {e}");
    }
    // Object-map state, as a TOML table becomes.
    let mut state = BTreeMap::new();
    state.insert("count".to_string(), Value::Int(4));
    let mut f = compile("state.count += 1; [x * state.count, state]");
    let (out, s) = f
        .call_stateful(&[("x", Value::Int(2)), ("state", Value::Map(state))])
        .unwrap();
    assert_eq!(out, Out::One(Value::Int(10)));
    assert_eq!(s, Value::from_json(r#"{"count": 5}"#).unwrap());
}

#[test]
fn split_entries_shapes() {
    let mut f = compile("if x % 2 == 0 { [x, ()] } else { [(), x] }");
    assert_eq!(
        f.call_split(&[("x", Value::Int(4))], Some(2)).unwrap(),
        vec![Out::One(Value::Int(4)), Out::Nothing]
    );
    assert_eq!(
        f.call_split(&[("x", Value::Int(3))], Some(2)).unwrap(),
        vec![Out::Nothing, Out::One(Value::Int(3))]
    );
    let e = f.call_split(&[("x", Value::Int(3))], Some(3)).unwrap_err();
    assert_eq!(e.kind, ScriptErrorKind::Shape);
    let mut f = compile("[multivalue([x, x]), x]");
    assert_eq!(
        f.call_split(&[("x", Value::Int(1))], None).unwrap(),
        vec![
            Out::Many(vec![Value::Int(1), Value::Int(1)]),
            Out::One(Value::Int(1))
        ]
    );
    let mut f = compile("x");
    assert!(f.call_split(&[("x", Value::Int(1))], None).is_err());
}

#[test]
fn reducers_follow_the_number_rules() {
    assert_eq!(eval("sum([1, 2])"), Value::Int(3));
    assert_eq!(eval("sum([])"), Value::Int(0));
    assert_eq!(eval("sum([1, 2.5])"), Value::Float(3.5));
    assert_eq!(eval("sum([2.0])"), Value::Float(2.0));
    assert_eq!(eval("mean([1, 2])"), Value::Float(1.5));
    assert_eq!(eval("std([1, 3])"), Value::Float(1.0));
    assert_eq!(eval("std([2, 2, 2])"), Value::Float(0.0));
    assert_eq!(eval("max([1, 3, 2])"), Value::Int(3));
    assert_eq!(eval("max([1, 3.0, 2])"), Value::Float(3.0));
    assert_eq!(eval("max([1, 3, 2.5])"), Value::Int(3));
    assert_eq!(eval("min([1.5, 1, 2])"), Value::Int(1));
    assert_eq!(eval("min([4, 4.0])"), Value::Int(4), "ties keep the first");
    assert_eq!(eval("len([1, 2, 3])"), Value::Int(3));
    assert_eq!(eval("[1, 2].len()"), Value::Int(2));
    // The two-argument forms of the standard library still work.
    assert_eq!(eval("max(1, 2)"), Value::Int(2));
    assert_eq!(eval("min(1.5, 2.5)"), Value::Float(1.5));
    // Errors.
    let e = err("sum([9223372036854775807, 1])", Value::Null);
    assert!(e.message.contains("overflow"), "{e}");
    assert!(err("max([])", Value::Null).message.contains("empty"));
    assert!(err("mean([])", Value::Null).message.contains("empty"));
    assert!(err("sum([1, \"a\"])", Value::Null)
        .message
        .contains("not a number"));
    // The same functions serve `agg`.
    let w = [Value::Int(1), Value::Float(2.5)];
    assert_eq!(Value::from(reduce::sum(&w).unwrap()), Value::Float(3.5));
    assert_eq!(reduce::argmax(&w).unwrap(), 1);
    // Case 08's window script.
    let mut params = BTreeMap::new();
    params.insert("cutoff".to_string(), Value::Int(15));
    let code = "let hi = max([max(windows[0]), max(windows[1]), cutoff, state]);\n\
                let lo = min([min(windows[0]), min(windows[1]), cutoff, state]);\n\
                [[hi, lo], state + 2]";
    let mut f = ScriptFn::compile(code, "extremes", 40, &params).unwrap();
    let windows = Value::from_json("[[0,1,2],[10,12,14]]").unwrap();
    let (out, s) = f
        .call_stateful(&[("windows", windows), ("state", Value::Int(0))])
        .unwrap();
    assert_eq!(out, Out::One(Value::from_json("[15,0]").unwrap()));
    assert_eq!(s, Value::Int(2));
}

#[test]
fn rhai_number_rules() {
    assert_eq!(one("x / 2", Value::Int(7)), Value::Int(3));
    assert_eq!(one("x / 2", Value::Int(-7)), Value::Int(-3));
    assert_eq!(one("x % 3", Value::Int(-7)), Value::Int(-1));
    assert_eq!(one("x + 0.5", Value::Int(1)), Value::Float(1.5));
    assert_eq!(one("x < 1.5", Value::Int(1)), Value::Bool(true));
    assert_eq!(one("x == 2.0", Value::Int(2)), Value::Bool(true));
    assert_eq!(
        one("[x / 2, x.to_float() / 2.0]", Value::Int(3)),
        Value::from_json("[1, 1.5]").unwrap()
    );
    let e = err("x + 1", Value::Int(i64::MAX));
    assert!(e.message.contains("overflow"), "{e}");
    let e = err("x / 0", Value::Int(1));
    assert!(e.message.contains("Division by zero"), "{e}");
    let e = err("x * 2", Value::Str("abc".into()));
    assert!(e.message.contains("Function not found"), "{e}");
    assert_eq!(e.element.as_deref(), Some("\"abc\""));
}

#[test]
fn std_library_and_params() {
    assert_eq!(
        one("let s = 0; for i in 0..x { s += i; } s", Value::Int(5)),
        Value::Int(10)
    );
    assert_eq!(
        one(
            "let a = []; for i in 0..x { a.push(i * i); } a",
            Value::Int(4)
        ),
        Value::from_json("[0, 1, 4, 9]").unwrap()
    );
    assert_eq!(one("#{a: x}.a", Value::Int(3)), Value::Int(3));
    assert_eq!(
        one("x.to_upper()", Value::Str("ab".into())),
        Value::Str("AB".into())
    );
    assert_eq!(one("(x * 1.0).sqrt()", Value::Int(4)), Value::Float(2.0));
    assert_eq!(one("x.to_int()", Value::Float(2.7)), Value::Int(2));
    let mut params = BTreeMap::new();
    params.insert("factor".to_string(), Value::Int(3));
    params.insert("name".to_string(), Value::Str("n".into()));
    let mut f = ScriptFn::compile("x * factor", "op", 1, &params).unwrap();
    assert!(f.has_fast_path());
    assert_eq!(
        f.call(&[("x", Value::Int(2))]).unwrap(),
        Out::One(Value::Int(6))
    );
    let mut f = ScriptFn::compile("name + x", "op", 1, &params).unwrap();
    assert_eq!(
        f.call(&[("x", Value::Int(2))]).unwrap(),
        Out::One(Value::Str("n2".into()))
    );
    // Params are constants; a binding of the same name shadows a param.
    let mut f = ScriptFn::compile("factor = 2; factor", "op", 1, &params).unwrap();
    assert!(f.call(&[("x", Value::Int(2))]).is_err());
    let mut f = ScriptFn::compile("x * factor", "op", 1, &params).unwrap();
    assert_eq!(
        f.call(&[("x", Value::Int(2)), ("factor", Value::Int(10))])
            .unwrap(),
        Out::One(Value::Int(20))
    );
}

#[test]
fn scope_does_not_leak_between_calls() {
    let mut f = compile("let y = x; x = 0; y");
    for i in 0..5 {
        assert_eq!(
            f.call(&[("x", Value::Int(i))]).unwrap(),
            Out::One(Value::Int(i))
        );
    }
    // Changing the bound names rebinds.
    let mut f = compile("if is_def_var(\"state\") { state } else { x }");
    assert_eq!(
        f.call(&[("x", Value::Int(1))]).unwrap(),
        Out::One(Value::Int(1))
    );
    assert_eq!(
        f.call(&[("x", Value::Int(1)), ("state", Value::Int(7))])
            .unwrap(),
        Out::One(Value::Int(7))
    );
    assert_eq!(
        f.call(&[("x", Value::Int(2))]).unwrap(),
        Out::One(Value::Int(2))
    );
}

#[test]
fn sandbox_limits() {
    let limits = EngineLimits {
        max_operations: 100_000,
        ..EngineLimits::default()
    };
    let engine = Arc::new(build_engine(&limits));
    let mut f = ScriptFn::compile_with(engine, "loop {}", "spin", 1, &no_params()).unwrap();
    let t = Instant::now();
    let e = f.call(&[("x", Value::Int(0))]).unwrap_err();
    assert!(t.elapsed() < Duration::from_secs(5));
    assert!(e.message.contains("Too many operations"), "{e}");
    // The default engine bounds operations too.
    assert!(EngineLimits::default().max_operations > 0);

    let mut f = compile("import \"x\" as m; 1");
    let e = f.call(&[("x", Value::Int(0))]).unwrap_err();
    assert!(e.message.contains("Module not found"), "{e}");

    let r = ScriptFn::compile("eval(\"1\")", "op", 1, &no_params())
        .and_then(|mut f| f.call(&[("x", Value::Int(0))]));
    assert!(r.is_err(), "eval must not run");

    let e = err("let s = \"ab\"; loop { s += s; }", Value::Null);
    assert!(
        e.message.contains("too large") || e.message.contains("Too many"),
        "{e}"
    );
    let e = err("fn f(n) { f(n + 1) } f(0)", Value::Null);
    assert!(e.message.contains("Stack overflow"), "{e}");
}

#[test]
fn syntax_errors_name_the_manifest_line() {
    let e = ScriptFn::compile("let a = 1;\nlet b = ;\n", "double", 20, &no_params()).unwrap_err();
    assert_eq!(e.kind, ScriptErrorKind::Syntax);
    assert_eq!(e.line, 21);
    assert!(e.column.is_some());
    let text = e.to_string();
    assert!(
        text.starts_with(
            "operator \"double\": script syntax error at pipeline.toml line 21, column"
        ),
        "{text}"
    );
}

#[test]
fn runtime_errors_name_the_manifest_line_and_element() {
    let mut f = ScriptFn::compile("let a = x;\na * 2", "double", 20, &no_params()).unwrap();
    let e = f.call(&[("x", Value::Str("abc".into()))]).unwrap_err();
    assert_eq!(e.line, 21);
    assert_eq!(e.operator, "double");
    assert_eq!(e.message, "Function not found: * (string, i64)");
    let text = e.with_file("p.toml").to_string();
    assert_eq!(
        text,
        "operator \"double\": script error at p.toml line 21, column 3: \
         Function not found: * (string, i64) (element: \"abc\")"
    );
    let mut f = ScriptFn::compile("fn g(a) {\n a / 0\n}\ng(x)", "div", 5, &no_params()).unwrap();
    let e = f.call(&[("x", Value::Int(1))]).unwrap_err();
    assert_eq!(e.line, 6, "{e}");
    assert!(e.message.contains("Division by zero"), "{e}");
    assert!(e.message.contains("'g'"), "{e}");
}

#[test]
fn value_conversions_round_trip() {
    let v = Value::from_json(r#"[null, true, 1, 2.5, "s", [1, [2]], {"a": {"b": null}}]"#).unwrap();
    assert_eq!(from_dynamic(to_dynamic(&v)).unwrap(), v);
    assert_eq!(one("x", v.clone()), v);
    assert_eq!(eval("'c'"), Value::Str("c".into()));
    assert!(run_x("Fn(\"f\")", Value::Null).is_err());
    assert!(run_x("timestamp()", Value::Null).is_err());
    assert!(run_x("0..3", Value::Null).is_err());
}

#[test]
fn fast_path_recognition() {
    for code in [
        "x * 2",
        "x % 2 == 1",
        "x < 100",
        "-x + 1.5",
        "!(x > 1) || x == 0",
        "(x + 1) * (x - 1)",
        "2 * x",
    ] {
        assert!(compile(code).has_fast_path(), "{code}");
    }
    for code in [
        "x.abs()",
        "sum(x)",
        "let y = x; y",
        "x[0]",
        "\"a\" + x",
        "x ** 2",
        "fn f() {1} x",
        "x * 2; x",
    ] {
        assert!(!compile(code).has_fast_path(), "{code}");
    }
    // Falls back for operand types it does not handle.
    let mut f = compile("x * 2");
    assert!(f.has_fast_path());
    assert_eq!(
        f.call(&[("x", Value::Str("ab".into()))])
            .unwrap_err()
            .message,
        "Function not found: * (string, i64)"
    );
    assert_eq!(
        f.call(&[("x", Value::Int(21))]).unwrap(),
        Out::One(Value::Int(42))
    );
    let e = f.call(&[("x", Value::Int(i64::MAX))]).unwrap_err();
    assert!(e.message.contains("overflow"), "{e}");
    // A variable that is not bound: Rhai's error (or NULL, a global).
    let mut f = compile("y + 1");
    assert!(f.call(&[("x", Value::Int(1))]).is_err());
    let mut f = compile("x == NULL");
    assert_eq!(
        f.call(&[("x", Value::Int(1))]).unwrap(),
        Out::One(Value::Bool(false))
    );
}

#[test]
fn trailing_semicolon_matches_rhai() {
    // Whatever Rhai returns for a trailing `;`, the fast path must agree.
    let mut a = compile("x * 2;");
    let mut b = compile("x * 2;");
    b.set_fast_path(false);
    assert_eq!(
        a.call(&[("x", Value::Int(2))]).unwrap(),
        b.call(&[("x", Value::Int(2))]).unwrap()
    );
}

#[test]
fn call_batch_matches_call() {
    let xs: Vec<Value> = vec![
        Value::Int(1),
        Value::Float(2.5),
        Value::Str("s".into()),
        Value::Bool(true),
        Value::Null,
    ];
    let mut f = compile("x + x");
    let mut g = compile("x + x");
    g.set_fast_path(false);
    let batch = f.call_batch("x", &xs[..3]).unwrap();
    let single: Vec<Out> = xs[..3]
        .iter()
        .map(|x| g.call(&[("x", x)]).unwrap())
        .collect();
    assert_eq!(batch, single);
    assert_eq!(batch[1], Out::One(Value::Float(5.0)));
    let (i, e) = f.call_batch("x", &xs).unwrap_err();
    assert_eq!(i, 3);
    assert_eq!(e, g.call(&[("x", &xs[3])]).unwrap_err());
    let mut f = compile("10 / x");
    let (i, e) = f
        .call_batch(
            "x",
            &[Value::Int(1), Value::Int(2), Value::Int(0), Value::Int(3)],
        )
        .unwrap_err();
    assert_eq!(i, 2);
    assert!(e.message.contains("Division by zero"));
    assert_eq!(e.element.as_deref(), Some("0"));
    let mut f = compile("let s = 0; for i in 0..x { s += i; } s");
    let out = f.call_batch("x", &[Value::Int(3), Value::Int(4)]).unwrap();
    assert_eq!(out, vec![Out::One(Value::Int(3)), Out::One(Value::Int(6))]);
}

// ---- Property test: the fast path agrees with Rhai. ----

fn int_input() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Int(i64::MAX)),
        Just(Value::Int(i64::MIN)),
        Just(Value::Int(0)),
        Just(Value::Int(-1)),
        Just(Value::Int(1)),
        Just(Value::Int(i64::MAX - 1)),
        Just(Value::Int(i64::MIN + 1)),
        (-1000i64..1000).prop_map(Value::Int),
        any::<i64>().prop_map(Value::Int),
    ]
}

fn float_input() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Float(0.0)),
        Just(Value::Float(-0.0)),
        Just(Value::Float(1.0)),
        Just(Value::Float(f64::NAN)),
        Just(Value::Float(f64::INFINITY)),
        Just(Value::Float(f64::MIN_POSITIVE)),
        Just(Value::Float(9.223372036854776e18)),
        (-1000.0f64..1000.0).prop_map(Value::Float),
        any::<f64>().prop_map(Value::Float),
    ]
}

fn input() -> impl Strategy<Value = Value> {
    prop_oneof![
        4 => int_input(),
        3 => float_input(),
        1 => any::<bool>().prop_map(Value::Bool),
        1 => Just(Value::Str("s".into())),
    ]
}

fn leaf() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => Just("x".to_string()),
        2 => Just("y".to_string()),
        1 => Just("k".to_string()),
        2 => prop_oneof![
            Just("0".to_string()),
            Just("1".to_string()),
            Just("2".to_string()),
            Just("-1".to_string()),
            Just("9223372036854775807".to_string()),
            Just("(-9223372036854775807 - 1)".to_string()),
            (-100i64..100).prop_map(|i| i.to_string()),
        ],
        1 => prop_oneof![
            Just("0.0".to_string()),
            Just("1.5".to_string()),
            Just("-2.25".to_string()),
            Just("1.0e300".to_string()),
            Just("0.1".to_string()),
        ],
        1 => prop_oneof![Just("true".to_string()), Just("false".to_string())],
    ]
}

fn expr() -> impl Strategy<Value = String> {
    leaf().prop_recursive(4, 24, 2, |inner| {
        let ops = prop_oneof![
            Just("+"), Just("-"), Just("*"), Just("/"), Just("%"),
            Just("<"), Just("<="), Just(">"), Just(">="), Just("=="), Just("!="),
            Just("&&"), Just("||"),
        ];
        prop_oneof![
            4 => (inner.clone(), ops.clone(), inner.clone()).prop_map(|(a, o, b)| format!("({a} {o} {b})")),
            2 => (inner.clone(), ops, inner.clone()).prop_map(|(a, o, b)| format!("{a} {o} {b}")),
            1 => inner.clone().prop_map(|a| format!("- {a}")),
            1 => inner.clone().prop_map(|a| format!("-({a})")),
            1 => inner.clone().prop_map(|a| format!("+({a})")),
            1 => inner.prop_map(|a| format!("!({a})")),
        ]
    })
}

/// Same results: equal values (floats bit for bit, or both NaN) or both errors.
fn same(a: &Result<Out, ScriptError>, b: &Result<Out, ScriptError>) -> bool {
    match (a, b) {
        (Ok(Out::One(Value::Float(x))), Ok(Out::One(Value::Float(y)))) => {
            x.to_bits() == y.to_bits() || (x.is_nan() && y.is_nan())
        }
        (Ok(x), Ok(y)) => x == y,
        (Err(x), Err(y)) => x == y,
        _ => false,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]
    #[test]
    fn fast_path_agrees_with_rhai(code in expr(), x in input(), y in input()) {
        let mut params = BTreeMap::new();
        params.insert("k".to_string(), Value::Int(3));
        let Ok(mut fast) = ScriptFn::compile(&code, "p", 1, &params) else {
            // Not valid Rhai (e.g. an over-long literal): nothing to compare.
            return Ok(());
        };
        let mut slow = ScriptFn::compile(&code, "p", 1, &params).unwrap();
        slow.set_fast_path(false);
        let bindings = [("x", x.clone()), ("y", y.clone())];
        let a = fast.call(&bindings);
        let b = slow.call(&bindings);
        prop_assert!(same(&a, &b), "{code} with x={x:?} y={y:?}: fast {a:?} vs rhai {b:?}");
        // The native evaluation alone (no fallback) never disagrees with a Rhai value.
        if let Some(v) = fast.try_fast(&bindings) {
            prop_assert!(same(&Ok(Out::One(v.clone())), &b), "{code}: native {v:?} vs rhai {b:?}");
        }
        let batch = fast.call_batch("x", std::slice::from_ref(&x));
        let single = slow.call(&[("x", x.clone())]);
        match (batch, single) {
            (Ok(mut outs), s) => prop_assert!(same(&Ok(outs.remove(0)), &s), "{code} batch"),
            (Err((_, e)), s) => prop_assert!(same(&Err(e), &s), "{code} batch err"),
        }
    }

    #[test]
    fn simple_expressions_take_the_fast_path(code in expr()) {
        if let Ok(f) = ScriptFn::compile(&code, "p", 1, &BTreeMap::new()) {
            prop_assert!(f.has_fast_path(), "{code} should be fast");
        }
    }
}

#[test]
fn map_batch_and_filter_batch_match_per_element_calls_and_keep_what_came_before_an_error() {
    let xs = vec![
        Value::Int(1),
        Value::Float(2.5),
        Value::Str("s".into()),
        Value::Int(0),
        Value::Int(4),
    ];
    // `10 / x` takes the fast path for numbers, Rhai for the string (an error) and 0 (an error).
    let mut f = compile("10 / x");
    let mut out = vec![];
    let (i, e) = f.map_batch("x", xs.clone(), &mut out).unwrap_err();
    assert_eq!(i, 2);
    assert_eq!(out, vec![Value::Int(10), Value::Float(4.0)]);
    assert_eq!(e.element.as_deref(), Some("\"s\""));
    let mut f = compile("if x > 1 { multivalue([x, x]) } else { () }");
    let mut out = vec![];
    f.map_batch("x", vec![Value::Int(1), Value::Int(2)], &mut out)
        .unwrap();
    assert_eq!(out, vec![Value::Int(2), Value::Int(2)]);
    let mut f = compile("x % 2 == 0");
    let mut out = vec![];
    f.filter_batch("x", (0..6).map(Value::Int).collect(), &mut out)
        .unwrap();
    assert_eq!(out, vec![Value::Int(0), Value::Int(2), Value::Int(4)]);
    let mut f = compile("x + 1");
    let mut out = vec![];
    let (i, e) = f
        .filter_batch("x", vec![Value::Int(1)], &mut out)
        .unwrap_err();
    assert_eq!(i, 0);
    assert!(e.message.contains("bool"), "{}", e.message);
}

/// `x op c` and `c op x`: the shapes the batch kernels compile to one loop each.
fn simple_shape() -> impl Strategy<Value = String> {
    let op = prop_oneof![
        Just("+"),
        Just("-"),
        Just("*"),
        Just("/"),
        Just("%"),
        Just("<"),
        Just("<="),
        Just(">"),
        Just(">="),
        Just("=="),
        Just("!="),
    ];
    (leaf(), op, any::<bool>()).prop_map(|(c, o, var_first)| {
        if var_first {
            format!("x {o} {c}")
        } else {
            format!("{c} {o} x")
        }
    })
}

/// Same batches: element for element equal (floats bit for bit, or both NaN).
fn same_values(a: &[Value], b: &[Value]) -> bool {
    a.len() == b.len()
        && a.iter().zip(b).all(|(x, y)| match (x, y) {
            (Value::Float(x), Value::Float(y)) => {
                x.to_bits() == y.to_bits() || (x.is_nan() && y.is_nan())
            }
            _ => x == y,
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1500))]
    /// A batch through the native kernels gives what Rhai gives element by element: the same
    /// outputs, the same failing element and error, the same output before it.
    #[test]
    fn batches_agree_with_rhai(
        code in prop_oneof![simple_shape(), expr()],
        xs in proptest::collection::vec(input(), 0..40),
        prefix in proptest::collection::vec(int_input(), 0..3),
    ) {
        let mut params = BTreeMap::new();
        params.insert("k".to_string(), Value::Int(3));
        params.insert("y".to_string(), Value::Float(0.5));
        let Ok(mut fast) = ScriptFn::compile(&code, "p", 1, &params) else {
            return Ok(());
        };
        let mut slow = ScriptFn::compile(&code, "p", 1, &params).unwrap();
        slow.set_fast_path(false);
        for filter in [false, true] {
            // Outputs already holding elements (as a batch after others) must keep them.
            let (mut a, mut b) = (prefix.clone(), prefix.clone());
            let (ra, rb) = if filter {
                (fast.filter_batch("x", xs.clone(), &mut a), slow.filter_batch("x", xs.clone(), &mut b))
            } else {
                (fast.map_batch("x", xs.clone(), &mut a), slow.map_batch("x", xs.clone(), &mut b))
            };
            prop_assert!(same_values(&a, &b), "{code} filter={filter} {xs:?}: fast {a:?} vs rhai {b:?}");
            let same_result = |ra: &Result<(), (usize, ScriptError)>, rb: &Result<(), (usize, ScriptError)>| match (ra, rb) {
                (Ok(()), Ok(())) => true,
                (Err((i, e)), Err((j, f))) => i == j && e == f,
                _ => false,
            };
            prop_assert!(same_result(&ra, &rb), "{code} filter={filter} {xs:?}: fast {ra:?} vs rhai {rb:?}");
            {
                // Reading the batch instead of taking it: the same, and the batch unchanged.
                let mut c = prefix.clone();
                let kept = xs.clone();
                let rc = if filter {
                    fast.filter_batch_ref("x", &kept, &mut c)
                } else {
                    fast.map_batch_ref("x", &kept, &mut c)
                };
                prop_assert!(same_values(&kept, &xs), "{code}: the batch read was changed");
                prop_assert!(same_values(&c, &b), "{code} {xs:?}: by reference {c:?} vs rhai {b:?}");
                prop_assert!(same_result(&rc, &rb), "{code} {xs:?}: by reference {rc:?} vs rhai {rb:?}");
            }
        }
    }
}
