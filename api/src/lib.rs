//! The HTTP API of wbc: products written to Redis and queued for the worker, or written through.
mod admin;
pub mod auth;
mod error;
mod metrics;
pub mod openapi;
mod persisted;
mod products;
mod trace;

use std::{net::SocketAddr, sync::Arc, time::Duration};

use axum::{
    Router,
    extract::{DefaultBodyLimit, Request, State},
    http::header,
    middleware::{self, Next},
    response::{IntoResponse, Response},
};
use clap::Parser;
use tower::{ServiceBuilder, util::MapResponseLayer};
use wbc_core::{Pipeline, PipelineArgs, Store, StoreArgs, db, ops, telemetry::LogArgs};

pub use auth::{Access, AuthArgs};
pub use error::{ApiError, Result};
pub use metrics::ApiMetrics;

/// Largest accepted request body.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// Command line and environment of `wbc-api`.
#[derive(Parser, Debug)]
#[command(name = "wbc-api", version, about = "HTTP API of the wbc write-behind cache")]
pub struct Args {
    /// Address the API listens on.
    #[arg(long, env = "LISTEN_ADDR", default_value = "0.0.0.0:8000")]
    pub listen_addr: SocketAddr,
    /// Longest time a request may take before it is answered with 408.
    #[arg(long, env = "REQUEST_TIMEOUT", default_value = "30s",
          value_parser = wbc_core::config::duration_in(Duration::from_millis(100), Duration::from_secs(600)))]
    pub request_timeout: Duration,
    /// How long the API keeps serving after SIGTERM while /readyz answers 503, so that load balancers
    /// stop sending requests before it closes its listener (0s to 5m).
    #[arg(long, env = "SHUTDOWN_DELAY", default_value = "0s",
          value_parser = wbc_core::config::duration_in(Duration::ZERO, Duration::from_secs(300)))]
    pub shutdown_delay: Duration,
    /// Threads that serve requests. With one (the default), everything runs on one thread, which
    /// costs the least CPU per request as no task or wake-up crosses threads; an API pod is limited
    /// to one core (see the chart) and the API scales with replicas.
    #[arg(long, env = "API_THREADS", default_value_t = 1,
          value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub threads: u16,
    #[command(flatten)]
    pub auth: AuthArgs,
    #[command(flatten)]
    pub store: StoreArgs,
    #[command(flatten)]
    pub pipeline: PipelineArgs,
    #[command(flatten)]
    pub log: LogArgs,
}

/// Shared state of the handlers. Every request clones it (once per layer), so it is one `Arc`.
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

/// What the handlers share, behind [`AppState`].
pub struct Shared {
    pub store: Store,
    pub pool: wbc_core::PgPool,
    pub pipeline: Pipeline,
    pub metrics: ApiMetrics,
    /// Versions this process had PostgreSQL issue while Redis was unreachable, not yet in Redis.
    pub fences: wbc_core::fallback::PendingFences,
    /// Versions PostgreSQL holds, for writes to keys Redis no longer remembers.
    pub persisted: persisted::PersistedVersions,
}

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// The whole API, operational endpoints included; `access` says which tokens the admin and product
/// routes need (the operational endpoints need none).
pub fn app(state: AppState, ops: Arc<ops::Ops>, access: &Access, request_timeout: Duration) -> Router {
    let draining = ops.draining.clone();
    // `Router::layer` wraps each route in a boxed service of its own, cloned for every request:
    // the two layers that need the matched route go in as one, the others wrap the router once.
    let per_route =
        ServiceBuilder::new().layer(trace::layer()).layer(metrics::TrackLayer(state.metrics.request_duration.clone()));
    // The routes come from the same annotated routers as the document (`openapi::routes`).
    let (products, _) = products::router().split_for_parts();
    let (admin, _) = admin::router().split_for_parts();
    let routes = Router::new()
        .merge(access.guard_products(products, &state.metrics.auth_failures))
        .merge(access.guard_admin(admin, &state.metrics.auth_failures))
        .merge(openapi::router())
        .fallback(|| async { ApiError::NoRoute })
        .layer(per_route)
        .with_state(state)
        .merge(ops::router(ops))
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed });
    let whole = ServiceBuilder::new()
        .layer(middleware::from_fn_with_state(request_timeout, deadline))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(MapResponseLayer::new(move |mut response: axum::response::Response| {
            // while draining, clients reconnect (through the Service, to another pod) after each answer
            if draining.load(std::sync::atomic::Ordering::Relaxed) {
                response.headers_mut().insert(header::CONNECTION, header::HeaderValue::from_static("close"));
            }
            response
        }))
        .service(routes);
    Router::new().fallback_service(whole)
}

