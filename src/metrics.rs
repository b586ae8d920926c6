//! Prometheus metrics: one endpoint (`LOYALTY_METRICS_ADDR`, `/metrics`) with
//! the service's own metrics next to the Temporal SDK's (worker slots,
//! workflow and activity outcomes, poll and request failures), all recorded
//! through the SDK's meter so they share one registry and one scrape.
//!
//! Ours: `loyalty_rpc_requests_total{method,status}`,
//! `loyalty_rpc_duration_seconds{method,status}` (histogram) and
//! `loyalty_ledger_entries_total{kind,outcome,writer}` (accruals, redemptions,
//! reversals and adjustments the ledger applied, or recognised as resends),
//! `loyalty_webhook_deliveries_total{endpoint,outcome}`,
//! `loyalty_webhook_oldest_undelivered_seconds{endpoint}` and
//! `loyalty_webhook_parked_accounts{endpoint}`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use temporalio_common::telemetry::metrics::{
    CoreMeter, Counter, Gauge, GaugeF64, HistogramDuration, MetricKeyValue, MetricParameters, NewAttributes,
    NoOpCoreMeter,
};
use temporalio_common::telemetry::{
    HistogramBucketOverrides, PrometheusExporterOptions, start_prometheus_metric_exporter,
};

use crate::domain::{ProjectionBatch, ProjectionReply};

/// Name of the RPC latency histogram.
const RPC_DURATION: &str = "loyalty_rpc_duration_seconds";

