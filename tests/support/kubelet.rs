//! A test kubelet. There is no container runtime on the build machines, so this plays
//! the one node of the test control plane, and it is the only imitation in the
//! cluster tier: it registers a Node as `system:node:folio-test-node` (Node
//! authorization and NodeRestriction apply to it as to a real kubelet), and for each
//! Pod the real kube-scheduler binds to it, it runs the real `folio render` binary
//! on the Pod's input ConfigMap laid out as Kubernetes mounts it, writing
//! `pods/status` as a kubelet does: Running, then terminated with exit code, reason
//! and the termination message (falling back to the output on error, as
//! `FallbackToLogsOnError` asks).
//!
//! It confirms the graceful deletion of its Pods (a bound Pod's DELETE only sets
//! `deletionTimestamp` until its kubelet confirms): SIGTERM to the running process,
//! SIGKILL after the grace period, then the final DELETE with no grace period. It
//! enforces `activeDeadlineSeconds`. It pulls no images: it knows only
//! [`super::control_plane::RENDERER_IMAGE`] and reports `ErrImagePull` for any other.
//! A test may ask it to crash a job's first attempt (exit 137, no report), to kill
//! one as out of memory, or to keep one running.
//!
//! It gives the process the container's env: plain values and the downward API's
//! `limits.*`.
//!
//! What it does not do: cgroups (memory and CPU limits are not enforced), the
//! read-only root file system, probes, restarts, node heartbeats. The not-ready taint
//! that admission puts on a new Node is removed by the admin, standing in for the
//! node lifecycle controller.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Node, Pod};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, ResourceExt};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::{Value, json};

use super::control_plane::RENDERER_IMAGE;

/// The test node's name.
pub const NODE_NAME: &str = "folio-test-node";

/// What the kubelet does with the Pods of one job.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Behaviour {
    /// Run `folio render` (the default).
    Render,
    /// The first attempt's container dies with exit code 137 and no report.
    CrashFirstAttempt,
    /// Every attempt is killed as out of memory (exit 137, reason OOMKilled).
    OutOfMemory,
    /// The container runs until the Pod is deleted.
    Hang,
}

/// The kubelet's settings and what it saw, shared with the tests.
#[derive(Default)]
pub struct Kubelet {
    behaviours: Mutex<HashMap<(String, String), Behaviour>>,
    /// Pods (`namespace/name`) whose container was started.
    started: Mutex<Vec<String>>,
    /// Pods (`namespace/name`) whose process was stopped by SIGTERM for a deletion.
    terminated: Mutex<Vec<String>>,
    /// How each Pod's container (`namespace/name`) exited.
    exits: Mutex<Vec<(String, i32)>>,
}

impl Kubelet {
    /// Treat the Pods of job `name` in `namespace` so.
    pub fn behave(&self, namespace: &str, name: &str, behaviour: Behaviour) {
        self.behaviours.lock().unwrap().insert((namespace.to_owned(), name.to_owned()), behaviour);
    }

    fn behaviour(&self, namespace: &str, job: &str) -> Behaviour {
        let behaviours = self.behaviours.lock().unwrap();
        behaviours.get(&(namespace.to_owned(), job.to_owned())).copied().unwrap_or(Behaviour::Render)
    }

    /// The Pods of `namespace` whose container was started, in order.
    pub fn started_in(&self, namespace: &str) -> Vec<String> {
        let prefix = format!("{namespace}/");
        let started = self.started.lock().unwrap();
        started.iter().filter_map(|p| p.strip_prefix(&prefix)).map(str::to_owned).collect()
    }

    /// The exit code of the container of Pod `name` in `namespace`, once it exited.
    pub fn exit_code(&self, namespace: &str, name: &str) -> Option<i32> {
        let pod = format!("{namespace}/{name}");
        self.exits.lock().unwrap().iter().find(|(p, _)| *p == pod).map(|(_, code)| *code)
    }

    /// The Pods of `namespace` stopped by SIGTERM.
    pub fn terminated_in(&self, namespace: &str) -> Vec<String> {
        let prefix = format!("{namespace}/");
        let terminated = self.terminated.lock().unwrap();
        terminated.iter().filter_map(|p| p.strip_prefix(&prefix)).map(str::to_owned).collect()
    }
}

