//! `folio api` end to end: the real binary, serving the REST API over the stand-in
//! Kubernetes API server (tests/support/apiserver.rs) and an in-process S3 server. No
//! operator runs: where a job's life moves on, the test writes the status the
//! operator would write, as another client of the API server.
//!
//! Verified only against stand-ins: the apiserver (no RBAC, admission, or managed
//! fields; Secrets keep `stringData` as written) and S3 (`s3s-fs`, not MinIO).

mod support;

use std::process::Stdio;
use std::time::Duration;

use folio::storage::{S3Bucket, output_key};
use reqwest::StatusCode;
use serde_json::{Value, json};
use support::apiserver::StandInApiServer;
use support::s3::{ACCESS_KEY as S3_ACCESS_KEY, SECRET_KEY as S3_SECRET_KEY, s3_server};
use support::{folio, kubeconfig};

const JOBS: (&str, &str) = ("folio.dev/v1alpha1", "renderjobs");
const SECRETS: (&str, &str) = ("v1", "secrets");

/// The stand-in cluster, a bucket and a `folio api` process over them.
struct Cluster {
    standin: StandInApiServer,
    bucket: S3Bucket,
    s3: String,
    api: std::process::Child,
    url: String,
    kubeconfig: std::path::PathBuf,
    http: reqwest::Client,
    _dir: tempfile::TempDir,
}

impl Cluster {
    async fn start() -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let standin = StandInApiServer::start().await;
        std::fs::create_dir_all(dir.path().join("s3")).unwrap();
        let s3 = s3_server(&dir.path().join("s3")).await;
        let bucket = S3Bucket::connect(&s3, "folio", S3_ACCESS_KEY, S3_SECRET_KEY).await.unwrap();
        let kubeconfig = kubeconfig(dir.path(), &standin.url());
        let (api, url) = spawn_api(&kubeconfig, &s3).await;
        let cluster = Cluster { standin, bucket, s3, api, url, kubeconfig, http: reqwest::Client::new(), _dir: dir };
        cluster
            .eventually("/readyz answers 200", || async {
                cluster.http.get(format!("{}/readyz", cluster.url)).send().await.is_ok_and(|r| r.status() == 200)
            })
            .await;
        cluster
    }

    /// A new API key for `namespace`, made with `folio api keys create`.
    async fn key(&self, namespace: &str) -> String {
        let mut command = tokio::process::Command::from(folio());
        let out = command
            .args(["api", "keys", "create", "--namespace", namespace])
            .env("KUBECONFIG", &self.kubeconfig)
            .output()
            .await
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let key = String::from_utf8(out.stdout).unwrap().trim().to_owned();
        // The facade learns of new keys through its watch.
        self.eventually("the new key works", || async {
            self.call("GET", "/v1/account", &key, None).await.0 == StatusCode::OK
        })
        .await;
        key
    }

    async fn call(&self, method: &str, path: &str, key: &str, body: Option<Value>) -> (StatusCode, Value) {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut request = self.http.request(method, format!("{}{path}", self.url)).bearer_auth(key);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        let bytes = response.bytes().await.unwrap();
        (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
    }

    async fn eventually<F: std::future::Future<Output = bool>>(&self, what: &str, mut check: impl FnMut() -> F) {
        let waited = tokio::time::timeout(Duration::from_secs(15), async {
            while !check().await {
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
        });
        waited.await.unwrap_or_else(|_| panic!("timed out: {what}"));
    }

    /// Write a job's status as the operator would.
    fn set_status(&self, namespace: &str, id: &str, status: Value) {
        let mut job = self.standin.get(JOBS.0, JOBS.1, namespace, id).expect("the RenderJob exists");
        job["status"] = status;
        self.standin.put_object(JOBS.0, JOBS.1, job);
    }
}

/// Start `folio api` over the stand-in of `kubeconfig` and the bucket at `s3`; the
/// process and the URL it announced.
async fn spawn_api(kubeconfig: &std::path::Path, s3: &str) -> (std::process::Child, String) {
    let mut api = folio()
        .args(["api", "--listen", "127.0.0.1:0", "--settle-timeout", "1", "--s3-endpoint", s3])
        .args(["--s3-access-key", S3_ACCESS_KEY, "--s3-secret-key", S3_SECRET_KEY])
        .env("KUBECONFIG", kubeconfig)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = api.stdout.take().unwrap();
    let line = tokio::task::spawn_blocking(move || {
        let mut line = String::new();
        std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line).unwrap();
        line
    })
    .await
    .unwrap();
    let url = line
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .unwrap_or_else(|| panic!("folio api did not announce its address: {line:?}"))
        .to_owned();
    (api, url)
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = self.api.kill();
        let _ = self.api.wait();
    }
}

