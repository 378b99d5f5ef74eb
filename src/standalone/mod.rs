//! The standalone home (the embedded default): the REST API over an embedded SQLite
//! database, an in-process worker pool and a local output folder. No cluster, no
//! object store; the same resources, rules and engine as the cluster home.
//!
//! - [`store`]: the database.
//! - [`worker`]: claims queued jobs, renders them, settles charges.
//! - this module: the [`Backend`] the REST facade calls, and `folio serve`.

pub mod args;
mod settle;
pub mod store;
mod webhooks;
mod worker;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use rand::RngCore;
use tokio::sync::{Notify, watch};

use crate::http::error::ApiError;
use crate::http::{AppState, app};
use crate::lifecycle::{Event, Phase};
use crate::manifest::{DEFAULT_NAMESPACE, Manifests};
use crate::metrics::Metrics;
use crate::port::{Backend, JobFilter, JobView, NewJob, Share, TemplateView, new_job_id, new_share_token};
use crate::render::pool::{PoolConfig, RenderPool};
use crate::resources::{
    RenderAccount, RenderAccountStatus, RenderJob, RenderJobStatus, RenderTemplate, default_account,
};
use crate::signing::UrlSigner;
use crate::storage::{LocalFolder, output_key};
use settle::end_job;
use store::{JobRecord, ShareRecord, Store, StoreError};

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        tracing::error!(error = %err, "store error");
        ApiError::unavailable("the job store is unavailable; try again")
    }
}

/// The standalone home's state, shared by the API, the workers and the sweeper.
pub struct Standalone {
    store: Arc<Store>,
    outputs: LocalFolder,
    signer: UrlSigner,
    public_url: String,
    wake: Notify,
    metrics: Arc<Metrics>,
}

const SIGNING_KEY_SETTING: &str = "url-signing-key";

impl Standalone {
    /// Open the data folder: the database `folio.db` and the outputs folder.
    pub fn open(data_dir: &Path, public_url: String, metrics: Arc<Metrics>) -> anyhow::Result<Standalone> {
        std::fs::create_dir_all(data_dir).with_context(|| format!("creating {}", data_dir.display()))?;
        let store = Store::open(&data_dir.join("folio.db")).context("opening the database")?;
        let outputs = LocalFolder::new(data_dir.join("outputs")).context("opening the outputs folder")?;
        let secret = store.write(|tx| {
            store::setting_or_insert(tx, SIGNING_KEY_SETTING, || {
                let mut key = vec![0u8; 32];
                rand::rng().fill_bytes(&mut key);
                key
            })
        })?;
        Ok(Standalone {
            store: Arc::new(store),
            outputs,
            signer: UrlSigner::new(secret),
            public_url,
            wake: Notify::new(),
            metrics,
        })
    }

    /// The database.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Apply RenderTemplates and RenderAccounts (namespace = tenant). An account keeps
    /// what it has spent; jobs it blocked are settled if the new grant covers them.
    pub fn apply(&self, manifests: &Manifests) -> anyhow::Result<()> {
        let now = Timestamp::now();
        self.store.write(|tx| {
            for template in &manifests.templates {
                store::save_template(tx, template, now)?;
            }
            for secret in &manifests.secrets {
                let tenant = secret.metadata.namespace.as_deref().unwrap_or(DEFAULT_NAMESPACE);
                let mut values = std::collections::BTreeMap::new();
                for (key, bytes) in secret.data.iter().flatten() {
                    values.insert(key.clone(), String::from_utf8_lossy(&bytes.0).into_owned());
                }
                for (key, text) in secret.string_data.iter().flatten() {
                    values.insert(key.clone(), text.clone());
                }
                let name = secret.metadata.name.as_deref().unwrap_or_default();
                store::save_secret(tx, tenant, name, &values)?;
            }
            for account in &manifests.accounts {
                let tenant = account.metadata.namespace.as_deref().unwrap_or(DEFAULT_NAMESPACE);
                let spent = store::load_account(tx, tenant)?.and_then(|a| a.status).map_or(0, |s| s.credits_used);
                let mut account = account.clone();
                account.metadata.namespace = Some(tenant.to_owned());
                account.status = Some(RenderAccountStatus { credits_used: spent, ..Default::default() });
                store::save_account(tx, &account)?;
            }
            Ok(())
        })?;
        if !manifests.jobs.is_empty() {
            tracing::warn!(
                count = manifests.jobs.len(),
                "serve -f applies RenderTemplates and RenderAccounts; RenderJobs are submitted with POST /v1/renders (or rendered with folio run)"
            );
        }
        for account in &manifests.accounts {
            self.settle_blocked(account.metadata.namespace.as_deref().unwrap_or(DEFAULT_NAMESPACE))?;
        }
        Ok(())
    }

