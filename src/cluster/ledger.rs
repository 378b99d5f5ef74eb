//! The credit ledger of the cluster home: a successful render is charged to its
//! namespace's RenderAccount exactly once, though the charge (on the account) and
//! the job's new status are two writes to two objects with no transaction between.
//!
//! The account is written first and the charge is listed in the account's
//! `pendingCharges` under the job's uid; the job is written second; the entry is
//! removed later, once the operator's cache of jobs shows the job `Succeeded`. A
//! reconcile that stops after the first write finds the entry and does not charge
//! again.
//!
//! Why a charge is taken once, with every read served from watch caches:
//! - Writes to a namespace's account go one at a time through this operator (an
//!   async lock per namespace), each decided on the newest version the operator
//!   knows (the one it last wrote, or the cache's when that is newer) and
//!   conditional on that version's `resourceVersion`. A version older than the
//!   stored account is refused with a conflict; the account is then read afresh
//!   and the decision taken again. So every decision sees the account as stored,
//!   entries included.
//! - A cached job may be older than the job as stored (the cache lags behind the
//!   operator's own `Succeeded`). An entry is removed only while the job cache
//!   shows its job `Succeeded`, and a charge is decided only while the job cache
//!   does not show the job ended, both under the namespace's lock. The cache only
//!   moves forward, so when a charge is decided either the entry of an earlier
//!   charge is still on the account (and nothing is charged again) or the job has
//!   not been charged at all. The job's write is conditional on the version the
//!   reconcile read, so a stale copy's write is refused and retried on a fresh copy.
//! - A new operator (restart, another leader) lists the jobs with a consistent read
//!   before it reconciles, so its cache holds every `Succeeded` written before.
//!
//! A charge whose job ends otherwise (failed, cancelled, expired, deleted) is given
//! back after the job's end is written, so only successes are ever charged.

use std::time::Duration;

use jiff::Timestamp;
use kube::api::PostParams;
use kube::runtime::reflector::ObjectRef;
use kube::{Api, ResourceExt};

use super::context::{Context, Error, compare_versions};
use super::writes::{names, until};
use crate::lifecycle::credits::keeps_charge;
use crate::lifecycle::{Account, Decision, Observed, Phase, credits_remaining, decide};
use crate::resources::{PendingCharge, RenderAccount, RenderJob};

/// How long the entry of a settled charge stays on the account at least: a write
/// for another job of the namespace within that time removes it on the way, so a
/// burst of jobs costs one account write per job, not two.
const SETTLED_ENTRY_DELAY: Duration = Duration::from_secs(2);
/// Conflicts in a row before a reconcile gives up on an account write (and is
/// retried with backoff).
const MAX_CONFLICTS: usize = 5;

/// The namespace's RenderAccount (the first by name when there are several), if any,
/// from the cache of accounts.
pub fn account_of(ctx: &Context, namespace: &str) -> Option<RenderAccount> {
    ctx.account(namespace).map(|account| account.as_ref().clone())
}

/// The newer of the cached account and the one this operator last wrote (their
/// versions compared as [`compare_versions`] does; when they cannot be, the
/// operator's own write is taken, and a wrong guess only costs a conflict and a
/// fresh read).
fn newest(cached: Option<RenderAccount>, written: Option<&RenderAccount>) -> Option<RenderAccount> {
    let Some(written) = written else {
        return cached;
    };
    let Some(cached) = cached else {
        return Some(written.clone());
    };
    if cached.uid() != written.uid() {
        // Another account (a new one, or one first by name now): the cache's.
        return Some(cached);
    }
    let (cached_version, written_version) = (cached.resource_version(), written.resource_version());
    match (cached_version, written_version) {
        (Some(c), Some(w)) if compare_versions(&c, &w).is_some_and(|order| order.is_gt()) => Some(cached),
        _ => Some(written.clone()),
    }
}

