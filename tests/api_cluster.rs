//! `folio api` end to end on the real control plane (tests/support/control_plane.rs):
//! the real binary, acting as the chart's `folio-api` ServiceAccount (a TokenRequest
//! token, the chart's RBAC in force), serving the REST API over the cluster, with the
//! real operator (in this process, as the chart's operator ServiceAccount) rendering
//! what it creates and an S3 server in this process (`s3s-fs`). API keys are made
//! (and revoked, and moved from the Secrets of earlier versions) with `folio api keys`
//! as the cluster's admin, the way a platform team would. What the chart's
//! ServiceAccounts may do with Secrets is tested in tests/security.rs.

mod support;

use std::process::Stdio;
use std::time::Duration;

use folio::cluster::api::objects;
use folio::resources::{RenderApiKey, RenderShare};
use folio::storage::S3Bucket;
use kube::api::{Api, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use reqwest::StatusCode;
use serde_json::{Value, json};
use support::cluster::{Operator, resource};
use support::control_plane::{self, ControlPlane};
use support::s3::{ACCESS_KEY as S3_ACCESS_KEY, SECRET_KEY as S3_SECRET_KEY, s3_server};
use support::webhook_receiver::Receiver;
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
        Cluster::start_with(&[]).await
    }

    /// The same, the operator started with `operator_args`.
    async fn start_with(operator_args: &[&str]) -> Cluster {
        let plane = control_plane::shared();
        let dir = tempfile::tempdir().unwrap();
        let acme = plane.namespace("acme").await;
        let globex = plane.namespace("globex").await;
        std::fs::create_dir_all(dir.path().join("s3")).unwrap();
        let s3 = s3_server(&dir.path().join("s3")).await;
        let bucket = S3Bucket::connect(&s3, "folio", S3_ACCESS_KEY, S3_SECRET_KEY).await.unwrap();
        let api_kubeconfig = plane.kubeconfig(dir.path(), &plane.api_token, &acme);
        let (api, url) = spawn_api(&api_kubeconfig, &s3).await;
        let operator = Operator::spawn(plane, &acme, &s3, "operator-0", operator_args).await;
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

    /// `folio api keys ARGS` as the admin; its standard output (it must succeed).
    async fn keys(&self, args: &[&str]) -> String {
        let mut command = tokio::process::Command::from(folio());
        let out = command
            .args(["api", "keys"])
            .args(args)
            .env("KUBECONFIG", self.plane.admin_kubeconfig())
            .output()
            .await
            .unwrap();
        assert!(out.status.success(), "folio api keys {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    }

    /// A new API key for `namespace`, made with `folio api keys create` as the admin.
    async fn key(&self, namespace: &str) -> String {
        let key = self.keys(&["create", "--namespace", namespace]).await.trim().to_owned();
        self.await_key_status(&key, StatusCode::OK).await;
        key
    }

    /// Wait until `key` gets `status` from `GET /v1/account` (the facade learns of new
    /// and revoked keys through its watch).
    async fn await_key_status(&self, key: &str, status: StatusCode) {
        self.eventually(&format!("the key gets {status}"), || async {
            self.call("GET", "/v1/account", key, None).await.0 == status
        })
        .await;
    }

    /// Every RenderAPIKey and RenderShare of `namespace`, as JSON text.
    async fn key_and_share_objects(&self, namespace: &str) -> String {
        let all = ListParams::default();
        let keys = Api::<RenderApiKey>::namespaced(self.admin.clone(), namespace).list(&all).await.unwrap();
        let shares = Api::<RenderShare>::namespaced(self.admin.clone(), namespace).list(&all).await.unwrap();
        format!("{}\n{}", serde_json::to_string(&keys.items).unwrap(), serde_json::to_string(&shares.items).unwrap())
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

    /// Give `namespace`'s account (`default`) `credits` credits, as the admin.
    async fn grant(&self, namespace: &str, credits: i64) {
        let account = json!({"apiVersion": "folio.dev/v1alpha1", "kind": "RenderAccount",
            "metadata": {"name": "default"}, "spec": {"credits": credits}});
        self.apply(namespace, account).await;
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
        // The tests' webhook receivers listen on loopback, as the operator is told too.
        .arg("--allow-private-targets")
        .env("KUBECONFIG", kubeconfig)
        .env("RUST_LOG", "warn,tower_http=off")
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

impl Cluster {
    /// A ResourceQuota `name` in `namespace` allowing none of `resource`, once the
    /// quota controller has counted what is there (it is enforced from then on).
    async fn quota(&self, namespace: &str, name: &str, resource: &str) {
        let quota = json!({"apiVersion": "v1", "kind": "ResourceQuota", "metadata": {"name": name},
            "spec": {"hard": {resource: "0"}}});
        self.apply(namespace, quota).await;
        self.eventually("the quota controller has taken up the quota", || async {
            let quota = self.get("ResourceQuota", namespace, name).await.unwrap();
            quota["status"]["used"][resource].is_string()
        })
        .await;
    }
}

/// HMAC-SHA256 of `body` under `secret`, hex: what a receiver checks
/// `X-Folio-Signature` against.
fn hmac_sha256_hex(secret: &str, body: &[u8]) -> String {
    use hmac::Mac as _;
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
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
    let stored = cluster.key_and_share_objects(&ns).await;
    assert!(stored.contains(&folio::api_keys::hash(&acme)), "a RenderAPIKey holds the key's hash: {stored}");
    assert!(!stored.contains(&acme[6..]), "nothing stored holds a key itself");
    assert!(cluster.list("Secret", &ns).await.is_empty(), "keys are no Secrets");
    cluster.grant(&ns, 100).await;

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
    let shown = shares["data"][0]["token"].as_str().unwrap();
    assert_eq!(shown, format!("{}\u{2026}", &token[..12]), "a listing shows the token's prefix only: {shares}");
    assert!(shares["data"][0].get("shareUrl").is_none(), "no link that could not open: {shares}");
    let stored = cluster.key_and_share_objects(&ns).await;
    assert!(stored.contains(&objects::secret_hash(&token)) && !stored.contains(&token), "a share keeps its hash only");
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
                && cluster
                    .bucket
                    .get(&folio::storage::output_key(&ns, &id, folio::resources::OutputFormat::Pdf))
                    .await
                    .unwrap()
                    .is_none()
        })
        .await;
    let (status, _) = cluster.call("GET", &path, &acme, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // The admin revokes the key: it stops working, the other tenant's goes on.
    let name = objects::api_key_name(&folio::api_keys::hash(&acme));
    let listed = cluster.keys(&["list", "-n", &ns]).await;
    assert!(listed.contains(&name) && listed.contains(&acme[..12]), "{listed}");
    cluster.keys(&["revoke", "-n", &ns, &name]).await;
    cluster.await_key_status(&acme, StatusCode::UNAUTHORIZED).await;
    assert_eq!(cluster.call("GET", "/v1/account", &globex, None).await.0, StatusCode::OK);
    let revoked = cluster.keys(&["list", "-n", &ns]).await;
    assert!(revoked.lines().any(|l| l.contains(&name) && !l.trim_end().ends_with('-')), "revoked at: {revoked}");
    let mut cluster = cluster;
    if let Some(operator) = cluster.operator.take() {
        operator.abort();
    }
}

/// A webhook secret given in the request is kept in a Secret that `folio api` creates
/// after the job, owned by it; the operator signs deliveries with it. A request whose
/// job or Secret the API server refuses leaves neither behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_is_signed_with_the_secret_given_and_a_refused_create_leaves_nothing() {
    let cluster = Cluster::start_with(&["--allow-private-targets"]).await;
    let ns = cluster.acme.clone();
    let key = cluster.key(&ns).await;
    let receiver = Receiver::start().await;
    let request = json!({"template": {"source": "= Hi"}, "webhook": {"url": receiver.url, "secret": "s3cret"}});
    let (status, created) = cluster.call("POST", "/v1/renders", &key, Some(request)).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{created}");
    assert!(!created.to_string().contains("s3cret"), "the answer never shows the secret");
    let id = created["id"].as_str().unwrap();
    let job = cluster.get("RenderJob", &ns, id).await.unwrap();
    assert!(!job.to_string().contains("s3cret"));
    let secret_name = job["spec"]["webhook"]["secretRef"]["name"].as_str().unwrap();
    assert_eq!(job["spec"]["webhook"]["secretRef"]["key"], "secret");
    let secret = cluster.get("Secret", &ns, secret_name).await.expect("the webhook Secret");
    assert_eq!(secret_text(&secret, "secret"), "s3cret");
    assert_eq!(secret["metadata"]["ownerReferences"][0]["uid"], job["metadata"]["uid"]);

    // The operator renders the job and posts its terminal event, signed with "s3cret".
    receiver.wait_for(1).await;
    let delivery = receiver.accepted().await.remove(0);
    assert_eq!(delivery.body["renderId"], id);
    assert_eq!(delivery.body["status"], "succeeded", "{:#}", delivery.body);
    let signature = delivery.headers["x-folio-signature"].to_str().unwrap();
    assert_eq!(signature, hmac_sha256_hex("s3cret", &delivery.raw), "signed with the secret given in the POST");
    assert_ne!(signature, hmac_sha256_hex("another", &delivery.raw));

    // No Secret may be created (a quota of none): the job made first is deleted again,
    // even when an operator has picked it up meanwhile.
    let other = cluster.globex.clone();
    let globex = cluster.key(&other).await;
    let second_operator = Operator::spawn(cluster.plane, &other, &cluster.s3, "operator-1", &[]).await;
    let request =
        json!({"template": {"source": "= Hi"}, "webhook": {"url": "https://hooks.example/x", "secret": "s3cret"}});
    cluster.quota(&other, "no-more-secrets", "secrets").await;
    let (status, body) = cluster.call("POST", "/v1/renders", &globex, Some(request.clone())).await;
    assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::FORBIDDEN, Some("QUOTA_EXCEEDED")));
    assert!(
        body["error"]["message"].as_str().unwrap_or_default().contains("exceeded quota: no-more-secrets"),
        "{body}"
    );
    cluster
        .eventually("the job whose Secret was refused is gone", || async {
            cluster.list("RenderJob", &other).await.is_empty()
        })
        .await;
    assert!(cluster.list("Secret", &other).await.is_empty());
    let quotas = cluster.api("ResourceQuota", &other);
    quotas.delete("no-more-secrets", &Default::default()).await.unwrap();

    // No more RenderJobs: the API server refuses the job, and no Secret is made.
    cluster.quota(&other, "no-more-jobs", "count/renderjobs.folio.dev").await;
    let (status, body) = cluster.call("POST", "/v1/renders", &globex, Some(request)).await;
    assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::FORBIDDEN, Some("QUOTA_EXCEEDED")));
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("exceeded quota: no-more-jobs"), "the client is told why: {body}");
    assert!(cluster.list("RenderJob", &other).await.is_empty());
    assert!(cluster.list("Secret", &other).await.is_empty());
    second_operator.abort();
    let mut cluster = cluster;
    if let Some(operator) = cluster.operator.take() {
        operator.abort();
    }
}

