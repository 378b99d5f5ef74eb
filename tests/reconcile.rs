//! Reconcile scenarios against a mocked API server, in the style of
//! kube-rs/controller-rs: `kube::Client` runs over a `tower_test::mock` service, and
//! each scenario lists the requests one reconcile must make, in order, with the
//! answers the API server gives. A reconcile that makes a request the scenario does
//! not expect, or fails to make one, fails the test (with a timeout, never a hang).
//!
//! The operator reads from watch caches, not from the API server: each scenario
//! says what its caches hold (the job itself, its renderer Pod, the namespace's
//! RenderAccount), and the scripts hold only what the operator sends. That is the
//! point of several scenarios: no read, and no delete of what is gone already.
//!
//! What this does not emulate: the answers are scripted, not computed by an API
//! server, so these tests pin down what the controller asks and how it reacts to
//! given answers; the caches do not follow the writes. `tests/operator.rs` runs the
//! real controller loop against a real control plane. Kubernetes Events the
//! controller publishes are answered and kept, not scripted. The bucket is real: an
//! in-process S3 server (`s3s-fs`).

mod support;

use std::sync::Arc;
use std::time::Duration;

use folio::cluster::controller::{Caches, Context, reconcile};
use folio::cluster::pod::RendererReport;
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

/// What a scenario saw: the scripted requests, and the Events published.
struct Observed {
    requests: Vec<Seen>,
    events: Vec<Value>,
}

/// Answer the scripted requests in order, and Events whenever they come, until the
/// client goes away; returns what was seen.
async fn serve(mut handle: Handle, script: Vec<Expect>) -> Observed {
    let mut seen = Observed { requests: Vec::new(), events: Vec::new() };
    let mut script = script.into_iter();
    let mut step = script.next();
    while let Some((request, respond)) = handle.next_request().await {
        let method = request.method().to_string();
        let path = request.uri().path().to_owned();
        let bytes = request.into_body().collect_bytes().await.unwrap();
        let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        if path.contains("/events") {
            respond.send_response(Response::builder().status(201).body(Body::from(bytes.to_vec())).unwrap());
            seen.events.push(body);
            continue;
        }
        let Some(expected) = step.take() else {
            panic!("unexpected request after the script: {method} {path}");
        };
        assert_eq!((method.as_str(), path.as_str()), (expected.method, expected.path.as_str()), "unexpected request");
        let (status, answer) = (expected.answer)(&body);
        let bytes = serde_json::to_vec(&answer).unwrap();
        respond.send_response(Response::builder().status(status).body(Body::from(bytes)).unwrap());
        seen.requests.push(Seen { method, body });
        step = script.next();
    }
    assert!(step.is_none(), "the reconcile stopped calling the API before {:?}", step.map(|s| (s.method, s.path)));
    seen
}

/// What the operator's watch caches hold besides the job itself.
#[derive(Default)]
struct Cached {
    /// Renderer Pods.
    pods: Vec<Value>,
    /// RenderAccounts.
    accounts: Vec<Value>,
    /// Other RenderJobs (or another copy of the job: the cache's, when the
    /// reconcile is handed an older one).
    jobs: Vec<Value>,
}

impl Cached {
    fn pod(pod: Value) -> Cached {
        Cached { pods: vec![pod], ..Default::default() }
    }

    fn account(account: Value) -> Cached {
        Cached { accounts: vec![account], ..Default::default() }
    }

    fn and_account(mut self, account: Value) -> Cached {
        self.accounts.push(account);
        self
    }

    /// The caches of a reconcile of `job`: the job itself unless another copy of it
    /// is given.
    fn caches(self, job: &Value) -> Caches {
        let mut jobs = self.jobs;
        if !jobs.iter().any(|j| j["metadata"]["name"] == job["metadata"]["name"]) {
            jobs.push(job.clone());
        }
        Caches::holding(parse(jobs), parse(self.pods), parse(self.accounts), Vec::new())
    }
}

/// Objects of one kind from their JSON.
fn parse<K: serde::de::DeserializeOwned>(values: Vec<Value>) -> Vec<K> {
    values.into_iter().map(|v| serde_json::from_value(v).unwrap()).collect()
}

/// Run one reconcile of `job` against `script`, with nothing cached but the job; the
/// reconcile's outcome and the requests seen.
async fn run(job: Value, script: Vec<Expect>, bucket: &S3Bucket) -> (Result<(), String>, Vec<Seen>) {
    run_cached(job, Cached::default(), script, bucket).await
}

/// Run one reconcile of `job` with `cached` in the caches.
async fn run_cached(
    job: Value,
    cached: Cached,
    script: Vec<Expect>,
    bucket: &S3Bucket,
) -> (Result<(), String>, Vec<Seen>) {
    let (outcome, seen) = run_with(job, cached, script, bucket, START_TIMEOUT).await;
    (outcome, seen.requests)
}

/// The operator's renderer start timeout in these scenarios.
const START_TIMEOUT: Duration = Duration::from_secs(3);

/// Run reconciles of `jobs`, one after the other with one operator (its memory of
/// what it wrote kept between them), against one `script`; each outcome, the
/// requests seen and the Events.
async fn run_jobs(
    jobs: Vec<Value>,
    cached: Cached,
    script: Vec<Expect>,
    bucket: &S3Bucket,
    start_timeout: Duration,
) -> (Vec<Result<(), String>>, Observed) {
    let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let client = kube::Client::new(service, "default");
    let ctx = Context::test(client, bucket.clone(), cached.caches(&jobs[0]));
    let ctx = Arc::new(ctx.with_renderer_start_timeout(start_timeout));
    let server = tokio::spawn(serve(handle, script));
    let mut outcomes = Vec::new();
    for job in jobs {
        let job: RenderJob = serde_json::from_value(job).unwrap();
        let outcome = tokio::time::timeout(Duration::from_secs(10), reconcile(Arc::new(job), ctx.clone()))
            .await
            .expect("the reconcile did not finish in time");
        outcomes.push(outcome.map(|_| ()).map_err(|err| err.to_string()));
    }
    drop(ctx);
    let seen = tokio::time::timeout(Duration::from_secs(10), server)
        .await
        .expect("the client was still in use after the reconcile")
        .unwrap();
    (outcomes, seen)
}

/// Run one reconcile of `job` against `script` with the renderer start timeout
/// `start_timeout`; the reconcile's outcome, the requests seen and the Events.
async fn run_with(
    job: Value,
    cached: Cached,
    script: Vec<Expect>,
    bucket: &S3Bucket,
    start_timeout: Duration,
) -> (Result<(), String>, Observed) {
    let (mut outcomes, seen) = run_jobs(vec![job], cached, script, bucket, start_timeout).await;
    (outcomes.remove(0), seen)
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

/// As [`patched`], with a new `resourceVersion`, and the answer kept in `keep`.
fn patched_into(
    job: &Value,
    version: &str,
    keep: Arc<std::sync::Mutex<Value>>,
) -> impl FnOnce(&Value) -> (u16, Value) + Send + 'static {
    let job = job.clone();
    let version = version.to_owned();
    move |patch| {
        let mut job = job;
        job["status"] = patch["status"].clone();
        job["metadata"]["resourceVersion"] = json!(version);
        *keep.lock().unwrap() = job.clone();
        (200, job)
    }
}

