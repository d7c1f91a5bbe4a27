//! The schedule's memory across restarts: when the last scheduled run started, in a small
//! ConfigMap in the manager's namespace. Eraser forgets it and starts a run at every restart
//! (eraser#1169); a restarted Image Cleaner reads it back and keeps the interval.

use std::collections::BTreeMap;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, Patch, PatchParams, PostParams};

use crate::context::Context;
use crate::error::Result;
use crate::names::{FIELD_MANAGER, STATE_CONFIG_MAP, STATE_LAST_SCHEDULED_START};

/// The recorded start of the last scheduled run, if any (an unreadable value counts as none).
pub async fn last_scheduled_start(ctx: &Context) -> Result<Option<Timestamp>> {
    let api: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), &ctx.settings.namespace);
    let config_map = ctx
        .call(
            || format!("reading ConfigMap {STATE_CONFIG_MAP}"),
            api.get_opt(STATE_CONFIG_MAP),
        )
        .await?;
    Ok(config_map
        .and_then(|cm| cm.data)
        .and_then(|data| data.get(STATE_LAST_SCHEDULED_START).cloned())
        .and_then(|text| text.parse().ok()))
}

/// Records the start of a scheduled run.
pub async fn record_scheduled_start(ctx: &Context, start: Timestamp) -> Result<()> {
    let api: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), &ctx.settings.namespace);
    let data = BTreeMap::from([(STATE_LAST_SCHEDULED_START.to_owned(), start.to_string())]);
    let patch = serde_json::json!({ "data": data });
    let patched = ctx
        .call(
            || format!("updating ConfigMap {STATE_CONFIG_MAP}"),
            api.patch(
                STATE_CONFIG_MAP,
                &PatchParams {
                    field_manager: Some(FIELD_MANAGER.to_owned()),
                    ..Default::default()
                },
                &Patch::Merge(&patch),
            ),
        )
        .await;
    match patched {
        Ok(_) => Ok(()),
        Err(error) if error.is_not_found() => {
            let config_map = ConfigMap {
                metadata: ObjectMeta {
                    name: Some(STATE_CONFIG_MAP.to_owned()),
                    namespace: Some(ctx.settings.namespace.clone()),
                    ..Default::default()
                },
                data: Some(data),
                ..Default::default()
            };
            ctx.call(
                || format!("creating ConfigMap {STATE_CONFIG_MAP}"),
                api.create(
                    &PostParams {
                        field_manager: Some(FIELD_MANAGER.to_owned()),
                        ..Default::default()
                    },
                    &config_map,
                ),
            )
            .await
            .map(|_| ())
        }
        Err(error) => Err(error),
    }
}
