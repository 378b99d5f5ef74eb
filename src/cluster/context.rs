//! What every reconcile of the operator shares: the API client, the bucket, the watch
//! caches it reads from ([`Caches`]), what it wrote and waits to see in them
//! ([`Expectations`]), the accounts' write locks ([`Ledgers`]), how webhooks go out
//! ([`Delivery`]), and the kinds of error a reconcile stops with ([`Error`]).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use kube::runtime::events::{Event as KubeEvent, EventType, Recorder, Reporter};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::watcher;
use kube::{Api, Client, Resource, ResourceExt};
use tokio::sync::Mutex as AsyncMutex;

use super::metrics::OperatorMetrics;
use super::pod::RendererSettings;
use crate::prepare::LookupError;
use crate::resources::{RenderAccount, RenderJob, RenderTemplate, WebhookSpec};
use crate::storage::{S3Bucket, S3Error};
use crate::webhooks::{RetryPolicy, Sender};

/// The field manager of everything the operator writes.
pub const FIELD_MANAGER: &str = "folio-operator";
/// The finalizer that deletes a job's PDF before the job goes.
pub const FINALIZER: &str = "folio.dev/output";
/// Longest wait for the caches to be filled before a reconcile gives up (and is
/// retried): acting on an empty cache of Pods or accounts would start a second
/// renderer or charge nothing.
const CACHE_SYNC_TIMEOUT: Duration = Duration::from_secs(10);
/// How long an expected watch event is waited for before the cache is believed
/// anyway (a watch that lost the event relists, which also ends the wait).
const EXPECTATION_TIMEOUT: Duration = Duration::from_secs(30);
/// Default longest wait for a renderer Pod to be admitted, scheduled and started.
pub const DEFAULT_RENDERER_START_TIMEOUT: Duration = Duration::from_secs(120);
/// The API's limit of an Event's note, in bytes.
const MAX_EVENT_NOTE_BYTES: usize = 1024;

/// What kind of error stopped a reconcile: how it is retried, and its metric label.
#[derive(Clone, Copy, Debug, PartialEq, Eq, strum::IntoStaticStr)]
#[strum(serialize_all = "lowercase")]
pub enum ErrorKind {
    /// Another write came first (409, or a stale copy): retried shortly.
    Conflict,
    /// The API server failed or could not be reached, or the caches are not filled.
    Kube,
    /// The bucket could not be reached.
    Storage,
    /// A reference of the job could not be read.
    Lookup,
    /// Nothing can be built for the job: waits for a change of the job.
    Invalid,
    /// The API server refused the job's renderer (admission, quota, RBAC).
    Refused,
}

