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

use k8s_openapi::api::core::v1::{ConfigMap, Pod};
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

/// The renderer Pod for attempt `attempt` (its `retryCount`) of `job`.
pub fn renderer_pod(job: &RenderJob, attempt: i32, settings: &RendererSettings) -> Result<Pod, PodError> {
    let (name, namespace, owner) = owned_by(job)?;
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
                "image": settings.image,
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
                {"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}},
            ],
        },
    });
    Ok(serde_json::from_value(pod)?)
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
    /// Not finished yet (pending, pulling, running).
    Running,
    /// Finished: the renderer's report, or one made up from how the Pod ended
    /// when the renderer could not write its own (killed, out of memory, crashed).
    Finished(RendererReport),
}

/// Read the outcome of a renderer Pod from its status.
pub fn pod_outcome(pod: &Pod) -> PodOutcome {
    let Some(status) = pod.status.as_ref() else {
        return PodOutcome::Running;
    };
    if !matches!(status.phase.as_deref(), Some("Succeeded" | "Failed")) {
        return PodOutcome::Running;
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
        (ErrorCode::DeadlineExceeded, "the renderer Pod ran longer than activeDeadlineSeconds".to_owned())
    } else if terminated.as_ref().and_then(|t| t.reason.as_deref()) == Some("OOMKilled") {
        (ErrorCode::ResourceExhausted, "the renderer ran out of memory (the Pod's memory limit)".to_owned())
    } else {
        let exit = terminated.as_ref().map_or_else(|| "unknown".to_owned(), |t| t.exit_code.to_string());
        let reason = terminated.as_ref().and_then(|t| t.reason.clone()).or(status.reason.clone()).unwrap_or_default();
        (ErrorCode::RendererCrashed, format!("the renderer stopped without a report (exit code {exit}) {reason}"))
    };
    PodOutcome::Finished(RendererReport::Failed { error_code, error_message: error_message.trim().to_owned() })
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
            facts: RenderFacts { page_count: 3, total_bytes: 68_699, sha256: "ab".repeat(32), duration_ms: 41 },
            output_key: "acme/invoice-1.pdf".into(),
        };
        assert_eq!(RendererReport::from_message(&ok.to_message()), Some(ok));
        let long =
            RendererReport::Failed { error_code: ErrorCode::TemplateCompileError, error_message: "é".repeat(5000) };
        let message = long.to_message();
        assert!(message.len() <= MAX_TERMINATION_MESSAGE, "{}", message.len());
        assert!(matches!(RendererReport::from_message(&message), Some(RendererReport::Failed { .. })));
        assert_eq!(RendererReport::from_message("thread 'main' panicked"), None);
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
}
