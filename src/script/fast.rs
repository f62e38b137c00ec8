//! Native evaluation of simple numeric expressions, reproducing Rhai's semantics exactly.
//!
//! A script qualifies when its compiled AST is a single expression built from integer, float and
//! bool literals, variables, `+ - * / %`, the six comparisons, `&& || !`, unary `-`/`+`.
//! Evaluation returns `None` whenever Rhai would do something else than the plain numeric result
//! (an error, a type this evaluator does not handle, a mixed-type comparison); the caller then
//! runs the real Rhai call, so results (and error messages) are always identical.

use rhai::{Expr, Stmt, Token, AST, FLOAT};

use crate::Value;

/// A scalar the fast path computes with.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Num {
    /// An i64.
    I(i64),
    /// An f64.
    F(f64),
    /// A bool.
    B(bool),
}

impl Num {
    /// The scalar of a value, if it is one the fast path handles.
    #[inline]
    pub(crate) fn of(v: &Value) -> Option<Num> {
        match v {
            Value::Int(i) => Some(Num::I(*i)),
            Value::Float(f) => Some(Num::F(*f)),
            Value::Bool(b) => Some(Num::B(*b)),
            _ => None,
        }
    }

    /// The scalar as a value.
    #[inline(always)]
    pub(crate) fn into_value(self) -> Value {
        match self {
            Num::I(i) => Value::Int(i),
            Num::F(f) => Value::Float(f),
            Num::B(b) => Value::Bool(b),
        }
    }
}

/// A binary operator of the fast subset.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    Add,
    Sub,
    Mul,
    Div,
    Rem,
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

/// An expression tree node.
#[derive(Clone, Debug)]
enum Node {
    Const(Num),
    Var(usize),
    Neg(Box<Node>),
    Plus(Box<Node>),
    Not(Box<Node>),
    Bin(Op, Box<Node>, Box<Node>),
    And(Vec<Node>),
    Or(Vec<Node>),
}

/// Flat forms of common expressions.
#[derive(Clone, Copy, Debug)]
enum Shape {
    /// Walk the tree.
    Tree,
    /// `slot op constant`.
    VarConst(Op, usize, Num),
    /// `constant op slot`.
    ConstVar(Op, Num, usize),
}

/// The most distinct variables a fast expression may use.
pub(crate) const MAX_VARS: usize = 4;

/// A compiled simple expression; variables are numbered slots named in `vars`.
#[derive(Clone, Debug)]
pub(crate) struct FastExpr {
    root: Node,
    /// A flat form of the most common shapes (`x op c`, `c op x`), skipping the tree walk.
    shape: Shape,
    /// The variable names, by slot.
    pub(crate) vars: Vec<String>,
}

impl FastExpr {
    /// Recognizes a single simple expression in `ast`; `None` if the script is anything else.
    pub(crate) fn from_ast(ast: &AST) -> Option<FastExpr> {
        if ast.has_functions() {
            return None;
        }
        let [stmt] = ast.statements() else {
            return None;
        };
        let mut vars = Vec::new();
        let root = match stmt {
            Stmt::Expr(e) => node(e, &mut vars)?,
            Stmt::FnCall(call, _) => call_node(call, &mut vars)?,
            _ => return None,
        };
        let shape = match &root {
            Node::Bin(op, a, b) => match (&**a, &**b) {
                (Node::Var(i), Node::Const(c)) => Shape::VarConst(*op, *i, *c),
                (Node::Const(c), Node::Var(i)) => Shape::ConstVar(*op, *c, *i),
                _ => Shape::Tree,
            },
            _ => Shape::Tree,
        };
        Some(FastExpr { root, shape, vars })
    }

    /// Evaluates with the variables' values by slot; `None` means "ask Rhai".
    #[inline(always)]
    pub(crate) fn eval(&self, slots: &[Num]) -> Option<Num> {
        match self.shape {
            Shape::VarConst(op, i, c) => binary(op, *slots.get(i)?, c),
            Shape::ConstVar(op, c, i) => binary(op, c, *slots.get(i)?),
            Shape::Tree => eval(&self.root, slots),
        }
    }
}

/// Runs `f` over the leading elements of `xs` in place, as long as each is a scalar for which
/// `f` has a result; returns how many were replaced (the element there, if any, is untouched).
#[inline(always)]
fn map_run(xs: &mut [Value], f: impl Fn(Num) -> Option<Num>) -> usize {
    for (i, x) in xs.iter_mut().enumerate() {
        match Num::of(x).and_then(&f) {
            // SAFETY: `x` is a scalar (`Num::of` took it), which owns no memory: overwriting
            // it without its drop call leaks nothing.
            Some(r) => unsafe { std::ptr::write(x, r.into_value()) },
            None => return i,
        }
    }
    xs.len()
}

