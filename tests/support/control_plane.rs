//! A real Kubernetes control plane for the cluster tests: etcd, kube-apiserver (RBAC
//! and Node authorization, the default admission plugins plus NodeRestriction,
//! service-account token signing, an audit log), kube-controller-manager (garbage
//! collector, namespaces, service accounts, resource quotas) and kube-scheduler, built
//! from their Go modules by `tests/control-plane/build.sh`, and folio's Helm chart
//! installed on it with the real `helm`.
//!
//! It starts once per test binary (about 3 s) on free loopback ports; each test works
//! in a namespace of its own under Pod Security `restricted`. Its processes run from a
//! thread that lives as long as the test binary, and die with it (`PR_SET_PDEATHSIG`).
//! There is no container runtime here: [`super::kubelet`] plays the node.
//!
//! Credentials: the tests act as an admin (a static token in group `system:masters`);
//! the operator and `folio api` act as the chart's ServiceAccounts, with tokens from the
//! TokenRequest API, so the chart's RBAC is what authorizes them.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use kube::api::{Api, PostParams};
use serde_json::{Value, json};

use super::kubelet::{Kubelet, NODE_NAME};

/// The namespace the chart is installed in.
pub const RELEASE_NAMESPACE: &str = "folio-system";
/// The Helm release of the chart.
pub const RELEASE: &str = "folio";
/// The operator's ServiceAccount, as the chart names it.
pub const OPERATOR_ACCOUNT: &str = "folio-operator";
/// The API's ServiceAccount, as the chart names it.
pub const API_ACCOUNT: &str = "folio-api";
/// The image renderer Pods run in the tests; the test kubelet knows no other.
pub const RENDERER_IMAGE: &str = "folio:test";

const ADMIN_TOKEN: &str = "folio-test-admin-token";
const CONTROLLER_MANAGER_TOKEN: &str = "folio-test-controller-manager-token";
const SCHEDULER_TOKEN: &str = "folio-test-scheduler-token";
const NODE_TOKEN: &str = "folio-test-node-token";

/// The running control plane.
pub struct ControlPlane {
    /// `https://127.0.0.1:PORT`.
    pub url: String,
    /// Certificates, kubeconfigs, logs and the audit log.
    pub dir: PathBuf,
    /// The binaries (kube-apiserver, kubectl, helm, …).
    pub bin: PathBuf,
    /// The test kubelet's settings, shared with the tests.
    pub kubelet: Arc<Kubelet>,
    /// A TokenRequest token of the chart's operator ServiceAccount.
    pub operator_token: String,
    /// A TokenRequest token of the chart's API ServiceAccount.
    pub api_token: String,
    namespaces: AtomicU32,
}

static SHARED: OnceLock<ControlPlane> = OnceLock::new();

/// The control plane of this test binary, started on first use.
pub fn shared() -> &'static ControlPlane {
    SHARED.get_or_init(|| {
        let (sender, receiver) = std::sync::mpsc::channel();
        // Children get SIGKILL when the thread that started them exits
        // (PR_SET_PDEATHSIG), so they are started from one that lives until the
        // test binary exits; it also runs the kubelet.
        std::thread::Builder::new()
            .name("control-plane".into())
            .spawn(move || {
                let runtime =
                    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
                runtime.block_on(async move {
                    let (plane, children) = match start().await {
                        Ok(started) => started,
                        Err(err) => {
                            let _ = sender.send(Err(err));
                            return;
                        }
                    };
                    let kubelet = plane.kubelet.clone();
                    let node = plane.client(NODE_TOKEN).await;
                    let log = plane.dir.join("logs/kubelet.log");
                    let _ = sender.send(Ok(plane));
                    super::kubelet::run(kubelet, node, log).await;
                    drop(children);
                });
            })
            .unwrap();
        match receiver.recv().unwrap() {
            Ok(plane) => plane,
            Err(err) => panic!("the control plane did not start: {err:#}"),
        }
    })
}

/// Processes killed when dropped.
struct Children(Vec<Child>);

