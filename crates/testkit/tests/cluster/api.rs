//! API conventions through an unmodified `kube::Client`: writes and conflicts, paging, watches
//! (resume, bookmarks, 410 and kube's watcher relisting), each patch type, the status
//! subresource, generation, finalizers and cascading deletion, selectors, errors.

use std::collections::BTreeMap;
use std::time::Duration;

use futures::{StreamExt as _, TryStreamExt as _};
use image_cleaner_testkit::apiserver::ServerOptions;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod};
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, Patch,
    PatchParams, PostParams, WatchEvent, WatchParams,
};
use kube::runtime::{WatchStreamExt as _, watcher};
use serde_json::json;

use super::support::{code, server, server_with, wait_for};

fn cm(name: &str, data: &[(&str, &str)]) -> ConfigMap {
    ConfigMap {
        metadata: kube::api::ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        data: Some(
            data.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<BTreeMap<_, _>>(),
        ),
        ..Default::default()
    }
}

fn image_lists(client: kube::Client) -> Api<DynamicObject> {
    let gvk = GroupVersionKind::gvk("eraser.sh", "v1", "ImageList");
    Api::all_with(client, &ApiResource::from_gvk(&gvk))
}

fn image_list(name: &str, images: &[&str]) -> DynamicObject {
    let gvk = GroupVersionKind::gvk("eraser.sh", "v1", "ImageList");
    let mut object = DynamicObject::new(name, &ApiResource::from_gvk(&gvk));
    object.data = json!({"spec": {"images": images}});
    object
}

async fn namespace(client: &kube::Client, name: &str) {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": name}})).unwrap();
    namespaces
        .create(&PostParams::default(), &ns)
        .await
        .unwrap();
}

#[tokio::test]
async fn writes_carry_resource_versions_and_stale_ones_conflict() {
    let server = server().await;
    let client = server.client().unwrap();
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");

    let created = cms
        .create(&PostParams::default(), &cm("a", &[("k", "1")]))
        .await
        .unwrap();
    let rv1 = created.metadata.resource_version.clone().unwrap();
    assert!(created.metadata.uid.is_some());
    assert!(created.metadata.creation_timestamp.is_some());

    let mut changed = created.clone();
    changed.data = Some(BTreeMap::from([("k".to_string(), "2".to_string())]));
    let replaced = cms
        .replace("a", &PostParams::default(), &changed)
        .await
        .unwrap();
    let rv2 = replaced.metadata.resource_version.clone().unwrap();
    assert!(rv2.parse::<u64>().unwrap() > rv1.parse::<u64>().unwrap());

    // `changed` still carries rv1: stale.
    assert_eq!(
        code(
            cms.replace("a", &PostParams::default(), &changed)
                .await
                .unwrap_err()
        ),
        409
    );
    // A write that changes nothing is not a write.
    let same = cms
        .replace("a", &PostParams::default(), &replaced)
        .await
        .unwrap();
    assert_eq!(same.metadata.resource_version.unwrap(), rv2);

    assert_eq!(
        code(
            cms.create(&PostParams::default(), &cm("a", &[]))
                .await
                .unwrap_err()
        ),
        409
    );
    // An object fetched from the server cannot be created again as it is.
    let mut fetched = cms.get("a").await.unwrap();
    fetched.metadata.name = Some("copy".into());
    let error = cms
        .create(&PostParams::default(), &fetched)
        .await
        .unwrap_err();
    assert_eq!(code(error), 500);
    assert_eq!(
        code(
            cms.create(&PostParams::default(), &cm("Bad_Name", &[]))
                .await
                .unwrap_err()
        ),
        422
    );
    assert_eq!(code(cms.get("missing").await.unwrap_err()), 404);
    let elsewhere: Api<ConfigMap> = Api::namespaced(client.clone(), "no-such-namespace");
    assert_eq!(
        code(
            elsewhere
                .create(&PostParams::default(), &cm("a", &[]))
                .await
                .unwrap_err()
        ),
        404
    );

    let mut generated = cm("", &[]);
    generated.metadata.name = None;
    generated.metadata.generate_name = Some("eraser-".into());
    let made = cms
        .create(&PostParams::default(), &generated)
        .await
        .unwrap();
    let name = made.metadata.name.unwrap();
    assert!(
        name.starts_with("eraser-") && name.len() == "eraser-".len() + 5,
        "{name}"
    );

    // Errors are Status objects with the real reason.
    let kube::Error::Api(status) = cms.get("missing").await.unwrap_err() else {
        panic!("not an API error")
    };
    assert_eq!(status.reason, "NotFound");
    assert_eq!(status.message, "configmaps \"missing\" not found");
    server.shutdown().await;
}

