//! The rule language: a condition over the transaction's attributes and the signals, parsed and
//! type-checked when a rule is saved (errors name the column), evaluated in priority order at
//! scoring time without parsing.
//!
//! ```text
//! condition  := or
//! or         := and ("or" and)*
//! and        := unary ("and" unary)*
//! unary      := "not" unary | "(" or ")" | comparison
//! comparison := attribute [op literal | "in" "[" literal ("," literal)* "]"]
//! op         := "==" | "!=" | "<" | "<=" | ">" | ">="
//! literal    := number | "string" | true | false
//! ```
//! A bare attribute must be a boolean; numbers compare with any operator, strings and booleans
//! with `==` / `!=` / `in`. An attribute without a value (no device given, no amount history)
//! makes every comparison false except `!=`.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::{
    level::Decision,
    signals::{Dimension, Facts, Window},
    transaction::Transaction,
};

/// Longest condition accepted, in bytes.
pub const MAX_CONDITION: usize = 2000;
/// Deepest nesting of `not` and parentheses.
const MAX_DEPTH: usize = 32;
/// Most literals in one `in` list.
const MAX_LIST: usize = 100;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Number,
    Text,
    Bool,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Self::Number => "a number",
            Self::Text => "a string",
            Self::Bool => "a boolean",
        }
    }
}

/// An attribute with a fixed name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fixed {
    Amount,
    Score,
    Trust,
    Velocity,
    AmountZ,
    FailedPayments,
    AccountAge,
    Chargebacks,
    Currency,
    Country,
    BillingCountry,
    ShippingCountry,
    Ip,
    Device,
    Card,
    EmailDomain,
    NewDevice,
    NewIp,
    HighRiskCountry,
    CountryMismatch,
    KnownBad,
    Degraded,
}

impl Fixed {
    const ALL: [Fixed; 22] = [
        Self::Amount,
        Self::Score,
        Self::Trust,
        Self::Velocity,
        Self::AmountZ,
        Self::FailedPayments,
        Self::AccountAge,
        Self::Chargebacks,
        Self::Currency,
        Self::Country,
        Self::BillingCountry,
        Self::ShippingCountry,
        Self::Ip,
        Self::Device,
        Self::Card,
        Self::EmailDomain,
        Self::NewDevice,
        Self::NewIp,
        Self::HighRiskCountry,
        Self::CountryMismatch,
        Self::KnownBad,
        Self::Degraded,
    ];

    fn name(self) -> &'static str {
        match self {
            Self::Amount => "amount",
            Self::Score => "score",
            Self::Trust => "trust",
            Self::Velocity => "velocity",
            Self::AmountZ => "amount_z",
            Self::FailedPayments => "failed_payments_7d",
            Self::AccountAge => "account_age_days",
            Self::Chargebacks => "chargebacks",
            Self::Currency => "currency",
            Self::Country => "country",
            Self::BillingCountry => "billing_country",
            Self::ShippingCountry => "shipping_country",
            Self::Ip => "ip",
            Self::Device => "device",
            Self::Card => "card",
            Self::EmailDomain => "email_domain",
            Self::NewDevice => "new_device",
            Self::NewIp => "new_ip",
            Self::HighRiskCountry => "high_risk_country",
            Self::CountryMismatch => "country_mismatch",
            Self::KnownBad => "known_bad",
            Self::Degraded => "degraded",
        }
    }

    fn kind(self) -> Kind {
        match self {
            Self::Amount
            | Self::Score
            | Self::Trust
            | Self::Velocity
            | Self::AmountZ
            | Self::FailedPayments
            | Self::AccountAge
            | Self::Chargebacks => Kind::Number,
            Self::Currency
            | Self::Country
            | Self::BillingCountry
            | Self::ShippingCountry
            | Self::Ip
            | Self::Device
            | Self::Card
            | Self::EmailDomain => Kind::Text,
            Self::NewDevice
            | Self::NewIp
            | Self::HighRiskCountry
            | Self::CountryMismatch
            | Self::KnownBad
            | Self::Degraded => Kind::Bool,
        }
    }
}

