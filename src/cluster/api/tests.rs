//! The cluster backend against a scripted apiserver (`tower_test::mock`) and caches
//! fed by hand, with a real S3 server (`s3s-fs`) in the process for the PDFs: each
//! test says which apiserver calls a request makes, in order, and what the answer is.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body as AxumBody;
use http::{Request, Response, StatusCode};
use jiff::Timestamp;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::Client;
use kube::client::Body;
use kube::runtime::reflector::store::Writer;
use kube::runtime::watcher::Event;
use serde_json::{Value, json};
use tokio::sync::watch;
use tower::ServiceExt;
use tower_test::mock::{Handle, SendResponse};

use super::objects::{self, IDEMPOTENCY_KEY_ANNOTATION, RESUME_ANNOTATION};
use super::{Cache, Caches, ClusterBackend};
use crate::http::{AppState, app};
use crate::lifecycle::Phase;
use crate::port::{Backend, HomeError, JobFilter, NewJob, Object};
use crate::resources::{
    RenderAccount, RenderAccountSpec, RenderAccountStatus, RenderApiKey, RenderJob, RenderJobSpec, RenderJobStatus,
    RenderShare, RenderTemplate, WebhookSpec,
};
use crate::signing::{SignatureError, UrlSigner};
use crate::storage::S3Bucket;

const ACCESS_KEY: &str = "folio-test-access";
const SECRET_KEY: &str = "folio-test-secret-key";
const PUBLIC_URL: &str = "http://folio.test";

/// A hand-fed cache.
struct Feed<K: kube::runtime::reflector::Lookup<DynamicType = ()> + Clone + 'static> {
    writer: Writer<K>,
    changed: watch::Sender<u64>,
}

impl<K> Feed<K>
where
    K: kube::Resource<DynamicType = ()>
        + kube::runtime::reflector::Lookup<DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
    fn new() -> (Cache<K>, Feed<K>) {
        let (cache, writer, changed) = Cache::detached();
        (cache, Feed { writer, changed })
    }

    /// The first list: these objects, and the cache counts as synced.
    fn sync(&mut self, objects: Vec<K>) {
        self.writer.apply_watcher_event(&Event::Init);
        for object in objects {
            self.writer.apply_watcher_event(&Event::InitApply(object));
        }
        self.writer.apply_watcher_event(&Event::InitDone);
        self.changed.send_modify(|n| *n += 1);
    }

    fn apply(&mut self, object: K) {
        self.writer.apply_watcher_event(&Event::Apply(object));
        self.changed.send_modify(|n| *n += 1);
    }
}

type ApiHandle = Handle<Request<Body>, Response<Body>>;

struct Fixture {
    backend: Arc<ClusterBackend>,
    apiserver: ApiHandle,
    jobs: Feed<RenderJob>,
    templates: Feed<RenderTemplate>,
    accounts: Feed<RenderAccount>,
    keys: Feed<RenderApiKey>,
    shares: Feed<RenderShare>,
    bucket: S3Bucket,
    _s3_root: tempfile::TempDir,
}

impl Fixture {
    async fn new() -> Fixture {
        let (service, apiserver) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let client = Client::new(service, "default");
        let (jobs_cache, jobs) = Feed::new();
        let (templates_cache, templates) = Feed::new();
        let (accounts_cache, accounts) = Feed::new();
        let (keys_cache, keys) = Feed::new();
        let (shares_cache, shares) = Feed::new();
        let caches = Caches::from_parts(jobs_cache, templates_cache, accounts_cache, keys_cache, shares_cache);
        let s3_root = tempfile::tempdir().unwrap();
        let endpoint = s3_server(s3_root.path()).await;
        let bucket = S3Bucket::connect(&endpoint, "folio", ACCESS_KEY, SECRET_KEY).await.unwrap();
        let backend = ClusterBackend::new(
            client,
            caches,
            bucket.clone(),
            UrlSigner::new(vec![7; 32]),
            PUBLIC_URL.to_owned(),
            Duration::from_millis(300),
        );
        Fixture {
            backend: Arc::new(backend),
            apiserver,
            jobs,
            templates,
            accounts,
            keys,
            shares,
            bucket,
            _s3_root: s3_root,
        }
    }

    /// Every cache synced, with these jobs and nothing else.
    async fn synced(jobs: Vec<RenderJob>) -> Fixture {
        let mut fixture = Fixture::new().await;
        fixture.jobs.sync(jobs);
        fixture.templates.sync(Vec::new());
        fixture.accounts.sync(Vec::new());
        fixture.keys.sync(Vec::new());
        fixture.shares.sync(Vec::new());
        fixture
    }

    /// The next apiserver request: its method, path and JSON body.
    async fn next(&mut self) -> (String, String, Value, SendResponse<Response<Body>>) {
        let (request, send) = tokio::time::timeout(Duration::from_secs(5), self.apiserver.next_request())
            .await
            .expect("the backend made no apiserver request")
            .expect("the client is gone");
        let method = request.method().to_string();
        let path = request.uri().path().to_owned();
        let bytes = request.into_body().collect_bytes().await.unwrap();
        let body = if bytes.is_empty() { Value::Null } else { serde_json::from_slice(&bytes).unwrap() };
        (method, path, body, send)
    }
}