impl ErrorKind {
    /// The kind as a metric label.
    pub fn label(self) -> &'static str {
        self.into()
    }
}

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
    /// The watch caches are not filled yet (the operator just started).
    #[error("the operator's caches of Pods and RenderAccounts are not filled yet")]
    NotSynced,
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
    /// The error's kind, as a metric label and for [`error_policy`](super::controller::error_policy).
    pub fn kind(&self) -> ErrorKind {
        use kube::runtime::finalizer::Error as F;
        match self {
            Error::Kube(kube::Error::Api(status)) if status.code == 409 => ErrorKind::Conflict,
            Error::Stale => ErrorKind::Conflict,
            Error::Kube(_) | Error::NotSynced => ErrorKind::Kube,
            Error::Storage(_) => ErrorKind::Storage,
            Error::Lookup(_) => ErrorKind::Lookup,
            Error::Invalid(_) => ErrorKind::Invalid,
            Error::Refused { .. } => ErrorKind::Refused,
            Error::Finalizer(err) => match err.as_ref() {
                F::ApplyFailed(inner) | F::CleanupFailed(inner) => inner.kind(),
                F::AddFinalizer(_) | F::RemoveFinalizer(_) => ErrorKind::Kube,
                F::UnnamedObject | F::InvalidFinalizer => ErrorKind::Invalid,
            },
        }
    }

    /// Errors that no retry can heal.
    pub fn is_permanent(&self) -> bool {
        self.kind() == ErrorKind::Invalid
    }

    /// The latest time to try again, when the error sets one.
    pub(super) fn retry_within(&self) -> Option<Duration> {
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

/// The watch caches reconciles read from. The RenderJobs are the controller's own
/// store; the renderer Pods are the ones it owns (by label); the RenderAccounts wake
/// blocked jobs when they change; the RenderTemplates are read by name (a template
/// missing from the cache is read from the API server, since it may be newer than
/// the cache).
#[derive(Clone)]
pub struct Caches {
    /// The RenderJobs (without what no reconcile reads: see [`trim_job`](super::controller::trim_job)).
    pub jobs: Store<RenderJob>,
    /// The renderer Pods (metadata and status only).
    pub pods: Store<Pod>,
    /// The RenderAccounts.
    pub accounts: Store<RenderAccount>,
    /// The RenderTemplates.
    pub templates: Store<RenderTemplate>,
}

impl Caches {
    /// Caches that hold exactly these objects, filled and ready (for tests and tools
    /// that reconcile without watching).
    pub fn holding(
        jobs: Vec<RenderJob>,
        pods: Vec<Pod>,
        accounts: Vec<RenderAccount>,
        templates: Vec<RenderTemplate>,
    ) -> Caches {
        Caches { jobs: filled(jobs), pods: filled(pods), accounts: filled(accounts), templates: filled(templates) }
    }

    /// Wait until the Pods and accounts have been listed once.
    pub(super) async fn ready(&self) -> bool {
        let both = futures::future::join(self.pods.wait_until_ready(), self.accounts.wait_until_ready());
        matches!(tokio::time::timeout(CACHE_SYNC_TIMEOUT, both).await, Ok((Ok(()), Ok(()))))
    }
}

/// A ready store holding `objects`.
fn filled<K>(objects: Vec<K>) -> Store<K>
where
    K: Resource + Clone + 'static,
    K::DynamicType: Default + Eq + std::hash::Hash + Clone,
{
    let (store, mut writer) = reflector::store();
    writer.apply_watcher_event(&watcher::Event::Init);
    for object in objects {
        writer.apply_watcher_event(&watcher::Event::InitApply(object));
    }
    writer.apply_watcher_event(&watcher::Event::InitDone);
    store
}

/// A version of an object the operator wrote and its cache has not shown yet.
struct Expected {
    resource_version: String,
    since: Instant,
}

/// How two `resourceVersion`s of one kind of object compare: as the positive decimal
/// integers the API server guarantees since Kubernetes 1.35 (KEP-5504, comparable
/// resource versions; the rule of client-go's `CompareResourceVersion`). `None` when
/// either is not one (an older or unusual server): then only equality is known.
pub fn compare_versions(a: &str, b: &str) -> Option<std::cmp::Ordering> {
    let valid = |v: &str| !v.is_empty() && !v.starts_with('0') && v.bytes().all(|b| b.is_ascii_digit());
    if !valid(a) || !valid(b) {
        return None;
    }
    Some(a.len().cmp(&b.len()).then_with(|| a.cmp(b)))
}

/// Whether the version `cached` is `written` or a later one.
fn shows(cached: &str, written: &str) -> bool {
    match compare_versions(cached, written) {
        Some(order) => order.is_ge(),
        None => cached == written,
    }
}

/// What the operator wrote and waits to see in a cache, per object (the pattern of
/// Kubernetes' own controllers): while a cache lags behind the operator's own write,
/// its copy is older than what the operator knows, and acting on it would repeat
/// work (apply the Pod again, write a status that is refused with a conflict). The
/// cache has caught up once it holds the written version or a later one (another
/// writer, such as the scheduler binding a Pod, may come right after).
pub struct Expectations<K: Resource> {
    pending: Mutex<HashMap<ObjectRef<K>, Expected>>,
}

impl<K> Default for Expectations<K>
where
    K: Resource,
    K::DynamicType: Eq + std::hash::Hash,
{
    fn default() -> Self {
        Expectations { pending: Mutex::new(HashMap::new()) }
    }
}

impl<K> Expectations<K>
where
    K: Resource<DynamicType = ()> + Clone + 'static,
{
    fn lock(&self) -> MutexGuard<'_, HashMap<ObjectRef<K>, Expected>> {
        self.pending.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Wait for `written` (as the API server answered a write) to reach `cache`.
    /// Taken under the same lock as [`Expectations::observe`], after the cache was
    /// updated, so an event that arrived before this call is not waited for.
    pub fn expect(&self, cache: &Store<K>, written: &K) {
        let Some(version) = written.meta().resource_version.clone() else {
            return;
        };
        let key = ObjectRef::from_obj(written);
        let mut pending = self.lock();
        if cache
            .get(&key)
            .and_then(|cached| cached.meta().resource_version.clone())
            .is_some_and(|v| shows(&v, &version))
        {
            return;
        }
        pending.insert(key, Expected { resource_version: version, since: Instant::now() });
    }

    /// A watch event, once the cache holds it.
    pub fn observe(&self, event: &watcher::Event<K>) {
        match event {
            watcher::Event::Apply(object) => {
                let key = ObjectRef::from_obj(object);
                let mut pending = self.lock();
                let version = object.meta().resource_version.as_deref().unwrap_or_default();
                if pending.get(&key).is_some_and(|expected| shows(version, &expected.resource_version)) {
                    pending.remove(&key);
                }
            }
            watcher::Event::Delete(object) => {
                self.lock().remove(&ObjectRef::from_obj(object));
            }
            // A relist replaced the cache with the objects as they are now.
            watcher::Event::InitDone => self.lock().clear(),
            watcher::Event::Init | watcher::Event::InitApply(_) => {}
        }
    }

    /// The objects of `namespace` written and not shown by the cache yet.
    pub fn pending_in(&self, namespace: &str) -> Vec<ObjectRef<K>> {
        let pending = self.lock();
        pending
            .iter()
            .filter(|(key, expected)| {
                key.namespace.as_deref() == Some(namespace) && expected.since.elapsed() <= EXPECTATION_TIMEOUT
            })
            .map(|(key, _)| key.clone())
            .collect()
    }

    /// Whether the cache has not shown the operator's last write of `key` yet.
    pub fn pending(&self, key: &ObjectRef<K>) -> bool {
        let mut pending = self.lock();
        match pending.get(key) {
            Some(expected) if expected.since.elapsed() > EXPECTATION_TIMEOUT => {
                tracing::warn!(object = %key, version = %expected.resource_version, "the watch never showed the operator's write; reading the cache as it is");
                pending.remove(key);
                false
            }
            Some(_) => true,
            None => false,
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
    /// The watch caches (filled by [`run`](super::controller::run), or given by [`Context::with_caches`]).
    pub(super) caches: OnceLock<Caches>,
    /// Job status writes the job cache has not shown yet.
    pub(super) written_jobs: Expectations<RenderJob>,
    /// Renderer Pods applied that the Pod cache has not shown yet.
    pub(super) applied_pods: Expectations<Pod>,
    /// Input ConfigMaps deleted, so that none is deleted twice.
    deleted_inputs: Mutex<HashMap<String, Instant>>,
    /// The RenderAccounts' writes, one at a time per namespace.
    pub(super) ledgers: Ledgers,
    /// Renderer starts under way per namespace whose account caps its renders, so
    /// that two reconciles never both take the last place.
    starting: Mutex<HashMap<String, usize>>,
    /// Consecutive transient errors per job, for exponential backoff.
    failures: Mutex<HashMap<ObjectRef<RenderJob>, u32>>,
    /// Longest wait for an attempt's renderer Pod to be admitted and to start.
    pub renderer_start_timeout: Duration,
    /// The one namespace watched, or none for all.
    watch_namespace: Option<String>,
}

impl Context {
    /// A context that reconciles without an operator process around it (tests,
    /// benchmarks, tools): the client and bucket given, caches that hold exactly
    /// `caches`, fixed renderer settings (`folio:test`, 100m/1 CPU, 128Mi/512Mi).
    pub fn test(client: Client, bucket: S3Bucket, caches: Caches) -> Context {
        let settings = RendererSettings {
            image: "folio:test".into(),
            image_pull_policy: "IfNotPresent".into(),
            cpu_request: "100m".into(),
            cpu_limit: "1".into(),
            memory_request: "128Mi".into(),
            memory_limit: "512Mi".into(),
            chromium_image: None,
            allow_private_targets: false,
        };
        Context::new(client, bucket, settings, Arc::default(), None).with_caches(caches)
    }

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
            caches: OnceLock::new(),
            written_jobs: Expectations::default(),
            applied_pods: Expectations::default(),
            deleted_inputs: Mutex::new(HashMap::new()),
            ledgers: Ledgers::default(),
            starting: Mutex::new(HashMap::new()),
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

    /// Read from `caches` instead of the ones [`run`](super::controller::run) fills (tests, tools).
    pub fn with_caches(self, caches: Caches) -> Context {
        let _ = self.caches.set(caches);
        self
    }

    /// The watch caches; empty ones when nothing fills them.
    pub fn caches(&self) -> &Caches {
        self.caches.get_or_init(|| Caches::holding(Vec::new(), Vec::new(), Vec::new(), Vec::new()))
    }

    /// An API over the watched namespaces: one, or all of them.
    pub(super) fn watched<K>(&self) -> Api<K>
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

    /// The namespace's RenderAccount (the first by name when there are several), from
    /// the cache of accounts.
    pub fn account(&self, namespace: &str) -> Option<Arc<RenderAccount>> {
        let accounts = self.caches().accounts.state();
        accounts.into_iter().filter(|a| a.namespace().as_deref() == Some(namespace)).min_by_key(|a| a.name_any())
    }

    /// The default webhook of `namespace`'s account, from the cache of accounts.
    pub fn account_webhook(&self, namespace: &str) -> Option<WebhookSpec> {
        self.account(namespace)?.spec.webhook.clone()
    }

    /// The renderer Pod `name` of `namespace` as the Pod cache holds it.
    pub fn pod(&self, namespace: &str, name: &str) -> Option<Arc<Pod>> {
        self.caches().pods.get(&ObjectRef::new(name).within(namespace))
    }

    /// A place among `namespace`'s `cap` renderers for `job`, or how many run (none
    /// left). Counted: the renderer Pods that have not ended, other than `job`'s, as
    /// the cache shows them; those applied that it does not show yet; and the starts
    /// under way. Only the count is locked, not the start.
    pub(super) fn renderer_slot(
        &self,
        namespace: &str,
        job: &RenderJob,
        cap: usize,
    ) -> Result<RendererSlot<'_>, usize> {
        let pods = &self.caches().pods;
        let mut starting = self.starting.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let cached = pods
            .state()
            .into_iter()
            .filter(|pod| pod.namespace().as_deref() == Some(namespace))
            .filter(|pod| !super::pod::owned_by_job(pod, job))
            .filter(|pod| !super::pod::has_ended(pod))
            .count();
        let unseen = self.applied_pods.pending_in(namespace).into_iter().filter(|key| pods.get(key).is_none()).count();
        let under_way = starting.entry(namespace.to_owned()).or_default();
        let running = cached + unseen + *under_way;
        if running >= cap {
            return Err(running);
        }
        *under_way += 1;
        Ok(RendererSlot { starting: &self.starting, namespace: namespace.to_owned() })
    }

    /// Remember that the API server answered a status write of a job with `written`.
    pub(super) fn wrote_job(&self, written: &RenderJob) {
        self.written_jobs.expect(&self.caches().jobs, written);
    }

    /// Remember that the API server answered the apply of a renderer Pod with `applied`.
    pub(super) fn applied_pod(&self, applied: &Pod) {
        self.applied_pods.expect(&self.caches().pods, applied);
    }

    /// Whether the input ConfigMap `namespace/name` was deleted by this operator
    /// already; records it as deleted from now on.
    pub(super) fn input_deleted_before(&self, namespace: &str, name: &str) -> bool {
        let mut deleted = self.deleted_inputs.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        // The same name is used again only by a job of the same name made anew.
        deleted.retain(|_, at| at.elapsed() < Duration::from_secs(600));
        deleted.insert(format!("{namespace}/{name}"), Instant::now()).is_some()
    }

    /// Forget that the input ConfigMap `namespace/name` was deleted (the delete failed).
    pub(super) fn input_not_deleted(&self, namespace: &str, name: &str) {
        let mut deleted = self.deleted_inputs.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        deleted.remove(&format!("{namespace}/{name}"));
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

    pub(super) fn failures(&self) -> std::sync::MutexGuard<'_, HashMap<ObjectRef<RenderJob>, u32>> {
        self.failures.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Whether a cache lags behind the operator's own write of `job` or of its current
    /// renderer Pod.
    pub(super) fn behind_own_writes(&self, job: &RenderJob) -> bool {
        if self.written_jobs.pending(&ObjectRef::from_obj(job)) {
            return true;
        }
        let (Some(namespace), Some(name)) = (job.metadata.namespace.as_deref(), job.metadata.name.as_deref()) else {
            return false;
        };
        let attempt = job.status.as_ref().map_or(0, |s| s.retry_count);
        let pod = super::pod::pod_name(name, attempt);
        self.applied_pods.pending(&ObjectRef::new(&pod).within(namespace))
    }
}

/// `note` as an Event's note: the API refuses notes over 1,024 bytes (not characters).
fn event_note(note: &str) -> String {
    crate::lifecycle::status::cut_to_bytes(note, MAX_EVENT_NOTE_BYTES)
}

/// What the operator delivers webhooks with.
pub struct Delivery {
    /// Sends one attempt, refusing private targets unless allowed.
    pub sender: Sender,
    /// When to retry and when to give up.
    pub retry: RetryPolicy,
}

/// The accounts' writes, one namespace at a time: per namespace, a lock held across
/// a decision and its write, and the account as the API server answered the
/// operator's last write.
#[derive(Default)]
pub struct Ledgers {
    namespaces: Mutex<HashMap<String, Arc<AsyncMutex<Option<RenderAccount>>>>>,
}

impl Ledgers {
    /// The lock (and last written account) of `namespace`.
    pub fn of(&self, namespace: &str) -> Arc<AsyncMutex<Option<RenderAccount>>> {
        let mut namespaces = self.namespaces.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        namespaces.entry(namespace.to_owned()).or_default().clone()
    }
}

/// A renderer start taken from its namespace's share; given back when dropped, by
/// which time the Pod it started (if any) is counted from the Pod cache or the
/// operator's own applies.
pub(super) struct RendererSlot<'a> {
    starting: &'a Mutex<HashMap<String, usize>>,
    namespace: String,
}

impl Drop for RendererSlot<'_> {
    fn drop(&mut self) {
        let mut starting = self.starting.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(count) = starting.get_mut(&self.namespace) {
            *count = count.saturating_sub(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conflicts_heal_and_invalid_jobs_wait_for_a_change() {
        let conflict =
            Error::Kube(kube::Error::Api(Box::new(kube::core::Status::failure("stale", "Conflict").with_code(409))));
        assert_eq!(conflict.kind(), ErrorKind::Conflict);
        assert!(!conflict.is_permanent());
        assert!(Error::Invalid("no uid".into()).is_permanent());
        let wrapped =
            Error::Finalizer(Box::new(kube::runtime::finalizer::Error::ApplyFailed(Error::Invalid("x".into()))));
        assert_eq!(wrapped.kind(), ErrorKind::Invalid);
    }

    #[test]
    fn a_refused_renderer_is_transient_and_retried_by_its_start_timeout_at_the_latest() {
        let refused = Error::Refused { message: "forbidden".into(), retry_within: Duration::from_secs(3) };
        let wrapped = Error::Finalizer(Box::new(kube::runtime::finalizer::Error::ApplyFailed(refused)));
        assert_eq!((wrapped.kind(), wrapped.kind().label()), (ErrorKind::Refused, "refused"));
        assert!(!wrapped.is_permanent());
        assert_eq!(wrapped.retry_within(), Some(Duration::from_secs(3)));
        assert_eq!(Error::Invalid("x".into()).retry_within(), None);
    }

    fn pod(version: &str) -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "invoice-1-render-0", "namespace": "acme", "resourceVersion": version},
        }))
        .unwrap()
    }

    #[test]
    fn an_expected_write_is_pending_until_its_watch_event_or_a_relist() {
        let key = ObjectRef::new("invoice-1-render-0").within("acme");
        let expectations = Expectations::<Pod>::default();
        let (cache, mut writer) = reflector::store();
        writer.apply_watcher_event(&watcher::Event::Apply(pod("5")));
        expectations.expect(&cache, &pod("6"));
        assert!(expectations.pending(&key));
        // An older event, or another object's, does not end the wait.
        expectations.observe(&watcher::Event::Apply(pod("5")));
        assert!(expectations.pending(&key));
        writer.apply_watcher_event(&watcher::Event::Apply(pod("6")));
        expectations.observe(&watcher::Event::Apply(pod("6")));
        assert!(!expectations.pending(&key));

        // An event that came before the write's answer was handled is not waited for,
        // nor one the cache has gone past already (the scheduler bound the Pod).
        writer.apply_watcher_event(&watcher::Event::Apply(pod("7")));
        expectations.expect(&cache, &pod("7"));
        assert!(!expectations.pending(&key));
        writer.apply_watcher_event(&watcher::Event::Apply(pod("12")));
        expectations.expect(&cache, &pod("11"));
        assert!(!expectations.pending(&key));
        // A later version than the one written ends the wait too.
        expectations.expect(&cache, &pod("13"));
        writer.apply_watcher_event(&watcher::Event::Apply(pod("14")));
        expectations.observe(&watcher::Event::Apply(pod("14")));
        assert!(!expectations.pending(&key));

        // A relist ends every wait: the cache holds the objects as they are now.
        expectations.expect(&cache, &pod("20"));
        assert!(expectations.pending(&key));
        expectations.observe(&watcher::Event::InitDone);
        assert!(!expectations.pending(&key));
    }

    #[test]
    fn resource_versions_compare_as_integers_of_any_length_or_not_at_all() {
        use std::cmp::Ordering::*;
        assert_eq!(compare_versions("9", "10"), Some(Less));
        assert_eq!(compare_versions("123456789012345678901234", "123456789012345678901233"), Some(Greater));
        assert_eq!(compare_versions("42", "42"), Some(Equal));
        for odd in ["", "0", "042", "12a", "-3"] {
            assert_eq!(compare_versions(odd, "5"), None, "{odd:?}");
        }
        assert!(shows("10", "9") && !shows("9", "10"));
        assert!(shows("opaque", "opaque") && !shows("other", "opaque"), "only equality without numbers");
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
