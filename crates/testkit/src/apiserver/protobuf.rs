//! The one place the server reads Kubernetes protobuf. kubectl's typed commands send built-in
//! objects as protobuf (`application/vnd.kubernetes.protobuf`): `kubectl create namespace`,
//! `create configmap`, `create secret generic`, `create serviceaccount`, `create role`,
//! `create rolebinding` (and their cluster forms), `create token` and `auth can-i`. Those
//! kinds are decoded from the `k8s\0` envelope into the JSON the rest of the server works
//! with, by a small table of their field numbers (from the Kubernetes `generated.proto`
//! files); any other protobuf body is refused with 415 (`kubectl apply -f` sends JSON).
//! Answers are JSON, which clients accept.

use base64::Engine as _;
use serde_json::{Map, Value, json};

/// The envelope's magic prefix.
const MAGIC: &[u8] = b"k8s\0";

/// One field of a message, undecoded.
enum Field<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
}

fn varint(bytes: &[u8], at: &mut usize) -> Option<u64> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let b = *bytes.get(*at)?;
        *at += 1;
        value |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Some(value);
        }
    }
    None
}

/// The fields of a message, in order (fixed-width ones skipped: none is read here); `None`
/// if it is malformed.
fn fields(bytes: &[u8]) -> Option<Vec<(u64, Field<'_>)>> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        let key = varint(bytes, &mut at)?;
        let (number, wire) = (key >> 3, key & 7);
        let field = match wire {
            0 => Field::Varint(varint(bytes, &mut at)?),
            1 | 5 => {
                let width = if wire == 1 { 8 } else { 4 };
                at = at.checked_add(width).filter(|&end| end <= bytes.len())?;
                continue;
            }
            2 => {
                let len = usize::try_from(varint(bytes, &mut at)?).ok()?;
                let end = at.checked_add(len).filter(|&end| end <= bytes.len())?;
                let slice = &bytes[at..end];
                at = end;
                Field::Bytes(slice)
            }
            _ => return None,
        };
        out.push((number, field));
    }
    Some(out)
}