fn account(credits: Option<i64>, used: i64, pending: Value) -> Value {
    json!({
        "apiVersion": "folio.dev/v1alpha1", "kind": "RenderAccount",
        "metadata": {"name": "acme", "namespace": "acme", "uid": "account-uid", "resourceVersion": "7"},
        "spec": {"credits": credits},
        "status": {"creditsUsed": used, "pendingCharges": pending},
    })
}

/// The account's write as the API server answers it: the body, with a new version.
fn account_written(version: &'static str) -> impl FnOnce(&Value) -> (u16, Value) + Send + 'static {
    move |body| {
        let mut account = body.clone();
        account["metadata"]["resourceVersion"] = json!(version);
        (200, account)
    }
}

fn echo(status: u16) -> impl FnOnce(&Value) -> (u16, Value) + Send + 'static {
    move |body| (status, body.clone())
}

/// A finished renderer Pod whose termination message is `report`.
fn finished_pod(phase: &str, report: &RendererReport) -> Value {
    finished_pod_named("invoice-1-render-0", phase, report)
}

fn finished_pod_named(name: &str, phase: &str, report: &RendererReport) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "acme", "ownerReferences": [owner()]},
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

/// Store the PDF a success report describes (20 000 bytes), as the renderer would have.
async fn store_reported_pdf(bucket: &S3Bucket) {
    bucket.put("acme/invoice-1.pdf", vec![b'%'; 20_000]).await.unwrap();
}

fn succeeded_report(pages: i64) -> RendererReport {
    RendererReport::Succeeded {
        facts: RenderFacts {
            page_count: pages,
            total_bytes: 20_000,
            sha256: "ab".repeat(32),
            duration_ms: 40,
            warnings: Vec::new(),
            template_version: None,
        },
        output_key: "acme/invoice-1.pdf".into(),
    }
}

fn not_found() -> impl FnOnce(&Value) -> (u16, Value) + Send + 'static {
    |_| (404, json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404}))
}

