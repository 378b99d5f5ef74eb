//! Webhook delivery in the standalone home. A delivery is queued in the same
//! transaction as the phase change it reports, so no change is lost to a crash; a
//! delivery loop sends due deliveries (each job's oldest pending one first, so a job's
//! events arrive in order). What an attempt's outcome means (retry when, give up
//! when, which metric label) is the core's rule set, `lifecycle::deliveries`.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use rusqlite::Connection;
use tokio::sync::{Semaphore, watch};

use super::Standalone;
use super::store::{self, AttemptRecord, Delivery, JobRecord, StoreError};
use crate::lifecycle::Phase;
use crate::lifecycle::deliveries::{Step, after_attempt};
use crate::webhooks::{EventBody, Outcome, RetryPolicy, Sender, event_for};

/// Deliveries sent at once, over all jobs.
const CONCURRENT_DELIVERIES: usize = 16;
/// How long an idle loop waits before looking for due deliveries again.
const IDLE_POLL: Duration = Duration::from_millis(250);
/// Finished deliveries are forgotten after this long.
const KEEP_FINISHED: SignedDuration = SignedDuration::from_hours(24 * 7);

/// Queue the event of `record`'s current phase (the core decided it is wanted) for
/// its webhook, or else the account's default. Call inside the transaction that
/// saves the change.
pub fn enqueue(tx: &Connection, record: &JobRecord, now: Timestamp) -> Result<(), StoreError> {
    let target = match &record.job.spec.webhook {
        Some(hook) => Some((hook.url.clone(), record.webhook_secret.clone())),
        None => account_webhook(tx, record.tenant())?,
    };
    let Some((url, secret)) = target else {
        return Ok(());
    };
    let body = serde_json::to_string(&event_for(&record.job, record.created_at))?;
    let delivery = Delivery {
        id: format!("dlv_{}", uuid::Uuid::now_v7().simple()),
        job_id: record.id().to_owned(),
        tenant: record.tenant().to_owned(),
        url,
        secret,
        body,
        attempts: 0,
        created_at: now,
    };
    store::insert_delivery(tx, &delivery, now)
}

/// The tenant's default webhook: the RenderAccount's, with its secret from a Secret.
fn account_webhook(tx: &Connection, tenant: &str) -> Result<Option<(String, Option<String>)>, StoreError> {
    let Some(hook) = store::load_account(tx, tenant)?.and_then(|a| a.spec.webhook) else {
        return Ok(None);
    };
    let secret = match &hook.secret_ref {
        Some(reference) => {
            let value = store::secret_value(tx, tenant, &reference.name, &reference.key)?;
            if value.is_none() {
                tracing::warn!(tenant, secret = %reference.name, "the account webhook's secret is missing; deliveries go out unsigned");
            }
            value
        }
        None => None,
    };
    Ok(Some((hook.url, secret)))
}

/// Send due deliveries until `stop` turns true.
pub async fn deliver(home: Arc<Standalone>, sender: Sender, retry: RetryPolicy, mut stop: watch::Receiver<bool>) {
    let in_flight: Arc<Mutex<HashSet<String>>> = Arc::default();
    let slots = Arc::new(Semaphore::new(CONCURRENT_DELIVERIES));
    let mut last_prune = Timestamp::UNIX_EPOCH;
    while !*stop.borrow() {
        let now = Timestamp::now();
        match home.store.read(|c| store::due_deliveries(c, now, 64)) {
            Ok(due) => {
                for delivery in due {
                    let claimed = in_flight.lock().map(|mut set| set.insert(delivery.job_id.clone())).unwrap_or(false);
                    if !claimed {
                        continue;
                    }
                    let Ok(slot) = slots.clone().acquire_owned().await else {
                        return;
                    };
                    let (home, sender, in_flight) = (home.clone(), sender.clone(), in_flight.clone());
                    tokio::spawn(async move {
                        attempt(&home, &sender, retry, &delivery).await;
                        if let Ok(mut set) = in_flight.lock() {
                            set.remove(&delivery.job_id);
                        }
                        drop(slot);
                    });
                }
            }
            Err(err) => tracing::error!(error = %err, "reading due webhook deliveries failed"),
        }
        if now.duration_since(last_prune) > SignedDuration::from_mins(10) {
            last_prune = now;
            let before = now.checked_sub(KEEP_FINISHED).unwrap_or(Timestamp::UNIX_EPOCH);
            if let Err(err) = home.store.write(|tx| store::prune_deliveries(tx, before)) {
                tracing::warn!(error = %err, "pruning finished deliveries failed");
            }
        }
        let wait = home
            .store
            .read(store::next_delivery_due)
            .ok()
            .flatten()
            .and_then(|due| Duration::try_from(Timestamp::now().duration_until(due)).ok())
            .map_or(IDLE_POLL, |d| d.clamp(Duration::from_millis(20), IDLE_POLL));
        tokio::select! {
            _ = tokio::time::sleep(wait) => {},
            _ = stop.changed() => {},
        }
    }
}

