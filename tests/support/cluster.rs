//! The cluster home for one test: a namespace of its own on the real control plane
//! ([`super::control_plane`]), an in-process S3 server, and `folio operator` (the
//! real controller loop) running in this process as the chart's operator
//! ServiceAccount, watching only that namespace. Shared by `tests/operator.rs` and
//! `benches/operator.rs`.
//!
//! The test itself acts as the cluster's admin, the way a platform team's `kubectl`
//! would: objects are written by server-side apply and read back as JSON.

use std::time::{Duration, Instant};

use clap::Parser;
use folio::cluster::operator::{OperatorOptions, run_operator};
use folio::storage::S3Bucket;
use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, Patch, PatchParams};
use serde_json::{Value, json};
use tokio::sync::oneshot;

use super::control_plane::{self, ControlPlane, RELEASE_NAMESPACE, RENDERER_IMAGE};
use super::kubelet::Kubelet;
use super::s3::{ACCESS_KEY, SECRET_KEY, s3_server};

pub const RJ: &str = "folio.dev/v1alpha1";
pub const TWO_PAGES: &str = "= Invoice\n#json(\"data.json\").customer\n#pagebreak()\nTerms";
/// The leader Lease the chart's RBAC lets the operator hold.
pub const LEASE: &str = "folio-operator";

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    options: OperatorOptions,
}

/// Everything one test runs against.
pub struct Harness {
    pub plane: &'static ControlPlane,
    /// The test's namespace (its tenant).
    pub namespace: String,
    /// The test's own client: the cluster admin.
    pub admin: kube::Client,
    pub bucket: S3Bucket,
    pub endpoint: String,
    pub kubelet: &'static Kubelet,
    pub operator: Option<Operator>,
    _s3_root: tempfile::TempDir,
}

/// One `folio operator` running in this process.
pub struct Operator {
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
    pub metrics_url: String,
}

impl Operator {
    /// Start an operator called `identity`, acting as the chart's operator
    /// ServiceAccount, for `namespace`, storing into the S3 server at `endpoint`.
    /// Without `--lease` among `extra_args` it runs without leader election, so that
    /// the operators of tests running side by side do not wait for one another.
    pub async fn spawn(
        plane: &ControlPlane,
        namespace: &str,
        endpoint: &str,
        identity: &str,
        extra_args: &[&str],
    ) -> Operator {
        let metrics_port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let listen = format!("127.0.0.1:{metrics_port}");
        let mut args = vec![
            "operator",
            "--s3-endpoint",
            endpoint,
            "--s3-access-key",
            ACCESS_KEY,
            "--s3-secret-key",
            SECRET_KEY,
            "--metrics-listen",
            &listen,
            "--watch-namespace",
            namespace,
            "--lease-namespace",
            RELEASE_NAMESPACE,
            "--lease-name",
            LEASE,
            "--lease-duration",
            "3",
            "--identity",
            identity,
        ];
        if !extra_args.contains(&"--image") {
            args.extend(["--image", RENDERER_IMAGE]);
        }
        let leading = extra_args.contains(&"--lease");
        if !leading {
            args.push("--no-leader-election");
        }
        args.extend(extra_args.iter().copied().filter(|a| *a != "--lease"));
        let options = Cli::parse_from(args).options;
        let client = plane.operator_client().await;
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(run_operator(client, options, async move {
            let _ = stopped.await;
        }));
        Operator { stop, task, metrics_url: format!("http://{listen}/metrics") }
    }

    /// Stop it at once, where its clean stop is not what a test is about.
    pub fn abort(self) {
        self.task.abort();
    }

    /// Send the shutdown signal and wait for a clean stop.
    pub async fn stop(self) {
        let _ = self.stop.send(());
        let outcome = tokio::time::timeout(Duration::from_secs(20), self.task)
            .await
            .expect("the operator stops on the shutdown signal");
        outcome.unwrap().unwrap();
    }
}

/// A `folio operator` process of its own, as the chart's operator ServiceAccount, for
/// `namespace`, storing into the S3 server at `endpoint` (credentials the test S3
/// server's); killed with the test. The process and the base URL of its ops server.
pub fn operator_process(plane: &ControlPlane, namespace: &str, endpoint: &str) -> (std::process::Child, String) {
    let dir = plane.dir.join(format!("operator-{namespace}"));
    std::fs::create_dir_all(&dir).unwrap();
    let kubeconfig = plane.kubeconfig(&dir, &plane.operator_token, namespace);
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let child = super::dies_with_test(super::folio())
        .args(["operator", "--no-leader-election", "--watch-namespace", namespace, "--s3-endpoint", endpoint])
        .args(["--s3-access-key", ACCESS_KEY, "--s3-secret-key", SECRET_KEY])
        .args(["--metrics-listen", &format!("127.0.0.1:{port}")])
        .env("KUBECONFIG", kubeconfig)
        .env("RUST_LOG", "error")
        .spawn()
        .unwrap();
    (child, format!("http://127.0.0.1:{port}"))
}

