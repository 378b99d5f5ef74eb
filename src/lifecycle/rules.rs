//! The rules of a job's life as pure functions: which phase an event leads to, when a
//! failed attempt is retried, when a deadline or a retention period has passed.
//! Nothing here reads a clock: callers pass `now`.

use std::time::Duration;

use jiff::{SignedDuration, Timestamp};

use crate::resources::{ErrorCode, Phase, RenderJob, RenderJobSpec, RenderJobStatus, Retention};

/// Something that happens to a job.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    /// A renderer picked the job up.
    Start,
    /// The PDF is stored and charged.
    Succeed,
    /// An attempt failed and no retry is left (or none would help).
    Fail,
    /// The account cannot pay for the job.
    InsufficientCredits,
    /// A blocked job's charge is tried again (credits arrived, or the user asked):
    /// it succeeds from there, or stays blocked.
    Resume,
    /// The user cancelled the job.
    Cancel,
    /// `activeDeadlineSeconds` passed before the job finished.
    DeadlinePassed,
}

/// A transition that the rules refuse.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a {from:?} job cannot take the event {event:?}")]
pub struct TransitionRefused {
    /// The job's phase.
    pub from: Phase,
    /// The refused event.
    pub event: Event,
}

/// The phase after `event`, or why the event does not apply.
pub fn next_phase(from: Phase, event: Event) -> Result<Phase, TransitionRefused> {
    use Event::*;
    use Phase::*;
    let to = match (from, event) {
        (_, _) if from.is_terminal() => None,
        (Queued, Start) => Some(Rendering),
        (Rendering, Succeed) => Some(Succeeded),
        (Queued | Rendering | Blocked, Fail) => Some(Failed),
        (Queued | Rendering, InsufficientCredits) => Some(Blocked),
        (Blocked, Resume) => Some(Blocked),
        (Blocked, Succeed) => Some(Succeeded),
        (Queued | Rendering | Blocked, Cancel) => Some(Cancelled),
        (Queued | Rendering | Blocked, DeadlinePassed) => Some(Expired),
        _ => None,
    };
    to.ok_or(TransitionRefused { from, event })
}

/// `time` to the millisecond: every time folio writes has millisecond precision,
/// whichever home writes it.
pub fn to_millisecond(time: Timestamp) -> Timestamp {
    Timestamp::from_millisecond(time.as_millisecond()).unwrap_or(time)
}

/// The current time to the millisecond.
pub fn now_ms() -> Timestamp {
    to_millisecond(Timestamp::now())
}

/// Default `backoffLimit` when a job sets none.
pub const DEFAULT_BACKOFF_LIMIT: i32 = 2;
/// Delay before the first retry; it doubles with every further retry.
pub const RETRY_BASE_DELAY: Duration = Duration::from_secs(1);
/// The longest delay between two attempts.
pub const RETRY_MAX_DELAY: Duration = Duration::from_secs(300);

/// What to do after a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterFailure {
    /// Try again after `delay`; the job's `retryCount` becomes `retry_count`.
    Retry {
        /// Wait this long before the next attempt.
        delay: Duration,
        /// The new `retryCount`.
        retry_count: i32,
    },
    /// Give up: the job fails with this code.
    Fail,
}

/// Decide between retrying and failing, like a Kubernetes Job's `backoffLimit`:
/// `retries_so_far` failed attempts were already retried.
pub fn after_failure(code: ErrorCode, retries_so_far: i32, backoff_limit: Option<i32>) -> AfterFailure {
    let limit = backoff_limit.unwrap_or(DEFAULT_BACKOFF_LIMIT).max(0);
    if !code.is_retryable() || retries_so_far >= limit {
        return AfterFailure::Fail;
    }
    AfterFailure::Retry { delay: retry_delay(retries_so_far), retry_count: retries_so_far + 1 }
}

/// Exponential backoff: 1 s, 2 s, 4 s, ... capped at five minutes.
pub fn retry_delay(retries_so_far: i32) -> Duration {
    exponential_delay(RETRY_BASE_DELAY, RETRY_MAX_DELAY, u32::try_from(retries_so_far).unwrap_or(0))
}

