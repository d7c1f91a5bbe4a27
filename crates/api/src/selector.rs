//! Kubernetes label selectors in their string form (`key`, `!key`, `key=value`,
//! `key!=value`, `key in (a,b)`, `key notin (a,b)`, comma-separated), as Eraser's node filter
//! takes them.
//!
//! Eraser hands each `manager.nodeFilter.selectors` entry to `labels.Parse`; the same grammar
//! and the same matching rules hold here, so a selector picks the same nodes under Image
//! Cleaner as under Eraser. The manager matches nodes with [`LabelSelector::matches`]; the
//! config parser uses [`LabelSelector::from_str`] to reject a bad selector before any run.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Longest label name (the part after an optional `prefix/`), and longest value.
const NAME_MAX_LEN: usize = 63;
/// Longest label key prefix (a DNS subdomain).
const PREFIX_MAX_LEN: usize = 253;

/// Why a string is not a label selector. Every variant carries the whole selector as given.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SelectorError {
    /// Two commas in a row, or a leading or trailing comma.
    #[error("invalid label selector {input:?}: empty requirement")]
    EmptyRequirement {
        /// The selector.
        input: String,
    },
    /// The key is not a qualified name (`[prefix/]name`).
    #[error(
        "invalid label selector {input:?}: invalid key {key:?} (a label key is an optional DNS \
         subdomain and '/', then up to 63 letters, digits, '-', '_' or '.', beginning and ending \
         with a letter or digit)"
    )]
    InvalidKey {
        /// The selector.
        input: String,
        /// The key as written.
        key: String,
    },
    /// The value is not a label value.
    #[error(
        "invalid label selector {input:?}: invalid value {value:?} (up to 63 letters, digits, \
         '-', '_' or '.', beginning and ending with a letter or digit)"
    )]
    InvalidValue {
        /// The selector.
        input: String,
        /// The value as written.
        value: String,
    },
    /// Something other than an operator after a key.
    #[error(
        "invalid label selector {input:?}: expected one of =, ==, !=, in, notin, >, < or ',' \
         after {key:?}, found {found:?}"
    )]
    UnexpectedText {
        /// The selector.
        input: String,
        /// The key before the unexpected text.
        key: String,
        /// What followed it.
        found: String,
    },
    /// `in` or `notin` without a parenthesised list, or with unbalanced parentheses.
    #[error("invalid label selector {input:?}: expected a list such as (a,b) after {key:?}")]
    MissingSet {
        /// The selector.
        input: String,
        /// The key of the set requirement.
        key: String,
    },
    /// `in ()` or `notin ()`.
    #[error("invalid label selector {input:?}: the values of {key:?} in/notin must not be empty")]
    EmptySet {
        /// The selector.
        input: String,
        /// The key of the set requirement.
        key: String,
    },
    /// `>` or `<` with a value that is not an integer.
    #[error("invalid label selector {input:?}: {value:?} after {key:?} > or < must be an integer")]
    NotAnInteger {
        /// The selector.
        input: String,
        /// The key.
        key: String,
        /// The value as written.
        value: String,
    },
    /// A `(` or `)` outside an `in`/`notin` list.
    #[error("invalid label selector {input:?}: unbalanced parentheses")]
    UnbalancedParentheses {
        /// The selector.
        input: String,
    },
}

/// What a requirement asks of one label.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Operator {
    /// `key`: the label is present.
    Exists,
    /// `!key`: the label is absent.
    DoesNotExist,
    /// `key=value` or `key==value`.
    Equals(String),
    /// `key!=value`: absent, or present with another value.
    NotEquals(String),
    /// `key in (a,b)`: present with one of the values.
    In(BTreeSet<String>),
    /// `key notin (a,b)`: absent, or present with none of the values.
    NotIn(BTreeSet<String>),
    /// `key>n`: present with an integer value greater than `n`.
    GreaterThan(i64),
    /// `key<n`: present with an integer value less than `n`.
    LessThan(i64),
}

/// One comma-separated part of a selector.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Requirement {
    /// The label key.
    pub key: String,
    /// What the label must satisfy.
    pub operator: Operator,
}

