//! Gate expressions over upstream metrics:
//! `evaluate.accuracy >= 0.85 and (evaluate.f1 > 0.8 or not drift.dataset_drift)`.
//!
//! Parsed when the pipeline is loaded by the expression parser search
//! filters use too (`kiln_types::expr`), so a typo fails before anything
//! runs, with the column of the offending token; evaluated once the stages
//! it names have finished.

use kiln_types::expr::{self, Op, Term, TermKind};
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

/// A gate's tree from the shared expression tree: `STAGE.METRIC` names,
/// numbers and `true`/`false`, compared with = != < <= > >= and joined by
/// `and`, `or`, `not`.
fn gate(e: expr::Expr) -> Result<Expr, String> {
    Ok(match e {
        expr::Expr::And(a, b) => Expr::And(Box::new(gate(*a)?), Box::new(gate(*b)?)),
        expr::Expr::Or(a, b) => Expr::Or(Box::new(gate(*a)?), Box::new(gate(*b)?)),
        expr::Expr::Not(a, _) => Expr::Not(Box::new(gate(*a)?)),
        expr::Expr::Term(t) => operand(t)?,
        expr::Expr::Compare { left, op, right, col } => {
            let op = match op {
                Op::Eq => CmpOp::Eq,
                Op::Ne => CmpOp::Ne,
                Op::Lt => CmpOp::Lt,
                Op::Le => CmpOp::Le,
                Op::Gt => CmpOp::Gt,
                Op::Ge => CmpOp::Ge,
                _ => return Err(format!("a gate compares numbers with = != < <= > >= (column {col})")),
            };
            Expr::Compare(Box::new(operand(left)?), op, Box::new(operand(right)?))
        }
    })
}

fn operand(t: Term) -> Result<Expr, String> {
    match t.kind {
        TermKind::Number(v) => Ok(Expr::Number(v)),
        TermKind::Bool(v) => Ok(Expr::Bool(v)),
        TermKind::Name(s) => match s.split_once('.') {
            Some((stage, metric)) if !stage.is_empty() && !metric.is_empty() => {
                Ok(Expr::Metric { stage: stage.to_string(), metric: metric.to_string() })
            }
            _ => Err(format!("`{s}` at column {} is not STAGE.METRIC", t.col)),
        },
        _ => Err(format!("a gate compares numbers; {} at column {} is not one", t.describe(), t.col)),
    }
}

impl Expr {
    /// Parse with the shared expression parser (`kiln_types::expr`), then
    /// check that it is a gate.
    pub fn parse(text: &str) -> Result<Expr, String> {
        gate(expr::parse(text)?)
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
        assert!(Expr::parse("evaluate.accuracy > 'high'").unwrap_err().contains("a gate compares numbers"));
        assert!(Expr::parse("evaluate.accuracy LIKE 'h%'").unwrap_err().contains("column 19"));
        let e = Expr::parse("evaluate.acc > 1").unwrap();
        assert!(e.eval(&metrics()).unwrap_err().contains("it reported: accuracy, f1"));
    }
}
