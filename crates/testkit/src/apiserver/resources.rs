//! What the server serves: the built-in resource types and the ones CustomResourceDefinitions
//! add. Everything else (routing, discovery, RBAC names, storage keys, validation switches)
//! looks types up here, so a CRD that becomes Established is served exactly like a built-in.
//!
//! Two versions of a resource share one store when they are the same objects: a CRD's served
//! versions (conversion `None`: only `apiVersion` differs) and `core/v1` vs `events.k8s.io/v1`
//! Events (fields renamed, see [`super::events`]). [`ResourceType::storage`] names that store.

use std::sync::Arc;

use serde_json::Value;

use super::error::{ApiError, ApiResult, Cause};
use super::meta::NameRule;

/// Where a resource's objects are kept: its storage group and plural.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct ResourceId {
    pub group: String,
    pub plural: String,
}

impl ResourceId {
    pub fn new(group: &str, plural: &str) -> ResourceId {
        ResourceId {
            group: group.to_string(),
            plural: plural.to_string(),
        }
    }
}

/// Built-in types that get behaviour beyond plain storage.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Builtin {
    Namespace,
    Pod,
    Node,
    Secret,
    ServiceAccount,
    Event,
    EventV1,
    /// Deployments and DaemonSets: stored, status dropped on create, generation kept.
    Workload,
    Crd,
    ClusterRole,
    Role,
    RoleBinding,
    ClusterRoleBinding,
    PriorityClass,
    /// Kept, with no behaviour of its own.
    Plain,
    /// `authorization.k8s.io` reviews: create-only, answered, never stored.
    AccessReview,
    /// `authentication.k8s.io/v1 SelfSubjectReview`: create-only, answered, never stored.
    SelfSubjectReview,
}

/// One served version.
#[derive(Clone, Debug)]
pub(crate) struct Version {
    pub name: String,
    /// `openAPIV3Schema` of a CRD version.
    pub schema: Option<Value>,
    /// CRD `additionalPrinterColumns`.
    pub printer_columns: Vec<Value>,
    /// Whether `/status` is a subresource in this version.
    pub status: bool,
    pub deprecation_warning: Option<String>,
}

/// A served resource type.
#[derive(Clone, Debug)]
pub(crate) struct ResourceType {
    pub group: String,
    pub plural: String,
    pub singular: String,
    pub kind: String,
    pub list_kind: String,
    pub namespaced: bool,
    /// Served versions, most preferred first.
    pub versions: Vec<Version>,
    pub storage_version: String,
    pub short_names: Vec<String>,
    pub categories: Vec<String>,
    pub builtin: Option<Builtin>,
    pub storage: ResourceId,
    pub name_rule: NameRule,
    /// Whether `metadata.generation` is kept (custom resources, workloads, CRDs).
    pub generation: bool,
}

/// Verbs of an ordinary stored resource, as discovery lists them.
pub(crate) const ALL_VERBS: &[&str] = &[
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];

impl ResourceType {
    /// The served version called `name`.
    pub fn version(&self, name: &str) -> Option<&Version> {
        self.versions.iter().find(|v| v.name == name)
    }

    /// Whether `version` has a `/status` subresource.
    pub fn has_status(&self, version: &str) -> bool {
        self.version(version).is_some_and(|v| v.status)
    }

    /// `group/version`, or `version` for the core group.
    pub fn api_version(&self, version: &str) -> String {
        if self.group.is_empty() {
            version.to_string()
        } else {
            format!("{}/{version}", self.group)
        }
    }

    /// Whether objects are kept (false for reviews).
    pub fn stored(&self) -> bool {
        !matches!(
            self.builtin,
            Some(Builtin::AccessReview | Builtin::SelfSubjectReview)
        )
    }

    /// Whether this is a custom resource.
    pub fn is_custom(&self) -> bool {
        self.builtin.is_none()
    }

    /// The verbs discovery lists.
    pub fn verbs(&self) -> Vec<&'static str> {
        if self.stored() {
            ALL_VERBS.to_vec()
        } else {
            vec!["create"]
        }
    }

    /// Subresources `(name, verbs)` as discovery lists them.
    pub fn subresources(&self, version: &str) -> Vec<(&'static str, Vec<&'static str>)> {
        let mut subresources = Vec::new();
        if self.has_status(version) {
            subresources.push(("status", vec!["get", "patch", "update"]));
        }
        if self.builtin == Some(Builtin::ServiceAccount) {
            subresources.push(("token", vec!["create"]));
        }
        if self.builtin == Some(Builtin::Pod) {
            subresources.push(("log", vec!["get"]));
        }
        subresources
    }
}

