//! `RenderTemplate` (`rt`): a reusable template and what it accepts.

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{ConfigMapKeyRef, TemplateEngine, free_form_object};

/// A template that RenderJobs in the same namespace refer to by name.
// kube's printcolumn(...) repeats the same keys per column, which clippy mistakes
// for duplicated attributes.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "folio.dev",
    version = "v1alpha1",
    kind = "RenderTemplate",
    namespaced,
    shortname = "rt",
    doc = "A document template (Typst, or HTML printed by Chromium) that RenderJobs render with their data.",
    printcolumn(name = "Engine", type_ = "string", json_path = ".spec.engine"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
pub struct RenderTemplateSpec {
    /// Template engine: `typst` (default), or `html` (HTML and CSS with Jinja
    /// placeholders, printed by Chromium).
    #[serde(default)]
    pub engine: TemplateEngine,
    /// Let an `html` template's scripts run (default off: the page is static HTML and
    /// CSS).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub javascript: bool,
    /// The template text. The job's data is the file `data.json` in its sandbox.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// The template text from a ConfigMap key, instead of `source`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_from: Option<ConfigMapKeyRef>,
    /// Files (images, fonts, data) the template may read, by the name it uses. Files
    /// named `*.ttf`, `*.otf`, `*.ttc` or `*.otc` are also fonts of its renders. A map
    /// keyed by name for server-side apply, so that a manifest applying some files
    /// leaves those another manager added (`folio api`'s uploads) in place.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"]))]
    pub assets: Vec<TemplateAsset>,
    /// JSON Schema that a job's data must satisfy (after `defaults` are merged in).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "free_form_object")]
    pub data_schema: Option<serde_json::Value>,
    /// Data merged under every job's data: the job's values win.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "free_form_object")]
    pub defaults: Option<serde_json::Value>,
}

/// A file that a template reads, e.g. `image("logo.png")`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TemplateAsset {
    /// The path the template uses, e.g. `logo.png` or `fonts/Inter.ttf`.
    pub name: String,
    /// The file's bytes, base64-encoded, for small assets kept in the template.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base64: Option<String>,
    /// The file from a ConfigMap key (`binaryData` for binary files).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_map_key_ref: Option<ConfigMapKeyRef>,
    /// SHA-256 of the file's bytes (lowercase hex). When set, a render whose file has
    /// other bytes fails rather than render a file that changed under the template;
    /// `folio api` sets it on every file it stores.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
}
