//! `loyalty accrue | redeem | summary | history | reverse | adjust`: call a
//! running service. Output is human-readable, or JSON with `--json`; a
//! failure prints the gRPC status and exits with its numeric code.

use std::process::ExitCode;

use serde_json::json;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};

use crate::grpc::pb::{self, loyalty_service_client::LoyaltyServiceClient};

/// Where the service is, and how to print.
#[derive(Debug, clap::Args)]
pub struct Target {
    /// Address of the loyalty gRPC API.
    #[arg(long, env = "LOYALTY_SERVER", default_value = "http://127.0.0.1:50051")]
    server: String,
    /// Print JSON for scripts.
    #[arg(long)]
    pub(super) json: bool,
    /// API key, sent as `authorization: Bearer <key>`.
    #[arg(long, env = "LOYALTY_API_KEY", hide_env_values = true)]
    api_key: Option<String>,
    /// CA certificate (PEM) to trust for an https:// server.
    #[arg(long, env = "LOYALTY_CA_CERT")]
    ca_cert: Option<std::path::PathBuf>,
    /// Client certificate and key (PEM) for a server that requires mutual TLS.
    #[arg(long, env = "LOYALTY_CLIENT_CERT", requires = "client_key")]
    client_cert: Option<std::path::PathBuf>,
    /// Key of --client-cert.
    #[arg(long, env = "LOYALTY_CLIENT_KEY", requires = "client_cert")]
    client_key: Option<std::path::PathBuf>,
}

/// Adds the API key, if any, to every call.
#[derive(Clone)]
pub struct ApiKeyHeader(Option<tonic::metadata::MetadataValue<tonic::metadata::Ascii>>);

impl tonic::service::Interceptor for ApiKeyHeader {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(value) = &self.0 {
            req.metadata_mut().insert("authorization", value.clone());
        }
        Ok(req)
    }
}

type Client = LoyaltyServiceClient<InterceptedService<Channel, ApiKeyHeader>>;

/// The account, idempotency key and amount of an accrual or redemption.
#[derive(Debug, clap::Args)]
pub struct EventArgs {
    #[arg(long)]
    customer: String,
    /// Idempotency key: reuse it to retry safely.
    #[arg(long)]
    event: String,
    #[arg(long)]
    points: i64,
}

/// Options of `loyalty accrue`.
#[derive(Debug, clap::Args)]
pub struct AccrueArgs {
    #[command(flatten)]
    event: EventArgs,
    #[arg(long, default_value = "")]
    reason: String,
    #[arg(long, default_value = "cli")]
    source: String,
    /// Days the points stay pending, instead of the program's period.
    #[arg(long)]
    pending_days: Option<i32>,
    /// Days from activation until they expire, instead of the program's.
    #[arg(long)]
    expires_in_days: Option<i32>,
    #[command(flatten)]
    target: Target,
}

/// Options of `loyalty redeem`.
#[derive(Debug, clap::Args)]
pub struct RedeemArgs {
    #[command(flatten)]
    event: EventArgs,
    #[arg(long, default_value = "")]
    reward: String,
    #[command(flatten)]
    target: Target,
}

/// Options of `loyalty summary`.
#[derive(Debug, clap::Args)]
pub struct SummaryArgs {
    #[arg(long)]
    customer: String,
    #[command(flatten)]
    target: Target,
}

pub(super) async fn connect(target: &Target) -> Result<Client, tonic::Status> {
    let server =
        if target.server.contains("://") { target.server.clone() } else { format!("http://{}", target.server) };
    let bad = |what: &str, e: &dyn std::fmt::Display| tonic::Status::invalid_argument(format!("{what}: {e}"));
    let mut endpoint = Channel::from_shared(server.clone()).map_err(|e| bad("--server", &e))?;
    if server.starts_with("https://") {
        let read = |p: &std::path::Path| std::fs::read(p).map_err(|e| bad(&p.display().to_string(), &e));
        let mut tls = ClientTlsConfig::new().with_enabled_roots();
        if let Some(ca) = &target.ca_cert {
            tls = tls.ca_certificate(Certificate::from_pem(read(ca)?));
        }
        if let (Some(cert), Some(key)) = (&target.client_cert, &target.client_key) {
            tls = tls.identity(Identity::from_pem(read(cert)?, read(key)?));
        }
        endpoint = endpoint.tls_config(tls).map_err(|e| bad("TLS", &e))?;
    }
    let channel = endpoint
        .connect()
        .await
        .map_err(|e| tonic::Status::unavailable(format!("cannot reach {}: {e}", target.server)))?;
    let header = match &target.api_key {
        Some(key) => Some(format!("Bearer {key}").parse().map_err(|_| bad("--api-key", &"not printable ASCII"))?),
        None => None,
    };
    Ok(LoyaltyServiceClient::with_interceptor(channel, ApiKeyHeader(header)))
}

