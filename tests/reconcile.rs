//! Reconcile scenarios against a mocked API server, in the style of
//! kube-rs/controller-rs: `kube::Client` runs over a `tower_test::mock` service, and
//! each scenario lists the requests one reconcile must make, in order, with the
//! answers the API server gives. A reconcile that makes a request the scenario does
//! not expect, or fails to make one, fails the test (with a timeout, never a hang).
//!
//! What this does not emulate: the answers are scripted, not computed by an API
//! server, so these tests pin down what the controller asks and how it reacts to
//! given answers. `tests/operator.rs` runs the real controller loop against a
//! stand-in API server that keeps state; `tests/cluster.rs` against a real cluster.
//! Kubernetes Events the controller publishes are answered but not scripted.
//! The bucket is real: an in-process S3 server (`s3s-fs`).

mod support;

use std::sync::Arc;
use std::time::Duration;

use folio::cluster::controller::{Context, reconcile};
use folio::cluster::metrics::OperatorMetrics;
use folio::cluster::pod::{RendererReport, RendererSettings};
use folio::lifecycle::ErrorCode;
use folio::render::RenderFacts;
use folio::resources::RenderJob;
use folio::storage::S3Bucket;
use http::{Request, Response};
use kube::client::Body;
use serde_json::{Value, json};
use support::s3::{ACCESS_KEY, SECRET_KEY, s3_server};

type Handle = tower_test::mock::Handle<Request<Body>, Response<Body>>;

const JOBS: &str = "/apis/folio.dev/v1alpha1/namespaces/acme/renderjobs/invoice-1";
const ACCOUNTS: &str = "/apis/folio.dev/v1alpha1/namespaces/acme/renderaccounts";
const POD: &str = "/api/v1/namespaces/acme/pods/invoice-1-render-0";
const INPUT: &str = "/api/v1/namespaces/acme/configmaps/invoice-1-render-0-input";

/// How the mock API server answers a request body: status code and JSON.
type Answer = Box<dyn FnOnce(&Value) -> (u16, Value) + Send>;

/// One request a scenario expects, and the answer it gets.
struct Expect {
    method: &'static str,
    path: String,
    answer: Answer,
}

fn expect(method: &'static str, path: &str, answer: impl FnOnce(&Value) -> (u16, Value) + Send + 'static) -> Expect {
    Expect { method, path: path.to_owned(), answer: Box::new(answer) }
}

/// A request as the mock server saw it.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    body: Value,
}

/// Answer the scripted requests in order (Events aside); returns what was seen.
async fn serve(mut handle: Handle, script: Vec<Expect>) -> Vec<Seen> {
    let mut seen = Vec::new();
    for step in script {
        loop {
            let (request, respond) = handle.next_request().await.expect("the reconcile stopped calling the API");
            let method = request.method().to_string();
            let path = request.uri().path().to_owned();
            let bytes = request.into_body().collect_bytes().await.unwrap();
            let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            if path.contains("/events") {
                respond.send_response(Response::builder().status(201).body(Body::from(bytes.to_vec())).unwrap());
                continue;
            }
            assert_eq!((method.as_str(), path.as_str()), (step.method, step.path.as_str()), "unexpected request");
            let (status, answer) = (step.answer)(&body);
            let bytes = serde_json::to_vec(&answer).unwrap();
            respond.send_response(Response::builder().status(status).body(Body::from(bytes)).unwrap());
            seen.push(Seen { method, body });
            break;
        }
    }
    seen
}

/// Run one reconcile of `job` against `script`; the reconcile's outcome and the
/// requests seen.
async fn run(job: Value, script: Vec<Expect>, bucket: &S3Bucket) -> (Result<(), String>, Vec<Seen>) {
    let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let client = kube::Client::new(service, "default");
    let settings = RendererSettings {
        image: "folio:test".into(),
        image_pull_policy: "IfNotPresent".into(),
        cpu_request: "100m".into(),
        cpu_limit: "1".into(),
        memory_request: "128Mi".into(),
        memory_limit: "512Mi".into(),
    };
    let ctx = Arc::new(Context::new(client, bucket.clone(), settings, Arc::new(OperatorMetrics::new()), None));
    let job: RenderJob = serde_json::from_value(job).unwrap();
    let server = tokio::spawn(serve(handle, script));
    let outcome = tokio::time::timeout(Duration::from_secs(10), reconcile(Arc::new(job), ctx))
        .await
        .expect("the reconcile did not finish in time");
    let seen = tokio::time::timeout(Duration::from_secs(10), server)
        .await
        .expect("the reconcile made fewer requests than the scenario expects")
        .unwrap();
    (outcome.map(|_| ()).map_err(|err| err.to_string()), seen)
}

