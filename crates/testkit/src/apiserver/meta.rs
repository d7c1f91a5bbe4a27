//! Object metadata the server owns: names (validation and `generateName`), UIDs, timestamps
//! and tokens. Small pure helpers, kept apart so the write path reads as policy, not string
//! fiddling.

use serde_json::{Map, Value};

/// The string at JSON `pointer` in `object` (`/roleRef/kind`), or `""` when absent.
pub(crate) fn str_at<'a>(object: &'a Value, pointer: &str) -> &'a str {
    object
        .pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or("")
}

/// `metadata` of `object`, if it is a map.
pub(crate) fn metadata(object: &Value) -> Option<&Map<String, Value>> {
    object.get("metadata")?.as_object()
}

/// `metadata` of `object`, created if missing (replacing a non-map).
pub(crate) fn metadata_mut(object: &mut Value) -> &mut Map<String, Value> {
    if !object.is_object() {
        *object = Value::Object(Map::new());
    }
    let map = object.as_object_mut().expect("made an object above");
    let entry = map
        .entry("metadata")
        .or_insert_with(|| Value::Object(Map::new()));
    if !entry.is_object() {
        *entry = Value::Object(Map::new());
    }
    entry.as_object_mut().expect("made an object above")
}

/// A string field of `metadata`, empty when absent.
pub(crate) fn meta_str<'a>(object: &'a Value, field: &str) -> &'a str {
    metadata(object)
        .and_then(|m| m.get(field))
        .and_then(Value::as_str)
        .unwrap_or("")
}

/// `metadata.name`.
pub(crate) fn name(object: &Value) -> &str {
    meta_str(object, "name")
}

/// `metadata.namespace`.
pub(crate) fn namespace(object: &Value) -> &str {
    meta_str(object, "namespace")
}

/// `metadata.uid`.
pub(crate) fn uid(object: &Value) -> &str {
    meta_str(object, "uid")
}

