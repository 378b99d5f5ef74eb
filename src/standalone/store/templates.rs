//! Templates as stored: every version of each tenant's `RenderTemplate` objects
//! (JSON), the current one with when it was made and last changed (which the API
//! shows and the object does not carry), and the templates' files.
//!
//! A template's files are kept once per tenant by their SHA-256 (`template_files`);
//! a stored object names each file by its digest instead of carrying its bytes, so
//! that a new version costs a row, not a copy of every file. [`with_file_bytes`]
//! puts the bytes back for a render.

use std::collections::BTreeMap;

use base64::Engine as _;
use jiff::Timestamp;
use rusqlite::{Connection, OptionalExtension, params};

use super::{StoreResult, from_millis, millis};
use crate::assets::{AssetInfo, inline_bytes, sha256_hex};
use crate::resources::{RenderTemplate, RenderTemplateSpec};

/// A template's current version as stored.
#[derive(Clone, Debug)]
pub struct StoredTemplate {
    /// The object; its files named by digest.
    pub template: RenderTemplate,
    /// Its version: 1 when created, one more with every change.
    pub version: i64,
    /// When the template was created.
    pub created_at: Timestamp,
    /// When its current version was made.
    pub updated_at: Timestamp,
}

/// One version of a template.
#[derive(Clone, Debug)]
pub struct StoredVersion {
    /// Its number.
    pub version: i64,
    /// When it was made.
    pub created_at: Timestamp,
    /// What it says; its files named by digest.
    pub spec: RenderTemplateSpec,
}

/// The template's tenant (namespace) and name.
fn key_of(template: &RenderTemplate) -> (&str, &str) {
    let tenant = template.metadata.namespace.as_deref().unwrap_or_default();
    let name = template.metadata.name.as_deref().unwrap_or_default();
    (tenant, name)
}

fn stored_from_row(row: &rusqlite::Row) -> rusqlite::Result<(String, i64, i64, i64)> {
    Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?))
}

fn stored_of((object, version, created_at, updated_at): (String, i64, i64, i64)) -> StoreResult<StoredTemplate> {
    Ok(StoredTemplate {
        template: serde_json::from_str(&object)?,
        version,
        created_at: from_millis(created_at),
        updated_at: from_millis(updated_at),
    })
}

const SELECT_TEMPLATE: &str = "SELECT object, version, created_at, updated_at FROM templates";

/// The template `name` of `tenant`, at its current version.
pub fn load_template(conn: &Connection, tenant: &str, name: &str) -> StoreResult<Option<StoredTemplate>> {
    let raw = conn
        .prepare_cached(&format!("{SELECT_TEMPLATE} WHERE tenant = ?1 AND name = ?2"))?
        .query_row(params![tenant, name], stored_from_row)
        .optional()?;
    raw.map(stored_of).transpose()
}

/// All templates of `tenant`, by name.
pub fn list_templates(conn: &Connection, tenant: &str) -> StoreResult<Vec<StoredTemplate>> {
    let mut statement = conn.prepare_cached(&format!("{SELECT_TEMPLATE} WHERE tenant = ?1 ORDER BY name"))?;
    let rows = statement.query_map(params![tenant], stored_from_row)?;
    rows.map(|raw| stored_of(raw?)).collect()
}

/// Make `template` the current version of its name, unless it says what the current
/// version says. Inline files (`base64`) move to the files table. Returns the version
/// that is current now and whether the template is new.
pub fn save_template(tx: &Connection, template: &RenderTemplate, now: Timestamp) -> StoreResult<(i64, bool)> {
    let (tenant, name) = key_of(template);
    let mut template = template.clone();
    keep_files_apart(tx, tenant, &mut template.spec)?;
    let current = load_template(tx, tenant, name)?;
    if let Some(current) = &current
        && current.template.spec == template.spec
    {
        return Ok((current.version, false));
    }
    let version = current.as_ref().map_or(1, |c| c.version + 1);
    let object = serde_json::to_string(&template)?;
    tx.prepare_cached(
        "INSERT INTO templates (tenant, name, created_at, updated_at, object, version) VALUES (?1, ?2, ?3, ?3, ?4, ?5)
         ON CONFLICT (tenant, name) DO UPDATE SET updated_at = ?3, object = ?4, version = ?5",
    )?
    .execute(params![tenant, name, millis(now), object, version])?;
    tx.prepare_cached(
        "INSERT INTO template_versions (tenant, name, version, created_at, object) VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![tenant, name, version, millis(now), object])?;
    Ok((version, current.is_none()))
}

/// Insert a template unless one of that name exists; returns whether it was inserted.
pub fn create_template(tx: &Connection, template: &RenderTemplate, now: Timestamp) -> StoreResult<bool> {
    let (tenant, name) = key_of(template);
    if load_template(tx, tenant, name)?.is_some() {
        return Ok(false);
    }
    save_template(tx, template, now)?;
    Ok(true)
}

/// Delete a template, its versions and the files no other template uses; returns
/// whether it existed.
pub fn delete_template(tx: &Connection, tenant: &str, name: &str) -> StoreResult<bool> {
    let existed = tx.execute("DELETE FROM templates WHERE tenant = ?1 AND name = ?2", params![tenant, name])? > 0;
    tx.execute("DELETE FROM template_versions WHERE tenant = ?1 AND name = ?2", params![tenant, name])?;
    tx.execute(
        "DELETE FROM template_files WHERE tenant = ?1 AND sha256 NOT IN (
             SELECT json_extract(file.value, '$.sha256') FROM template_versions AS v,
                 json_each(v.object, '$.spec.assets') AS file
             WHERE v.tenant = ?1 AND json_extract(file.value, '$.sha256') IS NOT NULL)",
        params![tenant],
    )?;
    Ok(existed)
}

