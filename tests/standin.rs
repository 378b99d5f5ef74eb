//! The stand-in Kubernetes API server (tests/support/apiserver.rs), exercised through
//! kube's real client, watcher, reflector, finalizer helper, event recorder and
//! kube-lease-manager: the behaviour folio's cluster tests rely on.

mod support;

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use folio::resources::RenderJob;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::{WatchStreamExt, conditions, reflector, wait, watcher};
use kube::{Resource, ResourceExt};
use serde_json::{Value, json};
use support::apiserver::StandInApiServer;

/// Fail the test instead of hanging when something never arrives.
async fn within<T>(what: &str, future: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(15), future).await.unwrap_or_else(|_| panic!("timed out: {what}"))
}

/// Poll `check` until it holds (watch-driven state arrives asynchronously).
async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    within(what, async {
        while !check() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
}

fn api_error(error: kube::Error) -> (u16, String) {
    match error {
        kube::Error::Api(status) => (status.code, status.reason.clone()),
        other => panic!("expected an API error, got {other:?}"),
    }
}

fn config_map(name: &str, labels: Value, data: Value) -> ConfigMap {
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": name, "labels": labels},
        "data": data,
    }))
    .unwrap()
}

fn render_job(name: &str) -> RenderJob {
    serde_json::from_value(json!({
        "apiVersion": "folio.dev/v1alpha1", "kind": "RenderJob",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"templateRef": {"name": "invoice"}, "data": {"number": "0001"}},
        "status": {"pageCount": 99},
    }))
    .unwrap()
}

fn owned_pod(name: &str, owner: &RenderJob) -> Pod {
    let owner_ref = owner.controller_owner_ref(&()).unwrap();
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "ownerReferences": [owner_ref]},
        "spec": {"containers": [{"name": "render", "image": "folio:test"}]},
    }))
    .unwrap()
}