#[tokio::test]
async fn lists_page_through_one_snapshot() {
    let server = server().await;
    let client = server.client().unwrap();
    namespace(&client, "paging").await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "paging");
    for i in 0..5 {
        cms.create(&PostParams::default(), &cm(&format!("cm-{i}"), &[]))
            .await
            .unwrap();
    }
    let first = cms.list(&ListParams::default().limit(3)).await.unwrap();
    assert_eq!(first.items.len(), 3);
    let token = first.metadata.continue_.clone().expect("a continue token");
    assert_eq!(
        first.metadata.remaining_item_count,
        Some(3),
        "2 more and kube-root-ca.crt"
    );
    cms.create(&PostParams::default(), &cm("cm-late", &[]))
        .await
        .unwrap();
    let second = cms
        .list(&ListParams::default().limit(3).continue_token(&token))
        .await
        .unwrap();
    let names: Vec<String> = second
        .items
        .iter()
        .map(|c| c.metadata.name.clone().unwrap())
        .collect();
    assert_eq!(names, ["cm-3", "cm-4", "kube-root-ca.crt"]);
    assert_eq!(
        second.metadata.resource_version,
        first.metadata.resource_version
    );

    server.compact();
    let gone = cms
        .list(&ListParams::default().limit(3).continue_token(&token))
        .await
        .unwrap_err();
    assert_eq!(code(gone), 410);
    server.shutdown().await;
}

#[tokio::test]
async fn watches_resume_from_a_version_and_expire_with_410() {
    let server = server_with(ServerOptions {
        bookmark_interval: Duration::from_millis(200),
        ..Default::default()
    })
    .await;
    let client = server.client().unwrap();
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let start = cms
        .list(&ListParams::default())
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();
    cms.create(&PostParams::default(), &cm("w", &[("k", "1")]))
        .await
        .unwrap();
    cms.patch(
        "w",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"k": "2"}})),
    )
    .await
    .unwrap();
    cms.delete("w", &DeleteParams::default()).await.unwrap();

    let mut stream = cms
        .watch(
            &WatchParams {
                bookmarks: true,
                ..WatchParams::default().timeout(10)
            },
            &start,
        )
        .await
        .unwrap()
        .boxed();
    let mut seen = Vec::new();
    while seen.len() < 4 {
        let event = tokio::time::timeout(Duration::from_secs(10), stream.next())
            .await
            .expect("a watch event in time")
            .expect("the stream is open")
            .unwrap();
        seen.push(match event {
            WatchEvent::Added(c) => format!("ADDED {}", c.data.unwrap()["k"]),
            WatchEvent::Modified(c) => format!("MODIFIED {}", c.data.unwrap()["k"]),
            WatchEvent::Deleted(_) => "DELETED".to_string(),
            WatchEvent::Bookmark(b) => {
                assert!(b.metadata.resource_version.parse::<u64>().unwrap() > 0);
                "BOOKMARK".to_string()
            }
            WatchEvent::Error(e) => panic!("{e:?}"),
        });
    }
    assert_eq!(seen, ["ADDED 1", "MODIFIED 2", "DELETED", "BOOKMARK"]);

    server.compact();
    cms.create(&PostParams::default(), &cm("after", &[]))
        .await
        .unwrap();
    let mut expired = cms
        .watch(&WatchParams::default(), &start)
        .await
        .unwrap()
        .boxed();
    match tokio::time::timeout(Duration::from_secs(10), expired.next())
        .await
        .unwrap()
    {
        Some(Ok(WatchEvent::Error(e))) => assert_eq!((e.code, e.reason.as_str()), (410, "Expired")),
        other => panic!("expected a 410 ERROR event, got {other:?}"),
    }
    server.shutdown().await;
}

type Events =
    futures::stream::BoxStream<'static, Result<watcher::Event<ConfigMap>, watcher::Error>>;

async fn next(events: &mut Events) -> Result<watcher::Event<ConfigMap>, watcher::Error> {
    tokio::time::timeout(Duration::from_secs(15), events.next())
        .await
        .expect("a watcher event in time")
        .expect("the stream is open")
}

