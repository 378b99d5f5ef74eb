//! RenderJobs kept in Git, on a real control plane: `examples/gitops` is built with
//! kustomize and applied with `kubectl apply --server-side -k`, as Flux and Argo CD
//! apply it at every sync, with `folio operator` rendering (see `tests/operator.rs`
//! for the plumbing: the chart's RBAC, the test kubelet, the in-process S3 server).
//! What a GitOps tool needs from folio: every job renders once, and syncing the
//! same manifests again changes nothing (no new generation, no renderer Pod, no
//! charge); a job pruned from Git takes its PDF with it. One manifest applied again
//! and again across a job's life renders and charges once, also after its retention
//! deleted its PDF; edits of a job's inputs are refused by the API server; and the
//! status reads right in the real kstatus libraries, upstream and Flux's fork (what
//! Flux waits on), which must agree, and in the chart's Argo CD health check
//! (`folio-gitops-check`, built beside the control plane).

mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Value, json};
use support::cluster::{Harness, TWO_PAGES, job};
use support::gitops_check::{argocd_health, available, kstatus};
use support::kubelet::Behaviour;

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
            // Inputs are owned by their job (the templates' kept versions by their template).
            let inputs = h
                .list("ConfigMap")
                .await
                .iter()
                .filter(|c| c["metadata"]["ownerReferences"][0]["kind"] == "RenderJob")
                .count();
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

/// kstatus (upstream and Flux's fork, which Flux's health reads) and the Argo CD health
/// check read a job while it renders, once it succeeded, and when it failed or was
/// cancelled.
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

/// A job applied before its template (GitOps tools apply the objects of a commit in
/// an order of their own) waits for it, saying so, and renders once it exists; a
/// template that never comes fails its job after the renderer start timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_applied_before_its_template_waits_for_it() {
    let harness = Harness::start(&["--renderer-start-timeout", "10"]).await;
    harness.apply(job("early", json!({"templateRef": {"name": "statement"}, "data": {}}))).await;
    harness
        .wait_until("the job says what it waits for", async |h| {
            h.job("early").await.is_some_and(|j| condition(&j, "InputsFound").is_some_and(|c| c["status"] == "False"))
        })
        .await;
    let waiting = harness.job("early").await.unwrap();
    assert_eq!(waiting["status"]["phase"], "Queued");
    let found = condition(&waiting, "InputsFound").unwrap();
    assert!(found["message"].as_str().unwrap().contains("RenderTemplate \"statement\" does not exist"), "{found}");
    // The Event is published after the status that the condition is in.
    harness
        .wait_until("a Warning Event says what is missing", async |h| {
            h.event_reasons("early").await.contains(&"InputNotFound".to_owned())
        })
        .await;
    if available() {
        assert_eq!(kstatus(&waiting).0, "InProgress");
    }
    let template = json!({"apiVersion": "folio.dev/v1alpha1", "kind": "RenderTemplate",
        "metadata": {"name": "statement"}, "spec": {"source": "= Statement"}});
    harness.apply(template).await;
    let done = harness.wait_for_phase("early", "Succeeded").await;
    assert_eq!(condition(&done, "InputsFound").unwrap()["status"], "True");

    harness.apply(job("orphan", json!({"templateRef": {"name": "nowhere"}, "data": {}}))).await;
    let failed = harness.wait_for_phase("orphan", "Failed").await;
    assert_eq!(failed["status"]["errorCode"], "TEMPLATE_NOT_FOUND");
    assert!(failed["status"]["errorMessage"].as_str().unwrap().contains("s for it)"), "{}", failed["status"]);
    harness.stop().await;
}

/// What a GitOps tool does for real: sync every minute for ten minutes, as Argo CD and
/// Flux do, across the job's life and past its PDF's retention (five minutes). One
/// render, one charge, one object. Ten minutes long, so not part of `cargo test`:
/// `cargo test --test gitops -- --ignored`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "syncs for ten minutes; run with --ignored"]
async fn a_job_synced_every_minute_for_ten_minutes_renders_and_charges_once() {
    let harness = Harness::start(&[]).await;
    harness.apply(account_keeping_pdfs_for(300)).await;
    let manifest = job("report-2026-q4", json!({"template": {"source": TWO_PAGES}, "data": {"customer": "ACME"}}));
    let started = std::time::Instant::now();
    let mut uids = std::collections::BTreeSet::new();
    for sync in 0..=10 {
        let manager = if sync % 2 == 0 { "argocd-controller" } else { "kustomize-controller" };
        kubectl_apply(&harness, &manifest, manager).unwrap_or_else(|err| panic!("sync {sync}: {err}"));
        tokio::time::sleep(Duration::from_secs(2)).await;
        let job = harness.job("report-2026-q4").await.unwrap();
        uids.insert(job["metadata"]["uid"].as_str().unwrap().to_owned());
        eprintln!(
            "sync {sync} at {:>3} s: {} generation {} outputExpiredAt {}",
            started.elapsed().as_secs(),
            job["status"]["phase"],
            job["metadata"]["generation"],
            job["status"]["outputExpiredAt"]
        );
        if sync < 10 {
            tokio::time::sleep(Duration::from_secs(58)).await;
        }
    }
    let job = harness.job("report-2026-q4").await.unwrap();
    assert!(job["status"]["outputExpiredAt"].is_string(), "the retention deleted the PDF: {}", job["status"]);
    assert_eq!(uids.len(), 1, "one object all along: {uids:?}");
    let renderers = harness.kubelet.started_in(&harness.namespace);
    assert_eq!(renderers.len(), 1, "rendered once: {renderers:?}");
    let account = harness.get("RenderAccount", "acme").await.unwrap();
    assert_eq!(account["status"]["creditsUsed"], 2, "charged once");
    eprintln!("renderer Pods: {}, credits used: {}", renderers.len(), account["status"]["creditsUsed"]);
    harness.stop().await;
}
