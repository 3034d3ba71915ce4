//! The run search language: MLflow's filter syntax plus `or` and
//! parentheses, and `order by` clauses.
//!
//! `metrics.accuracy > 0.9 and (params.model = 'forest' or tags.team LIKE 'ml%')
//!  and attributes.status = 'FINISHED'`
//!
//! Parsed into a syntax tree (errors point at the offending token's column),
//! then turned into parameterised SQL by `store::search`: no user text is
//! ever spliced into a query.

/// Expressions (search filters, gate checks) nest at most this deep…
pub const MAX_EXPR_DEPTH: usize = 32;
/// …and hold at most this many comparisons, and this many values in all
/// (an `IN (…)` list counts each): past these a parser answers with the
/// limit instead of building a tree whose evaluation (or SQL) could
/// exhaust a stack.
pub const MAX_EXPR_TERMS: usize = 100;
/// See [`MAX_EXPR_TERMS`].
pub const MAX_EXPR_VALUES: usize = 1_000;

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

/// A comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// `=`
    Eq,
    /// `!=`, `<>`
    Ne,
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `>=`
    Ge,
    /// `LIKE`, case-sensitive, `%` and `_` wildcards.
    Like,
    /// `ILIKE`, case-insensitive.
    ILike,
    /// `IN (…)`
    In,
    /// `NOT IN (…)`
    NotIn,
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

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Word(String),
    Quoted(String),
    Number(f64),
    Op(Op),
    LParen,
    RParen,
    Comma,
    End,
}

fn lex(text: &str) -> Result<Vec<(Tok, usize)>, String> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let col = i + 1;
        match c {
            c if c.is_whitespace() => i += 1,
            '(' => {
                out.push((Tok::LParen, col));
                i += 1;
            }
            ')' => {
                out.push((Tok::RParen, col));
                i += 1;
            }
            ',' => {
                out.push((Tok::Comma, col));
                i += 1;
            }
            '\'' | '"' | '`' => {
                let quote = c;
                let mut s = String::new();
                i += 1;
                loop {
                    match chars.get(i) {
                        None => return Err(format!("unterminated {quote}quote{quote} starting at column {col}")),
                        Some(&q) if q == quote => {
                            // A doubled quote stands for itself.
                            if chars.get(i + 1) == Some(&quote) {
                                s.push(quote);
                                i += 2;
                            } else {
                                i += 1;
                                break;
                            }
                        }
                        Some(&ch) => {
                            s.push(ch);
                            i += 1;
                        }
                    }
                }
                out.push((if quote == '`' { Tok::Word(s) } else { Tok::Quoted(s) }, col));
            }
            '=' | '!' | '<' | '>' => {
                let two = chars.get(i + 1) == Some(&'=');
                let op = match (c, two) {
                    ('=', false) => Op::Eq,
                    ('=', true) => Op::Eq,
                    ('!', true) => Op::Ne,
                    ('<', true) => Op::Le,
                    ('<', false) if chars.get(i + 1) == Some(&'>') => {
                        i += 1;
                        Op::Ne
                    }
                    ('<', false) => Op::Lt,
                    ('>', true) => Op::Ge,
                    ('>', false) => Op::Gt,
                    _ => return Err(format!("unexpected `{c}` at column {col}")),
                };
                out.push((Tok::Op(op), col));
                i += if two { 2 } else { 1 };
            }
            c if c.is_ascii_digit() || ((c == '-' || c == '.') && chars.get(i + 1).is_some_and(|d| d.is_ascii_digit() || *d == '.')) => {
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
                out.push((Tok::Number(s.parse().map_err(|_| format!("`{s}` at column {col} is not a number"))?), col));
            }
            c if c.is_alphanumeric() || c == '_' => {
                let start = i;
                while i < chars.len() && (chars[i].is_alphanumeric() || "_.-/:".contains(chars[i])) {
                    i += 1;
                }
                out.push((Tok::Word(chars[start..i].iter().collect()), col));
            }
            _ => return Err(format!("unexpected `{c}` at column {col}")),
        }
    }
    out.push((Tok::End, chars.len() + 1));
    Ok(out)
}

struct Parser {
    toks: Vec<(Tok, usize)>,
    pos: usize,
    /// Parentheses open at this point.
    depth: usize,
    terms: usize,
    values: usize,
}

impl Parser {
    fn new(text: &str) -> Result<Self, String> {
        Ok(Parser { toks: lex(text)?, pos: 0, depth: 0, terms: 0, values: 0 })
    }
    fn peek(&self) -> &Tok {
        &self.toks[self.pos].0
    }
    fn col(&self) -> usize {
        self.toks[self.pos].1
    }
    fn bump(&mut self) -> (Tok, usize) {
        let t = self.toks[self.pos].clone();
        if self.pos + 1 < self.toks.len() {
            self.pos += 1;
        }
        t
    }
    fn is_kw(&self, kw: &str) -> bool {
        matches!(self.peek(), Tok::Word(w) if w.eq_ignore_ascii_case(kw))
    }

