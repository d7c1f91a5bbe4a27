//! Typed reads from a YAML tree, each recording its problem under the key's full path and
//! carrying on, so one pass over a config reports every error and every unknown key.
//!
//! Eraser converts the YAML to JSON and unmarshals it over the defaults; the same happens
//! here in effect: a key that is absent or `null` keeps its default (Go leaves a field alone
//! on `null`), a key that is present replaces it (lists are replaced, not appended to).

use serde_json::{Map, Value};

use super::diagnostics::{Diagnostics, ErrorKind, KeyPath, WarningKind};
use crate::duration::GoDuration;

/// How a JSON value's type is named in messages.
pub(crate) fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}

/// The fields of one mapping in the config.
pub(crate) struct Fields<'a> {
    path: KeyPath,
    map: Option<&'a Map<String, Value>>,
}

impl<'a> Fields<'a> {
    /// Reads `value` as a mapping whose keys are `known`; other keys are warned about, with
    /// `hints` explaining keys that are known elsewhere (another version, another place).
    pub(crate) fn new(
        diagnostics: &mut Diagnostics,
        path: KeyPath,
        value: Option<&'a Value>,
        known: &[&str],
        hints: &[(&str, &'static str)],
    ) -> Fields<'a> {
        let map = match value {
            None | Some(Value::Null) => None,
            Some(Value::Object(map)) => Some(map),
            Some(other) => {
                diagnostics.error(
                    &path,
                    ErrorKind::WrongType {
                        expected: "a mapping",
                        found: type_name(other),
                    },
                );
                None
            }
        };
        if let Some(map) = map {
            for key in map.keys() {
                if known.contains(&key.as_str()) {
                    continue;
                }
                let hint = hints.iter().find(|(k, _)| k == key).map(|(_, hint)| *hint);
                let suggestion = closest(key, known).map(|k| path.key(k));
                diagnostics.warn(&path.key(key), WarningKind::UnknownKey { suggestion, hint });
            }
        }
        Fields { path, map }
    }

    /// The path of this mapping.
    pub(crate) fn own_path(&self) -> &KeyPath {
        &self.path
    }

    /// The path of `key` in this mapping.
    pub(crate) fn path(&self, key: &str) -> KeyPath {
        self.path.key(key)
    }

    /// The value of `key`, treating `null` as absent.
    pub(crate) fn value(&self, key: &str) -> Option<&'a Value> {
        self.map
            .and_then(|map| map.get(key))
            .filter(|value| !value.is_null())
    }

    /// Whether `key` has a value.
    pub(crate) fn has(&self, key: &str) -> bool {
        self.value(key).is_some()
    }