impl Drop for Children {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Where the control-plane binaries are, building them when they are missing.
fn binaries() -> anyhow::Result<PathBuf> {
    if let Ok(dir) = std::env::var("FOLIO_CONTROL_PLANE_BIN") {
        return Ok(PathBuf::from(dir));
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/control-plane/build.sh");
    eprintln!("control plane: {} (the first build takes about 15 minutes; Go is needed)", script.display());
    let out = Command::new("bash").arg(&script).stderr(Stdio::inherit()).output()?;
    anyhow::ensure!(
        out.status.success(),
        "building the control plane failed; the cluster tests need Go (apt-get install golang, or https://go.dev/dl) to build kube-apiserver and etcd: run {}",
        script.display()
    );
    let text = String::from_utf8(out.stdout)?;
    Ok(PathBuf::from(text.lines().last().unwrap_or_default().trim()))
}

/// A free TCP port on loopback.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Start `binary` with `args`, its output in `logs/<name>.log`.
fn spawn(bin: &Path, dir: &Path, name: &str, binary: &str, args: &[String]) -> anyhow::Result<Child> {
    let log = std::fs::File::create(dir.join("logs").join(format!("{name}.log")))?;
    let mut command = super::dies_with_test(Command::new(bin.join(binary)));
    command.args(args).stdin(Stdio::null()).stdout(log.try_clone()?).stderr(log);
    Ok(command.spawn()?)
}

async fn start() -> anyhow::Result<(ControlPlane, Children)> {
    use anyhow::Context as _;
    let bin = binaries()?;
    let dir = std::env::temp_dir().join(format!("folio-control-plane-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("logs"))?;
    std::fs::create_dir_all(dir.join("pki"))?;
    remove_stale_runs();
    let mut children = Children(Vec::new());

    let status = Command::new("openssl")
        .args(["genrsa", "-out"])
        .arg(dir.join("pki/service-accounts.key"))
        .arg("2048")
        .stderr(Stdio::null())
        .status()
        .context("openssl is needed to make the service-account signing key (apt-get install openssl)")?;
    anyhow::ensure!(status.success(), "openssl genrsa failed");
    std::fs::write(
        dir.join("tokens.csv"),
        format!(
            "{ADMIN_TOKEN},folio-test-admin,admin,system:masters\n\
             {CONTROLLER_MANAGER_TOKEN},system:kube-controller-manager,kcm\n\
             {SCHEDULER_TOKEN},system:kube-scheduler,scheduler\n\
             {NODE_TOKEN},system:node:{NODE_NAME},node,system:nodes\n"
        ),
    )?;
    std::fs::write(
        dir.join("audit-policy.yaml"),
        "apiVersion: audit.k8s.io/v1\nkind: Policy\nomitStages: [RequestReceived]\nrules:\n- level: Metadata\n",
    )?;

    let (etcd_client, etcd_peer) = (free_port(), free_port());
    let args = [
        "--name=folio-test".to_owned(),
        format!("--data-dir={}", dir.join("etcd").display()),
        format!("--listen-client-urls=http://127.0.0.1:{etcd_client}"),
        format!("--advertise-client-urls=http://127.0.0.1:{etcd_client}"),
        format!("--listen-peer-urls=http://127.0.0.1:{etcd_peer}"),
        format!("--initial-advertise-peer-urls=http://127.0.0.1:{etcd_peer}"),
        format!("--initial-cluster=folio-test=http://127.0.0.1:{etcd_peer}"),
        "--unsafe-no-fsync=true".to_owned(),
        "--log-level=warn".to_owned(),
    ];
    children.0.push(spawn(&bin, &dir, "etcd", "etcd", &args)?);

    let port = free_port();
    let key = dir.join("pki/service-accounts.key");
    let args = [
        format!("--etcd-servers=http://127.0.0.1:{etcd_client}"),
        "--bind-address=127.0.0.1".to_owned(),
        "--advertise-address=127.0.0.1".to_owned(),
        format!("--secure-port={port}"),
        format!("--cert-dir={}", dir.join("pki").display()),
        format!("--token-auth-file={}", dir.join("tokens.csv").display()),
        "--authorization-mode=Node,RBAC".to_owned(),
        // Beside the defaults: what hardened clusters add (an owner reference that
        // blocks its owner's deletion needs update on the owner's finalizers).
        "--enable-admission-plugins=NodeRestriction,OwnerReferencesPermissionEnforcement".to_owned(),
        "--service-account-issuer=https://kubernetes.default.svc.cluster.local".to_owned(),
        format!("--service-account-key-file={}", key.display()),
        format!("--service-account-signing-key-file={}", key.display()),
        "--service-cluster-ip-range=10.96.0.0/16".to_owned(),
        // On loopback there is no address to publish for the kubernetes Service.
        "--endpoint-reconciler-type=none".to_owned(),
        "--allow-privileged=false".to_owned(),
        format!("--audit-policy-file={}", dir.join("audit-policy.yaml").display()),
        format!("--audit-log-path={}", dir.join("audit.log").display()),
        "--audit-log-format=json".to_owned(),
        "--audit-log-mode=blocking".to_owned(),
        "--v=1".to_owned(),
    ];
    children.0.push(spawn(&bin, &dir, "kube-apiserver", "kube-apiserver", &args)?);
    let url = format!("https://127.0.0.1:{port}");
    wait_ready(&url, &dir, &mut children).await?;

    let ca = dir.join("pki/apiserver.crt");
    write_kubeconfig(&dir.join("controller-manager.kubeconfig"), &url, &ca, CONTROLLER_MANAGER_TOKEN, "default")?;
    write_kubeconfig(&dir.join("scheduler.kubeconfig"), &url, &ca, SCHEDULER_TOKEN, "default")?;
    write_kubeconfig(&dir.join("admin.kubeconfig"), &url, &ca, ADMIN_TOKEN, "default")?;
    let plane = ControlPlane {
        url: url.clone(),
        dir: dir.clone(),
        bin: bin.clone(),
        kubelet: Arc::new(Kubelet::default()),
        operator_token: String::new(),
        api_token: String::new(),
        namespaces: AtomicU32::new(0),
    };
    // The chart first, so that the controllers' first discovery already finds folio's
    // kinds (the resource-quota controller counts RenderJobs from then on, not 30 s
    // later).
    plane.helm(&["install", RELEASE, &chart_dir(), "--namespace", RELEASE_NAMESPACE, "--create-namespace"])?;
    let crds = ["crd/renderjobs.folio.dev", "crd/rendertemplates.folio.dev", "crd/renderaccounts.folio.dev"];
    plane
        .run_tool("kubectl", &[&["wait", "--for=condition=Established", "--timeout=60s"][..], &crds[..]].concat())
        .map_err(anyhow::Error::msg)?;
    let args = [
        format!("--kubeconfig={}", dir.join("controller-manager.kubeconfig").display()),
        "--controllers=garbagecollector,namespace,serviceaccount,serviceaccount-token,resourcequota".to_owned(),
        format!("--service-account-private-key-file={}", key.display()),
        format!("--root-ca-file={}", ca.display()),
        // Each controller acts as its own ServiceAccount with its bootstrap role, as
        // in a kubeadm cluster.
        "--use-service-account-credentials=true".to_owned(),
        "--leader-elect=false".to_owned(),
        "--secure-port=0".to_owned(),
        "--concurrent-gc-syncs=5".to_owned(),
        "--v=1".to_owned(),
    ];
    children.0.push(spawn(&bin, &dir, "kube-controller-manager", "kube-controller-manager", &args)?);
    let args = [
        format!("--kubeconfig={}", dir.join("scheduler.kubeconfig").display()),
        "--leader-elect=false".to_owned(),
        "--secure-port=0".to_owned(),
        "--v=1".to_owned(),
    ];
    children.0.push(spawn(&bin, &dir, "kube-scheduler", "kube-scheduler", &args)?);

    let admin = plane.admin().await;
    super::kubelet::register(&admin, &plane.client(NODE_TOKEN).await).await.context("registering the test node")?;
    let operator_token = token_of(&admin, OPERATOR_ACCOUNT).await?;
    let api_token = token_of(&admin, API_ACCOUNT).await?;
    install_panic_hook(dir);
    Ok((ControlPlane { operator_token, api_token, ..plane }, children))
}

/// The chart folder in this repository.
pub fn chart_dir() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("charts/folio").display().to_string()
}

/// Wait until kube-apiserver answers `/readyz`.
async fn wait_ready(url: &str, dir: &Path, children: &mut Children) -> anyhow::Result<()> {
    let http = reqwest::Client::builder().danger_accept_invalid_certs(true).build()?;
    let started = Instant::now();
    loop {
        let ready = http.get(format!("{url}/readyz")).bearer_auth(ADMIN_TOKEN).send().await;
        if ready.is_ok_and(|r| r.status().is_success()) {
            return Ok(());
        }
        for child in &mut children.0 {
            if let Some(status) = child.try_wait()? {
                anyhow::bail!("a control-plane process exited ({status}); logs in {}", dir.join("logs").display());
            }
        }
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(60),
            "kube-apiserver was not ready within 60 s; logs in {}",
            dir.join("logs").display()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Remove the folders of earlier test runs whose process is gone.
fn remove_stale_runs() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Some(pid) = name.strip_prefix("folio-control-plane-").and_then(|p| p.parse::<u32>().ok())
            && !Path::new(&format!("/proc/{pid}")).exists()
        {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// When a test fails, show the end of every control-plane log.
fn install_panic_hook(dir: PathBuf) {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        previous(info);
        let mut out = std::io::stderr().lock();
        let _ = writeln!(out, "---- control plane logs (whole files in {}) ----", dir.join("logs").display());
        for name in ["kube-apiserver", "kube-controller-manager", "kube-scheduler", "etcd", "kubelet"] {
            let Ok(file) = std::fs::File::open(dir.join("logs").join(format!("{name}.log"))) else { continue };
            let lines: Vec<String> = std::io::BufReader::new(file).lines().map_while(Result::ok).collect();
            let _ = writeln!(out, "---- {name} (last 25 lines) ----");
            for line in &lines[lines.len().saturating_sub(25)..] {
                let _ = writeln!(out, "{line}");
            }
        }
    }));
}

/// A kubeconfig for `token` at `url`, trusting the CA file `ca`.
fn write_kubeconfig(file: &Path, url: &str, ca: &Path, token: &str, namespace: &str) -> anyhow::Result<()> {
    let text = kubeconfig_yaml(url, &format!("certificate-authority: {}", ca.display()), token, namespace);
    std::fs::write(file, text)?;
    Ok(())
}

/// The text of a kubeconfig; `ca` is its `certificate-authority(-data)` line.
fn kubeconfig_yaml(url: &str, ca: &str, token: &str, namespace: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: folio-test\n  cluster:\n    server: {url}\n    {ca}\nusers:\n- name: user\n  user:\n    token: {token}\ncontexts:\n- name: folio-test\n  context:\n    cluster: folio-test\n    user: user\n    namespace: {namespace}\ncurrent-context: folio-test\n"
    )
}

/// A TokenRequest token of the ServiceAccount `name` in the release namespace.
async fn token_of(admin: &kube::Client, name: &str) -> anyhow::Result<String> {
    let request = json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
        "spec": {"expirationSeconds": 86400}});
    let url = format!("/api/v1/namespaces/{RELEASE_NAMESPACE}/serviceaccounts/{name}/token");
    let http =
        http::Request::post(url).header("content-type", "application/json").body(serde_json::to_vec(&request)?)?;
    let answer: Value = admin.request(http).await?;
    answer["status"]["token"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| anyhow::anyhow!("TokenRequest for {name} answered without a token: {answer}"))
}

