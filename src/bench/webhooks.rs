//! Webhook delivery under the mixed load: the benchmark is the endpoint
//! (`--webhook-port`, named in the service's webhooks file by
//! scripts/bench.sh) for the whole run, and reports, for the mixed phase,
//! how many deliveries per second reached it and how long each of the hot
//! account's events took from the account's decision to its arrival.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::stats::percentile;
pub use crate::clock::now_ms;
use crate::domain::events::parse_rfc3339;

/// How long without a new event of the account counts as caught up.
const QUIET: Duration = Duration::from_secs(3);
/// How long the catch-up may take at most.
const CATCH_UP_WITHIN: Duration = Duration::from_secs(120);

/// One delivery as received.
#[derive(Debug, Clone)]
struct Delivery {
    customer: String,
    sequence: u64,
    occurred_ms: i64,
    received_ms: i64,
}

/// The endpoint: answers every POST with 204 and remembers it.
pub struct Receiver {
    deliveries: Arc<Mutex<Vec<Delivery>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// What the mixed phase's deliveries showed.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Webhooks {
    /// Events of the mixed phase's account that arrived.
    pub events: usize,
    /// Deliveries (of every account) per second while the mixed phase ran.
    pub delivered_per_second: f64,
    /// From the account's decision to the event's arrival: median, ms.
    pub lag_p50_ms: f64,
    /// 99th percentile, ms.
    pub lag_p99_ms: f64,
    /// Slowest, ms.
    pub lag_max_ms: f64,
    /// Each event first arrived after the one before it.
    pub in_order: bool,
    /// From the phase's last call until the account's last event arrived.
    pub caught_up_seconds: f64,
}

impl Receiver {
    /// Listens on `port` of loopback.
    pub async fn listen(port: u16) -> Result<Self, String> {
        let listener = TcpListener::bind(("127.0.0.1", port)).await.map_err(|e| format!("webhook port {port}: {e}"))?;
        let deliveries = Arc::new(Mutex::new(Vec::new()));
        let kept = deliveries.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(serve(stream, kept.clone()));
            }
        });
        Ok(Self { deliveries, task })
    }

    /// The figures for `customer`'s events, the mixed phase having run from
    /// `from_ms` to `to_ms`; waits for its last events first.
    pub async fn measure(&self, customer: &str, from_ms: i64, to_ms: i64) -> Webhooks {
        let count = || self.deliveries.lock().unwrap().iter().filter(|d| d.customer == customer).count();
        let (started, mut seen, mut changed) = (Instant::now(), count(), Instant::now());
        while changed.elapsed() < QUIET && started.elapsed() < CATCH_UP_WITHIN {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let now = count();
            if now != seen {
                (seen, changed) = (now, Instant::now());
            }
        }
        let all = self.deliveries.lock().unwrap().clone();
        let in_window = all.iter().filter(|d| (from_ms..=to_ms).contains(&d.received_ms)).count();
        let mut next = 1;
        let mut in_order = true;
        let mut lags = Vec::new();
        let mut last_ms = to_ms;
        for d in all.iter().filter(|d| d.customer == customer) {
            if d.sequence == next {
                next += 1;
                lags.push(Duration::from_millis((d.received_ms - d.occurred_ms).max(0) as u64));
                last_ms = last_ms.max(d.received_ms);
            } else if d.sequence > next {
                in_order = false;
            }
        }
        let events = lags.len();
        lags.sort();
        let ms = |q: f64| percentile(&lags, q).as_secs_f64() * 1_000.0;
        Webhooks {
            events,
            delivered_per_second: in_window as f64 / ((to_ms - from_ms).max(1) as f64 / 1_000.0),
            lag_p50_ms: ms(0.50),
            lag_p99_ms: ms(0.99),
            lag_max_ms: lags.last().map_or(0.0, |d| d.as_secs_f64() * 1_000.0),
            in_order,
            caught_up_seconds: (last_ms - to_ms) as f64 / 1_000.0,
        }
    }
}

/// One keep-alive HTTP/1.1 connection: every request gets 204.
async fn serve(mut stream: TcpStream, deliveries: Arc<Mutex<Vec<Delivery>>>) {
    let mut buf = Vec::with_capacity(16 * 1024);
    let mut chunk = [0u8; 16 * 1024];
    loop {
        let head_end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
        let length = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse::<usize>().ok())
            .unwrap_or(0);
        while buf.len() < head_end + length {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        let received_ms = now_ms();
        if let Ok(body) = serde_json::from_slice::<serde_json::Value>(&buf[head_end..head_end + length]) {
            let delivery = Delivery {
                customer: body["customer_id"].as_str().unwrap_or_default().to_owned(),
                sequence: body["sequence"].as_u64().unwrap_or(0),
                occurred_ms: body["timestamp"].as_str().and_then(parse_rfc3339).unwrap_or(received_ms),
                received_ms,
            };
            deliveries.lock().unwrap().push(delivery);
        }
        buf.drain(..head_end + length);
        if stream.write_all(b"HTTP/1.1 204 No Content\r\n\r\n").await.is_err() {
            return;
        }
    }
}