/// Like [`map_run`], reading `xs` and appending the results to `out` (`xs` is left as it was).
#[inline(always)]
fn map_into_run((xs, out): (&[Value], &mut Vec<Value>), f: impl Fn(Num) -> Option<Num>) -> usize {
    let start = out.len();
    out.reserve(xs.len());
    let mut n = 0;
    for (slot, x) in out.spare_capacity_mut()[..xs.len()].iter_mut().zip(xs) {
        match Num::of(x).and_then(&f) {
            Some(r) => {
                slot.write(r.into_value());
                n += 1;
            }
            None => break,
        }
    }
    // SAFETY: the first `n` spare slots were just initialized.
    unsafe { out.set_len(start + n) };
    n
}

/// Like [`filter_run`], reading `xs` and appending copies of the kept elements to `out`
/// (`xs` is left as it was); returns how many elements were decided.
#[inline(always)]
fn filter_into_run(
    (xs, out): (&[Value], &mut Vec<Value>),
    f: impl Fn(Num) -> Option<Num>,
) -> usize {
    for (i, x) in xs.iter().enumerate() {
        match Num::of(x).and_then(&f) {
            // A scalar (`Num::of` took it): its clone is a plain copy.
            Some(Num::B(keep)) => {
                if keep {
                    out.push(x.clone());
                }
            }
            _ => return i,
        }
    }
    xs.len()
}

/// Runs the filter `f` over the leading elements of `xs` as long as each is a scalar for which
/// `f` gives a bool, moving those it keeps to the front, in order; returns (how many elements
/// were decided, how many of them were kept).
#[inline(always)]
fn filter_run(xs: &mut [Value], f: impl Fn(Num) -> Option<Num>) -> (usize, usize) {
    let mut kept = 0;
    for i in 0..xs.len() {
        match Num::of(&xs[i]).and_then(&f) {
            Some(Num::B(keep)) => {
                if keep {
                    xs.swap(kept, i);
                    kept += 1;
                }
            }
            _ => return (i, kept),
        }
    }
    (xs.len(), kept)
}

/// Calls `$run(xs, closure)` with the closure computing `$e` for an operator known at compile
/// time (one loop per operator, each with its operator's code inlined).
macro_rules! per_op {
    ($op:expr, |$o:ident| $call:expr) => {
        match $op {
            Op::Add => {
                const $o: Op = Op::Add;
                $call
            }
            Op::Sub => {
                const $o: Op = Op::Sub;
                $call
            }
            Op::Mul => {
                const $o: Op = Op::Mul;
                $call
            }
            Op::Div => {
                const $o: Op = Op::Div;
                $call
            }
            Op::Rem => {
                const $o: Op = Op::Rem;
                $call
            }
            Op::Eq => {
                const $o: Op = Op::Eq;
                $call
            }
            Op::Ne => {
                const $o: Op = Op::Ne;
                $call
            }
            Op::Lt => {
                const $o: Op = Op::Lt;
                $call
            }
            Op::Le => {
                const $o: Op = Op::Le;
                $call
            }
            Op::Gt => {
                const $o: Op = Op::Gt;
                $call
            }
            Op::Ge => {
                const $o: Op = Op::Ge;
                $call
            }
        }
    };
}

/// Calls `$run(xs, f)` with `f` the expression as a function of the element's scalar, the shape
/// (`x op c`, `c op x`), the operator and the constant's type all fixed at compile time.
macro_rules! batch_kernel {
    ($self:expr, $slots:expr, $k:expr, $xs:expr, $run:ident) => {{
        let (slots, k, xs) = ($slots, $k, $xs);
        match $self.shape {
            Shape::VarConst(op, i, c) if i == k => per_op!(op, |O| match c {
                Num::I(c) => $run(xs, |n| binary(O, n, Num::I(c))),
                Num::F(c) => $run(xs, |n| binary(O, n, Num::F(c))),
                Num::B(c) => $run(xs, |n| binary(O, n, Num::B(c))),
            }),
            Shape::ConstVar(op, c, i) if i == k => per_op!(op, |O| match c {
                Num::I(c) => $run(xs, |n| binary(O, Num::I(c), n)),
                Num::F(c) => $run(xs, |n| binary(O, Num::F(c), n)),
                Num::B(c) => $run(xs, |n| binary(O, Num::B(c), n)),
            }),
            _ => $run(xs, |n| {
                let mut s: [Num; MAX_VARS] = slots;
                *s.get_mut(k)? = n;
                $self.eval(&s)
            }),
        }
    }};
}

