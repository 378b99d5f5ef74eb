//! How the operator carries out the lifecycle core's decisions about a job: stop its
//! renderer, delete an unpaid output, write the status (with its webhook event),
//! give a charge back, and tell the user with an Event.

use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use kube::Api;
use kube::api::DeleteParams;

use super::context::{Context, Error};
use super::ledger;
use super::pod::{PodOutcome, input_name, owned_by_job, pod_name, pod_outcome};
use super::writes::{names, reason, until, write_decision};
use crate::lifecycle::{Decision, Effect, ErrorCode, Observed, Phase, decide};
use crate::resources::RenderJob;
use crate::storage::output_key;

/// Longest wait between two looks at a job that is waiting for something.
pub(super) const MAX_WAIT: Duration = Duration::from_secs(300);

/// What a step leaves behind.
pub(super) enum Next {
    /// Take the next step on the updated job.
    Continue(Box<RenderJob>),
    /// Done for now; look again after this long (or on a change only).
    Done(Option<Duration>),
}

/// The core's decision on `observed` for `job`, with the account as the caches show it.
pub(super) fn decide_now(
    job: &RenderJob,
    ctx: &Context,
    observed: Observed,
    now: Timestamp,
) -> Result<Decision, Error> {
    let account = ledger::account_view(ctx, job);
    decide(job, observed, &account, now).map_err(|refused| Error::Invalid(refused.to_string()))
}

/// Carry out `decision` about `job`: stop its renderer, delete an unpaid output,
/// write the status (with its webhook event), give a charge back, and tell the
/// user with an Event. Returns what the reconcile does next.
pub(super) async fn carry_out(
    job: &RenderJob,
    ctx: &Context,
    decision: Decision,
    now: Timestamp,
) -> Result<Next, Error> {
    carry_out_failure(job, ctx, decision, None, now).await
}

/// [`carry_out`] a decision on a failed attempt (`failure`: its code and message,
/// which a retry's Event repeats).
pub(super) async fn carry_out_failure(
    job: &RenderJob,
    ctx: &Context,
    decision: Decision,
    failure: Option<(ErrorCode, &str)>,
    now: Timestamp,
) -> Result<Next, Error> {
    let (namespace, name) = names(job)?;
    if decision.has(&Effect::StopRenderer) {
        delete_renderer(job, ctx).await?;
    }
    if decision.has(&Effect::DeleteOutput) {
        ctx.bucket.delete(&output_key(namespace, name, job.spec.output)).await?;
    }
    let retried = decision.status.retry_count > job.status.as_ref().map_or(0, |s| s.retry_count);
    let written = write_decision(job, ctx, &decision).await?;
    if decision.refund().is_some() {
        // The write just accepted (conditional on this copy) says the job did not
        // succeed; should the refund fail, the ended job's next reconcile gives it back.
        ledger::close_pending(&written, ctx, now).await?;
    }
    let phase = decision.phase();
    let status = &decision.status;
    if decision.ended() {
        crate::metrics::log_job_finished(name, namespace, status);
    }
    if let (true, Some((code, message))) = (retried, failure) {
        let delay = status.next_attempt_at.and_then(|at| until(now, at)).unwrap_or_default();
        let note = format!("attempt {} failed, retrying in {delay:?}: {code}: {message}", status.retry_count - 1);
        ctx.publish(&written, true, "RetryScheduled", note).await;
    } else if phase != decision.from {
        let note = match phase {
            Phase::Succeeded => format!(
                "{} pages, {} bytes, {} credits",
                status.page_count.unwrap_or(0),
                status.total_bytes.unwrap_or(0),
                status.credits_used.unwrap_or(0)
            ),
            _ => status.error_message.clone().unwrap_or_else(|| format!("the job was {}", phase.api_name())),
        };
        let warning = !matches!(phase, Phase::Succeeded | Phase::Cancelled | Phase::Rendering | Phase::Queued);
        ctx.publish(&written, warning, reason(phase), note).await;
    }
    if phase.is_terminal() {
        // What an ended job does next (its retention) is the next step's.
        return Ok(Next::Continue(Box::new(written)));
    }
    Ok(Next::Done(decision.wake_at().map(|at| until(now, at).unwrap_or(Duration::ZERO).min(MAX_WAIT))))
}

/// Fail the job for good: nothing built for it can render it.
pub(super) async fn fail(
    job: &RenderJob,
    ctx: &Context,
    code: ErrorCode,
    message: String,
    now: Timestamp,
) -> Result<Next, Error> {
    let decision = decide_now(job, ctx, Observed::Unrenderable { code, message }, now)?;
    carry_out(job, ctx, decision, now).await
}

/// Delete the Pod of the job's current attempt, if there is one that has not
/// finished, without a grace period: a renderer of a job that ended or went must not
/// go on rendering (or uploading) through one. The Pod cache says whether there is one (the operator
/// waits for it to show the Pods it applies, so a Pod it does not hold is gone or
/// was never made).
pub(super) async fn delete_renderer(job: &RenderJob, ctx: &Context) -> Result<(), Error> {
    let (namespace, name) = names(job)?;
    let attempt = job.status.as_ref().map_or(0, |s| s.retry_count);
    let pod = pod_name(name, attempt);
    let Some(cached) = ctx.pod(namespace, &pod) else {
        return Ok(());
    };
    if matches!(pod_outcome(&cached), PodOutcome::Finished(_)) || !owned_by_job(&cached, job) {
        // A finished renderer runs nothing any more; it stays, with its logs, until
        // the job goes. A Pod of that name that is not the job's is not the job's to delete.
        return Ok(());
    }
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), namespace);
    delete_if_present(&pods, &pod, &DeleteParams::background().grace_period(0)).await?;
    Ok(())
}

/// Delete the input ConfigMap of the job's current attempt, once: the outcome of an
/// attempt is taken once, and a delete repeated by a reconcile cut short after it is
/// not sent again (the operator remembers what it deleted).
pub(super) async fn delete_input(job: &RenderJob, ctx: &Context) -> Result<(), Error> {
    let (namespace, name) = names(job)?;
    let attempt = job.status.as_ref().map_or(0, |s| s.retry_count);
    let input = input_name(&pod_name(name, attempt));
    let key = format!("{}/{input}", job.metadata.uid.as_deref().unwrap_or_default());
    if ctx.input_deleted_before(namespace, &key) {
        return Ok(());
    }
    let config_maps: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), namespace);
    if let Err(err) = delete_if_present(&config_maps, &input, &DeleteParams::background()).await {
        ctx.input_not_deleted(namespace, &key);
        return Err(err);
    }
    Ok(())
}

/// Delete `name`; whether it was there at all.
pub(super) async fn delete_if_present<K>(api: &Api<K>, name: &str, params: &DeleteParams) -> Result<bool, Error>
where
    K: Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    match api.delete(name, params).await {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(status)) if status.is_not_found() => Ok(false),
        Err(err) => Err(err.into()),
    }
}
