//! The credit ledger of the cluster home: a successful render is charged to its
//! namespace's RenderAccount exactly once, though the charge (on the account) and
//! the job's new status are two writes to two objects with no transaction between.
//!
//! The account is written first, with optimistic concurrency (its
//! `resourceVersion`: a concurrent writer makes the replace fail with a conflict,
//! and the reconcile is retried on fresh data), and the charge is listed in the
//! account's `pendingCharges` under the job's uid. The job is written second; the
//! entry is removed third. A reconcile that stops after the first write finds the
//! entry and does not charge again; one that stops after the second removes it
//! when it next sees the ended job.

use std::time::Duration;

use jiff::Timestamp;
use kube::api::{ListParams, PostParams};
use kube::{Api, ResourceExt};

use super::controller::{Context, Error};
use super::job::{names, reason, write_status};
use crate::lifecycle::{self, Charge, Phase};
use crate::render::RenderFacts;
use crate::resources::{PendingCharge, RenderAccount, RenderJob};
use crate::transitions;

/// The namespace's RenderAccount (the first by name when there are several), if any.
pub async fn account_of(ctx: &Context, namespace: &str) -> Result<Option<RenderAccount>, Error> {
    let accounts: Api<RenderAccount> = Api::namespaced(ctx.client.clone(), namespace);
    let mut items = accounts.list(&ListParams::default()).await?.items;
    items.sort_by_key(|account| account.name_any());
    Ok(items.into_iter().next())
}

/// Charge the rendered `job` (its PDF described by `facts`): `Succeeded` when the
/// account covers it, `Blocked` until it does.
pub async fn settle(
    job: &RenderJob,
    ctx: &Context,
    facts: &RenderFacts,
    now: Timestamp,
) -> Result<Option<Duration>, Error> {
    let (namespace, name) = names(job)?;
    let uid = job.metadata.uid.clone().ok_or_else(|| Error::Invalid("the RenderJob has no uid".into()))?;
    let account = account_of(ctx, namespace).await?;
    let terms = account.as_ref().map(|a| a.spec.clone()).unwrap_or_default();
    let mut price = lifecycle::price(facts.page_count, facts.total_bytes, job.spec.preview, &terms.pricing);
    let mut charged = None;
    let charge = match account {
        None => Charge::Charged { credits_remaining: None },
        Some(account) => {
            let spent = account.status.clone().unwrap_or_default();
            let remaining = account.spec.credits.map(|granted| granted - spent.credits_used);
            if let Some(pending) = spent.pending_charges.iter().find(|c| c.job_uid == uid) {
                // Charged by a reconcile that stopped before the job said so.
                price.credits_used = pending.credits;
                charged = Some(account);
                Charge::Charged { credits_remaining: remaining }
            } else {
                let charge = lifecycle::charge(account.spec.credits, spent.credits_used, price);
                if let Charge::Charged { credits_remaining } = charge
                    && price.credits_used > 0
                {
                    ensure_fresh(job, ctx).await?;
                    let entry =
                        PendingCharge { job_uid: uid.clone(), job_name: name.to_owned(), credits: price.credits_used };
                    charged = Some(debit(ctx, account, entry, credits_remaining).await?);
                }
                charge
            }
        }
    };
    let before = job.status.as_ref().and_then(|s| s.phase);
    let status = transitions::settled(job, price, charge, &terms.retention, now);
    let phase = status.phase.unwrap_or(Phase::Blocked);
    let note = match phase {
        Phase::Succeeded => {
            format!("{} pages, {} bytes, {} credits", facts.page_count, facts.total_bytes, price.credits_used)
        }
        _ => status.error_message.clone().unwrap_or_default(),
    };
    let job = write_status(job, ctx, status).await?;
    if before != Some(phase) {
        ctx.publish(&job, phase == Phase::Blocked, reason(phase), note).await;
    }
    if let Some(account) = charged {
        forget(ctx, account, &uid).await;
    }
    Ok(None)
}

