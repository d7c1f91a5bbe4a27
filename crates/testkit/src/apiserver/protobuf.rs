//! The one place the server reads Kubernetes protobuf: kubectl's typed clients send built-in
//! objects as protobuf (`application/vnd.kubernetes.protobuf`), and `kubectl auth can-i` and
//! `kubectl create token` are worth having here, so access reviews and token requests are
//! decoded from the `k8s\0` envelope into the JSON the rest of the server works with. Every
//! other protobuf body is refused with 415 (use `kubectl apply -f`, which sends JSON).
//! Answers are JSON, which clients accept.

use serde_json::{Map, Value, json};

/// The envelope's magic prefix.
const MAGIC: &[u8] = b"k8s\0";

/// One field of a message (fixed-width values are skipped: none of the messages read here has
/// one this server needs).
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

/// The fields of a message, in order; `None` if it is malformed.
fn fields(bytes: &[u8]) -> Option<Vec<(u64, Field<'_>)>> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        let key = varint(bytes, &mut at)?;
        let (number, wire) = (key >> 3, key & 7);
        let field = match wire {
            0 => Field::Varint(varint(bytes, &mut at)?),
            1 => {
                at = at.checked_add(8).filter(|&end| end <= bytes.len())?;
                continue;
            }
            2 => {
                let len = usize::try_from(varint(bytes, &mut at)?).ok()?;
                let end = at.checked_add(len).filter(|&end| end <= bytes.len())?;
                let slice = &bytes[at..end];
                at = end;
                Field::Bytes(slice)
            }
            5 => {
                at = at.checked_add(4).filter(|&end| end <= bytes.len())?;
                continue;
            }
            _ => return None,
        };
        out.push((number, field));
    }
    Some(out)
}

fn text(bytes: &[u8]) -> Option<String> {
    String::from_utf8(bytes.to_vec()).ok()
}

/// Decodes a message whose fields are all strings (or repeated strings), by name.
fn strings(bytes: &[u8], names: &[(u64, &str)], repeated: &[u64]) -> Option<Map<String, Value>> {
    let mut map = Map::new();
    for (number, field) in fields(bytes)? {
        let (Some((_, name)), Field::Bytes(b)) = (names.iter().find(|(n, _)| *n == number), field)
        else {
            continue;
        };
        let value = text(b)?;
        if repeated.contains(&number) {
            let list = map.entry(name.to_string()).or_insert_with(|| json!([]));
            if let Some(list) = list.as_array_mut() {
                list.push(json!(value));
            }
        } else {
            map.insert(name.to_string(), json!(value));
        }
    }
    Some(map)
}

const RESOURCE_ATTRIBUTES: &[(u64, &str)] = &[
    (1, "namespace"),
    (2, "verb"),
    (3, "group"),
    (4, "version"),
    (5, "resource"),
    (6, "subresource"),
    (7, "name"),
];
const NON_RESOURCE_ATTRIBUTES: &[(u64, &str)] = &[(1, "path"), (2, "verb")];

/// The `spec` of an access review: attributes, and for (local) subject reviews the subject.
fn review_spec(bytes: &[u8]) -> Option<Value> {
    let mut spec = Map::new();
    for (number, field) in fields(bytes)? {
        let Field::Bytes(b) = field else { continue };
        match number {
            1 => {
                spec.insert(
                    "resourceAttributes".into(),
                    Value::Object(strings(b, RESOURCE_ATTRIBUTES, &[])?),
                );
            }
            2 => {
                spec.insert(
                    "nonResourceAttributes".into(),
                    Value::Object(strings(b, NON_RESOURCE_ATTRIBUTES, &[])?),
                );
            }
            3 => {
                spec.insert("user".into(), json!(text(b)?));
            }
            4 => {
                let groups = spec.entry("groups").or_insert_with(|| json!([]));
                if let Some(groups) = groups.as_array_mut() {
                    groups.push(json!(text(b)?));
                }
            }
            6 => {
                spec.insert("uid".into(), json!(text(b)?));
            }
            _ => {}
        }
    }
    Some(Value::Object(spec))
}

