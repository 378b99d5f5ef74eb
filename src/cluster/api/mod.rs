//! `folio api`: the REST facade over the cluster. The handlers are the same as
//! `folio serve`'s; only the [`Backend`] differs: [`ClusterBackend`] maps every call
//! onto Kubernetes objects in the tenant's namespace.
//!
//! Reads come from reflector caches ([`cache`]), never one apiserver call per GET;
//! writes go to the apiserver, and a handler that wrote waits briefly until its cache
//! shows the write, so the next request sees it (a job missing from the cache is
//! also looked up directly, once). The job's life is the operator's: cancel sets
//! `spec.cancel`, resume annotates, delete leaves the PDF to the operator's
//! finalizer; the facade waits a moment for the operator's answer and otherwise
//! returns the job as it stands. How requests map to objects is in [`objects`]; what
//! the API server would refuse is refused before anything is created ([`admission`]).

pub mod admission;
mod cache;
pub mod keys;
pub mod migrate;
pub mod objects;
#[cfg(test)]
mod tests;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use jiff::Timestamp;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::{Api, Client, ResourceExt};
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::http::error::ApiError;
use crate::http::{AppState, app};
use crate::lifecycle::Phase;
use crate::metrics::Metrics;
use crate::port::{Backend, JobFilter, JobView, NewJob, Share, TemplateView, new_job_id, new_share_token};
use crate::resources::{RenderAccount, RenderJob, RenderShare, RenderTemplate, SecretKeyRef};
use crate::signing::UrlSigner;
use crate::storage::{MAX_PRESIGNED_LIFETIME, S3Bucket, S3Options};
pub use cache::{Cache, Caches};

/// `folio api`: flags and environment.
#[derive(Clone, Debug, clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct ApiOptions {
    /// Manage API keys (RenderAPIKeys in the tenant's namespace) instead of serving.
    #[command(subcommand)]
    pub command: Option<ApiCommand>,
    /// Address to listen on.
    #[arg(long, env = "FOLIO_LISTEN", default_value = "0.0.0.0:8080")]
    pub listen: SocketAddr,
    /// The URL clients reach the API at (default: http://LISTEN).
    #[arg(long, env = "FOLIO_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// How it logs.
    #[command(flatten)]
    pub logging: crate::cli::Logging,
    /// Requests per second each tenant may make (bursts of twice that); 0 = unlimited.
    #[arg(long, env = "FOLIO_RATE_LIMIT", default_value_t = 0)]
    pub rate_limit: u32,
    /// How long a write waits for the cache (and, for cancel and resume, the operator)
    /// to show its effect before answering (`2s`, `500ms`, or plain seconds).
    #[arg(long, env = "FOLIO_SETTLE_TIMEOUT", value_name = "DURATION", default_value = "2s", value_parser = crate::cli::duration)]
    pub settle_timeout: Duration,
    /// Where the PDFs are.
    #[command(flatten)]
    pub s3: Option<S3Options>,
}

/// `folio api <command>`.
#[derive(Clone, Debug, clap::Subcommand)]
pub enum ApiCommand {
    /// Create, list, revoke and migrate API keys: RenderAPIKeys holding only the key's hash.
    Keys {
        /// What to do.
        #[command(subcommand)]
        command: keys::KeysCommand,
    },
}

/// Run `folio api` (or one of its key commands).
pub async fn run(options: ApiOptions) -> anyhow::Result<()> {
    if let Some(ApiCommand::Keys { command }) = options.command {
        let client = super::connect().await?;
        return keys::run(client, command).await;
    }
    let s3 = options
        .s3
        .clone()
        .context("folio api needs --s3-endpoint, --s3-access-key and --s3-secret-key (or FOLIO_S3_*)")?;
    let client = super::connect().await?;
    let bucket = s3.connect().await.context("connecting to the bucket")?;
    let listener = tokio::net::TcpListener::bind(options.listen)
        .await
        .with_context(|| format!("listening on {}", options.listen))?;
    let address = listener.local_addr()?;
    let public_url =
        options.public_url.clone().unwrap_or_else(|| format!("http://{address}")).trim_end_matches('/').to_owned();
    let caches = Caches::watch(&client);
    let signer = url_signer(&s3);
    let backend = ClusterBackend::new(client, caches, bucket, signer, public_url.clone(), options.settle_timeout);
    let state = AppState {
        backend: Arc::new(backend),
        public_url: public_url.clone(),
        metrics: Arc::new(Metrics::new()),
        rate_limit: std::num::NonZeroU32::new(options.rate_limit).map(crate::http::tenant_rate_limiter),
    };
    // The address line is what scripts and tests wait for.
    println!("folio api on {public_url}");
    tracing::info!(%address, "serving the API over the cluster");
    axum::serve(listener, app(state)).with_graceful_shutdown(crate::shutdown_signal()).await?;
    Ok(())
}

