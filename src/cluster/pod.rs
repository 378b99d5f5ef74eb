//! The renderer Pod of a RenderJob, built as a pure function of the job and the
//! operator's settings so that it can be checked from YAML fixtures, and the result
//! the renderer writes to its termination message for the controller to read.
//!
//! The Pod runs the same image as the operator (`folio render`), owned by the job
//! (so it is deleted with it), never restarted (retries are the controller's, per
//! `backoffLimit`), bounded by `activeDeadlineSeconds`, and locked down: non-root,
//! read-only root file system, no privilege escalation, no capabilities,
//! RuntimeDefault seccomp.

use k8s_openapi::api::core::v1::Pod;
use kube::Resource;
use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::lifecycle::ErrorCode;
use crate::render::RenderFacts;
use crate::resources::RenderJob;

/// Label carrying the job a renderer Pod belongs to.
pub const JOB_LABEL: &str = "folio.dev/render-job";
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
    /// Service account allowed to read RenderJobs, RenderTemplates and ConfigMaps.
    pub service_account: String,
    /// CPU request and limit, e.g. `500m`, `1`.
    pub cpu_request: String,
    /// CPU limit.
    pub cpu_limit: String,
    /// Memory request, e.g. `256Mi`.
    pub memory_request: String,
    /// Memory limit, e.g. `1Gi`.
    pub memory_limit: String,
    /// S3 endpoint the renderer uploads to.
    pub s3_endpoint: String,
    /// Bucket of the PDFs.
    pub s3_bucket: String,
    /// Secret with `accessKey` and `secretKey` for the bucket.
    pub s3_credentials_secret: String,
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
}

/// The renderer Pod for attempt `attempt` (its `retryCount`) of `job`.
pub fn renderer_pod(job: &RenderJob, attempt: i32, settings: &RendererSettings) -> Result<Pod, PodError> {
    let name = job.metadata.name.as_deref().ok_or(PodError::MissingMetadata("metadata.name"))?;
    let namespace = job.metadata.namespace.as_deref().ok_or(PodError::MissingMetadata("metadata.namespace"))?;
    let uid = job.metadata.uid.as_deref().ok_or(PodError::MissingMetadata("metadata.uid"))?;
    let deadline = job.spec.active_deadline_seconds.unwrap_or(DEFAULT_POD_DEADLINE_SECONDS);
    let secret = |key: &str| json!({"secretKeyRef": {"name": settings.s3_credentials_secret, "key": key}});
    let pod = json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": pod_name(name, attempt),
            "namespace": namespace,
            "labels": {
                "app.kubernetes.io/name": "folio",
                "app.kubernetes.io/component": "renderer",
                "app.kubernetes.io/managed-by": "folio-operator",
                JOB_LABEL: label_value(name),
            },
            "annotations": {"folio.dev/attempt": attempt.to_string()},
            "ownerReferences": [{
                "apiVersion": RenderJob::api_version(&()),
                "kind": RenderJob::kind(&()),
                "name": name,
                "uid": uid,
                "controller": true,
                "blockOwnerDeletion": true,
            }],
        },
        "spec": {
            "restartPolicy": "Never",
            "activeDeadlineSeconds": deadline,
            "serviceAccountName": settings.service_account,
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
                "args": ["render", "--namespace", namespace, "--job", name],
                "env": [
                    {"name": "FOLIO_S3_ENDPOINT", "value": settings.s3_endpoint},
                    {"name": "FOLIO_S3_BUCKET", "value": settings.s3_bucket},
                    {"name": "FOLIO_S3_ACCESS_KEY", "valueFrom": secret("accessKey")},
                    {"name": "FOLIO_S3_SECRET_KEY", "valueFrom": secret("secretKey")},
                ],
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
                "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
            }],
            "volumes": [{"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}}],
        },
    });
    Ok(serde_json::from_value(pod)?)
}

/// What a renderer reports in its termination message (at most 4 KiB, JSON).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "result")]
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
}
