//! The standalone home's job transitions, each inside the transaction that saves the
//! job: settling a charge and ending a job.

use jiff::Timestamp;

use super::Standalone;
use super::store::{self, JobRecord, StoreError};
use super::webhooks;
use crate::lifecycle::{self, Charge, Event, Phase};
use crate::resources::default_account;
use crate::transitions;

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

    /// Settle one blocked job if the balance covers it; returns its phase afterwards.
    pub(super) fn settle_one(&self, tenant: &str, id: &str) -> Result<Option<Phase>, StoreError> {
        let phase = self.store.write(|tx| {
            let Some(mut record) = store::load_job(tx, Some(tenant), id)? else { return Ok(None) };
            if record.phase() != Phase::Blocked {
                return Ok(None);
            }
            Ok(Some(settle(tx, &mut record, Timestamp::now())?))
        })?;
        if phase == Some(Phase::Succeeded) {
            self.metrics.job_finished(Phase::Succeeded);
        }
        Ok(phase)
    }
}

/// Charge a rendered job against its tenant's account: `Succeeded` when the balance
/// covers it, `Blocked` otherwise. Runs inside the transaction that saves the job, so
/// the charge and the phase change happen together or not at all.
pub(super) fn settle(tx: &rusqlite::Connection, record: &mut JobRecord, now: Timestamp) -> Result<Phase, StoreError> {
    let tenant = record.tenant().to_owned();
    let stored_account = store::load_account(tx, &tenant)?;
    let account = stored_account.clone().unwrap_or_else(|| default_account(&tenant));
    let used = account.status.as_ref().map_or(0, |s| s.credits_used);
    let before = record.phase();
    let status = record.job.status.clone().unwrap_or_default();
    let price = lifecycle::price(
        status.page_count.unwrap_or(0),
        status.total_bytes.unwrap_or(0),
        record.job.spec.preview,
        &account.spec.pricing,
    );
    let charge = lifecycle::charge(account.spec.credits, used, price);
    if let (Charge::Charged { .. }, Some(mut account)) = (charge, stored_account) {
        account.status.get_or_insert_with(Default::default).credits_used = used + price.credits_used;
        store::save_account(tx, &account)?;
    }
    record.job.status = Some(transitions::settled(&record.job, price, charge, &account.spec.retention, now));
    record.updated_at = now;
    record.claimed_by = None;
    webhooks::save_transition(tx, record, before, now)?;
    Ok(record.phase())
}

/// End a job by `event` (fail, cancel, deadline) and save it, inside the caller's
/// transaction. Returns the phase it ends in (unchanged if the rules refuse the event).
pub(super) fn end_job(
    tx: &rusqlite::Connection,
    record: &mut JobRecord,
    event: Event,
    error: Option<(crate::lifecycle::ErrorCode, String)>,
    now: Timestamp,
) -> Result<Phase, StoreError> {
    let before = record.phase();
    let tenant = record.tenant().to_owned();
    let retention = store::load_account(tx, &tenant)?.unwrap_or_else(|| default_account(&tenant)).spec.retention;
    let Some(status) = transitions::ended(&record.job, event, error, &retention, now) else {
        return Ok(before);
    };
    let next = status.phase.unwrap_or(before);
    record.job.status = Some(status);
    record.updated_at = now;
    record.claimed_by = None;
    webhooks::save_transition(tx, record, before, now)?;
    Ok(next)
}
