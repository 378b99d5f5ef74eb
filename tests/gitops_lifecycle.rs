//! RenderJobs kept in Git, on a real control plane (see `tests/operator.rs` for what
//! runs): a GitOps tool applies the same manifest again and again, with
//! `kubectl apply --server-side` under its own field manager; edits of a job's inputs
//! are refused by the API server; and the status reads right in the real kstatus
//! library (what Flux waits on) and in the chart's Argo CD health check.

mod support;

use serde_json::{Value, json};
use support::cluster::{Harness, TWO_PAGES, job};
use support::gitops_check::{argocd_health, available, kstatus};
use support::kubelet::Behaviour;

/// Write `object` (in the harness's namespace) to a file and `kubectl apply
/// --server-side` it as `manager`; kubectl's output or its error.
fn kubectl_apply(harness: &Harness, object: &Value, manager: &str) -> Result<String, String> {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("manifest.json");
    std::fs::write(&file, object.to_string()).unwrap();
    let manager = format!("--field-manager={manager}");
    let args = ["apply", "--server-side", &manager, "-n", &harness.namespace, "-f", file.to_str().unwrap()];
    harness.plane.try_kubectl(&args)
}

fn account_keeping_pdfs_for(seconds: i64) -> Value {
    json!({"apiVersion": "folio.dev/v1alpha1", "kind": "RenderAccount", "metadata": {"name": "acme"},
        "spec": {"credits": 10, "retention": {"defaultTtlSeconds": seconds}}})
}

fn condition<'a>(job: &'a Value, type_: &str) -> Option<&'a Value> {
    job["status"]["conditions"].as_array()?.iter().find(|c| c["type"] == type_)
}

/// The manifest of a monthly report, applied five times across its life by two
/// GitOps tools (before it finished, right after, after its retention deleted its
/// PDF): one renderer Pod, one charge, one object (same uid, generation 1). The
/// retention deletes the PDF and keeps the job, and says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_kept_in_git_renders_and_charges_once_however_often_it_is_applied() {
    let harness = Harness::start(&[]).await;
    harness.apply(account_keeping_pdfs_for(4)).await;
    let manifest =
        job("monthly-report-2026-11", json!({"template": {"source": TWO_PAGES}, "data": {"customer": "ACME"}}));
    let apply = |manager: &str| kubectl_apply(&harness, &manifest, manager).unwrap_or_else(|err| panic!("{err}"));

    apply("argocd-controller");
    apply("argocd-controller");
    let done = harness.wait_for_phase("monthly-report-2026-11", "Succeeded").await;
    let uid = done["metadata"]["uid"].clone();
    let key = done["status"]["outputKey"].as_str().unwrap().to_owned();
    assert!(harness.bucket.get(&key).await.unwrap().is_some());
    apply("argocd-controller");
    apply("kustomize-controller");

    harness
        .wait_until("the retention deletes the PDF", async |h| {
            h.job("monthly-report-2026-11").await.is_some_and(|j| j["status"]["outputExpiredAt"].is_string())
        })
        .await;
    assert_eq!(harness.bucket.get(&key).await.unwrap(), None, "the PDF is gone");
    apply("argocd-controller");
    // Long enough for a re-created job to have been queued and started.
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;

    let kept = harness.job("monthly-report-2026-11").await.expect("the job is kept");
    assert_eq!((&kept["metadata"]["uid"], kept["metadata"]["generation"].as_i64()), (&uid, Some(1)));
    assert_eq!(kept["status"]["phase"], "Succeeded");
    assert_eq!(kept["status"]["observedGeneration"], 1);
    let ready = condition(&kept, "Ready").unwrap();
    assert_eq!(ready["status"], "True");
    assert!(ready["message"].as_str().unwrap().contains("deleted at the end of its retention"), "{ready}");
    let renderers: Vec<String> =
        harness.kubelet.started_in(&harness.namespace).into_iter().filter(|p| p.contains("monthly-report")).collect();
    assert_eq!(renderers.len(), 1, "rendered once: {renderers:?}");
    let account = harness.get("RenderAccount", "acme").await.unwrap();
    assert_eq!(account["status"]["creditsUsed"], 2, "charged once: {}", account["status"]);
    assert!(harness.event_reasons("monthly-report-2026-11").await.contains(&"OutputExpired".to_owned()));
    if available() {
        assert_eq!(kstatus(&kept).0, "Current");
        let (health, message) = argocd_health(&kept);
        assert_eq!(health, "Healthy");
        assert!(message.contains("deleted at the end of its retention"), "{message}");
    }
    harness.stop().await;
}

