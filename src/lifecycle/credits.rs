//! What a render costs and whether its account can pay: the one place prices,
//! charges and balances are computed, whichever home charges.

use crate::resources::{Pricing, RenderAccountSpec};

/// What a render costs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Price {
    /// `pageCount × creditsPerPage`.
    pub base_credits: i64,
    /// Extra credits per started MiB above the size threshold.
    pub size_extra: i64,
    /// The sum: what is charged.
    pub credits_used: i64,
}

const MIB: i64 = 1024 * 1024;

/// The price of a successful render. Previews are free.
pub fn price(page_count: i64, total_bytes: i64, preview: bool, pricing: &Pricing) -> Price {
    if preview {
        return Price::default();
    }
    let base_credits = page_count.max(0).saturating_mul(pricing.credits_per_page.max(0));
    let above = total_bytes.saturating_sub(pricing.size_threshold_bytes.max(0));
    let started_mib = if above > 0 { (above + MIB - 1) / MIB } else { 0 };
    let size_extra = started_mib.saturating_mul(pricing.extra_credits_per_started_mib.max(0));
    Price { base_credits, size_extra, credits_used: base_credits.saturating_add(size_extra) }
}

/// The result of charging an account for a render.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Charge {
    /// Charged; the balance afterwards (`None` for unlimited accounts).
    Charged {
        /// Credits left after the charge.
        credits_remaining: Option<i64>,
    },
    /// Not enough credits: the job waits in `Blocked`.
    Insufficient {
        /// Credits left now.
        credits_remaining: i64,
    },
}

/// Charge `price` against an account with `granted` credits (`None` = unlimited) of
/// which `used` are spent.
pub fn charge(granted: Option<i64>, used: i64, price: Price) -> Charge {
    match granted {
        None => Charge::Charged { credits_remaining: None },
        Some(granted) => {
            let remaining = granted - used;
            // A free render (a preview) goes through even on an overdrawn account.
            if price.credits_used > 0 && price.credits_used > remaining {
                Charge::Insufficient { credits_remaining: remaining }
            } else {
                Charge::Charged { credits_remaining: Some(remaining - price.credits_used) }
            }
        }
    }
}

/// What a blocked job says about its wait: the same words in status and in a refused
/// resume, whichever home wrote them.
pub fn insufficient_credits_message(price: Price, credits_remaining: i64) -> String {
    format!(
        "the render costs {} credits and the account has {credits_remaining} left; it continues when credits are added",
        price.credits_used
    )
}

/// Whether a job that ended in `phase` keeps its charge: only a success is paid for;
/// a charge taken for any other ending is given back.
pub fn keeps_charge(phase: crate::resources::Phase) -> bool {
    phase == crate::resources::Phase::Succeeded
}

/// What an account has left: `None` for an unlimited account.
pub fn credits_remaining(account: &RenderAccountSpec, used: i64) -> Option<i64> {
    account.credits.map(|granted| granted - used)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn price_is_pages_plus_started_mib_above_threshold() {
        let pricing = Pricing { credits_per_page: 1, size_threshold_bytes: MIB, extra_credits_per_started_mib: 2 };
        assert_eq!(price(3, 68_699, false, &pricing), Price { base_credits: 3, size_extra: 0, credits_used: 3 });
        assert_eq!(price(3, MIB, false, &pricing).size_extra, 0);
        assert_eq!(price(3, MIB + 1, false, &pricing).size_extra, 2);
        assert_eq!(price(3, 2 * MIB, false, &pricing).size_extra, 2);
        assert_eq!(price(3, 2 * MIB + 1, false, &pricing), Price { base_credits: 3, size_extra: 4, credits_used: 7 });
        let per_page = Pricing { credits_per_page: 5, ..pricing };
        assert_eq!(price(4, 10, false, &per_page).credits_used, 20);
    }

    #[test]
    fn previews_are_free() {
        let pricing = Pricing { credits_per_page: 3, size_threshold_bytes: 0, extra_credits_per_started_mib: 9 };
        assert_eq!(price(10, 50 * MIB, true, &pricing), Price::default());
    }

    #[test]
    fn charges_within_the_balance_and_blocks_beyond_it() {
        let three = Price { base_credits: 3, size_extra: 0, credits_used: 3 };
        assert_eq!(charge(Some(10), 5, three), Charge::Charged { credits_remaining: Some(2) });
        assert_eq!(charge(Some(10), 7, three), Charge::Charged { credits_remaining: Some(0) });
        assert_eq!(charge(Some(10), 8, three), Charge::Insufficient { credits_remaining: 2 });
        assert_eq!(charge(None, 1_000_000, three), Charge::Charged { credits_remaining: None });
        assert_eq!(charge(Some(0), 0, Price::default()), Charge::Charged { credits_remaining: Some(0) });
        // An account granted less than it already spent still renders free previews.
        assert_eq!(charge(Some(5), 8, Price::default()), Charge::Charged { credits_remaining: Some(-3) });
    }
}