fn respond(send: SendResponse<Response<Body>>, status: StatusCode, body: &Value) {
    let response = Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Body::from(serde_json::to_vec(body).unwrap()))
        .unwrap();
    send.send_response(response);
}

fn not_found(send: SendResponse<Response<Body>>) {
    let status = json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404, "message": "not found"});
    respond(send, StatusCode::NOT_FOUND, &status);
}

/// What the apiserver makes of a created object: uid, resourceVersion, creation time.
fn stored<K: serde::Serialize + serde::de::DeserializeOwned>(object: &Value, version: &str) -> (Value, K) {
    let mut object = object.clone();
    let name = object["metadata"]["name"].as_str().unwrap().to_owned();
    object["metadata"]["uid"] = json!(format!("uid-{name}"));
    object["metadata"]["resourceVersion"] = json!(version);
    // Made now: a request repeating its Idempotency-Key is within the key's lifetime.
    object["metadata"]["creationTimestamp"] = json!(jiff::Timestamp::now().to_string());
    let typed = serde_json::from_value(object.clone()).unwrap();
    (object, typed)
}

fn job(tenant: &str, id: &str, phase: Phase) -> RenderJob {
    let mut job = objects::new_job(tenant, id, RenderJobSpec::default(), None);
    job.metadata.uid = Some(format!("uid-{id}"));
    job.metadata.resource_version = Some("1".into());
    job.metadata.creation_timestamp = Some(Time("2026-11-23T09:00:00Z".parse().unwrap()));
    job.status = Some(RenderJobStatus { phase: Some(phase), ..Default::default() });
    job
}

fn succeeded(tenant: &str, id: &str) -> RenderJob {
    let mut job = job(tenant, id, Phase::Succeeded);
    let status = job.status.as_mut().unwrap();
    status.output_key = Some(crate::storage::output_key(tenant, id, crate::resources::OutputFormat::Pdf));
    status.page_count = Some(1);
    job
}

fn api_key(namespace: &str) -> (String, RenderApiKey) {
    let key = crate::api_keys::generate();
    let mut object = objects::api_key(namespace, &key, Timestamp::now(), None);
    object.metadata.resource_version = Some("1".into());
    (key.plaintext, object)
}

async fn s3_server(root: &std::path::Path) -> String {
    use hyper_util::rt::{TokioExecutor, TokioIo};
    let fs = s3s_fs::FileSystem::new(root).unwrap();
    let mut builder = s3s::service::S3ServiceBuilder::new(fs);
    builder.set_auth(s3s::auth::SimpleAuth::from_single(ACCESS_KEY, SECRET_KEY));
    let service = builder.build();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let http = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
        while let Ok((socket, _)) = listener.accept().await {
            let connection = http.serve_connection(TokioIo::new(socket), service.clone()).into_owned();
            tokio::spawn(connection);
        }
    });
    format!("http://{address}")
}

#[tokio::test]
async fn keys_authenticate_from_the_key_cache_once_it_is_synced_until_revoked() {
    let mut fixture = Fixture::new().await;
    let (key, mut object) = api_key("acme");
    let early = fixture.backend.authenticate(&key).await.unwrap_err();
    assert!(matches!(early, HomeError::Unavailable(_)), "{early:?}");
    fixture.keys.sync(vec![object.clone()]);
    assert_eq!(fixture.backend.authenticate(&key).await.unwrap().as_deref(), Some("acme"));
    assert_eq!(fixture.backend.authenticate("folio_unknown").await.unwrap(), None);
    object.spec.revoked_at = Some(Timestamp::now());
    fixture.keys.apply(object);
    assert_eq!(fixture.backend.authenticate(&key).await.unwrap(), None, "revoked");
}

#[tokio::test]
async fn readiness_waits_for_every_cache() {
    let mut fixture = Fixture::new().await;
    assert!(fixture.backend.not_ready().await.unwrap().contains("RenderJob"));
    fixture.jobs.sync(Vec::new());
    fixture.templates.sync(Vec::new());
    fixture.accounts.sync(Vec::new());
    fixture.keys.sync(Vec::new());
    let waiting = fixture.backend.not_ready().await.unwrap();
    assert!(waiting.contains("RenderShare") && !waiting.contains("RenderJob,"), "{waiting}");
    fixture.shares.sync(Vec::new());
    assert_eq!(fixture.backend.not_ready().await, None);
}

