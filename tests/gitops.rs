//! RenderJobs kept in Git, on a real control plane: `examples/gitops` is built with
//! kustomize and applied with `kubectl apply --server-side -k`, as Flux and Argo CD
//! apply it at every sync, with `folio operator` rendering (see `tests/operator.rs`
//! for the plumbing: the chart's RBAC, the test kubelet, the in-process S3 server).
//! What a GitOps tool needs from folio: every job renders once, and syncing the
//! same manifests again changes nothing (no new generation, no renderer Pod, no
//! charge); a job pruned from Git takes its PDF with it.

mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;
use support::cluster::Harness;

/// The example's folder.
fn example() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/gitops")
}

/// What `kubectl kustomize` builds from the example, as JSON documents.
fn built(plane: &support::control_plane::ControlPlane) -> Vec<Value> {
    let yaml = plane.kubectl(&["kustomize", example().to_str().unwrap()]);
    serde_yaml::Deserializer::from_str(&yaml).map(|doc| serde::Deserialize::deserialize(doc).unwrap()).collect()
}

/// The names of the documents of `kind`.
fn names_of(documents: &[Value], kind: &str) -> Vec<String> {
    documents.iter().filter(|d| d["kind"] == kind).map(|d| d["metadata"]["name"].as_str().unwrap().to_owned()).collect()
}

/// `kubectl apply --server-side -k examples/gitops` with extra arguments.
fn sync(harness: &Harness, extra_args: &[&str]) -> String {
    let dir = example();
    let args = [&["apply", "--server-side", "-k", dir.to_str().unwrap()][..], extra_args].concat();
    harness.plane.kubectl(&args)
}

/// Each job's name, resourceVersion and generation.
async fn versions(harness: &Harness) -> Vec<(String, Value, Value)> {
    let mut jobs: Vec<_> = harness
        .list("RenderJob")
        .await
        .iter()
        .map(|j| {
            let meta = &j["metadata"];
            (meta["name"].as_str().unwrap().to_owned(), meta["resourceVersion"].clone(), meta["generation"].clone())
        })
        .collect();
    jobs.sort_by(|a, b| a.0.cmp(&b.0));
    jobs
}

/// The text of the PDF stored under `key`.
async fn stored_text(harness: &Harness, key: &str) -> String {
    let pdf = harness.bucket.get(key).await.unwrap().unwrap_or_else(|| panic!("no PDF under {key}"));
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("document.pdf");
    std::fs::write(&file, pdf).unwrap();
    support::pdftotext(&file)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gitops_example_renders_each_job_once_and_a_second_sync_changes_nothing() {
    let plane = support::control_plane::shared();
    let documents = built(plane);
    let namespace = names_of(&documents, "Namespace");
    assert_eq!(namespace.len(), 1, "the example declares its namespace");
    let jobs = names_of(&documents, "RenderJob");
    assert!(jobs.len() >= 3, "{jobs:?}");
    let harness = Harness::start_in(&namespace[0], &[]).await;

    let out = sync(&harness, &[]);
    for job in &jobs {
        assert!(out.contains(&format!("renderjob.folio.dev/{job} serverside-applied")), "{out}");
    }
    let mut keys = Vec::new();
    for job in &jobs {
        let done = harness.wait_for_phase(job, "Succeeded").await;
        let status = &done["status"];
        assert_eq!(status["observedGeneration"], done["metadata"]["generation"], "{job}");
        let ready = status["conditions"].as_array().unwrap().iter().find(|c| c["type"] == "Ready").unwrap();
        assert_eq!(ready["status"], "True", "{job}");
        keys.push(status["outputKey"].as_str().unwrap().to_owned());
    }
    // The data reached the templates, inline and from the generated ConfigMap.
    let monthly = jobs.iter().position(|j| j == "monthly-report-2026-11").expect("the monthly report");
    let text = stored_text(&harness, &keys[monthly]).await;
    assert!(text.contains("Monthly report 2026-11") && text.contains("1284"), "{text}");
    let invoice = jobs.iter().position(|j| j == "invoice-2026-11-0042").expect("an invoice");
    let text = stored_text(&harness, &keys[invoice]).await;
    assert!(text.contains("Globex Corporation"), "{text}");

    let account = names_of(&documents, "RenderAccount").pop().expect("the example's account");
    harness
        .wait_until("the renderers' inputs are deleted and the ledger settles", async |h| {
            let inputs =
                h.list("ConfigMap").await.iter().filter(|c| c["metadata"]["ownerReferences"].is_array()).count();
            inputs == 0 && h.get("RenderAccount", &account).await.unwrap()["status"].get("pendingCharges").is_none()
        })
        .await;
    let synced = versions(&harness).await;
    let renders = harness.kubelet.started_in(&harness.namespace);
    assert_eq!(renders.len(), jobs.len(), "one renderer Pod per job: {renders:?}");
    let credits_used = harness.get("RenderAccount", &account).await.unwrap()["status"]["creditsUsed"].clone();
    assert!(credits_used.as_i64().is_some_and(|c| c > 0), "{credits_used}");

    // The next sync applies the same manifests: the API server writes nothing.
    sync(&harness, &[]);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(versions(&harness).await, synced, "an unchanged sync writes nothing (same resourceVersions)");
    // Another tool's sync (another field manager) only shares the fields' ownership:
    // metadata changes, the spec's generation does not.
    sync(&harness, &["--field-manager", "gitops-tool"]);
    tokio::time::sleep(Duration::from_secs(2)).await;
    for ((name, _, generation), (_, _, now)) in synced.iter().zip(&versions(&harness).await) {
        assert_eq!(generation, now, "{name}: a re-sync makes no new generation");
    }
    assert_eq!(harness.kubelet.started_in(&harness.namespace), renders, "no renderer Pod after the re-syncs");
    let account = harness.get("RenderAccount", &account).await.unwrap();
    assert_eq!(account["status"]["creditsUsed"], credits_used, "no charge after the re-syncs");
    for job in &jobs {
        assert_eq!(harness.job(job).await.unwrap()["status"]["phase"], "Succeeded", "{job}");
    }

    // Pruning a job from Git deletes the RenderJob; the finalizer deletes its PDF.
    harness.delete("RenderJob", &jobs[invoice]).await;
    harness.wait_until("the pruned job is gone", async |h| h.job(&jobs[invoice]).await.is_none()).await;
    assert_eq!(harness.bucket.get(&keys[invoice]).await.unwrap(), None, "the pruned job's PDF is deleted");
    harness.stop().await;
}
