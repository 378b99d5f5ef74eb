//! The one decision function: a job, what its home observed, the account and the
//! clock go in; the job's next status and the effects its home must carry out come
//! out. Every home (`folio run`, `folio serve`, the operator) asks here and only
//! observes and carries out: none of them writes a rule of its own, so a job reads
//! the same whichever home ran it.
//!
//! No I/O happens here. A transition the rules refuse (a result for a job that has
//! ended, a resume of a job that is not blocked) is an error the home must handle,
//! never a default phase.

use jiff::Timestamp;

use super::credits::{self, Charge};
use super::deliveries::wants;
use super::rules::{self, AfterFailure, Event, RetentionEnd, TransitionRefused};
use super::status;
use crate::render::RenderFacts;
use crate::resources::{ErrorCode, Phase, RenderAccount, RenderAccountSpec, RenderJob, RenderJobStatus};

/// What a home saw happen to a job since it last asked.
#[derive(Clone, Debug, PartialEq)]
pub enum Observed {
    /// Nothing new: a new job, a timer, a restart, a change of the job or its account.
    /// A cancel request in the job's spec, a passed deadline, a due retry and an
    /// ended retention are found here.
    Look,
    /// As [`Observed::Look`], and the current attempt's renderer has not started, for
    /// this reason (so that a deadline that passes says why).
    RendererPending(String),
    /// The current attempt's renderer is gone without an outcome (it was never made,
    /// or was removed): the attempt starts again.
    RendererGone,
    /// A render attempt began (a worker took the job, a renderer Pod was admitted).
    AttemptBegan,
    /// The current attempt stored its output under `output_key`, described by `facts`.
    Rendered {
        /// What the renderer reported of the output.
        facts: RenderFacts,
        /// Where the output is stored.
        output_key: String,
    },
    /// The current attempt failed.
    AttemptFailed {
        /// Why.
        code: ErrorCode,
        /// In words.
        message: String,
    },
    /// The job cannot be rendered at all (a fault no retry heals): it fails.
    Unrenderable {
        /// Why.
        code: ErrorCode,
        /// In words.
        message: String,
    },
    /// The user cancelled the job.
    Cancel,
    /// The user asked a blocked job to try its charge again.
    Resume,
    /// The job is being deleted: whatever it holds goes.
    Deleted,
}

/// What a home knows of the account that pays for the job.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Account {
    /// Its terms: credits granted, pricing, retention, default webhook.
    pub spec: RenderAccountSpec,
    /// Credits spent so far.
    pub used: i64,
    /// Credits already charged for this job by a write its status does not show yet
    /// (the operator's ledger entry): never charged twice, given back if the job does
    /// not succeed.
    pub charged_for_job: Option<i64>,
}

impl Account {
    /// The account of `resource` (none: an unlimited account with default terms) as
    /// a decision about the job with uid `job_uid` sees it.
    pub fn of(resource: Option<&RenderAccount>, job_uid: &str) -> Account {
        let Some(resource) = resource else {
            return Account::default();
        };
        let status = resource.status.clone().unwrap_or_default();
        let charged_for_job = status.pending_charges.iter().find(|c| c.job_uid == job_uid).map(|c| c.credits);
        Account { spec: resource.spec.clone(), used: status.credits_used, charged_for_job }
    }
}

/// Something the home must do to carry out a decision.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Effect {
    /// Start render attempt number `attempt` (idempotent: a home that runs it already
    /// does nothing).
    StartAttempt {
        /// The attempt's number (the job's `retryCount`).
        attempt: i32,
    },
    /// Stop the current attempt's renderer, if one runs.
    StopRenderer,
    /// Charge the account this many credits, together with the status (one
    /// transaction; in a cluster, the account first, then the job, exactly once).
    Charge(i64),
    /// Give back credits charged for this job (its charge entry goes too).
    Refund(i64),
    /// Delete the job's stored output (unpaid when the job ends, its retention ended,
    /// or the job is deleted).
    DeleteOutput,
    /// Queue the webhook event of the job's new phase.
    Notify(Phase),
    /// Delete the job and its output: its retention ended, and it asked to be
    /// deleted then (`ttlSecondsAfterFinished`).
    DeleteJob,
    /// Ask again at this time (a retry, a deadline, the end of retention).
    WakeAt(Timestamp),
}

