//! Search over lists of named records: experiments, registered models,
//! model versions and logged models, as MLflow's `search_*` calls filter
//! them (`name LIKE 'fraud%' and tags.team = 'ml'`, `run_id IN ('a', 'b')`,
//! `creation_time > 1700000000000`, `metrics.accuracy >= 0.9`).
//!
//! Parsed by [`crate::expr`] like run filters and gates, so errors name the
//! column; each kind of record says which fields it has. These lists are
//! small beside runs (thousands, not millions), so a filter is evaluated
//! in memory over the records rather than turned into SQL.

use crate::expr::{self, Expr, Op, Term, TermKind};

/// What a kind of record can be filtered and ordered by.
#[derive(Debug, Clone, Copy)]
pub struct Fields {
    /// What the records are called in messages (`experiments`).
    pub what: &'static str,
    /// Text fields (`name`, `run_id`).
    pub text: &'static [&'static str],
    /// Numeric fields (`creation_time`, `version_number`).
    pub numeric: &'static [&'static str],
    /// Whether `tags.KEY` may be named.
    pub tags: bool,
    /// Whether `metrics.KEY` and `params.KEY` may be named.
    pub metrics_and_params: bool,
}

/// What a filter or an ordering names.
#[derive(Debug, Clone, PartialEq)]
pub enum Key {
    /// One of the record's own fields.
    Field(String),
    /// `tags.KEY`
    Tag(String),
    /// `metrics.KEY`: the latest value.
    Metric(String),
    /// `params.KEY`
    Param(String),
}

/// A value compared with.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// A number (numeric fields and metrics).
    Number(f64),
    /// A 'quoted string'.
    Text(String),
    /// The list of `IN (…)`.
    List(Vec<String>),
}

/// A parsed record filter.
#[derive(Debug, Clone, PartialEq)]
pub enum RecordFilter {
    /// Both hold.
    And(Box<RecordFilter>, Box<RecordFilter>),
    /// Either holds.
    Or(Box<RecordFilter>, Box<RecordFilter>),
    /// `key op value`.
    Compare {
        /// What is compared.
        key: Key,
        /// How.
        op: Op,
        /// With what.
        value: Value,
    },
}

/// One ordering clause.
#[derive(Debug, Clone, PartialEq)]
pub struct Order {
    /// What to order by.
    pub key: Key,
    /// `DESC`
    pub descending: bool,
}

/// What a record shows a filter.
pub trait Record {
    /// A text field's value (`None`: the record has none).
    fn text(&self, field: &str) -> Option<&str>;
    /// A numeric field's value.
    fn number(&self, field: &str) -> Option<f64>;
    /// A tag's value.
    fn tag(&self, _key: &str) -> Option<&str> {
        None
    }
    /// A metric's latest value.
    fn metric(&self, _key: &str) -> Option<f64> {
        None
    }
    /// A param's value.
    fn param(&self, _key: &str) -> Option<&str> {
        None
    }
}

impl Fields {
    fn key(&self, t: &Term) -> Result<Key, String> {
        let col = t.col;
        let TermKind::Name(word) = &t.kind else {
            return Err(format!("expected a field of {} at column {col}, found {}", self.what, t.describe()));
        };
        let (prefix, rest) = word.split_once('.').unwrap_or(("", word));
        let key = match prefix.to_ascii_lowercase().as_str() {
            "tags" | "tag" if self.tags => Key::Tag(rest.to_string()),
            "metrics" | "metric" if self.metrics_and_params => Key::Metric(rest.to_string()),
            "params" | "param" | "parameters" | "parameter" if self.metrics_and_params => Key::Param(rest.to_string()),
            "" | "attributes" | "attribute" | "attr" => {
                let field = rest.to_ascii_lowercase();
                if !self.text.contains(&field.as_str()) && !self.numeric.contains(&field.as_str()) {
                    return Err(format!("{} have no field `{rest}` (column {col}); they have {}", self.what, self.describe()));
                }
                Key::Field(field)
            }
            _ => return Err(format!("`{word}` at column {col} is not a field of {}; they have {}", self.what, self.describe())),
        };
        if matches!(&key, Key::Tag(k) | Key::Metric(k) | Key::Param(k) if k.is_empty()) {
            return Err(format!("expected a name after `{prefix}.` at column {col}"));
        }
        Ok(key)
    }