#[tokio::test]
async fn kubes_watcher_relists_after_410() {
    // Bookmarks rarely, so the watcher's version stays old across the compaction.
    let server = server_with(ServerOptions {
        bookmark_interval: Duration::from_secs(3600),
        ..Default::default()
    })
    .await;
    let client = server.client().unwrap();
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let config = watcher::Config::default().timeout(1);
    let mut events: Events = watcher(cms.clone(), config).default_backoff().boxed();
    loop {
        if let Ok(watcher::Event::InitDone) = next(&mut events).await {
            break;
        }
    }
    cms.create(&PostParams::default(), &cm("before", &[]))
        .await
        .unwrap();
    loop {
        if let Ok(watcher::Event::Apply(c)) = next(&mut events).await {
            assert_eq!(c.metadata.name.as_deref(), Some("before"));
            break;
        }
    }
    // Move the history past the watcher's version (a change it does not watch), then forget
    // it: the watcher's next watch gets 410 and it relists.
    let secrets: Api<k8s_openapi::api::core::v1::Secret> =
        Api::namespaced(client.clone(), "default");
    secrets
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "s"}})).unwrap(),
        )
        .await
        .unwrap();
    server.compact();
    let (mut saw_error, mut relisted, mut listed_before) = (false, false, false);
    loop {
        match next(&mut events).await {
            Err(_) => saw_error = true,
            Ok(watcher::Event::Init) => relisted = saw_error,
            Ok(watcher::Event::InitApply(c)) => {
                listed_before |= c.metadata.name.as_deref() == Some("before")
            }
            Ok(watcher::Event::InitDone) if relisted => break,
            Ok(_) => {}
        }
    }
    assert!(saw_error && relisted && listed_before);
    cms.create(&PostParams::default(), &cm("after", &[]))
        .await
        .unwrap();
    loop {
        if let Ok(watcher::Event::Apply(c)) = next(&mut events).await {
            assert_eq!(c.metadata.name.as_deref(), Some("after"));
            break;
        }
    }
    server.shutdown().await;
}

#[tokio::test]
async fn every_patch_type_works() {
    let server = server().await;
    let client = server.client().unwrap();
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    cms.create(&PostParams::default(), &cm("p", &[("a", "1"), ("b", "2")]))
        .await
        .unwrap();

    // JSON patch, with a passing and a failing `test`.
    let ok: json_patch::Patch = serde_json::from_value(json!([
        {"op": "test", "path": "/data/a", "value": "1"},
        {"op": "replace", "path": "/data/a", "value": "10"}
    ]))
    .unwrap();
    let patched = cms
        .patch("p", &PatchParams::default(), &Patch::Json::<()>(ok))
        .await
        .unwrap();
    assert_eq!(patched.data.as_ref().unwrap()["a"], "10");
    let failing: json_patch::Patch =
        serde_json::from_value(json!([{"op": "test", "path": "/data/a", "value": "1"}])).unwrap();
    let error = cms
        .patch("p", &PatchParams::default(), &Patch::Json::<()>(failing))
        .await
        .unwrap_err();
    assert_eq!(code(error), 422);

    // Merge patch: null deletes.
    let merged = cms
        .patch(
            "p",
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {"b": null, "c": "3"}})),
        )
        .await
        .unwrap();
    assert_eq!(
        merged.data.unwrap(),
        BTreeMap::from([("a".into(), "10".into()), ("c".into(), "3".into())])
    );

    // Strategic merge patch merges containers by name.
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let deployment: Deployment = serde_json::from_value(json!({
        "metadata": {"name": "d"},
        "spec": {"selector": {"matchLabels": {"app": "d"}}, "template": {
            "metadata": {"labels": {"app": "d"}},
            "spec": {"containers": [
                {"name": "main", "image": "app:1", "args": ["--x"]},
                {"name": "side", "image": "side:1"}
            ]}}}
    }))
    .unwrap();
    deployments
        .create(&PostParams::default(), &deployment)
        .await
        .unwrap();
    let patch = json!({"spec": {"template": {"spec": {"containers": [{"name": "main", "image": "app:2"}]}}}});
    let d = deployments
        .patch("d", &PatchParams::default(), &Patch::Strategic(patch))
        .await
        .unwrap();
    let containers = d.spec.unwrap().template.spec.unwrap().containers;
    assert_eq!(containers.len(), 2);
    assert_eq!(containers[0].image.as_deref(), Some("app:2"));
    assert_eq!(containers[0].args.as_ref().unwrap(), &["--x"]);
    assert_eq!(d.metadata.generation, Some(2));

    // Custom resources refuse strategic merge patch, as a real server does.
    let lists = image_lists(client.clone());
    lists
        .create(&PostParams::default(), &image_list("l", &["a"]))
        .await
        .unwrap();
    let error = lists
        .patch(
            "l",
            &PatchParams::default(),
            &Patch::Strategic(json!({"spec": {"images": ["b"]}})),
        )
        .await
        .unwrap_err();
    assert_eq!(code(error), 415);

    // Server-side apply: create, conflict with another manager, force.
    let applied = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "applied"},
                         "data": {"mode": "a", "extra": "x"}});
    let first = cms
        .patch(
            "applied",
            &PatchParams::apply("ctl"),
            &Patch::Apply(&applied),
        )
        .await
        .unwrap();
    let managed = first.metadata.managed_fields.clone().unwrap();
    assert_eq!(managed[0].manager.as_deref(), Some("ctl"));
    assert_eq!(managed[0].operation.as_deref(), Some("Apply"));
    cms.patch(
        "applied",
        &PatchParams {
            field_manager: Some("other".into()),
            ..Default::default()
        },
        &Patch::Merge(json!({"data": {"mode": "b"}})),
    )
    .await
    .unwrap();
    let conflict = cms
        .patch(
            "applied",
            &PatchParams::apply("ctl"),
            &Patch::Apply(&applied),
        )
        .await
        .unwrap_err();
    let kube::Error::Api(status) = conflict else {
        panic!("not an API error")
    };
    assert_eq!(status.code, 409);
    assert!(status.message.contains("other"), "{}", status.message);
    // Forced, and without `extra` any more: mode taken back, extra removed.
    let again = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "applied"},
                       "data": {"mode": "a"}});
    let forced = cms
        .patch(
            "applied",
            &PatchParams::apply("ctl").force(),
            &Patch::Apply(&again),
        )
        .await
        .unwrap();
    assert_eq!(
        forced.data.unwrap(),
        BTreeMap::from([("mode".into(), "a".into())])
    );
    server.shutdown().await;
}

