//! Templates as stored: the `RenderTemplate` object (JSON) per tenant and name, with
//! when it was made and last changed, which the API shows and the object does not
//! carry.

use jiff::Timestamp;
use rusqlite::{Connection, OptionalExtension, params};

use super::{StoreResult, from_millis, millis};
use crate::resources::RenderTemplate;

/// A template row as read: object, created, updated.
type RawTemplate = (String, i64, i64);

fn template_from_row(row: &rusqlite::Row) -> rusqlite::Result<RawTemplate> {
    Ok((row.get(0)?, row.get(1)?, row.get(2)?))
}

fn template_of(raw: RawTemplate) -> StoreResult<(RenderTemplate, Timestamp, Timestamp)> {
    let (object, created_at, updated_at) = raw;
    Ok((serde_json::from_str(&object)?, from_millis(created_at), from_millis(updated_at)))
}

/// The template's tenant (namespace) and name.
fn key_of(template: &RenderTemplate) -> (&str, &str) {
    let tenant = template.metadata.namespace.as_deref().unwrap_or_default();
    let name = template.metadata.name.as_deref().unwrap_or_default();
    (tenant, name)
}

/// The template `name` of `tenant`.
pub fn load_template(
    conn: &Connection,
    tenant: &str,
    name: &str,
) -> StoreResult<Option<(RenderTemplate, Timestamp, Timestamp)>> {
    let raw = conn
        .prepare_cached("SELECT object, created_at, updated_at FROM templates WHERE tenant = ?1 AND name = ?2")?
        .query_row(params![tenant, name], template_from_row)
        .optional()?;
    raw.map(template_of).transpose()
}

/// Insert or replace a template; returns whether it is new.
pub fn save_template(tx: &Connection, template: &RenderTemplate, now: Timestamp) -> StoreResult<bool> {
    let (tenant, name) = key_of(template);
    let existed = load_template(tx, tenant, name)?.is_some();
    tx.prepare_cached(
        "INSERT INTO templates (tenant, name, created_at, updated_at, object) VALUES (?1, ?2, ?3, ?3, ?4)
         ON CONFLICT (tenant, name) DO UPDATE SET updated_at = ?3, object = ?4",
    )?
    .execute(params![tenant, name, millis(now), serde_json::to_string(template)?])?;
    Ok(!existed)
}

/// Insert a template unless one of that name exists; returns whether it was inserted.
pub fn create_template(tx: &Connection, template: &RenderTemplate, now: Timestamp) -> StoreResult<bool> {
    let (tenant, name) = key_of(template);
    let inserted = tx
        .prepare_cached(
            "INSERT INTO templates (tenant, name, created_at, updated_at, object) VALUES (?1, ?2, ?3, ?3, ?4)
             ON CONFLICT (tenant, name) DO NOTHING",
        )?
        .execute(params![tenant, name, millis(now), serde_json::to_string(template)?])?;
    Ok(inserted == 1)
}

/// All templates of `tenant`, by name.
pub fn list_templates(conn: &Connection, tenant: &str) -> StoreResult<Vec<(RenderTemplate, Timestamp, Timestamp)>> {
    let mut statement =
        conn.prepare_cached("SELECT object, created_at, updated_at FROM templates WHERE tenant = ?1 ORDER BY name")?;
    let rows = statement.query_map(params![tenant], template_from_row)?;
    rows.map(|raw| template_of(raw?)).collect()
}

/// Delete a template; returns whether it existed.
pub fn delete_template(tx: &Connection, tenant: &str, name: &str) -> StoreResult<bool> {
    Ok(tx.execute("DELETE FROM templates WHERE tenant = ?1 AND name = ?2", params![tenant, name])? > 0)
}
