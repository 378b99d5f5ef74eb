//! The reflector caches the facade reads from: one cluster-wide watch per kind
//! (RenderJob, RenderTemplate, RenderAccount, RenderAPIKey and RenderShare), so a GET,
//! a page of the render log or an API key's check costs no apiserver call. No Secret
//! is watched: keys and share links are kinds of folio's own, so that `folio api`
//! needs no read access to the cluster's Secrets.
//!
//! Each cache also counts the events it applied, on a `watch` channel: a handler that
//! just wrote an object waits on it until the cache shows the write (or a short time
//! passes), so the next request reads what the last one wrote.

use std::hash::Hash;
use std::time::Duration;

use futures::{FutureExt, StreamExt};
use kube::runtime::reflector::{self, Lookup, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource};
use serde::de::DeserializeOwned;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::objects::LAST_APPLIED_ANNOTATION;
use crate::resources::{RenderAccount, RenderApiKey, RenderJob, RenderShare, RenderTemplate};

/// A reflector store and a counter of the events applied to it.
#[derive(Clone)]
pub struct Cache<K: Lookup + Clone + 'static>
where
    K::DynamicType: Eq + Hash + Clone,
{
    store: Store<K>,
    changes: watch::Receiver<u64>,
}

impl<K> Cache<K>
where
    K: Resource<DynamicType = ()> + Lookup<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug + Send + Sync,
{
    /// Watch `api` with `config` into a new cache; the returned task keeps it current
    /// (retrying with backoff when the watch fails) until it is aborted.
    pub fn watch(api: Api<K>, config: watcher::Config, kind: &'static str) -> (Cache<K>, JoinHandle<()>) {
        let (store, writer) = reflector::store();
        let (changed, changes) = watch::channel(0u64);
        let events = watcher(api, config).default_backoff().modify(|object: &mut K| {
            if let Some(annotations) = object.meta_mut().annotations.as_mut() {
                annotations.remove(LAST_APPLIED_ANNOTATION);
            }
        });
        let task = tokio::spawn(async move {
            let mut events = std::pin::pin!(reflector::reflector(writer, events));
            while let Some(event) = events.next().await {
                match event {
                    Ok(_) => changed.send_modify(|n| *n = n.wrapping_add(1)),
                    Err(err) => tracing::warn!(kind, error = %err, "watch failed; retrying"),
                }
            }
        });
        (Cache { store, changes }, task)
    }

    /// A cache fed by hand through `writer` (tests); bump the returned sender after
    /// each event so that waiters look again.
    #[cfg(test)]
    pub fn detached() -> (Cache<K>, reflector::store::Writer<K>, watch::Sender<u64>) {
        let (store, writer) = reflector::store();
        let (changed, changes) = watch::channel(0u64);
        (Cache { store, changes }, writer, changed)
    }

    /// The reader.
    pub fn store(&self) -> &Store<K> {
        &self.store
    }

    /// The cached object `name` in `namespace`.
    pub fn get(&self, namespace: &str, name: &str) -> Option<std::sync::Arc<K>> {
        self.store.get(&ObjectRef::new(name).within(namespace))
    }

    /// Whether the first complete list has arrived.
    pub fn is_synced(&self) -> bool {
        self.store.wait_until_ready().now_or_never().is_some_and(|ready| ready.is_ok())
    }

    /// Wait until `done` holds for the store, at most `timeout`; whether it held.
    pub async fn wait_until(&self, timeout: Duration, done: impl Fn(&Store<K>) -> bool) -> bool {
        let mut changes = self.changes.clone();
        let waited = tokio::time::timeout(timeout, async {
            loop {
                changes.borrow_and_update();
                if done(&self.store) {
                    return true;
                }
                if changes.changed().await.is_err() {
                    return done(&self.store);
                }
            }
        });
        waited.await.unwrap_or_else(|_| done(&self.store))
    }

    /// Wait (at most `timeout`) until the cache shows `written` at its resourceVersion or
    /// a later one, so the next request reads it from there; whether it did.
    pub async fn wait_for_write(&self, timeout: Duration, written: &K) -> bool {
        let key = ObjectRef::from_obj(written);
        let wanted = written.meta().resource_version.clone();
        self.wait_until(timeout, |s| {
            s.get(&key).is_some_and(|c| {
                super::objects::version_reached(c.meta().resource_version.as_deref(), wanted.as_deref())
            })
        })
        .await
    }

    /// Wait (at most `timeout`) until the cache no longer shows `name` in `namespace` as
    /// live (gone, or being deleted).
    pub async fn wait_for_removal(&self, timeout: Duration, namespace: &str, name: &str) -> bool {
        let key = ObjectRef::new(name).within(namespace);
        self.wait_until(timeout, |s| s.get(&key).is_none_or(|c| !super::objects::is_live(c.meta()))).await
    }
}

/// Every cache of the facade, and the tasks that keep them current.
pub struct Caches {
    /// RenderJobs of every namespace.
    pub jobs: Cache<RenderJob>,
    /// RenderTemplates of every namespace.
    pub templates: Cache<RenderTemplate>,
    /// RenderAccounts of every namespace.
    pub accounts: Cache<RenderAccount>,
    /// RenderAPIKeys of every namespace.
    pub keys: Cache<RenderApiKey>,
    /// RenderShares of every namespace.
    pub shares: Cache<RenderShare>,
    tasks: Vec<JoinHandle<()>>,
}

impl Caches {
    /// Start watching every kind, cluster-wide.
    pub fn watch(client: &Client) -> Caches {
        let plain = watcher::Config::default;
        let (jobs, jobs_task) = Cache::watch(Api::all(client.clone()), plain(), "RenderJob");
        let (templates, templates_task) = Cache::watch(Api::all(client.clone()), plain(), "RenderTemplate");
        let (accounts, accounts_task) = Cache::watch(Api::all(client.clone()), plain(), "RenderAccount");
        let (keys, keys_task) = Cache::watch(Api::all(client.clone()), plain(), "RenderAPIKey");
        let (shares, shares_task) = Cache::watch(Api::all(client.clone()), plain(), "RenderShare");
        let tasks = vec![jobs_task, templates_task, accounts_task, keys_task, shares_task];
        Caches { jobs, templates, accounts, keys, shares, tasks }
    }

    /// Caches fed by hand (tests).
    #[cfg(test)]
    pub fn from_parts(
        jobs: Cache<RenderJob>,
        templates: Cache<RenderTemplate>,
        accounts: Cache<RenderAccount>,
        keys: Cache<RenderApiKey>,
        shares: Cache<RenderShare>,
    ) -> Caches {
        Caches { jobs, templates, accounts, keys, shares, tasks: Vec::new() }
    }

    /// The kinds whose first list has not arrived yet.
    pub fn not_synced(&self) -> Vec<&'static str> {
        let synced = [
            ("RenderJob", self.jobs.is_synced()),
            ("RenderTemplate", self.templates.is_synced()),
            ("RenderAccount", self.accounts.is_synced()),
            ("RenderAPIKey", self.keys.is_synced()),
            ("RenderShare", self.shares.is_synced()),
        ];
        synced.into_iter().filter(|(_, ok)| !ok).map(|(kind, _)| kind).collect()
    }
}

impl Drop for Caches {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}
