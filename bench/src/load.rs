//! Closed-loop (or paced) HTTP load: one keep-alive connection per simulated client, each sending
//! its next request when the last one is answered. Latencies go to an HDR histogram.
use std::{
    io::{IsTerminal, Write},
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use bytes::Bytes;
use hdrhistogram::Histogram;
use hyper::Method;
use rand::{Rng, SeedableRng, rngs::SmallRng};
use serde::Serialize;
use tokio::time::{Instant, sleep, sleep_until};

use crate::{Result, http::Connection};

/// What each request does.
#[derive(Clone)]
pub enum Op {
    /// `POST /products`, a new key each time.
    Post,
    /// `PUT /products/{prefix}-{client}-{n}`, a new key each time.
    PutUnique(&'static str),
    /// `PUT /products/{key}` over the given keys, picked at random.
    PutKeys(Arc<[String]>),
    /// `GET /products/{key}` over the given keys, picked at random.
    Get(Arc<[String]>),
}

/// One measured load.
#[derive(Clone)]
pub struct Load {
    pub label: String,
    pub addr: SocketAddr,
    pub op: Op,
    pub connections: usize,
    pub warmup: Duration,
    pub duration: Duration,
    /// Total requests per second, spread evenly over the connections; `None` is closed loop.
    pub rate: Option<f64>,
}

/// What a load measured, without the histogram.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Summary {
    pub label: String,
    pub connections: usize,
    /// Measured time, warm-up excluded.
    pub duration_s: f64,
    pub ok: u64,
    pub errors: u64,
    pub throughput_rps: f64,
    pub mean_ms: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
    /// (nines, ms): the latency at quantile 1 - 10^-nines, for percentile charts.
    pub curve: Vec<(f64, f64)>,
    /// Answered requests (2xx) in each second of the measured time.
    pub per_second: Vec<u64>,
}

/// What a load measured, histogram included, so that rounds can be merged.
pub struct Measured {
    histogram: Histogram<u64>,
    ok: u64,
    errors: u64,
    per_second: Vec<u64>,
    duration: Duration,
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 120_000_000, 3).expect("valid histogram bounds")
}

impl Op {
    fn request(&self, client: usize, n: u64, rng: &mut SmallRng) -> (Method, String, Option<Bytes>) {
        let body = || {
            let json = format!(r#"{{"name":"bench {client}-{n}","price":19.99,"quantity":{}}}"#, n % 1000);
            Some(Bytes::from(json))
        };
        match self {
            Op::Post => (Method::POST, "/products".into(), body()),
            Op::PutUnique(prefix) => (Method::PUT, format!("/products/{prefix}-{client}-{n}"), body()),
            Op::PutKeys(keys) => (Method::PUT, format!("/products/{}", keys[rng.random_range(0..keys.len())]), body()),
            Op::Get(keys) => (Method::GET, format!("/products/{}", keys[rng.random_range(0..keys.len())]), None),
        }
    }
}

impl Load {
    /// Runs the load and prints its progress and result on the terminal.
    pub async fn run(&self) -> Result<Summary> {
        let summary = self.measure().await?.summary(&self.label, self.connections);
        print_summary(&summary);
        Ok(summary)
    }

    /// Runs the load, printing only its progress.
    pub async fn measure(&self) -> Result<Measured> {
        let start = Instant::now();
        let measure_from = start + self.warmup;
        let end = measure_from + self.duration;
        let answered = Arc::new(AtomicU64::new(0));
        let ticker = tokio::spawn(progress(self.label.clone(), measure_from, self.duration, answered.clone()));
        let mut tasks = tokio::task::JoinSet::new();
        for id in 0..self.connections.max(1) {
            let (load, answered) = (self.clone(), answered.clone());
            tasks.spawn(async move { load.client(id, start, measure_from, end, answered).await });
        }
        let mut total = Measured::empty(self.duration);
        while let Some(joined) = tasks.join_next().await {
            let client = joined.expect("load client panicked")?;
            total.histogram.add(&client.histogram).expect("histograms with the same bounds add");
            total.ok += client.ok;
            total.errors += client.errors;
            merge(&mut total.per_second, &client.per_second);
        }
        ticker.abort();
        let seconds = self.duration.as_secs_f64().ceil() as usize;
        total.per_second.truncate(seconds);
        Ok(total)
    }