#[tokio::test]
async fn status_is_a_subresource_and_generation_follows_spec() {
    let server = server().await;
    let client = server.client().unwrap();
    let lists = image_lists(client.clone());
    let mut object = image_list("s", &["a"]);
    object.data["status"] = json!({"success": 5});
    object.data["spec"]["unknown"] = json!("pruned");
    let created = lists.create(&PostParams::default(), &object).await.unwrap();
    assert!(created.data.get("status").is_none(), "create drops status");
    assert!(
        created.data["spec"].get("unknown").is_none(),
        "unknown fields are pruned"
    );
    assert_eq!(created.metadata.generation, Some(1));

    let with_status = lists
        .patch_status(
            "s",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"success": 2}, "spec": {"images": ["z"]}})),
        )
        .await
        .unwrap();
    assert_eq!(with_status.data["status"]["success"], 2);
    assert_eq!(
        with_status.data["spec"]["images"],
        json!(["a"]),
        "/status does not touch spec"
    );
    assert_eq!(
        with_status.metadata.generation,
        Some(1),
        "status changes keep generation"
    );

    let main = lists
        .patch(
            "s",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"success": 9}, "spec": {"images": ["b"]}})),
        )
        .await
        .unwrap();
    assert_eq!(
        main.data["status"]["success"], 2,
        "the main resource does not touch status"
    );
    assert_eq!(main.metadata.generation, Some(2));

    let relabelled = lists
        .patch(
            "s",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"x": "y"}}})),
        )
        .await
        .unwrap();
    assert_eq!(
        relabelled.metadata.generation,
        Some(2),
        "metadata changes keep generation"
    );

    let invalid = lists
        .patch(
            "s",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"action": "Nuke"}})),
        )
        .await
        .unwrap_err();
    assert_eq!(code(invalid), 422);

    // Custom resources need a resourceVersion to be replaced.
    let mut unconditional = lists.get("s").await.unwrap();
    unconditional.metadata.resource_version = None;
    let error = lists
        .replace("s", &PostParams::default(), &unconditional)
        .await
        .unwrap_err();
    assert_eq!(code(error), 422);

    // The deprecated version serves the same object.
    let gvk = GroupVersionKind::gvk("eraser.sh", "v1alpha1", "ImageList");
    let old: Api<DynamicObject> = Api::all_with(client.clone(), &ApiResource::from_gvk(&gvk));
    let same = old.get("s").await.unwrap();
    assert_eq!(same.types.unwrap().api_version, "eraser.sh/v1alpha1");
    assert_eq!(same.data["spec"]["images"], json!(["b"]));
    server.shutdown().await;
}