/// `job` as the cache shows it some seconds after it succeeded: `completedAt` moved
/// back by `seconds`.
fn succeeded_ago(job: &Value, seconds: i64) -> Value {
    let mut job = job.clone();
    let at = jiff::Timestamp::now() - jiff::SignedDuration::from_secs(seconds);
    job["status"]["completedAt"] = json!(at.to_string());
    job
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

/// A job that can start does so in the same reconcile: its input, its Pod and one
/// status write straight to Rendering (no Queued write, no Queued Event).
#[tokio::test]
async fn an_accepted_job_starts_at_once_in_a_locked_down_pod_with_one_status_write() {
    let (_root, bucket) = bucket().await;
    let job = job_with(Value::Null, json!({"activeDeadlineSeconds": 60}));
    let script = vec![
        expect("PATCH", "/api/v1/namespaces/acme/configmaps/invoice-1-render-0-input", echo(200)),
        expect("PATCH", POD, echo(200)),
        expect("PATCH", &format!("{JOBS}/status"), patched(&job)),
    ];
    let (outcome, seen) = run_with(job, Cached::default(), script, &bucket, START_TIMEOUT).await;
    outcome.unwrap();
    let input = &seen.requests[0].body;
    assert!(input["data"]["upload-url"].as_str().unwrap().contains("X-Amz-Signature"), "{input}");
    assert_eq!(input["data"]["output-key"], "acme/invoice-1.pdf");
    let request: Value = serde_json::from_str(input["data"]["request.json"].as_str().unwrap()).unwrap();
    assert_eq!(request["data"], "{\"customer\":\"ACME\"}");
    let pod = &seen.requests[1].body;
    assert_eq!(pod["spec"]["activeDeadlineSeconds"], 60);
    assert_eq!(pod["spec"]["automountServiceAccountToken"], false);
    assert_eq!(pod["metadata"]["ownerReferences"][0]["uid"], "uid-1");
    let rendering = &seen.requests[2].body;
    assert_eq!(rendering["metadata"]["resourceVersion"], "10", "the write is conditional on the version read");
    let rendering = &rendering["status"];
    assert_eq!(rendering["phase"], "Rendering");
    assert_eq!(rendering["observedGeneration"], 1);
    assert!(rendering["startedAt"].is_string());
    assert_eq!(rendering["conditions"][0]["type"], "Ready");
    assert_eq!(rendering["conditions"][0]["status"], "False");
    let reasons: Vec<&str> = seen.events.iter().map(|e| e["reason"].as_str().unwrap()).collect();
    assert_eq!(reasons, ["Rendering"], "one Event, for the attempt's Pod");
}

/// The template is not in the cache: it is read from the API server (it may be newer
/// than the cache). When the server does not have it either, the job waits for it
/// (a GitOps tool may apply the job first): `InputsFound` False, one Warning Event, a
/// retry within the renderer start timeout, and no Pod.
#[tokio::test]
async fn a_job_whose_template_is_missing_waits_for_it_without_a_pod() {
    let (_root, bucket) = bucket().await;
    let mut job = job_with(json!({}), json!({}));
    job["spec"] = json!({"templateRef": {"name": "missing"}, "data": {}});
    let script = vec![
        expect("GET", "/apis/folio.dev/v1alpha1/namespaces/acme/rendertemplates/missing", not_found()),
        expect("PATCH", &format!("{JOBS}/status"), patched(&job)),
    ];
    let (outcome, seen) = run_with(job, Cached::default(), script, &bucket, START_TIMEOUT).await;
    let err = outcome.unwrap_err();
    assert!(err.contains("RenderTemplate \"missing\" does not exist"), "{err}");
    let status = &seen.requests[1].body["status"];
    assert_eq!(status["phase"], "Queued");
    assert!(status["rendererRefusedAt"].is_string(), "the wait is counted from now");
    let found = status["conditions"].as_array().unwrap().iter().find(|c| c["type"] == "InputsFound").unwrap();
    assert_eq!((found["status"].as_str(), found["reason"].as_str()), (Some("False"), Some("NotFound")));
    let reasons: Vec<&str> = seen.events.iter().map(|e| e["reason"].as_str().unwrap()).collect();
    assert_eq!(reasons, ["InputNotFound"]);
}

/// A template still missing when the renderer start timeout has passed since it was
/// first missed fails the job, saying how long it waited.
#[tokio::test]
async fn a_template_missing_past_the_start_timeout_fails_the_job() {
    let (_root, bucket) = bucket().await;
    let mut job = job_with(json!({"phase": "Queued", "rendererRefusedAt": "2026-01-01T00:00:00Z"}), json!({}));
    job["spec"] = json!({"templateRef": {"name": "missing"}, "data": {}});
    let script = vec![
        expect("GET", "/apis/folio.dev/v1alpha1/namespaces/acme/rendertemplates/missing", not_found()),
        expect("PATCH", &format!("{JOBS}/status"), patched(&job)),
    ];
    let (outcome, seen) = run(job, script, &bucket).await;
    outcome.unwrap();
    let status = &seen[1].body["status"];
    assert_eq!((status["phase"].as_str(), status["errorCode"].as_str()), (Some("Failed"), Some("TEMPLATE_NOT_FOUND")));
    assert!(status["errorMessage"].as_str().unwrap().contains("s for it)"), "{status}");
    assert!(status["expiresAt"].is_string());
}

/// A template in the cache is not read again.
#[tokio::test]
async fn a_cached_template_is_not_read_from_the_api_server() {
    let (_root, bucket) = bucket().await;
    let mut job = job_with(json!({"phase": "Queued"}), json!({}));
    job["spec"] = json!({"templateRef": {"name": "invoice"}, "data": {"customer": "ACME"}});
    let template: folio::resources::RenderTemplate = serde_json::from_value(json!({
        "apiVersion": "folio.dev/v1alpha1", "kind": "RenderTemplate",
        "metadata": {"name": "invoice", "namespace": "acme"},
        "spec": {"source": "= Invoice from a template"},
    }))
    .unwrap();
    let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let typed: RenderJob = serde_json::from_value(job.clone()).unwrap();
    let caches = Caches::holding(vec![typed.clone()], Vec::new(), Vec::new(), vec![template]);
    let ctx = Arc::new(Context::test(kube::Client::new(service, "default"), bucket.clone(), caches));
    let script = vec![
        expect("PATCH", INPUT, echo(200)),
        expect("PATCH", POD, echo(200)),
        expect("PATCH", &format!("{JOBS}/status"), patched(&job)),
    ];
    let server = tokio::spawn(serve(handle, script));
    tokio::time::timeout(Duration::from_secs(10), reconcile(Arc::new(typed), ctx.clone())).await.unwrap().unwrap();
    drop(ctx);
    let seen = server.await.unwrap();
    let request: Value = serde_json::from_str(seen.requests[0].body["data"]["request.json"].as_str().unwrap()).unwrap();
    assert!(request.to_string().contains("Invoice from a template"), "{request}");
}

/// The charge: the account is written (conditional on the version the operator
/// knows), then the job; the account's entry of the charge is removed once the
/// cache shows the job Succeeded, a little later unless another charge of the
/// namespace removes it on the way.
#[tokio::test]
async fn a_successful_render_is_charged_then_recorded_then_the_charge_is_settled() {
    let (_root, bucket) = bucket().await;
    store_reported_pdf(&bucket).await;
    let job = job_with(json!({"phase": "Rendering", "retryCount": 0}), json!({}));
    let done = Arc::new(std::sync::Mutex::new(Value::Null));
    let script = vec![
        expect("DELETE", INPUT, echo(200)),
        expect("PUT", &format!("{ACCOUNTS}/acme/status"), account_written("8")),
        expect("PATCH", &format!("{JOBS}/status"), patched_into(&job, "11", done.clone())),
    ];
    let cached =
        Cached::pod(finished_pod("Succeeded", &succeeded_report(3))).and_account(account(Some(10), 2, json!([])));
    let (outcome, seen) = run_cached(job, cached, script, &bucket).await;
    outcome.unwrap();
    let debit = &seen[1].body;
    assert_eq!(debit["metadata"]["resourceVersion"], "7", "the debit is conditional on the version known");
    assert_eq!(debit["status"]["creditsUsed"], 5);
    assert_eq!(debit["status"]["pendingCharges"][0]["jobUid"], "uid-1");
    let status = &seen[2].body["status"];
    assert_eq!(status["phase"], "Succeeded");
    assert_eq!((status["pageCount"].as_i64(), status["creditsUsed"].as_i64()), (Some(3), Some(3)));
    assert_eq!(status["creditsRemaining"], 5);
    assert_eq!(status["outputKey"], "acme/invoice-1.pdf");
    assert_eq!(status["conditions"][0]["status"], "True");
    let mut charged = debit.clone();
    charged["metadata"]["resourceVersion"] = json!("8");

    // The cache shows the job Succeeded at once: the entry stays a little, no write.
    let done = done.lock().unwrap().clone();
    let (outcome, seen) = run_cached(done.clone(), Cached::account(charged.clone()), vec![], &bucket).await;
    outcome.unwrap();
    assert!(seen.is_empty());

    // Some seconds later nothing else has removed it: the job's reconcile does.
    let later = succeeded_ago(&done, 5);
    let script = vec![expect("PUT", &format!("{ACCOUNTS}/acme/status"), account_written("9"))];
    let (outcome, seen) = run_cached(later, Cached::account(charged), script, &bucket).await;
    outcome.unwrap();
    let settled = &seen[0].body;
    assert_eq!(settled["metadata"]["resourceVersion"], "8");
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
        expect("DELETE", INPUT, echo(200)),
        expect("PUT", &format!("{ACCOUNTS}/acme/status"), account_written("8")),
        expect("PATCH", &format!("{JOBS}/status"), |_| {
            (
                500,
                json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "InternalError", "code": 500}),
            )
        }),
    ];
    let cached =
        Cached::pod(finished_pod("Succeeded", &succeeded_report(3))).and_account(account(Some(10), 2, json!([])));
    let (outcome, seen) = run_cached(job.clone(), cached, first, &bucket).await;
    assert!(outcome.is_err(), "the reconcile reports the failed write");
    let mut charged = seen[1].body.clone();
    assert_eq!(charged["status"]["creditsUsed"], 5);
    charged["metadata"]["resourceVersion"] = json!("8");

    // After the restart the account holds the charge; the job still says Rendering.
    // The new operator does not know the input is gone: it deletes it once more.
    let done = Arc::new(std::sync::Mutex::new(Value::Null));
    let second = vec![
        expect("DELETE", INPUT, not_found()),
        expect("PATCH", &format!("{JOBS}/status"), patched_into(&job, "11", done.clone())),
    ];
    let cached = Cached::pod(finished_pod("Succeeded", &succeeded_report(3))).and_account(charged.clone());
    let (outcome, seen) = run_cached(job, cached, second, &bucket).await;
    outcome.unwrap();
    assert!(seen.iter().all(|s| s.method != "PUT"), "no second debit");
    let status = &seen[1].body["status"];
    assert_eq!((status["phase"].as_str(), status["creditsUsed"].as_i64()), (Some("Succeeded"), Some(3)));
    assert_eq!(status["creditsRemaining"], 5);

    // The entry goes later, the credits used unchanged.
    let later = succeeded_ago(&done.lock().unwrap(), 5);
    let script = vec![expect("PUT", &format!("{ACCOUNTS}/acme/status"), account_written("9"))];
    let (outcome, seen) = run_cached(later, Cached::account(charged), script, &bucket).await;
    outcome.unwrap();
    assert_eq!(seen[0].body["status"]["creditsUsed"], 5);
    assert_eq!(seen[0].body["status"].get("pendingCharges"), None);
}

/// A reconcile handed a copy of the job older than the cache's (which shows the job
/// settled) charges nothing: the charge was taken, and its entry may be gone.
#[tokio::test]
async fn a_stale_copy_of_a_settled_job_is_never_charged_again() {
    let (_root, bucket) = bucket().await;
    store_reported_pdf(&bucket).await;
    let stale = job_with(json!({"phase": "Rendering", "retryCount": 0}), json!({}));
    let mut settled = stale.clone();
    settled["metadata"]["resourceVersion"] = json!("12");
    settled["status"] = json!({"phase": "Succeeded", "creditsUsed": 3, "retryCount": 0});
    let cached = Cached {
        pods: vec![finished_pod("Succeeded", &succeeded_report(3))],
        accounts: vec![account(Some(10), 5, json!([]))],
        jobs: vec![settled],
    };
    let (outcome, seen) = run_cached(stale, cached, vec![expect("DELETE", INPUT, echo(200))], &bucket).await;
    let err = outcome.expect_err("retried on the cache's copy");
    assert!(err.ends_with("the RenderJob changed meanwhile"), "{err}");
    assert!(seen.iter().all(|s| s.method != "PUT"), "no account write: {seen:?}");
}