impl Requirement {
    /// Whether `labels` satisfy this requirement, by Kubernetes' rules.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        let value = labels.get(&self.key);
        match (&self.operator, value) {
            (Operator::Exists, found) => found.is_some(),
            (Operator::DoesNotExist, found) => found.is_none(),
            (Operator::Equals(wanted), Some(found)) => found == wanted,
            (Operator::Equals(_), None) => false,
            (Operator::NotEquals(unwanted), Some(found)) => found != unwanted,
            (Operator::NotEquals(_), None) => true,
            (Operator::In(values), Some(found)) => values.contains(found),
            (Operator::In(_), None) => false,
            (Operator::NotIn(values), Some(found)) => !values.contains(found),
            (Operator::NotIn(_), None) => true,
            (Operator::GreaterThan(bound), Some(found)) => {
                found.parse::<i64>().is_ok_and(|n| n > *bound)
            }
            (Operator::LessThan(bound), Some(found)) => {
                found.parse::<i64>().is_ok_and(|n| n < *bound)
            }
            (Operator::GreaterThan(_) | Operator::LessThan(_), None) => false,
        }
    }
}

/// A parsed label selector: every requirement must hold. The empty selector matches
/// everything, as in Kubernetes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LabelSelector {
    text: String,
    requirements: Vec<Requirement>,
}

impl LabelSelector {
    /// The requirements, in the order written.
    pub fn requirements(&self) -> &[Requirement] {
        &self.requirements
    }

    /// Whether this selector has no requirements and so matches everything.
    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }

    /// The selector as written, without surrounding whitespace.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether `labels` satisfy every requirement.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.requirements.iter().all(|r| r.matches(labels))
    }
}

impl fmt::Display for LabelSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl FromStr for LabelSelector {
    type Err = SelectorError;

    fn from_str(input: &str) -> Result<LabelSelector, SelectorError> {
        let text = input.trim();
        let mut requirements = Vec::new();
        if !text.is_empty() {
            for part in split_requirements(input, text)? {
                requirements.push(parse_requirement(input, part.trim())?);
            }
        }
        Ok(LabelSelector {
            text: text.to_owned(),
            requirements,
        })
    }
}

impl Serialize for LabelSelector {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.text)
    }
}

impl<'de> Deserialize<'de> for LabelSelector {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// Splits on the commas that are not inside a parenthesised value list.
fn split_requirements<'a>(input: &str, text: &'a str) -> Result<Vec<&'a str>, SelectorError> {
    let unbalanced = || SelectorError::UnbalancedParentheses {
        input: input.to_owned(),
    };
    let mut parts = Vec::new();
    let mut depth = 0u32;
    let mut start = 0;
    for (index, c) in text.char_indices() {
        match c {
            '(' => {
                depth += 1;
                if depth > 1 {
                    return Err(unbalanced());
                }
            }
            ')' => depth = depth.checked_sub(1).ok_or_else(unbalanced)?,
            ',' if depth == 0 => {
                parts.push(&text[start..index]);
                start = index + 1;
            }
            _ => {}
        }
    }
    if depth != 0 {
        return Err(unbalanced());
    }
    parts.push(&text[start..]);
    if parts.iter().any(|p| p.trim().is_empty()) {
        return Err(SelectorError::EmptyRequirement {
            input: input.to_owned(),
        });
    }
    Ok(parts)
}

fn parse_requirement(input: &str, part: &str) -> Result<Requirement, SelectorError> {
    let invalid_key = |key: &str| SelectorError::InvalidKey {
        input: input.to_owned(),
        key: key.to_owned(),
    };
    if let Some(key) = part.strip_prefix('!') {
        let key = key.trim();
        if !is_label_key(key) {
            return Err(invalid_key(key));
        }
        return Ok(Requirement {
            key: key.to_owned(),
            operator: Operator::DoesNotExist,
        });
    }
    let key_len = part
        .find(|c: char| c.is_whitespace() || "=!<>(),".contains(c))
        .unwrap_or(part.len());
    let (key, rest) = part.split_at(key_len);
    if !is_label_key(key) {
        return Err(invalid_key(key));
    }
    let rest = rest.trim_start();
    let value = |text: &str| -> Result<String, SelectorError> {
        let text = text.trim();
        if is_label_value(text) {
            Ok(text.to_owned())
        } else {
            Err(SelectorError::InvalidValue {
                input: input.to_owned(),
                value: text.to_owned(),
            })
        }
    };
    let integer = |text: &str| -> Result<i64, SelectorError> {
        let text = text.trim();
        text.parse().map_err(|_| SelectorError::NotAnInteger {
            input: input.to_owned(),
            key: key.to_owned(),
            value: text.to_owned(),
        })
    };
    let operator = if rest.is_empty() {
        Operator::Exists
    } else if let Some(text) = rest.strip_prefix("!=") {
        Operator::NotEquals(value(text)?)
    } else if let Some(text) = rest.strip_prefix("==") {
        Operator::Equals(value(text)?)
    } else if let Some(text) = rest.strip_prefix('=') {
        Operator::Equals(value(text)?)
    } else if let Some(text) = rest.strip_prefix('>') {
        Operator::GreaterThan(integer(text)?)
    } else if let Some(text) = rest.strip_prefix('<') {
        Operator::LessThan(integer(text)?)
    } else if let Some(text) = strip_word(rest, "notin") {
        Operator::NotIn(value_set(input, key, text)?)
    } else if let Some(text) = strip_word(rest, "in") {
        Operator::In(value_set(input, key, text)?)
    } else {
        return Err(SelectorError::UnexpectedText {
            input: input.to_owned(),
            key: key.to_owned(),
            found: rest.to_owned(),
        });
    };
    Ok(Requirement {
        key: key.to_owned(),
        operator,
    })
}

