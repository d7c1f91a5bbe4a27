//! The request pipeline, in the real server's order: authenticate, impersonate (each
//! impersonation authorised), authorise the request attributes (403s recorded), and only then
//! route: discovery for non-resource paths, the verb handlers for resources. Every failure is
//! a `Status`; a malformed request is a 4xx, never a panic.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use super::apply;
use super::delete::{self, DeleteOptions};
use super::error::{ApiError, ApiResult};
use super::output::{self, Format};
use super::patch;
use super::rbac::{self, Attributes, Forbidden};
use super::read::{self, Selectors};
use super::request::{self, Query, RequestInfo};
use super::resources::{Builtin, ResourceType};
use super::watch::{self, WatchRequest};
use super::write::{self, Op};
use super::{Shared, UserInfo, auth, discovery, json_response, meta, reviews};

/// Largest request body accepted.
const MAX_BODY: usize = 16 * 1024 * 1024;

/// The one axum handler.
pub(crate) async fn handle(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    let method = request.method().to_string();
    let uri = request.uri().to_string();
    let (user, response) = match serve(&shared, request).await {
        Ok((user, response)) => (user, response),
        Err((user, error)) => (user, error.into_response()),
    };
    shared.record_request(super::RequestRecord {
        user,
        method,
        uri,
        code: response.status().as_u16(),
    });
    response
}

type Failure = (String, ApiError);

async fn serve(shared: &Arc<Shared>, request: Request) -> Result<(String, Response), Failure> {
    let (parts, body) = request.into_parts();
    let anonymous = |e: ApiError| (String::new(), e);
    let query = Query::parse(parts.uri.query());
    let path = parts.uri.path().to_string();
    let method = parts.method.clone();
    let user = {
        let store = shared.lock();
        auth::authenticate(&parts.headers, &shared.tokens, &store).map_err(anonymous)?
    };
    let user = impersonate(shared, user, &parts.headers)?;
    let name = user.username.clone();
    let fail = |e: ApiError| (name.clone(), e);
    let field_name = exact_name(query.str("fieldSelector"));
    let info = request::parse(
        method.as_str(),
        &path,
        query.flag("watch"),
        field_name.as_deref(),
    );
    authorize(shared, &user, &info).map_err(fail)?;
    let body = axum::body::to_bytes(body, MAX_BODY).await.map_err(|_| {
        fail(ApiError::bad_request(format!(
            "the request body is unreadable or larger than {MAX_BODY} bytes"
        )))
    })?;
    let response = if info.is_resource {
        let call = Call {
            shared,
            user: &user,
            info: &info,
            query: &query,
            headers: &parts.headers,
            method: &method,
            body: &body,
        };
        call.resource().map_err(fail)?
    } else {
        non_resource(shared, &method, &path).map_err(fail)?
    };
    Ok((name, response))
}

/// The `metadata.name` an exact field selector names (used for RBAC, as the real server does).
fn exact_name(selector: &str) -> Option<String> {
    selector.split(',').find_map(|part| {
        let part = part.trim();
        if part.contains("!=") {
            return None;
        }
        let value = part
            .strip_prefix("metadata.name==")
            .or_else(|| part.strip_prefix("metadata.name="))?;
        Some(value.trim().to_string())
    })
}

fn attributes(info: &RequestInfo) -> Attributes {
    Attributes {
        verb: info.verb.clone(),
        is_resource: info.is_resource,
        group: info.group.clone(),
        resource: info.resource.clone(),
        subresource: info.subresource.clone(),
        namespace: info.namespace.clone(),
        name: info.name.clone(),
        path: info.path.clone(),
    }
}

fn deny(shared: &Shared, user: &UserInfo, a: &Attributes) -> ApiError {
    let message = rbac::deny_message(user, a);
    shared.record_forbidden(Forbidden {
        user: user.username.clone(),
        groups: user.groups.clone(),
        verb: a.verb.clone(),
        api_group: a.group.clone(),
        resource: a.resource.clone(),
        subresource: a.subresource.clone(),
        namespace: a.namespace.clone(),
        name: a.name.clone(),
        path: a.path.clone(),
        message: message.clone(),
    });
    ApiError::forbidden(&a.group, &a.resource, &a.name, message)
}

