//! `folio api` end to end on the real control plane (tests/support/control_plane.rs):
//! the real binary, acting as the chart's `folio-api` ServiceAccount (a TokenRequest
//! token, the chart's RBAC in force), serving the REST API over the cluster, with the
//! real operator (in this process, as the chart's operator ServiceAccount) rendering
//! what it creates and an S3 server in this process (`s3s-fs`). API keys are made
//! with `folio api keys` as the cluster's admin, the way a platform team would.

mod support;

use std::process::Stdio;
use std::time::Duration;

use folio::storage::S3Bucket;
use kube::api::{Api, DynamicObject, ListParams, Patch, PatchParams};
use reqwest::StatusCode;
use serde_json::{Value, json};
use support::cluster::{Operator, resource};
use support::control_plane::{self, ControlPlane};
use support::s3::{ACCESS_KEY as S3_ACCESS_KEY, SECRET_KEY as S3_SECRET_KEY, s3_server};
use support::{folio, kubeconfig};

/// Two tenants on the control plane, a bucket, the operator for the first tenant,
/// and a `folio api` process over them.
struct Cluster {
    plane: &'static ControlPlane,
    admin: kube::Client,
    acme: String,
    globex: String,
    bucket: S3Bucket,
    s3: String,
    api: std::process::Child,
    url: String,
    /// `folio api`'s kubeconfig: the chart's API ServiceAccount.
    api_kubeconfig: std::path::PathBuf,
    operator: Option<Operator>,
    http: reqwest::Client,
    _dir: tempfile::TempDir,
}

impl Cluster {
    async fn start() -> Cluster {
        let plane = control_plane::shared();
        let dir = tempfile::tempdir().unwrap();
        let acme = plane.namespace("acme").await;
        let globex = plane.namespace("globex").await;
        std::fs::create_dir_all(dir.path().join("s3")).unwrap();
        let s3 = s3_server(&dir.path().join("s3")).await;
        let bucket = S3Bucket::connect(&s3, "folio", S3_ACCESS_KEY, S3_SECRET_KEY).await.unwrap();
        let api_kubeconfig = plane.kubeconfig(dir.path(), &plane.api_token, &acme);
        let (api, url) = spawn_api(&api_kubeconfig, &s3).await;
        let operator = Operator::spawn(plane, &acme, &s3, "operator-0", &[]).await;
        let cluster = Cluster {
            plane,
            admin: plane.admin().await,
            acme,
            globex,
            bucket,
            s3,
            api,
            url,
            api_kubeconfig,
            operator: Some(operator),
            http: reqwest::Client::new(),
            _dir: dir,
        };
        cluster
            .eventually("/readyz answers 200", || async {
                cluster.http.get(format!("{}/readyz", cluster.url)).send().await.is_ok_and(|r| r.status() == 200)
            })
            .await;
        cluster
    }