async fn download(url: &str) -> (StatusCode, Vec<u8>) {
    let response = reqwest::get(url).await.unwrap();
    (response.status(), response.bytes().await.unwrap().to_vec())
}

fn secret_text(secret: &Value, field: &str) -> String {
    use base64::Engine as _;
    let encoded = secret["data"][field].as_str().unwrap_or_else(|| panic!("no data.{field} in {secret}"));
    String::from_utf8(base64::engine::general_purpose::STANDARD.decode(encoded).unwrap()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_render_goes_from_request_to_shared_pdf_over_the_cluster() {
    let cluster = Cluster::start().await;
    let acme = cluster.key("acme").await;
    let globex = cluster.key("globex").await;
    let keys = cluster.standin.list(SECRETS.0, SECRETS.1);
    assert!(keys.iter().all(|s| !s.to_string().contains(&acme[6..])), "no Secret holds a key itself");

    let template = json!({"name": "invoice", "source": "= Invoice"});
    let (status, _) = cluster.call("POST", "/v1/templates", &acme, Some(template.clone())).await;
    assert_eq!(status, StatusCode::CREATED);
    assert!(cluster.standin.get("folio.dev/v1alpha1", "rendertemplates", "acme", "invoice").is_some());
    let (status, body) = cluster.call("POST", "/v1/templates", &acme, Some(template)).await;
    assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::CONFLICT, Some("TEMPLATE_EXISTS")));

    let request = json!({"templateId": "invoice", "data": {"number": "1"}, "externalId": "order-1"});
    let response = cluster
        .http
        .post(format!("{}/v1/renders", cluster.url))
        .bearer_auth(&acme)
        .header("Idempotency-Key", "first-try")
        .json(&request)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let created: Value = response.json().await.unwrap();
    let id = created["id"].as_str().unwrap().to_owned();
    assert_eq!(created["status"], "queued");
    let job = cluster.standin.get(JOBS.0, JOBS.1, "acme", &id).expect("a RenderJob named by the id");
    assert_eq!(job["spec"]["templateRef"]["name"], "invoice");
    assert_eq!(job["metadata"]["annotations"]["folio.dev/idempotency-key"], "first-try");

    // A retry, by key or by external id, is the same job; a read right after the write sees it.
    let (status, again) = cluster.call("POST", "/v1/renders", &acme, Some(request)).await;
    assert_eq!((status, again["id"].as_str()), (StatusCode::OK, Some(id.as_str())));
    let (status, polled) = cluster.call("GET", &format!("/v1/renders/{id}"), &acme, None).await;
    assert_eq!((status, polled["status"].as_str()), (StatusCode::OK, Some("queued")));
    let (status, _) = cluster.call("GET", &format!("/v1/renders/{id}"), &globex, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "another tenant's job does not exist for it");
    let (_, log) = cluster.call("GET", "/v1/renders?externalId=order-1", &acme, None).await;
    assert_eq!(log["pagination"]["total"], 1);
    let (_, log) = cluster.call("GET", "/v1/renders", &globex, None).await;
    assert_eq!(log["pagination"]["total"], 0);

    // The operator renders it.
    let pdf = b"%PDF-1.7 invoice".to_vec();
    cluster.bucket.put(&output_key("acme", &id), pdf.clone()).await.unwrap();
    cluster.set_status(
        "acme",
        &id,
        json!({"phase": "Succeeded", "outputKey": output_key("acme", &id), "pageCount": 1, "totalBytes": pdf.len(),
               "creditsUsed": 1}),
    );
    let path = format!("/v1/renders/{id}");
    cluster
        .eventually("the job shows succeeded", || async {
            cluster.call("GET", &path, &acme, None).await.1["status"] == "succeeded"
        })
        .await;
    let (_, done) = cluster.call("GET", &path, &acme, None).await;
    assert_eq!(done["pageCount"], 1);
    assert_eq!(download(done["downloadUrl"].as_str().unwrap()).await, (StatusCode::OK, pdf.clone()));
    let response = cluster.http.get(format!("{}{path}/download", cluster.url)).bearer_auth(&acme).send().await.unwrap();
    assert_eq!(response.headers()["content-type"], "application/pdf");
    assert_eq!(response.bytes().await.unwrap().to_vec(), pdf);

    let (status, signed) =
        cluster.call("POST", &format!("{path}/signed-url"), &acme, Some(json!({"expiresIn": 3600}))).await;
    assert_eq!(status, StatusCode::OK);
    let share_url = signed["shareUrl"].as_str().unwrap().to_owned();
    assert_eq!(download(signed["signedUrl"].as_str().unwrap()).await, (StatusCode::OK, pdf.clone()));
    assert_eq!(download(&share_url).await, (StatusCode::OK, pdf.clone()));
    let (_, shares) = cluster.call("GET", "/v1/shares", &acme, None).await;
    assert_eq!(shares["pagination"]["total"], 1);
    let token = share_url.rsplit('/').next().unwrap().to_owned();
    let share = cluster
        .standin
        .list(SECRETS.0, SECRETS.1)
        .into_iter()
        .find(|s| s["metadata"]["labels"]["folio.dev/share"] == "true");
    let share = share.expect("a share-link Secret");
    assert!(!share["metadata"]["name"].as_str().unwrap().contains(&token));
    assert_eq!(share["metadata"]["ownerReferences"][0]["name"], id.as_str());
    let (status, _) = cluster.call("DELETE", &format!("/v1/shares/{token}"), &globex, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = cluster.call("DELETE", &format!("/v1/shares/{token}"), &acme, None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(download(&share_url).await.0, StatusCode::NOT_FOUND, "revoked at once");

    let (status, body) = cluster.call("POST", &format!("{path}/cancel"), &acme, None).await;
    assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::CONFLICT, Some("ALREADY_FINISHED")));
    let (status, _) = cluster.call("DELETE", &path, &acme, None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert!(cluster.standin.get(JOBS.0, JOBS.1, "acme", &id).is_none());
    let (status, _) = cluster.call("GET", &path, &acme, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let share_name = share["metadata"]["name"].as_str().unwrap().to_owned();
    cluster
        .eventually("the job's share links go with it", || async {
            cluster.standin.get(SECRETS.0, SECRETS.1, "acme", &share_name).is_none()
        })
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_secret_is_a_secret_owned_by_its_job_and_a_failed_create_leaves_nothing() {
    let cluster = Cluster::start().await;
    let acme = cluster.key("acme").await;
    let request =
        json!({"template": {"source": "= Hi"}, "webhook": {"url": "https://hooks.example/x", "secret": "s3cret"}});
    let (status, created) = cluster.call("POST", "/v1/renders", &acme, Some(request.clone())).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let id = created["id"].as_str().unwrap();
    let job = cluster.standin.get(JOBS.0, JOBS.1, "acme", id).unwrap();
    assert!(!job.to_string().contains("s3cret"));
    let secret_name = job["spec"]["webhook"]["secretRef"]["name"].as_str().unwrap();
    assert_eq!(job["spec"]["webhook"]["secretRef"]["key"], "secret");
    let secret = cluster.standin.get(SECRETS.0, SECRETS.1, "acme", secret_name).expect("the webhook Secret");
    assert_eq!(secret_text(&secret, "secret"), "s3cret");
    assert_eq!(secret["metadata"]["ownerReferences"][0]["uid"], job["metadata"]["uid"]);
    assert!(!created.to_string().contains("s3cret"), "the answer never shows the secret");

    let secrets_before = cluster.standin.list(SECRETS.0, SECRETS.1).len();
    let jobs_before = cluster.standin.list(JOBS.0, JOBS.1).len();
    cluster.standin.fail_next("POST", "/renderjobs", 500);
    let (status, body) = cluster.call("POST", "/v1/renders", &acme, Some(request)).await;
    assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::SERVICE_UNAVAILABLE, Some("UNAVAILABLE")));
    assert_eq!(cluster.standin.list(JOBS.0, JOBS.1).len(), jobs_before);
    assert_eq!(cluster.standin.list(SECRETS.0, SECRETS.1).len(), secrets_before, "the webhook Secret was removed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blocked_job_resumes_only_when_the_account_can_pay() {
    let cluster = Cluster::start().await;
    let acme = cluster.key("acme").await;
    let account = |credits: i64| {
        json!({"apiVersion": "folio.dev/v1alpha1", "kind": "RenderAccount",
               "metadata": {"name": "default", "namespace": "acme"},
               "spec": {"credits": credits}, "status": {"creditsUsed": 1}})
    };
    cluster.standin.put_object("folio.dev/v1alpha1", "renderaccounts", account(2));
    let (_, created) = cluster.call("POST", "/v1/renders", &acme, Some(json!({"template": {"source": "= Hi"}}))).await;
    let id = created["id"].as_str().unwrap().to_owned();
    cluster.set_status("acme", &id, json!({"phase": "Blocked", "pageCount": 3, "totalBytes": 1000}));
    let path = format!("/v1/renders/{id}");
    cluster
        .eventually("the job shows blocked", || async {
            cluster.call("GET", &path, &acme, None).await.1["status"] == "blocked"
        })
        .await;
    let (_, account_view) = cluster.call("GET", "/v1/account", &acme, None).await;
    assert_eq!((account_view["creditsRemaining"].as_i64(), account_view["blockedJobs"].as_i64()), (Some(1), Some(1)));

    let (status, body) = cluster.call("POST", &format!("{path}/resume"), &acme, None).await;
    assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::CONFLICT, Some("INSUFFICIENT_CREDITS")));
    assert_eq!(
        body["error"]["message"],
        "the render costs 3 credits and the account has 1 left; it continues when credits are added"
    );
    assert!(cluster.standin.get(JOBS.0, JOBS.1, "acme", &id).unwrap()["metadata"]["annotations"].is_null());

    cluster.standin.put_object("folio.dev/v1alpha1", "renderaccounts", account(10));
    cluster
        .eventually("the top-up reaches the facade", || async {
            cluster.call("GET", "/v1/account", &acme, None).await.1["creditsRemaining"] == 9
        })
        .await;
    let (status, resumed) = cluster.call("POST", &format!("{path}/resume"), &acme, None).await;
    assert_eq!(status, StatusCode::OK, "{resumed}");
    let job = cluster.standin.get(JOBS.0, JOBS.1, "acme", &id).unwrap();
    let requested = job["metadata"]["annotations"]["folio.dev/resume-requested"].as_str().unwrap();
    assert!(requested.parse::<jiff::Timestamp>().is_ok(), "{requested}");
}

