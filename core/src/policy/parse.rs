//! The policy parser: a tokenizer and a recursive-descent parser with explicit bounds (docs/POLICY.md).
//! Every error carries the byte offset of the token at fault; [`SyntaxError::render`] turns it into
//! "line L, column C: message" and the line with a caret under the column.

use super::{
    AttributeRef, CmpOp, Expr, Literal, Operand, Scope, MAX_DEPTH, MAX_LIST_LEN, MAX_NODES,
    MAX_POLICY_LEN, MAX_STRING_LEN,
};
use crate::prelude::*;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct SyntaxError {
    offset: usize,
    message: String,
}

impl SyntaxError {
    fn at(offset: usize, message: impl Into<String>) -> Self {
        SyntaxError {
            offset,
            message: message.into(),
        }
    }

    /// `line L, column C: message`, then the source line, then a caret under the column. Columns count
    /// characters (not bytes), from 1.
    pub(super) fn render(&self, source: &str) -> String {
        let offset = floor_char_boundary(source, self.offset.min(source.len()));
        let line_start = source[..offset].rfind('\n').map_or(0, |i| i + 1);
        let line_end = source[offset..]
            .find('\n')
            .map_or(source.len(), |i| offset + i);
        let line_no = source[..offset].matches('\n').count() + 1;
        let column = source[line_start..offset].chars().count() + 1;
        // Keep the excerpt printable and short: control characters become spaces, long lines are cut
        // around the column.
        let line: String = source[line_start..line_end]
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect();
        let (excerpt, caret_col) = if line.chars().count() > 80 {
            let skip = column.saturating_sub(40);
            let cut: String = line.chars().skip(skip).take(80).collect();
            (cut, column - skip)
        } else {
            (line, column)
        };
        format!(
            "line {line_no}, column {column}: {}\n  {excerpt}\n  {}^",
            self.message,
            " ".repeat(caret_col - 1)
        )
    }
}

fn floor_char_boundary(s: &str, mut i: usize) -> usize {
    while i > 0 && !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    Word(String),
    Str(String),
    Int(i64),
    Op(CmpOp),
    LParen,
    RParen,
    LBracket,
    RBracket,
    Comma,
    End,
}

fn describe(tok: &Tok) -> String {
    match tok {
        Tok::Word(w) => format!("'{w}'"),
        Tok::Str(_) => "a string".into(),
        Tok::Int(_) => "an integer".into(),
        Tok::Op(_) => "a comparison operator".into(),
        Tok::LParen => "'('".into(),
        Tok::RParen => "')'".into(),
        Tok::LBracket => "'['".into(),
        Tok::RBracket => "']'".into(),
        Tok::Comma => "','".into(),
        Tok::End => "the end of the policy".into(),
    }
}

fn tokenize(src: &str) -> Result<Vec<(Tok, usize)>, SyntaxError> {
    let bytes = src.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        let start = i;
        if c == b'#' {
            // A comment runs to the end of the line.
            while i < bytes.len() && bytes[i] != b'\n' {
                i += 1;
            }
            continue;
        }
        if c.is_ascii_whitespace() {
            i += 1;
            continue;
        }
        let tok = match c {
            b'(' => {
                i += 1;
                Tok::LParen
            }
            b')' => {
                i += 1;
                Tok::RParen
            }
            b'[' => {
                i += 1;
                Tok::LBracket
            }
            b']' => {
                i += 1;
                Tok::RBracket
            }
            b',' => {
                i += 1;
                Tok::Comma
            }
            b'=' => {
                i += if bytes.get(i + 1) == Some(&b'=') {
                    2
                } else {
                    1
                };
                Tok::Op(CmpOp::Eq)
            }
            b'!' if bytes.get(i + 1) == Some(&b'=') => {
                i += 2;
                Tok::Op(CmpOp::Ne)
            }
            b'<' | b'>' => {
                let eq = bytes.get(i + 1) == Some(&b'=');
                i += if eq { 2 } else { 1 };
                Tok::Op(match (c, eq) {
                    (b'<', false) => CmpOp::Lt,
                    (b'<', true) => CmpOp::Le,
                    (_, false) => CmpOp::Gt,
                    (_, true) => CmpOp::Ge,
                })
            }
            b'"' => {
                i += 1;
                let mut s = String::new();
                loop {
                    let rest = &src[i..];
                    let Some(ch) = rest.chars().next() else {
                        return Err(SyntaxError::at(start, "unterminated string"));
                    };
                    match ch {
                        '"' => {
                            i += 1;
                            break;
                        }
                        '\\' => {
                            let next = rest[1..].chars().next();
                            match next {
                                Some(e @ ('"' | '\\')) => {
                                    s.push(e);
                                    i += 2;
                                }
                                _ => {
                                    return Err(SyntaxError::at(
                                        i,
                                        "unknown escape (only \\\" and \\\\)",
                                    ))
                                }
                            }
                        }
                        '\n' => return Err(SyntaxError::at(start, "unterminated string")),
                        ch => {
                            s.push(ch);
                            i += ch.len_utf8();
                        }
                    }
                    if s.len() > MAX_STRING_LEN {
                        return Err(SyntaxError::at(
                            start,
                            format!("string longer than {MAX_STRING_LEN} bytes"),
                        ));
                    }
                }
                Tok::Str(s)
            }
            b'-' | b'0'..=b'9' => {
                i += 1;
                while i < bytes.len() && bytes[i].is_ascii_digit() {
                    i += 1;
                }
                let text = &src[start..i];
                let value = super::parse_int(text)
                    .ok_or_else(|| SyntaxError::at(start, format!("bad integer '{text}'")))?;
                Tok::Int(value)
            }
            b'a'..=b'z' | b'A'..=b'Z' | b'_' => {
                while i < bytes.len()
                    && (bytes[i].is_ascii_alphanumeric() || b"_.-".contains(&bytes[i]))
                {
                    i += 1;
                }
                Tok::Word(src[start..i].to_string())
            }
            _ => {
                let ch = src[i..].chars().next().unwrap_or('?');
                return Err(SyntaxError::at(
                    start,
                    format!("unexpected character '{ch}'"),
                ));
            }
        };
        out.push((tok, start));
    }
    out.push((Tok::End, src.len()));
    Ok(out)
}