/// The signer of folio's own download URLs (those longer-lived than S3 allows). Its
/// key comes from the bucket's secret key, which every replica already has, so any
/// replica verifies what another signed.
fn url_signer(s3: &S3Options) -> UrlSigner {
    let mut hasher = Sha256::new();
    hasher.update(b"folio signed download URLs\n");
    hasher.update(s3.secret_key.as_bytes());
    UrlSigner::new(hasher.finalize().to_vec())
}

/// Locks serialising creates that carry an idempotency key or an external id, per
/// tenant (striped), so that a retry racing its original request finds the first job.
const CREATE_LOCKS: usize = 64;

/// The cluster home's side of the REST facade.
pub struct ClusterBackend {
    client: Client,
    caches: Caches,
    bucket: S3Bucket,
    signer: UrlSigner,
    public_url: String,
    settle: Duration,
    create_locks: Vec<tokio::sync::Mutex<()>>,
}

/// An apiserver error as the API answers it; `not_found` makes the 404 (never saying
/// whether another tenant has such an object).
fn cluster_error(err: kube::Error, not_found: impl FnOnce() -> ApiError) -> ApiError {
    match &err {
        kube::Error::Api(status) if status.is_not_found() => not_found(),
        kube::Error::Api(status) if status.is_conflict() => {
            ApiError::conflict("CONFLICT", "the object changed meanwhile; try again")
        }
        kube::Error::Api(status) if status.is_invalid() => ApiError::bad_request(status.message.clone()),
        // A ResourceQuota of the tenant's namespace is used up: the tenant's limit, not
        // an outage, and not a rate that frees itself (so no 429 and no Retry-After).
        kube::Error::Api(status) if status.is_forbidden() && status.message.contains("exceeded quota") => {
            ApiError::new(http::StatusCode::FORBIDDEN, "QUOTA_EXCEEDED", status.message.clone())
        }
        // An admission policy of the cluster refused the object; folio's own RBAC
        // refusals (naming its ServiceAccount) are an outage below.
        kube::Error::Api(status) if status.is_forbidden() && !status.message.contains("system:serviceaccount:") => {
            ApiError::new(http::StatusCode::FORBIDDEN, "REFUSED_BY_CLUSTER", status.message.clone())
        }
        _ => {
            tracing::error!(error = %err, "cluster API call failed");
            ApiError::unavailable("the cluster API is unavailable; try again")
        }
    }
}

/// The one object a hash names. Hashes are not secret to whoever may read a tenant's
/// namespace, so a copy planted in another namespace must not decide which tenant a
/// key or link belongs to: two matches are no match (and a warning).
fn the_only<K: ResourceExt>(what: &str, mut matching: Vec<Arc<K>>) -> Option<Arc<K>> {
    if matching.len() > 1 {
        let names: Vec<String> =
            matching.iter().map(|m| format!("{}/{}", m.namespace().unwrap_or_default(), m.name_any())).collect();
        tracing::warn!(what, objects = ?names, "several objects carry the same hash; refusing it");
        return None;
    }
    matching.pop()
}

/// The answer while the caches are still filling.
fn starting() -> ApiError {
    ApiError::unavailable("the API is starting (its caches are not filled yet); try again")
}

/// The storage key of a job's PDF, once it has succeeded.
fn output_key_of(job: &RenderJob) -> Result<String, ApiError> {
    match (objects::phase(job), job.status.as_ref().and_then(|s| s.output_key.clone())) {
        (Phase::Succeeded, Some(key)) => Ok(key),
        (phase, _) => Err(ApiError::output_not_ready(&job.name_any(), phase)),
    }
}

fn is_already_exists(err: &kube::Error) -> bool {
    matches!(err, kube::Error::Api(status) if status.is_already_exists())
}

