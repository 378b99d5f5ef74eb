//! `folio operator` end to end: the real controller loop (watch → reconcile → Pod
//! → status), with its leader Lease, against the stand-in API server of
//! `tests/support/apiserver.rs`, a stand-in kubelet, and a real S3 server
//! (`s3s-fs`) in this process.
//!
//! The stand-in kubelet runs each renderer Pod the operator creates by running the
//! real `folio render` binary on the Pod's input ConfigMap, laid out as Kubernetes
//! mounts it, and writes the report into the Pod's status as its termination
//! message; it can also crash a Pod (exit 137, no report) or keep one running.
//!
//! What this does not emulate: scheduling, images, the container runtime and its
//! limits (memory, `activeDeadlineSeconds` enforcement, the read-only root file
//! system), admission and RBAC, and the real API server's schema validation (see
//! the stand-in's own list). `tests/cluster.rs` covers those on a real cluster.

mod support;

use base64::Engine as _;
use serde_json::json;
use support::cluster::{Harness, Operator, RJ, TWO_PAGES, account, job};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_applied_job_becomes_a_pdf_in_the_bucket_a_charged_account_events_and_a_webhook() {
    let receiver = support::webhook_receiver::Receiver::start().await;
    let harness = Harness::start(&["--allow-private-targets"]).await;
    harness.apply("renderaccounts", account(10, None));
    let secret = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "hooks", "namespace": "acme"},
        "data": {"signing": base64::engine::general_purpose::STANDARD.encode("whsec_cluster")}});
    harness.api.put_object("v1", "secrets", secret);
    let spec = json!({
        "template": {"source": TWO_PAGES},
        "data": {"customer": "ACME Corporation"},
        "webhook": {"url": receiver.url, "events": "all", "secretRef": {"name": "hooks", "key": "signing"}},
    });
    harness.apply("renderjobs", job("invoice-1", spec));

    let done = harness.wait_for_phase("invoice-1", "Succeeded").await;
    let status = &done["status"];
    assert_eq!((status["pageCount"].as_i64(), status["creditsUsed"].as_i64()), (Some(2), Some(2)));
    assert_eq!(status["creditsRemaining"], 8);
    assert_eq!(status["observedGeneration"], done["metadata"]["generation"]);
    assert_eq!(status["conditions"][0]["status"], "True");
    assert_eq!(done["metadata"]["finalizers"], json!(["folio.dev/output"]));
    assert!(
        harness.api.get("v1", "configmaps", "acme", "invoice-1-render-0-input").is_none(),
        "the input (and its upload URL) is deleted once the Pod has finished"
    );
    // The ledger's last write (dropping the pending charge) follows the job's.
    let account = || harness.api.get(RJ, "renderaccounts", "acme", "acme").unwrap();
    harness.wait_until("the ledger settles", |_| account()["status"].get("pendingCharges").is_none()).await;
    assert_eq!(account()["status"]["creditsUsed"], 2);

    let key = status["outputKey"].as_str().unwrap();
    let pdf = harness.bucket.get(key).await.unwrap().expect("the PDF is in the bucket");
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("invoice.pdf"), &pdf).unwrap();
    assert_eq!(support::pdfinfo_pages(&dir.path().join("invoice.pdf")), 2);
    assert!(support::pdftotext(&dir.path().join("invoice.pdf")).contains("ACME Corporation"));

    let events: Vec<String> = harness
        .api
        .list("events.k8s.io/v1", "events")
        .iter()
        .filter(|e| e["regarding"]["name"] == "invoice-1")
        .map(|e| e["reason"].as_str().unwrap_or_default().to_owned())
        .collect();
    for reason in ["Queued", "Rendering", "Succeeded"] {
        assert!(events.contains(&reason.to_owned()), "{reason} in {events:?}");
    }

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
        .wait_until("the job shows its deliveries", |h| {
            h.job("invoice-1").unwrap()["status"]["webhook"]["delivered"] == 2
        })
        .await;

    let metrics = reqwest::get(&harness.operator.as_ref().unwrap().metrics_url).await.unwrap().text().await.unwrap();
    assert!(metrics.contains("folio_jobs{phase=\"succeeded\"} 1"), "{metrics}");
    assert!(metrics.contains("folio_render_duration_seconds_count 1"), "{metrics}");
    assert!(metrics.contains("folio_queue_depth 0"), "{metrics}");
    assert!(!metrics.contains("invoice-1"), "no object names in metrics");

    // Deleting the job deletes its PDF first (the finalizer), then the job.
    harness.api.delete(RJ, "renderjobs", "acme", "invoice-1");
    harness.wait_until("the job is gone", |h| h.job("invoice-1").is_none()).await;
    assert_eq!(harness.bucket.get(key).await.unwrap(), None);
    harness.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blocked_job_completes_when_the_account_is_topped_up() {
    let harness = Harness::start(&[]).await;
    harness.apply("renderaccounts", account(1, None));
    harness
        .apply("renderjobs", job("invoice-2", json!({"template": {"source": TWO_PAGES}, "data": {"customer": "B"}})));
    let blocked = harness.wait_for_phase("invoice-2", "Blocked").await;
    assert!(blocked["status"]["errorMessage"].as_str().unwrap().contains("costs 2 credits"), "{blocked:#}");
    let mut topped_up = harness.api.get(RJ, "renderaccounts", "acme", "acme").unwrap();
    topped_up["spec"]["credits"] = json!(5);
    harness.apply("renderaccounts", topped_up);
    let done = harness.wait_for_phase("invoice-2", "Succeeded").await;
    assert_eq!(done["status"]["creditsRemaining"], 3);
    let pods = harness.api.list("v1", "pods");
    assert_eq!(pods.len(), 1, "the PDF was not rendered again");
    harness.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashed_renderer_pod_is_retried_in_a_new_pod() {
    let harness = Harness::start(&[]).await;
    harness.kubelet.crash_first.lock().unwrap().insert("invoice-3".into());
    harness.apply("renderjobs", job("invoice-3", json!({"template": {"source": "= One"}, "data": {}})));
    let done = harness.wait_for_phase("invoice-3", "Succeeded").await;
    assert_eq!(done["status"]["retryCount"], 1);
    let pods: Vec<String> =
        harness.api.list("v1", "pods").iter().map(|p| p["metadata"]["name"].as_str().unwrap().to_owned()).collect();
    assert!(
        pods.contains(&"invoice-3-render-0".to_owned()) && pods.contains(&"invoice-3-render-1".to_owned()),
        "{pods:?}"
    );
    harness.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_a_rendering_job_removes_its_pod() {
    let harness = Harness::start(&[]).await;
    harness.kubelet.hang.lock().unwrap().insert("slow".into());
    harness.apply("renderjobs", job("slow", json!({"template": {"source": "= Slow"}, "data": {}})));
    harness.wait_for_phase("slow", "Rendering").await;
    harness.wait_until("the pod runs", |h| h.api.get("v1", "pods", "acme", "slow-render-0").is_some()).await;
    let mut cancelled = harness.job("slow").unwrap();
    cancelled["spec"]["cancel"] = json!(true);
    harness.apply("renderjobs", cancelled);
    harness.wait_for_phase("slow", "Cancelled").await;
    harness.wait_until("the pod is gone", |h| h.api.get("v1", "pods", "acme", "slow-render-0").is_none()).await;
    harness.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_finished_job_is_deleted_after_ttl_seconds_after_finished() {
    let harness = Harness::start(&[]).await;
    let spec = json!({"template": {"source": "= Short-lived"}, "data": {}, "ttlSecondsAfterFinished": 1});
    harness.apply("renderjobs", job("brief", spec));
    let done = harness.wait_for_phase("brief", "Succeeded").await;
    let key = done["status"]["outputKey"].as_str().unwrap().to_owned();
    assert!(harness.bucket.get(&key).await.unwrap().is_some());
    harness.wait_until("the job is deleted", |h| h.job("brief").is_none()).await;
    assert_eq!(harness.bucket.get(&key).await.unwrap(), None, "its PDF went with it");
    harness.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_replica_leads_and_a_standby_takes_over_when_it_stops() {
    let harness = Harness::start(&[]).await;
    harness.wait_until("operator-0 leads", |h| h.lease_holder().as_deref() == Some("operator-0")).await;
    let standby = Operator::spawn(&harness.api, &harness.endpoint, "operator-1", &[]);
    harness.apply("renderjobs", job("first", json!({"template": {"source": "= First"}, "data": {}})));
    harness.wait_for_phase("first", "Succeeded").await;
    assert_eq!(harness.lease_holder().as_deref(), Some("operator-0"), "the standby did not take the Lease");
    let ready = reqwest::get(standby.metrics_url.replace("/metrics", "/readyz")).await.unwrap();
    assert_eq!(ready.status(), 200, "a standby is ready (it serves probes)");

    let mut harness = harness;
    harness.operator.take().unwrap().stop().await;
    harness.wait_until("operator-1 leads", |h| h.lease_holder().as_deref() == Some("operator-1")).await;
    harness.apply("renderjobs", job("second", json!({"template": {"source": "= Second"}, "data": {}})));
    harness.wait_for_phase("second", "Succeeded").await;
    standby.stop().await;
}

/// The operator's write of the job fails once right after it charged the account,
/// as if it had crashed between the two writes; the job still ends charged once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_job_write_after_the_charge_never_charges_twice() {
    let harness = Harness::start(&[]).await;
    harness.apply("renderaccounts", account(10, None));
    harness.kubelet.hang.lock().unwrap().insert("ledger".into());
    harness.apply("renderjobs", job("ledger", json!({"template": {"source": TWO_PAGES}, "data": {"customer": "L"}})));
    harness.wait_for_phase("ledger", "Rendering").await;
    harness
        .wait_until("the pod runs", |h| {
            h.api.get("v1", "pods", "acme", "ledger-render-0").is_some_and(|p| p["status"]["phase"] == "Running")
        })
        .await;
    // The next job write (the one after the account's debit) fails with a 500.
    harness.api.fail_next("PATCH", "/renderjobs/ledger/status", 500);
    // The renderer's upload, as the report below describes it.
    harness.bucket.put("acme/ledger.pdf", vec![b'%'; 9000]).await.unwrap();
    let mut pod = harness.api.get("v1", "pods", "acme", "ledger-render-0").unwrap();
    let report = folio::cluster::pod::RendererReport::Succeeded {
        facts: folio::render::RenderFacts { page_count: 2, total_bytes: 9000, sha256: "cd".repeat(32), duration_ms: 5 },
        output_key: "acme/ledger.pdf".into(),
    };
    pod["status"] = json!({"phase": "Succeeded", "containerStatuses": [{
        "name": "renderer", "image": "folio:test", "imageID": "", "ready": false, "restartCount": 0,
        "state": {"terminated": {"exitCode": 0, "message": report.to_message()}},
    }]});
    harness.api.put_object("v1", "pods", pod);
    let done = harness.wait_for_phase("ledger", "Succeeded").await;
    assert_eq!(
        (done["status"]["creditsUsed"].as_i64(), done["status"]["creditsRemaining"].as_i64()),
        (Some(2), Some(8))
    );
    let account = || harness.api.get(RJ, "renderaccounts", "acme", "acme").unwrap();
    harness.wait_until("the ledger settles", |_| account()["status"].get("pendingCharges").is_none()).await;
    assert_eq!(account()["status"]["creditsUsed"], 2, "charged exactly once");
    let failed_writes = harness
        .api
        .requests()
        .iter()
        .filter(|r| r.starts_with("PATCH") && r.contains("/renderjobs/ledger/status"))
        .count();
    assert!(failed_writes >= 2, "the failed write was retried");
    harness.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_failing_twice_gets_every_event_once_in_order_and_the_job_shows_the_attempts() {
    let receiver = support::webhook_receiver::Receiver::failing_first(2).await;
    let harness = Harness::start(&["--allow-private-targets", "--webhook-retry-base", "0.2"]).await;
    // The account's default webhook, for all events.
    harness.apply("renderaccounts", account(10, Some(json!({"url": receiver.url, "events": "all"}))));
    harness.wait_until("the account is cached", |h| h.api.get(RJ, "renderaccounts", "acme", "acme").is_some()).await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    harness.apply("renderjobs", job("hooked", json!({"template": {"source": "= Hooked"}, "data": {}})));
    harness.wait_for_phase("hooked", "Succeeded").await;
    receiver.wait_for(2).await;
    harness
        .wait_until("the deliveries are recorded", |h| h.job("hooked").unwrap()["status"]["webhook"]["pending"] == 0)
        .await;
    let names: Vec<String> =
        receiver.accepted().await.iter().map(|r| r.body["event"].as_str().unwrap().to_owned()).collect();
    assert_eq!(names, ["render.rendering", "render.succeeded"], "each event once, in order");
    let hooks = harness.job("hooked").unwrap()["status"]["webhook"].clone();
    assert_eq!((hooks["delivered"].as_i64(), hooks["attempts"].as_i64()), (Some(2), Some(4)), "{hooks:#}");
    assert_eq!(hooks["lastResponseCode"], 200);
    harness.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_private_webhook_target_is_refused_without_the_flag_and_the_job_says_why() {
    let receiver = support::webhook_receiver::Receiver::start().await;
    let harness = Harness::start(&[]).await;
    let spec = json!({"template": {"source": "= Private"}, "data": {}, "webhook": {"url": receiver.url}});
    harness.apply("renderjobs", job("private", spec));
    harness.wait_for_phase("private", "Succeeded").await;
    harness
        .wait_until("the refusal is recorded", |h| h.job("private").unwrap()["status"]["webhook"]["failed"] == 1)
        .await;
    let hooks = harness.job("private").unwrap()["status"]["webhook"].clone();
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
    harness.apply("renderjobs", job("restart", spec));
    harness.wait_for_phase("restart", "Succeeded").await;
    harness
        .wait_until("a first failed attempt", |h| h.job("restart").unwrap()["status"]["webhook"]["attempts"] == 1)
        .await;
    harness.operator.take().unwrap().stop().await;
    assert!(receiver.accepted().await.is_empty());

    let next = Operator::spawn(
        &harness.api,
        &harness.endpoint,
        "operator-1",
        &["--allow-private-targets", "--webhook-retry-base", "0.2"],
    );
    receiver.wait_for(1).await;
    let delivered = receiver.accepted().await;
    assert_eq!(delivered.len(), 1);
    assert_eq!(delivered[0].body["event"], "render.succeeded");
    harness
        .wait_until("the job records it", |h| h.job("restart").unwrap()["status"]["webhook"]["delivered"] == 1)
        .await;
    next.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_whose_bucket_does_not_answer_is_alive_but_not_ready() {
    let harness = Harness::start(&[]).await;
    let stranded = Operator::spawn(&harness.api, "http://127.0.0.1:9", "operator-1", &[]);
    let ops = stranded.metrics_url.replace("/metrics", "");
    let client = reqwest::Client::new();
    let mut health = None;
    for _ in 0..100 {
        if let Ok(response) = client.get(format!("{ops}/healthz")).send().await {
            health = Some(response.status());
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(health, Some(reqwest::StatusCode::OK));
    let ready = client.get(format!("{ops}/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 503);
    assert!(ready.text().await.unwrap().contains("bucket"));
    // The other operator, whose bucket answers, becomes ready.
    let main = harness.operator.as_ref().unwrap().metrics_url.replace("/metrics", "/readyz");
    let mut status = None;
    for _ in 0..100 {
        status = client.get(&main).send().await.ok().map(|r| r.status());
        if status == Some(reqwest::StatusCode::OK) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(status, Some(reqwest::StatusCode::OK));
    stranded.stop().await;
    harness.stop().await;
}
