//! Webhook delivery from the operator. The RenderJob's status is the durable queue:
//! a delivery is queued in the same status write as the phase change it reports
//! (so a crash loses none), and the job's following reconciles send the oldest
//! queued delivery first (so a job's events arrive in order) through the shared
//! [`Sender`] with the shared [`RetryPolicy`]. The status shows attempts, the last
//! response code and error, and when the next attempt is due.
//!
//! A delivery is sent within a reconcile of its job, bounded by the webhook
//! timeout; other jobs are reconciled meanwhile (the controller's concurrency).
//!
//! The job is read from the operator's cache, not from the API server. A cached
//! copy older than the operator's own last write of the job could still list a
//! delivery that write recorded as done; the controller does not reconcile a job
//! until its cache shows the operator's last write (see `controller`), so such a
//! copy does not reach this code. Should it anyway (a watch event that never came),
//! the outcome's write is conditional on the copy's `resourceVersion` and refused,
//! and the delivery went out once more: deliveries are at least once, never lost.

use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::Secret;
use kube::Api;

use super::controller::{Context, Error};
use super::job::{names, until, write_status};
use crate::lifecycle::Phase;
use crate::lifecycle::deliveries::{Step, after_attempt};
use crate::resources::{QueuedDelivery, RenderJob, RenderJobStatus, SecretKeyRef, WebhookSpec};
use crate::webhooks::{EventBody, Outcome, RetryPolicy, Sender, event_for};

/// What the operator delivers webhooks with.
pub struct Delivery {
    /// Sends one attempt, refusing private targets unless allowed.
    pub sender: Sender,
    /// When to retry and when to give up.
    pub retry: RetryPolicy,
}

/// Queue the event of `job` changing into `status`'s phase (the core decided it is
/// wanted) for the job's webhook, or else its account's default.
pub fn enqueue(
    job: &RenderJob,
    status: &mut RenderJobStatus,
    account_default: impl FnOnce() -> Option<WebhookSpec>,
    now: Timestamp,
) {
    let Some(hook) = job.spec.webhook.clone().or_else(account_default) else {
        return;
    };
    let mut snapshot = job.clone();
    snapshot.status = Some(status.clone());
    let created_at = job.metadata.creation_timestamp.as_ref().map_or(now, |t| t.0);
    let Ok(body) = serde_json::to_string(&event_for(&snapshot, created_at)) else {
        return;
    };
    queue_delivery(status, hook, body, now);
}

fn queue_delivery(status: &mut RenderJobStatus, hook: WebhookSpec, body: String, now: Timestamp) {
    let hooks = status.webhook.get_or_insert_with(Default::default);
    hooks.queue.push(QueuedDelivery {
        id: format!("dlv_{}", uuid::Uuid::now_v7().simple()),
        url: hook.url,
        secret_ref: hook.secret_ref,
        body,
        queued_at: Some(now),
        attempts: 0,
    });
    hooks.pending = hooks.queue.len() as i64;
    hooks.next_attempt_at = hooks.next_attempt_at.or(Some(now));
}

/// Send the job's oldest queued delivery if it is due, and record the outcome.
/// Returns the job as now stored and how long until the next delivery is due.
pub async fn deliver_due(job: &RenderJob, ctx: &Context) -> Result<(RenderJob, Option<Duration>), Error> {
    let now = Timestamp::now();
    let Some(delivery) = ctx.webhooks.as_ref() else {
        return Ok((job.clone(), None));
    };
    let mut status = job.status.clone().unwrap_or_default();
    let Some(hooks) = status.webhook.as_mut() else {
        return Ok((job.clone(), None));
    };
    let Some(first) = hooks.queue.first().cloned() else {
        return Ok((job.clone(), None));
    };
    if let Some(wait) = hooks.next_attempt_at.and_then(|at| until(now, at)) {
        return Ok((job.clone(), Some(wait)));
    }
    let (namespace, _) = names(job)?;
    // A delivery that should be signed never goes out unsigned: while its Secret cannot
    // be read (not made yet, deleted, or the API failing), the attempt fails and is
    // retried like a receiver's failure.
    let secret = match &first.secret_ref {
        Some(reference) => match secret_value(ctx, namespace, reference).await {
            Ok(Some(value)) => Ok(Some(value)),
            Ok(None) => {
                Err(format!("the webhook Secret {namespace}/{} has no key {:?}", reference.name, reference.key))
            }
            Err(err) => Err(format!("reading the webhook Secret {namespace}/{}: {err}", reference.name)),
        },
        None => Ok(None),
    };
    let outcome = match (secret, serde_json::from_str::<EventBody>(&first.body)) {
        (Err(error), _) => Outcome::Failed { status: None, error },
        (Ok(secret), Ok(mut body)) => {
            body.download_url = download_url(job, &body, ctx).await;
            delivery.sender.send(&first.url, secret.as_deref(), &first.id, &body).await
        }
        (Ok(_), Err(err)) => Outcome::Refused { error: format!("the queued event is not valid: {err}") },
    };
    let label = record(hooks, outcome, &delivery.retry, now);
    ctx.metrics.webhook_attempt(label);
    let next = hooks.next_attempt_at.and_then(|at| until(now, at)).or(hooks.next_attempt_at.map(|_| Duration::ZERO));
    let job = write_status(job, ctx, status).await?;
    Ok((job, next))
}