/// Another writer changed the account since the operator's copy: the debit is
/// refused with a conflict, the account is read afresh and the charge decided again
/// on it, in the same reconcile.
#[tokio::test]
async fn a_conflicting_account_write_is_decided_again_on_a_fresh_copy() {
    let (_root, bucket) = bucket().await;
    store_reported_pdf(&bucket).await;
    let job = job_with(json!({"phase": "Rendering", "retryCount": 0}), json!({}));
    let mut topped_up = account(Some(20), 4, json!([]));
    topped_up["metadata"]["resourceVersion"] = json!("9");
    let script = vec![
        expect("DELETE", INPUT, echo(200)),
        expect("PUT", &format!("{ACCOUNTS}/acme/status"), api_error("conflict")),
        expect("GET", &format!("{ACCOUNTS}/acme"), move |_| (200, topped_up)),
        expect("PUT", &format!("{ACCOUNTS}/acme/status"), account_written("10")),
        expect("PATCH", &format!("{JOBS}/status"), patched(&job)),
    ];
    let cached =
        Cached::pod(finished_pod("Succeeded", &succeeded_report(3))).and_account(account(Some(10), 2, json!([])));
    let (outcome, seen) = run_cached(job, cached, script, &bucket).await;
    outcome.unwrap();
    let retried = &seen[3].body;
    assert_eq!(retried["metadata"]["resourceVersion"], "9", "written from the fresh copy");
    assert_eq!((retried["status"]["creditsUsed"].as_i64(), retried["spec"]["credits"].as_i64()), (Some(7), Some(20)));
    assert_eq!(seen[4].body["status"]["creditsRemaining"], 13);
}

