//! The embedded database of the standalone home: SQLite (bundled, WAL mode, full
//! sync). SQLite gives what the standalone home needs in one file: transactions
//! that make a credit charge and the job's phase change one atomic step (so a
//! charge is never lost nor made twice, even under `kill -9`), indexed queries for
//! the render log's filters and counts, and concurrent readers beside one writer.
//!
//! Jobs, templates and accounts are stored as the same resource objects the cluster
//! keeps (`RenderJob`, `RenderTemplate`, `RenderAccount`, as JSON), with the columns
//! that queries filter on beside them.

use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use jiff::Timestamp;
use rusqlite::{Connection, OptionalExtension, Transaction, TransactionBehavior, params};

use crate::lifecycle::Phase;
use crate::port::JobFilter;
use crate::resources::{RenderAccount, RenderJob, RenderTemplate, WebhookDeliveryStatus};

/// A database error.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// SQLite failed.
    #[error("database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// A stored object could not be read back.
    #[error("stored object: {0}")]
    Json(#[from] serde_json::Error),
}

/// Result of a store operation.
pub type StoreResult<T> = Result<T, StoreError>;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    tenant TEXT NOT NULL,
    phase TEXT NOT NULL,
    template TEXT,
    external_id TEXT,
    idempotency_key TEXT,
    preview INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    next_attempt_at INTEGER,
    expires_at INTEGER,
    claimed_by TEXT,
    deadline_at INTEGER,
    webhook_secret TEXT,
    object TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS jobs_log ON jobs (tenant, created_at DESC, id DESC);
CREATE UNIQUE INDEX IF NOT EXISTS jobs_idempotency ON jobs (tenant, idempotency_key) WHERE idempotency_key IS NOT NULL;
CREATE UNIQUE INDEX IF NOT EXISTS jobs_external ON jobs (tenant, external_id) WHERE external_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS jobs_queue ON jobs (phase, created_at) WHERE claimed_by IS NULL;
CREATE INDEX IF NOT EXISTS jobs_expiry ON jobs (expires_at) WHERE expires_at IS NOT NULL;
CREATE INDEX IF NOT EXISTS jobs_deadline ON jobs (deadline_at) WHERE deadline_at IS NOT NULL AND claimed_by IS NULL;
CREATE TABLE IF NOT EXISTS templates (
    tenant TEXT NOT NULL,
    name TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    object TEXT NOT NULL,
    PRIMARY KEY (tenant, name)
);
CREATE TABLE IF NOT EXISTS accounts (
    tenant TEXT PRIMARY KEY,
    object TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS api_keys (
    id TEXT PRIMARY KEY,
    tenant TEXT NOT NULL,
    hash TEXT NOT NULL UNIQUE,
    prefix TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    revoked_at INTEGER
);
CREATE TABLE IF NOT EXISTS shares (
    token TEXT PRIMARY KEY,
    tenant TEXT NOT NULL,
    job_id TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER,
    revoked_at INTEGER
);
CREATE INDEX IF NOT EXISTS shares_job ON shares (job_id);
CREATE TABLE IF NOT EXISTS deliveries (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    job_id TEXT NOT NULL,
    tenant TEXT NOT NULL,
    url TEXT NOT NULL,
    secret TEXT,
    body TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,
    last_status INTEGER,
    last_error TEXT,
    last_attempt_at INTEGER,
    delivered_at INTEGER,
    given_up_at INTEGER,
    created_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS deliveries_pending ON deliveries (job_id, seq) WHERE delivered_at IS NULL AND given_up_at IS NULL;
CREATE INDEX IF NOT EXISTS deliveries_job ON deliveries (job_id);
CREATE TABLE IF NOT EXISTS secrets (
    tenant TEXT NOT NULL,
    name TEXT NOT NULL,
    data TEXT NOT NULL,
    PRIMARY KEY (tenant, name)
);
CREATE TABLE IF NOT EXISTS settings (
    key TEXT PRIMARY KEY,
    value BLOB NOT NULL
);
";

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

/// The database: one writer connection and a few readers (WAL lets them read while
/// the writer writes).
pub struct Store {
    writer: Mutex<Connection>,
    readers: Vec<Mutex<Connection>>,
    next_reader: AtomicUsize,
}

fn millis(t: Timestamp) -> i64 {
    t.as_millisecond()
}

fn from_millis(ms: i64) -> Timestamp {
    Timestamp::from_millisecond(ms).unwrap_or(Timestamp::UNIX_EPOCH)
}

fn open_connection(path: &Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    Ok(conn)
}

fn lock(conn: &Mutex<Connection>) -> std::sync::MutexGuard<'_, Connection> {
    // A panic while holding a connection leaves SQLite consistent (the transaction
    // rolls back on drop), so the connection can be used again.
    conn.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Store {
    /// Open (or create) the database at `path`.
    pub fn open(path: &Path) -> StoreResult<Store> {
        let writer = open_connection(path)?;
        writer.execute_batch(SCHEMA)?;
        let readers = (0..4).map(|_| open_connection(path).map(Mutex::new)).collect::<Result<Vec<_>, _>>()?;
        Ok(Store { writer: Mutex::new(writer), readers, next_reader: AtomicUsize::new(0) })
    }

    /// Run `f` on a reader connection.
    pub fn read<T>(&self, f: impl FnOnce(&Connection) -> StoreResult<T>) -> StoreResult<T> {
        let index = self.next_reader.fetch_add(1, Ordering::Relaxed) % self.readers.len();
        f(&lock(&self.readers[index]))
    }

    /// Run `f` in one write transaction: all of it happens, or none.
    pub fn write<T>(&self, f: impl FnOnce(&Transaction) -> StoreResult<T>) -> StoreResult<T> {
        let mut conn = lock(&self.writer);
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let value = f(&tx)?;
        tx.commit()?;
        Ok(value)
    }

    /// Whether the database answers (readiness).
    pub fn is_healthy(&self) -> bool {
        self.read(|c| Ok(c.query_row("SELECT 1", [], |r| r.get::<_, i64>(0))?)).is_ok()
    }
}

// ---- jobs ----

/// A job row as read: object, created, updated, claim, idempotency key, webhook secret.
type RawJob = (String, i64, i64, Option<String>, Option<String>, Option<String>);

const JOB_COLUMNS: &str = "object, created_at, updated_at, claimed_by, idempotency_key, webhook_secret";

fn job_from_row(row: &rusqlite::Row) -> rusqlite::Result<RawJob> {
    Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?, row.get(4)?, row.get(5)?))
}