impl ClusterBackend {
    /// A backend writing through `client` and reading from `caches`.
    pub fn new(
        client: Client,
        caches: Caches,
        bucket: S3Bucket,
        signer: UrlSigner,
        public_url: String,
        settle: Duration,
    ) -> ClusterBackend {
        let create_locks = (0..CREATE_LOCKS).map(|_| tokio::sync::Mutex::new(())).collect();
        ClusterBackend { client, caches, bucket, signer, public_url, settle, create_locks }
    }

    fn jobs_api(&self, tenant: &str) -> Api<RenderJob> {
        Api::namespaced(self.client.clone(), tenant)
    }

    fn secrets_api(&self, tenant: &str) -> Api<Secret> {
        Api::namespaced(self.client.clone(), tenant)
    }

    fn shares_api(&self, tenant: &str) -> Api<RenderShare> {
        Api::namespaced(self.client.clone(), tenant)
    }

    fn templates_api(&self, tenant: &str) -> Api<RenderTemplate> {
        Api::namespaced(self.client.clone(), tenant)
    }

    fn create_lock(&self, tenant: &str) -> &tokio::sync::Mutex<()> {
        let hash = Sha256::digest(tenant.as_bytes());
        &self.create_locks[usize::from(hash[0]) % self.create_locks.len()]
    }

    fn ensure_synced(&self) -> Result<(), ApiError> {
        let missing = self.caches.not_synced();
        if missing.is_empty() { Ok(()) } else { Err(starting()) }
    }

    /// A live job of `tenant`: from the cache, or (a write the cache has not shown
    /// yet) from the apiserver.
    async fn load_job(&self, tenant: &str, id: &str) -> Result<RenderJob, ApiError> {
        if let Some(job) = self.caches.jobs.get(tenant, id) {
            return if objects::is_live(&job.metadata) {
                Ok(RenderJob::clone(&job))
            } else {
                Err(ApiError::render_not_found(id))
            };
        }
        if !admission::is_object_name(id) {
            return Err(ApiError::render_not_found(id));
        }
        let job =
            self.jobs_api(tenant).get_opt(id).await.map_err(|e| cluster_error(e, || ApiError::render_not_found(id)))?;
        job.filter(|j| objects::is_live(&j.metadata)).ok_or_else(|| ApiError::render_not_found(id))
    }

    /// Wait until the cached job `id` satisfies `done`; the cached job if it does.
    async fn settled_job(&self, tenant: &str, id: &str, done: impl Fn(&RenderJob) -> bool) -> Option<RenderJob> {
        let key = kube::runtime::reflector::ObjectRef::<RenderJob>::new(id).within(tenant);
        let held = self.caches.jobs.wait_until(self.settle, |s| s.get(&key).is_some_and(|j| done(&j))).await;
        if held { self.caches.jobs.get(tenant, id).map(|j| RenderJob::clone(&j)) } else { None }
    }

    /// Wait until the cache shows `written` (its resourceVersion or a later one), so
    /// that the next request reads it from there.
    async fn await_cached(&self, written: &RenderJob) {
        if !self.caches.jobs.wait_for_write(self.settle, written).await {
            let (tenant, id) = (written.namespace().unwrap_or_default(), written.name_any());
            tracing::debug!(%tenant, %id, "the cache has not shown a write yet; reads fall back to the apiserver");
        }
    }

    /// The storage key of a succeeded job's PDF.
    async fn succeeded_output_key(&self, tenant: &str, id: &str) -> Result<String, ApiError> {
        output_key_of(&self.load_job(tenant, id).await?)
    }

    async fn read_output(&self, key: &str) -> Result<Vec<u8>, ApiError> {
        self.bucket
            .get(key)
            .await
            .map_err(|err| {
                tracing::error!(error = %err, key, "reading an output");
                ApiError::unavailable("the output storage is unavailable")
            })?
            .ok_or_else(|| ApiError::not_found("output"))
    }

    fn cached_account(&self, tenant: &str) -> RenderAccount {
        let accounts = self.caches.accounts.store().state_filter(|a| a.metadata.namespace.as_deref() == Some(tenant));
        let jobs = self.caches.jobs.store().state_filter(|j| j.metadata.namespace.as_deref() == Some(tenant));
        objects::account(accounts, jobs, tenant)
    }