struct Parser {
    toks: Vec<(Tok, usize)>,
    pos: usize,
    depth: usize,
    nodes: usize,
}

pub(super) fn parse(src: &str) -> Result<Expr, SyntaxError> {
    if src.len() > MAX_POLICY_LEN {
        return Err(SyntaxError::at(
            MAX_POLICY_LEN,
            format!("policy longer than {MAX_POLICY_LEN} bytes"),
        ));
    }
    let mut p = Parser {
        toks: tokenize(src)?,
        pos: 0,
        depth: 0,
        nodes: 0,
    };
    if p.peek() == &Tok::End {
        return Err(SyntaxError::at(0, "empty policy"));
    }
    let expr = p.or()?;
    match p.peek() {
        Tok::End => Ok(expr),
        Tok::RParen => Err(p.error_here("unmatched ')'")),
        other => {
            let d = describe(other);
            Err(p.error_here(format!("expected 'and', 'or' or the end, found {d}")))
        }
    }
}

impl Parser {
    fn peek(&self) -> &Tok {
        &self.toks[self.pos].0
    }

    fn offset(&self) -> usize {
        self.toks[self.pos].1
    }

    fn bump(&mut self) -> Tok {
        let tok = self.toks[self.pos].0.clone();
        if tok != Tok::End {
            self.pos += 1;
        }
        tok
    }

    fn error_here(&self, message: impl Into<String>) -> SyntaxError {
        SyntaxError::at(self.offset(), message)
    }

    fn is_word(&self, word: &str) -> bool {
        matches!(self.peek(), Tok::Word(w) if w == word)
    }

    fn node(&mut self) -> Result<(), SyntaxError> {
        self.nodes += 1;
        if self.nodes > MAX_NODES {
            return Err(self.error_here(format!("policy has more than {MAX_NODES} nodes")));
        }
        Ok(())
    }

