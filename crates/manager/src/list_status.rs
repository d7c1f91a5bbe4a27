//! The lists controller: what each ImageList means, written back to its status.
//!
//! For every ImageList (any number, any name) it resolves the role (DESIGN §3: `spec.action`,
//! else the label `eraser.sh/exclude.list=true`, else the name), records it in
//! `status.action` (a printer column), lists malformed entries (the rest of the list still
//! applies), and keeps the `Valid` and `Applied` conditions. An Event says when the role was
//! inferred from the name, and when entries are malformed. Starting removal jobs is the
//! coordinator's part; it writes `observedGeneration` and Eraser's counters of removal lists,
//! this controller writes `observedGeneration` of exclusion lists.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use image_cleaner_api::imagelist::{CONDITION_APPLIED, CONDITION_VALID};
use image_cleaner_api::{ImageList, ImageListStatus, ListAction, RoleSource};
use jiff::Timestamp;
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::context::Context;
use crate::error::{Error, Result};
use crate::events::Kind;
use crate::names::FIELD_MANAGER;
use crate::report::{condition, set_condition};

/// Runs the controller until cancelled.
pub async fn run(ctx: Arc<Context>, cancel: CancellationToken) {
    let api: Api<ImageList> = Api::all(ctx.client.clone());
    let config = watcher::Config::default().timeout(crate::WATCH_TIMEOUT_SECS);
    Controller::new(api, config)
        .graceful_shutdown_on(cancel.cancelled_owned())
        .run(reconcile, error_policy, ctx)
        .for_each(|_| async {})
        .await;
}

fn error_policy(_list: Arc<ImageList>, error: &Error, ctx: Arc<Context>) -> Action {
    ctx.metrics.error("lists", error.metric_label());
    tracing::warn!(%error, "reconciling an ImageList");
    Action::requeue(Duration::from_secs(10))
}

pub(crate) async fn reconcile(list: Arc<ImageList>, ctx: Arc<Context>) -> Result<Action> {
    if list.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let plan = plan(&list, Timestamp::now());
    if let Some(patch) = &plan.patch {
        let api: Api<ImageList> = Api::all(ctx.client.clone());
        let name = list.name_any();
        ctx.call(
            || format!("updating the status of ImageList {name}"),
            api.patch_status(
                &name,
                &PatchParams {
                    field_manager: Some(FIELD_MANAGER.to_owned()),
                    ..Default::default()
                },
                &Patch::Merge(patch),
            ),
        )
        .await?;
    }
    for (kind, reason, note) in &plan.events {
        ctx.events
            .publish(list.as_ref(), *kind, reason, "Resolve", note)
            .await;
    }
    Ok(Action::await_change())
}