/// The namespace's account as the API server holds it now (after a conflict).
async fn read_fresh(ctx: &Context, namespace: &str, name: &str) -> Result<Option<RenderAccount>, Error> {
    let accounts: Api<RenderAccount> = Api::namespaced(ctx.client.clone(), namespace);
    Ok(accounts.get_opt(name).await?)
}

/// Write the status of `account`, conditional on its `resourceVersion`: `None` on
/// a conflict (the version was not the stored one).
async fn write_account(ctx: &Context, account: &RenderAccount) -> Result<Option<RenderAccount>, Error> {
    let accounts: Api<RenderAccount> = Api::namespaced(ctx.client.clone(), &account.namespace().unwrap_or_default());
    match accounts.replace_status(&account.name_any(), &PostParams::default(), account).await {
        Ok(written) => Ok(Some(written)),
        Err(kube::Error::Api(status)) if status.code == 409 => Ok(None),
        Err(err) => Err(err.into()),
    }
}

/// Whether the job cache shows the job `uid` named `name` in `namespace` in a phase
/// for which `ended` holds.
fn cached_job_is(ctx: &Context, namespace: &str, name: &str, uid: &str, ended: impl Fn(Phase) -> bool) -> bool {
    ctx.caches()
        .jobs
        .get(&ObjectRef::new(name).within(namespace))
        .filter(|job| job.metadata.uid.as_deref() == Some(uid))
        .and_then(|job| job.status.as_ref().and_then(|s| s.phase))
        .is_some_and(ended)
}

/// Drop the entries of charges whose jobs the job cache shows `Succeeded` (their
/// jobs say so now); whether any was dropped.
fn drop_settled(ctx: &Context, namespace: &str, account: &mut RenderAccount) -> bool {
    let Some(status) = account.status.as_mut() else {
        return false;
    };
    let before = status.pending_charges.len();
    status
        .pending_charges
        .retain(|c| !cached_job_is(ctx, namespace, &c.job_name, &c.job_uid, |p| p == Phase::Succeeded));
    status.pending_charges.len() != before
}

/// The account as the caches show it, for a decision about `job`: its terms, what
/// it spent, and the charge entry of this job if a reconcile that stopped short left
/// one.
pub fn account_view(ctx: &Context, job: &RenderJob) -> Account {
    let namespace = job.metadata.namespace.as_deref().unwrap_or_default();
    Account::of(account_of(ctx, namespace).as_ref(), job.metadata.uid.as_deref().unwrap_or_default())
}

/// Decide `observed` about a rendered or blocked `job` and take the charge the core
/// asks for: written to the namespace's account (with the job's entry) before the
/// caller writes the job, decided again on a fresh account after a conflict.
pub async fn settle(job: &RenderJob, ctx: &Context, observed: Observed, now: Timestamp) -> Result<Decision, Error> {
    let (namespace, name) = names(job)?;
    let uid = job.metadata.uid.clone().ok_or_else(|| Error::Invalid("the RenderJob has no uid".into()))?;
    let ledger = ctx.ledgers.of(namespace);
    let mut written = ledger.lock().await;
    let mut conflicts = 0;
    loop {
        if cached_job_is(ctx, namespace, name, &uid, Phase::is_terminal) {
            // This copy is older than the cache: the job was settled already.
            return Err(Error::Stale);
        }
        let account = newest(account_of(ctx, namespace), written.as_ref());
        let decision = decide(job, observed.clone(), &Account::of(account.as_ref(), &uid), now)
            .map_err(|refused| Error::Invalid(refused.to_string()))?;
        let (Some(credits), Some(mut account)) = (decision.charge(), account) else {
            return Ok(decision);
        };
        drop_settled(ctx, namespace, &mut account);
        let status = account.status.get_or_insert_with(Default::default);
        status.credits_used += credits;
        status.credits_remaining = decision.status.credits_remaining;
        status.pending_charges.push(PendingCharge { job_uid: uid.clone(), job_name: name.to_owned(), credits });
        match write_account(ctx, &account).await? {
            Some(stored) => {
                *written = Some(stored);
                // The entry goes once the job cache shows the job Succeeded (see the module docs).
                return Ok(decision);
            }
            None => {
                conflicts += 1;
                if conflicts >= MAX_CONFLICTS {
                    return Err(Error::Stale);
                }
                *written = read_fresh(ctx, namespace, &account.name_any()).await?;
            }
        }
    }
}

