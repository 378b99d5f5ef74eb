//! The cluster home's side of the REST facade: each operation of the port as reads from
//! the caches and writes to the apiserver.

use std::time::Duration;

use jiff::Timestamp;
use kube::ResourceExt;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use serde_json::json;

use super::errors::{cluster_error, is_already_exists, starting};
use super::{ClusterBackend, admission, objects, the_only};
use crate::assets::AssetInfo;
use crate::lifecycle::Phase;
use crate::port::{
    Backend, HomeError, JobFilter, JobView, NewJob, Object, Share, TemplateVersion, TemplateView, new_share_token,
};
use crate::resources::{RenderAccount, RenderJob, RenderTemplate};
use crate::storage::MAX_PRESIGNED_LIFETIME;

impl Backend for ClusterBackend {
    async fn authenticate(&self, api_key: &str) -> Result<Option<String>, HomeError> {
        if !self.caches.keys.is_synced() {
            return Err(starting());
        }
        let (hash, now) = (crate::api_keys::hash(api_key), Timestamp::now());
        let matching = self.caches.keys.store().state_filter(|k| objects::key_matches(k, &hash, now));
        Ok(the_only("API key", matching).and_then(|k| k.namespace()))
    }

    async fn create_job(&self, tenant: &str, new: NewJob) -> Result<(JobView, bool), HomeError> {
        self.ensure_synced()?;
        let keyed = new.idempotency_key.is_some() || new.spec.external_id.is_some();
        let _guard = if keyed { Some(self.create_lock(tenant).lock().await) } else { None };
        if keyed {
            let (key, external_id) = (new.idempotency_key.as_deref(), new.spec.external_id.as_deref());
            let now = Timestamp::now();
            if let Some(existing) =
                self.caches.jobs.store().find(|j| objects::is_duplicate(j, tenant, key, external_id, now))
            {
                return Ok((objects::job_view(RenderJob::clone(&existing)), false));
            }
        }
        if let Some(pinned) = &new.spec.template_ref
            && let Some(version) = pinned.version
        {
            self.keep_pinned_version(tenant, &pinned.name, version).await?;
        }
        let (job, created) = self.create_new_job(tenant, new).await?;
        Ok((objects::job_view(job), created))
    }

    async fn job(&self, tenant: &str, id: &str) -> Result<JobView, HomeError> {
        Ok(objects::job_view(self.load_job(tenant, id).await?))
    }

    async fn jobs(
        &self,
        tenant: &str,
        filter: JobFilter,
        limit: i64,
        offset: i64,
    ) -> Result<(Vec<JobView>, i64), HomeError> {
        self.ensure_synced()?;
        let jobs = self.caches.jobs.store().state_filter(|j| j.metadata.namespace.as_deref() == Some(tenant));
        Ok(objects::render_log(jobs, tenant, &filter, limit, offset))
    }