async fn bucket() -> (tempfile::TempDir, S3Bucket) {
    let root = tempfile::tempdir().unwrap();
    let endpoint = s3_server(root.path()).await;
    let bucket = S3Bucket::connect(&endpoint, "folio", ACCESS_KEY, SECRET_KEY).await.unwrap();
    (root, bucket)
}

/// A RenderJob with the finalizer in place and `status`.
fn job_with(status: Value, spec_extra: Value) -> Value {
    let mut spec =
        json!({"template": {"source": "= Invoice\n#json(\"data.json\").customer"}, "data": {"customer": "ACME"}});
    for (key, value) in spec_extra.as_object().unwrap() {
        spec[key] = value.clone();
    }
    json!({
        "apiVersion": "folio.dev/v1alpha1",
        "kind": "RenderJob",
        "metadata": {
            "name": "invoice-1", "namespace": "acme", "uid": "uid-1", "generation": 1,
            "resourceVersion": "10", "creationTimestamp": jiff::Timestamp::now().to_string(),
            "finalizers": ["folio.dev/output"],
        },
        "spec": spec,
        "status": status,
    })
}

/// The job as the API server returns it after a status patch: `job` with the
/// patch's status.
fn patched(job: &Value) -> impl FnOnce(&Value) -> (u16, Value) + Send + 'static {
    let job = job.clone();
    move |patch| {
        let mut job = job;
        job["status"] = patch["status"].clone();
        (200, job)
    }
}

fn account(credits: Option<i64>, used: i64, pending: Value) -> Value {
    json!({
        "apiVersion": "folio.dev/v1alpha1", "kind": "RenderAccount",
        "metadata": {"name": "acme", "namespace": "acme", "resourceVersion": "7"},
        "spec": {"credits": credits},
        "status": {"creditsUsed": used, "pendingCharges": pending},
    })
}

fn list(items: Vec<Value>) -> Value {
    json!({"apiVersion": "folio.dev/v1alpha1", "kind": "RenderAccountList", "metadata": {"resourceVersion": "7"}, "items": items})
}

fn echo(status: u16) -> impl FnOnce(&Value) -> (u16, Value) + Send + 'static {
    move |body| (status, body.clone())
}

/// A finished renderer Pod whose termination message is `report`.
fn finished_pod(phase: &str, report: &RendererReport) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "invoice-1-render-0", "namespace": "acme", "ownerReferences": [owner()]},
        "status": {"phase": phase, "containerStatuses": [{
            "name": "renderer", "image": "folio:test", "imageID": "", "ready": false, "restartCount": 0,
            "state": {"terminated": {"exitCode": if phase == "Succeeded" { 0 } else { 1 }, "message": report.to_message()}},
        }]},
    })
}

/// The owner reference the operator puts on a renderer Pod of the test job.
fn owner() -> Value {
    json!({"apiVersion": "folio.dev/v1alpha1", "kind": "RenderJob", "name": "invoice-1", "uid": "uid-1", "controller": true})
}

/// A renderer Pod still running.
fn running_pod() -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "invoice-1-render-0", "namespace": "acme", "ownerReferences": [owner()]},
        "status": {"phase": "Running"},
    })
}

/// The job as the API server holds it (for the ledger's freshness check).
fn stored(job: &Value) -> impl FnOnce(&Value) -> (u16, Value) + Send + 'static {
    let job = job.clone();
    move |_| (200, job)
}

/// Store the PDF a success report describes (20 000 bytes), as the renderer would have.
async fn store_reported_pdf(bucket: &S3Bucket) {
    bucket.put("acme/invoice-1.pdf", vec![b'%'; 20_000]).await.unwrap();
}

fn succeeded_report(pages: i64) -> RendererReport {
    RendererReport::Succeeded {
        facts: RenderFacts { page_count: pages, total_bytes: 20_000, sha256: "ab".repeat(32), duration_ms: 40 },
        output_key: "acme/invoice-1.pdf".into(),
    }
}

