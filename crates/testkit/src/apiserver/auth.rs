//! Authentication: who is asking. Bearer tokens map to users, and to service accounts when
//! the token came from the TokenRequest API (`serviceaccounts/NAME/token`); such a token stops
//! working when its service account (or the pod it is bound to) is deleted or it expires, as a
//! bound token does in a real cluster. A request without a token is `system:anonymous`. The
//! admin may impersonate (`Impersonate-User`, `Impersonate-Group`, `Impersonate-Uid`), each
//! impersonation itself authorised with the `impersonate` verb, as in the real server.

use std::collections::HashMap;
use std::sync::Mutex;

use axum::http::HeaderMap;
use serde::Serialize;

use super::error::{ApiError, ApiResult};
use super::resources::ResourceId;
use super::store::Store;

/// Group of every authenticated request.
pub const AUTHENTICATED: &str = "system:authenticated";
/// Group of unauthenticated requests.
pub const UNAUTHENTICATED: &str = "system:unauthenticated";
/// The superuser group: allowed everything, like the real server's privileged group.
pub const MASTERS: &str = "system:masters";
/// Group of the fake kubelets (they stand in for the Node authoriser, which this server does
/// not model: nodes may do anything).
pub const NODES: &str = "system:nodes";

/// An authenticated identity.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct UserInfo {
    /// The user name, e.g. `system:serviceaccount:kube-system:eraser-controller-manager`.
    pub username: String,
    /// The UID (a service account's UID for its tokens).
    pub uid: String,
    /// Groups, including `system:authenticated`.
    pub groups: Vec<String>,
}

impl UserInfo {
    /// A user with `groups` (plus `system:authenticated`).
    pub fn new(username: &str, groups: &[&str]) -> UserInfo {
        let mut groups: Vec<String> = groups.iter().map(|g| g.to_string()).collect();
        if !groups.iter().any(|g| g == AUTHENTICATED) {
            groups.push(AUTHENTICATED.into());
        }
        UserInfo {
            username: username.to_string(),
            uid: String::new(),
            groups,
        }
    }

    /// The identity of a service account's tokens.
    pub fn service_account(namespace: &str, name: &str, uid: &str) -> UserInfo {
        UserInfo {
            username: service_account_username(namespace, name),
            uid: uid.to_string(),
            groups: vec![
                "system:serviceaccounts".into(),
                format!("system:serviceaccounts:{namespace}"),
                AUTHENTICATED.into(),
            ],
        }
    }

    fn anonymous() -> UserInfo {
        UserInfo {
            username: "system:anonymous".into(),
            uid: String::new(),
            groups: vec![UNAUTHENTICATED.into()],
        }
    }

    /// Whether the user is in `group`.
    pub fn in_group(&self, group: &str) -> bool {
        self.groups.iter().any(|g| g == group)
    }
}

/// `system:serviceaccount:NAMESPACE:NAME`.
pub fn service_account_username(namespace: &str, name: &str) -> String {
    format!("system:serviceaccount:{namespace}:{name}")
}

/// `(namespace, name)` of a service account user name.
pub(crate) fn parse_service_account(username: &str) -> Option<(&str, &str)> {
    let rest = username.strip_prefix("system:serviceaccount:")?;
    let (namespace, name) = rest.split_once(':')?;
    (!namespace.is_empty() && !name.is_empty() && !name.contains(':')).then_some((namespace, name))
}

/// What a token stands for.
#[derive(Clone, Debug)]
pub(crate) enum Credential {
    User(UserInfo),
    ServiceAccount {
        namespace: String,
        name: String,
        uid: String,
        expires: Option<jiff::Timestamp>,
        /// `(name, uid)` of the pod the token is bound to.
        pod: Option<(String, String)>,
    },
}

/// Issued tokens.
#[derive(Default)]
pub(crate) struct Tokens(Mutex<HashMap<String, Credential>>);

impl Tokens {
    /// Registers `token` for `credential`.
    pub fn insert(&self, token: String, credential: Credential) {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(token, credential);
    }

    fn get(&self, token: &str) -> Option<Credential> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(token)
            .cloned()
    }
}

