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
//! where a function lives is the store's own business. `migrations.rs` holds the
//! schema and brings an older database up to it when the file is opened.

mod accounts;
mod deliveries;
mod jobs;
mod keys;
mod migrations;
mod queue;
mod settings;
mod shares;
mod templates;
#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use jiff::Timestamp;
use rusqlite::{Connection, Transaction, TransactionBehavior};

pub use accounts::{load_account, save_account, save_secret, secret_value};
pub use deliveries::{
    AttemptRecord, Delivery, delivery_due, delivery_status, due_deliveries, insert_delivery, next_delivery_due,
    prune_deliveries, record_attempt,
};
pub use jobs::{JobRecord, delete_job, find_duplicate, forget_idempotency_key, list_jobs, load_job, save_job};
pub use keys::{KeyRecord, insert_key, list_keys, revoke_key, tenant_of_key};
pub use queue::{
    count_by_phase, expired_jobs, jobs_in_phase, next_claimable, next_retry_due, overdue_jobs, release_all_claims,
    release_claim,
};
pub use settings::setting_or_insert;
pub use shares::{ShareRecord, insert_share, list_shares, load_share, revoke_share};
pub use templates::{
    StoredTemplate, StoredVersion, create_template, delete_template, file_infos, insert_file, list_template_versions,
    list_templates, load_file, load_template, load_template_version, save_template, with_file_bytes,
};

/// A database error.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// SQLite failed.
    #[error("database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// A stored object could not be read back.
    #[error("stored object: {0}")]
    Json(#[from] serde_json::Error),
    /// The database file could not be opened or brought to the current schema.
    #[error("database {}: {error}", .path.display())]
    Open {
        /// The database file.
        path: PathBuf,
        /// What SQLite said.
        error: rusqlite::Error,
    },
    /// The database was written by a newer folio, with a schema this build does not
    /// know; using it could lose what that folio stored.
    #[error(
        "database {} is at schema version {found}, but this folio knows versions up to {latest}: \
         a newer folio wrote it; open it with that folio or a later one",
        .path.display()
    )]
    NewerSchema {
        /// The database file.
        path: PathBuf,
        /// The version the file is at (SQLite's `user_version`).
        found: i64,
        /// The newest version this build knows.
        latest: i64,
    },
}

/// Result of a store operation.
pub type StoreResult<T> = Result<T, StoreError>;

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
    /// Open (or create) the database at `path`, bringing it to the current schema.
    /// Errors name the file; one written by a newer folio is refused
    /// ([`StoreError::NewerSchema`]), not used.
    pub fn open(path: &Path) -> StoreResult<Store> {
        let open_error = |error| StoreError::Open { path: path.to_owned(), error };
        let mut writer = open_connection(path).map_err(open_error)?;
        migrations::migrate(&mut writer, path)?;
        let readers =
            (0..4).map(|_| open_connection(path).map(Mutex::new)).collect::<Result<Vec<_>, _>>().map_err(open_error)?;
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