impl ControlPlane {
    /// A client acting as `token`, in the calling test's runtime.
    pub async fn client(&self, token: &str) -> kube::Client {
        let kubeconfig = self.kubeconfig_text(token, "default");
        let kubeconfig = kube::config::Kubeconfig::from_yaml(&kubeconfig).unwrap();
        let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default()).await.unwrap();
        kube::Client::try_from(config).unwrap()
    }

    /// A client acting as the cluster's admin (the tests themselves).
    pub async fn admin(&self) -> kube::Client {
        self.client(ADMIN_TOKEN).await
    }

    /// A client acting as the chart's operator ServiceAccount.
    pub async fn operator_client(&self) -> kube::Client {
        self.client(&self.operator_token).await
    }

    fn kubeconfig_text(&self, token: &str, namespace: &str) -> String {
        use base64::Engine as _;
        let pem = std::fs::read(self.dir.join("pki/apiserver.crt")).unwrap();
        let ca = base64::engine::general_purpose::STANDARD.encode(pem);
        kubeconfig_yaml(&self.url, &format!("certificate-authority-data: {ca}"), token, namespace)
    }

    /// A kubeconfig file acting as `token` with `namespace` as its default.
    pub fn kubeconfig(&self, dir: &Path, token: &str, namespace: &str) -> PathBuf {
        let file = dir.join("kubeconfig");
        std::fs::write(&file, self.kubeconfig_text(token, namespace)).unwrap();
        file
    }

    /// The admin kubeconfig (for kubectl and helm).
    pub fn admin_kubeconfig(&self) -> PathBuf {
        self.dir.join("admin.kubeconfig")
    }

    /// Run `kubectl` as the admin; its output, or a panic with its error.
    pub fn kubectl(&self, args: &[&str]) -> String {
        self.run_tool("kubectl", args).unwrap_or_else(|err| panic!("{err}"))
    }

    /// Run `kubectl` as the admin; its output or its error output.
    pub fn try_kubectl(&self, args: &[&str]) -> Result<String, String> {
        self.run_tool("kubectl", args)
    }

    /// Run `helm` as the admin.
    pub fn helm(&self, args: &[&str]) -> anyhow::Result<String> {
        self.run_tool("helm", args).map_err(anyhow::Error::msg)
    }

    fn run_tool(&self, tool: &str, args: &[&str]) -> Result<String, String> {
        let out = Command::new(self.bin.join(tool))
            .args(args)
            .env("KUBECONFIG", self.admin_kubeconfig())
            .env("HELM_CACHE_HOME", self.dir.join("helm/cache"))
            .env("HELM_CONFIG_HOME", self.dir.join("helm/config"))
            .env("HELM_DATA_HOME", self.dir.join("helm/data"))
            .output()
            .map_err(|err| format!("{tool}: {err}"))?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(format!("{tool} {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr)))
        }
    }

    /// A new namespace for one test, under Pod Security `restricted`, once its
    /// `default` ServiceAccount exists (Pods are refused before that).
    pub async fn namespace(&self, prefix: &str) -> String {
        let n = self.namespaces.fetch_add(1, Ordering::Relaxed);
        let name = format!("{prefix}-{n}");
        let admin = self.admin().await;
        let namespace: Namespace = serde_json::from_value(json!({
            "metadata": {"name": name, "labels": {
                "pod-security.kubernetes.io/enforce": "restricted",
                "pod-security.kubernetes.io/enforce-version": "latest",
            }}
        }))
        .unwrap();
        Api::<Namespace>::all(admin.clone()).create(&PostParams::default(), &namespace).await.unwrap();
        let accounts: Api<ServiceAccount> = Api::namespaced(admin, &name);
        let started = Instant::now();
        while accounts.get_opt("default").await.unwrap().is_none() {
            assert!(started.elapsed() < Duration::from_secs(30), "no default ServiceAccount in {name}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        name
    }

    /// The audit log's entries so far (one JSON object a request).
    pub fn audit_entries(&self) -> Vec<Value> {
        self.audit_entries_about("")
    }

    /// The audit log's entries whose line contains `needle` (e.g. a namespace).
    pub fn audit_entries_about(&self, needle: &str) -> Vec<Value> {
        let text = std::fs::read_to_string(self.dir.join("audit.log")).unwrap_or_default();
        text.lines().filter(|line| line.contains(needle)).filter_map(|line| serde_json::from_str(line).ok()).collect()
    }
}