/// Who sent the request, from its bearer token.
pub(crate) fn authenticate(
    headers: &HeaderMap,
    tokens: &Tokens,
    store: &Store,
) -> ApiResult<UserInfo> {
    let Some(header) = headers.get("authorization") else {
        return Ok(UserInfo::anonymous());
    };
    let header = header.to_str().map_err(|_| ApiError::unauthorized())?;
    let Some(token) = header
        .strip_prefix("Bearer ")
        .or_else(|| header.strip_prefix("bearer "))
    else {
        return Err(ApiError::unauthorized());
    };
    let token = token.trim();
    match tokens.get(token) {
        Some(Credential::User(user)) => Ok(user),
        Some(Credential::ServiceAccount {
            namespace,
            name,
            uid,
            expires,
            pod,
        }) => {
            if expires.is_some_and(|e| e < jiff::Timestamp::now()) {
                return Err(ApiError::unauthorized());
            }
            let sa = store.get(
                &ResourceId::new("", "serviceaccounts"),
                &(namespace.clone(), name.clone()),
            );
            if sa.is_none_or(|sa| super::meta::uid(&sa) != uid) {
                return Err(ApiError::unauthorized());
            }
            if let Some((pod_name, pod_uid)) = pod {
                let pod = store.get(&ResourceId::new("", "pods"), &(namespace.clone(), pod_name));
                if pod.is_none_or(|p| super::meta::uid(&p) != pod_uid) {
                    return Err(ApiError::unauthorized());
                }
            }
            Ok(UserInfo::service_account(&namespace, &name, &uid))
        }
        None => Err(ApiError::unauthorized()),
    }
}

/// One impersonation the requester must be allowed (`impersonate` on this resource).
#[derive(Clone, Debug)]
pub(crate) struct ImpersonationCheck {
    pub resource: &'static str,
    pub namespace: String,
    pub name: String,
}

/// The identity the request impersonates, and the checks that must pass first; `None` when
/// the request impersonates nobody.
pub(crate) fn impersonation(
    headers: &HeaderMap,
) -> ApiResult<Option<(UserInfo, Vec<ImpersonationCheck>)>> {
    let values = |name: &str| -> Vec<String> {
        headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .map(String::from)
            .collect()
    };
    let users = values("impersonate-user");
    let groups = values("impersonate-group");
    let uids = values("impersonate-uid");
    if users.is_empty() {
        if !groups.is_empty() || !uids.is_empty() {
            return Err(ApiError::bad_request(
                "requested impersonation of groups or a uid without impersonating a user",
            ));
        }
        return Ok(None);
    }
    let username = users[0].clone();
    let mut checks = Vec::new();
    let mut impersonated_groups = groups.clone();
    match parse_service_account(&username) {
        Some((namespace, name)) => {
            checks.push(ImpersonationCheck {
                resource: "serviceaccounts",
                namespace: namespace.to_string(),
                name: name.to_string(),
            });
            if groups.is_empty() {
                impersonated_groups = vec![
                    "system:serviceaccounts".into(),
                    format!("system:serviceaccounts:{namespace}"),
                ];
            }
        }
        None => checks.push(ImpersonationCheck {
            resource: "users",
            namespace: String::new(),
            name: username.clone(),
        }),
    }
    for group in &groups {
        checks.push(ImpersonationCheck {
            resource: "groups",
            namespace: String::new(),
            name: group.clone(),
        });
    }
    for uid in &uids {
        checks.push(ImpersonationCheck {
            resource: "uids",
            namespace: String::new(),
            name: uid.clone(),
        });
    }
    if username != "system:anonymous" && !impersonated_groups.iter().any(|g| g == AUTHENTICATED) {
        impersonated_groups.push(AUTHENTICATED.into());
    }
    Ok(Some((
        UserInfo {
            username,
            uid: uids.first().cloned().unwrap_or_default(),
            groups: impersonated_groups,
        },
        checks,
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn service_account_names_round_trip() {
        let name = service_account_username("kube-system", "eraser");
        assert_eq!(
            parse_service_account(&name),
            Some(("kube-system", "eraser"))
        );
        assert_eq!(parse_service_account("alice"), None);
        assert_eq!(parse_service_account("system:serviceaccount:ns"), None);
    }

    #[test]
    fn impersonating_a_service_account_gives_its_groups() {
        let mut headers = HeaderMap::new();
        headers.insert(
            "impersonate-user",
            HeaderValue::from_static("system:serviceaccount:ns:sa"),
        );
        let (user, checks) = impersonation(&headers).unwrap().unwrap();
        assert_eq!(checks[0].resource, "serviceaccounts");
        assert!(user.in_group("system:serviceaccounts:ns"));
        assert!(user.in_group(AUTHENTICATED));

        let mut headers = HeaderMap::new();
        headers.insert("impersonate-group", HeaderValue::from_static("x"));
        assert_eq!(impersonation(&headers).unwrap_err().code, 400);
    }

    #[test]
    fn unknown_tokens_are_unauthorized() {
        let tokens = Tokens::default();
        let store = Store::new(10);
        tokens.insert("good".into(), Credential::User(UserInfo::new("alice", &[])));
        let mut headers = HeaderMap::new();
        headers.insert("authorization", HeaderValue::from_static("Bearer good"));
        assert_eq!(
            authenticate(&headers, &tokens, &store).unwrap().username,
            "alice"
        );
        headers.insert("authorization", HeaderValue::from_static("Bearer bad"));
        assert_eq!(
            authenticate(&headers, &tokens, &store).unwrap_err().code,
            401
        );
        let anonymous = authenticate(&HeaderMap::new(), &tokens, &store).unwrap();
        assert_eq!(anonymous.username, "system:anonymous");
    }
}
