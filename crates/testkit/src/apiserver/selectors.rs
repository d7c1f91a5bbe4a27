//! `labelSelector` and `fieldSelector` with the real grammar and field sets: label
//! requirements `=`, `==`, `!=`, `in`, `notin`, exists, `!` (does not exist), `>` and `<`;
//! field requirements `=`, `==`, `!=` on the fields each resource supports, a missing field
//! reading as the empty string (so `spec.nodeName=` selects unscheduled pods). An unsupported
//! field is a 400, as a real server would answer, so a controller that relies on a field the
//! real API does not index fails here too.

use serde_json::{Map, Value};

use super::error::{ApiError, ApiResult};
use super::meta;
use super::resources::{Builtin, ResourceType};

#[derive(Clone, Debug, PartialEq)]
enum Op {
    Equals(String),
    NotEquals(String),
    In(Vec<String>),
    NotIn(Vec<String>),
    Exists,
    DoesNotExist,
    Greater(i64),
    Less(i64),
}

/// A parsed label selector (all requirements must hold).
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct LabelSelector {
    requirements: Vec<(String, Op)>,
}

fn bad(selector: &str, why: &str) -> ApiError {
    ApiError::bad_request(format!(
        "unable to parse requirement: {why} (in selector \"{selector}\")"
    ))
}

/// Splits at commas outside parentheses.
fn split_top(s: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut depth = 0i32;
    let mut start = 0;
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&s[start..]);
    parts
}

fn check_key(selector: &str, key: &str) -> ApiResult<()> {
    match meta::qualified_name_problem(key) {
        None => Ok(()),
        Some(why) => Err(bad(
            selector,
            &format!("invalid label key \"{key}\": {why}"),
        )),
    }
}

fn check_value(selector: &str, value: &str) -> ApiResult<()> {
    if meta::label_value_ok(value) {
        Ok(())
    } else {
        Err(bad(selector, &format!("invalid label value: \"{value}\"")))
    }
}

impl LabelSelector {
    /// Parses the query-string form.
    pub fn parse(selector: &str) -> ApiResult<LabelSelector> {
        let mut requirements = Vec::new();
        if selector.trim().is_empty() {
            return Ok(LabelSelector { requirements });
        }
        for part in split_top(selector) {
            let part = part.trim();
            if part.is_empty() {
                return Err(bad(selector, "found '', expected: identifier"));
            }
            let requirement = Self::parse_one(selector, part)?;
            requirements.push(requirement);
        }
        Ok(LabelSelector { requirements })
    }

    fn parse_one(selector: &str, part: &str) -> ApiResult<(String, Op)> {
        if let Some(key) = part.strip_prefix('!') {
            let key = key.trim();
            check_key(selector, key)?;
            return Ok((key.to_string(), Op::DoesNotExist));
        }
        for (token, make) in [
            ("!=", Op::NotEquals as fn(String) -> Op),
            ("==", Op::Equals as fn(String) -> Op),
            ("=", Op::Equals as fn(String) -> Op),
        ] {
            if let Some((key, value)) = part.split_once(token) {
                let (key, value) = (key.trim(), value.trim());
                check_key(selector, key)?;
                check_value(selector, value)?;
                return Ok((key.to_string(), make(value.to_string())));
            }
        }
        for (token, greater) in [(">", true), ("<", false)] {
            if let Some((key, value)) = part.split_once(token) {
                let key = key.trim();
                check_key(selector, key)?;
                let n: i64 = value.trim().parse().map_err(|_| {
                    bad(
                        selector,
                        "for 'gt', 'lt' operators, the value must be an integer",
                    )
                })?;
                return Ok((
                    key.to_string(),
                    if greater { Op::Greater(n) } else { Op::Less(n) },
                ));
            }
        }
        let words: Vec<&str> = part.splitn(2, char::is_whitespace).collect();
        if words.len() == 2 {
            let key = words[0].trim();
            let rest = words[1].trim();
            let (op, list) = if let Some(list) = rest.strip_prefix("notin") {
                (false, list)
            } else if let Some(list) = rest.strip_prefix("in") {
                (true, list)
            } else {
                return Err(bad(
                    selector,
                    &format!("found '{rest}', expected: in, notin, =, ==, !=, gt, lt"),
                ));
            };
            check_key(selector, key)?;
            let list = list.trim();
            let inner = list
                .strip_prefix('(')
                .and_then(|l| l.strip_suffix(')'))
                .ok_or_else(|| bad(selector, "found '', expected: '('"))?;
            let values: Vec<String> = inner
                .split(',')
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
                .collect();
            for v in &values {
                check_value(selector, v)?;
            }
            return Ok((
                key.to_string(),
                if op {
                    Op::In(values)
                } else {
                    Op::NotIn(values)
                },
            ));
        }
        check_key(selector, part)?;
        Ok((part.to_string(), Op::Exists))
    }

    /// Whether `labels` satisfy every requirement.
    pub fn matches(&self, labels: &Map<String, Value>) -> bool {
        self.requirements.iter().all(|(key, op)| {
            let value = labels.get(key).and_then(Value::as_str);
            match op {
                Op::Equals(v) => value == Some(v.as_str()),
                Op::NotEquals(v) => value != Some(v.as_str()),
                Op::In(vs) => value.is_some_and(|x| vs.iter().any(|v| v == x)),
                Op::NotIn(vs) => !value.is_some_and(|x| vs.iter().any(|v| v == x)),
                Op::Exists => value.is_some(),
                Op::DoesNotExist => value.is_none(),
                Op::Greater(n) => value
                    .and_then(|x| x.parse::<i64>().ok())
                    .is_some_and(|x| x > *n),
                Op::Less(n) => value
                    .and_then(|x| x.parse::<i64>().ok())
                    .is_some_and(|x| x < *n),
            }
        })
    }