#[tokio::test]
async fn finalizers_hold_deletion_and_owners_cascade() {
    let server = server().await;
    let client = server.client().unwrap();
    let lists = image_lists(client.clone());
    let mut held = image_list("held", &[]);
    held.metadata.finalizers = Some(vec!["eraser.sh/cleanup".into()]);
    lists.create(&PostParams::default(), &held).await.unwrap();
    lists
        .delete("held", &DeleteParams::default())
        .await
        .unwrap();
    let deleting = lists.get("held").await.unwrap();
    assert!(deleting.metadata.deletion_timestamp.is_some());
    let add = lists
        .patch(
            "held",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"finalizers": ["eraser.sh/cleanup", "another"]}})),
        )
        .await
        .unwrap_err();
    assert_eq!(code(add), 422, "no new finalizers while deleting");
    lists
        .patch(
            "held",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"finalizers": null}})),
        )
        .await
        .unwrap();
    assert_eq!(code(lists.get("held").await.unwrap_err()), 404);

    // Background cascade: dependents go after the owner.
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let owner = lists
        .create(&PostParams::default(), &image_list("owner", &[]))
        .await
        .unwrap();
    let owner_ref = json!([{"apiVersion": "eraser.sh/v1", "kind": "ImageList", "name": "owner",
                            "uid": owner.metadata.uid.clone().unwrap(), "blockOwnerDeletion": true}]);
    for name in ["dep-1", "dep-2"] {
        let mut dependent = cm(name, &[]);
        dependent.metadata.owner_references =
            Some(serde_json::from_value(owner_ref.clone()).unwrap());
        cms.create(&PostParams::default(), &dependent)
            .await
            .unwrap();
    }
    lists
        .delete("owner", &DeleteParams::background())
        .await
        .unwrap();
    wait_for("dependents to be collected", || async {
        let left = cms.list(&ListParams::default()).await.unwrap();
        (!left.items.iter().any(|c| {
            c.metadata
                .name
                .as_deref()
                .is_some_and(|n| n.starts_with("dep-"))
        }))
        .then_some(())
    })
    .await;

    // Foreground: the owner waits for its dependents.
    let owner = lists
        .create(&PostParams::default(), &image_list("fg", &[]))
        .await
        .unwrap();
    let mut dependent = cm("fg-dep", &[]);
    dependent.metadata.owner_references = Some(
        serde_json::from_value(json!([{"apiVersion": "eraser.sh/v1",
        "kind": "ImageList", "name": "fg", "uid": owner.metadata.uid.unwrap()}]))
        .unwrap(),
    );
    dependent.metadata.finalizers = Some(vec!["test/hold".into()]);
    cms.create(&PostParams::default(), &dependent)
        .await
        .unwrap();
    lists
        .delete("fg", &DeleteParams::foreground())
        .await
        .unwrap();
    wait_for("the dependent to be deleting", || async {
        cms.get("fg-dep")
            .await
            .unwrap()
            .metadata
            .deletion_timestamp
            .map(|_| ())
    })
    .await;
    assert!(
        lists
            .get("fg")
            .await
            .unwrap()
            .metadata
            .deletion_timestamp
            .is_some(),
        "owner waits"
    );
    cms.patch(
        "fg-dep",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": null}})),
    )
    .await
    .unwrap();
    wait_for("the owner to go", || async {
        lists.get_opt("fg").await.unwrap().is_none().then_some(())
    })
    .await;

    // Orphan: dependents stay and lose the reference.
    let owner = lists
        .create(&PostParams::default(), &image_list("orphaner", &[]))
        .await
        .unwrap();
    let mut dependent = cm("orphan", &[]);
    dependent.metadata.owner_references = Some(
        serde_json::from_value(json!([{"apiVersion": "eraser.sh/v1",
        "kind": "ImageList", "name": "orphaner", "uid": owner.metadata.uid.unwrap()}]))
        .unwrap(),
    );
    cms.create(&PostParams::default(), &dependent)
        .await
        .unwrap();
    lists
        .delete(
            "orphaner",
            &DeleteParams {
                propagation_policy: Some(kube::api::PropagationPolicy::Orphan),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    wait_for("the orphaning owner to go", || async {
        lists
            .get_opt("orphaner")
            .await
            .unwrap()
            .is_none()
            .then_some(())
    })
    .await;
    let orphan = cms.get("orphan").await.unwrap();
    assert!(
        orphan
            .metadata
            .owner_references
            .is_none_or(|r| r.is_empty())
    );
    server.shutdown().await;
}

#[tokio::test]
async fn label_and_field_selectors() {
    let server = server().await;
    let client = server.client().unwrap();
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    for (name, node, app) in [
        ("a", "n1", "eraser"),
        ("b", "n2", "eraser"),
        ("c", "n1", "manager"),
        ("d", "", "eraser"),
    ] {
        let mut spec = json!({"containers": [{"name": "c", "image": "x:1"}]});
        if !node.is_empty() {
            spec["nodeName"] = json!(node);
        }
        let pod: Pod = serde_json::from_value(
            json!({"metadata": {"name": name, "labels": {"app": app, "tier": "t"}}, "spec": spec}),
        )
        .unwrap();
        pods.create(&PostParams::default(), &pod).await.unwrap();
    }
    let names = |list: kube::core::ObjectList<Pod>| -> Vec<String> {
        list.items
            .into_iter()
            .map(|p| p.metadata.name.unwrap())
            .collect()
    };
    let on_n1 = pods
        .list(&ListParams::default().fields("spec.nodeName=n1"))
        .await
        .unwrap();
    assert_eq!(names(on_n1), ["a", "c"]);
    let unscheduled = pods
        .list(&ListParams::default().fields("spec.nodeName="))
        .await
        .unwrap();
    assert_eq!(names(unscheduled), ["d"]);
    let pending = pods
        .list(&ListParams::default().fields("status.phase=Pending,metadata.name!=a"))
        .await
        .unwrap();
    assert_eq!(names(pending), ["b", "c", "d"]);
    let eraser = pods
        .list(&ListParams::default().labels("app=eraser,tier"))
        .await
        .unwrap();
    assert_eq!(names(eraser), ["a", "b", "d"]);
    let set = pods
        .list(&ListParams::default().labels("app in (manager, other),!missing"))
        .await
        .unwrap();
    assert_eq!(names(set), ["c"]);
    let not = pods
        .list(&ListParams::default().labels("app notin (eraser)"))
        .await
        .unwrap();
    assert_eq!(names(not), ["c"]);
    let bad = pods
        .list(&ListParams::default().fields("spec.image=x"))
        .await
        .unwrap_err();
    assert_eq!(code(bad), 400);

    // A watch with a selector sees objects enter and leave it.
    let start = pods
        .list(&ListParams::default())
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();
    let mut stream = pods
        .watch(
            &WatchParams::default().labels("app=manager").timeout(10),
            &start,
        )
        .await
        .unwrap()
        .boxed();
    pods.patch(
        "a",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"app": "manager"}}})),
    )
    .await
    .unwrap();
    pods.patch(
        "c",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"app": "eraser"}}})),
    )
    .await
    .unwrap();
    let mut seen = Vec::new();
    while seen.len() < 2 {
        match stream.try_next().await.unwrap().unwrap() {
            WatchEvent::Added(p) => seen.push(format!("ADDED {}", p.metadata.name.unwrap())),
            WatchEvent::Deleted(p) => seen.push(format!("DELETED {}", p.metadata.name.unwrap())),
            WatchEvent::Bookmark(_) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(seen, ["ADDED a", "DELETED c"]);
    server.shutdown().await;
}

#[tokio::test]
async fn pods_are_admitted_like_a_real_cluster() {
    let server = server().await;
    let client = server.client().unwrap();
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let pod: Pod = serde_json::from_value(json!({"metadata": {"name": "p"},
        "spec": {"nodeName": "n1", "containers": [{"name": "c", "image": "app:1"}]}}))
    .unwrap();
    let created = pods.create(&PostParams::default(), &pod).await.unwrap();
    let spec = created.spec.clone().unwrap();
    assert_eq!(spec.service_account_name.as_deref(), Some("default"));
    assert_eq!(spec.restart_policy.as_deref(), Some("Always"));
    let c = &spec.containers[0];
    assert_eq!(
        c.termination_message_path.as_deref(),
        Some("/dev/termination-log")
    );
    let mounts = c.volume_mounts.clone().unwrap();
    assert_eq!(
        mounts[0].mount_path,
        "/var/run/secrets/kubernetes.io/serviceaccount"
    );
    assert_eq!(created.status.unwrap().phase.as_deref(), Some("Pending"));

    // The spec is immutable but for images.
    let bad = pods
        .patch(
            "p",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"restartPolicy": "Never"}})),
        )
        .await
        .unwrap_err();
    assert_eq!(code(bad), 422);
    pods.patch(
        "p",
        &PatchParams::default(),
        &Patch::Strategic(json!({"spec": {"containers": [{"name": "c", "image": "app:2"}]}})),
    )
    .await
    .unwrap();

    // A missing service account or priority class is refused.
    let orphan: Pod = serde_json::from_value(json!({"metadata": {"name": "q"},
        "spec": {"serviceAccountName": "nobody", "containers": [{"name": "c", "image": "app:1"}]}}))
    .unwrap();
    assert_eq!(
        code(
            pods.create(&PostParams::default(), &orphan)
                .await
                .unwrap_err()
        ),
        403
    );
    let unknown_class: Pod = serde_json::from_value(json!({"metadata": {"name": "r"},
        "spec": {"priorityClassName": "nope", "containers": [{"name": "c", "image": "app:1"}]}}))
    .unwrap();
    assert_eq!(
        code(
            pods.create(&PostParams::default(), &unknown_class)
                .await
                .unwrap_err()
        ),
        403
    );

    // A bound, running pod is deleted gracefully; grace 0 removes it.
    pods.delete("p", &DeleteParams::default()).await.unwrap();
    let terminating = pods.get("p").await.unwrap();
    assert!(terminating.metadata.deletion_timestamp.is_some());
    assert_eq!(terminating.metadata.deletion_grace_period_seconds, Some(30));
    pods.delete("p", &DeleteParams::default().grace_period(0))
        .await
        .unwrap();
    assert!(pods.get_opt("p").await.unwrap().is_none());
    server.shutdown().await;
}

