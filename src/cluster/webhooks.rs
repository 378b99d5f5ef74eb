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

use super::context::{Context, Error};
use super::delivery_queue;
use super::writes::{names, until, write_status};
use crate::lifecycle::Phase;

use crate::resources::{RenderJob, SecretKeyRef};
use crate::webhooks::{EventBody, Outcome};

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
    // The attempt is recorded at its end, as in the standalone home.
    let now = crate::lifecycle::now_ms();
    let label = delivery_queue::record(hooks, outcome, &delivery.retry, now);
    ctx.metrics.webhook_attempt(label);
    let next = hooks.next_attempt_at.and_then(|at| until(now, at)).or(hooks.next_attempt_at.map(|_| Duration::ZERO));
    let job = write_status(job, ctx, status).await?;
    Ok((job, next))
}

/// A presigned download URL for a succeeded event of a job whose PDF is stored.
async fn download_url(job: &RenderJob, body: &EventBody, ctx: &Context) -> Option<String> {
    if body.status != Phase::Succeeded.api_name() {
        return None;
    }
    let key = job.status.as_ref()?.output_key.clone()?;
    // Like every link, never past the job's retention.
    let now = Timestamp::now();
    let expires = crate::http::link_end(job, now.saturating_add(crate::http::DEFAULT_URL_LIFETIME).ok()?);
    let lifetime = Duration::try_from(now.duration_until(expires)).ok().filter(|l| !l.is_zero())?;
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