/// Keys and share links kept in Secrets by earlier versions keep working once an admin
/// has run `folio api keys migrate`, which moves them to RenderAPIKeys and RenderShares
/// and deletes the Secrets; running it again does no harm.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_and_share_links_kept_in_secrets_keep_working_after_migrate() {
    let cluster = Cluster::start().await;
    let ns = cluster.acme.clone();
    let secrets: Api<k8s_openapi::api::core::v1::Secret> = Api::namespaced(cluster.admin.clone(), &ns);
    // An API key as the earlier `folio api keys create` made it.
    let key = folio::api_keys::generate();
    let key_secret_name = objects::api_key_name(&key.hash);
    let old_key = json!({"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
        "metadata": {"name": key_secret_name, "labels": {"folio.dev/api-key": "true"},
                     "annotations": {"folio.dev/key-prefix": key.prefix}},
        "stringData": {"hash": key.hash}});
    secrets.create(&PostParams::default(), &serde_json::from_value(old_key).unwrap()).await.unwrap();
    // folio api reads no Secret: until the migration the key is unknown to it.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(cluster.call("GET", "/v1/account", &key.plaintext, None).await.0, StatusCode::UNAUTHORIZED);

    let out = cluster.keys(&["migrate"]).await;
    assert!(out.contains(&format!("Secret {ns}/{key_secret_name} -> RenderAPIKey {ns}/{key_secret_name}")), "{out}");
    cluster.await_key_status(&key.plaintext, StatusCode::OK).await;
    assert!(secrets.get_opt(&key_secret_name).await.unwrap().is_none(), "the old Secret is deleted");
    let migrated = Api::<RenderApiKey>::namespaced(cluster.admin.clone(), &ns).get(&key_secret_name).await.unwrap();
    assert_eq!(
        (migrated.spec.key_hash.as_str(), migrated.spec.prefix.as_str()),
        (key.hash.as_str(), key.prefix.as_str())
    );

    // A share link as the earlier `folio api` made it, of a job rendered meanwhile.
    let (status, created) =
        cluster.call("POST", "/v1/renders", &key.plaintext, Some(json!({"template": {"source": "= Shared"}}))).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{created}");
    let id = created["id"].as_str().unwrap().to_owned();
    let path = format!("/v1/renders/{id}");
    cluster
        .eventually("the job succeeds", || async {
            cluster.call("GET", &path, &key.plaintext, None).await.1["status"] == "succeeded"
        })
        .await;
    let job = cluster.get("RenderJob", &ns, &id).await.unwrap();
    let token = folio::port::new_share_token();
    let share_name = objects::share_name(&token);
    let old_share = json!({"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
        "metadata": {"name": share_name, "labels": {"folio.dev/share": "true"},
            "annotations": {"folio.dev/render-job": id, "folio.dev/expires-at": "2099-01-01T00:00:00Z"},
            "ownerReferences": [{"apiVersion": "folio.dev/v1alpha1", "kind": "RenderJob", "name": id,
                                 "uid": job["metadata"]["uid"]}]},
        "stringData": {"token": token}});
    secrets.create(&PostParams::default(), &serde_json::from_value(old_share).unwrap()).await.unwrap();
    let share_url = format!("{}/v1/share/{token}", cluster.url);
    assert_eq!(download(&share_url).await.0, StatusCode::NOT_FOUND, "not yet migrated");

    let out = cluster.keys(&["migrate"]).await;
    assert!(out.contains(&format!("RenderShare {ns}/{share_name}")), "{out}");
    cluster
        .eventually("the migrated share link opens the PDF", || async {
            download(&share_url).await.0 == StatusCode::OK
        })
        .await;
    assert!(cluster.list("Secret", &ns).await.is_empty(), "every old Secret is deleted");
    let share = Api::<RenderShare>::namespaced(cluster.admin.clone(), &ns).get(&share_name).await.unwrap();
    assert_eq!(share.metadata.owner_references.unwrap()[0].uid, job["metadata"]["uid"].as_str().unwrap());
    assert!(!cluster.key_and_share_objects(&ns).await.contains(&token), "the token is kept as a hash only");
    let (status, _) = cluster.call("DELETE", &format!("/v1/shares/{token}"), &key.plaintext, None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(download(&share_url).await.0, StatusCode::NOT_FOUND, "revoked at once");
    let out = cluster.keys(&["migrate"]).await;
    assert!(out.contains("0 Secrets were copied"), "nothing left to migrate: {out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blocked_job_resumes_only_when_the_account_can_pay() {
    let cluster = Cluster::start().await;
    let ns = cluster.acme.clone();
    let acme = cluster.key(&ns).await;
    cluster.grant(&ns, 1).await;
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
    cluster.grant(&ns, 10).await;
    cluster
        .eventually("the job succeeds", || async {
            cluster.call("GET", &path, &acme, None).await.1["status"] == "succeeded"
        })
        .await;
    let (_, done) = cluster.call("GET", &path, &acme, None).await;
    assert_eq!((done["creditsUsed"].as_i64(), done["creditsRemaining"].as_i64()), (Some(3), Some(7)), "{done:#}");
    assert_eq!(cluster.plane.kubelet.started_in(&ns).len(), 1, "rendered once");
}

/// A RenderJob kept in Git (no TTL) whose PDF's retention ended is still a render
/// of the API: GET and the render log show it with `outputExpiredAt` and no download
/// URL; asking for its PDF answers 410 `OUTPUT_EXPIRED`, saying since when. A job the
/// API makes carries the account's retention as its TTL, so it goes with its PDF.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kept_job_whose_pdf_expired_is_shown_and_its_pdf_is_gone() {
    let cluster = Cluster::start().await;
    let ns = cluster.acme.clone();
    let acme = cluster.key(&ns).await;
    cluster
        .apply(
            &ns,
            json!({"apiVersion": "folio.dev/v1alpha1", "kind": "RenderAccount", "metadata": {"name": "default"},
            "spec": {"retention": {"defaultTtlSeconds": 1}}}),
        )
        .await;
    cluster
        .eventually("the API sees the account's retention", || async {
            cluster.call("GET", "/v1/account", &acme, None).await.1["defaultTtlSeconds"] == 1
        })
        .await;
    let (_, created) = cluster.call("POST", "/v1/renders", &acme, Some(json!({"template": {"source": "= API"}}))).await;
    let made_by_api = cluster.get("RenderJob", &ns, created["id"].as_str().unwrap()).await.unwrap();
    assert_eq!(made_by_api["spec"]["ttlSecondsAfterFinished"], 1, "the account's retention");

    let kept = json!({"apiVersion": "folio.dev/v1alpha1", "kind": "RenderJob", "metadata": {"name": "kept-in-git"},
        "spec": {"template": {"source": "= Kept"}, "data": {}}});
    cluster.apply(&ns, kept).await;
    let path = "/v1/renders/kept-in-git";
    cluster
        .eventually("the PDF's retention ends", || async {
            cluster.call("GET", path, &acme, None).await.1["outputExpiredAt"].is_string()
        })
        .await;
    let (status, job) = cluster.call("GET", path, &acme, None).await;
    assert_eq!((status, job["status"].as_str()), (StatusCode::OK, Some("succeeded")), "{job}");
    assert!(job["downloadUrl"].is_null() && job["outputUrl"].is_null(), "{job}");
    let (status, log) = cluster.call("GET", "/v1/renders?signed=true", &acme, None).await;
    assert_eq!(status, StatusCode::OK, "{log}");
    for asked in [format!("{path}/download"), format!("{path}/signed-url")] {
        let method = if asked.ends_with("download") { "GET" } else { "POST" };
        let (status, body) = cluster.call(method, &asked, &acme, Some(json!({}))).await;
        assert_eq!((status, body["error"]["code"].as_str()), (StatusCode::GONE, Some("OUTPUT_EXPIRED")), "{asked}");
        assert!(body["error"]["message"].as_str().unwrap().contains("deleted at the end of its retention"));
    }
    cluster
        .eventually("the API's own job goes with its PDF", || async {
            cluster.get("RenderJob", &ns, created["id"].as_str().unwrap()).await.is_none()
        })
        .await;
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

/// An `externalId` names one live job: repeating it returns that job, but once the job
/// failed the same `externalId` makes a new one (named by the id's next round), and
/// the render log lists both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_external_id_whose_job_failed_may_be_submitted_again() {
    let cluster = Cluster::start().await;
    let ns = cluster.acme.clone();
    let acme = cluster.key(&ns).await;
    let broken =
        json!({"template": {"source": "#let total = subtotal + 1"}, "externalId": "order-9", "backoffLimit": 0});
    let (status, first) = cluster.call("POST", "/v1/renders", &acme, Some(broken)).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{first}");
    let first_path = format!("/v1/renders/{}", first["id"].as_str().unwrap());
    cluster
        .eventually("the first job fails", || async {
            cluster.call("GET", &first_path, &acme, None).await.1["status"] == "failed"
        })
        .await;
    let fixed = json!({"template": {"source": "= Order 9"}, "externalId": "order-9"});
    let (status, second) = cluster.call("POST", "/v1/renders", &acme, Some(fixed.clone())).await;
    assert_eq!(status, StatusCode::ACCEPTED, "a failed job gives its externalId up: {second}");
    assert_ne!(second["id"], first["id"]);
    let (status, again) = cluster.call("POST", "/v1/renders", &acme, Some(fixed)).await;
    assert_eq!((status, &again["id"]), (StatusCode::OK, &second["id"]), "the live job holds it: {again}");
    let (_, log) = cluster.call("GET", "/v1/renders?externalId=order-9", &acme, None).await;
    assert_eq!(log["pagination"]["total"], 2, "{log}");
}