    /// Whether the selector selects everything.
    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }
}

/// A parsed field selector.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct FieldSelector {
    requirements: Vec<(String, bool, String)>,
}

/// The fields `rt` can be selected by, beyond `metadata.name` and `metadata.namespace`.
fn extra_fields(rt: &ResourceType) -> &'static [&'static str] {
    match rt.builtin {
        Some(Builtin::Pod) => &[
            "spec.nodeName",
            "spec.restartPolicy",
            "spec.schedulerName",
            "spec.serviceAccountName",
            "spec.hostNetwork",
            "status.phase",
            "status.podIP",
            "status.nominatedNodeName",
        ],
        Some(Builtin::Event) => &[
            "involvedObject.kind",
            "involvedObject.namespace",
            "involvedObject.name",
            "involvedObject.uid",
            "involvedObject.apiVersion",
            "involvedObject.resourceVersion",
            "involvedObject.fieldPath",
            "reason",
            "reportingComponent",
            "source",
            "type",
        ],
        Some(Builtin::EventV1) => &[
            "regarding.kind",
            "regarding.namespace",
            "regarding.name",
            "regarding.uid",
            "reason",
            "reportingController",
            "type",
        ],
        Some(Builtin::Secret) => &["type"],
        Some(Builtin::Node) => &["spec.unschedulable"],
        Some(Builtin::Namespace) => &["status.phase"],
        _ => &[],
    }
}

impl FieldSelector {
    /// Parses the query-string form, refusing fields `rt` does not support.
    pub fn parse(selector: &str, rt: &ResourceType) -> ApiResult<FieldSelector> {
        let mut requirements = Vec::new();
        if selector.trim().is_empty() {
            return Ok(FieldSelector { requirements });
        }
        for part in selector.split(',') {
            let (field, equal, value) = if let Some((f, v)) = part.split_once("!=") {
                (f, false, v)
            } else if let Some((f, v)) = part.split_once("==") {
                (f, true, v)
            } else if let Some((f, v)) = part.split_once('=') {
                (f, true, v)
            } else {
                return Err(ApiError::bad_request(format!(
                    "invalid selector: '{selector}'; can't understand '{part}'"
                )));
            };
            let field = field.trim();
            let supported = field == "metadata.name"
                || field == "metadata.namespace"
                || extra_fields(rt).contains(&field);
            if !supported {
                return Err(ApiError::bad_request(format!(
                    "field label not supported: {field}"
                )));
            }
            requirements.push((field.to_string(), equal, value.trim().to_string()));
        }
        Ok(FieldSelector { requirements })
    }

    /// Whether `object` satisfies every requirement.
    pub fn matches(&self, object: &Value) -> bool {
        self.requirements.iter().all(|(field, equal, value)| {
            let pointer = format!("/{}", field.replace('.', "/"));
            let actual = match object.pointer(&pointer) {
                None | Some(Value::Null) => String::new(),
                Some(Value::String(s)) => s.clone(),
                Some(other) => other.to_string(),
            };
            (actual == *value) == *equal
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn labels(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn label_selectors_have_the_real_grammar() {
        let l = labels(json!({"app": "eraser", "tier": "node", "n": "5"}));
        let yes = [
            "",
            "app=eraser",
            "app==eraser",
            "app!=manager",
            "app in (eraser, other)",
            "app notin (manager)",
            "tier",
            "!missing",
            "app=eraser,tier=node",
            "n>4",
            "n<6",
            "missing!=x",
            "missing notin (x)",
        ];
        for s in yes {
            assert!(LabelSelector::parse(s).unwrap().matches(&l), "{s}");
        }
        let no = [
            "app=manager",
            "app in (x,y)",
            "!app",
            "missing",
            "n>5",
            "app=eraser,tier=x",
        ];
        for s in no {
            assert!(!LabelSelector::parse(s).unwrap().matches(&l), "{s}");
        }
        for s in ["app=Bad Value", "a b c", "app in x", "n>x", "Bad/key"] {
            assert_eq!(LabelSelector::parse(s).unwrap_err().code, 400, "{s}");
        }
    }

    #[test]
    fn field_selectors_know_the_supported_fields() {
        let registry = super::super::resources::Registry::default();
        let pods = registry.find("", "v1", "pods").unwrap();
        let cms = registry.find("", "v1", "configmaps").unwrap();
        let pod = json!({"metadata": {"name": "p", "namespace": "ns"},
                         "spec": {"nodeName": "n1"}, "status": {"phase": "Running"}});
        let s = FieldSelector::parse("spec.nodeName=n1,status.phase!=Succeeded", &pods).unwrap();
        assert!(s.matches(&pod));
        assert!(
            !FieldSelector::parse("spec.nodeName=", &pods)
                .unwrap()
                .matches(&pod)
        );
        let unscheduled = json!({"metadata": {"name": "q"}, "spec": {}});
        assert!(
            FieldSelector::parse("spec.nodeName=", &pods)
                .unwrap()
                .matches(&unscheduled)
        );
        assert_eq!(
            FieldSelector::parse("spec.nodeName=x", &cms)
                .unwrap_err()
                .code,
            400
        );
        assert!(
            FieldSelector::parse("metadata.namespace=ns", &cms)
                .unwrap()
                .matches(&pod)
        );
    }
}