/// A job's next status and what to do about it.
#[derive(Clone, Debug, PartialEq)]
pub struct Decision {
    /// The phase the job was in.
    pub from: Phase,
    /// The status to write (with `observedGeneration` and the `Ready` condition).
    pub status: RenderJobStatus,
    /// What the home must carry out, in this order.
    pub effects: Vec<Effect>,
}

impl Decision {
    /// The phase the decision leaves the job in.
    pub fn phase(&self) -> Phase {
        self.status.phase.unwrap_or(Phase::Queued)
    }

    /// Whether the decision ends the job (it reaches a terminal phase now).
    pub fn ended(&self) -> bool {
        !self.from.is_terminal() && self.phase().is_terminal()
    }

    /// The earliest time to ask again, if any.
    pub fn wake_at(&self) -> Option<Timestamp> {
        self.effects
            .iter()
            .filter_map(|e| match e {
                Effect::WakeAt(at) => Some(*at),
                _ => None,
            })
            .min()
    }

    /// The credits to charge with this decision, if any.
    pub fn charge(&self) -> Option<i64> {
        self.effects.iter().find_map(|e| match e {
            Effect::Charge(credits) => Some(*credits),
            _ => None,
        })
    }

    /// The credits to give back with this decision, if any.
    pub fn refund(&self) -> Option<i64> {
        self.effects.iter().find_map(|e| match e {
            Effect::Refund(credits) => Some(*credits),
            _ => None,
        })
    }

    /// The attempt to start, if one must start.
    pub fn attempt_to_start(&self) -> Option<i32> {
        self.effects.iter().find_map(|e| match e {
            Effect::StartAttempt { attempt } => Some(*attempt),
            _ => None,
        })
    }

    /// Whether the decision carries `effect`.
    pub fn has(&self, effect: &Effect) -> bool {
        self.effects.contains(effect)
    }
}

/// Decide what `observed` means for `job`, paid for by `account`, at `now`.
pub fn decide(
    job: &RenderJob,
    observed: Observed,
    account: &Account,
    now: Timestamp,
) -> Result<Decision, TransitionRefused> {
    let now = rules::to_millisecond(now);
    let judge = Judge { job, account, now, phase: job.status.as_ref().and_then(|s| s.phase).unwrap_or(Phase::Queued) };
    let mut decision = judge.decide(observed)?;
    if let Some(phase) = decision.status.phase.filter(|p| *p != judge.phase)
        && wants_event(job, account, phase)
    {
        decision.effects.push(Effect::Notify(phase));
    }
    decision.status.observed_generation = job.metadata.generation;
    decision.status = status::with_phase_conditions(decision.status, now);
    Ok(decision)
}

/// Whether the job's webhook (or else its account's default) subscribes to `phase`.
fn wants_event(job: &RenderJob, account: &Account, phase: Phase) -> bool {
    let hook = job.spec.webhook.as_ref().or(account.spec.webhook.as_ref());
    hook.is_some_and(|hook| wants(hook.events, phase))
}

/// One decision's inputs.
struct Judge<'a> {
    job: &'a RenderJob,
    account: &'a Account,
    now: Timestamp,
    phase: Phase,
}

