//! Logs, OpenTelemetry traces over OTLP, and process signals.
use std::collections::HashMap;

use clap::{Args, ValueEnum};
use opentelemetry::{
    Context,
    propagation::TextMapPropagator,
    trace::{TraceContextExt, TracerProvider as _},
};
use opentelemetry_sdk::{Resource, propagation::TraceContextPropagator, trace::SdkTracerProvider};
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::{EnvFilter, Layer, fmt, prelude::*};

use crate::{Error, Result};

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Logging and tracing options shared by every binary.
#[derive(Args, Clone, Debug)]
pub struct LogArgs {
    /// Log line format: text or json.
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value = "text")]
    pub log_format: LogFormat,
    /// Log filter in tracing's EnvFilter syntax, e.g. info or wbc_worker=debug.
    #[arg(long, env = "RUST_LOG", default_value = "info,sqlx=warn")]
    pub log_filter: String,
    /// OTLP/HTTP endpoint that receives traces, e.g. http://localhost:4318 (Jaeger). Unset: no export.
    #[arg(long, env = "OTEL_EXPORTER_OTLP_ENDPOINT")]
    pub otlp_endpoint: Option<String>,
    /// Service name on exported traces; defaults to the binary's name.
    #[arg(long, env = "OTEL_SERVICE_NAME")]
    pub service_name: Option<String>,
}

/// Keeps the trace exporter alive; dropping it flushes the spans still buffered.
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Whether spans leave the process.
    pub fn exporting(&self) -> bool {
        self.provider.is_some()
    }
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        if let Some(p) = self.provider.take() {
            let _ = p.shutdown();
        }
    }
}

impl LogArgs {
    /// Installs the global subscriber, with an OTLP exporter when an endpoint is set.
    pub fn init(&self, default_service: &str) -> Result<Telemetry> {
        let filter = EnvFilter::try_new(&self.log_filter).map_err(|e| Error::Config {
            setting: "RUST_LOG",
            field: None,
            reason: e.to_string(),
        })?;
        let provider = self.otlp_endpoint.as_deref().map(|e| self.provider(e, default_service)).transpose()?;
        let otel = provider.as_ref().map(|p| {
            let name = self.service_name.clone().unwrap_or_else(|| default_service.to_owned());
            tracing_opentelemetry::layer().with_tracer(p.tracer(name))
        });
        let fmt = match self.log_format {
            // Colours only on a terminal: a log file or a pod's log keeps plain text.
            LogFormat::Text => fmt::layer().with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout())).boxed(),
            LogFormat::Json => fmt::layer().json().flatten_event(true).boxed(),
        };
        let _ = tracing_subscriber::registry().with(fmt.with_filter(filter)).with(otel).try_init();
        Ok(Telemetry { provider })
    }

    fn provider(&self, endpoint: &str, default_service: &str) -> Result<SdkTracerProvider> {
        use opentelemetry_otlp::WithExportConfig;
        let bad = |reason: String| Error::Config { setting: "OTEL_EXPORTER_OTLP_ENDPOINT", field: None, reason };
        let uri: axum::http::Uri = endpoint.parse().map_err(|e| bad(format!("'{endpoint}' is not a URL ({e})")))?;
        if !matches!(uri.scheme_str(), Some("http" | "https")) || uri.host().is_none() {
            return Err(bad(format!("'{endpoint}' must be an http:// or https:// URL")));
        }
        let url = format!("{}/v1/traces", endpoint.trim_end_matches('/').trim_end_matches("/v1/traces"));
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_endpoint(url)
            .build()
            .map_err(|e| bad(e.to_string()))?;
        opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
        let name = self.service_name.clone().unwrap_or_else(|| default_service.to_owned());
        Ok(SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(Resource::builder().with_service_name(name).build())
            .build())
    }
}

/// The W3C `traceparent` of the current span, when it is being traced.
pub fn current_traceparent() -> Option<String> {
    let cx = tracing::Span::current().context();
    if !cx.span().span_context().is_valid() {
        return None;
    }
    let mut carrier = HashMap::new();
    TraceContextPropagator::new().inject_context(&cx, &mut carrier);
    carrier.remove("traceparent")
}

/// The remote context a `traceparent` names; invalid input gives an empty context.
pub fn context_from_traceparent(traceparent: &str) -> Context {
    let carrier = HashMap::from([("traceparent".to_owned(), traceparent.to_owned())]);
    TraceContextPropagator::new().extract(&carrier)
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        tokio::signal::ctrl_c().await.ok();
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
}
