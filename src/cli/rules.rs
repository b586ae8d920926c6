//! `loyalty rules`: check an earning rules file, or evaluate an order with
//! it, offline, with the same code the service runs.

use std::io::Read;
use std::process::ExitCode;

use clap::{Args, Subcommand};

use crate::domain::Tier;
use crate::domain::earning::calendar::{format_time, parse_time};
use crate::domain::earning::{CampaignUsage, Order, RuleBook};
use crate::domain::orders::OrderAccrual;

/// What `loyalty rules` does.
#[derive(Debug, Subcommand)]
pub enum RulesCommand {
    /// Validate a rules file and print a summary of each version.
    Check(CheckArgs),
    /// Evaluate an order (JSON, from a file or stdin) and print its points and breakdown.
    Preview(PreviewArgs),
}

/// `loyalty rules check`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The rules file (YAML if it ends in .yaml or .yml, else JSON).
    pub file: String,
}

/// `loyalty rules preview`.
#[derive(Debug, Args)]
pub struct PreviewArgs {
    /// The rules file.
    #[arg(long, env = "LOYALTY_EARNING_RULES_FILE")]
    pub rules: String,
    /// The customer's tier.
    #[arg(long, default_value = "Bronze")]
    pub tier: String,
    /// The order as JSON (`occurred_at` as RFC 3339); `-` or absent: stdin.
    pub order: Option<String>,
}

fn load(path: &str) -> Result<RuleBook, String> {
    crate::config::earning::load(path).map(|b| (*b).clone()).map_err(|e| e.to_string())
}

impl RulesCommand {
    /// Runs the command.
    pub fn run(self) -> ExitCode {
        let result = match self {
            RulesCommand::Check(args) => check(&args),
            RulesCommand::Preview(args) => preview(&args),
        };
        match result {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        }
    }
}

fn check(args: &CheckArgs) -> Result<(), String> {
    let book = load(&args.file)?;
    for v in &book.versions {
        let r = &v.rules;
        println!("{} version {} from {} ({})", r.id, r.version, format_time(v.effective_from_ms), v.reference.checksum);
        let rates: Vec<String> = r.rates.iter().map(|(c, rate)| format!("{c} {}/{}", rate.points, rate.per)).collect();
        println!("  rates: {}; rounding: {:?}", rates.join(", "), r.rounding);
        println!(
            "  {} excluded SKUs, {} excluded categories, {} tier multipliers, {} campaigns",
            r.exclusions.skus.len(),
            r.exclusions.categories.len(),
            r.tier_multipliers.len(),
            r.campaigns.len()
        );
    }
    println!("ok: {} version(s)", book.versions.len());
    Ok(())
}

fn preview(args: &PreviewArgs) -> Result<(), String> {
    let book = load(&args.rules)?;
    let tier = Tier::ALL
        .into_iter()
        .find(|t| t.as_str().eq_ignore_ascii_case(&args.tier))
        .ok_or_else(|| format!("--tier: {:?} is not Bronze, Silver, Gold or Platinum", args.tier))?;
    let mut text = String::new();
    match args.order.as_deref() {
        None | Some("-") => std::io::stdin().read_to_string(&mut text).map(drop),
        Some(path) => std::fs::read_to_string(path).map(|t| text = t),
    }
    .map_err(|e| format!("cannot read the order: {e}"))?;
    let order = parse_order(&text)?;
    order.validate().map_err(|e| e.to_string())?;
    let version = book
        .effective_at(order.occurred_at_ms)
        .ok_or("order.occurred_at: is before every rule set version takes effect")?;
    let accrual = OrderAccrual::evaluate(&order, version).map_err(|e| e.to_string())?;
    let earned = accrual.earned(tier, &CampaignUsage::default(), order.occurred_at_ms).map_err(|e| e.to_string())?;
    println!("{}", serde_json::to_string_pretty(&earned).map_err(|e| e.to_string())?);
    Ok(())
}

/// An order as JSON, `occurred_at` written as RFC 3339 (or `occurred_at_ms`).
pub fn parse_order(text: &str) -> Result<Order, String> {
    let mut value: serde_json::Value = serde_json::from_str(text).map_err(|e| format!("order: {e}"))?;
    if let Some(object) = value.as_object_mut()
        && let Some(at) = object.remove("occurred_at")
    {
        let raw = at.as_str().unwrap_or_default();
        let ms = parse_time(raw).ok_or_else(|| format!("order.occurred_at: {raw:?} is not an RFC 3339 time"))?;
        object.insert("occurred_at_ms".into(), ms.into());
    }
    serde_json::from_value(value).map_err(|e| format!("order: {e}"))
}
