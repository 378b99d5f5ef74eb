//! The custom resources folio is driven by: `RenderTemplate`, `RenderJob` and
//! `RenderAccount` in the API group `folio.dev/v1alpha1`, and the records of
//! `folio api`: `RenderAPIKey` (its API keys) and `RenderShare` (share links).
//!
//! The Rust types are the single source of truth: the CRDs in `crds/` are generated
//! from them (`folio crd`), `folio run` and `folio serve -f` read the same manifests,
//! and the REST API maps onto the same fields. Nothing here talks to a cluster.

pub mod job_rules;
pub mod names;
mod phase;
mod render_account;
mod render_api_key;
mod render_job;
mod render_options;
mod render_share;
mod render_template;
pub mod times;

pub use phase::*;
pub use render_account::*;
pub use render_api_key::*;
pub use render_job::*;
pub use render_options::*;
pub use render_share::*;
pub use render_template::*;

use kube::CustomResourceExt;
use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde::{Deserialize, Serialize};

/// The API group of every folio resource.
pub const GROUP: &str = "folio.dev";
/// The API version of every folio resource.
pub const VERSION: &str = "v1alpha1";
/// `apiVersion` as written in manifests.
pub const API_VERSION: &str = "folio.dev/v1alpha1";

/// Schema for free-form JSON (job data, template defaults, JSON Schemas): an object
/// whose contents the API server keeps as they are. A plain `serde_json::Value` would
/// give a schema without a type, which Kubernetes refuses as not structural.
pub(crate) fn free_form_object(_: &mut SchemaGenerator) -> Schema {
    schemars::json_schema!({
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": true
    })
}

/// Schema of an optional RFC 3339 timestamp (kept to the millisecond, unlike
/// `metav1.Time`, so that durations and the render log's order are exact).
pub(crate) fn optional_date_time(_: &mut SchemaGenerator) -> Schema {
    schemars::json_schema!({
        "type": "string",
        "format": "date-time",
        "nullable": true
    })
}

/// A key in a ConfigMap of the same namespace, used for template sources, assets and
/// large job data.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConfigMapKeyRef {
    /// Name of the ConfigMap.
    pub name: String,
    /// Key within the ConfigMap (`data` or `binaryData`).
    pub key: String,
}

/// A key in a Secret of the same namespace (webhook secrets).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeyRef {
    /// Name of the Secret.
    pub name: String,
    /// Key within the Secret.
    pub key: String,
}

/// The template engine that turns source and data into a document.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum TemplateEngine {
    /// Typst markup, compiled in-process.
    #[default]
    Typst,
    /// HTML and CSS with Jinja placeholders (`{{ customer.name }}`), printed by
    /// headless Chromium.
    Html,
}

impl TemplateEngine {
    /// The name manifests and the REST API use.
    pub fn name(self) -> &'static str {
        match self {
            TemplateEngine::Typst => "typst",
            TemplateEngine::Html => "html",
        }
    }
}

/// The account of a namespace that has none: unlimited credits, default pricing and
/// retention. Both homes charge and answer `GET /v1/account` with it.
pub fn default_account(namespace: &str) -> RenderAccount {
    RenderAccount {
        metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
            name: Some("default".into()),
            namespace: Some(namespace.to_owned()),
            ..Default::default()
        },
        spec: Default::default(),
        status: Some(RenderAccountStatus::default()),
    }
}

/// The CRDs of all folio kinds, in the order `folio crd` prints them.
pub fn crds() -> Vec<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition> {
    vec![RenderTemplate::crd(), RenderJob::crd(), RenderAccount::crd(), RenderApiKey::crd(), RenderShare::crd()]
}

/// The CRDs as one multi-document YAML text: the content of `crds/folio.yaml`.
pub fn crds_yaml() -> Result<String, serde_yaml::Error> {
    let mut out = String::new();
    for crd in crds() {
        out.push_str("---\n");
        out.push_str(&serde_yaml::to_string(&crd)?);
    }
    Ok(out)
}