impl Judge<'_> {
    fn decide(&self, observed: Observed) -> Result<Decision, TransitionRefused> {
        let refused = |event| TransitionRefused { from: self.phase, event };
        match observed {
            Observed::Rendered { facts, output_key } => {
                if self.phase != Phase::Rendering {
                    return Err(refused(Event::Succeed));
                }
                let mut status = self.status();
                status.page_count = Some(facts.page_count);
                status.total_bytes = Some(facts.total_bytes);
                status.sha256 = Some(facts.sha256.clone());
                status.duration_ms = Some(facts.duration_ms);
                status.warnings = facts.warnings.clone();
                status.template_version = facts.template_version;
                status.output_key = Some(output_key);
                self.settle(status, &facts)
            }
            Observed::AttemptFailed { code, message } => {
                // An attempt may fail before it began (its renderer was refused).
                if !matches!(self.phase, Phase::Queued | Phase::Rendering) {
                    return Err(refused(Event::Fail));
                }
                if self.job.spec.cancel {
                    return self.end(Event::Cancel, None);
                }
                if rules::deadline_passed(self.deadline(), self.now) {
                    return self.expire(None);
                }
                self.after_failure(code, message)
            }
            Observed::Unrenderable { code, message } => self.end(Event::Fail, Some((code, message))),
            Observed::Deleted => Ok(self.deleted()),
            Observed::Cancel => self.end(Event::Cancel, None),
            // A resume asks what a look at a blocked job does (a cancel or a passed
            // deadline still comes first); only a blocked job can be asked.
            Observed::Resume if self.phase != Phase::Blocked => Err(refused(Event::Resume)),
            Observed::Resume => self.look(None),
            Observed::AttemptBegan => self.begin(),
            Observed::Look => self.look(None),
            Observed::RendererPending(why) => self.look(Some(why)),
            Observed::RendererGone => {
                let mut decision = self.look(None)?;
                let waiting_for_retry = decision.status.next_attempt_at.is_some();
                if decision.phase() == Phase::Rendering && !waiting_for_retry {
                    decision.effects.insert(0, Effect::StartAttempt { attempt: decision.status.retry_count });
                }
                Ok(decision)
            }
        }
    }

    fn status(&self) -> RenderJobStatus {
        self.job.status.clone().unwrap_or_default()
    }

    /// When the job was accepted: its deadline counts from then.
    fn deadline(&self) -> Option<Timestamp> {
        rules::deadline_of(self.job, self.now)
    }

    fn keep(&self, status: RenderJobStatus, effects: Vec<Effect>) -> Decision {
        Decision { from: self.phase, status, effects }
    }

    /// Nothing new: end what must end, start what may start, else wait.
    fn look(&self, not_started: Option<String>) -> Result<Decision, TransitionRefused> {
        let status = self.status();
        if self.phase.is_terminal() {
            return Ok(self.retained(status));
        }
        if self.job.spec.cancel {
            return self.end(Event::Cancel, None);
        }
        if rules::deadline_passed(self.deadline(), self.now) {
            return self.expire(not_started);
        }
        let deadline = self.deadline().map(Effect::WakeAt);
        match self.phase {
            Phase::Blocked => self.settle_blocked(),
            Phase::Queued | Phase::Rendering => {
                let mut effects = Vec::new();
                match status.next_attempt_at {
                    Some(at) if at > self.now => effects.push(Effect::WakeAt(at)),
                    Some(_) => effects.push(Effect::StartAttempt { attempt: status.retry_count }),
                    None if self.phase == Phase::Queued => {
                        effects.push(Effect::StartAttempt { attempt: status.retry_count })
                    }
                    None => {}
                }
                effects.extend(deadline);
                Ok(self.keep(status, effects))
            }
            _ => unreachable!("terminal phases are handled above"),
        }
    }

    /// An ended job's retention: kept until it ends, then the job is deleted (it set
    /// `ttlSecondsAfterFinished`) or only its PDF (it did not: a job kept in Git stays,
    /// so that applying it again renders nothing). Its end (`expiresAt`) was fixed
    /// when the job ended; whether the job goes with its PDF is read from its spec
    /// then, so a TTL may still be set or removed.
    fn retained(&self, mut status: RenderJobStatus) -> Decision {
        let mut effects = Vec::new();
        if let Some(credits) = self.account.charged_for_job.filter(|_| self.phase != Phase::Succeeded) {
            effects.push(Effect::Refund(credits));
        }
        match rules::retention_due(&self.job.spec, &status) {
            Some((at, _)) if at > self.now => effects.push(Effect::WakeAt(at)),
            Some((_, RetentionEnd::DeleteJob)) => effects.push(Effect::DeleteJob),
            Some((_, RetentionEnd::DeleteOutput)) => {
                status.output_expired_at = Some(self.now);
                effects.push(Effect::DeleteOutput);
            }
            None => {}
        }
        self.keep(status, effects)
    }

    /// A job being deleted: its renderer stops, its output goes, and a charge of a job
    /// that did not succeed comes back.
    fn deleted(&self) -> Decision {
        let mut effects = vec![Effect::StopRenderer, Effect::DeleteOutput];
        if let Some(credits) = self.account.charged_for_job.filter(|_| self.phase != Phase::Succeeded) {
            effects.push(Effect::Refund(credits));
        }
        self.keep(self.status(), effects)
    }

    /// A worker or a renderer took the job up.
    fn begin(&self) -> Result<Decision, TransitionRefused> {
        let mut status = self.status();
        status.phase = Some(match self.phase {
            // A retry, or an attempt taken up again after a restart.
            Phase::Rendering => Phase::Rendering,
            phase => rules::next_phase(phase, Event::Start)?,
        });
        status.started_at = status.started_at.or(Some(self.now));
        status.next_attempt_at = None;
        status.renderer_refused_at = None;
        let effects = self.deadline().map(Effect::WakeAt).into_iter().collect();
        Ok(self.keep(status, effects))
    }

    /// Retry a failed attempt per `backoffLimit`, or fail the job.
    fn after_failure(&self, code: ErrorCode, message: String) -> Result<Decision, TransitionRefused> {
        match rules::after_failure(code, self.status().retry_count, self.job.spec.backoff_limit) {
            AfterFailure::Fail => self.end(Event::Fail, Some((code, message))),
            AfterFailure::Retry { delay, retry_count } => {
                let status = status::retrying(self.job, retry_count, delay, code, &message, self.now);
                let mut effects = vec![Effect::StopRenderer];
                effects.extend(status.next_attempt_at.map(Effect::WakeAt));
                Ok(self.keep(status, effects))
            }
        }
    }

    /// The deadline passed: the job expires, saying why its renderer never started
    /// when that is known (from the home, or from the job's conditions).
    fn expire(&self, not_started: Option<String>) -> Result<Decision, TransitionRefused> {
        let seconds = self.job.spec.active_deadline_seconds.unwrap_or_default();
        let mut message = format!("the job did not finish within activeDeadlineSeconds ({seconds} s)");
        if let Some(why) = not_started.or_else(|| status::never_started(&self.status())) {
            message = format!("{message}; its renderer never started: {why}");
        }
        self.end(Event::DeadlinePassed, Some((ErrorCode::DeadlineExceeded, message)))
    }

    /// End the job by `event`: its renderer stops, an unpaid output goes, a charge
    /// taken for it comes back.
    fn end(&self, event: Event, error: Option<(ErrorCode, String)>) -> Result<Decision, TransitionRefused> {
        let retention = &self.account.spec.retention;
        let status = status::ended(self.job, event, error, retention, self.now)?;
        let mut effects = Vec::new();
        if matches!(self.phase, Phase::Queued | Phase::Rendering) {
            effects.push(Effect::StopRenderer);
        }
        if self.phase == Phase::Blocked {
            effects.push(Effect::DeleteOutput);
        }
        if let Some(credits) = self.account.charged_for_job {
            effects.push(Effect::Refund(credits));
        }
        effects.extend(status.expires_at.map(Effect::WakeAt));
        Ok(self.keep(status, effects))
    }

    /// Charge a blocked job again with the facts it kept from its render.
    fn settle_blocked(&self) -> Result<Decision, TransitionRefused> {
        let status = self.status();
        let facts = status.output_key.as_ref().and_then(|_| {
            Some(RenderFacts {
                page_count: status.page_count?,
                total_bytes: status.total_bytes?,
                sha256: status.sha256.clone()?,
                duration_ms: status.duration_ms.unwrap_or(0),
                warnings: status.warnings.clone(),
                template_version: status.template_version,
            })
        });
        match facts {
            Some(facts) => self.settle(status, &facts),
            None => self.end(Event::Fail, Some((ErrorCode::Internal, "the blocked job lost its render facts".into()))),
        }
    }

    /// Charge the rendered job: `Succeeded` when the account covers it (or was charged
    /// for it already), `Blocked` until it does.
    fn settle(&self, status: RenderJobStatus, facts: &RenderFacts) -> Result<Decision, TransitionRefused> {
        let spec = &self.account.spec;
        let mut price = credits::price(facts.page_count, facts.total_bytes, self.job.spec.preview, &spec.pricing);
        let (charge, to_charge) = match self.account.charged_for_job {
            Some(charged) => {
                price.credits_used = charged;
                (Charge::Charged { credits_remaining: credits::credits_remaining(spec, self.account.used) }, 0)
            }
            None => (credits::charge(spec.credits, self.account.used, price), price.credits_used),
        };
        let mut job = self.job.clone();
        job.status = Some(status);
        let status = status::settled(&job, price, charge, &spec.retention, self.now)?;
        let mut effects = Vec::new();
        if matches!(charge, Charge::Charged { .. }) {
            if to_charge > 0 {
                effects.push(Effect::Charge(to_charge));
            }
            effects.extend(status.expires_at.map(Effect::WakeAt));
        } else {
            // A blocked job still expires at its deadline.
            effects.extend(self.deadline().map(Effect::WakeAt));
        }
        Ok(self.keep(status, effects))
    }
}

