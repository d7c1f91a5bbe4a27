//! What an ImageList means: its role (removal or exclusion list), its parsed entries, and the
//! status the manager writes back.
//!
//! Eraser acts on one ImageList, named `imagelist`, and treats it as a removal list. Image
//! Cleaner acts on any number of lists; the role of each is decided by [`resolve_role`], a
//! pure function of what the operator wrote (DESIGN §3), so the manager, the CLI and the tests
//! agree on it. A malformed entry never disables a list: [`ImageListSpec::patterns`] keeps the
//! good entries and returns the bad ones for status and Events.
//!
//! [`ImageListSpec::patterns`]: crate::v1::ImageListSpec::patterns

use std::collections::BTreeMap;
use std::fmt;

use image_cleaner_core::{ListKind, PatternError};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::constants::{
    ERASER_IMAGE_LIST_NAME, EXCLUDE_LIST_LABEL, EXCLUDE_LIST_LABEL_VALUE, EXCLUSION_NAME_MARKER,
};

/// At most this many malformed entries are listed in an ImageList's status; the total is in
/// `malformedCount`. A list is written by hand and may be long, and the whole object must
/// stay far below the API server's size limit.
pub const MAX_MALFORMED_ENTRIES: usize = 20;
/// Longest entry or message kept in a [`MalformedEntry`], in bytes.
pub const MAX_MALFORMED_TEXT_LEN: usize = 256;

/// Condition type: every entry of the list parses (`False` lists the malformed ones).
pub const CONDITION_VALID: &str = "Valid";
/// Condition type: the list is in effect (a removal job ran with it, or the exclusions are
/// delivered to the workers).
pub const CONDITION_APPLIED: &str = "Applied";

/// Remove: remove the images from every node where they are not running. Exclude: never
/// remove them. Optional in spec: without it, the label eraser.sh/exclude.list=true means
/// Exclude, else the name decides (containing "exclu": Exclude, otherwise Remove). In status:
/// the role the manager resolved.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum ListAction {
    /// Remove the listed images from every node where they are not running.
    Remove,
    /// Never remove the listed images.
    Exclude,
}

impl ListAction {
    /// The pattern rules for this kind of list (`*` is allowed only in a removal list).
    pub fn list_kind(self) -> ListKind {
        match self {
            ListAction::Remove => ListKind::Removal,
            ListAction::Exclude => ListKind::Exclusion,
        }
    }

    /// The name as written in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            ListAction::Remove => "Remove",
            ListAction::Exclude => "Exclude",
        }
    }
}

impl fmt::Display for ListAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What decided the list's role: Action (spec.action), Label (eraser.sh/exclude.list=true),
/// EraserName (the name imagelist) or Name (guessed from any other name).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum RoleSource {
    /// `spec.action`.
    Action,
    /// The label `eraser.sh/exclude.list: "true"`.
    Label,
    /// The name `imagelist`, Eraser's one removal list.
    EraserName,
    /// Inferred from any other name: containing `exclu` means Exclude, else Remove. The
    /// manager says so in an Event, since a name is a weak signal.
    Name,
}

impl RoleSource {
    /// The name as written in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            RoleSource::Action => "Action",
            RoleSource::Label => "Label",
            RoleSource::EraserName => "EraserName",
            RoleSource::Name => "Name",
        }
    }
}

/// The resolved role of one list.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Role {
    /// Remove or exclude.
    pub action: ListAction,
    /// What decided it.
    pub source: RoleSource,
}

impl Role {
    /// Whether the role was guessed from the list's name (worth an Event).
    pub fn inferred_from_name(self) -> bool {
        self.source == RoleSource::Name
    }
}

/// The role of an ImageList named `name` with these labels and `spec.action` (DESIGN §3):
/// `spec.action` when given; else the label `eraser.sh/exclude.list: "true"` means Exclude;
/// else the name `imagelist` means Remove, a name containing `exclu` means Exclude, and any
/// other name means Remove.
pub fn resolve_role(
    name: &str,
    labels: Option<&BTreeMap<String, String>>,
    action: Option<ListAction>,
) -> Role {
    if let Some(action) = action {
        return Role {
            action,
            source: RoleSource::Action,
        };
    }
    let labelled = labels
        .and_then(|labels| labels.get(EXCLUDE_LIST_LABEL))
        .is_some_and(|value| value == EXCLUDE_LIST_LABEL_VALUE);
    if labelled {
        return Role {
            action: ListAction::Exclude,
            source: RoleSource::Label,
        };
    }
    if name == ERASER_IMAGE_LIST_NAME {
        return Role {
            action: ListAction::Remove,
            source: RoleSource::EraserName,
        };
    }
    let action = if name.contains(EXCLUSION_NAME_MARKER) {
        ListAction::Exclude
    } else {
        ListAction::Remove
    };
    Role {
        action,
        source: RoleSource::Name,
    }
}

/// One entry of a list that is not a valid pattern, as shown in status.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct MalformedEntry {
    /// The entry as written (cut at 256 bytes).
    pub entry: String,
    /// Why it was skipped (cut at 256 bytes).
    pub reason: String,
}

impl From<&PatternError> for MalformedEntry {
    fn from(error: &PatternError) -> MalformedEntry {
        MalformedEntry {
            entry: truncate(error.entry(), MAX_MALFORMED_TEXT_LEN),
            reason: truncate(&error.to_string(), MAX_MALFORMED_TEXT_LEN),
        }
    }
}

