//! Templates' versions and files as `folio api` keeps them in the cluster
//! ([`crate::cluster::template_versions`] says where and why): every change goes
//! through the RenderTemplate (its generation is the version), and is then kept as
//! an immutable snapshot.

use k8s_openapi::api::core::v1::ConfigMap;
use kube::ResourceExt;
use kube::api::{Api, ListParams, PostParams};

use super::errors::{cluster_error, is_already_exists};
use super::{ClusterBackend, admission, objects};
use crate::assets::{self, AssetInfo, MAX_CLUSTER_ASSETS_BYTES};
use crate::cluster::template_versions::{KIND_LABEL, TEMPLATE_LABEL, file_map, keep, snapshot_name, snapshot_spec};
use crate::port::{HomeError, Object, TemplateVersion, TemplateView};
use crate::prepare::config_map_entry;
use crate::resources::{ConfigMapKeyRef, RenderTemplate, RenderTemplateSpec, TemplateAsset};

/// How often a spec change is tried again when someone else wrote the template first.
const REPLACE_ATTEMPTS: usize = 4;

impl ClusterBackend {
    fn config_maps_api(&self, tenant: &str) -> Api<ConfigMap> {
        Api::namespaced(self.client.clone(), tenant)
    }

    /// The template as the API server has it now (not the cache: a change starts from
    /// the latest version).
    async fn fresh_template(&self, tenant: &str, name: &str) -> Result<RenderTemplate, HomeError> {
        if !admission::is_object_name(name) {
            return Err(HomeError::template_not_found(name));
        }
        let found = self
            .templates_api(tenant)
            .get_opt(name)
            .await
            .map_err(|e| cluster_error(e, || HomeError::template_not_found(name)))?;
        found.filter(|t| objects::is_live(&t.metadata)).ok_or_else(|| HomeError::template_not_found(name))
    }

    /// Keep the version `template` is at as its snapshot, once; why not, if it could
    /// not be.
    async fn keep(&self, template: &RenderTemplate) -> Result<(), String> {
        let key = (template.metadata.uid.clone().unwrap_or_default(), template.metadata.generation.unwrap_or(0));
        if self.kept_versions.lock().unwrap_or_else(|e| e.into_inner()).contains(&key) {
            return Ok(());
        }
        keep(&self.config_maps_api(&template.namespace().unwrap_or_default()), template).await?;
        self.kept_versions.lock().unwrap_or_else(|e| e.into_inner()).insert(key);
        Ok(())
    }

    /// Keep the version a change made. One that cannot be kept is logged, not an
    /// error: the change is made, and only going back to it is lost.
    pub(super) async fn keep_version(&self, template: &RenderTemplate) {
        if let Err(problem) = self.keep(template).await {
            tracing::warn!(template = %template.name_any(), namespace = ?template.namespace(),
                generation = ?template.metadata.generation, %problem, "could not keep a version of a template");
        }
    }

    /// Keep version `version` of `name` before a job pinned to it is accepted, when it
    /// is the current one (an older one was kept when it was made or rendered). A
    /// version that cannot be kept refuses the job: it might render another.
    pub(super) async fn keep_pinned_version(&self, tenant: &str, name: &str, version: i64) -> Result<(), HomeError> {
        let cached = self.caches.templates.get(tenant, name).map(|t| RenderTemplate::clone(&t));
        let template = match cached {
            Some(template) if template.metadata.generation == Some(version) => template,
            _ => self.fresh_template(tenant, name).await?,
        };
        if template.metadata.generation != Some(version) {
            return Ok(());
        }
        self.keep(&template).await.map_err(|problem| {
            tracing::error!(%tenant, template = name, version, %problem, "could not keep the version a job is pinned to");
            HomeError::Unavailable("the template's version could not be kept; try again".to_owned())
        })
    }