struct Def {
    group: &'static str,
    version: &'static str,
    plural: &'static str,
    kind: &'static str,
    namespaced: bool,
    status: bool,
    short: &'static [&'static str],
    builtin: Builtin,
}

#[allow(clippy::too_many_arguments)]
const fn def(
    group: &'static str,
    version: &'static str,
    plural: &'static str,
    kind: &'static str,
    namespaced: bool,
    status: bool,
    short: &'static [&'static str],
    builtin: Builtin,
) -> Def {
    Def {
        group,
        version,
        plural,
        kind,
        namespaced,
        status,
        short,
        builtin,
    }
}

/// The built-in types, in the order discovery lists their groups.
const BUILTINS: &[Def] = &[
    def(
        "",
        "v1",
        "namespaces",
        "Namespace",
        false,
        true,
        &["ns"],
        Builtin::Namespace,
    ),
    def("", "v1", "pods", "Pod", true, true, &["po"], Builtin::Pod),
    def(
        "",
        "v1",
        "nodes",
        "Node",
        false,
        true,
        &["no"],
        Builtin::Node,
    ),
    def(
        "",
        "v1",
        "configmaps",
        "ConfigMap",
        true,
        false,
        &["cm"],
        Builtin::Plain,
    ),
    def(
        "",
        "v1",
        "secrets",
        "Secret",
        true,
        false,
        &[],
        Builtin::Secret,
    ),
    def(
        "",
        "v1",
        "serviceaccounts",
        "ServiceAccount",
        true,
        false,
        &["sa"],
        Builtin::ServiceAccount,
    ),
    def(
        "",
        "v1",
        "podtemplates",
        "PodTemplate",
        true,
        false,
        &[],
        Builtin::Plain,
    ),
    def(
        "",
        "v1",
        "services",
        "Service",
        true,
        true,
        &["svc"],
        Builtin::Plain,
    ),
    def(
        "",
        "v1",
        "events",
        "Event",
        true,
        false,
        &["ev"],
        Builtin::Event,
    ),
    def(
        "apps",
        "v1",
        "deployments",
        "Deployment",
        true,
        true,
        &["deploy"],
        Builtin::Workload,
    ),
    def(
        "apps",
        "v1",
        "daemonsets",
        "DaemonSet",
        true,
        true,
        &["ds"],
        Builtin::Workload,
    ),
    def(
        "events.k8s.io",
        "v1",
        "events",
        "Event",
        true,
        false,
        &["ev"],
        Builtin::EventV1,
    ),
    def(
        "authentication.k8s.io",
        "v1",
        "selfsubjectreviews",
        "SelfSubjectReview",
        false,
        false,
        &[],
        Builtin::SelfSubjectReview,
    ),
    def(
        "authorization.k8s.io",
        "v1",
        "selfsubjectaccessreviews",
        "SelfSubjectAccessReview",
        false,
        false,
        &[],
        Builtin::AccessReview,
    ),
    def(
        "authorization.k8s.io",
        "v1",
        "subjectaccessreviews",
        "SubjectAccessReview",
        false,
        false,
        &[],
        Builtin::AccessReview,
    ),
    def(
        "authorization.k8s.io",
        "v1",
        "localsubjectaccessreviews",
        "LocalSubjectAccessReview",
        true,
        false,
        &[],
        Builtin::AccessReview,
    ),
    def(
        "rbac.authorization.k8s.io",
        "v1",
        "clusterroles",
        "ClusterRole",
        false,
        false,
        &[],
        Builtin::ClusterRole,
    ),
    def(
        "rbac.authorization.k8s.io",
        "v1",
        "clusterrolebindings",
        "ClusterRoleBinding",
        false,
        false,
        &[],
        Builtin::ClusterRoleBinding,
    ),
    def(
        "rbac.authorization.k8s.io",
        "v1",
        "roles",
        "Role",
        true,
        false,
        &[],
        Builtin::Role,
    ),
    def(
        "rbac.authorization.k8s.io",
        "v1",
        "rolebindings",
        "RoleBinding",
        true,
        false,
        &[],
        Builtin::RoleBinding,
    ),
    def(
        "scheduling.k8s.io",
        "v1",
        "priorityclasses",
        "PriorityClass",
        false,
        false,
        &["pc"],
        Builtin::PriorityClass,
    ),
    def(
        "coordination.k8s.io",
        "v1",
        "leases",
        "Lease",
        true,
        false,
        &[],
        Builtin::Plain,
    ),
    def(
        "apiextensions.k8s.io",
        "v1",
        "customresourcedefinitions",
        "CustomResourceDefinition",
        false,
        true,
        &["crd", "crds"],
        Builtin::Crd,
    ),
];