fn not_found() -> impl FnOnce(&Value) -> (u16, Value) + Send + 'static {
    |_| (404, json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404}))
}

#[tokio::test]
async fn a_new_job_gets_the_finalizer_first() {
    let (_root, bucket) = bucket().await;
    let mut job = job_with(Value::Null, json!({}));
    job["metadata"]["finalizers"] = json!([]);
    let answer = job.clone();
    let (outcome, seen) = run(job, vec![expect("PATCH", JOBS, move |_| (200, answer))], &bucket).await;
    outcome.unwrap();
    let ops = seen[0].body.as_array().expect("a JSON patch");
    assert!(
        ops.iter().any(|op| op["value"] == json!("folio.dev/output") || op["value"] == json!(["folio.dev/output"]))
    );
}

#[tokio::test]
async fn an_accepted_job_is_queued_then_started_in_a_locked_down_pod() {
    let (_root, bucket) = bucket().await;
    let job = job_with(Value::Null, json!({"activeDeadlineSeconds": 60}));
    let queued = {
        let mut queued = job.clone();
        queued["status"] = json!({"phase": "Queued"});
        queued
    };
    let script = vec![
        expect("PATCH", &format!("{JOBS}/status"), patched(&job)),
        expect("PATCH", "/api/v1/namespaces/acme/configmaps/invoice-1-render-0-input", echo(200)),
        expect("PATCH", POD, echo(200)),
        expect("PATCH", &format!("{JOBS}/status"), patched(&queued)),
    ];
    let (outcome, seen) = run(job, script, &bucket).await;
    outcome.unwrap();
    assert_eq!(seen[0].body["status"]["phase"], "Queued");
    assert_eq!(seen[0].body["status"]["observedGeneration"], 1);
    let input = &seen[1].body;
    assert!(input["data"]["upload-url"].as_str().unwrap().contains("X-Amz-Signature"), "{input}");
    assert_eq!(input["data"]["output-key"], "acme/invoice-1.pdf");
    let request: Value = serde_json::from_str(input["data"]["request.json"].as_str().unwrap()).unwrap();
    assert_eq!(request["data"], "{\"customer\":\"ACME\"}");
    let pod = &seen[2].body;
    assert_eq!(pod["spec"]["activeDeadlineSeconds"], 60);
    assert_eq!(pod["spec"]["automountServiceAccountToken"], false);
    assert_eq!(pod["metadata"]["ownerReferences"][0]["uid"], "uid-1");
    let rendering = &seen[3].body["status"];
    assert_eq!(rendering["phase"], "Rendering");
    assert!(rendering["startedAt"].is_string());
    assert_eq!(rendering["conditions"][0]["type"], "Ready");
    assert_eq!(rendering["conditions"][0]["status"], "False");
}

#[tokio::test]
async fn a_job_whose_template_is_missing_fails_without_a_pod() {
    let (_root, bucket) = bucket().await;
    let mut job = job_with(json!({"phase": "Queued"}), json!({}));
    job["spec"] = json!({"templateRef": {"name": "missing"}, "data": {}});
    let script = vec![
        expect("GET", "/apis/folio.dev/v1alpha1/namespaces/acme/rendertemplates/missing", not_found()),
        expect("GET", ACCOUNTS, |_| (200, list(vec![]))),
        expect("DELETE", POD, not_found()),
        expect("PATCH", &format!("{JOBS}/status"), patched(&job)),
    ];
    let (outcome, seen) = run(job, script, &bucket).await;
    outcome.unwrap();
    let status = &seen[3].body["status"];
    assert_eq!(status["phase"], "Failed");
    assert_eq!(status["errorCode"], "TEMPLATE_NOT_FOUND");
    assert!(status["expiresAt"].is_string());
}

