//! The controller's Prometheus metrics and its `/healthz`, `/readyz` and `/metrics` endpoints.
use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use axum::{Router, extract::State, http::StatusCode, http::header, response::IntoResponse, routing::get};
use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramTimer, IntCounter, IntCounterVec, IntGauge, Opts, Registry,
};

use crate::{Error, Result};

/// What the controller counts.
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    reconciles: IntCounter,
    failures: IntCounterVec,
    duration: Histogram,
    writes: IntCounterVec,
    watch_errors: IntCounter,
    undecodable: IntCounter,
    ready: IntGauge,
    probe_failures: IntCounterVec,
}

impl Metrics {
    /// Creates the metrics in a registry of their own.
    pub fn new() -> Result<Self> {
        let registry = Registry::new();
        let m = Self {
            reconciles: IntCounter::new("wbc_controller_reconciles_total", "Reconciles started")?,
            failures: IntCounterVec::new(
                Opts::new("wbc_controller_reconcile_failures_total", "Reconciles that failed, by error"),
                &["error"],
            )?,
            duration: Histogram::with_opts(
                HistogramOpts::new("wbc_controller_reconcile_duration_seconds", "Time one reconcile takes")
                    .buckets(vec![0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0]),
            )?,
            writes: IntCounterVec::new(
                Opts::new("wbc_controller_writes_total", "Writes to the Kubernetes API, by object"),
                &["object"],
            )?,
            watch_errors: IntCounter::new(
                "wbc_controller_watch_errors_total",
                "Failed lists and watches of the caches, their ConfigMaps and Deployments (each is retried)",
            )?,
            undecodable: IntCounter::new(
                "wbc_controller_undecodable_objects_total",
                "Versions of WriteBehindCaches skipped because they do not decode",
            )?,
            ready: IntGauge::new("wbc_controller_ready", "1 while the controller is making progress (as /readyz)")?,
            probe_failures: IntCounterVec::new(
                Opts::new(
                    "wbc_controller_health_probe_failures_total",
                    "Health probes of target pods that failed, by step: list_pods or ask_pod",
                ),
                &["step"],
            )?,
            registry,
        };
        m.registry.register(Box::new(m.reconciles.clone()))?;
        m.registry.register(Box::new(m.failures.clone()))?;
        m.registry.register(Box::new(m.duration.clone()))?;
        m.registry.register(Box::new(m.writes.clone()))?;
        m.registry.register(Box::new(m.watch_errors.clone()))?;
        m.registry.register(Box::new(m.undecodable.clone()))?;
        m.registry.register(Box::new(m.ready.clone()))?;
        m.registry.register(Box::new(m.probe_failures.clone()))?;
        // every series exists from the start, so that rates and alerts see a zero before the first event
        for label in Error::METRIC_LABELS {
            m.failures.with_label_values(&[label]).reset();
        }
        for object in ["configmap", "deployment", "status", "event"] {
            m.writes.with_label_values(&[object]).reset();
        }
        for step in ["list_pods", "ask_pod"] {
            m.probe_failures.with_label_values(&[step]).reset();
        }
        Ok(m)
    }

    /// Counts a reconcile; its duration is observed when the timer drops.
    pub fn reconcile_started(&self) -> HistogramTimer {
        self.reconciles.inc();
        self.duration.start_timer()
    }

    /// Counts a failed reconcile.
    pub fn reconcile_failed(&self, error: &Error) {
        self.failures.with_label_values(&[error.metric_label()]).inc();
    }

    /// Counts a write: `configmap`, `deployment`, `status` or `event`.
    pub fn wrote(&self, object: &str) {
        self.writes.with_label_values(&[object]).inc();
    }

    /// Counts a failed list or watch.
    pub fn watch_failed(&self) {
        self.watch_errors.inc();
    }

    /// Counts a version of a cache that does not decode.
    pub fn undecodable(&self) {
        self.undecodable.inc();
    }

    /// Counts a failed step of the health probe: `list_pods` or `ask_pod`.
    pub fn probe_failed(&self, step: &str) {
        self.probe_failures.with_label_values(&[step]).inc();
    }

    /// Reconciles started so far.
    pub fn reconciles_total(&self) -> u64 {
        self.reconciles.get()
    }

    /// Writes of one kind of object so far.
    pub fn writes_total(&self, object: &str) -> u64 {
        self.writes.with_label_values(&[object]).get()
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> Result<Vec<u8>> {
        let mut buf = Vec::new();
        prometheus::TextEncoder::new().encode(&self.registry.gather(), &mut buf)?;
        Ok(buf)
    }
}

/// How long watches may keep failing, with no reconcile done and no watch event received meanwhile,
/// before the controller says it is not ready: longer than the watches' longest retry delay.
pub const STALL_AFTER: Duration = Duration::from_secs(60);

/// Whether the controller is making progress: it has listed what it watches, and no failure of its
/// watches has gone unanswered (by a watch event or a reconcile) for longer than the stall limit.
#[derive(Clone)]
pub struct Readiness(Arc<ReadinessState>);

struct ReadinessState {
    listed: AtomicBool,
    failing_since: Mutex<Option<Instant>>,
    stall_after: Duration,
}

impl Default for Readiness {
    fn default() -> Self {
        Self::with_stall_after(STALL_AFTER)
    }
}

impl Readiness {
    /// Readiness with another stall limit than [`STALL_AFTER`].
    pub fn with_stall_after(stall_after: Duration) -> Self {
        Self(Arc::new(ReadinessState { listed: AtomicBool::new(false), failing_since: Mutex::new(None), stall_after }))
    }

