//! How the cluster keeps a RenderTemplate's versions and files, as objects a
//! `kubectl` user and a GitOps tool see and leave alone:
//!
//! - A version is the template's `metadata.generation`, which the API server raises
//!   on every change of its spec, whoever makes it.
//! - Version N is kept as the immutable ConfigMap `<template>.version-N` (key
//!   `spec.json`), owned by the RenderTemplate, so it goes when the template goes
//!   (and one owned by an earlier template of the same name is not its). `folio api`
//!   writes one after every change it makes and before it accepts a job pinned to the
//!   current version; the operator writes one for every version a job renders, and
//!   reads it for a job pinned to an older one.
//! - A file uploaded through the API is an immutable ConfigMap
//!   `<template>.file-<digest>` (one file, under its own name, in `binaryData`; the
//!   digest covers the template's uid, the name and the bytes),
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
use kube::api::{Api, PostParams};

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

/// The ConfigMap keeping the file `file` with these bytes for the template `name`
/// whose uid is `uid`.
pub fn file_map_name(name: &str, uid: &str, file: &str, bytes: &[u8]) -> String {
    let mut named = format!("{uid}\0{file}\0").into_bytes();
    named.extend_from_slice(bytes);
    format!("{name}.file-{}", &sha256_hex(&named)[..20])
}

/// Whether `map` is owned by the object with `uid`.
pub fn owned_by(map: &ConfigMap, uid: &str) -> bool {
    map.metadata.owner_references.iter().flatten().any(|owner| owner.uid == uid)
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
    let spec = serde_json::to_string(&template.spec).ok()?;
    Some(ConfigMap {
        metadata,
        immutable: Some(true),
        data: Some(BTreeMap::from([(SPEC_KEY.to_owned(), spec)])),
        ..Default::default()
    })
}

/// The version a snapshot of the template with `uid` keeps, and what it says; `None`
/// for any other ConfigMap (one of an earlier template of the same name among them).
pub fn snapshot_spec(map: &ConfigMap, uid: &str) -> Option<(i64, RenderTemplateSpec)> {
    if !owned_by(map, uid) {
        return None;
    }
    let version = map.metadata.labels.as_ref()?.get(VERSION_LABEL)?.parse().ok()?;
    let spec = serde_json::from_str(map.data.as_ref()?.get(SPEC_KEY)?).ok()?;
    Some((version, spec))
}

/// Keep the version `template` is at as its snapshot in `maps` (its namespace's
/// ConfigMaps), unless it is kept already; why not, if it could not be.
pub async fn keep(maps: &Api<ConfigMap>, template: &RenderTemplate) -> Result<(), String> {
    let (Some(snapshot), Some(uid)) = (snapshot(template), template.metadata.uid.as_deref()) else {
        return Err("the template has no name, uid or generation yet".to_owned());
    };
    let name = snapshot.metadata.name.clone().unwrap_or_default();
    match maps.create(&PostParams::default(), &snapshot).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.is_already_exists() => {
            match maps.get_opt(&name).await.map_err(|err| err.to_string())? {
                Some(existing) if owned_by(&existing, uid) => Ok(()),
                _ => Err(format!(
                    "ConfigMap {name} exists and is not this template's (an earlier one's, being deleted?)"
                )),
            }
        }
        Err(err) => Err(err.to_string()),
    }
}

/// The ConfigMap keeping one file of `template`.
pub fn file_map(template: &RenderTemplate, file: &str, bytes: Vec<u8>) -> Option<ConfigMap> {
    let name = file_map_name(template.metadata.name.as_deref()?, template.metadata.uid.as_deref()?, file, &bytes);
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
        assert_eq!(snapshot_spec(&map, "uid-1"), Some((3, template(3).spec)));
        assert_eq!(
            snapshot_spec(&map, "uid-of-a-later-template"),
            None,
            "an earlier template's version is not this one's"
        );
    }

    #[test]
    fn file_maps_are_named_by_name_and_content() {
        let a = file_map_name("invoice", "uid-1", "logo.png", b"one");
        assert_ne!(a, file_map_name("invoice", "uid-1", "logo.png", b"two"));
        assert_ne!(a, file_map_name("invoice", "uid-1", "mark.png", b"one"));
        assert_ne!(a, file_map_name("invoice", "uid-2", "logo.png", b"one"), "a template made again has its own");
        assert!(a.starts_with("invoice.file-") && a.len() == "invoice.file-".len() + 20);
        let map = file_map(&template(1), "logo.png", b"one".to_vec()).expect("a map");
        assert_eq!(crate::prepare::config_map_entry(&map, "logo.png").as_deref(), Some(&b"one"[..]));
    }
}