#[tokio::test]
async fn a_render_becomes_a_render_job_named_by_its_id_and_is_read_back_from_the_cache() {
    let mut fixture = Fixture::synced(Vec::new()).await;
    let backend = fixture.backend.clone();
    let spec = RenderJobSpec { external_id: Some("order-7".into()), ..Default::default() };
    let call = tokio::spawn(async move {
        backend
            .create_job(
                "acme",
                NewJob { spec, idempotency_key: Some("retry-1".into()), webhook_secret: None, request_digest: None },
            )
            .await
    });
    let (method, path, body, send) = fixture.next().await;
    assert_eq!((method.as_str(), path.as_str()), ("POST", "/apis/folio.dev/v1alpha1/namespaces/acme/renderjobs"));
    let id = body["metadata"]["name"].as_str().unwrap().to_owned();
    assert!(uuid::Uuid::parse_str(&id).is_ok(), "the job is named by a UUID id: {id}");
    assert_eq!(body["metadata"]["annotations"][IDEMPOTENCY_KEY_ANNOTATION], "retry-1");
    assert_eq!(body["spec"]["externalId"], "order-7");
    let (object, typed) = stored::<RenderJob>(&body, "5");
    respond(send, StatusCode::CREATED, &object);
    fixture.jobs.apply(typed);
    let (view, created) = call.await.unwrap().unwrap();
    assert!(created);
    assert_eq!(view.job.metadata.name.as_deref(), Some(id.as_str()));

    // The next GET and the retry come from the cache: no apiserver call (the mock
    // would leave them hanging).
    let read = tokio::time::timeout(Duration::from_secs(2), fixture.backend.job("acme", &id)).await.unwrap().unwrap();
    assert_eq!(read.job.metadata.resource_version.as_deref(), Some("5"));
    let retry = NewJob {
        spec: RenderJobSpec::default(),
        idempotency_key: Some("retry-1".into()),
        webhook_secret: None,
        request_digest: None,
    };
    let (again, created) =
        tokio::time::timeout(Duration::from_secs(2), fixture.backend.create_job("acme", retry)).await.unwrap().unwrap();
    assert!(!created);
    assert_eq!(again.job.metadata.name.as_deref(), Some(id.as_str()));
    let same_external_id = NewJob {
        spec: RenderJobSpec { external_id: Some("order-7".into()), ..Default::default() },
        idempotency_key: None,
        webhook_secret: None,
        request_digest: None,
    };
    let (again, created) = fixture.backend.create_job("acme", same_external_id).await.unwrap();
    assert!(!created);
    assert_eq!(again.job.metadata.name.as_deref(), Some(id.as_str()));
}

#[tokio::test]
async fn a_webhook_secret_becomes_a_secret_created_owned_by_its_job_after_it() {
    let mut fixture = Fixture::synced(Vec::new()).await;
    let backend = fixture.backend.clone();
    let spec = RenderJobSpec {
        webhook: Some(WebhookSpec { url: "https://hooks.example/x".into(), ..Default::default() }),
        ..Default::default()
    };
    let call = tokio::spawn(async move {
        backend
            .create_job(
                "acme",
                NewJob { spec, idempotency_key: None, webhook_secret: Some("s3cret".into()), request_digest: None },
            )
            .await
    });
    let (method, path, job, send) = fixture.next().await;
    assert_eq!((method.as_str(), path.as_str()), ("POST", "/apis/folio.dev/v1alpha1/namespaces/acme/renderjobs"));
    let secret_name = job["spec"]["webhook"]["secretRef"]["name"].as_str().unwrap().to_owned();
    assert_eq!(job["spec"]["webhook"]["secretRef"]["key"], "secret");
    assert!(!job.to_string().contains("s3cret"), "the job never carries the secret itself");
    let (object, typed) = stored::<RenderJob>(&job, "4");
    respond(send, StatusCode::CREATED, &object);

    let (method, path, secret, send) = fixture.next().await;
    assert_eq!((method.as_str(), path.as_str()), ("POST", "/api/v1/namespaces/acme/secrets"));
    assert_eq!(secret["metadata"]["name"], secret_name.as_str());
    assert_eq!(secret["data"]["secret"], "czNjcmV0", "base64 of the secret");
    let owner = &secret["metadata"]["ownerReferences"][0];
    assert_eq!(
        (owner["kind"].as_str(), owner["uid"].as_str()),
        (Some("RenderJob"), object["metadata"]["uid"].as_str())
    );
    assert!(owner.get("blockOwnerDeletion").is_none_or(Value::is_null), "no update on the job's finalizers needed");
    respond(send, StatusCode::CREATED, &stored::<Secret>(&secret, "5").0);
    fixture.jobs.apply(typed);
    let (view, created) = call.await.unwrap().unwrap();
    assert!(created);
    assert_eq!(view.job.spec.webhook.unwrap().secret_ref.unwrap().name, secret_name);
    // Nothing else: the Secret is never patched nor read.
    let sent = tokio::time::timeout(Duration::from_millis(50), fixture.apiserver.next_request()).await;
    assert!(sent.is_err(), "no further apiserver call");
}

