//! What folio's ServiceAccounts may do with the cluster's Secrets, on the real control
//! plane (tests/support/control_plane.rs: kube-apiserver with RBAC, the chart installed
//! by helm, tokens of the chart's ServiceAccounts from the TokenRequest API), so that
//! the chart's own RBAC is what answers.
//!
//! No ServiceAccount of the chart may list or watch Secrets; `folio api` may only
//! create them (a job's webhook Secret) and cannot read any, not even one it made; the
//! operator may only get one by name (the Secret a job's webhook names).

mod support;

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::authorization::v1::{ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec};
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, WatchParams};
use serde_json::json;
use support::control_plane::{self, API_ACCOUNT, OPERATOR_ACCOUNT, RELEASE_NAMESPACE};

/// Whether the API server refused the call with 403 Forbidden.
fn forbidden<T>(result: &Result<T, kube::Error>) -> bool {
    matches!(result, Err(kube::Error::Api(status)) if status.code == 403)
}

fn secret(name: &str, field: &str, value: &str) -> Secret {
    Secret {
        metadata: kube::api::ObjectMeta { name: Some(name.into()), ..Default::default() },
        data: Some(BTreeMap::from([(field.to_owned(), ByteString(value.as_bytes().to_vec()))])),
        ..Default::default()
    }
}