    fn enter(&mut self) -> Result<(), SyntaxError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(self.error_here(format!("nested deeper than {MAX_DEPTH}")));
        }
        Ok(())
    }

    fn or(&mut self) -> Result<Expr, SyntaxError> {
        let mut items = vec![self.and()?];
        while self.is_word("or") {
            self.bump();
            self.node()?;
            items.push(self.and()?);
        }
        Ok(if items.len() == 1 {
            items.pop().expect("one item")
        } else {
            Expr::Or(items)
        })
    }

    fn and(&mut self) -> Result<Expr, SyntaxError> {
        let mut items = vec![self.unary()?];
        while self.is_word("and") {
            self.bump();
            self.node()?;
            items.push(self.unary()?);
        }
        Ok(if items.len() == 1 {
            items.pop().expect("one item")
        } else {
            Expr::And(items)
        })
    }

    fn unary(&mut self) -> Result<Expr, SyntaxError> {
        if self.is_word("not") {
            self.bump();
            self.node()?;
            self.enter()?;
            let inner = self.unary()?;
            self.depth -= 1;
            return Ok(Expr::Not(Box::new(inner)));
        }
        self.primary()
    }

    fn primary(&mut self) -> Result<Expr, SyntaxError> {
        self.node()?;
        match self.peek().clone() {
            Tok::LParen => {
                let open = self.offset();
                self.bump();
                self.enter()?;
                let inner = self.or()?;
                self.depth -= 1;
                if self.peek() != &Tok::RParen {
                    let d = describe(self.peek());
                    return Err(if self.peek() == &Tok::End {
                        SyntaxError::at(open, "this '(' is never closed")
                    } else {
                        self.error_here(format!("expected ')', found {d}"))
                    });
                }
                self.bump();
                Ok(inner)
            }
            Tok::Word(w) if w == "true" => {
                self.bump();
                Ok(Expr::Const(true))
            }
            Tok::Word(w) if w == "false" => {
                self.bump();
                Ok(Expr::Const(false))
            }
            Tok::Word(w) if w == "exists" => {
                self.bump();
                let attr = self.attribute("after 'exists'")?;
                Ok(Expr::Exists(attr))
            }
            _ => {
                let left = self.operand("at the start of a condition")?;
                if self.is_word("in") {
                    self.bump();
                    let list = self.list()?;
                    return Ok(Expr::In(left, list));
                }
                let op = match self.peek() {
                    Tok::Op(op) => *op,
                    other => {
                        let d = describe(other);
                        return Err(self.error_here(format!(
                            "expected a comparison (=, !=, <, <=, >, >=) or 'in', found {d}"
                        )));
                    }
                };
                self.bump();
                let right = self.operand("after the comparison")?;
                if matches!((&left, &right), (Operand::Literal(_), Operand::Literal(_))) {
                    // Constant comparisons are almost always a typo for an attribute.
                    return Err(SyntaxError::at(
                        self.toks[self.pos - 1].1,
                        "a comparison needs at least one attribute",
                    ));
                }
                Ok(Expr::Compare(left, op, right))
            }
        }
    }

    fn list(&mut self) -> Result<Vec<Literal>, SyntaxError> {
        if self.peek() != &Tok::LBracket {
            let d = describe(self.peek());
            return Err(self.error_here(format!("expected '[' after 'in', found {d}")));
        }
        let open = self.offset();
        self.bump();
        let mut items = Vec::new();
        if self.peek() == &Tok::RBracket {
            self.bump();
            return Ok(items);
        }
        loop {
            self.node()?;
            match self.bump() {
                Tok::Str(s) => items.push(Literal::Str(s)),
                Tok::Int(i) => items.push(Literal::Int(i)),
                other => {
                    self.pos -= usize::from(other != Tok::End);
                    let d = describe(&other);
                    return Err(self.error_here(format!(
                        "expected a string or integer in the list, found {d}"
                    )));
                }
            }
            if items.len() > MAX_LIST_LEN {
                return Err(SyntaxError::at(
                    open,
                    format!("list longer than {MAX_LIST_LEN} values"),
                ));
            }
            match self.peek() {
                Tok::Comma => {
                    self.bump();
                }
                Tok::RBracket => {
                    self.bump();
                    return Ok(items);
                }
                Tok::End => return Err(SyntaxError::at(open, "this '[' is never closed")),
                other => {
                    let d = describe(other);
                    return Err(self.error_here(format!("expected ',' or ']', found {d}")));
                }
            }
        }
    }

    fn operand(&mut self, context: &str) -> Result<Operand, SyntaxError> {
        match self.peek().clone() {
            Tok::Str(s) => {
                self.bump();
                Ok(Operand::Literal(Literal::Str(s)))
            }
            Tok::Int(i) => {
                self.bump();
                Ok(Operand::Literal(Literal::Int(i)))
            }
            Tok::Word(w) if is_keyword(&w) => Err(self.error_here(format!(
                "expected an attribute or a value {context}, found the keyword '{w}'"
            ))),
            Tok::Word(_) => Ok(Operand::Attribute(self.attribute(context)?)),
            other => {
                let d = describe(&other);
                Err(self.error_here(format!(
                    "expected an attribute or a value {context}, found {d}"
                )))
            }
        }
    }

    fn attribute(&mut self, context: &str) -> Result<AttributeRef, SyntaxError> {
        let Tok::Word(word) = self.peek().clone() else {
            let d = describe(self.peek());
            return Err(self.error_here(format!(
                "expected an attribute (subject.x, resource.x, action.x) {context}, found {d}"
            )));
        };
        if is_keyword(&word) {
            return Err(self.error_here(format!(
                "expected an attribute {context}, found the keyword '{word}'"
            )));
        }
        let Some((scope, name)) = word.split_once('.') else {
            return Err(self.error_here(format!(
                "'{word}' is not an attribute: write subject.{word}, resource.{word} or action.{word}"
            )));
        };
        let scope = match scope {
            "subject" => Scope::Subject,
            "resource" => Scope::Resource,
            "action" => Scope::Action,
            _ => {
                return Err(self.error_here(format!(
                    "unknown scope '{scope}': use subject, resource or action"
                )))
            }
        };
        if crate::credential::check_attribute_name(name).is_err() {
            return Err(self.error_here(format!(
                "bad attribute name '{name}': 1 to 32 of [a-z0-9_.-], starting with a letter"
            )));
        }
        self.bump();
        Ok(AttributeRef {
            scope,
            name: name.to_string(),
        })
    }
}

fn is_keyword(word: &str) -> bool {
    matches!(
        word,
        "and" | "or" | "not" | "in" | "exists" | "true" | "false"
    )
}
