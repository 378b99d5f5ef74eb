//! The cluster home in this process: `folio operator` (the real controller loop and
//! Lease) against the stand-in API server, a stand-in kubelet, and an in-process S3
//! server. Shared by `tests/operator.rs` and `benches/operator.rs`.
//!
//! The stand-in kubelet runs each renderer Pod the operator creates by running the
//! real `folio render` binary on the Pod's input ConfigMap, laid out as Kubernetes
//! mounts it, and writes the report into the Pod's status as its termination
//! message; it can also crash a Pod (exit 137, no report) or keep one running.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Parser;
use folio::cluster::operator::{OperatorOptions, run_operator};
use folio::storage::S3Bucket;
use serde_json::{Value, json};
use tokio::sync::oneshot;

use super::apiserver::StandInApiServer;
use super::s3::{ACCESS_KEY, SECRET_KEY, s3_server};

pub const RJ: &str = "folio.dev/v1alpha1";
pub const TWO_PAGES: &str = "= Invoice\n#json(\"data.json\").customer\n#pagebreak()\nTerms";

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    options: OperatorOptions,
}

/// How the stand-in kubelet treats Pods, by job name.
#[derive(Default)]
pub struct Kubelet {
    /// Jobs whose first attempt crashes without a report.
    pub crash_first: Mutex<HashSet<String>>,
    /// Jobs whose Pods run forever.
    pub hang: Mutex<HashSet<String>>,
    /// Pods already started.
    pub started: Mutex<HashSet<String>>,
}

/// Everything one test runs against.
pub struct Harness {
    pub api: Arc<StandInApiServer>,
    pub bucket: S3Bucket,
    pub endpoint: String,
    pub kubelet: Arc<Kubelet>,
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
    /// Start an operator called `identity` against `api` and the S3 server at `endpoint`.
    pub fn spawn(api: &StandInApiServer, endpoint: &str, identity: &str, extra_args: &[&str]) -> Operator {
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
            "--image",
            "folio:test",
            "--lease-namespace",
            "default",
            "--lease-duration",
            "3",
            "--identity",
            identity,
        ];
        args.extend_from_slice(extra_args);
        let options = Cli::parse_from(args).options;
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(run_operator(api.client(), options, async move {
            let _ = stopped.await;
        }));
        Operator { stop, task, metrics_url: format!("http://{listen}/metrics") }
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

impl Harness {
    pub async fn start(extra_args: &[&str]) -> Harness {
        let api = Arc::new(StandInApiServer::start().await);
        let s3_root = tempfile::tempdir().unwrap();
        let endpoint = s3_server(s3_root.path()).await;
        let operator = Operator::spawn(&api, &endpoint, "operator-0", extra_args);
        let kubelet = Arc::new(Kubelet::default());
        tokio::spawn(run_kubelet(api.clone(), kubelet.clone()));
        let bucket = S3Bucket::connect(&endpoint, "folio", ACCESS_KEY, SECRET_KEY).await.unwrap();
        Harness { api, bucket, endpoint, kubelet, operator: Some(operator), _s3_root: s3_root }
    }

    pub fn apply(&self, plural: &str, object: Value) -> Value {
        self.api.put_object(RJ, plural, object)
    }

    pub fn job(&self, name: &str) -> Option<Value> {
        self.api.get(RJ, "renderjobs", "acme", name)
    }