#[tokio::test]
async fn a_refused_webhook_secret_deletes_the_job_it_was_for() {
    let mut fixture = Fixture::synced(Vec::new()).await;
    let backend = fixture.backend.clone();
    let spec = RenderJobSpec {
        webhook: Some(WebhookSpec { url: "https://hooks.example/x".into(), ..Default::default() }),
        ..Default::default()
    };
    let call = tokio::spawn(async move {
        backend
            .create_job(
                "acme",
                NewJob { spec, idempotency_key: None, webhook_secret: Some("s3cret".into()), request_digest: None },
            )
            .await
    });
    let (_, _, job, send) = fixture.next().await;
    let (object, _) = stored::<RenderJob>(&job, "4");
    respond(send, StatusCode::CREATED, &object);
    let (method, path, _, send) = fixture.next().await;
    assert_eq!((method.as_str(), path.as_str()), ("POST", "/api/v1/namespaces/acme/secrets"));
    let quota = json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "Forbidden", "code": 403,
        "message": "secrets \"x\" is forbidden: exceeded quota: few-secrets, requested: secrets=1"});
    respond(send, StatusCode::FORBIDDEN, &quota);
    let (method, path, body, send) = fixture.next().await;
    let id = object["metadata"]["name"].as_str().unwrap();
    assert_eq!(
        (method.as_str(), path),
        ("DELETE", format!("/apis/folio.dev/v1alpha1/namespaces/acme/renderjobs/{id}"))
    );
    assert_eq!(body["preconditions"]["uid"], object["metadata"]["uid"], "that job only");
    respond(send, StatusCode::OK, &object);
    let err = call.await.unwrap().unwrap_err();
    assert!(matches!(err, HomeError::QuotaExceeded(_)), "{err:?}");
}

#[tokio::test]
async fn a_job_the_cache_has_not_seen_is_read_from_the_apiserver_once() {
    let mut fixture = Fixture::synced(Vec::new()).await;
    let backend = fixture.backend.clone();
    let call = tokio::spawn(async move { backend.job("acme", "fresh").await });
    let (method, path, _, send) = fixture.next().await;
    assert_eq!((method.as_str(), path.as_str()), ("GET", "/apis/folio.dev/v1alpha1/namespaces/acme/renderjobs/fresh"));
    respond(send, StatusCode::OK, &serde_json::to_value(job("acme", "fresh", Phase::Queued)).unwrap());
    assert_eq!(call.await.unwrap().unwrap().job.metadata.name.as_deref(), Some("fresh"));

    let backend = fixture.backend.clone();
    let call = tokio::spawn(async move { backend.job("acme", "nothing").await });
    let (_, _, _, send) = fixture.next().await;
    not_found(send);
    let err = call.await.unwrap().unwrap_err();
    assert_eq!(err, HomeError::render_not_found("nothing"));
    assert_eq!(err.to_string(), "render \"nothing\" not found");
}

#[tokio::test]
async fn another_tenants_job_is_not_found_without_revealing_it() {
    let mut fixture = Fixture::synced(vec![job("globex", "theirs", Phase::Queued)]).await;
    let backend = fixture.backend.clone();
    let call = tokio::spawn(async move { backend.cancel_job("acme", "theirs").await });
    let (_, path, _, send) = fixture.next().await;
    assert_eq!(path, "/apis/folio.dev/v1alpha1/namespaces/acme/renderjobs/theirs");
    not_found(send);
    assert_eq!(call.await.unwrap().unwrap_err(), HomeError::render_not_found("theirs"));
}

#[tokio::test]
async fn cancel_sets_spec_cancel_and_answers_with_the_operators_verdict() {
    let running = job("acme", "j1", Phase::Rendering);
    let mut fixture = Fixture::synced(vec![running.clone(), job("acme", "j2", Phase::Queued)]).await;
    let backend = fixture.backend.clone();
    let call = tokio::spawn(async move { backend.cancel_job("acme", "j1").await });
    let (method, path, patch, send) = fixture.next().await;
    assert_eq!((method.as_str(), path.as_str()), ("PATCH", "/apis/folio.dev/v1alpha1/namespaces/acme/renderjobs/j1"));
    assert_eq!(patch, json!({"spec": {"cancel": true}}));
    let mut patched = running;
    patched.spec.cancel = true;
    patched.metadata.resource_version = Some("2".into());
    respond(send, StatusCode::OK, &serde_json::to_value(&patched).unwrap());
    let mut cancelled = patched;
    cancelled.status.as_mut().unwrap().phase = Some(Phase::Cancelled);
    cancelled.metadata.resource_version = Some("3".into());
    fixture.jobs.apply(cancelled);
    assert_eq!(objects::phase(&call.await.unwrap().unwrap().job), Phase::Cancelled);

    // No operator answering: the job as patched, still running, cancel requested.
    let backend = fixture.backend.clone();
    let call = tokio::spawn(async move { backend.cancel_job("acme", "j2").await });
    let (_, _, _, send) = fixture.next().await;
    let mut patched = job("acme", "j2", Phase::Queued);
    patched.spec.cancel = true;
    respond(send, StatusCode::OK, &serde_json::to_value(&patched).unwrap());
    let view = call.await.unwrap().unwrap();
    assert_eq!((objects::phase(&view.job), view.job.spec.cancel), (Phase::Queued, true));
}