    /// The live share link with `token` (any tenant: the token is the credential).
    fn cached_share(&self, token: &str) -> Option<Arc<RenderShare>> {
        let name = objects::share_name(token);
        let matching =
            self.caches.shares.store().state_filter(|s| {
                s.metadata.name.as_deref() == Some(name.as_str()) && objects::share_matches(s, token)
            });
        the_only("share link", matching)
    }

    /// `tenant`'s share link named by `token`: the token itself, or, as listings show a
    /// link, the token's prefix (with or without the trailing `…`) when exactly one of
    /// the tenant's links has it. Revoking is the tenant's own act on its own links, so a
    /// prefix (which opens nothing) is enough to name one.
    fn tenant_share(&self, tenant: &str, token: &str) -> Option<Arc<RenderShare>> {
        if let Some(share) = self.cached_share(token).filter(|s| s.metadata.namespace.as_deref() == Some(tenant)) {
            return Some(share);
        }
        let prefix = token.strip_suffix(objects::ELIDED).unwrap_or(token);
        if prefix.chars().count() != objects::SHARE_TOKEN_PREFIX_LEN {
            return None;
        }
        let mut matching = self.caches.shares.store().state_filter(|s| {
            s.metadata.namespace.as_deref() == Some(tenant)
                && objects::is_live(&s.metadata)
                && s.spec.token_prefix == prefix
        });
        if matching.len() == 1 { matching.pop() } else { None }
    }

    /// Create the job, then the Secret holding its webhook signing secret, owned by the
    /// job; `false` when a keyed job of the same id was created first, by this replica or
    /// another, and that one is returned.
    ///
    /// The signing secret is the one the client sent (its receiver checks signatures
    /// with it), so it has to be stored somewhere the operator can read: a Secret, like
    /// the ones users name in RenderJobs they apply themselves. `folio api` may only
    /// *create* Secrets: it never gets, lists, watches, patches or deletes one, not even
    /// its own, so a bug in the API or a leaked token of its ServiceAccount reads no
    /// Secret of the cluster. That is why the job comes first: the Secret is created
    /// already owned by it (an owner reference needs the job's uid), instead of being
    /// patched afterwards, and the garbage collector removes it with the job. When the
    /// Secret cannot be created, the job is deleted again, so that a failed request
    /// leaves nothing behind. Deriving each job's secret from one key of folio's instead
    /// would need no Secret per job, but the signature would no longer be made with the
    /// secret the client chose, and one leaked key would forge every job's webhooks.
    async fn create_new_job(&self, tenant: &str, new: NewJob) -> Result<(RenderJob, bool), ApiError> {
        let id = keyed_job_id(tenant, &new).unwrap_or_else(new_job_id);
        let mut spec = new.spec;
        let webhook_secret = match (new.webhook_secret, spec.webhook.as_mut()) {
            (Some(secret), Some(hook)) => {
                hook.secret_ref = Some(SecretKeyRef {
                    name: objects::webhook_secret_name(&id),
                    key: objects::WEBHOOK_SECRET_FIELD.to_owned(),
                });
                Some(secret)
            }
            _ => None,
        };
        let job = objects::new_job(tenant, &id, spec, new.idempotency_key.as_deref());
        // Nothing is created (neither the job nor its webhook Secret) for a job that
        // would be refused.
        admission::check_job(&job)?;
        let post = PostParams::default();
        let created = match self.jobs_api(tenant).create(&post, &job).await {
            Ok(created) => created,
            Err(err) if is_already_exists(&err) => {
                // The same key reached another replica (or this one) first; that request
                // makes the webhook Secret.
                let existing = self.load_job(tenant, &id).await?;
                return Ok((existing, false));
            }
            Err(err) => return Err(cluster_error(err, || ApiError::not_found("namespace"))),
        };
        if let Some(secret) = webhook_secret {
            let secret = objects::webhook_secret(&created, &secret);
            if let Err(err) = self.secrets_api(tenant).create(&post, &secret).await {
                let answer = if is_already_exists(&err) {
                    // The Secret of an earlier job of this id (same idempotency key) has
                    // not been collected yet; it cannot be read, so it is not reused.
                    ApiError::conflict(
                        "CONFLICT",
                        "the webhook secret of an earlier job with this id is still being removed; try again",
                    )
                } else {
                    cluster_error(err, || ApiError::not_found("namespace"))
                };
                self.delete_created_job(&created).await;
                return Err(answer);
            }
        }
        self.await_cached(&created).await;
        Ok((created, true))
    }

