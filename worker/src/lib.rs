//! The wbc worker: claims due dirty keys from Redis and persists them to PostgreSQL in batches.
mod backoff;
mod flush;
mod loss;
mod metrics;

use std::{net::SocketAddr, sync::Arc, time::Duration};

use clap::Parser;
use thiserror::Error;
use tokio::sync::watch;
use wbc_core::{PgPool, Pipeline, PipelineArgs, Store, StoreArgs, db, ops, telemetry::LogArgs};

pub use metrics::WorkerMetrics;

/// Errors that stop the worker.
#[derive(Debug, Error)]
pub enum Error {
    #[error(transparent)]
    Core(#[from] wbc_core::Error),
    #[error("metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    #[error("listen: {0}")]
    Listen(#[from] std::io::Error),
}

/// Result alias of the worker crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Command line and environment of `wbc-worker`.
#[derive(Parser, Debug)]
#[command(name = "wbc-worker", version, about = "Flushes the wbc write-behind queue into PostgreSQL")]
pub struct Args {
    /// Address of the /metrics, /healthz and /readyz endpoints.
    #[arg(long, env = "METRICS_ADDR", default_value = "0.0.0.0:8001")]
    pub metrics_addr: SocketAddr,
    /// Name of this worker in leases and logs; defaults to host name and process id.
    #[arg(long, env = "WORKER_ID")]
    pub worker_id: Option<String>,
    /// Longest time a SIGTERM waits for the batch in flight before handing it back.
    #[arg(long, env = "SHUTDOWN_GRACE", default_value = "10s",
          value_parser = wbc_core::config::duration_in(Duration::from_millis(1), Duration::from_secs(600)))]
    pub shutdown_grace: Duration,
    /// Batches a worker upserts into PostgreSQL at once, each claimed and committed on its own.
    /// Twice as many are in flight, so that the Redis work of some overlaps the upserts of others.
    #[arg(long, env = "FLUSH_CONCURRENCY", default_value_t = 2, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub flush_concurrency: u16,
    #[command(flatten)]
    pub store: StoreArgs,
    #[command(flatten)]
    pub pipeline: PipelineArgs,
    #[command(flatten)]
    pub log: LogArgs,
}

/// The flush loop and what it needs.
pub struct Worker {
    store: Store,
    pool: PgPool,
    pipeline: Pipeline,
    /// Delays between retries, of batches and of records retried alone.
    retry: backoff::RetryPolicy,
    metrics: WorkerMetrics,
    /// Identifies this worker's leases.
    token: String,
    shutdown_grace: Duration,
    /// Keys whose last flush failed transiently, to tell first-try successes from retries.
    retried: std::sync::Mutex<std::collections::HashSet<String>>,
    /// Spans are exported, so flushes link to the writes they persist.
    pub trace_writes: bool,
    /// Upserts running at once; twice as many flush loops claim and acknowledge batches.
    flush_concurrency: u16,
    /// Permits of the upserts, `flush_concurrency` of them.
    upserts: tokio::sync::Semaphore,
}

impl Args {
    /// Runs until Ctrl-C or SIGTERM, then finishes or hands back the batch in flight.
    pub async fn run(self) -> anyhow::Result<()> {
        let Self { metrics_addr, worker_id, shutdown_grace, flush_concurrency, store, pipeline, log } = self;
        let telemetry = log.init("wbc-worker")?;
        let pipeline = pipeline.validate()?;
        let token = worker_id.unwrap_or_else(default_worker_id);
        tracing::info!(?pipeline, %token, "starting wbc-worker");
        let (mut worker, ops) = Worker::connect(&store, pipeline, token, shutdown_grace).await?;
        worker.trace_writes = telemetry.exporting();
        worker.set_flush_concurrency(flush_concurrency);
        let listener = tokio::net::TcpListener::bind(metrics_addr).await?;
        tracing::info!(addr = %listener.local_addr()?, "serving metrics");
        let (stop_tx, stop_rx) = watch::channel(false);
        let server = tokio::spawn(
            axum::serve(listener, ops::router(ops)).with_graceful_shutdown(wait_for(stop_rx.clone())).into_future(),
        );
        let flusher = tokio::spawn(Arc::new(worker).run(stop_rx));
        wbc_core::telemetry::shutdown_signal().await;
        tracing::info!("shutting down");
        stop_tx.send_replace(true);
        flusher.await??;
        server.await??;
        tracing::info!("stopped");
        Ok(())
    }
}

fn default_worker_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    format!("{}-{}", host.trim(), std::process::id())
}

