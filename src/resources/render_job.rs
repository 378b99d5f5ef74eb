//! `RenderJob` (`rj`): one document to render, and what became of it.
//!
//! The fields mirror Kubernetes Jobs where they mean the same thing
//! (`backoffLimit`, `activeDeadlineSeconds`, `ttlSecondsAfterFinished`) so that
//! cluster users find what they know.

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{ConfigMapKeyRef, SecretKeyRef, TemplateEngine, free_form_object, optional_date_time};
use super::{ErrorCode, Phase};

/// Annotation asking the operator to try a blocked job's charge again (RFC 3339 time
/// of the request; `folio api` writes it on `POST /v1/renders/{id}/resume`).
pub const RESUME_ANNOTATION: &str = "folio.dev/resume-requested";
/// Largest `data` accepted inline; larger data goes through `dataFrom`.
pub const MAX_INLINE_DATA_BYTES: usize = 256 * 1024;

/// A request to render one document from a template and data.
// kube's printcolumn(...) repeats the same keys per column, which clippy mistakes
// for duplicated attributes.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "folio.dev",
    version = "v1alpha1",
    kind = "RenderJob",
    namespaced,
    shortname = "rj",
    status = "RenderJobStatus",
    doc = "A document render: a template and its data in, a PDF and its status out.",
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(name = "Pages", type_ = "integer", json_path = ".status.pageCount"),
    printcolumn(name = "Credits", type_ = "integer", json_path = ".status.creditsUsed"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    cel,
    validation = crate::resources::job_rules::one_template(),
    validation = crate::resources::job_rules::one_data_source(),
    validation = crate::resources::job_rules::page_without_data(),
    validation = crate::resources::job_rules::unchanged("templateRef"),
    validation = crate::resources::job_rules::unchanged("template"),
    validation = crate::resources::job_rules::unchanged("data"),
    validation = crate::resources::job_rules::unchanged("dataFrom"),
    validation = crate::resources::job_rules::unchanged("url"),
    validation = crate::resources::job_rules::unchanged("output"),
    validation = crate::resources::job_rules::unchanged("page"),
    validation = crate::resources::job_rules::unchanged("screenshot"),
    validation = crate::resources::job_rules::unchanged("preview"),
    validation = crate::resources::job_rules::unchanged("externalId"),
    validation = crate::resources::job_rules::unchanged("title"),
    validation = crate::resources::job_rules::cancel_stays()
)]
#[serde(rename_all = "camelCase")]
pub struct RenderJobSpec {
    /// The RenderTemplate (same namespace) to render.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template_ref: Option<TemplateRef>,
    /// A template given inline instead of `templateRef`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<InlineTemplate>,
    /// The data, visible to the template as `data.json` (at most 256 KiB).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "free_form_object")]
    pub data: Option<serde_json::Value>,
    /// Larger data from a ConfigMap key holding JSON, instead of `data`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_from: Option<ConfigMapKeyRef>,
    /// A web page to render instead of a template: `http` or `https`, fetched under
    /// the same address policy as webhooks (no loopback, private or other special
    /// addresses, after redirects too).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Output format: `pdf` (default), `screenshot` (a PNG of the page) or `og` (a
    /// 1200 × 630 PNG for link previews).
    #[serde(default)]
    pub output: OutputFormat,
    /// Paper, margins, header and footer of an `html` or `url` job's PDF.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub page: Option<super::PageOptions>,
    /// Size and sharpness of a `screenshot`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub screenshot: Option<super::ScreenshotOptions>,
    /// A free, watermarked render with short retention.
    #[serde(default)]
    pub preview: bool,
    /// The caller's own identifier; a second job with the same one is the same job.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_id: Option<String>,
    /// Document title written into the PDF metadata (default: the template's own
    /// title, else the job's name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// Retries of a failed render attempt before the job fails (default 2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 10))]
    pub backoff_limit: Option<i32>,
    /// Seconds after the job started in which it must finish, or it expires.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub active_deadline_seconds: Option<i64>,
    /// Seconds after the job finished when it is deleted, with its PDF (capped by the
    /// account's maximum). Unset, the job is kept and only its PDF is deleted, at the
    /// account's retention: leave it unset on jobs kept in Git. The time is fixed when
    /// the job finishes (`status.expiresAt`); a later change decides only whether the
    /// job goes with its PDF then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub ttl_seconds_after_finished: Option<i64>,
    /// Where status changes are posted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook: Option<WebhookSpec>,
    /// Set to true to cancel the job.
    #[serde(default)]
    pub cancel: bool,
}