/// An attribute a condition can read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attr {
    Fixed(Fixed),
    /// `<dimension>_count_<window>` or, with `amount`, `<dimension>_amount_<window>`.
    Velocity {
        dimension: Dimension,
        window: Window,
        amount: bool,
    },
}

impl Attr {
    fn lookup(name: &str) -> Option<Attr> {
        if let Some(f) = Fixed::ALL.into_iter().find(|f| f.name() == name) {
            return Some(Attr::Fixed(f));
        }
        let (dim, rest) = name.split_once('_')?;
        let (what, window) = rest.split_once('_')?;
        Some(Attr::Velocity {
            dimension: Dimension::ALL.into_iter().find(|d| d.as_str() == dim)?,
            window: Window::ALL.into_iter().find(|w| w.as_str() == window)?,
            amount: match what {
                "count" => false,
                "amount" => true,
                _ => return None,
            },
        })
    }

    fn kind(self) -> Kind {
        match self {
            Attr::Fixed(f) => f.kind(),
            Attr::Velocity { .. } => Kind::Number,
        }
    }
}

/// Every attribute name, for error messages and the documentation.
pub fn attribute_names() -> Vec<String> {
    let mut names: Vec<String> = Fixed::ALL.iter().map(|f| f.name().to_owned()).collect();
    for d in Dimension::ALL {
        for what in ["count", "amount"] {
            for w in Window::ALL {
                names.push(format!("{}_{what}_{}", d.as_str(), w.as_str()));
            }
        }
    }
    names
}

#[derive(Debug, Clone, PartialEq)]
pub enum Literal {
    Number(f64),
    Text(String),
    Bool(bool),
}

impl Literal {
    fn kind(&self) -> Kind {
        match self {
            Self::Number(_) => Kind::Number,
            Self::Text(_) => Kind::Text,
            Self::Bool(_) => Kind::Bool,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

/// A checked condition.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    Or(Box<Expr>, Box<Expr>),
    And(Box<Expr>, Box<Expr>),
    Not(Box<Expr>),
    Compare(Attr, Op, Literal),
    In(Attr, Vec<Literal>),
    Flag(Attr),
}

/// A condition that does not parse or check, at a 1-based column.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("condition: at column {column}: {message}")]
pub struct ParseError {
    pub column: usize,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    Number(f64),
    Text(String),
    Op(Op),
    LParen,
    RParen,
    LBracket,
    RBracket,
    Comma,
    End,
}

impl fmt::Display for Tok {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Tok::Ident(s) => write!(f, "`{s}`"),
            Tok::Number(n) => write!(f, "{n}"),
            Tok::Text(s) => write!(f, "{s:?}"),
            Tok::Op(_) => f.write_str("an operator"),
            Tok::LParen => f.write_str("`(`"),
            Tok::RParen => f.write_str("`)`"),
            Tok::LBracket => f.write_str("`[`"),
            Tok::RBracket => f.write_str("`]`"),
            Tok::Comma => f.write_str("`,`"),
            Tok::End => f.write_str("the end"),
        }
    }
}

fn err<T>(column: usize, message: impl Into<String>) -> Result<T, ParseError> {
    Err(ParseError {
        column,
        message: message.into(),
    })
}

