//! Label and field selectors, with Kubernetes' syntax and matching rules.

use std::collections::BTreeMap;
use std::fmt;

use crate::validation::{label_value, qualified_name};

/// A selector could not be parsed; the message is what the client sees in a 400.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SelectorError(pub String);

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LabelOp {
    Equals,
    NotEquals,
    In,
    NotIn,
    Exists,
    DoesNotExist,
    GreaterThan,
    LessThan,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Requirement {
    pub key: String,
    pub op: LabelOp,
    pub values: Vec<String>,
}

impl Requirement {
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        let v = labels.get(&self.key);
        match self.op {
            LabelOp::Equals | LabelOp::In => v.is_some_and(|v| self.values.contains(v)),
            LabelOp::NotEquals | LabelOp::NotIn => !v.is_some_and(|v| self.values.contains(v)),
            LabelOp::Exists => v.is_some(),
            LabelOp::DoesNotExist => v.is_none(),
            LabelOp::GreaterThan | LabelOp::LessThan => {
                let (Some(have), Some(want)) = (
                    v.and_then(|v| v.parse::<i64>().ok()),
                    self.values.first().and_then(|w| w.parse::<i64>().ok()),
                ) else {
                    return false;
                };
                if self.op == LabelOp::GreaterThan {
                    have > want
                } else {
                    have < want
                }
            }
        }
    }
}

/// A parsed label selector; empty matches everything.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LabelSelector {
    pub requirements: Vec<Requirement>,
}

impl LabelSelector {
    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }

    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.requirements.iter().all(|r| r.matches(labels))
    }

    /// Parses Kubernetes' selector syntax: `a=b`, `a==b`, `a!=b`, `a in (x,y)`,
    /// `a notin (x)`, `a`, `!a`, `a>1`, `a<1`, joined by commas.
    pub fn parse(s: &str) -> Result<Self, SelectorError> {
        let mut lexer = Lexer::new(s);
        let mut requirements = Vec::new();
        loop {
            if lexer.peek() == Token::End {
                break;
            }
            let r = parse_requirement(&mut lexer)?;
            requirements.push(r);
            match lexer.next() {
                Token::End => break,
                Token::Comma => {
                    if matches!(lexer.peek(), Token::End) {
                        return Err(SelectorError(
                            "found '', expected: identifier after ','".into(),
                        ));
                    }
                }
                t => {
                    return Err(SelectorError(format!(
                        "found '{t}', expected: ',' or 'end of string'"
                    )));
                }
            }
        }
        Ok(Self { requirements })
    }

    /// Builds the selector of a `matchLabels`-style map (a Service's `spec.selector`).
    pub fn from_map(m: &BTreeMap<String, String>) -> Self {
        Self {
            requirements: m
                .iter()
                .map(|(k, v)| Requirement {
                    key: k.clone(),
                    op: LabelOp::Equals,
                    values: vec![v.clone()],
                })
                .collect(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Token {
    Ident(String),
    Comma,
    Open,
    Close,
    Eq,
    DoubleEq,
    NotEq,
    Bang,
    Gt,
    Lt,
    In,
    NotIn,
    End,
}

impl fmt::Display for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            Token::Ident(s) => s.as_str(),
            Token::Comma => ",",
            Token::Open => "(",
            Token::Close => ")",
            Token::Eq => "=",
            Token::DoubleEq => "==",
            Token::NotEq => "!=",
            Token::Bang => "!",
            Token::Gt => ">",
            Token::Lt => "<",
            Token::In => "in",
            Token::NotIn => "notin",
            Token::End => "",
        };
        f.write_str(s)
    }
}

struct Lexer<'a> {
    s: &'a [u8],
    pos: usize,
    peeked: Option<(Token, usize)>,
}

impl<'a> Lexer<'a> {
    fn new(s: &'a str) -> Self {
        Self {
            s: s.as_bytes(),
            pos: 0,
            peeked: None,
        }
    }

    fn lex(&self, mut pos: usize) -> (Token, usize) {
        while pos < self.s.len() && self.s[pos].is_ascii_whitespace() {
            pos += 1;
        }
        if pos >= self.s.len() {
            return (Token::End, pos);
        }
        let two = self.s.get(pos..pos + 2);
        match two {
            Some(b"==") => return (Token::DoubleEq, pos + 2),
            Some(b"!=") => return (Token::NotEq, pos + 2),
            _ => {}
        }
        let single = match self.s[pos] {
            b',' => Some(Token::Comma),
            b'(' => Some(Token::Open),
            b')' => Some(Token::Close),
            b'=' => Some(Token::Eq),
            b'!' => Some(Token::Bang),
            b'>' => Some(Token::Gt),
            b'<' => Some(Token::Lt),
            _ => None,
        };
        if let Some(t) = single {
            return (t, pos + 1);
        }
        let start = pos;
        while pos < self.s.len()
            && !self.s[pos].is_ascii_whitespace()
            && !b",()=!<>".contains(&self.s[pos])
        {
            pos += 1;
        }
        let word = String::from_utf8_lossy(&self.s[start..pos]).into_owned();
        let tok = match word.as_str() {
            "in" => Token::In,
            "notin" => Token::NotIn,
            _ => Token::Ident(word),
        };
        (tok, pos)
    }

