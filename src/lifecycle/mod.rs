//! The lifecycle core: every rule of a render job's life, as pure functions and data.
//! The homes (`folio run`, `folio serve`, the operator) observe and carry out; they
//! decide nothing of their own.
//!
//! - [`decide`]: the decision function: job + observation + account + clock → next
//!   status + effects.
//! - [`rules`]: the phase table, retries and backoff, deadlines, retention.
//! - [`credits`]: prices, charges and balances.
//! - [`status`]: how an outcome is written into a job's status and conditions.
//! - [`deliveries`]: the webhook queue's rules.
//! - [`share`]: fair share of the renderers between tenants.

pub mod credits;
pub mod decide;
pub mod deliveries;
pub mod rules;
pub mod share;
pub mod status;

pub use credits::{Charge, Price, charge, credits_remaining, insufficient_credits_message, price};
pub use decide::{Account, Decision, Effect, Observed, decide};
pub use rules::*;

pub use crate::resources::{ErrorCode, Phase};
