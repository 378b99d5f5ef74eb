//! `folio accounts`: the standalone home's RenderAccounts, read and changed straight
//! on the data folder, while `folio serve` runs or not. A running server reads the
//! account from the database at every request and charge, so a change counts at once;
//! a larger grant settles the jobs the old one blocked, here and now.

use std::path::Path;
use std::sync::Arc;

use super::Standalone;
use super::store;
use crate::lifecycle::Phase;
use crate::port::JobFilter;
use crate::resources::{RenderAccount, RenderAccountStatus, default_account};

/// What `folio accounts set` and `grant` change; `None` leaves a setting as it is.
#[derive(Clone, Debug, Default)]
pub struct AccountChange {
    /// Credits granted: a number, or `Some(None)` for unlimited.
    pub credits: Option<Option<i64>>,
    /// Credits added to the grant.
    pub grant: Option<i64>,
    /// `pricing.creditsPerPage`.
    pub credits_per_page: Option<i64>,
    /// `pricing.sizeThresholdBytes`.
    pub size_threshold_bytes: Option<i64>,
    /// `pricing.extraCreditsPerStartedMib`.
    pub extra_credits_per_started_mib: Option<i64>,
    /// `retention.defaultTtlSeconds`.
    pub default_ttl_seconds: Option<i64>,
    /// `retention.maxTtlSeconds`.
    pub max_ttl_seconds: Option<i64>,
    /// `retention.previewTtlSeconds`.
    pub preview_ttl_seconds: Option<i64>,
    /// `maxConcurrentRenders`: a number, or `Some(None)` for the home's default share.
    pub max_concurrent_renders: Option<Option<i32>>,
}

impl AccountChange {
    /// The account with the change made, or why it cannot be.
    fn applied_to(&self, mut account: RenderAccount) -> anyhow::Result<RenderAccount> {
        let spec = &mut account.spec;
        if let Some(credits) = self.credits {
            spec.credits = credits;
        }
        if let Some(more) = self.grant {
            let Some(credits) = spec.credits else {
                anyhow::bail!(
                    "the account has unlimited credits; give it a number with `folio accounts set --credits N`"
                )
            };
            spec.credits = Some(credits.checked_add(more).ok_or_else(|| anyhow::anyhow!("--credits: too many"))?);
        }
        let pricing = &mut spec.pricing;
        set(&mut pricing.credits_per_page, self.credits_per_page);
        set(&mut pricing.size_threshold_bytes, self.size_threshold_bytes);
        set(&mut pricing.extra_credits_per_started_mib, self.extra_credits_per_started_mib);
        let retention = &mut spec.retention;
        set(&mut retention.default_ttl_seconds, self.default_ttl_seconds);
        set(&mut retention.max_ttl_seconds, self.max_ttl_seconds);
        set(&mut retention.preview_ttl_seconds, self.preview_ttl_seconds);
        if retention.default_ttl_seconds > retention.max_ttl_seconds {
            anyhow::bail!(
                "--default-ttl-seconds {} is longer than --max-ttl-seconds {}",
                retention.default_ttl_seconds,
                retention.max_ttl_seconds
            );
        }
        if let Some(cap) = self.max_concurrent_renders {
            spec.max_concurrent_renders = cap;
        }
        Ok(account)
    }
}

fn set(setting: &mut i64, value: Option<i64>) {
    if let Some(value) = value {
        *setting = value;
    }
}

/// `folio accounts show`: `tenant`'s account as the API answers it (folio's defaults
/// when none was applied), with its balance and blocked jobs.
pub fn show_account(data_dir: &Path, tenant: &str) -> anyhow::Result<RenderAccount> {
    let store = store::Store::open(&existing_database(data_dir)?)?;
    Ok(store.read(|c| account_now(c, tenant))?)
}

/// The database of the server whose data folder is `data_dir`; an error when there is
/// none, so that a wrong folder does not get a new, empty one.
fn existing_database(data_dir: &Path) -> anyhow::Result<std::path::PathBuf> {
    let database = data_dir.join("folio.db");
    if !database.is_file() {
        anyhow::bail!(
            "no database at {}: give --data-dir (FOLIO_DATA_DIR) the data folder of folio serve",
            database.display()
        );
    }
    Ok(database)
}

/// `folio accounts set` and `grant`: change `tenant`'s account, keeping what it spent,
/// and settle the jobs it blocked that the new terms let through; the account after,
/// and how many jobs were settled.
pub fn change_account(data_dir: &Path, tenant: &str, change: &AccountChange) -> anyhow::Result<(RenderAccount, usize)> {
    if !crate::http::is_tenant_name(tenant) {
        anyhow::bail!(
            "--tenant {tenant:?} must be 1 to 63 lowercase letters, digits or '-' (a Kubernetes namespace name)"
        );
    }
    existing_database(data_dir)?;
    // Opened beside a running server: the outputs folder is left as it is.
    let home = Standalone::open(data_dir, String::new(), Arc::default())?;
    // Read and written in one transaction: a charge made meanwhile is not lost.
    home.store.write(|tx| {
        let stored = store::load_account(tx, tenant)?.unwrap_or_else(|| default_account(tenant));
        let spent = stored.status.as_ref().map_or(0, |s| s.credits_used);
        let mut changed = match change.applied_to(stored) {
            Ok(changed) => changed,
            Err(refused) => return Ok(Err(refused)),
        };
        changed.status = Some(RenderAccountStatus { credits_used: spent, ..Default::default() });
        store::save_account(tx, &changed).map(Ok)
    })??;
    let settled = home.settle_blocked(tenant)?;
    Ok((show_account(data_dir, tenant)?, settled))
}

/// `tenant`'s account as stored (or folio's defaults), with its balance and the number
/// of jobs it blocks: what `GET /v1/account` and `folio accounts show` answer.
pub(super) fn account_now(conn: &rusqlite::Connection, tenant: &str) -> Result<RenderAccount, store::StoreError> {
    let account = store::load_account(conn, tenant)?;
    let filter = JobFilter { phase: Some(Phase::Blocked), ..Default::default() };
    let (_, blocked) = store::list_jobs(conn, tenant, &filter, 0, 0)?;
    let mut account = account.unwrap_or_else(|| default_account(tenant));
    let status = account.status.get_or_insert_with(Default::default);
    status.blocked_jobs = blocked;
    status.credits_remaining = crate::lifecycle::credits_remaining(&account.spec, status.credits_used);
    Ok(account)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_grant_adds_to_the_credits_and_keeps_every_other_term() {
        let mut account = default_account("acme");
        account.spec.credits = Some(10);
        account.spec.pricing.credits_per_page = 3;
        let change = AccountChange { grant: Some(5), default_ttl_seconds: Some(60), ..Default::default() };
        let changed = change.applied_to(account).unwrap();
        assert_eq!((changed.spec.credits, changed.spec.pricing.credits_per_page), (Some(15), 3));
        assert_eq!(changed.spec.retention.default_ttl_seconds, 60);
    }

    #[test]
    fn changes_that_make_no_sense_are_refused_with_the_flag_named() {
        let unlimited = default_account("acme");
        let grant = AccountChange { grant: Some(5), ..Default::default() };
        assert!(grant.applied_to(unlimited.clone()).unwrap_err().to_string().contains("unlimited credits"));
        let upside_down =
            AccountChange { default_ttl_seconds: Some(100), max_ttl_seconds: Some(10), ..Default::default() };
        let err = upside_down.applied_to(unlimited).unwrap_err().to_string();
        assert!(err.contains("--default-ttl-seconds 100") && err.contains("--max-ttl-seconds 10"), "{err}");
    }
}
