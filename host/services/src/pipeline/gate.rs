//! Gate expressions over upstream metrics:
//! `evaluate.accuracy >= 0.85 and (evaluate.f1 > 0.8 or not drift.dataset_drift)`.
//!
//! Parsed into a syntax tree when the pipeline is loaded (so a typo fails
//! before anything runs, with the column of the offending token), evaluated
//! once the stages it names have finished.

use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    Number(f64),
    Bool(bool),
    /// `stage.metric`
    Metric {
        stage: String,
        metric: String,
    },
    Not(Box<Expr>),
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
    Compare(Box<Expr>, CmpOp, Box<Expr>),
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum CmpOp {
    Lt,
    Le,
    Gt,
    Ge,
    Eq,
    Ne,
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Num(f64),
    Ident(String),
    Op(CmpOp),
    LParen,
    RParen,
    End,
}

fn lex(text: &str) -> Result<Vec<(Tok, usize)>, String> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let col = i + 1;
        if c.is_whitespace() {
            i += 1;
        } else if c == '(' || c == ')' {
            out.push((if c == '(' { Tok::LParen } else { Tok::RParen }, col));
            i += 1;
        } else if "<>=!".contains(c) {
            let two = chars.get(i + 1) == Some(&'=');
            let op = match (c, two) {
                ('<', true) => CmpOp::Le,
                ('<', false) => CmpOp::Lt,
                ('>', true) => CmpOp::Ge,
                ('>', false) => CmpOp::Gt,
                ('=', true) => CmpOp::Eq,
                ('!', true) => CmpOp::Ne,
                _ => return Err(format!("unexpected `{c}` at column {col} (comparisons are < <= > >= == !=)")),
            };
            out.push((Tok::Op(op), col));
            i += if two { 2 } else { 1 };
        } else if c.is_ascii_digit() || (c == '-' && chars.get(i + 1).is_some_and(|d| d.is_ascii_digit())) || c == '.' {
            let start = i;
            i += 1;
            while i < chars.len()
                && (chars[i].is_ascii_alphanumeric()
                    || chars[i] == '.'
                    || ((chars[i] == '-' || chars[i] == '+') && matches!(chars[i - 1], 'e' | 'E')))
            {
                i += 1;
            }
            let s: String = chars[start..i].iter().collect();
            let v = s.parse::<f64>().map_err(|_| format!("`{s}` at column {col} is not a number"))?;
            out.push((Tok::Num(v), col));
        } else if c.is_ascii_alphabetic() || c == '_' {
            let start = i;
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || "_-.:".contains(chars[i])) {
                i += 1;
            }
            out.push((Tok::Ident(chars[start..i].iter().collect()), col));
        } else {
            return Err(format!("unexpected `{c}` at column {col}"));
        }
    }
    out.push((Tok::End, chars.len() + 1));
    Ok(out)
}

struct Parser {
    toks: Vec<(Tok, usize)>,
    pos: usize,
    /// Parentheses and `not`s open at this point.
    depth: usize,
    terms: usize,
}

use crate::limits::{MAX_EXPR_DEPTH, MAX_EXPR_TERMS};