    /// The API view of a stored job, with its webhook delivery state.
    fn job_view(&self, record: JobRecord) -> Result<JobView, StoreError> {
        let mut job = record.job;
        let id = job.metadata.name.clone().unwrap_or_default();
        let delivery = self.store.read(|c| store::delivery_status(c, &id))?;
        if let Some(status) = job.status.as_mut() {
            status.webhook = delivery;
        }
        Ok(JobView { job, created_at: record.created_at, updated_at: record.updated_at })
    }

    /// A download URL for a job's PDF that works without an API key until `expires_at`.
    pub fn signed_download_url(&self, tenant: &str, id: &str, expires_at: Timestamp) -> String {
        self.signer.download_url(&self.public_url, tenant, id, expires_at)
    }

    fn load(&self, tenant: &str, id: &str) -> Result<JobRecord, ApiError> {
        self.store.read(|c| store::load_job(c, Some(tenant), id))?.ok_or_else(|| ApiError::render_not_found(id))
    }

    fn succeeded_output_key(&self, tenant: &str, id: &str) -> Result<String, ApiError> {
        let record = self.load(tenant, id)?;
        let status = record.job.status.clone().unwrap_or_default();
        match (record.phase(), status.output_key) {
            (Phase::Succeeded, Some(key)) => Ok(key),
            (phase, _) => Err(ApiError::output_not_ready(id, phase)),
        }
    }

    /// Read a PDF off the async threads (it may be large).
    async fn read_output(&self, key: &str) -> Result<Vec<u8>, ApiError> {
        let (outputs, owned_key) = (self.outputs.clone(), key.to_owned());
        tokio::task::spawn_blocking(move || outputs.get(&owned_key))
            .await
            .map_err(ApiError::internal)?
            .map_err(|err| {
                tracing::error!(error = %err, key, "reading an output");
                ApiError::unavailable("the output storage is unavailable")
            })?
            .ok_or_else(|| ApiError::not_found("output"))
    }

    /// Delete the stored output of `record`, logging (not failing) on errors: the row
    /// is gone already and the sweeper cannot find the file again.
    fn forget_output(&self, record: &JobRecord) {
        let key = output_key(record.tenant(), record.id());
        if let Err(err) = self.outputs.delete(&key) {
            tracing::warn!(error = %err, key, "could not delete an output");
        }
    }
}

impl Backend for Standalone {
    async fn authenticate(&self, api_key: &str) -> Result<Option<String>, ApiError> {
        let hash = crate::api_keys::hash(api_key);
        Ok(self.store.read(|c| store::tenant_of_key(c, &hash))?)
    }

    async fn create_job(&self, tenant: &str, new: NewJob) -> Result<(JobView, bool), ApiError> {
        // Stored to the millisecond; answer with what is stored.
        let now = Timestamp::from_millisecond(Timestamp::now().as_millisecond()).unwrap_or_else(|_| Timestamp::now());
        let (record, created) = self.store.write(|tx| {
            let external_id = new.spec.external_id.as_deref();
            if let Some(existing) = store::find_duplicate(tx, tenant, new.idempotency_key.as_deref(), external_id)? {
                return Ok((existing, false));
            }
            let id = new_job_id();
            let job = RenderJob {
                metadata: ObjectMeta {
                    name: Some(id.clone()),
                    namespace: Some(tenant.to_owned()),
                    uid: Some(id),
                    generation: Some(1),
                    creation_timestamp: Some(Time(now)),
                    ..Default::default()
                },
                spec: new.spec.clone(),
                status: Some(RenderJobStatus { phase: Some(Phase::Queued), ..Default::default() }),
            };
            let record = JobRecord {
                job,
                created_at: now,
                updated_at: now,
                claimed_by: None,
                idempotency_key: new.idempotency_key.clone(),
                webhook_secret: new.webhook_secret.clone(),
            };
            store::save_job(tx, &record)?;
            Ok((record, true))
        })?;
        if created {
            self.wake.notify_one();
        }
        Ok((self.job_view(record)?, created))
    }

