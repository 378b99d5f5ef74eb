//! The JSON shapes of the REST API (camelCase), and how resources turn into them.
//! Field names follow the render APIs users know (see the seeds): `status`,
//! `pollUrl`, `downloadUrl`, `pageCount`, `creditsUsed`, ...

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use crate::assets::AssetInfo;
use crate::lifecycle::Phase;
use crate::port::{JobView, Share, TemplateVersion, TemplateView};
use crate::resources::{
    PageOptions, RenderAccount, ScreenshotOptions, TemplateEngine, WebhookDeliveryStatus, WebhookEvents, WebhookSpec,
};

/// `POST /v1/renders` (and, without the template, `POST /v1/templates/{slug}/render`).
#[derive(Deserialize, Serialize, ToSchema, Debug, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateRender {
    /// The template to render, by id (its name).
    pub template_id: Option<String>,
    /// The version of `templateId` to render (see `GET /v1/templates/{slug}/versions`);
    /// the current one when unset. Either way the job renders the version it was
    /// submitted with, whatever changes after.
    #[schema(minimum = 1)]
    pub template_version: Option<i64>,
    /// A template given inline instead of `templateId`.
    pub template: Option<InlineTemplateBody>,
    /// A web page to render instead of a template (http or https; loopback, private
    /// and other special addresses are refused unless the server allows private
    /// targets).
    #[schema(format = "uri", pattern = "^[Hh][Tt][Tt][Pp][Ss]?://[^/?#\\s]+([/?#]\\S*)?$")]
    pub url: Option<String>,
    /// The data; the template reads it as `data.json` (at most 256 KiB; none: `{}`).
    #[schema(value_type = Option<Object>)]
    pub data: Option<Value>,
    /// A free, watermarked render with short retention.
    #[serde(default)]
    pub preview: bool,
    /// Output format: `pdf` (default), `screenshot` (a PNG of the page; `png` is the
    /// same) or `og` (a 1200 × 630 PNG).
    #[schema(schema_with = output_format)]
    pub output: Option<String>,
    /// Paper, margins, header and footer of an html template's or web page's PDF.
    #[schema(value_type = Option<PageOptions>)]
    pub page: Option<Value>,
    /// Size of a screenshot: `width`, `height`, `fullPage`, `deviceScaleFactor`
    /// (html and url), `ppi` (Typst).
    #[schema(value_type = Option<ScreenshotOptions>)]
    pub screenshot: Option<Value>,
    /// Your own id, a filter of the render log; a request with the id of a job that has
    /// not failed, been cancelled or expired returns that job.
    #[schema(min_length = 1, max_length = 255)]
    pub external_id: Option<String>,
    /// Where status changes are posted.
    pub webhook: Option<WebhookBody>,
    /// Seconds the finished job and its PDF are kept (capped by the account).
    #[schema(minimum = 0)]
    pub ttl_seconds: Option<i64>,
    /// Title in the PDF metadata.
    pub title: Option<String>,
    /// Retries of transient failures (default 2).
    #[schema(minimum = 0, maximum = 10)]
    pub backoff_limit: Option<i32>,
    /// Seconds in which the job must finish, or it expires.
    #[schema(minimum = 1)]
    pub active_deadline_seconds: Option<i64>,
}

/// `output`: the formats folio renders.
fn output_format() -> utoipa::openapi::Object {
    one_of_strings(&["pdf", "screenshot", "og", "png"], true)
}

/// `status` of the render log: the phases, the words other render APIs use, and `all`.
fn render_status() -> utoipa::openapi::Object {
    let mut phases: Vec<&str> = Phase::all().map(|p| p.api_name()).collect();
    phases.extend(["completed", "processing", "all"]);
    one_of_strings(&phases, true)
}

/// `type` of the render log: every output type a render API has, and `all`.
fn output_type() -> utoipa::openapi::Object {
    one_of_strings(&["pdf", "screenshot", "og", "png", "all"], true)
}

/// `engine`: the template engines.
fn template_engine() -> utoipa::openapi::Object {
    one_of_strings(&["typst", "html"], false)
}

/// `events`: which status changes a webhook receives.
fn webhook_events() -> utoipa::openapi::Object {
    one_of_strings(&["terminal", "all"], false)
}

