//! The renderer Pod of a RenderJob, built as a pure function of the job and the
//! operator's settings so that it can be checked from YAML fixtures, and the result
//! the renderer writes to its termination message for the controller to read.
//!
//! The Pod runs the same image as the operator (`folio render`), owned by the job
//! (so it is deleted with it), never restarted (retries are the controller's, per
//! `backoffLimit`), bounded by `activeDeadlineSeconds`, and locked down: non-root,
//! read-only root file system, no privilege escalation, no capabilities,
//! RuntimeDefault seccomp.
//!
//! The renderer needs no Kubernetes API access and no bucket credentials: the
//! operator resolves the job's references itself and hands the Pod an input
//! ConfigMap (owned by the job) holding the exact render request and a presigned PUT
//! URL for the job's one object. So tenant namespaces need no ServiceAccount, Role or
//! Secret of folio's, and a renderer can write nothing but its own PDF.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{ConfigMap, EnvVar, Pod};
use kube::Resource;
use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::lifecycle::ErrorCode;
use crate::render::{RenderFacts, RenderRequest};
use crate::resources::RenderJob;

/// Label carrying the job a renderer Pod belongs to.
pub const JOB_LABEL: &str = "folio.dev/render-job";
/// Label selector of every renderer Pod (what the controller watches).
pub const RENDERER_SELECTOR: &str = "app.kubernetes.io/component=renderer,app.kubernetes.io/managed-by=folio-operator";
/// The user id renderer containers run as (the image's non-root user).
pub const RENDERER_UID: i64 = 65532;
/// Longest a render may run when the job sets no `activeDeadlineSeconds`.
pub const DEFAULT_POD_DEADLINE_SECONDS: i64 = 300;

/// What the operator puts into every renderer Pod.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RendererSettings {
    /// The folio image (the operator's own).
    pub image: String,
    /// `IfNotPresent`, `Always`, ...
    pub image_pull_policy: String,
    /// CPU request, e.g. `250m`.
    pub cpu_request: String,
    /// CPU limit, e.g. `1`.
    pub cpu_limit: String,
    /// Memory request, e.g. `256Mi`.
    pub memory_request: String,
    /// Memory limit, e.g. `1Gi`.
    pub memory_limit: String,
    /// The image with Chromium that renders html templates and web pages (the folio
    /// image's `-chromium` build); unset, those jobs run in `image` too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chromium_image: Option<String>,
    /// Let `url` jobs load pages on loopback, private and link-local addresses.
    #[serde(default)]
    pub allow_private_targets: bool,
}

/// A label value for `name`: the name itself when it fits (63 characters), else a
/// prefix and a hash, so long job names still select their Pods uniquely.
pub fn label_value(name: &str) -> String {
    if name.len() <= 63 {
        return name.to_owned();
    }
    let hash = hex::encode(&Sha256::digest(name.as_bytes())[..5]);
    let prefix: String = name.chars().take(52).collect();
    format!("{}-{hash}", prefix.trim_end_matches(['-', '.']))
}

/// Where the input ConfigMap is mounted in the renderer container.
pub const INPUT_MOUNT: &str = "/var/run/folio/input";
/// The input ConfigMap's key holding the render request (JSON).
pub const REQUEST_KEY: &str = "request.json";
/// The input ConfigMap's key holding the presigned upload URL.
pub const UPLOAD_URL_KEY: &str = "upload-url";
/// The input ConfigMap's key holding the object key the PDF is uploaded to.
pub const OUTPUT_KEY_KEY: &str = "output-key";
/// The env var that tells a browser render its container's memory limit, in MiB.
pub const MEMORY_LIMIT_ENV: &str = "FOLIO_CONTAINER_MEMORY_MIB";
/// Most a ConfigMap holds (etcd's object limit, less room for metadata).
pub const MAX_INPUT_BYTES: usize = 1000 * 1024;

/// The name of attempt `attempt` of `job`'s renderer Pod (at most 63 characters).
pub fn pod_name(job: &str, attempt: i32) -> String {
    let suffix = format!("-render-{attempt}");
    let base = if job.len() + suffix.len() <= 63 { job.to_owned() } else { label_value(job) };
    let room = 63 - suffix.len();
    let base: String = base.chars().take(room).collect();
    format!("{}{suffix}", base.trim_end_matches(['-', '.']))
}