#[tokio::test]
async fn a_successful_render_is_charged_then_recorded_then_the_charge_is_settled() {
    let (_root, bucket) = bucket().await;
    store_reported_pdf(&bucket).await;
    let job = job_with(json!({"phase": "Rendering", "retryCount": 0}), json!({}));
    let script = vec![
        expect("GET", POD, |_| (200, finished_pod("Succeeded", &succeeded_report(3)))),
        expect("DELETE", INPUT, not_found()),
        expect("GET", ACCOUNTS, |_| (200, list(vec![account(Some(10), 2, json!([]))]))),
        expect("GET", JOBS, stored(&job)),
        expect("PUT", &format!("{ACCOUNTS}/acme/status"), echo(200)),
        expect("PATCH", &format!("{JOBS}/status"), patched(&job)),
        expect("PUT", &format!("{ACCOUNTS}/acme/status"), echo(200)),
    ];
    let (outcome, seen) = run(job, script, &bucket).await;
    outcome.unwrap();
    let debit = &seen[4].body;
    assert_eq!(debit["metadata"]["resourceVersion"], "7", "the debit is conditional on the version read");
    assert_eq!(debit["status"]["creditsUsed"], 5);
    assert_eq!(debit["status"]["pendingCharges"][0]["jobUid"], "uid-1");
    let status = &seen[5].body["status"];
    assert_eq!(status["phase"], "Succeeded");
    assert_eq!((status["pageCount"].as_i64(), status["creditsUsed"].as_i64()), (Some(3), Some(3)));
    assert_eq!(status["creditsRemaining"], 5);
    assert_eq!(status["outputKey"], "acme/invoice-1.pdf");
    assert_eq!(status["conditions"][0]["status"], "True");
    let settled = &seen[6].body;
    assert_eq!(settled["status"]["creditsUsed"], 5);
    assert_eq!(settled["status"].get("pendingCharges"), None, "the pending charge is removed");
}

/// The account is written, then the controller stops (the job's status write
/// fails, as if the process died in between). The next reconcile must not charge
/// again: it finds the pending charge and only writes the job.
#[tokio::test]
async fn a_crash_between_the_account_write_and_the_job_write_never_charges_twice() {
    let (_root, bucket) = bucket().await;
    store_reported_pdf(&bucket).await;
    let job = job_with(json!({"phase": "Rendering", "retryCount": 0}), json!({}));
    let first = vec![
        expect("GET", POD, |_| (200, finished_pod("Succeeded", &succeeded_report(3)))),
        expect("DELETE", INPUT, not_found()),
        expect("GET", ACCOUNTS, |_| (200, list(vec![account(Some(10), 2, json!([]))]))),
        expect("GET", JOBS, stored(&job)),
        expect("PUT", &format!("{ACCOUNTS}/acme/status"), echo(200)),
        expect("PATCH", &format!("{JOBS}/status"), |_| {
            (
                500,
                json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "InternalError", "code": 500}),
            )
        }),
    ];
    let (outcome, seen) = run(job.clone(), first, &bucket).await;
    assert!(outcome.is_err(), "the reconcile reports the failed write");
    let charged = seen[4].body.clone();
    assert_eq!(charged["status"]["creditsUsed"], 5);

    // After the restart the account holds the charge; the job still says Rendering.
    let after_restart = charged.clone();
    let second = vec![
        expect("GET", POD, |_| (200, finished_pod("Succeeded", &succeeded_report(3)))),
        expect("DELETE", INPUT, not_found()),
        expect("GET", ACCOUNTS, move |_| (200, list(vec![after_restart]))),
        expect("PATCH", &format!("{JOBS}/status"), patched(&job)),
        expect("PUT", &format!("{ACCOUNTS}/acme/status"), echo(200)),
    ];
    let (outcome, seen) = run(job, second, &bucket).await;
    outcome.unwrap();
    assert!(seen.iter().filter(|s| s.method == "PUT").all(|s| s.body["status"]["creditsUsed"] == 5), "no second debit");
    let status = &seen[3].body["status"];
    assert_eq!((status["phase"].as_str(), status["creditsUsed"].as_i64()), (Some("Succeeded"), Some(3)));
    assert_eq!(status["creditsRemaining"], 5);
    assert_eq!(seen[4].body["status"].get("pendingCharges"), None);
}