    /// Delete a job this request created, and only that one (by uid).
    async fn delete_created_job(&self, job: &RenderJob) {
        let (tenant, id) = (job.namespace().unwrap_or_default(), job.name_any());
        let params = DeleteParams {
            preconditions: Some(kube::api::Preconditions { uid: job.metadata.uid.clone(), resource_version: None }),
            ..DeleteParams::background()
        };
        if let Err(err) = self.jobs_api(&tenant).delete(&id, &params).await {
            tracing::warn!(error = %err, %tenant, %id, "could not delete the job whose webhook Secret was refused");
        }
    }
}

/// The job id of a request with an `Idempotency-Key` (or else an `externalId`):
/// derived from the tenant and the key, so that every replica of the API names the
/// job alike and the API server itself refuses a second one. Other jobs get a
/// time-ordered random id.
fn keyed_job_id(tenant: &str, new: &NewJob) -> Option<String> {
    let (kind, key) = match (&new.idempotency_key, &new.spec.external_id) {
        (Some(key), _) => ("idempotency-key", key),
        (None, Some(external_id)) => ("external-id", external_id),
        (None, None) => return None,
    };
    let digest = Sha256::digest(format!("{tenant}\n{kind}\n{key}").as_bytes());
    let bytes: [u8; 16] = digest[..16].try_into().ok()?;
    Some(uuid::Builder::from_custom_bytes(bytes).into_uuid().to_string())
}

impl Backend for ClusterBackend {
    async fn authenticate(&self, api_key: &str) -> Result<Option<String>, ApiError> {
        if !self.caches.keys.is_synced() {
            return Err(starting());
        }
        let (hash, now) = (crate::api_keys::hash(api_key), Timestamp::now());
        let matching = self.caches.keys.store().state_filter(|k| objects::key_matches(k, &hash, now));
        Ok(the_only("API key", matching).and_then(|k| k.namespace()))
    }

    async fn create_job(&self, tenant: &str, new: NewJob) -> Result<(JobView, bool), ApiError> {
        self.ensure_synced()?;
        let keyed = new.idempotency_key.is_some() || new.spec.external_id.is_some();
        let _guard = if keyed { Some(self.create_lock(tenant).lock().await) } else { None };
        if keyed {
            let (key, external_id) = (new.idempotency_key.as_deref(), new.spec.external_id.as_deref());
            if let Some(existing) =
                self.caches.jobs.store().find(|j| objects::is_duplicate(j, tenant, key, external_id))
            {
                return Ok((objects::job_view(RenderJob::clone(&existing)), false));
            }
        }
        let (job, created) = self.create_new_job(tenant, new).await?;
        Ok((objects::job_view(job), created))
    }

    async fn job(&self, tenant: &str, id: &str) -> Result<JobView, ApiError> {
        Ok(objects::job_view(self.load_job(tenant, id).await?))
    }

    async fn jobs(
        &self,
        tenant: &str,
        filter: JobFilter,
        limit: i64,
        offset: i64,
    ) -> Result<(Vec<JobView>, i64), ApiError> {
        self.ensure_synced()?;
        let jobs = self.caches.jobs.store().state_filter(|j| j.metadata.namespace.as_deref() == Some(tenant));
        Ok(objects::render_log(jobs, tenant, &filter, limit, offset))
    }