/// Why a Pod cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum PodError {
    /// The job lacks the metadata an owner reference needs.
    #[error("the RenderJob has no {0}")]
    MissingMetadata(&'static str),
    /// The built object does not fit the Pod schema (a bug).
    #[error("the renderer Pod is not valid: {0}")]
    Invalid(#[from] serde_json::Error),
    /// The template, data and assets are more than a ConfigMap holds.
    #[error("the render input is {0} bytes; at most {MAX_INPUT_BYTES} fit (move assets or data out of the job)")]
    InputTooLarge(usize),
}

/// The input ConfigMap's name for a renderer Pod.
pub fn input_name(pod_name: &str) -> String {
    format!("{pod_name}-input")
}

/// Name, namespace and an owner reference (as JSON) to `job`.
fn owned_by(job: &RenderJob) -> Result<(&str, &str, serde_json::Value), PodError> {
    let name = job.metadata.name.as_deref().ok_or(PodError::MissingMetadata("metadata.name"))?;
    let namespace = job.metadata.namespace.as_deref().ok_or(PodError::MissingMetadata("metadata.namespace"))?;
    let uid = job.metadata.uid.as_deref().ok_or(PodError::MissingMetadata("metadata.uid"))?;
    let owner = json!({
        "apiVersion": RenderJob::api_version(&()),
        "kind": RenderJob::kind(&()),
        "name": name,
        "uid": uid,
        "controller": true,
        "blockOwnerDeletion": true,
    });
    Ok((name, namespace, owner))
}

/// The labels of everything built for `job`.
fn labels(job_name: &str) -> serde_json::Value {
    json!({
        "app.kubernetes.io/name": "folio",
        "app.kubernetes.io/component": "renderer",
        "app.kubernetes.io/managed-by": "folio-operator",
        JOB_LABEL: label_value(job_name),
    })
}

/// Where a renderer puts its PDF: the object key and a presigned PUT URL for it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Upload {
    /// The object key (recorded in the job's status).
    pub key: String,
    /// The presigned URL that writes exactly that key.
    pub url: String,
}

/// The input of attempt `attempt` of `job`: the render request and where to upload.
pub fn input_config_map(
    job: &RenderJob,
    attempt: i32,
    request: &RenderRequest,
    upload: &Upload,
) -> Result<ConfigMap, PodError> {
    let (name, namespace, owner) = owned_by(job)?;
    let request = serde_json::to_string(request)?;
    let size = request.len() + upload.url.len() + upload.key.len();
    if size > MAX_INPUT_BYTES {
        return Err(PodError::InputTooLarge(size));
    }
    let data = BTreeMap::from([
        (REQUEST_KEY.to_owned(), request),
        (UPLOAD_URL_KEY.to_owned(), upload.url.clone()),
        (OUTPUT_KEY_KEY.to_owned(), upload.key.clone()),
    ]);
    let mut map: ConfigMap = serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": input_name(&pod_name(name, attempt)),
            "namespace": namespace,
            "labels": labels(name),
            "ownerReferences": [owner],
        },
    }))?;
    map.data = Some(data);
    Ok(map)
}

/// The environment of a browser render: the container's memory limit in MiB (from the
/// downward API, so that the renderer can fail a growing page with its own message
/// rather than leave it to the kernel) and whether private pages are allowed.
fn browser_env(allow_private_targets: bool) -> Result<Vec<EnvVar>, serde_json::Error> {
    let mut env = vec![json!({
        "name": MEMORY_LIMIT_ENV,
        "valueFrom": {"resourceFieldRef": {"resource": "limits.memory", "divisor": "1Mi"}},
    })];
    if allow_private_targets {
        env.push(json!({"name": "FOLIO_ALLOW_PRIVATE_TARGETS", "value": "true"}));
    }
    serde_json::from_value(serde_json::Value::Array(env))
}