fn builtin_type(d: &Def) -> ResourceType {
    let storage = if d.builtin == Builtin::EventV1 {
        ResourceId::new("", "events")
    } else {
        ResourceId::new(d.group, d.plural)
    };
    let name_rule = match d.builtin {
        Builtin::Namespace => NameRule::Label,
        Builtin::ClusterRole
        | Builtin::Role
        | Builtin::RoleBinding
        | Builtin::ClusterRoleBinding => NameRule::PathSegment,
        _ => NameRule::Subdomain,
    };
    ResourceType {
        group: d.group.to_string(),
        plural: d.plural.to_string(),
        singular: d.kind.to_lowercase(),
        kind: d.kind.to_string(),
        list_kind: format!("{}List", d.kind),
        namespaced: d.namespaced,
        versions: vec![Version {
            name: d.version.to_string(),
            schema: None,
            printer_columns: Vec::new(),
            status: d.status,
            deprecation_warning: None,
        }],
        storage_version: d.version.to_string(),
        short_names: d.short.iter().map(|s| s.to_string()).collect(),
        categories: if matches!(d.builtin, Builtin::Pod | Builtin::Workload) {
            vec!["all".into()]
        } else {
            Vec::new()
        },
        builtin: Some(d.builtin),
        storage,
        name_rule,
        generation: matches!(d.builtin, Builtin::Workload | Builtin::Crd),
    }
}

/// All served types: built-ins, then custom resources.
#[derive(Clone, Debug)]
pub(crate) struct Registry {
    types: Vec<Arc<ResourceType>>,
}

impl Default for Registry {
    fn default() -> Self {
        Registry {
            types: BUILTINS.iter().map(|d| Arc::new(builtin_type(d))).collect(),
        }
    }
}

impl Registry {
    /// Every served type.
    pub fn types(&self) -> &[Arc<ResourceType>] {
        &self.types
    }

    /// The type served at `group`/`version` under `plural`.
    pub fn find(&self, group: &str, version: &str, plural: &str) -> Option<Arc<ResourceType>> {
        self.types
            .iter()
            .find(|t| t.group == group && t.plural == plural && t.version(version).is_some())
            .cloned()
    }

    /// The type stored under `id` (the one whose storage is its own).
    pub fn by_storage(&self, id: &ResourceId) -> Option<Arc<ResourceType>> {
        self.types
            .iter()
            .find(|t| t.group == id.group && t.plural == id.plural)
            .cloned()
    }

    /// Serves (or stops serving) the custom resource a CRD defines. `crd` is `None` when
    /// the CRD named `name` is gone.
    pub fn set_custom(&mut self, name: &str, crd: Option<ResourceType>) {
        self.types
            .retain(|t| !(t.is_custom() && format!("{}.{}", t.plural, t.group) == name));
        if let Some(crd) = crd {
            self.types.push(Arc::new(crd));
        }
    }

    /// API groups in discovery order, each with its versions (most preferred first).
    pub fn groups(&self) -> Vec<(String, Vec<String>)> {
        let mut groups: Vec<(String, Vec<String>)> = Vec::new();
        for t in &self.types {
            if t.group.is_empty() {
                continue;
            }
            let entry = match groups.iter_mut().find(|(g, _)| *g == t.group) {
                Some(entry) => entry,
                None => {
                    groups.push((t.group.clone(), Vec::new()));
                    groups.last_mut().expect("just pushed")
                }
            };
            for v in &t.versions {
                if !entry.1.contains(&v.name) {
                    entry.1.push(v.name.clone());
                }
            }
        }
        for (_, versions) in &mut groups {
            versions.sort_by_key(|v| std::cmp::Reverse(version_priority(v)));
        }
        groups
    }
}