    async fn job(&self, tenant: &str, id: &str) -> Result<JobView, ApiError> {
        Ok(self.job_view(self.load(tenant, id)?)?)
    }

    async fn jobs(
        &self,
        tenant: &str,
        filter: JobFilter,
        limit: i64,
        offset: i64,
    ) -> Result<(Vec<JobView>, i64), ApiError> {
        let (records, total) = self.store.read(|c| store::list_jobs(c, tenant, &filter, limit, offset))?;
        let views = records.into_iter().map(|r| self.job_view(r)).collect::<Result<Vec<_>, _>>()?;
        Ok((views, total))
    }

    async fn cancel_job(&self, tenant: &str, id: &str) -> Result<JobView, ApiError> {
        let now = Timestamp::now();
        let record = self.store.write(|tx| {
            let Some(mut record) = store::load_job(tx, Some(tenant), id)? else {
                return Ok(Err(ApiError::render_not_found(id)));
            };
            let phase = record.phase();
            if phase.is_terminal() {
                return Ok(Err(ApiError::already_finished(id, phase)));
            }
            end_job(tx, &mut record, Event::Cancel, None, now)?;
            Ok(Ok((record, phase)))
        })??;
        let (record, previous) = record;
        if previous == Phase::Blocked {
            self.forget_output(&record);
        }
        self.metrics.job_finished(Phase::Cancelled);
        Ok(self.job_view(record)?)
    }

    async fn resume_job(&self, tenant: &str, id: &str) -> Result<JobView, ApiError> {
        let record = self.load(tenant, id)?;
        if record.phase() != Phase::Blocked {
            return Err(ApiError::not_blocked(id, record.phase()));
        }
        self.settle_one(tenant, id)?;
        let record = self.load(tenant, id)?;
        if record.phase() == Phase::Blocked {
            let message = record.job.status.and_then(|s| s.error_message).unwrap_or_default();
            return Err(ApiError::conflict("INSUFFICIENT_CREDITS", message));
        }
        Ok(self.job_view(record)?)
    }

    async fn delete_job(&self, tenant: &str, id: &str) -> Result<(), ApiError> {
        let record = self.store.write(|tx| {
            let record = store::load_job(tx, Some(tenant), id)?;
            if record.is_some() {
                store::delete_job(tx, id)?;
            }
            Ok(record)
        })?;
        let record = record.ok_or_else(|| ApiError::render_not_found(id))?;
        self.forget_output(&record);
        Ok(())
    }

    async fn output(&self, tenant: &str, id: &str) -> Result<Vec<u8>, ApiError> {
        let key = self.succeeded_output_key(tenant, id)?;
        self.read_output(&key).await
    }

    async fn signed_url(&self, tenant: &str, id: &str, expires_at: Timestamp) -> Result<String, ApiError> {
        self.succeeded_output_key(tenant, id)?;
        Ok(self.signed_download_url(tenant, id, expires_at))
    }

    async fn signed_output(&self, tenant: &str, id: &str, expires: i64, signature: &str) -> Result<Vec<u8>, ApiError> {
        self.signer.verify(tenant, id, expires, signature, Timestamp::now()).map_err(ApiError::signature_refused)?;
        let key = self.succeeded_output_key(tenant, id)?;
        self.read_output(&key).await
    }

    async fn create_share(&self, tenant: &str, id: &str, expires_at: Option<Timestamp>) -> Result<Share, ApiError> {
        self.succeeded_output_key(tenant, id)?;
        let share = ShareRecord {
            token: new_share_token(),
            tenant: tenant.to_owned(),
            job_id: id.to_owned(),
            created_at: Timestamp::now(),
            expires_at,
            revoked_at: None,
        };
        self.store.write(|tx| store::insert_share(tx, &share))?;
        Ok(share_of(share))
    }

    async fn shared_output(&self, token: &str) -> Result<Vec<u8>, ApiError> {
        let gone = || ApiError::not_found("share link");
        let share = self.store.read(|c| store::load_share(c, token))?.ok_or_else(gone)?;
        if share.revoked_at.is_some() || share.expires_at.is_some_and(|e| e <= Timestamp::now()) {
            return Err(gone());
        }
        let key = self.succeeded_output_key(&share.tenant, &share.job_id).map_err(|_| gone())?;
        self.read_output(&key).await
    }

