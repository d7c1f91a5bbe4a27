//! GET of one object and LIST, with the real paging contract: `limit` and `continue` page
//! through one consistent snapshot (the continue token carries its revision; once that
//! revision has left the history the token is `410 Gone`), the list carries its
//! `resourceVersion`, `resourceVersion` + `resourceVersionMatch=Exact` lists the past, and
//! label and field selectors filter in the requested version's shape.

use std::collections::BTreeMap;
use std::sync::Arc;

use base64::Engine as _;
use serde_json::{Map, Value, json};

use super::error::{ApiError, ApiResult};
use super::output::{self, Format};
use super::request::Query;
use super::resources::ResourceType;
use super::selectors::{FieldSelector, LabelSelector};
use super::store::{Key, Store};

/// Label and field selectors of a request.
pub(crate) struct Selectors {
    pub labels: LabelSelector,
    pub fields: FieldSelector,
}

impl Selectors {
    pub fn parse(query: &Query, rt: &ResourceType) -> ApiResult<Selectors> {
        Ok(Selectors {
            labels: LabelSelector::parse(query.str("labelSelector"))?,
            fields: FieldSelector::parse(query.str("fieldSelector"), rt)?,
        })
    }

    /// Whether `object` (in the requested version) is selected.
    pub fn matches(&self, object: &Value) -> bool {
        self.labels.matches(&super::meta::labels(object)) && self.fields.matches(object)
    }

    fn is_empty(&self) -> bool {
        self.labels.is_empty() && self.fields == FieldSelector::default()
    }
}

/// GET of one object, in the requested version.
pub(crate) fn get(store: &Store, rt: &ResourceType, version: &str, key: &Key) -> ApiResult<Value> {
    match store.get(&rt.storage, key) {
        Some(object) => Ok(output::to_version(rt, version, &object)),
        None => Err(ApiError::not_found(&rt.group, &rt.plural, &key.1)),
    }
}

/// The position a continue token resumes after.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Continue {
    rv: u64,
    namespace: String,
    name: String,
}

fn encode_continue(token: &Continue) -> String {
    let json = serde_json::to_vec(token).unwrap_or_default();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json)
}

fn decode_continue(raw: &str) -> ApiResult<Continue> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(raw.trim_end_matches('='))
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .ok_or_else(|| ApiError::bad_request("continue key is not valid: illegal base64 data"))
}

const CONTINUE_TOO_OLD: &str = "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter, or use the continue token in this response to retrieve the remainder of the results. Continuing with the provided token results in an inconsistent list - objects that were created, modified, or deleted between the time the first chunk was returned and now may show up in the list.";

