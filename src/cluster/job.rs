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
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use kube::api::{DeleteParams, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::{Api, ResourceExt};

use super::context::{Context, Error, FIELD_MANAGER};
use super::lookup::prepare_job;
use super::pod::{DEFAULT_POD_DEADLINE_SECONDS, PodError, PodOutcome, RendererReport, Upload, input_config_map};
use super::pod::{StartProblem, admission_refusal, input_name, pod_name, pod_outcome, renderer_pod};
use super::writes::{names, reason, until, write_decision, write_status};
use super::{ledger, webhooks};
use crate::lifecycle::status::{RENDERER_ADMITTED, RENDERER_STARTED, failing_condition, set_condition};
use crate::lifecycle::{Decision, Effect, ErrorCode, Observed, Phase, decide};
use crate::prepare::LookupError;
use crate::resources::{RESUME_ANNOTATION, RenderJob};
use crate::storage::output_key;

/// Longest wait between two looks at a job that is waiting for something.
const MAX_WAIT: Duration = Duration::from_secs(300);
/// Steps one reconcile may take before handing back to the controller.
const MAX_STEPS: usize = 4;

/// What a step leaves behind.
enum Next {
    /// Take the next step on the updated job.
    Continue(Box<RenderJob>),
    /// Done for now; look again after this long (or on a change only).
    Done(Option<Duration>),
}

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
    let now = Timestamp::now();
    let deleted = decide_now(job, ctx, Observed::Deleted, now)?;
    // A renderer still running would upload after the delete below.
    if deleted.has(&Effect::StopRenderer) {
        delete_renderer(job, ctx).await?;
    }
    // A charge of a job that did not succeed goes back; a settled one is forgotten.
    ledger::close_pending(job, ctx, deleted.refund().is_some(), now).await?;
    if deleted.has(&Effect::DeleteOutput) {
        ctx.bucket.delete(&output_key(namespace, name)).await?;
    }
    tracing::info!(job = name, namespace, "deleted the job's PDF");
    Ok(Action::await_change())
}

async fn step(job: &RenderJob, ctx: &Context) -> Result<Next, Error> {
    let now = Timestamp::now();
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

/// The core's decision on `observed` for `job`, with the account as the caches show it.
fn decide_now(job: &RenderJob, ctx: &Context, observed: Observed, now: Timestamp) -> Result<Decision, Error> {
    let account = ledger::account_view(ctx, job);
    decide(job, observed, &account, now).map_err(|refused| Error::Invalid(refused.to_string()))
}

/// Carry out `decision` about `job`: stop its renderer, delete an unpaid output,
/// write the status (with its webhook event), give a charge back, and tell the
/// user with an Event. Returns what the reconcile does next.
async fn carry_out(job: &RenderJob, ctx: &Context, decision: Decision, now: Timestamp) -> Result<Next, Error> {
    carry_out_failure(job, ctx, decision, None, now).await
}

/// [`carry_out`] a decision on a failed attempt (`failure`: its code and message,
/// which a retry's Event repeats).
async fn carry_out_failure(
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
        ctx.bucket.delete(&output_key(namespace, name)).await?;
    }
    let retried = decision.status.retry_count > job.status.as_ref().map_or(0, |s| s.retry_count);
    let written = write_decision(job, ctx, &decision).await?;
    if decision.refund().is_some() {
        // The write just accepted (conditional on this copy) says the job did not
        // succeed; should the refund fail, the ended job's next reconcile gives it back.
        ledger::close_pending(&written, ctx, true, now).await?;
    }
    let phase = decision.phase();
    let status = &decision.status;
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

/// Create the input and the Pod of the job's current attempt, unless a retry must
/// still wait.
async fn start_attempt(job: &RenderJob, ctx: &Context, attempt: i32, now: Timestamp) -> Result<Next, Error> {
    let request = match prepare_job(ctx, job).await? {
        Ok(request) => request,
        Err(failure) if failure.code.is_retryable() => return Err(Error::Lookup(LookupError(failure.message))),
        Err(failure) => return fail(job, ctx, failure.code, failure.message, now).await,
    };
    let (namespace, name) = names(job)?;
    let pod_deadline = job.spec.active_deadline_seconds.unwrap_or(DEFAULT_POD_DEADLINE_SECONDS).max(1) as u64;
    let key = output_key(namespace, name);
    let url = ctx.bucket.presigned_put(&key, Duration::from_secs(pod_deadline + 300)).await?;
    let input = match input_config_map(job, attempt, &request, &Upload { key, url }) {
        Ok(input) => input,
        Err(err @ PodError::InputTooLarge(_)) => {
            return fail(job, ctx, ErrorCode::SpecInvalid, err.to_string(), now).await;
        }
        Err(err) => return Err(Error::Invalid(err.to_string())),
    };
    let pod = renderer_pod(job, attempt, &ctx.settings).map_err(|err| Error::Invalid(err.to_string()))?;
    let apply = PatchParams::apply(FIELD_MANAGER).force();
    let config_maps: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), namespace);
    if let Err(err) = config_maps.patch(&input.name_any(), &apply, &Patch::Apply(&input)).await {
        return refused(job, ctx, err, Refused::Input, now).await;
    }
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), namespace);
    match pods.patch(&pod.name_any(), &apply, &Patch::Apply(&pod)).await {
        Ok(applied) => ctx.applied_pod(&applied),
        Err(err) => return refused(job, ctx, err, Refused::Pod, now).await,
    }
    let mut began = decide_now(job, ctx, Observed::AttemptBegan, now)?;
    if failing_condition(&began.status, RENDERER_ADMITTED).is_some() {
        let message = format!("the API server admitted the renderer Pod {}", pod.name_any());
        set_condition(&mut began.status, job.metadata.generation, RENDERER_ADMITTED, true, "Admitted", &message, now);
    }
    let deadline = began.wake_at();
    let job = write_decision(job, ctx, &began).await?;
    ctx.publish(&job, false, "Rendering", format!("attempt {attempt} started in Pod {}", pod.name_any())).await;
    // A Pod that does not start is looked at again when its start timeout ends.
    let wake = ctx.renderer_start_timeout.min(MAX_WAIT);
    Ok(Next::Done(Some(deadline.and_then(|d| until(now, d)).map_or(wake, |left| left.min(wake)))))
}