/// A reference to a RenderTemplate by name.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TemplateRef {
    /// Name of the RenderTemplate in the job's namespace.
    pub name: String,
    /// The template's version to render (its `metadata.generation` in a cluster, kept
    /// as a snapshot); the current one when unset. The REST API sets it when the job
    /// is submitted, so that a job renders the template it was submitted with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub version: Option<i64>,
}

/// A template carried by the job itself.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct InlineTemplate {
    /// Template engine.
    #[serde(default)]
    pub engine: TemplateEngine,
    /// The template text.
    pub source: String,
    /// Files the template reads (images, fonts), as a RenderTemplate declares them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub assets: Vec<super::TemplateAsset>,
    /// Let an `html` template's scripts run (default off).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub javascript: bool,
}

/// The kind of document produced.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum OutputFormat {
    /// A PDF document.
    #[default]
    Pdf,
    /// A PNG of the page (page 1 of a Typst template).
    Screenshot,
    /// A 1200 × 630 PNG for link previews (Open Graph).
    Og,
}

impl OutputFormat {
    /// The name manifests, the REST API and the render log use.
    pub fn name(self) -> &'static str {
        match self {
            OutputFormat::Pdf => "pdf",
            OutputFormat::Screenshot => "screenshot",
            OutputFormat::Og => "og",
        }
    }

    /// The format named `name`, if folio renders it.
    pub fn from_name(name: &str) -> Option<OutputFormat> {
        [OutputFormat::Pdf, OutputFormat::Screenshot, OutputFormat::Og].into_iter().find(|f| f.name() == name)
    }

    /// The media type of the output.
    pub fn content_type(self) -> &'static str {
        match self {
            OutputFormat::Pdf => "application/pdf",
            OutputFormat::Screenshot | OutputFormat::Og => "image/png",
        }
    }

    /// The file extension of the output, without the dot.
    pub fn extension(self) -> &'static str {
        match self {
            OutputFormat::Pdf => "pdf",
            OutputFormat::Screenshot | OutputFormat::Og => "png",
        }
    }
}

/// Where and how a job's status changes are delivered.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WebhookSpec {
    /// The receiver's URL.
    pub url: String,
    /// The Secret key holding the HMAC signing secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<SecretKeyRef>,
    /// Which changes are posted.
    #[serde(default)]
    pub events: WebhookEvents,
}

/// Which status changes a webhook receives.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum WebhookEvents {
    /// Only the final phase.
    #[default]
    Terminal,
    /// Every phase change.
    All,
}