/// A string that is one of `values` (or null when `nullable`); the first is the default.
fn one_of_strings(values: &[&str], nullable: bool) -> utoipa::openapi::Object {
    use utoipa::openapi::schema::{SchemaType, Type};
    let mut listed: Vec<Value> = values.iter().map(|v| Value::from(*v)).collect();
    let kind = if nullable {
        listed.push(Value::Null);
        SchemaType::from_iter([Type::String, Type::Null])
    } else {
        SchemaType::Type(Type::String)
    };
    utoipa::openapi::ObjectBuilder::new()
        .schema_type(kind)
        .enum_values(Some(listed))
        .default(values.first().map(|v| Value::from(*v)))
        .build()
}

/// An inline template.
#[derive(Deserialize, Serialize, ToSchema, Debug)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct InlineTemplateBody {
    /// `typst` (default) or `html` (HTML and CSS with Jinja placeholders).
    #[serde(default)]
    #[schema(schema_with = template_engine)]
    pub engine: TemplateEngine,
    /// The template text.
    pub source: String,
    /// Let an html template's scripts run (default false).
    #[serde(default)]
    pub javascript: bool,
    /// Small files the template reads (images, fonts), within the 2 MiB body.
    #[serde(default)]
    pub assets: Vec<InlineAssetBody>,
}

/// A file of an inline template.
#[derive(Deserialize, Serialize, ToSchema, Debug)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct InlineAssetBody {
    /// The name the template reads it by, e.g. `logo.png`: not `main.typ` or
    /// `data.json`, and once per template (else 422 `ASSET_NAME_TAKEN`).
    #[schema(pattern = "^(?!\\.\\.?$)[A-Za-z0-9._-]{1,128}$")]
    pub name: String,
    /// The file's bytes, base64 (standard alphabet, padded).
    #[schema(content_encoding = "base64", pattern = "^([A-Za-z0-9+/]{4})*([A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$")]
    pub base64: String,
}

/// A job's webhook.
#[derive(Deserialize, Serialize, ToSchema, Debug)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WebhookBody {
    /// The receiver (https or http); loopback, private and other special addresses are
    /// refused unless the server allows private targets.
    #[schema(format = "uri", pattern = "^[Hh][Tt][Tt][Pp][Ss]?://[^/?#\\s]+([/?#]\\S*)?$")]
    pub url: String,
    /// The HMAC-SHA256 signing secret.
    pub secret: Option<String>,
    /// `terminal` (default) or `all` status changes.
    #[serde(default)]
    #[schema(schema_with = webhook_events)]
    pub events: WebhookEvents,
}

/// A render job.
#[derive(Serialize, ToSchema, Debug, Clone)]
#[serde(rename_all = "camelCase")]
pub struct RenderResponse {
    /// The job id.
    pub id: String,
    /// The tenant (namespace).
    pub tenant: String,
    /// The template's id, for jobs made from a stored template.
    pub template_id: Option<String>,
    /// The version of the template the job renders (and, once succeeded, rendered).
    pub template_version: Option<i64>,
    /// `queued`, `rendering`, `blocked`, `succeeded`, `failed`, `cancelled`, `expired`.
    pub status: String,
    /// Output type: `pdf`, `screenshot` or `og`.
    #[serde(rename = "type")]
    pub output_type: String,
    /// This resource's URL.
    pub poll_url: String,
    /// Signed download URL, when succeeded and its PDF is kept: valid 24 h, or until
    /// the job's `expiresAt` if that comes sooner (a preview's short retention), see
    /// `downloadUrlExpiresAt`.
    pub download_url: Option<String>,
    /// When `downloadUrl` stops working; never after `expiresAt`.
    #[serde(default, with = "crate::resources::times::optional_ms")]
    pub download_url_expires_at: Option<Timestamp>,
    /// Same as `downloadUrl`, for clients that expect this name.
    pub output_url: Option<String>,
    /// Storage key of the PDF.
    pub output_key: Option<String>,
    /// Machine-readable failure reason: `TEMPLATE_COMPILE_ERROR`, `DATA_INVALID`,
    /// `TEMPLATE_NOT_FOUND`, `SPEC_INVALID`, `DEADLINE_EXCEEDED`, `RESOURCE_EXHAUSTED`,
    /// `OUTPUT_TOO_LARGE`, `STORAGE_UNAVAILABLE`, `RENDERER_CRASHED`,
    /// `RENDERER_UNAVAILABLE` (the renderer never started: not schedulable, image not
    /// pullable, refused by admission, or no Chromium for an html or url job),
    /// `URL_REFUSED` (a web page on a private or special address), `URL_UNREACHABLE`
    /// (a web page that could not be loaded), `CANCELLED` or `INTERNAL`.
    pub error_code: Option<String>,
    /// Human-readable failure reason.
    pub error_message: Option<String>,
    /// When accepted.
    #[serde(with = "crate::resources::times::ms")]
    pub created_at: Timestamp,
    /// When last changed.
    #[serde(with = "crate::resources::times::ms")]
    pub updated_at: Timestamp,
    /// When rendering started.
    #[serde(default, with = "crate::resources::times::optional_ms")]
    pub started_at: Option<Timestamp>,
    /// When it reached a terminal state.
    #[serde(default, with = "crate::resources::times::optional_ms")]
    pub completed_at: Option<Timestamp>,
    /// When its retention ends: its PDF is deleted then, and the render too unless
    /// it is kept (a RenderJob kept in Git).
    #[serde(default, with = "crate::resources::times::optional_ms")]
    pub expires_at: Option<Timestamp>,
    /// When its PDF was deleted at the end of its retention (the render is kept).
    #[serde(default, with = "crate::resources::times::optional_ms")]
    pub output_expired_at: Option<Timestamp>,
    /// When a waiting retry starts.
    #[serde(default, with = "crate::resources::times::optional_ms")]
    pub next_attempt_at: Option<Timestamp>,
    /// Render wall-clock time.
    pub duration_ms: Option<i64>,
    /// Retried attempts.
    pub retry_count: i32,
    /// Watermarked, free preview.
    pub is_preview: bool,
    /// Pages.
    pub page_count: Option<i64>,
    /// Size in bytes.
    pub total_bytes: Option<i64>,
    /// SHA-256 of the PDF.
    pub sha256: Option<String>,
    /// What the template's compiler warned about (an unknown font family, say), with
    /// line and column; at most five.
    pub warnings: Vec<String>,
    /// Page credits.
    pub base_credits: Option<i64>,
    /// Size credits.
    pub size_extra: i64,
    /// Credits charged.
    pub credits_used: Option<i64>,
    /// Balance after this job.
    pub credits_remaining: Option<i64>,
    /// Your id.
    pub external_id: Option<String>,
    /// The webhook (without its secret).
    pub webhook: Option<WebhookResponse>,
}