    async fn shares(&self, tenant: &str) -> Result<Vec<Share>, ApiError> {
        Ok(self.store.read(|c| store::list_shares(c, tenant))?.into_iter().map(share_of).collect())
    }

    async fn revoke_share(&self, tenant: &str, token: &str) -> Result<(), ApiError> {
        if self.store.write(|tx| store::revoke_share(tx, tenant, token, Timestamp::now()))? {
            Ok(())
        } else {
            Err(ApiError::not_found("share link"))
        }
    }

    async fn templates(&self, tenant: &str) -> Result<Vec<TemplateView>, ApiError> {
        Ok(self.store.read(|c| store::list_templates(c, tenant))?.into_iter().map(template_view).collect())
    }

    async fn template(&self, tenant: &str, name: &str) -> Result<TemplateView, ApiError> {
        self.store
            .read(|c| store::load_template(c, tenant, name))?
            .map(template_view)
            .ok_or_else(|| ApiError::template_not_found(name))
    }

    async fn put_template(
        &self,
        tenant: &str,
        template: RenderTemplate,
        replace: bool,
    ) -> Result<(TemplateView, bool), ApiError> {
        let name = template.metadata.name.clone().unwrap_or_default();
        let now = Timestamp::now();
        let created = if replace {
            self.store.write(|tx| store::save_template(tx, &template, now))?
        } else if self.store.write(|tx| store::create_template(tx, &template, now))? {
            true
        } else {
            return Err(ApiError::template_exists(&name));
        };
        Ok((self.template(tenant, &name).await?, created))
    }

    async fn delete_template(&self, tenant: &str, name: &str) -> Result<(), ApiError> {
        if self.store.write(|tx| store::delete_template(tx, tenant, name))? {
            Ok(())
        } else {
            Err(ApiError::not_found(&format!("template {name:?}")))
        }
    }

    async fn account(&self, tenant: &str) -> Result<RenderAccount, ApiError> {
        let (account, blocked) = self.store.read(|c| {
            let account = store::load_account(c, tenant)?;
            let filter = JobFilter { phase: Some(Phase::Blocked), ..Default::default() };
            let (_, blocked) = store::list_jobs(c, tenant, &filter, 0, 0)?;
            Ok((account, blocked))
        })?;
        let mut account = account.unwrap_or_else(|| default_account(tenant));
        let status = account.status.get_or_insert_with(Default::default);
        status.blocked_jobs = blocked;
        status.credits_remaining = account.spec.credits.map(|c| c - status.credits_used);
        Ok(account)
    }

    async fn not_ready(&self) -> Option<String> {
        if !self.store.is_healthy() {
            return Some("the job store does not answer".to_owned());
        }
        if !self.outputs.is_writable() {
            return Some("the output folder is not writable".to_owned());
        }
        None
    }

    async fn job_counts(&self) -> Result<Vec<(Phase, i64)>, ApiError> {
        let counts = self.store.read(store::count_by_phase)?;
        Ok(counts.into_iter().filter_map(|(name, n)| Phase::from_api_name(&name).map(|p| (p, n))).collect())
    }
}

fn share_of(share: ShareRecord) -> Share {
    Share {
        token: share.token,
        elided: false,
        job_id: share.job_id,
        created_at: share.created_at,
        expires_at: share.expires_at,
        revoked_at: share.revoked_at,
    }
}

fn template_view((template, created_at, updated_at): (RenderTemplate, Timestamp, Timestamp)) -> TemplateView {
    TemplateView { template, created_at, updated_at }
}

/// How `folio serve` runs.
#[derive(Clone, Debug)]
pub struct ServeOptions {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Folder of the database and outputs.
    pub data_dir: PathBuf,
    /// Manifests applied at start.
    pub files: Vec<PathBuf>,
    /// The URL clients use to reach the server (default: `http://<listen>`).
    pub public_url: Option<String>,
    /// The render worker pool.
    pub pool: PoolConfig,
    /// Time limit of one render attempt.
    pub render_timeout: Duration,
    /// How often expired jobs are swept.
    pub sweep_interval: Duration,
    /// How long in-flight renders may finish after a shutdown signal.
    pub shutdown_grace: Duration,
    /// Allow webhook targets on loopback and private addresses.
    pub allow_private_targets: bool,
    /// Time limit of one webhook attempt.
    pub webhook_timeout: Duration,
    /// How webhook deliveries are retried.
    pub webhook_retry: crate::webhooks::RetryPolicy,
    /// Requests per second per tenant (none: unlimited).
    pub rate_limit: Option<std::num::NonZeroU32>,
}

