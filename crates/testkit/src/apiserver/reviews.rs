//! The create-only APIs that answer a question instead of storing an object: TokenRequest
//! (`serviceaccounts/NAME/token`, how a service account gets a token, bound to a pod if
//! asked), the access reviews (`kubectl auth can-i`), and SelfSubjectReview
//! (`kubectl auth whoami`).

use serde_json::{Value, json};

use super::auth::{Credential, Tokens, UserInfo};
use super::error::{ApiError, ApiResult};
use super::meta;
use super::rbac::{self, Attributes};
use super::resources::ResourceId;
use super::store::Store;

/// Default and bounds of a requested token lifetime, as the real server's.
const DEFAULT_EXPIRATION: i64 = 3600;
const MIN_EXPIRATION: i64 = 600;

/// Issues a token for service account `namespace/name`.
pub(crate) fn token_request(
    store: &Store,
    tokens: &Tokens,
    namespace: &str,
    name: &str,
    body: &Value,
) -> ApiResult<Value> {
    let Some(sa) = store.get(
        &ResourceId::new("", "serviceaccounts"),
        &(namespace.to_string(), name.to_string()),
    ) else {
        return Err(ApiError::not_found("", "serviceaccounts", name));
    };
    let expiration = body
        .pointer("/spec/expirationSeconds")
        .and_then(Value::as_i64)
        .unwrap_or(DEFAULT_EXPIRATION);
    if expiration < MIN_EXPIRATION {
        return Err(ApiError::invalid(
            "TokenRequest",
            "authentication.k8s.io",
            name,
            vec![super::error::Cause::invalid(
                "spec.expirationSeconds",
                &json!(expiration),
                "may not specify a duration less than 10 minutes",
            )],
        ));
    }
    let pod = match body.pointer("/spec/boundObjectRef") {
        Some(bound) if bound.get("kind").and_then(Value::as_str) == Some("Pod") => {
            let pod_name = bound.get("name").and_then(Value::as_str).unwrap_or("");
            let Some(pod) = store.get(
                &ResourceId::new("", "pods"),
                &(namespace.to_string(), pod_name.to_string()),
            ) else {
                return Err(ApiError::not_found("", "pods", pod_name));
            };
            Some((pod_name.to_string(), meta::uid(&pod).to_string()))
        }
        _ => None,
    };
    let token = meta::new_token();
    let expires = jiff::Timestamp::now()
        .checked_add(jiff::SignedDuration::from_secs(expiration))
        .unwrap_or_else(|_| jiff::Timestamp::now());
    tokens.insert(
        token.clone(),
        Credential::ServiceAccount {
            namespace: namespace.to_string(),
            name: name.to_string(),
            uid: meta::uid(&sa).to_string(),
            expires: Some(expires),
            pod,
        },
    );
    let mut response = body.clone();
    if !response.is_object() {
        response = json!({});
    }
    response["apiVersion"] = json!("authentication.k8s.io/v1");
    response["kind"] = json!("TokenRequest");
    response["metadata"] = json!({"name": name, "namespace": namespace,
                                  "creationTimestamp": null});
    response["spec"]["expirationSeconds"] = json!(expiration);
    response["spec"]["audiences"] = body
        .pointer("/spec/audiences")
        .cloned()
        .filter(|a| a.as_array().is_some_and(|a| !a.is_empty()))
        .unwrap_or_else(|| json!(["https://kubernetes.default.svc"]));
    response["status"] = json!({
        "token": token,
        "expirationTimestamp": expires.strftime("%Y-%m-%dT%H:%M:%SZ").to_string(),
    });
    Ok(response)
}

fn attributes(spec: &Value, namespace_override: Option<&str>) -> Attributes {
    let text = |v: Option<&Value>| v.and_then(Value::as_str).unwrap_or("").to_string();
    if let Some(r) = spec.get("resourceAttributes") {
        Attributes {
            verb: text(r.get("verb")),
            is_resource: true,
            group: text(r.get("group")),
            resource: text(r.get("resource")),
            subresource: text(r.get("subresource")),
            namespace: namespace_override
                .map(String::from)
                .unwrap_or_else(|| text(r.get("namespace"))),
            name: text(r.get("name")),
            path: String::new(),
        }
    } else {
        let n = spec.get("nonResourceAttributes");
        Attributes {
            verb: text(n.and_then(|n| n.get("verb"))),
            path: text(n.and_then(|n| n.get("path"))),
            ..Default::default()
        }
    }
}

/// Answers a SelfSubjectAccessReview, SubjectAccessReview or LocalSubjectAccessReview.
pub(crate) fn access_review(
    store: &Store,
    requester: &UserInfo,
    kind: &str,
    namespace: &str,
    body: &Value,
) -> ApiResult<Value> {
    let spec = body.get("spec").cloned().unwrap_or(Value::Null);
    let subject = if kind == "SelfSubjectAccessReview" {
        requester.clone()
    } else {
        let user = spec.get("user").and_then(Value::as_str).unwrap_or("");
        let groups: Vec<&str> = spec
            .get("groups")
            .and_then(Value::as_array)
            .map(|g| g.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        if user.is_empty() && groups.is_empty() {
            return Err(ApiError::invalid(
                kind,
                "authorization.k8s.io",
                "",
                vec![super::error::Cause::invalid(
                    "spec.user",
                    &json!(""),
                    "at least one of user or group must be specified",
                )],
            ));
        }
        UserInfo {
            username: user.to_string(),
            uid: spec
                .get("uid")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
        }
    };
    let local = (kind == "LocalSubjectAccessReview").then_some(namespace);
    let a = attributes(&spec, local);
    let allowed = rbac::allowed(store, &subject, &a);
    let mut response = body.clone();
    if !response.is_object() {
        response = json!({});
    }
    response["apiVersion"] = json!("authorization.k8s.io/v1");
    response["kind"] = json!(kind);
    if response.get("metadata").is_none() {
        response["metadata"] = json!({"creationTimestamp": null});
    }
    response["status"] = if allowed {
        json!({"allowed": true, "reason": "RBAC: allowed"})
    } else {
        json!({"allowed": false})
    };
    Ok(response)
}

/// Answers a SelfSubjectReview.
pub(crate) fn self_subject_review(user: &UserInfo) -> Value {
    json!({
        "apiVersion": "authentication.k8s.io/v1",
        "kind": "SelfSubjectReview",
        "metadata": {"creationTimestamp": null},
        "status": {"userInfo": {
            "username": user.username,
            "uid": user.uid,
            "groups": user.groups,
        }},
    })
}