/// Tokens with their 1-based columns.
fn lex(src: &str) -> Result<Vec<(Tok, usize)>, ParseError> {
    let chars: Vec<char> = src.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let col = i + 1;
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        let two: String = chars[i..(i + 2).min(chars.len())].iter().collect();
        let (tok, len) = match (c, two.as_str()) {
            (_, "==") => (Tok::Op(Op::Eq), 2),
            (_, "!=") => (Tok::Op(Op::Ne), 2),
            (_, "<=") => (Tok::Op(Op::Le), 2),
            (_, ">=") => (Tok::Op(Op::Ge), 2),
            ('<', _) => (Tok::Op(Op::Lt), 1),
            ('>', _) => (Tok::Op(Op::Gt), 1),
            ('(', _) => (Tok::LParen, 1),
            (')', _) => (Tok::RParen, 1),
            ('[', _) => (Tok::LBracket, 1),
            (']', _) => (Tok::RBracket, 1),
            (',', _) => (Tok::Comma, 1),
            ('"', _) => {
                let end = chars[i + 1..].iter().position(|&c| c == '"');
                let Some(end) = end else {
                    return err(col, "string is not closed with `\"`");
                };
                let s: String = chars[i + 1..i + 1 + end].iter().collect();
                (Tok::Text(s), end + 2)
            }
            (c, _) if c.is_ascii_digit() || c == '-' => {
                let len = chars[i + 1..]
                    .iter()
                    .take_while(|c| c.is_ascii_digit() || **c == '.')
                    .count()
                    + 1;
                let s: String = chars[i..i + len].iter().collect();
                match s.parse::<f64>() {
                    Ok(n) if n.is_finite() => (Tok::Number(n), len),
                    _ => return err(col, format!("{s:?} is not a number")),
                }
            }
            (c, _) if c.is_ascii_lowercase() => {
                let len = chars[i..]
                    .iter()
                    .take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || **c == '_')
                    .count();
                (Tok::Ident(chars[i..i + len].iter().collect()), len)
            }
            (c, _) => return err(col, format!("unexpected character {c:?}")),
        };
        out.push((tok, col));
        i += len;
    }
    out.push((Tok::End, chars.len() + 1));
    Ok(out)
}

struct Parser {
    toks: Vec<(Tok, usize)>,
    at: usize,
    depth: usize,
}

impl Parser {
    fn peek(&self) -> &(Tok, usize) {
        // `lex` always ends with `End`, and `next` never moves past it.
        &self.toks[self.at.min(self.toks.len() - 1)]
    }

    fn next(&mut self) -> (Tok, usize) {
        let t = self.peek().clone();
        if t.0 != Tok::End {
            self.at += 1;
        }
        t
    }

    fn keyword(&mut self, word: &str) -> bool {
        if matches!(&self.peek().0, Tok::Ident(s) if s == word) {
            self.at += 1;
            true
        } else {
            false
        }
    }

    fn or(&mut self) -> Result<Expr, ParseError> {
        let mut left = self.and()?;
        while self.keyword("or") {
            left = Expr::Or(Box::new(left), Box::new(self.and()?));
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<Expr, ParseError> {
        let mut left = self.unary()?;
        while self.keyword("and") {
            left = Expr::And(Box::new(left), Box::new(self.unary()?));
        }
        Ok(left)
    }

    fn unary(&mut self) -> Result<Expr, ParseError> {
        let col = self.peek().1;
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return err(col, format!("nested deeper than {MAX_DEPTH}"));
        }
        let e = if self.keyword("not") {
            Expr::Not(Box::new(self.unary()?))
        } else if self.peek().0 == Tok::LParen {
            self.next();
            let inner = self.or()?;
            let (t, c) = self.next();
            if t != Tok::RParen {
                return err(c, format!("expected `)`, found {t}"));
            }
            inner
        } else {
            self.comparison()?
        };
        self.depth -= 1;
        Ok(e)
    }

    fn literal(&mut self, kind: Kind, name: &str) -> Result<Literal, ParseError> {
        let (t, col) = self.next();
        let lit = match t {
            Tok::Number(n) => Literal::Number(n),
            Tok::Text(s) => Literal::Text(s),
            Tok::Ident(s) if s == "true" => Literal::Bool(true),
            Tok::Ident(s) if s == "false" => Literal::Bool(false),
            other => return err(col, format!("expected a value, found {other}")),
        };
        if lit.kind() != kind {
            return err(
                col,
                format!(
                    "`{name}` is {}; it cannot be compared with {}",
                    kind.as_str(),
                    lit.kind().as_str()
                ),
            );
        }
        Ok(lit)
    }

    fn comparison(&mut self) -> Result<Expr, ParseError> {
        let (t, col) = self.next();
        let name = match t {
            Tok::Ident(s) if !["and", "or", "not", "in", "true", "false"].contains(&s.as_str()) => {
                s
            }
            other => return err(col, format!("expected an attribute, found {other}")),
        };
        let Some(attr) = Attr::lookup(&name) else {
            return err(col, format!("unknown attribute `{name}`"));
        };
        let kind = attr.kind();
        let (next, op_col) = self.peek().clone();
        match next {
            Tok::Op(op) => {
                self.next();
                if kind != Kind::Number && !matches!(op, Op::Eq | Op::Ne) {
                    return err(
                        op_col,
                        format!("`{name}` is {}; only == and != apply", kind.as_str()),
                    );
                }
                Ok(Expr::Compare(attr, op, self.literal(kind, &name)?))
            }
            Tok::Ident(s) if s == "in" => {
                self.next();
                let (open, c) = self.next();
                if open != Tok::LBracket {
                    return err(c, format!("expected `[` after `in`, found {open}"));
                }
                let mut list = vec![self.literal(kind, &name)?];
                loop {
                    let (t, c) = self.next();
                    match t {
                        Tok::Comma if list.len() < MAX_LIST => {
                            list.push(self.literal(kind, &name)?)
                        }
                        Tok::Comma => return err(c, format!("more than {MAX_LIST} values")),
                        Tok::RBracket => break,
                        other => return err(c, format!("expected `,` or `]`, found {other}")),
                    }
                }
                Ok(Expr::In(attr, list))
            }
            _ if kind == Kind::Bool => Ok(Expr::Flag(attr)),
            other => err(
                op_col,
                format!(
                    "`{name}` is {}; expected a comparison or `in`, found {other}",
                    kind.as_str()
                ),
            ),
        }
    }
}

/// Parses and checks a condition.
pub fn parse(src: &str) -> Result<Expr, ParseError> {
    if src.len() > MAX_CONDITION {
        return err(
            MAX_CONDITION + 1,
            format!("longer than {MAX_CONDITION} bytes"),
        );
    }
    let mut p = Parser {
        toks: lex(src)?,
        at: 0,
        depth: 0,
    };
    if p.peek().0 == Tok::End {
        return err(1, "the condition is empty");
    }
    let e = p.or()?;
    let (t, col) = p.next();
    if t != Tok::End {
        return err(col, format!("expected `and`, `or` or the end, found {t}"));
    }
    Ok(e)
}

/// What a condition reads at scoring time.
#[derive(Debug, Clone, Copy)]
pub struct Context<'a> {
    pub transaction: &'a Transaction,
    pub facts: &'a Facts,
    /// The score before rules (signals and model blended).
    pub score: f64,
    pub trust: f64,
    pub velocity: f64,
}