/// The renderer Pod for attempt `attempt` (its `retryCount`) of `job`; `chromium` when
/// the render needs a browser (an html template or a web page), which runs in the
/// Chromium image with room in `/tmp` for its profile.
pub fn renderer_pod(
    job: &RenderJob,
    attempt: i32,
    settings: &RendererSettings,
    chromium: bool,
) -> Result<Pod, PodError> {
    let (name, namespace, owner) = owned_by(job)?;
    let image = match (&settings.chromium_image, chromium) {
        (Some(image), true) => image,
        _ => &settings.image,
    };
    let tmp_size = if chromium { "512Mi" } else { "64Mi" };
    let deadline = job.spec.active_deadline_seconds.unwrap_or(DEFAULT_POD_DEADLINE_SECONDS);
    let pod_name = pod_name(name, attempt);
    let pod = json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": pod_name,
            "namespace": namespace,
            "labels": labels(name),
            "annotations": {"folio.dev/attempt": attempt.to_string()},
            "ownerReferences": [owner],
        },
        "spec": {
            "restartPolicy": "Never",
            "activeDeadlineSeconds": deadline,
            "automountServiceAccountToken": false,
            "enableServiceLinks": false,
            "securityContext": {
                "runAsNonRoot": true,
                "runAsUser": RENDERER_UID,
                "runAsGroup": RENDERER_UID,
                "seccompProfile": {"type": "RuntimeDefault"},
            },
            "containers": [{
                "name": "renderer",
                "image": image,
                "imagePullPolicy": settings.image_pull_policy,
                "args": ["render", "--input", INPUT_MOUNT],
                "resources": {
                    "requests": {"cpu": settings.cpu_request, "memory": settings.memory_request},
                    "limits": {"cpu": settings.cpu_limit, "memory": settings.memory_limit},
                },
                "securityContext": {
                    "runAsNonRoot": true,
                    "readOnlyRootFilesystem": true,
                    "allowPrivilegeEscalation": false,
                    "privileged": false,
                    "capabilities": {"drop": ["ALL"]},
                    "seccompProfile": {"type": "RuntimeDefault"},
                },
                "terminationMessagePolicy": "FallbackToLogsOnError",
                "volumeMounts": [
                    {"name": "input", "mountPath": INPUT_MOUNT, "readOnly": true},
                    {"name": "tmp", "mountPath": "/tmp"},
                ],
            }],
            "volumes": [
                {"name": "input", "configMap": {"name": input_name(&pod_name)}},
                {"name": "tmp", "emptyDir": {"sizeLimit": tmp_size}},
            ],
        },
    });
    let mut pod: Pod = serde_json::from_value(pod)?;
    if chromium && let Some(container) = pod.spec.as_mut().and_then(|spec| spec.containers.first_mut()) {
        container.env = Some(browser_env(settings.allow_private_targets)?);
    }
    Ok(pod)
}

/// What a renderer reports in its termination message (at most 4 KiB, JSON).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", rename_all_fields = "camelCase", tag = "result")]
pub enum RendererReport {
    /// The PDF is in the bucket under `outputKey`.
    Succeeded {
        /// The PDF's facts.
        #[serde(flatten)]
        facts: RenderFacts,
        /// Where it was stored.
        output_key: String,
    },
    /// No PDF.
    Failed {
        /// Why, machine-readable.
        error_code: ErrorCode,
        /// Why, for a person.
        error_message: String,
    },
}

/// Kubernetes keeps at most this much of a termination message.
pub const MAX_TERMINATION_MESSAGE: usize = 4096;

impl RendererReport {
    /// The report as the termination message: JSON, shortened to fit.
    pub fn to_message(&self) -> String {
        let mut report = self.clone();
        loop {
            let text = serde_json::to_string(&report).unwrap_or_default();
            match &mut report {
                RendererReport::Failed { error_message, .. } if text.len() > MAX_TERMINATION_MESSAGE => {
                    let keep = error_message.len().saturating_sub(text.len() - MAX_TERMINATION_MESSAGE + 3);
                    let mut cut = keep;
                    while !error_message.is_char_boundary(cut) {
                        cut -= 1;
                    }
                    error_message.truncate(cut);
                    error_message.push('…');
                }
                // The facts are what matter; warnings go, the last first, until it fits.
                RendererReport::Succeeded { facts, .. } if text.len() > MAX_TERMINATION_MESSAGE => {
                    if facts.warnings.pop().is_none() {
                        return text;
                    }
                }
                _ => return text,
            }
        }
    }