/// A job's webhook, as shown (never the secret), with its delivery state.
#[derive(Serialize, ToSchema, Debug, Clone)]
#[serde(rename_all = "camelCase")]
pub struct WebhookResponse {
    /// The receiver (absent when the account's default webhook is used).
    pub url: Option<String>,
    /// `terminal` or `all`.
    pub events: Option<String>,
    /// Events delivered.
    pub delivered: i64,
    /// Events still to deliver.
    pub pending: i64,
    /// Events given up.
    pub failed: i64,
    /// Attempts made.
    pub attempts: i64,
    /// Status code of the receiver's last answer.
    pub last_response_code: Option<i32>,
    /// What went wrong with the last failed attempt.
    pub last_error: Option<String>,
    /// When the last attempt was made.
    #[serde(default, with = "crate::resources::times::optional_ms")]
    pub last_attempt_at: Option<Timestamp>,
    /// When the next attempt is due.
    #[serde(default, with = "crate::resources::times::optional_ms")]
    pub next_attempt_at: Option<Timestamp>,
}

impl RenderResponse {
    /// The API view of a job; `download` (a URL and when it stops working) is minted
    /// by the caller when succeeded.
    pub fn from_view(view: &JobView, public_url: &str, download: Option<(String, Timestamp)>) -> RenderResponse {
        let (download_url, download_url_expires_at) = download.unzip();
        let job = &view.job;
        let status = job.status.clone().unwrap_or_default();
        let id = job.metadata.name.clone().unwrap_or_default();
        let spec_template_version = job.spec.template_ref.as_ref().and_then(|t| t.version);
        RenderResponse {
            poll_url: format!("{public_url}/v1/renders/{id}"),
            id,
            tenant: job.metadata.namespace.clone().unwrap_or_default(),
            template_id: job.spec.template_ref.as_ref().map(|t| t.name.clone()),
            status: status.phase.unwrap_or(Phase::Queued).api_name().to_owned(),
            output_type: job.spec.output.name().to_owned(),
            output_url: download_url.clone(),
            download_url,
            download_url_expires_at,
            output_key: status.output_key,
            error_code: status.error_code.map(|c| c.as_str().to_owned()),
            error_message: status.error_message,
            created_at: view.created_at,
            updated_at: view.updated_at,
            started_at: status.started_at,
            completed_at: status.completed_at,
            expires_at: status.expires_at,
            output_expired_at: status.output_expired_at,
            next_attempt_at: status.next_attempt_at,
            duration_ms: status.duration_ms,
            retry_count: status.retry_count,
            is_preview: job.spec.preview,
            page_count: status.page_count,
            total_bytes: status.total_bytes,
            sha256: status.sha256,
            warnings: status.warnings,
            template_version: status.template_version.or(spec_template_version),
            base_credits: status.base_credits,
            size_extra: status.size_extra.unwrap_or(0),
            credits_used: status.credits_used,
            credits_remaining: status.credits_remaining,
            external_id: job.spec.external_id.clone(),
            webhook: webhook_response(job.spec.webhook.as_ref(), status.webhook.as_ref()),
        }
    }
}