enum Value<'a> {
    Number(f64),
    Text(&'a str),
    Bool(bool),
    Missing,
}

fn text(o: &Option<String>) -> Value<'_> {
    o.as_deref().map_or(Value::Missing, Value::Text)
}

impl Context<'_> {
    fn value(&self, attr: Attr) -> Value<'_> {
        let t = self.transaction;
        let f = self.facts;
        // Counts and amounts far below 2^53 convert exactly.
        match attr {
            Attr::Velocity {
                dimension,
                window,
                amount,
            } => match &f.velocity {
                Some(v) => {
                    let tally = v.tally(dimension, window);
                    Value::Number(if amount {
                        tally.amount as f64
                    } else {
                        tally.count as f64
                    })
                }
                None => Value::Missing,
            },
            Attr::Fixed(x) => match x {
                Fixed::Amount => Value::Number(t.amount as f64),
                Fixed::Score => Value::Number(self.score),
                Fixed::Trust => Value::Number(self.trust),
                Fixed::Velocity => match f.velocity {
                    Some(_) => Value::Number(self.velocity),
                    None => Value::Missing,
                },
                Fixed::AmountZ => f.amount_z.map_or(Value::Missing, Value::Number),
                Fixed::FailedPayments => Value::Number(f.failed_payments_7d as f64),
                Fixed::AccountAge => Value::Number(f64::from(f.account_age_days)),
                Fixed::Chargebacks => Value::Number(f.chargebacks as f64),
                Fixed::Currency => Value::Text(&t.currency),
                Fixed::Country => text(&t.country),
                Fixed::BillingCountry => text(&t.billing_country),
                Fixed::ShippingCountry => text(&t.shipping_country),
                Fixed::Ip => text(&t.ip),
                Fixed::Device => text(&t.device),
                Fixed::Card => text(&t.card),
                Fixed::EmailDomain => text(&t.email_domain),
                Fixed::NewDevice => Value::Bool(f.new_device),
                Fixed::NewIp => Value::Bool(f.new_ip),
                Fixed::HighRiskCountry => Value::Bool(f.high_risk_country),
                Fixed::CountryMismatch => Value::Bool(f.country_mismatch),
                Fixed::KnownBad => Value::Bool(f.known_bad.is_some()),
                Fixed::Degraded => Value::Bool(f.velocity.is_none()),
            },
        }
    }
}