/// A branded template over the REST API alone, on the cluster: the logo and the font
/// are immutable ConfigMaps owned by the RenderTemplate, the renderer Pod's PDF uses
/// both (poppler reads it), every change is a generation kept as a snapshot, a job
/// pinned to an old version renders it, and deleting the template takes its
/// ConfigMaps with it (the garbage collector, through their owner reference).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_branded_template_is_kept_and_versioned_in_the_cluster() {
    const FONT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/fonts/FolioTestSans.ttf");
    const PNG: &str =
        "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==";
    let cluster = Cluster::start().await;
    let ns = cluster.acme.clone();
    let acme = cluster.key(&ns).await;
    cluster.grant(&ns, 100).await;
    let put_file = |name: &str, bytes: Vec<u8>| {
        let request = cluster.http.put(format!("{}/v1/templates/invoice/assets/{name}", cluster.url));
        request.bearer_auth(&acme).body(bytes).send()
    };
    let (status, _) =
        cluster.call("POST", "/v1/templates", &acme, Some(json!({"name": "invoice", "source": "Version one"}))).await;
    assert_eq!(status, StatusCode::CREATED);
    let branded =
        "#set text(font: \"Folio Test Sans\")\n#image(\"logo.png\", width: 2cm)\n= Invoice #json(\"data.json\").number";
    let (_, changed) = cluster.call("PUT", "/v1/templates/invoice", &acme, Some(json!({"source": branded}))).await;
    assert_eq!(changed["version"], 2, "{changed}");
    use base64::Engine as _;
    let logo = base64::engine::general_purpose::STANDARD.decode(PNG).unwrap();
    let uploaded = put_file("logo.png", logo).await.unwrap();
    assert_eq!(uploaded.status(), StatusCode::CREATED);
    assert_eq!(uploaded.json::<Value>().await.unwrap()["contentType"], "image/png");
    let font = std::fs::read(FONT).unwrap();
    assert_eq!(put_file("FolioTestSans.ttf", font.clone()).await.unwrap().status(), StatusCode::CREATED);
    let too_big = put_file("big.bin", vec![1; 512 * 1024]).await.unwrap();
    assert_eq!(too_big.status(), StatusCode::PAYLOAD_TOO_LARGE, "a renderer's input holds at most 512 KiB of files");
    // More files than the operator's lookup takes rounds: all are fetched at once.
    for i in 0..6 {
        let note = put_file(&format!("note-{i}.txt"), format!("note {i}").into_bytes()).await.unwrap();
        assert_eq!(note.status(), StatusCode::CREATED);
    }

    // Where the files are: immutable ConfigMaps the template owns and names.
    let template = cluster.get("RenderTemplate", &ns, "invoice").await.unwrap();
    assert_eq!(template["metadata"]["generation"], 10, "{template:#}");
    let uid = template["metadata"]["uid"].as_str().unwrap();
    let files = template["spec"]["assets"].as_array().unwrap();
    assert_eq!(files.len(), 8);
    let font_ref = &files[1]["configMapKeyRef"];
    assert_eq!(
        (files[1]["sha256"].as_str(), font_ref["key"].as_str()),
        (Some(folio::assets::sha256_hex(&font).as_str()), Some("FolioTestSans.ttf"))
    );
    let map = cluster.get("ConfigMap", &ns, font_ref["name"].as_str().unwrap()).await.unwrap();
    assert_eq!(
        (map["immutable"].as_bool(), map["metadata"]["ownerReferences"][0]["uid"].as_str()),
        (Some(true), Some(uid))
    );
    let snapshot = cluster.get("ConfigMap", &ns, "invoice.version-1").await.expect("version 1 is kept");
    assert!(snapshot["data"]["spec.json"].as_str().unwrap().contains("Version one"));

    // The renderer Pod renders the current version with the logo and the font.
    let (cluster_ref, acme_ref) = (&cluster, &acme);
    let render = |body: Value| async move {
        let (cluster, acme) = (cluster_ref, acme_ref);
        let (status, job) = cluster.call("POST", "/v1/renders", acme, Some(body)).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{job}");
        let path = format!("/v1/renders/{}", job["id"].as_str().unwrap());
        cluster
            .eventually("the render ends", || async {
                ["succeeded", "failed"]
                    .contains(&cluster.call("GET", &path, acme, None).await.1["status"].as_str().unwrap_or_default())
            })
            .await;
        let (_, done) = cluster.call("GET", &path, acme, None).await;
        assert_eq!(done["status"], "succeeded", "{done:#}");
        let pdf = download(done["downloadUrl"].as_str().unwrap()).await.1;
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), pdf).unwrap();
        (done, file)
    };
    let (done, pdf) = render(json!({"templateId": "invoice", "data": {"number": "7"}})).await;
    assert_eq!((done["templateVersion"].as_i64(), &done["warnings"]), (Some(10), &json!([])), "{done:#}");
    assert!(support::embeds_font(pdf.path(), "FolioTestSans"), "the uploaded font is embedded");
    assert_eq!(support::image_count(pdf.path()), 1, "the logo");

    // A family nobody has: the renderer Pod's report carries the warning to the job.
    let unknown = json!({"template": {"source": "#set text(font: \"Helvetica Neue Pro\")\nHello"}});
    let (warned, _) = render(unknown).await;
    assert!(warned["warnings"][0].as_str().unwrap_or_default().contains("unknown font family"), "{warned:#}");

    // A job pinned to version 1 renders it, from its snapshot.
    let (old, pdf) = render(json!({"templateId": "invoice", "templateVersion": 1})).await;
    assert_eq!(old["templateVersion"], 1);
    assert!(support::pdftotext(pdf.path()).contains("Version one"));
    let (_, versions) = cluster.call("GET", "/v1/templates/invoice/versions", &acme, None).await;
    let numbers: Vec<i64> =
        versions["data"].as_array().unwrap().iter().map(|v| v["version"].as_i64().unwrap()).collect();
    assert_eq!(numbers, (1..=10).collect::<Vec<i64>>(), "{versions}");
    let (_, listed) = cluster.call("GET", "/v1/templates/invoice/assets", &acme, None).await;
    assert_eq!(
        listed["data"][1],
        json!({"name": "FolioTestSans.ttf", "size": font.len(), "contentType": "font/ttf", "sha256": folio::assets::sha256_hex(&font)})
    );
    let (_, restored) = cluster.call("POST", "/v1/templates/invoice/versions/1/restore", &acme, None).await;
    assert_eq!(
        (restored["version"].as_i64(), restored["source"].as_str()),
        (Some(11), Some("Version one")),
        "{restored}"
    );

    // A change made with kubectl is a version too, kept once a job renders it.
    let edit = json!({"spec": {"source": "Edited with kubectl"}});
    cluster.api("RenderTemplate", &ns).patch("invoice", &PatchParams::default(), &Patch::Merge(&edit)).await.unwrap();
    // The API pins the version its watch has shown; wait until it has seen the edit.
    cluster
        .eventually("the API sees the kubectl edit", || async {
            cluster.call("GET", "/v1/templates/invoice", &acme, None).await.1["version"] == 12
        })
        .await;
    let (edited, pdf) = render(json!({"templateId": "invoice"})).await;
    assert_eq!(edited["templateVersion"], 12);
    assert!(support::pdftotext(pdf.path()).contains("Edited with kubectl"));
    let kept = cluster.get("ConfigMap", &ns, "invoice.version-12").await.expect("the operator kept what it rendered");
    assert!(kept["data"]["spec.json"].as_str().unwrap().contains("Edited with kubectl"));

    let (status, _) = cluster.call("DELETE", "/v1/templates/invoice", &acme, None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    cluster
        .eventually("the template's ConfigMaps go with it", || async {
            !cluster
                .list("ConfigMap", &ns)
                .await
                .iter()
                .any(|m| m["metadata"]["labels"]["folio.dev/template"] == "invoice")
        })
        .await;
    let mut cluster = cluster;
    if let Some(operator) = cluster.operator.take() {
        operator.abort();
    }
}