/// Version `version` of the template `name`.
pub fn load_template_version(
    conn: &Connection,
    tenant: &str,
    name: &str,
    version: i64,
) -> StoreResult<Option<StoredVersion>> {
    let raw = conn
        .prepare_cached(
            "SELECT version, created_at, object FROM template_versions WHERE tenant = ?1 AND name = ?2 AND version = ?3",
        )?
        .query_row(params![tenant, name, version], version_from_row)
        .optional()?;
    raw.map(version_of).transpose()
}

/// Every version of the template `name`, oldest first.
pub fn list_template_versions(conn: &Connection, tenant: &str, name: &str) -> StoreResult<Vec<StoredVersion>> {
    let mut statement = conn.prepare_cached(
        "SELECT version, created_at, object FROM template_versions WHERE tenant = ?1 AND name = ?2 ORDER BY version",
    )?;
    let rows = statement.query_map(params![tenant, name], version_from_row)?;
    rows.map(|raw| version_of(raw?)).collect()
}

fn version_from_row(row: &rusqlite::Row) -> rusqlite::Result<(i64, i64, String)> {
    Ok((row.get(0)?, row.get(1)?, row.get(2)?))
}

fn version_of((version, created_at, object): (i64, i64, String)) -> StoreResult<StoredVersion> {
    let template: RenderTemplate = serde_json::from_str(&object)?;
    Ok(StoredVersion { version, created_at: from_millis(created_at), spec: template.spec })
}

/// Keep `bytes` as a file of `tenant`'s templates; returns what it is.
pub fn insert_file(tx: &Connection, tenant: &str, name: &str, bytes: &[u8]) -> StoreResult<AssetInfo> {
    let info = AssetInfo::of(name, bytes);
    tx.prepare_cached(
        "INSERT INTO template_files (tenant, sha256, size, content_type, bytes) VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (tenant, sha256) DO NOTHING",
    )?
    .execute(params![tenant, info.sha256, info.size as i64, info.content_type, bytes])?;
    Ok(info)
}

/// The bytes of the file with digest `sha256`.
pub fn load_file(conn: &Connection, tenant: &str, sha256: &str) -> StoreResult<Option<Vec<u8>>> {
    Ok(conn
        .prepare_cached("SELECT bytes FROM template_files WHERE tenant = ?1 AND sha256 = ?2")?
        .query_row(params![tenant, sha256], |row| row.get(0))
        .optional()?)
}

/// What the files of `spec` are, in its order: those kept here, and those it still
/// carries inline.
pub fn file_infos(conn: &Connection, tenant: &str, spec: &RenderTemplateSpec) -> StoreResult<Vec<AssetInfo>> {
    let mut statement =
        conn.prepare_cached("SELECT size, content_type FROM template_files WHERE tenant = ?1 AND sha256 = ?2")?;
    let mut infos = Vec::new();
    for asset in &spec.assets {
        if asset.base64.is_some() {
            infos.push(AssetInfo::of(&asset.name, &inline_bytes(asset).unwrap_or_default()));
        } else if let Some(sha256) = &asset.sha256 {
            let found: Option<(i64, String)> =
                statement.query_row(params![tenant, sha256], |row| Ok((row.get(0)?, row.get(1)?))).optional()?;
            if let Some((size, content_type)) = found {
                infos.push(AssetInfo {
                    name: asset.name.clone(),
                    size: size as u64,
                    content_type,
                    sha256: sha256.clone(),
                });
            }
        }
    }
    Ok(infos)
}

/// `spec` with the bytes of its files put back (as `base64`), ready to render.
pub fn with_file_bytes(
    conn: &Connection,
    tenant: &str,
    mut spec: RenderTemplateSpec,
) -> StoreResult<RenderTemplateSpec> {
    let mut loaded: BTreeMap<String, String> = BTreeMap::new();
    for asset in &mut spec.assets {
        if asset.base64.is_some() || asset.config_map_key_ref.is_some() {
            continue;
        }
        let Some(sha256) = &asset.sha256 else { continue };
        if !loaded.contains_key(sha256)
            && let Some(bytes) = load_file(conn, tenant, sha256)?
        {
            loaded.insert(sha256.clone(), base64::engine::general_purpose::STANDARD.encode(bytes));
        }
        asset.base64 = loaded.get(sha256).cloned();
    }
    Ok(spec)
}

/// Move the inline files of `spec` to the files table, naming each by its digest.
/// A file whose base64 does not decode stays inline, for the render to report.
fn keep_files_apart(tx: &Connection, tenant: &str, spec: &mut RenderTemplateSpec) -> StoreResult<()> {
    for asset in &mut spec.assets {
        let Some(bytes) = inline_bytes(asset) else { continue };
        let digest = sha256_hex(&bytes);
        if asset.sha256.as_ref().is_some_and(|expected| !expected.eq_ignore_ascii_case(&digest)) {
            continue;
        }
        insert_file(tx, tenant, &asset.name, &bytes)?;
        asset.sha256 = Some(digest);
        asset.base64 = None;
    }
    Ok(())
}