fn webhook_response(spec: Option<&WebhookSpec>, delivery: Option<&WebhookDeliveryStatus>) -> Option<WebhookResponse> {
    if spec.is_none() && delivery.is_none() {
        return None;
    }
    let delivery = delivery.cloned().unwrap_or_default();
    Some(WebhookResponse {
        url: spec.map(|w| w.url.clone()),
        events: spec.map(|w| match w.events {
            WebhookEvents::Terminal => "terminal".to_owned(),
            WebhookEvents::All => "all".to_owned(),
        }),
        delivered: delivery.delivered,
        pending: delivery.pending,
        failed: delivery.failed,
        attempts: delivery.attempts,
        last_response_code: delivery.last_response_code,
        last_error: delivery.last_error,
        last_attempt_at: delivery.last_attempt_at,
        next_attempt_at: delivery.next_attempt_at,
    })
}

/// A page of a list.
#[derive(Serialize, ToSchema, Debug)]
pub struct Page<T> {
    /// The items.
    pub data: Vec<T>,
    /// Where this page is in the whole list.
    pub pagination: Pagination,
}

impl<T> Page<T> {
    /// A list returned whole, in one page.
    pub fn whole(data: Vec<T>) -> Page<T> {
        let total = data.len() as i64;
        Page { data, pagination: Pagination { total, limit: total, offset: 0, next: None } }
    }
}

/// Position of a page.
#[derive(Serialize, ToSchema, Debug)]
#[serde(rename_all = "camelCase")]
pub struct Pagination {
    /// Items matching in all.
    pub total: i64,
    /// Page size.
    pub limit: i64,
    /// Items skipped.
    pub offset: i64,
    /// URL of the next page, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}

/// Query of `GET /v1/renders`.
#[derive(Deserialize, ToSchema, Debug, Default, utoipa::IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct RenderLogQuery {
    /// Only this status (`completed` and `processing` are understood too).
    #[param(schema_with = render_status)]
    pub status: Option<String>,
    /// Only this output type: `pdf`, `screenshot` (`png` is the same), `og`, or `all`.
    #[serde(rename = "type")]
    #[param(rename = "type", schema_with = output_type)]
    pub output_type: Option<String>,
    /// Only jobs of this template.
    pub template_id: Option<String>,
    /// Only this external id.
    pub external_id: Option<String>,
    /// Only previews (`true`) or only billed renders (`false`).
    pub preview: Option<bool>,
    /// Created at or after (RFC 3339).
    #[param(format = DateTime)]
    pub created_from: Option<String>,
    /// Created before (RFC 3339).
    #[param(format = DateTime)]
    pub created_to: Option<String>,
    /// Page size (default 50, at most 100).
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<i64>,
    /// Items to skip.
    #[param(minimum = 0)]
    pub offset: Option<i64>,
    /// Add signed download URLs.
    pub signed: Option<bool>,
}

/// `POST /v1/templates` and `PUT /v1/templates/{slug}`.
#[derive(Deserialize, ToSchema, Debug)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TemplateBody {
    /// The slug (lowercase letters, digits, `-`); required on POST, taken from the URL on PUT.
    #[schema(pattern = "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", max_length = 63)]
    pub name: Option<String>,
    /// `typst` (default) or `html` (HTML and CSS with Jinja placeholders, printed by
    /// Chromium).
    #[serde(default)]
    #[schema(schema_with = template_engine)]
    pub engine: TemplateEngine,
    /// The template text.
    pub source: String,
    /// Let an html template's scripts run (default false).
    #[serde(default)]
    pub javascript: bool,
    /// JSON Schema the data must satisfy.
    #[schema(value_type = Option<Object>)]
    pub data_schema: Option<Value>,
    /// Data merged under every job's data.
    #[schema(value_type = Option<Object>)]
    pub defaults: Option<Value>,
}

