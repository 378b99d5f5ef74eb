//! The store's schema over time: a database made before the schema had versions is
//! adopted without loss, one made by a newer folio is refused, and every way to
//! reach the latest version ends with the same schema.

use std::path::{Path, PathBuf};

use jiff::Timestamp;
use rusqlite::Connection;
use tempfile::TempDir;

use super::migrations::LATEST;
use super::*;
use crate::lifecycle::Phase;
use crate::port::JobFilter;

/// A database as folio made it before versions, with rows in every table.
const BEFORE_VERSIONS: &str =
    include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/store-before-versions.sql"));

fn at(ms: i64) -> Timestamp {
    Timestamp::from_millisecond(ms).expect("a valid time")
}

fn user_version(conn: &Connection) -> i64 {
    conn.pragma_query_value(None, "user_version", |r| r.get(0)).expect("user_version")
}

/// Make the file at `path` with the SQL of a previous folio, outside the store.
fn database_made_with(path: &Path, sql: &str) {
    let conn = Connection::open(path).expect("create the database");
    conn.execute_batch(sql).expect("the fixture's SQL");
    assert_eq!(user_version(&conn), 0, "databases made before versions are at version 0");
}

/// The file `name` in `folder`, made as folio made databases before versions.
fn database_before_versions(folder: &TempDir, name: &str) -> PathBuf {
    let path = folder.path().join(name);
    database_made_with(&path, BEFORE_VERSIONS);
    path
}