/// The delay before try number `n + 1` of an exponential backoff: `base`, doubling
/// with each try, capped at `max` (backon's exponential backoff, without jitter).
pub fn exponential_delay(base: Duration, max: Duration, n: u32) -> Duration {
    use backon::BackoffBuilder;
    let mut delays =
        backon::ExponentialBuilder::default().with_min_delay(base).with_max_delay(max).without_max_times().build();
    // Past 32 doublings every delay is capped anyway.
    delays.nth(n.min(32) as usize).unwrap_or(max).min(max)
}

/// When a job with `active_deadline_seconds` must be finished, counted from when it was
/// accepted (time spent waiting in the queue counts, as for a Kubernetes Job).
pub fn deadline(started_or_created: Timestamp, active_deadline_seconds: Option<i64>) -> Option<Timestamp> {
    let seconds = active_deadline_seconds?;
    started_or_created.checked_add(SignedDuration::from_secs(seconds.max(0))).ok()
}

/// Whether the deadline has passed at `now`.
pub fn deadline_passed(deadline: Option<Timestamp>, now: Timestamp) -> bool {
    deadline.is_some_and(|d| now >= d)
}

/// When `job` must be finished: `activeDeadlineSeconds` after it was accepted (its
/// `creationTimestamp`; `now` for a job not stored yet). The one deadline every home
/// and the decision function use.
pub fn deadline_of(job: &RenderJob, now: Timestamp) -> Option<Timestamp> {
    let accepted = job.metadata.creation_timestamp.as_ref().map_or(now, |t| t.0);
    deadline(accepted, job.spec.active_deadline_seconds)
}

/// The time a render attempt of `job` may take: the default limit, shortened to what
/// is left before the job's deadline (a render that runs out of it fails at the
/// deadline, and the core expires the job).
pub fn render_time_limit(default_limit: Duration, job: &RenderJob, now: Timestamp) -> Duration {
    match deadline_of(job, now) {
        Some(d) => Duration::try_from(now.duration_until(d)).unwrap_or(Duration::ZERO).min(default_limit),
        None => default_limit,
    }
}

/// How long a finished job is kept: the job's own TTL capped by the account maximum,
/// or the account default; previews are kept no longer than the preview TTL.
pub fn retention_seconds(requested_ttl: Option<i64>, preview: bool, retention: &Retention) -> i64 {
    let ttl = requested_ttl.unwrap_or(retention.default_ttl_seconds).clamp(0, retention.max_ttl_seconds.max(0));
    if preview { ttl.min(retention.preview_ttl_seconds.max(0)) } else { ttl }
}

/// What the end of an ended job's retention takes away.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RetentionEnd {
    /// The job and its PDF: the job set `ttlSecondsAfterFinished` (as a Kubernetes
    /// Job does, and as every job made through the REST API does).
    DeleteJob,
    /// Only its PDF: the job is kept (one kept in Git would be applied again, and
    /// would render and charge again, if it were deleted).
    DeleteOutput,
}

/// When the retention of an ended job with `spec` and `status` has something left to
/// take away, and what; `None` once nothing is left.
pub fn retention_due(spec: &RenderJobSpec, status: &RenderJobStatus) -> Option<(Timestamp, RetentionEnd)> {
    let at = status.expires_at?;
    if spec.ttl_seconds_after_finished.is_some() {
        return Some((at, RetentionEnd::DeleteJob));
    }
    let output_left = status.phase == Some(Phase::Succeeded) && status.output_expired_at.is_none();
    output_left.then_some((at, RetentionEnd::DeleteOutput))
}

