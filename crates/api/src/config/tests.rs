//! Table-driven tests of reading, checking and writing the config.

use std::collections::BTreeMap;

use super::*;

/// Eraser's shipped ConfigMap content (`deploy/eraser.yaml`), verbatim.
const ERASER_SHIPPED: &str = r#"apiVersion: eraser.sh/v1alpha3
kind: EraserConfig
manager:
  runtime:
    name: containerd
    address: unix:///run/containerd/containerd.sock
  otlpEndpoint: ""
  logLevel: info
  scheduling:
    repeatInterval: 24h
    beginImmediately: true
  profile:
    enabled: false
    port: 6060
  imageJob:
    successRatio: 1.0
    cleanup:
      delayOnSuccess: 0s
      delayOnFailure: 24h
  pullSecrets: [] # image pull secrets for collector/scanner/eraser
  priorityClassName: "" # priority class name for collector/scanner/eraser
  additionalPodLabels: {}
  nodeFilter:
    type: exclude # must be either exclude|include
    selectors:
      - eraser.sh/cleanup.filter
      - kubernetes.io/os=windows
components:
  collector:
    enabled: true
    image: {repo: ghcr.io/eraser-dev/collector, tag: v1.5.0-beta.0}
    request: {mem: 25Mi, cpu: 7m}
    limit: {mem: 500Mi, cpu: 0}
  scanner:
    enabled: true
    image: {repo: ghcr.io/eraser-dev/eraser-trivy-scanner, tag: v1.5.0-beta.0}
    request: {mem: 500Mi, cpu: 1000m}
    limit: {mem: 2Gi, cpu: 0}
    config: |
      cacheDir: /var/lib/trivy
      dbRepo: ghcr.io/aquasecurity/trivy-db
      deleteFailedImages: true
      deleteEOLImages: true
      vulnerabilities:
        ignoreUnfixed: false
        types: [os, library]
        securityChecks: [vuln]
        severities: [CRITICAL, HIGH, MEDIUM, LOW]
        ignoredStatuses:
      timeout:
        total: 23h
        perImage: 1h
    volumes: []
  remover:
    image: {repo: ghcr.io/eraser-dev/remover, tag: v1.5.0-beta.0}
    request: {mem: 25Mi, cpu: 0}
    limit: {mem: 30Mi, cpu: 0}
"#;

fn parse(text: &str) -> Parsed {
    match Config::from_yaml(text) {
        Ok(parsed) => parsed,
        Err(errors) => panic!("{errors}\n--- in ---\n{text}"),
    }
}

fn errors(text: &str) -> Vec<String> {
    match Config::from_yaml(text) {
        Ok(parsed) => panic!(
            "expected errors, got {:?}\n--- in ---\n{text}",
            parsed.config
        ),
        Err(errors) => errors.errors.iter().map(ToString::to_string).collect(),
    }
}

fn warnings(parsed: &Parsed) -> Vec<String> {
    parsed.warnings.iter().map(ToString::to_string).collect()
}

/// The warning for a scanner turned on without a database.
const NO_DATABASE: &str = "components.scanner.config: the scanner is enabled but names no vulnerability database: images will not be scanned (set db with path, configMap or url, or engine: trivy)";

fn v1alpha3(body: &str) -> String {
    format!("apiVersion: eraser.sh/v1alpha3\nkind: EraserConfig\n{body}")
}

fn q(text: &str) -> Option<Quantity> {
    Some(Quantity(text.to_owned()))
}

#[test]
fn eraser_shipped_config_reads_cleanly() {
    let parsed = parse(ERASER_SHIPPED);
    // Eraser's config turns its Trivy scanner on; the native scanner needs a database named.
    assert_eq!(warnings(&parsed), [NO_DATABASE]);
    assert_eq!(parsed.api_version, ApiVersion::V1alpha3);
    let config = &parsed.config;
    let manager = &config.manager;
    assert_eq!(manager.runtime, RuntimeSpec::default());
    assert_eq!(
        manager.scheduling.repeat_interval,
        GoDuration::from_hours(24)
    );
    assert!(manager.scheduling.begin_immediately);
    assert_eq!(manager.image_job.success_ratio, 1.0);
    assert_eq!(manager.image_job.cleanup.delay_on_success, GoDuration::ZERO);
    assert_eq!(
        manager.image_job.cleanup.delay_on_failure,
        GoDuration::from_hours(24)
    );
    let selectors: Vec<_> = manager
        .node_filter
        .selectors
        .iter()
        .map(|s| s.as_str())
        .collect();
    assert_eq!(
        selectors,
        ["eraser.sh/cleanup.filter", "kubernetes.io/os=windows"]
    );
    let components = &config.components;
    assert!(components.collector.enabled);
    assert!(components.scanner.enabled);
    assert_eq!(
        components.collector.container.image.repo.as_deref(),
        Some("ghcr.io/eraser-dev/collector")
    );
    assert_eq!(components.scanner.container.limit.cpu, q("0"));
    assert_eq!(
        components.remover.request,
        ResourceConfig {
            mem: q("25Mi"),
            cpu: q("0")
        }
    );
    let scanner = &components.scanner.config;
    assert!(
        scanner.delete_failed_images,
        "the shipped config says true explicitly"
    );
    assert!(scanner.delete_eol_images);
    assert_eq!(
        scanner.vulnerabilities.severities,
        [
            Severity::Critical,
            Severity::High,
            Severity::Medium,
            Severity::Low
        ]
    );
    assert!(scanner.vulnerabilities.ignored_statuses.is_empty());
    assert_eq!(scanner.timeout.total, GoDuration::from_hours(23));
    assert_eq!(scanner.timeout.per_image, GoDuration::from_hours(1));
}