/// A template.
#[derive(Serialize, ToSchema, Debug)]
#[serde(rename_all = "camelCase")]
pub struct TemplateResponse {
    /// The template id (its slug).
    pub id: String,
    /// The slug.
    pub name: String,
    /// `typst` or `html`.
    pub engine: String,
    /// Whether an html template's scripts run.
    pub javascript: bool,
    /// The template text.
    pub source: Option<String>,
    /// JSON Schema of the data.
    #[schema(value_type = Option<Object>)]
    pub data_schema: Option<Value>,
    /// Default data.
    #[schema(value_type = Option<Object>)]
    pub defaults: Option<Value>,
    /// The names of its files (`GET /v1/templates/{slug}/assets` tells more).
    pub assets: Vec<String>,
    /// Its version: 1 when created, one more with every change of its source,
    /// schema, defaults or files.
    pub version: i64,
    /// When it was created.
    #[serde(with = "crate::resources::times::ms")]
    pub created_at: Timestamp,
    /// When it last changed (for an older version: when that version was made).
    #[serde(with = "crate::resources::times::ms")]
    pub updated_at: Timestamp,
}

impl From<&TemplateView> for TemplateResponse {
    fn from(view: &TemplateView) -> Self {
        let name = view.template.metadata.name.clone().unwrap_or_default();
        TemplateResponse {
            id: name.clone(),
            name,
            engine: view.template.spec.engine.name().to_owned(),
            javascript: view.template.spec.javascript,
            source: view.template.spec.source.clone(),
            data_schema: view.template.spec.data_schema.clone(),
            defaults: view.template.spec.defaults.clone(),
            assets: view.template.spec.assets.iter().map(|asset| asset.name.clone()).collect(),
            version: view.version,
            created_at: view.created_at,
            updated_at: view.updated_at,
        }
    }
}

/// A file of a template.
#[derive(Serialize, ToSchema, Debug)]
#[serde(rename_all = "camelCase")]
pub struct AssetResponse {
    /// The name the template uses (`image("logo.png")`).
    pub name: String,
    /// Size in bytes.
    pub size: u64,
    /// The media type, sniffed from the bytes (a font is `font/ttf`, `font/otf` or
    /// `font/collection`, and is used by the template's renders).
    pub content_type: String,
    /// SHA-256 of the bytes.
    pub sha256: String,
}

impl From<&AssetInfo> for AssetResponse {
    fn from(info: &AssetInfo) -> Self {
        AssetResponse {
            name: info.name.clone(),
            size: info.size,
            content_type: info.content_type.clone(),
            sha256: info.sha256.clone(),
        }
    }
}

/// A version of a template.
#[derive(Serialize, ToSchema, Debug)]
#[serde(rename_all = "camelCase")]
pub struct TemplateVersionResponse {
    /// Its number.
    pub version: i64,
    /// When it was made.
    #[serde(with = "crate::resources::times::ms")]
    pub created_at: Timestamp,
    /// Digest of its source, schema, defaults and files: two versions that say the
    /// same have the same digest.
    pub sha256: String,
}

impl From<&TemplateVersion> for TemplateVersionResponse {
    fn from(version: &TemplateVersion) -> Self {
        TemplateVersionResponse {
            version: version.version,
            created_at: version.created_at,
            sha256: version.sha256.clone(),
        }
    }
}

/// A font family templates can use.
#[derive(Serialize, ToSchema, Debug)]
#[serde(rename_all = "camelCase")]
pub struct FontResponse {
    /// The family name, as `#set text(font: "…")` takes it.
    pub family: String,
    /// `embedded` (built into folio), `server` (from the server's `--font-path`) or
    /// `template` (a font file of the tenant's templates).
    pub source: String,
    /// For `template`: the templates that have it, by slug.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub templates: Option<Vec<String>>,
}

/// `POST /v1/renders/{id}/signed-url`.
#[derive(Deserialize, ToSchema, Debug, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SignedUrlRequest {
    /// Lifetime in seconds: 60 to 7776000 (90 days), default 86400. The links never
    /// outlive the job: they stop at its `expiresAt` (the end of its retention) if that
    /// comes sooner, and the answer's `expiresAt` says so.
    #[schema(minimum = 60, maximum = 7_776_000)]
    pub expires_in: Option<i64>,
}

