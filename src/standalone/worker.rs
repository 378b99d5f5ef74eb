//! The standalone workers: each claims the oldest job that may run, renders it in the
//! pool, stores the PDF and settles the charge; and the sweeper, which deletes jobs
//! whose retention ended and expires jobs whose deadline passed while they waited.
//!
//! A job is claimed by writing a token into its row; every later write checks that
//! the token is still there, so a job cancelled or deleted mid-render is never
//! overwritten, and a claim left behind by a crash is released at the next start.

use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::ConfigMap;
use tokio::sync::watch;

use super::Standalone;
use super::settle::{end_job, settle};
use super::store::{self, JobRecord};
use crate::lifecycle::{self, AfterFailure, ErrorCode, Event, Phase};
use crate::prepare::{Lookup, LookupError, prepare};
use crate::render::pool::RenderPool;
use crate::render::{RenderFailure, Rendered};
use crate::resources::RenderTemplateSpec;
use crate::storage::output_key;
use crate::transitions;

/// How long an idle worker sleeps before looking again (new jobs wake it at once).
const IDLE_POLL: Duration = Duration::from_secs(2);

/// Templates of one tenant, read from the store.
struct StoreLookup<'a> {
    home: &'a Standalone,
    tenant: &'a str,
}

impl Lookup for StoreLookup<'_> {
    fn template(&self, name: &str) -> Result<Option<RenderTemplateSpec>, LookupError> {
        let found = self.home.store.read(|c| store::load_template(c, self.tenant, name));
        Ok(found.map_err(|err| LookupError(err.to_string()))?.map(|(t, _, _)| t.spec))
    }
    /// The standalone home has no ConfigMaps: templates and data come inline.
    fn config_map(&self, _name: &str) -> Result<Option<ConfigMap>, LookupError> {
        Ok(None)
    }
}

/// One worker: claim, render, settle, until `stop` turns true.
pub async fn run(
    home: Arc<Standalone>,
    pool: Arc<RenderPool>,
    render_timeout: Duration,
    mut stop: watch::Receiver<bool>,
) {
    while !*stop.borrow() {
        match claim(&home) {
            Ok(Some((record, token))) => process(&home, &pool, render_timeout, record, &token).await,
            Ok(None) => {
                let wait = home
                    .store
                    .read(store::next_retry_due)
                    .ok()
                    .flatten()
                    .and_then(|due| Duration::try_from(Timestamp::now().duration_until(due)).ok())
                    .map_or(IDLE_POLL, |d| d.min(IDLE_POLL));
                tokio::select! {
                    _ = home.wake.notified() => {},
                    _ = tokio::time::sleep(wait) => {},
                    _ = stop.changed() => {},
                }
            }
            Err(err) => {
                tracing::error!(error = %err, "claiming a job failed");
                tokio::time::sleep(IDLE_POLL).await;
            }
        }
    }
}

/// Take the oldest runnable job and mark it as ours.
fn claim(home: &Standalone) -> Result<Option<(JobRecord, String)>, store::StoreError> {
    let token = uuid::Uuid::now_v7().to_string();
    home.store.write(|tx| {
        let now = Timestamp::now();
        let Some(mut record) = store::next_claimable(tx, now)? else {
            return Ok(None);
        };
        let phase = record.phase();
        let status = record.job.status.get_or_insert_with(Default::default);
        if phase == Phase::Queued {
            status.phase = Some(lifecycle::next_phase(phase, Event::Start).unwrap_or(Phase::Rendering));
        }
        status.started_at = status.started_at.or(Some(now));
        status.next_attempt_at = None;
        record.claimed_by = Some(token.clone());
        record.updated_at = now;
        super::webhooks::save_transition(tx, &record, phase, now)?;
        Ok(Some((record, token)))
    })
}

/// How an attempt ended.
enum Attempt {
    Rendered(Rendered),
    Failed(RenderFailure),
    Expired(RenderFailure),
}