fn impersonate(shared: &Shared, user: UserInfo, headers: &HeaderMap) -> Result<UserInfo, Failure> {
    let name = user.username.clone();
    let Some((target, checks)) = auth::impersonation(headers).map_err(|e| (name.clone(), e))?
    else {
        return Ok(user);
    };
    let store = shared.lock();
    for check in checks {
        let a = Attributes {
            verb: "impersonate".into(),
            is_resource: true,
            group: if check.resource == "uids" {
                "authentication.k8s.io".into()
            } else {
                String::new()
            },
            resource: check.resource.into(),
            namespace: check.namespace,
            name: check.name,
            ..Default::default()
        };
        if !rbac::allowed(&store, &user, &a) {
            drop(store);
            return Err((name, deny(shared, &user, &a)));
        }
    }
    Ok(target)
}

fn authorize(shared: &Shared, user: &UserInfo, info: &RequestInfo) -> ApiResult<()> {
    let a = attributes(info);
    let allowed = rbac::allowed(&shared.lock(), user, &a);
    if allowed {
        Ok(())
    } else {
        Err(deny(shared, user, &a))
    }
}

fn non_resource(shared: &Shared, method: &Method, path: &str) -> ApiResult<Response> {
    if method != Method::GET && method != Method::HEAD {
        return Err(ApiError::method_not_allowed(path));
    }
    let segments: Vec<&str> = path
        .trim_matches('/')
        .split('/')
        .filter(|s| !s.is_empty())
        .collect();
    let store = shared.lock();
    let registry = &store.registry;
    let value = match segments.as_slice() {
        ["api"] => Some(discovery::core_versions(&shared.address.to_string())),
        ["api", version] => discovery::resources(registry, "", version),
        ["apis"] => Some(discovery::groups(registry)),
        ["apis", group] => discovery::group(registry, group),
        ["apis", group, version] => discovery::resources(registry, group, version),
        ["version"] => Some(discovery::version()),
        // Test-cluster diagnostics for separate processes (`kubectl get --raw`): what
        // `ApiServer::forbidden` and `ApiServer::requests` return in-process.
        ["testkit", "forbidden"] => serde_json::to_value(
            shared
                .forbidden
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
        )
        .ok(),
        ["testkit", "requests"] => serde_json::to_value(
            shared
                .requests
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .iter()
                .cloned()
                .collect::<Vec<_>>(),
        )
        .ok(),
        ["healthz" | "livez" | "readyz"] => {
            let mut response = Response::new(axum::body::Body::from("ok"));
            response
                .headers_mut()
                .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
            return Ok(response);
        }
        _ => None,
    };
    value
        .map(|v| json_response(StatusCode::OK, &v))
        .ok_or_else(ApiError::no_route)
}

/// One resource request being served.
struct Call<'a> {
    shared: &'a Arc<Shared>,
    user: &'a UserInfo,
    info: &'a RequestInfo,
    query: &'a Query,
    headers: &'a HeaderMap,
    method: &'a Method,
    body: &'a [u8],
}

fn content_type(headers: &HeaderMap) -> String {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}

/// Decodes a JSON or YAML body.
fn decode(content_type: &str, body: &[u8]) -> ApiResult<Value> {
    if content_type.contains("protobuf") {
        return super::protobuf::decode(body).ok_or_else(|| {
            ApiError::unsupported_media_type(format!(
                "this test cluster reads protobuf only for namespaces, configmaps, secrets, service accounts, RBAC objects, token requests and access reviews; send JSON (got {content_type})"
            ))
        });
    }
    let value: Value = if content_type.contains("yaml") {
        serde_yaml::from_slice(body)
            .map_err(|e| ApiError::bad_request(format!("error decoding YAML: {e}")))?
    } else {
        serde_json::from_slice(body)
            .map_err(|e| ApiError::bad_request(format!("error decoding JSON: {e}")))?
    };
    if !value.is_object() {
        return Err(ApiError::bad_request("the request body must be an object"));
    }
    Ok(value)
}