/// How a field is decoded.
#[derive(Clone, Copy)]
enum Kind {
    Str,
    Int,
    Bool,
    Time,
    Msg(&'static [Def]),
    RepStr,
    RepMsg(&'static [Def]),
    MapStr,
    /// `map<string, bytes>`, values as base64 (JSON's form of `[]byte`).
    MapBytes,
}

type Def = (u64, &'static str, Kind);

use Kind::*;

const OWNER_REFERENCE: &[Def] = &[
    (1, "kind", Str),
    (3, "name", Str),
    (4, "uid", Str),
    (5, "apiVersion", Str),
    (6, "controller", Bool),
    (7, "blockOwnerDeletion", Bool),
];
const OBJECT_META: &[Def] = &[
    (1, "name", Str),
    (2, "generateName", Str),
    (3, "namespace", Str),
    (5, "uid", Str),
    (6, "resourceVersion", Str),
    (7, "generation", Int),
    (8, "creationTimestamp", Time),
    (11, "labels", MapStr),
    (12, "annotations", MapStr),
    (13, "ownerReferences", RepMsg(OWNER_REFERENCE)),
    (14, "finalizers", RepStr),
];
const NAME: &[Def] = &[(1, "name", Str)];
const POLICY_RULE: &[Def] = &[
    (1, "verbs", RepStr),
    (2, "apiGroups", RepStr),
    (3, "resources", RepStr),
    (4, "resourceNames", RepStr),
    (5, "nonResourceURLs", RepStr),
];
const SUBJECT: &[Def] = &[
    (1, "kind", Str),
    (2, "apiGroup", Str),
    (3, "name", Str),
    (4, "namespace", Str),
];
const ROLE_REF: &[Def] = &[(1, "apiGroup", Str), (2, "kind", Str), (3, "name", Str)];
const RESOURCE_ATTRIBUTES: &[Def] = &[
    (1, "namespace", Str),
    (2, "verb", Str),
    (3, "group", Str),
    (4, "version", Str),
    (5, "resource", Str),
    (6, "subresource", Str),
    (7, "name", Str),
];
const NON_RESOURCE_ATTRIBUTES: &[Def] = &[(1, "path", Str), (2, "verb", Str)];
const REVIEW_SPEC: &[Def] = &[
    (1, "resourceAttributes", Msg(RESOURCE_ATTRIBUTES)),
    (2, "nonResourceAttributes", Msg(NON_RESOURCE_ATTRIBUTES)),
    (3, "user", Str),
    (4, "groups", RepStr),
    (6, "uid", Str),
];
const BOUND_OBJECT: &[Def] = &[
    (1, "kind", Str),
    (2, "apiVersion", Str),
    (3, "name", Str),
    (4, "uid", Str),
];
const TOKEN_REQUEST_SPEC: &[Def] = &[
    (1, "audiences", RepStr),
    (3, "boundObjectRef", Msg(BOUND_OBJECT)),
    (4, "expirationSeconds", Int),
];

/// The kinds read from protobuf, with their top-level fields.
const KINDS: &[(&str, &[Def])] = &[
    (
        "Namespace",
        &[
            (1, "metadata", Msg(OBJECT_META)),
            (2, "spec", Msg(&[(1, "finalizers", RepStr)])),
        ],
    ),
    (
        "ConfigMap",
        &[
            (1, "metadata", Msg(OBJECT_META)),
            (2, "data", MapStr),
            (3, "binaryData", MapBytes),
            (4, "immutable", Bool),
        ],
    ),
    (
        "Secret",
        &[
            (1, "metadata", Msg(OBJECT_META)),
            (2, "data", MapBytes),
            (3, "type", Str),
            (4, "stringData", MapStr),
            (5, "immutable", Bool),
        ],
    ),
    (
        "ServiceAccount",
        &[
            (1, "metadata", Msg(OBJECT_META)),
            (3, "imagePullSecrets", RepMsg(NAME)),
            (4, "automountServiceAccountToken", Bool),
        ],
    ),
    (
        "Role",
        &[
            (1, "metadata", Msg(OBJECT_META)),
            (2, "rules", RepMsg(POLICY_RULE)),
        ],
    ),
    (
        "ClusterRole",
        &[
            (1, "metadata", Msg(OBJECT_META)),
            (2, "rules", RepMsg(POLICY_RULE)),
        ],
    ),
    (
        "RoleBinding",
        &[
            (1, "metadata", Msg(OBJECT_META)),
            (2, "subjects", RepMsg(SUBJECT)),
            (3, "roleRef", Msg(ROLE_REF)),
        ],
    ),
    (
        "ClusterRoleBinding",
        &[
            (1, "metadata", Msg(OBJECT_META)),
            (2, "subjects", RepMsg(SUBJECT)),
            (3, "roleRef", Msg(ROLE_REF)),
        ],
    ),
    (
        "SelfSubjectAccessReview",
        &[
            (1, "metadata", Msg(OBJECT_META)),
            (2, "spec", Msg(REVIEW_SPEC)),
        ],
    ),
    (
        "SubjectAccessReview",
        &[
            (1, "metadata", Msg(OBJECT_META)),
            (2, "spec", Msg(REVIEW_SPEC)),
        ],
    ),
    (
        "LocalSubjectAccessReview",
        &[
            (1, "metadata", Msg(OBJECT_META)),
            (2, "spec", Msg(REVIEW_SPEC)),
        ],
    ),
    ("SelfSubjectReview", &[(1, "metadata", Msg(OBJECT_META))]),
    (
        "TokenRequest",
        &[
            (1, "metadata", Msg(OBJECT_META)),
            (2, "spec", Msg(TOKEN_REQUEST_SPEC)),
        ],
    ),
];

fn text(bytes: &[u8]) -> Option<Value> {
    String::from_utf8(bytes.to_vec()).ok().map(Value::String)
}

/// A `map<string, V>` entry: `{key = 1, value = 2}`.
fn entry(bytes: &[u8], base64: bool) -> Option<(String, Value)> {
    let mut key = String::new();
    let mut value = Value::String(String::new());
    for (number, field) in fields(bytes)? {
        let Field::Bytes(b) = field else { continue };
        match number {
            1 => key = String::from_utf8(b.to_vec()).ok()?,
            2 if base64 => value = json!(base64::engine::general_purpose::STANDARD.encode(b)),
            2 => value = text(b)?,
            _ => {}
        }
    }
    Some((key, value))
}

/// `metav1.Time`: `{seconds = 1, nanos = 2}`.
fn time(bytes: &[u8]) -> Option<Value> {
    let mut seconds = 0i64;
    for (number, field) in fields(bytes)? {
        if let (1, Field::Varint(v)) = (number, field) {
            seconds = v as i64;
        }
    }
    let at = jiff::Timestamp::from_second(seconds).ok()?;
    Some(json!(at.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()))
}

/// Decodes a message by its definition; unknown fields are skipped.
fn message(bytes: &[u8], defs: &[Def]) -> Option<Map<String, Value>> {
    let mut map = Map::new();
    for (number, field) in fields(bytes)? {
        let Some(&(_, name, kind)) = defs.iter().find(|(n, _, _)| *n == number) else {
            continue;
        };
        let push = |map: &mut Map<String, Value>, value: Value| {
            let list = map.entry(name).or_insert_with(|| json!([]));
            if let Some(list) = list.as_array_mut() {
                list.push(value);
            }
        };
        match (kind, field) {
            (Int, Field::Varint(v)) => {
                map.insert(name.into(), json!(v as i64));
            }
            (Bool, Field::Varint(v)) => {
                map.insert(name.into(), json!(v != 0));
            }
            (Str, Field::Bytes(b)) => {
                map.insert(name.into(), text(b)?);
            }
            (Time, Field::Bytes(b)) => {
                map.insert(name.into(), time(b)?);
            }
            (Msg(inner), Field::Bytes(b)) => {
                map.insert(name.into(), Value::Object(message(b, inner)?));
            }
            (RepStr, Field::Bytes(b)) => push(&mut map, text(b)?),
            (RepMsg(inner), Field::Bytes(b)) => push(&mut map, Value::Object(message(b, inner)?)),
            (MapStr | MapBytes, Field::Bytes(b)) => {
                let (key, value) = entry(b, matches!(kind, MapBytes))?;
                let object = map.entry(name).or_insert_with(|| json!({}));
                if let Some(object) = object.as_object_mut() {
                    object.insert(key, value);
                }
            }
            _ => return None,
        }
    }
    Some(map)
}

/// Decodes an object sent as protobuf into its JSON form; `None` if `body` is not an
/// envelope of a kind this server reads.
pub(crate) fn decode(body: &[u8]) -> Option<Value> {
    let envelope = body.strip_prefix(MAGIC)?;
    let mut type_meta = Map::new();
    let mut raw: &[u8] = &[];
    for (number, field) in fields(envelope)? {
        let Field::Bytes(b) = field else { continue };
        match number {
            1 => type_meta = message(b, &[(1, "apiVersion", Str), (2, "kind", Str)])?,
            2 => raw = b,
            _ => {}
        }
    }
    let kind = type_meta.get("kind").and_then(Value::as_str)?.to_string();
    let (_, defs) = KINDS.iter().find(|(k, _)| *k == kind)?;
    let mut object = message(raw, defs)?;
    object.extend(type_meta);
    Some(Value::Object(object))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes_field(number: u64, payload: &[u8]) -> Vec<u8> {
        let mut out = vec![((number << 3) | 2) as u8, payload.len() as u8];
        out.extend_from_slice(payload);
        out
    }

    fn envelope(api_version: &str, kind: &str, raw: &[u8]) -> Vec<u8> {
        let type_meta = [
            bytes_field(1, api_version.as_bytes()),
            bytes_field(2, kind.as_bytes()),
        ]
        .concat();
        let envelope = [bytes_field(1, &type_meta), bytes_field(2, raw)].concat();
        [MAGIC, &envelope].concat()
    }

    #[test]
    fn access_reviews_decode() {
        let attributes = [
            bytes_field(1, b"default"),
            bytes_field(2, b"list"),
            bytes_field(5, b"configmaps"),
        ]
        .concat();
        let raw = [
            bytes_field(1, b""),
            bytes_field(2, &bytes_field(1, &attributes)),
        ]
        .concat();
        let review = decode(&envelope(
            "authorization.k8s.io/v1",
            "SelfSubjectAccessReview",
            &raw,
        ))
        .unwrap();
        assert_eq!(review["kind"], "SelfSubjectAccessReview");
        assert_eq!(
            review["spec"]["resourceAttributes"],
            json!({"namespace": "default", "verb": "list", "resource": "configmaps"})
        );
        assert!(decode(b"{}").is_none());
        assert!(decode(&[MAGIC, &[0xff, 0xff]].concat()).is_none());
    }

    #[test]
    fn config_maps_and_token_requests_decode() {
        let meta = [
            bytes_field(1, b"excluded"),
            bytes_field(
                11,
                &[
                    bytes_field(1, b"eraser.sh/exclude.list"),
                    bytes_field(2, b"true"),
                ]
                .concat(),
            ),
        ]
        .concat();
        let data = [
            bytes_field(1, b"a.json"),
            bytes_field(2, br#"{"excluded":[]}"#),
        ]
        .concat();
        let raw = [bytes_field(1, &meta), bytes_field(2, &data)].concat();
        let cm = decode(&envelope("v1", "ConfigMap", &raw)).unwrap();
        assert_eq!(
            cm,
            json!({"apiVersion": "v1", "kind": "ConfigMap",
                   "metadata": {"name": "excluded", "labels": {"eraser.sh/exclude.list": "true"}},
                   "data": {"a.json": "{\"excluded\":[]}"}})
        );

        let spec = [
            bytes_field(1, b"https://kubernetes.default.svc"),
            vec![4 << 3, 0x90, 0x1c],
        ]
        .concat();
        let request = decode(&envelope(
            "authentication.k8s.io/v1",
            "TokenRequest",
            &bytes_field(2, &spec),
        ))
        .unwrap();
        assert_eq!(request["spec"]["expirationSeconds"], 3600);
        assert_eq!(
            request["spec"]["audiences"],
            json!(["https://kubernetes.default.svc"])
        );
        assert!(decode(&envelope("apps/v1", "Deployment", &[])).is_none());
    }
}
