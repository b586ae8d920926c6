//! Optional OpenTelemetry tracing. With `OTEL_EXPORTER_OTLP_ENDPOINT` set,
//! every gRPC call gets a server span, child of the caller's W3C
//! `traceparent` if it sent one, and the Temporal SDK's plugin carries that
//! trace into the workflow (the cross-SDK `_tracer-data` header): the
//! signal, update or query and the workflow's handlers land in the caller's
//! trace (a signal carrying several callers' accruals, in the first one's).
//! The ledger writes, which the run loop makes for many calls at once, land
//! in the trace of the call that started the account's run. Spans leave by
//! OTLP/gRPC in batches.

use opentelemetry::KeyValue;
use opentelemetry::propagation::{Extractor, TextMapPropagator};
use opentelemetry::trace::{FutureExt as _, SpanKind, TraceContextExt as _, Tracer as _, TracerProvider as _};
use opentelemetry_otlp::WithExportConfig as _;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{SdkTracer, SdkTracerProvider};
use temporalio_sdk::SimplePlugin;
use temporalio_sdk::opentelemetry::{OpenTelemetryPlugin, WorkflowIdGenerator};
use tonic::metadata::MetadataMap;

/// The tracer provider of this process; cheap to clone.
#[derive(Debug, Clone)]
pub struct Tracing {
    provider: SdkTracerProvider,
    tracer: SdkTracer,
}

impl Tracing {
    /// Exports spans by OTLP/gRPC to `endpoint` (e.g. `http://otel-collector:4317`).
    pub fn start(endpoint: &str) -> Result<Self, String> {
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .with_endpoint(endpoint)
            .build()
            .map_err(|e| e.to_string())?;
        let provider = SdkTracerProvider::builder()
            // Replay-safe ids: a workflow's spans keep their ids when it is replayed.
            .with_id_generator(WorkflowIdGenerator::default())
            .with_batch_exporter(exporter)
            .with_resource(Resource::builder().with_service_name("loyalty").build())
            .build();
        let tracer = provider.tracer("loyalty");
        Ok(Self { provider, tracer })
    }

    /// The Temporal plugin that traces client calls, workflows and activities.
    pub fn plugin(&self) -> SimplePlugin {
        OpenTelemetryPlugin::builder().tracer(self.tracer.clone()).build()
    }

    /// Runs `call` inside a server span for `method`, child of the caller's trace.
    pub async fn in_server_span<T>(&self, method: &str, metadata: &MetadataMap, call: impl Future<Output = T>) -> T {
        let parent = TraceContextPropagator::new().extract(&Metadata(metadata));
        let span = self
            .tracer
            .span_builder(format!("loyalty.v1.LoyaltyService/{method}"))
            .with_kind(SpanKind::Server)
            .with_attributes([KeyValue::new("rpc.system", "grpc"), KeyValue::new("rpc.method", method.to_owned())])
            .start_with_context(&self.tracer, &parent);
        call.with_context(parent.with_span(span)).await
    }

    /// Sends the spans still buffered and stops exporting.
    pub fn shutdown(&self) {
        if let Err(e) = self.provider.shutdown() {
            tracing::warn!(error = %e, "OpenTelemetry shutdown");
        }
    }
}

/// Reads W3C trace headers from gRPC metadata.
struct Metadata<'a>(&'a MetadataMap);

impl Extractor for Metadata<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0
            .keys()
            .filter_map(|k| match k {
                tonic::metadata::KeyRef::Ascii(k) => Some(k.as_str()),
                tonic::metadata::KeyRef::Binary(_) => None,
            })
            .collect()
    }
}
