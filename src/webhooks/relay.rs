//! The relay: leases accounts with undelivered events and pushes each
//! endpoint's share in order.
//!
//! Every replica that runs the worker runs one. An account is worked by one
//! relay at a time (its outbox lease); inside it, endpoints are worked side
//! by side, so a hanging endpoint costs the others nothing. A cursor moves
//! after each 2xx, so a crash resends at most the events in flight (at least
//! once); a relay stops before its lease runs out, so outside a crash no
//! two relays send the same account's events.

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::{Notify, watch};
use tokio::task::JoinSet;

use super::sign::signature_header;
use super::{Endpoint, WebhookConfig, retry_delay};
use crate::clock::now_ms;
use crate::ledger::{Failure, Ledger, LedgerError, StoredEvent};
use crate::metrics::Metrics;

/// Accounts one relay works at once.
const MAX_ACCOUNTS_IN_FLIGHT: usize = 64;
/// Events read per page of an account's stream.
const PAGE: u32 = 100;
/// How often an idle relay looks for work another replica recorded.
const POLL: Duration = Duration::from_millis(250);
/// How often the backlog gauges are refreshed.
const GAUGES_EVERY: Duration = Duration::from_secs(10);
/// How much of an error body is kept for operators.
const ERROR_BYTES: usize = 200;

/// A relay, ready to run.
pub struct Relay {
    shared: Arc<Shared>,
    wake: Arc<Notify>,
}

struct Shared {
    ledger: Ledger,
    config: WebhookConfig,
    /// Each endpoint with when it was first configured.
    endpoints: Vec<(Endpoint, i64)>,
    http: reqwest::Client,
    owner: String,
    metrics: Metrics,
    random: std::collections::hash_map::RandomState,
    /// Set at shutdown: deliveries hand their accounts back before the next send.
    stopping: AtomicBool,
}

