//! The rules of the webhook queue, the same in every home: which phase changes a
//! subscription wants, that a job's deliveries go out oldest first, how a failed
//! attempt is retried (exponential backoff with jitter), when a delivery is given up,
//! and how attempts are counted in metrics. Each home keeps the queue where its jobs
//! are (the standalone database, the RenderJob's status) and asks here what an
//! attempt's outcome means.

use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use rand::Rng;

use crate::resources::{Phase, WebhookEvents};

/// Whether a subscription wants a change into `phase`.
pub fn wants(events: WebhookEvents, phase: Phase) -> bool {
    match events {
        WebhookEvents::All => phase != Phase::Queued,
        WebhookEvents::Terminal => phase.is_terminal(),
    }
}

/// How deliveries are retried.
#[derive(Clone, Copy, Debug)]
pub struct RetryPolicy {
    /// Delay before the second attempt; it doubles with each further attempt.
    pub base: Duration,
    /// Longest delay between two attempts.
    pub max_delay: Duration,
    /// A delivery still failing this long after its event is given up.
    pub max_age: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            base: Duration::from_secs(5),
            max_delay: Duration::from_secs(3600),
            max_age: Duration::from_secs(24 * 3600),
        }
    }
}

impl RetryPolicy {
    /// The delay after `attempts` failed attempts: exponential, with ±25 % jitter so
    /// that many failing deliveries do not all come back at once.
    pub fn delay(&self, attempts: u32) -> Duration {
        let exponential = super::rules::exponential_delay(self.base, self.max_delay, attempts.saturating_sub(1));
        let jitter = rand::rng().random_range(0.75..1.25);
        exponential.mul_f64(jitter)
    }

    /// Whether a delivery of an event from `created_at` may still be tried at `now`.
    pub fn within_age(&self, created_at: Timestamp, now: Timestamp) -> bool {
        Duration::try_from(created_at.duration_until(now)).is_ok_and(|age| age < self.max_age)
    }
}

/// How one attempt went.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The receiver answered 2xx.
    Delivered {
        /// Its status code.
        status: u16,
    },
    /// Try again later.
    Failed {
        /// The status code, if the receiver answered.
        status: Option<u16>,
        /// What went wrong.
        error: String,
    },
    /// Never try again: the target is not allowed.
    Refused {
        /// Why.
        error: String,
    },
}

/// What follows one attempt of a delivery.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// Delivered: the delivery leaves the queue.
    Delivered,
    /// Try again at this time; the delivery stays first in its job's queue.
    RetryAt(Timestamp),
    /// Given up (the target is refused, or the retry period would be over before the
    /// next attempt): the delivery leaves the queue, counted failed.
    GiveUp,
}

impl Step {
    /// The metric label of the attempt that led here.
    pub fn label(&self) -> &'static str {
        match self {
            Step::Delivered => "delivered",
            Step::RetryAt(_) => "retry",
            Step::GiveUp => "failed",
        }
    }

    /// Whether the delivery leaves the queue.
    pub fn is_done(&self) -> bool {
        !matches!(self, Step::RetryAt(_))
    }
}

/// What follows `outcome`, the `attempts`th attempt of a delivery queued at
/// `queued_at`, made at `now`.
pub fn after_attempt(
    outcome: &Outcome,
    attempts: u32,
    queued_at: Timestamp,
    now: Timestamp,
    policy: &RetryPolicy,
) -> Step {
    match outcome {
        Outcome::Delivered { .. } => Step::Delivered,
        Outcome::Refused { .. } => Step::GiveUp,
        Outcome::Failed { .. } => {
            let delay = SignedDuration::try_from(policy.delay(attempts)).unwrap_or(SignedDuration::MAX);
            let next = now.checked_add(delay).unwrap_or(Timestamp::MAX);
            if policy.within_age(queued_at, next) { Step::RetryAt(next) } else { Step::GiveUp }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(second: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + second).unwrap()
    }

    #[test]
    fn subscriptions_want_changes_by_kind() {
        assert!(wants(WebhookEvents::All, Phase::Rendering));
        assert!(!wants(WebhookEvents::All, Phase::Queued), "acceptance is answered by the API call itself");
        assert!(!wants(WebhookEvents::Terminal, Phase::Blocked));
        assert!(wants(WebhookEvents::Terminal, Phase::Expired));
    }

    #[test]
    fn a_failure_is_retried_with_growing_jittered_delays() {
        let policy = RetryPolicy::default();
        let failed = Outcome::Failed { status: Some(503), error: "the receiver answered 503".into() };
        let Step::RetryAt(first) = after_attempt(&failed, 1, at(0), at(0), &policy) else { panic!("retried") };
        let Step::RetryAt(third) = after_attempt(&failed, 3, at(0), at(0), &policy) else { panic!("retried") };
        let (first, third) = (first.duration_since(at(0)).as_secs(), third.duration_since(at(0)).as_secs());
        assert!((3..=7).contains(&first), "5 s ± 25 %: {first}");
        assert!((15..=25).contains(&third), "20 s ± 25 %: {third}");
        assert_eq!(Step::RetryAt(at(1)).label(), "retry");
    }

    #[test]
    fn a_delivery_is_given_up_when_its_next_attempt_would_fall_after_the_retry_period() {
        let policy = RetryPolicy { max_age: Duration::from_secs(60), ..Default::default() };
        let failed = Outcome::Failed { status: None, error: "could not connect".into() };
        assert!(matches!(after_attempt(&failed, 1, at(0), at(10), &policy), Step::RetryAt(_)));
        // 58 s after queueing, the next attempt (about 5 s later) would be past 60 s.
        let step = after_attempt(&failed, 1, at(0), at(58), &policy);
        assert_eq!((step.clone(), step.label(), step.is_done()), (Step::GiveUp, "failed", true));
    }

    #[test]
    fn refused_targets_are_given_up_at_once_and_deliveries_counted_once() {
        let policy = RetryPolicy::default();
        let refused = Outcome::Refused { error: "a private address".into() };
        assert_eq!(after_attempt(&refused, 1, at(0), at(0), &policy), Step::GiveUp);
        let delivered = after_attempt(&Outcome::Delivered { status: 204 }, 9, at(0), at(100_000), &policy);
        assert_eq!((delivered.label(), delivered.is_done()), ("delivered", true));
    }

    #[test]
    fn retry_delays_grow_with_jitter_and_are_capped() {
        let policy = RetryPolicy {
            base: Duration::from_secs(10),
            max_delay: Duration::from_secs(60),
            max_age: Duration::from_secs(100),
        };
        for _ in 0..50 {
            let first = policy.delay(1);
            assert!(first >= Duration::from_millis(7_500) && first <= Duration::from_millis(12_500), "{first:?}");
            let second = policy.delay(2);
            assert!(second >= Duration::from_secs(15) && second <= Duration::from_secs(25), "{second:?}");
            assert!(policy.delay(30) <= Duration::from_secs(75));
        }
        let start: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        assert!(policy.within_age(start, "2026-01-01T00:01:39Z".parse().unwrap()));
        assert!(!policy.within_age(start, "2026-01-01T00:01:40Z".parse().unwrap()));
    }
}
