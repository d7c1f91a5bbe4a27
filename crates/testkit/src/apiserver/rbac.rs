//! The RBAC authoriser, following the real one rule for rule: ClusterRoleBindings grant their
//! ClusterRole everywhere; RoleBindings grant a Role, or a ClusterRole, in their own namespace
//! only; subjects are users, groups or service accounts (a service account subject without a
//! namespace means the binding's); a rule matches on verb, API group, resource (`res`,
//! `res/sub`, `*/sub`, `*`), `resourceNames` (never for a request without a name: list,
//! watch without a name selector, create, deletecollection), and non-resource URLs (exact or
//! `prefix*`) from cluster roles only. `system:masters` may do anything, as may the fake
//! kubelets (`system:nodes`, standing in for the Node authoriser).
//!
//! Denials are worded as the real server words them and recorded in an audit list
//! ([`Forbidden`]) so tests can assert that a component never hit a 403.
//!
//! [`covers`] implements the escalation check for writes of Roles and bindings: a user may
//! only grant what they hold, unless they may `escalate` (roles) or `bind` (bindings).

use serde::Serialize;
use serde_json::Value;

use super::auth::{MASTERS, NODES, UserInfo};
use super::error::qualified;
use super::resources::ResourceId;
use super::store::Store;

const RBAC: &str = "rbac.authorization.k8s.io";

/// What a request wants to do, as RBAC sees it.
#[derive(Clone, Debug, Default)]
pub(crate) struct Attributes {
    pub verb: String,
    pub is_resource: bool,
    pub group: String,
    pub resource: String,
    pub subresource: String,
    pub namespace: String,
    pub name: String,
    pub path: String,
}

/// A denied request, as recorded for tests.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Forbidden {
    /// Who asked.
    pub user: String,
    /// Their groups.
    pub groups: Vec<String>,
    /// The RBAC verb (`get`, `list`, `watch`, `patch`, `impersonate`, …).
    pub verb: String,
    /// The API group (empty for core).
    pub api_group: String,
    /// The resource (empty for a non-resource URL).
    pub resource: String,
    /// The subresource, e.g. `status`.
    pub subresource: String,
    /// The namespace (empty at cluster scope).
    pub namespace: String,
    /// The object name, if the request named one.
    pub name: String,
    /// The request path.
    pub path: String,
    /// The message sent back with the 403.
    pub message: String,
}

/// A policy rule, parsed from `rules[]`.
#[derive(Clone, Debug, Default)]
pub(crate) struct Rule {
    pub verbs: Vec<String>,
    pub api_groups: Vec<String>,
    pub resources: Vec<String>,
    pub resource_names: Vec<String>,
    pub non_resource_urls: Vec<String>,
}

