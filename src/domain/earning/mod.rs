//! Earning rules: points computed from an order by a versioned rule set.
//! Pure: the API evaluates (`evaluate`), the account settles (`settle`)
//! when it decides, and the preview runs both; nothing here reads a file
//! or a clock.
//!
//! Leaves first: `exact` (fixed-point points, rounding), `calendar` (UTC
//! dates), `order`, `rules` (the file format, checked), `evaluate`,
//! `settle` (per-customer caps, rounding once), `refund` (line returns).

pub mod calendar;
pub mod evaluate;
pub mod exact;
pub mod order;
pub mod refund;
pub mod rules;
pub mod settle;

#[cfg(test)]
mod examples;
#[cfg(test)]
mod properties;

pub use evaluate::{CampaignResult, CapRule, CapWindow, Evaluation, LinePoints, evaluate};
pub use exact::{Exact, Factor, Rounding};
pub use order::{Order, OrderLine, Tender};
pub use refund::{ReturnedLine, check_lines};
pub use rules::{RuleBook, RuleError, RuleRef, RuleSet, RulesFile, Version};
pub use settle::{CampaignUsage, Earned, settle};
