//! A server span per request, continuing the caller's trace when it sends a `traceparent`.
use axum::{
    extract::{MatchedPath, Request},
    http::Response,
};
use tower_http::{
    classify::{ServerErrorsAsFailures, SharedClassifier},
    trace::{MakeSpan, OnResponse, TraceLayer},
};
use tracing::{Span, field::Empty};
use tracing_opentelemetry::OpenTelemetrySpanExt;

#[derive(Clone)]
pub struct RequestSpan;

impl<B> MakeSpan<B> for RequestSpan {
    fn make_span(&mut self, req: &Request<B>) -> Span {
        let route = req.extensions().get::<MatchedPath>().map_or(req.uri().path(), |p| p.as_str());
        let span = tracing::info_span!(
            "http request",
            otel.name = format!("{} {route}", req.method()),
            otel.kind = "server",
            http.request.method = %req.method(),
            http.route = route,
            http.response.status_code = Empty,
        );
        if let Some(tp) = req.headers().get("traceparent").and_then(|v| v.to_str().ok()) {
            let _ = span.set_parent(wbc_core::telemetry::context_from_traceparent(tp));
        }
        span
    }
}

#[derive(Clone)]
pub struct RecordStatus;

impl<B> OnResponse<B> for RecordStatus {
    fn on_response(self, res: &Response<B>, latency: std::time::Duration, span: &Span) {
        span.record("http.response.status_code", res.status().as_u16());
        tracing::debug!(status = res.status().as_u16(), latency_ms = latency.as_millis() as u64, "answered");
    }
}

pub fn layer() -> TraceLayer<SharedClassifier<ServerErrorsAsFailures>, RequestSpan, (), RecordStatus> {
    TraceLayer::new_for_http().make_span_with(RequestSpan).on_request(()).on_response(RecordStatus)
}