/// Charges of one namespace share the account: a charge removes on the way the
/// entries of jobs the cache shows settled, so those need no write of their own.
#[tokio::test]
async fn a_charge_removes_the_entries_of_jobs_already_settled() {
    let (_root, bucket) = bucket().await;
    store_reported_pdf(&bucket).await;
    let job = job_with(json!({"phase": "Rendering", "retryCount": 0}), json!({}));
    let mut earlier = job_with(json!({"phase": "Succeeded", "creditsUsed": 2}), json!({}));
    earlier["metadata"]["name"] = json!("invoice-0");
    earlier["metadata"]["uid"] = json!("uid-0");
    let pending = json!([
        {"jobUid": "uid-0", "jobName": "invoice-0", "credits": 2},
        {"jobUid": "uid-9", "jobName": "invoice-9", "credits": 1},
    ]);
    let script = vec![
        expect("DELETE", INPUT, echo(200)),
        expect("PUT", &format!("{ACCOUNTS}/acme/status"), account_written("8")),
        expect("PATCH", &format!("{JOBS}/status"), patched(&job)),
    ];
    let cached = Cached {
        pods: vec![finished_pod("Succeeded", &succeeded_report(3))],
        accounts: vec![account(Some(10), 3, pending)],
        jobs: vec![earlier],
    };
    let (outcome, seen) = run_cached(job, cached, script, &bucket).await;
    outcome.unwrap();
    let entries: Vec<&str> = seen[1].body["status"]["pendingCharges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["jobUid"].as_str().unwrap())
        .collect();
    assert_eq!(entries, ["uid-9", "uid-1"], "the settled job's entry went, an unknown one stays");
    assert_eq!(seen[1].body["status"]["creditsUsed"], 6);
}

#[tokio::test]
async fn a_short_balance_blocks_and_a_top_up_completes_the_job() {
    let (_root, bucket) = bucket().await;
    store_reported_pdf(&bucket).await;
    let job = job_with(json!({"phase": "Rendering", "retryCount": 0}), json!({}));
    let blocked_job = Arc::new(std::sync::Mutex::new(Value::Null));
    let script = vec![
        expect("DELETE", INPUT, echo(200)),
        expect("PATCH", &format!("{JOBS}/status"), patched_into(&job, "10", blocked_job.clone())),
    ];
    let cached =
        Cached::pod(finished_pod("Succeeded", &succeeded_report(3))).and_account(account(Some(4), 2, json!([])));
    let (outcome, seen) = run_with(job, cached, script, &bucket, START_TIMEOUT).await;
    outcome.unwrap();
    let status = &seen.requests[1].body["status"];
    assert_eq!(status["phase"], "Blocked");
    assert_eq!(status["creditsRemaining"], 2);
    assert!(status["errorMessage"].as_str().unwrap().contains("costs 3 credits"));
    assert_eq!(seen.events[0]["reason"], "InsufficientCredits");

    // The account is topped up: the blocked job is charged and succeeds, no re-render.
    let blocked = blocked_job.lock().unwrap().clone();
    let script = vec![
        expect("PUT", &format!("{ACCOUNTS}/acme/status"), account_written("8")),
        expect("PATCH", &format!("{JOBS}/status"), patched(&blocked)),
    ];
    let (outcome, seen) = run_cached(blocked, Cached::account(account(Some(20), 2, json!([]))), script, &bucket).await;
    outcome.unwrap();
    assert_eq!(seen[0].body["status"]["creditsUsed"], 5);
    let status = &seen[1].body["status"];
    assert_eq!((status["phase"].as_str(), status["creditsRemaining"].as_i64()), (Some("Succeeded"), Some(15)));
}

#[tokio::test]
async fn a_crashed_renderer_is_retried_with_backoff_then_the_job_fails_at_the_limit() {
    let (_root, bucket) = bucket().await;
    let crashed = RendererReport::Failed { error_code: ErrorCode::RendererCrashed, error_message: "killed".into() };
    let job = job_with(json!({"phase": "Rendering", "retryCount": 0}), json!({"backoffLimit": 1}));
    let script = vec![expect("DELETE", INPUT, echo(200)), expect("PATCH", &format!("{JOBS}/status"), patched(&job))];
    let (outcome, seen) = run_cached(job.clone(), Cached::pod(finished_pod("Failed", &crashed)), script, &bucket).await;
    outcome.unwrap();
    let status = &seen[1].body["status"];
    assert_eq!((status["phase"].as_str(), status["retryCount"].as_i64()), (Some("Rendering"), Some(1)));
    assert_eq!(status["errorCode"], "RENDERER_CRASHED");
    let next: jiff::Timestamp = status["nextAttemptAt"].as_str().unwrap().parse().unwrap();
    assert!(next > jiff::Timestamp::now(), "the retry waits");

    // The second attempt crashes too: the limit (1 retry) is reached. Its Pod ended
    // by itself and stays (with its logs) until the job goes: nothing is deleted but
    // the input.
    let job = job_with(json!({"phase": "Rendering", "retryCount": 1}), json!({"backoffLimit": 1}));
    let script = vec![
        expect("DELETE", "/api/v1/namespaces/acme/configmaps/invoice-1-render-1-input", echo(200)),
        expect("PATCH", &format!("{JOBS}/status"), patched(&job)),
    ];
    let cached = Cached::pod(finished_pod_named("invoice-1-render-1", "Failed", &crashed));
    let (outcome, seen) = run_cached(job, cached, script, &bucket).await;
    outcome.unwrap();
    let status = &seen[1].body["status"];
    assert_eq!((status["phase"].as_str(), status["errorCode"].as_str()), (Some("Failed"), Some("RENDERER_CRASHED")));
}

#[tokio::test]
async fn a_job_past_its_deadline_expires_and_its_pod_is_removed() {
    let (_root, bucket) = bucket().await;
    let mut job = job_with(json!({"phase": "Rendering", "retryCount": 0}), json!({"activeDeadlineSeconds": 5}));
    job["metadata"]["creationTimestamp"] = json!("2026-01-01T00:00:00Z");
    let script = vec![expect("DELETE", POD, echo(200)), expect("PATCH", &format!("{JOBS}/status"), patched(&job))];
    let (outcome, seen) = run_cached(job, Cached::pod(running_pod()), script, &bucket).await;
    outcome.unwrap();
    assert_eq!(seen[0].body["gracePeriodSeconds"], 0, "the renderer goes at once: {}", seen[0].body);
    let status = &seen[1].body["status"];
    assert_eq!((status["phase"].as_str(), status["errorCode"].as_str()), (Some("Expired"), Some("DEADLINE_EXCEEDED")));
    assert_eq!(
        status["errorMessage"], "the job did not finish within activeDeadlineSeconds (5 s)",
        "a renderer that ran does not make the message longer"
    );
}

#[tokio::test]
async fn spec_cancel_deletes_the_pod_and_cancels() {
    let (_root, bucket) = bucket().await;
    let job = job_with(json!({"phase": "Rendering", "retryCount": 0}), json!({"cancel": true}));
    let script = vec![expect("DELETE", POD, echo(200)), expect("PATCH", &format!("{JOBS}/status"), patched(&job))];
    let (outcome, seen) = run_cached(job, Cached::pod(running_pod()), script, &bucket).await;
    outcome.unwrap();
    assert_eq!(seen[0].body["gracePeriodSeconds"], 0, "the renderer goes at once: {}", seen[0].body);
    assert_eq!(seen[0].body["propagationPolicy"], "Background");
    assert_eq!(seen[1].body["status"]["phase"], "Cancelled");
    assert_eq!(seen[1].body["status"]["conditions"][0]["reason"], "Cancelled");
}

#[tokio::test]
async fn an_expired_job_with_a_ttl_is_deleted() {
    let (_root, bucket) = bucket().await;
    let status = json!({"phase": "Failed", "expiresAt": "2026-01-01T00:00:00Z", "observedGeneration": 1});
    let job = job_with(status, json!({"ttlSecondsAfterFinished": 60}));
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
    let script = vec![expect("DELETE", POD, echo(200)), expect("PATCH", JOBS, move |_| (200, answer))];
    let (outcome, seen) = run_cached(job.clone(), Cached::pod(running_pod()), script, &bucket).await;
    outcome.unwrap();
    assert_eq!(bucket.get("acme/invoice-1.pdf").await.unwrap(), None, "the PDF is gone");
    assert_eq!(seen[0].body["gracePeriodSeconds"], 0, "a deleted job's renderer goes at once");
    assert!(!root.path().join("folio/acme/invoice-1.pdf").exists());
    assert!(seen[1].body.to_string().contains("remove"), "the finalizer is removed: {}", seen[1].body);

    // A job that never produced a PDF is deleted just as well; no Pod, no delete of one.
    let answer = job.clone();
    let script = vec![expect("PATCH", JOBS, move |_| (200, answer))];
    let (outcome, _) = run(job, script, &bucket).await;
    outcome.unwrap();
}

#[tokio::test]
async fn cancelling_a_blocked_job_drops_its_unpaid_pdf() {
    let (_root, bucket) = bucket().await;
    bucket.put("acme/invoice-1.pdf", b"%PDF-1.7 unpaid".to_vec()).await.unwrap();
    let status = json!({"phase": "Blocked", "outputKey": "acme/invoice-1.pdf", "pageCount": 3});
    let job = job_with(status, json!({"cancel": true}));
    let script = vec![expect("PATCH", &format!("{JOBS}/status"), patched(&job))];
    let (outcome, seen) = run(job, script, &bucket).await;
    outcome.unwrap();
    assert_eq!(seen[0].body["status"]["phase"], "Cancelled");
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
    let script = vec![expect("DELETE", INPUT, echo(200)), expect("PATCH", &format!("{JOBS}/status"), patched(&job))];
    let cached =
        Cached::pod(finished_pod("Succeeded", &succeeded_report(3))).and_account(account(Some(10), 5, pending));
    let (outcome, seen) = run_cached(job, cached, script, &bucket).await;
    outcome.unwrap();
    assert_eq!(seen[1].body["status"]["phase"], "Succeeded");
    assert_eq!(seen[1].body["status"]["creditsRemaining"], 5, "no second charge");
}

/// A charge whose job then ends otherwise (its Pod gone, the job cancelled) is
/// given back once the job's end is written, so only successes are ever charged.
#[tokio::test]
async fn a_pending_charge_of_a_job_that_ends_otherwise_is_refunded() {
    let (_root, bucket) = bucket().await;
    let job = job_with(json!({"phase": "Rendering", "retryCount": 0}), json!({"cancel": true}));
    let pending = json!([{"jobUid": "uid-1", "jobName": "invoice-1", "credits": 3}]);
    let script = vec![
        expect("PATCH", &format!("{JOBS}/status"), patched(&job)),
        expect("PUT", &format!("{ACCOUNTS}/acme/status"), account_written("8")),
    ];
    let (outcome, seen) = run_cached(job, Cached::account(account(Some(10), 5, pending)), script, &bucket).await;
    outcome.unwrap();
    assert_eq!(seen[0].body["status"]["phase"], "Cancelled");
    let refund = &seen[1].body["status"];
    assert_eq!((refund["creditsUsed"].as_i64(), refund["creditsRemaining"].as_i64()), (Some(2), Some(8)));
    assert_eq!(refund.get("pendingCharges"), None);
}

/// The job ended otherwise but the operator stopped before giving the charge back:
/// the ended job's next reconcile does.
#[tokio::test]
async fn a_charge_left_on_a_job_that_ended_otherwise_is_refunded_by_its_next_reconcile() {
    let (_root, bucket) = bucket().await;
    let job = job_with(
        json!({"phase": "Cancelled", "completedAt": jiff::Timestamp::now().to_string(), "observedGeneration": 1}),
        json!({}),
    );
    let pending = json!([{"jobUid": "uid-1", "jobName": "invoice-1", "credits": 3}]);
    // The status written before this version has no Stalled condition: it gets one.
    let script = vec![
        expect("PATCH", &format!("{JOBS}/status"), patched(&job)),
        expect("PUT", &format!("{ACCOUNTS}/acme/status"), account_written("8")),
    ];
    let (outcome, seen) = run_cached(job, Cached::account(account(Some(10), 5, pending)), script, &bucket).await;
    outcome.unwrap();
    assert_eq!(seen[0].body["status"]["conditions"][1]["type"], "Stalled");
    assert_eq!(seen[1].body["status"]["creditsUsed"], 2);
}

/// A Pod of the right name that another owner made (or a tenant replaced) is not
/// believed: the job fails instead of taking its report.
#[tokio::test]
async fn a_pod_not_owned_by_the_job_is_not_believed() {
    let (_root, bucket) = bucket().await;
    let job = job_with(json!({"phase": "Rendering", "retryCount": 0}), json!({}));
    let mut forged = finished_pod("Succeeded", &succeeded_report(0));
    forged["metadata"]["ownerReferences"][0]["uid"] = json!("someone-else");
    // The Pod is not the job's: it is left alone.
    let script = vec![expect("PATCH", &format!("{JOBS}/status"), patched(&job))];
    let (outcome, seen) = run_cached(job, Cached::pod(forged), script, &bucket).await;
    outcome.unwrap();
    let status = &seen[0].body["status"];
    assert_eq!((status["phase"].as_str(), status["errorCode"].as_str()), (Some("Failed"), Some("INTERNAL")));
    assert!(status["errorMessage"].as_str().unwrap().contains("not this job's renderer"));
}

/// A success report must describe the stored object: a report of bytes the bucket
/// does not hold is a failed attempt, retried, and never charged.
#[tokio::test]
async fn a_success_report_without_its_pdf_in_the_bucket_is_retried_not_charged() {
    let (_root, bucket) = bucket().await;
    let job = job_with(json!({"phase": "Rendering", "retryCount": 0}), json!({}));
    let script = vec![expect("DELETE", INPUT, echo(200)), expect("PATCH", &format!("{JOBS}/status"), patched(&job))];
    let cached =
        Cached::pod(finished_pod("Succeeded", &succeeded_report(3))).and_account(account(Some(10), 2, json!([])));
    let (outcome, seen) = run_cached(job, cached, script, &bucket).await;
    outcome.unwrap();
    let status = &seen[1].body["status"];
    assert_eq!((status["retryCount"].as_i64(), status["errorCode"].as_str()), (Some(1), Some("RENDERER_CRASHED")));
    assert!(status["errorMessage"].as_str().unwrap().contains("the bucket holds nothing"), "{status}");
}

/// After the operator's own status write, a reconcile handed the cache's older copy
/// sends nothing: it waits for the cache to show the write (the watch event wakes
/// the job), instead of applying the Pod again for a job already Rendering.
#[tokio::test]
async fn a_reconcile_waits_for_the_cache_to_show_the_operators_own_write() {
    let (_root, bucket) = bucket().await;
    let job = job_with(Value::Null, json!({}));
    let script = vec![
        expect("PATCH", INPUT, echo(200)),
        expect("PATCH", POD, echo(200)),
        expect("PATCH", &format!("{JOBS}/status"), patched_into(&job, "11", Arc::default())),
    ];
    let (outcomes, seen) =
        run_jobs(vec![job.clone(), job.clone()], Cached::default(), script, &bucket, START_TIMEOUT).await;
    assert!(outcomes.iter().all(Result::is_ok), "{outcomes:?}");
    assert_eq!(seen.requests.len(), 3, "the second reconcile sent nothing");
    assert_eq!(seen.events.len(), 1);
}

/// An input deleted once is not deleted again by a reconcile repeated after a
/// failure (here, the job's write refused with a conflict).
#[tokio::test]
async fn the_input_is_deleted_once_even_when_the_reconcile_is_repeated() {
    let (_root, bucket) = bucket().await;
    let crashed = RendererReport::Failed { error_code: ErrorCode::RendererCrashed, error_message: "killed".into() };
    let job = job_with(json!({"phase": "Rendering", "retryCount": 0}), json!({"backoffLimit": 1}));
    let script = vec![
        expect("DELETE", INPUT, echo(200)),
        expect("PATCH", &format!("{JOBS}/status"), api_error("conflict")),
        expect("PATCH", &format!("{JOBS}/status"), patched(&job)),
    ];
    let (outcomes, seen) =
        run_jobs(vec![job.clone(), job], Cached::pod(finished_pod("Failed", &crashed)), script, &bucket, START_TIMEOUT)
            .await;
    assert!(outcomes[0].is_err() && outcomes[1].is_ok(), "{outcomes:?}");
    assert_eq!(seen.requests.iter().filter(|s| s.method == "DELETE").count(), 1);
}

/// A Pod from `tests/fixtures/pods/` (as a kube-apiserver, scheduler and kubelet
/// write them), created `age` ago.
fn pod_fixture(name: &str, age: Duration) -> Value {
    let path = format!("{}/tests/fixtures/pods/{name}", env!("CARGO_MANIFEST_DIR"));
    let mut pod: Value = serde_yaml::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let created = jiff::Timestamp::now() - jiff::SignedDuration::try_from(age).unwrap();
    pod["metadata"]["creationTimestamp"] = json!(created.round(jiff::Unit::Second).unwrap().to_string());
    pod
}

/// A Status from `tests/fixtures/api-errors.yaml`, as the API server answers.
fn api_error(name: &str) -> impl FnOnce(&Value) -> (u16, Value) + Send + 'static {
    let path = format!("{}/tests/fixtures/api-errors.yaml", env!("CARGO_MANIFEST_DIR"));
    let all: Value = serde_yaml::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let status = all[name].clone();
    assert!(status.is_object(), "no API error {name} in the fixtures");
    move |_| (status["code"].as_u64().unwrap() as u16, status)
}

