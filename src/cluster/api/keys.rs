//! `folio api keys`: API keys of the cluster home. A key is a Secret in the tenant's
//! namespace, labelled `folio.dev/api-key: "true"`, holding only the key's SHA-256
//! (the same hashing as `folio keys`); the key itself is printed once and kept nowhere.
//! Revoking deletes the Secret; the facade's cache drops it within moments.

use k8s_openapi::api::core::v1::Secret;
use kube::api::{DeleteParams, ListParams, PostParams};
use kube::{Api, Client, ResourceExt};

use super::objects::{self, API_KEY_LABEL, KEY_PREFIX_ANNOTATION};

/// `folio api keys <command>`.
#[derive(Clone, Debug, clap::Subcommand)]
pub enum KeysCommand {
    /// Create a key for a namespace (tenant) and print it (once: only its hash is stored).
    Create {
        /// The namespace (tenant) the key acts for.
        #[arg(long, short = 'n')]
        namespace: String,
    },
    /// List keys (Secret names and prefixes, never the keys).
    List {
        /// Only this namespace's keys (default: every namespace).
        #[arg(long, short = 'n')]
        namespace: Option<String>,
    },
    /// Revoke a key by its Secret's name; it stops working at once.
    Revoke {
        /// The namespace of the key.
        #[arg(long, short = 'n')]
        namespace: String,
        /// The Secret's name, from `folio api keys list`.
        name: String,
    },
}

/// Run a key command against the cluster.
pub async fn run(client: Client, command: KeysCommand) -> anyhow::Result<()> {
    match command {
        KeysCommand::Create { namespace } => {
            if !crate::http::is_tenant_name(&namespace) {
                anyhow::bail!("--namespace {namespace:?} is not a namespace name");
            }
            let key = crate::api_keys::generate();
            let secret = objects::api_key_secret(&namespace, &key);
            let created = Api::<Secret>::namespaced(client, &namespace).create(&PostParams::default(), &secret).await?;
            eprintln!(
                "created Secret {namespace}/{} for tenant {namespace}; this is the only time the key is shown:",
                created.name_any()
            );
            println!("{}", key.plaintext);
        }
        KeysCommand::List { namespace } => {
            let api: Api<Secret> = match &namespace {
                Some(namespace) => Api::namespaced(client, namespace),
                None => Api::all(client),
            };
            let keys = api.list(&ListParams::default().labels(&format!("{API_KEY_LABEL}=true"))).await?;
            println!("{:<24} {:<32} {:<14} CREATED", "NAMESPACE", "NAME", "PREFIX");
            for secret in keys {
                let created = secret.metadata.creation_timestamp.as_ref().map(|t| t.0.to_string()).unwrap_or_default();
                let prefix = secret.annotations().get(KEY_PREFIX_ANNOTATION).cloned().unwrap_or_default();
                println!(
                    "{:<24} {:<32} {:<14} {created}",
                    secret.namespace().unwrap_or_default(),
                    secret.name_any(),
                    prefix
                );
            }
        }
        KeysCommand::Revoke { namespace, name } => {
            let api: Api<Secret> = Api::namespaced(client, &namespace);
            let secret = api.get(&name).await?;
            if secret.labels().get(API_KEY_LABEL).is_none_or(|v| v != "true") {
                anyhow::bail!("Secret {namespace}/{name} is not an API key (no {API_KEY_LABEL}=true label)");
            }
            api.delete(&name, &DeleteParams::default()).await?;
            eprintln!("revoked {namespace}/{name}");
        }
    }
    Ok(())
}
