//! Render jobs as stored: the `RenderJob` object (JSON) with the columns the render
//! log filters on beside it, and the reads and writes the API makes of one job or a
//! page of them. What the workers and the sweeper ask of the jobs table (what to
//! start, what ran out of time) is in `queue.rs`.

use jiff::Timestamp;
use rusqlite::{Connection, OptionalExtension, params};

use super::{StoreResult, from_millis, millis};
use crate::lifecycle::Phase;
use crate::port::JobFilter;
use crate::resources::OutputFormat;
use crate::resources::RenderJob;

/// A job as stored: the resource and what only the store tracks.
#[derive(Clone, Debug)]
pub struct JobRecord {
    /// The RenderJob (`metadata.name` is the job id, `metadata.namespace` the tenant).
    pub job: RenderJob,
    /// When it was accepted (millisecond precision).
    pub created_at: Timestamp,
    /// When it last changed.
    pub updated_at: Timestamp,
    /// The worker attempt holding it, if one does.
    pub claimed_by: Option<String>,
    /// Idempotency key of the request that created it.
    pub idempotency_key: Option<String>,
    /// Secret that signs its webhook deliveries; never shown in responses.
    pub webhook_secret: Option<String>,
}

impl JobRecord {
    /// The job id.
    pub fn id(&self) -> &str {
        self.job.metadata.name.as_deref().unwrap_or_default()
    }
    /// The tenant (namespace).
    pub fn tenant(&self) -> &str {
        self.job.metadata.namespace.as_deref().unwrap_or_default()
    }
    /// The phase (a job without one is queued).
    pub fn phase(&self) -> Phase {
        self.job.status.as_ref().and_then(|s| s.phase).unwrap_or(Phase::Queued)
    }
}

/// A job row as read: object, created, updated, claim, idempotency key, webhook secret.
pub(super) type RawJob = (String, i64, i64, Option<String>, Option<String>, Option<String>);

pub(super) const JOB_COLUMNS: &str = "object, created_at, updated_at, claimed_by, idempotency_key, webhook_secret";

pub(super) fn job_from_row(row: &rusqlite::Row) -> rusqlite::Result<RawJob> {
    Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?, row.get(4)?, row.get(5)?))
}

pub(super) fn record_of(raw: RawJob) -> StoreResult<JobRecord> {
    let (object, created_at, updated_at, claimed_by, idempotency_key, webhook_secret) = raw;
    Ok(JobRecord {
        job: serde_json::from_str(&object)?,
        created_at: from_millis(created_at),
        updated_at: from_millis(updated_at),
        claimed_by,
        idempotency_key,
        webhook_secret,
    })
}