/// LIST in `namespace` (all namespaces when `None`).
pub(crate) fn list(
    store: &Store,
    rt: &ResourceType,
    version: &str,
    namespace: Option<&str>,
    query: &Query,
    format: &Format,
) -> ApiResult<Value> {
    let selectors = Selectors::parse(query, rt)?;
    let limit: usize = match query.get("limit") {
        Some(l) => l
            .parse::<i64>()
            .map_err(|_| ApiError::bad_request(format!("invalid limit {l}")))?
            .max(0) as usize,
        None => 0,
    };
    let current = store.revision();
    let (rv, start, state): (u64, Option<Key>, BTreeMap<Key, Arc<Value>>) = match query
        .get("continue")
    {
        Some(raw) if !raw.is_empty() => {
            let token = decode_continue(raw)?;
            let state = store
                .snapshot(&rt.storage, token.rv)
                .map_err(|_| ApiError::gone(CONTINUE_TOO_OLD))?;
            (token.rv, Some((token.namespace, token.name)), state)
        }
        _ => {
            let asked = query.str("resourceVersion");
            let exact = query.str("resourceVersionMatch") == "Exact";
            match asked {
                "" | "0" => (
                    current,
                    None,
                    store.snapshot(&rt.storage, current).unwrap_or_default(),
                ),
                n => {
                    let n: u64 = n.parse().map_err(|_| {
                        ApiError::bad_request(format!("invalid resource version: {n}"))
                    })?;
                    if n > current {
                        return Err(ApiError::timeout(format!(
                            "Too large resource version: {n}, current: {current}"
                        )));
                    }
                    if exact {
                        let state = store.snapshot(&rt.storage, n).map_err(|e| {
                            ApiError::gone(format!("too old resource version: {n} ({})", e.oldest))
                        })?;
                        (n, None, state)
                    } else {
                        (
                            current,
                            None,
                            store.snapshot(&rt.storage, current).unwrap_or_default(),
                        )
                    }
                }
            }
        }
    };
    let mut items = Vec::new();
    let mut next: Option<Key> = None;
    let mut remaining = 0i64;
    for (key, object) in &state {
        if let Some(ns) = namespace
            && key.0 != ns
        {
            continue;
        }
        if let Some(start) = &start
            && key <= start
        {
            continue;
        }
        let versioned = output::to_version(rt, version, object);
        if !selectors.matches(&versioned) {
            continue;
        }
        if limit > 0 && items.len() >= limit {
            remaining += 1;
            continue;
        }
        if limit > 0 && items.len() + 1 == limit {
            next = Some(key.clone());
        }
        items.push(versioned);
    }
    let mut list_meta = Map::new();
    list_meta.insert("resourceVersion".into(), json!(rv.to_string()));
    if remaining > 0
        && let Some((namespace, name)) = next
    {
        list_meta.insert(
            "continue".into(),
            json!(encode_continue(&Continue {
                rv,
                namespace,
                name
            })),
        );
        if selectors.is_empty() {
            list_meta.insert("remainingItemCount".into(), json!(remaining));
        }
    }
    Ok(output::render_list(rt, version, format, items, list_meta))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apiserver::resources::Registry;

    #[test]
    fn continue_tokens_round_trip() {
        let token = Continue {
            rv: 42,
            namespace: "ns".into(),
            name: "a".into(),
        };
        let decoded = decode_continue(&encode_continue(&token)).unwrap();
        assert_eq!((decoded.rv, decoded.name.as_str()), (42, "a"));
        assert_eq!(decode_continue("%%%").unwrap_err().code, 400);
    }

    #[test]
    fn pages_are_consistent_snapshots() {
        let registry = Registry::default();
        let rt = registry.find("", "v1", "configmaps").unwrap();
        let mut store = Store::new(100);
        for name in ["a", "b", "c"] {
            store.put(
                &rt.storage,
                json!({"metadata": {"name": name, "namespace": "ns"}}),
            );
        }
        let first = list(
            &store,
            &rt,
            "v1",
            Some("ns"),
            &Query::parse(Some("limit=2")),
            &Format::Object,
        )
        .unwrap();
        assert_eq!(first["items"].as_array().unwrap().len(), 2);
        assert_eq!(first["metadata"]["remainingItemCount"], 1);
        let token = first["metadata"]["continue"].as_str().unwrap().to_string();
        // A write after the first page does not show in the second.
        store.put(
            &rt.storage,
            json!({"metadata": {"name": "d", "namespace": "ns"}}),
        );
        let second = list(
            &store,
            &rt,
            "v1",
            Some("ns"),
            &Query::parse(Some(&format!("limit=2&continue={token}"))),
            &Format::Object,
        )
        .unwrap();
        let names: Vec<&str> = second["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["metadata"]["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["c"]);
        assert!(second["metadata"].get("continue").is_none());
        assert_eq!(
            second["metadata"]["resourceVersion"],
            first["metadata"]["resourceVersion"]
        );
        store.compact();
        let gone = list(
            &store,
            &rt,
            "v1",
            Some("ns"),
            &Query::parse(Some(&format!("limit=2&continue={token}"))),
            &Format::Object,
        )
        .unwrap_err();
        assert_eq!(gone.code, 410);
    }
}
