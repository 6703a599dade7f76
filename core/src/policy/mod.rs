//! A small attribute-based policy language: boolean expressions over the attributes of the **subject** (the
//! authenticated peer: its credential attributes, plus what the caller adds such as `subject.identifier`),
//! the **resource** (the service, inlet, outlet or relay) and the **action** (what the message asks).
//!
//! ```text
//! subject.role = "engineer" and resource.name in ["telemetry", "logs"] and action.name = "read"
//! (subject.level >= 3 or exists subject.admin) and not subject.site = "lab"
//! ```
//!
//! The grammar, the value rules and the limits are in `docs/POLICY.md`. In short: `and`, `or`, `not`,
//! parentheses, `true`/`false`, comparisons `=` `!=` `<` `<=` `>` `>=` between attributes and literals
//! (strings in double quotes, integers), membership `x in [lit, ...]`, and `exists scope.name`. A
//! comparison or membership test that reads a missing attribute is **false** (so `subject.role != "guest"`
//! does not admit a subject without a role: write `not exists subject.role or ...` if that is meant).
//!
//! API: [`Policy::parse`] (errors are `Error::PolicySyntax` whose message names the line and column and shows
//! the line with a caret under the fault), [`Policy::evaluate`] against any [`AttributeSource`] (for instance
//! an [`Environment`]), [`Policy::check`] (`Error::PolicyDenied` when false). Parsing is bounded (source size,
//! nesting depth, node count, list length), so hostile input cannot exhaust the stack or memory, and
//! evaluation is bounded by the same limits. The parser is the only place that reads policy text.

mod parse;

use crate::error::{Error, Result};
use crate::prelude::*;
use alloc::collections::BTreeMap;
use core::cmp::Ordering;

/// Longest policy source, in bytes.
pub const MAX_POLICY_LEN: usize = 4096;
/// Deepest nesting of parentheses and `not`.
pub const MAX_DEPTH: usize = 32;
/// Most expression nodes (comparisons, `exists`, `and`/`or`/`not` operators, literals in lists).
pub const MAX_NODES: usize = 256;
/// Most values in one `in [...]` list.
pub const MAX_LIST_LEN: usize = 64;
/// Longest string literal, in bytes.
pub const MAX_STRING_LEN: usize = 128;

/// Whose attribute.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Scope {
    Subject,
    Resource,
    Action,
}

impl Scope {
    pub fn name(self) -> &'static str {
        match self {
            Scope::Subject => "subject",
            Scope::Resource => "resource",
            Scope::Action => "action",
        }
    }
}

/// `scope.name`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttributeRef {
    pub scope: Scope,
    pub name: String,
}

/// A literal value: a string or an integer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Literal {
    Str(String),
    Int(i64),
}

/// One side of a comparison.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Operand {
    Attribute(AttributeRef),
    Literal(Literal),
}

/// A comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CmpOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

/// A parsed expression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expr {
    Const(bool),
    /// All true (at least two operands).
    And(Vec<Expr>),
    /// Any true (at least two operands).
    Or(Vec<Expr>),
    Not(Box<Expr>),
    Compare(Operand, CmpOp, Operand),
    In(Operand, Vec<Literal>),
    Exists(AttributeRef),
}

/// Where attribute values come from during evaluation.
pub trait AttributeSource {
    /// The value of `scope.name`, if present.
    fn attribute(&self, scope: Scope, name: &str) -> Option<&str>;
}

/// Three maps of attributes: a ready-made [`AttributeSource`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Environment {
    pub subject: BTreeMap<String, String>,
    pub resource: BTreeMap<String, String>,
    pub action: BTreeMap<String, String>,
}

impl Environment {
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets `scope.name = value`.
    pub fn set(&mut self, scope: Scope, name: impl Into<String>, value: impl Into<String>) {
        let map = match scope {
            Scope::Subject => &mut self.subject,
            Scope::Resource => &mut self.resource,
            Scope::Action => &mut self.action,
        };
        map.insert(name.into(), value.into());
    }

    /// Builder form of [`Environment::set`].
    pub fn with(mut self, scope: Scope, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.set(scope, name, value);
        self
    }
}

impl AttributeSource for Environment {
    fn attribute(&self, scope: Scope, name: &str) -> Option<&str> {
        let map = match scope {
            Scope::Subject => &self.subject,
            Scope::Resource => &self.resource,
            Scope::Action => &self.action,
        };
        map.get(name).map(String::as_str)
    }
}

