//! One reconcile of one RenderJob: read where it stands (its status and its current
//! renderer Pod, both from the operator's watch caches), take the one step the
//! lifecycle rules allow, and record it with a server-side apply of the whole
//! status, conditional on the job's `resourceVersion`. Every step is idempotent: a
//! reconcile cut short anywhere is repeated from what the API server holds.
//!
//! Each job costs few requests: the finalizer, the input ConfigMap and the Pod (two
//! applies), one status write to `Rendering` (a job that can start at once is never
//! written `Queued`), one delete of the input once the Pod's outcome is taken, the
//! ledger's write and the final status, and an Event for the transitions a user
//! looks for (the attempt's Pod, the outcome, a retry, a renderer that cannot
//! start). Nothing is deleted that the caches say is gone already.
//!
//! - new job → resolve the references (`prepare`), create the input ConfigMap and
//!   the renderer Pod for attempt `retryCount` → `Rendering` (`Queued` while the
//!   API server refuses its renderer or a retry waits)
//! - `Rendering` → wait for the Pod; a report of success goes to the [`ledger`];
//!   a failure is retried per `backoffLimit` (a new Pod after `nextAttemptAt`) or
//!   fails the job
//! - a renderer that cannot start shows at once: a Pod the API server refuses
//!   (admission, quota, RBAC) as the condition `RendererAdmitted` False, a Pod the
//!   scheduler cannot place or whose container cannot start (an image that cannot
//!   be pulled) as `RendererStarted` False, each with the server's, scheduler's or
//!   kubelet's reason and message and one Warning Event. After the operator's
//!   renderer start timeout the attempt fails with `RENDERER_UNAVAILABLE` (retried
//!   per `backoffLimit`), so such a job never waits silently for its deadline.
//! - `Blocked` → the ledger again (after a top-up or a resume request)
//! - `spec.cancel` → `Cancelled`; past `activeDeadlineSeconds` → `Expired`
//! - ended → deleted at `expiresAt` (`ttlSecondsAfterFinished` or the account's
//!   retention); the finalizer then deletes the PDF.

use std::time::Duration;

use jiff::Timestamp;
use kube::api::DeleteParams;
use kube::runtime::controller::Action;
use kube::{Api, ResourceExt};

use super::attempt::{follow_attempt, start_attempt};
use super::context::{Context, Error};
use super::effects::{Next, carry_out, decide_now, delete_if_present, delete_renderer};
use super::ledger;
use super::webhooks;
use super::writes::{names, until, write_status};
use crate::lifecycle::{Effect, Observed, Phase};
use crate::resources::{RESUME_ANNOTATION, RenderJob};
use crate::storage::output_key;

/// Steps one reconcile may take before handing back to the controller.
const MAX_STEPS: usize = 4;

/// Move `job` as far as it can go now.
pub async fn apply(job: &RenderJob, ctx: &Context) -> Result<Action, Error> {
    let (mut job, next_delivery) = webhooks::deliver_due(job, ctx).await?;
    let mut wake = Some(Duration::ZERO);
    for _ in 0..MAX_STEPS {
        match step(&job, ctx).await? {
            Next::Continue(updated) => job = *updated,
            Next::Done(after) => {
                wake = after;
                break;
            }
        }
    }
    let wake = match (wake, next_delivery) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    Ok(wake.map_or_else(Action::await_change, Action::requeue))
}

/// The finalizer's work: delete the job's PDF (there may never have been one).
pub async fn cleanup(job: &RenderJob, ctx: &Context) -> Result<Action, Error> {
    let (namespace, name) = names(job)?;
    let now = crate::lifecycle::now_ms();
    let deleted = decide_now(job, ctx, Observed::Deleted, now)?;
    // A renderer still running would upload after the delete below.
    if deleted.has(&Effect::StopRenderer) {
        delete_renderer(job, ctx).await?;
    }
    // A charge of a job that did not succeed goes back; a settled one is forgotten.
    ledger::close_deleted(job, ctx, now).await?;
    if deleted.has(&Effect::DeleteOutput) {
        ctx.bucket.delete(&output_key(namespace, name, job.spec.output)).await?;
    }
    tracing::info!(job = name, namespace, "deleted the job's PDF");
    Ok(Action::await_change())
}

