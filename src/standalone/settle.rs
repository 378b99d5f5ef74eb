//! The standalone home carries out the lifecycle core's decisions: one decision per
//! transaction, which saves the job's new status, its charge on the account and its
//! queued webhook event together, or none of them (so a charge is never lost nor
//! made twice, even under `kill -9`). Files are deleted by the caller once the
//! transaction is committed.

use jiff::Timestamp;

use super::Standalone;
use super::store::{self, JobRecord, StoreError};
use super::webhooks;
use crate::lifecycle::{Account, Decision, Effect, Observed, Phase, TransitionRefused, decide};

/// A decision carried out, or the rules' refusal (nothing was written then).
pub type Applied = Result<Decision, TransitionRefused>;

/// Decide what `observed` means for `record` and carry it out inside `tx`: the job's
/// status, the account's charge and the webhook event are saved together. The job's
/// claim is kept only when an attempt begins (the caller sets its token then).
pub(super) fn apply(
    tx: &rusqlite::Connection,
    record: &mut JobRecord,
    observed: Observed,
    now: Timestamp,
) -> Result<Applied, StoreError> {
    let tenant = record.tenant().to_owned();
    let stored_account = store::load_account(tx, &tenant)?;
    let account = Account::of(stored_account.as_ref(), record.id());
    let used = account.used;
    let begins = observed == Observed::AttemptBegan;
    let decision = match decide(&record.job, observed, &account, now) {
        Ok(decision) => decision,
        Err(refused) => return Ok(Err(refused)),
    };
    if let (Some(credits), Some(mut stored)) = (decision.charge(), stored_account) {
        stored.status.get_or_insert_with(Default::default).credits_used = used + credits;
        store::save_account(tx, &stored)?;
    }
    record.job.status = Some(decision.status.clone());
    record.updated_at = now;
    if !begins {
        record.claimed_by = None;
    }
    store::save_job(tx, record)?;
    if decision.effects.iter().any(|e| matches!(e, Effect::Notify(_))) {
        webhooks::enqueue(tx, record, now)?;
    }
    Ok(Ok(decision))
}

impl Standalone {
    /// Settle `tenant`'s blocked jobs, oldest first, while the balance covers them.
    pub fn settle_blocked(&self, tenant: &str) -> Result<usize, StoreError> {
        let blocked = self.store.read(|c| store::jobs_in_phase(c, Some(tenant), &[Phase::Blocked]))?;
        let mut settled = 0;
        for record in blocked {
            if self.settle_one(tenant, record.id())? == Some(Phase::Succeeded) {
                settled += 1;
            }
        }
        Ok(settled)
    }

    /// Try a blocked job's charge again; returns its phase afterwards (`None`: the job
    /// is gone or not blocked).
    pub(super) fn settle_one(&self, tenant: &str, id: &str) -> Result<Option<Phase>, StoreError> {
        let applied = self.store.write(|tx| {
            let Some(mut record) = store::load_job(tx, Some(tenant), id)? else { return Ok(None) };
            let applied = apply(tx, &mut record, Observed::Resume, Timestamp::now())?;
            Ok(applied.ok().map(|decision| (record, decision)))
        })?;
        let Some((record, decision)) = applied else { return Ok(None) };
        self.after_commit(&record, &decision);
        Ok(Some(decision.phase()))
    }

    /// What a committed decision about `record` leaves to do outside the database:
    /// an unpaid output (or a job whose retention ended) goes with its PDF, and a job
    /// that ended is counted.
    pub(super) fn after_commit(&self, record: &JobRecord, decision: &Decision) {
        if decision.has(&Effect::DeleteOutput) || decision.has(&Effect::DeleteJob) {
            self.forget_output(record);
        }
        if decision.ended() {
            self.metrics.job_finished(decision.phase());
            crate::metrics::log_job_finished(record.id(), record.tenant(), &decision.status);
        }
    }
}

/// Cancel `record` inside the caller's transaction, or the rules' refusal (it has
/// ended already).
pub(super) fn cancel(tx: &rusqlite::Connection, record: &mut JobRecord, now: Timestamp) -> Result<Applied, StoreError> {
    apply(tx, record, Observed::Cancel, now)
}