/// Register the Node as the node itself does, and make it schedulable.
pub async fn register(admin: &Client, node: &Client) -> anyhow::Result<()> {
    let resources = json!({"cpu": "64", "memory": "256Gi", "pods": "1000", "ephemeral-storage": "100Gi"});
    let object: Node = serde_json::from_value(json!({
        "metadata": {"name": NODE_NAME, "labels": {
            "kubernetes.io/hostname": NODE_NAME, "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64"}},
        "status": {"capacity": resources, "allocatable": resources},
    }))?;
    let nodes: Api<Node> = Api::all(node.clone());
    nodes.create(&PostParams::default(), &object).await?;
    let now = jiff::Timestamp::now().to_string();
    let status = json!({"status": {
        "capacity": resources, "allocatable": resources,
        "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
            "message": "folio test kubelet is ready", "lastHeartbeatTime": now, "lastTransitionTime": now}],
        "nodeInfo": {"kubeletVersion": "v1.37.2", "operatingSystem": "linux", "architecture": "amd64",
            "containerRuntimeVersion": "folio-test://1", "kernelVersion": "", "osImage": "", "machineID": "",
            "systemUUID": "", "bootID": "", "kubeProxyVersion": ""},
    }});
    nodes.patch_status(NODE_NAME, &PatchParams::default(), &Patch::Merge(&status)).await?;
    // TaintNodesByCondition taints a new Node not-ready; the node lifecycle controller
    // would lift it once Ready, and none runs here.
    let admin_nodes: Api<Node> = Api::all(admin.clone());
    admin_nodes.patch(NODE_NAME, &PatchParams::default(), &Patch::Merge(json!({"spec": {"taints": null}}))).await?;
    Ok(())
}

/// What the kubelet knows of one Pod it runs.
#[derive(Default)]
struct Running {
    /// The container's process, while it runs.
    pid: Option<u32>,
    /// The Pod is being deleted: confirm once the process is gone.
    deleting: bool,
    /// The deletion was confirmed.
    confirmed: bool,
}

type Pods = Arc<Mutex<HashMap<String, Running>>>;

/// Run the node until the test binary exits.
pub async fn run(kubelet: Arc<Kubelet>, node: Client, log: std::path::PathBuf) {
    let pods: Api<Pod> = Api::all(node.clone());
    let config = watcher::Config::default().fields(&format!("spec.nodeName={NODE_NAME}"));
    let mut stream = watcher(pods, config).default_backoff().boxed();
    let running: Pods = Arc::default();
    let log = Arc::new(Log(Mutex::new(std::fs::File::create(log).unwrap())));
    while let Some(event) = stream.next().await {
        let pod = match event {
            Ok(watcher::Event::Apply(pod) | watcher::Event::InitApply(pod)) => pod,
            Ok(watcher::Event::Delete(pod)) => {
                // Removed without waiting for this node (a deletion with no grace
                // period): the container is killed as a kubelet does, SIGTERM first.
                let entry = running.lock().unwrap().get_mut(&pod.uid().unwrap_or_default()).map(|entry| {
                    entry.confirmed = true;
                    std::mem::replace(&mut entry.deleting, true)
                });
                if let Some(false) = entry {
                    stop_container(&kubelet, &running, &pod, 2, &log);
                }
                continue;
            }
            Ok(_) => continue,
            Err(err) => {
                log.line(format!("watch: {err}"));
                continue;
            }
        };
        let uid = pod.uid().unwrap_or_default();
        if pod.metadata.deletion_timestamp.is_some() {
            let mut table = running.lock().unwrap();
            let entry = table.entry(uid.clone()).or_default();
            if entry.deleting {
                continue;
            }
            entry.deleting = true;
            if entry.pid.is_some() {
                drop(table);
                let grace = pod.metadata.deletion_grace_period_seconds.unwrap_or(30).max(2) as u64;
                stop_container(&kubelet, &running, &pod, grace, &log);
            } else if !entry.confirmed {
                entry.confirmed = true;
                tokio::spawn(confirm_deletion(node.clone(), pod, log.clone()));
            }
            continue;
        }
        let mut table = running.lock().unwrap();
        if table.contains_key(&uid) {
            continue;
        }
        table.insert(uid, Running::default());
        drop(table);
        tokio::spawn(run_pod(node.clone(), kubelet.clone(), running.clone(), log.clone(), pod));
    }
}

/// SIGTERM to the Pod's running container, SIGKILL after `grace` seconds.
fn stop_container(kubelet: &Kubelet, running: &Pods, pod: &Pod, grace: u64, log: &Log) {
    let pid = running.lock().unwrap().get(&pod.uid().unwrap_or_default()).and_then(|entry| entry.pid);
    let Some(pid) = pid else { return };
    let name = format!("{}/{}", pod.namespace().unwrap_or_default(), pod.name_any());
    log.line(format!("{name}: SIGTERM to {pid}"));
    kubelet.terminated.lock().unwrap().push(name);
    let _ = kill(Pid::from_raw(pid as i32), Signal::SIGTERM);
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(grace)).await;
        // The process may be gone already.
        let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
    });
}