/// Run `folio serve` until SIGTERM or Ctrl-C.
pub async fn serve(options: ServeOptions) -> anyhow::Result<()> {
    let manifests = Manifests::load(&options.files)?;
    let listener = tokio::net::TcpListener::bind(options.listen)
        .await
        .with_context(|| format!("listening on {}", options.listen))?;
    let address = listener.local_addr()?;
    let public_url =
        options.public_url.clone().unwrap_or_else(|| format!("http://{address}")).trim_end_matches('/').to_owned();
    let metrics = Arc::new(Metrics::new());
    let home = Arc::new(Standalone::open(&options.data_dir, public_url.clone(), metrics.clone())?);
    let recovered = home.store.write(|tx| store::release_all_claims(tx))?;
    if recovered > 0 {
        tracing::info!(jobs = recovered, "jobs that were rendering when folio stopped go back to the queue");
    }
    home.apply(&manifests)?;

    let pool = Arc::new(RenderPool::new(options.pool.clone()));
    pool.warm_up().await.context("starting render workers")?;

    let (stop_tx, stop_rx) = watch::channel(false);
    let mut tasks = Vec::new();
    for _ in 0..pool.size() {
        tasks.push(tokio::spawn(worker::run(home.clone(), pool.clone(), options.render_timeout, stop_rx.clone())));
    }
    let sweeper = tokio::spawn(worker::sweep(home.clone(), options.sweep_interval, stop_rx.clone()));
    let policy = crate::webhooks::TargetPolicy::new(options.allow_private_targets);
    let sender =
        crate::webhooks::Sender::new(policy, options.webhook_timeout).context("building the webhook client")?;
    let deliveries = tokio::spawn(webhooks::deliver(home.clone(), sender, options.webhook_retry, stop_rx.clone()));

    let state = AppState {
        backend: home.clone(),
        public_url: public_url.clone(),
        metrics,
        rate_limit: options.rate_limit.map(crate::http::tenant_rate_limiter),
    };
    // The address line is what scripts and tests wait for.
    println!("folio serving on {public_url} (data in {})", options.data_dir.display());
    tracing::info!(%address, "serving");
    axum::serve(listener, app(state)).with_graceful_shutdown(crate::shutdown_signal()).await?;

    tracing::info!("shutting down: finishing renders in flight");
    let _ = stop_tx.send(true);
    home.wake.notify_waiters();
    let joined = tokio::time::timeout(options.shutdown_grace, futures_join(tasks)).await;
    if joined.is_err() {
        tracing::warn!("renders still in flight after the grace period go back to the queue");
    }
    sweeper.abort();
    deliveries.abort();
    home.store.write(|tx| store::release_all_claims(tx))?;
    Ok(())
}

async fn futures_join(tasks: Vec<tokio::task::JoinHandle<()>>) {
    for task in tasks {
        let _ = task.await;
    }
}

/// `folio keys create`: a new key for `tenant`, printed once.
pub fn create_key(data_dir: &Path, tenant: &str) -> anyhow::Result<(String, String)> {
    if !crate::http::is_tenant_name(tenant) {
        anyhow::bail!(
            "--tenant {tenant:?} must be 1 to 63 lowercase letters, digits or '-' (a Kubernetes namespace name)"
        );
    }
    std::fs::create_dir_all(data_dir)?;
    let store = Store::open(&data_dir.join("folio.db"))?;
    let key = crate::api_keys::generate();
    let id = format!("key_{}", uuid::Uuid::now_v7().simple());
    store.write(|tx| store::insert_key(tx, &id, tenant, &key.hash, &key.prefix, Timestamp::now()))?;
    Ok((id, key.plaintext))
}

/// `folio keys list`.
pub fn list_keys(data_dir: &Path, tenant: Option<&str>) -> anyhow::Result<Vec<store::KeyRecord>> {
    let store = Store::open(&data_dir.join("folio.db"))?;
    Ok(store.read(|c| store::list_keys(c, tenant))?)
}

/// `folio keys revoke`: returns whether a live key was revoked.
pub fn revoke_key(data_dir: &Path, id: &str) -> anyhow::Result<bool> {
    let store = Store::open(&data_dir.join("folio.db"))?;
    Ok(store.write(|tx| store::revoke_key(tx, id, Timestamp::now()))?)
}