fn record_of(raw: RawJob) -> StoreResult<JobRecord> {
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

/// The job of `tenant` created with `idempotency_key` or carrying `external_id`.
pub fn find_duplicate(
    conn: &Connection,
    tenant: &str,
    idempotency_key: Option<&str>,
    external_id: Option<&str>,
) -> StoreResult<Option<JobRecord>> {
    let raw = conn
        .prepare_cached(&format!(
            "SELECT {JOB_COLUMNS} FROM jobs WHERE tenant = ?1 AND ((?2 IS NOT NULL AND idempotency_key = ?2) OR (?3 IS NOT NULL AND external_id = ?3)) LIMIT 1"
        ))?
        .query_row(params![tenant, idempotency_key, external_id], job_from_row)
        .optional()?;
    raw.map(record_of).transpose()
}

/// Insert a new job or replace a stored one (same id), with its columns derived from
/// the object.
pub fn save_job(tx: &Connection, record: &JobRecord) -> StoreResult<()> {
    let job = &record.job;
    let status = job.status.clone().unwrap_or_default();
    // Only a job that can still change has a deadline to watch.
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
        status.expires_at.map(millis),
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
        AND (?5 IS NULL OR preview = ?5) AND (?6 IS NULL OR created_at >= ?6) AND (?7 IS NULL OR created_at < ?7)";
    let args = params![
        tenant,
        filter.phase.map(Phase::api_name),
        filter.template,
        filter.external_id,
        filter.preview,
        filter.created_from.map(millis),
        filter.created_to.map(millis),
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

/// The oldest job a worker may start now: queued, or waiting for a retry whose time
/// has come, and held by no worker.
pub fn next_claimable(conn: &Connection, now: Timestamp) -> StoreResult<Option<JobRecord>> {
    let raw = conn
        .prepare_cached(&format!(
            "SELECT {JOB_COLUMNS} FROM jobs WHERE claimed_by IS NULL AND phase IN ('queued', 'rendering')
             AND (next_attempt_at IS NULL OR next_attempt_at <= ?1) ORDER BY created_at, id LIMIT 1"
        ))?
        .query_row(params![millis(now)], job_from_row)
        .optional()?;
    raw.map(record_of).transpose()
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
    let mut statement = conn.prepare_cached(&format!(
        "SELECT {JOB_COLUMNS} FROM jobs WHERE deadline_at <= ?1 AND claimed_by IS NULL ORDER BY deadline_at LIMIT ?2"
    ))?;
    let rows = statement.query_map(params![millis(now), limit], job_from_row)?;
    rows.map(|raw| record_of(raw?)).collect()
}

/// Jobs whose retention ended at `now`.
pub fn expired_jobs(conn: &Connection, now: Timestamp, limit: i64) -> StoreResult<Vec<JobRecord>> {
    let mut statement = conn.prepare_cached(&format!(
        "SELECT {JOB_COLUMNS} FROM jobs WHERE expires_at <= ?1 ORDER BY expires_at LIMIT ?2"
    ))?;
    let rows = statement.query_map(params![millis(now), limit], job_from_row)?;
    rows.map(|raw| record_of(raw?)).collect()
}

/// Number of jobs per phase (metrics).
pub fn count_by_phase(conn: &Connection) -> StoreResult<Vec<(String, i64)>> {
    let mut statement = conn.prepare_cached("SELECT phase, COUNT(*) FROM jobs GROUP BY phase")?;
    let rows = statement.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

// ---- templates ----

/// The template `name` of `tenant`.
pub fn load_template(
    conn: &Connection,
    tenant: &str,
    name: &str,
) -> StoreResult<Option<(RenderTemplate, Timestamp, Timestamp)>> {
    let raw: Option<(String, i64, i64)> = conn
        .prepare_cached("SELECT object, created_at, updated_at FROM templates WHERE tenant = ?1 AND name = ?2")?
        .query_row(params![tenant, name], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .optional()?;
    raw.map(|(o, c, u)| Ok((serde_json::from_str(&o)?, from_millis(c), from_millis(u)))).transpose()
}

/// Insert or replace a template; returns whether it is new.
pub fn save_template(tx: &Connection, template: &RenderTemplate, now: Timestamp) -> StoreResult<bool> {
    let tenant = template.metadata.namespace.as_deref().unwrap_or_default();
    let name = template.metadata.name.as_deref().unwrap_or_default();
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
    let tenant = template.metadata.namespace.as_deref().unwrap_or_default();
    let name = template.metadata.name.as_deref().unwrap_or_default();
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
    let rows = statement.query_map(params![tenant], |r| Ok((r.get::<_, String>(0)?, r.get(1)?, r.get(2)?)))?;
    rows.map(|raw| {
        let (o, c, u) = raw?;
        Ok((serde_json::from_str(&o)?, from_millis(c), from_millis(u)))
    })
    .collect()
}

/// Delete a template; returns whether it existed.
pub fn delete_template(tx: &Connection, tenant: &str, name: &str) -> StoreResult<bool> {
    Ok(tx.execute("DELETE FROM templates WHERE tenant = ?1 AND name = ?2", params![tenant, name])? > 0)
}

// ---- accounts ----

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

// ---- API keys ----

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

// ---- shares ----

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

// ---- webhook deliveries ----

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

// ---- secrets ----

/// Store a Secret's values (for account webhooks' `secretRef`).
pub fn save_secret(
    tx: &Connection,
    tenant: &str,
    name: &str,
    data: &std::collections::BTreeMap<String, String>,
) -> StoreResult<()> {
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
    let map: std::collections::BTreeMap<String, String> = serde_json::from_str(&data)?;
    Ok(map.get(key).cloned())
}

// ---- settings ----

/// The setting `key`, created with `make` the first time.
pub fn setting_or_insert(tx: &Connection, key: &str, make: impl FnOnce() -> Vec<u8>) -> StoreResult<Vec<u8>> {
    let existing: Option<Vec<u8>> =
        tx.query_row("SELECT value FROM settings WHERE key = ?1", params![key], |r| r.get(0)).optional()?;
    match existing {
        Some(value) => Ok(value),
        None => {
            let value = make();
            tx.execute("INSERT INTO settings (key, value) VALUES (?1, ?2)", params![key, value])?;
            Ok(value)
        }
    }
}
