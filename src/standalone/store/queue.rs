//! What the workers and the sweeper ask of the jobs table: the next job to start, when
//! a retry is due, which jobs ran out of time or retention, and how many jobs are in
//! each phase. Kept apart from `jobs.rs` because these queries follow the indexes
//! made for the queue (`jobs_queue`, `jobs_deadline`, `jobs_expiry`), not the log's.

use jiff::Timestamp;
use rusqlite::{Connection, OptionalExtension, params};

use super::jobs::{JOB_COLUMNS, JobRecord, job_from_row, record_of};
use super::{StoreResult, from_millis, millis};
use crate::lifecycle::{Phase, share};

/// Which job starts next on `workers` workers: the oldest claimable job (queued, or
/// waiting for a retry whose time has come, and held by no worker) of the tenant the
/// fair share picks ([`share::next_tenant`]). None when nothing may start.
pub fn next_claimable(conn: &Connection, now: Timestamp, workers: usize) -> StoreResult<Option<JobRecord>> {
    let waiting = conn
        .prepare_cached(&format!(
            "SELECT q.tenant, MIN(q.created_at),
               (SELECT COUNT(*) FROM jobs r WHERE r.tenant = q.tenant AND r.claimed_by IS NOT NULL),
               (SELECT json_extract(a.object, '$.spec.maxConcurrentRenders') FROM accounts a WHERE a.tenant = q.tenant)
             FROM jobs q WHERE {CLAIMABLE} GROUP BY q.tenant"
        ))?
        .query_map(params![millis(now)], |r| {
            Ok(share::Waiting {
                tenant: r.get::<_, String>(0)?,
                oldest: r.get(1)?,
                running: count(r.get(2)?),
                cap: r.get(3)?,
            })
        })?
        .collect::<Result<Vec<_>, _>>()?;
    if waiting.is_empty() {
        return Ok(None);
    }
    let Some(tenant) = share::next_tenant(waiting, workers, known_tenants(conn)?) else {
        return Ok(None);
    };
    let raw = conn
        .prepare_cached(&format!(
            "SELECT {JOB_COLUMNS} FROM jobs q WHERE q.tenant = ?2 AND {CLAIMABLE} ORDER BY q.created_at, q.id LIMIT 1"
        ))?
        .query_row(params![millis(now), tenant], job_from_row)
        .optional()?;
    raw.map(record_of).transpose()
}

/// A job of `q` a worker may start at `?1`: queued, or waiting for a retry whose time
/// has come, and held by no worker.
const CLAIMABLE: &str = "q.claimed_by IS NULL AND q.phase IN ('queued', 'rendering')
    AND (q.next_attempt_at IS NULL OR q.next_attempt_at <= ?1)";

/// How many tenants the home knows: those with an API key that works or an account.
fn known_tenants(conn: &Connection) -> StoreResult<usize> {
    Ok(conn
        .prepare_cached(
            "SELECT COUNT(*) FROM (SELECT tenant FROM api_keys WHERE revoked_at IS NULL UNION SELECT tenant FROM accounts)",
        )?
        .query_row([], |r| r.get(0).map(count))?)
}

/// A count SQLite gave (never negative).
fn count(n: i64) -> usize {
    usize::try_from(n).unwrap_or(0)
}

/// When the next waiting retry is due, if any.
pub fn next_retry_due(conn: &Connection) -> StoreResult<Option<Timestamp>> {
    let due: Option<i64> = conn
        .prepare_cached(
            "SELECT MIN(next_attempt_at) FROM jobs WHERE claimed_by IS NULL AND phase IN ('queued', 'rendering')",
        )?
        .query_row([], |r| r.get(0))?;
    Ok(due.map(from_millis))
}

/// Release every claim: after a restart no worker holds anything, and the jobs they
/// held go back to the queue.
pub fn release_all_claims(tx: &Connection) -> StoreResult<usize> {
    Ok(tx.execute("UPDATE jobs SET claimed_by = NULL WHERE claimed_by IS NOT NULL", [])?)
}

/// Give job `id` back to the queue if the worker holding `token` still holds it.
pub fn release_claim(tx: &Connection, id: &str, token: &str) -> StoreResult<usize> {
    Ok(tx.execute("UPDATE jobs SET claimed_by = NULL WHERE id = ?1 AND claimed_by = ?2", params![id, token])?)
}

/// Jobs of `phases` (all tenants when `tenant` is `None`), oldest first.
pub fn jobs_in_phase(conn: &Connection, tenant: Option<&str>, phases: &[Phase]) -> StoreResult<Vec<JobRecord>> {
    let names: Vec<&str> = phases.iter().map(|p| p.api_name()).collect();
    let list = names.iter().map(|n| format!("'{n}'")).collect::<Vec<_>>().join(",");
    let mut statement = conn.prepare(&format!(
        "SELECT {JOB_COLUMNS} FROM jobs WHERE phase IN ({list}) AND (?1 IS NULL OR tenant = ?1) ORDER BY created_at, id"
    ))?;
    let rows = statement.query_map(params![tenant], job_from_row)?;
    rows.map(|raw| record_of(raw?)).collect()
}

/// Jobs nobody is rendering whose `activeDeadlineSeconds` ran out by `now`.
pub fn overdue_jobs(conn: &Connection, now: Timestamp, limit: i64) -> StoreResult<Vec<JobRecord>> {
    jobs_due(conn, "deadline_at <= ?1 AND claimed_by IS NULL ORDER BY deadline_at", now, limit)
}

/// Jobs whose retention ended at `now`.
pub fn expired_jobs(conn: &Connection, now: Timestamp, limit: i64) -> StoreResult<Vec<JobRecord>> {
    jobs_due(conn, "expires_at <= ?1 ORDER BY expires_at", now, limit)
}

/// Up to `limit` jobs matching `condition` (`?1` is `now`), in its order.
fn jobs_due(conn: &Connection, condition: &str, now: Timestamp, limit: i64) -> StoreResult<Vec<JobRecord>> {
    let mut statement = conn.prepare_cached(&format!("SELECT {JOB_COLUMNS} FROM jobs WHERE {condition} LIMIT ?2"))?;
    let rows = statement.query_map(params![millis(now), limit], job_from_row)?;
    rows.map(|raw| record_of(raw?)).collect()
}

/// Number of jobs per phase (metrics).
pub fn count_by_phase(conn: &Connection) -> StoreResult<Vec<(String, i64)>> {
    let mut statement = conn.prepare_cached("SELECT phase, COUNT(*) FROM jobs GROUP BY phase")?;
    let rows = statement.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok(rows.collect::<Result<_, _>>()?)
}