/// What became of a RenderJob. Every field is written by folio, never by users.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RenderJobStatus {
    /// Where the job is in its lifecycle.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<Phase>,
    /// Kubernetes-style conditions, one per type: `Ready` (the job succeeded);
    /// in the cluster also `RendererAdmitted` (False while the API server refuses the
    /// renderer Pod or its input, with the server's reason and message) and
    /// `RendererStarted` (False while the renderer Pod cannot be scheduled or its
    /// container cannot start, with the scheduler's or kubelet's reason and message).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// The spec generation this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Failed attempts that were retried.
    #[serde(default)]
    pub retry_count: i32,
    /// When the next attempt may start, while a retry waits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "optional_date_time")]
    #[serde(with = "crate::resources::times::optional_ms")]
    pub next_attempt_at: Option<Timestamp>,
    /// When the current attempt first could not start: the API server refused its
    /// renderer Pod or input (admission, quota, RBAC), or its template or a ConfigMap
    /// it names did not exist. Still so the operator's renderer start timeout later,
    /// the attempt fails (`RENDERER_UNAVAILABLE`), or the job (`TEMPLATE_NOT_FOUND`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "optional_date_time")]
    #[serde(with = "crate::resources::times::optional_ms")]
    pub renderer_refused_at: Option<Timestamp>,
    /// When rendering first started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "optional_date_time")]
    #[serde(with = "crate::resources::times::optional_ms")]
    pub started_at: Option<Timestamp>,
    /// When the job reached a terminal phase.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "optional_date_time")]
    #[serde(with = "crate::resources::times::optional_ms")]
    pub completed_at: Option<Timestamp>,
    /// Wall-clock duration of the successful render.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<i64>,
    /// Pages in the PDF.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub page_count: Option<i64>,
    /// Size of the PDF in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total_bytes: Option<i64>,
    /// SHA-256 of the PDF, hex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// What the compiler warned about in the successful render (an unknown font
    /// family, say), with line and column; at most five.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    /// The version of the RenderTemplate the PDF was rendered from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template_version: Option<i64>,
    /// Where the PDF is stored (a key, never a URL).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_key: Option<String>,
    /// `pageCount × creditsPerPage`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_credits: Option<i64>,
    /// Extra credits for size above the account's threshold.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size_extra: Option<i64>,
    /// `baseCredits + sizeExtra`, charged once on success.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credits_used: Option<i64>,
    /// The account's balance after this job (absent for unlimited accounts).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credits_remaining: Option<i64>,
    /// Machine-readable reason of a failure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_code: Option<ErrorCode>,
    /// Human-readable reason of a failure (line and column for template errors).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_message: Option<String>,
    /// When the job's retention ends: its PDF is deleted then, and the job too when it
    /// sets `ttlSecondsAfterFinished`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "optional_date_time")]
    #[serde(with = "crate::resources::times::optional_ms")]
    pub expires_at: Option<Timestamp>,
    /// When the PDF was deleted at the end of its retention; the job is kept, so that
    /// applying its manifest again renders nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "optional_date_time")]
    #[serde(with = "crate::resources::times::optional_ms")]
    pub output_expired_at: Option<Timestamp>,
    /// How the job's webhook deliveries are going.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook: Option<WebhookDeliveryStatus>,
}

/// The state of a job's webhook deliveries (at-least-once, in order).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WebhookDeliveryStatus {
    /// Events delivered (answered 2xx).
    pub delivered: i64,
    /// Events still to deliver.
    pub pending: i64,
    /// Events given up (target refused, or retries ran out).
    pub failed: i64,
    /// Attempts made, over all events.
    pub attempts: i64,
    /// Status code of the last answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_response_code: Option<i32>,
    /// What went wrong with the last failed attempt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// When the last attempt was made.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "optional_date_time")]
    #[serde(with = "crate::resources::times::optional_ms")]
    pub last_attempt_at: Option<Timestamp>,
    /// When the next attempt is due.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "optional_date_time")]
    #[serde(with = "crate::resources::times::optional_ms")]
    pub next_attempt_at: Option<Timestamp>,
    /// Events not yet delivered, oldest first (the cluster home's durable queue;
    /// the standalone home keeps its queue in its database).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub queue: Vec<QueuedDelivery>,
}

/// One event waiting to be delivered.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct QueuedDelivery {
    /// Sent as `X-Folio-Delivery-Id`, the same on every attempt.
    pub id: String,
    /// The receiver.
    pub url: String,
    /// The Secret key of the signing secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<SecretKeyRef>,
    /// The event as it was when the phase changed (JSON).
    pub body: String,
    /// When the phase changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "optional_date_time")]
    #[serde(with = "crate::resources::times::optional_ms")]
    pub queued_at: Option<Timestamp>,
    /// Attempts made so far.
    #[serde(default)]
    pub attempts: i64,
}
