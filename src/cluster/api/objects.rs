//! The pure half of the cluster facade: how the API's notions map onto Kubernetes
//! objects and back, with no client in sight, so that every mapping is unit-tested.
//!
//! - a job is a RenderJob named by its id; its `Idempotency-Key` is an annotation;
//! - a webhook secret given in a request is a Secret owned by its job;
//! - an API key is a Secret labelled `folio.dev/api-key` holding only the key's hash;
//! - a share link is a Secret labelled `folio.dev/share`, named by a hash of its token,
//!   owned by its job (so deleting the job deletes its links);
//! - the render log is a filter, an order and a page over the cached RenderJobs.

use std::collections::BTreeMap;
use std::sync::Arc;

use jiff::Timestamp;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::{Resource, ResourceExt};
use sha2::{Digest, Sha256};

use crate::api_keys::NewKey;
use crate::http::backend::{JobFilter, JobView, Share, TemplateView};
use crate::lifecycle::{self, Charge, Phase};
use crate::resources::{RenderAccount, RenderJob, RenderJobSpec, RenderTemplate, default_account};

/// Annotation of a job created with an `Idempotency-Key`.
pub const IDEMPOTENCY_KEY_ANNOTATION: &str = "folio.dev/idempotency-key";
/// Annotation asking the operator to settle a blocked job again (RFC 3339 time).
pub const RESUME_ANNOTATION: &str = "folio.dev/resume-requested";
/// Label of the Secrets that hold API keys (value `"true"`).
pub const API_KEY_LABEL: &str = "folio.dev/api-key";
/// Annotation of an API key Secret: the key's first characters.
pub const KEY_PREFIX_ANNOTATION: &str = "folio.dev/key-prefix";
/// Field of an API key Secret holding the SHA-256 of the key, hex.
pub const KEY_HASH_FIELD: &str = "hash";
/// Label of the Secrets that are share links (value `"true"`).
pub const SHARE_LABEL: &str = "folio.dev/share";
/// Annotation of a share link: the job whose PDF it serves.
pub const SHARE_JOB_ANNOTATION: &str = crate::cluster::pod::JOB_LABEL;
/// Annotation of a share link: when it stops working (RFC 3339).
pub const SHARE_EXPIRES_ANNOTATION: &str = "folio.dev/expires-at";
/// Annotation of a share link: when it was revoked (RFC 3339).
pub const SHARE_REVOKED_ANNOTATION: &str = "folio.dev/revoked-at";
/// Field of a share link Secret holding its token.
pub const SHARE_TOKEN_FIELD: &str = "token";
/// Key of the webhook signing secret in a job's webhook Secret.
pub const WEBHOOK_SECRET_FIELD: &str = "secret";
/// `kubectl apply`'s copy of the whole object: not worth keeping in the cache.
pub const LAST_APPLIED_ANNOTATION: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// Whether an object is still there for the API: not being deleted.
pub fn is_live(meta: &ObjectMeta) -> bool {
    meta.deletion_timestamp.is_none()
}

/// When an object was created (the epoch when the server did not say).
pub fn created_at(meta: &ObjectMeta) -> Timestamp {
    meta.creation_timestamp.as_ref().map_or(Timestamp::UNIX_EPOCH, |t| t.0)
}

/// When an object last changed, as far as its metadata tells: the latest write of
/// any field manager (spec or status), else its creation.
pub fn updated_at(meta: &ObjectMeta) -> Timestamp {
    let writes = meta.managed_fields.iter().flatten().filter_map(|m| m.time.as_ref().map(|t| t.0));
    writes.fold(created_at(meta), Timestamp::max)
}

/// The phase a job is in; a job the operator has not seen yet is queued.
pub fn phase(job: &RenderJob) -> Phase {
    job.status.as_ref().and_then(|s| s.phase).unwrap_or(Phase::Queued)
}

/// The API view of a RenderJob.
pub fn job_view(job: RenderJob) -> JobView {
    let (created_at, updated_at) = (created_at(&job.metadata), updated_at(&job.metadata));
    let status_times = job.status.iter().flat_map(|s| [s.started_at, s.completed_at]).flatten();
    let updated_at = status_times.fold(updated_at, Timestamp::max);
    JobView { job, created_at, updated_at }
}

