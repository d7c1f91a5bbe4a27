//! Entries of removal and exclusion lists, and how they match images.
//!
//! Lists come from ImageLists and Eraser's exclusion ConfigMaps and are written by hand, so
//! every entry is parsed once into a [`Pattern`], normalised like any image reference, and
//! matched against an image's names and digests with proper boundaries (`localhost:5000/app:*`
//! is the repository `localhost:5000/app`, never `localhost:5000/app2`).

use std::collections::HashSet;
use std::fmt;
use std::str::FromStr;

use crate::inventory::{FULL_ID_LEN, Image, ParsedImage, ParsedName, SHORT_ID_LEN};
use crate::reference::{self, Digest, ImageRef, ReferenceError, is_lower_hex};

/// One list entry.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Pattern {
    /// `*`: every image; valid only in a removal list.
    Everything,
    /// An exact reference: by tag, or by digest.
    Reference(ImageRef),
    /// 12 to 64 lowercase hex digits: a prefix of an image ID.
    Id(String),
    /// `sha256:<hex>`: the image with this ID, or any image with this repo digest.
    Digest(Digest),
    /// `repo:*`: every tag and digest of exactly this normalised repository, e.g.
    /// `docker.io/library/alpine`.
    Repository(String),
    /// `prefix/*`: every repository under this normalised prefix, which ends in `/`, e.g.
    /// `docker.io/library/`.
    Prefix(String),
}

/// Why a list entry is not a pattern. Every variant carries the entry as given.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PatternError {
    /// The entry is empty or only whitespace.
    #[error("invalid pattern {entry:?}: empty")]
    Empty {
        /// The offending entry.
        entry: String,
    },
    /// `*` in an exclusion list would protect every image, which is never what was meant.
    #[error("invalid pattern {entry:?}: \"*\" is not allowed in an exclusion list")]
    EverythingExcluded {
        /// The offending entry.
        entry: String,
    },
    /// A `*` other than `*`, `repo:*` or `prefix/*`.
    #[error(
        "invalid pattern {entry:?}: '*' is only allowed alone, as \"<repository>:*\" or as \
         \"<prefix>/*\""
    )]
    MisplacedWildcard {
        /// The offending entry.
        entry: String,
    },
    /// `:*` with nothing before it.
    #[error("invalid pattern {entry:?}: \":*\" needs a repository before it")]
    MissingRepository {
        /// The offending entry.
        entry: String,
    },
    /// `/*` with nothing before it.
    #[error("invalid pattern {entry:?}: \"/*\" needs a registry or path before it")]
    MissingPrefix {
        /// The offending entry.
        entry: String,
    },
    /// `repo:tag:*` or `repo@digest:*`.
    #[error(
        "invalid pattern {entry:?}: the repository before \":*\" must not have a tag or digest"
    )]
    TaggedRepository {
        /// The offending entry.
        entry: String,
    },
    /// The reference, digest or prefix in the entry does not parse.
    #[error("invalid pattern {entry:?}: {error}")]
    Reference {
        /// The offending entry.
        entry: String,
        /// What is wrong with the reference part.
        error: ReferenceError,
    },
}

impl PatternError {
    /// The entry that was refused.
    pub fn entry(&self) -> &str {
        match self {
            Self::Empty { entry }
            | Self::EverythingExcluded { entry }
            | Self::MisplacedWildcard { entry }
            | Self::MissingRepository { entry }
            | Self::MissingPrefix { entry }
            | Self::TaggedRepository { entry }
            | Self::Reference { entry, .. } => entry,
        }
    }
}

impl FromStr for Pattern {
    type Err = PatternError;