/// When the retention of a job that finished at `completed_at` ends.
pub fn expires_at(
    completed_at: Timestamp,
    requested_ttl: Option<i64>,
    preview: bool,
    retention: &Retention,
) -> Timestamp {
    let seconds = retention_seconds(requested_ttl, preview, retention);
    completed_at.checked_add(SignedDuration::from_secs(seconds)).unwrap_or(Timestamp::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NON_TERMINAL: [Phase; 3] = [Phase::Queued, Phase::Rendering, Phase::Blocked];
    const EVENTS: [Event; 7] = [
        Event::Start,
        Event::Succeed,
        Event::Fail,
        Event::InsufficientCredits,
        Event::Resume,
        Event::Cancel,
        Event::DeadlinePassed,
    ];

    #[test]
    fn terminal_phases_never_change_again() {
        for phase in Phase::all().filter(|p| p.is_terminal()) {
            for event in EVENTS {
                assert_eq!(next_phase(phase, event), Err(TransitionRefused { from: phase, event }));
            }
        }
    }

    #[test]
    fn the_happy_path_is_queued_rendering_succeeded() {
        assert_eq!(next_phase(Phase::Queued, Event::Start), Ok(Phase::Rendering));
        assert_eq!(next_phase(Phase::Rendering, Event::Succeed), Ok(Phase::Succeeded));
    }

    #[test]
    fn a_failed_attempt_fails_the_job() {
        assert_eq!(next_phase(Phase::Rendering, Event::Fail), Ok(Phase::Failed));
        assert_eq!(next_phase(Phase::Queued, Event::Fail), Ok(Phase::Failed));
        // A blocked job that can no longer be settled (its render facts are gone).
        assert_eq!(next_phase(Phase::Blocked, Event::Fail), Ok(Phase::Failed));
    }

    #[test]
    fn blocked_jobs_are_charged_again_on_resume_and_settle_when_credits_arrive() {
        assert_eq!(next_phase(Phase::Rendering, Event::InsufficientCredits), Ok(Phase::Blocked));
        assert_eq!(next_phase(Phase::Queued, Event::InsufficientCredits), Ok(Phase::Blocked));
        assert_eq!(next_phase(Phase::Blocked, Event::Resume), Ok(Phase::Blocked));
        assert_eq!(next_phase(Phase::Blocked, Event::Succeed), Ok(Phase::Succeeded));
    }

    #[test]
    fn every_live_phase_can_be_cancelled_or_expire() {
        for phase in NON_TERMINAL {
            assert_eq!(next_phase(phase, Event::Cancel), Ok(Phase::Cancelled));
            assert_eq!(next_phase(phase, Event::DeadlinePassed), Ok(Phase::Expired));
        }
    }

    #[test]
    fn events_out_of_order_are_refused() {
        let refused = [
            (Phase::Queued, Event::Succeed),
            (Phase::Queued, Event::Resume),
            (Phase::Rendering, Event::Start),
            (Phase::Rendering, Event::Resume),
            (Phase::Blocked, Event::Start),
            (Phase::Blocked, Event::InsufficientCredits),
        ];
        for (phase, event) in refused {
            assert!(next_phase(phase, event).is_err(), "{phase:?} + {event:?} must be refused");
        }
    }

    #[test]
    fn every_pair_of_phase_and_event_is_decided() {
        // 7 phases × 7 events: count the accepted transitions so that adding one is a
        // conscious change of this test.
        let accepted = Phase::all()
            .flat_map(|p| EVENTS.iter().map(move |e| (p, *e)))
            .filter(|(p, e)| next_phase(*p, *e).is_ok())
            .count();
        assert_eq!(accepted, 15);
    }

    #[test]
    fn retryable_failures_retry_until_the_backoff_limit() {
        assert_eq!(
            after_failure(ErrorCode::RendererCrashed, 0, Some(2)),
            AfterFailure::Retry { delay: Duration::from_secs(1), retry_count: 1 }
        );
        assert_eq!(
            after_failure(ErrorCode::StorageUnavailable, 1, Some(2)),
            AfterFailure::Retry { delay: Duration::from_secs(2), retry_count: 2 }
        );
        assert_eq!(after_failure(ErrorCode::StorageUnavailable, 2, Some(2)), AfterFailure::Fail);
        assert_eq!(after_failure(ErrorCode::Internal, 0, Some(0)), AfterFailure::Fail);
    }

    #[test]
    fn a_renderer_that_never_started_is_retried_like_a_crash() {
        assert_eq!(
            after_failure(ErrorCode::RendererUnavailable, 0, Some(1)),
            AfterFailure::Retry { delay: Duration::from_secs(1), retry_count: 1 }
        );
        assert_eq!(after_failure(ErrorCode::RendererUnavailable, 1, Some(1)), AfterFailure::Fail);
        assert_eq!(ErrorCode::RendererUnavailable.as_str(), "RENDERER_UNAVAILABLE");
        let json = serde_json::to_string(&ErrorCode::RendererUnavailable).unwrap();
        assert_eq!(json, "\"RENDERER_UNAVAILABLE\"", "serde and as_str agree");
    }

    #[test]
    fn default_backoff_limit_allows_two_retries() {
        assert!(matches!(after_failure(ErrorCode::Internal, 1, None), AfterFailure::Retry { .. }));
        assert_eq!(after_failure(ErrorCode::Internal, 2, None), AfterFailure::Fail);
    }

    #[test]
    fn template_and_data_errors_fail_at_once() {
        for code in [
            ErrorCode::TemplateCompileError,
            ErrorCode::DataInvalid,
            ErrorCode::TemplateNotFound,
            ErrorCode::SpecInvalid,
            ErrorCode::DeadlineExceeded,
            ErrorCode::OutputTooLarge,
            ErrorCode::ResourceExhausted,
            ErrorCode::Cancelled,
        ] {
            assert_eq!(after_failure(code, 0, Some(10)), AfterFailure::Fail, "{code}");
        }
    }

    #[test]
    fn retry_delay_doubles_and_is_capped() {
        let delays: Vec<u64> = (0..4).map(|n| retry_delay(n).as_secs()).collect();
        assert_eq!(delays, [1, 2, 4, 8]);
        assert_eq!(retry_delay(20), RETRY_MAX_DELAY);
        assert_eq!(retry_delay(-3), RETRY_BASE_DELAY);
    }

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn deadline_counts_from_start() {
        let start = ts("2026-01-01T00:00:00Z");
        let d = deadline(start, Some(30));
        assert_eq!(d, Some(ts("2026-01-01T00:00:30Z")));
        assert!(!deadline_passed(d, ts("2026-01-01T00:00:29Z")));
        assert!(deadline_passed(d, ts("2026-01-01T00:00:30Z")));
        assert_eq!(deadline(start, None), None);
        assert!(!deadline_passed(None, ts("2099-01-01T00:00:00Z")));
    }

    #[test]
    fn render_time_limit_is_shortened_by_the_deadline() {
        let now = ts("2026-01-01T00:00:00Z");
        let limit = Duration::from_secs(60);
        let job = |deadline_seconds: Option<i64>, created: &str| {
            let mut job = RenderJob::new("invoice-1", Default::default());
            job.spec.active_deadline_seconds = deadline_seconds;
            job.metadata.creation_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(ts(created)));
            job
        };
        assert_eq!(render_time_limit(limit, &job(None, "2026-01-01T00:00:00Z"), now), limit);
        assert_eq!(render_time_limit(limit, &job(Some(10), "2026-01-01T00:00:00Z"), now), Duration::from_secs(10));
        assert_eq!(render_time_limit(limit, &job(Some(3600), "2026-01-01T00:00:00Z"), now), limit);
        assert_eq!(render_time_limit(limit, &job(Some(10), "2025-12-31T00:00:00Z"), now), Duration::ZERO);
    }

    #[test]
    fn retention_uses_the_account_default_and_caps_requests() {
        let r = Retention { default_ttl_seconds: 100, max_ttl_seconds: 1000, preview_ttl_seconds: 10 };
        assert_eq!(retention_seconds(None, false, &r), 100);
        assert_eq!(retention_seconds(Some(500), false, &r), 500);
        assert_eq!(retention_seconds(Some(5000), false, &r), 1000);
        assert_eq!(retention_seconds(Some(-5), false, &r), 0);
        assert_eq!(retention_seconds(None, true, &r), 10);
        assert_eq!(retention_seconds(Some(5), true, &r), 5);
        let done = ts("2026-01-01T00:00:00Z");
        assert_eq!(expires_at(done, None, false, &r), ts("2026-01-01T00:01:40Z"));
    }
}
