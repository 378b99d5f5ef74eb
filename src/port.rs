//! The port between the REST facade and a home: the few operations the API needs on
//! jobs, templates, accounts and shares. The standalone home implements it over the
//! embedded database; the cluster home over RenderJob resources. Handlers know only
//! this trait, so every REST behaviour is written once.
//!
//! The port speaks the domain's language, not HTTP's: a home says what went wrong as a
//! [`HomeError`], and only the REST facade turns that into a status code and an
//! `errorCode`, so the two homes cannot drift apart in how they answer.

use std::future::Future;

use jiff::Timestamp;

use crate::assets::AssetInfo;
use crate::lifecycle::Phase;
use crate::resources::{RenderAccount, RenderJob, RenderJobSpec, RenderTemplate};
use crate::signing::SignatureError;

/// A job as the API shows it.
#[derive(Clone, Debug)]
pub struct JobView {
    /// The resource (`metadata.name` is the id, `metadata.namespace` the tenant).
    pub job: RenderJob,
    /// When it was accepted.
    pub created_at: Timestamp,
    /// When it last changed.
    pub updated_at: Timestamp,
}

/// A template as the API shows it.
#[derive(Clone, Debug)]
pub struct TemplateView {
    /// The resource (`metadata.name` is the slug).
    pub template: RenderTemplate,
    /// Which version this is (the current one, unless asked for another).
    pub version: i64,
    /// When it was created.
    pub created_at: Timestamp,
    /// When it last changed.
    pub updated_at: Timestamp,
}

/// One kept version of a template.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TemplateVersion {
    /// Its number: 1, 2, 3 …
    pub version: i64,
    /// When it was made.
    pub created_at: Timestamp,
    /// The digest of what it says ([`crate::assets::spec_digest`]).
    pub sha256: String,
}

/// A job to create.
#[derive(Clone, Debug, Default)]
pub struct NewJob {
    /// What to render.
    pub spec: RenderJobSpec,
    /// The request's `Idempotency-Key`.
    pub idempotency_key: Option<String>,
    /// The secret signing its webhook deliveries.
    pub webhook_secret: Option<String>,
    /// A digest of the request that made it, kept on the job
    /// ([`REQUEST_DIGEST_ANNOTATION`]) so that a retry with the same
    /// `Idempotency-Key` and another body is told apart.
    pub request_digest: Option<String>,
}

/// Annotation holding the digest of the REST request that created a job.
pub const REQUEST_DIGEST_ANNOTATION: &str = "folio.dev/request-sha256";

/// Annotation holding the `Idempotency-Key` of the REST request that created a job.
pub const IDEMPOTENCY_KEY_ANNOTATION: &str = "folio.dev/idempotency-key";

/// Keep the `Idempotency-Key` and the digest of the request that made `job` on it.
pub fn annotate_request(job: &mut RenderJob, idempotency_key: Option<&str>, digest: Option<&str>) {
    let annotations = job.metadata.annotations.get_or_insert_with(Default::default);
    if let Some(key) = idempotency_key {
        annotations.insert(IDEMPOTENCY_KEY_ANNOTATION.to_owned(), key.to_owned());
    }
    if let Some(digest) = digest {
        annotations.insert(REQUEST_DIGEST_ANNOTATION.to_owned(), digest.to_owned());
    }
    if annotations.is_empty() {
        job.metadata.annotations = None;
    }
}

/// Whether `job` was made with `idempotency_key` by a request other than the one with
/// `digest`: the key reused for another request. (A job found by its `externalId`, made
/// with another key or none, is not; nor is one made before jobs kept their request's
/// digest.)
pub fn made_by_another_request(job: &RenderJob, idempotency_key: &str, digest: &str) -> bool {
    let annotations = job.metadata.annotations.as_ref();
    let same_key = annotations.and_then(|a| a.get(IDEMPOTENCY_KEY_ANNOTATION)).is_some_and(|k| k == idempotency_key);
    let kept = annotations.and_then(|a| a.get(REQUEST_DIGEST_ANNOTATION));
    same_key && kept.is_some_and(|kept| kept != digest)
}