impl FastExpr {
    /// `map_element` over the leading elements of `xs`, in place: the element goes in slot `k`,
    /// the other slots hold `slots`. Returns how many elements were replaced by their result;
    /// the rest (from the first element the fast path leaves to Rhai) are untouched.
    pub(crate) fn map_prefix(&self, slots: [Num; MAX_VARS], k: usize, xs: &mut [Value]) -> usize {
        batch_kernel!(self, slots, k, xs, map_run)
    }

    /// [`FastExpr::map_prefix`] reading `xs` and appending the results to `out` instead.
    pub(crate) fn map_prefix_into(
        &self,
        slots: [Num; MAX_VARS],
        k: usize,
        xs: &[Value],
        out: &mut Vec<Value>,
    ) -> usize {
        batch_kernel!(self, slots, k, (xs, out), map_into_run)
    }

    /// [`FastExpr::filter_prefix`] reading `xs` and appending copies of the kept elements to
    /// `out` instead; returns how many elements were decided.
    pub(crate) fn filter_prefix_into(
        &self,
        slots: [Num; MAX_VARS],
        k: usize,
        xs: &[Value],
        out: &mut Vec<Value>,
    ) -> usize {
        batch_kernel!(self, slots, k, (xs, out), filter_into_run)
    }

    /// `filter_element` over the leading elements of `xs`, in place (see [`FastExpr::map_prefix`]):
    /// returns (how many were decided, how many of those were kept); the kept ones are moved to
    /// the front, in order, and the rest from the first undecided element are untouched.
    pub(crate) fn filter_prefix(
        &self,
        slots: [Num; MAX_VARS],
        k: usize,
        xs: &mut [Value],
    ) -> (usize, usize) {
        batch_kernel!(self, slots, k, xs, filter_run)
    }
}

/// Translates one expression.
fn node(e: &Expr, vars: &mut Vec<String>) -> Option<Node> {
    Some(match e {
        Expr::IntegerConstant(i, _) => Node::Const(Num::I(*i)),
        Expr::FloatConstant(f, _) => Node::Const(Num::F(**f)),
        Expr::BoolConstant(b, _) => Node::Const(Num::B(*b)),
        Expr::Variable(v, _, _) => {
            if !v.2.is_empty() {
                return None;
            }
            let name = v.1.as_str();
            let slot = match vars.iter().position(|n| n == name) {
                Some(slot) => slot,
                None if vars.len() < MAX_VARS => {
                    vars.push(name.to_string());
                    vars.len() - 1
                }
                None => return None,
            };
            Node::Var(slot)
        }
        Expr::FnCall(call, _) => call_node(call, vars)?,
        Expr::And(xs, _) => Node::And(xs.iter().map(|x| node(x, vars)).collect::<Option<_>>()?),
        Expr::Or(xs, _) => Node::Or(xs.iter().map(|x| node(x, vars)).collect::<Option<_>>()?),
        _ => return None,
    })
}

/// Translates an operator call (only native operators qualify, never named functions).
fn call_node(call: &rhai::FnCallExpr, vars: &mut Vec<String>) -> Option<Node> {
    if !call.namespace.is_empty() {
        return None;
    }
    let token = call.op_token.as_ref()?;
    let name = call.name.as_str();
    match call.args.as_slice() {
        [a] => {
            let a = Box::new(node(a, vars)?);
            match (token, name) {
                (Token::Minus | Token::UnaryMinus, "-") => Some(Node::Neg(a)),
                (Token::Plus | Token::UnaryPlus, "+") => Some(Node::Plus(a)),
                (Token::Bang, "!") => Some(Node::Not(a)),
                _ => None,
            }
        }
        [a, b] => {
            let op = match (token, name) {
                (Token::Plus, "+") => Op::Add,
                (Token::Minus, "-") => Op::Sub,
                (Token::Multiply, "*") => Op::Mul,
                (Token::Divide, "/") => Op::Div,
                (Token::Modulo, "%") => Op::Rem,
                (Token::EqualsTo, "==") => Op::Eq,
                (Token::NotEqualsTo, "!=") => Op::Ne,
                (Token::LessThan, "<") => Op::Lt,
                (Token::LessThanEqualsTo, "<=") => Op::Le,
                (Token::GreaterThan, ">") => Op::Gt,
                (Token::GreaterThanEqualsTo, ">=") => Op::Ge,
                _ => return None,
            };
            Some(Node::Bin(
                op,
                Box::new(node(a, vars)?),
                Box::new(node(b, vars)?),
            ))
        }
        _ => None,
    }
}