/// The chart's ServiceAccounts and their tokens.
fn accounts(plane: &control_plane::ControlPlane) -> [(&'static str, &str); 2] {
    [(OPERATOR_ACCOUNT, plane.operator_token.as_str()), (API_ACCOUNT, plane.api_token.as_str())]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_service_account_of_the_chart_can_list_or_watch_secrets() {
    let plane = control_plane::shared();
    let ns = plane.namespace("tenant").await;
    for (account, token) in accounts(plane) {
        let client = plane.client(token).await;
        let everywhere: Api<Secret> = Api::all(client.clone());
        let listed = everywhere.list(&ListParams::default()).await;
        assert!(forbidden(&listed), "{account} lists every Secret of the cluster: {:?}", listed.map(|l| l.items.len()));
        // Not even by the labels earlier versions found their keys and share links by.
        for selector in ["folio.dev/api-key=true", "folio.dev/share=true"] {
            let listed = everywhere.list(&ListParams::default().labels(selector)).await;
            assert!(forbidden(&listed), "{account} lists Secrets labelled {selector}");
        }
        let watched = everywhere.watch(&WatchParams::default(), "0").await;
        assert!(forbidden(&watched.map(|_| ())), "{account} watches every Secret of the cluster");
        for namespace in [ns.as_str(), RELEASE_NAMESPACE] {
            let listed = Api::<Secret>::namespaced(client.clone(), namespace).list(&ListParams::default()).await;
            assert!(forbidden(&listed), "{account} lists the Secrets of {namespace}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn folio_api_cannot_read_a_secret_folio_did_not_make() {
    let plane = control_plane::shared();
    let ns = plane.namespace("tenant").await;
    let admin = plane.admin().await;
    Api::<Secret>::namespaced(admin, &ns)
        .create(&PostParams::default(), &secret("db-password", "password", "hunter2"))
        .await
        .unwrap();
    let api = plane.client(&plane.api_token).await;
    let read = Api::<Secret>::namespaced(api.clone(), &ns).get("db-password").await;
    assert!(forbidden(&read), "folio-api reads {ns}/db-password: {read:?}");
    // Nor the release's own S3 credentials (the bundled MinIO's Secret).
    let read = Api::<Secret>::namespaced(api, RELEASE_NAMESPACE).get("folio-minio").await;
    assert!(forbidden(&read), "folio-api reads {RELEASE_NAMESPACE}/folio-minio");
}

/// The one thing `folio api` may do with a Secret is create it (a job's webhook
/// secret); it cannot read it back, change it or delete it afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn folio_api_may_create_a_secret_and_then_neither_read_change_nor_delete_it() {
    let plane = control_plane::shared();
    let ns = plane.namespace("tenant").await;
    let secrets: Api<Secret> = Api::namespaced(plane.client(&plane.api_token).await, &ns);
    let made = secrets.create(&PostParams::default(), &secret("some-job-webhook", "secret", "s3cret")).await;
    assert!(made.is_ok(), "folio-api creates a webhook Secret: {made:?}");
    assert!(forbidden(&secrets.get("some-job-webhook").await), "folio-api reads the Secret it made");
    let patch = json!({"metadata": {"labels": {"changed": "yes"}}});
    let patched = secrets.patch("some-job-webhook", &PatchParams::default(), &Patch::Merge(&patch)).await;
    assert!(forbidden(&patched), "folio-api patches a Secret");
    assert!(
        forbidden(&secrets.delete("some-job-webhook", &DeleteParams::default()).await),
        "folio-api deletes a Secret"
    );
}

/// The verbs on Secrets each ServiceAccount holds, asked of the API server's own
/// authorizer (SubjectAccessReview), in a tenant's namespace, the release namespace and
/// cluster-wide: exactly those the README's security section lists. And a leaked
/// `folio-api` token cannot mint API keys.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_service_account_holds_exactly_the_documented_verbs_on_secrets() {
    let plane = control_plane::shared();
    let ns = plane.namespace("tenant").await;
    let reviews: Api<SubjectAccessReview> = Api::all(plane.admin().await);
    let allowed = |account: &str, group: &str, resource: &str, verb: &str, namespace: Option<&str>| {
        let review = SubjectAccessReview {
            spec: SubjectAccessReviewSpec {
                user: Some(format!("system:serviceaccount:{RELEASE_NAMESPACE}:{account}")),
                groups: Some(vec![
                    "system:serviceaccounts".into(),
                    format!("system:serviceaccounts:{RELEASE_NAMESPACE}"),
                    "system:authenticated".into(),
                ]),
                resource_attributes: Some(ResourceAttributes {
                    group: Some(group.into()),
                    resource: Some(resource.into()),
                    verb: Some(verb.into()),
                    namespace: namespace.map(str::to_owned),
                    ..Default::default()
                }),
                ..Default::default()
            },
            ..Default::default()
        };
        let reviews = reviews.clone();
        async move { reviews.create(&PostParams::default(), &review).await.unwrap().status.unwrap().allowed }
    };
    let verbs = ["get", "list", "watch", "create", "update", "patch", "delete", "deletecollection"];
    for (account, expected) in [(OPERATOR_ACCOUNT, &["get"][..]), (API_ACCOUNT, &["create"][..])] {
        for namespace in [Some(ns.as_str()), Some(RELEASE_NAMESPACE), None] {
            let mut held = Vec::new();
            for verb in verbs {
                if allowed(account, "", "secrets", verb, namespace).await {
                    held.push(verb);
                }
            }
            assert_eq!(held, expected, "{account}'s verbs on Secrets in {namespace:?}");
        }
    }
    for verb in ["create", "update", "patch", "delete"] {
        assert!(
            !allowed(API_ACCOUNT, "folio.dev", "renderapikeys", verb, Some(&ns)).await,
            "folio-api may {verb} API keys"
        );
    }
}

/// A key's hash never changes and a revoked key or share link stays revoked, whoever
/// writes the object (the CRDs' validation rules, enforced by the API server); and a
/// key hash planted in a second namespace makes the key work for neither tenant.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_hashes_are_fixed_revocations_final_and_a_planted_copy_refused() {
    use folio::resources::RenderApiKey;
    let plane = control_plane::shared();
    let admin = plane.admin().await;
    let (first, second) = (plane.namespace("keys").await, plane.namespace("planted").await);
    let key = folio::api_keys::generate();
    let object = |revoked: bool| -> RenderApiKey {
        let mut spec = json!({"keyHash": key.hash, "prefix": key.prefix});
        if revoked {
            spec["revokedAt"] = json!("2026-01-01T00:00:00Z");
        }
        serde_json::from_value(json!({"apiVersion": "folio.dev/v1alpha1", "kind": "RenderAPIKey",
            "metadata": {"name": "k"}, "spec": spec}))
        .unwrap()
    };
    let keys: Api<RenderApiKey> = Api::namespaced(admin.clone(), &first);
    keys.create(&PostParams::default(), &object(false)).await.unwrap();
    let other_hash = json!({"spec": {"keyHash": "0".repeat(64)}});
    let refused = keys.patch("k", &PatchParams::default(), &Patch::Merge(&other_hash)).await;
    assert!(
        matches!(&refused, Err(kube::Error::Api(s)) if s.code == 422 && s.message.contains("spec.keyHash cannot change")),
        "{refused:?}"
    );
    keys.patch("k", &PatchParams::default(), &Patch::Merge(json!({"spec": {"revokedAt": "2026-01-01T00:00:00Z"}})))
        .await
        .unwrap();
    let unrevoke = keys.patch("k", &PatchParams::default(), &Patch::Merge(json!({"spec": {"revokedAt": null}}))).await;
    assert!(
        matches!(&unrevoke, Err(kube::Error::Api(s)) if s.code == 422 && s.message.contains("cannot change once set")),
        "{unrevoke:?}"
    );

    // The same hash, live, in two namespaces: `folio api` trusts neither.
    keys.delete("k", &DeleteParams::default()).await.unwrap();
    keys.create(&PostParams::default(), &object(false)).await.unwrap();
    Api::<RenderApiKey>::namespaced(admin, &second).create(&PostParams::default(), &object(false)).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = plane.kubeconfig(dir.path(), &plane.api_token, &first);
    let s3 = support::s3::s3_server(dir.path()).await;
    let mut api = support::dies_with_test(support::folio())
        .args(["api", "--listen", "127.0.0.1:0", "--s3-endpoint", &s3])
        .args(["--s3-access-key", support::s3::ACCESS_KEY, "--s3-secret-key", support::s3::SECRET_KEY])
        .env("KUBECONFIG", kubeconfig)
        .env("RUST_LOG", "error")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(api.stdout.take().unwrap()), &mut line).unwrap();
    let url = line.split_whitespace().find(|w| w.starts_with("http://")).unwrap().to_owned();
    let http = reqwest::Client::new();
    let mut status = None;
    for _ in 0..100 {
        let answer = http.get(format!("{url}/v1/account")).bearer_auth(&key.plaintext).send().await;
        status = answer.ok().map(|r| r.status().as_u16());
        // 503 while its caches fill; the first other answer decides.
        if status.is_some_and(|s| s != 503) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let _ = api.kill();
    let _ = api.wait();
    assert_eq!(status, Some(401), "a key whose hash two namespaces carry authenticates no one");
}