#[test]
fn an_empty_config_is_eraser_go_defaults() {
    for version in ApiVersion::ALL {
        let parsed = parse(&format!("apiVersion: {version}\nkind: EraserConfig\n"));
        assert_eq!(parsed.config, Config::default(), "{version}");
        assert!(parsed.warnings.is_empty());
    }
    // eraser.md §3.3, Go defaults column.
    let config = Config::default();
    let manager = &config.manager;
    assert_eq!(manager.runtime.name, RuntimeName::Containerd);
    assert_eq!(
        manager.runtime.address.url(),
        "unix:///run/containerd/containerd.sock"
    );
    assert_eq!(manager.otlp_endpoint, "");
    assert_eq!(manager.log_level, "info");
    assert_eq!(manager.scheduling.repeat_interval.to_string(), "24h");
    assert!(manager.scheduling.begin_immediately);
    assert_eq!(
        manager.profile,
        ProfileConfig {
            enabled: false,
            port: 6060
        }
    );
    assert_eq!(manager.image_job.success_ratio, 1.0);
    assert_eq!(manager.image_job.cleanup.delay_on_success.to_string(), "0s");
    assert_eq!(
        manager.image_job.cleanup.delay_on_failure.to_string(),
        "24h"
    );
    assert!(manager.pull_secrets.is_empty());
    assert_eq!(manager.priority_class_name, "");
    assert!(manager.additional_pod_labels.is_empty());
    assert_eq!(manager.node_filter.filter_type, NodeFilterType::Exclude);
    assert_eq!(manager.node_filter.selectors.len(), 1);
    assert_eq!(
        manager.node_filter.selectors[0].as_str(),
        "eraser.sh/cleanup.filter"
    );
    let components = &config.components;
    assert!(!components.collector.enabled);
    assert_eq!(
        (
            &components.collector.container.request,
            &components.collector.container.limit
        ),
        (
            &ResourceConfig {
                mem: q("25Mi"),
                cpu: q("7m")
            },
            &ResourceConfig {
                mem: q("500Mi"),
                cpu: None
            }
        )
    );
    assert!(!components.scanner.enabled);
    assert_eq!(
        (
            &components.scanner.container.request,
            &components.scanner.container.limit
        ),
        (
            &ResourceConfig {
                mem: q("500Mi"),
                cpu: q("1000m")
            },
            &ResourceConfig {
                mem: q("2Gi"),
                cpu: q("1500m")
            }
        )
    );
    assert_eq!(
        (&components.remover.request, &components.remover.limit),
        (
            &ResourceConfig {
                mem: q("25Mi"),
                cpu: q("7m")
            },
            &ResourceConfig {
                mem: q("30Mi"),
                cpu: None
            }
        )
    );
    // Image Cleaner's deliberate differences in the scanner's defaults.
    let scanner = &components.scanner.config;
    assert!(!scanner.delete_failed_images);
    assert_eq!(
        scanner.vulnerabilities.severities,
        [Severity::Critical, Severity::High]
    );
    assert_eq!(scanner.vulnerabilities.types, ["os", "library"]);
    assert_eq!(scanner.engine, ScanEngine::Native);
    assert_eq!(scanner.db, None);
    // The minimum unused age follows the repeat interval unless set.
    assert_eq!(manager.scheduling.min_unused(), GoDuration::from_hours(24));
}