    async fn cancel_job(&self, tenant: &str, id: &str) -> Result<JobView, HomeError> {
        let job = self.load_job(tenant, id).await?;
        let phase = objects::phase(&job);
        if phase.is_terminal() {
            return Err(HomeError::AlreadyFinished { id: id.to_owned(), phase });
        }
        let patch = json!({"spec": {"cancel": true}});
        let patched = self
            .jobs_api(tenant)
            .patch(id, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map_err(|e| cluster_error(e, || HomeError::render_not_found(id)))?;
        // The operator ends the job; answer with its verdict when it comes quickly.
        let ended = self.settled_job(tenant, id, |j| objects::phase(j).is_terminal()).await;
        Ok(objects::job_view(ended.unwrap_or(patched)))
    }

    async fn resume_job(&self, tenant: &str, id: &str) -> Result<JobView, HomeError> {
        let job = self.load_job(tenant, id).await?;
        let phase = objects::phase(&job);
        if phase != Phase::Blocked {
            return Err(HomeError::NotBlocked { id: id.to_owned(), phase });
        }
        objects::can_resume(&job, &self.cached_account(tenant)).map_err(HomeError::InsufficientCredits)?;
        let patch = json!({"metadata": {"annotations": {objects::RESUME_ANNOTATION: Timestamp::now().to_string()}}});
        let patched = self
            .jobs_api(tenant)
            .patch(id, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map_err(|e| cluster_error(e, || HomeError::render_not_found(id)))?;
        let settled = self.settled_job(tenant, id, |j| objects::phase(j) != Phase::Blocked).await;
        Ok(objects::job_view(settled.unwrap_or(patched)))
    }

    async fn delete_job(&self, tenant: &str, id: &str) -> Result<(), HomeError> {
        self.load_job(tenant, id).await?;
        self.jobs_api(tenant)
            .delete(id, &DeleteParams::background())
            .await
            .map_err(|e| cluster_error(e, || HomeError::render_not_found(id)))?;
        self.caches.jobs.wait_for_removal(self.settle, tenant, id).await;
        Ok(())
    }

    async fn output(&self, tenant: &str, id: &str) -> Result<Vec<u8>, HomeError> {
        let key = self.succeeded_output_key(tenant, id).await?;
        self.read_output(&key).await
    }

    async fn signed_url(&self, tenant: &str, id: &str, expires_at: Timestamp) -> Result<String, HomeError> {
        let job = self.load_job(tenant, id).await?;
        let key = crate::port::stored_output_key(&job, id)?;
        let lifetime = Timestamp::now().duration_until(expires_at);
        match Duration::try_from(lifetime) {
            Ok(lifetime) if lifetime <= MAX_PRESIGNED_LIFETIME => {
                self.bucket.presigned_get(&key, lifetime).await.map_err(|err| {
                    tracing::error!(error = %err, key, "presigning a download");
                    HomeError::Unavailable("the output storage is unavailable".to_owned())
                })
            }
            // Longer than S3 allows: a URL folio signs and serves itself.
            _ => Ok(self.signer.download_url(&self.public_url, tenant, id, job.spec.output, expires_at)),
        }
    }

    async fn signed_output(&self, tenant: &str, id: &str, expires: i64, signature: &str) -> Result<Vec<u8>, HomeError> {
        self.signer.verify(tenant, id, expires, signature, Timestamp::now())?;
        let key = self.succeeded_output_key(tenant, id).await?;
        self.read_output(&key).await
    }

    async fn create_share(&self, tenant: &str, id: &str, expires_at: Option<Timestamp>) -> Result<Share, HomeError> {
        let job = self.load_job(tenant, id).await?;
        crate::port::stored_output_key(&job, &job.name_any())?;
        let token = new_share_token();
        let share = objects::share(&job, &token, expires_at);
        let created = self
            .shares_api(tenant)
            .create(&PostParams::default(), &share)
            .await
            .map_err(|e| cluster_error(e, || HomeError::render_not_found(id)))?;
        self.caches.shares.wait_for_write(self.settle, &created).await;
        let mut share =
            objects::share_of(&created).ok_or_else(|| HomeError::internal("a created share link reads back empty"))?;
        // The one time the token is known: the answer to this request.
        share.token = token;
        share.elided = false;
        Ok(share)
    }

    async fn shared_output(&self, token: &str) -> Result<Vec<u8>, HomeError> {
        let gone = || HomeError::not_found(Object::ShareLink);
        let cached = self.cached_share(token).ok_or_else(gone)?;
        let tenant = cached.namespace().ok_or_else(gone)?;
        let share = objects::share_of(&cached).ok_or_else(gone)?;
        if !objects::share_is_live(&share, Timestamp::now()) {
            return Err(gone());
        }
        let key = self.succeeded_output_key(&tenant, &share.job_id).await.map_err(|_| gone())?;
        self.read_output(&key).await
    }

    async fn shares(&self, tenant: &str) -> Result<Vec<Share>, HomeError> {
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

    async fn revoke_share(&self, tenant: &str, token: &str) -> Result<(), HomeError> {
        let share = self.tenant_share(tenant, token).ok_or_else(|| HomeError::not_found(Object::ShareLink))?;
        if share.spec.revoked_at.is_some() {
            return Ok(());
        }
        let name = share.name_any();
        let patch = json!({"spec": {"revokedAt": Timestamp::now()}});
        let patched = self
            .shares_api(tenant)
            .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map_err(|e| cluster_error(e, || HomeError::not_found(Object::ShareLink)))?;
        self.caches.shares.wait_for_write(self.settle, &patched).await;
        Ok(())
    }

    async fn templates(&self, tenant: &str) -> Result<Vec<TemplateView>, HomeError> {
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

    async fn template(&self, tenant: &str, name: &str) -> Result<TemplateView, HomeError> {
        let template = match self.caches.templates.get(tenant, name) {
            Some(cached) => Some(RenderTemplate::clone(&cached)),
            None if !admission::is_object_name(name) => None,
            None => self
                .templates_api(tenant)
                .get_opt(name)
                .await
                .map_err(|e| cluster_error(e, || HomeError::template_not_found(name)))?,
        };
        template
            .filter(|t| objects::is_live(&t.metadata))
            .map(objects::template_view)
            .ok_or_else(|| HomeError::template_not_found(name))
    }

    async fn put_template(
        &self,
        tenant: &str,
        template: RenderTemplate,
        replace: bool,
    ) -> Result<(TemplateView, bool), HomeError> {
        let name = template.name_any();
        admission::check_template(&template)?;
        let api = self.templates_api(tenant);
        let not_found = || HomeError::not_found(Object::Namespace);
        let (written, created) = match api.create(&PostParams::default(), &template).await {
            Ok(created) => (created, true),
            Err(err) if is_already_exists(&err) && !replace => return Err(HomeError::TemplateExists(name)),
            Err(err) if is_already_exists(&err) => {
                // Replace the spec, keeping the object's labels and annotations and the
                // template's files (changed through their own endpoints); retry when
                // someone else wrote it in between.
                let mut attempt = 0;
                loop {
                    let mut current = api.get(&name).await.map_err(|e| cluster_error(e, not_found))?;
                    let files = std::mem::take(&mut current.spec.assets);
                    current.spec = template.spec.clone();
                    current.spec.assets = files;
                    match api.replace(&name, &PostParams::default(), &current).await {
                        Ok(replaced) => break (replaced, false),
                        Err(kube::Error::Api(status)) if status.is_conflict() && attempt < 3 => attempt += 1,
                        Err(err) => return Err(cluster_error(err, not_found)),
                    }
                }
            }
            Err(err) => return Err(cluster_error(err, not_found)),
        };
        self.keep_version(&written).await;
        self.caches.templates.wait_for_write(self.settle, &written).await;
        Ok((objects::template_view(written), created))
    }

    async fn template_version(&self, tenant: &str, name: &str, version: i64) -> Result<TemplateView, HomeError> {
        self.version_view(tenant, name, version).await
    }

    async fn template_versions(&self, tenant: &str, name: &str) -> Result<Vec<TemplateVersion>, HomeError> {
        self.versions(tenant, name).await
    }

    async fn restore_template(&self, tenant: &str, name: &str, version: i64) -> Result<TemplateView, HomeError> {
        self.restore(tenant, name, version).await
    }

    async fn put_asset(
        &self,
        tenant: &str,
        name: &str,
        file: &str,
        bytes: Vec<u8>,
    ) -> Result<(AssetInfo, bool), HomeError> {
        self.put_file(tenant, name, file, bytes).await
    }

    async fn assets(&self, tenant: &str, name: &str) -> Result<Vec<AssetInfo>, HomeError> {
        self.file_infos(tenant, name).await
    }

    async fn asset(&self, tenant: &str, name: &str, file: &str) -> Result<(AssetInfo, Vec<u8>), HomeError> {
        self.file(tenant, name, file).await
    }

    async fn delete_asset(&self, tenant: &str, name: &str, file: &str) -> Result<(), HomeError> {
        self.remove_file(tenant, name, file).await
    }

    async fn delete_template(&self, tenant: &str, name: &str) -> Result<(), HomeError> {
        if !admission::is_object_name(name) {
            return Err(HomeError::template_not_found(name));
        }
        self.templates_api(tenant)
            .delete(name, &DeleteParams::background())
            .await
            .map_err(|e| cluster_error(e, || HomeError::template_not_found(name)))?;
        self.caches.templates.wait_for_removal(self.settle, tenant, name).await;
        Ok(())
    }

    async fn account(&self, tenant: &str) -> Result<RenderAccount, HomeError> {
        self.ensure_synced()?;
        Ok(self.cached_account(tenant))
    }

    async fn not_ready(&self) -> Option<String> {
        let missing = self.caches.not_synced();
        (!missing.is_empty()).then(|| format!("waiting for the cluster caches to fill: {}", missing.join(", ")))
    }

    async fn job_counts(&self) -> Result<Vec<(Phase, i64)>, HomeError> {
        let mut counts = std::collections::HashMap::<Phase, i64>::new();
        for job in self.caches.jobs.store().state() {
            if objects::is_live(&job.metadata) {
                *counts.entry(objects::phase(&job)).or_default() += 1;
            }
        }
        Ok(counts.into_iter().collect())
    }
}