/// The API resource of `kind` (the kinds the tests write and read).
pub fn resource(kind: &str) -> ApiResource {
    let (group, version) = match kind {
        "RenderJob" | "RenderAccount" | "RenderTemplate" => ("folio.dev", "v1alpha1"),
        "Event" => ("events.k8s.io", "v1"),
        "Lease" => ("coordination.k8s.io", "v1"),
        "ValidatingAdmissionPolicy" | "ValidatingAdmissionPolicyBinding" => ("admissionregistration.k8s.io", "v1"),
        _ => ("", "v1"),
    };
    let lower = kind.to_lowercase();
    let plural = match lower.strip_suffix('y') {
        Some(stem) => format!("{stem}ies"),
        None => format!("{lower}s"),
    };
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, version, kind), &plural)
}

/// The field manager of what tests apply.
const TEST_MANAGER: &str = "folio-test";

impl Harness {
    /// A namespace, an S3 server and an operator for one test.
    pub async fn start(extra_args: &[&str]) -> Harness {
        let namespace = control_plane::shared().namespace("acme").await;
        Harness::start_in(&namespace, extra_args).await
    }

    /// A namespace and an S3 server, with no operator yet.
    pub async fn start_idle() -> Harness {
        let plane = control_plane::shared();
        let namespace = plane.namespace("acme").await;
        Harness::idle_in(plane, namespace).await
    }

    /// An S3 server and an operator for `namespace`, which the test does not create:
    /// what it applies declares it (an example that brings its own namespace).
    pub async fn start_in(namespace: &str, extra_args: &[&str]) -> Harness {
        let plane = control_plane::shared();
        let mut harness = Harness::idle_in(plane, namespace.to_owned()).await;
        harness.operator = Some(harness.operator("operator-0", extra_args).await);
        harness
    }

    async fn idle_in(plane: &'static ControlPlane, namespace: String) -> Harness {
        let s3_root = tempfile::tempdir().unwrap();
        let endpoint = s3_server(s3_root.path()).await;
        let bucket = S3Bucket::connect(&endpoint, "folio", ACCESS_KEY, SECRET_KEY).await.unwrap();
        Harness {
            plane,
            admin: plane.admin().await,
            namespace,
            bucket,
            endpoint,
            kubelet: &plane.kubelet,
            operator: None,
            _s3_root: s3_root,
        }
    }

    /// Another operator for this test's namespace.
    pub async fn operator(&self, identity: &str, extra_args: &[&str]) -> Operator {
        Operator::spawn(self.plane, &self.namespace, &self.endpoint, identity, extra_args).await
    }

    fn api(&self, kind: &str) -> Api<DynamicObject> {
        Api::namespaced_with(self.admin.clone(), &self.namespace, &resource(kind))
    }

    /// Server-side apply `object` (its `kind` and `metadata.name`) into the test's
    /// namespace, as `kubectl apply --server-side` would; what the server stored.
    pub async fn apply(&self, object: Value) -> Value {
        let mut object = object;
        object["metadata"]["namespace"] = json!(self.namespace);
        let kind = object["kind"].as_str().expect("a kind").to_owned();
        let name = object["metadata"]["name"].as_str().expect("a name").to_owned();
        object.as_object_mut().unwrap().remove("status");
        if let Some(metadata) = object["metadata"].as_object_mut() {
            for generated in ["resourceVersion", "uid", "creationTimestamp", "generation", "managedFields"] {
                metadata.remove(generated);
            }
        }
        let params = PatchParams::apply(TEST_MANAGER).force();
        let stored = self.api(&kind).patch(&name, &params, &Patch::Apply(&object)).await;
        serde_json::to_value(stored.unwrap_or_else(|err| panic!("applying {kind}/{name}: {err}"))).unwrap()
    }

    /// Server-side apply `object` into the test's namespace as the admin; the API
    /// server's refusal, if it refuses it.
    pub async fn try_apply(&self, object: Value) -> Result<Value, kube::Error> {
        let mut object = object;
        object["metadata"]["namespace"] = json!(self.namespace);
        let kind = object["kind"].as_str().expect("a kind").to_owned();
        let name = object["metadata"]["name"].as_str().expect("a name").to_owned();
        let params = PatchParams::apply(TEST_MANAGER).force();
        let stored = self.api(&kind).patch(&name, &params, &Patch::Apply(&object)).await?;
        Ok(serde_json::to_value(stored).unwrap())
    }

    fn cluster_api(&self, kind: &str) -> Api<DynamicObject> {
        Api::all_with(self.admin.clone(), &resource(kind))
    }

    /// Server-side apply a cluster-scoped `object`.
    pub async fn apply_cluster(&self, object: Value) -> Value {
        let kind = object["kind"].as_str().expect("a kind").to_owned();
        let name = object["metadata"]["name"].as_str().expect("a name").to_owned();
        let params = PatchParams::apply(TEST_MANAGER).force();
        let stored = self.cluster_api(&kind).patch(&name, &params, &Patch::Apply(&object)).await;
        serde_json::to_value(stored.unwrap_or_else(|err| panic!("applying {kind}/{name}: {err}"))).unwrap()
    }