    /// Wait until the job's phase is `phase`; the job.
    pub async fn wait_for_phase(&self, name: &str, phase: &str) -> Value {
        let started = Instant::now();
        loop {
            let job = self.job(name);
            if job.as_ref().and_then(|j| j["status"]["phase"].as_str()) == Some(phase) {
                return job.unwrap();
            }
            assert!(started.elapsed() < Duration::from_secs(30), "{name} never became {phase}: {job:#?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn wait_until(&self, what: &str, mut done: impl FnMut(&Harness) -> bool) {
        let started = Instant::now();
        while !done(self) {
            assert!(started.elapsed() < Duration::from_secs(30), "waited in vain for {what}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn stop(self) {
        if let Some(operator) = self.operator {
            operator.stop().await;
        }
    }

    pub fn lease_holder(&self) -> Option<String> {
        let lease = self.api.get("coordination.k8s.io/v1", "leases", "default", "folio-operator")?;
        lease["spec"]["holderIdentity"].as_str().map(str::to_owned)
    }
}

pub fn job(name: &str, spec: Value) -> Value {
    json!({"apiVersion": RJ, "kind": "RenderJob", "metadata": {"name": name, "namespace": "acme"}, "spec": spec})
}

pub fn account(credits: i64, webhook: Option<Value>) -> Value {
    let mut spec = json!({"credits": credits});
    if let Some(webhook) = webhook {
        spec["webhook"] = webhook;
    }
    json!({"apiVersion": RJ, "kind": "RenderAccount", "metadata": {"name": "acme", "namespace": "acme"}, "spec": spec})
}

/// The stand-in kubelet: start every new renderer Pod.
async fn run_kubelet(api: Arc<StandInApiServer>, kubelet: Arc<Kubelet>) {
    loop {
        for pod in api.list("v1", "pods") {
            let name = pod["metadata"]["name"].as_str().unwrap_or_default().to_owned();
            if pod["metadata"]["deletionTimestamp"].is_string() || !kubelet.started.lock().unwrap().insert(name.clone())
            {
                continue;
            }
            let api = api.clone();
            let kubelet = kubelet.clone();
            tokio::spawn(async move { run_pod(&api, &kubelet, pod).await });
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

async fn run_pod(api: &StandInApiServer, kubelet: &Kubelet, mut pod: Value) {
    let namespace = pod["metadata"]["namespace"].as_str().unwrap().to_owned();
    let job = pod["metadata"]["labels"]["folio.dev/render-job"].as_str().unwrap().to_owned();
    let attempt = pod["metadata"]["annotations"]["folio.dev/attempt"].as_str().unwrap().to_owned();
    if kubelet.hang.lock().unwrap().contains(&job) {
        pod["status"] = json!({"phase": "Running"});
        api.put_object("v1", "pods", pod);
        return;
    }
    let terminated = if attempt == "0" && kubelet.crash_first.lock().unwrap().contains(&job) {
        json!({"exitCode": 137, "reason": "Error"})
    } else {
        let input_name = pod["spec"]["volumes"][0]["configMap"]["name"].as_str().unwrap();
        let input = api.get("v1", "configmaps", &namespace, input_name).expect("the input ConfigMap exists");
        let dir = tempfile::tempdir().unwrap();
        let mount = dir.path().join("input");
        std::fs::create_dir(&mount).unwrap();
        for (key, value) in input["data"].as_object().unwrap() {
            std::fs::write(mount.join(key), value.as_str().unwrap()).unwrap();
        }
        let log = dir.path().join("termination-log");
        let args: Vec<String> = pod["spec"]["containers"][0]["args"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap().to_owned())
            .collect();
        assert_eq!(args[..2], ["render", "--input"], "the container runs folio render");
        let status = tokio::task::spawn_blocking({
            let (mount, log) = (mount.clone(), log.clone());
            move || {
                super::folio()
                    .arg("render")
                    .arg("--input")
                    .arg(mount)
                    .arg("--termination-log")
                    .arg(log)
                    .output()
                    .unwrap()
                    .status
            }
        })
        .await
        .unwrap();
        json!({"exitCode": status.code().unwrap_or(1), "message": std::fs::read_to_string(&log).unwrap_or_default()})
    };
    let phase = if terminated["exitCode"] == 0 { "Succeeded" } else { "Failed" };
    // The Pod may have been deleted meanwhile (a cancelled job).
    let Some(mut current) = api.get("v1", "pods", &namespace, pod["metadata"]["name"].as_str().unwrap()) else {
        return;
    };
    current["status"] = json!({"phase": phase, "containerStatuses": [{
        "name": "renderer", "image": "folio:test", "imageID": "", "ready": false, "restartCount": 0,
        "state": {"terminated": terminated},
    }]});
    api.put_object("v1", "pods", current);
}