/// Kubernetes version ordering: GA above beta above alpha, then by numbers; others last,
/// alphabetically.
pub(crate) fn version_priority(version: &str) -> (u8, u64, u64, std::cmp::Reverse<String>) {
    let other = (0, 0, 0, std::cmp::Reverse(version.to_string()));
    let Some(rest) = version.strip_prefix('v') else {
        return other;
    };
    let digits: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
    let Ok(major) = digits.parse::<u64>() else {
        return other;
    };
    let tail = &rest[digits.len()..];
    let stability = |prefix: &str, rank: u8| {
        let n = tail.strip_prefix(prefix)?;
        let minor = n.parse::<u64>().ok()?;
        Some((rank, major, minor, std::cmp::Reverse(String::new())))
    };
    if tail.is_empty() {
        return (3, major, 0, std::cmp::Reverse(String::new()));
    }
    stability("beta", 2)
        .or_else(|| stability("alpha", 1))
        .unwrap_or(other)
}

fn str_at<'a>(value: &'a Value, path: &[&str]) -> Option<&'a str> {
    let mut at = value;
    for key in path {
        at = at.get(key)?;
    }
    at.as_str()
}

/// Checks a CustomResourceDefinition (apiextensions.k8s.io/v1) the way the real validation
/// does for the fields this server uses, and returns the type it defines.
pub(crate) fn crd_type(crd: &Value) -> ApiResult<ResourceType> {
    let name = super::meta::name(crd).to_string();
    let invalid = |causes: Vec<Cause>| {
        ApiError::invalid(
            "CustomResourceDefinition",
            "apiextensions.k8s.io",
            &name,
            causes,
        )
    };
    let spec = crd.get("spec").cloned().unwrap_or(Value::Null);
    let mut causes = Vec::new();
    let group = str_at(&spec, &["group"]).unwrap_or("").to_string();
    let plural = str_at(&spec, &["names", "plural"])
        .unwrap_or("")
        .to_string();
    let kind = str_at(&spec, &["names", "kind"]).unwrap_or("").to_string();
    if group.is_empty() {
        causes.push(Cause::required("spec.group"));
    } else if !group.contains('.') {
        causes.push(Cause::invalid(
            "spec.group",
            &Value::String(group.clone()),
            "should be a domain with at least one dot",
        ));
    }
    if plural.is_empty() {
        causes.push(Cause::required("spec.names.plural"));
    }
    if kind.is_empty() {
        causes.push(Cause::required("spec.names.kind"));
    }
    if !group.is_empty() && !plural.is_empty() && name != format!("{plural}.{group}") {
        causes.push(Cause::invalid(
            "metadata.name",
            &Value::String(name.clone()),
            "must be spec.names.plural+\".\"+spec.group",
        ));
    }
    let scope = str_at(&spec, &["scope"]).unwrap_or("");
    let namespaced = match scope {
        "Namespaced" => true,
        "Cluster" => false,
        other => {
            causes.push(Cause::not_supported(
                "spec.scope",
                &Value::String(other.to_string()),
                &["Cluster".into(), "Namespaced".into()],
            ));
            false
        }
    };
    let versions = spec
        .get("versions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if versions.is_empty() {
        causes.push(Cause::required("spec.versions"));
    }
    let mut served = Vec::new();
    let mut storage = Vec::new();
    for (i, v) in versions.iter().enumerate() {
        let version_name = str_at(v, &["name"]).unwrap_or("").to_string();
        if version_name.is_empty() {
            causes.push(Cause::required(format!("spec.versions[{i}].name")));
            continue;
        }
        let schema = v
            .get("schema")
            .and_then(|s| s.get("openAPIV3Schema"))
            .cloned();
        if schema.is_none() {
            causes.push(Cause {
                reason: "FieldValueRequired",
                field: format!("spec.versions[{i}].schema.openAPIV3Schema"),
                message: "Required value: schemas are required".into(),
            });
        }
        if v.get("storage").and_then(Value::as_bool) == Some(true) {
            storage.push(version_name.clone());
        }
        if v.get("served").and_then(Value::as_bool) == Some(true) {
            served.push(Version {
                name: version_name,
                schema,
                printer_columns: v
                    .get("additionalPrinterColumns")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default(),
                status: v.pointer("/subresources/status").is_some(),
                deprecation_warning: if v.get("deprecated").and_then(Value::as_bool) == Some(true) {
                    Some(
                        v.get("deprecationWarning")
                            .and_then(Value::as_str)
                            .map(String::from)
                            .unwrap_or_else(|| {
                                format!(
                                    "{group}/{} {kind} is deprecated",
                                    str_at(v, &["name"]).unwrap_or("")
                                )
                            }),
                    )
                } else {
                    None
                },
            });
        }
    }
    if !versions.is_empty() && storage.len() != 1 {
        causes.push(Cause::invalid(
            "spec.versions",
            &Value::Array(versions.clone()),
            "must have exactly one version marked as storage version",
        ));
    }
    if !causes.is_empty() {
        return Err(invalid(causes));
    }
    served.sort_by_key(|v| std::cmp::Reverse(version_priority(&v.name)));
    let strings = |key: &str| -> Vec<String> {
        spec.pointer(&format!("/names/{key}"))
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default()
    };
    let singular = str_at(&spec, &["names", "singular"])
        .filter(|s| !s.is_empty())
        .map(String::from)
        .unwrap_or_else(|| kind.to_lowercase());
    let list_kind = str_at(&spec, &["names", "listKind"])
        .filter(|s| !s.is_empty())
        .map(String::from)
        .unwrap_or_else(|| format!("{kind}List"));
    Ok(ResourceType {
        storage: ResourceId::new(&group, &plural),
        group,
        plural,
        singular,
        kind,
        list_kind,
        namespaced,
        versions: served,
        storage_version: storage.remove(0),
        short_names: strings("shortNames"),
        categories: strings("categories"),
        builtin: None,
        name_rule: NameRule::Subdomain,
        generation: true,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn versions_order_like_kubernetes() {
        let mut versions = vec!["v1alpha1", "v2", "v1", "v1beta2", "foo", "v1beta1"];
        versions.sort_by_key(|v| std::cmp::Reverse(version_priority(v)));
        assert_eq!(
            versions,
            ["v2", "v1", "v1beta2", "v1beta1", "v1alpha1", "foo"]
        );
    }

    fn crd(name: &str) -> Value {
        json!({
            "apiVersion": "apiextensions.k8s.io/v1",
            "kind": "CustomResourceDefinition",
            "metadata": {"name": name},
            "spec": {
                "group": "eraser.sh",
                "names": {"plural": "imagelists", "kind": "ImageList"},
                "scope": "Cluster",
                "versions": [
                    {"name": "v1alpha1", "served": true, "storage": false,
                     "schema": {"openAPIV3Schema": {"type": "object"}}},
                    {"name": "v1", "served": true, "storage": true,
                     "schema": {"openAPIV3Schema": {"type": "object"}},
                     "subresources": {"status": {}}}
                ]
            }
        })
    }

    #[test]
    fn crds_define_served_types() {
        let t = crd_type(&crd("imagelists.eraser.sh")).unwrap();
        assert_eq!(t.kind, "ImageList");
        assert_eq!(t.list_kind, "ImageListList");
        assert_eq!(t.singular, "imagelist");
        assert!(!t.namespaced);
        assert_eq!(t.storage_version, "v1");
        assert_eq!(t.versions[0].name, "v1");
        assert!(t.has_status("v1"));
        assert!(!t.has_status("v1alpha1"));

        let mut registry = Registry::default();
        registry.set_custom("imagelists.eraser.sh", Some(t));
        assert!(
            registry
                .find("eraser.sh", "v1alpha1", "imagelists")
                .is_some()
        );
        registry.set_custom("imagelists.eraser.sh", None);
        assert!(registry.find("eraser.sh", "v1", "imagelists").is_none());
    }

    #[test]
    fn crds_with_a_wrong_name_are_invalid() {
        let error = crd_type(&crd("lists.eraser.sh")).unwrap_err();
        assert_eq!(error.code, 422);
        assert_eq!(error.causes[0].field, "metadata.name");
    }
}
