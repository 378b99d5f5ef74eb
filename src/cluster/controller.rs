//! The RenderJob controller: a kube-runtime [`Controller`] that owns the renderer
//! Pods, is woken by their changes and by RenderAccount changes (a top-up frees
//! blocked jobs), and reconciles one job at a time through [`job::apply`] inside
//! the finalizer that removes the stored PDF when a job is deleted.
//!
//! Errors carry a kind: a conflict or an unreachable API server or bucket heals by
//! itself and is retried with exponential backoff per job; so is a renderer the API
//! server refuses (admission, quota, RBAC: a platform team may fix it), which the
//! job shows as a condition and a Warning Event, until the renderer start timeout
//! fails the attempt; a job the controller can never build anything for waits for a
//! change of the job.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use futures::{FutureExt, StreamExt};
use k8s_openapi::api::core::v1::Pod;
use kube::runtime::controller::{Action, Config as ControllerConfig, Controller};
use kube::runtime::events::{Event as KubeEvent, EventType, Recorder, Reporter};
use kube::runtime::finalizer::{Event as Finalizer, finalizer};
use kube::runtime::reflector::{self, ObjectRef, Store, reflector};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource, ResourceExt};

use super::job;
use super::metrics::OperatorMetrics;
use super::pod::RendererSettings;
use super::webhooks::Delivery;
use crate::lifecycle::Phase;
use crate::prepare::LookupError;
use crate::resources::{RenderAccount, RenderJob, WebhookSpec};
use crate::storage::{S3Bucket, S3Error};

/// The field manager of everything the operator writes.
pub const FIELD_MANAGER: &str = "folio-operator";
/// The finalizer that deletes a job's PDF before the job goes.
pub const FINALIZER: &str = "folio.dev/output";
/// First delay after a transient error; doubles per consecutive error of a job.
const ERROR_BACKOFF_BASE: Duration = Duration::from_secs(1);
/// Longest wait for the accounts cache before reconciling.
const ACCOUNTS_SYNC_TIMEOUT: Duration = Duration::from_secs(10);
/// Delay after a write conflict (times the consecutive conflicts).
const CONFLICT_RETRY: Duration = Duration::from_millis(100);
/// Longest delay after transient errors.
const ERROR_BACKOFF_MAX: Duration = Duration::from_secs(300);
/// Default longest wait for a renderer Pod to be admitted, scheduled and started.
pub const DEFAULT_RENDERER_START_TIMEOUT: Duration = Duration::from_secs(120);
/// The API's limit of an Event's note, in bytes.
const MAX_EVENT_NOTE_BYTES: usize = 1024;