#[test]
fn keys_need_a_namespace_name() {
    let dir = tempfile::tempdir().unwrap();
    let config = kubeconfig(dir.path(), "http://127.0.0.1:9");
    let out =
        folio().args(["api", "keys", "create", "-n", "Not_A_Namespace"]).env("KUBECONFIG", config).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a namespace name"));
}

/// Two replicas of the API get the same request (same `Idempotency-Key`) at once, as
/// a client retrying through a load balancer would: one job, one id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_idempotency_key_on_two_replicas_makes_one_job() {
    let cluster = Cluster::start().await;
    let key = cluster.key("acme").await;
    let (second, second_url) = spawn_api(&cluster.kubeconfig, &cluster.s3).await;
    let _second = Replica(second);
    cluster
        .eventually("the second replica is ready", || async {
            cluster.http.get(format!("{second_url}/readyz")).send().await.is_ok_and(|r| r.status() == 200)
        })
        .await;
    let post = |url: String| {
        let request = cluster
            .http
            .post(format!("{url}/v1/renders"))
            .bearer_auth(&key)
            .header("Idempotency-Key", "order-7890-attempt")
            .json(&json!({"template": {"source": "= Once"}, "data": {}}));
        async move {
            let response = request.send().await.unwrap();
            (response.status(), response.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    let (first, other) = tokio::join!(post(cluster.url.clone()), post(second_url.clone()));
    assert!(first.0.is_success() && other.0.is_success(), "{first:?} {other:?}");
    assert_eq!(first.1["id"], other.1["id"], "both replicas answer with the same job");
    let jobs = cluster.standin.list(JOBS.0, JOBS.1);
    assert_eq!(jobs.len(), 1, "one RenderJob: {jobs:#?}");
}

/// A second `folio api` process, stopped when dropped (also when a test fails).
struct Replica(std::process::Child);

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