#[tokio::test]
async fn cancelling_a_finished_job_is_a_conflict_and_writes_nothing() {
    let fixture = Fixture::synced(vec![job("acme", "done", Phase::Succeeded)]).await;
    let err = tokio::time::timeout(Duration::from_secs(2), fixture.backend.cancel_job("acme", "done"))
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(err, HomeError::AlreadyFinished { id: "done".into(), phase: Phase::Succeeded });
}

#[tokio::test]
async fn resume_refuses_while_credits_are_short_and_annotates_when_they_suffice() {
    let mut blocked = job("acme", "b1", Phase::Blocked);
    let rendered = blocked.status.as_mut().unwrap();
    rendered.page_count = Some(3);
    rendered.total_bytes = Some(2048);
    rendered.sha256 = Some("ab".repeat(32));
    rendered.output_key = Some("acme/b1.pdf".into());
    let mut fixture = Fixture::synced(vec![blocked.clone(), job("acme", "q1", Phase::Queued)]).await;
    let mut account = RenderAccount::new("acme", RenderAccountSpec { credits: Some(10), ..Default::default() });
    account.metadata.namespace = Some("acme".into());
    account.status = Some(RenderAccountStatus { credits_used: 8, ..Default::default() });
    fixture.accounts.apply(account.clone());

    let err = fixture.backend.resume_job("acme", "q1").await.unwrap_err();
    assert_eq!(err, HomeError::NotBlocked { id: "q1".into(), phase: Phase::Queued });
    let err = fixture.backend.resume_job("acme", "b1").await.unwrap_err();
    assert_eq!(
        err,
        HomeError::InsufficientCredits(
            "the render costs 3 credits and the account has 2 left; it continues when credits are added".into()
        )
    );

    account.spec.credits = Some(100);
    fixture.accounts.apply(account);
    let backend = fixture.backend.clone();
    let call = tokio::spawn(async move { backend.resume_job("acme", "b1").await });
    let (method, path, patch, send) = fixture.next().await;
    assert_eq!((method.as_str(), path.as_str()), ("PATCH", "/apis/folio.dev/v1alpha1/namespaces/acme/renderjobs/b1"));
    let requested = patch["metadata"]["annotations"][RESUME_ANNOTATION].as_str().unwrap();
    assert!(requested.parse::<Timestamp>().is_ok(), "an RFC 3339 time: {requested}");
    respond(send, StatusCode::OK, &serde_json::to_value(&blocked).unwrap());
    // The operator settles it: the answer shows the new phase.
    let mut settled = blocked;
    settled.status.as_mut().unwrap().phase = Some(Phase::Succeeded);
    settled.metadata.resource_version = Some("9".into());
    fixture.jobs.apply(settled);
    assert_eq!(objects::phase(&call.await.unwrap().unwrap().job), Phase::Succeeded);
}

#[tokio::test]
async fn the_render_log_and_the_account_come_from_the_cache() {
    let jobs = vec![
        job("acme", "a", Phase::Blocked),
        job("acme", "b", Phase::Succeeded),
        job("acme", "c", Phase::Blocked),
        job("globex", "d", Phase::Blocked),
    ];
    let fixture = Fixture::synced(jobs).await;
    let filter = JobFilter { phase: Some(Phase::Blocked), ..Default::default() };
    let (page, total) = fixture.backend.jobs("acme", filter, 1, 0).await.unwrap();
    assert_eq!((page.len(), total), (1, 2));
    assert_eq!(page[0].job.metadata.name.as_deref(), Some("c"));
    let account = fixture.backend.account("acme").await.unwrap();
    assert_eq!(account.spec.credits, None);
    assert_eq!(account.status.unwrap().blocked_jobs, 2);
    let counts = fixture.backend.job_counts().await.unwrap();
    assert!(counts.contains(&(Phase::Blocked, 3)) && counts.contains(&(Phase::Succeeded, 1)), "{counts:?}");
}