/// The condition of `type_` in a written status.
fn condition<'a>(status: &'a Value, type_: &str) -> &'a Value {
    status["conditions"]
        .as_array()
        .and_then(|all| all.iter().find(|c| c["type"] == type_))
        .unwrap_or_else(|| panic!("no {type_} condition in {status}"))
}

const LIMIT_RANGE_MESSAGE: &str =
    "pods \"invoice-1-render-0\" is forbidden: maximum memory usage per Container is 512Mi, but limit is 1Gi";

/// A LimitRange below the renderer's memory limit: the new job shows the API
/// server's refusal at once (a condition and one Warning Event), is written Queued
/// and the reconcile is retried with backoff; nothing is written again while it
/// repeats.
#[tokio::test]
async fn an_admission_refusal_shows_at_once_as_a_condition_and_one_warning_event() {
    let (_root, bucket) = bucket().await;
    let job = job_with(Value::Null, json!({}));
    let refused_job = std::sync::Arc::new(std::sync::Mutex::new(Value::Null));
    let keep = refused_job.clone();
    let script = vec![
        expect("PATCH", INPUT, echo(200)),
        expect("PATCH", POD, api_error("limit-range")),
        expect("PATCH", &format!("{JOBS}/status"), move |patch| {
            let (status, answer) = patched(&job)(patch);
            *keep.lock().unwrap() = answer.clone();
            (status, answer)
        }),
    ];
    let (outcome, seen) =
        run_with(job_with(Value::Null, json!({})), Cached::default(), script, &bucket, Duration::from_secs(60)).await;
    let err = outcome.expect_err("the reconcile is retried with backoff");
    assert!(err.contains("maximum memory usage per Container is 512Mi"), "{err}");
    let status = &seen.requests[2].body["status"];
    assert_eq!(status["phase"], "Queued");
    assert!(status["rendererRefusedAt"].is_string(), "the first refusal is recorded: {status}");
    let admitted = condition(status, "RendererAdmitted");
    assert_eq!((admitted["status"].as_str(), admitted["reason"].as_str()), (Some("False"), Some("Forbidden")));
    assert_eq!(admitted["message"], LIMIT_RANGE_MESSAGE);
    assert_eq!(condition(status, "Ready")["status"], "False");
    assert_eq!(seen.events.len(), 1, "one Event: {:?}", seen.events);
    assert_eq!(
        (seen.events[0]["type"].as_str(), seen.events[0]["reason"].as_str()),
        (Some("Warning"), Some("RendererRefused"))
    );
    assert!(seen.events[0]["note"].as_str().unwrap().ends_with(LIMIT_RANGE_MESSAGE), "{}", seen.events[0]);

    // Refused again: the status says so already, so neither it nor an Event is written.
    let refused = refused_job.lock().unwrap().clone();
    let script = vec![expect("PATCH", INPUT, echo(200)), expect("PATCH", POD, api_error("limit-range"))];
    let (outcome, seen) = run_with(refused.clone(), Cached::default(), script, &bucket, Duration::from_secs(60)).await;
    assert!(outcome.is_err());
    assert!(seen.events.is_empty(), "no second Event: {:?}", seen.events);

    // The platform team raised the LimitRange: the Pod is admitted and the condition says so.
    let script = vec![
        expect("PATCH", INPUT, echo(200)),
        expect("PATCH", POD, echo(201)),
        expect("PATCH", &format!("{JOBS}/status"), patched(&refused)),
    ];
    let (outcome, seen) = run_with(refused, Cached::default(), script, &bucket, Duration::from_secs(60)).await;
    outcome.unwrap();
    let status = &seen.requests[2].body["status"];
    assert_eq!(status["phase"], "Rendering");
    assert_eq!(status.get("rendererRefusedAt"), None);
    let admitted = condition(status, "RendererAdmitted");
    assert_eq!((admitted["status"].as_str(), admitted["reason"].as_str()), (Some("True"), Some("Admitted")));
}

