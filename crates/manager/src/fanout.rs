//! Creating one worker pod per node, fast but within a request rate.
//!
//! Nodes are listed in pages (only their names, labels and OS are kept), then pods are
//! created with a bounded number of requests in flight and a token bucket (`pod_create_qps`,
//! `pod_create_burst`) so a cluster of thousands of nodes does not flood the API server. A
//! pod that already exists (the same job after a manager restart) counts as created; a pod
//! that cannot be created fails its node, and the others go on.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use k8s_openapi::api::core::v1::{Node, Pod, PodTemplateSpec};
use kube::api::{Api, ListParams, PostParams};
use tokio::sync::Mutex;
use tokio::time::Instant;

use crate::context::Context;
use crate::error::Result;
use crate::names::FIELD_MANAGER;
use crate::nodes::NodeInfo;
use crate::pods::{Owner, pod_for_node};

/// Nodes per LIST page: a page of full Node objects is held in memory at once.
const NODE_PAGE: u32 = 250;

/// A token bucket.
#[derive(Debug)]
pub struct RateLimiter {
    per_second: f64,
    burst: f64,
    state: Mutex<(f64, Instant)>,
}

impl RateLimiter {
    /// `per_second` on average, up to `burst` at once.
    pub fn new(per_second: f64, burst: u32) -> RateLimiter {
        let burst = f64::from(burst.max(1));
        RateLimiter {
            per_second: per_second.max(0.001),
            burst,
            state: Mutex::new((burst, Instant::now())),
        }
    }

    /// Waits for a token.
    pub async fn acquire(&self) {
        loop {
            let wait = {
                let mut state = self.state.lock().await;
                let now = Instant::now();
                let (tokens, last) = *state;
                let tokens = (tokens + now.duration_since(last).as_secs_f64() * self.per_second)
                    .min(self.burst);
                if tokens >= 1.0 {
                    *state = (tokens - 1.0, now);
                    return;
                }
                *state = (tokens, now);
                Duration::from_secs_f64((1.0 - tokens) / self.per_second)
            };
            tokio::time::sleep(wait).await;
        }
    }
}

/// Every node, reduced to what the filter needs.
pub async fn list_nodes(ctx: &Context) -> Result<Vec<NodeInfo>> {
    let api: Api<Node> = Api::all(ctx.client.clone());
    let mut nodes = Vec::new();
    let mut params = ListParams::default().limit(NODE_PAGE);
    loop {
        let page = ctx
            .call(|| "listing nodes".into(), api.list(&params))
            .await?;
        let next = page.metadata.continue_.clone().filter(|c| !c.is_empty());
        nodes.extend(page.items.into_iter().map(NodeInfo::from));
        match next {
            Some(token) => params = params.continue_token(&token),
            None => return Ok(nodes),
        }
    }
}

/// What a fan-out did.
#[derive(Debug, Default)]
pub struct FanOut {
    /// Pods created now.
    pub created: usize,
    /// Pods that existed already.
    pub existing: usize,
    /// Nodes whose pod could not be created, and why.
    pub failures: BTreeMap<String, String>,
}

/// Creates the pod of each node in `nodes` that has none yet (`have`).
pub async fn create_pods(
    ctx: &Context,
    limiter: &RateLimiter,
    template: &PodTemplateSpec,
    owner: &Owner,
    nodes: &[String],
    have: &HashSet<String>,
) -> FanOut {
    let api: Api<Pod> = Api::namespaced(ctx.client.clone(), &ctx.settings.namespace);
    let params = PostParams {
        field_manager: Some(FIELD_MANAGER.to_owned()),
        ..Default::default()
    };
    let todo: Vec<&String> = nodes.iter().filter(|node| !have.contains(*node)).collect();
    let mut fan_out = FanOut {
        existing: nodes.len() - todo.len(),
        ..FanOut::default()
    };
    let namespace = ctx.settings.namespace.as_str();
    let concurrency = ctx.settings.pod_create_concurrency.max(1);
    let mut todo = todo.into_iter();
    let mut in_flight = FuturesUnordered::new();
    loop {
        while in_flight.len() < concurrency {
            let Some(node) = todo.next() else { break };
            let pod = pod_for_node(template, owner, namespace, node);
            in_flight.push(create_one(ctx, limiter, &api, &params, node, pod));
        }
        let Some((node, result)) = in_flight.next().await else {
            break;
        };
        match result {
            Ok(()) => fan_out.created += 1,
            Err(error) if error.is_conflict() => fan_out.existing += 1,
            Err(error) => {
                tracing::warn!(node = %node, %error, "could not create a worker pod");
                ctx.metrics.error("jobs", error.metric_label());
                fan_out.failures.insert(node.clone(), error.to_string());
            }
        }
    }
    fan_out
}

async fn create_one<'a>(
    ctx: &Context,
    limiter: &RateLimiter,
    api: &Api<Pod>,
    params: &PostParams,
    node: &'a String,
    pod: Pod,
) -> (&'a String, Result<()>) {
    limiter.acquire().await;
    let result = ctx
        .call(
            || format!("creating the worker pod of node {node}"),
            api.create(params, &pod),
        )
        .await
        .map(|_| ());
    (node, result)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_bucket_allows_a_burst_then_the_rate() {
        let limiter = RateLimiter::new(10.0, 5);
        let start = tokio::time::Instant::now();
        for _ in 0..5 {
            limiter.acquire().await;
        }
        assert!(start.elapsed() < Duration::from_millis(5));
        for _ in 0..10 {
            limiter.acquire().await;
        }
        let elapsed = start.elapsed();
        assert!(
            elapsed >= Duration::from_millis(950) && elapsed < Duration::from_millis(1100),
            "{elapsed:?}"
        );
    }
}