/// Close the charge entry of an ended `job`, if its account still lists one: kept
/// as settled when the core says the job keeps its charge (it succeeded; removed not
/// before [`SETTLED_ENTRY_DELAY`] after it ended, unless another write of the
/// namespace's account removes it first), given back otherwise. Decided from the
/// job's phase, never from a cached account that may lag. When the entry must
/// wait, how long.
pub async fn close_pending(job: &RenderJob, ctx: &Context, now: Timestamp) -> Result<Option<Duration>, Error> {
    let status = job.status.as_ref();
    let Some(phase) = status.and_then(|s| s.phase).filter(|p| p.is_terminal()) else {
        return Ok(None);
    };
    let keep = keeps_charge(phase);
    close_entry(job, ctx, keep, status.and_then(|s| s.completed_at).filter(|_| keep), now).await
}

/// Close the charge entry of a job being deleted, at once: settled if it succeeded,
/// given back otherwise (the job and its cache entry are about to go).
pub async fn close_deleted(job: &RenderJob, ctx: &Context, now: Timestamp) -> Result<(), Error> {
    let phase = job.status.as_ref().and_then(|s| s.phase);
    close_entry(job, ctx, phase.is_some_and(keeps_charge), None, now).await.map(|_| ())
}

/// Remove `job`'s entry from its namespace's account: as settled (`succeeded`, not
/// before `completed_at` + [`SETTLED_ENTRY_DELAY`]) or as a refund.
async fn close_entry(
    job: &RenderJob,
    ctx: &Context,
    keep_charge: bool,
    completed_at: Option<Timestamp>,
    now: Timestamp,
) -> Result<Option<Duration>, Error> {
    let (namespace, _) = names(job)?;
    let Some(uid) = job.metadata.uid.as_deref() else {
        return Ok(None);
    };
    let lists = |account: &RenderAccount| {
        account.status.as_ref().is_some_and(|s| s.pending_charges.iter().any(|c| c.job_uid == uid))
    };
    let ledger = ctx.ledgers.of(namespace);
    let mut written = ledger.lock().await;
    let mut conflicts = 0;
    loop {
        let Some(mut account) = newest(account_of(ctx, namespace), written.as_ref()) else {
            return Ok(None);
        };
        if !lists(&account) {
            return Ok(None);
        }
        let removable_at = completed_at.and_then(|at| at.checked_add(SETTLED_ENTRY_DELAY).ok());
        if keep_charge && let Some(wait) = removable_at.and_then(|at| until(now, at)) {
            return Ok(Some(wait));
        }
        drop_settled(ctx, namespace, &mut account);
        if let Some(status) = account.status.as_mut()
            && let Some(position) = status.pending_charges.iter().position(|c| c.job_uid == uid)
        {
            let entry = status.pending_charges.remove(position);
            if !keep_charge {
                status.credits_used -= entry.credits;
                status.credits_remaining = credits_remaining(&account.spec, status.credits_used);
                tracing::info!(job = %job.name_any(), credits = entry.credits, "refunding the charge of a job that did not succeed");
            }
        }
        match write_account(ctx, &account).await? {
            Some(stored) => {
                *written = Some(stored);
                return Ok(None);
            }
            None => {
                conflicts += 1;
                if conflicts >= MAX_CONFLICTS {
                    return Err(Error::Stale);
                }
                *written = read_fresh(ctx, namespace, &account.name_any()).await?;
            }
        }
    }
}