/// After the job is written: drop a pending charge left by a reconcile that stopped
/// between the job's write and the entry's removal.
pub async fn forget_pending(job: &RenderJob, ctx: &Context) -> Result<(), Error> {
    let status = job.status.as_ref();
    if status.and_then(|s| s.phase) != Some(Phase::Succeeded) || status.and_then(|s| s.credits_used).unwrap_or(0) == 0 {
        return Ok(());
    }
    let (namespace, _) = names(job)?;
    let Some(uid) = job.metadata.uid.as_deref() else {
        return Ok(());
    };
    if let Some(account) = account_of(ctx, namespace).await?
        && account.status.as_ref().is_some_and(|s| s.pending_charges.iter().any(|c| c.job_uid == uid))
    {
        forget(ctx, account, uid).await;
    }
    Ok(())
}

/// Fail with a conflict unless `job` is the stored version. The controller's cache
/// can lag behind this job's own last write (say, the Succeeded that settled it),
/// and a charge decided on such a copy would be a second one.
async fn ensure_fresh(job: &RenderJob, ctx: &Context) -> Result<(), Error> {
    let (namespace, name) = names(job)?;
    let jobs: Api<RenderJob> = Api::namespaced(ctx.client.clone(), namespace);
    let stored = jobs.get_opt(name).await?;
    if stored.as_ref().and_then(|j| j.metadata.resource_version.as_deref()) != job.metadata.resource_version.as_deref()
    {
        return Err(Error::Stale);
    }
    Ok(())
}

/// Give back a charge listed for `job` that the job never recorded: it ends
/// otherwise than `Succeeded` (cancelled, expired, failed or deleted), so it is not
/// charged at all. `account` is the namespace's, as just read.
pub async fn refund_pending(job: &RenderJob, ctx: &Context, account: Option<RenderAccount>) -> Result<(), Error> {
    let (Some(uid), Some(mut account)) = (job.metadata.uid.as_deref(), account) else {
        return Ok(());
    };
    let granted = account.spec.credits;
    let Some(status) = account.status.as_mut() else {
        return Ok(());
    };
    let Some(position) = status.pending_charges.iter().position(|c| c.job_uid == uid) else {
        return Ok(());
    };
    let refunded = status.pending_charges.remove(position);
    status.credits_used -= refunded.credits;
    status.credits_remaining = granted.map(|granted| granted - status.credits_used);
    let accounts: Api<RenderAccount> = Api::namespaced(ctx.client.clone(), &account.namespace().unwrap_or_default());
    accounts.replace_status(&account.name_any(), &PostParams::default(), &account).await?;
    tracing::info!(job = %job.name_any(), credits = refunded.credits, "refunded the charge of a job that did not succeed");
    Ok(())
}

/// Add `entry` to the account's spending; fails on a concurrent change.
async fn debit(
    ctx: &Context,
    mut account: RenderAccount,
    entry: PendingCharge,
    credits_remaining: Option<i64>,
) -> Result<RenderAccount, Error> {
    let status = account.status.get_or_insert_with(Default::default);
    status.credits_used += entry.credits;
    status.credits_remaining = credits_remaining;
    status.pending_charges.push(entry);
    let accounts: Api<RenderAccount> = Api::namespaced(ctx.client.clone(), &account.namespace().unwrap_or_default());
    Ok(accounts.replace_status(&account.name_any(), &PostParams::default(), &account).await?)
}

/// Remove the job's entry from the account. A failure only leaves the entry for the
/// next reconcile of the ended job.
async fn forget(ctx: &Context, mut account: RenderAccount, uid: &str) {
    if let Some(status) = account.status.as_mut() {
        status.pending_charges.retain(|c| c.job_uid != uid);
    }
    let accounts: Api<RenderAccount> = Api::namespaced(ctx.client.clone(), &account.namespace().unwrap_or_default());
    if let Err(err) = accounts.replace_status(&account.name_any(), &PostParams::default(), &account).await {
        tracing::debug!(error = %err, "removing a settled charge from the account failed; the next reconcile retries");
    }
}
