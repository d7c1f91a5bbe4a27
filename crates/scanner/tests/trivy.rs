//! The Trivy plug-in: a recorded Trivy JSON report (schema version 2, as Trivy documents its
//! JSON output) maps to the same findings the native scanner reports, and a missing or
//! failing `trivy` is a clear error for that image.

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::time::Duration;

use image_cleaner_scanner::trivy::{Target, Trivy, parse_report};
use image_cleaner_scanner::{Family, ScanPolicy, Severity, Status};

const REPORT: &[u8] = include_bytes!("data/trivy-debian12.json");

#[test]
fn maps_a_recorded_report() {
    let scan = parse_report("registry.example/app:1.0", REPORT).unwrap();
    let os = scan.os.as_ref().unwrap();
    assert_eq!(
        (os.family, os.release()),
        (Family::Debian, "12".to_string())
    );
    assert_eq!(scan.end_of_life, Some(false));
    assert_eq!(scan.findings.len(), 3);
    let zlib = scan
        .findings
        .iter()
        .find(|f| f.vulnerability_id == "CVE-2023-45853")
        .unwrap();
    assert_eq!(zlib.package, "zlib1g");
    assert_eq!(zlib.severity, Severity::Critical);
    assert_eq!(zlib.status, Status::WillNotFix);
    assert_eq!(zlib.fixed_version, None);
    let glibc = scan
        .findings
        .iter()
        .find(|f| f.vulnerability_id == "CVE-2023-4911")
        .unwrap();
    assert_eq!(glibc.fixed_version.as_deref(), Some("2.36-9+deb12u3"));
    assert_eq!(
        (glibc.severity, glibc.status),
        (Severity::High, Status::Fixed)
    );

    // Default policy (CRITICAL, HIGH): both count; the LOW apt finding does not.
    let ids = scan.condemning_ids(&ScanPolicy::default());
    assert_eq!(ids, ["CVE-2023-45853", "CVE-2023-4911"]);
    // ignoreUnfixed drops the will_not_fix zlib finding; ignoredStatuses likewise.
    let unfixed = ScanPolicy {
        ignore_unfixed: true,
        ..ScanPolicy::default()
    };
    assert_eq!(scan.condemning_ids(&unfixed), ["CVE-2023-4911"]);
    let ignored = ScanPolicy {
        ignored_statuses: [Status::WillNotFix].into(),
        ..ScanPolicy::default()
    };
    assert_eq!(scan.condemning_ids(&ignored), ["CVE-2023-4911"]);
}

#[test]
fn output_that_is_not_a_report_is_an_error() {
    let err = parse_report("app:1", b"FATAL unable to initialize").unwrap_err();
    assert!(err.to_string().contains("app:1"), "{err}");
}

#[test]
fn missing_trivy_is_a_clear_error_for_that_image() {
    let trivy = Trivy {
        binary: "/nonexistent/bin/trivy".into(),
        ..Trivy::default()
    };
    let err = trivy
        .scan(&Target::Rootfs(Path::new("/tmp")))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("/nonexistent/bin/trivy") && err.contains("not found"),
        "{err}"
    );
    assert!(err.contains("/tmp"), "names the target: {err}");
}

fn script(dir: &Path, body: &str) -> std::path::PathBuf {
    let path = dir.join("trivy");
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

#[test]
fn failing_trivy_reports_its_exit_and_last_error_line() {
    let dir = tempfile::tempdir().unwrap();
    let trivy = Trivy {
        binary: script(
            dir.path(),
            "echo 'INFO downloading DB' >&2; echo 'FATAL TOOMANYREQUESTS: retry-after: 1s' >&2; exit 1",
        ),
        ..Trivy::default()
    };
    let err = trivy
        .scan(&Target::Archive(Path::new("/tmp/image.tar")))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("TOOMANYREQUESTS") && err.contains("exit"),
        "{err}"
    );
}

#[test]
fn hung_trivy_times_out() {
    let dir = tempfile::tempdir().unwrap();
    let trivy = Trivy {
        binary: script(dir.path(), "exec sleep 30"),
        timeout: Duration::from_millis(300),
        ..Trivy::default()
    };
    let err = trivy
        .scan(&Target::Rootfs(Path::new("/tmp")))
        .unwrap_err()
        .to_string();
    assert!(err.contains("did not finish"), "{err}");
}

#[test]
fn arguments_reach_trivy_and_its_report_is_mapped() {
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("report.json");
    std::fs::write(&report, REPORT).unwrap();
    let args = dir.path().join("args");
    let trivy = Trivy {
        binary: script(
            dir.path(),
            &format!(
                "echo \"$@\" > {}; echo \"$CONTAINERD_NAMESPACE\" >> {}; cat {}",
                args.display(),
                args.display(),
                report.display()
            ),
        ),
        extra_args: vec!["--skip-db-update".into()],
        ..Trivy::default()
    };
    let scan = trivy
        .scan(&Target::ContainerdImage {
            image: "sha256:abc",
            address: Path::new("/run/containerd/containerd.sock"),
        })
        .unwrap();
    assert_eq!(scan.findings.len(), 3);
    let seen = std::fs::read_to_string(&args).unwrap();
    assert!(
        seen.starts_with("image --image-src containerd sha256:abc --format json"),
        "{seen}"
    );
    assert!(
        seen.contains("--skip-db-update") && seen.contains("k8s.io"),
        "{seen}"
    );
}
