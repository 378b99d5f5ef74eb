//! The pure half of the cluster facade: how the API's notions map onto Kubernetes
//! objects and back, with no client in sight, so that every mapping is unit-tested.
//!
//! - a job is a RenderJob named by its id; its `Idempotency-Key` is an annotation;
//! - a webhook secret given in a request is a Secret owned by its job;
//! - an API key is a RenderAPIKey holding only the key's hash;
//! - a share link is a RenderShare holding only the token's hash, named by that hash,
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
use crate::lifecycle::{Account, Observed, Phase, credits_remaining, decide};
use crate::port::{JobFilter, JobView, Share, TemplateView};
use crate::resources::{
    RenderAccount, RenderApiKey, RenderApiKeySpec, RenderJob, RenderJobSpec, RenderShare, RenderShareSpec,
    RenderTemplate, default_account,
};

/// Annotation of a job created with an `Idempotency-Key`.
pub use crate::port::IDEMPOTENCY_KEY_ANNOTATION;
pub use crate::resources::RESUME_ANNOTATION;
/// Key of the webhook signing secret in a job's webhook Secret.
pub const WEBHOOK_SECRET_FIELD: &str = "secret";
/// `kubectl apply`'s copy of the whole object: not worth keeping in the cache.
pub const LAST_APPLIED_ANNOTATION: &str = "kubectl.kubernetes.io/last-applied-configuration";
/// Characters of a share token kept in clear to recognise the link.
pub const SHARE_TOKEN_PREFIX_LEN: usize = 12;
/// What ends a share token shown by its prefix only (listings).
pub const ELIDED: char = '\u{2026}';

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
    TemplateView {
        created_at: created_at(&template.metadata),
        updated_at: updated_at(&template.metadata),
        version: template.metadata.generation.unwrap_or(1),
        template,
    }
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
        && filter.output.is_none_or(|o| job.spec.output == o)
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