/// Record one attempt's outcome on the queue's first delivery, as the core's
/// delivery rules say; the metric label of the attempt.
fn record(
    hooks: &mut crate::resources::WebhookDeliveryStatus,
    outcome: Outcome,
    retry: &RetryPolicy,
    now: Timestamp,
) -> &'static str {
    hooks.attempts += 1;
    hooks.last_attempt_at = Some(now);
    let Some(first) = hooks.queue.first_mut() else {
        return "failed";
    };
    first.attempts += 1;
    let attempts = u32::try_from(first.attempts).unwrap_or(u32::MAX);
    let step = after_attempt(&outcome, attempts, first.queued_at.unwrap_or(now), now, retry);
    match outcome {
        Outcome::Delivered { status } => {
            hooks.last_response_code = Some(i32::from(status));
            hooks.last_error = None;
        }
        Outcome::Failed { status, error } => {
            hooks.last_response_code = status.map(i32::from);
            hooks.last_error = Some(error);
        }
        Outcome::Refused { error } => hooks.last_error = Some(error),
    }
    match step {
        Step::Delivered => hooks.delivered += 1,
        Step::GiveUp => hooks.failed += 1,
        Step::RetryAt(at) => hooks.next_attempt_at = Some(at),
    }
    if step.is_done() {
        hooks.queue.remove(0);
        hooks.next_attempt_at = if hooks.queue.is_empty() { None } else { Some(now) };
    }
    hooks.pending = hooks.queue.len() as i64;
    step.label()
}

/// A presigned download URL for a succeeded event of a job whose PDF is stored.
async fn download_url(job: &RenderJob, body: &EventBody, ctx: &Context) -> Option<String> {
    if body.status != Phase::Succeeded.api_name() {
        return None;
    }
    let key = job.status.as_ref()?.output_key.clone()?;
    let lifetime = Duration::try_from(crate::http::DEFAULT_URL_LIFETIME).ok()?;
    ctx.bucket.presigned_get(&key, lifetime).await.ok()
}

/// The signing secret, or none when the Secret or its key is missing.
async fn secret_value(ctx: &Context, namespace: &str, reference: &SecretKeyRef) -> Result<Option<String>, Error> {
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), namespace);
    let value = secrets
        .get_opt(&reference.name)
        .await?
        .and_then(|secret| secret.data?.remove(&reference.key))
        .and_then(|bytes| String::from_utf8(bytes.0).ok());
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::{RenderJobSpec, WebhookDeliveryStatus, WebhookEvents};

    fn hooks_with(count: usize) -> WebhookDeliveryStatus {
        let mut status = RenderJobStatus::default();
        let now = Timestamp::from_second(1_800_000_000).unwrap();
        for n in 0..count {
            let hook =
                WebhookSpec { url: format!("https://hooks.example/{n}"), secret_ref: None, events: WebhookEvents::All };
            queue_delivery(&mut status, hook, "{}".into(), now);
        }
        status.webhook.unwrap()
    }

    #[test]
    fn deliveries_leave_the_queue_in_order_and_failures_wait_with_backoff() {
        let now = Timestamp::from_second(1_800_000_010).unwrap();
        let retry = RetryPolicy::default();
        let mut hooks = hooks_with(2);
        assert_eq!(hooks.pending, 2);
        record(
            &mut hooks,
            Outcome::Failed { status: Some(503), error: "the receiver answered 503".into() },
            &retry,
            now,
        );
        assert_eq!((hooks.pending, hooks.attempts, hooks.last_response_code), (2, 1, Some(503)));
        assert!(hooks.next_attempt_at.unwrap() > now, "a retry waits");
        assert_eq!(hooks.queue[0].url, "https://hooks.example/0", "the failed one stays first");
        record(&mut hooks, Outcome::Delivered { status: 204 }, &retry, now);
        assert_eq!((hooks.pending, hooks.delivered), (1, 1));
        assert_eq!(hooks.queue[0].url, "https://hooks.example/1");
        record(&mut hooks, Outcome::Refused { error: "a private address".into() }, &retry, now);
        assert_eq!((hooks.pending, hooks.failed, hooks.next_attempt_at), (0, 1, None));
    }

    #[test]
    fn a_delivery_failing_past_the_retry_period_is_given_up() {
        let retry = RetryPolicy { max_age: Duration::from_secs(60), ..Default::default() };
        let mut hooks = hooks_with(1);
        let later = Timestamp::from_second(1_800_000_000 + 61).unwrap();
        record(&mut hooks, Outcome::Failed { status: None, error: "could not connect".into() }, &retry, later);
        assert_eq!((hooks.pending, hooks.failed), (0, 1));
        assert_eq!(hooks.last_error.as_deref(), Some("could not connect"));
    }

    #[test]
    fn the_job_hook_comes_before_the_account_default() {
        let mut job = RenderJob::new("invoice-1", RenderJobSpec::default());
        job.metadata.namespace = Some("acme".into());
        job.status = Some(RenderJobStatus { phase: Some(Phase::Queued), ..Default::default() });
        let now = Timestamp::from_second(1_800_000_000).unwrap();
        let hook = |url: &str, events| Some(WebhookSpec { url: url.into(), secret_ref: None, events });
        let mut rendering = RenderJobStatus { phase: Some(Phase::Rendering), ..Default::default() };
        enqueue(&job, &mut rendering, || hook("https://account.example/", WebhookEvents::All), now);
        assert_eq!(rendering.webhook.as_ref().unwrap().queue[0].url, "https://account.example/");

        job.spec.webhook = hook("https://job.example/", WebhookEvents::Terminal).map(|mut h| {
            h.secret_ref = Some(SecretKeyRef { name: "hooks".into(), key: "secret".into() });
            h
        });
        let mut succeeded = RenderJobStatus { phase: Some(Phase::Succeeded), ..Default::default() };
        enqueue(&job, &mut succeeded, || hook("https://account.example/", WebhookEvents::All), now);
        let queued = &succeeded.webhook.unwrap().queue[0];
        assert_eq!(queued.url, "https://job.example/");
        assert!(queued.body.contains("\"event\":\"render.succeeded\""), "{}", queued.body);
    }
}