#[tokio::test]
async fn a_short_balance_blocks_and_a_top_up_completes_the_job() {
    let (_root, bucket) = bucket().await;
    store_reported_pdf(&bucket).await;
    let job = job_with(json!({"phase": "Rendering", "retryCount": 0}), json!({}));
    let blocked_job = std::sync::Arc::new(std::sync::Mutex::new(Value::Null));
    let keep = blocked_job.clone();
    let script = vec![
        expect("GET", POD, |_| (200, finished_pod("Succeeded", &succeeded_report(3)))),
        expect("DELETE", INPUT, not_found()),
        expect("GET", ACCOUNTS, |_| (200, list(vec![account(Some(4), 2, json!([]))]))),
        expect("PATCH", &format!("{JOBS}/status"), move |patch| {
            let (status, answer) = patched(&job)(patch);
            *keep.lock().unwrap() = answer.clone();
            (status, answer)
        }),
    ];
    let (outcome, seen) =
        run(job_with(json!({"phase": "Rendering", "retryCount": 0}), json!({})), script, &bucket).await;
    outcome.unwrap();
    let status = &seen[3].body["status"];
    assert_eq!(status["phase"], "Blocked");
    assert_eq!(status["creditsRemaining"], 2);
    assert!(status["errorMessage"].as_str().unwrap().contains("costs 3 credits"));

    // The account is topped up: the blocked job is charged and succeeds, no re-render.
    let blocked = blocked_job.lock().unwrap().clone();
    let script = vec![
        expect("GET", ACCOUNTS, |_| (200, list(vec![account(Some(20), 2, json!([]))]))),
        expect("GET", JOBS, stored(&blocked)),
        expect("PUT", &format!("{ACCOUNTS}/acme/status"), echo(200)),
        expect("PATCH", &format!("{JOBS}/status"), patched(&blocked)),
        expect("PUT", &format!("{ACCOUNTS}/acme/status"), echo(200)),
    ];
    let (outcome, seen) = run(blocked, script, &bucket).await;
    outcome.unwrap();
    assert_eq!(seen[2].body["status"]["creditsUsed"], 5);
    let status = &seen[3].body["status"];
    assert_eq!((status["phase"].as_str(), status["creditsRemaining"].as_i64()), (Some("Succeeded"), Some(15)));
}

#[tokio::test]
async fn a_crashed_renderer_is_retried_with_backoff_then_the_job_fails_at_the_limit() {
    let (_root, bucket) = bucket().await;
    let crashed = RendererReport::Failed { error_code: ErrorCode::RendererCrashed, error_message: "killed".into() };
    let job = job_with(json!({"phase": "Rendering", "retryCount": 0}), json!({"backoffLimit": 1}));
    let report = crashed.clone();
    let script = vec![
        expect("GET", POD, move |_| (200, finished_pod("Failed", &report))),
        expect("DELETE", INPUT, echo(200)),
        expect("PATCH", &format!("{JOBS}/status"), patched(&job)),
    ];
    let (outcome, seen) = run(job.clone(), script, &bucket).await;
    outcome.unwrap();
    let status = &seen[2].body["status"];
    assert_eq!((status["phase"].as_str(), status["retryCount"].as_i64()), (Some("Rendering"), Some(1)));
    assert_eq!(status["errorCode"], "RENDERER_CRASHED");
    let next: jiff::Timestamp = status["nextAttemptAt"].as_str().unwrap().parse().unwrap();
    assert!(next > jiff::Timestamp::now(), "the retry waits");

    // The second attempt crashes too: the limit (1 retry) is reached.
    let job = job_with(json!({"phase": "Rendering", "retryCount": 1}), json!({"backoffLimit": 1}));
    let pod1 = "/api/v1/namespaces/acme/pods/invoice-1-render-1";
    let script = vec![
        expect("GET", pod1, move |_| (200, finished_pod("Failed", &crashed))),
        expect("DELETE", "/api/v1/namespaces/acme/configmaps/invoice-1-render-1-input", not_found()),
        expect("GET", ACCOUNTS, |_| (200, list(vec![]))),
        expect("DELETE", pod1, echo(200)),
        expect("PATCH", &format!("{JOBS}/status"), patched(&job)),
    ];
    let (outcome, seen) = run(job, script, &bucket).await;
    outcome.unwrap();
    let status = &seen[4].body["status"];
    assert_eq!((status["phase"].as_str(), status["errorCode"].as_str()), (Some("Failed"), Some("RENDERER_CRASHED")));
}

#[tokio::test]
async fn a_job_past_its_deadline_expires_and_its_pod_is_removed() {
    let (_root, bucket) = bucket().await;
    let mut job = job_with(json!({"phase": "Rendering", "retryCount": 0}), json!({"activeDeadlineSeconds": 5}));
    job["metadata"]["creationTimestamp"] = json!("2026-01-01T00:00:00Z");
    let script = vec![
        expect("GET", POD, |_| (200, running_pod())),
        expect("GET", ACCOUNTS, |_| (200, list(vec![]))),
        expect("DELETE", POD, echo(200)),
        expect("PATCH", &format!("{JOBS}/status"), patched(&job)),
    ];
    let (outcome, seen) = run(job, script, &bucket).await;
    outcome.unwrap();
    let status = &seen[3].body["status"];
    assert_eq!((status["phase"].as_str(), status["errorCode"].as_str()), (Some("Expired"), Some("DEADLINE_EXCEEDED")));
}