impl Relay {
    /// A relay over `ledger` for `config`'s endpoints.
    pub fn new(ledger: Ledger, config: WebhookConfig, metrics: Metrics) -> Result<Self, String> {
        let http = reqwest::Client::builder()
            .timeout(config.timeout)
            .connect_timeout(config.timeout.min(Duration::from_secs(5)))
            // A redirect to another host would carry the signed event there.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("loyalty-webhooks/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| e.to_string())?;
        let random = std::collections::hash_map::RandomState::new();
        let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "relay".into());
        let owner = format!("{host}-{}-{:08x}", std::process::id(), random.hash_one(now_ms()) as u32);
        let stopping = AtomicBool::new(false);
        let shared = Arc::new(Shared { ledger, config, endpoints: vec![], http, owner, metrics, random, stopping });
        let wake = shared.ledger.events_recorded();
        Ok(Self { shared, wake })
    }

    /// Delivers until `stop` turns true, then lets in-flight deliveries
    /// finish (at most one timeout) so their accounts are handed back.
    pub async fn run(mut self, mut stop: watch::Receiver<bool>) {
        // Registration decides where new endpoints start; retry until the
        // ledger answers.
        let mut endpoints = Vec::new();
        for endpoint in &self.shared.config.endpoints {
            loop {
                match self.shared.ledger.register_endpoint(&endpoint.name, now_ms()).await {
                    Ok(first_seen) => break endpoints.push((endpoint.clone(), first_seen)),
                    Err(e) => tracing::warn!(endpoint = %endpoint.name, error = %e, "cannot register webhook endpoint"),
                }
                tokio::select! {
                    _ = stop.changed() => return,
                    () = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
            }
        }
        Arc::get_mut(&mut self.shared).expect("not shared yet").endpoints = endpoints;
        let shared = self.shared;
        tracing::info!(owner = %shared.owner, endpoints = shared.endpoints.len(), "webhook relay started");
        let mut working: JoinSet<()> = JoinSet::new();
        // Accounts in flight by task, so a task that panics frees its account.
        let mut in_flight: HashMap<tokio::task::Id, String> = HashMap::new();
        let mut gauges_at = Instant::now();
        while !*stop.borrow() {
            let room = MAX_ACCOUNTS_IN_FLIGHT - working.len();
            if room > 0 {
                let now = now_ms();
                let lease_until = now + shared.config.lease.as_millis() as i64;
                let claim = shared.ledger.claim_outbox(&shared.owner, now, lease_until, room as u32);
                match bounded(claim).await {
                    Ok(claimed) => {
                        for (customer, head) in claimed {
                            if !in_flight.values().any(|c| *c == customer) {
                                let task = working.spawn(deliver_account(shared.clone(), customer.clone(), head));
                                in_flight.insert(task.id(), customer);
                            }
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "webhook relay cannot read the outbox"),
                }
            }
            if gauges_at.elapsed() >= GAUGES_EVERY {
                gauges_at = Instant::now();
                shared.record_backlog().await;
            }
            tokio::select! {
                Some(done) = working.join_next_with_id() => {
                    let id = match done {
                        Ok((id, ())) => id,
                        Err(e) => {
                            tracing::error!(error = %e, "a webhook delivery task failed; its account is retried");
                            e.id()
                        }
                    };
                    in_flight.remove(&id);
                }
                () = self.wake.notified() => {}
                () = tokio::time::sleep(POLL) => {}
                _ = stop.changed() => {}
            }
        }
        shared.stopping.store(true, Ordering::SeqCst);
        let finish = async { while working.join_next().await.is_some() {} };
        let _ = tokio::time::timeout(shared.config.timeout + Duration::from_secs(1), finish).await;
        tracing::info!("webhook relay stopped");
    }
}

impl Shared {
    async fn record_backlog(&self) {
        for (endpoint, _) in &self.endpoints {
            match bounded(self.ledger.backlog(&endpoint.name)).await {
                Ok((oldest, parked)) => {
                    let age = oldest.map_or(0, |at| (now_ms() - at).max(0));
                    self.metrics.webhook_backlog(&endpoint.name, Duration::from_millis(age as u64), parked);
                }
                Err(e) => tracing::warn!(endpoint = %endpoint.name, error = %e, "cannot measure the webhook backlog"),
            }
        }
    }

    fn jitter(&self, customer: &str, attempts: u32) -> f64 {
        (self.random.hash_one((customer, attempts, now_ms())) % 10_000) as f64 / 10_000.0
    }
}

/// Works one leased account: every endpoint side by side, then hands the
/// account back (done, or due again at the earliest retry).
async fn deliver_account(shared: Arc<Shared>, customer: String, head: u64) {
    // Stop sending while a send that starts now still ends inside the lease.
    let deadline = Instant::now() + shared.config.lease.saturating_sub(shared.config.timeout * 2);
    let outcomes = futures::future::join_all(
        shared
            .endpoints
            .iter()
            .map(|(endpoint, first_seen)| deliver_endpoint(&shared, endpoint, *first_seen, &customer, deadline)),
    )
    .await;
    let mut next: Option<i64> = None;
    for outcome in outcomes {
        let due = match outcome {
            Ok(due) => due,
            Err(e) => {
                tracing::warn!(customer, error = %e, "webhook delivery cannot use the ledger; retrying");
                Some(now_ms() + 1_000)
            }
        };
        if let Some(at) = due {
            next = Some(next.map_or(at, |n| n.min(at)));
        }
    }
    if let Err(e) = shared.ledger.release_outbox(&customer, &shared.owner, head, next).await {
        // The lease runs out by itself.
        tracing::warn!(customer, error = %e, "cannot hand a webhook account back");
    }
}

/// Pushes the account's events the endpoint has not received, in order.
/// `None`: nothing left (or parked); `Some(t)`: due again at `t`.
async fn deliver_endpoint(
    shared: &Shared,
    endpoint: &Endpoint,
    first_seen: i64,
    customer: &str,
    deadline: Instant,
) -> Result<Option<i64>, LedgerError> {
    let ledger = &shared.ledger;
    let cursor = ledger.cursor(&endpoint.name, first_seen, customer).await?;
    if cursor.parked {
        return Ok(None);
    }
    if cursor.next_attempt_ms > now_ms() {
        return Ok(Some(cursor.next_attempt_ms));
    }
    let (mut saved, mut at) = (cursor.delivered_seq, cursor.delivered_seq);
    // Saves the skipped (unwanted) events' place; false: a redelivery
    // changed the cursor meanwhile, so this run stops and the next reads it.
    let save = async |at: u64, saved: u64| -> Result<bool, LedgerError> {
        Ok(at <= saved || ledger.delivered(&endpoint.name, customer, &cursor, at).await?)
    };
    loop {
        let events = ledger.events(customer, at, PAGE, false).await?;
        if events.is_empty() {
            return Ok(if save(at, saved).await? { None } else { Some(0) });
        }
        for event in events {
            if !endpoint.wants(&event.event_type) {
                at = event.seq;
                continue;
            }
            if Instant::now() >= deadline || shared.stopping.load(Ordering::SeqCst) {
                save(at, saved).await?;
                return Ok(Some(0));
            }
            match send(shared, endpoint, &event).await {
                Ok(()) => {
                    shared.metrics.webhook(&endpoint.name, "delivered");
                    if !ledger.delivered(&endpoint.name, customer, &cursor, event.seq).await? {
                        return Ok(Some(0));
                    }
                    (at, saved) = (event.seq, event.seq);
                }
                Err(why) => {
                    if !save(at, saved).await? {
                        return Ok(Some(0));
                    }
                    let now = now_ms();
                    // A cursor that moved since this run of failures began has a fresh run.
                    let failing_since = if at == cursor.delivered_seq { cursor.failing_since_ms } else { None };
                    let attempts = if failing_since.is_some() { cursor.attempts + 1 } else { 1 };
                    let failing_since = failing_since.unwrap_or(now);
                    let park = now - failing_since >= shared.config.retry_for.as_millis() as i64;
                    let wait = retry_delay(attempts - 1, shared.config.max_backoff, shared.jitter(customer, attempts));
                    let failure = Failure {
                        attempts,
                        next_attempt_ms: now + wait.as_millis() as i64,
                        failing_since_ms: failing_since,
                        park,
                        error: why.clone(),
                    };
                    ledger.failed(&endpoint.name, customer, &cursor, &failure, now).await?;
                    if park {
                        tracing::error!(endpoint = %endpoint.name, customer, event = %event.event_id, error = %why,
                            "webhook retries exhausted; the account's events for this endpoint are parked");
                        shared.metrics.webhook(&endpoint.name, "parked");
                        return Ok(None);
                    }
                    tracing::warn!(endpoint = %endpoint.name, customer, event = %event.event_id, attempts,
                        retry_in = ?wait, error = %why, "webhook delivery failed");
                    shared.metrics.webhook(&endpoint.name, "failed");
                    return Ok(Some(failure.next_attempt_ms));
                }
            }
        }
    }
}

/// One signed POST; `Err` says why it did not count as delivered.
async fn send(shared: &Shared, endpoint: &Endpoint, event: &StoredEvent) -> Result<(), String> {
    let timestamp = now_ms() / 1_000;
    let signature = signature_header(&endpoint.secrets, &event.event_id, timestamp, &event.body);
    let response = shared
        .http
        .post(&endpoint.url)
        .header("content-type", "application/json")
        .header("webhook-id", &event.event_id)
        .header("webhook-timestamp", timestamp.to_string())
        .header("webhook-signature", signature)
        .body(event.body.clone())
        .send()
        .await
        .map_err(|e| describe(&e))?;
    let mut response = response;
    let status = response.status();
    if status.is_success() {
        // The body is not read: a gigantic answer costs nothing.
        return Ok(());
    }
    if status.is_redirection() {
        let to = response.headers().get("location").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
        return Err(format!("HTTP {status}: redirects are not followed ({to})"));
    }
    // A little of the body helps the operator; never more than that.
    let mut reason = format!("HTTP {status}");
    if let Ok(Ok(Some(chunk))) = tokio::time::timeout(Duration::from_secs(1), response.chunk()).await {
        let text = String::from_utf8_lossy(&chunk[..chunk.len().min(ERROR_BYTES)]).trim().to_owned();
        if !text.is_empty() {
            reason = format!("{reason}: {text}");
        }
    }
    Err(reason)
}

fn describe(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "no answer within the timeout".into()
    } else if e.is_connect() {
        format!("cannot connect: {}", root_cause(e))
    } else {
        root_cause(e)
    }
}

fn root_cause(e: &dyn std::error::Error) -> String {
    let mut cause = e;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}

/// How long one of the relay's outbox reads may take: a call stuck on a
/// connection that went dead would stop every delivery until a restart.
const LEDGER_CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// `call`, failed with [`LedgerError::TimedOut`] past [`LEDGER_CALL_TIMEOUT`].
async fn bounded<T>(call: impl std::future::Future<Output = Result<T, LedgerError>>) -> Result<T, LedgerError> {
    tokio::time::timeout(LEDGER_CALL_TIMEOUT, call).await.unwrap_or(Err(LedgerError::TimedOut(LEDGER_CALL_TIMEOUT)))
}