    /// A new API key for `namespace`, made with `folio api keys create` as the admin.
    async fn key(&self, namespace: &str) -> String {
        let mut command = tokio::process::Command::from(folio());
        let out = command
            .args(["api", "keys", "create", "--namespace", namespace])
            .env("KUBECONFIG", self.plane.admin_kubeconfig())
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
        let waited = tokio::time::timeout(Duration::from_secs(30), async {
            while !check().await {
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
        });
        waited.await.unwrap_or_else(|_| panic!("timed out: {what}"));
    }

    fn api(&self, kind: &str, namespace: &str) -> Api<DynamicObject> {
        Api::namespaced_with(self.admin.clone(), namespace, &resource(kind))
    }

    /// `kind/name` in `namespace`, as the admin reads it.
    async fn get(&self, kind: &str, namespace: &str, name: &str) -> Option<Value> {
        let object = self.api(kind, namespace).get_opt(name).await.unwrap();
        object.map(|o| serde_json::to_value(o).unwrap())
    }

    /// Every `kind` in `namespace`.
    async fn list(&self, kind: &str, namespace: &str) -> Vec<Value> {
        let list = self.api(kind, namespace).list(&ListParams::default()).await.unwrap();
        list.items.into_iter().map(|o| serde_json::to_value(o).unwrap()).collect()
    }

    /// Server-side apply `object` into `namespace` as the admin.
    async fn apply(&self, namespace: &str, object: Value) {
        let kind = object["kind"].as_str().unwrap().to_owned();
        let name = object["metadata"]["name"].as_str().unwrap().to_owned();
        let params = PatchParams::apply("folio-test").force();
        self.api(&kind, namespace).patch(&name, &params, &Patch::Apply(&object)).await.unwrap();
    }
}

/// Start `folio api` with `kubeconfig` and the bucket at `s3`; the process and the URL
/// it announced.
async fn spawn_api(kubeconfig: &std::path::Path, s3: &str) -> (std::process::Child, String) {
    let mut api = support::dies_with_test(folio())
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
    let (ns, other) = (cluster.acme.clone(), cluster.globex.clone());
    let acme = cluster.key(&ns).await;
    let globex = cluster.key(&other).await;
    let secrets = cluster.list("Secret", &ns).await;
    assert!(secrets.iter().all(|s| !s.to_string().contains(&acme[6..])), "nothing stored holds a key itself");
    cluster
        .apply(
            &ns,
            json!({"apiVersion": "folio.dev/v1alpha1", "kind": "RenderAccount",
        "metadata": {"name": "default"}, "spec": {"credits": 100}}),
        )
        .await;

    let template = json!({"name": "invoice", "source": "= Invoice #json(\"data.json\").number\n#pagebreak()\nTerms"});
    let (status, _) = cluster.call("POST", "/v1/templates", &acme, Some(template.clone())).await;
    assert_eq!(status, StatusCode::CREATED);
    assert!(cluster.get("RenderTemplate", &ns, "invoice").await.is_some());
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
    let job = cluster.get("RenderJob", &ns, &id).await.expect("a RenderJob named by the id");
    assert_eq!(job["spec"]["templateRef"]["name"], "invoice");
    assert_eq!(job["metadata"]["annotations"]["folio.dev/idempotency-key"], "first-try");

    // A retry, by key or by external id, is the same job.
    let (status, again) = cluster.call("POST", "/v1/renders", &acme, Some(request)).await;
    assert_eq!((status, again["id"].as_str()), (StatusCode::OK, Some(id.as_str())));
    let (status, _) = cluster.call("GET", &format!("/v1/renders/{id}"), &globex, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "another tenant's job does not exist for it");
    let (_, log) = cluster.call("GET", "/v1/renders?externalId=order-1", &acme, None).await;
    assert_eq!(log["pagination"]["total"], 1);
    let (_, log) = cluster.call("GET", "/v1/renders", &globex, None).await;
    assert_eq!(log["pagination"]["total"], 0);

    // The operator renders it.
    let path = format!("/v1/renders/{id}");
    cluster
        .eventually("the job shows succeeded", || async {
            cluster.call("GET", &path, &acme, None).await.1["status"] == "succeeded"
        })
        .await;
    let (_, done) = cluster.call("GET", &path, &acme, None).await;
    assert_eq!((done["pageCount"].as_i64(), done["creditsUsed"].as_i64()), (Some(2), Some(2)), "{done:#}");
    let (status, pdf) = download(done["downloadUrl"].as_str().unwrap()).await;
    assert_eq!(status, StatusCode::OK);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("out.pdf"), &pdf).unwrap();
    assert_eq!(support::pdfinfo_pages(&dir.path().join("out.pdf")), 2);
    let response = cluster.http.get(format!("{}{path}/download", cluster.url)).bearer_auth(&acme).send().await.unwrap();
    assert_eq!(response.headers()["content-type"], "application/pdf");
    assert_eq!(response.bytes().await.unwrap().to_vec(), pdf);

