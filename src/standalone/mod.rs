//! The standalone home (the embedded default): the REST API over an embedded SQLite
//! database, an in-process worker pool and a local output folder. No cluster, no
//! object store; the same resources, rules and engine as the cluster home.
//!
//! - [`store`]: the database.
//! - `settle`: carries out the lifecycle core's decisions, one per transaction.
//! - `worker`: claims queued jobs, renders them, hands the outcomes to the core;
//!   the sweeper. `webhooks`: the delivery loop over the database queue.
//! - `backend`: the [`crate::port::Backend`] the REST facade calls.
//! - `serve`: `folio serve`, which runs all of them; `keys`: `folio keys`;
//!   `accounts`: `folio accounts`.
//! - this module: the state they share, and applying manifests to it.

mod accounts;
pub mod accounts_args;
pub mod args;
mod backend;
mod keys;
mod serve;
mod settle;
pub mod store;
mod templates;
mod webhooks;
mod worker;

use std::path::Path;
use std::sync::Arc;

use anyhow::Context as _;
use jiff::Timestamp;
use rand::RngCore;
use tokio::sync::Notify;

use crate::manifest::{DEFAULT_NAMESPACE, Manifests};
use crate::metrics::Metrics;
use crate::resources::OutputFormat;
use crate::resources::RenderAccountStatus;
use crate::signing::UrlSigner;
use crate::storage::{LocalFolder, output_key};
pub use accounts::{AccountChange, change_account, show_account};
pub use keys::{create_key, list_keys, revoke_key};
pub use serve::{ServeOptions, serve};
use store::{JobRecord, Store};

/// The standalone home's state, shared by the API, the workers and the sweeper.
pub struct Standalone {
    store: Arc<Store>,
    outputs: LocalFolder,
    signer: UrlSigner,
    public_url: String,
    wake: Notify,
    metrics: Arc<Metrics>,
}

const SIGNING_KEY_SETTING: &str = "url-signing-key";

/// What `folio serve -f` leaves out of `manifests`, one line per document, each saying
/// why: it applies RenderTemplates, RenderAccounts and Secrets.
pub fn ignored_by_serve(manifests: &Manifests) -> Vec<String> {
    let id = |meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta| {
        format!(
            "{}/{}",
            meta.namespace.as_deref().unwrap_or(DEFAULT_NAMESPACE),
            meta.name.as_deref().unwrap_or_default()
        )
    };
    let jobs = manifests.jobs.iter().map(|job| {
        format!(
            "serve -f ignores RenderJob {:?}: jobs are submitted with POST /v1/renders (or rendered with folio run)",
            id(&job.metadata)
        )
    });
    let config_maps = manifests.config_maps.iter().map(|config_map| {
        format!(
            "serve -f ignores ConfigMap {:?}: folio serve keeps no ConfigMaps; its templates and jobs carry source, assets and data inline",
            id(&config_map.metadata)
        )
    });
    let namespaces = manifests.namespaces.iter().map(|namespace| {
        format!("serve -f ignores Namespace {namespace:?}: a tenant exists as soon as something names it")
    });
    jobs.chain(config_maps).chain(namespaces).collect()
}

impl Standalone {
    /// Open the data folder: the database `folio.db` and the outputs folder.
    pub fn open(data_dir: &Path, public_url: String, metrics: Arc<Metrics>) -> anyhow::Result<Standalone> {
        std::fs::create_dir_all(data_dir).with_context(|| format!("creating {}", data_dir.display()))?;
        let store = Store::open(&data_dir.join("folio.db")).context("opening the database")?;
        let outputs = LocalFolder::new(data_dir.join("outputs")).context("opening the outputs folder")?;
        let secret = store.write(|tx| {
            store::setting_or_insert(tx, SIGNING_KEY_SETTING, || {
                let mut key = vec![0u8; 32];
                rand::rng().fill_bytes(&mut key);
                key
            })
        })?;
        Ok(Standalone {
            store: Arc::new(store),
            outputs,
            signer: UrlSigner::new(secret),
            public_url,
            wake: Notify::new(),
            metrics,
        })
    }

    /// Remove the output writes a crash cut short: for `folio serve` at its start only.
    pub fn remove_unfinished_writes(&self) -> std::io::Result<()> {
        self.outputs.remove_unfinished_writes()
    }

