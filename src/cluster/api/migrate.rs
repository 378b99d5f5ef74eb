//! `folio api keys migrate`: moving the API keys and share links that earlier versions
//! of folio kept in Secrets (found by label, which is why `folio api` once needed to
//! read every Secret of the cluster) to RenderAPIKeys and RenderShares.
//!
//! It is a one-shot command an administrator runs, because only someone who may read
//! Secrets can copy them; `folio api` no longer can, by design. Each labelled Secret
//! becomes an object of the same name in the same namespace (the names were derived
//! from the hashes then as now), holding the same hash (a share link's token, which the
//! old Secret held in clear, is hashed on the way), creation, expiry and revocation
//! times and, for a share link, the owner reference to its job; then the Secret is
//! deleted. A Secret already copied is only deleted, so the command can run again, and
//! with `--keep-secrets` it copies without deleting, for an upgrade without a moment in
//! which keys do not work (see the README).

use anyhow::Context as _;
use jiff::Timestamp;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams, Preconditions};
use kube::{Api, Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::json;

use super::objects;
use crate::resources::{RenderApiKey, RenderApiKeySpec, RenderShare, RenderShareSpec};

/// Label of the Secrets that held API keys before (value `"true"`).
pub const LEGACY_API_KEY_LABEL: &str = "folio.dev/api-key";
/// Annotation of such a Secret: the key's first characters.
pub const LEGACY_KEY_PREFIX_ANNOTATION: &str = "folio.dev/key-prefix";
/// Field of such a Secret: the SHA-256 of the key, hex.
pub const LEGACY_KEY_HASH_FIELD: &str = "hash";
/// Label of the Secrets that held share links before (value `"true"`).
pub const LEGACY_SHARE_LABEL: &str = "folio.dev/share";
/// Annotation of such a Secret: the job whose PDF it serves.
pub const LEGACY_SHARE_JOB_ANNOTATION: &str = crate::cluster::pod::JOB_LABEL;
/// Annotation of such a Secret: when it stops working (RFC 3339).
pub const LEGACY_SHARE_EXPIRES_ANNOTATION: &str = "folio.dev/expires-at";
/// Annotation of such a Secret: when it was revoked (RFC 3339).
pub const LEGACY_SHARE_REVOKED_ANNOTATION: &str = "folio.dev/revoked-at";
/// Field of such a Secret: the token, in clear.
pub const LEGACY_SHARE_TOKEN_FIELD: &str = "token";

/// How `migrate` runs.
#[derive(Clone, Copy, Debug, Default)]
pub struct Options {
    /// Copy without deleting the Secrets.
    pub keep_secrets: bool,
    /// Only say what would be done.
    pub dry_run: bool,
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

fn annotation_time(secret: &Secret, name: &str) -> Result<Option<Timestamp>, String> {
    match secret.annotations().get(name) {
        None => Ok(None),
        Some(text) => text.parse().map(Some).map_err(|err| format!("annotation {name}: {text:?} is no time: {err}")),
    }
}

fn is_sha256_hex(text: &str) -> bool {
    text.len() == 64 && text.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// The RenderAPIKey of an API key Secret of an earlier version.
pub fn api_key_of_secret(secret: &Secret) -> Result<RenderApiKey, String> {
    let hash = secret_field(secret, LEGACY_KEY_HASH_FIELD)
        .map(|h| h.trim().to_ascii_lowercase())
        .ok_or_else(|| format!("no {LEGACY_KEY_HASH_FIELD:?} field"))?;
    if !is_sha256_hex(&hash) {
        return Err(format!("the {LEGACY_KEY_HASH_FIELD:?} field is not a SHA-256 in hex"));
    }
    let prefix: String = secret.annotations().get(LEGACY_KEY_PREFIX_ANNOTATION).cloned().unwrap_or_default();
    let mut key = RenderApiKey::new(
        &secret.name_any(),
        RenderApiKeySpec {
            key_hash: hash,
            prefix: prefix.chars().take(32).collect(),
            created_at: secret.metadata.creation_timestamp.as_ref().map(|t| t.0),
            expires_at: None,
            revoked_at: None,
        },
    );
    key.metadata.namespace = secret.metadata.namespace.clone();
    Ok(key)
}

/// The RenderShare of a share link Secret of an earlier version, owned by the same job.
pub fn share_of_secret(secret: &Secret) -> Result<RenderShare, String> {
    let token = secret_field(secret, LEGACY_SHARE_TOKEN_FIELD)
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| format!("no {LEGACY_SHARE_TOKEN_FIELD:?} field"))?;
    let job_name = secret
        .annotations()
        .get(LEGACY_SHARE_JOB_ANNOTATION)
        .cloned()
        .ok_or_else(|| format!("no {LEGACY_SHARE_JOB_ANNOTATION} annotation"))?;
    let mut share = RenderShare::new(
        &objects::share_name(token),
        RenderShareSpec {
            job_name,
            token_hash: objects::secret_hash(token),
            token_prefix: objects::token_prefix(token),
            expires_at: annotation_time(secret, LEGACY_SHARE_EXPIRES_ANNOTATION)?,
            revoked_at: annotation_time(secret, LEGACY_SHARE_REVOKED_ANNOTATION)?,
        },
    );
    share.metadata.namespace = secret.metadata.namespace.clone();
    share.metadata.owner_references = secret.metadata.owner_references.clone();
    Ok(share)
}

/// What a run did.
#[derive(Default)]
struct Tally {
    copied: usize,
    deleted: usize,
    failed: usize,
}

/// Copy every labelled Secret, then (unless told not to) delete it.
pub async fn run(client: Client, options: Options) -> anyhow::Result<()> {
    let secrets: Api<Secret> = Api::all(client.clone());
    let mut tally = Tally::default();
    for (label, what) in [(LEGACY_API_KEY_LABEL, "API key"), (LEGACY_SHARE_LABEL, "share link")] {
        let selector = format!("{label}=true");
        let found = secrets.list(&ListParams::default().labels(&selector)).await.with_context(|| {
            format!(
                "listing the Secrets labelled {selector} (migrate reads Secrets: run it as a cluster administrator)"
            )
        })?;
        for secret in found.items.iter().filter(|s| objects::is_live(&s.metadata)) {
            let source = format!("Secret {}/{}", secret.namespace().unwrap_or_default(), secret.name_any());
            let outcome = if label == LEGACY_API_KEY_LABEL {
                match api_key_of_secret(secret) {
                    Ok(key) => copy(&client, key, options, |old, new| old.spec.key_hash == new.spec.key_hash).await,
                    Err(why) => Err(why),
                }
            } else {
                match share_of_secret(secret) {
                    Ok(share) => copy_share(&client, share, options).await,
                    Err(why) => Err(why),
                }
            };
            match outcome {
                Ok(target) => {
                    tally.copied += 1;
                    println!("{what}: {source} -> {target}");
                    if !options.keep_secrets && delete(&client, secret, options, &mut tally).await.is_err() {
                        tally.failed += 1;
                    }
                }
                Err(why) => {
                    tally.failed += 1;
                    eprintln!("{what}: {source} left as it is: {why}");
                }
            }
        }
    }
    let verb = if options.dry_run { "would be" } else { "were" };
    println!("{} Secrets {verb} copied, {} {verb} deleted, {} failed", tally.copied, tally.deleted, tally.failed);
    anyhow::ensure!(tally.failed == 0, "{} Secrets could not be migrated; see above", tally.failed);
    Ok(())
}

/// Create `object` unless an object of its name holding the same (`same`) is there;
/// the object's description.
async fn copy<K>(client: &Client, object: K, options: Options, same: impl Fn(&K, &K) -> bool) -> Result<String, String>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + Serialize
        + DeserializeOwned
        + std::fmt::Debug,
{
    let (namespace, name) = (object.namespace().unwrap_or_default(), object.name_any());
    let target = format!("{} {namespace}/{name}", K::kind(&()));
    if options.dry_run {
        return Ok(target);
    }
    let api: Api<K> = Api::namespaced(client.clone(), &namespace);
    match api.create(&PostParams::default(), &object).await {
        Ok(_) => Ok(target),
        Err(kube::Error::Api(status)) if status.is_already_exists() => {
            let existing = api.get(&name).await.map_err(|err| format!("reading {target}: {err}"))?;
            if same(&existing, &object) {
                Ok(format!("{target} (copied before)"))
            } else {
                Err(format!("{target} exists and holds another hash"))
            }
        }
        Err(err) => Err(format!("creating {target}: {err}")),
    }
}

/// Copy a share link; one already copied takes a revocation made since.
async fn copy_share(client: &Client, share: RenderShare, options: Options) -> Result<String, String> {
    let revoked_at = share.spec.revoked_at;
    let target = copy(client, share.clone(), options, |old, new| old.spec.token_hash == new.spec.token_hash).await?;
    if let Some(revoked_at) = revoked_at
        && !options.dry_run
    {
        let api: Api<RenderShare> = Api::namespaced(client.clone(), &share.namespace().unwrap_or_default());
        let current = api.get(&share.name_any()).await.map_err(|err| format!("reading {target}: {err}"))?;
        if current.spec.revoked_at.is_none() {
            let patch = json!({"spec": {"revokedAt": revoked_at}});
            api.patch(&share.name_any(), &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .map_err(|err| format!("revoking {target}: {err}"))?;
        }
    }
    Ok(target)
}

/// Delete a copied Secret (that one, by uid).
async fn delete(client: &Client, secret: &Secret, options: Options, tally: &mut Tally) -> Result<(), ()> {
    let (namespace, name) = (secret.namespace().unwrap_or_default(), secret.name_any());
    if !options.dry_run {
        let params = DeleteParams {
            preconditions: Some(Preconditions { uid: secret.metadata.uid.clone(), resource_version: None }),
            ..DeleteParams::default()
        };
        let api: Api<Secret> = Api::namespaced(client.clone(), &namespace);
        match api.delete(&name, &params).await {
            Ok(_) => {}
            Err(kube::Error::Api(status)) if status.is_not_found() => {}
            Err(err) => {
                eprintln!("Secret {namespace}/{name} was copied but not deleted: {err}");
                return Err(());
            }
        }
    }
    tally.deleted += 1;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use k8s_openapi::ByteString;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference, Time};

    use super::*;

    fn at(seconds: i64) -> Timestamp {
        Timestamp::from_second(seconds).unwrap()
    }

    fn secret(name: &str, label: &str, annotations: &[(&str, String)], data: &[(&str, &str)]) -> Secret {
        Secret {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("acme".into()),
                labels: Some(BTreeMap::from([(label.to_owned(), "true".to_owned())])),
                annotations: Some(annotations.iter().map(|(k, v)| ((*k).to_owned(), v.clone())).collect()),
                creation_timestamp: Some(Time(at(100))),
                ..Default::default()
            },
            data: Some(data.iter().map(|(k, v)| ((*k).to_owned(), ByteString(v.as_bytes().to_vec()))).collect()),
            ..Default::default()
        }
    }

    #[test]
    fn an_api_key_secret_becomes_a_render_api_key_of_the_same_name_hash_and_creation() {
        let key = crate::api_keys::generate();
        let old = secret(
            &objects::api_key_name(&key.hash),
            LEGACY_API_KEY_LABEL,
            &[(LEGACY_KEY_PREFIX_ANNOTATION, key.prefix.clone())],
            &[(LEGACY_KEY_HASH_FIELD, &key.hash)],
        );
        let new = api_key_of_secret(&old).unwrap();
        assert_eq!(new.metadata.name, old.metadata.name);
        assert_eq!(new.metadata.namespace.as_deref(), Some("acme"));
        assert_eq!(
            new.spec,
            RenderApiKeySpec {
                key_hash: key.hash.clone(),
                prefix: key.prefix.clone(),
                created_at: Some(at(100)),
                ..Default::default()
            }
        );
        assert!(objects::key_matches(&new, &crate::api_keys::hash(&key.plaintext), at(200)));
        let broken = secret("x", LEGACY_API_KEY_LABEL, &[], &[(LEGACY_KEY_HASH_FIELD, "not-a-hash")]);
        assert!(api_key_of_secret(&broken).unwrap_err().contains("SHA-256"));
    }

    #[test]
    fn a_share_secret_becomes_a_render_share_holding_only_the_tokens_hash() {
        let token = crate::port::new_share_token();
        let mut old = secret(
            &objects::share_name(&token),
            LEGACY_SHARE_LABEL,
            &[
                (LEGACY_SHARE_JOB_ANNOTATION, "j1".to_owned()),
                (LEGACY_SHARE_EXPIRES_ANNOTATION, at(500).to_string()),
                (LEGACY_SHARE_REVOKED_ANNOTATION, at(300).to_string()),
            ],
            &[(LEGACY_SHARE_TOKEN_FIELD, &token)],
        );
        let owner =
            OwnerReference { kind: "RenderJob".into(), name: "j1".into(), uid: "uid-1".into(), ..Default::default() };
        old.metadata.owner_references = Some(vec![owner.clone()]);
        let new = share_of_secret(&old).unwrap();
        assert_eq!(new.metadata.name, old.metadata.name, "the same name as before");
        assert_eq!(new.metadata.owner_references, Some(vec![owner]));
        assert!(objects::share_matches(&new, &token));
        assert!(!serde_json::to_string(&new).unwrap().contains(&token));
        assert_eq!(
            (new.spec.job_name.as_str(), new.spec.expires_at, new.spec.revoked_at),
            ("j1", Some(at(500)), Some(at(300)))
        );
        let no_job = secret("y", LEGACY_SHARE_LABEL, &[], &[(LEGACY_SHARE_TOKEN_FIELD, &token)]);
        assert!(share_of_secret(&no_job).is_err());
    }
}