fn strings(value: &Value, key: &str) -> Vec<String> {
    value
        .get(key)
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

impl Rule {
    pub fn parse(value: &Value) -> Rule {
        Rule {
            verbs: strings(value, "verbs"),
            api_groups: strings(value, "apiGroups"),
            resources: strings(value, "resources"),
            resource_names: strings(value, "resourceNames"),
            non_resource_urls: strings(value, "nonResourceURLs"),
        }
    }

    /// Whether this rule allows `a`.
    pub fn allows(&self, a: &Attributes) -> bool {
        if !self.verbs.iter().any(|v| v == "*" || *v == a.verb) {
            return false;
        }
        if !a.is_resource {
            return self.non_resource_urls.iter().any(|u| {
                u == "*"
                    || *u == a.path
                    || u.strip_suffix('*')
                        .is_some_and(|prefix| a.path.starts_with(prefix))
            });
        }
        if !self.api_groups.iter().any(|g| g == "*" || *g == a.group) {
            return false;
        }
        let combined = if a.subresource.is_empty() {
            a.resource.clone()
        } else {
            format!("{}/{}", a.resource, a.subresource)
        };
        let resource_ok = self.resources.iter().any(|r| {
            r == "*"
                || *r == combined
                || (!a.subresource.is_empty() && *r == format!("*/{}", a.subresource))
        });
        if !resource_ok {
            return false;
        }
        self.resource_names.is_empty()
            || (!a.name.is_empty() && self.resource_names.contains(&a.name))
    }
}

fn rules_of(role: &Value) -> Vec<Rule> {
    role.get("rules")
        .and_then(Value::as_array)
        .map(|rules| rules.iter().map(Rule::parse).collect())
        .unwrap_or_default()
}

/// Whether `subject` (from a binding in `binding_namespace`, empty for a cluster binding)
/// names `user`.
fn subject_matches(subject: &Value, binding_namespace: &str, user: &UserInfo) -> bool {
    let kind = subject.get("kind").and_then(Value::as_str).unwrap_or("");
    let name = subject.get("name").and_then(Value::as_str).unwrap_or("");
    match kind {
        "User" => name == user.username,
        "Group" => user.in_group(name),
        "ServiceAccount" => {
            let namespace = subject
                .get("namespace")
                .and_then(Value::as_str)
                .filter(|n| !n.is_empty())
                .unwrap_or(binding_namespace);
            !namespace.is_empty()
                && user.username == super::auth::service_account_username(namespace, name)
        }
        _ => false,
    }
}

fn binds(binding: &Value, namespace: &str, user: &UserInfo) -> bool {
    binding
        .get("subjects")
        .and_then(Value::as_array)
        .is_some_and(|subjects| subjects.iter().any(|s| subject_matches(s, namespace, user)))
}

/// The rules that apply to `user` in `namespace` (cluster-wide rules included; with an empty
/// namespace, cluster-wide rules only).
pub(crate) fn rules_for(store: &Store, user: &UserInfo, namespace: &str) -> Vec<Rule> {
    let cluster_roles = ResourceId::new(RBAC, "clusterroles");
    let cluster_role = |name: &str| store.get(&cluster_roles, &(String::new(), name.to_string()));
    let mut rules = Vec::new();
    for (_, binding) in store.list(&ResourceId::new(RBAC, "clusterrolebindings"), None) {
        if binds(&binding, "", user)
            && binding.pointer("/roleRef/kind").and_then(Value::as_str) == Some("ClusterRole")
            && let Some(name) = binding.pointer("/roleRef/name").and_then(Value::as_str)
            && let Some(role) = cluster_role(name)
        {
            rules.extend(rules_of(&role));
        }
    }
    if namespace.is_empty() {
        return rules;
    }
    for (_, binding) in store.list(&ResourceId::new(RBAC, "rolebindings"), Some(namespace)) {
        if !binds(&binding, namespace, user) {
            continue;
        }
        let name = binding
            .pointer("/roleRef/name")
            .and_then(Value::as_str)
            .unwrap_or("");
        let role = match binding.pointer("/roleRef/kind").and_then(Value::as_str) {
            Some("ClusterRole") => cluster_role(name),
            Some("Role") => store.get(
                &ResourceId::new(RBAC, "roles"),
                &(namespace.to_string(), name.to_string()),
            ),
            _ => None,
        };
        if let Some(role) = role {
            // Non-resource rules only apply through cluster bindings.
            rules.extend(
                rules_of(&role)
                    .into_iter()
                    .filter(|r| r.non_resource_urls.is_empty()),
            );
        }
    }
    rules
}

/// Whether `user` may do `a`.
pub(crate) fn allowed(store: &Store, user: &UserInfo, a: &Attributes) -> bool {
    if user.in_group(MASTERS) || user.in_group(NODES) {
        return true;
    }
    let namespace = if a.is_resource {
        a.namespace.as_str()
    } else {
        ""
    };
    rules_for(store, user, namespace)
        .iter()
        .any(|rule| rule.allows(a))
}

/// The 403 message for a denied request, as the real server words it.
pub(crate) fn deny_message(user: &UserInfo, a: &Attributes) -> String {
    if !a.is_resource {
        return format!(
            "forbidden: User \"{}\" cannot {} path \"{}\"",
            user.username, a.verb, a.path
        );
    }
    let resource = if a.subresource.is_empty() {
        a.resource.clone()
    } else {
        format!("{}/{}", a.resource, a.subresource)
    };
    let scope = if a.namespace.is_empty() {
        "at the cluster scope".to_string()
    } else {
        format!("in the namespace \"{}\"", a.namespace)
    };
    let reason = format!(
        "User \"{}\" cannot {} resource \"{resource}\" in API group \"{}\" {scope}",
        user.username, a.verb, a.group
    );
    let what = qualified(&a.group, &a.resource);
    if a.name.is_empty() {
        format!("{what} is forbidden: {reason}")
    } else {
        format!("{what} \"{}\" is forbidden: {reason}", a.name)
    }
}

/// The rules in `servant` that `owner` does not cover (empty: granting `servant` is no
/// escalation). Each servant rule is broken down into single verb / group / resource / name
/// requests, and each must be allowed by some owner rule; a `*` in the servant rule is only
/// covered by a `*` in the owner's.
pub(crate) fn uncovered(owner: &[Rule], servant: &[Rule]) -> Vec<String> {
    let mut missing = Vec::new();
    for rule in servant {
        for verb in &rule.verbs {
            if !rule.non_resource_urls.is_empty() {
                for url in &rule.non_resource_urls {
                    let ok = owner.iter().any(|o| {
                        o.verbs.iter().any(|v| v == "*" || v == verb)
                            && o.non_resource_urls.iter().any(|u| {
                                u == "*"
                                    || u == url
                                    || u.strip_suffix('*')
                                        .is_some_and(|prefix| url.starts_with(prefix))
                            })
                    });
                    if !ok {
                        missing.push(format!(
                            "{{NonResourceURLs:[\"{url}\"], Verbs:[\"{verb}\"]}}"
                        ));
                    }
                }
                continue;
            }
            for group in &rule.api_groups {
                for resource in &rule.resources {
                    let names: Vec<String> = if rule.resource_names.is_empty() {
                        vec![String::new()]
                    } else {
                        rule.resource_names.clone()
                    };
                    for name in names {
                        let ok = owner.iter().any(|o| {
                            o.verbs.iter().any(|v| v == "*" || v == verb)
                                && o.api_groups.iter().any(|g| g == "*" || g == group)
                                && o.resources.iter().any(|r| {
                                    r == "*"
                                        || r == resource
                                        || resource
                                            .split_once('/')
                                            .is_some_and(|(_, sub)| *r == format!("*/{sub}"))
                                })
                                && (o.resource_names.is_empty()
                                    || (!name.is_empty() && o.resource_names.contains(&name)))
                        });
                        if !ok {
                            missing.push(format!(
                                "{{APIGroups:[\"{group}\"], Resources:[\"{resource}\"]{}, Verbs:[\"{verb}\"]}}",
                                if name.is_empty() {
                                    String::new()
                                } else {
                                    format!(", ResourceNames:[\"{name}\"]")
                                }
                            ));
                        }
                    }
                }
            }
        }
    }
    missing
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn attrs(
        verb: &str,
        group: &str,
        resource: &str,
        sub: &str,
        ns: &str,
        name: &str,
    ) -> Attributes {
        Attributes {
            verb: verb.into(),
            is_resource: true,
            group: group.into(),
            resource: resource.into(),
            subresource: sub.into(),
            namespace: ns.into(),
            name: name.into(),
            path: String::new(),
        }
    }

    #[test]
    fn rules_match_like_the_real_authoriser() {
        let rule = Rule::parse(
            &json!({"verbs": ["get", "list"], "apiGroups": [""], "resources": ["pods", "pods/status"]}),
        );
        assert!(rule.allows(&attrs("get", "", "pods", "", "ns", "p")));
        assert!(rule.allows(&attrs("get", "", "pods", "status", "ns", "p")));
        assert!(!rule.allows(&attrs("get", "", "pods", "log", "ns", "p")));
        assert!(!rule.allows(&attrs("watch", "", "pods", "", "ns", "")));
        assert!(!rule.allows(&attrs("get", "apps", "pods", "", "ns", "p")));

        let named = Rule::parse(
            &json!({"verbs": ["*"], "apiGroups": ["*"], "resources": ["configmaps"], "resourceNames": ["cfg"]}),
        );
        assert!(named.allows(&attrs("update", "", "configmaps", "", "ns", "cfg")));
        assert!(!named.allows(&attrs("update", "", "configmaps", "", "ns", "other")));
        assert!(!named.allows(&attrs("list", "", "configmaps", "", "ns", "")));
        assert!(named.allows(&attrs("watch", "", "configmaps", "", "ns", "cfg")));

        let any_status = Rule::parse(
            &json!({"verbs": ["patch"], "apiGroups": ["eraser.sh"], "resources": ["*/status"]}),
        );
        assert!(any_status.allows(&attrs("patch", "eraser.sh", "imagejobs", "status", "", "j")));
        assert!(!any_status.allows(&attrs("patch", "eraser.sh", "imagejobs", "", "", "j")));

        let urls =
            Rule::parse(&json!({"verbs": ["get"], "nonResourceURLs": ["/apis/*", "/version"]}));
        let mut a = Attributes {
            verb: "get".into(),
            path: "/apis/eraser.sh".into(),
            ..Default::default()
        };
        assert!(urls.allows(&a));
        a.path = "/version".into();
        assert!(urls.allows(&a));
        a.path = "/metrics".into();
        assert!(!urls.allows(&a));
    }

    #[test]
    fn denials_are_worded_like_the_real_server() {
        let user = UserInfo::service_account("ns", "sa", "u");
        let message = deny_message(&user, &attrs("get", "", "pods", "", "ns", "p"));
        assert_eq!(
            message,
            "pods \"p\" is forbidden: User \"system:serviceaccount:ns:sa\" cannot get resource \"pods\" in API group \"\" in the namespace \"ns\""
        );
        let message = deny_message(&user, &attrs("list", "eraser.sh", "imagelists", "", "", ""));
        assert_eq!(
            message,
            "imagelists.eraser.sh is forbidden: User \"system:serviceaccount:ns:sa\" cannot list resource \"imagelists\" in API group \"eraser.sh\" at the cluster scope"
        );
    }

    #[test]
    fn escalation_needs_covering_rules() {
        let owner = vec![Rule::parse(
            &json!({"verbs": ["get", "list"], "apiGroups": [""], "resources": ["pods"]}),
        )];
        let ok = vec![Rule::parse(
            &json!({"verbs": ["get"], "apiGroups": [""], "resources": ["pods"], "resourceNames": ["x"]}),
        )];
        assert!(uncovered(&owner, &ok).is_empty());
        let wild = vec![Rule::parse(
            &json!({"verbs": ["*"], "apiGroups": [""], "resources": ["pods"]}),
        )];
        assert_eq!(uncovered(&owner, &wild).len(), 1);
    }
}