    /// Parses one list entry, ignoring surrounding whitespace.
    fn from_str(raw: &str) -> Result<Self, Self::Err> {
        let entry = raw.trim();
        let owned = || entry.to_owned();
        let reference_error = |error| PatternError::Reference {
            entry: entry.to_owned(),
            error,
        };
        if entry.is_empty() {
            return Err(PatternError::Empty {
                entry: raw.to_owned(),
            });
        }
        if entry == "*" {
            return Ok(Pattern::Everything);
        }
        if let Some(repository) = entry.strip_suffix(":*") {
            if repository.is_empty() {
                return Err(PatternError::MissingRepository { entry: owned() });
            }
            if repository.contains('*') {
                return Err(PatternError::MisplacedWildcard { entry: owned() });
            }
            let parts = reference::parse_parts(repository).map_err(reference_error)?;
            if parts.tag.is_some() || parts.digest.is_some() {
                return Err(PatternError::TaggedRepository { entry: owned() });
            }
            return Ok(Pattern::Repository(format!(
                "{}/{}",
                parts.domain, parts.path
            )));
        }
        if let Some(prefix) = entry.strip_suffix("/*") {
            if prefix.is_empty() {
                return Err(PatternError::MissingPrefix { entry: owned() });
            }
            if prefix.contains('*') {
                return Err(PatternError::MisplacedWildcard { entry: owned() });
            }
            return reference::parse_prefix(prefix)
                .map(Pattern::Prefix)
                .map_err(reference_error);
        }
        if entry.contains('*') {
            return Err(PatternError::MisplacedWildcard { entry: owned() });
        }
        if entry.starts_with("sha256:") || entry.starts_with("sha512:") {
            return entry
                .parse::<Digest>()
                .map(Pattern::Digest)
                .map_err(reference_error);
        }
        // Short hex is also a valid repository name; as a list entry it means an image ID, as
        // `crictl images` shows them.
        if (SHORT_ID_LEN..=FULL_ID_LEN).contains(&entry.len()) && is_lower_hex(entry) {
            return Ok(Pattern::Id(entry.to_owned()));
        }
        entry
            .parse::<ImageRef>()
            .map(Pattern::Reference)
            .map_err(reference_error)
    }
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Pattern::Everything => f.write_str("*"),
            Pattern::Reference(reference) => reference.fmt(f),
            Pattern::Id(hex) => f.write_str(hex),
            Pattern::Digest(digest) => digest.fmt(f),
            Pattern::Repository(repository) => write!(f, "{repository}:*"),
            Pattern::Prefix(prefix) => write!(f, "{prefix}*"),
        }
    }
}

impl Pattern {
    /// Whether this pattern names `image` by any of its names, repo digests or its ID.
    pub fn matches(&self, image: &Image) -> bool {
        self.matches_parsed(image, &ParsedImage::new(image))
    }

    /// [`Pattern::matches`] with the image's names already parsed.
    pub(crate) fn matches_parsed(&self, image: &Image, parsed: &ParsedImage<'_>) -> bool {
        match self {
            Pattern::Everything => true,
            Pattern::Id(prefix) => image.id.hex().starts_with(prefix.as_str()),
            Pattern::Digest(digest) => {
                image.id.is_digest(digest)
                    || parsed.digests.iter().any(|name| match name {
                        ParsedName::Parsed { reference, .. } => reference.digest() == Some(digest),
                        ParsedName::Literal(text) => text
                            .rsplit_once('@')
                            .is_some_and(|(_, tail)| tail == digest.to_string()),
                    })
            }
            Pattern::Reference(wanted) => match wanted.digest() {
                // By digest the tag is irrelevant, as for the runtime: the content is what counts.
                Some(digest) => {
                    image.id.is_digest(digest)
                        || parsed.digests.iter().any(|name| match name {
                            ParsedName::Parsed { reference, .. } => {
                                reference.digest() == Some(digest)
                                    && reference.domain() == wanted.domain()
                                    && reference.path() == wanted.path()
                            }
                            ParsedName::Literal(text) => *text == wanted.to_string(),
                        })
                }
                None => parsed.names.iter().any(|name| match name {
                    ParsedName::Parsed { reference, .. } => reference == wanted,
                    ParsedName::Literal(text) => *text == wanted.to_string(),
                }),
            },
            Pattern::Repository(repository) => parsed.all().any(|name| match name {
                ParsedName::Parsed {
                    repository: theirs, ..
                } => theirs == repository,
                ParsedName::Literal(text) => text
                    .strip_prefix(repository.as_str())
                    .is_some_and(|rest| rest.starts_with([':', '@'])),
            }),
            // The prefix ends in '/' and repositories never do, so a match is always at a
            // path boundary.
            Pattern::Prefix(prefix) => parsed.all().any(|name| match name {
                ParsedName::Parsed { repository, .. } => repository.starts_with(prefix.as_str()),
                ParsedName::Literal(text) => text.starts_with(prefix.as_str()),
            }),
        }
    }
}