    /// Read a termination message; anything else (a crash's log tail) is `None`.
    pub fn from_message(message: &str) -> Option<RendererReport> {
        serde_json::from_str(message.trim()).ok()
    }
}

/// What a renderer Pod says about its attempt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PodOutcome {
    /// Not started yet: being scheduled, its image pulled, its container created;
    /// with the scheduler's or the kubelet's words when they say it cannot start.
    Pending(Option<StartProblem>),
    /// The renderer runs.
    Running,
    /// Finished: the renderer's report, or one made up from how the Pod ended
    /// when the renderer could not write its own (killed, out of memory, crashed).
    Finished(RendererReport),
}

/// Who says a renderer Pod cannot start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StartStage {
    /// The scheduler: no node fits (cordoned, too small, tainted, ...).
    Scheduling,
    /// The kubelet: the container cannot be created (its image cannot be pulled, ...).
    Container,
}

/// Why a renderer Pod has not started, in the words of whoever stops it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StartProblem {
    /// The scheduler or the kubelet.
    pub stage: StartStage,
    /// Their reason (`Unschedulable`, `ErrImagePull`, `ImagePullBackOff`, ...).
    pub reason: String,
    /// Their message (`0/1 nodes are available: ...`).
    pub message: String,
}

impl StartProblem {
    /// The problem as a sentence for the job's status and Events.
    pub fn describe(&self) -> String {
        let message = if self.message.is_empty() { &self.reason } else { &self.message };
        match self.stage {
            StartStage::Scheduling => format!("the renderer Pod could not be scheduled: {message}"),
            StartStage::Container => {
                format!("the renderer container could not start ({}): {message}", self.reason)
            }
        }
    }
}

/// Waiting reasons of a container on its normal way to start; any other (an image
/// that cannot be pulled, a container that cannot be created) is a problem to show.
const STARTING_REASONS: [&str; 2] = ["ContainerCreating", "PodInitializing"];

/// Why `pod` cannot start, if the scheduler (its `PodScheduled` condition False) or
/// the kubelet (the renderer container waiting for a reason other than being
/// created) says so.
pub fn start_problem(pod: &Pod) -> Option<StartProblem> {
    let status = pod.status.as_ref()?;
    if let Some(unscheduled) =
        status.conditions.iter().flatten().find(|c| c.type_ == "PodScheduled" && c.status == "False")
    {
        return Some(StartProblem {
            stage: StartStage::Scheduling,
            reason: unscheduled.reason.clone().unwrap_or_else(|| "Unschedulable".to_owned()),
            message: unscheduled.message.clone().unwrap_or_default(),
        });
    }
    let containers = status.init_container_statuses.iter().flatten().chain(status.container_statuses.iter().flatten());
    containers.filter_map(|c| c.state.as_ref()?.waiting.as_ref()).find_map(|waiting| {
        let reason = waiting.reason.as_deref().filter(|r| !r.is_empty() && !STARTING_REASONS.contains(r))?;
        Some(StartProblem {
            stage: StartStage::Container,
            reason: reason.to_owned(),
            message: waiting.message.clone().unwrap_or_default(),
        })
    })
}

/// Whether the renderer container of `pod` ever ran.
fn renderer_ran(pod: &Pod) -> bool {
    let status = pod.status.as_ref();
    status.and_then(|s| s.container_statuses.as_ref()).into_iter().flatten().any(|c| {
        c.name == "renderer"
            && (c.started == Some(true)
                || c.state.as_ref().is_some_and(|s| s.running.is_some() || s.terminated.is_some()))
    })
}

/// Whether `pod` is controlled by `job` (by uid, not only by name).
pub fn owned_by_job(pod: &Pod, job: &RenderJob) -> bool {
    let uid = job.metadata.uid.as_deref();
    pod.metadata
        .owner_references
        .iter()
        .flatten()
        .any(|owner| owner.controller == Some(true) && Some(owner.uid.as_str()) == uid)
}