/// Answers 408 with the JSON error body when a request takes longer than `timeout`.
async fn deadline(State(timeout): State<Duration>, request: Request, next: Next) -> Response {
    match tokio::time::timeout(timeout, next.run(request)).await {
        Ok(response) => response,
        Err(_) => ApiError::TimedOut(timeout).into_response(),
    }
}

/// Connects to Redis and PostgreSQL, applies migrations and builds the state.
pub async fn connect(store: &StoreArgs, pipeline: Pipeline) -> anyhow::Result<(AppState, Arc<ops::Ops>)> {
    let registry = prometheus::Registry::new();
    let metrics = ApiMetrics::register(&registry)?;
    metrics.mode_info.with_label_values(&[mode_label(pipeline.mode)]).set(1);
    metrics.queue_capacity.set(pipeline.queue_capacity.min(i64::MAX as u64) as i64);
    let queue = ops::QueueGauges::register(&registry)?;
    // Every setting is checked before either store is contacted.
    let (redis_endpoint, database) = (store.redis()?, store.database()?);
    let redis = Store::connect(&redis_endpoint).await?;
    let pool = db::connect_with(database, store.database_max_connections, pipeline.database_statement_timeout).await?;
    db::migrate(&pool).await?;
    let state = AppState(Arc::new(Shared {
        store: redis.clone(),
        pool: pool.clone(),
        pipeline,
        metrics,
        fences: Default::default(),
        persisted: Default::default(),
    }));
    let ops = Arc::new(ops::Ops::new(registry, queue, redis, pool));
    Ok((state, ops))
}

pub(crate) fn mode_label(mode: wbc_core::WriteMode) -> &'static str {
    mode.env_name()
}

impl Args {
    /// The runtime the API runs on: one thread, or `threads` workers.
    pub fn runtime(&self) -> std::io::Result<tokio::runtime::Runtime> {
        let mut builder = match self.threads {
            1 => tokio::runtime::Builder::new_current_thread(),
            n => {
                let mut b = tokio::runtime::Builder::new_multi_thread();
                b.worker_threads(n.into());
                b
            }
        };
        builder.enable_all().build()
    }

    /// Serves until Ctrl-C or SIGTERM, keeps serving as unready for the shutdown delay, then drains
    /// open requests.
    pub async fn run(self) -> anyhow::Result<()> {
        let Self { listen_addr, request_timeout, shutdown_delay, threads: _, auth, store, pipeline, log } = self;
        let _telemetry = log.init("wbc-api")?;
        let pipeline = pipeline.validate()?;
        let access = auth.access()?;
        if access.admin.is_none() {
            tracing::warn!("no ADMIN_TOKEN or ADMIN_TOKEN_FILE: /admin/* is disabled, every request to it gets 403");
        }
        tracing::info!(?pipeline, "starting wbc-api");
        let (state, ops) = connect(&store, pipeline).await?;
        let listener = tokio::net::TcpListener::bind(listen_addr).await?;
        tracing::info!(addr = %listener.local_addr()?, "listening");
        let draining = ops.clone();
        let stop = async move {
            wbc_core::telemetry::shutdown_signal().await;
            draining.drain();
            tracing::info!(delay = ?shutdown_delay, "shutting down: unready, still serving");
            tokio::time::sleep(shutdown_delay).await;
        };
        axum::serve(listener, app(state, ops, &access, request_timeout)).with_graceful_shutdown(stop).await?;
        tracing::info!("stopped");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::Args;

    #[test]
    fn api_threads_is_validated_and_names_the_flag() {
        for bad in ["0", "-1", "1025", "two", ""] {
            let err = Args::try_parse_from(["wbc-api".into(), format!("--threads={bad}")]).expect_err(bad).to_string();
            assert!(err.contains("--threads"), "{bad}: {err}");
        }
        let args = Args::try_parse_from(["wbc-api", "--threads", "4"]).expect("4 threads");
        assert_eq!(args.threads, 4);
        assert_eq!(args.runtime().expect("runtime").metrics().num_workers(), 4);
        let one = Args::try_parse_from(["wbc-api"]).expect("defaults");
        assert_eq!(one.runtime().expect("runtime").metrics().num_workers(), 1);
    }
}
