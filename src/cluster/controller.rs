//! The RenderJob controller: a kube-runtime [`Controller`] that owns the renderer
//! Pods, is woken by their changes and by RenderAccount changes (a top-up frees
//! blocked jobs), and reconciles one job at a time through [`job::apply`] inside
//! the finalizer that removes the stored PDF when a job is deleted.
//!
//! Reads come from watch caches, not from the API server: the controller's own
//! RenderJob store, the store of renderer Pods it owns, and the RenderAccounts and
//! RenderTemplates of the watched namespaces ([`Caches`]), each filled by one watch.
//! A cache can lag behind the operator's own last write, so the operator remembers
//! what it wrote ([`Expectations`]): a job whose cached copy does not show the
//! operator's last status write yet, or whose renderer Pod the cache does not show
//! yet, is looked at again when the watch event arrives (it is on its way), instead
//! of acting on the older copy. Every write that decides something is conditional
//! on the `resourceVersion` it was decided on, so a copy older than the stored
//! object is refused with a conflict and retried shortly; the exactly-once ledger
//! ([`super::ledger`]) does not depend on the expectations (see its docs).
//!
//! The cached RenderJobs leave out what no reconcile reads (managed fields, the
//! last-applied annotation, and the template and data of jobs that have ended),
//! so 10,000 finished jobs cost little memory.
//!
//! Errors carry a kind: a conflict or an unreachable API server or bucket heals by
//! itself and is retried with exponential backoff per job; so is a renderer the API
//! server refuses (admission, quota, RBAC: a platform team may fix it), which the
//! job shows as a condition and a Warning Event, until the renderer start timeout
//! fails the attempt; a job the controller can never build anything for waits for a
//! change of the job.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Pod;
use kube::runtime::controller::{Action, Config as ControllerConfig, Controller};
use kube::runtime::finalizer::{Event as Finalizer, finalizer};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, ResourceExt};

pub use super::context::{
    Caches, Context, DEFAULT_RENDERER_START_TIMEOUT, Delivery, Error, ErrorKind, Expectations, FIELD_MANAGER,
    FINALIZER, compare_versions,
};
use super::job;
use crate::lifecycle::Phase;
use crate::resources::{RenderAccount, RenderJob, RenderTemplate};

/// First delay after a transient error; doubles per consecutive error of a job.
const ERROR_BACKOFF_BASE: Duration = Duration::from_secs(1);
/// Delay after a write conflict (times the consecutive conflicts).
const CONFLICT_RETRY: Duration = Duration::from_millis(100);
/// Delay before looking again at a job whose cache lags behind the operator's own
/// write; its watch event usually wakes the job before.
const EXPECTATION_RETRY: Duration = Duration::from_millis(200);
/// Longest delay after transient errors.
const ERROR_BACKOFF_MAX: Duration = Duration::from_secs(300);
/// The annotation `kubectl apply` (client side) keeps a copy of the whole object in.
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// Reconcile one job: the finalizer first, then [`job::apply`] or [`job::cleanup`].
pub async fn reconcile(job: Arc<RenderJob>, ctx: Arc<Context>) -> Result<Action, Error> {
    let started = Instant::now();
    let namespace = job.namespace().ok_or_else(|| Error::Invalid("the RenderJob has no namespace".into()))?;
    if ctx.behind_own_writes(&job) {
        // The watch event of that write is on its way and wakes the job again.
        return Ok(Action::requeue(EXPECTATION_RETRY));
    }
    if !ctx.caches().ready().await {
        return Err(Error::NotSynced);
    }
    let api: Api<RenderJob> = Api::namespaced(ctx.client.clone(), &namespace);
    let key = ObjectRef::from_obj(job.as_ref());
    let outcome = finalizer(&api, FINALIZER, job, |event| async {
        match event {
            Finalizer::Apply(job) => job::apply(&job, &ctx).await,
            Finalizer::Cleanup(job) => job::cleanup(&job, &ctx).await,
        }
    })
    .await
    .map_err(|err| Error::Finalizer(Box::new(err)));
    ctx.metrics.reconciled(started.elapsed(), outcome.as_ref().err().map(|err| err.kind().label()));
    if outcome.is_ok() {
        ctx.failures().remove(&key);
    }
    outcome
}

