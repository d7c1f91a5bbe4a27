//! The removal policy: a pure function from what a node holds to one decision per image.
//!
//! All safety rules live here, in one precedence order, so they can be property-tested without
//! a runtime or a cluster. Carrying the plan out (and re-checking each image just before its
//! removal) belongs to the caller.

use std::collections::BTreeMap;
use std::fmt;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use crate::inventory::{Image, ImageId, ImageIndex, Inventory, Resolution};
use crate::pattern::PatternSet;
use crate::usage::{self, LastSeen};

/// Why an image is kept or removed. Exactly one per image; the order of the variants is the
/// order in which they are checked, first the reasons to keep.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Reason {
    /// A running container uses it.
    Running,
    /// It is the runtime's sandbox (pause) image.
    Sandbox,
    /// The runtime pins it.
    Pinned,
    /// An exclusion pattern matches it.
    Excluded,
    /// A live pod on the node names it.
    Referenced,
    /// It was used more recently than the minimum unused age.
    Recent,
    /// An explicit removal list is in force and does not name it.
    NotListed,
    /// Nothing uses it and it has been unused long enough.
    Unused,
    /// An explicit removal list names it.
    Listed,
    /// A scan found vulnerabilities that condemn it.
    Vulnerable,
}

impl Reason {
    /// Every reason, in precedence order.
    pub const ALL: [Reason; 10] = [
        Reason::Running,
        Reason::Sandbox,
        Reason::Pinned,
        Reason::Excluded,
        Reason::Referenced,
        Reason::Recent,
        Reason::NotListed,
        Reason::Unused,
        Reason::Listed,
        Reason::Vulnerable,
    ];

    /// Stable name for reports and metric labels.
    pub fn as_str(&self) -> &'static str {
        match self {
            Reason::Running => "running",
            Reason::Sandbox => "sandbox",
            Reason::Pinned => "pinned",
            Reason::Excluded => "excluded",
            Reason::Referenced => "referenced",
            Reason::Recent => "recent",
            Reason::NotListed => "not-listed",
            Reason::Unused => "unused",
            Reason::Listed => "listed",
            Reason::Vulnerable => "vulnerable",
        }
    }

    /// What this reason decides.
    pub fn decision(&self) -> Decision {
        match self {
            Reason::Running
            | Reason::Sandbox
            | Reason::Pinned
            | Reason::Excluded
            | Reason::Referenced
            | Reason::Recent
            | Reason::NotListed => Decision::Keep,
            Reason::Unused | Reason::Listed | Reason::Vulnerable => Decision::Remove,
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Keep or remove.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Decision {
    /// Leave the image.
    Keep,
    /// Remove the image.
    Remove,
}

impl Decision {
    /// `keep` or `remove`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Decision::Keep => "keep",
            Decision::Remove => "remove",
        }
    }
}

impl fmt::Display for Decision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Images named by non-terminal pods bound to this node (init, regular and ephemeral
/// containers), as the pods wrote them; resolved against the inventory when planning.
#[derive(Clone, Debug, Default)]
pub struct References(Vec<String>);

impl References {
    /// Collects image strings, in any form a pod spec may hold.
    pub fn new(references: impl IntoIterator<Item = impl Into<String>>) -> Self {
        References(references.into_iter().map(Into::into).collect())
    }

    /// The strings as given.
    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(String::as_str)
    }

    /// Number of strings.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl FromIterator<String> for References {
    fn from_iter<T: IntoIterator<Item = String>>(iter: T) -> Self {
        References(iter.into_iter().collect())
    }
}

/// What the operator configured.
#[derive(Clone, Debug)]
pub struct Policy {
    /// Images never to remove (an [`crate::ListKind::Exclusion`] set).
    pub exclusions: PatternSet,
    /// `Some` = explicit removal list mode: the listed images go regardless of references and
    /// age. `None` = scheduled mode.
    pub removal: Option<PatternSet>,
    /// How long an image must have been unused before a scheduled run removes it.
    pub min_unused: Duration,
}

/// Everything a plan is computed from.
#[derive(Clone, Copy, Debug)]
pub struct PlanInput<'a> {
    /// What the runtime holds.
    pub inventory: &'a Inventory,
    /// Images named by live pods on the node.
    pub references: &'a References,
    /// When the cleaner last saw each image in use.
    pub last_seen: &'a LastSeen,
    /// Image → IDs of the vulnerabilities that condemn it; empty when nothing was scanned.
    pub vulnerable: &'a BTreeMap<ImageId, Vec<String>>,
    /// The time the plan is made at.
    pub now: SystemTime,
}