/// The API view of a RenderTemplate.
pub fn template_view(template: RenderTemplate) -> TemplateView {
    TemplateView { created_at: created_at(&template.metadata), updated_at: updated_at(&template.metadata), template }
}

/// Whether a live job of `tenant` matches the render log's filter.
pub fn matches(job: &RenderJob, tenant: &str, filter: &JobFilter) -> bool {
    let created = created_at(&job.metadata);
    job.metadata.namespace.as_deref() == Some(tenant)
        && is_live(&job.metadata)
        && filter.phase.is_none_or(|p| phase(job) == p)
        && filter.template.as_ref().is_none_or(|t| job.spec.template_ref.as_ref().is_some_and(|r| r.name == *t))
        && filter.external_id.as_ref().is_none_or(|e| job.spec.external_id.as_ref() == Some(e))
        && filter.preview.is_none_or(|p| job.spec.preview == p)
        && filter.created_from.is_none_or(|from| created >= from)
        && filter.created_to.is_none_or(|to| created < to)
}

/// A page of the render log: `tenant`'s matching jobs, newest first (ties broken by
/// id, and ids are UUIDv7, so by acceptance time), and the number of all matches.
pub fn render_log(
    jobs: impl IntoIterator<Item = Arc<RenderJob>>,
    tenant: &str,
    filter: &JobFilter,
    limit: i64,
    offset: i64,
) -> (Vec<JobView>, i64) {
    let mut matching: Vec<Arc<RenderJob>> = jobs.into_iter().filter(|j| matches(j, tenant, filter)).collect();
    let total = matching.len() as i64;
    matching.sort_by(|a, b| {
        created_at(&b.metadata).cmp(&created_at(&a.metadata)).then_with(|| b.metadata.name.cmp(&a.metadata.name))
    });
    let page = matching
        .into_iter()
        .skip(usize::try_from(offset).unwrap_or(0))
        .take(usize::try_from(limit).unwrap_or(0))
        .map(|job| job_view(RenderJob::clone(&job)))
        .collect();
    (page, total)
}

/// Whether `job` is the one a request with this idempotency key or external id
/// created before (in the same tenant, still there).
pub fn is_duplicate(job: &RenderJob, tenant: &str, idempotency_key: Option<&str>, external_id: Option<&str>) -> bool {
    if job.metadata.namespace.as_deref() != Some(tenant) || !is_live(&job.metadata) {
        return false;
    }
    let same_key = idempotency_key.is_some_and(|key| {
        job.metadata.annotations.as_ref().and_then(|a| a.get(IDEMPOTENCY_KEY_ANNOTATION)).map(String::as_str)
            == Some(key)
    });
    let same_external_id = external_id.is_some_and(|id| job.spec.external_id.as_deref() == Some(id));
    same_key || same_external_id
}

/// The RenderJob the API creates for an accepted request.
pub fn new_job(tenant: &str, id: &str, spec: RenderJobSpec, idempotency_key: Option<&str>) -> RenderJob {
    let annotations =
        idempotency_key.map(|key| BTreeMap::from([(IDEMPOTENCY_KEY_ANNOTATION.to_owned(), key.to_owned())]));
    RenderJob {
        metadata: ObjectMeta {
            name: Some(id.to_owned()),
            namespace: Some(tenant.to_owned()),
            annotations,
            ..Default::default()
        },
        spec,
        status: None,
    }
}

/// The name of the Secret holding a job's webhook signing secret.
pub fn webhook_secret_name(job_id: &str) -> String {
    format!("{job_id}-webhook")
}

/// The Secret holding a job's webhook signing secret.
pub fn webhook_secret(tenant: &str, job_id: &str, secret: &str) -> Secret {
    Secret {
        metadata: ObjectMeta {
            name: Some(webhook_secret_name(job_id)),
            namespace: Some(tenant.to_owned()),
            labels: Some(BTreeMap::from([(
                crate::cluster::pod::JOB_LABEL.to_owned(),
                crate::cluster::pod::label_value(job_id),
            )])),
            ..Default::default()
        },
        data: Some(BTreeMap::from([(WEBHOOK_SECRET_FIELD.to_owned(), ByteString(secret.as_bytes().to_vec()))])),
        type_: Some("Opaque".to_owned()),
        ..Default::default()
    }
}