/// What to write and say about one list.
#[derive(Debug, Default)]
pub struct Plan {
    /// The status patch, when the status must change.
    pub patch: Option<Value>,
    /// Events: kind, reason, note.
    pub events: Vec<(Kind, &'static str, String)>,
}

/// Decides the status fields this controller owns, and the Events (pure).
pub fn plan(list: &ImageList, now: Timestamp) -> Plan {
    let role = list.role();
    let (_patterns, errors) = list.spec.patterns(role.action);
    let current = list.status.clone().unwrap_or_default();
    let generation = list.metadata.generation.unwrap_or(0);

    let mut desired = ImageListStatus {
        conditions: current.conditions.clone(),
        ..ImageListStatus::default()
    };
    desired.set_role(role);
    desired.set_malformed(&errors);
    let valid = if errors.is_empty() {
        condition(
            CONDITION_VALID,
            true,
            "AllEntriesValid",
            "Every entry is a valid pattern".into(),
            now,
        )
    } else {
        let entries: Vec<String> = desired
            .malformed
            .iter()
            .map(|m| format!("{:?}: {}", m.entry, m.reason))
            .collect();
        condition(
            CONDITION_VALID,
            false,
            "MalformedEntries",
            format!(
                "{} malformed entries skipped, the rest applies: {}",
                errors.len(),
                entries.join("; ")
            ),
            now,
        )
    };
    set_condition(&mut desired.conditions, valid);
    // A list that turns from Exclude to Remove (its label or spec.action changed) has not run
    // as a removal list: what it observed as an exclusion list does not count.
    let became_removal =
        role.action == ListAction::Remove && current.action == Some(ListAction::Exclude);
    let observed = match role.action {
        ListAction::Exclude => Some(generation),
        ListAction::Remove if became_removal => None,
        ListAction::Remove => current.observed_generation,
    };
    let applied = match role.action {
        ListAction::Exclude => condition(
            CONDITION_APPLIED,
            true,
            "Excluding",
            "Excluded from every job started from now on".into(),
            now,
        ),
        ListAction::Remove if observed.unwrap_or(0) >= generation => condition(
            CONDITION_APPLIED,
            true,
            "JobFinished",
            format!("The removal job for generation {generation} has run"),
            now,
        ),
        ListAction::Remove => condition(
            CONDITION_APPLIED,
            false,
            "JobPending",
            format!("A removal job for generation {generation} is pending or running"),
            now,
        ),
    };
    set_condition(&mut desired.conditions, applied);

    let changed = current.action != desired.action
        || current.action_source != desired.action_source
        || current.malformed != desired.malformed
        || current.malformed_count != desired.malformed_count
        || (role.action == ListAction::Exclude && current.observed_generation != observed)
        || !same_conditions(&current, &desired);
    let mut plan = Plan::default();
    if changed {
        let mut status = json!({
            "action": role.action,
            "actionSource": role.source,
            "malformed": desired.malformed,
            "malformedCount": desired.malformed_count,
            "conditions": desired.conditions,
        });
        if role.action == ListAction::Exclude {
            status["observedGeneration"] = json!(generation);
        } else if became_removal {
            // A merge patch removes the field.
            status["observedGeneration"] = serde_json::Value::Null;
        }
        plan.patch = Some(json!({ "status": status }));
    }
    if role.source == RoleSource::Name
        && (current.action != Some(role.action) || current.action_source != Some(role.source))
    {
        let (what, why) = match role.action {
            ListAction::Exclude => ("an exclusion list", "contains \"exclu\""),
            ListAction::Remove => ("a removal list", "does not contain \"exclu\""),
        };
        plan.events.push((
            Kind::Normal,
            "RoleInferred",
            format!(
                "No spec.action and no eraser.sh/exclude.list label: the name {:?} {why}, so this is {what}. Set spec.action to Remove or Exclude to say so explicitly.",
                list.name_any()
            ),
        ));
    }
    if !errors.is_empty() && current.malformed != desired.malformed {
        let entries: Vec<String> = desired.malformed.iter().map(|m| m.reason.clone()).collect();
        plan.events.push((
            Kind::Warning,
            "MalformedEntries",
            format!(
                "{} entries skipped (the rest of the list applies): {}",
                errors.len(),
                entries.join("; ")
            ),
        ));
    }
    plan
}

fn same_conditions(a: &ImageListStatus, b: &ImageListStatus) -> bool {
    a.conditions.len() == b.conditions.len()
        && a.conditions.iter().all(|x| {
            b.conditions.iter().any(|y| {
                x.type_ == y.type_
                    && x.status == y.status
                    && x.reason == y.reason
                    && x.message == y.message
            })
        })
}

#[cfg(test)]
mod tests {
    use image_cleaner_api::ImageListSpec;
    use image_cleaner_api::constants::EXCLUDE_LIST_LABEL;

    use super::*;

    fn list(name: &str, images: &[&str]) -> ImageList {
        let mut list = ImageList::new(
            name,
            ImageListSpec {
                images: images.iter().map(|s| s.to_string()).collect(),
                action: None,
            },
        );
        list.metadata.generation = Some(1);
        list
    }

    /// The list after the patch is applied (merge of the status object).
    fn patched(mut list: ImageList, plan: &Plan) -> ImageList {
        if let Some(patch) = &plan.patch {
            let mut status =
                serde_json::to_value(list.status.clone().unwrap_or_default()).expect("status");
            if let (Some(target), Some(source)) =
                (status.as_object_mut(), patch["status"].as_object())
            {
                for (key, value) in source {
                    target.insert(key.clone(), value.clone());
                }
            }
            list.status = Some(serde_json::from_value(status).expect("status"));
        }
        list
    }

