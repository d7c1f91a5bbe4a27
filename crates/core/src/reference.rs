//! Image references and digests, parsed and normalised the way Docker and containerd do it.
//!
//! This is the one parser of image names in the project. Every comparison of names goes through
//! [`ImageRef`], so `nginx`, `docker.io/library/nginx` and `index.docker.io/library/nginx:latest`
//! are the same reference wherever they appear (pods, runtime replies, lists).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The registry a reference without one belongs to.
pub(crate) const DOCKER_HUB: &str = "docker.io";
/// Old name of Docker Hub, still written in manifests.
const DOCKER_HUB_LEGACY: &str = "index.docker.io";
/// Docker Hub's namespace of official images (`nginx` = `library/nginx`).
const OFFICIAL_NAMESPACE: &str = "library";
/// Tag implied when a reference has neither a tag nor a digest.
const DEFAULT_TAG: &str = "latest";
/// Distribution's limit on `domain/path`.
const NAME_MAX_LEN: usize = 255;
/// Distribution's limit on a tag.
const TAG_MAX_LEN: usize = 128;

/// Why a string is not an image reference or a digest. Every variant carries the input as given.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReferenceError {
    /// The input is empty.
    #[error("invalid image reference {input:?}: empty")]
    Empty {
        /// The offending input.
        input: String,
    },
    /// The input contains whitespace or control characters.
    #[error("invalid image reference {input:?}: contains whitespace or control characters")]
    Whitespace {
        /// The offending input.
        input: String,
    },
    /// Nothing before the `:tag` or `@digest`.
    #[error("invalid image reference {input:?}: repository name is missing")]
    MissingRepository {
        /// The offending input.
        input: String,
    },
    /// `domain/path` is longer than 255 characters.
    #[error(
        "invalid image reference {input:?}: repository name longer than {NAME_MAX_LEN} characters"
    )]
    TooLong {
        /// The offending input.
        input: String,
    },
    /// The registry part is not a host name, IP address or `host:port`.
    #[error("invalid image reference {input:?}: registry {domain:?} is not a valid host[:port]")]
    InvalidDomain {
        /// The offending input.
        input: String,
        /// The registry part.
        domain: String,
    },
    /// Two `/` in a row, or a `/` at either end of the path.
    #[error("invalid image reference {input:?}: empty path component")]
    EmptyComponent {
        /// The offending input.
        input: String,
    },
    /// A path component has an uppercase letter.
    #[error("invalid image reference {input:?}: repository must be lowercase")]
    Uppercase {
        /// The offending input.
        input: String,
    },
    /// A path component is not lowercase alphanumerics joined by `.`, `_`, `__` or dashes.
    #[error(
        "invalid image reference {input:?}: path component {component:?} must be lowercase \
         letters and digits joined by '.', '_', '__' or '-'"
    )]
    InvalidComponent {
        /// The offending input.
        input: String,
        /// The path component at fault.
        component: String,
    },
    /// A `:` not followed by a tag.
    #[error("invalid image reference {input:?}: nothing after ':' (empty tag)")]
    EmptyTag {
        /// The offending input.
        input: String,
    },
    /// The tag breaks `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`.
    #[error(
        "invalid image reference {input:?}: tag {tag:?} must be up to {TAG_MAX_LEN} letters, \
         digits, '_', '.' or '-', not starting with '.' or '-'"
    )]
    InvalidTag {
        /// The offending input.
        input: String,
        /// The tag at fault.
        tag: String,
    },
    /// What follows `@` is not a digest.
    #[error(
        "invalid image reference {input:?}: {digest:?} after '@' is not a digest \
         (\"sha256:\" and 64 lowercase hex digits)"
    )]
    DigestInReference {
        /// The offending input.
        input: String,
        /// The text after `@`.
        digest: String,
    },
    /// A bare 64-hex string is an image ID, never a repository (Docker refuses it too).
    #[error(
        "invalid image reference {input:?}: a 64-character hex string is an image ID, not a repository"
    )]
    HexRepository {
        /// The offending input.
        input: String,
    },
    /// A stand-alone digest is malformed.
    #[error(
        "invalid digest {input:?}: expected \"sha256:\" and 64, or \"sha512:\" and 128, \
         lowercase hex digits"
    )]
    InvalidDigest {
        /// The offending input.
        input: String,
    },
}