async fn wait_for(mut stop: watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

impl Worker {
    /// Connects, applies migrations and registers metrics.
    pub async fn connect(
        store: &StoreArgs,
        pipeline: Pipeline,
        token: String,
        shutdown_grace: Duration,
    ) -> Result<(Self, Arc<ops::Ops>)> {
        let registry = prometheus::Registry::new();
        let metrics = WorkerMetrics::register(&registry)?;
        let queue = ops::QueueGauges::register(&registry)?;
        // Every setting is checked before either store is contacted.
        let (redis_endpoint, database) = (store.redis()?, store.database()?);
        let redis = Store::connect(&redis_endpoint).await?;
        let pool =
            db::connect_with(database, store.database_max_connections, pipeline.database_statement_timeout).await?;
        db::migrate(&pool).await?;
        let ops = Arc::new(ops::Ops::new(registry, queue, redis.clone(), pool.clone()));
        let retried = Default::default();
        let worker = Self {
            store: redis,
            pool,
            retry: backoff::RetryPolicy::of(&pipeline),
            pipeline,
            metrics,
            token,
            shutdown_grace,
            retried,
            trace_writes: false,
            flush_concurrency: 1,
            upserts: tokio::sync::Semaphore::new(1),
        };
        Ok((worker, ops))
    }

    /// Sets the upserts that run at once (at least one).
    pub fn set_flush_concurrency(&mut self, n: u16) {
        self.flush_concurrency = n.max(1);
        self.upserts = tokio::sync::Semaphore::new(usize::from(self.flush_concurrency));
    }

    /// Runs the flush loops and housekeeping. Returns once `stop` is set and every batch in
    /// flight is settled.
    pub async fn run(self: Arc<Self>, stop: watch::Receiver<bool>) -> Result<()> {
        let mut tasks = tokio::task::JoinSet::new();
        tasks.spawn(self.clone().housekeeping_loop(stop.clone()));
        tasks.spawn(self.clone().fallback_loop(stop.clone()));
        // While one loop upserts, another claims, reads or acknowledges its batch in Redis.
        for _ in 0..2 * self.flush_concurrency.max(1) {
            tasks.spawn(self.clone().flush_loop(stop.clone()));
        }
        while let Some(done) = tasks.join_next().await {
            done.expect("worker task panicked");
        }
        Ok(())
    }

    async fn housekeeping_loop(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        while !*stop.borrow() {
            if let Err(e) = self.housekeeping().await {
                tracing::warn!(error = %e, "housekeeping failed");
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                _ = stop.changed() => {}
            }
        }
    }

    /// Every second, tells Redis the versions PostgreSQL issued without it (see `fallback`); apart
    /// from the housekeeping, so that neither waits on the other's store being down.
    async fn fallback_loop(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        while !*stop.borrow() {
            if let Err(e) = wbc_core::fallback::apply_recorded(&self.store, &self.pool, self.pipeline.cache_ttl).await {
                tracing::warn!(error = %e, "versions written without Redis not yet applied to it");
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                _ = stop.changed() => {}
            }
        }
    }

    /// Claims and flushes batches until `stop`, backing off after failures.
    async fn flush_loop(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        // Polling often keeps a key's lag close to the flush interval; a claim that finds nothing is cheap.
        let idle = (self.pipeline.flush_interval / 10).clamp(Duration::from_millis(2), Duration::from_millis(20));
        let mut failures: u32 = 0;
        while !*stop.borrow() {
            let pause = match self.round(&stop).await {
                Ok(true) => {
                    failures = 0;
                    continue;
                }
                Ok(false) => idle,
                Err(e) => {
                    let delay = self.retry.delay(failures);
                    failures = failures.saturating_add(1);
                    self.metrics.retries.with_label_values(&["transient"]).inc();
                    tracing::warn!(error = %e, attempt = failures, delay_ms = delay.as_millis() as u64, "flush failed; retrying");
                    delay
                }
            };
            tokio::select! {
                _ = tokio::time::sleep(pause) => {}
                _ = stop.changed() => {}
            }
        }
    }

    /// Claims and flushes one batch. True when a full batch was flushed (more may be due).
    async fn round(&self, stop: &watch::Receiver<bool>) -> Result<bool, wbc_core::Error> {
        let p = &self.pipeline;
        let batch =
            self.store.claim(p.flush_interval, p.batch_size, p.lease_timeout, &self.token, self.trace_writes).await?;
        if batch.keys.is_empty() {
            return Ok(false);
        }
        wbc_core::failpoint!("worker::after_read");
        let full = batch.keys.len() as u32 == p.batch_size;
        let id = batch.id.clone();
        // The lease is renewed while the flush runs, however long its retries take.
        let flush = async {
            tokio::select! {
                r = self.flush(batch) => Some(r),
                () = self.hold_lease(&id) => None,
            }
        };
        tokio::pin!(flush);
        let outcome = tokio::select! {
            r = &mut flush => r,
            _ = wait_for(stop.clone()) => {
                // SIGTERM: let the batch finish within the grace period, else hand it back.
                match tokio::time::timeout(self.shutdown_grace, &mut flush).await {
                    Ok(r) => r,
                    Err(_) => {
                        let n = self.store.release(&id).await?;
                        tracing::warn!(keys = n, "grace period over; batch handed back to the queue");
                        return Ok(false);
                    }
                }
            }
        };
        let Some(outcome) = outcome else {
            return Ok(false);
        };
        outcome.map(|()| full)
    }

    /// Returns expired leases to the queue and checks whether Redis lost data.
    async fn housekeeping(&self) -> Result<(), wbc_core::Error> {
        wbc_core::failpoint!("worker::reap");
        let reaped = self.store.reap_expired_leases().await?;
        if reaped > 0 {
            self.metrics.leases_reaped.inc_by(reaped);
            tracing::warn!(keys = reaped, "reclaimed keys whose worker stopped holding its lease");
        }
        // A pass makes a few calls in one transaction; a hung PostgreSQL must not stall the reaper.
        let limit = 4 * db::call_limit(&self.pool);
        match tokio::time::timeout(limit, self.watch_for_loss()).await {
            Ok(r) => r,
            Err(_) => Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "loss detection timed out").into()),
        }
    }

    /// Renews a batch's lease every third of the lease time for as long as it is held; returns
    /// once the lease is lost, so that the caller stops working on keys that are not its own.
    async fn hold_lease(&self, batch: &str) {
        let lease = self.pipeline.lease_timeout;
        loop {
            tokio::time::sleep(lease / 3).await;
            match self.store.renew(batch, lease).await {
                Ok(true) => {}
                Ok(false) => {
                    self.metrics.leases_lost.inc();
                    tracing::warn!(batch, "lease lost; the batch's keys are back in the queue for another flush");
                    return;
                }
                // Redis is unreachable: the flush fails on its own, or the lease runs out.
                Err(e) => tracing::warn!(error = %e, batch, "lease not renewed"),
            }
        }
    }
}