fn equals(v: &Value<'_>, lit: &Literal) -> Option<bool> {
    match (v, lit) {
        (Value::Number(a), Literal::Number(b)) => Some(a == b),
        (Value::Text(a), Literal::Text(b)) => Some(a == b),
        (Value::Bool(a), Literal::Bool(b)) => Some(a == b),
        _ => None,
    }
}

impl Expr {
    pub fn eval(&self, ctx: &Context<'_>) -> bool {
        match self {
            Expr::Or(a, b) => a.eval(ctx) || b.eval(ctx),
            Expr::And(a, b) => a.eval(ctx) && b.eval(ctx),
            Expr::Not(a) => !a.eval(ctx),
            Expr::Flag(attr) => matches!(ctx.value(*attr), Value::Bool(true)),
            Expr::In(attr, list) => {
                let v = ctx.value(*attr);
                list.iter().any(|l| equals(&v, l) == Some(true))
            }
            Expr::Compare(attr, op, lit) => {
                let v = ctx.value(*attr);
                match (op, &v, lit) {
                    (Op::Eq, ..) => equals(&v, lit) == Some(true),
                    (Op::Ne, ..) => equals(&v, lit) != Some(true),
                    (_, Value::Number(a), Literal::Number(b)) => match op {
                        Op::Lt => a < b,
                        Op::Le => a <= b,
                        Op::Gt => a > b,
                        _ => a >= b,
                    },
                    _ => false,
                }
            }
        }
    }
}

/// What a rule does when its condition holds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "score")]
pub enum Action {
    Allow,
    Review,
    Block,
    /// Adds to the score (negative lowers it); evaluation goes on.
    AddScore(f64),
}

impl Action {
    /// The decision of a terminal action.
    pub fn decision(self) -> Option<Decision> {
        match self {
            Self::Allow => Some(Decision::Approve),
            Self::Review => Some(Decision::Review),
            Self::Block => Some(Decision::Reject),
            Self::AddScore(_) => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Mode {
    /// Applied.
    Enforce,
    /// Evaluated and recorded with the decision, never applied.
    Shadow,
    /// Kept for history, not evaluated.
    Disabled,
}

/// A stored rule at one version, its condition already checked.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    pub name: String,
    pub version: i32,
    /// Lower runs first; ties by name.
    pub priority: i32,
    pub condition: String,
    pub expr: Expr,
    pub action: Action,
    pub mode: Mode,
}

/// A rule whose condition held.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Hit {
    pub rule: String,
    pub version: i32,
    pub action: Action,
    pub shadow: bool,
}

/// The rules' effect on one check.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Outcome {
    /// Sum of the enforced `add_score` actions that ran.
    pub added: f64,
    /// The first enforced terminal action's decision.
    pub decision: Option<Decision>,
    pub hits: Vec<Hit>,
}

/// Runs `rules` (sorted by priority, then name) over `ctx`: enforced `add_score` rules add and
/// go on; the first enforced allow / review / block decides and later enforced rules are not
/// evaluated; shadow rules are all evaluated and recorded, and change nothing.
pub fn apply(rules: &[Rule], ctx: &Context<'_>) -> Outcome {
    let mut out = Outcome::default();
    for r in rules {
        let shadow = match r.mode {
            Mode::Disabled => continue,
            Mode::Enforce if out.decision.is_some() => continue,
            Mode::Enforce => false,
            Mode::Shadow => true,
        };
        if !r.expr.eval(ctx) {
            continue;
        }
        out.hits.push(Hit {
            rule: r.name.clone(),
            version: r.version,
            action: r.action,
            shadow,
        });
        if shadow {
            continue;
        }
        match r.action {
            Action::AddScore(s) => out.added += s,
            terminal => out.decision = terminal.decision(),
        }
    }
    out
}

