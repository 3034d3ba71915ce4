//! One expression language, one parser: for pipeline gates
//! (`evaluate.accuracy >= 0.85 and not drift.dataset_drift`), run search
//! filters (`metrics.accuracy > 0.9 and params.model IN ('a', 'b')`) and
//! the alert rules monitoring adds.
//!
//! Comparisons of dotted names, numbers, quoted strings, `true`/`false` and
//! `IN (…)` lists, joined by `and`, `or`, `not` and parentheses. The parser
//! builds a syntax tree whose every piece knows its column; each user then
//! checks the tree for what it accepts (a gate compares `STAGE.METRIC` with
//! numbers, a filter an `entity.key` with a value) and turns it into its own
//! form. Nothing is evaluated here.

/// Expressions nest at most this deep…
pub const MAX_EXPR_DEPTH: usize = 32;
/// …and hold at most this many comparisons, and this many values in all
/// (an `IN (…)` list counts each): past these the parser answers with the
/// limit instead of building a tree whose evaluation (or SQL) could
/// exhaust a stack.
pub const MAX_EXPR_TERMS: usize = 100;
/// See [`MAX_EXPR_TERMS`].
pub const MAX_EXPR_VALUES: usize = 1_000;

/// A parsed expression.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    /// Both hold.
    And(Box<Expr>, Box<Expr>),
    /// Either holds.
    Or(Box<Expr>, Box<Expr>),
    /// `not` and the column it stands at.
    Not(Box<Expr>, usize),
    /// `left op right`.
    Compare {
        /// What is compared.
        left: Term,
        /// How.
        op: Op,
        /// With what (a [`TermKind::List`] for `IN`).
        right: Term,
        /// The operator's column.
        col: usize,
    },
    /// A term standing alone as a truth value: `drift.dataset_drift`, `true`.
    Term(Term),
}

/// A value or a name, and the column it starts at.
#[derive(Debug, Clone, PartialEq)]
pub struct Term {
    /// What it is.
    pub kind: TermKind,
    /// Where it starts, from 1.
    pub col: usize,
}

/// What a [`Term`] is.
#[derive(Debug, Clone, PartialEq)]
pub enum TermKind {
    /// A dotted name: `evaluate.accuracy`, `metrics.val loss` (written
    /// ``metrics.`val loss` `` or `metrics."val loss"`).
    Name(String),
    /// A number.
    Number(f64),
    /// A 'quoted' or "quoted" string.
    Text(String),
    /// `true` or `false`.
    Bool(bool),
    /// The list of `IN (…)`.
    List(Vec<Term>),
}

/// A comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// `=`, `==`
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