/// `metadata.finalizers` as strings.
pub(crate) fn finalizers(object: &Value) -> Vec<String> {
    metadata(object)
        .and_then(|m| m.get("finalizers"))
        .and_then(Value::as_array)
        .map(|list| {
            list.iter()
                .filter_map(|f| f.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

/// Whether `metadata.deletionTimestamp` is set.
pub(crate) fn is_deleting(object: &Value) -> bool {
    metadata(object).is_some_and(|m| m.get("deletionTimestamp").is_some_and(|t| !t.is_null()))
}

/// `metadata.labels` as pairs.
pub(crate) fn labels(object: &Value) -> Map<String, Value> {
    metadata(object)
        .and_then(|m| m.get("labels"))
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default()
}

/// The time now as the API writes `Time` fields: RFC 3339, seconds, UTC.
pub(crate) fn now() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

/// The time `seconds` from now, as [`now`] writes it.
pub(crate) fn in_seconds(seconds: i64) -> String {
    let later = jiff::Timestamp::now()
        .checked_add(jiff::SignedDuration::from_secs(seconds))
        .unwrap_or_else(|_| jiff::Timestamp::now());
    later.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// Random bytes from the operating system (falls back to time and a counter, which only
/// weakens token secrecy, never uniqueness within the process).
pub(crate) fn random_bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    if getrandom::fill(&mut bytes).is_err() {
        use std::sync::atomic::{AtomicU64, Ordering};
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let seed = format!(
            "{:?}-{}-{}",
            std::time::SystemTime::now(),
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let digest = <sha2::Sha256 as sha2::Digest>::digest(seed.as_bytes());
        for (i, b) in bytes.iter_mut().enumerate() {
            *b = digest[i % digest.len()];
        }
    }
    bytes
}

/// A random version-4 UUID, as the API server gives every object.
pub(crate) fn new_uid() -> String {
    let mut b = random_bytes::<16>();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex::encode(b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// A bearer token: 32 random bytes, hex.
pub(crate) fn new_token() -> String {
    hex::encode(random_bytes::<32>())
}

/// The alphabet of `generateName` suffixes (no vowels, no look-alikes), as the real server's.
const SUFFIX_ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

/// `prefix` plus five random characters, the prefix cut so the result stays a valid name.
pub(crate) fn generate_name(prefix: &str) -> String {
    const MAX_PREFIX: usize = 63 - 5;
    let mut cut = prefix.len().min(MAX_PREFIX);
    while !prefix.is_char_boundary(cut) {
        cut -= 1;
    }
    let prefix = &prefix[..cut];
    let random = random_bytes::<5>();
    let suffix: String = random
        .iter()
        .map(|b| SUFFIX_ALPHABET[*b as usize % SUFFIX_ALPHABET.len()] as char)
        .collect();
    format!("{prefix}{suffix}")
}

/// How a resource's names are validated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum NameRule {
    /// DNS-1123 subdomain: most resources.
    Subdomain,
    /// DNS-1123 label: namespaces.
    Label,
    /// Any path segment: RBAC objects.
    PathSegment,
}

/// Why `name` is not valid under `rule`, in the real validation's words.
pub(crate) fn name_problem(name: &str, rule: NameRule) -> Option<String> {
    if name.is_empty() {
        return Some("name or generateName is required".into());
    }
    match rule {
        NameRule::PathSegment => {
            if name == "." || name == ".." {
                return Some(format!("may not be '{name}'"));
            }
            if name.contains('/') || name.contains('%') {
                return Some("may not contain '/' or '%'".into());
            }
            None
        }
        NameRule::Label => {
            if name.len() > 63 {
                return Some("must be no more than 63 characters".into());
            }
            if !is_label(name) {
                return Some(
                    "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')".into(),
                );
            }
            None
        }
        NameRule::Subdomain => {
            if name.len() > 253 {
                return Some("must be no more than 253 characters".into());
            }
            if !name.split('.').all(is_label) {
                return Some(
                    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')".into(),
                );
            }
            None
        }
    }
}

/// Whether `s` is a DNS-1123 label (length not checked).
pub(crate) fn is_label(s: &str) -> bool {
    let bytes = s.as_bytes();
    !bytes.is_empty()
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
        && bytes[0] != b'-'
        && bytes[bytes.len() - 1] != b'-'
}

/// Why `key` is not a valid label or annotation key (`prefix/name`), if it is not.
pub(crate) fn qualified_name_problem(key: &str) -> Option<String> {
    let (prefix, name) = match key.rsplit_once('/') {
        Some((prefix, name)) => (Some(prefix), name),
        None => (None, key),
    };
    if let Some(prefix) = prefix
        && (prefix.is_empty() || name_problem(prefix, NameRule::Subdomain).is_some())
    {
        return Some("prefix part must be a lowercase RFC 1123 subdomain".into());
    }
    let valid = !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
        && name.as_bytes()[0].is_ascii_alphanumeric()
        && name.as_bytes()[name.len() - 1].is_ascii_alphanumeric();
    if valid {
        None
    } else {
        Some("name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character".into())
    }
}

/// Whether `value` is a valid label value.
pub(crate) fn label_value_ok(value: &str) -> bool {
    value.is_empty()
        || (value.len() <= 63
            && value
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
            && value.as_bytes()[0].is_ascii_alphanumeric()
            && value.as_bytes()[value.len() - 1].is_ascii_alphanumeric())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_dns_rules() {
        assert_eq!(name_problem("image-cleaner-1", NameRule::Subdomain), None);
        assert_eq!(name_problem("a.b-c.d", NameRule::Subdomain), None);
        assert!(name_problem("Upper", NameRule::Subdomain).is_some());
        assert!(name_problem("-lead", NameRule::Subdomain).is_some());
        assert!(name_problem("a..b", NameRule::Subdomain).is_some());
        assert!(name_problem("a.b", NameRule::Label).is_some());
        assert!(name_problem(&"x".repeat(64), NameRule::Label).is_some());
        assert_eq!(
            name_problem("system:controller:x", NameRule::PathSegment),
            None
        );
        assert!(name_problem("a/b", NameRule::PathSegment).is_some());
    }

    #[test]
    fn generated_names_and_uids_have_the_real_shape() {
        let name = generate_name("eraser-");
        assert_eq!(name.len(), "eraser-".len() + 5);
        assert!(name_problem(&name, NameRule::Label).is_none());
        assert_eq!(generate_name(&"é".repeat(40)).chars().count(), 29 + 5);
        let uid = new_uid();
        assert_eq!(uid.len(), 36);
        assert_eq!(&uid[14..15], "4");
        assert_ne!(uid, new_uid());
    }

    #[test]
    fn label_keys_and_values() {
        assert_eq!(qualified_name_problem("eraser.sh/exclude.list"), None);
        assert_eq!(qualified_name_problem("app"), None);
        assert!(qualified_name_problem("Bad/key").is_some());
        assert!(qualified_name_problem("a/").is_some());
        assert!(label_value_ok("true"));
        assert!(label_value_ok(""));
        assert!(!label_value_ok("-x"));
    }
}