#[tokio::test]
async fn spec_cancel_deletes_the_pod_and_cancels() {
    let (_root, bucket) = bucket().await;
    let job = job_with(json!({"phase": "Rendering", "retryCount": 0}), json!({"cancel": true}));
    let script = vec![
        expect("GET", POD, |_| (200, running_pod())),
        expect("GET", ACCOUNTS, |_| (200, list(vec![]))),
        expect("DELETE", POD, echo(200)),
        expect("PATCH", &format!("{JOBS}/status"), patched(&job)),
    ];
    let (outcome, seen) = run(job, script, &bucket).await;
    outcome.unwrap();
    assert_eq!(seen[3].body["status"]["phase"], "Cancelled");
    assert_eq!(seen[3].body["status"]["conditions"][0]["reason"], "Cancelled");
}

#[tokio::test]
async fn an_expired_job_is_deleted() {
    let (_root, bucket) = bucket().await;
    let job = job_with(json!({"phase": "Failed", "expiresAt": "2026-01-01T00:00:00Z"}), json!({}));
    let deleted = job.clone();
    let (outcome, _) = run(job, vec![expect("DELETE", JOBS, move |_| (200, deleted))], &bucket).await;
    outcome.unwrap();
}

#[tokio::test]
async fn deleting_a_job_deletes_its_pdf_then_the_finalizer() {
    let (root, bucket) = bucket().await;
    bucket.put("acme/invoice-1.pdf", b"%PDF-1.7 stored".to_vec()).await.unwrap();
    let mut job = job_with(json!({"phase": "Succeeded", "outputKey": "acme/invoice-1.pdf"}), json!({}));
    job["metadata"]["deletionTimestamp"] = json!(jiff::Timestamp::now().to_string());
    let answer = job.clone();
    let script = vec![expect("DELETE", POD, not_found()), expect("PATCH", JOBS, move |_| (200, answer))];
    let (outcome, seen) = run(job.clone(), script, &bucket).await;
    outcome.unwrap();
    assert_eq!(bucket.get("acme/invoice-1.pdf").await.unwrap(), None, "the PDF is gone");
    assert!(!root.path().join("folio/acme/invoice-1.pdf").exists());
    assert!(seen[1].body.to_string().contains("remove"), "the finalizer is removed: {}", seen[1].body);

    // A job that never produced a PDF is deleted just as well.
    let answer = job.clone();
    let script = vec![expect("DELETE", POD, not_found()), expect("PATCH", JOBS, move |_| (200, answer))];
    let (outcome, _) = run(job, script, &bucket).await;
    outcome.unwrap();
}

#[tokio::test]
async fn cancelling_a_blocked_job_drops_its_unpaid_pdf() {
    let (_root, bucket) = bucket().await;
    bucket.put("acme/invoice-1.pdf", b"%PDF-1.7 unpaid".to_vec()).await.unwrap();
    let status = json!({"phase": "Blocked", "outputKey": "acme/invoice-1.pdf", "pageCount": 3});
    let job = job_with(status, json!({"cancel": true}));
    let script = vec![
        expect("GET", ACCOUNTS, |_| (200, list(vec![]))),
        expect("DELETE", POD, not_found()),
        expect("PATCH", &format!("{JOBS}/status"), patched(&job)),
    ];
    let (outcome, seen) = run(job, script, &bucket).await;
    outcome.unwrap();
    assert_eq!(seen[2].body["status"]["phase"], "Cancelled");
    assert_eq!(bucket.get("acme/invoice-1.pdf").await.unwrap(), None);
}