    /// The database.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Apply RenderTemplates and RenderAccounts (namespace = tenant). An account keeps
    /// what it has spent; jobs it blocked are settled if the new grant covers them.
    pub fn apply(&self, manifests: &Manifests) -> anyhow::Result<()> {
        let now = Timestamp::now();
        self.store.write(|tx| {
            for template in &manifests.templates {
                // Files uploaded over the API stay; the manifest's replace those of
                // the same name.
                let mut template = template.clone();
                let tenant = template.metadata.namespace.as_deref().unwrap_or(DEFAULT_NAMESPACE);
                let name = template.metadata.name.as_deref().unwrap_or_default();
                if let Some(current) = store::load_template(tx, tenant, name)? {
                    let declared = std::mem::replace(&mut template.spec.assets, current.template.spec.assets);
                    for file in declared {
                        crate::assets::put_file(&mut template.spec, file);
                    }
                }
                store::save_template(tx, &template, now)?;
            }
            for secret in &manifests.secrets {
                let tenant = secret.metadata.namespace.as_deref().unwrap_or(DEFAULT_NAMESPACE);
                let mut values = std::collections::BTreeMap::new();
                for (key, bytes) in secret.data.iter().flatten() {
                    values.insert(key.clone(), String::from_utf8_lossy(&bytes.0).into_owned());
                }
                for (key, text) in secret.string_data.iter().flatten() {
                    values.insert(key.clone(), text.clone());
                }
                let name = secret.metadata.name.as_deref().unwrap_or_default();
                store::save_secret(tx, tenant, name, &values)?;
            }
            for account in &manifests.accounts {
                let tenant = account.metadata.namespace.as_deref().unwrap_or(DEFAULT_NAMESPACE);
                let spent = store::load_account(tx, tenant)?.and_then(|a| a.status).map_or(0, |s| s.credits_used);
                let mut account = account.clone();
                account.metadata.namespace = Some(tenant.to_owned());
                account.status = Some(RenderAccountStatus { credits_used: spent, ..Default::default() });
                store::save_account(tx, &account)?;
            }
            Ok(())
        })?;
        for line in ignored_by_serve(manifests) {
            tracing::warn!("{line}");
        }
        for account in &manifests.accounts {
            self.settle_blocked(account.metadata.namespace.as_deref().unwrap_or(DEFAULT_NAMESPACE))?;
        }
        Ok(())
    }

    /// A download URL for a job's `output` that works without an API key until
    /// `expires_at`.
    pub fn signed_download_url(&self, tenant: &str, id: &str, output: OutputFormat, expires_at: Timestamp) -> String {
        self.signer.download_url(&self.public_url, tenant, id, output, expires_at)
    }

    /// Delete the stored output of `record`, logging (not failing) on errors: the row
    /// is gone already and the sweeper cannot find the file again.
    fn forget_output(&self, record: &JobRecord) {
        let key = output_key(record.tenant(), record.id(), record.job.spec.output);
        if let Err(err) = self.outputs.delete(&key) {
            tracing::warn!(error = %err, key, "could not delete an output");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serve_names_each_document_it_ignores_and_why() {
        let text = "\
apiVersion: v1
kind: Namespace
metadata: {name: acme}
---
apiVersion: folio.dev/v1alpha1
kind: RenderTemplate
metadata: {name: invoice, namespace: acme}
spec: {source: Hello}
---
apiVersion: folio.dev/v1alpha1
kind: RenderJob
metadata: {name: invoice-1, namespace: acme}
spec: {templateRef: {name: invoice}}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: logo}
";
        let mut manifests = Manifests::default();
        manifests.parse("bundle.yaml", text).unwrap();
        let lines = ignored_by_serve(&manifests);
        assert_eq!(lines.len(), 3, "{lines:?}");
        assert!(
            lines[0]
                .starts_with("serve -f ignores RenderJob \"acme/invoice-1\": jobs are submitted with POST /v1/renders")
        );
        assert!(lines[1].starts_with("serve -f ignores ConfigMap \"default/logo\": "));
        assert!(lines[2].starts_with("serve -f ignores Namespace \"acme\": "));
    }
}