/// A line-per-event log file, shown when a test fails.
struct Log(Mutex<std::fs::File>);

impl Log {
    fn line(&self, text: String) {
        use std::io::Write;
        let _ = writeln!(self.0.lock().unwrap(), "{} {text}", jiff::Timestamp::now());
    }
}

/// The final DELETE a kubelet sends once a Pod's containers are gone.
async fn confirm_deletion(node: Client, pod: Pod, log: Arc<Log>) {
    let pods: Api<Pod> = Api::namespaced(node, &pod.namespace().unwrap_or_default());
    let params = DeleteParams {
        grace_period_seconds: Some(0),
        preconditions: Some(Preconditions { uid: pod.uid(), resource_version: None }),
        ..DeleteParams::default()
    };
    match pods.delete(&pod.name_any(), &params).await {
        Ok(_) => log.line(format!("{}/{}: deletion confirmed", pod.namespace().unwrap(), pod.name_any())),
        Err(kube::Error::Api(status)) if status.is_not_found() || status.code == 409 => {}
        Err(err) => {
            log.line(format!("{}/{}: confirming the deletion failed: {err}", pod.namespace().unwrap(), pod.name_any()))
        }
    }
}

/// How a container ended.
struct Ended {
    exit_code: i32,
    reason: &'static str,
    message: String,
    /// The Pod-level reason (`DeadlineExceeded`), if the kubelet stopped it.
    pod_reason: Option<(&'static str, &'static str)>,
}

/// Run one Pod's container and report it in `pods/status`.
async fn run_pod(node: Client, kubelet: Arc<Kubelet>, running: Pods, log: Arc<Log>, pod: Pod) {
    let namespace = pod.namespace().unwrap_or_default();
    let name = pod.name_any();
    let uid = pod.uid().unwrap_or_default();
    let api: Api<Pod> = Api::namespaced(node.clone(), &namespace);
    let spec = pod.spec.clone().unwrap_or_default();
    let container = spec.containers.first().cloned().unwrap_or_default();
    let image = container.image.clone().unwrap_or_default();
    if image != RENDERER_IMAGE {
        let message = format!("failed to pull and unpack image \"{image}\": not found");
        log.line(format!("{namespace}/{name}: ErrImagePull ({image})"));
        let status = json!({"status": {"phase": "Pending", "containerStatuses": [{
            "name": container.name, "image": image, "imageID": "", "ready": false, "restartCount": 0, "started": false,
            "state": {"waiting": {"reason": "ErrImagePull", "message": message}}}]}});
        report(&api, &name, &status, &log).await;
        return;
    }
    let job = pod.labels().get("folio.dev/render-job").cloned().unwrap_or_default();
    let attempt = pod.annotations().get("folio.dev/attempt").cloned().unwrap_or_default();
    let started_at = jiff::Timestamp::now();
    let running_status = json!({"status": {
        "phase": "Running", "startTime": started_at.to_string(),
        "conditions": conditions(true, started_at),
        "containerStatuses": [{"name": container.name, "image": image, "imageID": "", "ready": true,
            "restartCount": 0, "started": true, "state": {"running": {"startedAt": started_at.to_string()}}}]}});
    report(&api, &name, &running_status, &log).await;
    let pod_name = format!("{namespace}/{name}");

    let deadline = spec.active_deadline_seconds.map(|s| Duration::from_secs(s.max(0) as u64));
    let ended = match kubelet.behaviour(&namespace, &job) {
        behaviour @ (Behaviour::CrashFirstAttempt | Behaviour::OutOfMemory)
            if behaviour == Behaviour::OutOfMemory || attempt == "0" =>
        {
            kubelet.started.lock().unwrap().push(pod_name.clone());
            let reason = if behaviour == Behaviour::OutOfMemory { "OOMKilled" } else { "Error" };
            Ended { exit_code: 137, reason, message: String::new(), pod_reason: None }
        }
        Behaviour::Hang => {
            let mut sleep = super::dies_with_test(std::process::Command::new("sleep"));
            sleep.arg("3600");
            run_process(sleep, None, (&kubelet, &pod_name), &running, &uid, deadline).await
        }
        _ => match lay_out_input(&node, &namespace, &spec, &container).await {
            Ok((dir, args)) => {
                let termination_log = dir.path().join("termination-log");
                let mut render = super::dies_with_test(super::folio());
                render.args(&args).arg("--termination-log").arg(&termination_log).envs(container_env(&container));
                run_process(render, Some(&termination_log), (&kubelet, &pod_name), &running, &uid, deadline).await
            }
            Err(message) => Ended { exit_code: 128, reason: "ContainerCannotRun", message, pod_reason: None },
        },
    };
    log.line(format!("{namespace}/{name}: exited {} ({})", ended.exit_code, ended.reason));
    kubelet.exits.lock().unwrap().push((pod_name, ended.exit_code));
    let (deleting, confirm) = {
        let mut table = running.lock().unwrap();
        let entry = table.entry(uid).or_default();
        entry.pid = None;
        let confirm = entry.deleting && !entry.confirmed;
        entry.confirmed |= confirm;
        (entry.deleting, confirm)
    };
    if confirm {
        confirm_deletion(node, pod.clone(), log.clone()).await;
    }
    if deleting {
        return;
    }
    let finished_at = jiff::Timestamp::now();
    let mut status = json!({
        "phase": if ended.exit_code == 0 { "Succeeded" } else { "Failed" },
        "startTime": started_at.to_string(),
        "conditions": conditions(false, finished_at),
        "containerStatuses": [{"name": container.name, "image": image, "imageID": "", "ready": false,
            "restartCount": 0, "started": false, "state": {"terminated": {
                "exitCode": ended.exit_code, "reason": ended.reason, "message": ended.message,
                "startedAt": started_at.to_string(), "finishedAt": finished_at.to_string()}}}],
    });
    if let Some((reason, message)) = ended.pod_reason {
        status["reason"] = json!(reason);
        status["message"] = json!(message);
    }
    report(&api, &name, &json!({ "status": status }), &log).await;
}

