//! Prometheus metrics of the API.
use std::{
    convert::Infallible,
    pin::Pin,
    task::{Context, Poll},
    time::Instant,
};

use axum::{
    extract::{MatchedPath, Request},
    response::Response,
};
use prometheus::{HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry};
use tower::{Layer, Service};

use crate::auth::{Refusal, Scope};

/// Counters and histograms of the API, registered in its registry.
#[derive(Clone)]
pub struct ApiMetrics {
    pub request_duration: HistogramVec,
    pub writes: IntCounterVec,
    pub writes_rejected: IntCounterVec,
    pub writes_coalesced: IntCounter,
    pub cache_hits: IntCounter,
    pub cache_misses: IntCounter,
    pub mode_info: IntGaugeVec,
    pub queue_capacity: IntGauge,
    pub auth_failures: IntCounterVec,
}

impl ApiMetrics {
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        let m = Self {
            request_duration: HistogramVec::new(
                HistogramOpts::new("wbc_http_request_duration_seconds", "HTTP request latency")
                    .buckets(vec![0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0]),
                &["route", "method", "status"],
            )?,
            writes: IntCounterVec::new(
                Opts::new("wbc_writes_total", "Acknowledged writes by the mode that carried them and operation"),
                &["mode", "op"],
            )?,
            writes_rejected: IntCounterVec::new(
                Opts::new("wbc_writes_rejected_total", "Refused writes by reason"),
                &["reason"],
            )?,
            writes_coalesced: IntCounter::new(
                "wbc_writes_coalesced_total",
                "Writes that replaced a queued write of the same key before it was flushed",
            )?,
            cache_hits: IntCounter::new("wbc_cache_hits_total", "Reads answered from Redis")?,
            cache_misses: IntCounter::new("wbc_cache_misses_total", "Reads that fell back to PostgreSQL")?,
            mode_info: IntGaugeVec::new(Opts::new("wbc_mode_info", "The write mode in effect (1)"), &["mode"])?,
            queue_capacity: IntGauge::new("wbc_queue_capacity_keys", "Most dirty keys the queue accepts")?,
            auth_failures: IntCounterVec::new(
                Opts::new(
                    "wbc_api_auth_failures_total",
                    "Requests refused for their bearer token, by scope and reason",
                ),
                &["scope", "reason"],
            )?,
        };
        registry.register(Box::new(m.request_duration.clone()))?;
        registry.register(Box::new(m.writes.clone()))?;
        registry.register(Box::new(m.writes_rejected.clone()))?;
        registry.register(Box::new(m.writes_coalesced.clone()))?;
        registry.register(Box::new(m.cache_hits.clone()))?;
        registry.register(Box::new(m.cache_misses.clone()))?;
        registry.register(Box::new(m.mode_info.clone()))?;
        registry.register(Box::new(m.queue_capacity.clone()))?;
        registry.register(Box::new(m.auth_failures.clone()))?;
        // Series exist from the start, so dashboards and alerts see zeros rather than nothing.
        for mode in ["write-behind", "write-through"] {
            for op in ["upsert", "delete"] {
                m.writes.with_label_values(&[mode, op]);
            }
        }
        for reason in ["validation", "overflow", "redis_down", "postgres_down"] {
            m.writes_rejected.with_label_values(&[reason]);
        }
        for scope in [Scope::Admin, Scope::Products] {
            // the product routes are open without a token, never disabled
            for reason in Refusal::ALL.into_iter().filter(|r| scope == Scope::Admin || *r != Refusal::Disabled) {
                m.auth_failures.with_label_values(&[scope.label(), reason.label()]);
            }
        }
        Ok(m)
    }
}

/// Records the latency of every request by its route template: a layer of each route, where the
/// matched route is known. A service of its own, as `middleware::from_fn` boxes the next service and
/// moves the request apart and back together for every request.
#[derive(Clone)]
pub struct TrackLayer(pub HistogramVec);

impl<S> Layer<S> for TrackLayer {
    type Service = Track<S>;

    fn layer(&self, inner: S) -> Track<S> {
        Track { inner, durations: self.0.clone() }
    }
}

#[derive(Clone)]
pub struct Track<S> {
    inner: S,
    durations: HistogramVec,
}

impl<S> Service<Request> for Track<S>
where
    S: Service<Request, Response = Response, Error = Infallible>,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request) -> Self::Future {
        let route = req.extensions().get::<MatchedPath>().cloned();
        let method = req.method().clone();
        let durations = self.durations.clone();
        let start = Instant::now();
        let response = self.inner.call(req);
        Box::pin(async move {
            let response = response.await?;
            let route = route.as_ref().map_or("unmatched", MatchedPath::as_str);
            durations
                .with_label_values(&[route, method.as_str(), response.status().as_str()])
                .observe(start.elapsed().as_secs_f64());
            Ok(response)
        })
    }
}
