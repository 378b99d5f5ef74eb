//! The user's journey against an existing Kubernetes cluster with folio installed
//! (the Helm chart: operator, CRDs, container images) and a MinIO this test can
//! reach. Ignored by default, because it needs a cluster with a container runtime
//! that the build machines do not have (the control-plane tests in
//! `tests/operator.rs` run everywhere); run it with
//! `cargo test --test cluster -- --ignored`. See "Testing against a real cluster" in
//! the README for a kind or k3d recipe.
//!
//! Environment: `KUBECONFIG`; `FOLIO_TEST_S3_ENDPOINT` (e.g. `http://localhost:9000`
//! through `kubectl port-forward`), `FOLIO_TEST_S3_BUCKET` (default `folio`),
//! `FOLIO_TEST_S3_ACCESS_KEY`, `FOLIO_TEST_S3_SECRET_KEY`.

mod support;

use std::time::Duration;

use folio::lifecycle::Phase;
use folio::resources::{RenderAccount, RenderJob};
use folio::storage::S3Bucket;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{DeleteParams, PostParams};
use kube::{Api, Client};
use serde_json::json;

/// The cluster and bucket to test against.
async fn cluster() -> (Client, S3Bucket) {
    let (Ok(_), Ok(endpoint)) = (std::env::var("KUBECONFIG"), std::env::var("FOLIO_TEST_S3_ENDPOINT")) else {
        panic!("set KUBECONFIG and FOLIO_TEST_S3_ENDPOINT to run the cluster suite (see the README)");
    };
    let var = |name: &str, default: &str| std::env::var(name).unwrap_or_else(|_| default.to_owned());
    let client = Client::try_default().await.expect("a client for KUBECONFIG");
    let bucket = S3Bucket::connect(
        &endpoint,
        &var("FOLIO_TEST_S3_BUCKET", "folio"),
        &var("FOLIO_TEST_S3_ACCESS_KEY", "minioadmin"),
        &var("FOLIO_TEST_S3_SECRET_KEY", "minioadmin"),
    )
    .await
    .expect("the MinIO of FOLIO_TEST_S3_ENDPOINT");
    (client, bucket)
}

/// A fresh namespace for one test.
async fn namespace(client: &Client) -> String {
    let name = format!("folio-test-{}", uuid::Uuid::new_v4().simple().to_string().get(..8).unwrap_or("x"));
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let namespace = serde_json::from_value(json!({"metadata": {"name": name}})).unwrap();
    namespaces.create(&PostParams::default(), &namespace).await.unwrap();
    name
}

/// Wait until `name` reaches a phase in `phases`.
async fn wait_for(jobs: &Api<RenderJob>, name: &str, phases: &[Phase]) -> RenderJob {
    for _ in 0..180 {
        let job = jobs.get(name).await.unwrap();
        if job.status.as_ref().and_then(|s| s.phase).is_some_and(|p| phases.contains(&p)) {
            return job;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    panic!("RenderJob {name} did not reach {phases:?} in 3 minutes");
}

#[tokio::test]
#[ignore = "needs an existing cluster with folio installed: KUBECONFIG and FOLIO_TEST_S3_ENDPOINT"]
async fn apply_a_job_get_a_pdf_in_the_bucket_and_a_charged_account() {
    let (client, bucket) = cluster().await;
    let ns = namespace(&client).await;
    let accounts: Api<RenderAccount> = Api::namespaced(client.clone(), &ns);
    let account = serde_json::from_value(json!({
        "apiVersion": "folio.dev/v1alpha1", "kind": "RenderAccount",
        "metadata": {"name": "default"}, "spec": {"credits": 100},
    }))
    .unwrap();
    accounts.create(&PostParams::default(), &account).await.unwrap();
    let jobs: Api<RenderJob> = Api::namespaced(client.clone(), &ns);
    let job = serde_json::from_value(json!({
        "apiVersion": "folio.dev/v1alpha1", "kind": "RenderJob",
        "metadata": {"name": "invoice-1"},
        "spec": {
            "template": {"source": "= Invoice\n#json(\"data.json\").customer\n#pagebreak()\nTerms"},
            "data": {"customer": "ACME Corporation"},
        },
    }))
    .unwrap();
    jobs.create(&PostParams::default(), &job).await.unwrap();
    let done = wait_for(&jobs, "invoice-1", &[Phase::Succeeded, Phase::Failed]).await;
    let status = done.status.unwrap();
    assert_eq!(status.phase, Some(Phase::Succeeded), "{:?}", status.error_message);
    assert_eq!((status.page_count, status.credits_used, status.credits_remaining), (Some(2), Some(2), Some(98)));
    let key = status.output_key.unwrap();
    let pdf = bucket.get(&key).await.unwrap().expect("the PDF is in the bucket");
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("invoice.pdf"), &pdf).unwrap();
    assert_eq!(support::pdfinfo_pages(&dir.path().join("invoice.pdf")), 2);
    let account = accounts.get("default").await.unwrap().status.unwrap();
    assert_eq!(account.credits_used, 2);

    // Deleting the job deletes its PDF (the finalizer).
    jobs.delete("invoice-1", &DeleteParams::default()).await.unwrap();
    for _ in 0..60 {
        if bucket.get(&key).await.unwrap().is_none() {
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    assert_eq!(bucket.get(&key).await.unwrap(), None, "the finalizer deleted the PDF");
    Api::<Namespace>::all(client).delete(&ns, &DeleteParams::default()).await.unwrap();
}

#[tokio::test]
#[ignore = "needs an existing cluster with folio installed: KUBECONFIG and FOLIO_TEST_S3_ENDPOINT"]
async fn a_template_error_fails_the_job_with_its_code_and_line() {
    let (client, _) = cluster().await;
    let ns = namespace(&client).await;
    let jobs: Api<RenderJob> = Api::namespaced(client.clone(), &ns);
    let job = serde_json::from_value(json!({
        "apiVersion": "folio.dev/v1alpha1", "kind": "RenderJob",
        "metadata": {"name": "broken"},
        "spec": {"template": {"source": "#let x = ("}, "data": {}},
    }))
    .unwrap();
    jobs.create(&PostParams::default(), &job).await.unwrap();
    let done = wait_for(&jobs, "broken", &[Phase::Succeeded, Phase::Failed]).await;
    let status = done.status.unwrap();
    assert_eq!(status.phase, Some(Phase::Failed));
    assert_eq!(status.error_code.map(|c| c.as_str()), Some("TEMPLATE_COMPILE_ERROR"));
    Api::<Namespace>::all(client).delete(&ns, &DeleteParams::default()).await.unwrap();
}
