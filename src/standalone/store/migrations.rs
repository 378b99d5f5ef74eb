//! The schema and its versions. A database records the version it is at in SQLite's
//! `user_version`; opening one applies, in one transaction, the migrations it has not
//! had yet, so an upgraded folio finds its tables as it expects them and a crash
//! mid-upgrade leaves the database as it was.
//!
//! This is the scheme of the `rusqlite_migration` crate written out by hand: no
//! release of that crate builds against the rusqlite (0.43) folio uses (its newest,
//! 2.6, needs 0.40), and two rusqlite versions cannot link two SQLite libraries
//! into one program. What it takes is a list of scripts and a version number.
//!
//! Databases made before versions were counted are at version 0 with every table
//! already there: migration 1 is the schema they were made with, written with
//! `IF NOT EXISTS`, so applying it to them changes nothing and adopts them as they
//! are. A database at a version this build does not know was written by a newer
//! folio and is refused rather than used with a schema it does not understand.
//!
//! Migrations are only ever appended: one that has shipped is never edited, since
//! databases that already had it will not run it again.

use std::path::Path;

use rusqlite::{Connection, TransactionBehavior};

use super::StoreError;

/// Migration `i` brings a database from version `i` to version `i + 1`.
pub(super) const MIGRATIONS: &[&str] =
    &[INITIAL, REST_JOBS_CARRY_A_TTL, RUNNING_PER_TENANT, EXTERNAL_IDS_REPEAT, TEMPLATES_KEEP_VERSIONS];

/// The version every database is at once opened by this build.
pub(super) const LATEST: i64 = MIGRATIONS.len() as i64;

/// Version 1: the jobs, templates, accounts, keys, shares, deliveries, secrets and
/// settings tables as the first releases made them.
const INITIAL: &str = "
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

/// Migration 2: every job of the REST API goes with its PDF when its retention ends,
/// by its `ttlSecondsAfterFinished` (a job without one loses only its PDF, a rule for
/// jobs kept in Git). Jobs made before jobs carried one get their account's default
/// retention, else folio's (`Retention::default`, 7 days, pinned by a test); their
/// `expiresAt`, fixed when they ended, stays.
const REST_JOBS_CARRY_A_TTL: &str = "
UPDATE jobs SET object = json_set(object, '$.spec.ttlSecondsAfterFinished', COALESCE(
    (SELECT json_extract(accounts.object, '$.spec.retention.defaultTtlSeconds') FROM accounts WHERE accounts.tenant = jobs.tenant),
    604800))
WHERE json_extract(object, '$.spec.ttlSecondsAfterFinished') IS NULL;
";

/// Migration 3: the renders each tenant runs, counted whenever a worker looks for
/// the next job (the fair share between tenants).
const RUNNING_PER_TENANT: &str = "
CREATE INDEX IF NOT EXISTS jobs_claimed ON jobs (tenant) WHERE claimed_by IS NOT NULL;
";

/// Migration 4: an `externalId` is no longer unique per tenant: a job that failed, was
/// cancelled or expired lets a new one be submitted under the same id.
const EXTERNAL_IDS_REPEAT: &str = "
DROP INDEX IF EXISTS jobs_external;
CREATE INDEX IF NOT EXISTS jobs_external_id ON jobs (tenant, external_id) WHERE external_id IS NOT NULL;
";

/// Migration 5: every change of a template makes a new version, and versions are
/// kept; a template's files are kept apart, once per tenant, by their SHA-256. The
/// templates there are become version 1 of themselves.
const TEMPLATES_KEEP_VERSIONS: &str = "
ALTER TABLE templates ADD COLUMN version INTEGER NOT NULL DEFAULT 1;
CREATE TABLE IF NOT EXISTS template_versions (
    tenant TEXT NOT NULL,
    name TEXT NOT NULL,
    version INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    object TEXT NOT NULL,
    PRIMARY KEY (tenant, name, version)
);
INSERT INTO template_versions (tenant, name, version, created_at, object)
    SELECT tenant, name, 1, updated_at, object FROM templates;
CREATE TABLE IF NOT EXISTS template_files (
    tenant TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    size INTEGER NOT NULL,
    content_type TEXT NOT NULL,
    bytes BLOB NOT NULL,
    PRIMARY KEY (tenant, sha256)
);
";

/// Bring the database on `conn` (the file at `path`) to the latest version.
pub(super) fn migrate(conn: &mut Connection, path: &Path) -> Result<(), StoreError> {
    let open_error = |error| StoreError::Open { path: path.to_owned(), error };
    // Immediate: a second folio opening the same file waits here instead of
    // applying the same migrations at the same time.
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(open_error)?;
    let found: i64 = tx.pragma_query_value(None, "user_version", |row| row.get(0)).map_err(open_error)?;
    let pending = usize::try_from(found).ok().and_then(|version| MIGRATIONS.get(version..));
    let Some(pending) = pending else {
        return Err(StoreError::NewerSchema { path: path.to_owned(), found, latest: LATEST });
    };
    if pending.is_empty() {
        return Ok(());
    }
    for migration in pending {
        tx.execute_batch(migration).map_err(open_error)?;
    }
    tx.pragma_update(None, "user_version", LATEST).map_err(open_error)?;
    tx.commit().map_err(open_error)
}

#[cfg(test)]
mod tests {
    #[test]
    fn migration_2_falls_back_to_folios_default_retention() {
        let seconds = crate::resources::Retention::default().default_ttl_seconds;
        assert!(super::REST_JOBS_CARRY_A_TTL.contains(&format!("{seconds}))")), "{seconds}");
    }
}
