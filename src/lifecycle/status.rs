//! How each lifecycle outcome is written into a RenderJob's status and conditions:
//! pure, used by the decision function and, for the renderer's conditions, by the
//! operator.

use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

use super::credits::{self, Charge, Price};
use super::rules::{self, Event, TransitionRefused};
use crate::resources::{ErrorCode, Phase, RenderJob, RenderJobStatus, Retention};

/// The status of `job` after a charge of `price` came out as `charge`: `Succeeded`
/// when the balance covered it, `Blocked` (with the reason) otherwise.
pub fn settled(
    job: &RenderJob,
    price: Price,
    charge: Charge,
    retention: &Retention,
    now: Timestamp,
) -> Result<RenderJobStatus, TransitionRefused> {
    let mut status = job.status.clone().unwrap_or_default();
    let phase = status.phase.unwrap_or(Phase::Queued);
    status.base_credits = Some(price.base_credits);
    status.size_extra = Some(price.size_extra);
    match charge {
        Charge::Charged { credits_remaining } => {
            status.phase = Some(rules::next_phase(phase, Event::Succeed)?);
            status.credits_used = Some(price.credits_used);
            status.credits_remaining = credits_remaining;
            status.error_code = None;
            status.error_message = None;
            status.next_attempt_at = None;
            status.completed_at = Some(now);
            status.expires_at = Some(expires_at(job, retention, now));
        }
        Charge::Insufficient { credits_remaining } => {
            if phase != Phase::Blocked {
                status.phase = Some(rules::next_phase(phase, Event::InsufficientCredits)?);
            }
            status.credits_remaining = Some(credits_remaining);
            status.error_message = Some(credits::insufficient_credits_message(price, credits_remaining));
        }
    }
    Ok(status)
}

/// The status of `job` ended by `event` (fail, cancel, deadline), or why the rules
/// refuse the event (the job has ended already).
pub fn ended(
    job: &RenderJob,
    event: Event,
    error: Option<(ErrorCode, String)>,
    retention: &Retention,
    now: Timestamp,
) -> Result<RenderJobStatus, TransitionRefused> {
    let mut status = job.status.clone().unwrap_or_default();
    let next = rules::next_phase(status.phase.unwrap_or(Phase::Queued), event)?;
    status.phase = Some(next);
    status.completed_at = Some(now);
    status.next_attempt_at = None;
    status.renderer_refused_at = None;
    status.expires_at = Some(expires_at(job, retention, now));
    if let Some((code, message)) = error {
        status.error_code = Some(code);
        status.error_message = Some(message);
    }
    Ok(status)
}

/// The status of `job` after failed attempt number `retry_count` that will be
/// retried after `delay`.
pub fn retrying(
    job: &RenderJob,
    retry_count: i32,
    delay: Duration,
    code: ErrorCode,
    message: &str,
    now: Timestamp,
) -> RenderJobStatus {
    let mut status = job.status.clone().unwrap_or_default();
    status.retry_count = retry_count;
    // The next attempt's renderer gets a start timeout of its own.
    status.renderer_refused_at = None;
    status.next_attempt_at = now.checked_add(SignedDuration::try_from(delay).unwrap_or_default()).ok();
    status.error_code = Some(code);
    status.error_message = Some(format!("attempt {retry_count} failed, retrying: {message}"));
    status
}

/// When the retention of a job finished at `now` ends (its PDF goes, and the job too
/// when it sets `ttlSecondsAfterFinished`).
fn expires_at(job: &RenderJob, retention: &Retention, now: Timestamp) -> Timestamp {
    rules::expires_at(now, job.spec.ttl_seconds_after_finished, job.spec.preview, retention)
}