/// Start the container's process (unless the Pod is being deleted already) and wait
/// for it, killing it at the Pod's deadline.
async fn run_process(
    command: std::process::Command,
    termination_log: Option<&std::path::Path>,
    (kubelet, pod_name): (&Kubelet, &str),
    running: &Pods,
    uid: &str,
    deadline: Option<Duration>,
) -> Ended {
    let mut command = tokio::process::Command::from(command);
    command.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped()).kill_on_drop(true);
    let mut child = {
        // Under the table's lock, so a deletion either sees the process or stops it
        // from starting.
        let mut table = running.lock().unwrap();
        let entry = table.entry(uid.to_owned()).or_default();
        if entry.deleting {
            return Ended { exit_code: 137, reason: "Error", message: String::new(), pod_reason: None };
        }
        let child = command.spawn().unwrap();
        entry.pid = child.id();
        child
    };
    kubelet.started.lock().unwrap().push(pod_name.to_owned());
    let mut stdout = child.stdout.take();
    let mut stderr = child.stderr.take();
    let output = async {
        let mut out = Vec::new();
        use tokio::io::AsyncReadExt;
        if let Some(stderr) = stderr.as_mut() {
            let _ = stderr.read_to_end(&mut out).await;
        }
        if let Some(stdout) = stdout.as_mut() {
            let _ = stdout.read_to_end(&mut out).await;
        }
        out
    };
    let waited = async {
        let (status, output) = tokio::join!(child.wait(), output);
        (status.ok(), output)
    };
    let (status, output) = match deadline {
        Some(deadline) => match tokio::time::timeout(deadline, waited).await {
            Ok(done) => done,
            Err(_) => {
                return Ended {
                    exit_code: 137,
                    reason: "Error",
                    message: String::new(),
                    pod_reason: Some((
                        "DeadlineExceeded",
                        "Pod was active on the node longer than the specified deadline",
                    )),
                };
            }
        },
        None => waited.await,
    };
    let exit_code = status.and_then(|s| {
        use std::os::unix::process::ExitStatusExt;
        s.code().or_else(|| s.signal().map(|signal| 128 + signal))
    });
    let exit_code = exit_code.unwrap_or(1);
    let mut message = termination_log.and_then(|f| std::fs::read_to_string(f).ok()).unwrap_or_default();
    if message.is_empty() && exit_code != 0 {
        // FallbackToLogsOnError: the end of the output, at most 2048 bytes.
        let text = String::from_utf8_lossy(&output);
        let start = text.len().saturating_sub(2048);
        message = text[text.ceil_char_boundary(start)..].to_owned();
    }
    message.truncate(message.floor_char_boundary(4096));
    Ended { exit_code, reason: if exit_code == 0 { "Completed" } else { "Error" }, message, pod_reason: None }
}