/// How long an `Idempotency-Key` is remembered (Stripe's rule): a request repeating
/// it within this time after the first gets the first one's job; later, it makes a
/// new job.
pub const IDEMPOTENCY_KEY_LIFETIME: jiff::SignedDuration = jiff::SignedDuration::from_hours(24);

/// Whether a job made at `created` answers a request repeating its
/// `Idempotency-Key` at `now`.
pub fn remembers_idempotency_key(created: jiff::Timestamp, now: jiff::Timestamp) -> bool {
    created.duration_until(now) < IDEMPOTENCY_KEY_LIFETIME
}

/// Whether a job in `phase` answers a request with its `externalId`: a job that
/// failed, was cancelled or expired does not, so the same `externalId` may be
/// submitted again and makes a new job.
pub fn holds_external_id(phase: Phase) -> bool {
    !matches!(phase, Phase::Failed | Phase::Cancelled | Phase::Expired)
}

/// Whether a request with `idempotency_key` and `external_id`, at `now`, repeats the
/// one that made `job` (made with `job_key` at `created`): the same key within its
/// lifetime, or the same external id while the job holds it. One rule for both homes.
pub fn repeats(
    job: &RenderJob,
    job_key: Option<&str>,
    created: Timestamp,
    idempotency_key: Option<&str>,
    external_id: Option<&str>,
    now: Timestamp,
) -> bool {
    let same_key = idempotency_key.is_some() && job_key == idempotency_key;
    let same_external_id = external_id.is_some() && job.spec.external_id.as_deref() == external_id;
    let phase = job.status.as_ref().and_then(|s| s.phase).unwrap_or(Phase::Queued);
    (same_key && remembers_idempotency_key(created, now)) || (same_external_id && holds_external_id(phase))
}

/// Filters of the render log.
#[derive(Clone, Debug, Default)]
pub struct JobFilter {
    /// Only this phase.
    pub phase: Option<Phase>,
    /// Only jobs of this template.
    pub template: Option<String>,
    /// Only this external id.
    pub external_id: Option<String>,
    /// Only previews (true) or only billed renders (false).
    pub preview: Option<bool>,
    /// Only this output format.
    pub output: Option<crate::resources::OutputFormat>,
    /// Created at or after.
    pub created_from: Option<Timestamp>,
    /// Created before.
    pub created_to: Option<Timestamp>,
}

/// A share link.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Share {
    /// The token at the end of the link; in listings of the cluster home only its
    /// prefix (see `elided`), because the cluster keeps only the token's hash.
    pub token: String,
    /// `token` is only the token's prefix: the link cannot be rebuilt from it.
    pub elided: bool,
    /// The job whose PDF it serves.
    pub job_id: String,
    /// When it was made.
    pub created_at: Timestamp,
    /// When it stops working, if ever.
    pub expires_at: Option<Timestamp>,
    /// When it was revoked.
    pub revoked_at: Option<Timestamp>,
}

/// What kind of object a request named that the tenant does not have.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Object {
    /// A render job.
    Render,
    /// A template.
    Template,
    /// A share link (never named back: its token is a credential).
    ShareLink,
    /// A job's stored PDF.
    Output,
    /// The tenant's namespace (cluster home).
    Namespace,
    /// A file of a template.
    Asset,
    /// A version of a template.
    TemplateVersion,
}

impl std::fmt::Display for Object {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Object::Render => "render",
            Object::Template => "template",
            Object::ShareLink => "share link",
            Object::Output => "output",
            Object::Namespace => "namespace",
            Object::Asset => "template file",
            Object::TemplateVersion => "template version",
        })
    }
}