/// Which list a set of patterns comes from; decides whether `*` is allowed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ListKind {
    /// Images never to remove.
    Exclusion,
    /// Images to remove at once.
    Removal,
}

/// The parsed entries of one or more lists, in order, without duplicates.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PatternSet {
    patterns: Vec<Pattern>,
    seen: HashSet<Pattern>,
}

impl PatternSet {
    /// Parses every entry; the first bad entry fails the whole list.
    pub fn parse_strict<I, S>(kind: ListKind, entries: I) -> Result<PatternSet, PatternError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut set = PatternSet::default();
        for entry in entries {
            set.push(parse_entry(kind, entry.as_ref())?);
        }
        Ok(set)
    }

    /// Parses every entry, keeping the good ones and reporting the bad ones, so one typo does
    /// not disable a whole list.
    pub fn parse_lenient<I, S>(kind: ListKind, entries: I) -> (PatternSet, Vec<PatternError>)
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut set = PatternSet::default();
        let mut errors = Vec::new();
        for entry in entries {
            match parse_entry(kind, entry.as_ref()) {
                Ok(pattern) => set.push(pattern),
                Err(error) => errors.push(error),
            }
        }
        (set, errors)
    }

    /// Whether the set has no patterns.
    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    /// Number of distinct patterns.
    pub fn len(&self) -> usize {
        self.patterns.len()
    }

    /// The patterns, in the order first given.
    pub fn patterns(&self) -> &[Pattern] {
        &self.patterns
    }

    /// The first pattern that matches `image`.
    pub fn matches(&self, image: &Image) -> Option<&Pattern> {
        if self.patterns.is_empty() {
            return None;
        }
        self.matches_parsed(image, &ParsedImage::new(image))
    }

    /// [`PatternSet::matches`] with the image's names already parsed.
    pub(crate) fn matches_parsed(
        &self,
        image: &Image,
        parsed: &ParsedImage<'_>,
    ) -> Option<&Pattern> {
        self.patterns
            .iter()
            .find(|pattern| pattern.matches_parsed(image, parsed))
    }

    /// Adds the patterns of `other` that are not already here.
    pub fn extend(&mut self, other: PatternSet) {
        for pattern in other.patterns {
            self.push(pattern);
        }
    }

    fn push(&mut self, pattern: Pattern) {
        if self.seen.insert(pattern.clone()) {
            self.patterns.push(pattern);
        }
    }
}