#[tokio::test]
async fn downloads_and_share_links_read_the_pdf_from_the_bucket() {
    let mut fixture = Fixture::synced(vec![succeeded("acme", "done"), job("acme", "busy", Phase::Rendering)]).await;
    fixture
        .bucket
        .put(
            &crate::storage::output_key("acme", "done", crate::resources::OutputFormat::Pdf),
            b"%PDF-1.7 done".to_vec(),
        )
        .await
        .unwrap();
    assert_eq!(fixture.backend.output("acme", "done").await.unwrap(), b"%PDF-1.7 done");
    let err = fixture.backend.output("acme", "busy").await.unwrap_err();
    assert_eq!(err, HomeError::OutputNotReady { id: "busy".into(), phase: Phase::Rendering });

    let expires = Timestamp::now().checked_add(jiff::SignedDuration::from_hours(1)).unwrap();
    let presigned = fixture.backend.signed_url("acme", "done", expires).await.unwrap();
    assert!(presigned.contains("X-Amz-Signature"), "a presigned S3 URL: {presigned}");
    let pdf = reqwest::get(&presigned).await.unwrap().bytes().await.unwrap();
    assert_eq!(&pdf[..], b"%PDF-1.7 done");
    let long = Timestamp::now().checked_add(jiff::SignedDuration::from_hours(24 * 30)).unwrap();
    let own = fixture.backend.signed_url("acme", "done", long).await.unwrap();
    assert!(own.starts_with(&format!("{PUBLIC_URL}/v1/files/acme/done.pdf?")), "{own}");
    let query: Vec<(String, String)> = url::Url::parse(&own).unwrap().query_pairs().into_owned().collect();
    let (expires_at, signature) = (query[0].1.parse::<i64>().unwrap(), query[1].1.clone());
    assert_eq!(fixture.backend.signed_output("acme", "done", expires_at, &signature).await.unwrap(), b"%PDF-1.7 done");
    let err = fixture.backend.signed_output("acme", "done", expires_at + 1, &signature).await.unwrap_err();
    assert_eq!(err, HomeError::SignatureRefused(SignatureError::Invalid));

    let backend = fixture.backend.clone();
    let call = tokio::spawn(async move { backend.create_share("acme", "done", None).await });
    let (method, path, body, send) = fixture.next().await;
    assert_eq!((method.as_str(), path.as_str()), ("POST", "/apis/folio.dev/v1alpha1/namespaces/acme/rendershares"));
    assert_eq!(body["metadata"]["ownerReferences"][0]["name"], "done");
    assert_eq!(body["spec"]["jobName"], "done");
    let (object, mut typed) = stored::<RenderShare>(&body, "7");
    respond(send, StatusCode::CREATED, &object);
    fixture.shares.apply(typed.clone());
    let share = call.await.unwrap().unwrap();
    assert_eq!(share.job_id, "done");
    assert!(!body.to_string().contains(&share.token), "only the token's hash is stored");
    assert_eq!(body["spec"]["tokenHash"], objects::secret_hash(&share.token));
    assert_eq!(fixture.backend.shared_output(&share.token).await.unwrap(), b"%PDF-1.7 done");
    let listed = fixture.backend.shares("acme").await.unwrap();
    let shown = format!("{}\u{2026}", &share.token[..objects::SHARE_TOKEN_PREFIX_LEN]);
    assert_eq!(listed.iter().map(|s| s.token.as_str()).collect::<Vec<_>>(), [shown.as_str()], "listed by prefix");
    assert_eq!(fixture.backend.shared_output(&shown).await.unwrap_err(), HomeError::not_found(Object::ShareLink));
    assert!(fixture.backend.shares("globex").await.unwrap().is_empty());
    let share_link = HomeError::not_found(Object::ShareLink);
    assert_eq!(fixture.backend.revoke_share("globex", &share.token).await.unwrap_err(), share_link);
    assert_eq!(fixture.backend.revoke_share("globex", &shown).await.unwrap_err(), share_link);

    let backend = fixture.backend.clone();
    let token = share.token.clone();
    let call = tokio::spawn(async move { backend.revoke_share("acme", &token).await });
    let (method, path, patch, send) = fixture.next().await;
    let name = objects::share_name(&share.token);
    assert_eq!(
        (method.as_str(), path),
        ("PATCH", format!("/apis/folio.dev/v1alpha1/namespaces/acme/rendershares/{name}"))
    );
    assert!(patch["spec"]["revokedAt"].as_str().unwrap().parse::<Timestamp>().is_ok(), "{patch}");
    typed.spec.revoked_at = Some(Timestamp::now());
    typed.metadata.resource_version = Some("8".into());
    respond(send, StatusCode::OK, &serde_json::to_value(&typed).unwrap());
    fixture.shares.apply(typed);
    call.await.unwrap().unwrap();
    assert_eq!(fixture.backend.shared_output(&share.token).await.unwrap_err(), HomeError::not_found(Object::ShareLink));
    // Revoking again, by token or by the prefix a listing shows, changes nothing.
    let backend = fixture.backend.clone();
    answered_alone(&mut fixture, backend.revoke_share("acme", &shown)).await.unwrap();
}