impl Call<'_> {
    fn rt(&self) -> ApiResult<Arc<ResourceType>> {
        let store = self.shared.lock();
        store
            .registry
            .find(&self.info.group, &self.info.version, &self.info.resource)
            .ok_or_else(ApiError::no_route)
    }

    fn format(&self) -> Format {
        let accept = self
            .headers
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        Format::from_accept(accept, self.query.str("includeObject"))
    }

    fn manager(&self) -> ApiResult<String> {
        let manager = match self.query.get("fieldManager") {
            Some(m) if !m.is_empty() => m.to_string(),
            _ => self
                .headers
                .get(header::USER_AGENT)
                .and_then(|v| v.to_str().ok())
                .and_then(|ua| ua.split('/').next())
                .filter(|m| !m.is_empty())
                .unwrap_or("unknown")
                .to_string(),
        };
        if manager.len() > 128 {
            return Err(ApiError::invalid(
                "PatchOptions",
                "meta.k8s.io",
                "",
                vec![super::error::Cause::invalid(
                    "fieldManager",
                    &Value::String(manager),
                    "must be no more than 128 characters",
                )],
            ));
        }
        Ok(manager)
    }

    fn dry_run(&self) -> bool {
        self.query.str("dryRun") == "All"
    }

    fn respond(&self, rt: &ResourceType, code: StatusCode, stored: &Value) -> Response {
        let versioned = output::to_version(rt, &self.info.version, stored);
        self.with_warning(
            rt,
            json_response(code, &output::render_one(rt, &self.format(), versioned)),
        )
    }

    fn with_warning(&self, rt: &ResourceType, mut response: Response) -> Response {
        if let Some(warning) = rt
            .version(&self.info.version)
            .and_then(|v| v.deprecation_warning.clone())
            && let Ok(value) =
                HeaderValue::from_str(&format!("299 - \"{}\"", warning.replace('"', "'")))
        {
            response.headers_mut().insert("warning", value);
        }
        response
    }

    fn resource(&self) -> ApiResult<Response> {
        let rt = self.rt()?;
        let info = self.info;
        let namespace = if rt.namespaced {
            info.namespace.clone()
        } else {
            let is_namespace =
                rt.builtin == Some(Builtin::Namespace) && info.namespace == info.name;
            if !info.namespace.is_empty() && !is_namespace {
                return Err(ApiError::no_route());
            }
            String::new()
        };
        let sub = info.subresource.as_str();
        let sub_ok = match sub {
            "" => true,
            "status" => rt.has_status(&info.version),
            "token" => rt.builtin == Some(Builtin::ServiceAccount) && info.verb == "create",
            "log" => rt.builtin == Some(Builtin::Pod) && info.verb == "get",
            _ => false,
        };
        if !sub_ok || info.parts.len() > 3 {
            return Err(ApiError::no_route());
        }
        let needs_namespace = rt.namespaced && !matches!(info.verb.as_str(), "list" | "watch");
        if needs_namespace && namespace.is_empty() {
            return Err(ApiError::no_route());
        }
        if !rt.stored() {
            return self.review(&rt, &namespace);
        }
        let key = (namespace.clone(), info.name.clone());
        let version = info.version.as_str();
        match (info.verb.as_str(), sub) {
            ("get", "log") => self.log(&rt, &key),
            ("get", _) => {
                let object = read::get(&self.shared.lock(), &rt, version, &key)?;
                let rendered = output::render_one(&rt, &self.format(), object);
                Ok(self.with_warning(&rt, json_response(StatusCode::OK, &rendered)))
            }
            ("list", "") => {
                let scope = (!namespace.is_empty()).then_some(namespace.as_str());
                let list = read::list(
                    &self.shared.lock(),
                    &rt,
                    version,
                    scope,
                    self.query,
                    &self.format(),
                )?;
                Ok(self.with_warning(&rt, json_response(StatusCode::OK, &list)))
            }
            ("watch", "") => watch::watch(
                self.shared,
                WatchRequest {
                    rt: rt.clone(),
                    version: version.to_string(),
                    namespace: (!namespace.is_empty()).then_some(namespace.clone()),
                    query: self.query.clone(),
                    format: self.format(),
                },
            ),
            ("create", "") if info.name.is_empty() => self.create(&rt, &namespace),
            ("create", "token") => {
                let body = decode(&content_type(self.headers), self.body)?;
                let store = self.shared.lock();
                let answer = reviews::token_request(
                    &store,
                    &self.shared.tokens,
                    &namespace,
                    &info.name,
                    &body,
                )?;
                Ok(json_response(StatusCode::CREATED, &answer))
            }
            ("update" | "patch", _) if info.name.is_empty() => Err(ApiError::method_not_allowed(
                &format!("{} {}", self.method, info.path),
            )),
            ("update", _) => self.update(&rt, &key, sub == "status"),
            ("patch", _) => self.patch(&rt, &key, sub == "status"),
            ("delete", "") => self.delete(&rt, &key),
            ("deletecollection", "") => self.delete_collection(&rt, &namespace),
            _ => Err(ApiError::method_not_allowed(&format!(
                "{} {}",
                self.method, info.path
            ))),
        }
    }

    /// `pods/NAME/log`: the container's log, from the log reader the cluster installed.
    fn log(&self, rt: &ResourceType, key: &(String, String)) -> ApiResult<Response> {
        let pod = self
            .shared
            .lock()
            .get(&rt.storage, key)
            .ok_or_else(|| ApiError::not_found(&rt.group, &rt.plural, &key.1))?;
        let containers: Vec<String> = pod
            .pointer("/spec/containers")
            .and_then(Value::as_array)
            .map(|cs| {
                cs.iter()
                    .filter_map(|c| c.get("name").and_then(Value::as_str).map(String::from))
                    .collect()
            })
            .unwrap_or_default();
        let container = match self.query.get("container").filter(|c| !c.is_empty()) {
            Some(c) => c.to_string(),
            None if containers.len() == 1 => containers[0].clone(),
            None => {
                return Err(ApiError::bad_request(format!(
                    "a container name must be specified for pod {}, choose one of: {containers:?}",
                    key.1
                )));
            }
        };
        let reader = self
            .shared
            .log_reader
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let text = reader
            .and_then(|read| read(&key.0, &key.1, meta::uid(&pod), &container))
            .ok_or_else(|| {
                ApiError::bad_request(format!(
                    "container \"{container}\" in pod \"{}\" is waiting to start or has no log",
                    key.1
                ))
            })?;
        let text = match self
            .query
            .get("tailLines")
            .and_then(|n| n.parse::<usize>().ok())
        {
            Some(n) => {
                let lines: Vec<&str> = text.lines().collect();
                let mut tail = lines[lines.len().saturating_sub(n)..].join("\n");
                if !tail.is_empty() {
                    tail.push('\n');
                }
                tail
            }
            None => text,
        };
        let mut response = Response::new(axum::body::Body::from(text));
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        Ok(response)
    }

    fn op<'a>(&'a self, rt: &'a ResourceType, manager: &'a str) -> Op<'a> {
        Op {
            rt,
            version: &self.info.version,
            user: self.user,
            manager,
            dry_run: self.dry_run(),
        }
    }

    fn review(&self, rt: &ResourceType, namespace: &str) -> ApiResult<Response> {
        if self.info.verb != "create" || !self.info.name.is_empty() {
            return Err(ApiError::method_not_allowed(&self.info.path));
        }
        let body = decode(&content_type(self.headers), self.body)?;
        let answer = match rt.builtin {
            Some(Builtin::SelfSubjectReview) => reviews::self_subject_review(self.user),
            _ => {
                reviews::access_review(&self.shared.lock(), self.user, &rt.kind, namespace, &body)?
            }
        };
        Ok(json_response(StatusCode::CREATED, &answer))
    }

    fn create(&self, rt: &ResourceType, namespace: &str) -> ApiResult<Response> {
        let body = decode(&content_type(self.headers), self.body)?;
        if !meta::meta_str(&body, "resourceVersion").is_empty() {
            // What etcd's storage answers; a real trap for code that re-creates fetched objects.
            return Err(ApiError::internal(
                "resourceVersion should not be set on objects to be created",
            ));
        }
        let manager = self.manager()?;
        let op = self.op(rt, &manager);
        let stored = write::create(&mut self.shared.lock(), &op, namespace, body)?;
        Ok(self.respond(rt, StatusCode::CREATED, &stored))
    }

    fn update(
        &self,
        rt: &ResourceType,
        key: &(String, String),
        status: bool,
    ) -> ApiResult<Response> {
        let body = decode(&content_type(self.headers), self.body)?;
        if rt.is_custom() && meta::meta_str(&body, "resourceVersion").is_empty() {
            // Custom resources do not allow unconditional updates.
            return Err(ApiError::invalid(
                &rt.kind,
                &rt.group,
                &key.1,
                vec![super::error::Cause::invalid(
                    "metadata.resourceVersion",
                    &Value::from(0),
                    "must be specified for an update",
                )],
            ));
        }
        let manager = self.manager()?;
        let op = self.op(rt, &manager);
        let mut store = self.shared.lock();
        let old = store
            .get(&rt.storage, key)
            .ok_or_else(|| ApiError::not_found(&rt.group, &rt.plural, &key.1))?;
        let stored = write::update(&mut store, &op, &old, body, op.scope(status), None)?;
        drop(store);
        Ok(self.respond(rt, StatusCode::OK, &stored))
    }

    fn patch(
        &self,
        rt: &ResourceType,
        key: &(String, String),
        status: bool,
    ) -> ApiResult<Response> {
        let kind = content_type(self.headers);
        if kind == "application/apply-patch+yaml" {
            return self.apply(rt, key, status);
        }
        let manager = self.manager()?;
        let op = self.op(rt, &manager);
        let mut store = self.shared.lock();
        let old = store
            .get(&rt.storage, key)
            .ok_or_else(|| ApiError::not_found(&rt.group, &rt.plural, &key.1))?;
        let mut doc = output::to_version(rt, &self.info.version, &old);
        match kind.as_str() {
            "application/json-patch+json" => patch::json_patch(&mut doc, self.body)?,
            "application/merge-patch+json" => patch::merge_patch(&mut doc, self.body)?,
            "application/strategic-merge-patch+json" => {
                if rt.is_custom() {
                    return Err(ApiError::unsupported_media_type(
                        "strategic merge patch is not supported for custom resources; use a JSON merge patch",
                    ));
                }
                patch::strategic_merge_patch(&mut doc, self.body)?
            }
            other => {
                return Err(ApiError::unsupported_media_type(format!(
                    "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml, application/strategic-merge-patch+json (got {other})"
                )));
            }
        }
        let stored = write::update(&mut store, &op, &old, doc, op.scope(status), None)?;
        drop(store);
        Ok(self.respond(rt, StatusCode::OK, &stored))
    }

    fn apply(
        &self,
        rt: &ResourceType,
        key: &(String, String),
        status: bool,
    ) -> ApiResult<Response> {
        let Some(manager) = self.query.get("fieldManager").filter(|m| !m.is_empty()) else {
            return Err(ApiError::invalid(
                "PatchOptions",
                "meta.k8s.io",
                "",
                vec![super::error::Cause::required("fieldManager")],
            ));
        };
        let manager = manager.to_string();
        let force = self.query.flag("force");
        let mut config = decode("application/yaml", self.body)?;
        for field in ["apiVersion", "kind"] {
            if config
                .get(field)
                .and_then(Value::as_str)
                .is_none_or(str::is_empty)
            {
                return Err(ApiError::bad_request(format!(
                    "{field} must be set in an applied configuration"
                )));
            }
        }
        let config_name = meta::name(&config);
        if !config_name.is_empty() && config_name != key.1 {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({config_name}) does not match the name on the URL ({})",
                key.1
            )));
        }
        meta::metadata_mut(&mut config).insert("name".into(), Value::String(key.1.clone()));
        let op = self.op(rt, &manager);
        let api_version = rt.api_version(&self.info.version);
        let now = meta::now();
        let mut store = self.shared.lock();
        let existing = store.get(&rt.storage, key);
        let scope = op.scope(status);
        let writer = apply::Writer {
            manager: &manager,
            api_version: &api_version,
            scope,
            now: &now,
        };
        let conflict = |conflicts: Vec<(String, String)>| {
            ApiError::apply_conflict(&rt.group, &rt.plural, &key.1, &conflicts)
        };
        let (code, stored) = match existing {
            None => {
                if status {
                    return Err(ApiError::not_found(&rt.group, &rt.plural, &key.1));
                }
                let (merged, entries) =
                    apply::apply(None, &config, Vec::new(), force, &writer).map_err(conflict)?;
                (
                    StatusCode::CREATED,
                    write::create_with(&mut store, &op, &key.0, merged, Some(entries))?,
                )
            }
            Some(old) => {
                let live = output::to_version(rt, &self.info.version, &old);
                let entries = apply::entries_of(&old);
                let (merged, entries) = apply::apply(Some(&live), &config, entries, force, &writer)
                    .map_err(conflict)?;
                (
                    StatusCode::OK,
                    write::update(&mut store, &op, &old, merged, scope, Some(entries))?,
                )
            }
        };
        drop(store);
        Ok(self.respond(rt, code, &stored))
    }

    fn delete(&self, rt: &ResourceType, key: &(String, String)) -> ApiResult<Response> {
        let options = DeleteOptions::parse(self.query, self.body)?;
        let manager = self.manager()?;
        let op = self.op(rt, &manager);
        let (object, _) = delete::delete(&mut self.shared.lock(), &op, key, &options)?;
        Ok(self.respond(rt, StatusCode::OK, &object))
    }

    fn delete_collection(&self, rt: &ResourceType, namespace: &str) -> ApiResult<Response> {
        let options = DeleteOptions::parse(self.query, self.body)?;
        let selectors = Selectors::parse(self.query, rt)?;
        let manager = self.manager()?;
        let op = self.op(rt, &manager);
        let mut store = self.shared.lock();
        let scope = (!namespace.is_empty()).then_some(namespace);
        let mut deleted = Vec::new();
        for (key, object) in store.list(&rt.storage, scope) {
            let versioned = output::to_version(rt, &self.info.version, &object);
            if !selectors.matches(&versioned) {
                continue;
            }
            match delete::delete(&mut store, &op, &key, &options) {
                Ok((object, _)) => {
                    deleted.push(output::to_version(rt, &self.info.version, &object))
                }
                Err(e) if e.code == 404 => {}
                Err(e) => return Err(e),
            }
        }
        let mut list_meta = serde_json::Map::new();
        list_meta.insert(
            "resourceVersion".into(),
            Value::String(store.revision().to_string()),
        );
        drop(store);
        let list = output::render_list(rt, &self.info.version, &Format::Object, deleted, list_meta);
        Ok(self.with_warning(rt, json_response(StatusCode::OK, &list)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_names_come_from_field_selectors() {
        assert_eq!(exact_name("metadata.name=x"), Some("x".into()));
        assert_eq!(
            exact_name("spec.nodeName=n,metadata.name==y"),
            Some("y".into())
        );
        assert_eq!(exact_name("metadata.name!=x"), None);
        assert_eq!(exact_name(""), None);
    }

    #[test]
    fn bodies_decode_as_json_or_yaml() {
        assert!(decode("application/json", br#"{"a": 1}"#).is_ok());
        assert_eq!(
            decode("application/yaml", b"a: 1\nb: [x]\n").unwrap()["b"][0],
            "x"
        );
        assert_eq!(decode("application/json", b"{").unwrap_err().code, 400);
        assert_eq!(decode("application/json", b"[1]").unwrap_err().code, 400);
        assert_eq!(
            decode("application/vnd.kubernetes.protobuf", b"")
                .unwrap_err()
                .code,
            415
        );
    }
}