#[test]
fn older_versions_convert_to_the_newest_form() {
    let v1alpha1 = parse(
        "apiVersion: eraser.sh/v1alpha1
kind: EraserConfig
manager:
  runtime: crio
  scheduling: {repeatInterval: 12h}
components:
  eraser:
    image: {repo: example.com/remover, tag: v1}
    request: {mem: 40Mi}
",
    );
    assert_eq!(v1alpha1.api_version, ApiVersion::V1alpha1);
    assert!(v1alpha1.warnings.is_empty(), "{:?}", warnings(&v1alpha1));
    let config = &v1alpha1.config;
    assert_eq!(config.manager.runtime.name, RuntimeName::Crio);
    assert_eq!(
        config.manager.runtime.address.url(),
        "unix:///run/crio/crio.sock"
    );
    assert_eq!(
        config.manager.scheduling.repeat_interval,
        GoDuration::from_hours(12)
    );
    assert_eq!(
        config.components.remover.image.repo.as_deref(),
        Some("example.com/remover")
    );
    assert_eq!(config.components.remover.request.mem, q("40Mi"));
    assert_eq!(
        config.components.remover.request.cpu,
        q("7m"),
        "the rest keeps its default"
    );

    let v1alpha2 = parse(
        "apiVersion: eraser.sh/v1alpha2
kind: EraserConfig
manager:
  runtime: dockershim
components:
  remover:
    image: {tag: v2}
",
    );
    assert!(v1alpha2.warnings.is_empty(), "{:?}", warnings(&v1alpha2));
    assert_eq!(
        v1alpha2.config.manager.runtime.address.url(),
        "unix:///run/dockershim.sock"
    );
    assert_eq!(
        v1alpha2.config.components.remover.image.tag.as_deref(),
        Some("v2")
    );

    // Each version's keys are what that version reads.
    let cases: &[(&str, &str, &str)] = &[
        (
            "eraser.sh/v1alpha1",
            "components:\n  remover: {image: {tag: x}}\n",
            "components.remover: unknown key, ignored (eraser.sh/v1alpha1 calls it components.eraser",
        ),
        (
            "eraser.sh/v1alpha2",
            "components:\n  eraser: {image: {tag: x}}\n",
            "components.eraser: unknown key, ignored (components.eraser is the eraser.sh/v1alpha1 name",
        ),
        (
            "eraser.sh/v1alpha2",
            "manager:\n  additionalPodLabels: {team: a}\n",
            "manager.additionalPodLabels: unknown key, ignored (additionalPodLabels is read only in eraser.sh/v1alpha3)",
        ),
    ];
    for (version, body, warning) in cases {
        let parsed = parse(&format!(
            "apiVersion: {version}\nkind: EraserConfig\n{body}"
        ));
        let found = warnings(&parsed);
        assert!(
            found.iter().any(|w| w.starts_with(warning)),
            "{version}: {found:?}"
        );
        assert!(parsed.config.manager.additional_pod_labels.is_empty());
    }
}