#[tokio::test]
async fn an_existing_template_name_is_a_conflict_on_create_and_replaced_on_put() {
    let mut fixture = Fixture::synced(Vec::new()).await;
    let template = RenderTemplate::new("invoice", Default::default());
    let backend = fixture.backend.clone();
    let sent = template.clone();
    let call = tokio::spawn(async move { backend.put_template("acme", sent, false).await });
    let (method, path, _, send) = fixture.next().await;
    assert_eq!((method.as_str(), path.as_str()), ("POST", "/apis/folio.dev/v1alpha1/namespaces/acme/rendertemplates"));
    let exists = json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "AlreadyExists", "code": 409, "message": "exists"});
    respond(send, StatusCode::CONFLICT, &exists);
    let err = call.await.unwrap().unwrap_err();
    assert!(matches!(err, HomeError::TemplateExists(_)), "{err:?}");

    let backend = fixture.backend.clone();
    let mut changed = template.clone();
    changed.spec.source = Some("= New".into());
    let call = tokio::spawn(async move { backend.put_template("acme", changed, true).await });
    let (_, _, _, send) = fixture.next().await;
    respond(send, StatusCode::CONFLICT, &exists);
    let (method, _, _, send) = fixture.next().await;
    assert_eq!(method, "GET");
    let mut current = template.clone();
    current.metadata.namespace = Some("acme".into());
    current.metadata.labels = Some([("team".to_owned(), "billing".to_owned())].into());
    current.metadata.resource_version = Some("3".into());
    respond(send, StatusCode::OK, &serde_json::to_value(&current).unwrap());
    let (method, _, replaced, send) = fixture.next().await;
    assert_eq!(method, "PUT");
    assert_eq!(
        (replaced["spec"]["source"].as_str(), replaced["metadata"]["labels"]["team"].as_str()),
        (Some("= New"), Some("billing"))
    );
    assert_eq!(replaced["metadata"]["resourceVersion"], "3");
    let mut written: RenderTemplate = serde_json::from_value(replaced.clone()).unwrap();
    written.metadata.resource_version = Some("4".into());
    respond(send, StatusCode::OK, &serde_json::to_value(&written).unwrap());
    fixture.templates.apply(written);
    let (view, created) = call.await.unwrap().unwrap();
    assert!(!created);
    assert_eq!(view.template.spec.source.as_deref(), Some("= New"));
}

#[tokio::test]
async fn the_http_api_serves_a_cached_job_to_its_tenant_only() {
    let (key, secret) = api_key("acme");
    let mut fixture = Fixture::synced(vec![job("acme", "j1", Phase::Queued)]).await;
    fixture.keys.apply(secret);
    let state = AppState {
        backend: fixture.backend.clone(),
        public_url: PUBLIC_URL.to_owned(),
        metrics: Arc::new(crate::metrics::Metrics::new()),
        rate_limit: None,
        webhook_targets: None,
        server_font_families: Default::default(),
    };
    let get = |path: &str, key: &str| {
        Request::get(path).header("authorization", format!("Bearer {key}")).body(AxumBody::empty()).unwrap()
    };
    let response = app(state.clone()).oneshot(get("/v1/renders/j1", &key)).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value =
        serde_json::from_slice(&axum::body::to_bytes(response.into_body(), 1 << 20).await.unwrap()).unwrap();
    assert_eq!(
        (body["id"].as_str(), body["tenant"].as_str(), body["status"].as_str()),
        (Some("j1"), Some("acme"), Some("queued"))
    );
    assert_eq!(body["pollUrl"], format!("{PUBLIC_URL}/v1/renders/j1"));

    let response = app(state.clone()).oneshot(get("/v1/renders", &key)).await.unwrap();
    let body: Value =
        serde_json::from_slice(&axum::body::to_bytes(response.into_body(), 1 << 20).await.unwrap()).unwrap();
    assert_eq!(body["pagination"]["total"], 1);

    let response = app(state).oneshot(get("/v1/renders/j1", "folio_wrong")).await.unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
}

/// The backend answers without calling the apiserver (the mock would leave a call
/// hanging), and nothing was sent to it.
async fn answered_alone<T>(fixture: &mut Fixture, call: impl std::future::Future<Output = T>) -> T {
    let answer = tokio::time::timeout(Duration::from_secs(2), call).await.expect("the backend called the apiserver");
    let sent = tokio::time::timeout(Duration::from_millis(50), fixture.apiserver.next_request()).await;
    assert!(sent.is_err(), "nothing is sent to the apiserver");
    answer
}

#[tokio::test]
async fn a_job_its_crd_refuses_is_a_400_naming_the_field_and_nothing_is_created() {
    let mut fixture = Fixture::synced(Vec::new()).await;
    let webhook = || Some(WebhookSpec { url: "https://hooks.example/x".into(), ..Default::default() });
    let cases = [
        (RenderJobSpec { backoff_limit: Some(11), webhook: webhook(), ..Default::default() }, "spec.backoffLimit"),
        (RenderJobSpec { active_deadline_seconds: Some(0), ..Default::default() }, "spec.activeDeadlineSeconds"),
        (RenderJobSpec { ttl_seconds_after_finished: Some(-1), ..Default::default() }, "spec.ttlSecondsAfterFinished"),
        (RenderJobSpec { data: Some(json!([1, 2])), ..Default::default() }, "spec.data"),
    ];
    let backend = fixture.backend.clone();
    for (spec, field) in cases {
        // With a webhook secret: not even its Secret is created.
        let new = NewJob { spec, idempotency_key: None, webhook_secret: Some("s3cret".into()), request_digest: None };
        let err = answered_alone(&mut fixture, backend.create_job("acme", new)).await.unwrap_err();
        let HomeError::Invalid { field: None, message } = &err else { panic!("{field}: {err:?}") };
        assert!(message.starts_with("the RenderJob would be refused by its CRD"), "{message}");
        assert!(message.contains(field), "{field}: {message}");
    }
}