/// Whether a request of `tenant` with this idempotency key or external id, at `now`,
/// repeats the one that made `job` ([`crate::port`]'s rules: a key within its
/// lifetime, an external id the job still holds).
pub fn is_duplicate(
    job: &RenderJob,
    tenant: &str,
    idempotency_key: Option<&str>,
    external_id: Option<&str>,
    now: Timestamp,
) -> bool {
    if job.metadata.namespace.as_deref() != Some(tenant) || !is_live(&job.metadata) {
        return false;
    }
    let created = job.metadata.creation_timestamp.as_ref().map_or(now, |t| t.0);
    let job_key = job.metadata.annotations.as_ref().and_then(|a| a.get(IDEMPOTENCY_KEY_ANNOTATION));
    crate::port::repeats(job, job_key.map(String::as_str), created, idempotency_key, external_id, now)
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

/// The Secret holding the webhook signing secret of `job` (created), which owns it.
pub fn webhook_secret(job: &RenderJob, secret: &str) -> Secret {
    let job_id = job.name_any();
    Secret {
        metadata: ObjectMeta {
            name: Some(webhook_secret_name(&job_id)),
            namespace: job.metadata.namespace.clone(),
            labels: Some(BTreeMap::from([(
                crate::cluster::pod::JOB_LABEL.to_owned(),
                crate::cluster::pod::label_value(&job_id),
            )])),
            owner_references: owned_by(job).map(|o| vec![o]),
            ..Default::default()
        },
        data: Some(BTreeMap::from([(WEBHOOK_SECRET_FIELD.to_owned(), ByteString(secret.as_bytes().to_vec()))])),
        type_: Some("Opaque".to_owned()),
        ..Default::default()
    }
}

/// An owner reference to `job`, so that what hangs off it is deleted with it. Without
/// `blockOwnerDeletion`, which would need `update` on the job's finalizers.
pub fn owned_by(job: &RenderJob) -> Option<OwnerReference> {
    job.owner_ref(&())
}

/// The SHA-256 of a key or a token, hex: all that is stored of either.
pub fn secret_hash(text: &str) -> String {
    hex::encode(Sha256::digest(text.as_bytes()))
}

/// The name of an API key's RenderAPIKey: from the key's hash, so names never collide
/// in practice and reveal nothing. (The Secrets of earlier versions had the same
/// names, so a migrated key keeps its name.)
pub fn api_key_name(key_hash: &str) -> String {
    format!("folio-api-key-{}", &key_hash[..key_hash.len().min(16)])
}

/// The RenderAPIKey of a new key in `namespace`: the hash and the prefix, never the key.
pub fn api_key(namespace: &str, key: &NewKey, created_at: Timestamp, expires_at: Option<Timestamp>) -> RenderApiKey {
    let mut object = RenderApiKey::new(
        &api_key_name(&key.hash),
        RenderApiKeySpec {
            key_hash: key.hash.clone(),
            prefix: key.prefix.clone(),
            created_at: Some(created_at),
            expires_at,
            revoked_at: None,
        },
    );
    object.metadata.namespace = Some(namespace.to_owned());
    object
}

/// Whether a RenderAPIKey is the key whose hash is `key_hash` and works at `now`.
pub fn key_matches(key: &RenderApiKey, key_hash: &str, now: Timestamp) -> bool {
    is_live(&key.metadata) && key.spec.key_hash == key_hash && key.spec.is_usable(now)
}

/// The name of a share link's RenderShare: from the token's hash, so that the link
/// finds its object without the token appearing in any name. (The Secrets of earlier
/// versions had the same names.)
pub fn share_name_of_hash(token_hash: &str) -> String {
    format!("folio-share-{}", &token_hash[..token_hash.len().min(40)])
}

/// The name of the RenderShare of the link with `token`.
pub fn share_name(token: &str) -> String {
    share_name_of_hash(&secret_hash(token))
}

/// The clear prefix of a share token.
pub fn token_prefix(token: &str) -> String {
    token.chars().take(SHARE_TOKEN_PREFIX_LEN).collect()
}

/// The RenderShare of a new share link of `job` (which owns it).
pub fn share(job: &RenderJob, token: &str, expires_at: Option<Timestamp>) -> RenderShare {
    let mut object = RenderShare::new(
        &share_name(token),
        RenderShareSpec {
            job_name: job.name_any(),
            token_hash: secret_hash(token),
            token_prefix: token_prefix(token),
            expires_at,
            revoked_at: None,
        },
    );
    object.metadata.namespace = job.metadata.namespace.clone();
    object.metadata.owner_references = owned_by(job).map(|o| vec![o]);
    object
}

/// The share link a RenderShare records, as listings show it: the token is not
/// stored, so only its prefix, ending in `…`.
pub fn share_of(share: &RenderShare) -> Option<Share> {
    if !is_live(&share.metadata) {
        return None;
    }
    Some(Share {
        token: format!("{}{ELIDED}", share.spec.token_prefix),
        elided: true,
        job_id: share.spec.job_name.clone(),
        created_at: created_at(&share.metadata),
        expires_at: share.spec.expires_at,
        revoked_at: share.spec.revoked_at,
    })
}

/// Whether a RenderShare is the link with `token`.
pub fn share_matches(share: &RenderShare, token: &str) -> bool {
    is_live(&share.metadata)
        && share.metadata.name.as_deref() == Some(share_name(token).as_str())
        && share.spec.token_hash == secret_hash(token)
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
    let status = account.status.get_or_insert_with(Default::default);
    status.blocked_jobs = blocked_jobs;
    status.credits_remaining = credits_remaining(&account.spec, status.credits_used);
    account
}

/// Whether the account can pay for a blocked job now: the core's decision on a
/// resume, as the operator will take it. `Err` carries the message of the refusal.
pub fn can_resume(job: &RenderJob, account: &RenderAccount) -> Result<(), String> {
    let view = Account::of(Some(account), job.metadata.uid.as_deref().unwrap_or_default());
    match decide(job, Observed::Resume, &view, Timestamp::now()) {
        Ok(decision) if decision.phase() == Phase::Blocked => Err(decision.status.error_message.unwrap_or_default()),
        Ok(_) => Ok(()),
        Err(refused) => Err(refused.to_string()),
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
        by_template.spec.template_ref = Some(TemplateRef { name: "invoice".into(), version: None });
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
        keyed.metadata.creation_timestamp = Some(Time(at(1_000)));
        let now = at(2_000);
        assert!(is_duplicate(&keyed, "acme", Some("retry-1"), None, now));
        assert!(is_duplicate(&keyed, "acme", None, Some("order-7"), now));
        assert!(is_duplicate(&keyed, "acme", Some("other"), Some("order-7"), now));
        assert!(!is_duplicate(&keyed, "acme", Some("other"), Some("order-8"), now));
        assert!(!is_duplicate(&keyed, "acme", None, None, now));
        assert!(!is_duplicate(&keyed, "globex", Some("retry-1"), Some("order-7"), now));
        let a_day_later = at(1_000 + 86_400);
        assert!(!is_duplicate(&keyed, "acme", Some("retry-1"), None, a_day_later), "keys last 24 h");
        assert!(is_duplicate(&keyed, "acme", None, Some("order-7"), a_day_later), "a queued job holds its id");
        for (phase, holds) in [(Phase::Succeeded, true), (Phase::Failed, false), (Phase::Cancelled, false)] {
            keyed.status = Some(RenderJobStatus { phase: Some(phase), ..Default::default() });
            assert_eq!(is_duplicate(&keyed, "acme", None, Some("order-7"), now), holds, "{phase:?}");
        }
        keyed.metadata.deletion_timestamp = Some(Time(at(1)));
        assert!(!is_duplicate(&keyed, "acme", Some("retry-1"), None, now));
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
    fn api_keys_hold_the_hash_and_never_the_key_and_stop_when_revoked_or_expired() {
        let key = crate::api_keys::generate();
        let mut object = api_key("acme", &key, at(100), Some(at(500)));
        let text = serde_json::to_string(&object).unwrap();
        assert!(!text.contains(&key.plaintext) && !text.contains(&key.plaintext[crate::api_keys::KEY_PREFIX.len()..]));
        assert_eq!(object.metadata.name, Some(api_key_name(&key.hash)));
        assert_eq!(object.metadata.namespace.as_deref(), Some("acme"));
        let hash = crate::api_keys::hash(&key.plaintext);
        assert!(key_matches(&object, &hash, at(499)));
        assert!(!key_matches(&object, &hash, at(500)), "expired");
        assert!(!key_matches(&object, &crate::api_keys::hash("folio_other"), at(200)));
        object.spec.revoked_at = Some(at(200));
        assert!(!key_matches(&object, &hash, at(201)), "revoked");
        object.spec.revoked_at = None;
        object.metadata.deletion_timestamp = Some(Time(at(300)));
        assert!(!key_matches(&object, &hash, at(301)), "being deleted");
    }

    #[test]
    fn share_links_hold_the_hash_of_their_token_and_are_owned_by_their_job() {
        let mut job = RenderJob::clone(&job("acme", "j1", 100, Some(Phase::Succeeded)));
        job.metadata.uid = Some("uid-1".into());
        let token = crate::port::new_share_token();
        let mut object = share(&job, &token, Some(at(500)));
        assert_eq!(object.metadata.name, Some(share_name(&token)));
        assert!(!serde_json::to_string(&object).unwrap().contains(&token), "the token is stored nowhere");
        assert_eq!(object.metadata.owner_references.as_ref().unwrap()[0].uid, "uid-1");
        assert_eq!(object.metadata.namespace.as_deref(), Some("acme"));
        assert!(share_matches(&object, &token));
        assert!(!share_matches(&object, &crate::port::new_share_token()));
        object.metadata.creation_timestamp = Some(Time(at(120)));
        let listed = share_of(&object).unwrap();
        assert_eq!(
            listed,
            Share {
                token: format!("{}\u{2026}", &token[..SHARE_TOKEN_PREFIX_LEN]),
                elided: true,
                job_id: "j1".into(),
                created_at: at(120),
                expires_at: Some(at(500)),
                revoked_at: None,
            }
        );
        assert!(share_is_live(&listed, at(499)));
        assert!(!share_is_live(&listed, at(500)));
        object.spec.revoked_at = Some(at(130));
        assert!(!share_is_live(&share_of(&object).unwrap(), at(131)));
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
        let rendered = blocked.status.as_mut().unwrap();
        rendered.page_count = Some(3);
        rendered.total_bytes = Some(2048);
        rendered.sha256 = Some("ab".repeat(32));
        rendered.output_key = Some("acme/b.pdf".into());
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