    fn peek(&mut self) -> Token {
        if self.peeked.is_none() {
            self.peeked = Some(self.lex(self.pos));
        }
        self.peeked
            .as_ref()
            .map(|(t, _)| t.clone())
            .unwrap_or(Token::End)
    }

    fn next(&mut self) -> Token {
        let (t, p) = self.peeked.take().unwrap_or_else(|| self.lex(self.pos));
        self.pos = p;
        t
    }
}

fn check_key(key: &str) -> Result<(), SelectorError> {
    let errs = qualified_name(key);
    if errs.is_empty() {
        Ok(())
    } else {
        Err(SelectorError(format!(
            "unable to parse requirement: <nil>: Invalid value: {}: {}",
            crate::error::go_quote(key),
            errs.join("; ")
        )))
    }
}

fn check_value(key: &str, v: &str) -> Result<(), SelectorError> {
    let errs = label_value(v);
    if errs.is_empty() {
        Ok(())
    } else {
        Err(SelectorError(format!(
            "unable to parse requirement: values[0][{key}]: Invalid value: {}: {}",
            crate::error::go_quote(v),
            errs.join("; ")
        )))
    }
}

fn parse_requirement(lx: &mut Lexer<'_>) -> Result<Requirement, SelectorError> {
    let first = lx.next();
    if first == Token::Bang {
        let Token::Ident(key) = lx.next() else {
            return Err(SelectorError(
                "found '', expected: identifier after '!'".into(),
            ));
        };
        check_key(&key)?;
        return Ok(Requirement {
            key,
            op: LabelOp::DoesNotExist,
            values: vec![],
        });
    }
    let Token::Ident(key) = first else {
        return Err(SelectorError(format!(
            "found '{first}', expected: !, identifier, or 'end of string'"
        )));
    };
    check_key(&key)?;
    let op = match lx.peek() {
        Token::End | Token::Comma => {
            return Ok(Requirement {
                key,
                op: LabelOp::Exists,
                values: vec![],
            });
        }
        _ => lx.next(),
    };
    let op = match op {
        Token::Eq | Token::DoubleEq => LabelOp::Equals,
        Token::NotEq => LabelOp::NotEquals,
        Token::In => LabelOp::In,
        Token::NotIn => LabelOp::NotIn,
        Token::Gt => LabelOp::GreaterThan,
        Token::Lt => LabelOp::LessThan,
        t => {
            return Err(SelectorError(format!(
                "found '{t}', expected: in, notin, =, ==, !=, gt, lt"
            )));
        }
    };
    let values = match op {
        LabelOp::In | LabelOp::NotIn => {
            if lx.next() != Token::Open {
                return Err(SelectorError(
                    "found '', expected: '(' after 'in' or 'notin'".into(),
                ));
            }
            let mut values = Vec::new();
            loop {
                match lx.next() {
                    Token::Ident(v) => {
                        values.push(v);
                        match lx.next() {
                            Token::Comma => continue,
                            Token::Close => break,
                            t => {
                                return Err(SelectorError(format!(
                                    "found '{t}', expected: ',' or ')'"
                                )));
                            }
                        }
                    }
                    Token::Comma => values.push(String::new()),
                    Token::Close => break,
                    t => {
                        return Err(SelectorError(format!(
                            "found '{t}', expected: ',', ')' or identifier"
                        )));
                    }
                }
            }
            if values.is_empty() {
                return Err(SelectorError(
                    "for 'in', 'notin' operators, values set can't be empty".into(),
                ));
            }
            values
        }
        _ => match lx.peek() {
            Token::Ident(_) => match lx.next() {
                Token::Ident(v) => vec![v],
                _ => unreachable!("peeked an identifier"),
            },
            // `key=` selects the empty value.
            Token::End | Token::Comma => vec![String::new()],
            t => {
                return Err(SelectorError(format!("found '{t}', expected: identifier")));
            }
        },
    };
    for v in &values {
        if matches!(op, LabelOp::GreaterThan | LabelOp::LessThan) {
            if v.parse::<i64>().is_err() {
                return Err(SelectorError(format!(
                    "unable to parse requirement: for 'Gt', 'Lt' operators, the value must be an integer: {v}"
                )));
            }
        } else {
            check_value(&key, v)?;
        }
    }
    Ok(Requirement { key, op, values })
}

/// One term of a field selector.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldTerm {
    pub field: String,
    pub value: String,
    pub negate: bool,
}

/// A parsed field selector (`metadata.name=web,status.phase!=Active`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FieldSelector {
    pub terms: Vec<FieldTerm>,
}

impl FieldSelector {
    pub fn is_empty(&self) -> bool {
        self.terms.is_empty()
    }