/// The type and raw message of an enveloped object.
fn envelope(body: &[u8]) -> Option<(String, String, &[u8])> {
    let envelope = body.strip_prefix(MAGIC)?;
    let mut kind = String::new();
    let mut api_version = String::new();
    let mut raw: &[u8] = &[];
    for (number, field) in fields(envelope)? {
        let Field::Bytes(b) = field else { continue };
        match number {
            1 => {
                let type_meta = strings(b, &[(1, "apiVersion"), (2, "kind")], &[])?;
                api_version = type_meta
                    .get("apiVersion")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .into();
                kind = type_meta
                    .get("kind")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .into();
            }
            2 => raw = b,
            _ => {}
        }
    }
    Some((api_version, kind, raw))
}

/// Decodes an access review sent as protobuf into its JSON form; `None` if `body` is not one.
pub(crate) fn access_review(body: &[u8]) -> Option<Value> {
    let (api_version, kind, raw) = envelope(body)?;
    if !kind.ends_with("AccessReview") {
        return None;
    }
    let mut review = json!({"apiVersion": api_version, "kind": kind, "metadata": {}});
    for (number, field) in fields(raw)? {
        if let (2, Field::Bytes(b)) = (number, field) {
            review["spec"] = review_spec(b)?;
        }
    }
    Some(review)
}

/// Decodes a TokenRequest sent as protobuf (`kubectl create token`); `None` if `body` is not
/// one.
pub(crate) fn token_request(body: &[u8]) -> Option<Value> {
    let (api_version, kind, raw) = envelope(body)?;
    if kind != "TokenRequest" {
        return None;
    }
    let mut spec = Map::new();
    for (number, field) in fields(raw)? {
        let (2, Field::Bytes(b)) = (number, field) else {
            continue;
        };
        for (number, field) in fields(b)? {
            match (number, field) {
                (1, Field::Bytes(a)) => {
                    let audiences = spec.entry("audiences").or_insert_with(|| json!([]));
                    if let Some(audiences) = audiences.as_array_mut() {
                        audiences.push(json!(text(a)?));
                    }
                }
                (3, Field::Bytes(r)) => {
                    let names = [(1, "kind"), (2, "apiVersion"), (3, "name"), (4, "uid")];
                    spec.insert(
                        "boundObjectRef".into(),
                        Value::Object(strings(r, &names, &[])?),
                    );
                }
                (4, Field::Varint(seconds)) => {
                    spec.insert("expirationSeconds".into(), json!(seconds));
                }
                _ => {}
            }
        }
    }
    Some(json!({"apiVersion": api_version, "kind": kind, "metadata": {}, "spec": spec}))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes_field(number: u64, payload: &[u8]) -> Vec<u8> {
        let mut out = vec![((number << 3) | 2) as u8, payload.len() as u8];
        out.extend_from_slice(payload);
        out
    }

    #[test]
    fn self_subject_access_reviews_decode() {
        let attributes = [
            bytes_field(1, b"default"),
            bytes_field(2, b"list"),
            bytes_field(5, b"configmaps"),
        ]
        .concat();
        let spec = bytes_field(1, &attributes);
        let raw = [bytes_field(1, b""), bytes_field(2, &spec)].concat();
        let type_meta = [
            bytes_field(1, b"authorization.k8s.io/v1"),
            bytes_field(2, b"SelfSubjectAccessReview"),
        ]
        .concat();
        let envelope = [bytes_field(1, &type_meta), bytes_field(2, &raw)].concat();
        let body = [MAGIC, &envelope].concat();
        let review = access_review(&body).unwrap();
        assert_eq!(review["kind"], "SelfSubjectAccessReview");
        assert_eq!(
            review["spec"]["resourceAttributes"],
            json!({"namespace": "default", "verb": "list", "resource": "configmaps"})
        );
        assert!(access_review(b"{}").is_none());
        assert!(token_request(&body).is_none());
        assert!(access_review(&[MAGIC, &[0xff, 0xff]].concat()).is_none());
    }

    #[test]
    fn token_requests_decode() {
        let spec = [
            bytes_field(1, b"https://kubernetes.default.svc"),
            vec![4 << 3, 0x90, 0x1c],
        ]
        .concat();
        let raw = bytes_field(2, &spec);
        let type_meta = [
            bytes_field(1, b"authentication.k8s.io/v1"),
            bytes_field(2, b"TokenRequest"),
        ]
        .concat();
        let envelope = [bytes_field(1, &type_meta), bytes_field(2, &raw)].concat();
        let request = token_request(&[MAGIC, &envelope].concat()).unwrap();
        assert_eq!(request["spec"]["expirationSeconds"], 3600);
        assert_eq!(
            request["spec"]["audiences"],
            json!(["https://kubernetes.default.svc"])
        );
    }
}
