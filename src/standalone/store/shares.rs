//! Share links as stored: a token that serves one job's PDF without an API key, until
//! it expires or is revoked.

use jiff::Timestamp;
use rusqlite::{Connection, OptionalExtension, params};

use super::{StoreResult, from_millis, millis};

/// A share link as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShareRecord {
    /// The token in the link.
    pub token: String,
    /// The tenant owning it.
    pub tenant: String,
    /// The job whose PDF it serves.
    pub job_id: String,
    /// When it was made.
    pub created_at: Timestamp,
    /// When it stops working, if ever.
    pub expires_at: Option<Timestamp>,
    /// When it was revoked.
    pub revoked_at: Option<Timestamp>,
}

/// Store a share link.
pub fn insert_share(tx: &Connection, share: &ShareRecord) -> StoreResult<()> {
    tx.execute(
        "INSERT INTO shares (token, tenant, job_id, created_at, expires_at) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![share.token, share.tenant, share.job_id, millis(share.created_at), share.expires_at.map(millis)],
    )?;
    Ok(())
}

fn share_from_row(r: &rusqlite::Row) -> rusqlite::Result<ShareRecord> {
    Ok(ShareRecord {
        token: r.get(0)?,
        tenant: r.get(1)?,
        job_id: r.get(2)?,
        created_at: from_millis(r.get(3)?),
        expires_at: r.get::<_, Option<i64>>(4)?.map(from_millis),
        revoked_at: r.get::<_, Option<i64>>(5)?.map(from_millis),
    })
}

/// The share link with `token`.
pub fn load_share(conn: &Connection, token: &str) -> StoreResult<Option<ShareRecord>> {
    Ok(conn
        .prepare_cached(
            "SELECT token, tenant, job_id, created_at, expires_at, revoked_at FROM shares WHERE token = ?1",
        )?
        .query_row(params![token], share_from_row)
        .optional()?)
}

/// `tenant`'s share links, newest first.
pub fn list_shares(conn: &Connection, tenant: &str) -> StoreResult<Vec<ShareRecord>> {
    let mut statement = conn.prepare_cached(
        "SELECT token, tenant, job_id, created_at, expires_at, revoked_at FROM shares WHERE tenant = ?1 ORDER BY created_at DESC",
    )?;
    let rows = statement.query_map(params![tenant], share_from_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Revoke `tenant`'s share link; returns whether it existed.
pub fn revoke_share(tx: &Connection, tenant: &str, token: &str, now: Timestamp) -> StoreResult<bool> {
    Ok(tx.execute(
        "UPDATE shares SET revoked_at = COALESCE(revoked_at, ?3) WHERE token = ?1 AND tenant = ?2",
        params![token, tenant, millis(now)],
    )? > 0)
}