/// The condition type saying whether the template and the ConfigMaps a job names
/// exist (False, with which is missing, while the job waits for them).
pub const INPUTS_FOUND: &str = "InputsFound";
/// The condition type saying whether the API server admitted the current attempt's
/// renderer Pod and its input (False with the server's reason and message while it
/// refuses them: admission, quota, RBAC).
pub const RENDERER_ADMITTED: &str = "RendererAdmitted";
/// The condition type saying whether the current attempt's renderer started (False
/// with the scheduler's or kubelet's reason and message while it cannot).
pub const RENDERER_STARTED: &str = "RendererStarted";
/// Longest condition message kept (the API allows 32 KiB; a server's message is far
/// shorter unless something is wrong).
const MAX_CONDITION_MESSAGE: usize = 4096;

/// Set the condition `type_` of `status` (one per type, kept in its place in the
/// list). Its `lastTransitionTime` stays while its status (True or False) does not
/// change, as Kubernetes conventions ask; whether it changed (or is new) is returned.
/// A reason is made to fit the API's pattern (CamelCase, no spaces); `generation`
/// is the job's, whose state the condition describes.
pub fn set_condition(
    status: &mut RenderJobStatus,
    generation: Option<i64>,
    type_: &str,
    value: bool,
    reason: &str,
    message: &str,
    now: Timestamp,
) -> bool {
    let value = if value { "True" } else { "False" };
    let previous = status.conditions.iter().position(|c| c.type_ == type_);
    let transitioned = previous.is_none_or(|at| status.conditions[at].status != value);
    let since = match previous {
        Some(at) if !transitioned => status.conditions[at].last_transition_time.clone(),
        _ => Time(now),
    };
    let condition = Condition {
        type_: type_.into(),
        status: value.into(),
        reason: condition_reason(reason),
        message: cut_to_bytes(message, MAX_CONDITION_MESSAGE),
        last_transition_time: since,
        observed_generation: generation,
    };
    match previous {
        Some(at) => status.conditions[at] = condition,
        None => status.conditions.push(condition),
    }
    transitioned
}

/// The condition `type_` of `status`, if it is False: what is wrong.
pub fn failing_condition<'a>(status: &'a RenderJobStatus, type_: &str) -> Option<&'a Condition> {
    status.conditions.iter().find(|c| c.type_ == type_ && c.status == "False")
}

/// Why the job's renderer has not started, as its conditions say (an input missing,
/// refused by the API server, or not started when last seen).
pub fn never_started(status: &RenderJobStatus) -> Option<String> {
    if let Some(missing) = failing_condition(status, INPUTS_FOUND) {
        return Some(format!("an input is missing: {}", missing.message));
    }
    if let Some(refused) = failing_condition(status, RENDERER_ADMITTED) {
        return Some(format!("the API server refused it ({}): {}", refused.reason, refused.message));
    }
    let pending = failing_condition(status, RENDERER_STARTED)?;
    Some(format!("its Pod did not start ({}): {}", pending.reason, pending.message))
}

/// `reason` as a condition reason: letters, digits, `_`, `,` and `:`, starting with a
/// letter (the API's pattern); `Unknown` when nothing is left.
fn condition_reason(reason: &str) -> String {
    let kept: String = reason.chars().filter(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | ',' | ':')).collect();
    let kept = kept.trim_start_matches(|c: char| !c.is_ascii_alphabetic()).trim_end_matches([',', ':']);
    if kept.is_empty() { "Unknown".to_owned() } else { kept.chars().take(1024).collect() }
}

/// `text` cut to at most `max` bytes on a character boundary, ending in `…` when cut.
pub fn cut_to_bytes(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let ellipsis = '…';
    let mut end = max.saturating_sub(ellipsis.len_utf8());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}{ellipsis}", &text[..end])
}

/// The condition type kstatus (Flux) and kubectl read as "still working on it":
/// True while the job waits or renders, absent otherwise.
pub const RECONCILING: &str = "Reconciling";
/// The condition type kstatus reads as "failed, will not get further without help":
/// True when the job failed, expired, was cancelled (it will never be Ready, and
/// kstatus reads a Ready condition that stays False as in progress forever), or is
/// blocked on its account; absent otherwise.
pub const STALLED: &str = "Stalled";

