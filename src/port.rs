//! The port between the REST facade and a home: the few operations the API needs on
//! jobs, templates, accounts and shares. The standalone home implements it over the
//! embedded database; the cluster home over RenderJob resources. Handlers know only
//! this trait, so every REST behaviour is written once.

use std::future::Future;

use jiff::Timestamp;

use crate::http::error::ApiError;
use crate::lifecycle::Phase;
use crate::resources::{RenderAccount, RenderJob, RenderJobSpec, RenderTemplate};

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
    /// When it was created.
    pub created_at: Timestamp,
    /// When it last changed.
    pub updated_at: Timestamp,
}

/// A job to create.
#[derive(Clone, Debug)]
pub struct NewJob {
    /// What to render.
    pub spec: RenderJobSpec,
    /// The request's `Idempotency-Key`.
    pub idempotency_key: Option<String>,
    /// The secret signing its webhook deliveries.
    pub webhook_secret: Option<String>,
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
/// tenant's request for another tenant's object gets `404`.
pub trait Backend: Send + Sync + 'static {
    /// The tenant an API key belongs to, or `None` for an unknown or revoked key.
    fn authenticate(&self, api_key: &str) -> impl Future<Output = Result<Option<String>, ApiError>> + Send;

    /// Accept a job. A job with the same idempotency key or external id is returned
    /// instead of a new one (`false`: not created).
    fn create_job(&self, tenant: &str, job: NewJob) -> impl Future<Output = Result<(JobView, bool), ApiError>> + Send;
    /// One job.
    fn job(&self, tenant: &str, id: &str) -> impl Future<Output = Result<JobView, ApiError>> + Send;
    /// A page of the render log, newest first, and the number of all matches.
    fn jobs(
        &self,
        tenant: &str,
        filter: JobFilter,
        limit: i64,
        offset: i64,
    ) -> impl Future<Output = Result<(Vec<JobView>, i64), ApiError>> + Send;
    /// Cancel a job that has not finished.
    fn cancel_job(&self, tenant: &str, id: &str) -> impl Future<Output = Result<JobView, ApiError>> + Send;
    /// Resume a blocked job.
    fn resume_job(&self, tenant: &str, id: &str) -> impl Future<Output = Result<JobView, ApiError>> + Send;
    /// Delete a job and its output.
    fn delete_job(&self, tenant: &str, id: &str) -> impl Future<Output = Result<(), ApiError>> + Send;
    /// The PDF of a succeeded job.
    fn output(&self, tenant: &str, id: &str) -> impl Future<Output = Result<Vec<u8>, ApiError>> + Send;
    /// A URL that downloads the PDF without an API key until `expires_at`.
    fn signed_url(
        &self,
        tenant: &str,
        id: &str,
        expires_at: Timestamp,
    ) -> impl Future<Output = Result<String, ApiError>> + Send;

    /// The PDF behind a signed URL this home minted (`404` if it mints none itself).
    fn signed_output(
        &self,
        tenant: &str,
        id: &str,
        expires: i64,
        signature: &str,
    ) -> impl Future<Output = Result<Vec<u8>, ApiError>> + Send;

    /// Make a share link for a succeeded job.
    fn create_share(
        &self,
        tenant: &str,
        id: &str,
        expires_at: Option<Timestamp>,
    ) -> impl Future<Output = Result<Share, ApiError>> + Send;
    /// The PDF behind a live share link (no tenant: the token is the credential).
    fn shared_output(&self, token: &str) -> impl Future<Output = Result<Vec<u8>, ApiError>> + Send;
    /// The tenant's share links.
    fn shares(&self, tenant: &str) -> impl Future<Output = Result<Vec<Share>, ApiError>> + Send;
    /// Revoke a share link at once.
    fn revoke_share(&self, tenant: &str, token: &str) -> impl Future<Output = Result<(), ApiError>> + Send;

    /// The tenant's templates.
    fn templates(&self, tenant: &str) -> impl Future<Output = Result<Vec<TemplateView>, ApiError>> + Send;
    /// One template.
    fn template(&self, tenant: &str, name: &str) -> impl Future<Output = Result<TemplateView, ApiError>> + Send;
    /// Create or replace a template (`true`: created).
    /// Create a template, or replace it when `replace` (`true` in the answer: created).
    /// Without `replace`, an existing template is a `409`.
    fn put_template(
        &self,
        tenant: &str,
        template: RenderTemplate,
        replace: bool,
    ) -> impl Future<Output = Result<(TemplateView, bool), ApiError>> + Send;
    /// Delete a template.
    fn delete_template(&self, tenant: &str, name: &str) -> impl Future<Output = Result<(), ApiError>> + Send;

    /// The tenant's account (defaults when none was applied), with its balance.
    fn account(&self, tenant: &str) -> impl Future<Output = Result<RenderAccount, ApiError>> + Send;

    /// Why the home cannot serve now, if it cannot (readiness).
    fn not_ready(&self) -> impl Future<Output = Option<String>> + Send;
    /// Jobs per phase and jobs waiting to render, for metrics.
    fn job_counts(&self) -> impl Future<Output = Result<Vec<(Phase, i64)>, ApiError>> + Send;
}