impl Parser {
    fn peek(&self) -> &Tok {
        &self.toks[self.pos].0
    }
    fn col(&self) -> usize {
        self.toks[self.pos].1
    }
    fn next(&mut self) -> Tok {
        let t = self.toks[self.pos].0.clone();
        if self.pos + 1 < self.toks.len() {
            self.pos += 1;
        }
        t
    }
    fn keyword(&self, k: &str) -> bool {
        matches!(self.peek(), Tok::Ident(s) if s.eq_ignore_ascii_case(k))
    }
    fn or(&mut self) -> Result<Expr, String> {
        let mut left = self.and()?;
        while self.keyword("or") {
            self.next();
            left = Expr::Or(Box::new(left), Box::new(self.and()?));
        }
        Ok(left)
    }
    fn and(&mut self) -> Result<Expr, String> {
        let mut left = self.not()?;
        while self.keyword("and") {
            self.next();
            left = Expr::And(Box::new(left), Box::new(self.not()?));
        }
        Ok(left)
    }
    /// Enter a nested expression (parentheses, `not`), or refuse past the limit.
    fn nest(&mut self) -> Result<(), String> {
        if self.depth == MAX_EXPR_DEPTH {
            return Err(format!("the expression nests deeper than {MAX_EXPR_DEPTH} levels at column {}", self.col()));
        }
        self.depth += 1;
        Ok(())
    }
    fn not(&mut self) -> Result<Expr, String> {
        if self.keyword("not") {
            self.nest()?;
            self.next();
            let inner = self.not()?;
            self.depth -= 1;
            return Ok(Expr::Not(Box::new(inner)));
        }
        self.compare()
    }
    fn compare(&mut self) -> Result<Expr, String> {
        let left = self.atom()?;
        if let Tok::Op(op) = *self.peek() {
            self.next();
            let right = self.atom()?;
            return Ok(Expr::Compare(Box::new(left), op, Box::new(right)));
        }
        Ok(left)
    }
    fn atom(&mut self) -> Result<Expr, String> {
        let col = self.col();
        self.terms += 1;
        if self.terms > 2 * MAX_EXPR_TERMS {
            return Err(format!("the expression has more than {MAX_EXPR_TERMS} comparisons (at column {col})"));
        }
        match self.next() {
            Tok::Num(v) => Ok(Expr::Number(v)),
            Tok::LParen => {
                self.nest()?;
                let e = self.or()?;
                self.depth -= 1;
                match self.next() {
                    Tok::RParen => Ok(e),
                    _ => Err(format!("expected `)` at column {}", self.toks[self.pos.saturating_sub(1)].1)),
                }
            }
            Tok::Ident(s) if s.eq_ignore_ascii_case("true") => Ok(Expr::Bool(true)),
            Tok::Ident(s) if s.eq_ignore_ascii_case("false") => Ok(Expr::Bool(false)),
            Tok::Ident(s) => match s.split_once('.') {
                Some((stage, metric)) if !stage.is_empty() && !metric.is_empty() => {
                    Ok(Expr::Metric { stage: stage.to_string(), metric: metric.to_string() })
                }
                _ => Err(format!("`{s}` at column {col} is not STAGE.METRIC")),
            },
            Tok::End => Err(format!("the expression ends early at column {col}; expected a value")),
            other => Err(format!("unexpected {} at column {col}", describe(&other))),
        }
    }
}

fn describe(t: &Tok) -> String {
    match t {
        Tok::Num(v) => format!("number {v}"),
        Tok::Ident(s) => format!("`{s}`"),
        Tok::Op(_) => "comparison".into(),
        Tok::LParen => "`(`".into(),
        Tok::RParen => "`)`".into(),
        Tok::End => "end".into(),
    }
}

impl Expr {
    pub fn parse(text: &str) -> Result<Expr, String> {
        let mut p = Parser { toks: lex(text)?, pos: 0, depth: 0, terms: 0 };
        let e = p.or()?;
        if *p.peek() != Tok::End {
            return Err(format!("unexpected {} at column {}", describe(p.peek()), p.col()));
        }
        Ok(e)
    }

    /// The stages the expression reads metrics of.
    pub fn stage_refs(&self) -> Vec<String> {
        let mut out = Vec::new();
        self.walk(&mut |e| {
            if let Expr::Metric { stage, .. } = e
                && !out.contains(stage)
            {
                out.push(stage.clone());
            }
        });
        out
    }

    fn walk(&self, f: &mut impl FnMut(&Expr)) {
        f(self);
        match self {
            Expr::Not(a) => a.walk(f),
            Expr::And(a, b) | Expr::Or(a, b) | Expr::Compare(a, _, b) => {
                a.walk(f);
                b.walk(f);
            }
            _ => {}
        }
    }