    fn describe(&self) -> String {
        let mut names: Vec<String> = self.text.iter().chain(self.numeric).map(|s| s.to_string()).collect();
        if self.tags {
            names.push("tags.KEY".into());
        }
        if self.metrics_and_params {
            names.push("metrics.KEY".into());
            names.push("params.KEY".into());
        }
        names.join(", ")
    }

    fn numeric(&self, key: &Key) -> bool {
        match key {
            Key::Field(f) => self.numeric.contains(&f.as_str()),
            Key::Metric(_) => true,
            Key::Tag(_) | Key::Param(_) => false,
        }
    }

    fn filter(&self, e: Expr) -> Result<RecordFilter, String> {
        Ok(match e {
            Expr::And(a, b) => RecordFilter::And(Box::new(self.filter(*a)?), Box::new(self.filter(*b)?)),
            Expr::Or(a, b) => RecordFilter::Or(Box::new(self.filter(*a)?), Box::new(self.filter(*b)?)),
            Expr::Not(_, col) => return Err(format!("a filter has no `not` (column {col}); use != or NOT IN")),
            Expr::Term(t) => {
                self.key(&t)?;
                return Err(format!(
                    "expected a comparison (=, !=, <, <=, >, >=, LIKE, ILIKE, IN, NOT IN) after {} at column {}",
                    t.describe(),
                    t.col
                ));
            }
            Expr::Compare { left, op, right, col } => {
                let key = self.key(&left)?;
                let shown = left.describe();
                let value = match right.kind {
                    TermKind::Number(n) => Value::Number(n),
                    TermKind::Text(s) => Value::Text(s),
                    TermKind::List(items) => Value::List(
                        items
                            .into_iter()
                            .map(|i| match i.kind {
                                TermKind::Text(s) => Ok(s),
                                _ => Err(format!("the list for {shown} (column {col}) holds 'quoted strings' only")),
                            })
                            .collect::<Result<_, _>>()?,
                    ),
                    _ => return Err(format!("expected a number or a 'quoted string' at column {}, found {}", right.col, right.describe())),
                };
                if self.numeric(&key) {
                    if !matches!(value, Value::Number(_)) || matches!(op, Op::Like | Op::ILike | Op::In | Op::NotIn) {
                        return Err(format!("{shown} (column {col}) compares with a number using =, !=, <, <=, >, >="));
                    }
                } else {
                    if matches!(value, Value::Number(_)) {
                        return Err(format!("{shown} (column {col}) compares with a 'quoted string'"));
                    }
                    if matches!(op, Op::Lt | Op::Le | Op::Gt | Op::Ge) {
                        return Err(format!("{shown} (column {col}) takes =, !=, LIKE, ILIKE, IN or NOT IN"));
                    }
                    if matches!(op, Op::In | Op::NotIn) != matches!(value, Value::List(_)) {
                        return Err(format!("{shown} (column {col}): IN and NOT IN take a ('list', 'of', 'strings'), the others one value"));
                    }
                }
                RecordFilter::Compare { key, op, value }
            }
        })
    }

    /// Parse a filter; empty means "all".
    pub fn parse(&self, text: &str) -> Result<Option<RecordFilter>, String> {
        if text.trim().is_empty() {
            return Ok(None);
        }
        self.filter(expr::parse(text)?).map(Some)
    }

    /// Parse `name`, `creation_time DESC`, `metrics.accuracy ASC`.
    pub fn parse_order(&self, text: &str) -> Result<Order, String> {
        let (term, descending) = expr::order_clause(text)?;
        Ok(Order { key: self.key(&term)?, descending })
    }
}

fn text_of<'a>(r: &'a dyn Record, key: &Key) -> Option<&'a str> {
    match key {
        Key::Field(f) => r.text(f),
        Key::Tag(k) => r.tag(k),
        Key::Param(k) => r.param(k),
        Key::Metric(_) => None,
    }
}

