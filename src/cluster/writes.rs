//! How the operator writes a RenderJob's status: the whole status by server-side
//! apply, conditional on the version it was decided on, with the webhook event a
//! decision queues in the same write; and the small helpers every step shares.

use std::time::Duration;

use jiff::Timestamp;
use kube::api::{Patch, PatchParams};
use kube::{Api, Resource};
use serde_json::json;

use super::context::{Context, Error, FIELD_MANAGER};
use super::delivery_queue;
use crate::lifecycle::{self, Decision, Effect, Phase};
use crate::resources::{RenderJob, RenderJobStatus};

/// Write the status `decision` leaves `job` in, and queue the webhook event it asks
/// for in the same write.
pub async fn write_decision(job: &RenderJob, ctx: &Context, decision: &Decision) -> Result<RenderJob, Error> {
    let mut status = decision.status.clone();
    if decision.effects.iter().any(|e| matches!(e, Effect::Notify(_))) {
        let (namespace, _) = names(job)?;
        delivery_queue::enqueue(job, &mut status, || ctx.account_webhook(namespace), lifecycle::now_ms());
    }
    write_status(job, ctx, status).await
}

/// Write the whole status by server-side apply, with `observedGeneration` and the
/// `Ready` condition, if `job` is still the stored version; the job as the API
/// server now holds it.
pub async fn write_status(job: &RenderJob, ctx: &Context, status: RenderJobStatus) -> Result<RenderJob, Error> {
    let (namespace, name) = names(job)?;
    let mut status = status;
    status.observed_generation = job.metadata.generation;
    let status = lifecycle::status::with_phase_conditions(status, lifecycle::now_ms());
    if job.status.as_ref() == Some(&status) {
        // Nothing changed: writing would only wake this job's reconcile again.
        return Ok(job.clone());
    }
    // The resourceVersion makes the write conditional: a reconcile that started from a
    // cached copy older than the stored job fails with a conflict and is retried on
    // fresh data, instead of writing an older status over a newer one.
    let patch = json!({
        "apiVersion": RenderJob::api_version(&()),
        "kind": RenderJob::kind(&()),
        "metadata": {"resourceVersion": job.metadata.resource_version},
        "status": status,
    });
    let jobs: Api<RenderJob> = Api::namespaced(ctx.client.clone(), namespace);
    let written = jobs.patch_status(name, &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(&patch)).await?;
    // Until the job cache shows this write, its copy is older: reconciles wait for it.
    ctx.wrote_job(&written);
    Ok(written)
}

/// The Event reason of reaching `phase`.
pub fn reason(phase: Phase) -> &'static str {
    match phase {
        Phase::Queued => "Queued",
        Phase::Rendering => "Rendering",
        Phase::Blocked => "InsufficientCredits",
        Phase::Succeeded => "Succeeded",
        Phase::Failed => "Failed",
        Phase::Cancelled => "Cancelled",
        Phase::Expired => "Expired",
    }
}

/// How long from `now` until `at`, if that is in the future.
pub(super) fn until(now: Timestamp, at: Timestamp) -> Option<Duration> {
    Duration::try_from(now.duration_until(at)).ok().filter(|d| !d.is_zero())
}

/// The job's namespace and name.
pub fn names(job: &RenderJob) -> Result<(&str, &str), Error> {
    let namespace = job.metadata.namespace.as_deref().ok_or_else(|| Error::Invalid("no namespace".into()))?;
    let name = job.metadata.name.as_deref().ok_or_else(|| Error::Invalid("no name".into()))?;
    Ok((namespace, name))
}