/// Which of an attempt's objects the API server refused.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Refused {
    /// The input ConfigMap (so no Pod was tried).
    Input,
    /// The Pod (its input ConfigMap exists).
    Pod,
}

/// After the API server did not accept the input or the Pod of the current attempt:
/// a refusal (403, 422) is shown on the job as the `RendererAdmitted` condition and
/// one Warning Event, and tried again with backoff until the renderer start timeout,
/// counted from the first refusal, fails the attempt. Any other error is returned
/// as it is (a conflict, an unreachable server: they heal by themselves).
async fn refused(
    job: &RenderJob,
    ctx: &Context,
    err: kube::Error,
    what: Refused,
    now: Timestamp,
) -> Result<Next, Error> {
    let Some(refusal) = admission_refusal(&err) else {
        return Err(err.into());
    };
    let mut status = job.status.clone().unwrap_or_default();
    let object = match what {
        Refused::Input => "input ConfigMap",
        Refused::Pod => "Pod",
    };
    let message = format!("the API server refused the renderer {object}: {}", refusal.message);
    // A new job waits in the queue while its renderer is refused.
    status.phase = status.phase.or(Some(Phase::Queued));
    let since = status.renderer_refused_at.unwrap_or(now);
    let waited = Duration::try_from(since.duration_until(now)).unwrap_or_default();
    if waited >= ctx.renderer_start_timeout {
        if what == Refused::Pod {
            // It holds a presigned upload URL that no renderer will use.
            delete_input(job, ctx).await?;
        }
        let message = format!("{message} (refused for {} s)", waited.as_secs());
        return after_failed_attempt(job, ctx, ErrorCode::RendererUnavailable, message, now).await;
    }
    status.renderer_refused_at = Some(since);
    let first = set_condition(
        &mut status,
        job.metadata.generation,
        RENDERER_ADMITTED,
        false,
        &refusal.reason,
        &refusal.message,
        now,
    );
    let job = write_status(job, ctx, status).await?;
    if first {
        ctx.publish(&job, true, "RendererRefused", message.clone()).await;
    }
    Err(Error::Refused { message, retry_within: ctx.renderer_start_timeout - waited })
}