/// An owner reference to `job`, so that what hangs off it is deleted with it.
pub fn owned_by(job: &RenderJob) -> Option<OwnerReference> {
    job.owner_ref(&())
}

/// The name of an API key's Secret: from the key's hash, so names never collide in
/// practice and reveal nothing.
pub fn api_key_secret_name(key_hash: &str) -> String {
    format!("folio-api-key-{}", &key_hash[..key_hash.len().min(16)])
}

/// The Secret of a new API key in `namespace`: the hash and the prefix, never the key.
pub fn api_key_secret(namespace: &str, key: &NewKey) -> Secret {
    Secret {
        metadata: ObjectMeta {
            name: Some(api_key_secret_name(&key.hash)),
            namespace: Some(namespace.to_owned()),
            labels: Some(BTreeMap::from([(API_KEY_LABEL.to_owned(), "true".to_owned())])),
            annotations: Some(BTreeMap::from([(KEY_PREFIX_ANNOTATION.to_owned(), key.prefix.clone())])),
            ..Default::default()
        },
        data: Some(BTreeMap::from([(KEY_HASH_FIELD.to_owned(), ByteString(key.hash.clone().into_bytes()))])),
        type_: Some("Opaque".to_owned()),
        ..Default::default()
    }
}

/// A field of a Secret as text (from `data`, or `stringData` as a user may write it).
fn secret_field<'a>(secret: &'a Secret, field: &str) -> Option<&'a str> {
    secret
        .data
        .as_ref()
        .and_then(|d| d.get(field))
        .and_then(|b| std::str::from_utf8(&b.0).ok())
        .or_else(|| secret.string_data.as_ref().and_then(|d| d.get(field)).map(String::as_str))
}

/// Whether an API key Secret holds the hash `key_hash`.
pub fn key_matches(secret: &Secret, key_hash: &str) -> bool {
    is_live(&secret.metadata)
        && secret.labels().get(API_KEY_LABEL).is_some_and(|v| v == "true")
        && secret_field(secret, KEY_HASH_FIELD).is_some_and(|h| h.trim() == key_hash)
}

/// The name of a share link's Secret: a hash of the token, so that the link finds its
/// Secret without the token appearing in any name.
pub fn share_secret_name(token: &str) -> String {
    format!("folio-share-{}", &hex::encode(Sha256::digest(token.as_bytes()))[..40])
}

/// The Secret of a new share link of `job` (which owns it).
pub fn share_secret(job: &RenderJob, token: &str, expires_at: Option<Timestamp>) -> Secret {
    let job_id = job.name_any();
    let mut annotations = BTreeMap::from([(SHARE_JOB_ANNOTATION.to_owned(), job_id.clone())]);
    if let Some(expires_at) = expires_at {
        annotations.insert(SHARE_EXPIRES_ANNOTATION.to_owned(), expires_at.to_string());
    }
    Secret {
        metadata: ObjectMeta {
            name: Some(share_secret_name(token)),
            namespace: job.metadata.namespace.clone(),
            labels: Some(BTreeMap::from([(SHARE_LABEL.to_owned(), "true".to_owned())])),
            annotations: Some(annotations),
            owner_references: owned_by(job).map(|o| vec![o]),
            ..Default::default()
        },
        data: Some(BTreeMap::from([(SHARE_TOKEN_FIELD.to_owned(), ByteString(token.as_bytes().to_vec()))])),
        type_: Some("Opaque".to_owned()),
        ..Default::default()
    }
}

/// The share link a Secret holds, if it is one.
pub fn share_of(secret: &Secret) -> Option<Share> {
    if !is_live(&secret.metadata) || secret.labels().get(SHARE_LABEL).is_none_or(|v| v != "true") {
        return None;
    }
    let annotation = |name: &str| secret.annotations().get(name).cloned();
    let time = |name: &str| annotation(name).and_then(|v| v.parse::<Timestamp>().ok());
    Some(Share {
        token: secret_field(secret, SHARE_TOKEN_FIELD)?.to_owned(),
        job_id: annotation(SHARE_JOB_ANNOTATION)?,
        created_at: created_at(&secret.metadata),
        expires_at: time(SHARE_EXPIRES_ANNOTATION),
        revoked_at: time(SHARE_REVOKED_ANNOTATION),
    })
}

