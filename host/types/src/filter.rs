//! The run search language: MLflow's filter syntax plus `or` and
//! parentheses, and `order by` clauses.
//!
//! `metrics.accuracy > 0.9 and (params.model = 'forest' or tags.team LIKE 'ml%')
//!  and attributes.status = 'FINISHED'`
//!
//! Parsed by [`crate::expr`] (errors point at the offending token's
//! column), checked and turned into a [`Filter`], then into parameterised
//! SQL by `store::search`: no user text is ever spliced into a query.

use crate::expr::{self, Expr, Term, TermKind};
pub use crate::expr::{MAX_EXPR_DEPTH, MAX_EXPR_TERMS, MAX_EXPR_VALUES, Op};

/// A parsed filter: comparisons joined by `and` / `or`.
#[derive(Debug, Clone, PartialEq)]
pub enum Filter {
    /// Both hold.
    And(Box<Filter>, Box<Filter>),
    /// Either holds.
    Or(Box<Filter>, Box<Filter>),
    /// `entity.key op value`.
    Compare {
        /// What the key names.
        entity: Entity,
        /// The metric, param, tag or attribute name.
        key: String,
        /// The comparison.
        op: Op,
        /// What it is compared with.
        value: Value,
    },
}

/// The prefix of a filter's key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Entity {
    /// `metrics.`: a run's latest value of the metric.
    Metric,
    /// `params.`
    Param,
    /// `tags.`
    Tag,
    /// `attributes.`: one of [`ATTRIBUTES`].
    Attribute,
}

/// A value a key is compared with.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// A number (metrics, numeric attributes).
    Number(f64),
    /// A quoted string.
    Text(String),
    /// The list of `IN (…)`.
    List(Vec<Value>),
}

/// Attributes a filter or an ordering may name, and whether they are numeric.
pub const ATTRIBUTES: &[(&str, bool)] =
    &[("status", false), ("run_name", false), ("run_id", false), ("start_time", true), ("end_time", true), ("experiment", false)];

/// One `order_by` clause.
#[derive(Debug, Clone, PartialEq)]
pub struct OrderBy {
    /// What the key names.
    pub entity: Entity,
    /// The name.
    pub key: String,
    /// `DESC`
    pub descending: bool,
}

/// A filter from the expression tree: comparisons of an `entity.key` with
/// a value, joined by `and` and `or`.
fn filter(e: Expr) -> Result<Filter, String> {
    Ok(match e {
        Expr::And(a, b) => Filter::And(Box::new(filter(*a)?), Box::new(filter(*b)?)),
        Expr::Or(a, b) => Filter::Or(Box::new(filter(*a)?), Box::new(filter(*b)?)),
        Expr::Not(_, col) => return Err(format!("a filter has no `not` (column {col}); use != or NOT IN")),
        Expr::Term(t) => {
            identifier(&t)?;
            return Err(format!("expected a comparison (=, !=, <, <=, >, >=, LIKE, ILIKE, IN, NOT IN) after {} at column {}", t.describe(), t.col));
        }
        Expr::Compare { left, op, right, col } => {
            let (entity, key) = identifier(&left)?;
            let value = value(right)?;
            check(entity, &key, op, &value, col)?;
            Filter::Compare { entity, key, op, value }
        }
    })
}

/// `metrics.NAME`, `params.NAME`, `tags.NAME` or `attributes.NAME`.
fn identifier(t: &Term) -> Result<(Entity, String), String> {
    let col = t.col;
    let TermKind::Name(word) = &t.kind else {
        return Err(format!("expected metrics.NAME, params.NAME, tags.NAME or attributes.NAME at column {col}, found {}", t.describe()));
    };
    let Some((prefix, key)) = word.split_once('.') else {
        return Err(format!("`{word}` at column {col} needs a prefix: metrics., params., tags. or attributes."));
    };
    let entity = match prefix.to_ascii_lowercase().as_str() {
        "metrics" | "metric" => Entity::Metric,
        "params" | "param" | "parameters" | "parameter" => Entity::Param,
        "tags" | "tag" => Entity::Tag,
        "attributes" | "attribute" | "attr" | "run" => Entity::Attribute,
        _ => return Err(format!("unknown prefix `{prefix}` at column {col}: use metrics., params., tags. or attributes.")),
    };
    if key.is_empty() {
        return Err(format!("expected a name after `{prefix}.` at column {col}"));
    }
    let mut key = key.to_string();
    if entity == Entity::Attribute {
        key = key.to_ascii_lowercase();
        if !ATTRIBUTES.iter().any(|(a, _)| *a == key) {
            let names: Vec<&str> = ATTRIBUTES.iter().map(|(a, _)| *a).collect();
            return Err(format!("unknown attribute `{key}` at column {col} (attributes: {})", names.join(", ")));
        }
    }
    Ok((entity, key))
}

fn value(t: Term) -> Result<Value, String> {
    match t.kind {
        TermKind::Number(n) => Ok(Value::Number(n)),
        TermKind::Text(s) => Ok(Value::Text(s)),
        TermKind::List(items) => Ok(Value::List(
            items
                .into_iter()
                .map(|i| if matches!(i.kind, TermKind::List(_)) { Err("nested list".to_string()) } else { value(i) })
                .collect::<Result<_, _>>()?,
        )),
        _ => Err(format!("expected a number or a 'quoted string' at column {}, found {}", t.col, t.describe())),
    }
}

