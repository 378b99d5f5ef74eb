//! `folio api keys`: API keys of the cluster home, run by an administrator (with their
//! own kubeconfig), never by `folio api` itself. A key is a RenderAPIKey in the tenant's
//! namespace holding only the key's SHA-256 (the same hashing as `folio keys`) and its
//! first characters; the key itself is printed once and kept nowhere. Revoking stamps
//! `spec.revokedAt` (the record stays, saying when); the facade's cache sees it within
//! moments. `migrate` ([`super::migrate`]) moves the keys and share links that earlier
//! versions kept in Secrets.

use jiff::Timestamp;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client, ResourceExt};
use serde_json::json;

use super::migrate::{self, LEGACY_API_KEY_LABEL};
use super::objects;
use crate::resources::RenderApiKey;

/// `folio api keys <command>`.
#[derive(Clone, Debug, clap::Subcommand)]
pub enum KeysCommand {
    /// Create a key for a namespace (tenant) and print it (once: only its hash is stored).
    Create {
        /// The namespace (tenant) the key acts for.
        #[arg(long, short = 'n')]
        namespace: String,
        /// When the key stops working (RFC 3339, e.g. 2027-01-31T00:00:00Z); default never.
        #[arg(long)]
        expires_at: Option<Timestamp>,
    },
    /// List keys (names, prefixes and times, never the keys).
    List {
        /// Only this namespace's keys (default: every namespace).
        #[arg(long, short = 'n')]
        namespace: Option<String>,
    },
    /// Revoke a key by its name; it stops working at once.
    Revoke {
        /// The namespace of the key.
        #[arg(long, short = 'n')]
        namespace: String,
        /// The RenderAPIKey's name, from `folio api keys list`.
        name: String,
    },
    /// Move API keys and share links kept in Secrets by earlier versions (labelled
    /// `folio.dev/api-key=true` and `folio.dev/share=true`) to RenderAPIKeys and
    /// RenderShares, then delete those Secrets. Safe to run again.
    Migrate {
        /// Copy, but keep the Secrets (for an earlier `folio api` still serving from them);
        /// a second run without it deletes them.
        #[arg(long)]
        keep_secrets: bool,
        /// Only say what would be done.
        #[arg(long)]
        dry_run: bool,
    },
}

/// Run a key command against the cluster.
pub async fn run(client: Client, command: KeysCommand) -> anyhow::Result<()> {
    match command {
        KeysCommand::Create { namespace, expires_at } => {
            if !crate::http::is_tenant_name(&namespace) {
                anyhow::bail!("--namespace {namespace:?} is not a namespace name");
            }
            let now = Timestamp::now();
            if expires_at.is_some_and(|e| e <= now) {
                anyhow::bail!("--expires-at must be in the future");
            }
            let key = crate::api_keys::generate();
            let object = objects::api_key(&namespace, &key, now, expires_at);
            let created =
                Api::<RenderApiKey>::namespaced(client, &namespace).create(&PostParams::default(), &object).await?;
            eprintln!(
                "created RenderAPIKey {namespace}/{} for tenant {namespace}; this is the only time the key is shown:",
                created.name_any()
            );
            println!("{}", key.plaintext);
        }
        KeysCommand::List { namespace } => {
            let api: Api<RenderApiKey> = match &namespace {
                Some(namespace) => Api::namespaced(client, namespace),
                None => Api::all(client),
            };
            let keys = api.list(&ListParams::default()).await?;
            println!("{:<24} {:<32} {:<14} {:<32} {:<32} REVOKED", "NAMESPACE", "NAME", "PREFIX", "CREATED", "EXPIRES");
            let time = |t: Option<Timestamp>| t.map(|t| format!("{t:.3}")).unwrap_or_else(|| "-".to_owned());
            for key in keys {
                let created = key.spec.created_at.or(key.metadata.creation_timestamp.as_ref().map(|t| t.0));
                println!(
                    "{:<24} {:<32} {:<14} {:<32} {:<32} {}",
                    key.namespace().unwrap_or_default(),
                    key.name_any(),
                    key.spec.prefix,
                    time(created),
                    time(key.spec.expires_at),
                    time(key.spec.revoked_at),
                );
            }
        }
        KeysCommand::Revoke { namespace, name } => {
            let api: Api<RenderApiKey> = Api::namespaced(client.clone(), &namespace);
            let key = api.get(&name).await?;
            if key.spec.revoked_at.is_none() {
                let patch = json!({"spec": {"revokedAt": Timestamp::now()}});
                api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch)).await?;
            }
            revoke_legacy_secret(client, &namespace, &name).await;
            eprintln!("revoked {namespace}/{name}");
        }
        KeysCommand::Migrate { keep_secrets, dry_run } => {
            migrate::run(client, migrate::Options { keep_secrets, dry_run }).await?;
        }
    }
    Ok(())
}

/// While an upgrade is under way (keys copied with `migrate --keep-secrets`, an earlier
/// `folio api` still serving from Secrets), the key also lives on in the Secret of the
/// same name: delete it too, so that the key stops working everywhere.
async fn revoke_legacy_secret(client: Client, namespace: &str, name: &str) {
    let secrets: Api<Secret> = Api::namespaced(client, namespace);
    match secrets.get_opt(name).await {
        Ok(Some(secret)) if secret.labels().get(LEGACY_API_KEY_LABEL).is_some_and(|v| v == "true") => {
            match secrets.delete(name, &DeleteParams::default()).await {
                Ok(_) => eprintln!("deleted the Secret {namespace}/{name} that held the key before the migration"),
                Err(err) => eprintln!("warning: the key's old Secret {namespace}/{name} is still there: {err}"),
            }
        }
        Ok(_) => {}
        // No right to read Secrets: no old Secret to look after.
        Err(kube::Error::Api(status)) if status.is_forbidden() => {}
        Err(err) => eprintln!("warning: could not look for the key's old Secret {namespace}/{name}: {err}"),
    }
}
