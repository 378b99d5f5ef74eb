//! `folio operator` end to end on a real control plane (kube-apiserver with etcd,
//! RBAC and admission, kube-scheduler, kube-controller-manager; see
//! `tests/support/control_plane.rs`): the real controller loop runs in this process
//! as the chart's operator ServiceAccount with exactly the RBAC the chart installs,
//! the real scheduler binds the renderer Pods to the test kubelet
//! (`tests/support/kubelet.rs`, the one imitation: it runs the real `folio render`
//! binary for each Pod), and the PDFs go to an S3 server in this process (`s3s-fs`).
//! Each test has a namespace of its own under Pod Security `restricted`.

mod support;

use std::time::Duration;

use base64::Engine as _;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::{Value, json};
use support::cluster::{Harness, TWO_PAGES, account, job};
use support::control_plane::OPERATOR_ACCOUNT;
use support::kubelet::Behaviour;

/// The operator's user name in the API server's audit log.
fn operator_user() -> String {
    format!("system:serviceaccount:{}:{OPERATOR_ACCOUNT}", support::control_plane::RELEASE_NAMESPACE)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_applied_job_becomes_a_pdf_in_the_bucket_a_charged_account_events_and_a_webhook() {
    let receiver = support::webhook_receiver::Receiver::start().await;
    let harness = Harness::start(&["--allow-private-targets"]).await;
    harness.apply(account(10, None)).await;
    let secret = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "hooks"},
        "data": {"signing": base64::engine::general_purpose::STANDARD.encode("whsec_cluster")}});
    harness.apply(secret).await;
    let spec = json!({
        "template": {"source": TWO_PAGES},
        "data": {"customer": "ACME Corporation"},
        "webhook": {"url": receiver.url, "events": "all", "secretRef": {"name": "hooks", "key": "signing"}},
    });
    harness.apply(job("invoice-1", spec)).await;

    let done = harness.wait_for_phase("invoice-1", "Succeeded").await;
    let status = &done["status"];
    assert_eq!((status["pageCount"].as_i64(), status["creditsUsed"].as_i64()), (Some(2), Some(2)));
    assert_eq!(status["creditsRemaining"], 8);
    assert_eq!(status["observedGeneration"], done["metadata"]["generation"]);
    let ready = status["conditions"].as_array().unwrap().iter().find(|c| c["type"] == "Ready").unwrap();
    assert_eq!(ready["status"], "True");
    assert_eq!(done["metadata"]["finalizers"], json!(["folio.dev/output"]));
    harness
        .wait_until("the input (and its upload URL) is deleted once the Pod has finished", async |h| {
            h.get("ConfigMap", "invoice-1-render-0-input").await.is_none()
        })
        .await;
    // The ledger's last write (dropping the pending charge) follows the job's.
    harness
        .wait_until("the ledger settles", async |h| {
            h.get("RenderAccount", "acme").await.unwrap()["status"].get("pendingCharges").is_none()
        })
        .await;
    assert_eq!(harness.get("RenderAccount", "acme").await.unwrap()["status"]["creditsUsed"], 2);
    // The real scheduler bound the renderer Pod, which ran as Pod Security `restricted` allows.
    let pod = harness.get("Pod", "invoice-1-render-0").await.expect("the renderer Pod");
    assert_eq!(pod["spec"]["nodeName"], support::kubelet::NODE_NAME);
    assert_eq!(pod["status"]["phase"], "Succeeded");

    let key = status["outputKey"].as_str().unwrap();
    let pdf = harness.bucket.get(key).await.unwrap().expect("the PDF is in the bucket");
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("invoice.pdf"), &pdf).unwrap();
    assert_eq!(support::pdfinfo_pages(&dir.path().join("invoice.pdf")), 2);
    assert!(support::pdftotext(&dir.path().join("invoice.pdf")).contains("ACME Corporation"));

    let events = harness.event_reasons("invoice-1").await;
    for reason in ["Rendering", "Succeeded"] {
        assert!(events.contains(&reason.to_owned()), "{reason} in {events:?}");
    }
    // A job that could start at once was never written, nor announced, Queued.
    assert!(!events.contains(&"Queued".to_owned()), "{events:?}");

    // The webhook: rendering then succeeded, in order, signed, with a working download URL.
    receiver.wait_for(2).await;
    let received = receiver.accepted().await;
    let names: Vec<&str> = received.iter().map(|r| r.body["event"].as_str().unwrap()).collect();
    assert_eq!(names, ["render.rendering", "render.succeeded"]);
    for delivery in &received {
        let signature = delivery.headers["x-folio-signature"].to_str().unwrap();
        assert_eq!(signature, folio::webhooks::sign("whsec_cluster", &delivery.raw), "signed with the Secret's value");
        assert!(delivery.headers["x-folio-delivery-id"].to_str().unwrap().starts_with("dlv_"));
    }
    let url = received[1].body["downloadUrl"].as_str().expect("a download URL");
    assert_eq!(reqwest::get(url).await.unwrap().bytes().await.unwrap().to_vec(), pdf);
    harness
        .wait_until("the job shows its deliveries", async |h| {
            h.job("invoice-1").await.unwrap()["status"]["webhook"]["delivered"] == 2
        })
        .await;

    let metrics = reqwest::get(&harness.operator.as_ref().unwrap().metrics_url).await.unwrap().text().await.unwrap();
    assert!(metrics.contains("folio_jobs{phase=\"succeeded\"} 1"), "{metrics}");
    assert!(metrics.contains("folio_render_duration_seconds_count 1"), "{metrics}");
    assert!(!metrics.contains("invoice-1"), "no object names in metrics");

    // Deleting the job deletes its PDF first (the finalizer), then the job; the
    // garbage collector removes its Pod.
    harness.delete("RenderJob", "invoice-1").await;
    harness.wait_until("the job is gone", async |h| h.job("invoice-1").await.is_none()).await;
    assert_eq!(harness.bucket.get(key).await.unwrap(), None);
    harness.wait_until("its Pod is collected", async |h| h.get("Pod", "invoice-1-render-0").await.is_none()).await;
    harness.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blocked_job_completes_when_the_account_is_topped_up() {
    let harness = Harness::start(&[]).await;
    harness.apply(account(1, None)).await;
    harness.apply(job("invoice-2", json!({"template": {"source": TWO_PAGES}, "data": {"customer": "B"}}))).await;
    let blocked = harness.wait_for_phase("invoice-2", "Blocked").await;
    assert!(blocked["status"]["errorMessage"].as_str().unwrap().contains("costs 2 credits"), "{blocked:#}");
    harness.merge("RenderAccount", "acme", json!({"spec": {"credits": 5}})).await;
    let done = harness.wait_for_phase("invoice-2", "Succeeded").await;
    assert_eq!(done["status"]["creditsRemaining"], 3);
    assert_eq!(harness.kubelet.started_in(&harness.namespace), ["invoice-2-render-0"], "not rendered again");
    harness.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashed_renderer_pod_is_retried_in_a_new_pod() {
    let harness = Harness::start(&[]).await;
    harness.kubelet.behave(&harness.namespace, "invoice-3", Behaviour::CrashFirstAttempt);
    harness.apply(job("invoice-3", json!({"template": {"source": "= One"}, "data": {}}))).await;
    let done = harness.wait_for_phase("invoice-3", "Succeeded").await;
    assert_eq!(done["status"]["retryCount"], 1);
    assert_eq!(harness.kubelet.started_in(&harness.namespace), ["invoice-3-render-0", "invoice-3-render-1"]);
    let events = harness.event_reasons("invoice-3").await;
    assert!(events.contains(&"RetryScheduled".to_owned()), "{events:?}");
    harness.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_renderer_killed_for_memory_fails_the_job_as_resource_exhausted() {
    let harness = Harness::start(&[]).await;
    harness.kubelet.behave(&harness.namespace, "greedy", Behaviour::OutOfMemory);
    harness.apply(job("greedy", json!({"template": {"source": "= Big"}, "data": {}, "backoffLimit": 0}))).await;
    let failed = harness.wait_for_phase("greedy", "Failed").await;
    assert_eq!(failed["status"]["errorCode"], "RESOURCE_EXHAUSTED", "{failed:#}");
    harness.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_a_rendering_job_removes_its_pod() {
    let harness = Harness::start(&[]).await;
    harness.kubelet.behave(&harness.namespace, "slow", Behaviour::Hang);
    harness.apply(job("slow", json!({"template": {"source": "= Slow"}, "data": {}}))).await;
    harness.wait_for_phase("slow", "Rendering").await;
    harness
        .wait_until("the pod runs", async |h| {
            h.get("Pod", "slow-render-0").await.is_some_and(|p| p["status"]["phase"] == "Running")
        })
        .await;
    harness.merge("RenderJob", "slow", json!({"spec": {"cancel": true}})).await;
    harness.wait_for_phase("slow", "Cancelled").await;
    harness.wait_until("the pod is gone", async |h| h.get("Pod", "slow-render-0").await.is_none()).await;
    harness.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_past_its_deadline_expires_and_its_pod_goes() {
    let harness = Harness::start(&[]).await;
    harness.kubelet.behave(&harness.namespace, "late", Behaviour::Hang);
    harness.apply(job("late", json!({"template": {"source": "= Late"}, "data": {}, "activeDeadlineSeconds": 3}))).await;
    let expired = harness.wait_for_phase("late", "Expired").await;
    assert_eq!(expired["status"]["errorCode"], "DEADLINE_EXCEEDED");
    harness.wait_until("the pod is gone", async |h| h.get("Pod", "late-render-0").await.is_none()).await;
    harness.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_finished_job_is_deleted_after_ttl_seconds_after_finished() {
    let harness = Harness::start(&[]).await;
    let spec = json!({"template": {"source": "= Short-lived"}, "data": {}, "ttlSecondsAfterFinished": 1});
    harness.apply(job("brief", spec)).await;
    let done = harness.wait_for_phase("brief", "Succeeded").await;
    let key = done["status"]["outputKey"].as_str().unwrap().to_owned();
    assert!(harness.bucket.get(&key).await.unwrap().is_some());
    harness.wait_until("the job is deleted", async |h| h.job("brief").await.is_none()).await;
    assert_eq!(harness.bucket.get(&key).await.unwrap(), None, "its PDF went with it");
    harness.stop().await;
}

/// The chart's Lease (the only one its RBAC allows) decides which of two
/// operators reconciles; a clean stop hands it over at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_replica_leads_and_a_standby_takes_over_when_it_stops() {
    let harness = Harness::start(&["--lease"]).await;
    harness.wait_until("operator-0 leads", async |h| h.lease_holder().await.as_deref() == Some("operator-0")).await;
    let standby = harness.operator("operator-1", &["--lease"]).await;
    harness.apply(job("first", json!({"template": {"source": "= First"}, "data": {}}))).await;
    harness.wait_for_phase("first", "Succeeded").await;
    assert_eq!(harness.lease_holder().await.as_deref(), Some("operator-0"), "the standby did not take the Lease");
    // A standby is ready (it serves probes); it may still be connecting to the bucket
    // when the first job is done.
    let readyz = standby.metrics_url.replace("/metrics", "/readyz");
    harness
        .wait_until("the standby is ready", async |_| reqwest::get(&readyz).await.is_ok_and(|r| r.status() == 200))
        .await;

    let mut harness = harness;
    harness.operator.take().unwrap().stop().await;
    harness.wait_until("operator-1 leads", async |h| h.lease_holder().await.as_deref() == Some("operator-1")).await;
    harness.apply(job("second", json!({"template": {"source": "= Second"}, "data": {}}))).await;
    harness.wait_for_phase("second", "Succeeded").await;
    standby.stop().await;
}

/// The API server refuses the operator's write of the job's success, right after the
/// operator charged the account, as if it had crashed between the two writes (a
/// ValidatingAdmissionPolicy does the refusing); once the policy goes, the job ends
/// charged exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_job_write_after_the_charge_never_charges_twice() {
    let harness = Harness::start(&[]).await;
    let policy = format!("refuse-success-{}", harness.namespace);
    harness
        .apply_cluster(json!({
            "apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingAdmissionPolicy",
            "metadata": {"name": policy},
            "spec": {"failurePolicy": "Fail",
                "matchConstraints": {"resourceRules": [{"apiGroups": ["folio.dev"], "apiVersions": ["*"],
                    "operations": ["UPDATE"], "resources": ["renderjobs/status"]}]},
                "validations": [{"expression": "!has(object.status) || !has(object.status.phase) || object.status.phase != 'Succeeded'",
                    "message": "this test refuses a job's success for now"}]},
        }))
        .await;
    harness
        .apply_cluster(json!({
            "apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingAdmissionPolicyBinding",
            "metadata": {"name": policy},
            "spec": {"policyName": policy, "validationActions": ["Deny"],
                "matchResources": {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": harness.namespace}}}},
        }))
        .await;
    harness.wait_until("the policy is in force", async |h| h.success_is_refused().await).await;

    harness.apply(account(10, None)).await;
    harness.apply(job("ledger", json!({"template": {"source": TWO_PAGES}, "data": {"customer": "L"}}))).await;
    harness
        .wait_until("the account is charged, the charge pending", async |h| {
            let account = h.get("RenderAccount", "acme").await.unwrap();
            account["status"]["creditsUsed"] == 2 && account["status"]["pendingCharges"].is_array()
        })
        .await;
    let refused = |entries: &[Value]| {
        entries
            .iter()
            .filter(|e| e["user"]["username"] == operator_user() && e["objectRef"]["name"] == "ledger")
            .filter(|e| e["objectRef"]["subresource"] == "status" && e["verb"] == "patch")
            .filter(|e| e["responseStatus"]["code"].as_i64().is_some_and(|c| c >= 400))
            .count()
    };
    harness
        .wait_until("the operator retried the refused write", async |h| {
            refused(&h.plane.audit_entries_about(&h.namespace)) >= 2
        })
        .await;
    assert_eq!(harness.job("ledger").await.unwrap()["status"]["phase"], "Rendering");

    harness.delete_cluster("ValidatingAdmissionPolicyBinding", &policy).await;
    harness.delete_cluster("ValidatingAdmissionPolicy", &policy).await;
    let done = harness.wait_for_phase("ledger", "Succeeded").await;
    assert_eq!(
        (done["status"]["creditsUsed"].as_i64(), done["status"]["creditsRemaining"].as_i64()),
        (Some(2), Some(8))
    );
    harness
        .wait_until("the ledger settles", async |h| {
            h.get("RenderAccount", "acme").await.unwrap()["status"].get("pendingCharges").is_none()
        })
        .await;
    assert_eq!(harness.get("RenderAccount", "acme").await.unwrap()["status"]["creditsUsed"], 2, "charged once");
    harness.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_failing_twice_gets_every_event_once_in_order_and_the_job_shows_the_attempts() {
    let receiver = support::webhook_receiver::Receiver::failing_first(2).await;
    // The account's default webhook, for all events, there before the operator starts.
    let mut harness = Harness::start_idle().await;
    harness.apply(account(10, Some(json!({"url": receiver.url, "events": "all"})))).await;
    harness.operator =
        Some(harness.operator("operator-0", &["--allow-private-targets", "--webhook-retry-base", "0.2"]).await);
    harness.apply(job("hooked", json!({"template": {"source": "= Hooked"}, "data": {}}))).await;
    harness.wait_for_phase("hooked", "Succeeded").await;
    receiver.wait_for(2).await;
    harness
        .wait_until("the deliveries are recorded", async |h| {
            h.job("hooked").await.unwrap()["status"]["webhook"]["pending"] == 0
        })
        .await;
    let names: Vec<String> =
        receiver.accepted().await.iter().map(|r| r.body["event"].as_str().unwrap().to_owned()).collect();
    assert_eq!(names, ["render.rendering", "render.succeeded"], "each event once, in order");
    let hooks = harness.job("hooked").await.unwrap()["status"]["webhook"].clone();
    assert_eq!((hooks["delivered"].as_i64(), hooks["attempts"].as_i64()), (Some(2), Some(4)), "{hooks:#}");
    assert_eq!(hooks["lastResponseCode"], 200);
    harness.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_private_webhook_target_is_refused_without_the_flag_and_the_job_says_why() {
    let receiver = support::webhook_receiver::Receiver::start().await;
    let harness = Harness::start(&[]).await;
    let spec = json!({"template": {"source": "= Private"}, "data": {}, "webhook": {"url": receiver.url}});
    harness.apply(job("private", spec)).await;
    harness.wait_for_phase("private", "Succeeded").await;
    harness
        .wait_until("the refusal is recorded", async |h| {
            h.job("private").await.unwrap()["status"]["webhook"]["failed"] == 1
        })
        .await;
    let hooks = harness.job("private").await.unwrap()["status"]["webhook"].clone();
    assert!(hooks["lastError"].as_str().unwrap().contains("private"), "{hooks:#}");
    assert!(receiver.accepted().await.is_empty());
    harness.stop().await;
}

/// A delivery still failing when the operator stops is sent by the next operator:
/// the queue lives in the job's status, not in the process.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pending_delivery_survives_an_operator_restart() {
    let receiver = support::webhook_receiver::Receiver::failing_first(3).await;
    let mut harness = Harness::start(&["--allow-private-targets", "--webhook-retry-base", "1"]).await;
    let spec = json!({"template": {"source": "= Restart"}, "data": {}, "webhook": {"url": receiver.url}});
    harness.apply(job("restart", spec)).await;
    harness.wait_for_phase("restart", "Succeeded").await;
    harness
        .wait_until("a first failed attempt", async |h| {
            h.job("restart").await.unwrap()["status"]["webhook"]["attempts"] == 1
        })
        .await;
    harness.operator.take().unwrap().stop().await;
    assert!(receiver.accepted().await.is_empty());

    let next = harness.operator("operator-1", &["--allow-private-targets", "--webhook-retry-base", "0.2"]).await;
    receiver.wait_for(1).await;
    let delivered = receiver.accepted().await;
    assert_eq!(delivered.len(), 1);
    assert_eq!(delivered[0].body["event"], "render.succeeded");
    harness
        .wait_until("the job records it", async |h| {
            h.job("restart").await.unwrap()["status"]["webhook"]["delivered"] == 1
        })
        .await;
    next.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_whose_bucket_does_not_answer_is_alive_but_not_ready() {
    let harness = Harness::start(&[]).await;
    // A `folio operator` process of its own, whose bucket does not answer.
    let (mut stranded, ops) =
        support::cluster::operator_process(harness.plane, &harness.namespace, "http://127.0.0.1:9");
    let client = reqwest::Client::new();
    let mut health = None;
    for _ in 0..100 {
        if let Ok(response) = client.get(format!("{ops}/healthz")).send().await {
            health = Some(response.status());
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(health, Some(reqwest::StatusCode::OK));
    let ready = client.get(format!("{ops}/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 503);
    assert!(ready.text().await.unwrap().contains("bucket"));
    // The other operator, whose bucket answers, becomes ready.
    let main = harness.operator.as_ref().unwrap().metrics_url.replace("/metrics", "/readyz");
    let mut status = None;
    for _ in 0..200 {
        status = client.get(&main).send().await.ok().map(|r| r.status());
        if status == Some(reqwest::StatusCode::OK) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(status, Some(reqwest::StatusCode::OK));
    // SIGTERM stops it cleanly even while it waits for its bucket.
    let _ = kill(Pid::from_raw(stranded.id() as i32), Signal::SIGTERM);
    let exited = tokio::task::spawn_blocking(move || stranded.wait()).await.unwrap().unwrap();
    assert!(exited.success(), "{exited}");
    harness.stop().await;
}

/// Deleting a job whose renderer is mid-render stops the renderer at once (SIGTERM,
/// no grace period) and leaves no PDF behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_job_stops_its_rendering_pod_and_leaves_no_pdf() {
    let harness = Harness::start(&[]).await;
    // A render that takes far longer than the test.
    let spin = "#let n = 0\n#for i in range(200000000) { n += 1 }\n= #n";
    harness.apply(job("spin", json!({"template": {"source": spin}, "data": {}}))).await;
    harness
        .wait_until("the renderer runs", async |h| h.kubelet.started_in(&h.namespace).contains(&"spin-render-0".into()))
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let deleted_at = std::time::Instant::now();
    harness.delete("RenderJob", "spin").await;
    harness.wait_until("the job is gone", async |h| h.job("spin").await.is_none()).await;
    harness.wait_until("the Pod is gone", async |h| h.get("Pod", "spin-render-0").await.is_none()).await;
    assert!(deleted_at.elapsed() < Duration::from_secs(10), "the Pod went without waiting out a grace period");
    assert_eq!(harness.kubelet.terminated_in(&harness.namespace), ["spin-render-0"], "SIGTERM reached the renderer");
    harness
        .wait_until("the renderer exits", async |h| h.kubelet.exit_code(&h.namespace, "spin-render-0").is_some())
        .await;
    let code = harness.kubelet.exit_code(&harness.namespace, "spin-render-0");
    assert_eq!(code, Some(143), "folio render stopped on SIGTERM itself (143), not killed after a grace period");
    tokio::time::sleep(Duration::from_secs(1)).await;
    let key = folio::storage::output_key(&harness.namespace, "spin", folio::resources::OutputFormat::Pdf);
    assert_eq!(harness.bucket.get(&key).await.unwrap(), None, "no PDF was uploaded after the deletion");
    harness.stop().await;
}

/// `kubectl apply --server-side -f examples/` on a cluster with the operator: the
/// example makes its own namespace, and its jobs render.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_examples_apply_server_side_and_render() {
    let plane = support::control_plane::shared();
    let examples = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let s3_root = tempfile::tempdir().unwrap();
    let endpoint = support::s3::s3_server(s3_root.path()).await;
    let operator = support::cluster::Operator::spawn(plane, "acme", &endpoint, "operator-0", &[]).await;
    let out = plane.try_kubectl(&["apply", "--server-side", "-f", examples.to_str().unwrap()]);
    let out = out.unwrap_or_else(|err| panic!("kubectl apply of the examples: {err}"));
    assert!(out.contains("renderjob.folio.dev/invoice-2026-0001 serverside-applied"), "{out}");
    let client = plane.admin().await;
    let jobs: kube::Api<folio::resources::RenderJob> = kube::Api::namespaced(client, "acme");
    let started = std::time::Instant::now();
    loop {
        let all = jobs.list(&Default::default()).await.unwrap().items;
        let phases: Vec<_> = all.iter().map(|j| j.status.as_ref().and_then(|s| s.phase)).collect();
        if !all.is_empty() && phases.iter().all(|p| *p == Some(folio::lifecycle::Phase::Succeeded)) {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(60), "the examples did not render: {phases:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    operator.stop().await;
}

/// The condition of `type_` on `job`, if any.
fn condition(job: &Value, type_: &str) -> Option<Value> {
    job["status"]["conditions"].as_array()?.iter().find(|c| c["type"] == type_).cloned()
}

/// A renderer Pod the real scheduler cannot place (it asks for more CPU than the node
/// has) shows the scheduler's reason on the job while it waits, and ends the attempt
/// as RENDERER_UNAVAILABLE after the start timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unschedulable_renderer_shows_the_schedulers_reason_and_ends_unavailable() {
    let args = ["--renderer-cpu-request", "100", "--renderer-cpu-limit", "100", "--renderer-start-timeout", "4"];
    let harness = Harness::start(&args).await;
    harness.apply(job("huge", json!({"template": {"source": "= Huge"}, "data": {}, "backoffLimit": 0}))).await;
    harness
        .wait_until("the job shows why its renderer waits", async |h| {
            let job = h.job("huge").await.unwrap();
            condition(&job, "RendererStarted").is_some_and(|c| c["status"] == "False")
        })
        .await;
    let waiting = condition(&harness.job("huge").await.unwrap(), "RendererStarted").unwrap();
    assert_eq!(waiting["reason"], "Unschedulable", "{waiting:#}");
    assert!(waiting["message"].as_str().unwrap().contains("0/1 nodes are available"), "{waiting:#}");
    let failed = harness.wait_for_phase("huge", "Failed").await;
    assert_eq!(failed["status"]["errorCode"], "RENDERER_UNAVAILABLE", "{failed:#}");
    assert!(failed["status"]["errorMessage"].as_str().unwrap().contains("Insufficient cpu"), "{failed:#}");
    let events = harness.events("huge").await;
    let warnings: Vec<_> = events.iter().filter(|e| e["reason"] == "RendererNotStarted").collect();
    assert_eq!(warnings.len(), 1, "one Warning Event: {events:#?}");
    assert_eq!(warnings[0]["type"], "Warning");
    harness.wait_until("the Pod is gone", async |h| h.get("Pod", "huge-render-0").await.is_none()).await;
    harness.stop().await;
}

/// A LimitRange whose maximum is below the renderer's memory limit makes the API
/// server refuse the Pod: the job shows the server's message at once, and renders
/// once the platform team lifts the limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admission_refusal_shows_at_once_and_the_job_renders_once_it_is_lifted() {
    let harness = Harness::start(&[]).await;
    harness
        .apply(json!({"apiVersion": "v1", "kind": "LimitRange", "metadata": {"name": "small"},
            "spec": {"limits": [{"type": "Container", "max": {"memory": "512Mi"}}]}}))
        .await;
    harness.apply(job("refused", json!({"template": {"source": "= Refused"}, "data": {}}))).await;
    harness
        .wait_until("the refusal shows on the job", async |h| {
            let job = h.job("refused").await.unwrap();
            condition(&job, "RendererAdmitted").is_some_and(|c| c["status"] == "False")
        })
        .await;
    let refused = harness.job("refused").await.unwrap();
    let admitted = condition(&refused, "RendererAdmitted").unwrap();
    assert_eq!(admitted["reason"], "Forbidden", "{admitted:#}");
    let message = admitted["message"].as_str().unwrap();
    assert!(message.contains("maximum memory usage per Container is 512Mi, but limit is 1Gi"), "{admitted:#}");
    assert_eq!(refused["status"]["phase"], "Queued");
    let events = harness.events("refused").await;
    let warning = events.iter().find(|e| e["reason"] == "RendererRefused").expect("a Warning Event");
    assert!(warning["note"].as_str().unwrap().contains("512Mi"), "{warning:#}");

    harness.delete("LimitRange", "small").await;
    let done = harness.wait_for_phase("refused", "Succeeded").await;
    assert_eq!(condition(&done, "RendererAdmitted").unwrap()["status"], "True");
    harness.stop().await;
}

/// A renderer image the node cannot pull: the kubelet's ErrImagePull shows on the job,
/// which ends RENDERER_UNAVAILABLE after the start timeout instead of running out
/// its deadline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_image_that_cannot_be_pulled_shows_on_the_job_and_ends_unavailable() {
    let harness = Harness::start(&["--image", "registry.invalid/folio:missing", "--renderer-start-timeout", "3"]).await;
    harness.apply(job("nopull", json!({"template": {"source": "= Pull"}, "data": {}, "backoffLimit": 0}))).await;
    harness
        .wait_until("the pull failure shows on the job", async |h| {
            let job = h.job("nopull").await.unwrap();
            condition(&job, "RendererStarted").is_some_and(|c| c["reason"] == "ErrImagePull")
        })
        .await;
    let failed = harness.wait_for_phase("nopull", "Failed").await;
    assert_eq!(failed["status"]["errorCode"], "RENDERER_UNAVAILABLE", "{failed:#}");
    assert!(
        failed["status"]["errorMessage"].as_str().unwrap().contains("registry.invalid/folio:missing"),
        "{failed:#}"
    );
    harness.stop().await;
}

/// A failure whose message is long and not ASCII still reaches the job's Events: the
/// API server limits an Event's note to 1,024 bytes, and the note is cut to fit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_non_ascii_failure_message_still_makes_an_event() {
    let harness = Harness::start(&[]).await;
    let source = "#panic(\"Prüfung fehlgeschlagen: \" + \"ü\" * 900)";
    harness.apply(job("umlaut", json!({"template": {"source": source}, "data": {}}))).await;
    let failed = harness.wait_for_phase("umlaut", "Failed").await;
    assert!(failed["status"]["errorMessage"].as_str().unwrap().len() > 1024, "{failed:#}");
    harness
        .wait_until("the Failed Event is recorded", async |h| {
            h.events("umlaut").await.iter().any(|e| e["reason"] == "Failed")
        })
        .await;
    let events = harness.events("umlaut").await;
    let note = events.iter().find(|e| e["reason"] == "Failed").unwrap()["note"].as_str().unwrap().to_owned();
    assert!(note.len() <= 1024 && note.contains("Prüfung"), "{note}");
    harness.stop().await;
}

/// The operator and `folio run` decide through the same lifecycle core: the same
/// manifests (an account of 1 credit, a job it cannot pay for, a job whose template
/// does not compile, a cancelled job) end in statuses that agree field by field. (A
/// job naming a template that does not exist fails at once in `folio run`, which has
/// every object it will ever have, and waits for it in a cluster.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operator_and_folio_run_write_the_same_statuses() {
    let harness = Harness::start(&[]).await;
    let objects = [
        account(1, None),
        job("short", json!({"template": {"source": TWO_PAGES}, "data": {"customer": "B"}})),
        job("broken", json!({"template": {"source": "#let x = (\n= Oops"}, "data": {}})),
        job("cancelled", json!({"template": {"source": "= Never"}, "data": {}, "cancel": true})),
    ];
    for object in &objects {
        harness.apply(object.clone()).await;
    }
    let mut in_cluster = Vec::new();
    for (name, phase) in [("short", "Blocked"), ("broken", "Failed"), ("cancelled", "Cancelled")] {
        in_cluster.push((name, harness.wait_for_phase(name, phase).await["status"].clone()));
    }
    harness.stop().await;

    let dir = tempfile::tempdir().unwrap();
    let manifest: String = objects.iter().map(|o| format!("---\n{}", serde_yaml::to_string(o).unwrap())).collect();
    let output = support::run_manifest(dir.path(), &manifest, &[]);
    let reports = support::reports(&output);
    for (name, cluster_status) in in_cluster {
        let run_status = serde_json::to_value(&support::report(&reports, name)["status"]).unwrap();
        assert_eq!(
            support::comparable_status(&run_status, name),
            support::comparable_status(&cluster_status, name),
            "{name}: folio run (left) and the operator (right) disagree"
        );
    }
}

/// The webhook flags both homes get for the comparison of a given-up delivery:
/// loopback receivers allowed, a first retry after [`RETRY_BASE`], given up
/// [`MAX_AGE`] after the event.
const HOOK_FLAGS: [&str; 5] = ["--allow-private-targets", "--webhook-retry-base", "500ms", "--webhook-max-age", "3s"];
/// `--webhook-retry-base`.
const RETRY_BASE: Duration = Duration::from_millis(500);
/// `--webhook-max-age`.
const MAX_AGE: Duration = Duration::from_secs(3);
/// How late a due attempt may go out, or a give-up be decided, after the instant the
/// receiver logged: each home's polling and the time of the attempt's own request.
const LATE: Duration = Duration::from_millis(500);

/// One home's account of a webhook delivery it gave up.
struct GivenUp {
    /// The job's webhook delivery status (`status.webhook`), as the home keeps it.
    webhook: Value,
    /// When the home queued the delivery.
    queued_at: jiff::Timestamp,
    /// Every `nextAttemptAt` the home showed while the delivery was pending.
    scheduled: std::collections::BTreeSet<jiff::Timestamp>,
    /// The home's `webhook_attempts` counter, by outcome.
    counted: std::collections::BTreeMap<String, u64>,
    /// Every request the home's receiver got.
    log: Vec<support::webhook_receiver::Logged>,
}

/// The `folio_webhook_attempts` counters in a Prometheus text exposition, by outcome.
fn webhook_attempts(metrics: &str) -> std::collections::BTreeMap<String, u64> {
    metrics
        .lines()
        .filter(|l| l.starts_with("folio_webhook_attempts"))
        .map(|l| {
            let outcome = l.split("outcome=\"").nth(1).and_then(|r| r.split('"').next()).unwrap_or_default();
            let count = l.split_whitespace().last().and_then(|c| c.parse().ok()).unwrap_or_else(|| panic!("{l}"));
            (outcome.to_owned(), count)
        })
        .collect()
}

/// What both homes must agree on about a given-up delivery:
/// - kept as they are: `delivered`, `pending`, `failed`, `lastResponseCode`,
///   `lastError`, and the `webhook_attempts` counts of `delivered` and `failed`;
/// - kept as present or absent: `lastAttemptAt`, `nextAttemptAt` (their values are
///   the clock); the queue as its length;
/// - `attempts` (it depends on the retries' jitter) kept as what the rule makes of
///   it: at least 2, as many as the receiver got, the `retry` count one less, no
///   request after `queuedAt + maxAge` (give or take [`LATE`]), and the last one
///   close enough to that end that its next attempt, backed off by
///   `retryBase × 2^(attempts−1)` with at most +25 % jitter, could fall after it;
/// - the `nextAttemptAt` values shown while the delivery was pending, as whether
///   there were any and all of them were before `queuedAt + maxAge` (exactly,
///   without [`LATE`]).
fn comparable_webhook(home: &GivenUp) -> Value {
    let hooks = &home.webhook;
    let attempts = hooks["attempts"].as_u64().unwrap_or(0);
    let deadline = home.queued_at + MAX_AGE;
    let last = home.log.last().map(|l| l.at).unwrap_or(home.queued_at);
    let next_backoff = RETRY_BASE.mul_f64(1.25 * f64::from(1u32 << attempts.saturating_sub(1).min(20)));
    let next_could_be_late = last + next_backoff + LATE >= deadline;
    let scheduled_in_time = !home.scheduled.is_empty() && home.scheduled.iter().all(|at| *at < deadline);
    let count = |outcome: &str| home.counted.get(outcome).copied().unwrap_or(0);
    let retry = if count("retry") + 1 == attempts {
        json!("attempts - 1")
    } else {
        json!(format!("{} with {attempts} attempts", count("retry")))
    };
    json!({
        "delivered": hooks["delivered"],
        "pending": hooks["pending"],
        "failed": hooks["failed"],
        "lastResponseCode": hooks["lastResponseCode"],
        "lastError": hooks["lastError"],
        "lastAttemptAt present": !hooks["lastAttemptAt"].is_null(),
        "nextAttemptAt present": !hooks["nextAttemptAt"].is_null(),
        "queue length": hooks["queue"].as_array().map_or(0, Vec::len),
        "attempts >= 2": attempts >= 2,
        "attempts = requests received": attempts == home.log.len() as u64,
        "every request answered 500": home.log.iter().all(|l| l.answered == 500),
        "no request after queuedAt + maxAge": last <= deadline + LATE,
        "every nextAttemptAt before queuedAt + maxAge": scheduled_in_time,
        "given up only when the next attempt could fall after queuedAt + maxAge": next_could_be_late,
        "webhook_attempts": {"delivered": count("delivered"), "failed": count("failed"), "retry": retry},
    })
}

/// Wait until `receiver`'s first request is older than the retry period and a
/// second: any attempt a home still made after giving up would have arrived.
async fn outlast_the_retry_period(receiver: &support::webhook_receiver::Receiver) {
    let first = receiver.log().await.first().expect("the receiver got a request").at;
    let over = first + MAX_AGE + Duration::from_secs(1);
    if let Ok(wait) = Duration::try_from(jiff::Timestamp::now().duration_until(over)) {
        tokio::time::sleep(wait).await;
    }
}

/// The job `spec` with a webhook to `url` for its final event only.
fn hooked(url: &str) -> Value {
    json!({"template": {"source": "= Hooked"}, "data": {}, "webhook": {"url": url, "events": "terminal"}})
}

/// The job through `folio serve` (a real process with [`HOOK_FLAGS`], the job posted
/// over HTTP) until its delivery is given up: the delivery state the server keeps in
/// its database for the job (what `GET /v1/renders/{id}` shows as `webhook`), when it
/// queued the delivery, and its `/metrics`.
async fn given_up_by_serve() -> GivenUp {
    let receiver = support::webhook_receiver::Receiver::always(axum::http::StatusCode::INTERNAL_SERVER_ERROR).await;
    let dir = tempfile::tempdir().unwrap();
    let server = support::Server::start(dir.path(), &HOOK_FLAGS);
    let key = server.key("acme");
    let http = reqwest::Client::new();
    let accepted = http.post(format!("{}/v1/renders", server.url)).bearer_auth(&key).json(&hooked(&receiver.url));
    let accepted: Value = accepted.send().await.unwrap().json().await.unwrap();
    let id = accepted["id"].as_str().unwrap_or_else(|| panic!("{accepted}")).to_owned();
    let mut scheduled = std::collections::BTreeSet::new();
    let started = std::time::Instant::now();
    loop {
        let job: Value = http
            .get(format!("{}/v1/renders/{id}", server.url))
            .bearer_auth(&key)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if let Some(at) = job["webhook"]["nextAttemptAt"].as_str() {
            scheduled.insert(at.parse::<jiff::Timestamp>().unwrap());
        }
        if job["webhook"]["failed"] == 1 {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(60), "folio serve never gave the delivery up: {job:#}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    outlast_the_retry_period(&receiver).await;
    let metrics = http.get(format!("{}/metrics", server.url)).send().await.unwrap().text().await.unwrap();
    let data_dir = server.data_dir.clone();
    drop(server);
    let store = folio::standalone::store::Store::open(&data_dir.join("folio.db")).unwrap();
    let webhook = store.read(|c| folio::standalone::store::delivery_status(c, &id)).unwrap();
    let queued_ms: i64 = store
        .read(|c| Ok(c.query_row("SELECT created_at FROM deliveries WHERE job_id = ?1", [&id], |r| r.get(0))?))
        .unwrap();
    GivenUp {
        webhook: serde_json::to_value(webhook.expect("the job's deliveries")).unwrap(),
        queued_at: jiff::Timestamp::from_millisecond(queued_ms).unwrap(),
        scheduled,
        counted: webhook_attempts(&metrics),
        log: receiver.log().await,
    }
}

/// The job through the operator (the real controller on the real control plane with
/// [`HOOK_FLAGS`], the job applied as a RenderJob) until its delivery is given up: the
/// job's `status.webhook`, the delivery's `queuedAt` as its queue showed it while it
/// was pending, and the operator's metrics endpoint.
async fn given_up_by_the_operator() -> GivenUp {
    let receiver = support::webhook_receiver::Receiver::always(axum::http::StatusCode::INTERNAL_SERVER_ERROR).await;
    let harness = Harness::start(&HOOK_FLAGS).await;
    harness.apply(job("hooked", hooked(&receiver.url))).await;
    let (mut queued_at, mut scheduled) = (None, std::collections::BTreeSet::new());
    let started = std::time::Instant::now();
    loop {
        let job = harness.job("hooked").await.unwrap();
        let hooks = &job["status"]["webhook"];
        if let Some(at) = hooks["queue"][0]["queuedAt"].as_str() {
            queued_at.get_or_insert_with(|| at.parse::<jiff::Timestamp>().unwrap());
        }
        if let Some(at) = hooks["nextAttemptAt"].as_str() {
            scheduled.insert(at.parse::<jiff::Timestamp>().unwrap());
        }
        if hooks["failed"] == 1 {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(60), "the operator never gave the delivery up: {job:#}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    outlast_the_retry_period(&receiver).await;
    let metrics_url = harness.operator.as_ref().unwrap().metrics_url.clone();
    let metrics = reqwest::get(metrics_url).await.unwrap().text().await.unwrap();
    let webhook = harness.job("hooked").await.unwrap()["status"]["webhook"].clone();
    harness.stop().await;
    GivenUp {
        webhook,
        queued_at: queued_at.expect("the delivery was seen queued before it was given up"),
        scheduled,
        counted: webhook_attempts(&metrics),
        log: receiver.log().await,
    }
}

/// A webhook whose receiver always answers 500 is retried with backoff and given up
/// when its next attempt would fall after the retry period (`--webhook-max-age`,
/// counted from when the delivery was queued), the same way in both homes that keep
/// a delivery queue, `folio serve` (its database) and the operator (the RenderJob's
/// status): nothing pending or delivered, one failed, the last response code 500, at
/// least two attempts, each one the receiver got, none after the retry period, and
/// the metric `webhook_attempts` counting exactly one `failed` (the attempt after
/// which it was given up) and every other attempt `retry`. The number of attempts
/// itself depends on the retries' jitter, so it is compared as what the rule makes of
/// it (see [`comparable_webhook`]).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_that_always_fails_is_given_up_alike_by_folio_serve_and_the_operator() {
    let serve = given_up_by_serve().await;
    let operator = given_up_by_the_operator().await;
    let (normal_serve, normal_operator) = (comparable_webhook(&serve), comparable_webhook(&operator));
    let raw = |home: &GivenUp| {
        let log: Vec<String> = home.log.iter().map(|l| format!("{} {}", l.at, l.answered)).collect();
        format!(
            "{:#}\nqueued {}, scheduled {:?}, counted {:?}, requests {log:?}",
            home.webhook, home.queued_at, home.scheduled, home.counted
        )
    };
    assert_eq!(
        normal_serve,
        normal_operator,
        "left: folio serve, right: the operator\nfolio serve: {}\nthe operator: {}",
        raw(&serve),
        raw(&operator)
    );
    let expected = json!({
        "delivered": 0,
        "pending": 0,
        "failed": 1,
        "lastResponseCode": 500,
        "lastError": "the receiver answered 500",
        "lastAttemptAt present": true,
        "nextAttemptAt present": false,
        "queue length": 0,
        "attempts >= 2": true,
        "attempts = requests received": true,
        "every request answered 500": true,
        "no request after queuedAt + maxAge": true,
        "every nextAttemptAt before queuedAt + maxAge": true,
        "given up only when the next attempt could fall after queuedAt + maxAge": true,
        "webhook_attempts": {"delivered": 0, "failed": 1, "retry": "attempts - 1"},
    });
    assert_eq!(normal_serve, expected, "both homes, against the rule\nfolio serve: {}", raw(&serve));
}

/// A RenderJob that contradicts itself is refused by the API server (the CRD's
/// validation rules) with a message naming the fields, and nothing is created: both
/// `templateRef` and `template`, neither, or both `data` and `dataFrom`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_that_contradicts_itself_is_refused_by_the_api_server() {
    let harness = Harness::start_idle().await;
    let inline = json!({"source": "= Invoice"});
    let refused = [
        (
            "both-templates",
            json!({"templateRef": {"name": "invoice"}, "template": inline}),
            "exactly one of templateRef",
        ),
        ("no-template", json!({"data": {}}), "exactly one of templateRef"),
        (
            "both-data",
            json!({"template": inline, "data": {}, "dataFrom": {"name": "big", "key": "data.json"}}),
            "at most one of data",
        ),
    ];
    for (name, spec, says) in refused {
        let err = harness.try_apply(job(name, spec)).await.expect_err(name);
        let kube::Error::Api(status) = &err else { panic!("{name}: {err}") };
        assert_eq!(status.code, 422, "{name}: {status:?}");
        assert!(status.message.contains(says), "{name}: {}", status.message);
        assert!(harness.get("RenderJob", name).await.is_none(), "{name} was not created");
    }
    // The rules accept what is well formed.
    harness.try_apply(job("fine", json!({"template": inline, "data": {}}))).await.expect("a well-formed job");
}

/// An ended job that is edited afterwards (here: cancelled after it succeeded, which
/// changes nothing else) shows that it has seen the new generation: GitOps tools
/// (kstatus, Flux) read a lagging `observedGeneration` as "still in progress".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ended_job_edited_later_observes_its_new_generation() {
    let harness = Harness::start(&[]).await;
    harness.apply(job("edited", json!({"template": {"source": "= Done"}, "data": {}}))).await;
    let done = harness.wait_for_phase("edited", "Succeeded").await;
    assert_eq!(done["status"]["observedGeneration"], done["metadata"]["generation"]);
    let edited = harness.merge("RenderJob", "edited", json!({"spec": {"cancel": true}})).await;
    let generation = edited["metadata"]["generation"].as_i64().unwrap();
    assert!(generation > done["metadata"]["generation"].as_i64().unwrap(), "the edit is a new generation");
    harness
        .wait_until("the status observes the new generation", async |h| {
            h.get("RenderJob", "edited").await.is_some_and(|j| j["status"]["observedGeneration"] == generation)
        })
        .await;
    let job = harness.get("RenderJob", "edited").await.unwrap();
    assert_eq!(job["status"]["phase"], "Succeeded", "an ended job stays ended");
    let ready = job["status"]["conditions"].as_array().unwrap().iter().find(|c| c["type"] == "Ready").unwrap().clone();
    assert_eq!((ready["status"].as_str(), ready["observedGeneration"].as_i64()), (Some("True"), Some(generation)));
    harness.stop().await;
}

/// An account's `maxConcurrentRenders` caps its namespace's renderer Pods: with a cap
/// of 1 the second job waits in the queue, without a Pod, while the first renders, and
/// starts as soon as the first one's Pod is gone (woken by the Pod's end, not by a
/// periodic look).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_concurrent_renders_caps_a_namespaces_renderer_pods() {
    let harness = Harness::start(&[]).await;
    let mut capped = account(100, None);
    capped["spec"]["maxConcurrentRenders"] = json!(1);
    harness.apply(capped).await;
    harness.kubelet.behave(&harness.namespace, "first", Behaviour::Hang);
    harness.apply(job("first", json!({"template": {"source": "= First"}, "data": {}}))).await;
    harness.wait_for_phase("first", "Rendering").await;
    harness.apply(job("second", json!({"template": {"source": "= Second"}, "data": {}}))).await;
    harness
        .wait_until("the second job is queued", async |h| {
            h.event_reasons("second").await.contains(&"WaitingForShare".to_owned())
        })
        .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(harness.job("second").await.unwrap()["status"]["phase"], "Queued");
    assert!(harness.get("Pod", "second-render-0").await.is_none(), "a second renderer Pod despite the cap");
    let freed = std::time::Instant::now();
    harness.merge("RenderJob", "first", json!({"spec": {"cancel": true}})).await;
    harness.wait_for_phase("second", "Succeeded").await;
    let waited = freed.elapsed();
    eprintln!("the second job succeeded {waited:?} after the first was cancelled");
    assert!(waited < Duration::from_secs(20), "the queued job was not woken when the renderer ended: {waited:?}");
    harness.stop().await;
}