/// Whether a share link serves its PDF at `now`.
pub fn share_is_live(share: &Share, now: Timestamp) -> bool {
    share.revoked_at.is_none() && share.expires_at.is_none_or(|e| e > now)
}

/// A tenant's account: its RenderAccount (the first by name, should there be
/// several) or the default, with the balance and the count of blocked jobs filled in.
pub fn account(
    accounts: impl IntoIterator<Item = Arc<RenderAccount>>,
    jobs: impl IntoIterator<Item = Arc<RenderJob>>,
    tenant: &str,
) -> RenderAccount {
    let mut account = accounts
        .into_iter()
        .filter(|a| a.metadata.namespace.as_deref() == Some(tenant) && is_live(&a.metadata))
        .min_by(|a, b| a.metadata.name.cmp(&b.metadata.name))
        .map_or_else(|| default_account(tenant), |a| RenderAccount::clone(&a));
    let blocked = JobFilter { phase: Some(Phase::Blocked), ..Default::default() };
    let blocked_jobs = jobs.into_iter().filter(|j| matches(j, tenant, &blocked)).count() as i64;
    let credits = account.spec.credits;
    let status = account.status.get_or_insert_with(Default::default);
    status.blocked_jobs = blocked_jobs;
    status.credits_remaining = credits.map(|c| c - status.credits_used);
    account
}

/// Whether the account can pay for a blocked job now: the same rule the operator
/// settles by. `Err` carries the message of the refusal.
pub fn can_resume(job: &RenderJob, account: &RenderAccount) -> Result<(), String> {
    let status = job.status.clone().unwrap_or_default();
    let price = lifecycle::price(
        status.page_count.unwrap_or(0),
        status.total_bytes.unwrap_or(0),
        job.spec.preview,
        &account.spec.pricing,
    );
    let used = account.status.as_ref().map_or(0, |s| s.credits_used);
    match lifecycle::charge(account.spec.credits, used, price) {
        Charge::Charged { .. } => Ok(()),
        Charge::Insufficient { credits_remaining } => {
            Err(lifecycle::insufficient_credits_message(price, credits_remaining))
        }
    }
}