    async fn client(
        &self,
        id: usize,
        start: Instant,
        measure_from: Instant,
        end: Instant,
        answered: Arc<AtomicU64>,
    ) -> Result<Measured> {
        let mut conn = Connection::open(self.addr).await?;
        let mut rng = SmallRng::seed_from_u64(id as u64);
        let mut stats = Measured::empty(self.duration);
        // Paced clients start staggered so that the requests spread over each interval.
        let interval = self.rate.map(|r| Duration::from_secs_f64(self.connections.max(1) as f64 / r.max(0.001)));
        let mut next = start + interval.map_or(Duration::ZERO, |i| i.mul_f64(id as f64 / self.connections as f64));
        for n in 0.. {
            if let Some(interval) = interval {
                sleep_until(next).await;
                next += interval;
            }
            let sent = Instant::now();
            if sent >= end {
                break;
            }
            let (method, path, body) = self.op.request(id, n, &mut rng);
            let result = conn.send(method, &path, body).await;
            let measured = sent >= measure_from;
            match result {
                Ok(status) if (200..300).contains(&status) && measured => {
                    let done = Instant::now();
                    stats.histogram.saturating_record((done - sent).as_micros().max(1) as u64);
                    stats.ok += 1;
                    let second = (done - measure_from).as_secs() as usize;
                    if stats.per_second.len() <= second {
                        stats.per_second.resize(second + 1, 0);
                    }
                    stats.per_second[second] += 1;
                    answered.fetch_add(1, Ordering::Relaxed);
                }
                Ok(status) if (200..300).contains(&status) => {}
                Ok(_) => stats.errors += u64::from(measured),
                Err(_) => {
                    stats.errors += u64::from(measured);
                    match reconnect(self.addr, end).await {
                        Some(c) => conn = c,
                        None => break,
                    }
                }
            }
        }
        Ok(stats)
    }
}

impl Measured {
    fn empty(duration: Duration) -> Self {
        Self { histogram: histogram(), ok: 0, errors: 0, per_second: Vec::new(), duration }
    }

    /// Adds a later round of the same load.
    pub fn append(&mut self, later: Measured) {
        self.histogram.add(&later.histogram).expect("histograms with the same bounds add");
        self.ok += later.ok;
        self.errors += later.errors;
        self.per_second.extend(later.per_second);
        self.duration += later.duration;
    }

    pub fn summary(&self, label: &str, connections: usize) -> Summary {
        let h = &self.histogram;
        let ms = |us: u64| us as f64 / 1000.0;
        let max_nines = (h.len().max(2) as f64).log10().min(5.0);
        let curve = (6..=(max_nines * 20.0) as u32)
            .map(|i| {
                let nines = f64::from(i) / 20.0;
                (nines, ms(h.value_at_quantile(1.0 - 10f64.powf(-nines))))
            })
            .collect();
        Summary {
            label: label.to_owned(),
            connections,
            duration_s: self.duration.as_secs_f64(),
            ok: self.ok,
            errors: self.errors,
            throughput_rps: self.ok as f64 / self.duration.as_secs_f64(),
            mean_ms: h.mean() / 1000.0,
            p50_ms: ms(h.value_at_quantile(0.5)),
            p90_ms: ms(h.value_at_quantile(0.9)),
            p99_ms: ms(h.value_at_quantile(0.99)),
            p999_ms: ms(h.value_at_quantile(0.999)),
            max_ms: ms(h.max()),
            curve,
            per_second: self.per_second.clone(),
        }
    }
}

/// One line with the result of a load.
pub fn print_summary(s: &Summary) {
    eprintln!(
        "\r  {:<44} {:>9.0} req/s  p50 {:>7.3} ms  p99 {:>7.3} ms  p99.9 {:>7.3} ms  errors {}",
        s.label, s.throughput_rps, s.p50_ms, s.p99_ms, s.p999_ms, s.errors
    );
}

/// A new connection after a failed one; keeps trying until the load ends.
async fn reconnect(addr: SocketAddr, end: Instant) -> Option<Connection> {
    while Instant::now() < end {
        match Connection::open(addr).await {
            Ok(conn) => return Some(conn),
            Err(_) => sleep(Duration::from_millis(10)).await,
        }
    }
    None
}

fn merge(into: &mut Vec<u64>, from: &[u64]) {
    if into.len() < from.len() {
        into.resize(from.len(), 0);
    }
    for (a, b) in into.iter_mut().zip(from) {
        *a += b;
    }
}

/// Rewrites one terminal line each second with the elapsed time and the current rate.
async fn progress(label: String, measure_from: Instant, duration: Duration, answered: Arc<AtomicU64>) {
    if !std::io::stderr().is_terminal() {
        return;
    }
    let mut last = 0;
    loop {
        sleep(Duration::from_secs(1)).await;
        let now = answered.load(Ordering::Relaxed);
        let elapsed = Instant::now().saturating_duration_since(measure_from).as_secs_f64();
        let phase = if elapsed == 0.0 { "warm-up" } else { "measuring" };
        eprint!("\r  {label:<44} {phase} {elapsed:>5.1}/{:.0}s {:>9} req/s   ", duration.as_secs_f64(), now - last);
        let _ = std::io::stderr().flush();
        last = now;
    }
}