/// Look at the current attempt's Pod and act on how it ended.
async fn follow_attempt(job: &RenderJob, ctx: &Context, now: Timestamp) -> Result<Next, Error> {
    let (namespace, name) = names(job)?;
    let status = job.status.clone().unwrap_or_default();
    // The cache shows the Pod this operator applied (a reconcile waits until it does).
    let Some(pod) = ctx.pod(namespace, &pod_name(name, status.retry_count)) else {
        // A retry waiting for its turn, or a Pod that was never made or was removed.
        let decision = decide_now(job, ctx, Observed::RendererGone, now)?;
        return match decision.attempt_to_start() {
            Some(attempt) => start_attempt(job, ctx, attempt, now).await,
            None => carry_out(job, ctx, decision, now).await,
        };
    };
    let outcome = pod_outcome(&pod);
    let succeeded = matches!(outcome, PodOutcome::Finished(RendererReport::Succeeded { .. }));
    let not_started =
        match &outcome {
            PodOutcome::Pending(problem) => Some(problem.as_ref().map_or_else(
                || format!("the renderer Pod {} was still pending", pod.name_any()),
                StartProblem::describe,
            )),
            _ => None,
        };
    // Unless it succeeded, a cancel or a passed deadline comes before the attempt.
    let look = decide_now(job, ctx, not_started.map_or(Observed::Look, Observed::RendererPending), now)?;
    if !succeeded && look.ended() {
        return carry_out(job, ctx, look, now).await;
    }
    if !owned_by_job(&pod, job) {
        let message = format!("the Pod {} is not this job's renderer (its owner differs)", pod.name_any());
        return fail(job, ctx, ErrorCode::Internal, message, now).await;
    }
    if matches!(outcome, PodOutcome::Finished(_)) {
        // The input holds a presigned upload URL: it goes as soon as it has served.
        delete_input(job, ctx).await?;
    }
    let to_deadline = look.wake_at().and_then(|d| until(now, d)).unwrap_or(MAX_WAIT).min(MAX_WAIT);
    // The renderer started (or ended having run): a condition that said it could not
    // start is set right, on its own when nothing else is written.
    let started = match &outcome {
        PodOutcome::Pending(_) => false,
        PodOutcome::Running => true,
        PodOutcome::Finished(RendererReport::Failed { error_code, .. }) => {
            *error_code != ErrorCode::RendererUnavailable
        }
        PodOutcome::Finished(RendererReport::Succeeded { .. }) => true,
    };
    let mut job = job.clone();
    if started && let Some(current) = job.status.as_ref().filter(|s| failing_condition(s, RENDERER_STARTED).is_some()) {
        let mut status = current.clone();
        let message = format!("the renderer Pod {} started", pod.name_any());
        set_condition(&mut status, job.metadata.generation, RENDERER_STARTED, true, "Started", &message, now);
        if outcome == PodOutcome::Running {
            job = write_status(&job, ctx, status).await?;
        } else {
            // Written with the attempt's outcome below.
            job.status = Some(status);
        }
    }
    let job = &job;
    match outcome {
        PodOutcome::Pending(problem) => renderer_pending(job, ctx, &pod, problem, now, to_deadline).await,
        PodOutcome::Running => Ok(Next::Done(Some(to_deadline))),
        PodOutcome::Finished(RendererReport::Succeeded { facts, .. }) => {
            // The report is the Pod's word: the key is always the job's own, and the
            // stored object must be the PDF it describes.
            let output_key = output_key(namespace, name);
            let stored = ctx.bucket.size(&output_key).await?;
            if stored != u64::try_from(facts.total_bytes).ok() {
                let message = format!(
                    "the renderer reported {} bytes under {output_key}; the bucket holds {}",
                    facts.total_bytes,
                    stored.map_or_else(|| "nothing".to_owned(), |size| format!("{size} bytes"))
                );
                return after_failed_attempt(job, ctx, ErrorCode::RendererCrashed, message, now).await;
            }
            ctx.metrics.rendered(facts.duration_ms);
            // From the job as set right above: a RendererStarted condition that said
            // the Pod could not start is True now.
            let decision = ledger::settle(job, ctx, Observed::Rendered { facts, output_key }, now).await?;
            carry_out(job, ctx, decision, now).await
        }
        PodOutcome::Finished(RendererReport::Failed { error_code, error_message }) => {
            after_failed_attempt(job, ctx, error_code, error_message, now).await
        }
    }
}