    async fn cancel_job(&self, tenant: &str, id: &str) -> Result<JobView, ApiError> {
        let job = self.load_job(tenant, id).await?;
        let phase = objects::phase(&job);
        if phase.is_terminal() {
            return Err(ApiError::already_finished(id, phase));
        }
        let patch = json!({"spec": {"cancel": true}});
        let patched = self
            .jobs_api(tenant)
            .patch(id, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map_err(|e| cluster_error(e, || ApiError::render_not_found(id)))?;
        // The operator ends the job; answer with its verdict when it comes quickly.
        let ended = self.settled_job(tenant, id, |j| objects::phase(j).is_terminal()).await;
        Ok(objects::job_view(ended.unwrap_or(patched)))
    }

    async fn resume_job(&self, tenant: &str, id: &str) -> Result<JobView, ApiError> {
        let job = self.load_job(tenant, id).await?;
        let phase = objects::phase(&job);
        if phase != Phase::Blocked {
            return Err(ApiError::not_blocked(id, phase));
        }
        objects::can_resume(&job, &self.cached_account(tenant))
            .map_err(|message| ApiError::conflict("INSUFFICIENT_CREDITS", message))?;
        let patch = json!({"metadata": {"annotations": {objects::RESUME_ANNOTATION: Timestamp::now().to_string()}}});
        let patched = self
            .jobs_api(tenant)
            .patch(id, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map_err(|e| cluster_error(e, || ApiError::render_not_found(id)))?;
        let settled = self.settled_job(tenant, id, |j| objects::phase(j) != Phase::Blocked).await;
        Ok(objects::job_view(settled.unwrap_or(patched)))
    }

    async fn delete_job(&self, tenant: &str, id: &str) -> Result<(), ApiError> {
        self.load_job(tenant, id).await?;
        self.jobs_api(tenant)
            .delete(id, &DeleteParams::background())
            .await
            .map_err(|e| cluster_error(e, || ApiError::render_not_found(id)))?;
        self.caches.jobs.wait_for_removal(self.settle, tenant, id).await;
        Ok(())
    }

    async fn output(&self, tenant: &str, id: &str) -> Result<Vec<u8>, ApiError> {
        let key = self.succeeded_output_key(tenant, id).await?;
        self.read_output(&key).await
    }

    async fn signed_url(&self, tenant: &str, id: &str, expires_at: Timestamp) -> Result<String, ApiError> {
        let key = self.succeeded_output_key(tenant, id).await?;
        let lifetime = Timestamp::now().duration_until(expires_at);
        match Duration::try_from(lifetime) {
            Ok(lifetime) if lifetime <= MAX_PRESIGNED_LIFETIME => {
                self.bucket.presigned_get(&key, lifetime).await.map_err(|err| {
                    tracing::error!(error = %err, key, "presigning a download");
                    ApiError::unavailable("the output storage is unavailable")
                })
            }
            // Longer than S3 allows: a URL folio signs and serves itself.
            _ => Ok(self.signer.download_url(&self.public_url, tenant, id, expires_at)),
        }
    }

    async fn signed_output(&self, tenant: &str, id: &str, expires: i64, signature: &str) -> Result<Vec<u8>, ApiError> {
        self.signer.verify(tenant, id, expires, signature, Timestamp::now()).map_err(ApiError::signature_refused)?;
        let key = self.succeeded_output_key(tenant, id).await?;
        self.read_output(&key).await
    }

    async fn create_share(&self, tenant: &str, id: &str, expires_at: Option<Timestamp>) -> Result<Share, ApiError> {
        let job = self.load_job(tenant, id).await?;
        output_key_of(&job)?;
        let token = new_share_token();
        let share = objects::share(&job, &token, expires_at);
        let created = self
            .shares_api(tenant)
            .create(&PostParams::default(), &share)
            .await
            .map_err(|e| cluster_error(e, || ApiError::render_not_found(id)))?;
        self.caches.shares.wait_for_write(self.settle, &created).await;
        let mut share =
            objects::share_of(&created).ok_or_else(|| ApiError::internal("a created share link reads back empty"))?;
        // The one time the token is known: the answer to this request.
        share.token = token;
        share.elided = false;
        Ok(share)
    }

    async fn shared_output(&self, token: &str) -> Result<Vec<u8>, ApiError> {
        let gone = || ApiError::not_found("share link");
        let cached = self.cached_share(token).ok_or_else(gone)?;
        let tenant = cached.namespace().ok_or_else(gone)?;
        let share = objects::share_of(&cached).ok_or_else(gone)?;
        if !objects::share_is_live(&share, Timestamp::now()) {
            return Err(gone());
        }
        let key = self.succeeded_output_key(&tenant, &share.job_id).await.map_err(|_| gone())?;
        self.read_output(&key).await
    }

    async fn shares(&self, tenant: &str) -> Result<Vec<Share>, ApiError> {
        self.ensure_synced()?;
        let mut shares: Vec<Share> = self
            .caches
            .shares
            .store()
            .state_filter(|s| s.metadata.namespace.as_deref() == Some(tenant))
            .iter()
            .filter_map(|s| objects::share_of(s))
            .collect();
        shares.sort_by(|a, b| b.created_at.cmp(&a.created_at).then_with(|| a.token.cmp(&b.token)));
        Ok(shares)
    }

    async fn revoke_share(&self, tenant: &str, token: &str) -> Result<(), ApiError> {
        let share = self.tenant_share(tenant, token).ok_or_else(|| ApiError::not_found("share link"))?;
        if share.spec.revoked_at.is_some() {
            return Ok(());
        }
        let name = share.name_any();
        let patch = json!({"spec": {"revokedAt": Timestamp::now()}});
        let patched = self
            .shares_api(tenant)
            .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map_err(|e| cluster_error(e, || ApiError::not_found("share link")))?;
        self.caches.shares.wait_for_write(self.settle, &patched).await;
        Ok(())
    }

    async fn templates(&self, tenant: &str) -> Result<Vec<TemplateView>, ApiError> {
        self.ensure_synced()?;
        let mut templates: Vec<RenderTemplate> = self
            .caches
            .templates
            .store()
            .state_filter(|t| t.metadata.namespace.as_deref() == Some(tenant) && objects::is_live(&t.metadata))
            .iter()
            .map(|t| RenderTemplate::clone(t))
            .collect();
        templates.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
        Ok(templates.into_iter().map(objects::template_view).collect())
    }

    async fn template(&self, tenant: &str, name: &str) -> Result<TemplateView, ApiError> {
        let template = match self.caches.templates.get(tenant, name) {
            Some(cached) => Some(RenderTemplate::clone(&cached)),
            None if !admission::is_object_name(name) => None,
            None => self
                .templates_api(tenant)
                .get_opt(name)
                .await
                .map_err(|e| cluster_error(e, || ApiError::template_not_found(name)))?,
        };
        template
            .filter(|t| objects::is_live(&t.metadata))
            .map(objects::template_view)
            .ok_or_else(|| ApiError::template_not_found(name))
    }

    async fn put_template(
        &self,
        tenant: &str,
        template: RenderTemplate,
        replace: bool,
    ) -> Result<(TemplateView, bool), ApiError> {
        let name = template.name_any();
        admission::check_template(&template)?;
        let api = self.templates_api(tenant);
        let not_found = || ApiError::not_found("namespace");
        let (written, created) = match api.create(&PostParams::default(), &template).await {
            Ok(created) => (created, true),
            Err(err) if is_already_exists(&err) && !replace => return Err(ApiError::template_exists(&name)),
            Err(err) if is_already_exists(&err) => {
                // Replace the spec, keeping the object's labels and annotations; retry
                // when someone else wrote it in between.
                let mut attempt = 0;
                loop {
                    let mut current = api.get(&name).await.map_err(|e| cluster_error(e, not_found))?;
                    current.spec = template.spec.clone();
                    match api.replace(&name, &PostParams::default(), &current).await {
                        Ok(replaced) => break (replaced, false),
                        Err(kube::Error::Api(status)) if status.is_conflict() && attempt < 3 => attempt += 1,
                        Err(err) => return Err(cluster_error(err, not_found)),
                    }
                }
            }
            Err(err) => return Err(cluster_error(err, not_found)),
        };
        self.caches.templates.wait_for_write(self.settle, &written).await;
        Ok((objects::template_view(written), created))
    }

    async fn delete_template(&self, tenant: &str, name: &str) -> Result<(), ApiError> {
        if !admission::is_object_name(name) {
            return Err(ApiError::template_not_found(name));
        }
        self.templates_api(tenant)
            .delete(name, &DeleteParams::background())
            .await
            .map_err(|e| cluster_error(e, || ApiError::template_not_found(name)))?;
        self.caches.templates.wait_for_removal(self.settle, tenant, name).await;
        Ok(())
    }

    async fn account(&self, tenant: &str) -> Result<RenderAccount, ApiError> {
        self.ensure_synced()?;
        Ok(self.cached_account(tenant))
    }

    async fn not_ready(&self) -> Option<String> {
        let missing = self.caches.not_synced();
        (!missing.is_empty()).then(|| format!("waiting for the cluster caches to fill: {}", missing.join(", ")))
    }

    async fn job_counts(&self) -> Result<Vec<(Phase, i64)>, ApiError> {
        let mut counts = std::collections::HashMap::<Phase, i64>::new();
        for job in self.caches.jobs.store().state() {
            if objects::is_live(&job.metadata) {
                *counts.entry(objects::phase(&job)).or_default() += 1;
            }
        }
        Ok(counts.into_iter().collect())
    }
}