fn number_of(r: &dyn Record, key: &Key) -> Option<f64> {
    match key {
        Key::Field(f) => r.number(f),
        Key::Metric(k) => r.metric(k),
        Key::Tag(_) | Key::Param(_) => None,
    }
}

impl RecordFilter {
    /// Whether the record passes. A record without the named tag, metric
    /// or param fails every comparison with it, `!=` included, as in
    /// MLflow.
    pub fn matches(&self, r: &dyn Record) -> bool {
        match self {
            RecordFilter::And(a, b) => a.matches(r) && b.matches(r),
            RecordFilter::Or(a, b) => a.matches(r) || b.matches(r),
            RecordFilter::Compare { key, op, value } => match value {
                Value::Number(want) => number_of(r, key).is_some_and(|have| match op {
                    Op::Eq => have == *want,
                    Op::Ne => have != *want,
                    Op::Lt => have < *want,
                    Op::Le => have <= *want,
                    Op::Gt => have > *want,
                    Op::Ge => have >= *want,
                    _ => false,
                }),
                Value::Text(want) => text_of(r, key).is_some_and(|have| match op {
                    Op::Eq => have == want,
                    Op::Ne => have != want,
                    Op::Like => like(want, have, false),
                    Op::ILike => like(want, have, true),
                    _ => false,
                }),
                Value::List(items) => text_of(r, key).is_some_and(|have| {
                    let found = items.iter().any(|i| i == have);
                    if *op == Op::In { found } else { !found }
                }),
            },
        }
    }
}

/// SQL's LIKE: `%` any run of characters, `_` any one character.
pub fn like(pattern: &str, text: &str, case_insensitive: bool) -> bool {
    let fold = |s: &str| if case_insensitive { s.to_lowercase().chars().collect() } else { s.chars().collect::<Vec<char>>() };
    let (p, t) = (fold(pattern), fold(text));
    // The classic greedy matcher with one backtrack point: linear in
    // practice, at worst |p|·|t|, never exponential.
    let (mut i, mut j) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while j < t.len() {
        if i < p.len() && (p[i] == '_' || p[i] == t[j]) {
            i += 1;
            j += 1;
        } else if i < p.len() && p[i] == '%' {
            star = Some((i, j));
            i += 1;
        } else if let Some((si, sj)) = star {
            i = si + 1;
            j = sj + 1;
            star = Some((si, sj + 1));
        } else {
            return false;
        }
    }
    p[i..].iter().all(|c| *c == '%')
}