    /// Change the spec of `name` with `change` (which may refuse), write it, keep the
    /// new version, and wait for the cache to show it.
    async fn change_spec(
        &self,
        tenant: &str,
        name: &str,
        change: impl Fn(&mut RenderTemplateSpec) -> Result<(), HomeError>,
    ) -> Result<RenderTemplate, HomeError> {
        let api = self.templates_api(tenant);
        for attempt in 1..=REPLACE_ATTEMPTS {
            let mut template = self.fresh_template(tenant, name).await?;
            change(&mut template.spec)?;
            admission::check_template(&template)?;
            match api.replace(name, &PostParams::default(), &template).await {
                Ok(written) => {
                    self.keep_version(&written).await;
                    self.caches.templates.wait_for_write(self.settle, &written).await;
                    return Ok(written);
                }
                Err(kube::Error::Api(status)) if status.is_conflict() && attempt < REPLACE_ATTEMPTS => {}
                Err(err) => return Err(cluster_error(err, || HomeError::template_not_found(name))),
            }
        }
        Err(HomeError::Conflict("the template changed meanwhile; try again".to_owned()))
    }

    /// The ConfigMaps keeping the versions of `name`.
    async fn kept_maps(&self, tenant: &str, name: &str) -> Result<Vec<ConfigMap>, HomeError> {
        let selector = ListParams::default().labels(&format!("{TEMPLATE_LABEL}={name},{KIND_LABEL}=version"));
        let maps = self
            .config_maps_api(tenant)
            .list(&selector)
            .await
            .map_err(|e| cluster_error(e, || HomeError::not_found(Object::Namespace)))?;
        Ok(maps.items)
    }

    /// The bytes of each file of `spec`, by name, in its order.
    async fn files_of(&self, tenant: &str, spec: &RenderTemplateSpec) -> Result<Vec<(String, Vec<u8>)>, HomeError> {
        let mut files = Vec::new();
        for asset in &spec.assets {
            let bytes = match (&asset.base64, &asset.config_map_key_ref) {
                (Some(_), _) => assets::inline_bytes(asset),
                (None, Some(key)) => {
                    let map = self
                        .config_maps_api(tenant)
                        .get_opt(&key.name)
                        .await
                        .map_err(|e| cluster_error(e, || HomeError::asset_not_found(&asset.name)))?;
                    map.and_then(|map| config_map_entry(&map, &key.key))
                }
                (None, None) => None,
            };
            if let Some(bytes) = bytes {
                files.push((asset.name.clone(), bytes));
            }
        }
        Ok(files)
    }

    pub(super) async fn version_view(&self, tenant: &str, name: &str, version: i64) -> Result<TemplateView, HomeError> {
        let current = self.fresh_template(tenant, name).await?;
        if current.metadata.generation == Some(version) {
            return Ok(objects::template_view(current));
        }
        let map = self
            .config_maps_api(tenant)
            .get_opt(&snapshot_name(name, version))
            .await
            .map_err(|e| cluster_error(e, || HomeError::version_not_found(version)))?;
        let uid = current.metadata.uid.clone().unwrap_or_default();
        let (_, spec) = map
            .as_ref()
            .and_then(|map| snapshot_spec(map, &uid))
            .filter(|(kept, _)| *kept == version)
            .ok_or_else(|| HomeError::version_not_found(version))?;
        let made =
            map.as_ref().map_or(current.metadata.creation_timestamp.clone(), |m| m.metadata.creation_timestamp.clone());
        let mut view = objects::template_view(RenderTemplate { spec, ..current });
        view.version = version;
        view.updated_at = made.map_or(view.updated_at, |t| t.0);
        Ok(view)
    }