/// A renderer Pod not started yet: while the scheduler or the kubelet says why, the
/// job shows it (`RendererStarted` False, one Warning Event); once the Pod has not
/// started for the renderer start timeout (counted from its creation), it is
/// deleted and the attempt fails with `RENDERER_UNAVAILABLE`.
async fn renderer_pending(
    job: &RenderJob,
    ctx: &Context,
    pod: &Pod,
    problem: Option<StartProblem>,
    now: Timestamp,
    to_deadline: Duration,
) -> Result<Next, Error> {
    let timeout = ctx.renderer_start_timeout;
    let created = pod.metadata.creation_timestamp.as_ref().map_or(now, |t| t.0);
    let waited = Duration::try_from(created.duration_until(now)).unwrap_or_default();
    if waited >= timeout {
        let message = match &problem {
            Some(problem) => format!("{} (not started after {} s)", problem.describe(), waited.as_secs()),
            None => format!("the renderer Pod {} did not start within {} s", pod.name_any(), timeout.as_secs()),
        };
        delete_input(job, ctx).await?;
        return after_failed_attempt(job, ctx, ErrorCode::RendererUnavailable, message, now).await;
    }
    let wake = Some((timeout - waited).min(to_deadline));
    let Some(problem) = problem else {
        return Ok(Next::Done(wake));
    };
    let mut status = job.status.clone().unwrap_or_default();
    let first = set_condition(
        &mut status,
        job.metadata.generation,
        RENDERER_STARTED,
        false,
        &problem.reason,
        &problem.message,
        now,
    );
    let job = write_status(job, ctx, status).await?;
    if first {
        ctx.publish(&job, true, "RendererNotStarted", problem.describe()).await;
    }
    Ok(Next::Done(wake))
}

/// Hand a failed attempt to the core: retried per `backoffLimit` (the attempt's
/// renderer, if it is still there, goes first) or the job fails.
async fn after_failed_attempt(
    job: &RenderJob,
    ctx: &Context,
    code: ErrorCode,
    message: String,
    now: Timestamp,
) -> Result<Next, Error> {
    let decision = decide_now(job, ctx, Observed::AttemptFailed { code, message: message.clone() }, now)?;
    carry_out_failure(job, ctx, decision, Some((code, &message)), now).await
}

/// Whether `pod` is controlled by `job` (by uid, not only by name).
fn owned_by_job(pod: &Pod, job: &RenderJob) -> bool {
    let uid = job.metadata.uid.as_deref();
    pod.metadata
        .owner_references
        .iter()
        .flatten()
        .any(|owner| owner.controller == Some(true) && Some(owner.uid.as_str()) == uid)
}

/// Fail the job for good: nothing built for it can render it.
async fn fail(job: &RenderJob, ctx: &Context, code: ErrorCode, message: String, now: Timestamp) -> Result<Next, Error> {
    let decision = decide_now(job, ctx, Observed::Unrenderable { code, message }, now)?;
    carry_out(job, ctx, decision, now).await
}

/// Delete the Pod of the job's current attempt, if there is one that has not
/// finished, without a grace period: a renderer of a job that ended or went must not
/// go on rendering (or uploading) through one. The Pod cache says whether there is one (the operator
/// waits for it to show the Pods it applies, so a Pod it does not hold is gone or
/// was never made).
async fn delete_renderer(job: &RenderJob, ctx: &Context) -> Result<(), Error> {
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
async fn delete_input(job: &RenderJob, ctx: &Context) -> Result<(), Error> {
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
async fn delete_if_present<K>(api: &Api<K>, name: &str, params: &DeleteParams) -> Result<bool, Error>
where
    K: Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    match api.delete(name, params).await {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(status)) if status.is_not_found() => Ok(false),
        Err(err) => Err(err.into()),
    }
}

/// An ended job: give back or close the charge entry left on its account, then
/// delete the job when its retention ends (after the deliveries it still owes).
async fn finished(job: &RenderJob, ctx: &Context, now: Timestamp) -> Result<Option<Duration>, Error> {
    let decision = decide_now(job, ctx, Observed::Look, now)?;
    let entry_wait = ledger::close_pending(job, ctx, decision.refund().is_some(), now).await?;
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