/// Whether `pod` ran to its end or is being deleted: it no longer takes a renderer's place.
pub fn has_ended(pod: &Pod) -> bool {
    let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
    matches!(phase, Some("Succeeded" | "Failed")) || pod.metadata.deletion_timestamp.is_some()
}

/// Read the outcome of a renderer Pod from its status.
pub fn pod_outcome(pod: &Pod) -> PodOutcome {
    let Some(status) = pod.status.as_ref() else {
        return PodOutcome::Pending(None);
    };
    match status.phase.as_deref() {
        Some("Succeeded" | "Failed") => {}
        None | Some("Pending") => return PodOutcome::Pending(start_problem(pod)),
        // Running, or Unknown (its node is out of touch): the deadline bounds it.
        Some(_) => return PodOutcome::Running,
    }
    let terminated = status
        .container_statuses
        .iter()
        .flatten()
        .find(|c| c.name == "renderer")
        .and_then(|c| c.state.as_ref()?.terminated.clone());
    if let Some(report) = terminated.as_ref().and_then(|t| RendererReport::from_message(t.message.as_deref()?)) {
        return PodOutcome::Finished(report);
    }
    let (error_code, error_message) = if status.reason.as_deref() == Some("DeadlineExceeded") {
        match start_problem(pod).filter(|_| !renderer_ran(pod)) {
            // The kubelet gave up on a Pod that never started: say why it did not.
            Some(problem) => (
                ErrorCode::RendererUnavailable,
                format!("{} (the Pod reached its activeDeadlineSeconds before it started)", problem.describe()),
            ),
            None => (ErrorCode::DeadlineExceeded, "the renderer Pod ran longer than activeDeadlineSeconds".to_owned()),
        }
    } else if terminated.as_ref().and_then(|t| t.reason.as_deref()) == Some("OOMKilled") {
        (ErrorCode::ResourceExhausted, "the renderer ran out of memory (the Pod's memory limit)".to_owned())
    } else {
        let exit = terminated.as_ref().map_or_else(|| "unknown".to_owned(), |t| t.exit_code.to_string());
        let reason = terminated.as_ref().and_then(|t| t.reason.clone()).or(status.reason.clone()).unwrap_or_default();
        (ErrorCode::RendererCrashed, format!("the renderer stopped without a report (exit code {exit}) {reason}"))
    };
    PodOutcome::Finished(RendererReport::Failed { error_code, error_message: error_message.trim().to_owned() })
}

/// The API server's refusal of an object folio applied, as shown on the job.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    /// The server's reason: `Forbidden` or `Invalid`.
    pub reason: String,
    /// The server's message (`pods "..." is forbidden: maximum memory usage per
    /// Container is 512Mi, but limit is 1Gi`).
    pub message: String,
}

