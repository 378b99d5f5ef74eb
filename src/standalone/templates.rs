//! The standalone home's templates over the port: versions and files, each change
//! one transaction of the database.

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::Standalone;
use super::store::{self, StoreResult, StoredTemplate};
use crate::assets::{self, AssetInfo, MAX_ASSET_BYTES, MAX_TEMPLATE_ASSETS_BYTES};
use crate::port::{HomeError, TemplateVersion, TemplateView};
use crate::resources::{RenderTemplate, TemplateAsset};

/// The API view of a template's current version.
pub(super) fn template_view(stored: StoredTemplate) -> TemplateView {
    TemplateView {
        template: stored.template,
        version: stored.version,
        created_at: stored.created_at,
        updated_at: stored.updated_at,
    }
}

/// The current version of `name`, or 404.
fn current(tx: &rusqlite::Connection, tenant: &str, name: &str) -> StoreResult<Result<StoredTemplate, HomeError>> {
    Ok(store::load_template(tx, tenant, name)?.ok_or_else(|| HomeError::template_not_found(name)))
}

impl Standalone {
    pub(super) fn template_version_view(
        &self,
        tenant: &str,
        name: &str,
        version: i64,
    ) -> Result<TemplateView, HomeError> {
        self.store.read(|c| {
            let Some(found) = store::load_template_version(c, tenant, name, version)? else {
                return Ok(Err(match store::load_template(c, tenant, name)? {
                    Some(_) => HomeError::version_not_found(version),
                    None => HomeError::template_not_found(name),
                }));
            };
            let current = store::load_template(c, tenant, name)?;
            let created_at = current.as_ref().map_or(found.created_at, |c| c.created_at);
            let template = RenderTemplate {
                metadata: ObjectMeta {
                    name: Some(name.to_owned()),
                    namespace: Some(tenant.to_owned()),
                    ..Default::default()
                },
                spec: found.spec,
            };
            Ok(Ok(TemplateView { template, version: found.version, created_at, updated_at: found.created_at }))
        })?
    }

    pub(super) fn versions_of(&self, tenant: &str, name: &str) -> Result<Vec<TemplateVersion>, HomeError> {
        let versions = self.store.read(|c| {
            if store::load_template(c, tenant, name)?.is_none() {
                return Ok(Err(HomeError::template_not_found(name)));
            }
            Ok(Ok(store::list_template_versions(c, tenant, name)?))
        })??;
        Ok(versions
            .into_iter()
            .map(|v| TemplateVersion {
                version: v.version,
                created_at: v.created_at,
                sha256: assets::spec_digest(&v.spec),
            })
            .collect())
    }

    pub(super) fn restore_version(&self, tenant: &str, name: &str, version: i64) -> Result<TemplateView, HomeError> {
        let now = Timestamp::now();
        self.store.write(|tx| {
            let current = match current(tx, tenant, name)? {
                Ok(current) => current,
                Err(err) => return Ok(Err(err)),
            };
            let Some(old) = store::load_template_version(tx, tenant, name, version)? else {
                return Ok(Err(HomeError::version_not_found(version)));
            };
            let mut template = current.template;
            template.spec = old.spec;
            store::save_template(tx, &template, now)?;
            current_view(tx, tenant, name)
        })?
    }

    pub(super) fn store_asset(
        &self,
        tenant: &str,
        name: &str,
        file: &str,
        bytes: Vec<u8>,
    ) -> Result<(AssetInfo, bool), HomeError> {
        let now = Timestamp::now();
        self.store.write(|tx| {
            let mut template = match current(tx, tenant, name)? {
                Ok(current) => current.template,
                Err(err) => return Ok(Err(err)),
            };
            let others: u64 = store::file_infos(tx, tenant, &template.spec)?
                .iter()
                .filter(|info| info.name != file)
                .map(|info| info.size)
                .sum();
            if let Some(problem) =
                assets::size_problem(file, bytes.len(), others, MAX_ASSET_BYTES, MAX_TEMPLATE_ASSETS_BYTES)
            {
                return Ok(Err(HomeError::TooLarge(problem)));
            }
            let info = store::insert_file(tx, tenant, file, &bytes)?;
            let stored =
                TemplateAsset { name: file.to_owned(), sha256: Some(info.sha256.clone()), ..Default::default() };
            let created = assets::put_file(&mut template.spec, stored);
            store::save_template(tx, &template, now)?;
            Ok(Ok((info, created)))
        })?
    }

    pub(super) fn asset_infos(&self, tenant: &str, name: &str) -> Result<Vec<AssetInfo>, HomeError> {
        self.store.read(|c| match current(c, tenant, name)? {
            Ok(current) => Ok(Ok(store::file_infos(c, tenant, &current.template.spec)?)),
            Err(err) => Ok(Err(err)),
        })?
    }

    pub(super) fn asset_bytes(&self, tenant: &str, name: &str, file: &str) -> Result<(AssetInfo, Vec<u8>), HomeError> {
        self.store.read(|c| {
            let current = match current(c, tenant, name)? {
                Ok(current) => current,
                Err(err) => return Ok(Err(err)),
            };
            let asset = current.template.spec.assets.into_iter().find(|asset| asset.name == file);
            let bytes = match asset {
                Some(asset) if asset.base64.is_some() => assets::inline_bytes(&asset),
                Some(TemplateAsset { sha256: Some(sha256), .. }) => store::load_file(c, tenant, &sha256)?,
                _ => None,
            };
            Ok(bytes.map(|bytes| (AssetInfo::of(file, &bytes), bytes)).ok_or_else(|| HomeError::asset_not_found(file)))
        })?
    }

    pub(super) fn remove_asset(&self, tenant: &str, name: &str, file: &str) -> Result<(), HomeError> {
        let now = Timestamp::now();
        self.store.write(|tx| {
            let mut template = match current(tx, tenant, name)? {
                Ok(current) => current.template,
                Err(err) => return Ok(Err(err)),
            };
            if !assets::remove_file(&mut template.spec, file) {
                return Ok(Err(HomeError::asset_not_found(file)));
            }
            store::save_template(tx, &template, now)?;
            Ok(Ok(()))
        })?
    }
}

/// The view of the current version of `name`, read in the transaction that changed it.
fn current_view(tx: &rusqlite::Connection, tenant: &str, name: &str) -> StoreResult<Result<TemplateView, HomeError>> {
    Ok(current(tx, tenant, name)?.map(template_view))
}
