//! `RenderShare` (`rsh`): one share link of a job's PDF (`/v1/share/{token}`), in the
//! job's namespace and owned by the job, so that it goes with it.
//!
//! Like an API key, the token is stored only as its SHA-256 (tokens carry 192 random
//! bits): whoever reads the object cannot open the link. The object is named by that
//! hash, so the link finds it without the token appearing anywhere; the token's first
//! characters are kept to tell links apart in listings.

use jiff::Timestamp;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::optional_date_time;

/// A share link: who may download a job's PDF without an API key, and until when.
// kube's printcolumn(...) repeats the same keys per column, which clippy mistakes
// for duplicated attributes.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[kube(
    group = "folio.dev",
    version = "v1alpha1",
    kind = "RenderShare",
    namespaced,
    shortname = "rsh",
    doc = "A share link of a RenderJob's output: the token's SHA-256, never the token.",
    printcolumn(name = "Job", type_ = "string", json_path = ".spec.jobName"),
    printcolumn(name = "Prefix", type_ = "string", json_path = ".spec.tokenPrefix"),
    printcolumn(name = "Expires", type_ = "string", json_path = ".spec.expiresAt"),
    printcolumn(name = "Revoked", type_ = "string", json_path = ".spec.revokedAt"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    // A link's identity is fixed, and a revoked link stays revoked, whoever may write it.
    validation = Rule::new("self.spec.tokenHash == oldSelf.spec.tokenHash && self.spec.jobName == oldSelf.spec.jobName").message("spec.tokenHash and spec.jobName cannot change"),
    validation = Rule::new("!has(oldSelf.spec.revokedAt) || (has(self.spec.revokedAt) && self.spec.revokedAt == oldSelf.spec.revokedAt)").message("spec.revokedAt cannot change once set")
)]
#[serde(rename_all = "camelCase")]
pub struct RenderShareSpec {
    /// The RenderJob (same namespace) whose PDF the link serves.
    #[schemars(length(min = 1, max = 253))]
    pub job_name: String,
    /// SHA-256 of the token, lowercase hex.
    #[schemars(regex(pattern = r"^[0-9a-f]{64}$"))]
    pub token_hash: String,
    /// The token's first characters, to recognise the link.
    #[schemars(length(max = 32))]
    pub token_prefix: String,
    /// When the link stops working, if ever.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "optional_date_time")]
    #[serde(with = "crate::resources::times::optional_ms")]
    pub expires_at: Option<Timestamp>,
    /// When the link was revoked; a revoked link never works again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "optional_date_time")]
    #[serde(with = "crate::resources::times::optional_ms")]
    pub revoked_at: Option<Timestamp>,
}
