//! One render attempt of a job in the cluster: its input ConfigMap and renderer Pod
//! applied, the API server's refusals and a Pod that does not start shown on the
//! job, and the Pod's outcome handed to the lifecycle core.

use std::borrow::Cow;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use kube::api::{Patch, PatchParams};
use kube::{Api, ResourceExt};

use super::context::{Context, Error, FIELD_MANAGER};
use super::effects::{MAX_WAIT, Next, carry_out, carry_out_failure, decide_now, delete_input, fail};
use super::ledger;
use super::lookup::prepare_job;
use super::pod::{DEFAULT_POD_DEADLINE_SECONDS, PodError, PodOutcome, RendererReport, Upload, input_config_map};
use super::pod::{StartProblem, admission_refusal, owned_by_job, pod_name, pod_outcome, renderer_pod};
use super::writes::{names, until, write_decision, write_status};
use crate::lifecycle::share;
use crate::lifecycle::status::{INPUTS_FOUND, RENDERER_ADMITTED, RENDERER_STARTED, failing_condition, set_condition};
use crate::lifecycle::{ErrorCode, Observed, Phase};
use crate::prepare::LookupError;
use crate::resources::RenderJob;
use crate::storage::output_key;

/// How often a job waiting for its namespace's share looks again; a renderer of the
/// namespace that ends wakes the oldest waiting jobs (new ones and retries) before,
/// and a change of the account's cap is seen here at the latest.
const SHARE_RECHECK: Duration = Duration::from_secs(30);

/// Start the job's current attempt, unless its namespace runs as many renderers as
/// its account's `maxConcurrentRenders` allows: then the job waits in the queue.
pub(super) async fn start_attempt(job: &RenderJob, ctx: &Context, attempt: i32, now: Timestamp) -> Result<Next, Error> {
    let (namespace, _) = names(job)?;
    let Some(cap) = ctx.account(namespace).and_then(|account| account.spec.max_concurrent_renders) else {
        return start_now(job, ctx, attempt, now).await;
    };
    let running = match ctx.renderer_slot(namespace, job, share::cap(cap)) {
        Ok(_slot) => return start_now(job, ctx, attempt, now).await,
        Err(running) => running,
    };
    let mut status = job.status.clone().unwrap_or_default();
    if status.phase.is_none() {
        status.phase = Some(Phase::Queued);
        let job = write_status(job, ctx, status).await?;
        let note = format!("waiting: {namespace} runs {running} renders, its account's maxConcurrentRenders");
        ctx.publish(&job, false, "WaitingForShare", note).await;
    }
    // Its activeDeadlineSeconds counts while it waits.
    let deadline = crate::lifecycle::deadline_of(job, now).and_then(|at| until(now, at));
    Ok(Next::Done(Some(deadline.map_or(SHARE_RECHECK, |left| left.min(SHARE_RECHECK)))))
}

