//! `RenderAccount` (`ra`): a namespace's credits, pricing and retention.

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::render_job::WebhookSpec;

/// The account of a namespace (tenant): one per namespace.
// kube's printcolumn(...) repeats the same keys per column, which clippy mistakes
// for duplicated attributes.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "folio.dev",
    version = "v1alpha1",
    kind = "RenderAccount",
    namespaced,
    shortname = "ra",
    status = "RenderAccountStatus",
    doc = "Credits, pricing, retention and the default webhook of a namespace's render jobs.",
    printcolumn(name = "Credits", type_ = "integer", json_path = ".spec.credits"),
    printcolumn(name = "Used", type_ = "integer", json_path = ".status.creditsUsed"),
    printcolumn(name = "Remaining", type_ = "integer", json_path = ".status.creditsRemaining"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
pub struct RenderAccountSpec {
    /// Credits granted; absent means unlimited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub credits: Option<i64>,
    /// How a successful render is priced.
    #[serde(default)]
    pub pricing: Pricing,
    /// How long finished jobs and their outputs are kept.
    #[serde(default)]
    pub retention: Retention,
    /// Webhook used for jobs that name none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook: Option<WebhookSpec>,
    /// The most renders this namespace runs at once: its share of the standalone
    /// workers, and of the renderer Pods in a cluster. Absent: every worker but one
    /// while other tenants exist (standalone), no cap (cluster).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub max_concurrent_renders: Option<i32>,
}

/// Pricing of a successful render (previews are free).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Pricing {
    /// Credits per page.
    #[serde(default = "Pricing::default_credits_per_page")]
    #[schemars(range(min = 0))]
    pub credits_per_page: i64,
    /// Outputs larger than this cost extra.
    #[serde(default = "Pricing::default_size_threshold_bytes")]
    #[schemars(range(min = 0))]
    pub size_threshold_bytes: i64,
    /// Extra credits for every started MiB above the threshold.
    #[serde(default = "Pricing::default_extra_credits_per_started_mib")]
    #[schemars(range(min = 0))]
    pub extra_credits_per_started_mib: i64,
}

impl Pricing {
    fn default_credits_per_page() -> i64 {
        1
    }
    fn default_size_threshold_bytes() -> i64 {
        5 * 1024 * 1024
    }
    fn default_extra_credits_per_started_mib() -> i64 {
        1
    }
}

impl Default for Pricing {
    fn default() -> Self {
        Pricing {
            credits_per_page: Self::default_credits_per_page(),
            size_threshold_bytes: Self::default_size_threshold_bytes(),
            extra_credits_per_started_mib: Self::default_extra_credits_per_started_mib(),
        }
    }
}

/// Retention of finished jobs' PDFs, and of the jobs that set
/// `ttlSecondsAfterFinished` (every job made through the REST API).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Retention {
    /// Seconds a finished job's PDF is kept when the job asks for no TTL.
    #[serde(default = "Retention::default_ttl_seconds")]
    #[schemars(range(min = 0))]
    pub default_ttl_seconds: i64,
    /// The longest TTL a job may ask for.
    #[serde(default = "Retention::default_max_ttl_seconds")]
    #[schemars(range(min = 0))]
    pub max_ttl_seconds: i64,
    /// TTL of preview renders.
    #[serde(default = "Retention::default_preview_ttl_seconds")]
    #[schemars(range(min = 0))]
    pub preview_ttl_seconds: i64,
}

impl Retention {
    fn default_ttl_seconds() -> i64 {
        7 * 24 * 3600
    }
    fn default_max_ttl_seconds() -> i64 {
        90 * 24 * 3600
    }
    fn default_preview_ttl_seconds() -> i64 {
        3600
    }
}

impl Default for Retention {
    fn default() -> Self {
        Retention {
            default_ttl_seconds: Self::default_ttl_seconds(),
            max_ttl_seconds: Self::default_max_ttl_seconds(),
            preview_ttl_seconds: Self::default_preview_ttl_seconds(),
        }
    }
}

/// What the account has spent.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RenderAccountStatus {
    /// Credits charged so far.
    #[serde(default)]
    pub credits_used: i64,
    /// Credits left; absent when the account is unlimited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credits_remaining: Option<i64>,
    /// Jobs waiting for credits.
    #[serde(default)]
    pub blocked_jobs: i64,
    /// Charges already counted in `creditsUsed` whose jobs do not yet say so. The
    /// operator writes the account first and the job second; a charge listed here is
    /// never taken again, so a crash between the two writes cannot charge twice.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pending_charges: Vec<PendingCharge>,
}

/// A charge written to the account but not yet to its job.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PendingCharge {
    /// The job's `metadata.uid`.
    pub job_uid: String,
    /// The job's name, for people reading the account.
    pub job_name: String,
    /// Credits charged.
    pub credits: i64,
}