fn parse_entry(kind: ListKind, entry: &str) -> Result<Pattern, PatternError> {
    let pattern: Pattern = entry.parse()?;
    if kind == ListKind::Exclusion && pattern == Pattern::Everything {
        return Err(PatternError::EverythingExcluded {
            entry: entry.trim().to_owned(),
        });
    }
    Ok(pattern)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{digest_hex, id, image};

    #[test]
    fn parses_each_kind_to_its_canonical_form() {
        let d = format!("sha256:{}", digest_hex(1));
        let cases: Vec<(String, &str, String)> = vec![
            ("*".into(), "everything", "*".into()),
            ("  *  ".into(), "everything", "*".into()),
            (
                "nginx".into(),
                "reference",
                "docker.io/library/nginx:latest".into(),
            ),
            (
                " nginx:1.25 ".into(),
                "reference",
                "docker.io/library/nginx:1.25".into(),
            ),
            (
                format!("quay.io/a/b@{d}"),
                "reference",
                format!("quay.io/a/b@{d}"),
            ),
            ("0123456789ab".into(), "id", "0123456789ab".into()),
            (id(7).hex().into(), "id", id(7).hex().into()),
            (d.clone(), "digest", d.clone()),
            (
                "alpine:*".into(),
                "repository",
                "docker.io/library/alpine:*".into(),
            ),
            (
                "docker.io/library/alpine:*".into(),
                "repository",
                "docker.io/library/alpine:*".into(),
            ),
            (
                "localhost:5000/app:*".into(),
                "repository",
                "localhost:5000/app:*".into(),
            ),
            (
                "docker.io/library/*".into(),
                "prefix",
                "docker.io/library/*".into(),
            ),
            (
                "mcr.microsoft.com/*".into(),
                "prefix",
                "mcr.microsoft.com/*".into(),
            ),
            (
                "localhost:5000/*".into(),
                "prefix",
                "localhost:5000/*".into(),
            ),
            ("myorg/*".into(), "prefix", "docker.io/myorg/*".into()),
            (
                "index.docker.io/myorg/team/*".into(),
                "prefix",
                "docker.io/myorg/team/*".into(),
            ),
        ];
        for (entry, kind, canonical) in cases {
            let pattern: Pattern = entry.parse().unwrap_or_else(|e| panic!("{entry}: {e}"));
            let actual_kind = match &pattern {
                Pattern::Everything => "everything",
                Pattern::Reference(_) => "reference",
                Pattern::Id(_) => "id",
                Pattern::Digest(_) => "digest",
                Pattern::Repository(_) => "repository",
                Pattern::Prefix(_) => "prefix",
            };
            assert_eq!(actual_kind, kind, "{entry}");
            assert_eq!(pattern.to_string(), canonical, "{entry}");
            assert_eq!(
                canonical.parse::<Pattern>().unwrap(),
                pattern,
                "{entry} round trip"
            );
        }
    }

    #[test]
    fn refuses_malformed_entries_quoting_them() {
        let cases = [
            ("Nginx", "repository must be lowercase"),
            ("a b", "whitespace"),
            ("foo:", "empty tag"),
            ("@sha256:zz", "repository name is missing"),
            ("nginx@sha256:zz", "not a digest"),
            ("sha256:zz", "invalid digest"),
            (":*", "needs a repository"),
            ("/*", "needs a registry or path"),
            ("Foo:*", "repository must be lowercase"),
            ("nginx:1:*", "must not have a tag"),
            ("ngi*x", "'*' is only allowed"),
            ("*/*", "'*' is only allowed"),
            ("docker.io/*/nginx", "'*' is only allowed"),
            ("Docker.io/Library/*", "repository must be lowercase"),
            ("quay.io//*", "empty path component"),
            ("", "empty"),
            ("   ", "empty"),
        ];
        for (entry, problem) in cases {
            let error = entry.parse::<Pattern>().expect_err(entry);
            let message = error.to_string();
            let quoted = format!("invalid pattern {:?}: ", entry.trim());
            let quoted_raw = format!("invalid pattern {entry:?}: ");
            assert!(
                message.starts_with(&quoted) || message.starts_with(&quoted_raw),
                "{message}"
            );
            assert!(message.contains(problem), "{entry}: {message}");
        }
        assert_eq!(
            "Foo:*".parse::<Pattern>().unwrap_err().to_string(),
            r#"invalid pattern "Foo:*": invalid image reference "Foo": repository must be lowercase"#
        );
    }

    #[test]
    fn everything_is_refused_in_exclusions_only() {
        let error = PatternSet::parse_strict(ListKind::Exclusion, ["nginx", " * "]).unwrap_err();
        assert_eq!(
            error.to_string(),
            r#"invalid pattern "*": "*" is not allowed in an exclusion list"#
        );
        assert_eq!(error.entry(), "*");
        let removal = PatternSet::parse_strict(ListKind::Removal, ["*"]).unwrap();
        assert_eq!(removal.patterns(), &[Pattern::Everything]);
    }

    #[test]
    fn lenient_parsing_keeps_good_entries() {
        let (set, errors) = PatternSet::parse_lenient(
            ListKind::Exclusion,
            [
                "nginx",
                "Nginx",
                "*",
                "docker.io/library/nginx:latest",
                "alpine:*",
            ],
        );
        assert_eq!(set.len(), 2, "duplicates after normalisation collapse");
        assert_eq!(
            errors.iter().map(PatternError::entry).collect::<Vec<_>>(),
            vec!["Nginx", "*"]
        );
        assert!(PatternSet::parse_strict(ListKind::Exclusion, ["nginx", "Nginx"]).is_err());
        let mut merged = set.clone();
        merged.extend(
            PatternSet::parse_strict(ListKind::Exclusion, ["alpine:*", "busybox"]).unwrap(),
        );
        assert_eq!(merged.len(), 3);
        assert!(PatternSet::default().is_empty());
    }

    fn matches(pattern: &str, image: &Image) -> bool {
        pattern.parse::<Pattern>().unwrap().matches(image)
    }

    #[test]
    fn repository_and_prefix_respect_boundaries() {
        let d = digest_hex(5);
        let cases: Vec<(&str, Image, bool)> = vec![
            (
                "localhost:5000/app:*",
                image(1, &["localhost:5000/app:1"], &[]),
                true,
            ),
            (
                "localhost:5000/app:*",
                image(1, &[], &[&format!("localhost:5000/app@sha256:{d}")]),
                true,
            ),
            (
                "localhost:5000/app:*",
                image(1, &["localhost/other:1"], &[]),
                false,
            ),
            (
                "localhost:5000/app:*",
                image(1, &["localhost:5000/app2:1"], &[]),
                false,
            ),
            (
                "localhost:5000/app:*",
                image(1, &["localhost:5000/app/sub:1"], &[]),
                false,
            ),
            (
                "localhost:5000/app:*",
                image(1, &["localhost:5001/app:1"], &[]),
                false,
            ),
            (
                "alpine:*",
                image(1, &["docker.io/library/alpine:3.19"], &[]),
                true,
            ),
            (
                "docker.io/library/alpine:*",
                image(1, &["alpine"], &[]),
                true,
            ),
            (
                "alpine:*",
                image(1, &["docker.io/library/alpinex:1"], &[]),
                false,
            ),
            (
                "docker.io/library/*",
                image(1, &["docker.io/library/nginx:1"], &[]),
                true,
            ),
            (
                "docker.io/library/*",
                image(1, &["docker.io/library/a/b:1"], &[]),
                true,
            ),
            (
                "docker.io/library/*",
                image(1, &["docker.io/libraryx/n:1"], &[]),
                false,
            ),
            ("docker.io/library/*", image(1, &["nginx"], &[]), true),
            (
                "mcr.microsoft.com/*",
                image(1, &["mcr.microsoft.com/oss/pause:3.6"], &[]),
                true,
            ),
            (
                "mcr.microsoft.com/*",
                image(1, &["mcr.microsoft.com.evil.io/x:1"], &[]),
                false,
            ),
            (
                "localhost:5000/*",
                image(1, &["localhost:5000/app:1"], &[]),
                true,
            ),
            (
                "localhost:5000/*",
                image(1, &["localhost:50001/app:1"], &[]),
                false,
            ),
            (
                "localhost:5000/*",
                image(1, &["localhost/app:1"], &[]),
                false,
            ),
            ("myorg/*", image(1, &["myorg/app:1"], &[]), true),
            (
                "myorg/*",
                image(1, &["docker.io/myorg/team/app:1"], &[]),
                true,
            ),
            ("myorg/*", image(1, &["quay.io/myorg/app:1"], &[]), false),
            ("docker.io/*", image(1, &["busybox"], &[]), true),
            ("docker.io/*", image(1, &["quay.io/busybox:1"], &[]), false),
        ];
        for (pattern, image, expected) in cases {
            assert_eq!(
                matches(pattern, &image),
                expected,
                "{pattern} vs {:?} {:?}",
                image.names,
                image.digests
            );
        }
    }

    #[test]
    fn references_ids_and_digests() {
        let repo_digest = format!("docker.io/library/nginx@sha256:{}", digest_hex(1));
        let nginx = image(
            1,
            &[
                "docker.io/library/nginx:latest",
                "docker.io/library/nginx:1.25",
            ],
            &[&repo_digest],
        );
        let digest_only = image(2, &[], &[&format!("quay.io/a/b@sha256:{}", digest_hex(2))]);
        let cases: Vec<(String, &Image, bool)> = vec![
            ("nginx".into(), &nginx, true),
            ("nginx:1.25".into(), &nginx, true),
            ("docker.io/library/nginx:latest".into(), &nginx, true),
            ("nginx:1.26".into(), &nginx, false),
            ("quay.io/nginx".into(), &nginx, false),
            (format!("nginx@sha256:{}", digest_hex(1)), &nginx, true),
            (format!("nginx:9@sha256:{}", digest_hex(1)), &nginx, true),
            (
                format!("quay.io/nginx@sha256:{}", digest_hex(1)),
                &nginx,
                false,
            ),
            (format!("anything/else@{}", id(1)), &nginx, true),
            (format!("sha256:{}", digest_hex(1)), &nginx, true),
            (id(1).to_string(), &nginx, true),
            (id(1).hex().to_owned(), &nginx, true),
            (id(1).short().to_owned(), &nginx, true),
            (id(2).hex().to_owned(), &nginx, false),
            (format!("sha256:{}", digest_hex(2)), &nginx, false),
            (format!("sha256:{}", digest_hex(2)), &digest_only, true),
            (
                format!("quay.io/a/b@sha256:{}", digest_hex(2)),
                &digest_only,
                true,
            ),
            ("quay.io/a/b:*".into(), &digest_only, true),
            ("quay.io/a/b".into(), &digest_only, false),
            ("quay.io/*".into(), &digest_only, true),
            ("*".into(), &digest_only, true),
        ];
        for (pattern, image, expected) in cases {
            assert_eq!(matches(&pattern, image), expected, "{pattern}");
        }
    }

    #[test]
    fn unparseable_names_compare_literally() {
        let odd = image(1, &["Weird/Name:1"], &["Weird/Name@sha256:x"]);
        assert!(!matches("weird/name:1", &odd));
        assert!(!matches("docker.io/*", &odd));
        let literal = image(1, &["docker.io/library/nginx:latest  "], &[]);
        assert!(!matches("nginx", &literal));
    }

    #[test]
    fn set_reports_the_first_matching_pattern() {
        let set =
            PatternSet::parse_strict(ListKind::Exclusion, ["quay.io/*", "nginx:1.25", "nginx:*"])
                .unwrap();
        let nginx = image(
            1,
            &[
                "docker.io/library/nginx:latest",
                "docker.io/library/nginx:1.25",
            ],
            &[],
        );
        assert_eq!(
            set.matches(&nginx).map(ToString::to_string).as_deref(),
            Some("docker.io/library/nginx:1.25")
        );
        assert_eq!(set.matches(&image(2, &["busybox"], &[])), None);
    }
}
