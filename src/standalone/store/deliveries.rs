//! Webhook deliveries as stored: the queue of events to send, one row per event with
//! its attempts, so a delivery survives a restart and a job's events go out in order.

use jiff::Timestamp;
use rusqlite::{Connection, OptionalExtension, params};

use super::{StoreResult, from_millis, millis};
use crate::resources::WebhookDeliveryStatus;

/// A webhook delivery waiting or done.
#[derive(Clone, Debug)]
pub struct Delivery {
    /// The delivery id (`X-Folio-Delivery-Id`), the same for every attempt.
    pub id: String,
    /// The job it reports on.
    pub job_id: String,
    /// The job's tenant.
    pub tenant: String,
    /// The receiver.
    pub url: String,
    /// The signing secret.
    pub secret: Option<String>,
    /// The event, as JSON (without `downloadUrl` and `timestamp`, set when sent).
    pub body: String,
    /// Attempts so far.
    pub attempts: i64,
    /// When the event happened.
    pub created_at: Timestamp,
}

/// Queue a delivery.
pub fn insert_delivery(tx: &Connection, delivery: &Delivery, now: Timestamp) -> StoreResult<()> {
    tx.prepare_cached(
        "INSERT INTO deliveries (id, job_id, tenant, url, secret, body, next_attempt_at, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7)",
    )?
    .execute(params![delivery.id, delivery.job_id, delivery.tenant, delivery.url, delivery.secret, delivery.body, millis(now)])?;
    Ok(())
}

const PENDING: &str = "delivered_at IS NULL AND given_up_at IS NULL";

/// Deliveries due at `now` that are the oldest pending one of their job (a job's
/// events go out in order).
pub fn due_deliveries(conn: &Connection, now: Timestamp, limit: i64) -> StoreResult<Vec<Delivery>> {
    let mut statement = conn.prepare_cached(&format!(
        "SELECT id, job_id, tenant, url, secret, body, attempts, created_at FROM deliveries d
         WHERE {PENDING} AND next_attempt_at <= ?1
           AND seq = (SELECT MIN(seq) FROM deliveries e WHERE e.job_id = d.job_id AND e.delivered_at IS NULL AND e.given_up_at IS NULL)
         ORDER BY next_attempt_at LIMIT ?2"
    ))?;
    let rows = statement.query_map(params![millis(now), limit], |r| {
        Ok(Delivery {
            id: r.get(0)?,
            job_id: r.get(1)?,
            tenant: r.get(2)?,
            url: r.get(3)?,
            secret: r.get(4)?,
            body: r.get(5)?,
            attempts: r.get(6)?,
            created_at: from_millis(r.get(7)?),
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Whether delivery `id` is still pending and due at `now`.
pub fn delivery_due(conn: &Connection, id: &str, now: Timestamp) -> StoreResult<bool> {
    Ok(conn
        .prepare_cached(&format!("SELECT 1 FROM deliveries WHERE id = ?1 AND {PENDING} AND next_attempt_at <= ?2"))?
        .query_row(params![id, millis(now)], |_| Ok(()))
        .optional()?
        .is_some())
}

/// When the next pending delivery is due, if any.
pub fn next_delivery_due(conn: &Connection) -> StoreResult<Option<Timestamp>> {
    let due: Option<i64> = conn
        .prepare_cached(&format!("SELECT MIN(next_attempt_at) FROM deliveries WHERE {PENDING}"))?
        .query_row([], |r| r.get(0))?;
    Ok(due.map(from_millis))
}

/// How an attempt ended, for the record.
pub enum AttemptRecord<'a> {
    /// Answered 2xx.
    Delivered(u16),
    /// Failed; try again at the given time.
    Retry(Option<u16>, &'a str, Timestamp),
    /// Failed for good.
    GiveUp(Option<u16>, &'a str),
}

/// Record an attempt of delivery `id` made at `now`.
pub fn record_attempt(tx: &Connection, id: &str, outcome: AttemptRecord, now: Timestamp) -> StoreResult<()> {
    let now_ms = millis(now);
    match outcome {
        AttemptRecord::Delivered(status) => tx.execute(
            "UPDATE deliveries SET attempts = attempts + 1, last_status = ?2, last_error = NULL, last_attempt_at = ?3, delivered_at = ?3 WHERE id = ?1",
            params![id, status, now_ms],
        )?,
        AttemptRecord::Retry(status, error, next) => tx.execute(
            "UPDATE deliveries SET attempts = attempts + 1, last_status = ?2, last_error = ?3, last_attempt_at = ?4, next_attempt_at = ?5 WHERE id = ?1",
            params![id, status, error, now_ms, millis(next)],
        )?,
        AttemptRecord::GiveUp(status, error) => tx.execute(
            "UPDATE deliveries SET attempts = attempts + 1, last_status = ?2, last_error = ?3, last_attempt_at = ?4, given_up_at = ?4 WHERE id = ?1",
            params![id, status, error, now_ms],
        )?,
    };
    Ok(())
}

/// The delivery state of a job's webhook, if it has deliveries.
pub fn delivery_status(conn: &Connection, job_id: &str) -> StoreResult<Option<WebhookDeliveryStatus>> {
    let counts: (i64, i64, i64, i64) = conn
        .prepare_cached(&format!(
            "SELECT COUNT(delivered_at), SUM(CASE WHEN {PENDING} THEN 1 ELSE 0 END), COUNT(given_up_at), COALESCE(SUM(attempts), 0)
             FROM deliveries WHERE job_id = ?1"
        ))?
        .query_row(params![job_id], |r| Ok((r.get(0)?, r.get::<_, Option<i64>>(1)?.unwrap_or(0), r.get(2)?, r.get(3)?)))?;
    let (delivered, pending, failed, attempts) = counts;
    if delivered + pending + failed == 0 {
        return Ok(None);
    }
    let last: Option<(Option<i32>, Option<String>, Option<i64>)> = conn
        .prepare_cached("SELECT last_status, last_error, last_attempt_at FROM deliveries WHERE job_id = ?1 AND last_attempt_at IS NOT NULL ORDER BY last_attempt_at DESC LIMIT 1")?
        .query_row(params![job_id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .optional()?;
    let next: Option<i64> = conn
        .prepare_cached(&format!("SELECT MIN(next_attempt_at) FROM deliveries WHERE job_id = ?1 AND {PENDING}"))?
        .query_row(params![job_id], |r| r.get(0))?;
    let (last_response_code, last_error, last_attempt_at) = last.unwrap_or((None, None, None));
    Ok(Some(WebhookDeliveryStatus {
        delivered,
        pending,
        failed,
        attempts,
        last_response_code,
        last_error,
        last_attempt_at: last_attempt_at.map(from_millis),
        next_attempt_at: next.map(from_millis),
        queue: Vec::new(),
    }))
}

/// Forget deliveries that finished before `before`.
pub fn prune_deliveries(tx: &Connection, before: Timestamp) -> StoreResult<usize> {
    Ok(tx.execute("DELETE FROM deliveries WHERE COALESCE(delivered_at, given_up_at) < ?1", params![millis(before)])?)
}