    pub fn parse(s: &str) -> Result<Self, SelectorError> {
        let mut terms = Vec::new();
        if s.trim().is_empty() {
            return Ok(Self { terms });
        }
        for raw in split_unescaped(s, ',') {
            if raw.is_empty() {
                continue;
            }
            let (field, value, negate) = if let Some(i) = find_unescaped(&raw, "!=") {
                (&raw[..i], &raw[i + 2..], true)
            } else if let Some(i) = find_unescaped(&raw, "==") {
                (&raw[..i], &raw[i + 2..], false)
            } else if let Some(i) = find_unescaped(&raw, "=") {
                (&raw[..i], &raw[i + 1..], false)
            } else {
                return Err(SelectorError(format!(
                    "invalid selector: '{s}'; can't understand '{raw}'"
                )));
            };
            let value = unescape(value)
                .map_err(|e| SelectorError(format!("invalid selector: '{s}'; {e}")))?;
            terms.push(FieldTerm {
                field: field.trim().to_owned(),
                value,
                negate,
            });
        }
        Ok(Self { terms })
    }

    /// Fails with Kubernetes' message when a term names a field the resource doesn't offer.
    pub fn check_fields(&self, supported: &[&str]) -> Result<(), SelectorError> {
        for t in &self.terms {
            if !supported.contains(&t.field.as_str()) {
                return Err(SelectorError(format!(
                    "field label not supported: {}",
                    t.field
                )));
            }
        }
        Ok(())
    }

    /// Matches using a lookup of the object's selectable fields.
    pub fn matches(&self, get: impl Fn(&str) -> Option<String>) -> bool {
        self.terms.iter().all(|t| {
            let v = get(&t.field).unwrap_or_default();
            (v == t.value) != t.negate
        })
    }

    /// The name when the selector is exactly `metadata.name=<name>` (the shape kubectl uses
    /// to watch one object), so the server can read one key instead of a range.
    pub fn single_name(&self) -> Option<&str> {
        match self.terms.as_slice() {
            [t] if t.field == "metadata.name" && !t.negate => Some(&t.value),
            _ => None,
        }
    }
}

fn split_unescaped(s: &str, sep: char) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut escaped = false;
    for c in s.chars() {
        if escaped {
            cur.push('\\');
            cur.push(c);
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if c == sep {
            out.push(std::mem::take(&mut cur));
        } else {
            cur.push(c);
        }
    }
    if escaped {
        cur.push('\\');
    }
    out.push(cur);
    out
}

fn find_unescaped(s: &str, pat: &str) -> Option<usize> {
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' {
            i += 2;
            continue;
        }
        if s[i..].starts_with(pat) {
            return Some(i);
        }
        i += 1;
    }
    None
}

fn unescape(s: &str) -> Result<String, String> {
    let mut out = String::new();
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some(e @ ('\\' | ',' | '=' | '!')) => out.push(e),
                Some(e) => return Err(format!("invalid escape sequence: \\{e}")),
                None => return Err("unterminated escape sequence".into()),
            }
        } else {
            out.push(c);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn label_selector_parse_and_match() {
        let l = labels(&[("app", "web"), ("tier", "front"), ("n", "5")]);
        let cases = [
            ("", true),
            ("app=web", true),
            ("app==web", true),
            ("app!=web", false),
            ("app=db", false),
            ("missing!=x", true),
            ("app in (web, db)", true),
            ("app notin (web)", false),
            ("missing notin (web)", true),
            ("app", true),
            ("!app", false),
            ("!missing", true),
            ("n>4", true),
            ("n<4", false),
            ("app=web,tier=front", true),
            ("app=web,tier=back", false),
            ("app=", false),
        ];
        for (sel, want) in cases {
            let s = LabelSelector::parse(sel).unwrap_or_else(|e| panic!("{sel}: {e}"));
            assert_eq!(s.matches(&l), want, "{sel}");
        }
    }

    #[test]
    fn label_selector_errors() {
        for bad in [
            "app in ()",
            "app in web",
            "a b=c",
            "app=web,",
            "=x",
            "app=bad value!",
            "n>x",
            "app=(",
        ] {
            assert!(LabelSelector::parse(bad).is_err(), "{bad} should fail");
        }
    }

    #[test]
    fn field_selector() {
        let s = FieldSelector::parse("metadata.name=web,status.phase!=Terminating").unwrap();
        assert_eq!(s.terms.len(), 2);
        let get = |f: &str| match f {
            "metadata.name" => Some("web".to_string()),
            "status.phase" => Some("Active".to_string()),
            _ => None,
        };
        assert!(s.matches(get));
        assert!(s.check_fields(&["metadata.name", "status.phase"]).is_ok());
        assert_eq!(
            s.check_fields(&["metadata.name"]).unwrap_err().0,
            "field label not supported: status.phase"
        );
        assert_eq!(
            FieldSelector::parse("metadata.name=web")
                .unwrap()
                .single_name(),
            Some("web")
        );
        assert_eq!(
            FieldSelector::parse("a=x\\,y").unwrap().terms[0].value,
            "x,y"
        );
        assert!(FieldSelector::parse("nonsense").is_err());
    }
}