/// Why a reconcile stopped.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The API server refused or could not be reached.
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    /// The bucket could not be reached.
    #[error("object storage: {0}")]
    Storage(#[from] S3Error),
    /// A reference of the job could not be read.
    #[error("{0}")]
    Lookup(#[from] LookupError),
    /// The job changed since this reconcile read it; it runs again on the new copy.
    #[error("the RenderJob changed meanwhile")]
    Stale,
    /// The job lacks what any object built for it needs (a bug or a hand-made object).
    #[error("the RenderJob cannot be reconciled: {0}")]
    Invalid(String),
    /// The API server refused the job's renderer (shown on the job); tried again with
    /// backoff, at the latest after `retry_within`, when the start timeout ends.
    #[error("{message}")]
    Refused {
        /// What was refused, and the server's message.
        message: String,
        /// Time left until the attempt fails for good.
        retry_within: Duration,
    },
    /// The finalizer could not be added or removed, or the step inside it failed.
    #[error("{0}")]
    Finalizer(#[source] Box<kube::runtime::finalizer::Error<Error>>),
}

impl Error {
    /// The error's kind, as a metric label and for [`error_policy`].
    pub fn kind(&self) -> &'static str {
        use kube::runtime::finalizer::Error as F;
        match self {
            Error::Kube(kube::Error::Api(status)) if status.code == 409 => "conflict",
            Error::Stale => "conflict",
            Error::Kube(_) => "kube",
            Error::Storage(_) => "storage",
            Error::Lookup(_) => "lookup",
            Error::Invalid(_) => "invalid",
            Error::Refused { .. } => "refused",
            Error::Finalizer(err) => match err.as_ref() {
                F::ApplyFailed(inner) | F::CleanupFailed(inner) => inner.kind(),
                F::AddFinalizer(_) | F::RemoveFinalizer(_) => "kube",
                F::UnnamedObject | F::InvalidFinalizer => "invalid",
            },
        }
    }

    /// Errors that no retry can heal.
    pub fn is_permanent(&self) -> bool {
        self.kind() == "invalid"
    }

    /// The latest time to try again, when the error sets one.
    fn retry_within(&self) -> Option<Duration> {
        use kube::runtime::finalizer::Error as F;
        match self {
            Error::Refused { retry_within, .. } => Some(*retry_within),
            Error::Finalizer(err) => match err.as_ref() {
                F::ApplyFailed(inner) | F::CleanupFailed(inner) => inner.retry_within(),
                _ => None,
            },
            _ => None,
        }
    }
}

/// What every reconcile needs.
pub struct Context {
    /// The API client.
    pub client: Client,
    /// The bucket of the PDFs.
    pub bucket: S3Bucket,
    /// What goes into every renderer Pod.
    pub settings: RendererSettings,
    /// Publishes Kubernetes Events about jobs.
    pub recorder: Recorder,
    /// The operator's metrics.
    pub metrics: Arc<OperatorMetrics>,
    /// How webhooks go out (none: the operator delivers no webhooks).
    pub webhooks: Option<Delivery>,
    /// The RenderAccounts, for their default webhooks (filled by [`run`]).
    accounts: OnceLock<Store<RenderAccount>>,
    /// Consecutive transient errors per job, for exponential backoff.
    failures: Mutex<HashMap<ObjectRef<RenderJob>, u32>>,
    /// Longest wait for an attempt's renderer Pod to be admitted and to start.
    pub renderer_start_timeout: Duration,
    /// The one namespace watched, or none for all.
    watch_namespace: Option<String>,
}

impl Context {
    /// A context for the operator called `instance` (its Pod name).
    pub fn new(
        client: Client,
        bucket: S3Bucket,
        settings: RendererSettings,
        metrics: Arc<OperatorMetrics>,
        instance: Option<String>,
    ) -> Context {
        let reporter = Reporter { controller: FIELD_MANAGER.into(), instance };
        let recorder = Recorder::new(client.clone(), reporter);
        Context {
            client,
            bucket,
            settings,
            recorder,
            metrics,
            webhooks: None,
            accounts: OnceLock::new(),
            failures: Mutex::new(HashMap::new()),
            renderer_start_timeout: DEFAULT_RENDERER_START_TIMEOUT,
            watch_namespace: None,
        }
    }

    /// Give up on a renderer Pod not admitted or not started after `timeout`.
    pub fn with_renderer_start_timeout(mut self, timeout: Duration) -> Context {
        self.renderer_start_timeout = timeout;
        self
    }

    /// Watch only `namespace` (none: every namespace).
    pub fn watching(mut self, namespace: Option<String>) -> Context {
        self.watch_namespace = namespace;
        self
    }

    /// An API over the watched namespaces: one, or all of them.
    fn watched<K>(&self) -> Api<K>
    where
        K: Resource<Scope = kube::core::NamespaceResourceScope>,
        K::DynamicType: Default,
    {
        match &self.watch_namespace {
            Some(namespace) => Api::namespaced(self.client.clone(), namespace),
            None => Api::all(self.client.clone()),
        }
    }

    /// Deliver webhooks with `delivery`.
    pub fn with_webhooks(mut self, delivery: Delivery) -> Context {
        self.webhooks = Some(delivery);
        self
    }

    /// The default webhook of `namespace`'s account, from the cache of accounts.
    pub fn account_webhook(&self, namespace: &str) -> Option<WebhookSpec> {
        let accounts = self.accounts.get()?.state();
        let mut in_namespace: Vec<_> =
            accounts.iter().filter(|a| a.namespace().as_deref() == Some(namespace)).collect();
        in_namespace.sort_by_key(|a| a.name_any());
        in_namespace.first()?.spec.webhook.clone()
    }

    /// Publish an Event about `job`; a failure to publish is logged, never fatal.
    pub async fn publish(&self, job: &RenderJob, warning: bool, reason: &str, note: String) {
        let event = KubeEvent {
            type_: if warning { EventType::Warning } else { EventType::Normal },
            reason: reason.into(),
            note: Some(event_note(&note)),
            action: "Reconcile".into(),
            secondary: None,
        };
        if let Err(err) = self.recorder.publish(&event, &job.object_ref(&())).await {
            tracing::debug!(error = %err, job = %job.name_any(), "publishing an event failed");
        }
    }

    fn failures(&self) -> std::sync::MutexGuard<'_, HashMap<ObjectRef<RenderJob>, u32>> {
        self.failures.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// `note` as an Event's note: the API refuses notes over 1,024 bytes (not characters).
fn event_note(note: &str) -> String {
    crate::transitions::cut_to_bytes(note, MAX_EVENT_NOTE_BYTES)
}

/// Reconcile one job: the finalizer first, then [`job::apply`] or [`job::cleanup`].
pub async fn reconcile(job: Arc<RenderJob>, ctx: Arc<Context>) -> Result<Action, Error> {
    let started = Instant::now();
    let namespace = job.namespace().ok_or_else(|| Error::Invalid("the RenderJob has no namespace".into()))?;
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
    ctx.metrics.reconciled(started.elapsed(), outcome.as_ref().err().map(Error::kind));
    if outcome.is_ok() {
        ctx.failures().remove(&key);
    }
    outcome
}

/// After a failed reconcile: wait for a change when retrying cannot help, else back
/// off exponentially per job.
pub fn error_policy(job: Arc<RenderJob>, err: &Error, ctx: Arc<Context>) -> Action {
    tracing::warn!(job = %job.name_any(), namespace = ?job.namespace(), kind = err.kind(), error = %crate::error_chain(err), "reconcile failed");
    if err.is_permanent() {
        return Action::await_change();
    }
    let mut failures = ctx.failures();
    let count = failures.entry(ObjectRef::from_obj(job.as_ref())).or_insert(0);
    *count += 1;
    if err.kind() == "conflict" {
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
    ERROR_BACKOFF_BASE.saturating_mul(1 << count.saturating_sub(1).min(16)).min(ERROR_BACKOFF_MAX)
}

/// Run the controller until `shutdown` resolves; reconciles in flight finish first.
pub async fn run(ctx: Arc<Context>, concurrency: u16, shutdown: impl Future<Output = ()> + Send + Sync + 'static) {
    let controller = Controller::new(ctx.watched::<RenderJob>(), watcher::Config::default());
    let jobs = controller.store();
    ctx.metrics.watch_jobs(jobs.clone());
    // A cache of the accounts for their default webhooks; `watches` below wakes the
    // blocked jobs of an account that changes.
    let (accounts, accounts_writer) = reflector::store();
    let _ = ctx.accounts.set(accounts.clone());
    let account_cache =
        reflector(accounts_writer, watcher::watcher(ctx.watched::<RenderAccount>(), watcher::Config::default()))
            .default_backoff()
            .for_each(|_| async {});
    let account_cache = tokio::spawn(account_cache);
    // Phase changes queue the account's default webhook: wait for the accounts first.
    let shutdown = shutdown.boxed().shared();
    tokio::select! {
        synced = tokio::time::timeout(ACCOUNTS_SYNC_TIMEOUT, accounts.wait_until_ready()) => {
            if synced.is_err() {
                tracing::warn!("the RenderAccounts are not listed yet; default webhooks may be missed until they are");
            }
        }
        _ = shutdown.clone() => {
            account_cache.abort();
            return;
        }
    }
    controller
        .owns(ctx.watched::<Pod>(), watcher::Config::default().labels(super::pod::RENDERER_SELECTOR))
        .watches(ctx.watched::<RenderAccount>(), watcher::Config::default(), move |account| {
            blocked_jobs_of(&jobs, &account)
        })
        .with_config(ControllerConfig::default().concurrency(concurrency))
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, ctx)
        .for_each(|outcome| async move {
            if let Err(err) = outcome {
                tracing::debug!(error = %err, "controller event");
            }
        })
        .await;
    account_cache.abort();
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
    fn conflicts_heal_and_invalid_jobs_wait_for_a_change() {
        let conflict =
            Error::Kube(kube::Error::Api(Box::new(kube::core::Status::failure("stale", "Conflict").with_code(409))));
        assert_eq!(conflict.kind(), "conflict");
        assert!(!conflict.is_permanent());
        assert!(Error::Invalid("no uid".into()).is_permanent());
        let wrapped =
            Error::Finalizer(Box::new(kube::runtime::finalizer::Error::ApplyFailed(Error::Invalid("x".into()))));
        assert_eq!(wrapped.kind(), "invalid");
    }

    #[test]
    fn a_refused_renderer_is_transient_and_retried_by_its_start_timeout_at_the_latest() {
        let refused = Error::Refused { message: "forbidden".into(), retry_within: Duration::from_secs(3) };
        let wrapped = Error::Finalizer(Box::new(kube::runtime::finalizer::Error::ApplyFailed(refused)));
        assert_eq!(wrapped.kind(), "refused");
        assert!(!wrapped.is_permanent());
        assert_eq!(wrapped.retry_within(), Some(Duration::from_secs(3)));
        assert_eq!(Error::Invalid("x".into()).retry_within(), None);
    }

    #[test]
    fn event_notes_fit_the_apis_byte_limit_on_a_character_boundary() {
        let ascii = "x".repeat(5000);
        assert_eq!(event_note(&ascii).len(), MAX_EVENT_NOTE_BYTES);
        // 1,000 characters of two and three bytes each: 1,000 characters are too many bytes.
        for text in ["é".repeat(1000), "€".repeat(1000), format!("a{}", "€".repeat(400))] {
            let note = event_note(&text);
            assert!(note.len() <= MAX_EVENT_NOTE_BYTES, "{} bytes", note.len());
            assert!(note.ends_with('…'));
            assert!(text.starts_with(note.trim_end_matches('…')));
        }
        assert_eq!(event_note("attempt 0 started"), "attempt 0 started");
    }
}