/// Evaluates a node.
fn eval(n: &Node, slots: &[Num]) -> Option<Num> {
    match n {
        Node::Const(c) => Some(*c),
        Node::Var(i) => slots.get(*i).copied(),
        Node::Bin(op, a, b) => binary(*op, eval(a, slots)?, eval(b, slots)?),
        Node::Neg(a) => match eval(a, slots)? {
            Num::I(i) => i.checked_neg().map(Num::I),
            Num::F(f) => Some(Num::F(-f)),
            Num::B(_) => None,
        },
        Node::Plus(a) => match eval(a, slots)? {
            Num::B(_) => None,
            v => Some(v),
        },
        Node::Not(a) => match eval(a, slots)? {
            Num::B(b) => Some(Num::B(!b)),
            _ => None,
        },
        Node::And(xs) => {
            for x in xs {
                match eval(x, slots)? {
                    Num::B(true) => {}
                    Num::B(false) => return Some(Num::B(false)),
                    _ => return None,
                }
            }
            Some(Num::B(true))
        }
        Node::Or(xs) => {
            for x in xs {
                match eval(x, slots)? {
                    Num::B(false) => {}
                    Num::B(true) => return Some(Num::B(true)),
                    _ => return None,
                }
            }
            Some(Num::B(false))
        }
    }
}

/// A binary operator on two scalars, as Rhai's built-in operators compute it (checked build).
#[inline(always)]
fn binary(op: Op, a: Num, b: Num) -> Option<Num> {
    match (a, b) {
        (Num::I(x), Num::I(y)) => match op {
            Op::Add => x.checked_add(y).map(Num::I),
            Op::Sub => x.checked_sub(y).map(Num::I),
            Op::Mul => x.checked_mul(y).map(Num::I),
            Op::Div => {
                if y == 0 {
                    None
                } else {
                    x.checked_div(y).map(Num::I)
                }
            }
            Op::Rem => x.checked_rem(y).map(Num::I),
            Op::Eq => Some(Num::B(x == y)),
            Op::Ne => Some(Num::B(x != y)),
            Op::Lt => Some(Num::B(x < y)),
            Op::Le => Some(Num::B(x <= y)),
            Op::Gt => Some(Num::B(x > y)),
            Op::Ge => Some(Num::B(x >= y)),
        },
        (Num::F(x), Num::F(y)) => Some(float(op, x, y)),
        (Num::I(x), Num::F(y)) => Some(float(op, x as FLOAT, y)),
        (Num::F(x), Num::I(y)) => Some(float(op, x, y as FLOAT)),
        (Num::B(x), Num::B(y)) => match op {
            Op::Eq => Some(Num::B(x == y)),
            Op::Ne => Some(Num::B(x != y)),
            Op::Lt => Some(Num::B(!x & y)),
            Op::Le => Some(Num::B(x <= y)),
            Op::Gt => Some(Num::B(x & !y)),
            Op::Ge => Some(Num::B(x >= y)),
            _ => None,
        },
        _ => None,
    }
}

/// Float operators, including Rhai's relative-epsilon comparisons (rhai 1.x `func/builtin.rs`).
#[inline(always)]
#[allow(clippy::float_cmp)]
fn float(op: Op, x: FLOAT, y: FLOAT) -> Num {
    let scale = || {
        if x * y == 0.0 {
            1.0
        } else {
            x.abs().max(y.abs())
        }
    };
    match op {
        Op::Add => Num::F(x + y),
        Op::Sub => Num::F(x - y),
        Op::Mul => Num::F(x * y),
        Op::Div => Num::F(x / y),
        Op::Rem => Num::F(x % y),
        Op::Eq => {
            let max = scale();
            Num::B(max == 0.0 || (x - y).abs() / max <= FLOAT::EPSILON)
        }
        Op::Ne => {
            let max = scale();
            Num::B(max != 0.0 && (x - y).abs() / max > FLOAT::EPSILON)
        }
        Op::Gt => {
            let max = scale();
            Num::B(max != 0.0 && (x - y) / max > FLOAT::EPSILON)
        }
        Op::Ge => {
            let max = scale();
            Num::B(max == 0.0 || (x - y) / max > -FLOAT::EPSILON)
        }
        Op::Lt => {
            let max = scale();
            Num::B(max != 0.0 && (y - x) / max > FLOAT::EPSILON)
        }
        Op::Le => {
            let max = scale();
            Num::B(max == 0.0 || (y - x) / max > -FLOAT::EPSILON)
        }
    }
}
