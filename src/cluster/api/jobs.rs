//! Jobs as the cluster home finds, creates and awaits them: a job is read from the
//! cache (or once from the apiserver), created with its webhook Secret or not at all,
//! and a write is awaited in the cache so that the next request sees it.

use kube::ResourceExt;
use kube::api::{DeleteParams, PostParams};
use sha2::{Digest, Sha256};

use super::errors::{cluster_error, is_already_exists};
use super::{ClusterBackend, admission, objects};
use crate::port::{HomeError, NewJob, Object, new_job_id};
use crate::resources::{RenderJob, SecretKeyRef};

/// Locks serialising creates that carry an idempotency key or an external id, per
/// tenant (striped), so that a retry racing its original request finds the first job.
pub(super) const CREATE_LOCKS: usize = 64;

impl ClusterBackend {
    /// The lock of `tenant`'s keyed creates.
    pub(super) fn create_lock(&self, tenant: &str) -> &tokio::sync::Mutex<()> {
        let hash = Sha256::digest(tenant.as_bytes());
        &self.create_locks[usize::from(hash[0]) % self.create_locks.len()]
    }

    /// A live job of `tenant`: from the cache, or (a write the cache has not shown
    /// yet) from the apiserver.
    pub(super) async fn load_job(&self, tenant: &str, id: &str) -> Result<RenderJob, HomeError> {
        if let Some(job) = self.caches.jobs.get(tenant, id) {
            return if objects::is_live(&job.metadata) {
                Ok(RenderJob::clone(&job))
            } else {
                Err(HomeError::render_not_found(id))
            };
        }
        if !admission::is_object_name(id) {
            return Err(HomeError::render_not_found(id));
        }
        let job = self
            .jobs_api(tenant)
            .get_opt(id)
            .await
            .map_err(|e| cluster_error(e, || HomeError::render_not_found(id)))?;
        job.filter(|j| objects::is_live(&j.metadata)).ok_or_else(|| HomeError::render_not_found(id))
    }

    /// Wait until the cached job `id` satisfies `done`; the cached job if it does.
    pub(super) async fn settled_job(
        &self,
        tenant: &str,
        id: &str,
        done: impl Fn(&RenderJob) -> bool,
    ) -> Option<RenderJob> {
        let key = kube::runtime::reflector::ObjectRef::<RenderJob>::new(id).within(tenant);
        let held = self.caches.jobs.wait_until(self.settle, |s| s.get(&key).is_some_and(|j| done(&j))).await;
        if held { self.caches.jobs.get(tenant, id).map(|j| RenderJob::clone(&j)) } else { None }
    }

    /// Wait until the cache shows `written` (its resourceVersion or a later one), so
    /// that the next request reads it from there.
    pub(super) async fn await_cached(&self, written: &RenderJob) {
        if !self.caches.jobs.wait_for_write(self.settle, written).await {
            let (tenant, id) = (written.namespace().unwrap_or_default(), written.name_any());
            tracing::debug!(%tenant, %id, "the cache has not shown a write yet; reads fall back to the apiserver");
        }
    }

    /// The storage key of a succeeded job's PDF.
    pub(super) async fn succeeded_output_key(&self, tenant: &str, id: &str) -> Result<String, HomeError> {
        let job = self.load_job(tenant, id).await?;
        crate::port::stored_output_key(&job, &job.name_any())
    }