/// The decision on one image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlanEntry {
    /// The image.
    pub image: Image,
    /// Why it is kept or removed.
    pub reason: Reason,
    /// Its last known use, if any.
    pub last_used: Option<SystemTime>,
    /// The pattern that excluded or listed it, or the vulnerability IDs joined by `,`.
    pub matched: Option<String>,
}

impl PlanEntry {
    /// Keep or remove.
    pub fn decision(&self) -> Decision {
        self.reason.decision()
    }
}

/// One entry per inventory image, in inventory order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// The decisions.
    pub entries: Vec<PlanEntry>,
}

impl Plan {
    /// Entries to remove.
    pub fn to_remove(&self) -> impl Iterator<Item = &PlanEntry> {
        self.entries
            .iter()
            .filter(|entry| entry.decision() == Decision::Remove)
    }

    /// Entries to keep.
    pub fn kept(&self) -> impl Iterator<Item = &PlanEntry> {
        self.entries
            .iter()
            .filter(|entry| entry.decision() == Decision::Keep)
    }

    /// Bytes the removals free, counting images whose layers are unknown as 0.
    pub fn reclaimable_bytes(&self) -> u64 {
        self.to_remove()
            .map(|entry| entry.image.reclaimable_bytes.unwrap_or(0))
            .fold(0, u64::saturating_add)
    }

    /// Number of entries per reason.
    pub fn count_by_reason(&self) -> BTreeMap<Reason, usize> {
        let mut counts = BTreeMap::new();
        for entry in &self.entries {
            *counts.entry(entry.reason).or_default() += 1;
        }
        counts
    }
}

/// Pure: same input, same plan. Exactly one reason per image; entries in inventory image order.
///
/// First that applies: Running, Sandbox, Pinned, Excluded. Then with a removal list: Listed,
/// Vulnerable, NotListed. In a scheduled run: Vulnerable, Referenced, Recent, Unused. An image
/// with no known last use is not recent.
pub fn plan(input: &PlanInput<'_>, policy: &Policy) -> Plan {
    let inventory = input.inventory;
    let index = ImageIndex::new(inventory);
    let running = usage::running_mask(&index, inventory);
    let sandbox = usage::sandbox_mask(&index, inventory);
    let last_used = usage::last_use_per_image(&index, inventory, input.last_seen);
    let mut referenced = vec![false; inventory.images.len()];
    for reference in input.references.iter() {
        usage::mark(&mut referenced, index.positions(reference, Resolution::All));
    }

    let decide = |position: usize, image: &Image| -> (Reason, Option<String>) {
        if running[position] {
            return (Reason::Running, None);
        }
        if sandbox[position] {
            return (Reason::Sandbox, None);
        }
        if image.pinned {
            return (Reason::Pinned, None);
        }
        let parsed = index.parsed(position);
        if let Some(pattern) = policy.exclusions.matches_parsed(image, parsed) {
            return (Reason::Excluded, Some(pattern.to_string()));
        }
        let vulnerable = input
            .vulnerable
            .get(&image.id)
            .map(|ids| (!ids.is_empty()).then(|| ids.join(",")));
        if let Some(removal) = &policy.removal {
            if let Some(pattern) = removal.matches_parsed(image, parsed) {
                return (Reason::Listed, Some(pattern.to_string()));
            }
            if let Some(ids) = vulnerable {
                return (Reason::Vulnerable, ids);
            }
            return (Reason::NotListed, None);
        }
        if let Some(ids) = vulnerable {
            return (Reason::Vulnerable, ids);
        }
        if referenced[position] {
            return (Reason::Referenced, None);
        }
        let recent = last_used[position].is_some_and(|used| {
            // A use "in the future" (clock skew) counts as just now.
            let age = input.now.duration_since(used).unwrap_or(Duration::ZERO);
            age < policy.min_unused
        });
        if recent {
            return (Reason::Recent, None);
        }
        (Reason::Unused, None)
    };

    let entries = inventory
        .images
        .iter()
        .enumerate()
        .map(|(position, image)| {
            let (reason, matched) = decide(position, image);
            PlanEntry {
                image: image.clone(),
                reason,
                last_used: last_used[position],
                matched,
            }
        })
        .collect();
    Plan { entries }
}

#[cfg(test)]
mod tests;