/// After a failed reconcile: wait for a change when retrying cannot help, else back
/// off exponentially per job.
pub fn error_policy(job: Arc<RenderJob>, err: &Error, ctx: Arc<Context>) -> Action {
    tracing::warn!(job = %job.name_any(), namespace = ?job.namespace(), kind = err.kind().label(), error = %crate::error_chain(err), "reconcile failed");
    if err.is_permanent() {
        return Action::await_change();
    }
    let mut failures = ctx.failures();
    let count = failures.entry(ObjectRef::from_obj(job.as_ref())).or_insert(0);
    *count += 1;
    if err.kind() == ErrorKind::Conflict {
        // Another write came first; the fresh copy is (nearly) in the cache already.
        return Action::requeue(CONFLICT_RETRY.saturating_mul((*count).min(10)));
    }
    let delay = backoff(*count);
    // A refused renderer is tried once more when its start timeout ends, to fail it.
    let delay = err.retry_within().map_or(delay, |within| delay.min(within.max(CONFLICT_RETRY)));
    Action::requeue(delay)
}

/// The delay after the `count`th consecutive transient error.
fn backoff(count: u32) -> Duration {
    crate::lifecycle::exponential_delay(ERROR_BACKOFF_BASE, ERROR_BACKOFF_MAX, count.saturating_sub(1))
}

/// What the RenderJob cache keeps of a job: no reconcile reads managed fields or the
/// last-applied annotation, and a job that has ended is never rendered again, so its
/// template and data go too (its status keeps everything it reports). A job still
/// to render keeps its spec whole: its Pod's input is built from it.
pub fn trim_job(job: &mut RenderJob) {
    job.metadata.managed_fields = None;
    if let Some(annotations) = job.metadata.annotations.as_mut() {
        annotations.remove(LAST_APPLIED);
    }
    if job.status.as_ref().and_then(|s| s.phase).is_some_and(Phase::is_terminal) {
        job.spec.data = None;
        job.spec.template = None;
    }
}

/// What the Pod cache keeps of a renderer Pod: its metadata (name, owner, creation
/// time) and its status, which say how the attempt goes; not its spec.
fn trim_pod(pod: &mut Pod) {
    pod.metadata.managed_fields = None;
    pod.metadata.annotations = None;
    pod.spec = None;
}

/// Run the controller until `shutdown` resolves; reconciles in flight finish first.
pub async fn run(ctx: Arc<Context>, concurrency: u16, shutdown: impl Future<Output = ()> + Send + Sync + 'static) {
    let (jobs, jobs_writer) = reflector::store();
    let (pods, pods_writer) = reflector::store();
    let (accounts, accounts_writer) = reflector::store();
    let (templates, templates_writer) = reflector::store();
    let caches = Caches { jobs: jobs.clone(), pods, accounts, templates };
    if ctx.caches.set(caches).is_err() {
        tracing::error!("the controller's context has caches of its own already; not reconciling");
        return;
    }
    ctx.metrics.watch_jobs(jobs.clone());
    let observer = ctx.clone();
    // Listed (and listed again after a watch expires) by a consistent read, not from
    // the API server's own cache: the ledger relies on a new operator's cache holding
    // every job write made before it started (see `ledger`).
    let job_config = watcher::Config::default().list_semantic(watcher::ListSemantic::MostRecent);
    let job_events = watcher::watcher(ctx.watched::<RenderJob>(), job_config)
        .default_backoff()
        .modify(trim_job)
        .reflect(jobs_writer)
        .inspect_ok(move |event| observer.written_jobs.observe(event))
        .applied_objects();
    let observer = ctx.clone();
    let (share_freed, share_wakes) = futures::channel::mpsc::unbounded();
    let (share_jobs, share_ctx) = (jobs.clone(), ctx.clone());
    let pod_config = watcher::Config::default().labels(super::pod::RENDERER_SELECTOR);
    let pod_events = watcher::watcher(ctx.watched::<Pod>(), pod_config)
        .default_backoff()
        .modify(trim_pod)
        .reflect(pods_writer)
        .inspect_ok(move |event| observer.applied_pods.observe(event))
        .inspect_ok(move |event| {
            let freed = match event {
                watcher::Event::Apply(pod) if super::pod::has_ended(pod) => Some(pod),
                watcher::Event::Delete(pod) => Some(pod),
                _ => None,
            };
            for job in freed.into_iter().flat_map(|pod| jobs_waiting_for_share(&share_jobs, &share_ctx, pod)) {
                let _ = share_freed.unbounded_send(job);
            }
        })
        .touched_objects();
    let account_events = watcher::watcher(ctx.watched::<RenderAccount>(), watcher::Config::default())
        .default_backoff()
        .modify(|account| account.metadata.managed_fields = None)
        .reflect(accounts_writer)
        .touched_objects();
    let template_events = watcher::watcher(ctx.watched::<RenderTemplate>(), watcher::Config::default())
        .default_backoff()
        .modify(|template| template.metadata.managed_fields = None)
        .reflect(templates_writer)
        .touched_objects();
    let (blocked_of, waiting_for) = (jobs.clone(), jobs.clone());
    Controller::for_stream(job_events, jobs)
        .owns_stream(pod_events)
        .watches_stream(account_events, move |account| blocked_jobs_of(&blocked_of, &account))
        .watches_stream(template_events, move |template| jobs_waiting_for(&waiting_for, &template))
        .reconcile_on(share_wakes)
        .with_config(ControllerConfig::default().concurrency(concurrency))
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, ctx)
        .for_each(|outcome| async move {
            if let Err(err) = outcome {
                tracing::debug!(error = %err, "controller event");
            }
        })
        .await;
}

