//! What operators read: an aligned table with human sizes and a summary, or the JSON report.

use std::io::{self, Write};

use comfy_table::{CellAlignment, ColumnConstraint, ContentArrangement, Table, presets};
use humansize::{BINARY, FormatSizeOptions, format_size};
use image_cleaner_core::Decision;
use image_cleaner_node::{ImageReport, Report};

/// `12.3 MiB`.
pub fn bytes(n: u64) -> String {
    let options = FormatSizeOptions::from(BINARY).decimal_places(1);
    format_size(n, options)
}

/// The JSON report, one document, pretty-printed.
pub fn json(report: &Report) -> io::Result<()> {
    let mut out = io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, report)?;
    writeln!(out)
}

/// The table and summary. `executed` is `None` for a plan, `Some(dry_run)` after a clean.
pub fn table(report: &Report, executed: Option<bool>) -> io::Result<()> {
    let mut out = io::stdout().lock();
    let mut table = Table::new();
    table
        .load_preset(presets::NOTHING)
        .set_content_arrangement(ContentArrangement::Disabled)
        .set_header(["IMAGE", "ID", "SIZE", "RECLAIMABLE", "ACTION", "REASON"]);
    for image in &report.images {
        table.add_row([
            display_name(image),
            short_id(&image.id).to_string(),
            bytes(image.size_bytes),
            image
                .reclaimable_bytes
                .map_or_else(|| "unknown".to_string(), bytes),
            action(image, executed).to_string(),
            image.reason.as_str().to_string(),
        ]);
    }
    for column in table.column_iter_mut() {
        column.set_padding((0, 2));
    }
    for index in [2, 3] {
        if let Some(column) = table.column_mut(index) {
            column.set_cell_alignment(CellAlignment::Right);
        }
    }
    if let Some(column) = table.column_mut(0) {
        column.set_constraint(ColumnConstraint::ContentWidth);
    }
    // Columns are padded on the right only; the last one leaves trailing spaces.
    for line in table.lines() {
        writeln!(out, "{}", line.trim_end())?;
    }
    writeln!(out)?;
    for image in report.images.iter().filter(|i| i.error.is_some()) {
        writeln!(
            out,
            "failed: {} ({}): {}",
            display_name(image),
            short_id(&image.id),
            image.error.as_deref().unwrap_or_default()
        )?;
    }
    writeln!(out, "{}", summary(report, executed))
}

fn summary(report: &Report, executed: Option<bool>) -> String {
    let s = &report.summary;
    let kept: Vec<String> = report
        .kept_by_reason()
        .into_iter()
        .map(|(reason, n)| format!("{} {n}", reason.as_str()))
        .collect();
    let kept = if kept.is_empty() {
        String::new()
    } else {
        format!(" ({})", kept.join(", "))
    };
    let reclaimable = s.reclaimable_bytes.map_or_else(
        || "an unknown amount (the runtime does not tell layers)".to_string(),
        bytes,
    );
    let node = format!(
        "{} on {} {} at {}",
        report.node, report.runtime.name, report.runtime.version, report.runtime.endpoint
    );
    match executed {
        None if s.remove == 0 => format!(
            "{node}: {} images, nothing to remove, {} kept{kept}.",
            s.images, s.keep
        ),
        None => format!(
            "{node}: {} images, {} to remove, {} kept{kept}. Removing them would free {reclaimable}.",
            s.images, s.remove, s.keep
        ),
        Some(true) => format!(
            "{node}: dry run, nothing removed. {} of {} images would be removed, freeing {reclaimable}; {} kept{kept}.",
            s.remove, s.images, s.keep
        ),
        Some(false) => {
            let failed = if s.failed > 0 {
                format!(" {} removals FAILED (see above).", s.failed)
            } else {
                String::new()
            };
            format!(
                "{node}: removed {} of {} images planned; freed {} (planned {reclaimable}); {} kept{kept}.{failed}",
                s.removed,
                s.remove,
                bytes(s.freed_bytes),
                s.keep
            )
        }
    }
}

fn action(image: &ImageReport, executed: Option<bool>) -> &'static str {
    match (image.decision, executed) {
        (Decision::Keep, _) => "keep",
        (Decision::Remove, None) => "remove",
        (Decision::Remove, Some(true)) => "would remove",
        (Decision::Remove, Some(false)) if image.removed => "removed",
        (Decision::Remove, Some(false)) => "FAILED",
    }
}

fn display_name(image: &ImageReport) -> String {
    let first = match (image.names.first(), image.digests.first()) {
        (Some(name), _) => name.clone(),
        // A digest-only image: the repository and a digest prefix, as long as the ID column.
        (None, Some(digest)) => match digest.split_once("@sha256:") {
            Some((repo, hex)) => format!("{repo}@sha256:{}", hex.get(..12).unwrap_or(hex)),
            None => digest.clone(),
        },
        (None, None) => "<none>".to_string(),
    };
    match image.names.len() {
        0 | 1 => first,
        n => format!("{first} (+{} more)", n - 1),
    }
}

fn short_id(id: &str) -> &str {
    let hex = id.strip_prefix("sha256:").unwrap_or(id);
    hex.get(..12).unwrap_or(hex)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_are_human() {
        assert_eq!(bytes(0), "0 B");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(bytes(12_897_485), "12.3 MiB");
    }

    fn image(names: &[&str], digests: &[&str]) -> ImageReport {
        serde_json::from_value(serde_json::json!({
            "id": "sha256:00", "names": names, "digests": digests, "size_bytes": 0,
            "reclaimable_bytes": null, "decision": "keep", "reason": "running",
            "removed": false, "error": null
        }))
        .unwrap()
    }

    #[test]
    fn names_show_aliases_and_shortened_digests() {
        assert_eq!(
            display_name(&image(&["a:1", "a:2", "b:1"], &[])),
            "a:1 (+2 more)"
        );
        let digest = format!("r.io/x@sha256:{}", "ab".repeat(32));
        assert_eq!(
            display_name(&image(&[], &[&digest])),
            "r.io/x@sha256:abababababab"
        );
        assert_eq!(display_name(&image(&[], &[])), "<none>");
    }

    #[test]
    fn short_ids_drop_the_algorithm() {
        assert_eq!(short_id("sha256:0123456789abcdef"), "0123456789ab");
        assert_eq!(short_id("abc"), "abc");
    }
}