/// Sorts rules into evaluation order.
pub fn order(rules: &mut [Rule]) {
    rules.sort_by(|a, b| {
        a.priority
            .cmp(&b.priority)
            .then_with(|| a.name.cmp(&b.name))
    });
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::domain::signals::{DimensionTally, Tally, Velocity};

    fn txn() -> Transaction {
        Transaction {
            transaction_id: "t1".into(),
            user_id: "u1".into(),
            amount: 25_000,
            currency: "EUR".into(),
            ip: Some("10.0.0.1".into()),
            device: Some("d1".into()),
            card: None,
            email_domain: Some("example.com".into()),
            user_agent: String::new(),
            country: Some("FR".into()),
            billing_country: Some("FR".into()),
            shipping_country: Some("DE".into()),
            account_created_at: None,
        }
    }

    fn facts() -> Facts {
        Facts {
            new_device: true,
            velocity: Some(Velocity {
                tallies: vec![DimensionTally {
                    dimension: Dimension::Card,
                    windows: [
                        Tally {
                            count: 3,
                            amount: 900,
                        },
                        Tally {
                            count: 4,
                            amount: 1000,
                        },
                        Tally {
                            count: 9,
                            amount: 5000,
                        },
                    ],
                }],
            }),
            account_age_days: 3,
            ..Facts::default()
        }
    }

    fn holds(cond: &str) -> bool {
        let (t, f) = (txn(), facts());
        let ctx = Context {
            transaction: &t,
            facts: &f,
            score: 0.42,
            trust: 0.1,
            velocity: 0.0,
        };
        parse(cond)
            .unwrap_or_else(|e| panic!("{cond}: {e}"))
            .eval(&ctx)
    }

    #[test]
    fn conditions_evaluate() {
        for (cond, expected) in [
            ("amount > 20000", true),
            ("amount >= 25000 and amount <= 25000", true),
            ("amount < 25000", false),
            ("new_device", true),
            ("not new_device", false),
            ("new_ip or new_device", true),
            ("new_ip and new_device", false),
            ("country in [\"FR\", \"BE\"]", true),
            ("shipping_country != \"FR\"", true),
            ("card == \"c1\"", false),
            ("card != \"c1\"", true),
            ("card_count_1h == 3 and card_amount_7d > 4999", true),
            ("user_count_1h == 0", true),
            ("score >= 0.4 and trust < 0.2", true),
            ("amount_z > 1", false),
            ("not (account_age_days < 7 and currency == \"EUR\")", false),
            ("degraded == false", true),
            ("known_bad or (new_device and amount > -1)", true),
        ] {
            assert_eq!(holds(cond), expected, "{cond}");
        }
    }

    #[test]
    fn and_binds_tighter_than_or() {
        // Read as new_ip or (new_device and amount < 0).
        assert!(!holds("new_ip or new_device and amount < 0"));
        assert!(holds("new_device or new_ip and amount < 0"));
    }

    fn error(cond: &str) -> (usize, String) {
        let e = parse(cond).expect_err(cond);
        (e.column, e.message)
    }

    #[test]
    fn parse_errors_name_the_column() {
        assert_eq!(error("amont > 5"), (1, "unknown attribute `amont`".into()));
        assert_eq!(
            error("amount > 5 and country == 5"),
            (
                27,
                "`country` is a string; it cannot be compared with a number".into()
            )
        );
        assert_eq!(
            error("country < \"FR\""),
            (9, "`country` is a string; only == and != apply".into())
        );
        assert_eq!(
            error("amount"),
            (
                7,
                "`amount` is a number; expected a comparison or `in`, found the end".into()
            )
        );
        assert_eq!(
            error("(new_ip or new_device"),
            (22, "expected `)`, found the end".into())
        );
        assert_eq!(
            error("new_ip new_device"),
            (
                8,
                "expected `and`, `or` or the end, found `new_device`".into()
            )
        );
        assert_eq!(
            error("country == \"FR"),
            (12, "string is not closed with `\"`".into())
        );
        assert_eq!(
            error("amount > 5 & 1"),
            (12, "unexpected character '&'".into())
        );
        assert_eq!(
            error("country in \"FR\""),
            (12, "expected `[` after `in`, found \"FR\"".into())
        );
        assert_eq!(error("   "), (1, "the condition is empty".into()));
        assert_eq!(
            error("amount > 1.2.3"),
            (10, "\"1.2.3\" is not a number".into())
        );
        assert_eq!(error(&"not ".repeat(40)).1, "nested deeper than 32");
        assert_eq!(
            error("ip_count_2h > 1"),
            (1, "unknown attribute `ip_count_2h`".into())
        );
    }

    #[test]
    fn every_attribute_name_parses() {
        for name in attribute_names() {
            let cond = match Attr::lookup(&name).map(Attr::kind) {
                Some(Kind::Number) => format!("{name} > 0"),
                Some(Kind::Text) => format!("{name} == \"x\""),
                Some(Kind::Bool) => name.clone(),
                None => panic!("{name} does not resolve"),
            };
            assert!(parse(&cond).is_ok(), "{cond}");
        }
        assert_eq!(attribute_names().len(), 22 + 24);
    }

    fn rule(name: &str, priority: i32, cond: &str, action: Action, mode: Mode) -> Rule {
        Rule {
            name: name.into(),
            version: 1,
            priority,
            condition: cond.into(),
            expr: parse(cond).expect("valid in this test"),
            action,
            mode,
        }
    }

    fn run(rules: &mut [Rule]) -> Outcome {
        order(rules);
        let (t, f) = (txn(), facts());
        let ctx = Context {
            transaction: &t,
            facts: &f,
            score: 0.2,
            trust: 0.5,
            velocity: 0.0,
        };
        apply(rules, &ctx)
    }

    #[test]
    fn rules_run_in_priority_order_and_the_first_verdict_wins() {
        let mut rules = vec![
            rule("b-block", 20, "new_device", Action::Block, Mode::Enforce),
            rule(
                "a-add",
                10,
                "amount > 100",
                Action::AddScore(0.3),
                Mode::Enforce,
            ),
            rule(
                "c-allow",
                5,
                "country == \"FR\"",
                Action::Allow,
                Mode::Enforce,
            ),
            rule(
                "d-add",
                30,
                "amount > 100",
                Action::AddScore(0.3),
                Mode::Enforce,
            ),
        ];
        let out = run(&mut rules);
        assert_eq!(out.decision, Some(Decision::Approve));
        assert_eq!(out.added, 0.0);
        assert_eq!(out.hits.len(), 1);

        rules[0].mode = Mode::Disabled; // c-allow, first after ordering
        let out = run(&mut rules);
        assert_eq!(out.decision, Some(Decision::Reject));
        assert_eq!(out.added, 0.3);
        assert_eq!(
            out.hits.iter().map(|h| h.rule.as_str()).collect::<Vec<_>>(),
            ["a-add", "b-block"]
        );
    }

    #[test]
    fn shadow_rules_change_nothing() {
        let mut enforced = vec![rule(
            "add",
            1,
            "amount > 1",
            Action::AddScore(0.1),
            Mode::Enforce,
        )];
        let base = run(&mut enforced);
        let mut with_shadow = enforced.clone();
        with_shadow.push(rule(
            "s-block",
            0,
            "new_device",
            Action::Block,
            Mode::Shadow,
        ));
        with_shadow.push(rule(
            "s-add",
            0,
            "amount > 1",
            Action::AddScore(0.9),
            Mode::Shadow,
        ));
        let out = run(&mut with_shadow);
        assert_eq!((out.added, out.decision), (base.added, base.decision));
        assert_eq!(
            out.hits
                .iter()
                .map(|h| (h.rule.as_str(), h.shadow))
                .collect::<Vec<_>>(),
            [("s-add", true), ("s-block", true), ("add", false)]
        );
    }

    proptest! {
        #[test]
        fn parsing_never_panics(s in "[a-z_ ()\\[\\]=!<>,\"0-9.-]{0,60}") {
            let _ = parse(&s);
        }

        #[test]
        fn numbers_compare_like_rust(n in -1e9f64..1e9) {
            let c = format!("amount > {n}");
            prop_assert_eq!(holds(&c), 25_000.0 > n);
        }
    }
}