    /// The mapping under `key`.
    pub(crate) fn object(
        &self,
        diagnostics: &mut Diagnostics,
        key: &str,
        known: &[&str],
        hints: &[(&str, &'static str)],
    ) -> Fields<'a> {
        Fields::new(diagnostics, self.path(key), self.value(key), known, hints)
    }

    fn wrong_type(&self, diagnostics: &mut Diagnostics, key: &str, expected: &'static str) {
        if let Some(value) = self.value(key) {
            diagnostics.error(
                &self.path(key),
                ErrorKind::WrongType {
                    expected,
                    found: type_name(value),
                },
            );
        }
    }

    /// A boolean. YAML 1.1 spellings (`yes`, `on`, ...) are accepted, as Go's YAML reads them.
    pub(crate) fn bool(&self, diagnostics: &mut Diagnostics, key: &str) -> Option<bool> {
        match self.value(key)? {
            Value::Bool(value) => Some(*value),
            Value::String(text) => match text.as_str() {
                "y" | "Y" | "yes" | "Yes" | "YES" | "on" | "On" | "ON" | "True" | "TRUE" => {
                    Some(true)
                }
                "n" | "N" | "no" | "No" | "NO" | "off" | "Off" | "OFF" | "False" | "FALSE" => {
                    Some(false)
                }
                _ => {
                    self.wrong_type(diagnostics, key, "true or false");
                    None
                }
            },
            _ => {
                self.wrong_type(diagnostics, key, "true or false");
                None
            }
        }
    }

    /// A string. Numbers are refused rather than converted: `tag: 1.10` would become `1.1`.
    pub(crate) fn string(&self, diagnostics: &mut Diagnostics, key: &str) -> Option<String> {
        match self.value(key)? {
            Value::String(text) => Some(text.clone()),
            _ => {
                self.wrong_type(diagnostics, key, "a string (quote numbers)");
                None
            }
        }
    }

    /// A string from a fixed set.
    pub(crate) fn one_of(
        &self,
        diagnostics: &mut Diagnostics,
        key: &str,
        allowed: &'static [&'static str],
    ) -> Option<&'static str> {
        let text = self.string(diagnostics, key)?;
        let found = allowed.iter().find(|a| **a == text).copied();
        if found.is_none() {
            diagnostics.error(
                &self.path(key),
                ErrorKind::NotOneOf {
                    value: text,
                    allowed,
                },
            );
        }
        found
    }

    /// A Go duration string.
    pub(crate) fn duration(&self, diagnostics: &mut Diagnostics, key: &str) -> Option<GoDuration> {
        let text = self.string(diagnostics, key)?;
        match text.parse() {
            Ok(duration) => Some(duration),
            Err(error) => {
                diagnostics.error(&self.path(key), ErrorKind::Duration(error));
                None
            }
        }
    }

    /// A number.
    pub(crate) fn number(&self, diagnostics: &mut Diagnostics, key: &str) -> Option<f64> {
        match self.value(key)? {
            Value::Number(number) => number.as_f64(),
            _ => {
                self.wrong_type(diagnostics, key, "a number");
                None
            }
        }
    }

    /// A whole number.
    pub(crate) fn integer(&self, diagnostics: &mut Diagnostics, key: &str) -> Option<i64> {
        match self.value(key)? {
            Value::Number(number) if number.is_i64() => number.as_i64(),
            Value::Number(number) if number.is_u64() => {
                diagnostics.error(
                    &self.path(key),
                    ErrorKind::OutOfRange {
                        value: number.to_string(),
                        range: "a 64-bit integer",
                    },
                );
                None
            }
            _ => {
                self.wrong_type(diagnostics, key, "a whole number");
                None
            }
        }
    }

    /// A list, item by item with their paths.
    pub(crate) fn list(
        &self,
        diagnostics: &mut Diagnostics,
        key: &str,
    ) -> Option<Vec<(KeyPath, &'a Value)>> {
        match self.value(key)? {
            Value::Array(items) => Some(
                items
                    .iter()
                    .enumerate()
                    .map(|(index, item)| (self.path(key).index(index), item))
                    .collect(),
            ),
            _ => {
                self.wrong_type(diagnostics, key, "a list");
                None
            }
        }
    }

    /// A list of strings; items of another type are errors and are left out.
    pub(crate) fn strings(
        &self,
        diagnostics: &mut Diagnostics,
        key: &str,
    ) -> Option<Vec<(KeyPath, String)>> {
        let items = self.list(diagnostics, key)?;
        let mut strings = Vec::with_capacity(items.len());
        for (path, item) in items {
            match item {
                Value::String(text) => strings.push((path, text.clone())),
                other => diagnostics.error(
                    &path,
                    ErrorKind::WrongType {
                        expected: "a string (quote numbers)",
                        found: type_name(other),
                    },
                ),
            }
        }
        Some(strings)
    }

    /// A mapping of strings to strings; entries with other values are errors and left out.
    pub(crate) fn string_map(
        &self,
        diagnostics: &mut Diagnostics,
        key: &str,
    ) -> Option<Vec<(KeyPath, String, String)>> {
        let map = match self.value(key)? {
            Value::Object(map) => map,
            _ => {
                self.wrong_type(diagnostics, key, "a mapping of strings");
                return None;
            }
        };
        let mut entries = Vec::with_capacity(map.len());
        for (name, value) in map {
            let path = self.path(key).key(name);
            match value {
                Value::String(text) => entries.push((path, name.clone(), text.clone())),
                other => diagnostics.error(
                    &path,
                    ErrorKind::WrongType {
                        expected: "a string (quote numbers and booleans)",
                        found: type_name(other),
                    },
                ),
            }
        }
        Some(entries)
    }
}

/// The known key closest to `key` by edit distance, if close enough to be a typo.
fn closest<'k>(key: &str, known: &[&'k str]) -> Option<&'k str> {
    let lower = key.to_ascii_lowercase();
    known
        .iter()
        .map(|candidate| {
            (
                edit_distance(&lower, &candidate.to_ascii_lowercase()),
                *candidate,
            )
        })
        .filter(|(distance, candidate)| *distance <= (candidate.len() / 3).max(1))
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, candidate)| candidate)
}

/// Levenshtein distance over characters.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut current = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let substitution = previous[j] + usize::from(ca != *cb);
            current[j + 1] = substitution.min(previous[j + 1] + 1).min(current[j] + 1);
        }
        previous = current;
    }
    previous[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_close_keys_only() {
        let known = ["scheduling", "runtime", "nodeFilter", "imageJob"];
        assert_eq!(closest("schedulng", &known), Some("scheduling"));
        assert_eq!(closest("Runtime", &known), Some("runtime"));
        assert_eq!(closest("nodefilter", &known), Some("nodeFilter"));
        assert_eq!(closest("imagejobs", &known), Some("imageJob"));
        assert_eq!(closest("health", &known), None);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("", "abc"), 3);
    }
}