/// The service's instruments; cheap to clone.
#[derive(Clone)]
pub struct Metrics {
    meter: Arc<dyn CoreMeter>,
    rpcs: Counter,
    rpc_duration: HistogramDuration,
    ledger_entries: Counter,
    ledger_fenced: Counter,
    webhooks: Counter,
    webhook_oldest: GaugeF64,
    webhook_parked: Gauge,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Metrics {
    /// Starts the Prometheus endpoint on `addr` (port 0 picks one) and
    /// returns the instruments and the bound address.
    pub fn serve(addr: SocketAddr) -> Result<(Self, SocketAddr), String> {
        // Calls take milliseconds: finer buckets than the SDK's defaults.
        let buckets = vec![0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];
        let options = PrometheusExporterOptions::builder()
            .socket_addr(addr)
            .counters_total_suffix(true)
            .use_seconds_for_durations(true)
            .histogram_bucket_overrides(HistogramBucketOverrides {
                overrides: [(RPC_DURATION.to_owned(), buckets)].into(),
            })
            .build();
        let started = start_prometheus_metric_exporter(options).map_err(|e| e.to_string())?;
        Ok((Self::with_meter(started.meter), started.bound_addr))
    }

    /// Instruments that record nothing (no endpoint configured).
    pub fn disabled() -> Self {
        Self::with_meter(Arc::new(NoOpCoreMeter))
    }

    fn with_meter(meter: Arc<dyn CoreMeter>) -> Self {
        let rpcs = meter.counter(
            MetricParameters::builder()
                .name("loyalty_rpc_requests")
                .description("gRPC calls served, by method and status")
                .build(),
        );
        let rpc_duration = meter.histogram_duration(
            MetricParameters::builder()
                .name(RPC_DURATION)
                .description("gRPC call latency, by method and status")
                .unit("duration")
                .build(),
        );
        let ledger_entries = meter.counter(
            MetricParameters::builder()
                .name("loyalty_ledger_entries")
                .description("Events the ledger was asked to record, by kind and outcome")
                .build(),
        );
        let ledger_fenced = meter.counter(
            MetricParameters::builder()
                .name("loyalty_ledger_fenced_writes")
                .description(
                    "Ledger writes refused because the ledger's sequence or totals for the account did not match \
                     the account's (a lost or restored database, a wrong URL): that account's projection is held",
                )
                .build(),
        );
        let webhooks = meter.counter(
            MetricParameters::builder()
                .name("loyalty_webhook_deliveries")
                .description("Webhook delivery attempts by endpoint and outcome (delivered, failed, parked)")
                .build(),
        );
        let webhook_oldest = meter.gauge_f64(
            MetricParameters::builder()
                .name("loyalty_webhook_oldest_undelivered_seconds")
                .description("Age of the oldest event an endpoint has not received (0: none waiting)")
                .build(),
        );
        let webhook_parked = meter.gauge(
            MetricParameters::builder()
                .name("loyalty_webhook_parked_accounts")
                .description("Accounts whose events wait as dead letters for an endpoint")
                .build(),
        );
        Self { meter, rpcs, rpc_duration, ledger_entries, ledger_fenced, webhooks, webhook_oldest, webhook_parked }
    }

    /// The meter, for the Temporal SDK's own metrics.
    pub fn meter(&self) -> Arc<dyn CoreMeter> {
        self.meter.clone()
    }

    fn attributes<const N: usize>(
        &self,
        pairs: [(&'static str, String); N],
    ) -> temporalio_common::telemetry::metrics::MetricAttributes {
        self.meter.new_attributes(NewAttributes::from(pairs.map(|(k, v)| MetricKeyValue::new(k, v))))
    }

    /// Records one finished RPC.
    pub fn rpc(&self, method: &str, status: &str, took: Duration) {
        let attributes = self.attributes([("method", method.to_owned()), ("status", status.to_owned())]);
        self.rpcs.add(1, &attributes);
        self.rpc_duration.record(took, &attributes);
    }

    /// Records a projection write by `writer` (`run`: the workflow's own
    /// write; `api`: our API's write of an update's entries): each entry by
    /// kind, with outcome `applied`, `recovered` (already there: a retry of a
    /// committed write, or the other writer's) or `duplicate` (an event id
    /// the ledger held already, recorded under a suffixed id); or a fenced
    /// write of the run (the API's are fenced whenever an earlier entry has
    /// yet to land, which is no fault).
    pub fn projection(&self, writer: &'static str, batch: &ProjectionBatch, reply: &ProjectionReply, recovered: bool) {
        match reply {
            ProjectionReply::Written { duplicates, .. } => {
                for entry in &batch.entries {
                    let outcome = if duplicates.contains(&entry.seq) {
                        "duplicate"
                    } else if recovered {
                        "recovered"
                    } else {
                        "applied"
                    };
                    let attributes = self.attributes([
                        ("kind", entry.movement.kind.as_str().to_owned()),
                        ("outcome", outcome.to_owned()),
                        ("writer", writer.to_owned()),
                    ]);
                    self.ledger_entries.add(1, &attributes);
                }
            }
            // The API's write is refused whenever an earlier entry has yet to land: no fault.
            ProjectionReply::Fenced { ledger_seq, .. } if writer == "api" && *ledger_seq < batch.after_seq => {}
            ProjectionReply::Fenced { .. } => {
                let attributes = self.meter.new_attributes(NewAttributes::from(vec![]));
                self.ledger_fenced.add(1, &attributes);
            }
        }
    }

    /// Records one webhook delivery attempt's outcome.
    pub fn webhook(&self, endpoint: &str, outcome: &'static str) {
        let attributes = self.attributes([("endpoint", endpoint.to_owned()), ("outcome", outcome.to_owned())]);
        self.webhooks.add(1, &attributes);
    }

    /// Records an endpoint's backlog: the oldest waiting event's age and the
    /// accounts parked for it.
    pub fn webhook_backlog(&self, endpoint: &str, oldest: Duration, parked: u64) {
        let attributes =
            self.meter.new_attributes(NewAttributes::from(vec![MetricKeyValue::new("endpoint", endpoint.to_owned())]));
        self.webhook_oldest.record(oldest.as_secs_f64(), &attributes);
        self.webhook_parked.record(parked, &attributes);
    }
}

/// The `method` label of a call to `path`: a method of our API, `unknown`
/// for any other name under it (this layer runs before authentication, so
/// names a caller makes up must not become label values), and `None` for
/// health probes and reflection, which would drown the API's figures.
pub fn method_label(path: &str) -> Option<&'static str> {
    let name = path.strip_prefix("/loyalty.v1.LoyaltyService/")?;
    Some(crate::grpc::METHODS.iter().find(|m| **m == name).copied().unwrap_or("unknown"))
}

/// Tower layer recording every gRPC call's method, status and latency.
#[derive(Debug, Clone)]
pub struct MetricsLayer {
    metrics: Metrics,
}

impl MetricsLayer {
    /// Records into `metrics`.
    pub fn new(metrics: Metrics) -> Self {
        Self { metrics }
    }
}

impl<S> tower::Layer<S> for MetricsLayer {
    type Service = RecordRpcs<S>;

    fn layer(&self, inner: S) -> RecordRpcs<S> {
        RecordRpcs { inner, metrics: self.metrics.clone() }
    }
}

/// The service [`MetricsLayer`] wraps around the routes.
#[derive(Debug, Clone)]
pub struct RecordRpcs<S> {
    inner: S,
    metrics: Metrics,
}

impl<S, B, R> tower::Service<http::Request<B>> for RecordRpcs<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<R>>,
    S::Future: Send + 'static,
    R: Send + 'static,
{
    type Response = http::Response<R>;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let method = method_label(req.uri().path());
        let started = Instant::now();
        let metrics = self.metrics.clone();
        let call = self.inner.call(req);
        Box::pin(async move {
            let response = call.await;
            if let Some(method) = method {
                let status = match &response {
                    // A unary error is a trailers-only response: the status is in the headers.
                    Ok(r) => r
                        .headers()
                        .get("grpc-status")
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.parse::<i32>().ok())
                        .map_or(tonic::Code::Ok, tonic::Code::from),
                    Err(_) => tonic::Code::Unavailable,
                };
                metrics.rpc(method, &format!("{status:?}"), started.elapsed());
            }
            response
        })
    }
}

#[cfg(test)]
mod tests {
    use super::method_label;

    #[test]
    fn only_known_methods_become_label_values() {
        assert_eq!(method_label("/loyalty.v1.LoyaltyService/Accrue"), Some("Accrue"));
        assert_eq!(method_label("/loyalty.v1.LoyaltyService/ListEvents"), Some("ListEvents"));
        assert_eq!(method_label("/loyalty.v1.LoyaltyService/x-4f1c"), Some("unknown"));
        assert_eq!(method_label("/loyalty.v1.LoyaltyService/Accrue/../x"), Some("unknown"));
        assert_eq!(method_label("/grpc.health.v1.Health/Check"), None);
    }
}