/// An edit of a finished job's data, applied as a GitOps tool would, is refused by
/// the API server with a message naming the field and saying what to do instead;
/// the job keeps its PDF and its generation. Fields that say how a job runs may
/// change, and a cancel cannot be taken back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edit_of_a_jobs_inputs_is_refused_and_the_job_keeps_its_pdf() {
    let harness = Harness::start(&[]).await;
    let spec = json!({"template": {"source": TWO_PAGES}, "data": {"customer": "ACME"}});
    kubectl_apply(&harness, &job("invoice-0042", spec.clone()), "argocd-controller").unwrap();
    let done = harness.wait_for_phase("invoice-0042", "Succeeded").await;
    let key = done["status"]["outputKey"].as_str().unwrap().to_owned();

    let mut edited = spec.clone();
    edited["data"]["customer"] = json!("Globex");
    let refused = kubectl_apply(&harness, &job("invoice-0042", edited), "argocd-controller").unwrap_err();
    assert!(refused.contains("spec.data cannot change"), "{refused}");
    assert!(refused.contains("create a new RenderJob (a new name, or metadata.generateName)"), "{refused}");
    let mut retitled = spec.clone();
    retitled["title"] = json!("Invoice 42");
    let refused = kubectl_apply(&harness, &job("invoice-0042", retitled), "argocd-controller").unwrap_err();
    assert!(refused.contains("spec.title cannot change"), "{refused}");

    let kept = harness.job("invoice-0042").await.unwrap();
    assert_eq!(kept["metadata"]["generation"], 1, "nothing was stored");
    assert_eq!(kept["spec"]["data"]["customer"], "ACME");
    assert!(harness.bucket.get(&key).await.unwrap().is_some(), "the job keeps its PDF");

    let mut run_differently = spec.clone();
    run_differently["backoffLimit"] = json!(4);
    run_differently["cancel"] = json!(true);
    kubectl_apply(&harness, &job("invoice-0042", run_differently), "argocd-controller")
        .expect("how a job runs may change");
    let refused = kubectl_apply(&harness, &job("invoice-0042", spec), "argocd-controller").unwrap_err();
    assert!(refused.contains("spec.cancel cannot be set back to false"), "{refused}");
    harness.stop().await;
}

/// kstatus (Flux's health) and the Argo CD health check read a job while it renders,
/// once it succeeded, and when it failed or was cancelled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gitops_tools_read_in_progress_then_current_for_a_good_job_and_failed_for_a_bad_one() {
    if !available() {
        return;
    }
    let harness = Harness::start(&[]).await;
    harness.kubelet.behave(&harness.namespace, "slow", Behaviour::Hang);
    harness.apply(job("slow", json!({"template": {"source": "= Slow"}, "data": {}, "activeDeadlineSeconds": 8}))).await;
    let rendering = harness.wait_for_phase("slow", "Rendering").await;
    assert_eq!(kstatus(&rendering).0, "InProgress", "{}", rendering["status"]);
    assert_eq!(argocd_health(&rendering).0, "Progressing");

    harness.apply(job("good", json!({"template": {"source": TWO_PAGES}, "data": {"customer": "ACME"}}))).await;
    let good = harness.wait_for_phase("good", "Succeeded").await;
    assert_eq!(kstatus(&good), ("Current".to_owned(), "Resource is Ready".to_owned()));
    assert_eq!(argocd_health(&good), ("Healthy".to_owned(), "rendered 2 pages".to_owned()));

    harness.apply(job("bad", json!({"template": {"source": "#let x = (\n"}, "data": {}}))).await;
    let bad = harness.wait_for_phase("bad", "Failed").await;
    let (status, message) = kstatus(&bad);
    assert_eq!(status, "Failed", "{message}");
    assert!(message.starts_with("TEMPLATE_COMPILE_ERROR: main.typ:"), "{message}");
    assert_eq!(argocd_health(&bad).0, "Degraded");

    let expired = harness.wait_for_phase("slow", "Expired").await;
    assert_eq!(kstatus(&expired).0, "Failed");
    harness.apply(job("dropped", json!({"template": {"source": "= Dropped"}, "data": {}, "cancel": true}))).await;
    let cancelled = harness.wait_for_phase("dropped", "Cancelled").await;
    assert_eq!(kstatus(&cancelled).0, "Failed", "stalled: it will never be Ready");
    assert_eq!(argocd_health(&cancelled).0, "Suspended");
    harness.stop().await;
}

/// Pruning a job from Git deletes it; its finalizer deletes its PDF first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pruning_a_job_deletes_its_pdf() {
    let harness = Harness::start(&[]).await;
    let manifest = job("receipt-77", json!({"template": {"source": "= Receipt"}, "data": {}}));
    kubectl_apply(&harness, &manifest, "kustomize-controller").unwrap();
    let done = harness.wait_for_phase("receipt-77", "Succeeded").await;
    let key = done["status"]["outputKey"].as_str().unwrap().to_owned();
    assert!(harness.bucket.get(&key).await.unwrap().is_some());
    harness.plane.kubectl(&["delete", "-n", &harness.namespace, "renderjob", "receipt-77", "--wait=true"]);
    assert!(harness.job("receipt-77").await.is_none());
    assert_eq!(harness.bucket.get(&key).await.unwrap(), None, "the finalizer deleted the PDF");
    harness.stop().await;
}