/// The blocked jobs an account change may free: every Blocked job of its namespace.
fn blocked_jobs_of(jobs: &Store<RenderJob>, account: &RenderAccount) -> Vec<ObjectRef<RenderJob>> {
    let namespace = account.namespace();
    jobs.state()
        .iter()
        .filter(|job| job.namespace() == namespace)
        .filter(|job| job.status.as_ref().and_then(|s| s.phase) == Some(Phase::Blocked))
        .map(|job| ObjectRef::from_obj(job.as_ref()))
        .collect()
}

/// The jobs a template that appeared may let start: the Queued jobs of its namespace
/// that name it. (A template's edits reach the jobs that render after them; a
/// running or ended job is not woken.)
fn jobs_waiting_for(jobs: &Store<RenderJob>, template: &RenderTemplate) -> Vec<ObjectRef<RenderJob>> {
    let (namespace, name) = (template.namespace(), template.name_any());
    jobs.state()
        .iter()
        .filter(|job| job.namespace() == namespace)
        .filter(|job| job.spec.template_ref.as_ref().is_some_and(|r| r.name == name))
        .filter(|job| job.status.as_ref().and_then(|s| s.phase).is_none_or(|p| p == Phase::Queued))
        .map(|job| ObjectRef::from_obj(job.as_ref()))
        .collect()
}

/// The jobs a renderer that ended (or was deleted) may let start, in a namespace whose
/// account caps its renders: its oldest jobs waiting to start, new ones and retries
/// without a Pod, a few more than the cap (some may wait for something else).
fn jobs_waiting_for_share(jobs: &Store<RenderJob>, ctx: &Context, pod: &Pod) -> Vec<ObjectRef<RenderJob>> {
    let Some(namespace) = pod.namespace() else {
        return Vec::new();
    };
    let Some(cap) = ctx.account(&namespace).and_then(|account| account.spec.max_concurrent_renders) else {
        return Vec::new();
    };
    let mut waiting: Vec<_> = jobs
        .state()
        .into_iter()
        .filter(|job| job.namespace().as_deref() == Some(namespace.as_str()))
        .filter(|job| {
            let status = job.status.as_ref();
            match status.and_then(|s| s.phase) {
                None | Some(Phase::Queued) => true,
                Some(Phase::Rendering) => {
                    let attempt = status.map_or(0, |s| s.retry_count);
                    ctx.pod(&namespace, &super::pod::pod_name(&job.name_any(), attempt)).is_none()
                }
                Some(_) => false,
            }
        })
        .collect();
    waiting.sort_by_key(|job| job.metadata.creation_timestamp.as_ref().map(|t| t.0));
    let room = crate::lifecycle::share::cap(cap).saturating_mul(2);
    waiting.iter().take(room).map(|job| ObjectRef::from_obj(job.as_ref())).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transient_errors_back_off_exponentially_up_to_a_cap() {
        assert_eq!(backoff(1), Duration::from_secs(1));
        assert_eq!(backoff(2), Duration::from_secs(2));
        assert_eq!(backoff(5), Duration::from_secs(16));
        assert_eq!(backoff(40), ERROR_BACKOFF_MAX);
    }

    #[test]
    fn the_job_cache_keeps_the_spec_of_jobs_still_to_render_only() {
        let mut job: RenderJob = serde_json::from_value(serde_json::json!({
            "apiVersion": "folio.dev/v1alpha1", "kind": "RenderJob",
            "metadata": {"name": "invoice-1", "namespace": "acme",
                "annotations": {LAST_APPLIED: "{}", "team": "billing"},
                "managedFields": [{"manager": "kubectl", "operation": "Apply"}]},
            "spec": {"template": {"source": "= Invoice"}, "data": {"customer": "ACME"}},
            "status": {"phase": "Rendering"},
        }))
        .unwrap();
        trim_job(&mut job);
        assert_eq!(job.metadata.managed_fields, None);
        assert_eq!(job.annotations().keys().collect::<Vec<_>>(), ["team"]);
        assert!(job.spec.data.is_some() && job.spec.template.is_some(), "a job still to render keeps its input");
        job.status.as_mut().unwrap().phase = Some(Phase::Succeeded);
        trim_job(&mut job);
        assert!(job.spec.data.is_none() && job.spec.template.is_none(), "an ended job's input is not kept");
    }
}
