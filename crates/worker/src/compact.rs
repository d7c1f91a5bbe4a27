//! The node engine's report, reduced to the worker's termination message.

use image_cleaner_core::Reason;
use image_cleaner_node::Report;
use image_cleaner_protocol::{Failure, PROTOCOL_VERSION, ReportOutcome, WorkerReport};

/// The compact report of a finished run; `scanned` says whether vulnerable counts mean
/// anything.
pub fn compact(report: &Report, scanned: bool) -> WorkerReport {
    let summary = &report.summary;
    let failures: Vec<Failure> = report
        .images
        .iter()
        .filter_map(|image| {
            image.error.as_ref().map(|error| Failure {
                image: image
                    .names
                    .first()
                    .cloned()
                    .unwrap_or_else(|| image.id.clone()),
                error: error.clone(),
            })
        })
        .collect();
    let vulnerable = report
        .images
        .iter()
        .filter(|image| image.reason == Reason::Vulnerable)
        .count() as u64;
    WorkerReport {
        version: PROTOCOL_VERSION,
        node: report.node.clone(),
        outcome: if summary.failed > 0 {
            ReportOutcome::Partial
        } else {
            ReportOutcome::Succeeded
        },
        images: summary.images as u64,
        removed: summary.removed as u64,
        failed: summary.failed as u64,
        freed_bytes: summary.freed_bytes,
        vulnerable: scanned.then_some(vulnerable),
        stale_database_age: None,
        kept: report
            .kept_by_reason()
            .into_iter()
            .map(|(reason, count)| (reason.as_str().to_owned(), count as u64))
            .collect(),
        error: None,
        failures,
        truncated: false,
    }
}

#[cfg(test)]
mod tests {
    use image_cleaner_core::Decision;
    use image_cleaner_node::{ImageReport, RuntimeInfo, Summary};

    use super::*;

    fn image(name: &str, reason: Reason, removed: bool, error: Option<&str>) -> ImageReport {
        ImageReport {
            id: format!("sha256:{name}"),
            names: vec![name.to_owned()],
            digests: vec![],
            size_bytes: 10,
            reclaimable_bytes: Some(5),
            decision: reason.decision(),
            reason,
            removed,
            error: error.map(str::to_owned),
            vulnerabilities: vec![],
        }
    }

    #[test]
    fn counts_kept_reasons_and_failures() {
        let report = Report {
            node: "n1".into(),
            runtime: RuntimeInfo {
                name: "containerd".into(),
                version: "1.6".into(),
                endpoint: "unix:///run/cri/cri.sock".into(),
            },
            images: vec![
                image("a", Reason::Running, false, None),
                image("b", Reason::Excluded, false, None),
                image("c", Reason::Unused, true, None),
                image("d", Reason::Unused, false, Some("rpc error")),
            ],
            summary: Summary {
                images: 4,
                remove: 2,
                keep: 2,
                removed: 1,
                failed: 1,
                reclaimable_bytes: Some(10),
                freed_bytes: 5,
            },
        };
        let compact = compact(&report, false);
        assert_eq!(compact.outcome, ReportOutcome::Partial);
        assert_eq!(
            (compact.removed, compact.failed, compact.freed_bytes),
            (1, 1, 5)
        );
        assert_eq!(compact.kept.get("running"), Some(&1));
        assert_eq!(compact.kept.get("excluded"), Some(&1));
        assert_eq!(compact.failures.len(), 1);
        assert_eq!(compact.failures[0].image, "d");
        assert_eq!(compact.vulnerable, None);
        assert_eq!(Decision::Keep, Reason::Running.decision());
    }
}
