//! The standalone workers: each claims the oldest job that may run, renders it in the
//! pool, stores the PDF and hands the outcome to the lifecycle core; and the sweeper,
//! which deletes jobs whose retention ended and expires jobs whose deadline passed
//! while they waited. What happens next is always the core's decision
//! ([`super::settle::apply`]).
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
use super::settle::apply;
use super::store::{self, JobRecord};
use crate::lifecycle::{self, Decision, Effect, ErrorCode, Observed, Phase};
use crate::prepare::{FoundTemplate, Lookup, LookupError, prepare};
use crate::render::pool::RenderPool;
use crate::render::{RenderFailure, Rendered};
use crate::storage::output_key;

/// How long an idle worker sleeps before looking again (new jobs wake it at once).
const IDLE_POLL: Duration = Duration::from_secs(2);

/// Templates of one tenant, read from the store.
struct StoreLookup<'a> {
    home: &'a Standalone,
    tenant: &'a str,
}

impl Lookup for StoreLookup<'_> {
    fn template(&self, name: &str, version: Option<i64>) -> Result<Option<FoundTemplate>, LookupError> {
        let tenant = self.tenant;
        let found = self.home.store.read(|c| {
            let found = match version {
                Some(version) => store::load_template_version(c, tenant, name, version)?.map(|v| (v.spec, v.version)),
                None => store::load_template(c, tenant, name)?.map(|t| (t.template.spec, t.version)),
            };
            found
                .map(|(spec, version)| {
                    Ok(FoundTemplate { spec: store::with_file_bytes(c, tenant, spec)?, version: Some(version) })
                })
                .transpose()
        });
        found.map_err(|err| LookupError(err.to_string()))
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
        match claim(&home, pool.size()) {
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

/// Take the next runnable job by the tenants' fair share on `workers` workers, and
/// mark it as ours. A job that must end instead (a
/// cancel or a deadline found on the way) is ended, and the next one looked at.
fn claim(home: &Standalone, workers: usize) -> Result<Option<(JobRecord, String)>, store::StoreError> {
    let token = uuid::Uuid::now_v7().to_string();
    let mut ended = Vec::new();
    let claimed = home.store.write(|tx| {
        let now = Timestamp::now();
        while let Some(mut record) = store::next_claimable(tx, now, workers)? {
            // Unclaimed and due: its renderer is gone (a crash, a retry), so the core
            // says whether its attempt starts.
            let look = match apply(tx, &mut record, Observed::RendererGone, now)? {
                Ok(look) => look,
                Err(refused) => {
                    tracing::error!(job = %record.id(), %refused, "a claimable job was refused; skipping it");
                    return Ok(None);
                }
            };
            if look.attempt_to_start().is_none() {
                ended.push((record, look));
                continue;
            }
            record.claimed_by = Some(token.clone());
            match apply(tx, &mut record, Observed::AttemptBegan, now)? {
                Ok(_) => return Ok(Some((record, token))),
                Err(refused) => tracing::error!(job = %record.id(), %refused, "a claimed job could not begin"),
            }
        }
        Ok(None)
    });
    // Files and metrics once the decisions are committed.
    if claimed.is_ok() {
        for (record, decision) in &ended {
            home.after_commit(record, decision);
        }
    }
    claimed
}

/// How an attempt ended.
enum Attempt {
    Rendered(Rendered),
    Failed(RenderFailure),
}

async fn process(home: &Standalone, pool: &RenderPool, render_timeout: Duration, record: JobRecord, token: &str) {
    let tenant = record.tenant().to_owned();
    let id = record.id().to_owned();
    let key = output_key(&tenant, &id, record.job.spec.output);
    let lookup = StoreLookup { home, tenant: &tenant };
    let attempt = match prepare(&id, &record.job.spec, &lookup) {
        Err(failure) => Attempt::Failed(failure),
        Ok(request) => {
            let limit = lifecycle::render_time_limit(render_timeout, &record.job, Timestamp::now());
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
                Err(failure) => Attempt::Failed(failure),
            }
        }
    };
    let observed = match attempt {
        Attempt::Rendered(rendered) => store_output(home, key.clone(), rendered).await,
        Attempt::Failed(failure) => Observed::AttemptFailed { code: failure.code, message: failure.message },
    };
    let with_pdf = matches!(observed, Observed::Rendered { .. });
    if record_outcome(home, &tenant, &id, token, observed).await == Recorded::NotOurs && with_pdf {
        // Cancelled or deleted while rendering: the PDF belongs to nobody.
        let _ = home.outputs.delete(&key);
    }
}

/// How long a worker keeps trying to record an outcome the database refuses (a full
/// disk, say) before it records a failed attempt instead.
const RECORD_PATIENCE: Duration = Duration::from_secs(20);
/// Longest pause between two tries to record an outcome.
const RECORD_RETRY_MAX: Duration = Duration::from_secs(2);

/// What became of an attempt's outcome.
#[derive(PartialEq, Eq)]
enum Recorded {
    /// The core decided on it (or on the attempt's failure to be recorded).
    Decided,
    /// The job was no longer this worker's (cancelled, deleted), or was given back.
    NotOurs,
}

/// Hand an attempt's outcome to the core. While the database refuses the write it is
/// tried again, every 2 s at most, so the job ends within seconds of the fault
/// clearing, without a restart. After [`RECORD_PATIENCE`] the attempt is recorded as
/// failed with `STORAGE_UNAVAILABLE` instead (retried within the job's
/// `backoffLimit`, so a job whose outcome can never be stored ends); while even that
/// cannot be written, the job is given back to the queue as soon as it can be.
async fn record_outcome(home: &Standalone, tenant: &str, id: &str, token: &str, observed: Observed) -> Recorded {
    let started = std::time::Instant::now();
    let mut pause = Duration::from_millis(100);
    let mut refused = None;
    loop {
        let (attempt, result) = if started.elapsed() < RECORD_PATIENCE {
            ("the render's outcome", observe(home, tenant, id, token, observed.clone()))
        } else {
            let why = refused.as_ref().map_or_else(String::new, |err: &store::StoreError| format!(": {err}"));
            let message =
                format!("the render's outcome could not be recorded for {} s{why}", RECORD_PATIENCE.as_secs());
            let failed = Observed::AttemptFailed { code: ErrorCode::StorageUnavailable, message };
            match observe(home, tenant, id, token, failed) {
                Ok(decided) => ("the attempt's failure to be recorded", Ok(decided)),
                Err(_) => {
                    ("giving the job back", home.store.write(|tx| store::release_claim(tx, id, token)).map(|_| None))
                }
            }
        };
        match result {
            Ok(decided) => {
                if refused.is_some() {
                    tracing::info!(job = %id, "{attempt} was written after the database refused writes");
                }
                return if decided.is_some() { Recorded::Decided } else { Recorded::NotOurs };
            }
            Err(err) => {
                tracing::error!(error = %err, job = %id, "recording a render's outcome failed; trying again");
                refused = Some(err);
            }
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(RECORD_RETRY_MAX);
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

/// Carry `observed` out on the job if it is still ours, in one transaction.
fn observe(
    home: &Standalone,
    tenant: &str,
    id: &str,
    token: &str,
    observed: Observed,
) -> Result<Option<(JobRecord, Decision)>, store::StoreError> {
    let applied = home.store.write(|tx| {
        let Some(mut record) = still_ours(tx, tenant, id, token)? else {
            return Ok(None);
        };
        Ok(apply(tx, &mut record, observed, Timestamp::now())?.ok().map(|decision| (record, decision)))
    })?;
    if let Some((record, decision)) = &applied {
        home.after_commit(record, decision);
    }
    Ok(applied)
}

/// Write the output under `key`; what the core is told: rendered, or failed with
/// `STORAGE_UNAVAILABLE`. The facts and the charge are recorded next, in one
/// transaction; a crash between the two leaves the job claimed-but-unsettled, and at
/// the next start it renders again, overwrites the same file and is charged then, once.
async fn store_output(home: &Standalone, key: String, rendered: Rendered) -> Observed {
    let outputs = home.outputs.clone();
    let pdf = rendered.output;
    let write_key = key.clone();
    let written = tokio::task::spawn_blocking(move || outputs.put(&write_key, &pdf)).await;
    match written.map_err(std::io::Error::other).and_then(|r| r) {
        Ok(()) => Observed::Rendered { facts: rendered.facts, output_key: key },
        Err(err) => {
            tracing::error!(error = %err, key, "storing an output failed");
            let message = format!("the output could not be stored: {err}");
            Observed::AttemptFailed { code: ErrorCode::StorageUnavailable, message }
        }
    }
}

/// The sweeper: every `interval`, carry out the end of retentions (a job with a TTL
/// goes with its PDF, any other loses its PDF) and expire waiting jobs whose
/// `activeDeadlineSeconds` passed.
pub async fn sweep(home: Arc<Standalone>, interval: Duration, mut stop: watch::Receiver<bool>) {
    let mut retentions = tokio::time::interval(interval);
    retentions.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // A deadline is kept to the second, whatever the sweep interval (one indexed query).
    let mut deadlines = tokio::time::interval(interval.min(DEADLINE_CHECK));
    deadlines.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let outcome = tokio::select! {
            _ = retentions.tick() => end_retentions(&home, Timestamp::now()),
            _ = deadlines.tick() => expire_overdue(&home, Timestamp::now()),
            _ = stop.changed() => return,
        };
        if let Err(err) = outcome {
            tracing::error!(error = %err, "sweeping expired jobs failed");
        }
    }
}

/// How often waiting jobs are checked against their `activeDeadlineSeconds`.
const DEADLINE_CHECK: Duration = Duration::from_secs(1);

/// Carry out the retentions that ended by `now`; how many.
pub fn end_retentions(home: &Standalone, now: Timestamp) -> Result<usize, store::StoreError> {
    let mut deleted = 0;
    loop {
        let batch = home.store.read(|c| store::expired_jobs(c, now, 200))?;
        if batch.is_empty() {
            break;
        }
        let mut progressed = false;
        for record in batch {
            let ended = home.store.write(|tx| {
                let Some(mut current) = store::load_job(tx, None, record.id())? else {
                    return Ok(None);
                };
                let Ok(decision) = apply(tx, &mut current, Observed::Look, now)? else {
                    return Ok(None);
                };
                if decision.has(&Effect::DeleteJob) {
                    store::delete_job(tx, current.id())?;
                }
                Ok(Some((current, decision)))
            })?;
            match ended {
                Some((current, decision))
                    if decision.has(&Effect::DeleteJob) || decision.has(&Effect::DeleteOutput) =>
                {
                    home.after_commit(&current, &decision);
                    deleted += 1;
                    progressed = true;
                }
                _ => tracing::error!(job = %record.id(), "the store lists a job as expired that the rules keep"),
            }
        }
        if !progressed {
            // Only jobs the rules keep are left: the next sweep looks again.
            break;
        }
    }
    Ok(deleted)
}

/// Expire the waiting jobs whose `activeDeadlineSeconds` passed by `now`; how many.
pub fn expire_overdue(home: &Standalone, now: Timestamp) -> Result<usize, store::StoreError> {
    let mut expired = 0;
    let overdue = home.store.read(|c| store::overdue_jobs(c, now, 500))?;
    for record in overdue {
        let ended = home.store.write(|tx| {
            let Some(mut current) = store::load_job(tx, None, record.id())? else {
                return Ok(None);
            };
            // A claimed job's worker bounds its render by the deadline and ends it.
            if current.claimed_by.is_some() || current.phase().is_terminal() {
                return Ok(None);
            }
            Ok(apply(tx, &mut current, Observed::Look, now)?.ok().map(|decision| (current, decision)))
        })?;
        if let Some((current, decision)) = ended {
            home.after_commit(&current, &decision);
            if decision.phase() == Phase::Expired {
                expired += 1;
            }
        }
    }
    Ok(expired)
}
