//! Hot reload of the config from the `eraser-manager-config` ConfigMap, without a restart.
//!
//! Eraser watches the mounted file with inotify and exits (to be restarted) when some keys
//! change. Here the ConfigMap is watched through the API, so a change applies within a watch
//! round-trip, and the next job uses it; jobs in flight keep the config they started with.
//! A broken edit is rejected as a whole: the last good config stays in force, and an Event on
//! the ConfigMap, a log line and `imagecleaner_config_last_reload_successful 0` say why.
//! Without the ConfigMap, Eraser's defaults apply. If the first config read is broken, no
//! job starts until it is fixed (and `/readyz` says so): acting on defaults the operator did
//! not choose could remove images they meant to keep.

use std::sync::Arc;

use futures::StreamExt;
use image_cleaner_api::Config;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::Api;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::context::Context;
use crate::events::Kind;

/// The config in force.
#[derive(Clone, Debug, Default)]
pub struct ConfigState {
    /// The last good config; `None` until one was read.
    pub config: Option<Arc<Config>>,
    /// Why the latest change was rejected, if it was.
    pub rejected: Option<String>,
    /// Whether the ConfigMap was read at least once (or found absent).
    pub synced: bool,
}

/// A channel of config states.
pub fn channel() -> (watch::Sender<ConfigState>, watch::Receiver<ConfigState>) {
    watch::channel(ConfigState::default())
}

/// What to do with one version of the ConfigMap's text (pure): the new state, and a
/// message for the log and an Event.
pub fn apply(
    current: &ConfigState,
    data: Option<&std::collections::BTreeMap<String, String>>,
) -> (ConfigState, Outcome) {
    let Some(data) = data else {
        return (
            ConfigState {
                config: Some(current.config.clone().unwrap_or_default()),
                rejected: None,
                synced: true,
            },
            Outcome::Absent,
        );
    };
    match Config::from_config_map_data(data) {
        Ok(parsed) => {
            let mut warnings: Vec<String> =
                parsed.warnings.iter().map(ToString::to_string).collect();
            warnings.extend(unsupported(&parsed.config));
            (
                ConfigState {
                    config: Some(Arc::new(parsed.config)),
                    rejected: None,
                    synced: true,
                },
                Outcome::Applied { warnings },
            )
        }
        Err(errors) => (
            ConfigState {
                config: current.config.clone(),
                rejected: Some(errors.to_string()),
                synced: true,
            },
            Outcome::Rejected {
                errors: errors.to_string(),
                kept_previous: current.config.is_some(),
            },
        ),
    }
}

/// Eraser settings that this manager reads but does not act on, said once per change.
fn unsupported(config: &Config) -> Vec<String> {
    let mut notes = Vec::new();
    if !config.manager.otlp_endpoint.is_empty() {
        notes.push(format!(
            "manager.otlpEndpoint {:?}: metrics are not pushed; scrape /metrics (port 8889) instead, under the same names",
            config.manager.otlp_endpoint
        ));
    }
    if config.manager.profile.enabled {
        notes.push("manager.profile.enabled: there is no pprof endpoint".to_owned());
    }
    notes
}

/// What happened to a config change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// No ConfigMap: defaults (or the last good config) apply.
    Absent,
    /// Applied, with these warnings.
    Applied {
        /// Keys not used as written.
        warnings: Vec<String>,
    },
    /// Rejected.
    Rejected {
        /// Every error.
        errors: String,
        /// Whether an earlier good config stays in force.
        kept_previous: bool,
    },
}

/// Watches the ConfigMap until cancelled, publishing each accepted config.
pub async fn run(ctx: Arc<Context>, sender: watch::Sender<ConfigState>, cancel: CancellationToken) {
    let settings = &ctx.settings;
    let api: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), &settings.namespace);
    let config = watcher::Config::default()
        .fields(&format!("metadata.name={}", settings.config_map))
        .timeout(crate::WATCH_TIMEOUT_SECS);
    let mut stream = watcher::watcher(api, config).default_backoff().boxed();
    let mut seen: Option<ConfigMap> = None;
    let mut last_text: Option<Option<std::collections::BTreeMap<String, String>>> = None;
    loop {
        let event = tokio::select! {
            () = cancel.cancelled() => return,
            event = stream.next() => event,
        };
        let Some(event) = event else { return };
        match event {
            Ok(Event::Init) => seen = None,
            Ok(Event::InitApply(cm)) => seen = Some(cm),
            Ok(Event::InitDone) => handle(&ctx, &sender, seen.as_ref(), &mut last_text).await,
            Ok(Event::Apply(cm)) => {
                seen = Some(cm);
                handle(&ctx, &sender, seen.as_ref(), &mut last_text).await;
            }
            Ok(Event::Delete(_)) => {
                seen = None;
                handle(&ctx, &sender, None, &mut last_text).await;
            }
            Err(error) => {
                ctx.metrics.error("config", "watch");
                tracing::warn!(%error, "watching the config ConfigMap");
            }
        }
    }
}