/// An HTML invoice with a logo over the REST API on the cluster: the renderer Pod's
/// `folio render` prints it with Chromium to a PDF poppler reads, and captures the og
/// PNG (1200 × 630), which the download hands out as `image/png`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_html_invoice_renders_to_pdf_and_og_in_a_renderer_pod() {
    support::require_chromium();
    let cluster = Cluster::start().await;
    let ns = cluster.acme.clone();
    let acme = cluster.key(&ns).await;
    cluster.grant(&ns, 100).await;
    let source = "<style>@page { size: A5 } h1 { color: #1d4ed8 }</style><img src=\"logo.png\" width=\"60\">\n<h1>Invoice {{ number }}</h1>{% for item in items %}<p>{{ item }}</p>{% endfor %}";
    let body = json!({"name": "invoice", "engine": "html", "source": source});
    let (status, created) = cluster.call("POST", "/v1/templates", &acme, Some(body)).await;
    assert_eq!((status, created["engine"].as_str()), (StatusCode::CREATED, Some("html")), "{created}");
    let mut logo = tiny_skia::Pixmap::new(40, 20).unwrap();
    logo.fill(tiny_skia::Color::from_rgba8(200, 30, 30, 255));
    let uploaded = cluster.http.put(format!("{}/v1/templates/invoice/assets/logo.png", cluster.url));
    let uploaded = uploaded.bearer_auth(&acme).body(logo.encode_png().unwrap()).send().await.unwrap();
    assert_eq!(uploaded.status(), StatusCode::CREATED);

    let mut ended = Vec::new();
    for output in ["pdf", "og"] {
        let data = json!({"number": "2026-9", "items": ["Setup", "Support"]});
        let body = json!({"templateId": "invoice", "data": data, "output": output});
        let (status, job) = cluster.call("POST", "/v1/renders", &acme, Some(body)).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{job}");
        let path = format!("/v1/renders/{}", job["id"].as_str().unwrap());
        cluster
            .eventually("the render ends", || async {
                ["succeeded", "failed"]
                    .contains(&cluster.call("GET", &path, &acme, None).await.1["status"].as_str().unwrap_or_default())
            })
            .await;
        let (_, done) = cluster.call("GET", &path, &acme, None).await;
        assert_eq!((done["status"].as_str(), done["type"].as_str()), (Some("succeeded"), Some(output)), "{done:#}");
        ended.push(done);
    }
    let (status, pdf) = download(ended[0]["downloadUrl"].as_str().unwrap()).await;
    assert_eq!(status, StatusCode::OK);
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), &pdf).unwrap();
    let text = support::pdftotext(file.path());
    assert!(text.contains("Invoice 2026-9") && text.contains("Support"), "{text}");
    assert_eq!(support::image_count(file.path()), 1, "the logo");
    assert!(support::pdfinfo(file.path()).contains("(Chromium)"));
    assert!(ended[1]["outputKey"].as_str().unwrap().ends_with(".png"), "{:#}", ended[1]);
    let og = cluster.http.get(format!("{}/v1/renders/{}/download", cluster.url, ended[1]["id"].as_str().unwrap()));
    let og = og.bearer_auth(&acme).send().await.unwrap();
    assert_eq!(og.headers()["content-type"], "image/png");
    let og = tiny_skia::Pixmap::decode_png(&og.bytes().await.unwrap()).unwrap();
    assert_eq!((og.width(), og.height()), (1200, 630));
    assert_eq!(ended[1]["pageCount"], 1);
    assert_eq!(ended[1]["creditsUsed"], 1, "a PNG costs one credit");

    // A page that grows past what its Pod may hold fails with the renderer's own
    // message: the browser's limit is the container's (1Gi, from the downward API)
    // less the renderer's room. (The test kubelet enforces no cgroup: this shows the
    // limit reaching the renderer, not the race with a real kernel's OOM killer.)
    let grow = "<script>const kept = []; for (let i = 0; i < 60; i++) { kept.push(new Uint8Array(32 << 20).fill(1)); }</script>";
    let body = json!({"template": {"engine": "html", "source": grow, "javascript": true}});
    let (status, job) = cluster.call("POST", "/v1/renders", &acme, Some(body)).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{job}");
    let path = format!("/v1/renders/{}", job["id"].as_str().unwrap());
    cluster
        .eventually("the growing render fails", || async {
            cluster.call("GET", &path, &acme, None).await.1["status"].as_str() == Some("failed")
        })
        .await;
    let (_, failed) = cluster.call("GET", &path, &acme, None).await;
    assert_eq!(failed["errorCode"], "RESOURCE_EXHAUSTED", "{failed:#}");
    assert!(failed["errorMessage"].as_str().unwrap().contains("896 MiB"), "{failed:#}");
}