/// `word` followed by whitespace or `(`.
fn strip_word<'a>(text: &'a str, word: &str) -> Option<&'a str> {
    let rest = text.strip_prefix(word)?;
    (rest.starts_with('(') || rest.starts_with(char::is_whitespace)).then_some(rest)
}

fn value_set(input: &str, key: &str, text: &str) -> Result<BTreeSet<String>, SelectorError> {
    let inner = text
        .trim()
        .strip_prefix('(')
        .and_then(|t| t.strip_suffix(')'))
        .ok_or_else(|| SelectorError::MissingSet {
            input: input.to_owned(),
            key: key.to_owned(),
        })?;
    if inner.trim().is_empty() {
        return Err(SelectorError::EmptySet {
            input: input.to_owned(),
            key: key.to_owned(),
        });
    }
    inner
        .split(',')
        .map(|v| {
            let v = v.trim();
            if is_label_value(v) {
                Ok(v.to_owned())
            } else {
                Err(SelectorError::InvalidValue {
                    input: input.to_owned(),
                    value: v.to_owned(),
                })
            }
        })
        .collect()
}

/// A Kubernetes qualified name: `[dns-subdomain/]name`.
pub fn is_label_key(key: &str) -> bool {
    let (prefix, name) = match key.split_once('/') {
        Some((prefix, name)) => (Some(prefix), name),
        None => (None, key),
    };
    if let Some(prefix) = prefix
        && !is_dns_subdomain(prefix)
    {
        return false;
    }
    !name.is_empty() && is_label_value(name)
}