async fn handle(
    ctx: &Context,
    sender: &watch::Sender<ConfigState>,
    config_map: Option<&ConfigMap>,
    last: &mut Option<Option<std::collections::BTreeMap<String, String>>>,
) {
    let data = config_map.map(|cm| cm.data.clone().unwrap_or_default());
    if last.as_ref() == Some(&data) {
        return;
    }
    let first = last.is_none();
    *last = Some(data.clone());
    let current = sender.borrow().clone();
    let (state, outcome) = apply(&current, data.as_ref());
    let name = &ctx.settings.config_map;
    match &outcome {
        Outcome::Absent => {
            tracing::warn!(config_map = %name, "no config ConfigMap; using Eraser's defaults (or the last good config)");
        }
        Outcome::Applied { warnings } => {
            ctx.metrics.config_reload(true);
            for warning in warnings {
                tracing::warn!(config_map = %name, "config: {warning}");
            }
            tracing::info!(config_map = %name, first, "config applied");
            if let Some(cm) = config_map {
                let note = if warnings.is_empty() {
                    "Config applied; the next job uses it".to_owned()
                } else {
                    format!(
                        "Config applied with warnings; the next job uses it: {}",
                        warnings.join("; ")
                    )
                };
                if !first || !warnings.is_empty() {
                    ctx.events
                        .publish(cm, Kind::Normal, "ConfigApplied", "Reload", &note)
                        .await;
                }
            }
        }
        Outcome::Rejected {
            errors,
            kept_previous,
        } => {
            ctx.metrics.config_reload(false);
            let kept = if *kept_previous {
                "the previous config stays in force"
            } else {
                "no job starts until it is fixed"
            };
            tracing::error!(config_map = %name, "config rejected, {kept}: {errors}");
            if let Some(cm) = config_map {
                ctx.events
                    .publish(
                        cm,
                        Kind::Warning,
                        "InvalidConfig",
                        "Reload",
                        &format!("Config rejected, {kept}: {errors}"),
                    )
                    .await;
            }
        }
    }
    sender.send_replace(state);
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use image_cleaner_api::constants::MANAGER_CONFIG_KEY;

    use super::*;

    fn data(yaml: &str) -> BTreeMap<String, String> {
        [(MANAGER_CONFIG_KEY.to_string(), yaml.to_string())].into()
    }

    #[test]
    fn a_broken_edit_keeps_the_last_good_config() {
        let good = data(
            "apiVersion: eraser.sh/v1alpha3\nkind: EraserConfig\nmanager:\n  scheduling:\n    repeatInterval: 2h\n",
        );
        let (state, outcome) = apply(&ConfigState::default(), Some(&good));
        assert!(matches!(outcome, Outcome::Applied { .. }));
        let config = state.config.clone().expect("config");
        assert_eq!(
            config
                .manager
                .scheduling
                .repeat_interval
                .as_duration()
                .as_secs(),
            7200
        );

        let broken = data(
            "apiVersion: eraser.sh/v1alpha3\nkind: EraserConfig\nmanager:\n  scheduling:\n    repeatInterval: 2 days\n",
        );
        let (after, outcome) = apply(&state, Some(&broken));
        assert!(
            matches!(outcome, Outcome::Rejected { kept_previous: true, ref errors }
            if errors.contains("manager.scheduling.repeatInterval"))
        );
        assert_eq!(after.config, state.config, "last good config kept");
        assert!(after.rejected.is_some());

        // A broken config at start: nothing to act on.
        let (first, outcome) = apply(&ConfigState::default(), Some(&broken));
        assert!(matches!(
            outcome,
            Outcome::Rejected {
                kept_previous: false,
                ..
            }
        ));
        assert!(first.config.is_none());
        assert!(first.synced);

        // No ConfigMap: defaults.
        let otlp = data(
            "apiVersion: eraser.sh/v1alpha3\nkind: EraserConfig\nmanager:\n  otlpEndpoint: otel:4318\n",
        );
        let (_, outcome) = apply(&ConfigState::default(), Some(&otlp));
        assert!(matches!(outcome, Outcome::Applied { ref warnings }
            if warnings.iter().any(|w| w.contains("otlpEndpoint"))));

        let (absent, outcome) = apply(&ConfigState::default(), None);
        assert_eq!(outcome, Outcome::Absent);
        assert_eq!(absent.config.as_deref(), Some(&Config::default()));
    }
}