fn check(entity: Entity, key: &str, op: Op, value: &Value, col: usize) -> Result<(), String> {
    let numeric_attr = entity == Entity::Attribute && ATTRIBUTES.iter().any(|(a, n)| *a == key && *n);
    match entity {
        Entity::Metric => {
            if !matches!(value, Value::Number(_)) || matches!(op, Op::Like | Op::ILike | Op::In | Op::NotIn) {
                return Err(format!("metrics.{key} (column {col}) compares with a number using =, !=, <, <=, >, >="));
            }
        }
        _ if numeric_attr => {
            if !matches!(value, Value::Number(_)) {
                return Err(format!("attributes.{key} (column {col}) compares with a number"));
            }
        }
        _ => {
            let texts = match value {
                Value::Text(_) => true,
                Value::List(items) => items.iter().all(|v| matches!(v, Value::Text(_))),
                Value::Number(_) => false,
            };
            if !texts {
                return Err(format!("{key} (column {col}) compares with a 'quoted string'"));
            }
            if matches!(op, Op::Lt | Op::Le | Op::Gt | Op::Ge) && entity != Entity::Param {
                return Err(format!("{key} (column {col}) takes =, !=, LIKE, ILIKE, IN or NOT IN"));
            }
        }
    }
    Ok(())
}

/// Parse a filter; an empty string means "everything" (`None`). Errors
/// name the column of the offending token.
pub fn parse(text: &str) -> Result<Option<Filter>, String> {
    if text.trim().is_empty() {
        return Ok(None);
    }
    filter(expr::parse(text)?).map(Some)
}

/// Parse `metrics.accuracy DESC`, `attributes.start_time`, `params.lr ASC`.
pub fn parse_order_by(text: &str) -> Result<OrderBy, String> {
    let (term, descending) = expr::order_clause(text)?;
    let (entity, key) = identifier(&term)?;
    Ok(OrderBy { entity, key, descending })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mlflow_syntax_with_or_and_parentheses() {
        let f = parse("metrics.accuracy > 0.9 and (params.model = 'forest' or tags.team LIKE 'ml%') and attributes.status = 'FINISHED'")
            .unwrap()
            .unwrap();
        let Filter::And(left, status) = f else { panic!("{f:?}") };
        assert!(matches!(*status, Filter::Compare { entity: Entity::Attribute, ref key, op: Op::Eq, .. } if key == "status"));
        let Filter::And(acc, or) = *left else { panic!() };
        assert!(matches!(*acc, Filter::Compare { entity: Entity::Metric, op: Op::Gt, value: Value::Number(v), .. } if v == 0.9));
        assert!(matches!(*or, Filter::Or(..)));
        let f = parse("params.`learning rate` IN ('0.1', '0.2') and metrics.\"val loss\" <= 1e-3").unwrap().unwrap();
        let Filter::And(a, b) = f else { panic!() };
        assert!(matches!(*a, Filter::Compare { ref key, op: Op::In, .. } if key == "learning rate"));
        assert!(matches!(*b, Filter::Compare { ref key, .. } if key == "val loss"));
        assert_eq!(parse("  ").unwrap(), None);
    }

    #[test]
    fn errors_point_at_the_token() {
        assert!(parse("metrics.acc >").unwrap_err().contains("column 14"));
        assert!(parse("accuracy > 1").unwrap_err().contains("needs a prefix"));
        assert!(parse("metrics.acc ~ 1").unwrap_err().contains("column 13"));
        assert!(parse("metrics.acc = 'high'").unwrap_err().contains("compares with a number"));
        assert!(parse("attributes.colour = 'red'").unwrap_err().contains("unknown attribute `colour`"));
        assert!(parse("(metrics.a > 1").unwrap_err().contains("expected `)`"));
        assert!(parse("params.a = 'x").unwrap_err().contains("unterminated"));
    }

    #[test]
    fn nesting_and_size_are_limited() {
        // 2,000 nested parentheses used to overflow the stack and abort.
        let deep = format!("{}metrics.a > 1{}", "(".repeat(2000), ")".repeat(2000));
        assert!(parse(&deep).unwrap_err().contains("deeper than 32 levels"));
        let ok = format!("{}metrics.a > 1{}", "(".repeat(32), ")".repeat(32));
        assert!(parse(&ok).is_ok());
        let chain = |n: usize| (0..n).map(|i| format!("metrics.m{i} > 1")).collect::<Vec<_>>().join(" or ");
        assert!(parse(&chain(100)).is_ok());
        assert!(parse(&chain(60_000)).unwrap_err().contains("more than 100 comparisons"));
        let list = format!("params.p IN ({})", (0..1001).map(|i| format!("'{i}'")).collect::<Vec<_>>().join(","));
        assert!(parse(&list).unwrap_err().contains("more than 1000 values"));
    }

    #[test]
    fn order_by() {
        assert_eq!(parse_order_by("metrics.accuracy DESC").unwrap(), OrderBy { entity: Entity::Metric, key: "accuracy".into(), descending: true });
        assert!(!parse_order_by("attributes.start_time").unwrap().descending);
        assert!(parse_order_by("metrics.a sideways").is_err());
    }
}