/// RBAC refusing the input ConfigMap is shown the same way (no Pod is tried).
#[tokio::test]
async fn a_forbidden_input_config_map_is_shown_without_trying_the_pod() {
    let (_root, bucket) = bucket().await;
    let job = job_with(json!({"phase": "Queued"}), json!({}));
    let script =
        vec![expect("PATCH", INPUT, api_error("rbac")), expect("PATCH", &format!("{JOBS}/status"), patched(&job))];
    let (outcome, seen) = run_with(job, Cached::default(), script, &bucket, Duration::from_secs(60)).await;
    assert!(outcome.is_err());
    let admitted = condition(&seen.requests[1].body["status"], "RendererAdmitted");
    assert_eq!(admitted["reason"], "Forbidden");
    assert!(admitted["message"].as_str().unwrap().contains("cannot patch resource \"configmaps\""));
}

/// Conflicts and server errors heal by themselves: no condition, no Event.
#[tokio::test]
async fn a_conflict_or_a_server_error_is_not_shown_as_a_refusal() {
    let (_root, bucket) = bucket().await;
    for error in ["conflict", "internal", "unavailable"] {
        let job = job_with(json!({"phase": "Queued"}), json!({}));
        let script = vec![expect("PATCH", INPUT, echo(200)), expect("PATCH", POD, api_error(error))];
        let (outcome, seen) = run_with(job, Cached::default(), script, &bucket, Duration::from_secs(60)).await;
        assert!(outcome.is_err(), "{error}");
        assert!(seen.events.is_empty(), "{error}: {:?}", seen.events);
    }
}

/// Still refused when the start timeout (counted from the first refusal) ends: the
/// attempt fails with RENDERER_UNAVAILABLE and the server's message, and is retried
/// per backoffLimit; with no retry left, the job fails.
#[tokio::test]
async fn a_refusal_past_the_start_timeout_fails_the_attempt_with_renderer_unavailable() {
    let (_root, bucket) = bucket().await;
    let since = (jiff::Timestamp::now() - jiff::SignedDuration::from_secs(10)).to_string();
    let refused = json!({"phase": "Queued", "rendererRefusedAt": since, "conditions": [{
        "type": "RendererAdmitted", "status": "False", "reason": "Forbidden", "message": LIMIT_RANGE_MESSAGE,
        "lastTransitionTime": since}]});
    let job = job_with(refused.clone(), json!({"backoffLimit": 1}));
    let script = vec![
        expect("PATCH", INPUT, echo(200)),
        expect("PATCH", POD, api_error("limit-range")),
        expect("DELETE", INPUT, echo(200)),
        expect("PATCH", &format!("{JOBS}/status"), patched(&job)),
    ];
    let (outcome, seen) = run_with(job, Cached::default(), script, &bucket, Duration::from_secs(2)).await;
    outcome.unwrap();
    let status = &seen.requests[3].body["status"];
    assert_eq!((status["retryCount"].as_i64(), status["errorCode"].as_str()), (Some(1), Some("RENDERER_UNAVAILABLE")));
    let message = status["errorMessage"].as_str().unwrap();
    assert!(message.contains("the API server refused the renderer Pod"), "{message}");
    assert!(message.contains("maximum memory usage per Container is 512Mi, but limit is 1Gi"), "{message}");
    assert!(status["nextAttemptAt"].is_string());
    assert_eq!(status.get("rendererRefusedAt"), None, "the next attempt has a timeout of its own");
    assert_eq!(condition(status, "RendererAdmitted")["status"], "False");
    assert!(seen.events.iter().any(|e| e["reason"] == "RetryScheduled"), "{:?}", seen.events);

    // No retry left: the job fails with the same code (no Pod was made: none is deleted).
    let job = job_with(refused, json!({"backoffLimit": 0}));
    let script =
        vec![expect("PATCH", INPUT, api_error("rbac")), expect("PATCH", &format!("{JOBS}/status"), patched(&job))];
    let (outcome, seen) = run_with(job, Cached::default(), script, &bucket, Duration::from_secs(2)).await;
    outcome.unwrap();
    let status = &seen.requests[1].body["status"];
    assert_eq!(
        (status["phase"].as_str(), status["errorCode"].as_str()),
        (Some("Failed"), Some("RENDERER_UNAVAILABLE"))
    );
    assert!(status["errorMessage"].as_str().unwrap().contains("the API server refused the renderer input ConfigMap"));
}

/// A Pod the scheduler cannot place: the job shows the scheduler's reason and
/// message as a condition with one Warning Event, and looks again by the end of the
/// start timeout; a second look at the same Pod writes nothing.
#[tokio::test]
async fn an_unschedulable_pod_shows_the_schedulers_reason_while_it_waits() {
    let (_root, bucket) = bucket().await;
    let job = job_with(json!({"phase": "Rendering", "retryCount": 0}), json!({}));
    let waiting_job = std::sync::Arc::new(std::sync::Mutex::new(Value::Null));
    let keep = waiting_job.clone();
    let script = vec![expect("PATCH", &format!("{JOBS}/status"), move |patch| {
        let (status, answer) = patched(&job)(patch);
        *keep.lock().unwrap() = answer.clone();
        (status, answer)
    })];
    let (outcome, seen) = run_with(
        job_with(json!({"phase": "Rendering", "retryCount": 0}), json!({})),
        Cached::pod(pod_fixture("unschedulable.yaml", Duration::ZERO)),
        script,
        &bucket,
        START_TIMEOUT,
    )
    .await;
    outcome.unwrap();
    let status = &seen.requests[0].body["status"];
    assert_eq!(status["phase"], "Rendering");
    let started = condition(status, "RendererStarted");
    assert_eq!((started["status"].as_str(), started["reason"].as_str()), (Some("False"), Some("Unschedulable")));
    assert!(started["message"].as_str().unwrap().starts_with("0/1 nodes are available: 1 node(s) were unschedulable"));
    assert_eq!(seen.events.len(), 1, "{:?}", seen.events);
    assert_eq!(
        (seen.events[0]["type"].as_str(), seen.events[0]["reason"].as_str()),
        (Some("Warning"), Some("RendererNotStarted"))
    );
    let note = seen.events[0]["note"].as_str().unwrap();
    assert!(note.starts_with("the renderer Pod could not be scheduled: 0/1 nodes are available"), "{note}");

    let waiting = waiting_job.lock().unwrap().clone();
    let cached = Cached::pod(pod_fixture("unschedulable.yaml", Duration::from_secs(1)));
    let (outcome, seen) = run_with(waiting.clone(), cached, vec![], &bucket, START_TIMEOUT).await;
    outcome.unwrap();
    assert!(seen.requests.is_empty(), "nothing read, nothing written");
    assert!(seen.events.is_empty(), "one Event, not one per reconcile: {:?}", seen.events);

    // The node is uncordoned and the renderer runs: the condition says so.
    let script = vec![expect("PATCH", &format!("{JOBS}/status"), patched(&waiting))];
    let cached = Cached::pod(pod_fixture("running.yaml", Duration::from_secs(2)));
    let (outcome, seen) = run_with(waiting, cached, script, &bucket, START_TIMEOUT).await;
    outcome.unwrap();
    let started = condition(&seen.requests[0].body["status"], "RendererStarted");
    assert_eq!((started["status"].as_str(), started["reason"].as_str()), (Some("True"), Some("Started")));
}