/// What the manager last did with this list: Eraser's four fields (timestamp, success,
/// failed, skipped), then the resolved role, malformed entries and conditions.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ImageListStatus {
    /// When the last job for this list completed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<Time>,
    /// Nodes that ran the last job successfully.
    #[serde(default)]
    pub success: i64,
    /// Nodes where the last job failed.
    #[serde(default)]
    pub failed: i64,
    /// Nodes skipped by the node filter in the last job.
    #[serde(default)]
    pub skipped: i64,
    /// The role the manager resolved for this list.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<ListAction>,
    /// What decided the role.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action_source: Option<RoleSource>,
    /// The generation of the list the manager last acted on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Entries that are not valid patterns and were skipped (at most 20 shown).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 20))]
    pub malformed: Vec<MalformedEntry>,
    /// How many entries were malformed in all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub malformed_count: Option<i64>,
    /// Conditions: `Valid`, `Applied`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
}

impl ImageListStatus {
    /// Records the resolved role.
    pub fn set_role(&mut self, role: Role) {
        self.action = Some(role.action);
        self.action_source = Some(role.source);
    }

    /// Records the malformed entries, keeping at most [`MAX_MALFORMED_ENTRIES`].
    pub fn set_malformed(&mut self, errors: &[PatternError]) {
        self.malformed = errors
            .iter()
            .take(MAX_MALFORMED_ENTRIES)
            .map(MalformedEntry::from)
            .collect();
        self.malformed_count = (!errors.is_empty()).then_some(errors.len() as i64);
    }
}

fn truncate(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn resolves_roles_in_order_of_strength() {
        use ListAction::{Exclude, Remove};
        use RoleSource::{Action, EraserName, Label, Name};
        let exclude_label = labels(&[(EXCLUDE_LIST_LABEL, "true")]);
        let false_label = labels(&[(EXCLUDE_LIST_LABEL, "false")]);
        type Case<'a> = (
            &'a str,
            Option<&'a BTreeMap<String, String>>,
            Option<ListAction>,
            Role,
        );
        let cases: Vec<Case<'_>> = vec![
            (
                "imagelist",
                None,
                None,
                Role {
                    action: Remove,
                    source: EraserName,
                },
            ),
            (
                "excluded-images",
                None,
                None,
                Role {
                    action: Exclude,
                    source: Name,
                },
            ),
            (
                "prepulled-exclusions",
                None,
                None,
                Role {
                    action: Exclude,
                    source: Name,
                },
            ),
            (
                "vulnerable-images",
                None,
                None,
                Role {
                    action: Remove,
                    source: Name,
                },
            ),
            (
                "imagelist",
                Some(&exclude_label),
                None,
                Role {
                    action: Exclude,
                    source: Label,
                },
            ),
            (
                "anything",
                Some(&exclude_label),
                None,
                Role {
                    action: Exclude,
                    source: Label,
                },
            ),
            (
                "my-exclusions",
                Some(&false_label),
                None,
                Role {
                    action: Exclude,
                    source: Name,
                },
            ),
            (
                "imagelist",
                Some(&false_label),
                None,
                Role {
                    action: Remove,
                    source: EraserName,
                },
            ),
            (
                "excluded",
                Some(&exclude_label),
                Some(Remove),
                Role {
                    action: Remove,
                    source: Action,
                },
            ),
            (
                "imagelist",
                None,
                Some(Exclude),
                Role {
                    action: Exclude,
                    source: Action,
                },
            ),
        ];
        for (name, labels, action, expected) in cases {
            assert_eq!(resolve_role(name, labels, action), expected, "{name}");
        }
        assert!(resolve_role("excluded-images", None, None).inferred_from_name());
        assert!(!resolve_role("imagelist", None, None).inferred_from_name());
    }

    #[test]
    fn malformed_entries_are_bounded() {
        let errors: Vec<PatternError> = (0..30)
            .map(|i| {
                "x*y"
                    .repeat(i + 1)
                    .parse::<image_cleaner_core::Pattern>()
                    .expect_err("malformed")
            })
            .collect();
        let mut status = ImageListStatus::default();
        status.set_malformed(&errors);
        assert_eq!(status.malformed.len(), MAX_MALFORMED_ENTRIES);
        assert_eq!(status.malformed_count, Some(30));
        assert_eq!(status.malformed[0].entry, "x*y");
        assert!(status.malformed[0].reason.contains("x*y"));
        status.set_malformed(&[]);
        assert!(status.malformed.is_empty());
        assert_eq!(status.malformed_count, None);
    }

    #[test]
    fn long_text_is_cut_on_a_character_boundary() {
        let long = "é".repeat(200);
        let cut = truncate(&long, MAX_MALFORMED_TEXT_LEN);
        assert!(cut.len() <= MAX_MALFORMED_TEXT_LEN + "…".len());
        assert!(cut.ends_with('…'));
    }

    #[test]
    fn eraser_status_reads_without_our_fields() {
        let status: ImageListStatus = serde_json::from_str(
            r#"{"timestamp":"2024-01-02T03:04:05Z","success":3,"failed":0,"skipped":1}"#,
        )
        .expect("parses");
        assert_eq!((status.success, status.failed, status.skipped), (3, 0, 1));
        assert!(status.timestamp.is_some());
        assert_eq!(status.action, None);
    }
}