    pub(super) async fn read_output(&self, key: &str) -> Result<Vec<u8>, HomeError> {
        self.bucket
            .get(key)
            .await
            .map_err(|err| {
                tracing::error!(error = %err, key, "reading an output");
                HomeError::Unavailable("the output storage is unavailable".to_owned())
            })?
            .ok_or_else(|| HomeError::not_found(Object::Output))
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
    pub(super) async fn create_new_job(&self, tenant: &str, new: NewJob) -> Result<(RenderJob, bool), HomeError> {
        // A keyed id taken by a job the request does not repeat (its key outlived, its
        // external id given up by a failure) moves on to the key's next id.
        for round in 0..KEYED_ID_ROUNDS {
            let Some(id) = keyed_job_id(tenant, &new, round) else {
                return self.create_as(tenant, new, new_job_id()).await.map(Created::into_pair);
            };
            if self.caches.jobs.get(tenant, &id).is_some() {
                continue;
            }
            match self.create_as(tenant, new.clone(), id).await? {
                Created::Taken(existing) => {
                    let (key, external_id) = (new.idempotency_key.as_deref(), new.spec.external_id.as_deref());
                    if objects::is_duplicate(&existing, tenant, key, external_id, jiff::Timestamp::now()) {
                        return Ok((existing, false));
                    }
                }
                created => return Ok(created.into_pair()),
            }
        }
        Err(HomeError::Conflict(format!(
            "{KEYED_ID_ROUNDS} jobs were made with this Idempotency-Key or externalId already; use another"
        )))
    }

    /// Create the job as `id`, with its webhook Secret.
    async fn create_as(&self, tenant: &str, new: NewJob, id: String) -> Result<Created, HomeError> {
        let request_digest = new.request_digest;
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
        let mut job = objects::new_job(tenant, &id, spec, new.idempotency_key.as_deref());
        crate::port::annotate_request(&mut job, new.idempotency_key.as_deref(), request_digest.as_deref());
        // Nothing is created (neither the job nor its webhook Secret) for a job that
        // would be refused.
        admission::check_job(&job)?;
        let post = PostParams::default();
        let created = match self.jobs_api(tenant).create(&post, &job).await {
            Ok(created) => created,
            Err(err) if is_already_exists(&err) => {
                // The same key reached another replica (or this one) first; that request
                // makes the webhook Secret.
                return Ok(Created::Taken(self.load_job(tenant, &id).await?));
            }
            Err(err) => return Err(cluster_error(err, || HomeError::not_found(Object::Namespace))),
        };
        if let Some(secret) = webhook_secret {
            let secret = objects::webhook_secret(&created, &secret);
            if let Err(err) = self.secrets_api(tenant).create(&post, &secret).await {
                let answer = if is_already_exists(&err) {
                    // The Secret of an earlier job of this id (same idempotency key) has
                    // not been collected yet; it cannot be read, so it is not reused.
                    HomeError::Conflict(
                        "the webhook secret of an earlier job with this id is still being removed; try again"
                            .to_owned(),
                    )
                } else {
                    cluster_error(err, || HomeError::not_found(Object::Namespace))
                };
                self.delete_created_job(&created).await;
                return Err(answer);
            }
        }
        self.await_cached(&created).await;
        Ok(Created::New(created))
    }

    /// Delete a job this request created, and only that one (by uid).
    pub(super) async fn delete_created_job(&self, job: &RenderJob) {
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

/// How many jobs one `Idempotency-Key` or `externalId` may make in the cluster, one
/// after another (each after the one before stopped counting as the same request).
const KEYED_ID_ROUNDS: u32 = 100;

/// What creating a job as an id came to.
enum Created {
    /// The job, made now.
    New(RenderJob),
    /// A job of that id existed already.
    Taken(RenderJob),
}

impl Created {
    /// The job, and whether this request made it.
    fn into_pair(self) -> (RenderJob, bool) {
        match self {
            Created::New(job) => (job, true),
            Created::Taken(job) => (job, false),
        }
    }
}

/// The job id of a request with an `Idempotency-Key` (or else an `externalId`), the
/// key's `round`th: derived from the tenant and the key, so that every replica of the
/// API names the job alike and the API server itself refuses a second one. Other
/// jobs get a time-ordered random id.
fn keyed_job_id(tenant: &str, new: &NewJob, round: u32) -> Option<String> {
    let (kind, key) = match (&new.idempotency_key, &new.spec.external_id) {
        (Some(key), _) => ("idempotency-key", key),
        (None, Some(external_id)) => ("external-id", external_id),
        (None, None) => return None,
    };
    // Round 0 names jobs as folio always did.
    let seed = match round {
        0 => format!("{tenant}\n{kind}\n{key}"),
        n => format!("{tenant}\n{kind}\n{key}\n{n}"),
    };
    let digest = Sha256::digest(seed.as_bytes());
    let bytes: [u8; 16] = digest[..16].try_into().ok()?;
    Some(uuid::Builder::from_custom_bytes(bytes).into_uuid().to_string())
}
