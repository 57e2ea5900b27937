//! The scenarios, and what they share: settings, binaries, footprint records and queue polling.
pub mod coalescing;
pub mod drain;
pub mod lag;
pub mod latency;
pub mod throughput;

use std::{
    io::{IsTerminal, Write},
    net::SocketAddr,
    path::PathBuf,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use futures::{StreamExt, TryStreamExt};
use serde::Serialize;
use tokio::{
    sync::watch,
    task::JoinHandle,
    time::{Instant, sleep},
};
use wbc_core::{ProductInput, Store};

use crate::{
    Result,
    config::Settings,
    load::{Load, Op},
    stack::{Binaries, PipelineEnv, Service},
};

/// What every scenario needs.
pub struct Ctx {
    pub settings: Settings,
    pub bins: Binaries,
    /// Logs of the API and worker processes.
    pub logs: PathBuf,
    /// Scratch files, such as the pgbench scripts.
    pub tmp: PathBuf,
    pub footprint: Vec<Footprint>,
}

/// Peak RSS of one process during one scenario.
#[derive(Clone, Debug, Serialize)]
pub struct Footprint {
    pub scenario: &'static str,
    pub process: String,
    pub peak_rss_bytes: u64,
}

impl Ctx {
    /// The pipeline settings of the run, with room for `queue_capacity` dirty keys.
    pub fn pipeline(&self, queue_capacity: u64) -> PipelineEnv {
        PipelineEnv {
            flush_interval: self.settings.flush_interval,
            batch_size: self.settings.batch_size,
            queue_capacity,
            flush_concurrency: self.settings.flush_concurrency,
        }
    }

    /// A closed-loop load with the run's warm-up.
    pub fn load(&self, label: String, addr: SocketAddr, op: Op, connections: usize, duration: Duration) -> Load {
        Load { label, addr, op, connections, warmup: self.settings.warmup, duration, rate: None }
    }

    /// Notes the peak RSS (VmHWM) of the scenario's processes; call it before they stop.
    pub fn record_rss(&mut self, scenario: &'static str, services: &[&Service]) {
        for s in services {
            if let Some(bytes) = s.peak_rss_bytes() {
                self.footprint.push(Footprint { scenario, process: s.name.clone(), peak_rss_bytes: bytes });
            }
        }
    }
}

/// A product body for writes made directly through the store.
pub fn sample_product(n: u64) -> ProductInput {
    ProductInput { name: format!("Bench product {n}"), price: 19.99, quantity: (n % 1000) as i64 }
}

/// Writes each id with the API's own Redis script (`Store::write`), many at once on the
/// multiplexed connection so that the commands pipeline.
pub async fn preload(store: &Store, ids: Vec<String>, capacity: u64, label: &str) -> Result<()> {
    let total = ids.len() as u64;
    let done = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    futures::stream::iter(ids.into_iter().enumerate())
        .map(|(n, id)| {
            let (store, done) = (store.clone(), done.clone());
            async move {
                // Bench keys are new, or still cached with their last version: none needs a lookup.
                store.write(&id, Some(&sample_product(n as u64)), capacity, None, Some(0)).await?;
                let d = done.fetch_add(1, Ordering::Relaxed) + 1;
                if d % 10_000 == 0 && std::io::stderr().is_terminal() {
                    eprint!("\r  {label:<44} {d:>9} / {total} keys   ");
                    let _ = std::io::stderr().flush();
                }
                Ok::<_, crate::Error>(())
            }
        })
        .buffer_unordered(256)
        .try_collect::<()>()
        .await?;
    let secs = start.elapsed().as_secs_f64();
    eprintln!("\r  {label:<44} {total:>9} keys in {secs:.1} s ({:.0} keys/s)", total as f64 / secs);
    Ok(())
}

/// One look at the queue (`/admin/queue`, read from Redis directly).
#[derive(Clone, Debug, Default, Serialize)]
pub struct QueueSample {
    /// Seconds since polling started.
    pub t_s: f64,
    pub queue_size: u64,
    pub in_flight: u64,
    pub oldest_unpersisted_age_ms: u64,
}

/// Polls the queue in the background until stopped.
pub struct QueuePoller {
    stop: watch::Sender<bool>,
    task: JoinHandle<Vec<QueueSample>>,
}

impl QueuePoller {
    pub fn start(store: Store, every: Duration) -> Self {
        let (stop, mut stopped) = watch::channel(false);
        let task = tokio::spawn(async move {
            let start = Instant::now();
            let mut samples = Vec::new();
            while !*stopped.borrow() {
                if let Ok(s) = store.queue_stats().await {
                    samples.push(QueueSample {
                        t_s: start.elapsed().as_secs_f64(),
                        queue_size: s.queue_size,
                        in_flight: s.in_flight,
                        oldest_unpersisted_age_ms: s.oldest_unpersisted_age_ms.unwrap_or(0),
                    });
                }
                tokio::select! {
                    _ = sleep(every) => {}
                    _ = stopped.changed() => {}
                }
            }
            samples
        });
        Self { stop, task }
    }

    pub async fn stop(self) -> Vec<QueueSample> {
        self.stop.send_replace(true);
        self.task.await.unwrap_or_default()
    }
}

/// Prints a scenario's heading.
pub fn heading(number: usize, title: &str) {
    eprintln!("\n[{number}] {title}");
}