/// Create the input and the Pod of the job's current attempt.
async fn start_now(job: &RenderJob, ctx: &Context, attempt: i32, now: Timestamp) -> Result<Next, Error> {
    let request = match prepare_job(ctx, job).await? {
        Ok(request) => request,
        Err(failure) if failure.code.is_retryable() => return Err(Error::Lookup(LookupError(failure.message))),
        Err(failure) if failure.code == ErrorCode::TemplateNotFound => {
            return input_missing(job, ctx, failure.message, now).await;
        }
        Err(failure) => return fail(job, ctx, failure.code, failure.message, now).await,
    };
    // The wait for the inputs is over: a refused renderer gets a start timeout of its own.
    let job = &match job.status.as_ref().filter(|s| failing_condition(s, INPUTS_FOUND).is_some()) {
        Some(_) => {
            let mut found = job.clone();
            if let Some(status) = found.status.as_mut() {
                status.renderer_refused_at = None;
            }
            Cow::Owned(found)
        }
        None => Cow::Borrowed(job),
    };
    let (namespace, name) = names(job)?;
    let pod_deadline = job.spec.active_deadline_seconds.unwrap_or(DEFAULT_POD_DEADLINE_SECONDS).max(1) as u64;
    let key = output_key(namespace, name, job.spec.output);
    let url = ctx.bucket.presigned_put(&key, Duration::from_secs(pod_deadline + 300)).await?;
    let input = match input_config_map(job, attempt, &request, &Upload { key, url }) {
        Ok(input) => input,
        Err(err @ PodError::InputTooLarge(_)) => {
            return fail(job, ctx, ErrorCode::SpecInvalid, err.to_string(), now).await;
        }
        Err(err) => return Err(Error::Invalid(err.to_string())),
    };
    let pod = renderer_pod(job, attempt, &ctx.settings, request.needs_chromium())
        .map_err(|err| Error::Invalid(err.to_string()))?;
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
    let generation = job.metadata.generation;
    if failing_condition(&began.status, INPUTS_FOUND).is_some() {
        let message = "the template and the ConfigMaps the job names exist";
        set_condition(&mut began.status, generation, INPUTS_FOUND, true, "Found", message, now);
    }
    if failing_condition(&began.status, RENDERER_ADMITTED).is_some() {
        let message = format!("the API server admitted the renderer Pod {}", pod.name_any());
        set_condition(&mut began.status, generation, RENDERER_ADMITTED, true, "Admitted", &message, now);
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
    let object = match what {
        Refused::Input => "input ConfigMap",
        Refused::Pod => "Pod",
    };
    let message = format!("the API server refused the renderer {object}: {}", refusal.message);
    let waited = waited_to_start(job, now);
    if waited >= ctx.renderer_start_timeout {
        if what == Refused::Pod {
            // It holds a presigned upload URL that no renderer will use.
            delete_input(job, ctx).await?;
        }
        let message = format!("{message} (refused for {} s)", waited.as_secs());
        return after_failed_attempt(job, ctx, ErrorCode::RendererUnavailable, message, now).await;
    }
    let cannot_start = CannotStart { condition: RENDERER_ADMITTED, reason: &refusal.reason, event: "RendererRefused" };
    not_started(job, ctx, cannot_start, message, &refusal.message, now).await
}

/// A job whose template, or ConfigMap of data or assets, does not exist waits for it:
/// GitOps tools apply the objects of a commit in an order of their own, so a job may
/// come before its template. Shown as the `InputsFound` condition (False) and one
/// Warning Event; when it is still missing the renderer start timeout after it was
/// first missed, the job fails with `TEMPLATE_NOT_FOUND`.
async fn input_missing(job: &RenderJob, ctx: &Context, message: String, now: Timestamp) -> Result<Next, Error> {
    let waited = waited_to_start(job, now);
    if waited >= ctx.renderer_start_timeout {
        let message = format!("{message} (waited {} s for it)", waited.as_secs());
        return fail(job, ctx, ErrorCode::TemplateNotFound, message, now).await;
    }
    let cannot_start = CannotStart { condition: INPUTS_FOUND, reason: "NotFound", event: "InputNotFound" };
    not_started(job, ctx, cannot_start, message.clone(), &message, now).await
}

/// How long the current attempt has been unable to start.
fn waited_to_start(job: &RenderJob, now: Timestamp) -> Duration {
    let since = job.status.as_ref().and_then(|s| s.renderer_refused_at).unwrap_or(now);
    Duration::try_from(since.duration_until(now)).unwrap_or_default()
}

/// Why the current attempt cannot start: which condition says so, why, and the
/// reason of the Warning Event.
struct CannotStart<'a> {
    condition: &'static str,
    reason: &'a str,
    event: &'static str,
}

/// Show on the job that its current attempt cannot start (its condition False, one
/// Warning Event the first time) and look again, with backoff, at the latest when
/// the renderer start timeout ends.
async fn not_started(
    job: &RenderJob,
    ctx: &Context,
    cannot_start: CannotStart<'_>,
    message: String,
    condition_message: &str,
    now: Timestamp,
) -> Result<Next, Error> {
    let waited = waited_to_start(job, now);
    let mut status = job.status.clone().unwrap_or_default();
    // A new job waits in the queue while its renderer cannot start.
    status.phase = status.phase.or(Some(Phase::Queued));
    status.renderer_refused_at = Some(status.renderer_refused_at.unwrap_or(now));
    let generation = job.metadata.generation;
    let CannotStart { condition, reason, event } = cannot_start;
    let first = set_condition(&mut status, generation, condition, false, reason, condition_message, now);
    let job = write_status(job, ctx, status).await?;
    if first {
        ctx.publish(&job, true, event, message.clone()).await;
    }
    Err(Error::Refused { message, retry_within: ctx.renderer_start_timeout.saturating_sub(waited) })
}

/// Look at the current attempt's Pod and act on how it ended.
pub(super) async fn follow_attempt(job: &RenderJob, ctx: &Context, now: Timestamp) -> Result<Next, Error> {
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
            let output_key = output_key(namespace, name, job.spec.output);
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
