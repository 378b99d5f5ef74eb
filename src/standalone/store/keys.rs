//! API keys as stored: only a key's hash, its tenant and a short prefix to name it by,
//! so a copy of the database gives no one a working key.

use jiff::Timestamp;
use rusqlite::{Connection, OptionalExtension, params};

use super::{StoreResult, from_millis, millis};

/// An API key as listed (the key itself is never stored).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyRecord {
    /// The key's id.
    pub id: String,
    /// The tenant it belongs to.
    pub tenant: String,
    /// The first characters of the key.
    pub prefix: String,
    /// When it was made.
    pub created_at: Timestamp,
    /// When it was revoked.
    pub revoked_at: Option<Timestamp>,
}

/// Store a new key's hash.
pub fn insert_key(
    tx: &Connection,
    id: &str,
    tenant: &str,
    hash: &str,
    prefix: &str,
    now: Timestamp,
) -> StoreResult<()> {
    tx.execute(
        "INSERT INTO api_keys (id, tenant, hash, prefix, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![id, tenant, hash, prefix, millis(now)],
    )?;
    Ok(())
}

/// The tenant of a live key with this hash.
pub fn tenant_of_key(conn: &Connection, hash: &str) -> StoreResult<Option<String>> {
    Ok(conn
        .prepare_cached("SELECT tenant FROM api_keys WHERE hash = ?1 AND revoked_at IS NULL")?
        .query_row(params![hash], |r| r.get(0))
        .optional()?)
}

/// Every key (of `tenant`, or all).
pub fn list_keys(conn: &Connection, tenant: Option<&str>) -> StoreResult<Vec<KeyRecord>> {
    let mut statement = conn.prepare(
        "SELECT id, tenant, prefix, created_at, revoked_at FROM api_keys WHERE ?1 IS NULL OR tenant = ?1 ORDER BY tenant, created_at",
    )?;
    let rows = statement.query_map(params![tenant], |r| {
        Ok(KeyRecord {
            id: r.get(0)?,
            tenant: r.get(1)?,
            prefix: r.get(2)?,
            created_at: from_millis(r.get(3)?),
            revoked_at: r.get::<_, Option<i64>>(4)?.map(from_millis),
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Revoke the key `id` (by id or prefix); returns whether a live key was revoked.
pub fn revoke_key(tx: &Connection, id: &str, now: Timestamp) -> StoreResult<bool> {
    Ok(tx.execute(
        "UPDATE api_keys SET revoked_at = ?2 WHERE (id = ?1 OR prefix = ?1) AND revoked_at IS NULL",
        params![id, millis(now)],
    )? > 0)
}