/// The conditions that summarise `status`'s phase for people and GitOps tools:
/// `Ready` always, `Reconciling` and `Stalled` while they hold (the kstatus
/// conventions: an absent one is False). Each keeps its transition time while its
/// status does not change.
pub fn with_phase_conditions(mut status: RenderJobStatus, now: Timestamp) -> RenderJobStatus {
    let phase = status.phase.unwrap_or(Phase::Queued);
    let reason = {
        let name = phase.api_name();
        name[..1].to_uppercase() + &name[1..]
    };
    let message = match (phase, &status.error_message, status.output_expired_at) {
        (Phase::Succeeded, _, Some(at)) => {
            format!("the PDF was deleted at the end of its retention, at {at:.3}; the job is kept")
        }
        (Phase::Succeeded, _, None) => "the PDF is stored".to_owned(),
        (_, Some(message), _) => match status.error_code {
            Some(code) if phase.is_terminal() => format!("{code}: {message}"),
            _ => message.clone(),
        },
        (phase, None, _) => format!("the job is {}", phase.api_name()),
    };
    let generation = status.observed_generation;
    set_condition(&mut status, generation, "Ready", phase == Phase::Succeeded, &reason, &message, now);
    let reconciling = matches!(phase, Phase::Queued | Phase::Rendering);
    let stalled = matches!(phase, Phase::Failed | Phase::Expired | Phase::Cancelled | Phase::Blocked);
    for (type_, holds) in [(RECONCILING, reconciling), (STALLED, stalled)] {
        if holds {
            set_condition(&mut status, generation, type_, true, &reason, &message, now);
        } else {
            status.conditions.retain(|c| c.type_ != type_);
        }
    }
    status
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::RenderJobSpec;

    fn job_in(phase: Phase) -> RenderJob {
        let mut job = RenderJob::new("invoice-1", RenderJobSpec::default());
        job.status = Some(RenderJobStatus { phase: Some(phase), ..Default::default() });
        job
    }

    #[test]
    fn a_covered_charge_succeeds_and_schedules_expiry() {
        let now = Timestamp::from_second(1_800_000_000).unwrap();
        let price = Price { base_credits: 3, size_extra: 1, credits_used: 4 };
        let status = settled(
            &job_in(Phase::Rendering),
            price,
            Charge::Charged { credits_remaining: Some(6) },
            &Retention::default(),
            now,
        )
        .unwrap();
        assert_eq!(status.phase, Some(Phase::Succeeded));
        assert_eq!((status.credits_used, status.credits_remaining), (Some(4), Some(6)));
        assert_eq!(status.expires_at, Some(now + SignedDuration::from_hours(7 * 24)));
    }

    #[test]
    fn a_short_balance_blocks_and_says_by_how_much() {
        let now = Timestamp::from_second(1_800_000_000).unwrap();
        let price = Price { base_credits: 3, size_extra: 0, credits_used: 3 };
        let status = settled(
            &job_in(Phase::Rendering),
            price,
            Charge::Insufficient { credits_remaining: 1 },
            &Retention::default(),
            now,
        )
        .unwrap();
        assert_eq!(status.phase, Some(Phase::Blocked));
        assert_eq!(status.completed_at, None);
        assert!(status.error_message.unwrap().contains("costs 3 credits and the account has 1 left"));
    }

    #[test]
    fn an_ended_job_cannot_end_again() {
        let now = Timestamp::from_second(1_800_000_000).unwrap();
        let cancelled = ended(&job_in(Phase::Rendering), Event::Cancel, None, &Retention::default(), now).unwrap();
        assert_eq!(cancelled.phase, Some(Phase::Cancelled));
        assert!(ended(&job_in(Phase::Succeeded), Event::Cancel, None, &Retention::default(), now).is_err());
    }

    #[test]
    fn renderer_conditions_are_one_per_type_and_keep_their_transition_time_while_unchanged() {
        let first = Timestamp::from_second(1_800_000_000).unwrap();
        let later = first + SignedDuration::from_secs(30);
        let mut status = with_phase_conditions(job_in(Phase::Queued).status.unwrap(), first);
        assert!(set_condition(&mut status, Some(1), RENDERER_ADMITTED, false, "Forbidden", "limit is 1Gi", first));
        assert!(!set_condition(&mut status, Some(1), RENDERER_ADMITTED, false, "Invalid", "spec is invalid", later));
        let types: Vec<_> = status.conditions.iter().map(|c| c.type_.as_str()).collect();
        assert_eq!(types, ["Ready", RECONCILING, RENDERER_ADMITTED]);
        let admitted = failing_condition(&status, RENDERER_ADMITTED).unwrap();
        assert_eq!((admitted.reason.as_str(), admitted.message.as_str()), ("Invalid", "spec is invalid"));
        assert_eq!(admitted.last_transition_time, Time(first), "still False: the time of the first refusal");
        assert!(set_condition(&mut status, Some(1), RENDERER_ADMITTED, true, "Admitted", "admitted", later));
        assert_eq!(status.conditions[2].last_transition_time, Time(later));
        assert!(failing_condition(&status, RENDERER_ADMITTED).is_none());
        // The Ready condition is untouched and still found by its type.
        let status = with_phase_conditions(status, later);
        assert_eq!(status.conditions.iter().filter(|c| c.type_ == "Ready").count(), 1);
        assert_eq!(status.conditions.iter().find(|c| c.type_ == "Ready").unwrap().last_transition_time, Time(first));
    }

    #[test]
    fn condition_reasons_fit_the_api_pattern() {
        assert_eq!(condition_reason("ErrImagePull"), "ErrImagePull");
        assert_eq!(condition_reason("Too Many Requests"), "TooManyRequests");
        assert_eq!(condition_reason("4xx:Forbidden:"), "xx:Forbidden");
        assert_eq!(condition_reason(" "), "Unknown");
    }

    #[test]
    fn texts_are_cut_on_a_character_boundary_within_the_byte_limit() {
        assert_eq!(cut_to_bytes("short", 10), "short");
        let cut = cut_to_bytes(&"é".repeat(600), 1024);
        assert!(cut.len() <= 1024, "{}", cut.len());
        assert!(cut.ends_with('…'));
        assert_eq!(cut_to_bytes("abcdef", 5), "ab…");
    }

    #[test]
    fn a_retry_or_an_end_forgets_when_the_renderer_was_refused() {
        let now = Timestamp::from_second(1_800_000_000).unwrap();
        let mut job = job_in(Phase::Queued);
        job.status.as_mut().unwrap().renderer_refused_at = Some(now);
        let retry = retrying(&job, 1, Duration::from_secs(1), ErrorCode::RendererUnavailable, "refused", now);
        assert_eq!(retry.renderer_refused_at, None);
        let failed = ended(&job, Event::Fail, None, &Retention::default(), now).unwrap();
        assert_eq!(failed.renderer_refused_at, None);
    }

    #[test]
    fn conditions_keep_their_transition_time_while_unchanged() {
        let first = Timestamp::from_second(1_800_000_000).unwrap();
        let later = first + SignedDuration::from_secs(30);
        let queued = with_phase_conditions(job_in(Phase::Queued).status.unwrap(), first);
        let mut rendering = queued.clone();
        rendering.phase = Some(Phase::Rendering);
        let rendering = with_phase_conditions(rendering, later);
        assert_eq!(rendering.conditions.iter().map(|c| c.type_.as_str()).collect::<Vec<_>>(), ["Ready", RECONCILING]);
        assert_eq!(rendering.conditions[0].last_transition_time, Time(first));
        assert_eq!(rendering.conditions[0].reason, "Rendering");
        let mut done = rendering.clone();
        done.phase = Some(Phase::Succeeded);
        let done = with_phase_conditions(done, later);
        assert_eq!(done.conditions.len(), 1, "Reconciling is gone");
        assert_eq!(
            (done.conditions[0].status.as_str(), &done.conditions[0].last_transition_time),
            ("True", &Time(later))
        );
    }
}