impl ReferenceError {
    /// The string that failed to parse.
    pub fn input(&self) -> &str {
        match self {
            Self::Empty { input }
            | Self::Whitespace { input }
            | Self::MissingRepository { input }
            | Self::TooLong { input }
            | Self::InvalidDomain { input, .. }
            | Self::EmptyComponent { input }
            | Self::Uppercase { input }
            | Self::InvalidComponent { input, .. }
            | Self::EmptyTag { input }
            | Self::InvalidTag { input, .. }
            | Self::DigestInReference { input, .. }
            | Self::HexRepository { input }
            | Self::InvalidDigest { input } => input,
        }
    }
}

/// A content digest, `sha256:<64 hex>` or `sha512:<128 hex>`, lowercase.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest {
    algorithm: &'static str,
    hex: String,
}

impl Digest {
    /// `sha256` or `sha512`.
    pub fn algorithm(&self) -> &str {
        self.algorithm
    }

    /// The hex digits, without the algorithm.
    pub fn hex(&self) -> &str {
        &self.hex
    }
}

impl FromStr for Digest {
    type Err = ReferenceError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let invalid = || ReferenceError::InvalidDigest {
            input: input.to_owned(),
        };
        let (algorithm, hex) = input.split_once(':').ok_or_else(invalid)?;
        let (algorithm, hex_len) = match algorithm {
            "sha256" => ("sha256", 64),
            "sha512" => ("sha512", 128),
            _ => return Err(invalid()),
        };
        if hex.len() != hex_len || !is_lower_hex(hex) {
            return Err(invalid());
        }
        Ok(Digest {
            algorithm,
            hex: hex.to_owned(),
        })
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.algorithm, self.hex)
    }
}

impl Serialize for Digest {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Digest {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// A normalised image reference: registry, path, and a tag and/or a digest.
///
/// Parsing applies Docker's rules: the first `/`-component is the registry only if it contains
/// `.` or `:` or is `localhost`, otherwise the registry is `docker.io`; `index.docker.io` is
/// `docker.io`; a one-component Docker Hub path gains `library/`; with neither tag nor digest
/// the tag is `latest`. Equality, ordering and hashing are on this normalised form, so
/// `"nginx".parse()` equals `"docker.io/library/nginx:latest".parse()`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ImageRef {
    domain: String,
    path: String,
    tag: Option<String>,
    digest: Option<Digest>,
}

impl ImageRef {
    /// The registry, lowercase, with its port if any: `docker.io`, `localhost:5000`.
    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// The path inside the registry: `library/nginx`.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// `domain/path`, e.g. `docker.io/library/nginx`.
    pub fn repository(&self) -> String {
        format!("{}/{}", self.domain, self.path)
    }

    /// The tag; `latest` when the input had neither tag nor digest.
    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    /// The digest after `@`, if any.
    pub fn digest(&self) -> Option<&Digest> {
        self.digest.as_ref()
    }

    /// Whether `repository` (as [`ImageRef::repository`] writes it) is this reference's
    /// repository; compares without building a string.
    pub fn is_in_repository(&self, repository: &str) -> bool {
        repository
            .strip_prefix(self.domain.as_str())
            .and_then(|rest| rest.strip_prefix('/'))
            == Some(self.path.as_str())
    }
}

impl FromStr for ImageRef {
    type Err = ReferenceError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let parts = parse_parts(input)?;
        let tag = match (&parts.tag, &parts.digest) {
            (None, None) => Some(DEFAULT_TAG.to_owned()),
            (tag, _) => tag.clone(),
        };
        Ok(ImageRef {
            domain: parts.domain,
            path: parts.path,
            tag,
            digest: parts.digest,
        })
    }
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.domain, self.path)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