/// A signed URL and a share link with the same lifetime.
#[derive(Serialize, ToSchema, Debug)]
#[serde(rename_all = "camelCase")]
pub struct SignedUrlResponse {
    /// Downloads the PDF without an API key until `expiresAt`.
    pub signed_url: String,
    /// Revocable link through the API.
    pub share_url: String,
    /// When both stop working: `expiresIn` from now, capped by the job's `expiresAt`.
    #[serde(with = "crate::resources::times::ms")]
    pub expires_at: Timestamp,
}

/// A share link.
#[derive(Serialize, ToSchema, Debug)]
#[serde(rename_all = "camelCase")]
pub struct ShareResponse {
    /// The token; in the cluster home's listings only its first characters and `…`
    /// (only the token's hash is kept), which `DELETE /v1/shares/{token}` also takes.
    pub token: String,
    /// The job it serves.
    pub render_id: String,
    /// The link; absent where only the token's prefix is known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub share_url: Option<String>,
    /// Whether it works now.
    pub active: bool,
    /// When it was made.
    #[serde(with = "crate::resources::times::ms")]
    pub created_at: Timestamp,
    /// When it stops working: its own expiry or its job's `expiresAt` (the end of the
    /// job's retention), whichever comes first; a link made without an expiry ends with
    /// its job. Absent only for a link whose job is kept for good.
    #[serde(default, with = "crate::resources::times::optional_ms")]
    pub expires_at: Option<Timestamp>,
    /// When it was revoked.
    #[serde(default, with = "crate::resources::times::optional_ms")]
    pub revoked_at: Option<Timestamp>,
}

impl ShareResponse {
    /// The API view of a share link at `now`; `job_end` is its job's `expiresAt`, or
    /// `None` when the job is gone (and the link with it).
    pub fn new(share: &Share, job_end: Option<Option<Timestamp>>, public_url: &str, now: Timestamp) -> ShareResponse {
        let expires_at = match (share.expires_at, job_end.flatten()) {
            (Some(own), Some(job)) => Some(own.min(job)),
            (own, job) => own.or(job),
        };
        ShareResponse {
            share_url: (!share.elided).then(|| format!("{public_url}/v1/share/{}", share.token)),
            token: share.token.clone(),
            render_id: share.job_id.clone(),
            active: job_end.is_some() && share.revoked_at.is_none() && expires_at.is_none_or(|e| e > now),
            created_at: share.created_at,
            expires_at,
            revoked_at: share.revoked_at,
        }
    }
}

/// `GET /v1/account`.
#[derive(Serialize, ToSchema, Debug)]
#[serde(rename_all = "camelCase")]
pub struct AccountResponse {
    /// The tenant.
    pub tenant: String,
    /// Credits granted; absent = unlimited.
    pub credits_granted: Option<i64>,
    /// Credits charged so far.
    pub credits_used: i64,
    /// Credits left; absent = unlimited.
    pub credits_remaining: Option<i64>,
    /// Jobs waiting for credits.
    pub blocked_jobs: i64,
    /// Credits per page.
    pub credits_per_page: i64,
    /// Outputs above this size cost extra.
    pub size_threshold_bytes: i64,
    /// Extra credits per started MiB above the threshold.
    pub extra_credits_per_started_mib: i64,
    /// Default retention of finished jobs, seconds.
    pub default_ttl_seconds: i64,
    /// Longest retention a job may ask for, seconds.
    pub max_ttl_seconds: i64,
    /// Retention of previews, seconds.
    pub preview_ttl_seconds: i64,
    /// The most renders the tenant runs at once; absent = the home's default share.
    #[schema(minimum = 1)]
    pub max_concurrent_renders: Option<i32>,
}

impl From<&RenderAccount> for AccountResponse {
    fn from(account: &RenderAccount) -> Self {
        let status = account.status.clone().unwrap_or_default();
        let spec = &account.spec;
        AccountResponse {
            tenant: account.metadata.namespace.clone().unwrap_or_default(),
            credits_granted: spec.credits,
            credits_used: status.credits_used,
            credits_remaining: crate::lifecycle::credits_remaining(spec, status.credits_used),
            blocked_jobs: status.blocked_jobs,
            credits_per_page: spec.pricing.credits_per_page,
            size_threshold_bytes: spec.pricing.size_threshold_bytes,
            extra_credits_per_started_mib: spec.pricing.extra_credits_per_started_mib,
            default_ttl_seconds: spec.retention.default_ttl_seconds,
            max_ttl_seconds: spec.retention.max_ttl_seconds,
            preview_ttl_seconds: spec.retention.preview_ttl_seconds,
            max_concurrent_renders: spec.max_concurrent_renders,
        }
    }
}
