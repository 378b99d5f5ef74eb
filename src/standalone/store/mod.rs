//! The embedded database of the standalone home: SQLite (bundled, WAL mode, full
//! sync). SQLite gives what the standalone home needs in one file: transactions
//! that make a credit charge and the job's phase change one atomic step (so a
//! charge is never lost nor made twice, even under `kill -9`), indexed queries for
//! the render log's filters and counts, and concurrent readers beside one writer.
//!
//! Jobs, templates and accounts are stored as the same resource objects the cluster
//! keeps (`RenderJob`, `RenderTemplate`, `RenderAccount`, as JSON), with the columns
//! that queries filter on beside them.
//!
//! One file per group of tables, each with the reads and writes made of it; the
//! callers use them through this module (`store::load_job`, `store::Delivery`), so
//! where a function lives is the store's own business.

mod accounts;
mod deliveries;
mod jobs;
mod keys;
mod queue;
mod settings;
mod shares;
mod templates;

use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use jiff::Timestamp;
use rusqlite::{Connection, Transaction, TransactionBehavior};

pub use accounts::{load_account, save_account, save_secret, secret_value};
pub use deliveries::{
    AttemptRecord, Delivery, delivery_due, delivery_status, due_deliveries, insert_delivery, next_delivery_due,
    prune_deliveries, record_attempt,
};
pub use jobs::{JobRecord, delete_job, find_duplicate, list_jobs, load_job, save_job};
pub use keys::{KeyRecord, insert_key, list_keys, revoke_key, tenant_of_key};
pub use queue::{
    count_by_phase, expired_jobs, jobs_in_phase, next_claimable, next_retry_due, overdue_jobs, release_all_claims,
};
pub use settings::setting_or_insert;
pub use shares::{ShareRecord, insert_share, list_shares, load_share, revoke_share};
pub use templates::{create_template, delete_template, list_templates, load_template, save_template};

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

/// The database: one writer connection and a few readers (WAL lets them read while
/// the writer writes).
pub struct Store {
    writer: Mutex<Connection>,
    readers: Vec<Mutex<Connection>>,
    next_reader: AtomicUsize,
}

/// Times are stored as milliseconds since the epoch, in INTEGER columns that sort and
/// compare in SQL.
fn millis(t: Timestamp) -> i64 {
    t.as_millisecond()
}

/// A stored time (one out of range reads as the epoch rather than failing the read).
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