    let (status, signed) =
        cluster.call("POST", &format!("{path}/signed-url"), &acme, Some(json!({"expiresIn": 3600}))).await;
    assert_eq!(status, StatusCode::OK, "{signed}");
    let share_url = signed["shareUrl"].as_str().unwrap().to_owned();
    assert_eq!(download(signed["signedUrl"].as_str().unwrap()).await, (StatusCode::OK, pdf.clone()));
    assert_eq!(download(&share_url).await, (StatusCode::OK, pdf.clone()));
    let (_, shares) = cluster.call("GET", "/v1/shares", &acme, None).await;
    assert_eq!(shares["pagination"]["total"], 1);
    let token = share_url.rsplit('/').next().unwrap().to_owned();
    let (status, _) = cluster.call("DELETE", &format!("/v1/shares/{token}"), &globex, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = cluster.call("DELETE", &format!("/v1/shares/{token}"), &acme, None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(download(&share_url).await.0, StatusCode::NOT_FOUND, "revoked at once");

    let (status, body) = cluster.call("POST", &format!("{path}/cancel"), &acme, None).await;
    assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::CONFLICT, Some("ALREADY_FINISHED")));
    let (status, _) = cluster.call("DELETE", &path, &acme, None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    cluster
        .eventually("the job and its PDF are gone", || async {
            cluster.get("RenderJob", &ns, &id).await.is_none()
                && cluster.bucket.get(&folio::storage::output_key(&ns, &id)).await.unwrap().is_none()
        })
        .await;
    let (status, _) = cluster.call("GET", &path, &acme, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let mut cluster = cluster;
    if let Some(operator) = cluster.operator.take() {
        operator.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_secret_is_a_secret_owned_by_its_job_and_a_refused_create_leaves_nothing() {
    let cluster = Cluster::start().await;
    let ns = cluster.globex.clone();
    let key = cluster.key(&ns).await;
    let request =
        json!({"template": {"source": "= Hi"}, "webhook": {"url": "https://hooks.example/x", "secret": "s3cret"}});
    let (status, created) = cluster.call("POST", "/v1/renders", &key, Some(request.clone())).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{created}");
    let id = created["id"].as_str().unwrap();
    let job = cluster.get("RenderJob", &ns, id).await.unwrap();
    assert!(!job.to_string().contains("s3cret"));
    let secret_name = job["spec"]["webhook"]["secretRef"]["name"].as_str().unwrap();
    assert_eq!(job["spec"]["webhook"]["secretRef"]["key"], "secret");
    let secret = cluster.get("Secret", &ns, secret_name).await.expect("the webhook Secret");
    assert_eq!(secret_text(&secret, "secret"), "s3cret");
    assert_eq!(secret["metadata"]["ownerReferences"][0]["uid"], job["metadata"]["uid"]);
    assert!(!created.to_string().contains("s3cret"), "the answer never shows the secret");

    // A quota of no more RenderJobs: the API server refuses the next create.
    cluster
        .apply(
            &ns,
            json!({"apiVersion": "v1", "kind": "ResourceQuota", "metadata": {"name": "no-more-jobs"},
            "spec": {"hard": {"count/renderjobs.folio.dev": "0"}}}),
        )
        .await;
    cluster
        .eventually("the quota controller has taken up the quota", || async {
            let quota = cluster.get("ResourceQuota", &ns, "no-more-jobs").await.unwrap();
            quota["status"]["hard"].is_object()
        })
        .await;
    let secrets_before = cluster.list("Secret", &ns).await.len();
    let (status, body) = cluster.call("POST", "/v1/renders", &key, Some(request)).await;
    assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::TOO_MANY_REQUESTS, Some("QUOTA_EXCEEDED")));
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("exceeded quota: no-more-jobs"), "the client is told why: {body}");
    assert_eq!(cluster.list("RenderJob", &ns).await.len(), 1);
    cluster
        .eventually("the webhook Secret was removed", || async {
            cluster.list("Secret", &ns).await.len() == secrets_before
        })
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blocked_job_resumes_only_when_the_account_can_pay() {
    let cluster = Cluster::start().await;
    let ns = cluster.acme.clone();
    let acme = cluster.key(&ns).await;
    let account = |credits: i64| {
        json!({"apiVersion": "folio.dev/v1alpha1", "kind": "RenderAccount",
               "metadata": {"name": "default"}, "spec": {"credits": credits}})
    };
    cluster.apply(&ns, account(1)).await;
    let three_pages = "= One\n#pagebreak()\n= Two\n#pagebreak()\n= Three";
    let (_, created) =
        cluster.call("POST", "/v1/renders", &acme, Some(json!({"template": {"source": three_pages}}))).await;
    let id = created["id"].as_str().unwrap().to_owned();
    let path = format!("/v1/renders/{id}");
    cluster
        .eventually("the job shows blocked", || async {
            cluster.call("GET", &path, &acme, None).await.1["status"] == "blocked"
        })
        .await;
    let (_, account_view) = cluster.call("GET", "/v1/account", &acme, None).await;
    assert_eq!(account_view["creditsRemaining"].as_i64(), Some(1), "{account_view}");

    let (status, body) = cluster.call("POST", &format!("{path}/resume"), &acme, None).await;
    assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::CONFLICT, Some("INSUFFICIENT_CREDITS")));
    assert_eq!(
        body["error"]["message"],
        "the render costs 3 credits and the account has 1 left; it continues when credits are added"
    );

    // A top-up frees it: the operator completes it without rendering again.
    cluster.apply(&ns, account(10)).await;
    cluster
        .eventually("the job succeeds", || async {
            cluster.call("GET", &path, &acme, None).await.1["status"] == "succeeded"
        })
        .await;
    let (_, done) = cluster.call("GET", &path, &acme, None).await;
    assert_eq!((done["creditsUsed"].as_i64(), done["creditsRemaining"].as_i64()), (Some(3), Some(7)), "{done:#}");
    assert_eq!(cluster.plane.kubelet.started_in(&ns).len(), 1, "rendered once");
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
    let ns = cluster.globex.clone();
    let key = cluster.key(&ns).await;
    let (second, second_url) = spawn_api(&cluster.api_kubeconfig, &cluster.s3).await;
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
    let jobs = cluster.list("RenderJob", &ns).await;
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
