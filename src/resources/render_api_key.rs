//! `RenderAPIKey` (`rak`): one API key of `folio api`, in the namespace (tenant) it
//! acts for.
//!
//! It holds only what authenticating a request needs: the SHA-256 of the key (keys
//! carry 256 random bits, so a fast hash is enough), the key's first characters to tell
//! keys apart in listings, and when it stops working. The key itself is printed once by
//! `folio api keys create` and kept nowhere.
//!
//! API keys used to be Secrets found by label; RBAC cannot narrow a grant on Secrets
//! by label, so reading them meant reading every Secret of the cluster. A kind of its
//! own lets `folio api` watch its keys and nothing else.
//!
//! The tenant is the object's namespace and deliberately not a field: a field could
//! name another namespace than the one the object lives in, and whoever may create
//! keys in one namespace must not mint them for another.

use jiff::Timestamp;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::optional_date_time;

/// An API key of `folio api`: its hash, never the key.
// kube's printcolumn(...) repeats the same keys per column, which clippy mistakes
// for duplicated attributes.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[kube(
    group = "folio.dev",
    version = "v1alpha1",
    kind = "RenderAPIKey",
    root = "RenderApiKey",
    namespaced,
    shortname = "rak",
    doc = "An API key of folio's REST API for the namespace it is in: the key's SHA-256, never the key.",
    printcolumn(name = "Prefix", type_ = "string", json_path = ".spec.prefix"),
    printcolumn(name = "Expires", type_ = "string", json_path = ".spec.expiresAt"),
    printcolumn(name = "Revoked", type_ = "string", json_path = ".spec.revokedAt"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    // A key's hash is fixed, and a revoked key stays revoked, whoever may write it.
    validation = Rule::new("self.spec.keyHash == oldSelf.spec.keyHash").message("spec.keyHash cannot change"),
    validation = Rule::new("!has(oldSelf.spec.revokedAt) || (has(self.spec.revokedAt) && self.spec.revokedAt == oldSelf.spec.revokedAt)").message("spec.revokedAt cannot change once set")
)]
#[serde(rename_all = "camelCase")]
pub struct RenderApiKeySpec {
    /// SHA-256 of the key, lowercase hex.
    #[schemars(regex(pattern = r"^[0-9a-f]{64}$"))]
    pub key_hash: String,
    /// The key's first characters (`folio_` and six more), to recognise it.
    #[schemars(length(max = 32))]
    pub prefix: String,
    /// When the key was issued (kept when a key moves from a Secret to this kind).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "optional_date_time")]
    #[serde(with = "crate::resources::times::optional_ms")]
    pub created_at: Option<Timestamp>,
    /// When the key stops working, if ever.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "optional_date_time")]
    #[serde(with = "crate::resources::times::optional_ms")]
    pub expires_at: Option<Timestamp>,
    /// When the key was revoked; a revoked key never works again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "optional_date_time")]
    #[serde(with = "crate::resources::times::optional_ms")]
    pub revoked_at: Option<Timestamp>,
}

impl RenderApiKeySpec {
    /// Whether the key authenticates requests at `now`.
    pub fn is_usable(&self, now: Timestamp) -> bool {
        self.revoked_at.is_none() && self.expires_at.is_none_or(|e| e > now)
    }
}
