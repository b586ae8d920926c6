//! An order as checkout sends it: what the earning rules read. Amounts are
//! in the currency's minor units (cents); nothing is converted.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::domain::error::FieldError;
use crate::domain::ids::EventId;
use crate::domain::time::Millis;

/// Most lines an order may have.
pub const MAX_LINES: usize = 1_000;
/// Largest amount in minor units (a unit price, a discount, shipping, tax, a tender).
pub const MAX_AMOUNT: i64 = 1_000_000_000_000;
/// Largest quantity of one line.
pub const MAX_QUANTITY: i64 = 1_000_000;
/// Most categories per line and tenders per order.
pub const MAX_TAGS: usize = 32;

/// One line of an order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrderLine {
    /// The item's SKU.
    pub sku: String,
    /// The item's categories.
    #[serde(default)]
    pub categories: Vec<String>,
    /// Units bought, 1 or more.
    pub quantity: i64,
    /// Price of one unit before discounts.
    pub unit_price: i64,
    /// Discount on the whole line.
    #[serde(default)]
    pub discount: i64,
}

/// How part of an order was paid.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tender {
    /// The kind of tender (`card`, `gift_card`, `store_credit`, `points`, ...).
    #[serde(rename = "type")]
    pub kind: String,
    /// Amount paid with it.
    pub amount: i64,
}

/// An order the rules evaluate.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Order {
    /// The order's id (same alphabet as event ids).
    pub order_id: String,
    /// ISO 4217 code, e.g. `USD`.
    pub currency: String,
    /// Where it was placed (`web`, `app`, `store`, ...); may be empty.
    #[serde(default)]
    pub channel: String,
    /// When it was placed (Unix ms): picks the rule set version and the
    /// campaigns that apply.
    pub occurred_at_ms: Millis,
    /// Its lines, 1 to 1,000.
    pub lines: Vec<OrderLine>,
    /// Shipping charged.
    #[serde(default)]
    pub shipping: i64,
    /// Tax charged.
    #[serde(default)]
    pub tax: i64,
    /// How it was paid; absent: all with tenders that earn.
    #[serde(default)]
    pub tenders: Vec<Tender>,
}

fn tag(field: &'static str, at: &str, raw: &str, max: usize) -> Result<(), FieldError> {
    if raw.is_empty() || raw.len() > max || raw.chars().any(char::is_control) {
        return Err(FieldError::new(field, format!("{at}must be 1 to {max} characters without control characters")));
    }
    Ok(())
}

fn amount(field: &'static str, at: &str, value: i64) -> Result<(), FieldError> {
    if !(0..=MAX_AMOUNT).contains(&value) {
        return Err(FieldError::new(field, format!("{at}must be between 0 and {MAX_AMOUNT}, got {value}")));
    }
    Ok(())
}

impl Order {
    /// Checks every field, naming the first that fails (a line's index is
    /// in the reason).
    pub fn validate(&self) -> Result<(), FieldError> {
        EventId::parse(&self.order_id).map_err(|e| FieldError::new("order.order_id", e.reason))?;
        if self.currency.len() != 3 || !self.currency.chars().all(|c| c.is_ascii_uppercase()) {
            return Err(FieldError::new("order.currency", "must be an ISO 4217 code such as USD"));
        }
        if self.channel.len() > 64 || self.channel.chars().any(char::is_control) {
            return Err(FieldError::new("order.channel", "must be at most 64 characters without control characters"));
        }
        if self.occurred_at_ms <= 0 {
            return Err(FieldError::new("order.occurred_at", "is required"));
        }
        if self.lines.is_empty() || self.lines.len() > MAX_LINES {
            return Err(FieldError::new(
                "order.lines",
                format!("must have 1 to {MAX_LINES} lines, got {}", self.lines.len()),
            ));
        }
        for (i, line) in self.lines.iter().enumerate() {
            let at = format!("line {i}: ");
            tag("order.lines.sku", &at, &line.sku, 128)?;
            if line.categories.len() > MAX_TAGS {
                return Err(FieldError::new("order.lines.categories", format!("{at}at most {MAX_TAGS}")));
            }
            for c in &line.categories {
                tag("order.lines.categories", &at, c, 128)?;
            }
            if !(1..=MAX_QUANTITY).contains(&line.quantity) {
                return Err(FieldError::new(
                    "order.lines.quantity",
                    format!("{at}must be between 1 and {MAX_QUANTITY}, got {}", line.quantity),
                ));
            }
            amount("order.lines.unit_price", &at, line.unit_price)?;
            amount("order.lines.discount", &at, line.discount)?;
            if line.discount > line.gross() {
                return Err(FieldError::new("order.lines.discount", format!("{at}exceeds the line's price")));
            }
        }
        amount("order.shipping", "", self.shipping)?;
        amount("order.tax", "", self.tax)?;
        if self.tenders.len() > MAX_TAGS {
            return Err(FieldError::new("order.tenders", format!("at most {MAX_TAGS}")));
        }
        for (i, t) in self.tenders.iter().enumerate() {
            let at = format!("tender {i}: ");
            tag("order.tenders.type", &at, &t.kind, 64)?;
            amount("order.tenders.amount", &at, t.amount)?;
        }
        Ok(())
    }

    /// A digest of the order's content: a resent Accrue carries the same
    /// order, another order under a reused event id does not.
    pub fn digest(&self) -> String {
        let bytes = serde_json::to_vec(self).unwrap_or_default();
        let hash = Sha256::digest(&bytes);
        hash.iter().take(16).map(|b| format!("{b:02x}")).collect()
    }
}

impl OrderLine {
    /// Unit price times quantity (both bounded, so it cannot overflow).
    pub fn gross(&self) -> i64 {
        self.unit_price.saturating_mul(self.quantity)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A one-line USD order of `price` cents.
    pub(crate) fn order(price: i64) -> Order {
        Order {
            order_id: "o1".into(),
            currency: "USD".into(),
            channel: "web".into(),
            occurred_at_ms: 1_800_000_000_000,
            lines: vec![OrderLine { sku: "A".into(), categories: vec![], quantity: 1, unit_price: price, discount: 0 }],
            ..Order::default()
        }
    }

    #[test]
    fn every_order_field_is_checked_and_named() {
        assert!(order(100).validate().is_ok());
        type Spoil = fn(&mut Order);
        let cases: [(&str, Spoil); 10] = [
            ("order.order_id", |o| o.order_id = "a b".into()),
            ("order.currency", |o| o.currency = "usd".into()),
            ("order.occurred_at", |o| o.occurred_at_ms = 0),
            ("order.lines", |o| o.lines.clear()),
            ("order.lines", |o| o.lines = vec![o.lines[0].clone(); MAX_LINES + 1]),
            ("order.lines.quantity", |o| o.lines[0].quantity = -1),
            ("order.lines.unit_price", |o| o.lines[0].unit_price = -5),
            ("order.lines.unit_price", |o| o.lines[0].unit_price = MAX_AMOUNT + 1),
            ("order.lines.discount", |o| o.lines[0].discount = 101),
            ("order.tenders.amount", |o| o.tenders = vec![Tender { kind: "card".into(), amount: -1 }]),
        ];
        for (field, spoil) in cases {
            let mut bad = order(100);
            spoil(&mut bad);
            assert_eq!(bad.validate().unwrap_err().field, field);
        }
    }
}