/// The job `id` of `tenant` (any tenant when `None`).
pub fn load_job(conn: &Connection, tenant: Option<&str>, id: &str) -> StoreResult<Option<JobRecord>> {
    let raw = conn
        .prepare_cached(&format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = ?1 AND (?2 IS NULL OR tenant = ?2)"))?
        .query_row(params![id, tenant], job_from_row)
        .optional()?;
    raw.map(record_of).transpose()
}

/// The job of `tenant` a new request with `idempotency_key` and `external_id` is a
/// repeat of, at `now`: the one made with the same key within its lifetime, or a
/// job with the same external id that still holds it ([`crate::port`]'s rules).
pub fn find_duplicate(
    conn: &Connection,
    tenant: &str,
    idempotency_key: Option<&str>,
    external_id: Option<&str>,
    now: Timestamp,
) -> StoreResult<Option<JobRecord>> {
    if idempotency_key.is_none() && external_id.is_none() {
        return Ok(None);
    }
    let mut statement = conn.prepare_cached(&format!(
        "SELECT {JOB_COLUMNS} FROM jobs WHERE tenant = ?1 AND (idempotency_key = ?2 OR external_id = ?3) ORDER BY created_at"
    ))?;
    let rows = statement.query_map(params![tenant, idempotency_key, external_id], job_from_row)?;
    for raw in rows {
        let record = record_of(raw?)?;
        let job_key = record.idempotency_key.as_deref();
        if crate::port::repeats(&record.job, job_key, record.created_at, idempotency_key, external_id, now) {
            return Ok(Some(record));
        }
    }
    Ok(None)
}

/// Let `tenant`'s `idempotency_key` go from the job that had it (its lifetime is
/// over), so a new job may take it.
pub fn forget_idempotency_key(tx: &Connection, tenant: &str, idempotency_key: &str) -> StoreResult<()> {
    tx.prepare_cached("UPDATE jobs SET idempotency_key = NULL WHERE tenant = ?1 AND idempotency_key = ?2")?
        .execute(params![tenant, idempotency_key])?;
    Ok(())
}

/// Insert a new job or replace a stored one (same id), with its columns derived from
/// the object.
pub fn save_job(tx: &Connection, record: &JobRecord) -> StoreResult<()> {
    let job = &record.job;
    let status = job.status.clone().unwrap_or_default();
    // Only a job that can still change has a deadline to watch; only one whose
    // retention has something left to take away has an expiry to watch.
    let deadline_at = if record.phase().is_terminal() {
        None
    } else {
        crate::lifecycle::deadline(record.created_at, job.spec.active_deadline_seconds)
    };
    tx.prepare_cached(
        "INSERT INTO jobs (id, tenant, phase, template, external_id, idempotency_key, preview, created_at, updated_at, next_attempt_at, expires_at, claimed_by, webhook_secret, object, deadline_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)
         ON CONFLICT (id) DO UPDATE SET phase = ?3, updated_at = ?9, next_attempt_at = ?10, expires_at = ?11, claimed_by = ?12, object = ?14, deadline_at = ?15",
    )?
    .execute(params![
        record.id(),
        record.tenant(),
        record.phase().api_name(),
        job.spec.template_ref.as_ref().map(|t| t.name.as_str()),
        job.spec.external_id,
        record.idempotency_key,
        job.spec.preview,
        millis(record.created_at),
        millis(record.updated_at),
        status.next_attempt_at.map(millis),
        crate::lifecycle::retention_due(&job.spec, &status).map(|(at, _)| millis(at)),
        record.claimed_by,
        record.webhook_secret,
        serde_json::to_string(job)?,
        deadline_at.map(millis),
    ])?;
    Ok(())
}

/// Delete a job's row.
pub fn delete_job(tx: &Connection, id: &str) -> StoreResult<()> {
    tx.prepare_cached("DELETE FROM jobs WHERE id = ?1")?.execute(params![id])?;
    tx.prepare_cached("DELETE FROM shares WHERE job_id = ?1")?.execute(params![id])?;
    Ok(())
}

/// A page of `tenant`'s render log, newest first, and how many match in all.
pub fn list_jobs(
    conn: &Connection,
    tenant: &str,
    filter: &JobFilter,
    limit: i64,
    offset: i64,
) -> StoreResult<(Vec<JobRecord>, i64)> {
    let condition = "tenant = ?1 AND (?2 IS NULL OR phase = ?2) AND (?3 IS NULL OR template = ?3) AND (?4 IS NULL OR external_id = ?4)
        AND (?5 IS NULL OR preview = ?5) AND (?6 IS NULL OR created_at >= ?6) AND (?7 IS NULL OR created_at < ?7)
        AND (?8 IS NULL OR coalesce(json_extract(object, '$.spec.output'), 'pdf') = ?8)";
    let args = params![
        tenant,
        filter.phase.map(Phase::api_name),
        filter.template,
        filter.external_id,
        filter.preview,
        filter.created_from.map(millis),
        filter.created_to.map(millis),
        filter.output.map(OutputFormat::name),
    ];
    let total: i64 =
        conn.prepare_cached(&format!("SELECT COUNT(*) FROM jobs WHERE {condition}"))?.query_row(args, |r| r.get(0))?;
    let mut page = Vec::new();
    let mut statement = conn.prepare_cached(&format!(
        "SELECT {JOB_COLUMNS} FROM jobs WHERE {condition} ORDER BY created_at DESC, id DESC LIMIT {limit} OFFSET {offset}"
    ))?;
    let rows = statement.query_map(args, job_from_row)?;
    for raw in rows {
        page.push(record_of(raw?)?);
    }
    Ok((page, total))
}