#[test]
fn runtime_rules() {
    type Expected = Result<(RuntimeName, &'static str), &'static str>;
    let cases: &[(&str, &str, Expected)] = &[
        (
            "eraser.sh/v1alpha3",
            "{}",
            Ok((RuntimeName::Containerd, "/run/containerd/containerd.sock")),
        ),
        (
            "eraser.sh/v1alpha3",
            "{name: \"\", address: \"\"}",
            Ok((RuntimeName::Containerd, "/run/containerd/containerd.sock")),
        ),
        (
            "eraser.sh/v1alpha3",
            "{name: crio}",
            Ok((RuntimeName::Crio, "/run/crio/crio.sock")),
        ),
        (
            "eraser.sh/v1alpha3",
            "{name: dockershim, address: \"unix:///run/cri-dockerd.sock\"}",
            Ok((RuntimeName::Dockershim, "/run/cri-dockerd.sock")),
        ),
        (
            "eraser.sh/v1alpha3",
            "{name: containerd, address: \"unix:///run/k3s/containerd/containerd.sock\"}",
            Ok((
                RuntimeName::Containerd,
                "/run/k3s/containerd/containerd.sock",
            )),
        ),
        (
            "eraser.sh/v1alpha3",
            "{name: docker}",
            Err("manager.runtime.name: \"docker\" is not one of containerd, dockershim, crio"),
        ),
        (
            "eraser.sh/v1alpha3",
            "{address: \"unix:///run/x.sock\"}",
            Err("manager.runtime.name: missing; a runtime address needs the runtime's name"),
        ),
        (
            "eraser.sh/v1alpha3",
            "{name: containerd, address: \"tcp://10.0.0.1:2375\"}",
            Err(
                "manager.runtime.address: \"tcp://10.0.0.1:2375\": tcp addresses are not supported",
            ),
        ),
        (
            "eraser.sh/v1alpha3",
            "{name: containerd, address: \"http://localhost/x\"}",
            Err(
                "manager.runtime.address: \"http://localhost/x\": scheme \"http\" is not one of unix",
            ),
        ),
        (
            "eraser.sh/v1alpha3",
            "{name: containerd, address: /run/containerd/containerd.sock}",
            Err("manager.runtime.address: \"/run/containerd/containerd.sock\" is not a URL"),
        ),
        (
            "eraser.sh/v1alpha3",
            "containerd",
            Err("manager.runtime: expected a mapping {name, address} in eraser.sh/v1alpha3"),
        ),
        (
            "eraser.sh/v1alpha2",
            "crio",
            Ok((RuntimeName::Crio, "/run/crio/crio.sock")),
        ),
        (
            "eraser.sh/v1alpha2",
            "{name: crio}",
            Err(
                "manager.runtime: expected a runtime name (containerd, dockershim or crio); {name, address} needs apiVersion eraser.sh/v1alpha3, found a mapping",
            ),
        ),
        (
            "eraser.sh/v1alpha1",
            "cri-o",
            Err("manager.runtime: \"cri-o\" is not one of containerd, dockershim, crio"),
        ),
    ];
    for (version, runtime, expected) in cases {
        let text =
            format!("apiVersion: {version}\nkind: EraserConfig\nmanager:\n  runtime: {runtime}\n");
        match (Config::from_yaml(&text), expected) {
            (Ok(parsed), Ok((name, path))) => {
                assert_eq!(parsed.config.manager.runtime.name, *name, "{runtime}");
                assert_eq!(
                    parsed.config.manager.runtime.address.socket_path(),
                    *path,
                    "{runtime}"
                );
            }
            (Err(errors), Err(message)) => {
                assert_eq!(errors.errors.len(), 1, "{runtime}: {errors}");
                let found = errors.errors[0].to_string();
                assert!(found.starts_with(message), "{runtime}: {found}");
            }
            (result, _) => panic!("{version} {runtime}: unexpected {result:?}"),
        }
    }
}

#[test]
fn every_error_kind_names_its_path() {
    let cases: &[(&str, &str)] = &[
        (
            "apiVersion: eraser.sh/v1\nkind: EraserConfig\n",
            "apiVersion: \"eraser.sh/v1\" is not one of eraser.sh/v1alpha1, eraser.sh/v1alpha2, eraser.sh/v1alpha3",
        ),
        (
            "kind: EraserConfig\n",
            "apiVersion: missing; one of eraser.sh/v1alpha1",
        ),
        (
            "apiVersion: eraser.sh/v1alpha3\nkind: ConfigMap\n",
            "kind: \"ConfigMap\" is not one of EraserConfig",
        ),
        (
            "manager: [a]\n",
            "manager: expected a mapping, found a list",
        ),
        (
            "manager: {nodeFilter: {type: both}}\n",
            "manager.nodeFilter.type: \"both\" is not one of exclude, include",
        ),
        (
            "manager: {nodeFilter: {selectors: [\"a in (b\"]}}\n",
            "manager.nodeFilter.selectors[0]: invalid label selector \"a in (b\": unbalanced parentheses",
        ),
        (
            "manager: {nodeFilter: {selectors: [eraser.sh/cleanup.filter, 7]}}\n",
            "manager.nodeFilter.selectors[1]: expected a string (quote numbers), found a number",
        ),
        (
            "manager: {scheduling: {repeatInterval: 1d}}\n",
            "manager.scheduling.repeatInterval: invalid duration \"1d\": unknown unit \"d\"",
        ),
        (
            "manager: {scheduling: {repeatInterval: 0s}}\n",
            "manager.scheduling.repeatInterval: must be greater than 0s",
        ),
        (
            "manager: {scheduling: {repeatInterval: 24}}\n",
            "manager.scheduling.repeatInterval: expected a string (quote numbers), found a number",
        ),
        (
            "manager: {scheduling: {repeatInterval: \"-1h\"}}\n",
            "manager.scheduling.repeatInterval: invalid duration \"-1h\": must not be negative",
        ),
        (
            "manager: {scheduling: {beginImmediately: sometimes}}\n",
            "manager.scheduling.beginImmediately: expected true or false, found a string",
        ),
        (
            "manager: {scheduling: {schedule: \"0 3 * *\"}}\n",
            "manager.scheduling.schedule: \"0 3 * *\" is not a cron schedule",
        ),
        (
            "manager: {scheduling: {minUnused: 2 days}}\n",
            "manager.scheduling.minUnused: invalid duration \"2 days\"",
        ),
        (
            "manager: {imageJob: {successRatio: 1.5}}\n",
            "manager.imageJob.successRatio: 1.5 is out of range; allowed: 0 to 1",
        ),
        (
            "manager: {imageJob: {successRatio: \"all\"}}\n",
            "manager.imageJob.successRatio: expected a number, found a string",
        ),
        (
            "manager: {imageJob: {cleanup: {delayOnFailure: 1w}}}\n",
            "manager.imageJob.cleanup.delayOnFailure: invalid duration \"1w\": unknown unit \"w\"",
        ),
        (
            "manager: {profile: {port: 70000}}\n",
            "manager.profile.port: 70000 is out of range; allowed: 1 to 65535",
        ),
        (
            "manager: {profile: {port: 1.5}}\n",
            "manager.profile.port: expected a whole number, found a number",
        ),
        (
            "manager: {logLevel: verbose}\n",
            "manager.logLevel: \"verbose\" is not one of debug, info, warn, error, dpanic, panic, fatal",
        ),
        (
            "manager: {pullSecrets: [My_Secret]}\n",
            "manager.pullSecrets[0]: \"My_Secret\" is not a valid Kubernetes object name",
        ),
        (
            "manager: {priorityClassName: \"High Priority\"}\n",
            "manager.priorityClassName: \"High Priority\" is not a valid Kubernetes object name",
        ),
        (
            "manager: {additionalPodLabels: {\"bad key!\": x}}\n",
            "manager.additionalPodLabels[\"bad key!\"]: \"bad key!\" is not a valid label key",
        ),
        (
            "manager: {additionalPodLabels: {team: \"a b\"}}\n",
            "manager.additionalPodLabels.team: \"a b\" is not a valid label value",
        ),
        (
            "manager: {additionalPodLabels: {enabled: true}}\n",
            "manager.additionalPodLabels.enabled: expected a string (quote numbers and booleans), found a boolean",
        ),
        (
            "components: {collector: {limit: {mem: lots}}}\n",
            "components.collector.limit.mem: \"lots\" is not a resource quantity",
        ),
        (
            "components: {remover: {request: {cpu: \"-1\"}}}\n",
            "components.remover.request.cpu: \"-1\" is not a resource quantity",
        ),
        (
            "components: {scanner: {image: {tag: 1.10}}}\n",
            "components.scanner.image.tag: expected a string (quote numbers), found a number",
        ),
        (
            "components: {scanner: {volumes: [{name: 5}]}}\n",
            "components.scanner.volumes[0]: not a Kubernetes volume",
        ),
        (
            "components: {scanner: {config: {deleteFailedImages: true}}}\n",
            "components.scanner.config: expected a string (quote numbers), found a mapping",
        ),
        (
            "components: {scanner: {config: \"vulnerabilities: [\"}}\n",
            "components.scanner.config: not valid YAML",
        ),
        (
            "components: {scanner: {config: \"vulnerabilities: {severities: [SEVERE]}\"}}\n",
            "components.scanner.config.vulnerabilities.severities[0]: \"SEVERE\" is not one of UNKNOWN, LOW, MEDIUM, HIGH, CRITICAL",
        ),
        (
            "components: {scanner: {config: \"vulnerabilities: {severities: []}\"}}\n",
            "components.scanner.config.vulnerabilities.severities: must not be empty",
        ),
        (
            "components: {scanner: {config: \"vulnerabilities: {types: [os, python]}\"}}\n",
            "components.scanner.config.vulnerabilities.types[1]: \"python\" is not one of os, library",
        ),
        (
            "components: {scanner: {config: \"vulnerabilities: {ignoredStatuses: [wontfix]}\"}}\n",
            "components.scanner.config.vulnerabilities.ignoredStatuses[0]: \"wontfix\" is not one of unknown",
        ),
        (
            "components: {scanner: {config: \"timeout: {perImage: 0s}\"}}\n",
            "components.scanner.config.timeout.perImage: must be greater than 0s",
        ),
        (
            "components: {scanner: {config: \"engine: grype\"}}\n",
            "components.scanner.config.engine: \"grype\" is not one of native, trivy",
        ),
        (
            "components: {scanner: {config: \"db: {path: /a, url: \\\"https://x/db\\\"}\"}}\n",
            "components.scanner.config.db: set exactly one of path, configMap, url",
        ),
        (
            "components: {scanner: {config: \"db: {maxAge: 24h}\"}}\n",
            "components.scanner.config.db: set exactly one of path, configMap, url",
        ),
        (
            "components: {scanner: {config: \"db: {path: relative/db}\"}}\n",
            "components.scanner.config.db.path: \"relative/db\" is not an absolute path",
        ),
        (
            "components: {scanner: {config: \"db: {url: \\\"ftp://x/db\\\"}\"}}\n",
            "components.scanner.config.db.url: \"ftp://x/db\" is not an http:// or https:// URL",
        ),
        (
            "components: {scanner: {config: \"db: {configMap: {name: vulndb}}\"}}\n",
            "components.scanner.config.db.configMap.key: missing",
        ),
        (
            "components: {scanner: {config: \"db: {configMap: {name: Vuln_DB, key: db}}\"}}\n",
            "components.scanner.config.db.configMap.name: \"Vuln_DB\" is not a valid Kubernetes object name",
        ),
    ];
    for (body, expected) in cases {
        let text = if body.starts_with("apiVersion") || body.starts_with("kind") {
            (*body).to_owned()
        } else {
            v1alpha3(body)
        };
        let found = errors(&text);
        assert_eq!(found.len(), 1, "{body}: {found:?}");
        assert!(
            found[0].starts_with(expected),
            "{body}\n  expected: {expected}\n  found:    {}",
            found[0]
        );
    }
    for empty in ["", "# only a comment\n", "~\n"] {
        assert_eq!(
            errors(empty),
            [
                "apiVersion: missing; one of eraser.sh/v1alpha1, eraser.sh/v1alpha2, eraser.sh/v1alpha3"
            ]
        );
    }
    assert_eq!(
        errors("just text\n"),
        ["(document): expected a mapping, found a string"]
    );
    let yaml = errors("manager: [unclosed\n");
    assert!(
        yaml[0].starts_with("(document): not valid YAML"),
        "{yaml:?}"
    );
}

#[test]
fn all_errors_are_reported_together() {
    let text = v1alpha3(
        "manager:
  runtime: {name: containerd, address: \"tcp://x:1\"}
  scheduling: {repeatInterval: 1d, schedule: \"every day\"}
  imageJob: {successRatio: -0.1}
  nodeFilter: {type: both, selectors: [\"a,,b\"]}
  schedulng: {}
components:
  scanner:
    config: |
      vulnerabilities: {severities: [HIGH, WORST]}
      timeout: {total: 0s}
",
    );
    let Err(errors) = Config::from_yaml(&text) else {
        panic!("errors expected");
    };
    let paths: Vec<&str> = errors.errors.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "manager.runtime.address",
            "manager.scheduling.repeatInterval",
            "manager.scheduling.schedule",
            "manager.imageJob.successRatio",
            "manager.nodeFilter.type",
            "manager.nodeFilter.selectors[0]",
            "components.scanner.config.vulnerabilities.severities[1]",
            "components.scanner.config.timeout.total",
        ]
    );
    assert_eq!(errors.warnings.len(), 1, "warnings are kept beside errors");
    let shown = errors.to_string();
    assert!(
        shown.starts_with("8 errors in the config\n  manager.runtime.address: "),
        "{shown}"
    );
}

#[test]
fn unknown_keys_are_warnings_with_their_full_path() {
    let parsed = parse(&v1alpha3(
        "health: {healthProbeBindAddress: \":8081\"}
leaderElection: {leaderElect: false}
manager:
  schedulng: {repeatInterval: 1h}
  nodeFilter: {typ: include}
  runtime: {name: containerd, adress: \"unix:///x.sock\"}
components:
  remover: {enabled: true}
  collector: {config: \"x\"}
  scanner:
    config: |
      vulnerabilities: {severites: [HIGH]}
      runtime: containerd
      extra: 1
",
    ));
    assert_eq!(
        warnings(&parsed),
        [
            "health: unknown key, ignored (a key of Eraser's Helm chart that neither Eraser nor Image Cleaner reads)",
            "leaderElection: unknown key, ignored (a key of Eraser's Helm chart that neither Eraser nor Image Cleaner reads)",
            "manager.schedulng: unknown key, ignored (did you mean manager.scheduling?)",
            "manager.runtime.adress: unknown key, ignored (did you mean manager.runtime.address?)",
            "manager.nodeFilter.typ: unknown key, ignored (did you mean manager.nodeFilter.type?)",
            "components.collector.config: ignored: only the scanner reads it",
            "components.scanner.config.extra: unknown key, ignored",
            "components.scanner.config.runtime: ignored: the scanner uses manager.runtime",
            "components.scanner.config.vulnerabilities.severites: unknown key, ignored (did you mean components.scanner.config.vulnerabilities.severities?)",
            "components.remover.enabled: unknown key, ignored (the remover always runs)",
        ]
    );
    // Unknown keys change nothing.
    assert_eq!(
        parsed.config.manager.scheduling.repeat_interval,
        GoDuration::from_hours(24)
    );
    assert_eq!(
        parsed.config.manager.node_filter.filter_type,
        NodeFilterType::Exclude
    );
}

#[test]
fn other_warnings() {
    let parsed = parse(
        "apiVersion: eraser.sh/v1alpha3
manager:
  additionalPodLabels: {app: mine, team: a}
  nodeFilter: {selectors: [\"\"]}
components:
  scanner:
    volumes:
      - {name: cache, emptyDir: {}}
      - {name: db, hostPath: {path: /var/lib/vulndb}}
",
    );
    assert_eq!(
        warnings(&parsed),
        [
            "kind: missing kind; assuming EraserConfig",
            "manager.additionalPodLabels.app: the manager sets this label itself; the value here is overridden",
            "manager.nodeFilter.selectors[0]: an empty selector matches every node",
            "components.scanner.volumes[0]: ignored: only hostPath volumes are mounted into the scanner",
        ]
    );
    assert_eq!(parsed.config.components.scanner.volumes.len(), 1);
    assert_eq!(parsed.config.manager.additional_pod_labels.len(), 2);
}

#[test]
fn additions_and_their_defaults() {
    let parsed = parse(&v1alpha3(
        "manager:
  scheduling:
    repeatInterval: 48h
    schedule: \"0 3 * * *\"
  nodeFilter: {type: include, selectors: [\"pool in (batch, gpu)\"]}
components:
  scanner:
    enabled: true
    config: |
      engine: trivy
      deleteFailedImages: false
      vulnerabilities: {severities: [critical], ignoreUnfixed: yes}
      db: {configMap: {name: vulndb, key: osv.db}}
",
    ));
    assert!(parsed.warnings.is_empty(), "{:?}", warnings(&parsed));
    let scheduling = &parsed.config.manager.scheduling;
    assert_eq!(
        scheduling.schedule.as_ref().map(|s| s.as_str()),
        Some("0 3 * * *")
    );
    assert_eq!(
        scheduling.min_unused(),
        GoDuration::from_hours(48),
        "defaults to the interval"
    );
    let scanner = &parsed.config.components.scanner.config;
    assert_eq!(scanner.engine, ScanEngine::Trivy);
    assert_eq!(scanner.vulnerabilities.severities, [Severity::Critical]);
    assert!(scanner.vulnerabilities.ignore_unfixed);
    assert_eq!(
        scanner.db,
        Some(DbSource {
            location: DbLocation::ConfigMap {
                name: "vulndb".into(),
                key: "osv.db".into()
            },
            max_age: DbSource::DEFAULT_MAX_AGE,
        })
    );

    let explicit = parse(&v1alpha3(
        "manager: {scheduling: {minUnused: 90m}}
components:
  scanner:
    config: |
      db: {url: \"https://mirror.example/osv.db\", maxAge: 72h}
",
    ));
    assert_eq!(
        explicit.config.manager.scheduling.min_unused(),
        GoDuration::from_minutes(90)
    );
    let db = explicit.config.components.scanner.config.db.clone();
    assert_eq!(
        db.map(|db| (db.location, db.max_age)),
        Some((
            DbLocation::Url("https://mirror.example/osv.db".into()),
            GoDuration::from_hours(72)
        ))
    );
    let path = parse(&v1alpha3(
        "components: {scanner: {config: \"db: {path: /db/osv.db}\"}}\n",
    ));
    assert_eq!(
        path.config
            .components
            .scanner
            .config
            .db
            .map(|db| db.location),
        Some(DbLocation::Path("/db/osv.db".into()))
    );
}

#[test]
fn node_filter_admits_like_eraser() {
    let labels = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    let plain = labels(&[("kubernetes.io/os", "linux")]);
    let windows = labels(&[("kubernetes.io/os", "windows")]);
    let flagged = labels(&[
        ("kubernetes.io/os", "linux"),
        (CLEANUP_FILTER_LABEL, "true"),
    ]);
    let shipped = parse(ERASER_SHIPPED).config.manager.node_filter;
    assert!(shipped.admits(&plain));
    assert!(!shipped.admits(&windows));
    assert!(!shipped.admits(&flagged));

    let include = parse(&v1alpha3(
        "manager: {nodeFilter: {type: include, selectors: [\"pool=gpu\"]}}\n",
    ))
    .config
    .manager
    .node_filter;
    assert!(!include.admits(&plain));
    assert!(include.admits(&labels(&[("pool", "gpu")])));
    assert!(
        include.admits(&flagged),
        "the cleanup filter label is always a selector"
    );
}

#[test]
fn written_config_reads_back_the_same() {
    let sources = [
        ERASER_SHIPPED.to_owned(),
        "apiVersion: eraser.sh/v1alpha1\nkind: EraserConfig\nmanager: {runtime: crio}\n".to_owned(),
        v1alpha3(
            "manager:
  scheduling: {repeatInterval: 90m, schedule: \"@daily\", minUnused: 1.5h}
  additionalPodLabels: {team: a}
  pullSecrets: [regcred]
  nodeFilter: {type: include, selectors: [\"pool in (a,b)\", \"!spot\"]}
components:
  scanner:
    volumes: [{name: db, hostPath: {path: /var/lib/vulndb, type: Directory}}]
    config: |
      db: {path: /var/lib/vulndb/osv.db}
      vulnerabilities: {ignoredStatuses: [will_not_fix]}
",
        ),
    ];
    for source in sources {
        let first = parse(&source);
        let yaml = first.config.to_yaml().expect("writes YAML");
        assert!(
            yaml.starts_with("apiVersion: eraser.sh/v1alpha3\nkind: EraserConfig\n"),
            "{yaml}"
        );
        let again = parse(&yaml);
        assert_eq!(again.config, first.config, "{yaml}");
        assert_eq!(warnings(&again), warnings(&first), "{yaml}");
        assert!(
            warnings(&again).iter().all(|w| w == NO_DATABASE),
            "{:?}\n{yaml}",
            warnings(&again)
        );
        let json = first.config.to_json().expect("writes JSON");
        let from_json = parse(&json);
        assert_eq!(from_json.config, first.config, "{json}");
    }
    let derived = Config::default().with_derived_defaults();
    assert_eq!(
        derived.manager.scheduling.min_unused_setting,
        Some(GoDuration::from_hours(24))
    );
    assert!(
        derived
            .to_yaml()
            .expect("writes")
            .contains("minUnused: 24h")
    );
}

#[test]
fn reads_config_maps_and_manifests() {
    let indented: String = ERASER_SHIPPED
        .lines()
        .map(|l| format!("    {l}\n"))
        .collect();
    let config_map = format!(
        "apiVersion: v1
kind: ConfigMap
metadata:
  name: eraser-manager-config
  namespace: kube-system
data:
  controller_manager_config.yaml: |
{indented}"
    );
    let parsed = Config::from_file_text(&config_map).expect("reads the ConfigMap");
    assert!(parsed.config.components.scanner.enabled);
    assert_eq!(warnings(&parsed), [NO_DATABASE]);

    let manifest =
        format!("apiVersion: v1\nkind: Namespace\nmetadata: {{name: x}}\n---\n{config_map}");
    assert!(Config::from_file_text(&manifest).is_ok());
    assert!(Config::from_file_text(ERASER_SHIPPED).is_ok());

    let data: BTreeMap<String, String> =
        [(MANAGER_CONFIG_KEY.to_owned(), ERASER_SHIPPED.to_owned())].into();
    assert!(Config::from_config_map_data(&data).is_ok());

    let failures = [
        (
            "apiVersion: v1\nkind: ConfigMap\ndata: {other: x}\n",
            "data: the ConfigMap has no key controller_manager_config.yaml",
        ),
        (
            "kind: A\n---\nkind: B\n",
            "(document): no EraserConfig or ConfigMap",
        ),
        ("a: [\n", "(document): not valid YAML"),
    ];
    for (text, expected) in failures {
        let errors = Config::from_file_text(text).expect_err(text);
        assert!(
            errors.errors[0].to_string().starts_with(expected),
            "{}",
            errors.errors[0]
        );
    }
    assert!(Config::from_config_map_data(&BTreeMap::new()).is_err());
}

#[test]
fn quantities() {
    for text in [
        "0", "7m", "25Mi", "1.5", "2Gi", "1e3", "1E-2", "+5", ".5", "100k", "1Ei",
    ] {
        assert!(is_quantity(text), "{text}");
    }
    for text in ["", "-1", "Mi", "1.2.3", "5 Mi", "1KB", "1e", "1mi", "abc"] {
        assert!(!is_quantity(text), "{text}");
    }
}

#[test]
fn a_scanner_without_a_database_is_warned_about() {
    let without = parse(&v1alpha3("components: {scanner: {enabled: true}}\n"));
    assert_eq!(warnings(&without), [NO_DATABASE]);
    for config in [
        "db: {url: \"https://mirror.example/vulns.db\"}",
        "engine: trivy",
    ] {
        let with = parse(&v1alpha3(&format!(
            "components:\n  scanner:\n    enabled: true\n    config: |\n      {config}\n"
        )));
        assert!(
            warnings(&with).is_empty(),
            "{config}: {:?}",
            warnings(&with)
        );
    }
    let off = parse(&v1alpha3("components: {scanner: {enabled: false}}\n"));
    assert!(warnings(&off).is_empty());
}