async fn process(home: &Standalone, pool: &RenderPool, render_timeout: Duration, record: JobRecord, token: &str) {
    let tenant = record.tenant().to_owned();
    let id = record.id().to_owned();
    let deadline = lifecycle::deadline(record.created_at, record.job.spec.active_deadline_seconds);
    let attempt = if lifecycle::deadline_passed(deadline, Timestamp::now()) {
        Attempt::Expired(deadline_failure(&record))
    } else {
        let lookup = StoreLookup { home, tenant: &tenant };
        match prepare(&id, &record.job.spec, &lookup) {
            Err(failure) => Attempt::Failed(failure),
            Ok(request) => {
                let (limit, deadline_binds) = lifecycle::render_time_limit(render_timeout, deadline, Timestamp::now());
                let started_render = std::time::Instant::now();
                // A job cancelled or deleted mid-render stops its render at once: dropping
                // the render drops (and kills) the worker process running it.
                let result = tokio::select! {
                    result = pool.render(&request, limit) => result,
                    () = taken_away(home, &tenant, &id, token) => return,
                };
                home.metrics.render_duration.observe(started_render.elapsed().as_secs_f64());
                match result {
                    Ok(rendered) => Attempt::Rendered(rendered),
                    Err(failure) if failure.code == ErrorCode::DeadlineExceeded && deadline_binds => {
                        Attempt::Expired(deadline_failure(&record))
                    }
                    Err(failure) => Attempt::Failed(failure),
                }
            }
        }
    };
    let outcome = match attempt {
        Attempt::Rendered(rendered) => store_and_settle(home, &tenant, &id, token, rendered).await,
        Attempt::Failed(failure) => record_failure(home, &tenant, &id, token, failure),
        Attempt::Expired(failure) => end(home, &tenant, &id, token, Phase::Expired, failure),
    };
    match outcome {
        Ok(Some(phase)) if phase != Phase::Rendering => home.metrics.job_finished(phase),
        Ok(_) => {}
        Err(err) => {
            tracing::error!(error = %err, job = %id, "recording a render's outcome failed; the job will be retried")
        }
    }
}

/// Resolves when the job is no longer this worker's to render (cancelled, deleted).
async fn taken_away(home: &Standalone, tenant: &str, id: &str, token: &str) {
    loop {
        tokio::time::sleep(Duration::from_millis(200)).await;
        match home.store.read(|c| still_ours(c, tenant, id, token)) {
            Ok(Some(_)) => {}
            Ok(None) => return,
            Err(err) => tracing::warn!(error = %err, job = %id, "checking for cancellation failed"),
        }
    }
}

fn deadline_failure(record: &JobRecord) -> RenderFailure {
    RenderFailure::new(
        ErrorCode::DeadlineExceeded,
        format!(
            "the job did not finish within activeDeadlineSeconds ({} s)",
            record.job.spec.active_deadline_seconds.unwrap_or_default()
        ),
    )
}

/// Load the job if it is still ours to write: same claim, still rendering.
fn still_ours(
    tx: &rusqlite::Connection,
    tenant: &str,
    id: &str,
    token: &str,
) -> Result<Option<JobRecord>, store::StoreError> {
    let record = store::load_job(tx, Some(tenant), id)?;
    Ok(record.filter(|r| r.claimed_by.as_deref() == Some(token) && r.phase() == Phase::Rendering))
}

/// Write the PDF, then record facts and the charge in one transaction. A crash between
/// the two leaves the job claimed-but-unsettled; at the next start it renders again
/// and overwrites the same file, and the charge is made then, once.
async fn store_and_settle(
    home: &Standalone,
    tenant: &str,
    id: &str,
    token: &str,
    rendered: Rendered,
) -> Result<Option<Phase>, store::StoreError> {
    let key = output_key(tenant, id);
    let outputs = home.outputs.clone();
    let pdf = rendered.pdf;
    let write_key = key.clone();
    let written = tokio::task::spawn_blocking(move || outputs.put(&write_key, &pdf)).await;
    if let Err(err) = written.map_err(std::io::Error::other).and_then(|r| r) {
        tracing::error!(error = %err, key, "storing a PDF failed");
        let failure = RenderFailure::new(ErrorCode::StorageUnavailable, format!("the PDF could not be stored: {err}"));
        return record_failure(home, tenant, id, token, failure);
    }
    let facts = rendered.facts;
    let phase = home.store.write(|tx| {
        let Some(mut record) = still_ours(tx, tenant, id, token)? else {
            return Ok(None);
        };
        let status = record.job.status.get_or_insert_with(Default::default);
        status.page_count = Some(facts.page_count);
        status.total_bytes = Some(facts.total_bytes);
        status.sha256 = Some(facts.sha256.clone());
        status.duration_ms = Some(facts.duration_ms);
        status.output_key = Some(key.clone());
        Ok(Some(settle(tx, &mut record, Timestamp::now())?))
    })?;
    if phase.is_none() {
        // Cancelled or deleted while rendering: the PDF belongs to nobody.
        let _ = home.outputs.delete(&key);
    }
    Ok(phase)
}