    /// Marks the first list done.
    pub fn set_ready(&self) {
        self.0.listed.store(true, Ordering::Release);
    }

    /// A watch event arrived or a reconcile finished.
    pub fn progressed(&self) {
        *self.0.failing_since.lock().expect("not poisoned") = None;
    }

    /// A list or watch failed.
    pub fn failed(&self) {
        self.0.failing_since.lock().expect("not poisoned").get_or_insert_with(Instant::now);
    }

    /// Whether the controller is ready.
    pub fn is_ready(&self) -> bool {
        let failing_since = *self.0.failing_since.lock().expect("not poisoned");
        self.0.listed.load(Ordering::Acquire) && failing_since.is_none_or(|t| t.elapsed() < self.0.stall_after)
    }
}

#[derive(Clone)]
struct Ops {
    metrics: Metrics,
    readiness: Readiness,
}

/// The router of `/healthz`, `/readyz` and `/metrics`.
pub fn router(metrics: Metrics, readiness: Readiness) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(render))
        .with_state(Arc::new(Ops { metrics, readiness }))
}

async fn readyz(State(ops): State<Arc<Ops>>) -> impl IntoResponse {
    if ops.readiness.is_ready() {
        (StatusCode::OK, "ok")
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "the watches have not listed yet, or have failed for a minute with no progress",
        )
    }
}

async fn render(State(ops): State<Arc<Ops>>) -> impl IntoResponse {
    ops.metrics.ready.set(i64::from(ops.readiness.is_ready()));
    match ops.metrics.render() {
        Ok(body) => (StatusCode::OK, [(header::CONTENT_TYPE, prometheus::TEXT_FORMAT)], body),
        Err(e) => {
            tracing::error!(error = %e, "metrics encoding failed");
            (StatusCode::INTERNAL_SERVER_ERROR, [(header::CONTENT_TYPE, "text/plain")], Vec::new())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tower::ServiceExt;

    async fn get(router: Router, path: &str) -> (StatusCode, String) {
        let request = axum::http::Request::get(path).body(axum::body::Body::empty()).unwrap();
        let response = router.oneshot(request).await.unwrap();
        let status = response.status();
        let body = axum::body::to_bytes(response.into_body(), 1 << 20).await.unwrap();
        (status, String::from_utf8(body.to_vec()).unwrap())
    }

    #[tokio::test]
    async fn readyz_waits_for_the_watches_and_metrics_show_reconciles() {
        let metrics = Metrics::new().unwrap();
        let readiness = Readiness::default();
        let app = router(metrics.clone(), readiness.clone());
        assert_eq!(get(app.clone(), "/healthz").await.0, StatusCode::OK);
        assert_eq!(get(app.clone(), "/readyz").await.0, StatusCode::SERVICE_UNAVAILABLE);
        readiness.set_ready();
        assert_eq!(get(app.clone(), "/readyz").await.0, StatusCode::OK);

        drop(metrics.reconcile_started());
        metrics.wrote("configmap");
        let (status, body) = get(app, "/metrics").await;
        assert_eq!(status, StatusCode::OK);
        assert!(body.contains("wbc_controller_reconciles_total 1"), "{body}");
        assert!(body.contains("wbc_controller_reconcile_duration_seconds_count 1"), "{body}");
        assert!(body.contains(r#"wbc_controller_writes_total{object="configmap"} 1"#), "{body}");
        assert!(body.contains(r#"wbc_controller_writes_total{object="status"} 0"#), "{body}");
        assert!(body.contains(r#"wbc_controller_reconcile_failures_total{error="api_refused"} 0"#), "{body}");
        assert!(body.contains(r#"wbc_controller_health_probe_failures_total{step="list_pods"} 0"#), "{body}");
        assert!(body.contains("wbc_controller_watch_errors_total 0"), "{body}");
        assert!(body.contains("wbc_controller_ready 1"), "{body}");
    }

    #[test]
    fn a_failure_unanswered_for_the_stall_limit_makes_the_controller_unready_until_it_progresses() {
        let readiness = Readiness::with_stall_after(Duration::from_millis(50));
        readiness.failed();
        assert!(!readiness.is_ready(), "before the first list");
        readiness.set_ready();
        assert!(readiness.is_ready(), "a fresh failure is not yet a stall");
        std::thread::sleep(Duration::from_millis(60));
        readiness.failed();
        assert!(!readiness.is_ready(), "a later failure does not restart the clock");
        readiness.progressed();
        assert!(readiness.is_ready());
    }
}