/// The container's environment as a kubelet resolves it: plain values, and the
/// downward API's `limits.*` in units of their divisor (rounded up).
fn container_env(container: &k8s_openapi::api::core::v1::Container) -> Vec<(String, String)> {
    let limits = container.resources.as_ref().and_then(|r| r.limits.clone()).unwrap_or_default();
    container
        .env
        .iter()
        .flatten()
        .filter_map(|var| {
            let value = match (&var.value, var.value_from.as_ref().and_then(|from| from.resource_field_ref.as_ref())) {
                (Some(value), _) => value.clone(),
                (None, Some(field)) => {
                    let limit = quantity_bytes(&limits.get(field.resource.strip_prefix("limits.")?)?.0)?;
                    let divisor = field.divisor.as_ref().map_or(Some(1), |d| quantity_bytes(&d.0))?;
                    limit.div_ceil(divisor).to_string()
                }
                (None, None) => return None,
            };
            Some((var.name.clone(), value))
        })
        .collect()
}

/// A whole-number quantity with an optional binary or decimal suffix (`512Mi`, `1Gi`,
/// `1G`, `1024`); fractions such as `1.5Gi` are not read.
fn quantity_bytes(quantity: &str) -> Option<u64> {
    let (number, unit) = quantity.split_at(quantity.find(|c: char| !c.is_ascii_digit()).unwrap_or(quantity.len()));
    let unit: u64 = match unit {
        "" => 1,
        "k" => 1_000,
        "M" => 1_000_000,
        "G" => 1_000_000_000,
        "Ki" => 1 << 10,
        "Mi" => 1 << 20,
        "Gi" => 1 << 30,
        _ => return None,
    };
    number.parse::<u64>().ok()?.checked_mul(unit)
}

/// Write the Pod's input ConfigMap into a folder as its volume would be mounted;
/// the folder and the container's arguments pointing at it.
async fn lay_out_input(
    node: &Client,
    namespace: &str,
    spec: &k8s_openapi::api::core::v1::PodSpec,
    container: &k8s_openapi::api::core::v1::Container,
) -> Result<(tempfile::TempDir, Vec<String>), String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let mut args = container.args.clone().unwrap_or_default();
    for mount in container.volume_mounts.iter().flatten() {
        let Some(volume) = spec.volumes.iter().flatten().find(|v| v.name == mount.name) else { continue };
        let Some(source) = &volume.config_map else { continue };
        let config_maps: Api<ConfigMap> = Api::namespaced(node.clone(), namespace);
        // As a kubelet retries a mount: the Node authorizer learns of a Pod's binding
        // (and so of the ConfigMaps the node may read) a moment after the scheduler.
        let mut tries = 0;
        let input = loop {
            match config_maps.get(&source.name).await {
                Ok(input) => break input,
                Err(_) if tries < 40 => {
                    tries += 1;
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
                Err(err) => return Err(format!("MountVolume.SetUp failed for volume \"{}\": {err}", volume.name)),
            }
        };
        let local = dir.path().join(&mount.name);
        std::fs::create_dir(&local).map_err(|e| e.to_string())?;
        for (key, value) in input.data.unwrap_or_default() {
            std::fs::write(local.join(key), value).map_err(|e| e.to_string())?;
        }
        for arg in &mut args {
            if let Some(rest) = arg.strip_prefix(&mount.mount_path) {
                *arg = format!("{}{rest}", local.display());
            }
        }
    }
    Ok((dir, args))
}

/// The Pod conditions a kubelet writes.
fn conditions(ready: bool, at: jiff::Timestamp) -> Value {
    let ready = if ready { "True" } else { "False" };
    let at = at.to_string();
    json!([
        {"type": "PodScheduled", "status": "True", "lastTransitionTime": at},
        {"type": "Initialized", "status": "True", "lastTransitionTime": at},
        {"type": "ContainersReady", "status": ready, "lastTransitionTime": at},
        {"type": "Ready", "status": ready, "lastTransitionTime": at},
    ])
}

/// Write `status` into `pods/status`; a Pod deleted meanwhile is not an error.
async fn report(api: &Api<Pod>, name: &str, status: &Value, log: &Log) {
    if let Err(err) = api.patch_status(name, &PatchParams::default(), &Patch::Merge(status)).await {
        log.line(format!("{name}: writing pods/status failed: {err}"));
    }
}