/// Retry a failed attempt after a backoff, or fail the job.
fn record_failure(
    home: &Standalone,
    tenant: &str,
    id: &str,
    token: &str,
    failure: RenderFailure,
) -> Result<Option<Phase>, store::StoreError> {
    let retries = home
        .store
        .read(|c| store::load_job(c, Some(tenant), id))?
        .and_then(|r| r.job.status)
        .map_or(0, |s| s.retry_count);
    let backoff_limit =
        home.store.read(|c| store::load_job(c, Some(tenant), id))?.and_then(|r| r.job.spec.backoff_limit);
    match lifecycle::after_failure(failure.code, retries, backoff_limit) {
        AfterFailure::Fail => end(home, tenant, id, token, Phase::Failed, failure),
        AfterFailure::Retry { delay, retry_count } => home.store.write(|tx| {
            let Some(mut record) = still_ours(tx, tenant, id, token)? else {
                return Ok(None);
            };
            let now = Timestamp::now();
            let status = transitions::retrying(&record.job, retry_count, delay, failure.code, &failure.message, now);
            record.job.status = Some(status);
            record.claimed_by = None;
            record.updated_at = now;
            store::save_job(tx, &record)?;
            Ok(Some(Phase::Rendering))
        }),
    }
}

/// End the job in `phase` (Failed or Expired) with `failure`.
fn end(
    home: &Standalone,
    tenant: &str,
    id: &str,
    token: &str,
    phase: Phase,
    failure: RenderFailure,
) -> Result<Option<Phase>, store::StoreError> {
    let event = if phase == Phase::Expired { Event::DeadlinePassed } else { Event::Fail };
    home.store.write(|tx| {
        let Some(mut record) = still_ours(tx, tenant, id, token)? else {
            return Ok(None);
        };
        let error = Some((failure.code, failure.message.clone()));
        Ok(Some(end_job(tx, &mut record, event, error, Timestamp::now())?))
    })
}

/// The sweeper: every `interval`, delete jobs whose retention ended (with their PDFs)
/// and expire waiting jobs whose `activeDeadlineSeconds` passed.
pub async fn sweep(home: Arc<Standalone>, interval: Duration, mut stop: watch::Receiver<bool>) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {},
            _ = stop.changed() => return,
        }
        if let Err(err) = sweep_once(&home, Timestamp::now()) {
            tracing::error!(error = %err, "sweeping expired jobs failed");
        }
    }
}

/// One sweep at `now`; returns how many jobs were deleted and expired.
pub fn sweep_once(home: &Standalone, now: Timestamp) -> Result<(usize, usize), store::StoreError> {
    let mut deleted = 0;
    loop {
        let batch = home.store.read(|c| store::expired_jobs(c, now, 200))?;
        if batch.is_empty() {
            break;
        }
        for record in &batch {
            home.store.write(|tx| store::delete_job(tx, record.id()))?;
            home.forget_output(record);
            deleted += 1;
        }
    }
    let mut expired = 0;
    let overdue = home.store.read(|c| store::overdue_jobs(c, now, 500))?;
    for record in overdue {
        let failure = deadline_failure(&record);
        let ended = home.store.write(|tx| {
            let Some(mut current) = store::load_job(tx, None, record.id())? else {
                return Ok(false);
            };
            if current.claimed_by.is_some() || current.phase().is_terminal() {
                return Ok(false);
            }
            let error = Some((failure.code, failure.message.clone()));
            end_job(tx, &mut current, Event::DeadlinePassed, error, now)?;
            Ok(true)
        })?;
        if ended {
            home.forget_output(&record);
            home.metrics.job_finished(Phase::Expired);
            expired += 1;
        }
    }
    Ok((deleted, expired))
}