    fn or(&mut self) -> Result<Filter, String> {
        let mut left = self.and()?;
        while self.is_kw("or") {
            self.bump();
            left = Filter::Or(Box::new(left), Box::new(self.and()?));
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<Filter, String> {
        let mut left = self.factor()?;
        while self.is_kw("and") {
            self.bump();
            left = Filter::And(Box::new(left), Box::new(self.factor()?));
        }
        Ok(left)
    }

    fn factor(&mut self) -> Result<Filter, String> {
        if *self.peek() == Tok::LParen {
            if self.depth == MAX_EXPR_DEPTH {
                return Err(format!("parentheses nest deeper than {MAX_EXPR_DEPTH} levels at column {}", self.col()));
            }
            self.depth += 1;
            self.bump();
            let e = self.or()?;
            self.depth -= 1;
            let col = self.col();
            return match self.bump().0 {
                Tok::RParen => Ok(e),
                _ => Err(format!("expected `)` at column {col}")),
            };
        }
        self.terms += 1;
        if self.terms > MAX_EXPR_TERMS {
            return Err(format!("the filter has more than {MAX_EXPR_TERMS} comparisons (at column {}); narrow it or split the search", self.col()));
        }
        let (entity, key) = self.identifier()?;
        let col = self.col();
        let op = match self.bump().0 {
            Tok::Op(op) => op,
            Tok::Word(w) if w.eq_ignore_ascii_case("like") => Op::Like,
            Tok::Word(w) if w.eq_ignore_ascii_case("ilike") => Op::ILike,
            Tok::Word(w) if w.eq_ignore_ascii_case("in") => Op::In,
            Tok::Word(w) if w.eq_ignore_ascii_case("not") && self.is_kw("in") => {
                self.bump();
                Op::NotIn
            }
            _ => return Err(format!("expected a comparison (=, !=, <, <=, >, >=, LIKE, ILIKE, IN, NOT IN) at column {col}")),
        };
        let value = self.value(op)?;
        check(entity, &key, op, &value, col)?;
        Ok(Filter::Compare { entity, key, op, value })
    }

    fn identifier(&mut self) -> Result<(Entity, String), String> {
        let col = self.col();
        let word = match self.bump().0 {
            Tok::Word(w) => w,
            other => return Err(format!("expected metrics.NAME, params.NAME, tags.NAME or attributes.NAME at column {col}, found {other:?}")),
        };
        let (prefix, mut key) = match word.split_once('.') {
            Some((p, k)) => (p.to_string(), k.to_string()),
            None => return Err(format!("`{word}` at column {col} needs a prefix: metrics., params., tags. or attributes.")),
        };
        let entity = match prefix.to_ascii_lowercase().as_str() {
            "metrics" | "metric" => Entity::Metric,
            "params" | "param" | "parameters" | "parameter" => Entity::Param,
            "tags" | "tag" => Entity::Tag,
            "attributes" | "attribute" | "attr" | "run" => Entity::Attribute,
            _ => return Err(format!("unknown prefix `{prefix}` at column {col}: use metrics., params., tags. or attributes.")),
        };
        // `metrics.`a b`` and `metrics."a b"`: the key is the next token.
        if key.is_empty() {
            match self.bump().0 {
                Tok::Word(w) | Tok::Quoted(w) => key = w,
                _ => return Err(format!("expected a name after `{prefix}.` at column {col}")),
            }
        }
        if entity == Entity::Attribute {
            key = key.to_ascii_lowercase();
            if !ATTRIBUTES.iter().any(|(a, _)| *a == key) {
                let names: Vec<&str> = ATTRIBUTES.iter().map(|(a, _)| *a).collect();
                return Err(format!("unknown attribute `{key}` at column {col} (attributes: {})", names.join(", ")));
            }
        }
        Ok((entity, key))
    }

    fn value(&mut self, op: Op) -> Result<Value, String> {
        let col = self.col();
        if matches!(op, Op::In | Op::NotIn) {
            if self.bump().0 != Tok::LParen {
                return Err(format!("expected `(` after IN at column {col}"));
            }
            let mut items = Vec::new();
            loop {
                items.push(self.scalar()?);
                let c = self.col();
                match self.bump().0 {
                    Tok::Comma => continue,
                    Tok::RParen => break,
                    _ => return Err(format!("expected `,` or `)` at column {c}")),
                }
            }
            return Ok(Value::List(items));
        }
        self.scalar()
    }

    fn scalar(&mut self) -> Result<Value, String> {
        let col = self.col();
        self.values += 1;
        if self.values > MAX_EXPR_VALUES {
            return Err(format!("the filter has more than {MAX_EXPR_VALUES} values (at column {col})"));
        }
        match self.bump().0 {
            Tok::Number(n) => Ok(Value::Number(n)),
            Tok::Quoted(s) => Ok(Value::Text(s)),
            Tok::End => Err(format!("the filter ends early at column {col}; expected a value")),
            other => Err(format!("expected a number or a 'quoted string' at column {col}, found {other:?}")),
        }
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
    let mut p = Parser::new(text)?;
    let f = p.or()?;
    if *p.peek() != Tok::End {
        return Err(format!("unexpected {:?} at column {}", p.peek(), p.col()));
    }
    Ok(Some(f))
}

/// Parse `metrics.accuracy DESC`, `attributes.start_time`, `params.lr ASC`.
pub fn parse_order_by(text: &str) -> Result<OrderBy, String> {
    let mut p = Parser::new(text)?;
    let (entity, key) = p.identifier()?;
    let descending = if p.is_kw("desc") {
        p.bump();
        true
    } else {
        if p.is_kw("asc") {
            p.bump();
        }
        false
    };
    if *p.peek() != Tok::End {
        return Err(format!("unexpected {:?} at column {} (expected ASC or DESC)", p.peek(), p.col()));
    }
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