impl Term {
    /// How an error message shows it.
    pub fn describe(&self) -> String {
        match &self.kind {
            TermKind::Name(n) => format!("`{n}`"),
            TermKind::Number(v) => format!("number {v}"),
            TermKind::Text(s) => format!("'{s}'"),
            TermKind::Bool(b) => format!("`{b}`"),
            TermKind::List(_) => "a list".into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Tok {
    Word(String),
    /// A backquoted name.
    Name(String),
    Quoted(String),
    Number(f64),
    Op(Op),
    LParen,
    RParen,
    Comma,
    End,
}

impl Tok {
    fn describe(&self) -> String {
        match self {
            Tok::Word(w) | Tok::Name(w) => format!("`{w}`"),
            Tok::Quoted(s) => format!("'{s}'"),
            Tok::Number(v) => format!("number {v}"),
            Tok::Op(_) => "a comparison".into(),
            Tok::LParen => "`(`".into(),
            Tok::RParen => "`)`".into(),
            Tok::Comma => "`,`".into(),
            Tok::End => "the end".into(),
        }
    }
}

fn word_char(c: char) -> bool {
    c.is_alphanumeric() || "_.-/:".contains(c)
}

pub(crate) fn lex(text: &str) -> Result<Vec<(Tok, usize)>, String> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let col = i + 1;
        match c {
            c if c.is_whitespace() => i += 1,
            '(' | ')' | ',' => {
                out.push((
                    match c {
                        '(' => Tok::LParen,
                        ')' => Tok::RParen,
                        _ => Tok::Comma,
                    },
                    col,
                ));
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
                out.push((if quote == '`' { Tok::Name(s) } else { Tok::Quoted(s) }, col));
            }
            '=' | '!' | '<' | '>' => {
                let next = chars.get(i + 1).copied();
                let (op, len) = match (c, next) {
                    ('=', Some(n @ ('>' | '<'))) => return Err(format!("unexpected `={n}` at column {col} (did you mean {n}=?)")),
                    ('=', Some('=')) => (Op::Eq, 2),
                    ('=', _) => (Op::Eq, 1),
                    ('!', Some('=')) => (Op::Ne, 2),
                    ('<', Some('=')) => (Op::Le, 2),
                    ('<', Some('>')) => (Op::Ne, 2),
                    ('<', _) => (Op::Lt, 1),
                    ('>', Some('=')) => (Op::Ge, 2),
                    ('>', _) => (Op::Gt, 1),
                    _ => return Err(format!("unexpected `{c}` at column {col} (comparisons are = != < <= > >=)")),
                };
                out.push((Tok::Op(op), col));
                i += len;
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
                while i < chars.len() && word_char(chars[i]) {
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

pub(crate) struct Parser {
    toks: Vec<(Tok, usize)>,
    pos: usize,
    /// Parentheses and `not`s open at this point.
    depth: usize,
    terms: usize,
    values: usize,
}

impl Parser {
    pub(crate) fn new(text: &str) -> Result<Self, String> {
        Ok(Parser { toks: lex(text)?, pos: 0, depth: 0, terms: 0, values: 0 })
    }
    pub(crate) fn peek(&self) -> &Tok {
        &self.toks[self.pos].0
    }
    pub(crate) fn col(&self) -> usize {
        self.toks[self.pos].1
    }
    pub(crate) fn bump(&mut self) -> (Tok, usize) {
        let t = self.toks[self.pos].clone();
        if self.pos + 1 < self.toks.len() {
            self.pos += 1;
        }
        t
    }
    pub(crate) fn is_kw(&self, kw: &str) -> bool {
        matches!(self.peek(), Tok::Word(w) if w.eq_ignore_ascii_case(kw))
    }
    /// Anything left is an error.
    pub(crate) fn end(&self, hint: &str) -> Result<(), String> {
        match self.peek() {
            Tok::End => Ok(()),
            t => Err(format!("unexpected {} at column {}{hint}", t.describe(), self.col())),
        }
    }

    fn or(&mut self) -> Result<Expr, String> {
        let mut left = self.and()?;
        while self.is_kw("or") {
            self.bump();
            left = Expr::Or(Box::new(left), Box::new(self.and()?));
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<Expr, String> {
        let mut left = self.not()?;
        while self.is_kw("and") {
            self.bump();
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
        if self.is_kw("not") {
            let col = self.col();
            self.nest()?;
            self.bump();
            let inner = self.not()?;
            self.depth -= 1;
            return Ok(Expr::Not(Box::new(inner), col));
        }
        if *self.peek() == Tok::LParen {
            self.nest()?;
            self.bump();
            let e = self.or()?;
            self.depth -= 1;
            let col = self.col();
            return match self.bump().0 {
                Tok::RParen => Ok(e),
                _ => Err(format!("expected `)` at column {col}")),
            };
        }
        self.comparison()
    }

    fn comparison(&mut self) -> Result<Expr, String> {
        self.terms += 1;
        if self.terms > MAX_EXPR_TERMS {
            return Err(format!("the expression has more than {MAX_EXPR_TERMS} comparisons (at column {})", self.col()));
        }
        let left = self.term()?;
        let col = self.col();
        let op = match self.peek() {
            Tok::Op(op) => Some(*op),
            Tok::Word(w) if w.eq_ignore_ascii_case("like") => Some(Op::Like),
            Tok::Word(w) if w.eq_ignore_ascii_case("ilike") => Some(Op::ILike),
            Tok::Word(w) if w.eq_ignore_ascii_case("in") => Some(Op::In),
            Tok::Word(w) if w.eq_ignore_ascii_case("not") => {
                // Only `NOT IN` may follow a term.
                let next = self.toks.get(self.pos + 1).map(|t| &t.0);
                matches!(next, Some(Tok::Word(w)) if w.eq_ignore_ascii_case("in")).then_some(Op::NotIn)
            }
            _ => None,
        };
        let Some(op) = op else { return Ok(Expr::Term(left)) };
        self.bump();
        if op == Op::NotIn {
            self.bump();
        }
        let right = if matches!(op, Op::In | Op::NotIn) { self.list()? } else { self.term()? };
        Ok(Expr::Compare { left, op, right, col })
    }

    fn list(&mut self) -> Result<Term, String> {
        let col = self.col();
        if self.bump().0 != Tok::LParen {
            return Err(format!("expected `(` after IN at column {col}"));
        }
        let mut items = Vec::new();
        loop {
            items.push(self.term()?);
            let c = self.col();
            match self.bump().0 {
                Tok::Comma => continue,
                Tok::RParen => break,
                _ => return Err(format!("expected `,` or `)` at column {c}")),
            }
        }
        Ok(Term { kind: TermKind::List(items), col })
    }

    pub(crate) fn term(&mut self) -> Result<Term, String> {
        let col = self.col();
        // Values, not names, count: an `IN` list of 1,000 is allowed.
        if !matches!(self.peek(), Tok::Word(_) | Tok::Name(_)) {
            self.values += 1;
            if self.values > MAX_EXPR_VALUES {
                return Err(format!("the expression has more than {MAX_EXPR_VALUES} values (at column {col})"));
            }
        }
        let kind = match self.bump().0 {
            Tok::Number(v) => TermKind::Number(v),
            Tok::Quoted(s) => TermKind::Text(s),
            Tok::Name(n) => TermKind::Name(n),
            Tok::Word(w) if w.eq_ignore_ascii_case("true") => TermKind::Bool(true),
            Tok::Word(w) if w.eq_ignore_ascii_case("false") => TermKind::Bool(false),
            Tok::Word(mut w) => {
                // `metrics."val loss"`, ``metrics.`val loss` ``: the name
                // goes on in the next token.
                if w.ends_with('.')
                    && let Tok::Quoted(rest) | Tok::Name(rest) = self.peek().clone()
                {
                    self.bump();
                    w.push_str(&rest);
                }
                TermKind::Name(w)
            }
            Tok::End => return Err(format!("the expression ends early at column {col}; expected a value")),
            other => return Err(format!("unexpected {} at column {col}", other.describe())),
        };
        Ok(Term { kind, col })
    }
}

/// An ordering clause: a term, then `ASC` (the default) or `DESC`;
/// returns the term and whether it is descending.
pub(crate) fn order_clause(text: &str) -> Result<(Term, bool), String> {
    let mut p = Parser::new(text)?;
    let term = p.term()?;
    let descending = if p.is_kw("desc") {
        p.bump();
        true
    } else {
        if p.is_kw("asc") {
            p.bump();
        }
        false
    };
    p.end(" (expected ASC or DESC)")?;
    Ok((term, descending))
}

/// Parse an expression; errors name the column of the offending token.
pub fn parse(text: &str) -> Result<Expr, String> {
    let mut p = Parser::new(text)?;
    let e = p.or()?;
    p.end("")?;
    Ok(e)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(n: &str, col: usize) -> Term {
        Term { kind: TermKind::Name(n.into()), col }
    }

    #[test]
    fn precedence_not_and_lists() {
        let e = parse("a.x >= 1 and not b.y or c.z IN ('p', 'q')").unwrap();
        let Expr::Or(left, right) = e else { panic!("{e:?}") };
        let Expr::And(cmp, not) = *left else { panic!() };
        assert_eq!(*cmp, Expr::Compare { left: name("a.x", 1), op: Op::Ge, right: Term { kind: TermKind::Number(1.0), col: 8 }, col: 5 });
        assert!(matches!(*not, Expr::Not(ref inner, 14) if **inner == Expr::Term(name("b.y", 18))));
        let Expr::Compare { op: Op::In, right: Term { kind: TermKind::List(items), .. }, .. } = *right else { panic!() };
        assert_eq!(items.len(), 2);
        assert!(matches!(parse("t.k NOT IN ('a')").unwrap(), Expr::Compare { op: Op::NotIn, .. }));
        assert!(matches!(parse("metrics.\"val loss\" = 1").unwrap(), Expr::Compare { left, .. } if left == name("metrics.val loss", 1)));
        assert!(matches!(parse("x.y == 1").unwrap(), Expr::Compare { op: Op::Eq, .. }));
        assert!(matches!(parse("x.y <> 1").unwrap(), Expr::Compare { op: Op::Ne, .. }));
    }

    #[test]
    fn errors_name_the_column() {
        assert!(parse("a.x >= ").unwrap_err().contains("column 8"));
        assert!(parse("a.x ~ 1").unwrap_err().contains("column 5"));
        assert!(parse("(a.x > 1").unwrap_err().contains("expected `)`"));
        assert!(parse("a.x = 'open").unwrap_err().contains("unterminated"));
        assert!(parse("a.x > 1 b.y").unwrap_err().contains("column 9"));
    }

    #[test]
    fn nesting_terms_and_values_are_limited() {
        let deep = format!("{}a.x > 1{}", "(".repeat(5000), ")".repeat(5000));
        assert!(parse(&deep).unwrap_err().contains("deeper than 32 levels"));
        assert!(parse(&format!("{}a.x", "not ".repeat(5000))).unwrap_err().contains("deeper than 32 levels"));
        let chain = |n: usize| (0..n).map(|i| format!("a.m{i} > 1")).collect::<Vec<_>>().join(" or ");
        assert!(parse(&chain(100)).is_ok());
        assert!(parse(&chain(60_000)).unwrap_err().contains("more than 100 comparisons"));
        let list = format!("p.p IN ({})", (0..1001).map(|i| format!("'{i}'")).collect::<Vec<_>>().join(","));
        assert!(parse(&list).unwrap_err().contains("more than 1000 values"));
    }
}