    /// Delete the cluster-scoped `kind/name`.
    pub async fn delete_cluster(&self, kind: &str, name: &str) {
        self.cluster_api(kind).delete(name, &DeleteParams::default()).await.unwrap();
    }

    /// Whether the API server would now refuse to record a job's success in this
    /// namespace (asked with a dry run on a cancelled probe job).
    pub async fn success_is_refused(&self) -> bool {
        if self.job("probe").await.is_none() {
            self.apply(job("probe", json!({"template": {"source": "= Probe"}, "data": {}, "cancel": true}))).await;
        }
        let params = PatchParams { dry_run: true, ..PatchParams::default() };
        let patch = json!({"status": {"phase": "Succeeded"}});
        match self.api("RenderJob").patch_status("probe", &params, &Patch::Merge(&patch)).await {
            Ok(_) => false,
            Err(kube::Error::Api(status)) => status.code == 422 || status.code == 403,
            Err(err) => panic!("probing the policy: {err}"),
        }
    }

    /// Merge `patch` into `kind/name`'s spec side (not its status).
    pub async fn merge(&self, kind: &str, name: &str, patch: Value) -> Value {
        let stored = self.api(kind).patch(name, &PatchParams::default(), &Patch::Merge(&patch)).await;
        serde_json::to_value(stored.unwrap_or_else(|err| panic!("patching {kind}/{name}: {err}"))).unwrap()
    }

    /// `kind/name` in the test's namespace, if it exists.
    pub async fn get(&self, kind: &str, name: &str) -> Option<Value> {
        let object = self.api(kind).get_opt(name).await.unwrap();
        object.map(|o| serde_json::to_value(o).unwrap())
    }

    /// Every object of `kind` in the test's namespace.
    pub async fn list(&self, kind: &str) -> Vec<Value> {
        let list = self.api(kind).list(&ListParams::default()).await.unwrap();
        list.items.into_iter().map(|o| serde_json::to_value(o).unwrap()).collect()
    }

    /// Delete `kind/name` (in the background, as kubectl does).
    pub async fn delete(&self, kind: &str, name: &str) {
        match self.api(kind).delete(name, &DeleteParams::default()).await {
            Ok(_) => {}
            Err(kube::Error::Api(status)) if status.is_not_found() => {}
            Err(err) => panic!("deleting {kind}/{name}: {err}"),
        }
    }

    pub async fn job(&self, name: &str) -> Option<Value> {
        self.get("RenderJob", name).await
    }

    /// The reasons of the Events about `name`, oldest first.
    pub async fn event_reasons(&self, name: &str) -> Vec<String> {
        let mut events = self.events(name).await;
        events.sort_by_key(|e| e["metadata"]["creationTimestamp"].as_str().unwrap_or_default().to_owned());
        events.iter().map(|e| e["reason"].as_str().unwrap_or_default().to_owned()).collect()
    }

    /// The Events about `name`.
    pub async fn events(&self, name: &str) -> Vec<Value> {
        self.list("Event").await.into_iter().filter(|e| e["regarding"]["name"] == name).collect()
    }

    /// Wait until the job's phase is `phase`; the job.
    pub async fn wait_for_phase(&self, name: &str, phase: &str) -> Value {
        let started = Instant::now();
        loop {
            let job = self.job(name).await;
            if job.as_ref().and_then(|j| j["status"]["phase"].as_str()) == Some(phase) {
                return job.unwrap();
            }
            assert!(started.elapsed() < Duration::from_secs(60), "{name} never became {phase}: {job:#?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Wait until `done` holds (at most 60 s).
    pub async fn wait_until(&self, what: &str, mut done: impl AsyncFnMut(&Harness) -> bool) {
        let started = Instant::now();
        while !done(self).await {
            assert!(started.elapsed() < Duration::from_secs(60), "waited in vain for {what}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// End the test's operator. A clean stop is what the leader-handover and restart
    /// tests check (with `Operator::stop`); here it only has to go.
    pub async fn stop(self) {
        if let Some(operator) = self.operator {
            operator.abort();
        }
    }

    /// Who holds the chart's leader Lease.
    pub async fn lease_holder(&self) -> Option<String> {
        let leases: Api<DynamicObject> =
            Api::namespaced_with(self.admin.clone(), RELEASE_NAMESPACE, &resource("Lease"));
        let lease = leases.get_opt(LEASE).await.unwrap()?;
        lease.data["spec"]["holderIdentity"].as_str().map(str::to_owned)
    }
}

pub fn job(name: &str, spec: Value) -> Value {
    json!({"apiVersion": RJ, "kind": "RenderJob", "metadata": {"name": name}, "spec": spec})
}

pub fn account(credits: i64, webhook: Option<Value>) -> Value {
    let mut spec = json!({"credits": credits});
    if let Some(webhook) = webhook {
        spec["webhook"] = webhook;
    }
    json!({"apiVersion": RJ, "kind": "RenderAccount", "metadata": {"name": "acme"}, "spec": spec})
}
