//! The webhook queue the operator keeps in a RenderJob's status: a delivery is
//! queued in the same status write as the phase change it reports (so a crash loses
//! none), leaves in order, and records each attempt as the core's delivery rules
//! (`lifecycle::deliveries`) say. Pure: sending is `webhooks`.

use jiff::Timestamp;

use crate::lifecycle::deliveries::{Step, after_attempt};
use crate::resources::{QueuedDelivery, RenderJob, RenderJobStatus, WebhookDeliveryStatus, WebhookSpec};
use crate::webhooks::{Outcome, RetryPolicy, event_for};

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

/// Record one attempt's outcome on the queue's first delivery, as the core's
/// delivery rules say; the metric label of the attempt.
pub fn record(
    hooks: &mut WebhookDeliveryStatus,
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    use crate::resources::{Phase, RenderJobSpec, SecretKeyRef, WebhookEvents};

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