/// Prints the outcome: `human` or `json` on success, the status on failure.
pub(super) fn report<T>(
    result: Result<T, tonic::Status>,
    as_json: bool,
    json: impl Fn(&T) -> serde_json::Value,
    human: impl Fn(&T) -> String,
) -> ExitCode {
    match result {
        Ok(v) if as_json => {
            println!("{}", json(&v));
            ExitCode::SUCCESS
        }
        Ok(v) => {
            println!("{}", human(&v));
            ExitCode::SUCCESS
        }
        Err(status) => {
            if as_json {
                eprintln!("{}", json!({"code": format!("{:?}", status.code()), "message": status.message()}));
            } else {
                eprintln!("error: {:?}: {}", status.code(), status.message());
            }
            // gRPC codes are 1..=16 for errors, so the exit code is never 0.
            ExitCode::from(status.code() as u8)
        }
    }
}

pub async fn accrue(args: AccrueArgs) -> ExitCode {
    let EventArgs { customer, event, points } = args.event;
    let request = pb::AccrueRequest {
        customer_id: customer.clone(),
        event_id: event.clone(),
        points,
        reason: args.reason,
        source: args.source,
        pending_days: args.pending_days,
        expires_in_days: args.expires_in_days,
        ..Default::default()
    };
    let result = async { Ok(connect(&args.target).await?.accrue(request).await?.into_inner()) }.await;
    report(
        result,
        args.target.json,
        |r| json!({"accepted": true, "customer_id": customer, "event_id": event, "points": points, "workflow_id": r.workflow_id}),
        |_| format!("accepted {points} points for {customer} (event {event})"),
    )
}

pub async fn redeem(args: RedeemArgs) -> ExitCode {
    let EventArgs { customer, event, points } = args.event;
    let request = pb::RedeemRequest { customer_id: customer.clone(), event_id: event, points, reward: args.reward };
    let result = async { Ok(connect(&args.target).await?.redeem(request).await?.into_inner()) }.await;
    report(
        result,
        args.target.json,
        |r| json!({"redeemed": r.redeemed, "remaining_balance": r.remaining_balance, "reward": r.reward}),
        |r| format!("redeemed {} points for {:?}; {} has {} left", r.redeemed, r.reward, customer, r.remaining_balance),
    )
}

pub async fn summary(args: SummaryArgs) -> ExitCode {
    let request = pb::GetSummaryRequest { customer_id: args.customer };
    let result = async { Ok(connect(&args.target).await?.get_summary(request).await?.into_inner()) }.await;
    report(
        result,
        args.target.json,
        |s| {
            json!({"customer_id": s.customer_id, "points_balance": s.points_balance, "lifetime_points": s.lifetime_points,
                   "tier": s.tier, "is_active": s.is_active, "points_to_next_tier": s.points_to_next_tier,
                   "unapplied_points": s.unapplied_points, "pending_points": s.pending_points,
                   "held_points": s.held_points, "next_expiry_at": s.next_expiry_at.as_ref().map(ToString::to_string),
                   "next_expiry_points": s.next_expiry_points, "expiring_soon_points": s.expiring_soon_points})
        },
        |s| {
            let mut lines = format!(
                "customer {}\n  balance   {}{}\n  lifetime  {}\n  tier      {}{}\n  status    {}",
                s.customer_id,
                s.points_balance,
                if s.unapplied_points > 0 {
                    format!(" (+{} acknowledged, waiting for the ledger check)", s.unapplied_points)
                } else {
                    String::new()
                },
                s.lifetime_points,
                s.tier,
                if s.points_to_next_tier > 0 {
                    format!(" ({} to next tier)", s.points_to_next_tier)
                } else {
                    String::new()
                },
                if s.is_active { "active" } else { "closed" }
            );
            if s.pending_points > 0 {
                lines.push_str(&format!("\n  pending   {} (not spendable yet)", s.pending_points));
            }
            if s.held_points > 0 {
                lines.push_str(&format!("\n  held      {} (set aside by holds)", s.held_points));
            }
            if let Some(at) = &s.next_expiry_at {
                lines.push_str(&format!(
                    "\n  expiring  {} at {at}; {} within 30 days",
                    s.next_expiry_points, s.expiring_soon_points
                ));
            }
            lines
        },
    )
}

/// The paging options of the listing commands.
#[derive(Debug, clap::Args)]
pub(super) struct Paging {
    /// Items per page (1 to 500).
    #[arg(long, default_value_t = 50)]
    pub(super) page_size: i32,
    /// Continue from a previous page's token.
    #[arg(long, default_value = "")]
    page_token: String,
    /// Print every page, not just one.
    #[arg(long)]
    all: bool,
}

/// Fetches the page `paging` names and, with `--all`, every page after it:
/// the items and the token of the page after the last one fetched.
pub(super) async fn pages<T, Fut>(
    paging: &Paging,
    mut fetch: impl FnMut(String) -> Fut,
) -> Result<(Vec<T>, String), tonic::Status>
where
    Fut: std::future::Future<Output = Result<(Vec<T>, String), tonic::Status>>,
{
    let (all, mut token) = (paging.all, paging.page_token.clone());
    let mut items = Vec::new();
    loop {
        let (page, next) = fetch(token).await?;
        items.extend(page);
        if !all || next.is_empty() {
            return Ok((items, next));
        }
        token = next;
    }
}
