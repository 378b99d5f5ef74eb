//! How each lifecycle outcome is written into a RenderJob's status. The rules that
//! decide (`lifecycle`) are pure; so is recording them, and both homes record them
//! through these functions so that a job reads the same whichever home ran it.

use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

use crate::lifecycle::{self, Charge, ErrorCode, Event, Phase, Price};
use crate::resources::{RenderJob, RenderJobStatus, Retention};

/// The status of `job` after a charge of `price` came out as `charge`: `Succeeded`
/// when the balance covered it, `Blocked` (with the reason) otherwise.
pub fn settled(
    job: &RenderJob,
    price: Price,
    charge: Charge,
    retention: &Retention,
    now: Timestamp,
) -> RenderJobStatus {
    let mut status = job.status.clone().unwrap_or_default();
    let phase = status.phase.unwrap_or(Phase::Rendering);
    status.base_credits = Some(price.base_credits);
    status.size_extra = Some(price.size_extra);
    match charge {
        Charge::Charged { credits_remaining } => {
            status.phase = Some(lifecycle::next_phase(phase, Event::Succeed).unwrap_or(Phase::Succeeded));
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
                status.phase = Some(lifecycle::next_phase(phase, Event::InsufficientCredits).unwrap_or(Phase::Blocked));
            }
            status.credits_remaining = Some(credits_remaining);
            status.error_message = Some(lifecycle::insufficient_credits_message(price, credits_remaining));
        }
    }
    status
}

/// The status of `job` ended by `event` (fail, cancel, deadline), or `None` when the
/// rules refuse the event (the job has ended already).
pub fn ended(
    job: &RenderJob,
    event: Event,
    error: Option<(ErrorCode, String)>,
    retention: &Retention,
    now: Timestamp,
) -> Option<RenderJobStatus> {
    let mut status = job.status.clone().unwrap_or_default();
    let next = lifecycle::next_phase(status.phase.unwrap_or(Phase::Queued), event).ok()?;
    status.phase = Some(next);
    status.completed_at = Some(now);
    status.next_attempt_at = None;
    status.expires_at = Some(expires_at(job, retention, now));
    if let Some((code, message)) = error {
        status.error_code = Some(code);
        status.error_message = Some(message);
    }
    Some(status)
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
    status.next_attempt_at = now.checked_add(SignedDuration::try_from(delay).unwrap_or_default()).ok();
    status.error_code = Some(code);
    status.error_message = Some(format!("attempt {retry_count} failed, retrying: {message}"));
    status
}

/// When a job finished at `now` is deleted, with its PDF.
fn expires_at(job: &RenderJob, retention: &Retention, now: Timestamp) -> Timestamp {
    lifecycle::expires_at(now, job.spec.ttl_seconds_after_finished, job.spec.preview, retention)
}

/// The `Ready` condition for `status`'s phase, keeping the previous transition time
/// when the condition's status did not change (as Kubernetes conventions ask).
pub fn with_ready_condition(mut status: RenderJobStatus, now: Timestamp) -> RenderJobStatus {
    let phase = status.phase.unwrap_or(Phase::Queued);
    let ready = if phase == Phase::Succeeded { "True" } else { "False" };
    let previous = status.conditions.iter().find(|c| c.type_ == "Ready");
    let since = match previous {
        Some(previous) if previous.status == ready => previous.last_transition_time.clone(),
        _ => Time(now),
    };
    let message = match (phase, &status.error_message) {
        (Phase::Succeeded, _) => "the PDF is stored".to_owned(),
        (_, Some(message)) => message.clone(),
        (phase, None) => format!("the job is {}", phase.api_name()),
    };
    let reason: String = {
        let name = phase.api_name();
        name[..1].to_uppercase() + &name[1..]
    };
    let condition = Condition {
        type_: "Ready".into(),
        status: ready.into(),
        reason,
        message,
        last_transition_time: since,
        observed_generation: status.observed_generation,
    };
    status.conditions.retain(|c| c.type_ != "Ready");
    status.conditions.push(condition);
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
        );
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
        );
        assert_eq!(status.phase, Some(Phase::Blocked));
        assert_eq!(status.completed_at, None);
        assert!(status.error_message.unwrap().contains("costs 3 credits and the account has 1 left"));
    }

    #[test]
    fn an_ended_job_cannot_end_again() {
        let now = Timestamp::from_second(1_800_000_000).unwrap();
        let cancelled = ended(&job_in(Phase::Rendering), Event::Cancel, None, &Retention::default(), now).unwrap();
        assert_eq!(cancelled.phase, Some(Phase::Cancelled));
        assert!(ended(&job_in(Phase::Succeeded), Event::Cancel, None, &Retention::default(), now).is_none());
    }

    #[test]
    fn the_ready_condition_keeps_its_transition_time_while_unchanged() {
        let first = Timestamp::from_second(1_800_000_000).unwrap();
        let later = first + SignedDuration::from_secs(30);
        let queued = with_ready_condition(job_in(Phase::Queued).status.unwrap(), first);
        let mut rendering = queued.clone();
        rendering.phase = Some(Phase::Rendering);
        let rendering = with_ready_condition(rendering, later);
        assert_eq!(rendering.conditions.len(), 1);
        assert_eq!(rendering.conditions[0].last_transition_time, Time(first));
        assert_eq!(rendering.conditions[0].reason, "Rendering");
        let mut done = rendering.clone();
        done.phase = Some(Phase::Succeeded);
        let done = with_ready_condition(done, later);
        assert_eq!(
            (done.conditions[0].status.as_str(), &done.conditions[0].last_transition_time),
            ("True", &Time(later))
        );
    }
}