/// Every table, index and trigger with the SQL that made it.
fn schema_of(store: &Store) -> Vec<(String, String, Option<String>)> {
    store
        .read(|c| {
            let mut statement =
                c.prepare("SELECT type, name, sql FROM sqlite_master WHERE name NOT LIKE 'sqlite_%' ORDER BY name")?;
            let rows = statement.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
        .expect("read the schema")
}

#[test]
fn a_database_made_before_schema_versions_opens_with_every_row() {
    let folder = tempfile::tempdir().expect("temp dir");
    let path = database_before_versions(&folder, "folio.db");

    let store = Store::open(&path).expect("the old database opens");

    assert_eq!(store.read(|c| Ok(user_version(c))).expect("version"), LATEST);
    let now = at(1_790_000_020_000);
    store
        .read(|c| {
            let done = load_job(c, Some("acme"), "job-done")?.expect("the finished job");
            assert_eq!(done.id(), "job-done");
            assert_eq!(done.tenant(), "acme");
            assert_eq!(done.phase(), Phase::Succeeded);
            assert_eq!(done.created_at, at(1_790_000_000_000));
            assert_eq!(done.updated_at, at(1_790_000_002_000));
            assert_eq!(done.claimed_by, None);
            assert_eq!(done.idempotency_key.as_deref(), Some("request-1"));
            assert_eq!(done.webhook_secret.as_deref(), Some("whsec-1"));
            assert_eq!(done.job.spec.external_id.as_deref(), Some("INV-1"));
            // Migration 2: the account's default retention (86400 s in the fixture).
            assert_eq!(done.job.spec.ttl_seconds_after_finished, Some(86_400));
            let status = done.job.status.clone().expect("a status");
            assert_eq!(status.credits_used, Some(1));
            assert_eq!(status.output_key.as_deref(), Some("acme/job-done.pdf"));
            assert_eq!(status.expires_at, Some(at(1_790_086_400_000)));

            let duplicate = find_duplicate(c, "acme", Some("request-1"), None, now)?.expect("found by idempotency key");
            assert_eq!(duplicate.id(), "job-done");
            let a_day_later = at(1_790_000_000_000 + 86_400_000);
            assert!(find_duplicate(c, "acme", Some("request-1"), None, a_day_later)?.is_none(), "keys last 24 h");
            let by_external_id = find_duplicate(c, "acme", None, Some("INV-1"), a_day_later)?;
            assert_eq!(by_external_id.map(|r| r.id().to_owned()).as_deref(), Some("job-done"), "a success holds it");
            let (page, total) = list_jobs(c, "acme", &JobFilter::default(), 10, 0)?;
            assert_eq!(total, 2);
            assert_eq!(page.iter().map(JobRecord::id).collect::<Vec<_>>(), ["job-waiting", "job-done"]);
            let waiting = next_claimable(c, now, 1)?.expect("the queued job");
            assert_eq!(waiting.id(), "job-waiting");
            assert!(waiting.job.spec.preview);
            assert_eq!(overdue_jobs(c, now, 10)?.len(), 0, "its deadline is still ahead");
            assert_eq!(overdue_jobs(c, at(1_790_000_061_000), 10)?.len(), 1);

            let stored = load_template(c, "acme", "invoice")?.expect("the template");
            assert_eq!(stored.template.spec.source.as_deref(), Some("= Invoice #data.number"));
            assert_eq!((stored.created_at, stored.updated_at), (at(1_789_990_000_000), at(1_789_995_000_000)));
            assert_eq!(stored.version, 1, "a template from before versions is version 1");
            let first = load_template_version(c, "acme", "invoice", 1)?.expect("version 1");
            assert_eq!(first.spec, stored.template.spec);

            let account = load_account(c, "acme")?.expect("the account");
            assert_eq!(account.spec.credits, Some(100));
            assert_eq!(secret_value(c, "acme", "hooks", "signing")?.as_deref(), Some("s3cr3t"));

            assert_eq!(tenant_of_key(c, "hash-of-live-key")?.as_deref(), Some("acme"));
            assert_eq!(tenant_of_key(c, "hash-of-old-key")?, None, "a revoked key stays revoked");
            assert_eq!(
                list_keys(c, Some("acme"))?,
                [
                    KeyRecord {
                        id: "key-old".into(),
                        tenant: "acme".into(),
                        prefix: "fk_old".into(),
                        created_at: at(1_789_970_000_000),
                        revoked_at: Some(at(1_789_975_000_000)),
                    },
                    KeyRecord {
                        id: "key-live".into(),
                        tenant: "acme".into(),
                        prefix: "fk_live".into(),
                        created_at: at(1_789_980_000_000),
                        revoked_at: None,
                    },
                ]
            );

            assert_eq!(
                load_share(c, "share-token-1")?,
                Some(ShareRecord {
                    token: "share-token-1".into(),
                    tenant: "acme".into(),
                    job_id: "job-done".into(),
                    created_at: at(1_790_000_003_000),
                    expires_at: Some(at(1_790_604_803_000)),
                    revoked_at: None,
                })
            );

            let due = due_deliveries(c, now, 10)?;
            assert_eq!(due.len(), 1);
            assert_eq!(due[0].id, "delivery-1");
            assert_eq!(due[0].body, r#"{"type":"job.succeeded","jobId":"job-done"}"#);
            assert_eq!(due[0].attempts, 1);
            assert_eq!(due[0].created_at, at(1_790_000_002_000));
            let webhook = delivery_status(c, "job-done")?.expect("the job's deliveries");
            assert_eq!((webhook.pending, webhook.attempts, webhook.last_response_code), (1, 1, Some(503)));
            Ok(())
        })
        .expect("read the old rows");
    let signing_key = store
        .write(|tx| setting_or_insert(tx, "url-signing-key", || panic!("the stored key is kept")))
        .expect("read the setting");
    assert_eq!(signing_key, (0u8..16).collect::<Vec<_>>());
}

#[test]
fn a_database_adopted_from_before_versions_has_the_schema_of_a_new_one() {
    let folder = tempfile::tempdir().expect("temp dir");
    let old = database_before_versions(&folder, "old.db");

    let adopted = Store::open(&old).expect("the old database opens");
    let new = Store::open(&folder.path().join("new.db")).expect("a new database");

    assert_eq!(schema_of(&adopted), schema_of(&new));
    assert_eq!(new.read(|c| Ok(user_version(c))).expect("version"), LATEST);
}

#[test]
fn reopening_a_database_keeps_its_version_and_rows() {
    let folder = tempfile::tempdir().expect("temp dir");
    let path = database_before_versions(&folder, "folio.db");
    drop(Store::open(&path).expect("first open"));

    let store = Store::open(&path).expect("second open");

    assert_eq!(store.read(|c| Ok(user_version(c))).expect("version"), LATEST);
    assert!(store.read(|c| load_job(c, None, "job-done")).expect("read").is_some());
}

#[test]
fn a_database_from_a_newer_folio_is_refused_untouched() {
    let folder = tempfile::tempdir().expect("temp dir");
    let path = folder.path().join("folio.db");
    let newer = LATEST + 1;
    database_made_with(&path, "CREATE TABLE jobs_of_the_future (id TEXT PRIMARY KEY);");
    Connection::open(&path).expect("open").pragma_update(None, "user_version", newer).expect("set the version");

    let Err(error) = Store::open(&path) else { panic!("a database of version {newer} was opened") };

    assert!(
        matches!(&error, StoreError::NewerSchema { path: p, found, latest } if *p == path && *found == newer && *latest == LATEST),
        "{error:?}"
    );
    let message = error.to_string();
    for part in [path.display().to_string(), format!("version {newer}"), format!("up to {LATEST}")] {
        assert!(message.contains(&part), "{message:?} does not say {part:?}");
    }
    let conn = Connection::open(&path).expect("open");
    assert_eq!(user_version(&conn), newer);
    let tables: i64 = conn
        .query_row("SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = 'jobs'", [], |r| r.get(0))
        .expect("count");
    assert_eq!(tables, 0, "no migration ran on it");
}

#[test]
fn a_database_that_cannot_be_opened_is_named_in_the_error() {
    let folder = tempfile::tempdir().expect("temp dir");
    let path = folder.path().join("no such folder").join("folio.db");

    let Err(error) = Store::open(&path) else { panic!("a database in a missing folder was opened") };

    assert!(matches!(&error, StoreError::Open { path: p, .. } if *p == path), "{error:?}");
    assert!(error.to_string().contains(&path.display().to_string()), "{error}");
}