/// Why a home refused or failed a request. The messages are for a person and safe to
/// show a client, except [`HomeError::Internal`]'s detail, which is only logged.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum HomeError {
    /// Unknown, or another tenant's: the two are never told apart.
    #[error("{}", not_found_text(*what, id.as_deref()))]
    NotFound {
        /// What was asked for.
        what: Object,
        /// Its id or name, where naming it back reveals nothing.
        id: Option<String>,
    },
    /// Cancelling a job that has already ended.
    #[error("render {id:?} already {}", phase.api_name())]
    AlreadyFinished {
        /// The job.
        id: String,
        /// The phase it ended in.
        phase: Phase,
    },
    /// Resuming a job that is not blocked.
    #[error("render {id:?} is {}; only blocked renders resume", phase.api_name())]
    NotBlocked {
        /// The job.
        id: String,
        /// Its phase.
        phase: Phase,
    },
    /// Resuming a blocked job the account still cannot pay for.
    #[error("{0}")]
    InsufficientCredits(String),
    /// Creating a template whose name is taken.
    #[error("template {0:?} exists")]
    TemplateExists(String),
    /// Asking for the PDF of a job that has not succeeded.
    #[error("render {id:?} is {}; its PDF is available once it has succeeded", phase.api_name())]
    OutputNotReady {
        /// The job.
        id: String,
        /// Its phase.
        phase: Phase,
    },
    /// Asking for the PDF of a job whose retention ended: the job is kept, its PDF
    /// was deleted.
    #[error("render {id:?}: its PDF was deleted at the end of its retention, at {since:.3}")]
    OutputExpired {
        /// The job.
        id: String,
        /// When the PDF was deleted.
        since: Timestamp,
    },
    /// A signed URL that was altered or has expired.
    #[error(transparent)]
    SignatureRefused(#[from] SignatureError),
    /// A quota of the tenant's is used up: its limit, not an outage.
    #[error("{0}")]
    QuotaExceeded(String),
    /// A policy of the cluster refused the object.
    #[error("{0}")]
    RefusedByCluster(String),
    /// The object changed meanwhile, or is still in the way; trying again helps.
    #[error("{0}")]
    Conflict(String),
    /// The request would make an object that is not valid.
    #[error("{}", invalid_text(field.as_deref(), message))]
    Invalid {
        /// Where the problem is (`metadata.name`, …), when it is in one place.
        field: Option<String>,
        /// What is wrong there.
        message: String,
    },
    /// The object would be larger than the home can keep.
    #[error("{0}")]
    TooLarge(String),
    /// The store, the storage or the cluster cannot be reached now; trying again helps.
    #[error("{0}")]
    Unavailable(String),
    /// A fault of folio's; the detail is for the log, never for the client.
    #[error("{0}")]
    Internal(String),
}

/// Where the PDF of `job` (the render `id`) is stored, or why there is none to read:
/// the job has not succeeded, or its retention ended.
pub fn stored_output_key(job: &RenderJob, id: &str) -> Result<String, HomeError> {
    let status = job.status.clone().unwrap_or_default();
    match (status.phase.unwrap_or(Phase::Queued), status.output_expired_at, status.output_key) {
        (Phase::Succeeded, Some(since), _) => Err(HomeError::OutputExpired { id: id.to_owned(), since }),
        (Phase::Succeeded, None, Some(key)) => Ok(key),
        (phase, _, _) => Err(HomeError::OutputNotReady { id: id.to_owned(), phase }),
    }
}

impl HomeError {
    /// A job id this tenant does not have.
    pub fn render_not_found(id: &str) -> HomeError {
        HomeError::NotFound { what: Object::Render, id: Some(id.to_owned()) }
    }

    /// A template name this tenant does not have.
    pub fn template_not_found(name: &str) -> HomeError {
        HomeError::NotFound { what: Object::Template, id: Some(name.to_owned()) }
    }