impl Serialize for ImageRef {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ImageRef {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// A reference split and validated, before the default tag is applied.
pub(crate) struct Parts {
    pub(crate) domain: String,
    pub(crate) path: String,
    pub(crate) tag: Option<String>,
    pub(crate) digest: Option<Digest>,
}

/// Splits and validates `[domain/]path[:tag][@digest]`; checks the name before the tag and the
/// tag before the digest, so the first problem reading left to right is the one reported.
pub(crate) fn parse_parts(input: &str) -> Result<Parts, ReferenceError> {
    check_text(input)?;
    if input.len() == 64 && is_lower_hex(input) {
        return Err(ReferenceError::HexRepository {
            input: input.to_owned(),
        });
    }
    let (name_and_tag, digest_text) = match input.split_once('@') {
        Some((left, right)) => (left, Some(right)),
        None => (input, None),
    };
    // The tag's ':' is the one after the last '/', so a registry port is never taken for a tag.
    let last_component_start = name_and_tag.rfind('/').map_or(0, |slash| slash + 1);
    let (name, tag) = match name_and_tag[last_component_start..].find(':') {
        Some(colon) => {
            let colon = last_component_start + colon;
            (&name_and_tag[..colon], Some(&name_and_tag[colon + 1..]))
        }
        None => (name_and_tag, None),
    };
    if name.is_empty() {
        return Err(ReferenceError::MissingRepository {
            input: input.to_owned(),
        });
    }
    let (domain, path) = parse_name(input, name, NameKind::Repository)?;
    let tag = match tag {
        None => None,
        Some("") => {
            return Err(ReferenceError::EmptyTag {
                input: input.to_owned(),
            });
        }
        Some(tag) if !is_valid_tag(tag) => {
            return Err(ReferenceError::InvalidTag {
                input: input.to_owned(),
                tag: tag.to_owned(),
            });
        }
        Some(tag) => Some(tag.to_owned()),
    };
    let digest = match digest_text {
        None => None,
        Some(text) => {
            Some(
                text.parse::<Digest>()
                    .map_err(|_| ReferenceError::DigestInReference {
                        input: input.to_owned(),
                        digest: text.to_owned(),
                    })?,
            )
        }
    };
    Ok(Parts {
        domain,
        path,
        tag,
        digest,
    })
}

/// Normalises `[domain/]path` meant as a prefix of repositories (`mcr.microsoft.com`,
/// `docker.io/library`, `myorg`) into `domain/` or `domain/path/`. Unlike a repository, a single
/// component is a domain if it looks like one, and Docker Hub paths do not gain `library/`.
pub(crate) fn parse_prefix(input: &str) -> Result<String, ReferenceError> {
    check_text(input)?;
    let (domain, path) = parse_name(input, input, NameKind::Prefix)?;
    Ok(if path.is_empty() {
        format!("{domain}/")
    } else {
        format!("{domain}/{path}/")
    })
}

/// Whether `s` is non-empty and only `0-9a-f`.
pub(crate) fn is_lower_hex(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum NameKind {
    Repository,
    Prefix,
}

fn check_text(input: &str) -> Result<(), ReferenceError> {
    if input.is_empty() {
        return Err(ReferenceError::Empty {
            input: input.to_owned(),
        });
    }
    if input.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(ReferenceError::Whitespace {
            input: input.to_owned(),
        });
    }
    Ok(())
}

fn looks_like_domain(component: &str) -> bool {
    component.contains(['.', ':']) || component == "localhost"
}

/// Splits `name` into a normalised domain and a validated path.
fn parse_name(input: &str, name: &str, kind: NameKind) -> Result<(String, String), ReferenceError> {
    if name.len() > NAME_MAX_LEN {
        return Err(ReferenceError::TooLong {
            input: input.to_owned(),
        });
    }
    let (domain, path) = match name.split_once('/') {
        Some((first, rest)) if looks_like_domain(first) => (first, rest),
        None if kind == NameKind::Prefix && looks_like_domain(name) => (name, ""),
        _ => (DOCKER_HUB, name),
    };
    if !is_valid_domain(domain) {
        return Err(ReferenceError::InvalidDomain {
            input: input.to_owned(),
            domain: domain.to_owned(),
        });
    }
    let mut domain = domain.to_ascii_lowercase();
    if domain == DOCKER_HUB_LEGACY {
        domain = DOCKER_HUB.to_owned();
    }
    let domain_only = kind == NameKind::Prefix && !name.contains('/');
    if !domain_only || !path.is_empty() {
        for component in path.split('/') {
            check_component(input, component)?;
        }
    }
    let path = if kind == NameKind::Repository && domain == DOCKER_HUB && !path.contains('/') {
        format!("{OFFICIAL_NAMESPACE}/{path}")
    } else {
        path.to_owned()
    };
    Ok((domain, path))
}

fn check_component(input: &str, component: &str) -> Result<(), ReferenceError> {
    if component.is_empty() {
        return Err(ReferenceError::EmptyComponent {
            input: input.to_owned(),
        });
    }
    if component.bytes().any(|b| b.is_ascii_uppercase()) {
        return Err(ReferenceError::Uppercase {
            input: input.to_owned(),
        });
    }
    if !is_valid_component(component) {
        return Err(ReferenceError::InvalidComponent {
            input: input.to_owned(),
            component: component.to_owned(),
        });
    }
    Ok(())
}

/// `[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*`
fn is_valid_component(component: &str) -> bool {
    let is_alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let bytes = component.as_bytes();
    let mut i = 0;
    loop {
        let run_start = i;
        while i < bytes.len() && is_alnum(bytes[i]) {
            i += 1;
        }
        if i == run_start {
            return false;
        }
        if i == bytes.len() {
            return true;
        }
        let separator_start = i;
        while i < bytes.len() && !is_alnum(bytes[i]) {
            i += 1;
        }
        let separator = &bytes[separator_start..i];
        let valid_separator =
            matches!(separator, b"." | b"_" | b"__") || separator.iter().all(|&b| b == b'-');
        if !valid_separator {
            return false;
        }
    }
}

/// `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`
fn is_valid_tag(tag: &str) -> bool {
    let bytes = tag.as_bytes();
    let Some((&first, rest)) = bytes.split_first() else {
        return false;
    };
    bytes.len() <= TAG_MAX_LEN
        && (first.is_ascii_alphanumeric() || first == b'_')
        && rest
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

/// A host name, an IPv4 address or a bracketed IPv6 address, with an optional port.
fn is_valid_domain(domain: &str) -> bool {
    let (host, port) = if let Some(bracketed) = domain.strip_prefix('[') {
        let Some((address, rest)) = bracketed.split_once(']') else {
            return false;
        };
        let port = match rest {
            "" => None,
            _ => match rest.strip_prefix(':') {
                Some(port) => Some(port),
                None => return false,
            },
        };
        let valid_address = !address.is_empty()
            && address
                .bytes()
                .all(|b| b.is_ascii_hexdigit() || matches!(b, b':' | b'.'));
        if !valid_address {
            return false;
        }
        (None, port)
    } else {
        match domain.split_once(':') {
            Some((host, port)) => (Some(host), Some(port)),
            None => (Some(domain), None),
        }
    };
    let valid_host = host.is_none_or(|host| {
        !host.is_empty()
            && host.split('.').all(|label| {
                !label.is_empty()
                    && !label.starts_with('-')
                    && !label.ends_with('-')
                    && label
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            })
    });
    let valid_port = port.is_none_or(|port| {
        (1..=5).contains(&port.len())
            && port.bytes().all(|b| b.is_ascii_digit())
            && port.parse::<u32>().is_ok_and(|n| n <= 65_535)
    });
    valid_host && valid_port
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const HEX_A: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";

    /// Input, domain, path, tag, digest.
    type Expected<'a> = (String, &'a str, &'a str, Option<&'a str>, Option<&'a str>);

    #[test]
    fn normalises_like_docker() {
        let d = format!("sha256:{HEX_A}");
        let cases: Vec<Expected<'_>> = vec![
            (
                "nginx".into(),
                "docker.io",
                "library/nginx",
                Some("latest"),
                None,
            ),
            (
                "nginx:1.25".into(),
                "docker.io",
                "library/nginx",
                Some("1.25"),
                None,
            ),
            (
                "library/nginx".into(),
                "docker.io",
                "library/nginx",
                Some("latest"),
                None,
            ),
            (
                "docker.io/nginx".into(),
                "docker.io",
                "library/nginx",
                Some("latest"),
                None,
            ),
            (
                "index.docker.io/library/nginx:1".into(),
                "docker.io",
                "library/nginx",
                Some("1"),
                None,
            ),
            (
                "myorg/app:v2".into(),
                "docker.io",
                "myorg/app",
                Some("v2"),
                None,
            ),
            ("quay.io/a/b".into(), "quay.io", "a/b", Some("latest"), None),
            ("Quay.IO/a/b".into(), "quay.io", "a/b", Some("latest"), None),
            (
                "localhost/app".into(),
                "localhost",
                "app",
                Some("latest"),
                None,
            ),
            (
                "localhost:5000/app:1".into(),
                "localhost:5000",
                "app",
                Some("1"),
                None,
            ),
            (
                "localhost:5000".into(),
                "docker.io",
                "library/localhost",
                Some("5000"),
                None,
            ),
            (
                "reg:5000/x/y/z:1".into(),
                "reg:5000",
                "x/y/z",
                Some("1"),
                None,
            ),
            (
                "10.0.0.1:5000/app".into(),
                "10.0.0.1:5000",
                "app",
                Some("latest"),
                None,
            ),
            (
                "[::1]:5000/app".into(),
                "[::1]:5000",
                "app",
                Some("latest"),
                None,
            ),
            (
                "mcr.microsoft.com/oss/kubernetes/pause:3.6".into(),
                "mcr.microsoft.com",
                "oss/kubernetes/pause",
                Some("3.6"),
                None,
            ),
            (
                format!("quay.io/a/b@{d}"),
                "quay.io",
                "a/b",
                None,
                Some(d.as_str()),
            ),
            (
                format!("reg:5000/x:1@{d}"),
                "reg:5000",
                "x",
                Some("1"),
                Some(d.as_str()),
            ),
            (
                "a__b-c-d---e/f_g.h:_Tag.x-1".into(),
                "docker.io",
                "a__b-c-d---e/f_g.h",
                Some("_Tag.x-1"),
                None,
            ),
            // A first component with a dot is a registry, as in Docker.
            ("a.b/c".into(), "a.b", "c", Some("latest"), None),
        ];
        for (input, domain, path, tag, digest) in cases {
            let parsed: ImageRef = input.parse().unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(parsed.domain(), domain, "{input}");
            assert_eq!(parsed.path(), path, "{input}");
            assert_eq!(parsed.tag(), tag, "{input}");
            assert_eq!(
                parsed.digest().map(|d| d.to_string()).as_deref(),
                digest,
                "{input}"
            );
            assert_eq!(parsed.repository(), format!("{domain}/{path}"));
            assert!(parsed.is_in_repository(&format!("{domain}/{path}")));
        }
    }

    #[test]
    fn displays_canonical_form() {
        let d = format!("sha256:{HEX_A}");
        let cases = [
            (
                "nginx".to_owned(),
                "docker.io/library/nginx:latest".to_owned(),
            ),
            ("quay.io/a/b@".to_owned() + &d, format!("quay.io/a/b@{d}")),
            (format!("reg:5000/x:1@{d}"), format!("reg:5000/x:1@{d}")),
        ];
        for (input, expected) in cases {
            assert_eq!(input.parse::<ImageRef>().unwrap().to_string(), expected);
        }
    }

    #[test]
    fn equal_after_normalisation() {
        let a: ImageRef = "nginx".parse().unwrap();
        let b: ImageRef = "docker.io/library/nginx:latest".parse().unwrap();
        let c: ImageRef = "index.docker.io/nginx".parse().unwrap();
        assert_eq!(a, b);
        assert_eq!(b, c);
        assert_ne!(a, "nginx:1".parse::<ImageRef>().unwrap());
    }

    #[test]
    fn rejects_malformed_references_quoting_them() {
        let cases: &[(&str, &str)] = &[
            ("", "empty"),
            ("nginx latest", "whitespace"),
            (" nginx", "whitespace"),
            ("Nginx:", "repository must be lowercase"),
            ("Nginx", "repository must be lowercase"),
            ("docker.io/Library/nginx", "repository must be lowercase"),
            ("nginx:", "empty tag"),
            ("localhost:5000/app:", "empty tag"),
            ("nginx@", "after '@' is not a digest"),
            ("nginx@sha256:zz", "after '@' is not a digest"),
            ("nginx@sha256:ABCD", "after '@' is not a digest"),
            ("@sha256:aa", "repository name is missing"),
            (":1", "repository name is missing"),
            ("a//b", "empty path component"),
            ("a/", "empty path component"),
            ("/a", "empty path component"),
            ("a-/b", "path component \"a-\""),
            ("a..b", "path component \"a..b\""),
            ("a___b", "path component \"a___b\""),
            ("_a", "path component \"_a\""),
            ("nginx:.bad", "tag \".bad\""),
            ("nginx:-bad", "tag \"-bad\""),
            ("nginx:1:2", "tag \"1:2\""),
            ("reg:99999/app", "registry \"reg:99999\""),
            ("reg:/app", "registry \"reg:\""),
            ("-reg.io/app", "registry \"-reg.io\""),
            ("[zz]:5000/app", "registry \"[zz]:5000\""),
            ("a*b", "path component \"a*b\""),
            (HEX_A, "image ID, not a repository"),
        ];
        for (input, problem) in cases {
            let error = input.parse::<ImageRef>().expect_err(input);
            let message = error.to_string();
            assert!(
                message.starts_with(&format!("invalid image reference {input:?}: ")),
                "{message}"
            );
            assert!(message.contains(problem), "{input}: {message}");
            assert_eq!(error.input(), *input);
        }
        let long = format!("{}:1", "a".repeat(256));
        assert!(matches!(
            long.parse::<ImageRef>(),
            Err(ReferenceError::TooLong { .. })
        ));
        let long_tag = format!("a:{}", "b".repeat(129));
        assert!(matches!(
            long_tag.parse::<ImageRef>(),
            Err(ReferenceError::InvalidTag { .. })
        ));
    }

    #[test]
    fn the_spec_example_message() {
        assert_eq!(
            "Nginx:".parse::<ImageRef>().unwrap_err().to_string(),
            r#"invalid image reference "Nginx:": repository must be lowercase"#
        );
    }

    #[test]
    fn parses_digests() {
        let sha512 = format!("sha512:{}", "0".repeat(128));
        let ok = [format!("sha256:{HEX_A}"), sha512];
        for input in ok {
            let digest: Digest = input.parse().unwrap();
            assert_eq!(digest.to_string(), input);
            assert_eq!(format!("{}:{}", digest.algorithm(), digest.hex()), input);
        }
        let bad = [
            "".to_owned(),
            "sha256".to_owned(),
            "sha256:".to_owned(),
            "sha256:zz".to_owned(),
            format!("sha256:{}", HEX_A.to_uppercase()),
            format!("sha256:{HEX_A}a"),
            format!("md5:{HEX_A}"),
            format!("sha512:{HEX_A}"),
        ];
        for input in bad {
            let error = input.parse::<Digest>().unwrap_err();
            assert!(
                error
                    .to_string()
                    .starts_with(&format!("invalid digest {input:?}"))
            );
        }
    }

    #[test]
    fn prefixes_normalise_to_a_slash_boundary() {
        let cases = [
            ("docker.io/library", "docker.io/library/"),
            ("library", "docker.io/library/"),
            ("myorg", "docker.io/myorg/"),
            ("docker.io", "docker.io/"),
            ("index.docker.io", "docker.io/"),
            ("mcr.microsoft.com", "mcr.microsoft.com/"),
            ("localhost", "localhost/"),
            ("localhost:5000", "localhost:5000/"),
            ("quay.io/org/team", "quay.io/org/team/"),
        ];
        for (input, expected) in cases {
            assert_eq!(parse_prefix(input).unwrap(), expected, "{input}");
        }
        for bad in [
            "",
            "My",
            "a b",
            "a//b",
            "quay.io/",
            "nginx@x",
            "quay.io/a:1",
        ] {
            assert!(parse_prefix(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn deserialises_through_the_parser() {
        use serde::de::value::{Error, StrDeserializer};
        let parsed = ImageRef::deserialize(StrDeserializer::<Error>::new("nginx:1")).unwrap();
        assert_eq!(parsed.to_string(), "docker.io/library/nginx:1");
        assert!(ImageRef::deserialize(StrDeserializer::<Error>::new("Nginx")).is_err());
        let digest = format!("sha256:{HEX_A}");
        let parsed = Digest::deserialize(StrDeserializer::<Error>::new(&digest)).unwrap();
        assert_eq!(parsed.to_string(), digest);
    }

    fn component() -> impl Strategy<Value = String> {
        "[a-z0-9]{1,4}((\\.|_|__|-{1,2})[a-z0-9]{1,4}){0,2}"
    }

    /// Without '.', so that it is never taken for a registry.
    fn first_component() -> impl Strategy<Value = String> {
        "[a-z0-9]{1,4}((_|__|-{1,2})[a-z0-9]{1,4}){0,2}"
    }

    fn reference_text() -> impl Strategy<Value = String> {
        let domain = prop_oneof![
            Just(String::new()),
            Just("docker.io/".to_owned()),
            Just("index.docker.io/".to_owned()),
            Just("localhost/".to_owned()),
            Just("localhost:5000/".to_owned()),
            Just("quay.io/".to_owned()),
            Just("reg.example.com:443/".to_owned()),
        ];
        let tag = prop_oneof![
            Just(String::new()),
            "[A-Za-z0-9_][A-Za-z0-9_.-]{0,8}".prop_map(|t| format!(":{t}"))
        ];
        let digest = prop_oneof![
            Just(String::new()),
            "[0-9a-f]{64}".prop_map(|h| format!("@sha256:{h}"))
        ];
        let path = (
            first_component(),
            proptest::collection::vec(component(), 0..3),
        );
        (domain, path, tag, digest).prop_map(|(d, (first, rest), t, g)| {
            let path = std::iter::once(first)
                .chain(rest)
                .collect::<Vec<_>>()
                .join("/");
            format!("{d}{path}{t}{g}")
        })
    }

    proptest! {
        #[test]
        fn display_round_trips(input in reference_text()) {
            let parsed: ImageRef = input.parse().unwrap();
            let again: ImageRef = parsed.to_string().parse().unwrap();
            prop_assert_eq!(&again, &parsed);
            prop_assert_eq!(again.to_string(), parsed.to_string());
            prop_assert!(parsed.tag().is_some() || parsed.digest().is_some());
        }

        #[test]
        fn never_panics(input in "\\PC{0,40}") {
            let _ = input.parse::<ImageRef>();
            let _ = input.parse::<Digest>();
            let _ = parse_prefix(&input);
        }

        #[test]
        fn errors_quote_the_input(input in "[A-Za-z0-9:@/._ -]{0,30}") {
            if let Err(error) = input.parse::<ImageRef>() {
                prop_assert_eq!(error.input(), input.as_str());
                let quoted = format!("{input:?}");
                prop_assert!(error.to_string().contains(&quoted));
            }
        }
    }
}