#[cfg(test)]
mod tests {
    use jiff::SignedDuration;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    use super::*;
    use crate::resources::{Pricing, RenderJobSpec, WebhookEvents, WebhookSpec};

    fn at(second: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + second).unwrap()
    }

    fn job_in(phase: Phase) -> RenderJob {
        let mut job = RenderJob::new("invoice-1", RenderJobSpec::default());
        job.metadata.namespace = Some("acme".into());
        job.metadata.generation = Some(1);
        job.metadata.creation_timestamp = Some(Time(at(0)));
        job.status = Some(RenderJobStatus { phase: Some(phase), ..Default::default() });
        job
    }

    fn facts(pages: i64) -> RenderFacts {
        RenderFacts {
            page_count: pages,
            total_bytes: 1000,
            sha256: "ab".repeat(32),
            duration_ms: 12,
            warnings: Vec::new(),
            template_version: None,
        }
    }

    fn rendered(pages: i64) -> Observed {
        Observed::Rendered { facts: facts(pages), output_key: "acme/invoice-1.pdf".into() }
    }

    fn failed(code: ErrorCode) -> Observed {
        Observed::AttemptFailed { code, message: "the renderer stopped".into() }
    }

    fn account(credits: Option<i64>, used: i64) -> Account {
        let spec = RenderAccountSpec { credits, pricing: Pricing::default(), ..Default::default() };
        Account { spec, used, charged_for_job: None }
    }

    fn blocked_job() -> RenderJob {
        let mut job = job_in(Phase::Rendering);
        let blocked = decide(&job, rendered(3), &account(Some(1), 0), at(5)).unwrap();
        assert_eq!(blocked.phase(), Phase::Blocked);
        job.status = Some(blocked.status);
        job
    }

    /// Every phase × every observation: the phase it leads to, or a refusal.
    #[test]
    fn every_phase_and_observation_is_decided() {
        use Phase::*;
        let observations = [
            ("look", Observed::Look),
            ("pending", Observed::RendererPending("unschedulable".into())),
            ("gone", Observed::RendererGone),
            ("began", Observed::AttemptBegan),
            ("rendered", rendered(2)),
            ("failed", failed(ErrorCode::TemplateCompileError)),
            ("cancel", Observed::Cancel),
            ("resume", Observed::Resume),
            ("unrenderable", Observed::Unrenderable { code: ErrorCode::Internal, message: "broken".into() }),
            ("deleted", Observed::Deleted),
        ];
        // Expected phase per observation, in the order above; None: refused.
        let (q, r, b) = (Some(Queued), Some(Rendering), Some(Blocked));
        let (s, f, c, e) = (Some(Succeeded), Some(Failed), Some(Cancelled), Some(Expired));
        let table: [(Phase, [Option<Phase>; 10]); 7] = [
            (Queued, [q, q, q, r, None, f, c, None, f, q]),
            (Rendering, [r, r, r, r, s, f, c, None, f, r]),
            (Blocked, [s, s, s, None, None, None, c, s, f, b]),
            (Succeeded, [s, s, s, None, None, None, None, None, None, s]),
            (Failed, [f, f, f, None, None, None, None, None, None, f]),
            (Cancelled, [c, c, c, None, None, None, None, None, None, c]),
            (Expired, [e, e, e, None, None, None, None, None, None, e]),
        ];
        for (phase, expected) in table {
            let job = if phase == Blocked { blocked_job() } else { job_in(phase) };
            for ((name, observed), want) in observations.iter().zip(expected) {
                let got = decide(&job, observed.clone(), &account(None, 0), at(10));
                assert_eq!(got.as_ref().ok().map(Decision::phase), want, "{phase:?} + {name}: {got:?}");
                if let Err(refused) = got {
                    assert_eq!(refused.from, phase);
                }
            }
        }
    }

    #[test]
    fn a_queued_job_starts_its_attempt_and_a_begun_one_is_rendering() {
        let queued = decide(&job_in(Phase::Queued), Observed::Look, &account(None, 0), at(1)).unwrap();
        assert_eq!(queued.attempt_to_start(), Some(0));
        let began = decide(&job_in(Phase::Queued), Observed::AttemptBegan, &account(None, 0), at(1)).unwrap();
        assert_eq!((began.phase(), began.status.started_at), (Phase::Rendering, Some(at(1))));
        let ready = began.status.conditions.iter().find(|c| c.type_ == "Ready").unwrap();
        assert_eq!((ready.status.as_str(), ready.reason.as_str()), ("False", "Rendering"));
        assert_eq!(began.status.observed_generation, Some(1));
        // A rendering job whose attempt runs waits; one whose renderer is gone starts it again.
        let running = decide(&job_in(Phase::Rendering), Observed::Look, &account(None, 0), at(1)).unwrap();
        assert_eq!(running.attempt_to_start(), None);
        let gone = decide(&job_in(Phase::Rendering), Observed::RendererGone, &account(None, 0), at(1)).unwrap();
        assert_eq!(gone.attempt_to_start(), Some(0));
    }

    #[test]
    fn retries_back_off_until_the_backoff_limit_then_fail_with_expiry_and_ready() {
        let mut job = job_in(Phase::Rendering);
        job.spec.backoff_limit = Some(1);
        let retry = decide(&job, failed(ErrorCode::RendererCrashed), &account(None, 0), at(10)).unwrap();
        assert_eq!((retry.phase(), retry.status.retry_count), (Phase::Rendering, 1));
        assert_eq!(retry.status.next_attempt_at, Some(at(11)), "1 s after the first failure");
        assert_eq!(retry.effects, [Effect::StopRenderer, Effect::WakeAt(at(11))]);
        job.status = Some(retry.status);
        let waiting = decide(&job, Observed::Look, &account(None, 0), at(10)).unwrap();
        assert_eq!((waiting.attempt_to_start(), waiting.wake_at()), (None, Some(at(11))));
        let due = decide(&job, Observed::Look, &account(None, 0), at(11)).unwrap();
        assert_eq!(due.attempt_to_start(), Some(1));
        let failed = decide(&job, failed(ErrorCode::RendererCrashed), &account(None, 0), at(12)).unwrap();
        assert_eq!((failed.phase(), failed.status.error_code), (Phase::Failed, Some(ErrorCode::RendererCrashed)));
        assert_eq!(failed.status.expires_at, Some(at(12) + SignedDuration::from_hours(7 * 24)));
        assert_eq!(failed.status.completed_at, Some(at(12)));
        let ready = failed.status.conditions.iter().find(|c| c.type_ == "Ready").unwrap();
        assert_eq!((ready.status.as_str(), ready.reason.as_str()), ("False", "Failed"));
        assert!(failed.has(&Effect::StopRenderer));
    }

    #[test]
    fn errors_of_the_template_fail_at_once() {
        let job = job_in(Phase::Rendering);
        let decision = decide(&job, failed(ErrorCode::DataInvalid), &account(None, 0), at(3)).unwrap();
        assert_eq!((decision.phase(), decision.status.retry_count), (Phase::Failed, 0));
    }

    #[test]
    fn a_passed_deadline_expires_the_job_and_says_why_its_renderer_never_started() {
        let mut job = job_in(Phase::Queued);
        job.spec.active_deadline_seconds = Some(30);
        let before = decide(&job, Observed::Look, &account(None, 0), at(29)).unwrap();
        assert_eq!((before.phase(), before.wake_at()), (Phase::Queued, Some(at(30))));
        let pending = Observed::RendererPending("0/1 nodes are available".into());
        let expired = decide(&job, pending, &account(None, 0), at(30)).unwrap();
        assert_eq!(expired.phase(), Phase::Expired);
        let message = expired.status.error_message.unwrap();
        assert!(message.contains("activeDeadlineSeconds (30 s)") && message.contains("0/1 nodes"), "{message}");
        // A failure that comes at the deadline (the render ran out of the time left) expires too.
        job.status.as_mut().unwrap().phase = Some(Phase::Rendering);
        let late = decide(&job, failed(ErrorCode::DeadlineExceeded), &account(None, 0), at(31)).unwrap();
        assert_eq!((late.phase(), late.status.error_code), (Phase::Expired, Some(ErrorCode::DeadlineExceeded)));
    }

    #[test]
    fn a_short_account_blocks_and_a_top_up_or_resume_settles_with_one_charge() {
        let job = blocked_job();
        let status = job.status.clone().unwrap();
        assert_eq!(status.credits_remaining, Some(1));
        assert!(status.error_message.unwrap().contains("costs 3 credits and the account has 1 left"));
        let still = decide(&job, Observed::Resume, &account(Some(2), 0), at(6)).unwrap();
        assert_eq!((still.phase(), still.charge()), (Phase::Blocked, None));
        let paid = decide(&job, Observed::Resume, &account(Some(10), 4), at(7)).unwrap();
        assert_eq!((paid.phase(), paid.charge()), (Phase::Succeeded, Some(3)));
        assert_eq!((paid.status.credits_used, paid.status.credits_remaining), (Some(3), Some(3)));
        assert_eq!(paid.status.output_key.as_deref(), Some("acme/invoice-1.pdf"));
        let again = decide(&job_in(Phase::Succeeded), Observed::Resume, &account(Some(10), 4), at(7));
        assert_eq!(again, Err(TransitionRefused { from: Phase::Succeeded, event: Event::Resume }));
    }

    #[test]
    fn a_job_charged_already_is_not_charged_twice_and_gets_its_credits_back_when_it_does_not_succeed() {
        let charged = Account { charged_for_job: Some(3), ..account(Some(10), 3) };
        let settled = decide(&job_in(Phase::Rendering), rendered(3), &charged, at(5)).unwrap();
        assert_eq!((settled.phase(), settled.charge()), (Phase::Succeeded, None));
        assert_eq!((settled.status.credits_used, settled.status.credits_remaining), (Some(3), Some(7)));
        let mut cancelled_job = job_in(Phase::Rendering);
        cancelled_job.spec.cancel = true;
        let cancelled = decide(&cancelled_job, Observed::Look, &charged, at(5)).unwrap();
        assert_eq!((cancelled.phase(), cancelled.refund()), (Phase::Cancelled, Some(3)));
        // An ended job whose charge entry is still there gives it back when looked at again.
        let failed = decide(&job_in(Phase::Failed), Observed::Look, &charged, at(5)).unwrap();
        assert_eq!(failed.refund(), Some(3));
        let succeeded = decide(&job_in(Phase::Succeeded), Observed::Look, &charged, at(5)).unwrap();
        assert_eq!(succeeded.refund(), None);
    }

    #[test]
    fn ending_a_blocked_job_deletes_its_unpaid_output() {
        let cancelled = decide(&blocked_job(), Observed::Cancel, &account(Some(1), 0), at(8)).unwrap();
        assert_eq!(cancelled.phase(), Phase::Cancelled);
        assert!(cancelled.has(&Effect::DeleteOutput) && !cancelled.has(&Effect::StopRenderer));
    }

    #[test]
    fn previews_are_free_even_on_an_empty_account() {
        let mut job = job_in(Phase::Rendering);
        job.spec.preview = true;
        let decision = decide(&job, rendered(40), &account(Some(0), 0), at(5)).unwrap();
        assert_eq!(
            (decision.phase(), decision.charge(), decision.status.credits_used),
            (Phase::Succeeded, None, Some(0))
        );
    }

    #[test]
    fn an_ended_job_with_a_ttl_is_deleted_when_its_retention_ends() {
        let mut job = job_in(Phase::Succeeded);
        job.spec.ttl_seconds_after_finished = Some(100);
        job.status.as_mut().unwrap().expires_at = Some(at(100));
        let kept = decide(&job, Observed::Look, &account(None, 0), at(99)).unwrap();
        assert_eq!(kept.effects, [Effect::WakeAt(at(100))]);
        let gone = decide(&job, Observed::Look, &account(None, 0), at(100)).unwrap();
        assert_eq!(gone.effects, [Effect::DeleteJob]);
        // A Failed job with a TTL goes too.
        job.status.as_mut().unwrap().phase = Some(Phase::Failed);
        assert_eq!(decide(&job, Observed::Look, &account(None, 0), at(100)).unwrap().effects, [Effect::DeleteJob]);
    }

    #[test]
    fn a_job_without_a_ttl_loses_only_its_pdf_and_is_kept() {
        let mut job = job_in(Phase::Succeeded);
        job.status.as_mut().unwrap().expires_at = Some(at(50));
        let account = account(None, 0);
        let kept = decide(&job, Observed::Look, &account, at(10)).unwrap();
        assert_eq!(
            (kept.effects.as_slice(), kept.status.expires_at),
            ([Effect::WakeAt(at(50))].as_slice(), Some(at(50)))
        );
        let expired = decide(&job, Observed::Look, &account, at(60)).unwrap();
        assert_eq!(expired.effects, [Effect::DeleteOutput]);
        assert_eq!((expired.phase(), expired.status.output_expired_at), (Phase::Succeeded, Some(at(60))));
        let ready = expired.status.conditions.iter().find(|c| c.type_ == "Ready").unwrap();
        assert!(ready.status == "True" && ready.message.contains("deleted at the end of its retention"), "{ready:?}");
        // Nothing is left to do: no effect, no wake, the status stays as it is.
        job.status = Some(expired.status.clone());
        let later = decide(&job, Observed::Look, &account, at(1000)).unwrap();
        assert_eq!((later.effects.as_slice(), &later.status), ([].as_slice(), &expired.status));
        // A failed job has no PDF to lose.
        let mut failed = job_in(Phase::Failed);
        failed.status.as_mut().unwrap().expires_at = Some(at(50));
        assert_eq!(decide(&failed, Observed::Look, &account, at(60)).unwrap().effects, []);
    }

    #[test]
    fn the_conditions_say_what_kstatus_and_argo_cd_read() {
        let kinds = |phase| {
            let decision = decide(&job_in(phase), Observed::Look, &account(None, 0), at(1)).unwrap();
            let mut types: Vec<String> =
                decision.status.conditions.iter().filter(|c| c.status == "True").map(|c| c.type_.clone()).collect();
            types.sort();
            types
        };
        assert_eq!(kinds(Phase::Queued), ["Reconciling"]);
        assert_eq!(kinds(Phase::Succeeded), ["Ready"]);
        assert_eq!(kinds(Phase::Failed), ["Stalled"]);
        assert_eq!(kinds(Phase::Expired), ["Stalled"]);
        assert_eq!(kinds(Phase::Cancelled), ["Stalled"]);
    }

    #[test]
    fn webhook_events_are_queued_for_the_changes_their_subscription_wants() {
        let hook = |events| Some(WebhookSpec { url: "https://hooks.example/".into(), secret_ref: None, events });
        let mut job = job_in(Phase::Queued);
        job.spec.webhook = hook(WebhookEvents::Terminal);
        let began = decide(&job, Observed::AttemptBegan, &account(None, 0), at(1)).unwrap();
        assert!(!began.effects.iter().any(|e| matches!(e, Effect::Notify(_))));
        let mut with_default = account(None, 0);
        with_default.spec.webhook = hook(WebhookEvents::All);
        job.spec.webhook = None;
        let began = decide(&job, Observed::AttemptBegan, &with_default, at(1)).unwrap();
        assert!(began.has(&Effect::Notify(Phase::Rendering)), "the account's default subscription");
        job.status = Some(began.status);
        let done = decide(&job, rendered(1), &with_default, at(2)).unwrap();
        assert!(done.has(&Effect::Notify(Phase::Succeeded)));
        let unchanged = decide(&job, Observed::Look, &with_default, at(2)).unwrap();
        assert!(!unchanged.effects.iter().any(|e| matches!(e, Effect::Notify(_))), "no change, no event");
    }
}