#[tokio::test]
async fn namespaces_delete_their_contents() {
    let server = server().await;
    let client = server.client().unwrap();
    namespace(&client, "doomed").await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "doomed");
    cms.create(&PostParams::default(), &cm("x", &[]))
        .await
        .unwrap();
    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces
        .delete("doomed", &DeleteParams::default())
        .await
        .unwrap();
    wait_for("the namespace to go", || async {
        namespaces
            .get_opt("doomed")
            .await
            .unwrap()
            .is_none()
            .then_some(())
    })
    .await;
    assert!(
        cms.list(&ListParams::default())
            .await
            .unwrap()
            .items
            .is_empty()
    );
    server.shutdown().await;
}

#[tokio::test]
async fn events_are_one_set_of_objects_in_two_shapes() {
    use kube::runtime::events::{Event, EventType, Recorder};
    let server = server().await;
    let client = server.client().unwrap();
    let lists = image_lists(client.clone());
    let list = lists
        .create(&PostParams::default(), &image_list("imagelist", &["a"]))
        .await
        .unwrap();
    let recorder = Recorder::new(client.clone(), "imagecleaner".into());
    let event = Event {
        type_: EventType::Normal,
        reason: "RoleResolved".into(),
        note: Some("imagelist removes images".into()),
        action: "Resolve".into(),
        secondary: None,
    };
    let gvk = GroupVersionKind::gvk("eraser.sh", "v1", "ImageList");
    let reference = kube::Resource::object_ref(&list, &ApiResource::from_gvk(&gvk));
    recorder.publish(&event, &reference).await.unwrap();
    // The same event again becomes a series (a merge patch of the first).
    recorder.publish(&event, &reference).await.unwrap();

    let core: Api<k8s_openapi::api::core::v1::Event> = Api::namespaced(client.clone(), "default");
    let events = core
        .list(&ListParams::default().fields("reason=RoleResolved"))
        .await
        .unwrap();
    assert_eq!(events.items.len(), 1);
    let e = &events.items[0];
    assert_eq!(e.message.as_deref(), Some("imagelist removes images"));
    assert_eq!(e.involved_object.kind.as_deref(), Some("ImageList"));
    assert_eq!(e.reporting_component.as_deref(), Some("imagecleaner"));
    let v1: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(client.clone(), "default");
    let same = v1.get(e.metadata.name.as_ref().unwrap()).await.unwrap();
    assert_eq!(same.note.as_deref(), Some("imagelist removes images"));
    assert_eq!(same.series.map(|s| s.count), Some(2));

    // Deleting by selector, and a dry run that changes nothing.
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let mut labelled = cm("gone-1", &[]);
    labelled.metadata.labels = Some(BTreeMap::from([("batch".to_string(), "x".to_string())]));
    cms.create(&PostParams::default(), &labelled).await.unwrap();
    let dry = PostParams {
        dry_run: true,
        ..Default::default()
    };
    cms.create(&dry, &cm("never", &[])).await.unwrap();
    assert!(cms.get_opt("never").await.unwrap().is_none());
    let deleted = cms
        .delete_collection(
            &DeleteParams::default(),
            &ListParams::default().labels("batch=x"),
        )
        .await
        .unwrap();
    let names: Vec<String> = deleted
        .left()
        .unwrap()
        .items
        .into_iter()
        .map(|c| c.metadata.name.unwrap())
        .collect();
    assert_eq!(names, ["gone-1"]);
    assert!(cms.get_opt("gone-1").await.unwrap().is_none());
    server.shutdown().await;
}