async fn attempt(home: &Standalone, sender: &Sender, retry: RetryPolicy, delivery: &Delivery) {
    // The batch may be stale: an earlier attempt of this job may have finished (and
    // rescheduled this delivery) while the loop waited for a slot.
    match home.store.read(|c| store::delivery_due(c, &delivery.id, Timestamp::now())) {
        Ok(true) => {}
        Ok(false) => return,
        Err(err) => {
            tracing::warn!(error = %err, delivery = %delivery.id, "checking a delivery failed");
            return;
        }
    }
    let mut body: EventBody = match serde_json::from_str(&delivery.body) {
        Ok(body) => body,
        Err(err) => {
            let error = format!("the stored event is unreadable: {err}");
            let _ = home.store.write(|tx| {
                store::record_attempt(tx, &delivery.id, AttemptRecord::GiveUp(None, &error), Timestamp::now())
            });
            return;
        }
    };
    if body.status == Phase::Succeeded.api_name() {
        let wanted = Timestamp::now().saturating_add(crate::http::DEFAULT_URL_LIFETIME).unwrap_or(Timestamp::MAX);
        // Like every link, never past the job's retention.
        let job = home.store.read(|c| store::load_job(c, Some(&delivery.tenant), &delivery.job_id)).ok().flatten();
        let expires = job.as_ref().map_or(wanted, |record| crate::http::link_end(&record.job, wanted));
        let output = job.map_or_else(Default::default, |record| record.job.spec.output);
        body.download_url = Some(home.signed_download_url(&delivery.tenant, &delivery.job_id, output, expires));
    }
    let outcome = sender.send(&delivery.url, delivery.secret.as_deref(), &delivery.id, &body).await;
    let now = Timestamp::now();
    let attempts = u32::try_from(delivery.attempts + 1).unwrap_or(u32::MAX);
    let step = after_attempt(&outcome, attempts, delivery.created_at, now, &retry);
    let record = match (&outcome, &step) {
        (Outcome::Delivered { status }, _) => AttemptRecord::Delivered(*status),
        (Outcome::Failed { status, error }, Step::RetryAt(next)) => AttemptRecord::Retry(*status, error, *next),
        (Outcome::Failed { status, error }, _) => AttemptRecord::GiveUp(*status, error),
        (Outcome::Refused { error }, _) => AttemptRecord::GiveUp(None, error),
    };
    let label = step.label();
    home.metrics.webhook_attempt(label);
    if let Err(err) = home.store.write(|tx| store::record_attempt(tx, &delivery.id, record, now)) {
        tracing::error!(error = %err, delivery = %delivery.id, "recording a webhook attempt failed; it will be sent again");
    }
    if let Outcome::Refused { error } | Outcome::Failed { error, .. } = &outcome {
        tracing::info!(delivery = %delivery.id, job = %delivery.job_id, error = %error, "webhook attempt failed");
    }
}