    #[test]
    fn inferred_roles_are_recorded_and_announced_once() {
        let now = Timestamp::now();
        let excluded = list("excluded-images", &["docker.io/library/alpine:*"]);
        let first = plan(&excluded, now);
        let patch = first.patch.clone().expect("patch");
        assert_eq!(patch["status"]["action"], "Exclude");
        assert_eq!(patch["status"]["actionSource"], "Name");
        assert_eq!(patch["status"]["observedGeneration"], 1);
        assert!(
            first
                .events
                .iter()
                .any(|(_, reason, _)| *reason == "RoleInferred")
        );
        let after = patched(excluded, &first);
        let second = plan(&after, now);
        assert!(second.patch.is_none(), "{:?}", second.patch);
        assert!(second.events.is_empty());

        let vulnerable = list("vulnerable-images", &["docker.io/library/alpine:3.7.3"]);
        let p = plan(&vulnerable, now);
        let patch = p.patch.expect("patch");
        assert_eq!(patch["status"]["action"], "Remove");
        assert!(patch["status"].get("observedGeneration").is_none());

        let mut eraser = list("imagelist", &["*"]);
        let p = plan(&eraser, now);
        assert!(
            p.events.is_empty(),
            "the name imagelist is Eraser's: no inference"
        );
        eraser.metadata.labels =
            Some([(EXCLUDE_LIST_LABEL.to_string(), "true".to_string())].into());
        let p = plan(&eraser, now);
        assert_eq!(p.patch.expect("patch")["status"]["actionSource"], "Label");
    }

    #[test]
    fn malformed_entries_are_reported_and_the_rest_applies() {
        let now = Timestamp::now();
        let bad = list("imagelist", &["docker.io/library/nginx:1", "a*b", ""]);
        let p = plan(&bad, now);
        let patch = p.patch.clone().expect("patch");
        assert_eq!(patch["status"]["malformedCount"], 2);
        let conditions = patch["status"]["conditions"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        assert!(
            conditions
                .iter()
                .any(|c| c["type"] == "Valid" && c["status"] == "False")
        );
        assert!(
            conditions
                .iter()
                .any(|c| c["type"] == "Applied" && c["status"] == "False")
        );
        assert!(
            p.events
                .iter()
                .any(|(kind, reason, _)| *kind == Kind::Warning && *reason == "MalformedEntries")
        );
        let after = patched(bad, &p);
        assert!(plan(&after, now).events.is_empty());
    }

    #[test]
    fn a_list_that_becomes_a_removal_list_runs() {
        let now = Timestamp::now();
        let mut labelled = list("web-images", &["docker.io/library/nginx:*"]);
        labelled.metadata.labels =
            Some([(EXCLUDE_LIST_LABEL.to_string(), "true".to_string())].into());
        let first = plan(&labelled, now);
        let mut excluding = patched(labelled, &first);
        let observed = |l: &ImageList| l.status.as_ref().and_then(|s| s.observed_generation);
        assert_eq!(observed(&excluding), Some(1));
        let pending = |l: &ImageList| {
            crate::lists::pending_removal(&[std::sync::Arc::new(l.clone())], &[]).is_some()
        };
        assert!(!pending(&excluding));

        // The label goes: the same generation, now a removal list that has never run.
        excluding.metadata.labels = None;
        let second = plan(&excluding, now);
        let patch = second.patch.clone().expect("patch");
        assert_eq!(patch["status"]["action"], "Remove");
        assert!(patch["status"]["observedGeneration"].is_null());
        let removal = patched(excluding, &second);
        assert_eq!(observed(&removal), None);
        assert!(pending(&removal), "its removal job is due");
        // Recorded once: the next pass changes nothing.
        assert!(plan(&removal, now).patch.is_none());
    }

    #[test]
    fn a_removal_list_is_applied_once_its_job_ran() {
        let now = Timestamp::now();
        let mut removal = list("imagelist", &["*"]);
        removal.status = Some(ImageListStatus {
            observed_generation: Some(1),
            ..Default::default()
        });
        let p = plan(&removal, now);
        let conditions = p.patch.expect("patch")["status"]["conditions"].clone();
        assert!(conditions.as_array().is_some_and(|c| {
            c.iter()
                .any(|c| c["type"] == "Applied" && c["status"] == "True")
        }));
    }
}
