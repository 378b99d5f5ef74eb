//! How the cluster keeps a RenderTemplate's versions and files, as objects a
//! `kubectl` user and a GitOps tool see and leave alone:
//!
//! - A version is the template's `metadata.generation`, which the API server raises
//!   on every change of its spec, whoever makes it.
//! - Version N is kept as the immutable ConfigMap `<template>.version-N` (key
//!   `spec.json`), owned by the RenderTemplate, so it goes when the template goes.
//!   `folio api` writes one after every change it makes and before it accepts a job
//!   pinned to the current version; the operator reads it for a job pinned to an
//!   older one.
//! - A file uploaded through the API is an immutable ConfigMap
//!   `<template>.file-<digest>` (one file, under its own name, in `binaryData`),
//!   owned by the RenderTemplate; the template refers to it with `configMapKeyRef`
//!   and its `sha256`. Older versions keep referring to the files they had, so a
//!   file is never changed or deleted while its template lives.
//!
//! The names hold a `.`, which Kubernetes allows in ConfigMap names and people rarely
//! use, so they do not collide with a user's own ConfigMaps.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Resource;

use crate::assets::sha256_hex;
use crate::resources::{RenderTemplate, RenderTemplateSpec};

/// Label naming the RenderTemplate a version or file belongs to.
pub const TEMPLATE_LABEL: &str = "folio.dev/template";
/// Label holding the version a snapshot keeps.
pub const VERSION_LABEL: &str = "folio.dev/template-version";
/// Label telling a kept file (`file`) from a kept version (`version`).
pub const KIND_LABEL: &str = "folio.dev/kept";
/// The key of a snapshot's spec.
pub const SPEC_KEY: &str = "spec.json";

/// The ConfigMap keeping version `version` of `template`.
pub fn snapshot_name(template: &str, version: i64) -> String {
    format!("{template}.version-{version}")
}

/// The ConfigMap keeping the file `file` with these bytes for `template`.
pub fn file_map_name(template: &str, file: &str, bytes: &[u8]) -> String {
    let mut named = file.as_bytes().to_vec();
    named.push(0);
    named.extend_from_slice(bytes);
    format!("{template}.file-{}", &sha256_hex(&named)[..20])
}

fn kept_meta(template: &RenderTemplate, name: String, kind: &str) -> ObjectMeta {
    let template_name = template.metadata.name.clone().unwrap_or_default();
    let labels = BTreeMap::from([
        (TEMPLATE_LABEL.to_owned(), template_name),
        (KIND_LABEL.to_owned(), kind.to_owned()),
        ("app.kubernetes.io/managed-by".to_owned(), "folio".to_owned()),
    ]);
    ObjectMeta {
        name: Some(name),
        namespace: template.metadata.namespace.clone(),
        labels: Some(labels),
        owner_references: template.owner_ref(&()).map(|o| vec![o]),
        ..Default::default()
    }
}

/// The snapshot of `template` as it is now (its generation is the version).
pub fn snapshot(template: &RenderTemplate) -> Option<ConfigMap> {
    let version = template.metadata.generation?;
    let name = snapshot_name(template.metadata.name.as_deref()?, version);
    let mut metadata = kept_meta(template, name, "version");
    metadata.labels.get_or_insert_with(Default::default).insert(VERSION_LABEL.to_owned(), version.to_string());
    let spec = serde_json::to_string_pretty(&template.spec).ok()?;
    Some(ConfigMap {
        metadata,
        immutable: Some(true),
        data: Some(BTreeMap::from([(SPEC_KEY.to_owned(), spec)])),
        ..Default::default()
    })
}

/// The version a snapshot keeps, and what it says; `None` for any other ConfigMap.
pub fn snapshot_spec(map: &ConfigMap) -> Option<(i64, RenderTemplateSpec)> {
    let version = map.metadata.labels.as_ref()?.get(VERSION_LABEL)?.parse().ok()?;
    let spec = serde_json::from_str(map.data.as_ref()?.get(SPEC_KEY)?).ok()?;
    Some((version, spec))
}

/// The ConfigMap keeping one file of `template`.
pub fn file_map(template: &RenderTemplate, file: &str, bytes: Vec<u8>) -> Option<ConfigMap> {
    let name = file_map_name(template.metadata.name.as_deref()?, file, &bytes);
    Some(ConfigMap {
        metadata: kept_meta(template, name, "file"),
        immutable: Some(true),
        binary_data: Some(BTreeMap::from([(file.to_owned(), ByteString(bytes))])),
        ..Default::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn template(generation: i64) -> RenderTemplate {
        let mut template =
            RenderTemplate::new("invoice", RenderTemplateSpec { source: Some("= Hi".into()), ..Default::default() });
        template.metadata.namespace = Some("acme".into());
        template.metadata.uid = Some("uid-1".into());
        template.metadata.generation = Some(generation);
        template
    }

    #[test]
    fn a_snapshot_keeps_its_version_and_spec_and_goes_with_its_template() {
        let map = snapshot(&template(3)).expect("a snapshot");
        assert_eq!(map.metadata.name.as_deref(), Some("invoice.version-3"));
        assert_eq!(map.immutable, Some(true));
        assert_eq!(map.metadata.owner_references.as_ref().map(|o| o[0].uid.as_str()), Some("uid-1"));
        assert_eq!(snapshot_spec(&map), Some((3, template(3).spec)));
    }

    #[test]
    fn file_maps_are_named_by_name_and_content() {
        let a = file_map_name("invoice", "logo.png", b"one");
        assert_ne!(a, file_map_name("invoice", "logo.png", b"two"));
        assert_ne!(a, file_map_name("invoice", "mark.png", b"one"));
        assert!(a.starts_with("invoice.file-") && a.len() == "invoice.file-".len() + 20);
        let map = file_map(&template(1), "logo.png", b"one".to_vec()).expect("a map");
        assert_eq!(crate::prepare::config_map_entry(&map, "logo.png").as_deref(), Some(&b"one"[..]));
    }
}
