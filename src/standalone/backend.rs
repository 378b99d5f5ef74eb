//! The standalone home's side of the REST facade: each call of the port is a read or
//! one transaction of the database, plus the output folder for PDFs.

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};

use super::Standalone;
use super::settle;
use super::store::{self, JobRecord, ShareRecord, StoreError};
use super::templates::template_view;
use crate::assets::AssetInfo;
use crate::lifecycle::Phase;
use crate::port::{
    Backend, HomeError, JobFilter, JobView, NewJob, Object, Share, TemplateVersion, TemplateView, new_job_id,
    new_share_token,
};
use crate::resources::{RenderAccount, RenderJob, RenderJobStatus, RenderTemplate};

/// A store that fails is an outage to the client; what failed is for the log.
impl From<StoreError> for HomeError {
    fn from(err: StoreError) -> Self {
        tracing::error!(error = %err, "store error");
        HomeError::Unavailable("the job store is unavailable; try again".to_owned())
    }
}

impl Standalone {
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

    /// `tenant`'s job `id`; another tenant's is not found, like a missing one.
    fn load(&self, tenant: &str, id: &str) -> Result<JobRecord, HomeError> {
        self.store.read(|c| store::load_job(c, Some(tenant), id))?.ok_or_else(|| HomeError::render_not_found(id))
    }

    /// The storage key of a succeeded job's PDF.
    fn succeeded_output_key(&self, tenant: &str, id: &str) -> Result<String, HomeError> {
        crate::port::stored_output_key(&self.load(tenant, id)?.job, id)
    }

    /// Read a PDF off the async threads (it may be large).
    async fn read_output(&self, key: &str) -> Result<Vec<u8>, HomeError> {
        let (outputs, owned_key) = (self.outputs.clone(), key.to_owned());
        tokio::task::spawn_blocking(move || outputs.get(&owned_key))
            .await
            .map_err(HomeError::internal)?
            .map_err(|err| {
                tracing::error!(error = %err, key, "reading an output");
                HomeError::Unavailable("the output storage is unavailable".to_owned())
            })?
            .ok_or_else(|| HomeError::not_found(Object::Output))
    }
}

impl Backend for Standalone {
    async fn authenticate(&self, api_key: &str) -> Result<Option<String>, HomeError> {
        let hash = crate::api_keys::hash(api_key);
        Ok(self.store.read(|c| store::tenant_of_key(c, &hash))?)
    }

