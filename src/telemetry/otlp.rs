//! OpenTelemetry trace export over OTLP/HTTP (protobuf), behind `telemetry.otlp`: the
//! gateway's `tracing` spans become OpenTelemetry spans (tracing-opentelemetry), batched and
//! sent to the collector by the SDK's batch processor on a thread of its own.

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{Protocol, WithExportConfig as _};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SdkTracerProvider;

use crate::config::OtlpConfig;

/// Keeps the exporter running; [`Exporter::shutdown`] sends what is still batched.
pub struct Exporter {
    provider: SdkTracerProvider,
}

impl Exporter {
    /// Exports the spans still batched and stops the exporter (bounded by the exporter's
    /// timeout).
    pub fn shutdown(&self) {
        if let Err(e) = self.provider.shutdown() {
            eprintln!("warning: OTLP exporter shutdown: {e}");
        }
    }
}

/// The OTLP exporter of `config` and the `tracing` layer that feeds it.
///
/// # Errors
/// The exporter's build error (an invalid endpoint).
pub fn layer<S>(
    config: &OtlpConfig,
) -> Result<
    (
        Exporter,
        tracing_opentelemetry::OpenTelemetryLayer<S, opentelemetry_sdk::trace::Tracer>,
    ),
    opentelemetry_otlp::ExporterBuildError,
>
where
    S: tracing::Subscriber + for<'span> tracing_subscriber::registry::LookupSpan<'span>,
{
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(Protocol::HttpBinary)
        .with_endpoint(config.traces_url.as_str())
        .with_timeout(std::time::Duration::from_secs(10))
        .build()?;
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(
            Resource::builder()
                .with_service_name(config.service_name.clone())
                .build(),
        )
        .build();
    let tracer = provider.tracer("mcpgate");
    let layer = tracing_opentelemetry::layer().with_tracer(tracer);
    Ok((Exporter { provider }, layer))
}