    /// Evaluate against `stage → metric → value`. A missing metric is an
    /// error naming what the stage did report.
    pub fn eval(&self, metrics: &BTreeMap<String, BTreeMap<String, f64>>) -> Result<bool, String> {
        Ok(self.value(metrics)? != 0.0)
    }

    fn value(&self, m: &BTreeMap<String, BTreeMap<String, f64>>) -> Result<f64, String> {
        let b = |x: bool| if x { 1.0 } else { 0.0 };
        Ok(match self {
            Expr::Number(v) => *v,
            Expr::Bool(v) => b(*v),
            Expr::Metric { stage, metric } => {
                let reported = m.get(stage).ok_or_else(|| format!("stage `{stage}` has no metrics"))?;
                *reported.get(metric).ok_or_else(|| {
                    let names: Vec<&str> = reported.keys().map(String::as_str).collect();
                    format!("stage `{stage}` reported no metric `{metric}` (it reported: {})", names.join(", "))
                })?
            }
            Expr::Not(a) => b(a.value(m)? == 0.0),
            Expr::And(a, c) => b(a.value(m)? != 0.0 && c.value(m)? != 0.0),
            Expr::Or(a, c) => b(a.value(m)? != 0.0 || c.value(m)? != 0.0),
            Expr::Compare(a, op, c) => {
                let (x, y) = (a.value(m)?, c.value(m)?);
                b(match op {
                    CmpOp::Lt => x < y,
                    CmpOp::Le => x <= y,
                    CmpOp::Gt => x > y,
                    CmpOp::Ge => x >= y,
                    CmpOp::Eq => x == y,
                    CmpOp::Ne => x != y,
                })
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metrics() -> BTreeMap<String, BTreeMap<String, f64>> {
        let mut m = BTreeMap::new();
        m.insert("evaluate".to_string(), BTreeMap::from([("accuracy".to_string(), 0.9), ("f1".to_string(), 0.7)]));
        m.insert("drift".to_string(), BTreeMap::from([("dataset_drift".to_string(), 0.0)]));
        m
    }

    #[test]
    fn precedence_and_evaluation() {
        let e = Expr::parse("evaluate.accuracy >= 0.85 and evaluate.f1 > 0.8 or not drift.dataset_drift").unwrap();
        assert!(e.eval(&metrics()).unwrap(), "(true and false) or true");
        let e = Expr::parse("evaluate.accuracy >= 0.85 and (evaluate.f1 > 0.8 or drift.dataset_drift)").unwrap();
        assert!(!e.eval(&metrics()).unwrap());
        assert_eq!(e.stage_refs(), ["evaluate", "drift"]);
        assert!(Expr::parse("evaluate.f1 != 1e-3").unwrap().eval(&metrics()).unwrap());
    }

    #[test]
    fn nesting_and_size_are_limited() {
        let deep = format!("{}a.x > 1{}", "(".repeat(5000), ")".repeat(5000));
        assert!(Expr::parse(&deep).unwrap_err().contains("deeper than 32 levels"));
        assert!(Expr::parse(&format!("{}a.x", "not ".repeat(5000))).unwrap_err().contains("deeper than 32 levels"));
        let chain = |n: usize| (0..n).map(|i| format!("a.m{i} > 1")).collect::<Vec<_>>().join(" or ");
        assert!(Expr::parse(&chain(100)).is_ok());
        assert!(Expr::parse(&chain(60_000)).unwrap_err().contains("more than 100 comparisons"));
    }

    #[test]
    fn errors_point_at_the_token() {
        assert!(Expr::parse("evaluate.accuracy >= ").unwrap_err().contains("column 22"));
        assert!(Expr::parse("evaluate.accuracy => 1").unwrap_err().contains("column 19"));
        assert!(Expr::parse("accuracy > 1").unwrap_err().contains("not STAGE.METRIC"));
        assert!(Expr::parse("(evaluate.f1 > 1").unwrap_err().contains("expected `)`"));
        let e = Expr::parse("evaluate.acc > 1").unwrap();
        assert!(e.eval(&metrics()).unwrap_err().contains("it reported: accuracy, f1"));
    }
}
