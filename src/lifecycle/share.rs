//! Fair share of the renderers between tenants: which tenant's job starts next, and
//! how many renders a tenant may run at once. One queue for all tenants let one
//! tenant's flood hold every other tenant's jobs for as long as the flood lasted.

/// A tenant with jobs waiting to start.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Waiting<T> {
    /// Who it is (a tenant name, or anything the home knows it by).
    pub tenant: T,
    /// Renders it runs now.
    pub running: usize,
    /// Its account's `maxConcurrentRenders`, if set.
    pub cap: Option<i32>,
    /// When its oldest waiting job was made (any order-preserving number).
    pub oldest: i64,
}

/// How many renders a tenant may run at once on `workers` renderers shared with
/// `others` other tenants: its account's cap if set; else every worker but one while
/// other tenants exist, so that a job of theirs never waits for a whole render of
/// this tenant's; else every worker. A tenant may always run one.
pub fn renders_allowed(cap: Option<i32>, workers: usize, others: usize) -> usize {
    match cap {
        Some(cap) => self::cap(cap),
        None if others > 0 => workers.saturating_sub(1).max(1),
        None => workers.max(1),
    }
}

/// The renders an account's `maxConcurrentRenders` allows (at least one).
pub fn cap(max_concurrent_renders: i32) -> usize {
    usize::try_from(max_concurrent_renders).unwrap_or(0).max(1)
}

/// The tenant whose job starts next: among those under their share, the one running
/// the fewest renders, and of those the one waiting longest (round-robin as renders
/// start and end). None when every waiting tenant is at its share.
pub fn next_tenant<T>(waiting: Vec<Waiting<T>>, workers: usize, tenants: usize) -> Option<T> {
    let others = tenants.saturating_sub(1);
    waiting
        .into_iter()
        .filter(|w| w.running < renders_allowed(w.cap, workers, others))
        .min_by_key(|w| (w.running, w.oldest))
        .map(|w| w.tenant)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn waiting(tenant: &'static str, running: usize, cap: Option<i32>, oldest: i64) -> Waiting<&'static str> {
        Waiting { tenant, running, cap, oldest }
    }

    #[test]
    fn a_lone_tenant_uses_every_worker_and_one_among_others_leaves_one() {
        assert_eq!(renders_allowed(None, 4, 0), 4);
        assert_eq!(renders_allowed(None, 4, 1), 3);
        assert_eq!(renders_allowed(None, 1, 5), 1, "one worker is still used");
        assert_eq!(renders_allowed(Some(2), 4, 0), 2);
        assert_eq!(renders_allowed(Some(9), 4, 3), 9, "an explicit cap may grant every worker");
    }

    #[test]
    fn the_tenant_running_fewest_goes_next_then_the_longest_waiting() {
        let flooder = waiting("a", 1, None, 1);
        let newcomer = waiting("b", 0, None, 50);
        assert_eq!(next_tenant(vec![flooder.clone(), newcomer.clone()], 4, 2), Some("b"));
        let also_idle = waiting("c", 0, None, 10);
        assert_eq!(next_tenant(vec![flooder, newcomer, also_idle], 4, 3), Some("c"));
    }

    #[test]
    fn a_tenant_at_its_share_waits_even_with_workers_free() {
        assert_eq!(next_tenant(vec![waiting("a", 1, Some(1), 1)], 4, 1), None);
        assert_eq!(next_tenant(vec![waiting("a", 3, None, 1)], 4, 2), None, "one worker stays for others");
        assert_eq!(next_tenant(vec![waiting("a", 3, None, 1)], 4, 1), Some("a"), "alone it takes the last");
    }
}