#[tokio::test]
async fn malformed_requests_get_4xx_statuses() {
    use axum::http::Request;
    let server = server().await;
    let client = server.client().unwrap();
    let send = |method: &str, uri: &str, content_type: &str, body: &[u8]| {
        let request = Request::builder()
            .method(method)
            .uri(uri)
            .header("content-type", content_type)
            .body(body.to_vec())
            .unwrap();
        let client = client.clone();
        async move {
            match client.request_text(request).await {
                Ok(_) => 200,
                Err(e) => code(e),
            }
        }
    };
    let cms = "/api/v1/namespaces/default/configmaps";
    assert_eq!(
        send("POST", cms, "application/json", b"{not json").await,
        400
    );
    assert_eq!(send("POST", cms, "application/json", b"[1, 2]").await, 400);
    assert_eq!(
        send(
            "POST",
            cms,
            "application/json",
            br#"{"kind": "Pod", "metadata": {"name": "x"}}"#
        )
        .await,
        400
    );
    assert_eq!(
        send(
            "POST",
            cms,
            "application/json",
            br#"{"metadata": {"name": "x", "namespace": "other"}}"#
        )
        .await,
        400
    );
    assert_eq!(
        send(
            "POST",
            cms,
            "application/json",
            br#"{"metadata": {"name": "x", "labels": {"a": "b c"}}}"#
        )
        .await,
        422
    );
    assert_eq!(
        send(
            "POST",
            cms,
            "application/vnd.kubernetes.protobuf",
            b"k8s\0garbage"
        )
        .await,
        415
    );
    assert_eq!(
        send(
            "POST",
            cms,
            "application/json",
            br#"{"metadata": {"name": "ok"}}"#
        )
        .await,
        200
    );
    assert_eq!(
        send("PATCH", &format!("{cms}/ok"), "text/plain", b"x").await,
        415
    );
    assert_eq!(
        send(
            "PATCH",
            &format!("{cms}/ok"),
            "application/json-patch+json",
            b"{}"
        )
        .await,
        400
    );
    assert_eq!(
        send(
            "PATCH",
            &format!("{cms}/ok"),
            "application/merge-patch+json",
            b"\"x\""
        )
        .await,
        400
    );
    assert_eq!(
        send(
            "PATCH",
            &format!("{cms}/ok?fieldManager="),
            "application/apply-patch+yaml",
            b"a: ["
        )
        .await,
        422
    );
    assert_eq!(
        send(
            "PATCH",
            &format!("{cms}/ok?fieldManager=m"),
            "application/apply-patch+yaml",
            b"a: ["
        )
        .await,
        400
    );
    assert_eq!(send("PUT", cms, "application/json", b"{}").await, 405);
    assert_eq!(
        send("GET", &format!("{cms}?limit=many"), "", b"").await,
        400
    );
    assert_eq!(
        send("GET", &format!("{cms}?continue=%%%"), "", b"").await,
        400
    );
    assert_eq!(
        send("GET", &format!("{cms}?labelSelector=a%20b%20c"), "", b"").await,
        400
    );
    assert_eq!(
        send("GET", &format!("{cms}?resourceVersion=abc"), "", b"").await,
        400
    );
    assert_eq!(
        send(
            "GET",
            &format!("{cms}?watch=true&resourceVersion=abc"),
            "",
            b""
        )
        .await,
        400
    );
    assert_eq!(send("GET", &format!("{cms}/ok/status"), "", b"").await, 404);
    assert_eq!(
        send("GET", "/api/v1/namespaces/default/widgets", "", b"").await,
        404
    );
    assert_eq!(send("GET", "/apis/nope.example.com/v1", "", b"").await, 404);
    assert_eq!(
        send("DELETE", &format!("{cms}/ok"), "application/json", b"{bad").await,
        400
    );
    assert_eq!(
        send("GET", &format!("{cms}/ok"), "", b"").await,
        200,
        "the server still serves"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn streaming_lists_end_their_initial_events_with_a_bookmark() {
    let server = server().await;
    let client = server.client().unwrap();
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    cms.create(&PostParams::default(), &cm("early", &[]))
        .await
        .unwrap();
    let config = watcher::Config::default().streaming_lists();
    let mut events: Events = watcher(cms.clone(), config).boxed();
    let mut initial = Vec::new();
    loop {
        match next(&mut events).await.unwrap() {
            watcher::Event::InitApply(c) => initial.push(c.metadata.name.unwrap()),
            watcher::Event::InitDone => break,
            _ => {}
        }
    }
    initial.sort();
    assert_eq!(initial, ["early", "kube-root-ca.crt"]);
    cms.create(&PostParams::default(), &cm("late", &[]))
        .await
        .unwrap();
    loop {
        if let watcher::Event::Apply(c) = next(&mut events).await.unwrap() {
            assert_eq!(c.metadata.name.as_deref(), Some("late"));
            break;
        }
    }
    server.shutdown().await;
}