/// Sort records by the clauses, in order, then by `tie` (ascending) so
/// pages are stable. Records without a value sort last.
pub fn sort<T: Record>(records: &mut [T], order: &[Order], tie: &dyn Fn(&T, &T) -> std::cmp::Ordering) {
    use std::cmp::Ordering;
    records.sort_by(|a, b| {
        for o in order {
            let (a, b): (&dyn Record, &dyn Record) = (a, b);
            let by = match (number_of(a, &o.key), number_of(b, &o.key)) {
                (Some(x), Some(y)) => x.total_cmp(&y),
                (Some(_), None) => return Ordering::Less,
                (None, Some(_)) => return Ordering::Greater,
                (None, None) => match (text_of(a, &o.key), text_of(b, &o.key)) {
                    (Some(x), Some(y)) => x.cmp(y),
                    (Some(_), None) => return Ordering::Less,
                    (None, Some(_)) => return Ordering::Greater,
                    (None, None) => Ordering::Equal,
                },
            };
            let by = if o.descending { by.reverse() } else { by };
            if by != Ordering::Equal {
                return by;
            }
        }
        tie(a, b)
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Exp {
        name: &'static str,
        created: f64,
        team: Option<&'static str>,
    }

    impl Record for Exp {
        fn text(&self, field: &str) -> Option<&str> {
            (field == "name").then_some(self.name)
        }
        fn number(&self, field: &str) -> Option<f64> {
            (field == "creation_time").then_some(self.created)
        }
        fn tag(&self, key: &str) -> Option<&str> {
            if key == "team" { self.team } else { None }
        }
    }

    const EXPERIMENTS: Fields =
        Fields { what: "experiments", text: &["name"], numeric: &["creation_time", "last_update_time"], tags: true, metrics_and_params: false };

    fn names(filter: &str) -> Vec<&'static str> {
        let all = [
            Exp { name: "alpha", created: 1.0, team: Some("ml") },
            Exp { name: "Beta", created: 2.0, team: None },
            Exp { name: "gamma", created: 3.0, team: Some("data") },
        ];
        let f = EXPERIMENTS.parse(filter).unwrap();
        all.iter().filter(|e| f.as_ref().is_none_or(|f| f.matches(*e))).map(|e| e.name).collect()
    }

    #[test]
    fn fields_tags_like_and_lists_filter_as_mlflow_does() {
        assert_eq!(names("name = 'alpha'"), ["alpha"]);
        assert_eq!(names("attribute.name != 'alpha'"), ["Beta", "gamma"]);
        assert_eq!(names("name LIKE '%a'"), ["alpha", "Beta", "gamma"]);
        assert_eq!(names("name LIKE 'b%'"), Vec::<&str>::new());
        assert_eq!(names("name ILIKE 'b%'"), ["Beta"]);
        assert_eq!(names("name LIKE '_lph_'"), ["alpha"]);
        assert_eq!(names("creation_time > 1 and creation_time <= 3"), ["Beta", "gamma"]);
        assert_eq!(names("tags.team = 'ml' or tag.`team` = 'data'"), ["alpha", "gamma"]);
        // No tag: fails `!=` too.
        assert_eq!(names("tags.team != 'ml'"), ["gamma"]);
        assert_eq!(names("name IN ('alpha', 'gamma') and name NOT IN ('gamma')"), ["alpha"]);
        assert_eq!(names(""), ["alpha", "Beta", "gamma"]);
    }

    #[test]
    fn errors_name_the_column_and_the_fields() {
        let err = |f: &str| EXPERIMENTS.parse(f).unwrap_err();
        assert!(err("garbage !!!").contains("column"), "{}", err("garbage !!!"));
        assert!(err("colour = 'red'").contains("no field `colour`") && err("colour = 'red'").contains("creation_time"));
        assert!(err("metrics.a > 1").contains("not a field of experiments"));
        assert!(err("creation_time = 'x'").contains("compares with a number"));
        assert!(err("name > 'x'").contains("takes =, !="));
        assert!(err("name = 'x' and").contains("column"));
    }

    #[test]
    fn like_matches_without_blowing_up() {
        assert!(like("%a%b%c%", "xxaxxbxxcxx", false));
        assert!(!like("%a%b%c%d", "xxaxxbxxcxx", false));
        assert!(like("a\u{e9}%", "a\u{e9}t\u{e9}", false));
        let long = "a".repeat(5000);
        assert!(!like(&"%a".repeat(50).to_string().replace("%a%a", "%a%b"), &long, false));
    }

    #[test]
    fn sorting_is_stable_with_missing_values_last() {
        let mut all = vec![
            Exp { name: "b", created: 1.0, team: None },
            Exp { name: "a", created: 1.0, team: Some("x") },
            Exp { name: "c", created: 2.0, team: Some("y") },
        ];
        let order = [EXPERIMENTS.parse_order("creation_time DESC").unwrap()];
        sort(&mut all, &order, &|a, b| a.name.cmp(b.name));
        assert_eq!(all.iter().map(|e| e.name).collect::<Vec<_>>(), ["c", "a", "b"]);
        let order = [EXPERIMENTS.parse_order("tags.team").unwrap()];
        sort(&mut all, &order, &|a, b| a.name.cmp(b.name));
        assert_eq!(all.iter().map(|e| e.name).collect::<Vec<_>>(), ["a", "c", "b"]);
        assert!(EXPERIMENTS.parse_order("name sideways").is_err());
    }
}