    /// A file the template does not have.
    pub fn asset_not_found(file: &str) -> HomeError {
        HomeError::NotFound { what: Object::Asset, id: Some(file.to_owned()) }
    }

    /// A version the template does not keep.
    pub fn version_not_found(version: i64) -> HomeError {
        HomeError::NotFound { what: Object::TemplateVersion, id: Some(version.to_string()) }
    }

    /// Something this tenant does not have, not named back.
    pub fn not_found(what: Object) -> HomeError {
        HomeError::NotFound { what, id: None }
    }

    /// A problem that is not about one field.
    pub fn invalid(message: impl Into<String>) -> HomeError {
        HomeError::Invalid { field: None, message: message.into() }
    }

    /// A problem with one field.
    pub fn invalid_field(field: impl Into<String>, message: impl Into<String>) -> HomeError {
        HomeError::Invalid { field: Some(field.into()), message: message.into() }
    }

    /// A fault of folio's, with the detail for the log.
    pub fn internal(detail: impl std::fmt::Display) -> HomeError {
        HomeError::Internal(detail.to_string())
    }
}

fn not_found_text(what: Object, id: Option<&str>) -> String {
    match id {
        Some(id) => format!("{what} {id:?} not found"),
        None => format!("{what} not found"),
    }
}

fn invalid_text(field: Option<&str>, message: &str) -> String {
    match field {
        Some(field) => format!("{field}: {message}"),
        None => message.to_owned(),
    }
}

/// A new job id: a UUIDv7, so ids sort by acceptance time and are valid Kubernetes
/// object names. Both homes name jobs this way.
pub fn new_job_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// A new share-link token: 192 random bits, hex.
pub fn new_share_token() -> String {
    let mut bytes = [0u8; 24];
    rand::RngCore::fill_bytes(&mut rand::rng(), &mut bytes);
    hex::encode(bytes)
}