async fn step(job: &RenderJob, ctx: &Context) -> Result<Next, Error> {
    let now = crate::lifecycle::now_ms();
    // A new job is queued; it is written so only if it cannot start at once.
    match job.status.as_ref().and_then(|s| s.phase).unwrap_or(Phase::Queued) {
        phase if phase.is_terminal() => finished(job, ctx, now).await.map(Next::Done),
        // A render that already succeeded is settled before a cancel or a deadline
        // is considered: it may have been charged by a reconcile that stopped short.
        Phase::Rendering => follow_attempt(job, ctx, now).await,
        // A blocked job's charge is tried again (an account change woke it); a resume
        // request asks the same, and only of a blocked job.
        Phase::Blocked => {
            let observed = if resume_requested(job) { Observed::Resume } else { Observed::Look };
            let decision = ledger::settle(job, ctx, observed, now).await?;
            carry_out(job, ctx, decision, now).await
        }
        _ => {
            let decision = decide_now(job, ctx, Observed::Look, now)?;
            match decision.attempt_to_start() {
                Some(attempt) => start_attempt(job, ctx, attempt, now).await,
                None => carry_out(job, ctx, decision, now).await,
            }
        }
    }
}

/// Whether `folio api` asked this job to resume (its annotation).
fn resume_requested(job: &RenderJob) -> bool {
    job.annotations().contains_key(RESUME_ANNOTATION)
}

/// An ended job: give back or close the charge entry left on its account, then
/// delete the job when its retention ends (after the deliveries it still owes).
async fn finished(job: &RenderJob, ctx: &Context, now: Timestamp) -> Result<Option<Duration>, Error> {
    let decision = decide_now(job, ctx, Observed::Look, now)?;
    let mut job = job.clone();
    if decision.has(&Effect::DeleteOutput) {
        let (namespace, name) = names(&job)?;
        ctx.bucket.delete(&output_key(namespace, name, job.spec.output)).await?;
    }
    if !decision.has(&Effect::DeleteJob) {
        // What may have changed: the PDF's retention ended, the conditions (a job
        // ended by an older folio), or the spec was edited after the job ended (a late
        // cancel), whose generation the status then says it has seen, so that tools
        // waiting for observedGeneration (kstatus, Flux) do not read it as in progress.
        job = write_status(&job, ctx, decision.status.clone()).await?;
    }
    if decision.has(&Effect::DeleteOutput) {
        let note = "the PDF was deleted at the end of its retention; the RenderJob is kept (ttlSecondsAfterFinished deletes it too)";
        ctx.publish(&job, false, "OutputExpired", note.to_owned()).await;
    }
    let job = &job;
    let entry_wait = ledger::close_pending(job, ctx, now).await?;
    if let Some(at) = decision.wake_at() {
        let wait = until(now, at).unwrap_or(Duration::ZERO).min(Duration::from_secs(3600));
        return Ok(Some(entry_wait.map_or(wait, |entry| entry.min(wait))));
    }
    if !decision.has(&Effect::DeleteJob) {
        return Ok(entry_wait);
    }
    if let Some(hooks) = job.status.as_ref().and_then(|s| s.webhook.as_ref())
        && !hooks.queue.is_empty()
    {
        // Deleting now would drop deliveries still owed; they end within the retry period.
        let wait = hooks.next_attempt_at.and_then(|at| until(now, at)).unwrap_or(Duration::from_secs(1));
        return Ok(Some(wait));
    }
    let (namespace, name) = names(job)?;
    let jobs: Api<RenderJob> = Api::namespaced(ctx.client.clone(), namespace);
    if delete_if_present(&jobs, name, &DeleteParams::background()).await? {
        tracing::info!(job = name, namespace, "deleted the job after its retention");
    }
    Ok(None)
}
