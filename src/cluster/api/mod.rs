//! `folio api`: the REST facade over the cluster. The handlers are the same as
//! `folio serve`'s; only the [`Backend`](crate::port::Backend) differs:
//! [`ClusterBackend`] maps every call onto Kubernetes objects in the tenant's namespace.
//!
//! Reads come from reflector caches ([`cache`]), never one apiserver call per GET;
//! writes go to the apiserver, and a handler that wrote waits briefly until its cache
//! shows the write, so the next request sees it (a job missing from the cache is
//! also looked up directly, once). The job's life is the operator's: cancel sets
//! `spec.cancel`, resume annotates, delete leaves the PDF to the operator's
//! finalizer; the facade waits a moment for the operator's answer and otherwise
//! returns the job as it stands. How requests map to objects is in [`objects`]; what
//! the API server would refuse is refused before anything is created ([`admission`]).
//!
//! - `backend`: the port's operations, one after the other.
//! - `jobs`: finding, creating and awaiting jobs; `shares`: finding share links.
//! - `errors`: what an apiserver error means to the client, decided in one place.
//! - `serve`: `folio api`'s flags and process.
//! - this module: the backend's state and the lookups every part shares.

pub mod admission;
mod backend;
mod cache;
mod errors;
mod jobs;
pub mod keys;
pub mod migrate;
pub mod objects;
mod serve;
mod shares;
mod templates;
#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use kube::{Api, Client, ResourceExt};

use crate::port::HomeError;
use crate::resources::{RenderAccount, RenderJob, RenderShare, RenderTemplate};
use crate::signing::UrlSigner;
use crate::storage::S3Bucket;
pub use cache::{Cache, Caches};
pub use serve::{ApiCommand, ApiOptions, run};

/// The cluster home's side of the REST facade.
pub struct ClusterBackend {
    client: Client,
    caches: Caches,
    bucket: S3Bucket,
    signer: UrlSigner,
    public_url: String,
    settle: Duration,
    create_locks: Vec<tokio::sync::Mutex<()>>,
    /// Template versions (uid, generation) known to be kept as snapshots.
    kept_versions: std::sync::Mutex<std::collections::HashSet<(String, i64)>>,
}

impl ClusterBackend {
    /// A backend writing through `client` and reading from `caches`.
    pub fn new(
        client: Client,
        caches: Caches,
        bucket: S3Bucket,
        signer: UrlSigner,
        public_url: String,
        settle: Duration,
    ) -> ClusterBackend {
        let create_locks = (0..jobs::CREATE_LOCKS).map(|_| tokio::sync::Mutex::new(())).collect();
        ClusterBackend {
            client,
            caches,
            bucket,
            signer,
            public_url,
            settle,
            create_locks,
            kept_versions: Default::default(),
        }
    }

    fn jobs_api(&self, tenant: &str) -> Api<RenderJob> {
        Api::namespaced(self.client.clone(), tenant)
    }

    fn secrets_api(&self, tenant: &str) -> Api<Secret> {
        Api::namespaced(self.client.clone(), tenant)
    }

    fn shares_api(&self, tenant: &str) -> Api<RenderShare> {
        Api::namespaced(self.client.clone(), tenant)
    }

    fn templates_api(&self, tenant: &str) -> Api<RenderTemplate> {
        Api::namespaced(self.client.clone(), tenant)
    }

    /// Refuse while a cache is still filling: what it would answer is incomplete.
    fn ensure_synced(&self) -> Result<(), HomeError> {
        let missing = self.caches.not_synced();
        if missing.is_empty() { Ok(()) } else { Err(errors::starting()) }
    }

    /// `tenant`'s account with its balance and blocked jobs, from the caches.
    fn cached_account(&self, tenant: &str) -> RenderAccount {
        let accounts = self.caches.accounts.store().state_filter(|a| a.metadata.namespace.as_deref() == Some(tenant));
        let jobs = self.caches.jobs.store().state_filter(|j| j.metadata.namespace.as_deref() == Some(tenant));
        objects::account(accounts, jobs, tenant)
    }
}

/// The one object a hash names. Hashes are not secret to whoever may read a tenant's
/// namespace, so a copy planted in another namespace must not decide which tenant a
/// key or link belongs to: two matches are no match (and a warning).
fn the_only<K: ResourceExt>(what: &str, mut matching: Vec<Arc<K>>) -> Option<Arc<K>> {
    if matching.len() > 1 {
        let names: Vec<String> =
            matching.iter().map(|m| format!("{}/{}", m.namespace().unwrap_or_default(), m.name_any())).collect();
        tracing::warn!(what, objects = ?names, "several objects carry the same hash; refusing it");
        return None;
    }
    matching.pop()
}