fn rv(object: &impl Resource) -> u64 {
    object.meta().resource_version.as_deref().unwrap().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn created_objects_get_identity_and_versions_and_names_are_unique() {
    let server = StandInApiServer::start().await;
    let maps: Api<ConfigMap> = Api::default_namespaced(server.client());
    let pp = PostParams::default();

    let created = within("create", maps.create(&pp, &config_map("a", json!({}), json!({"k": "v"})))).await.unwrap();
    assert!(created.metadata.uid.is_some());
    assert!(created.metadata.creation_timestamp.is_some());
    assert_eq!(created.metadata.namespace.as_deref(), Some("default"));
    let read = within("get", maps.get("a")).await.unwrap();
    assert_eq!(read.data.unwrap()["k"], "v");
    assert_eq!(read.metadata.resource_version, created.metadata.resource_version);

    let again = within("create twice", maps.create(&pp, &config_map("a", json!({}), json!({})))).await.unwrap_err();
    assert_eq!(api_error(again), (409, "AlreadyExists".to_string()));
    let missing = within("get missing", maps.get("nope")).await.unwrap_err();
    assert_eq!(api_error(missing), (404, "NotFound".to_string()));
    assert!(within("get_opt missing", maps.get_opt("nope")).await.unwrap().is_none());

    let mut generated = config_map("", json!({}), json!({}));
    generated.metadata.name = None;
    generated.metadata.generate_name = Some("job-".into());
    let generated = within("generateName", maps.create(&pp, &generated)).await.unwrap();
    let name = generated.name_any();
    assert!(name.starts_with("job-") && name.len() > 4, "{name}");
    assert!(rv(&generated) > rv(&created));
    assert!(server.get("v1", "configmaps", "default", &name).is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lists_filter_by_label_and_field_selectors_and_page() {
    let server = StandInApiServer::start().await;
    let client = server.client();
    let maps: Api<ConfigMap> = Api::default_namespaced(client.clone());
    let pp = PostParams::default();
    for (name, labels) in [
        ("red", json!({"app": "folio", "color": "red"})),
        ("blue", json!({"app": "folio", "color": "blue"})),
        ("plain", json!({"app": "other"})),
    ] {
        within("create", maps.create(&pp, &config_map(name, labels, json!({})))).await.unwrap();
    }
    let elsewhere: Api<ConfigMap> = Api::namespaced(client.clone(), "acme");
    within("create acme", elsewhere.create(&pp, &config_map("red", json!({"app": "folio"}), json!({})))).await.unwrap();

    let names = |selector: ListParams| {
        let maps = maps.clone();
        async move {
            within("list", maps.list(&selector)).await.unwrap().items.iter().map(|m| m.name_any()).collect::<Vec<_>>()
        }
    };
    assert_eq!(names(ListParams::default().labels("app=folio")).await, ["blue", "red"]);
    assert_eq!(names(ListParams::default().labels("app=folio,color!=red")).await, ["blue"]);
    assert_eq!(names(ListParams::default().labels("color")).await, ["blue", "red"]);
    assert_eq!(names(ListParams::default().labels("!color")).await, ["plain"]);
    assert_eq!(names(ListParams::default().labels("color in (red,green)")).await, ["red"]);
    assert_eq!(names(ListParams::default().fields("metadata.name=plain")).await, ["plain"]);

    let all: Api<ConfigMap> = Api::all(client);
    let everywhere = within("list all", all.list(&ListParams::default().labels("app=folio"))).await.unwrap();
    let keys: Vec<_> = everywhere.items.iter().map(|m| (m.namespace().unwrap(), m.name_any())).collect();
    assert_eq!(
        keys,
        [("acme".into(), "red".into()), ("default".into(), "blue".into()), ("default".into(), "red".into())]
    );
    assert_eq!(everywhere.metadata.resource_version, Some(server.resource_version().to_string()));

    let first = within("page 1", maps.list(&ListParams::default().limit(2))).await.unwrap();
    assert_eq!(first.items.len(), 2);
    let token = first.metadata.continue_.clone().unwrap();
    let second = within("page 2", maps.list(&ListParams::default().limit(2).continue_token(&token))).await.unwrap();
    assert_eq!(second.items.len(), 1);
    assert!(second.metadata.continue_.is_none_or(|c| c.is_empty()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replace_with_a_stale_resource_version_is_a_conflict() {
    let server = StandInApiServer::start().await;
    let maps: Api<ConfigMap> = Api::default_namespaced(server.client());
    let pp = PostParams::default();
    let original = within("create", maps.create(&pp, &config_map("a", json!({}), json!({"k": "1"})))).await.unwrap();

    let mut first = original.clone();
    first.data = Some([("k".to_string(), "2".to_string())].into());
    let replaced = within("replace", maps.replace("a", &pp, &first)).await.unwrap();
    assert!(rv(&replaced) > rv(&original));

    let mut stale = original.clone();
    stale.data = Some([("k".to_string(), "3".to_string())].into());
    let conflict = within("stale replace", maps.replace("a", &pp, &stale)).await.unwrap_err();
    assert_eq!(api_error(conflict), (409, "Conflict".to_string()));
    assert_eq!(within("get", maps.get("a")).await.unwrap().data.unwrap()["k"], "2");

    // Custom resources refuse a replace without a resourceVersion, as a real server does.
    let jobs: Api<RenderJob> = Api::default_namespaced(server.client());
    let job = within("create job", jobs.create(&pp, &render_job("j"))).await.unwrap();
    let mut unversioned = job.clone();
    unversioned.metadata.resource_version = None;
    let invalid = within("unversioned replace", jobs.replace("j", &pp, &unversioned)).await.unwrap_err();
    assert_eq!(api_error(invalid), (422, "Invalid".to_string()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn merge_and_json_patches_apply_and_a_failed_test_changes_nothing() {
    let server = StandInApiServer::start().await;
    let maps: Api<ConfigMap> = Api::default_namespaced(server.client());
    let created = within(
        "create",
        maps.create(&PostParams::default(), &config_map("a", json!({"x": "1"}), json!({"k": "v", "gone": "soon"}))),
    )
    .await
    .unwrap();
    let pp = PatchParams::default();

    let merged = within(
        "merge patch",
        maps.patch(
            "a",
            &pp,
            &Patch::Merge(json!({"metadata": {"labels": {"y": "2"}}, "data": {"gone": null, "new": "n"}})),
        ),
    )
    .await
    .unwrap();
    assert_eq!(merged.labels().get("x").map(String::as_str), Some("1"));
    assert_eq!(merged.labels().get("y").map(String::as_str), Some("2"));
    let data = merged.data.clone().unwrap();
    assert_eq!(
        (data.get("k").map(String::as_str), data.get("gone"), data.get("new").map(String::as_str)),
        (Some("v"), None, Some("n"))
    );

    let stale =
        Patch::Merge(json!({"metadata": {"resourceVersion": created.resource_version().unwrap()}, "data": {"k": "w"}}));
    let conflict = within("stale merge patch", maps.patch("a", &pp, &stale)).await.unwrap_err();
    assert_eq!(api_error(conflict), (409, "Conflict".to_string()));

    let ops: json_patch::Patch = serde_json::from_value(
        json!([{"op": "test", "path": "/data/k", "value": "v"}, {"op": "replace", "path": "/data/k", "value": "w"}]),
    )
    .unwrap();
    let patched = within("json patch", maps.patch("a", &pp, &Patch::<()>::Json(ops))).await.unwrap();
    assert_eq!(patched.data.as_ref().unwrap()["k"], "w");

    let failing: json_patch::Patch = serde_json::from_value(
        json!([{"op": "test", "path": "/data/k", "value": "v"}, {"op": "remove", "path": "/data/new"}]),
    )
    .unwrap();
    let invalid = within("failing json patch", maps.patch("a", &pp, &Patch::<()>::Json(failing))).await.unwrap_err();
    assert_eq!(api_error(invalid), (422, "Invalid".to_string()));
    let after = within("get", maps.get("a")).await.unwrap();
    assert_eq!(after.data.unwrap().get("new").map(String::as_str), Some("n"), "a failed patch is not applied in part");
    assert_eq!(after.metadata.resource_version, patched.metadata.resource_version);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_side_apply_creates_merges_and_guards_other_managers_fields() {
    let server = StandInApiServer::start().await;
    let maps: Api<ConfigMap> = Api::default_namespaced(server.client());
    let apply = |manager: &str, force: bool, data: Value| {
        let maps = maps.clone();
        let mut params = PatchParams::apply(manager);
        params.force = force;
        let body = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a"}, "data": data});
        async move { within("apply", maps.patch("a", &params, &Patch::Apply(body))).await }
    };

    let created = apply("folio", false, json!({"owner": "folio", "more": "yes"})).await.unwrap();
    assert_eq!(created.data.unwrap()["more"], "yes", "apply creates a missing object");
    within(
        "someone else's write",
        maps.patch("a", &PatchParams::default(), &Patch::Merge(json!({"data": {"other": "x"}}))),
    )
    .await
    .unwrap();
    let merged = apply("folio", false, json!({"owner": "folio"})).await.unwrap();
    let data = merged.data.unwrap();
    assert_eq!(data.get("other").map(String::as_str), Some("x"), "apply merges into the object");
    assert!(!data.contains_key("more"), "a field its manager no longer applies is removed");

    let conflict = apply("intruder", false, json!({"owner": "intruder"})).await.unwrap_err();
    assert_eq!(api_error(conflict), (409, "Conflict".to_string()));
    let agreeing = apply("intruder", false, json!({"owner": "folio", "extra": "1"})).await.unwrap();
    assert_eq!(agreeing.data.unwrap()["extra"], "1", "applying the same value is no conflict");
    let forced = apply("intruder", true, json!({"owner": "intruder"})).await.unwrap();
    assert_eq!(forced.data.unwrap()["owner"], "intruder");
    let conflict = apply("folio", false, json!({"owner": "folio"})).await.unwrap_err();
    assert_eq!(api_error(conflict).0, 409, "force took the field over");

    let no_manager = within("apply without manager", async {
        let body = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "b"}});
        let req = http::Request::patch("/api/v1/namespaces/default/configmaps/b")
            .header("content-type", "application/apply-patch+yaml")
            .body(serde_json::to_vec(&body).unwrap())
            .unwrap();
        server.client().request::<ConfigMap>(req).await
    })
    .await
    .unwrap_err();
    assert_eq!(api_error(no_manager), (422, "Invalid".to_string()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_subresource_is_isolated_from_the_main_resource() {
    let server = StandInApiServer::start().await;
    let jobs: Api<RenderJob> = Api::default_namespaced(server.client());
    let created = within("create", jobs.create(&PostParams::default(), &render_job("j"))).await.unwrap();
    assert!(created.status.is_none(), "create ignores status");
    assert_eq!(created.metadata.generation, Some(1));

    let status = Patch::Merge(json!({"status": {"pageCount": 3}, "spec": {"preview": true}}));
    let after_status = within("patch status", jobs.patch_status("j", &PatchParams::default(), &status)).await.unwrap();
    assert_eq!(after_status.status.as_ref().unwrap().page_count, Some(3));
    assert!(!after_status.spec.preview, "a status write leaves spec alone");
    assert_eq!(after_status.metadata.generation, Some(1), "a status write is not a new generation");

    let main = Patch::Merge(json!({"status": {"pageCount": 7}, "spec": {"preview": true}}));
    let after_main = within("patch main", jobs.patch("j", &PatchParams::default(), &main)).await.unwrap();
    assert!(after_main.spec.preview);
    assert_eq!(after_main.status.as_ref().unwrap().page_count, Some(3), "the main resource ignores status");
    assert_eq!(after_main.metadata.generation, Some(2));

    let same = within(
        "no-op status",
        jobs.patch_status("j", &PatchParams::default(), &Patch::Merge(json!({"status": {"pageCount": 3}}))),
    )
    .await
    .unwrap();
    assert_eq!(
        same.metadata.resource_version, after_main.metadata.resource_version,
        "a write that changes nothing is no write"
    );

    let applied =
        Patch::Apply(json!({"apiVersion": "folio.dev/v1alpha1", "kind": "RenderJob", "status": {"pageCount": 4}}));
    let after_apply =
        within("apply status", jobs.patch_status("j", &PatchParams::apply("folio").force(), &applied)).await.unwrap();
    assert_eq!(after_apply.status.unwrap().page_count, Some(4));
    assert_eq!(server.get("folio.dev/v1alpha1", "renderjobs", "default", "j").unwrap()["status"]["pageCount"], 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finalizers_hold_a_deleted_object_until_kube_finalizer_cleans_up() {
    use kube::runtime::finalizer::{Event, finalizer};

    let server = StandInApiServer::start().await;
    let jobs: Api<RenderJob> = Api::default_namespaced(server.client());
    within("create", jobs.create(&PostParams::default(), &render_job("j"))).await.unwrap();
    let cleaned = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reconcile = |job: RenderJob| {
        let jobs = jobs.clone();
        let cleaned = cleaned.clone();
        async move {
            finalizer(&jobs, "folio.dev/output", Arc::new(job), |event| async move {
                if let Event::Cleanup(_) = event {
                    cleaned.store(true, Ordering::SeqCst);
                }
                Ok::<_, std::convert::Infallible>(Action::await_change())
            })
            .await
        }
    };

    let job = within("get", jobs.get("j")).await.unwrap();
    within("add finalizer", reconcile(job)).await.unwrap();
    let job = within("get", jobs.get("j")).await.unwrap();
    assert_eq!(job.finalizers(), ["folio.dev/output"]);

    within("delete", jobs.delete("j", &DeleteParams::default())).await.unwrap();
    let deleting = within("get deleting", jobs.get("j")).await.unwrap();
    assert!(deleting.metadata.deletion_timestamp.is_some(), "held by its finalizer");

    within("cleanup", reconcile(deleting)).await.unwrap();
    assert!(cleaned.load(Ordering::SeqCst));
    assert!(within("get gone", jobs.get_opt("j")).await.unwrap().is_none(), "gone once the finalizer is removed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_an_owner_collects_its_dependents_unless_orphaned() {
    let server = StandInApiServer::start().await;
    let client = server.client();
    let jobs: Api<RenderJob> = Api::default_namespaced(client.clone());
    let pods: Api<Pod> = Api::default_namespaced(client.clone());
    let maps: Api<ConfigMap> = Api::default_namespaced(client);
    let pp = PostParams::default();

    let job = within("create job", jobs.create(&pp, &render_job("j"))).await.unwrap();
    within("create pod", pods.create(&pp, &owned_pod("j-render", &job))).await.unwrap();
    within("create unrelated", maps.create(&pp, &config_map("keep", json!({}), json!({})))).await.unwrap();
    within("delete owner", jobs.delete("j", &DeleteParams::default())).await.unwrap();
    assert!(within("pod gone", pods.get_opt("j-render")).await.unwrap().is_none());
    assert!(within("unrelated kept", maps.get_opt("keep")).await.unwrap().is_some());

    let job = within("create job 2", jobs.create(&pp, &render_job("k"))).await.unwrap();
    within("create pod 2", pods.create(&pp, &owned_pod("k-render", &job))).await.unwrap();
    within("orphan delete", jobs.delete("k", &DeleteParams::orphan())).await.unwrap();
    let orphan = within("pod kept", pods.get("k-render")).await.unwrap();
    assert!(orphan.owner_references().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watcher_and_reflector_see_added_modified_and_deleted() {
    let server = StandInApiServer::start().await;
    let client = server.client();
    let maps: Api<ConfigMap> = Api::default_namespaced(client.clone());
    let pp = PostParams::default();
    within("create before", maps.create(&pp, &config_map("early", json!({"app": "folio"}), json!({})))).await.unwrap();

    let (store, writer) = reflector::store();
    let config = watcher::Config::default().labels("app=folio");
    let stream = reflector(writer, watcher(maps.clone(), config)).applied_objects();
    // The stream is driven on its own task, as a controller drives it, so the store fills.
    let (names, mut events) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(stream.try_for_each(move |map| {
        let _ = names.send(map.name_any());
        async { Ok(()) }
    }));
    let mut next_name = async move || within("watch event", events.recv()).await.expect("the watch stream ended");
    assert_eq!(next_name().await, "early", "objects listed first");
    within("store ready", store.wait_until_ready()).await.unwrap();

    within("create", maps.create(&pp, &config_map("late", json!({"app": "folio"}), json!({"v": "1"})))).await.unwrap();
    within("create unlabelled", maps.create(&pp, &config_map("other", json!({}), json!({})))).await.unwrap();
    assert_eq!(next_name().await, "late");
    within("modify", maps.patch("late", &PatchParams::default(), &Patch::Merge(json!({"data": {"v": "2"}}))))
        .await
        .unwrap();
    assert_eq!(next_name().await, "late");
    let late = store.get(&reflector::ObjectRef::new("late").within("default")).unwrap();
    assert_eq!(late.data.as_ref().unwrap()["v"], "2");

    let mut edited = server.get("v1", "configmaps", "default", "early").unwrap();
    edited["data"] = json!({"by": "another client"});
    server.put_object("v1", "configmaps", edited);
    assert_eq!(next_name().await, "early");

    within("delete", maps.delete("late", &DeleteParams::default())).await.unwrap();
    eventually("store drops deleted", || store.state().len() == 1).await;
    within(
        "unlabel",
        maps.patch("early", &PatchParams::default(), &Patch::Merge(json!({"metadata": {"labels": {"app": null}}}))),
    )
    .await
    .unwrap();
    eventually("store drops unselected", || store.state().is_empty()).await;
    assert!(store.get(&reflector::ObjectRef::new("other").within("default")).is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_watch_delivers_typed_events_bookmarks_and_streaming_lists() {
    let server = StandInApiServer::start().await;
    let client = server.client();
    let jobs: Api<RenderJob> = Api::all(client.clone());
    let namespaced: Api<RenderJob> = Api::default_namespaced(client.clone());

    within("create", namespaced.create(&PostParams::default(), &render_job("a"))).await.unwrap();
    let version = server.resource_version().to_string();
    let wp = kube::api::WatchParams::default().timeout(1);
    let mut stream = within("watch", jobs.watch(&wp, &version)).await.unwrap().boxed();
    within("delete", namespaced.delete("a", &DeleteParams::default())).await.unwrap();
    let event = within("deleted event", stream.try_next()).await.unwrap().unwrap();
    assert!(matches!(event, kube::api::WatchEvent::Deleted(ref job) if job.name_any() == "a"), "{event:?}");
    let event = within("bookmark at timeout", stream.try_next()).await.unwrap().unwrap();
    assert!(matches!(event, kube::api::WatchEvent::Bookmark(_)), "{event:?}");
    assert!(within("end", stream.try_next()).await.unwrap().is_none());

    within("create b", namespaced.create(&PostParams::default(), &render_job("b"))).await.unwrap();
    let config = watcher::Config::default().streaming_lists();
    let mut events = watcher(jobs, config).boxed();
    let mut seen = Vec::new();
    loop {
        match within("streaming list", events.try_next()).await.unwrap().unwrap() {
            watcher::Event::InitApply(job) => seen.push(job.name_any()),
            watcher::Event::InitDone => break,
            _ => {}
        }
    }
    assert_eq!(seen, ["b"]);
    assert!(server.requests().iter().any(|r| r.contains("sendInitialEvents=true")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crds_are_established_and_events_and_leases_work() {
    let server = StandInApiServer::start().await;
    let client = server.client();
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    within("crd established", wait::await_condition(crds, "renderjobs.folio.dev", conditions::is_crd_established()))
        .await
        .unwrap();

    let jobs: Api<RenderJob> = Api::default_namespaced(client.clone());
    let job = within("create", jobs.create(&PostParams::default(), &render_job("j"))).await.unwrap();
    let recorder = kube::runtime::events::Recorder::new(client.clone(), "folio".into());
    let event = kube::runtime::events::Event {
        type_: kube::runtime::events::EventType::Normal,
        reason: "Rendered".into(),
        note: Some("3 pages".into()),
        action: "Render".into(),
        secondary: None,
    };
    within("event", recorder.publish(&event, &job.object_ref(&()))).await.unwrap();
    within("event again", recorder.publish(&event, &job.object_ref(&()))).await.unwrap();
    let events = server.list("events.k8s.io/v1", "events");
    assert_eq!(events.len(), 1, "a repeated event becomes a series");
    assert_eq!(events[0]["regarding"]["name"], "j");
    assert_eq!(events[0]["series"]["count"], 2);

    let leases: Api<Lease> = Api::default_namespaced(client);
    let lease = serde_json::from_value(json!({"metadata": {"name": "l"}, "spec": {"holderIdentity": "a"}})).unwrap();
    within("lease", leases.create(&PostParams::default(), &lease)).await.unwrap();
    assert_eq!(server.get("coordination.k8s.io/v1", "leases", "default", "l").unwrap()["kind"], "Lease");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lease_manager_elects_one_leader_and_hands_over_on_release() {
    use kube_lease_manager::LeaseManagerBuilder;

    let server = StandInApiServer::start().await;
    let manager = |identity: &str| {
        LeaseManagerBuilder::new(server.client(), "folio-operator")
            .with_identity(identity)
            .with_duration(4)
            .with_grace(1)
            .build()
    };
    let a = within("manager a", manager("a")).await.unwrap();
    let b = within("manager b", manager("b")).await.unwrap();
    let (a_leads, a_task) = a.watch().await;
    let (b_leads, b_task) = b.watch().await;

    eventually("a leader", || *a_leads.borrow() || *b_leads.borrow()).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(*a_leads.borrow() != *b_leads.borrow(), "exactly one leader");

    let (leader_rx, leader_task, mut follower_rx) =
        if *a_leads.borrow() { (a_leads, a_task, b_leads) } else { (b_leads, b_task, a_leads) };
    drop(leader_rx);
    within("leader releases", leader_task).await.unwrap().unwrap();
    within("follower takes over", follower_rx.wait_for(|leads| *leads)).await.unwrap();
}

/// What the controller test's reconciler shares.
struct Context {
    client: kube::Client,
    reconciles: AtomicUsize,
}

/// A reconciler shaped like folio's: apply the renderer pod, then the job's status.
async fn reconcile(job: Arc<RenderJob>, ctx: Arc<Context>) -> Result<Action, kube::Error> {
    ctx.reconciles.fetch_add(1, Ordering::SeqCst);
    let (namespace, name) = (job.namespace().unwrap(), job.name_any());
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &namespace);
    let pod = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": format!("{name}-render"), "ownerReferences": [job.controller_owner_ref(&()).unwrap()]},
        "spec": {"containers": [{"name": "render", "image": "folio:test"}], "restartPolicy": "Never"},
    });
    let pod = pods.patch(&format!("{name}-render"), &PatchParams::apply("folio").force(), &Patch::Apply(pod)).await?;
    let succeeded = pod.status.and_then(|s| s.phase).is_some_and(|phase| phase == "Succeeded");
    let status =
        json!({"apiVersion": "folio.dev/v1alpha1", "kind": "RenderJob", "status": {"pageCount": i64::from(succeeded)}});
    let jobs: Api<RenderJob> = Api::namespaced(ctx.client.clone(), &namespace);
    jobs.patch_status(&name, &PatchParams::apply("folio").force(), &Patch::Apply(status)).await?;
    Ok(Action::await_change())
}

fn error_policy(_job: Arc<RenderJob>, _error: &kube::Error, _ctx: Arc<Context>) -> Action {
    Action::requeue(Duration::from_millis(100))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn controller_reconciles_jobs_wakes_on_owned_pods_and_then_rests() {
    let server = StandInApiServer::start().await;
    let client = server.client();
    let ctx = Arc::new(Context { client: client.clone(), reconciles: AtomicUsize::new(0) });
    let controller = Controller::new(Api::<RenderJob>::all(client.clone()), watcher::Config::default())
        .owns(Api::<Pod>::all(client.clone()), watcher::Config::default())
        .run(reconcile, error_policy, ctx.clone())
        .for_each(|_| async {});
    let controller = tokio::spawn(controller);

    let jobs: Api<RenderJob> = Api::namespaced(client, "acme");
    let mut job = render_job("j");
    job.metadata.namespace = Some("acme".into());
    within("create", jobs.create(&PostParams::default(), &job)).await.unwrap();
    let page_count =
        || server.get("folio.dev/v1alpha1", "renderjobs", "acme", "j").and_then(|j| j["status"]["pageCount"].as_i64());
    eventually("pod applied and status written", || page_count() == Some(0)).await;
    let pod = server.get("v1", "pods", "acme", "j-render").unwrap();
    assert_eq!(pod["status"]["phase"], "Pending");

    // The kubelet's part: the pod finishes, and the controller hears of it through `owns`.
    let mut finished = pod;
    finished["status"] = json!({"phase": "Succeeded"});
    server.put_object("v1", "pods", finished);
    eventually("status follows the pod", || page_count() == Some(1)).await;

    // The reconcile woken by the last status write may still be on its way (it changes
    // nothing); wait for a quiet spell, then nothing may wake the controller again.
    let mut settled = ctx.reconciles.load(Ordering::SeqCst);
    for _ in 0..20 {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let now = ctx.reconciles.load(Ordering::SeqCst);
        if now == settled {
            break;
        }
        settled = now;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(ctx.reconciles.load(Ordering::SeqCst), settled, "writes that change nothing wake nothing");
    controller.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn injected_faults_fail_the_next_matching_request_once() {
    let server = StandInApiServer::start().await;
    let jobs: Api<RenderJob> = Api::default_namespaced(server.client());
    within("create", jobs.create(&PostParams::default(), &render_job("j"))).await.unwrap();

    server.fail_next("patch", "/renderjobs/j/status", 500);
    let status = Patch::Merge(json!({"status": {"pageCount": 2}}));
    let failed = within("failing patch", jobs.patch_status("j", &PatchParams::default(), &status)).await.unwrap_err();
    assert_eq!(api_error(failed), (500, "InternalError".to_string()));
    assert!(within("get", jobs.get("j")).await.unwrap().status.is_none(), "the failed request had no effect");
    let patched = within("retried patch", jobs.patch_status("j", &PatchParams::default(), &status)).await.unwrap();
    assert_eq!(patched.status.unwrap().page_count, Some(2));

    server.fail_next("GET", "/renderjobs/j", 503);
    within("get through a 503", jobs.get("j")).await.unwrap();
    let log = server.requests();
    let gets =
        log.iter().filter(|r| r.as_str() == "GET /apis/folio.dev/v1alpha1/namespaces/default/renderjobs/j").count();
    assert_eq!(gets, 3, "kube's client retried the 503 by itself: {log:#?}");
    let patches = log
        .iter()
        .filter(|r| r.starts_with("PATCH /apis/folio.dev/v1alpha1/namespaces/default/renderjobs/j/status"))
        .count();
    assert_eq!(patches, 2);
}