/// The render succeeded and was charged, the job write was lost, and then the user
/// cancelled: the success is settled first (it was paid for), not cancelled.
#[tokio::test]
async fn a_charged_render_is_settled_even_when_cancel_arrives_before_the_job_write() {
    let (_root, bucket) = bucket().await;
    store_reported_pdf(&bucket).await;
    let job = job_with(json!({"phase": "Rendering", "retryCount": 0}), json!({"cancel": true}));
    let pending = json!([{"jobUid": "uid-1", "jobName": "invoice-1", "credits": 3}]);
    let script = vec![
        expect("GET", POD, |_| (200, finished_pod("Succeeded", &succeeded_report(3)))),
        expect("DELETE", INPUT, not_found()),
        expect("GET", ACCOUNTS, move |_| (200, list(vec![account(Some(10), 5, pending)]))),
        expect("PATCH", &format!("{JOBS}/status"), patched(&job)),
        expect("PUT", &format!("{ACCOUNTS}/acme/status"), echo(200)),
    ];
    let (outcome, seen) = run(job, script, &bucket).await;
    outcome.unwrap();
    assert_eq!(seen[3].body["status"]["phase"], "Succeeded");
    assert_eq!(seen[4].body["status"]["creditsUsed"], 5, "no second charge");
}

/// A charge whose job then ends otherwise (its Pod gone, the job cancelled) is
/// given back, so only successes are ever charged.
#[tokio::test]
async fn a_pending_charge_of_a_job_that_ends_otherwise_is_refunded() {
    let (_root, bucket) = bucket().await;
    let job = job_with(json!({"phase": "Rendering", "retryCount": 0}), json!({"cancel": true}));
    let pending = json!([{"jobUid": "uid-1", "jobName": "invoice-1", "credits": 3}]);
    let script = vec![
        expect("GET", POD, not_found()),
        expect("GET", ACCOUNTS, move |_| (200, list(vec![account(Some(10), 5, pending)]))),
        expect("DELETE", POD, not_found()),
        expect("PUT", &format!("{ACCOUNTS}/acme/status"), echo(200)),
        expect("PATCH", &format!("{JOBS}/status"), patched(&job)),
    ];
    let (outcome, seen) = run(job, script, &bucket).await;
    outcome.unwrap();
    let refund = &seen[3].body["status"];
    assert_eq!((refund["creditsUsed"].as_i64(), refund["creditsRemaining"].as_i64()), (Some(2), Some(8)));
    assert_eq!(refund.get("pendingCharges"), None);
    assert_eq!(seen[4].body["status"]["phase"], "Cancelled");
}

/// A Pod of the right name that another owner made (or a tenant replaced) is not
/// believed: the job fails instead of taking its report.
#[tokio::test]
async fn a_pod_not_owned_by_the_job_is_not_believed() {
    let (_root, bucket) = bucket().await;
    let job = job_with(json!({"phase": "Rendering", "retryCount": 0}), json!({}));
    let mut forged = finished_pod("Succeeded", &succeeded_report(0));
    forged["metadata"]["ownerReferences"][0]["uid"] = json!("someone-else");
    let script = vec![
        expect("GET", POD, move |_| (200, forged)),
        expect("GET", ACCOUNTS, |_| (200, list(vec![]))),
        expect("DELETE", POD, echo(200)),
        expect("PATCH", &format!("{JOBS}/status"), patched(&job)),
    ];
    let (outcome, seen) = run(job, script, &bucket).await;
    outcome.unwrap();
    let status = &seen[3].body["status"];
    assert_eq!((status["phase"].as_str(), status["errorCode"].as_str()), (Some("Failed"), Some("INTERNAL")));
    assert!(status["errorMessage"].as_str().unwrap().contains("not this job's renderer"));
}

/// A success report must describe the stored object: a report of bytes the bucket
/// does not hold is a failed attempt, retried, and never charged.
#[tokio::test]
async fn a_success_report_without_its_pdf_in_the_bucket_is_retried_not_charged() {
    let (_root, bucket) = bucket().await;
    let job = job_with(json!({"phase": "Rendering", "retryCount": 0}), json!({}));
    let script = vec![
        expect("GET", POD, |_| (200, finished_pod("Succeeded", &succeeded_report(3)))),
        expect("DELETE", INPUT, not_found()),
        expect("PATCH", &format!("{JOBS}/status"), patched(&job)),
    ];
    let (outcome, seen) = run(job, script, &bucket).await;
    outcome.unwrap();
    let status = &seen[2].body["status"];
    assert_eq!((status["retryCount"].as_i64(), status["errorCode"].as_str()), (Some(1), Some("RENDERER_CRASHED")));
    assert!(status["errorMessage"].as_str().unwrap().contains("the bucket holds nothing"), "{status}");
}