/// An image that cannot be pulled is shown with the kubelet's reason and message.
#[tokio::test]
async fn an_image_that_cannot_be_pulled_shows_the_kubelets_reason() {
    let (_root, bucket) = bucket().await;
    let job = job_with(json!({"phase": "Rendering", "retryCount": 0}), json!({}));
    let script = vec![expect("PATCH", &format!("{JOBS}/status"), patched(&job))];
    let cached = Cached::pod(pod_fixture("err-image-pull.yaml", Duration::ZERO));
    let (outcome, seen) = run_with(job, cached, script, &bucket, START_TIMEOUT).await;
    outcome.unwrap();
    let started = condition(&seen.requests[0].body["status"], "RendererStarted");
    assert_eq!((started["status"].as_str(), started["reason"].as_str()), (Some("False"), Some("ErrImagePull")));
    assert!(started["message"].as_str().unwrap().contains("registry.invalid/folio:missing"));
    assert_eq!(seen.events.len(), 1);
}

/// Pending past the start timeout: the Pod is deleted at once and the attempt fails
/// with RENDERER_UNAVAILABLE carrying the scheduler's words, retried per backoffLimit.
#[tokio::test]
async fn a_pending_pod_past_the_start_timeout_becomes_a_retry_with_renderer_unavailable() {
    let (_root, bucket) = bucket().await;
    let job = job_with(json!({"phase": "Rendering", "retryCount": 0}), json!({"backoffLimit": 2}));
    let script = vec![
        expect("DELETE", INPUT, echo(200)),
        expect("DELETE", POD, echo(200)),
        expect("PATCH", &format!("{JOBS}/status"), patched(&job)),
    ];
    let cached = Cached::pod(pod_fixture("unschedulable.yaml", Duration::from_secs(10)));
    let (outcome, seen) = run_with(job, cached, script, &bucket, START_TIMEOUT).await;
    outcome.unwrap();
    assert_eq!(seen.requests[1].body["gracePeriodSeconds"], 0);
    let status = &seen.requests[2].body["status"];
    assert_eq!((status["phase"].as_str(), status["retryCount"].as_i64()), (Some("Rendering"), Some(1)));
    assert_eq!(status["errorCode"], "RENDERER_UNAVAILABLE");
    let message = status["errorMessage"].as_str().unwrap();
    assert!(
        message
            .contains("the renderer Pod could not be scheduled: 0/1 nodes are available: 1 node(s) were unschedulable"),
        "{message}"
    );
    let retry = seen.events.iter().find(|e| e["reason"] == "RetryScheduled").expect("a RetryScheduled Event");
    assert_eq!(retry["type"], "Warning");
    assert!(retry["note"].as_str().unwrap().contains("RENDERER_UNAVAILABLE: the renderer Pod could not be scheduled"));

    // The last attempt: the job fails, its Pod deleted when it ends.
    let job = job_with(json!({"phase": "Rendering", "retryCount": 0}), json!({"backoffLimit": 0}));
    let script = vec![
        expect("DELETE", INPUT, echo(200)),
        expect("DELETE", POD, echo(200)),
        expect("PATCH", &format!("{JOBS}/status"), patched(&job)),
    ];
    let cached = Cached::pod(pod_fixture("image-pull-backoff.yaml", Duration::from_secs(10)));
    let (outcome, seen) = run_with(job, cached, script, &bucket, START_TIMEOUT).await;
    outcome.unwrap();
    assert_eq!(seen.requests[1].body["gracePeriodSeconds"], 0);
    let status = &seen.requests[2].body["status"];
    assert_eq!(
        (status["phase"].as_str(), status["errorCode"].as_str()),
        (Some("Failed"), Some("RENDERER_UNAVAILABLE"))
    );
    assert!(status["errorMessage"].as_str().unwrap().contains("could not start (ImagePullBackOff)"));
}

/// The deadline passes while the Pod has never started: the job expires, and its
/// message says why the renderer never started instead of hiding it.
#[tokio::test]
async fn a_deadline_that_passes_before_the_renderer_started_names_why() {
    let (_root, bucket) = bucket().await;
    let mut job = job_with(json!({"phase": "Rendering", "retryCount": 0}), json!({"activeDeadlineSeconds": 5}));
    job["metadata"]["creationTimestamp"] = json!("2026-01-01T00:00:00Z");
    let script = vec![expect("DELETE", POD, echo(200)), expect("PATCH", &format!("{JOBS}/status"), patched(&job))];
    let cached = Cached::pod(pod_fixture("unschedulable.yaml", Duration::ZERO));
    let (outcome, seen) = run_with(job, cached, script, &bucket, Duration::from_secs(120)).await;
    outcome.unwrap();
    let status = &seen.requests[1].body["status"];
    assert_eq!((status["phase"].as_str(), status["errorCode"].as_str()), (Some("Expired"), Some("DEADLINE_EXCEEDED")));
    let message = status["errorMessage"].as_str().unwrap();
    assert!(message.starts_with("the job did not finish within activeDeadlineSeconds (5 s)"), "{message}");
    assert!(
        message.contains("never started: the renderer Pod could not be scheduled: 0/1 nodes are available"),
        "{message}"
    );

    // Refused by admission until the deadline: the server's message is named.
    let since = "2026-01-01T00:00:01Z";
    let refused = json!({"phase": "Queued", "rendererRefusedAt": since, "conditions": [{
        "type": "RendererAdmitted", "status": "False", "reason": "Forbidden", "message": LIMIT_RANGE_MESSAGE,
        "lastTransitionTime": since}]});
    let mut job = job_with(refused, json!({"activeDeadlineSeconds": 5}));
    job["metadata"]["creationTimestamp"] = json!("2026-01-01T00:00:00Z");
    let script = vec![expect("PATCH", &format!("{JOBS}/status"), patched(&job))];
    let (outcome, seen) = run_with(job, Cached::default(), script, &bucket, Duration::from_secs(120)).await;
    outcome.unwrap();
    let status = &seen.requests[0].body["status"];
    assert_eq!(status["phase"], "Expired");
    let message = status["errorMessage"].as_str().unwrap();
    assert!(message.contains("the API server refused it (Forbidden)"), "{message}");
    assert!(message.ends_with(LIMIT_RANGE_MESSAGE), "{message}");
}
