//! What a request asks for, derived from its method, path and query exactly as the real
//! server's `RequestInfoFactory` does: the verb (`get` vs `list` vs `watch`, `delete` vs
//! `deletecollection`), API group and version, namespace, resource, name and subresource. RBAC
//! decides on these attributes, so they must match the real ones, including the quirks: the
//! namespace of `/api/v1/namespaces/NAME` is `NAME`, and a list or watch with
//! `fieldSelector=metadata.name=X` is about the name `X`.

use std::collections::BTreeMap;

/// The parsed request attributes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct RequestInfo {
    pub path: String,
    pub verb: String,
    pub is_resource: bool,
    pub group: String,
    pub version: String,
    pub namespace: String,
    pub resource: String,
    pub subresource: String,
    pub name: String,
    /// The path segments after the resource (`[resource, name, subresource, …]`).
    pub parts: Vec<String>,
}

/// Decoded query parameters (the last value of a repeated key wins).
#[derive(Clone, Debug, Default)]
pub(crate) struct Query(BTreeMap<String, String>);

impl Query {
    /// Parses a raw query string.
    pub fn parse(raw: Option<&str>) -> Query {
        let mut map = BTreeMap::new();
        for pair in raw.unwrap_or("").split('&') {
            if pair.is_empty() {
                continue;
            }
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            map.insert(decode(key), decode(value));
        }
        Query(map)
    }

    /// A parameter's value.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    /// A parameter's value, empty when absent.
    pub fn str(&self, key: &str) -> &str {
        self.get(key).unwrap_or("")
    }

    /// Whether a boolean parameter is `true` (or `1`).
    pub fn flag(&self, key: &str) -> bool {
        matches!(self.get(key), Some("true" | "1"))
    }
}

/// Percent-decoding of a query component (`+` is a space).
fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b'%' => {
                let hex = bytes
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                match hex {
                    Some(b) => {
                        out.push(b);
                        i += 3;
                    }
                    None => {
                        out.push(b'%');
                        i += 1;
                    }
                }
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Decodes a path segment.
fn decode_segment(s: &str) -> String {
    decode(&s.replace('+', "%2B"))
}

/// Derives the request attributes. `watch` is the `watch` query flag; `field_name` the exact
/// `metadata.name` of a field selector, if any.
pub(crate) fn parse(
    method: &str,
    path: &str,
    watch: bool,
    field_name: Option<&str>,
) -> RequestInfo {
    let mut info = RequestInfo {
        path: path.to_string(),
        verb: method.to_lowercase(),
        ..Default::default()
    };
    let mut parts: Vec<String> = path
        .trim_matches('/')
        .split('/')
        .filter(|p| !p.is_empty())
        .map(decode_segment)
        .collect();
    if parts.is_empty() {
        return info;
    }
    let prefix = parts[0].clone();
    if prefix != "api" && prefix != "apis" {
        return info;
    }
    parts.remove(0);
    if prefix == "apis" {
        if parts.len() < 3 {
            return info;
        }
        info.group = parts.remove(0);
    } else if parts.len() < 2 {
        return info;
    }
    info.is_resource = true;
    info.version = parts.remove(0);
    let mut via_path_watch = false;
    if parts.first().map(String::as_str) == Some("watch") {
        parts.remove(0);
        info.verb = "watch".into();
        via_path_watch = true;
    } else {
        info.verb = match method {
            "POST" => "create",
            "GET" | "HEAD" => "get",
            "PUT" => "update",
            "PATCH" => "patch",
            "DELETE" => "delete",
            _ => "",
        }
        .into();
    }
    if parts.first().map(String::as_str) == Some("namespaces") && parts.len() > 1 {
        info.namespace = parts[1].clone();
        if parts.len() > 2 && parts[2] != "status" && parts[2] != "finalize" {
            parts.drain(..2);
        }
    }
    if let Some(resource) = parts.first() {
        info.resource = resource.clone();
    }
    if let Some(name) = parts.get(1) {
        info.name = name.clone();
    }
    if let Some(sub) = parts.get(2) {
        info.subresource = sub.clone();
    }
    info.parts = parts;
    if info.name.is_empty() && (info.verb == "get" || via_path_watch) {
        info.verb = if watch || via_path_watch {
            "watch"
        } else {
            "list"
        }
        .into();
        if let Some(name) = field_name
            && !name.is_empty()
            && name != "."
            && name != ".."
            && !name.contains('/')
            && !name.contains('%')
        {
            info.name = name.to_string();
        }
    }
    if info.name.is_empty() && info.verb == "delete" {
        info.verb = "deletecollection".into();
    }
    info
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(method: &str, path: &str) -> RequestInfo {
        parse(method, path, false, None)
    }

    #[test]
    fn resource_requests_parse_like_the_real_server() {
        let r = p("GET", "/api/v1/namespaces/kube-system/pods");
        assert_eq!(
            (r.verb.as_str(), r.namespace.as_str(), r.resource.as_str()),
            ("list", "kube-system", "pods")
        );
        let r = p("PUT", "/apis/eraser.sh/v1/imagejobs/job-1/status");
        assert_eq!(r.group, "eraser.sh");
        assert_eq!(
            (r.verb.as_str(), r.name.as_str(), r.subresource.as_str()),
            ("update", "job-1", "status")
        );
        let r = p("GET", "/api/v1/namespaces/foo");
        assert_eq!(
            (r.resource.as_str(), r.name.as_str(), r.namespace.as_str()),
            ("namespaces", "foo", "foo")
        );
        let r = p("PUT", "/api/v1/namespaces/foo/status");
        assert_eq!(
            (r.resource.as_str(), r.name.as_str(), r.subresource.as_str()),
            ("namespaces", "foo", "status")
        );
        let r = p("DELETE", "/api/v1/namespaces/ns/configmaps");
        assert_eq!(r.verb, "deletecollection");
        let r = parse("GET", "/api/v1/pods", true, None);
        assert_eq!(r.verb, "watch");
        let r = parse("GET", "/api/v1/namespaces/ns/pods", false, Some("p1"));
        assert_eq!((r.verb.as_str(), r.name.as_str()), ("list", "p1"));
        let r = p("GET", "/api/v1/watch/namespaces/ns/pods");
        assert_eq!((r.verb.as_str(), r.resource.as_str()), ("watch", "pods"));
        let r = p("POST", "/api/v1/namespaces/ns/serviceaccounts/sa/token");
        assert_eq!(
            (r.verb.as_str(), r.subresource.as_str()),
            ("create", "token")
        );
        assert!(!p("GET", "/apis").is_resource);
        assert!(!p("GET", "/apis/eraser.sh/v1").is_resource);
        assert!(!p("GET", "/api/v1").is_resource);
        assert!(!p("GET", "/version").is_resource);
        assert_eq!(p("GET", "/healthz").verb, "get");
    }

    #[test]
    fn queries_are_decoded() {
        let q = Query::parse(Some(
            "labelSelector=app%3Deraser%2Ctier+in+%28a%29&watch=1&limit=5",
        ));
        assert_eq!(q.str("labelSelector"), "app=eraser,tier in (a)");
        assert!(q.flag("watch"));
        assert_eq!(q.get("limit"), Some("5"));
        assert_eq!(q.get("continue"), None);
    }
}