/// What a home offers the REST facade. Every method is scoped to a tenant, and a
/// tenant's request for another tenant's object is [`HomeError::NotFound`].
pub trait Backend: Send + Sync + 'static {
    /// The tenant an API key belongs to, or `None` for an unknown or revoked key.
    fn authenticate(&self, api_key: &str) -> impl Future<Output = Result<Option<String>, HomeError>> + Send;

    /// Accept a job. A job with the same idempotency key or external id is returned
    /// instead of a new one (`false`: not created).
    fn create_job(&self, tenant: &str, job: NewJob) -> impl Future<Output = Result<(JobView, bool), HomeError>> + Send;
    /// One job.
    fn job(&self, tenant: &str, id: &str) -> impl Future<Output = Result<JobView, HomeError>> + Send;
    /// A page of the render log, newest first, and the number of all matches.
    fn jobs(
        &self,
        tenant: &str,
        filter: JobFilter,
        limit: i64,
        offset: i64,
    ) -> impl Future<Output = Result<(Vec<JobView>, i64), HomeError>> + Send;
    /// Cancel a job that has not finished.
    fn cancel_job(&self, tenant: &str, id: &str) -> impl Future<Output = Result<JobView, HomeError>> + Send;
    /// Resume a blocked job.
    fn resume_job(&self, tenant: &str, id: &str) -> impl Future<Output = Result<JobView, HomeError>> + Send;
    /// Delete a job and its output.
    fn delete_job(&self, tenant: &str, id: &str) -> impl Future<Output = Result<(), HomeError>> + Send;
    /// The PDF of a succeeded job.
    fn output(&self, tenant: &str, id: &str) -> impl Future<Output = Result<Vec<u8>, HomeError>> + Send;
    /// A URL that downloads the PDF without an API key until `expires_at`.
    fn signed_url(
        &self,
        tenant: &str,
        id: &str,
        expires_at: Timestamp,
    ) -> impl Future<Output = Result<String, HomeError>> + Send;

    /// The PDF behind a signed URL this home minted.
    fn signed_output(
        &self,
        tenant: &str,
        id: &str,
        expires: i64,
        signature: &str,
    ) -> impl Future<Output = Result<Vec<u8>, HomeError>> + Send;

    /// Make a share link for a succeeded job.
    fn create_share(
        &self,
        tenant: &str,
        id: &str,
        expires_at: Option<Timestamp>,
    ) -> impl Future<Output = Result<Share, HomeError>> + Send;
    /// The PDF behind a live share link (no tenant: the token is the credential).
    fn shared_output(&self, token: &str) -> impl Future<Output = Result<Vec<u8>, HomeError>> + Send;
    /// The tenant's share links.
    fn shares(&self, tenant: &str) -> impl Future<Output = Result<Vec<Share>, HomeError>> + Send;
    /// Revoke a share link at once.
    fn revoke_share(&self, tenant: &str, token: &str) -> impl Future<Output = Result<(), HomeError>> + Send;

    /// The tenant's templates.
    fn templates(&self, tenant: &str) -> impl Future<Output = Result<Vec<TemplateView>, HomeError>> + Send;
    /// One template.
    fn template(&self, tenant: &str, name: &str) -> impl Future<Output = Result<TemplateView, HomeError>> + Send;
    /// Create a template, or replace it when `replace` (`true` in the answer: created);
    /// a replaced template keeps its files.
    /// Without `replace`, an existing template is [`HomeError::TemplateExists`].
    fn put_template(
        &self,
        tenant: &str,
        template: RenderTemplate,
        replace: bool,
    ) -> impl Future<Output = Result<(TemplateView, bool), HomeError>> + Send;
    /// Delete a template, its versions and its files.
    fn delete_template(&self, tenant: &str, name: &str) -> impl Future<Output = Result<(), HomeError>> + Send;
    /// One version of a template.
    fn template_version(
        &self,
        tenant: &str,
        name: &str,
        version: i64,
    ) -> impl Future<Output = Result<TemplateView, HomeError>> + Send;
    /// The kept versions of a template, oldest first.
    fn template_versions(
        &self,
        tenant: &str,
        name: &str,
    ) -> impl Future<Output = Result<Vec<TemplateVersion>, HomeError>> + Send;
    /// Make what version `version` says current again, as a new version (none when it
    /// says what the current one says).
    fn restore_template(
        &self,
        tenant: &str,
        name: &str,
        version: i64,
    ) -> impl Future<Output = Result<TemplateView, HomeError>> + Send;
    /// Store a file of a template under `file` (a new version of the template);
    /// `true` in the answer when the name is new.
    fn put_asset(
        &self,
        tenant: &str,
        name: &str,
        file: &str,
        bytes: Vec<u8>,
    ) -> impl Future<Output = Result<(AssetInfo, bool), HomeError>> + Send;
    /// The files of a template's current version.
    fn assets(&self, tenant: &str, name: &str) -> impl Future<Output = Result<Vec<AssetInfo>, HomeError>> + Send;
    /// One file of a template's current version, and its bytes.
    fn asset(
        &self,
        tenant: &str,
        name: &str,
        file: &str,
    ) -> impl Future<Output = Result<(AssetInfo, Vec<u8>), HomeError>> + Send;
    /// Remove a file from a template (a new version of the template).
    fn delete_asset(&self, tenant: &str, name: &str, file: &str) -> impl Future<Output = Result<(), HomeError>> + Send;

    /// The tenant's account (defaults when none was applied), with its balance.
    fn account(&self, tenant: &str) -> impl Future<Output = Result<RenderAccount, HomeError>> + Send;

    /// Why the home cannot serve now, if it cannot (readiness).
    fn not_ready(&self) -> impl Future<Output = Option<String>> + Send;
    /// Jobs per phase and jobs waiting to render, for metrics.
    fn job_counts(&self) -> impl Future<Output = Result<Vec<(Phase, i64)>, HomeError>> + Send;
}
