//! Deciding whether an installed version falls in an advisory's affected ranges, the way
//! the OSV schema defines range evaluation: walk a range's events in version order,
//! `introduced` switches "affected" on, `fixed`/`limit` switch it off at that version,
//! `last_affected` switches it off just after; explicit versions match exactly.

use std::cmp::Ordering;

use crate::db::Stored;
use crate::db::osv::EventKind;

/// How an advisory applies to an installed version.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Applies {
    /// The first fixed version above the installed one, if the record names one.
    pub fixed: Option<String>,
}

/// `Some` when `version` is affected by `advisory`.
pub fn applies(advisory: &Stored, version: &str) -> Option<Applies> {
    let scheme = advisory.scheme;
    let cmp = |a: &str, b: &str| scheme.compare(a, b);
    let mut ranges: Vec<u16> = advisory.events.iter().map(|e| e.range).collect();
    ranges.dedup();
    for range in ranges {
        let events = advisory.events.iter().filter(|e| e.range == range);
        if range == u16::MAX {
            if events.clone().any(|e| {
                e.kind == EventKind::Version && cmp(version, &e.version) == Ordering::Equal
            }) {
                return Some(Applies { fixed: None });
            }
            continue;
        }
        let mut affected = false;
        let mut fixed: Option<&str> = None;
        for e in events {
            match e.kind {
                EventKind::Introduced => {
                    if e.version == "0" || cmp(version, &e.version) != Ordering::Less {
                        affected = true;
                        fixed = None;
                    }
                }
                EventKind::Fixed | EventKind::Limit => {
                    if cmp(version, &e.version) != Ordering::Less {
                        affected = false;
                    } else if affected && fixed.is_none() && e.kind == EventKind::Fixed {
                        fixed = Some(&e.version);
                    }
                }
                EventKind::LastAffected => {
                    if cmp(version, &e.version) == Ordering::Greater {
                        affected = false;
                    }
                }
                EventKind::Version => {}
            }
        }
        if affected {
            return Some(Applies {
                fixed: fixed.map(str::to_string),
            });
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::osv::Event;
    use crate::finding::Severity;
    use crate::version::Scheme;

    fn advisory(events: &[(u16, EventKind, &str)]) -> Stored {
        Stored {
            record_id: "X".into(),
            vulnerability_id: "CVE-1".into(),
            title: String::new(),
            severity: Severity::High,
            status: None,
            scheme: Scheme::Debian,
            events: events
                .iter()
                .map(|(r, k, v)| Event {
                    range: *r,
                    kind: *k,
                    version: v.to_string(),
                })
                .collect(),
        }
    }

    #[test]
    fn ranges() {
        use EventKind::*;
        let fixed = advisory(&[(0, Introduced, "0"), (0, Fixed, "1:1.2.13.dfsg-1+deb12u1")]);
        assert_eq!(
            applies(&fixed, "1:1.2.13.dfsg-1"),
            Some(Applies {
                fixed: Some("1:1.2.13.dfsg-1+deb12u1".into())
            })
        );
        assert_eq!(applies(&fixed, "1:1.2.13.dfsg-1+deb12u1"), None);
        let unfixed = advisory(&[(0, Introduced, "0")]);
        assert_eq!(applies(&unfixed, "1.0"), Some(Applies { fixed: None }));
        let window = advisory(&[(0, Introduced, "2.0"), (0, LastAffected, "2.5")]);
        assert!(applies(&window, "1.9").is_none());
        assert!(applies(&window, "2.5").is_some());
        assert!(applies(&window, "2.6").is_none());
        let two = advisory(&[
            (0, Introduced, "1.0"),
            (0, Fixed, "1.5"),
            (0, Introduced, "2.0"),
            (0, Fixed, "2.3"),
        ]);
        assert!(applies(&two, "1.7").is_none());
        assert_eq!(applies(&two, "2.1").unwrap().fixed.as_deref(), Some("2.3"));
        let exact = advisory(&[(u16::MAX, Version, "3.0-1")]);
        assert!(applies(&exact, "3.0-1").is_some());
        assert!(applies(&exact, "3.0-2").is_none());
    }
}