/// A parsed policy, with the source it was parsed from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    expr: Expr,
    source: String,
}

impl Policy {
    /// Parses policy text. Errors are [`Error::PolicySyntax`] with line, column and a caret excerpt.
    pub fn parse(source: &str) -> Result<Policy> {
        let expr = parse::parse(source).map_err(|e| Error::PolicySyntax(e.render(source)))?;
        Ok(Policy {
            expr,
            source: source.to_string(),
        })
    }

    /// The policy's syntax tree.
    pub fn expr(&self) -> &Expr {
        &self.expr
    }

    /// The text it was parsed from.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Whether the policy allows a request with these attributes.
    pub fn evaluate(&self, env: &dyn AttributeSource) -> bool {
        eval(&self.expr, env)
    }

    /// `Ok` when the policy allows, `PolicyDenied` otherwise.
    pub fn check(&self, env: &dyn AttributeSource) -> Result<()> {
        if self.evaluate(env) {
            Ok(())
        } else {
            Err(Error::PolicyDenied(
                "the policy does not allow this request",
            ))
        }
    }
}

impl core::str::FromStr for Policy {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Policy::parse(s)
    }
}

/// Recursion here is bounded by the parser's `MAX_DEPTH` (only `Not` and parenthesised groups nest).
fn eval(expr: &Expr, env: &dyn AttributeSource) -> bool {
    match expr {
        Expr::Const(b) => *b,
        Expr::And(items) => items.iter().all(|e| eval(e, env)),
        Expr::Or(items) => items.iter().any(|e| eval(e, env)),
        Expr::Not(inner) => !eval(inner, env),
        Expr::Exists(attr) => env.attribute(attr.scope, &attr.name).is_some(),
        Expr::Compare(left, op, right) => {
            let (Some(l), Some(r)) = (resolve(left, env), resolve(right, env)) else {
                return false;
            };
            let ord = compare(&l, &r);
            match op {
                CmpOp::Eq => ord == Ordering::Equal,
                CmpOp::Ne => ord != Ordering::Equal,
                CmpOp::Lt => ord == Ordering::Less,
                CmpOp::Le => ord != Ordering::Greater,
                CmpOp::Gt => ord == Ordering::Greater,
                CmpOp::Ge => ord != Ordering::Less,
            }
        }
        Expr::In(value, list) => {
            let Some(v) = resolve(value, env) else {
                return false;
            };
            list.iter()
                .any(|lit| compare(&v, &Value::of_literal(lit)) == Ordering::Equal)
        }
    }
}

/// A value during evaluation: text, and its integer reading when it is one.
struct Value<'a> {
    text: alloc::borrow::Cow<'a, str>,
    int: Option<i64>,
}

impl<'a> Value<'a> {
    fn of_text(text: &'a str) -> Self {
        Value {
            int: parse_int(text),
            text: alloc::borrow::Cow::Borrowed(text),
        }
    }

    fn of_literal(lit: &'a Literal) -> Self {
        match lit {
            Literal::Str(s) => Value::of_text(s),
            Literal::Int(i) => Value {
                text: alloc::borrow::Cow::Owned(i.to_string()),
                int: Some(*i),
            },
        }
    }
}

fn resolve<'a>(operand: &'a Operand, env: &'a dyn AttributeSource) -> Option<Value<'a>> {
    match operand {
        Operand::Attribute(a) => env.attribute(a.scope, &a.name).map(Value::of_text),
        Operand::Literal(lit) => Some(Value::of_literal(lit)),
    }
}

/// Two integers compare as numbers; anything else compares as strings, byte by byte.
fn compare(a: &Value<'_>, b: &Value<'_>) -> Ordering {
    match (a.int, b.int) {
        (Some(x), Some(y)) => x.cmp(&y),
        _ => a.text.as_bytes().cmp(b.text.as_bytes()),
    }
}

/// The canonical decimal form of an `i64` (optional `-`, no leading zeros, no `+`), else `None`.
fn parse_int(text: &str) -> Option<i64> {
    let digits = text.strip_prefix('-').unwrap_or(text);
    if digits.is_empty()
        || digits.len() > 19
        || !digits.bytes().all(|b| b.is_ascii_digit())
        || (digits.len() > 1 && digits.starts_with('0'))
        || text == "-0"
    {
        return None;
    }
    text.parse().ok()
}