/// Whether `err` is the API server refusing an object for what it is or who asks:
/// 403 Forbidden (admission plugins such as LimitRanger, PodSecurity and
/// ResourceQuota, or RBAC) or 422 Invalid. Such a refusal repeats until someone
/// changes the namespace's policies or the operator's settings, so it is shown on
/// the job. Conflicts (409), server errors (5xx) and transport errors heal by
/// themselves and are not refusals.
pub fn admission_refusal(err: &kube::Error) -> Option<Refusal> {
    let kube::Error::Api(status) = err else {
        return None;
    };
    let default_reason = match status.code {
        403 => "Forbidden",
        422 => "Invalid",
        _ => return None,
    };
    let reason = if status.reason.is_empty() { default_reason } else { status.reason.as_str() };
    let message = if status.message.is_empty() { default_reason } else { status.message.as_str() };
    Some(Refusal { reason: reason.to_owned(), message: message.to_owned() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_job_names_get_unique_short_labels_and_pod_names() {
        assert_eq!(label_value("invoice-1"), "invoice-1");
        let long_a = format!("{}-a", "x".repeat(80));
        let long_b = format!("{}-b", "x".repeat(80));
        assert!(label_value(&long_a).len() <= 63);
        assert_ne!(label_value(&long_a), label_value(&long_b));
        assert_eq!(pod_name("invoice-1", 2), "invoice-1-render-2");
        assert!(pod_name(&long_a, 10).len() <= 63);
        assert_ne!(pod_name(&long_a, 0), pod_name(&long_b, 0));
        assert!(pod_name(&long_a, 0).ends_with("-render-0"));
    }

    #[test]
    fn reports_round_trip_and_fit_a_termination_message() {
        let ok = RendererReport::Succeeded {
            facts: RenderFacts {
                page_count: 3,
                total_bytes: 68_699,
                sha256: "ab".repeat(32),
                duration_ms: 41,
                warnings: vec!["main.typ:2:7: warning: unknown font family: arial".into()],
                template_version: Some(3),
            },
            output_key: "acme/invoice-1.pdf".into(),
        };
        assert_eq!(RendererReport::from_message(&ok.to_message()), Some(ok.clone()));
        let long =
            RendererReport::Failed { error_code: ErrorCode::TemplateCompileError, error_message: "é".repeat(5000) };
        let message = long.to_message();
        assert!(message.len() <= MAX_TERMINATION_MESSAGE, "{}", message.len());
        assert!(matches!(RendererReport::from_message(&message), Some(RendererReport::Failed { .. })));
        assert_eq!(RendererReport::from_message("thread 'main' panicked"), None);
        let mut warned = ok.clone();
        if let RendererReport::Succeeded { facts, .. } = &mut warned {
            facts.warnings = vec!["𝄞".repeat(300); 5];
        }
        let message = warned.to_message();
        assert!(message.len() <= MAX_TERMINATION_MESSAGE, "{}", message.len());
        let Some(RendererReport::Succeeded { facts, .. }) = RendererReport::from_message(&message) else { panic!() };
        assert_eq!((facts.page_count, facts.warnings.len()), (3, 3), "the last warnings went");
    }

    fn pod_with(status: serde_json::Value) -> Pod {
        serde_json::from_value(json!({"metadata": {"name": "p"}, "status": status})).unwrap()
    }

    fn failed_code(outcome: PodOutcome) -> ErrorCode {
        match outcome {
            PodOutcome::Finished(RendererReport::Failed { error_code, .. }) => error_code,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn pod_outcomes_come_from_the_report_or_from_how_the_pod_ended() {
        assert_eq!(pod_outcome(&pod_with(json!({"phase": "Running"}))), PodOutcome::Running);
        assert_eq!(pod_outcome(&pod_with(json!({"phase": "Pending"}))), PodOutcome::Pending(None));
        let report = RendererReport::Failed { error_code: ErrorCode::DataInvalid, error_message: "bad".into() };
        let reported = pod_with(json!({"phase": "Failed", "containerStatuses": [{
            "name": "renderer", "image": "i", "imageID": "", "ready": false, "restartCount": 0,
            "state": {"terminated": {"exitCode": 1, "message": report.to_message()}}}]}));
        assert_eq!(pod_outcome(&reported), PodOutcome::Finished(report));
        let oom = pod_with(json!({"phase": "Failed", "containerStatuses": [{
            "name": "renderer", "image": "i", "imageID": "", "ready": false, "restartCount": 0,
            "state": {"terminated": {"exitCode": 137, "reason": "OOMKilled"}}}]}));
        assert_eq!(failed_code(pod_outcome(&oom)), ErrorCode::ResourceExhausted);
        let late = pod_with(json!({"phase": "Failed", "reason": "DeadlineExceeded"}));
        assert_eq!(failed_code(pod_outcome(&late)), ErrorCode::DeadlineExceeded);
        let crashed = pod_with(json!({"phase": "Failed", "containerStatuses": [{
            "name": "renderer", "image": "i", "imageID": "", "ready": false, "restartCount": 0,
            "state": {"terminated": {"exitCode": 139, "message": "Segmentation fault"}}}]}));
        assert_eq!(failed_code(pod_outcome(&crashed)), ErrorCode::RendererCrashed);
    }

    /// A Pod fixture in `tests/fixtures/pods/`, shaped as a kube-apiserver, its
    /// scheduler and a kubelet write them.
    fn fixture(name: &str) -> Pod {
        let path = format!("{}/tests/fixtures/pods/{name}", env!("CARGO_MANIFEST_DIR"));
        serde_yaml::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
    }

    #[test]
    fn a_pod_the_scheduler_cannot_place_is_pending_with_the_schedulers_words() {
        let PodOutcome::Pending(Some(problem)) = pod_outcome(&fixture("unschedulable.yaml")) else {
            panic!("an unschedulable Pod is pending with a problem");
        };
        assert_eq!((problem.stage, problem.reason.as_str()), (StartStage::Scheduling, "Unschedulable"));
        assert!(problem.message.starts_with("0/1 nodes are available: 1 node(s) were unschedulable"));
        assert!(
            problem.describe().starts_with("the renderer Pod could not be scheduled: 0/1 nodes are available"),
            "{}",
            problem.describe()
        );
    }

    #[test]
    fn a_pod_whose_image_cannot_be_pulled_is_pending_with_the_kubelets_words() {
        for (name, reason) in [("err-image-pull.yaml", "ErrImagePull"), ("image-pull-backoff.yaml", "ImagePullBackOff")]
        {
            let PodOutcome::Pending(Some(problem)) = pod_outcome(&fixture(name)) else {
                panic!("{name}: pending with a problem");
            };
            assert_eq!((problem.stage, problem.reason.as_str()), (StartStage::Container, reason), "{name}");
            assert!(problem.message.contains("registry.invalid/folio:missing"), "{name}: {}", problem.message);
            assert!(problem.describe().starts_with(&format!("the renderer container could not start ({reason})")));
        }
    }

    #[test]
    fn a_pod_on_its_normal_way_to_start_or_running_shows_no_problem() {
        assert_eq!(pod_outcome(&fixture("container-creating.yaml")), PodOutcome::Pending(None));
        assert_eq!(pod_outcome(&fixture("running.yaml")), PodOutcome::Running);
        let just_created = pod_with(json!({"phase": "Pending", "qosClass": "Burstable"}));
        assert_eq!(pod_outcome(&just_created), PodOutcome::Pending(None));
    }

    #[test]
    fn a_pod_that_reached_its_deadline_before_starting_says_why_it_never_started() {
        let mut pod = fixture("image-pull-backoff.yaml");
        let status = pod.status.as_mut().unwrap();
        status.phase = Some("Failed".into());
        status.reason = Some("DeadlineExceeded".into());
        let PodOutcome::Finished(RendererReport::Failed { error_code, error_message }) = pod_outcome(&pod) else {
            panic!("a failed Pod is finished");
        };
        assert_eq!(error_code, ErrorCode::RendererUnavailable);
        assert!(error_message.contains("ImagePullBackOff"), "{error_message}");
    }

    /// Statuses in `tests/fixtures/api-errors.yaml`, as a kube-apiserver answers them.
    fn api_error(name: &str) -> kube::Error {
        let path = format!("{}/tests/fixtures/api-errors.yaml", env!("CARGO_MANIFEST_DIR"));
        let all: BTreeMap<String, kube::core::Status> =
            serde_yaml::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        kube::Error::Api(Box::new(all[name].clone()))
    }

    #[test]
    fn admission_rbac_and_validation_refusals_are_told_apart_from_transient_errors() {
        let limit_range = admission_refusal(&api_error("limit-range")).expect("a LimitRange refusal");
        assert_eq!(limit_range.reason, "Forbidden");
        assert!(limit_range.message.ends_with("maximum memory usage per Container is 512Mi, but limit is 1Gi"));
        for name in ["pod-security", "resource-quota", "rbac"] {
            assert_eq!(admission_refusal(&api_error(name)).map(|r| r.reason), Some("Forbidden".into()), "{name}");
        }
        assert_eq!(admission_refusal(&api_error("invalid")).map(|r| r.reason), Some("Invalid".into()));
        for name in ["conflict", "internal", "unavailable", "not-found"] {
            assert_eq!(admission_refusal(&api_error(name)), None, "{name} is not a refusal");
        }
        let bare = kube::core::Status { code: 403, ..Default::default() };
        let bare = admission_refusal(&kube::Error::Api(Box::new(bare))).unwrap();
        assert_eq!((bare.reason.as_str(), bare.message.as_str()), ("Forbidden", "Forbidden"));
    }
}
