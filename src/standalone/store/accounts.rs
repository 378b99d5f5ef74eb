//! Accounts as stored: the `RenderAccount` object (JSON) of each tenant, and the
//! Secrets its webhook's `secretRef` points at (what a cluster keeps as Secret
//! objects, the standalone home keeps here).

use std::collections::BTreeMap;

use rusqlite::{Connection, OptionalExtension, params};

use super::StoreResult;
use crate::resources::RenderAccount;

/// The account of `tenant`, if one was applied.
pub fn load_account(conn: &Connection, tenant: &str) -> StoreResult<Option<RenderAccount>> {
    let raw: Option<String> = conn
        .prepare_cached("SELECT object FROM accounts WHERE tenant = ?1")?
        .query_row(params![tenant], |r| r.get(0))
        .optional()?;
    Ok(raw.map(|o| serde_json::from_str(&o)).transpose()?)
}

/// Insert or replace the account of its namespace.
pub fn save_account(tx: &Connection, account: &RenderAccount) -> StoreResult<()> {
    let tenant = account.metadata.namespace.as_deref().unwrap_or_default();
    tx.prepare_cached(
        "INSERT INTO accounts (tenant, object) VALUES (?1, ?2) ON CONFLICT (tenant) DO UPDATE SET object = ?2",
    )?
    .execute(params![tenant, serde_json::to_string(account)?])?;
    Ok(())
}

/// Store a Secret's values (for account webhooks' `secretRef`).
pub fn save_secret(tx: &Connection, tenant: &str, name: &str, data: &BTreeMap<String, String>) -> StoreResult<()> {
    tx.execute(
        "INSERT INTO secrets (tenant, name, data) VALUES (?1, ?2, ?3) ON CONFLICT (tenant, name) DO UPDATE SET data = ?3",
        params![tenant, name, serde_json::to_string(data)?],
    )?;
    Ok(())
}

/// One value of a stored Secret.
pub fn secret_value(conn: &Connection, tenant: &str, name: &str, key: &str) -> StoreResult<Option<String>> {
    let data: Option<String> = conn
        .query_row("SELECT data FROM secrets WHERE tenant = ?1 AND name = ?2", params![tenant, name], |r| r.get(0))
        .optional()?;
    let Some(data) = data else { return Ok(None) };
    let map: BTreeMap<String, String> = serde_json::from_str(&data)?;
    Ok(map.get(key).cloned())
}