/// A Kubernetes label value: empty, or up to 63 alphanumerics, `-`, `_`, `.`, starting and
/// ending with an alphanumeric.
pub fn is_label_value(value: &str) -> bool {
    if value.is_empty() {
        return true;
    }
    let bytes = value.as_bytes();
    value.len() <= NAME_MAX_LEN
        && bytes[0].is_ascii_alphanumeric()
        && bytes[bytes.len() - 1].is_ascii_alphanumeric()
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// A DNS-1123 subdomain: dot-separated lowercase labels, at most 253 characters.
pub(crate) fn is_dns_subdomain(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= PREFIX_MAX_LEN
        && text.split('.').all(|label| {
            let bytes = label.as_bytes();
            !bytes.is_empty()
                && bytes[0].is_ascii_alphanumeric()
                && bytes[bytes.len() - 1].is_ascii_alphanumeric()
                && bytes
                    .iter()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
        })
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
    fn parses_every_operator() {
        let set = |values: &[&str]| values.iter().map(|v| v.to_string()).collect();
        let cases: Vec<(&str, Operator)> = vec![
            ("eraser.sh/cleanup.filter", Operator::Exists),
            ("!eraser.sh/cleanup.filter", Operator::DoesNotExist),
            ("! key", Operator::DoesNotExist),
            (
                "kubernetes.io/os=windows",
                Operator::Equals("windows".into()),
            ),
            (
                "kubernetes.io/os == windows",
                Operator::Equals("windows".into()),
            ),
            ("key=", Operator::Equals(String::new())),
            ("key!=value", Operator::NotEquals("value".into())),
            ("zone in (a, b)", Operator::In(set(&["a", "b"]))),
            ("zone in(a)", Operator::In(set(&["a"]))),
            ("zone notin (a,b,c)", Operator::NotIn(set(&["a", "b", "c"]))),
            ("count>3", Operator::GreaterThan(3)),
            ("count < -1", Operator::LessThan(-1)),
        ];
        for (text, operator) in cases {
            let selector: LabelSelector = text.parse().expect(text);
            assert_eq!(selector.requirements().len(), 1, "{text}");
            assert_eq!(selector.requirements()[0].operator, operator, "{text}");
            assert_eq!(selector.as_str(), text.trim());
        }
    }

    #[test]
    fn splits_on_commas_outside_value_lists() {
        let selector: LabelSelector = " a=b, c in (d,e),!f ".parse().expect("parses");
        let keys: Vec<_> = selector
            .requirements()
            .iter()
            .map(|r| r.key.as_str())
            .collect();
        assert_eq!(keys, ["a", "c", "f"]);
        assert_eq!(selector.to_string(), "a=b, c in (d,e),!f");
    }

    #[test]
    fn empty_selector_matches_everything() {
        let selector: LabelSelector = "  ".parse().expect("parses");
        assert!(selector.is_empty());
        assert!(selector.matches(&labels(&[])));
        assert!(selector.matches(&labels(&[("a", "b")])));
    }

    #[test]
    fn refuses_malformed_selectors() {
        type Check = fn(&SelectorError) -> bool;
        let cases: &[(&str, Check)] = &[
            ("a,,b", |e| {
                matches!(e, SelectorError::EmptyRequirement { .. })
            }),
            ("a,", |e| {
                matches!(e, SelectorError::EmptyRequirement { .. })
            }),
            ("-a", |e| matches!(e, SelectorError::InvalidKey { .. })),
            ("Example.com/a", |e| {
                matches!(e, SelectorError::InvalidKey { .. })
            }),
            ("a/b/c", |e| matches!(e, SelectorError::InvalidKey { .. })),
            ("/a", |e| matches!(e, SelectorError::InvalidKey { .. })),
            ("a/", |e| matches!(e, SelectorError::InvalidKey { .. })),
            (&"k".repeat(64), |e| {
                matches!(e, SelectorError::InvalidKey { .. })
            }),
            ("a=b c", |e| matches!(e, SelectorError::InvalidValue { .. })),
            ("a=-b", |e| matches!(e, SelectorError::InvalidValue { .. })),
            ("a in (b, c d)", |e| {
                matches!(e, SelectorError::InvalidValue { .. })
            }),
            ("a b", |e| matches!(e, SelectorError::UnexpectedText { .. })),
            ("a inn (b)", |e| {
                matches!(e, SelectorError::UnexpectedText { .. })
            }),
            ("a in b", |e| matches!(e, SelectorError::MissingSet { .. })),
            ("a in ()", |e| matches!(e, SelectorError::EmptySet { .. })),
            ("a notin ( )", |e| {
                matches!(e, SelectorError::EmptySet { .. })
            }),
            ("a>b", |e| matches!(e, SelectorError::NotAnInteger { .. })),
            ("a in (b", |e| {
                matches!(e, SelectorError::UnbalancedParentheses { .. })
            }),
            ("a in ((b))", |e| {
                matches!(e, SelectorError::UnbalancedParentheses { .. })
            }),
            ("a)", |e| {
                matches!(e, SelectorError::UnbalancedParentheses { .. })
            }),
        ];
        for (text, expected) in cases {
            let error = text.parse::<LabelSelector>().expect_err(text);
            assert!(expected(&error), "{text}: {error:?}");
        }
    }

    #[test]
    fn matches_like_kubernetes() {
        let node = labels(&[
            ("kubernetes.io/os", "linux"),
            ("zone", "a"),
            ("count", "5"),
            ("eraser.sh/cleanup.filter", ""),
        ]);
        let cases: &[(&str, bool)] = &[
            ("eraser.sh/cleanup.filter", true),
            ("!eraser.sh/cleanup.filter", false),
            ("missing", false),
            ("!missing", true),
            ("kubernetes.io/os=windows", false),
            ("kubernetes.io/os=linux", true),
            ("kubernetes.io/os!=windows", true),
            ("missing!=x", true),
            ("zone in (a,b)", true),
            ("zone in (b)", false),
            ("missing in (a)", false),
            ("zone notin (b)", true),
            ("zone notin (a)", false),
            ("missing notin (a)", true),
            ("count>4", true),
            ("count>5", false),
            ("count<6", true),
            ("zone>1", false),
            ("missing<1", false),
            ("zone=a,kubernetes.io/os=linux", true),
            ("zone=a,kubernetes.io/os=windows", false),
        ];
        for (text, expected) in cases {
            let selector: LabelSelector = text.parse().expect(text);
            assert_eq!(selector.matches(&node), *expected, "{text}");
        }
    }

    #[test]
    fn label_keys_and_values() {
        for key in ["a", "a.b-c_d", "example.com/a", "a.b.c/X_Y", "9"] {
            assert!(is_label_key(key), "{key}");
        }
        for key in ["", "a/", "EXAMPLE.com/a", "a_b.com/c", "-a", "a-"] {
            assert!(!is_label_key(key), "{key}");
        }
        assert!(is_label_value(""));
        assert!(is_label_value(&"v".repeat(63)));
        assert!(!is_label_value(&"v".repeat(64)));
        assert!(!is_label_value("a b"));
    }
}