/// Whether a cached resourceVersion is at least as new as `wanted`. Versions are
/// opaque, but equal ones are the same write; numeric ones (etcd's) are ordered.
pub fn version_reached(cached: Option<&str>, wanted: Option<&str>) -> bool {
    match (cached, wanted) {
        (_, None) => true,
        (None, Some(_)) => false,
        (Some(c), Some(w)) if c == w => true,
        (Some(c), Some(w)) => matches!((c.parse::<u64>(), w.parse::<u64>()), (Ok(c), Ok(w)) if c >= w),
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ManagedFieldsEntry, Time};

    use super::*;
    use crate::resources::{RenderAccountSpec, RenderJobStatus, TemplateRef};

    fn at(seconds: i64) -> Timestamp {
        Timestamp::from_second(seconds).unwrap()
    }

    fn job(tenant: &str, id: &str, created: i64, phase: Option<Phase>) -> Arc<RenderJob> {
        let mut job = new_job(tenant, id, RenderJobSpec::default(), None);
        job.metadata.creation_timestamp = Some(Time(at(created)));
        job.status = phase.map(|p| RenderJobStatus { phase: Some(p), ..Default::default() });
        Arc::new(job)
    }

    fn ids(views: &[JobView]) -> Vec<String> {
        views.iter().map(|v| v.job.metadata.name.clone().unwrap()).collect()
    }

    #[test]
    fn render_log_is_newest_first_paged_and_counts_every_match() {
        let jobs = vec![
            job("acme", "a", 100, None),
            job("acme", "c", 300, None),
            job("acme", "b2", 200, None),
            job("acme", "b1", 200, None),
        ];
        let (page, total) = render_log(jobs.clone(), "acme", &JobFilter::default(), 2, 0);
        assert_eq!((ids(&page), total), (vec!["c".to_owned(), "b2".to_owned()], 4));
        let (page, total) = render_log(jobs.clone(), "acme", &JobFilter::default(), 2, 2);
        assert_eq!((ids(&page), total), (vec!["b1".to_owned(), "a".to_owned()], 4));
        let (page, total) = render_log(jobs, "acme", &JobFilter::default(), 2, 10);
        assert_eq!((page.len(), total), (0, 4));
    }

    #[test]
    fn render_log_shows_only_the_tenants_jobs_that_are_not_being_deleted() {
        let mut deleting = RenderJob::clone(&job("acme", "gone", 50, None));
        deleting.metadata.deletion_timestamp = Some(Time(at(60)));
        let jobs = vec![job("acme", "mine", 100, None), job("other", "theirs", 200, None), Arc::new(deleting)];
        let (page, total) = render_log(jobs, "acme", &JobFilter::default(), 50, 0);
        assert_eq!((ids(&page), total), (vec!["mine".to_owned()], 1));
    }

    #[test]
    fn render_log_filters_by_phase_template_external_id_preview_and_creation_time() {
        let mut by_template = RenderJob::clone(&job("acme", "templated", 100, Some(Phase::Succeeded)));
        by_template.spec.template_ref = Some(TemplateRef { name: "invoice".into() });
        by_template.spec.external_id = Some("order-7".into());
        let mut preview = RenderJob::clone(&job("acme", "preview", 200, Some(Phase::Failed)));
        preview.spec.preview = true;
        let unseen = job("acme", "unseen", 300, None);
        let jobs = vec![Arc::new(by_template), Arc::new(preview), unseen];
        let select = |filter: JobFilter| ids(&render_log(jobs.clone(), "acme", &filter, 50, 0).0);

        assert_eq!(select(JobFilter { phase: Some(Phase::Succeeded), ..Default::default() }), ["templated"]);
        assert_eq!(select(JobFilter { phase: Some(Phase::Queued), ..Default::default() }), ["unseen"]);
        assert_eq!(select(JobFilter { template: Some("invoice".into()), ..Default::default() }), ["templated"]);
        assert_eq!(select(JobFilter { external_id: Some("order-7".into()), ..Default::default() }), ["templated"]);
        assert_eq!(select(JobFilter { preview: Some(true), ..Default::default() }), ["preview"]);
        assert_eq!(
            select(JobFilter { created_from: Some(at(200)), created_to: Some(at(300)), ..Default::default() }),
            ["preview"]
        );
    }

    #[test]
    fn duplicates_are_found_by_idempotency_key_or_external_id_within_the_tenant() {
        let mut keyed = new_job("acme", "j1", RenderJobSpec::default(), Some("retry-1"));
        keyed.spec.external_id = Some("order-7".into());
        assert!(is_duplicate(&keyed, "acme", Some("retry-1"), None));
        assert!(is_duplicate(&keyed, "acme", None, Some("order-7")));
        assert!(is_duplicate(&keyed, "acme", Some("other"), Some("order-7")));
        assert!(!is_duplicate(&keyed, "acme", Some("other"), Some("order-8")));
        assert!(!is_duplicate(&keyed, "acme", None, None));
        assert!(!is_duplicate(&keyed, "globex", Some("retry-1"), Some("order-7")));
        keyed.metadata.deletion_timestamp = Some(Time(at(1)));
        assert!(!is_duplicate(&keyed, "acme", Some("retry-1"), None));
    }

    #[test]
    fn a_new_job_is_named_by_its_id_in_the_tenants_namespace() {
        let job = new_job("acme", "0192-id", RenderJobSpec { preview: true, ..Default::default() }, Some("k"));
        assert_eq!(job.metadata.name.as_deref(), Some("0192-id"));
        assert_eq!(job.metadata.namespace.as_deref(), Some("acme"));
        assert_eq!(job.annotations().get(IDEMPOTENCY_KEY_ANNOTATION).map(String::as_str), Some("k"));
        assert!(job.spec.preview);
        assert!(job.status.is_none());
        assert!(new_job("acme", "x", RenderJobSpec::default(), None).metadata.annotations.is_none());
    }

    #[test]
    fn api_key_secrets_hold_the_hash_and_never_the_key() {
        let key = crate::api_keys::generate();
        let secret = api_key_secret("acme", &key);
        let text = serde_json::to_string(&secret).unwrap();
        assert!(!text.contains(&key.plaintext));
        assert!(key_matches(&secret, &crate::api_keys::hash(&key.plaintext)));
        assert!(!key_matches(&secret, &crate::api_keys::hash("folio_other")));
        let mut unlabelled = secret.clone();
        unlabelled.metadata.labels = None;
        assert!(!key_matches(&unlabelled, &key.hash));
    }

    #[test]
    fn share_links_round_trip_through_their_secret() {
        let mut job = RenderJob::clone(&job("acme", "j1", 100, Some(Phase::Succeeded)));
        job.metadata.uid = Some("uid-1".into());
        let mut secret = share_secret(&job, "tok", Some(at(500)));
        assert_eq!(secret.metadata.name, Some(share_secret_name("tok")));
        assert!(!share_secret_name("tok").contains("tok"));
        assert_eq!(secret.metadata.owner_references.as_ref().unwrap()[0].uid, "uid-1");
        secret.metadata.creation_timestamp = Some(Time(at(120)));
        let share = share_of(&secret).unwrap();
        assert_eq!(
            share,
            Share {
                token: "tok".into(),
                job_id: "j1".into(),
                created_at: at(120),
                expires_at: Some(at(500)),
                revoked_at: None,
            }
        );
        assert!(share_is_live(&share, at(499)));
        assert!(!share_is_live(&share, at(500)));
        secret.metadata.annotations.as_mut().unwrap().insert(SHARE_REVOKED_ANNOTATION.into(), at(130).to_string());
        assert!(!share_is_live(&share_of(&secret).unwrap(), at(131)));
    }

    #[test]
    fn the_account_is_the_first_by_name_or_the_unlimited_default() {
        let account = |name: &str, credits: i64| {
            let mut a = RenderAccount::new(name, RenderAccountSpec { credits: Some(credits), ..Default::default() });
            a.metadata.namespace = Some("acme".into());
            Arc::new(a)
        };
        let jobs = vec![job("acme", "b", 1, Some(Phase::Blocked)), job("other", "c", 1, Some(Phase::Blocked))];
        let chosen = super::account(vec![account("zeta", 5), account("alpha", 10)], jobs.clone(), "acme");
        assert_eq!(chosen.metadata.name.as_deref(), Some("alpha"));
        let status = chosen.status.unwrap();
        assert_eq!((status.credits_remaining, status.blocked_jobs), (Some(10), 1));
        let fallback = super::account(Vec::new(), jobs, "globex");
        assert_eq!(fallback.spec.credits, None);
        assert_eq!(fallback.metadata.namespace.as_deref(), Some("globex"));
    }

    #[test]
    fn a_blocked_job_resumes_only_when_the_balance_covers_it() {
        let mut blocked = RenderJob::clone(&job("acme", "b", 1, Some(Phase::Blocked)));
        blocked.status.as_mut().unwrap().page_count = Some(3);
        let mut account = RenderAccount::new("a", RenderAccountSpec { credits: Some(10), ..Default::default() });
        account.status = Some(crate::resources::RenderAccountStatus { credits_used: 8, ..Default::default() });
        assert_eq!(
            can_resume(&blocked, &account),
            Err("the render costs 3 credits and the account has 2 left; it continues when credits are added".into())
        );
        account.spec.credits = Some(11);
        assert_eq!(can_resume(&blocked, &account), Ok(()));
        account.spec.credits = None;
        assert_eq!(can_resume(&blocked, &account), Ok(()));
    }

    #[test]
    fn updated_at_is_the_latest_write() {
        let mut job = RenderJob::clone(&job("acme", "j", 100, Some(Phase::Rendering)));
        assert_eq!(job_view(job.clone()).updated_at, at(100));
        job.metadata.managed_fields = Some(vec![
            ManagedFieldsEntry { time: Some(Time(at(150))), ..Default::default() },
            ManagedFieldsEntry { time: Some(Time(at(130))), ..Default::default() },
        ]);
        assert_eq!(job_view(job.clone()).updated_at, at(150));
        job.status.as_mut().unwrap().completed_at = Some(at(170));
        let view = job_view(job);
        assert_eq!((view.created_at, view.updated_at), (at(100), at(170)));
    }

    #[test]
    fn resource_versions_are_reached_when_equal_or_numerically_later() {
        assert!(version_reached(Some("12"), Some("12")));
        assert!(version_reached(Some("13"), Some("12")));
        assert!(!version_reached(Some("11"), Some("12")));
        assert!(!version_reached(None, Some("12")));
        assert!(!version_reached(Some("abc"), Some("abd")));
        assert!(version_reached(Some("abc"), None));
    }
}