#[tokio::test]
async fn a_template_its_crd_or_the_apiserver_refuses_is_refused_before_it_is_sent() {
    let mut fixture = Fixture::synced(Vec::new()).await;
    let backend = fixture.backend.clone();
    let named = |name: &str| {
        let mut template = RenderTemplate::new(name, Default::default());
        template.spec.source = Some("= Hi".into());
        template
    };
    for name in ["Invoice", "in_voice", "-invoice", &"a".repeat(254), ""] {
        let err = answered_alone(&mut fixture, backend.put_template("acme", named(name), true)).await.unwrap_err();
        let HomeError::Invalid { field: Some(field), .. } = &err else { panic!("{name:?}: {err:?}") };
        assert_eq!(field, "metadata.name");
    }
    let mut boolean_schema = named("invoice");
    boolean_schema.spec.data_schema = Some(json!(true));
    let err = answered_alone(&mut fixture, backend.put_template("acme", boolean_schema, true)).await.unwrap_err();
    assert!(matches!(err, HomeError::Invalid { .. }), "{err:?}");
    assert!(err.to_string().contains("spec.dataSchema"), "{err}");
    let mut labelled = named("invoice");
    labelled.metadata.labels = Some([("team".to_owned(), "x".repeat(64))].into());
    let err = answered_alone(&mut fixture, backend.put_template("acme", labelled, true)).await.unwrap_err();
    assert!(err.to_string().starts_with("metadata.labels.team:"), "{err}");
    let mut huge = named("invoice");
    huge.spec.source = Some("x".repeat(super::admission::MAX_OBJECT_BYTES));
    let err = answered_alone(&mut fixture, backend.put_template("acme", huge, true)).await.unwrap_err();
    assert!(matches!(err, HomeError::TooLarge(_)), "{err:?}");
}

#[tokio::test]
async fn a_name_no_object_can_have_is_not_found_without_asking_the_apiserver() {
    let mut fixture = Fixture::synced(Vec::new()).await;
    let backend = fixture.backend.clone();
    for name in ["../../secrets/x", "UPPER", "a/status"] {
        let err = answered_alone(&mut fixture, backend.job("acme", name)).await.unwrap_err();
        assert_eq!(err, HomeError::render_not_found(name));
        let err = answered_alone(&mut fixture, backend.template("acme", name)).await.unwrap_err();
        assert_eq!(err, HomeError::template_not_found(name));
        let err = answered_alone(&mut fixture, backend.delete_template("acme", name)).await.unwrap_err();
        assert_eq!(err, HomeError::template_not_found(name));
    }
}

#[tokio::test]
async fn the_http_api_refuses_data_and_schemas_that_are_not_objects_with_a_400() {
    let (key, secret) = api_key("acme");
    let mut fixture = Fixture::synced(Vec::new()).await;
    fixture.keys.apply(secret);
    let state = AppState {
        backend: fixture.backend.clone(),
        public_url: PUBLIC_URL.to_owned(),
        metrics: Arc::new(crate::metrics::Metrics::new()),
        rate_limit: None,
        webhook_targets: None,
        server_font_families: Default::default(),
    };
    let post = |path: &str, body: Value| {
        Request::post(path)
            .header("authorization", format!("Bearer {key}"))
            .header("content-type", "application/json")
            .body(AxumBody::from(body.to_string()))
            .unwrap()
    };
    let requests = [
        (post("/v1/renders", json!({"template": {"source": "= Hi"}, "data": [1, 2]})), "data must be a JSON object"),
        (
            post("/v1/templates", json!({"name": "invoice", "source": "= Hi", "dataSchema": true})),
            "dataSchema must be a JSON object",
        ),
    ];
    for (request, message) in requests {
        let response = answered_alone(&mut fixture, app(state.clone()).oneshot(request)).await.unwrap();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        let body: Value =
            serde_json::from_slice(&axum::body::to_bytes(response.into_body(), 1 << 20).await.unwrap()).unwrap();
        assert_eq!(
            (body["error"]["code"].as_str(), body["error"]["message"].as_str()),
            (Some("INVALID_REQUEST"), Some(message))
        );
    }
}

#[test]
fn the_settle_timeout_takes_humantime_or_plain_seconds() {
    use clap::Parser;
    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        options: super::ApiOptions,
    }
    let required = ["api", "--s3-endpoint", "http://s3.test", "--s3-access-key", "a", "--s3-secret-key", "s"];
    let settle = |args: &[&str]| Cli::try_parse_from(required.iter().chain(args)).map(|cli| cli.options.settle_timeout);
    assert_eq!(settle(&[]).unwrap(), Duration::from_secs(2));
    assert_eq!(settle(&["--settle-timeout", "1"]).unwrap(), Duration::from_secs(1));
    assert_eq!(settle(&["--settle-timeout", "0.25"]).unwrap(), Duration::from_millis(250));
    assert_eq!(settle(&["--settle-timeout", "1500ms"]).unwrap(), Duration::from_millis(1500));
    assert!(settle(&["--settle-timeout", "0"]).is_err());
}