    pub(super) async fn versions(&self, tenant: &str, name: &str) -> Result<Vec<TemplateVersion>, HomeError> {
        let current = self.fresh_template(tenant, name).await?;
        let uid = current.metadata.uid.clone().unwrap_or_default();
        let mut versions: Vec<TemplateVersion> = self
            .kept_maps(tenant, name)
            .await?
            .iter()
            .filter_map(|map| {
                let (version, spec) = snapshot_spec(map, &uid)?;
                Some(TemplateVersion {
                    version,
                    created_at: objects::created_at(&map.metadata),
                    sha256: assets::spec_digest(&spec),
                })
            })
            .collect();
        let generation = current.metadata.generation.unwrap_or(1);
        if !versions.iter().any(|v| v.version == generation) {
            let view = objects::template_view(current);
            versions.push(TemplateVersion {
                version: generation,
                created_at: view.updated_at,
                sha256: assets::spec_digest(&view.template.spec),
            });
        }
        versions.sort_by_key(|v| v.version);
        Ok(versions)
    }

    pub(super) async fn restore(&self, tenant: &str, name: &str, version: i64) -> Result<TemplateView, HomeError> {
        let old = self.version_view(tenant, name, version).await?.template.spec;
        let written = self
            .change_spec(tenant, name, |spec| {
                *spec = old.clone();
                Ok(())
            })
            .await?;
        Ok(objects::template_view(written))
    }

    pub(super) async fn put_file(
        &self,
        tenant: &str,
        name: &str,
        file: &str,
        bytes: Vec<u8>,
    ) -> Result<(AssetInfo, bool), HomeError> {
        let template = self.fresh_template(tenant, name).await?;
        let others: u64 = self
            .files_of(tenant, &template.spec)
            .await?
            .iter()
            .filter(|(other, _)| other != file)
            .map(|(_, bytes)| bytes.len() as u64)
            .sum();
        if let Some(problem) =
            assets::size_problem(file, bytes.len(), others, MAX_CLUSTER_ASSETS_BYTES, MAX_CLUSTER_ASSETS_BYTES)
        {
            return Err(HomeError::TooLarge(problem));
        }
        let info = AssetInfo::of(file, &bytes);
        let map = file_map(&template, file, bytes).ok_or_else(|| HomeError::template_not_found(name))?;
        let map_name = map.metadata.name.clone().unwrap_or_default();
        match self.config_maps_api(tenant).create(&PostParams::default(), &map).await {
            Ok(_) => {}
            Err(err) if is_already_exists(&err) => {}
            Err(err) => return Err(cluster_error(err, || HomeError::not_found(Object::Namespace))),
        }
        let stored = TemplateAsset {
            name: file.to_owned(),
            config_map_key_ref: Some(ConfigMapKeyRef { name: map_name, key: file.to_owned() }),
            sha256: Some(info.sha256.clone()),
            ..Default::default()
        };
        self.change_spec(tenant, name, |spec| {
            assets::put_file(spec, stored.clone());
            Ok(())
        })
        .await?;
        let created = !template.spec.assets.iter().any(|asset| asset.name == file);
        Ok((info, created))
    }

    pub(super) async fn file_infos(&self, tenant: &str, name: &str) -> Result<Vec<AssetInfo>, HomeError> {
        let template = self.fresh_template(tenant, name).await?;
        let files = self.files_of(tenant, &template.spec).await?;
        Ok(files.iter().map(|(file, bytes)| AssetInfo::of(file, bytes)).collect())
    }

    pub(super) async fn file(&self, tenant: &str, name: &str, file: &str) -> Result<(AssetInfo, Vec<u8>), HomeError> {
        let mut template = self.fresh_template(tenant, name).await?;
        template.spec.assets.retain(|asset| asset.name == file);
        let found = self.files_of(tenant, &template.spec).await?.pop();
        found.map(|(_, bytes)| (AssetInfo::of(file, &bytes), bytes)).ok_or_else(|| HomeError::asset_not_found(file))
    }

    pub(super) async fn remove_file(&self, tenant: &str, name: &str, file: &str) -> Result<(), HomeError> {
        self.change_spec(tenant, name, |spec| {
            if assets::remove_file(spec, file) { Ok(()) } else { Err(HomeError::asset_not_found(file)) }
        })
        .await?;
        Ok(())
    }
}