    async fn create_job(&self, tenant: &str, new: NewJob) -> Result<(JobView, bool), HomeError> {
        // Stored to the millisecond; answer with what is stored.
        let now = crate::lifecycle::now_ms();
        let (record, created) = self.store.write(|tx| {
            let external_id = new.spec.external_id.as_deref();
            let key = new.idempotency_key.as_deref();
            if let Some(existing) = store::find_duplicate(tx, tenant, key, external_id, now)? {
                return Ok((existing, false));
            }
            if let Some(key) = key {
                store::forget_idempotency_key(tx, tenant, key)?;
            }
            let id = new_job_id();
            let mut job = RenderJob {
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
            crate::port::annotate_request(&mut job, new.idempotency_key.as_deref(), new.request_digest.as_deref());
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

    async fn job(&self, tenant: &str, id: &str) -> Result<JobView, HomeError> {
        Ok(self.job_view(self.load(tenant, id)?)?)
    }

    async fn jobs(
        &self,
        tenant: &str,
        filter: JobFilter,
        limit: i64,
        offset: i64,
    ) -> Result<(Vec<JobView>, i64), HomeError> {
        let (records, total) = self.store.read(|c| store::list_jobs(c, tenant, &filter, limit, offset))?;
        let views = records.into_iter().map(|r| self.job_view(r)).collect::<Result<Vec<_>, _>>()?;
        Ok((views, total))
    }

    async fn cancel_job(&self, tenant: &str, id: &str) -> Result<JobView, HomeError> {
        let now = Timestamp::now();
        let (record, decision) = self.store.write(|tx| {
            let Some(mut record) = store::load_job(tx, Some(tenant), id)? else {
                return Ok(Err(HomeError::render_not_found(id)));
            };
            Ok(match settle::cancel(tx, &mut record, now)? {
                Ok(decision) => Ok((record, decision)),
                Err(refused) => Err(HomeError::AlreadyFinished { id: id.to_owned(), phase: refused.from }),
            })
        })??;
        self.after_commit(&record, &decision);
        Ok(self.job_view(record)?)
    }

    async fn resume_job(&self, tenant: &str, id: &str) -> Result<JobView, HomeError> {
        let record = self.load(tenant, id)?;
        if record.phase() != Phase::Blocked {
            return Err(HomeError::NotBlocked { id: id.to_owned(), phase: record.phase() });
        }
        self.settle_one(tenant, id)?;
        let record = self.load(tenant, id)?;
        if record.phase() == Phase::Blocked {
            let message = record.job.status.and_then(|s| s.error_message).unwrap_or_default();
            return Err(HomeError::InsufficientCredits(message));
        }
        Ok(self.job_view(record)?)
    }

    async fn delete_job(&self, tenant: &str, id: &str) -> Result<(), HomeError> {
        let record = self.store.write(|tx| {
            let record = store::load_job(tx, Some(tenant), id)?;
            if record.is_some() {
                store::delete_job(tx, id)?;
            }
            Ok(record)
        })?;
        let record = record.ok_or_else(|| HomeError::render_not_found(id))?;
        self.forget_output(&record);
        Ok(())
    }

    async fn output(&self, tenant: &str, id: &str) -> Result<Vec<u8>, HomeError> {
        let key = self.succeeded_output_key(tenant, id)?;
        self.read_output(&key).await
    }

    async fn signed_url(&self, tenant: &str, id: &str, expires_at: Timestamp) -> Result<String, HomeError> {
        let job = self.load(tenant, id)?.job;
        crate::port::stored_output_key(&job, id)?;
        Ok(self.signed_download_url(tenant, id, job.spec.output, expires_at))
    }

    async fn signed_output(&self, tenant: &str, id: &str, expires: i64, signature: &str) -> Result<Vec<u8>, HomeError> {
        self.signer.verify(tenant, id, expires, signature, Timestamp::now())?;
        let key = self.succeeded_output_key(tenant, id)?;
        self.read_output(&key).await
    }

    async fn create_share(&self, tenant: &str, id: &str, expires_at: Option<Timestamp>) -> Result<Share, HomeError> {
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

    async fn shared_output(&self, token: &str) -> Result<Vec<u8>, HomeError> {
        let gone = || HomeError::not_found(Object::ShareLink);
        let share = self.store.read(|c| store::load_share(c, token))?.ok_or_else(gone)?;
        if share.revoked_at.is_some() || share.expires_at.is_some_and(|e| e <= Timestamp::now()) {
            return Err(gone());
        }
        let key = self.succeeded_output_key(&share.tenant, &share.job_id).map_err(|_| gone())?;
        self.read_output(&key).await
    }

    async fn shares(&self, tenant: &str) -> Result<Vec<Share>, HomeError> {
        Ok(self.store.read(|c| store::list_shares(c, tenant))?.into_iter().map(share_of).collect())
    }

    async fn revoke_share(&self, tenant: &str, token: &str) -> Result<(), HomeError> {
        if self.store.write(|tx| store::revoke_share(tx, tenant, token, Timestamp::now()))? {
            Ok(())
        } else {
            Err(HomeError::not_found(Object::ShareLink))
        }
    }

    async fn templates(&self, tenant: &str) -> Result<Vec<TemplateView>, HomeError> {
        Ok(self.store.read(|c| store::list_templates(c, tenant))?.into_iter().map(template_view).collect())
    }

    async fn template_version(&self, tenant: &str, name: &str, version: i64) -> Result<TemplateView, HomeError> {
        self.template_version_view(tenant, name, version)
    }

    async fn template_versions(&self, tenant: &str, name: &str) -> Result<Vec<TemplateVersion>, HomeError> {
        self.versions_of(tenant, name)
    }

    async fn restore_template(&self, tenant: &str, name: &str, version: i64) -> Result<TemplateView, HomeError> {
        self.restore_version(tenant, name, version)
    }

    async fn put_asset(
        &self,
        tenant: &str,
        name: &str,
        file: &str,
        bytes: Vec<u8>,
    ) -> Result<(AssetInfo, bool), HomeError> {
        self.store_asset(tenant, name, file, bytes)
    }

    async fn assets(&self, tenant: &str, name: &str) -> Result<Vec<AssetInfo>, HomeError> {
        self.asset_infos(tenant, name)
    }

    async fn asset(&self, tenant: &str, name: &str, file: &str) -> Result<(AssetInfo, Vec<u8>), HomeError> {
        self.asset_bytes(tenant, name, file)
    }

    async fn delete_asset(&self, tenant: &str, name: &str, file: &str) -> Result<(), HomeError> {
        self.remove_asset(tenant, name, file)
    }

    async fn template(&self, tenant: &str, name: &str) -> Result<TemplateView, HomeError> {
        self.store
            .read(|c| store::load_template(c, tenant, name))?
            .map(template_view)
            .ok_or_else(|| HomeError::template_not_found(name))
    }

    async fn put_template(
        &self,
        tenant: &str,
        template: RenderTemplate,
        replace: bool,
    ) -> Result<(TemplateView, bool), HomeError> {
        let name = template.metadata.name.clone().unwrap_or_default();
        let now = Timestamp::now();
        let created = if replace {
            self.store.write(|tx| {
                // The template's files stay: they change through their own endpoints.
                let mut template = template.clone();
                if let Some(current) = store::load_template(tx, tenant, &name)? {
                    template.spec.assets = current.template.spec.assets;
                }
                Ok(store::save_template(tx, &template, now)?.1)
            })?
        } else if self.store.write(|tx| store::create_template(tx, &template, now))? {
            true
        } else {
            return Err(HomeError::TemplateExists(name));
        };
        Ok((self.template(tenant, &name).await?, created))
    }

    async fn delete_template(&self, tenant: &str, name: &str) -> Result<(), HomeError> {
        if self.store.write(|tx| store::delete_template(tx, tenant, name))? {
            Ok(())
        } else {
            Err(HomeError::template_not_found(name))
        }
    }

    async fn account(&self, tenant: &str) -> Result<RenderAccount, HomeError> {
        Ok(self.store.read(|c| super::accounts::account_now(c, tenant))?)
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

    async fn job_counts(&self) -> Result<Vec<(Phase, i64)>, HomeError> {
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
