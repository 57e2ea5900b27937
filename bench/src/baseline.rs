//! The baselines: `redis-benchmark` on our Redis, and `pgbench` scripts on our PostgreSQL.
use std::{path::Path, time::Duration};

use serde::Serialize;
use tokio::process::Command;
use wbc_core::testkit::pg_bindir;

use crate::{Error, Result};

/// One `redis-benchmark` test.
#[derive(Clone, Debug, Default, Serialize)]
pub struct RedisBench {
    pub test: String,
    pub clients: usize,
    pub requests: u64,
    pub rps: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

/// `redis-benchmark -t <test>` with `clients` connections, no pipelining, over `keyspace` keys
/// with 64-byte values (about the size of a product's JSON).
pub async fn redis_benchmark(
    port: u16,
    test: &str,
    clients: usize,
    requests: u64,
    keyspace: u64,
) -> Result<RedisBench> {
    let tool = "redis-benchmark";
    let out = Command::new(tool)
        .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-c", &clients.to_string()])
        .args(["-n", &requests.to_string(), "-r", &keyspace.to_string(), "-d", "64", "-t", test, "--csv"])
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|e| Error::Tool { tool, reason: format!("{e} (install the redis-tools package)") })?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        let reason = format!("{}: {}", out.status, String::from_utf8_lossy(&out.stderr));
        return Err(Error::Tool { tool, reason });
    }
    let mut bench = parse_redis_csv(&stdout, test)
        .ok_or_else(|| Error::Tool { tool, reason: format!("unreadable output: {stdout}") })?;
    bench.clients = clients;
    bench.requests = requests;
    Ok(bench)
}

/// Reads `"SET","136054.42","0.235","0.016","0.207","0.343","0.903","7.175"` (rps, avg, min, p50, p95, p99, max).
fn parse_redis_csv(csv: &str, test: &str) -> Option<RedisBench> {
    let line =
        csv.lines().find(|l| l.to_ascii_uppercase().starts_with(&format!("\"{}\"", test.to_ascii_uppercase())))?;
    let fields: Vec<f64> = line.split(',').skip(1).map(|f| f.trim_matches('"').parse().unwrap_or(f64::NAN)).collect();
    Some(RedisBench {
        test: test.to_ascii_uppercase(),
        rps: *fields.first()?,
        p50_ms: *fields.get(3)?,
        p99_ms: *fields.get(5)?,
        ..Default::default()
    })
}

/// One pgbench run of a custom script.
#[derive(Clone, Debug, Default, Serialize)]
pub struct PgBench {
    pub name: String,
    pub clients: u32,
    pub transactions_per_s: f64,
    pub rows_per_transaction: u64,
    pub rows_per_s: f64,
}

/// How long pgbench runs.
pub enum Span {
    Transactions(u64),
    Time(Duration),
}

/// SQL of the baselines: tables shaped like `products` (LIKE … INCLUDING ALL), and ids from a
/// sequence so that every row is new, as the worker's drain inserts new rows.
pub fn setup_sql(batch_size: u32) -> [String; 2] {
    let upsert = |table: &str| {
        format!(
            "ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name, price = EXCLUDED.price, \
             quantity = EXCLUDED.quantity, version = EXCLUDED.version, deleted = EXCLUDED.deleted, \
             updated_at = now() WHERE {table}.version < EXCLUDED.version;\n"
        )
    };
    let version = "(extract(epoch FROM clock_timestamp()) * 1000000)::int8";
    let batched = format!(
        "INSERT INTO bench_batched (id, name, price, quantity, version, deleted) \
         SELECT 'batched-' || ((s.n - 1) * {batch_size} + g), 'Bench product ' || g, 19.99, g, {version}, false \
         FROM (SELECT nextval('bench_batched_seq') AS n) s, generate_series(1, {batch_size}) g {}",
        upsert("bench_batched")
    );
    let single = format!(
        "INSERT INTO bench_single (id, name, price, quantity, version, deleted) \
         VALUES ('single-' || nextval('bench_single_seq'), 'Bench product', 19.99, 1, {version}, false) {}",
        upsert("bench_single")
    );
    [batched, single]
}

/// Creates the baseline tables and sequences.
pub async fn prepare(pool: &wbc_core::PgPool) -> Result<()> {
    for table in ["bench_batched", "bench_single"] {
        sqlx::query(&format!("CREATE TABLE IF NOT EXISTS {table} (LIKE products INCLUDING ALL)")).execute(pool).await?;
        sqlx::query(&format!("CREATE SEQUENCE IF NOT EXISTS {table}_seq")).execute(pool).await?;
    }
    Ok(())
}

/// Runs `script` (a file) with `clients` connections; `rows` is rows per transaction.
pub async fn pgbench(port: u16, name: &str, script: &Path, clients: u32, span: Span, rows: u64) -> Result<PgBench> {
    let tool = "pgbench";
    let mut cmd = Command::new(pg_bindir().join("pgbench"));
    cmd.args(["-n", "-h", "127.0.0.1", "-p", &port.to_string(), "-U", "wbc"])
        .args(["-c", &clients.to_string(), "-j", &clients.to_string(), "-f"])
        .arg(script);
    match span {
        Span::Transactions(t) => cmd.args(["-t", &t.to_string()]),
        Span::Time(d) => cmd.args(["-T", &d.as_secs().max(1).to_string()]),
    };
    let out = cmd
        .arg("postgres")
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|e| Error::Tool { tool, reason: e.to_string() })?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        let reason = format!("{}: {}{}", out.status, stdout, String::from_utf8_lossy(&out.stderr));
        return Err(Error::Tool { tool, reason });
    }
    let tps = parse_tps(&stdout).ok_or_else(|| Error::Tool { tool, reason: format!("no tps in: {stdout}") })?;
    Ok(PgBench {
        name: name.into(),
        clients,
        transactions_per_s: tps,
        rows_per_transaction: rows,
        rows_per_s: tps * rows as f64,
    })
}

/// Reads `tps = 1234.5 (without initial connection time)`.
fn parse_tps(out: &str) -> Option<f64> {
    out.lines().find_map(|l| l.trim().strip_prefix("tps = ")?.split_whitespace().next()?.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redis_benchmark_csv_gives_rps_and_percentiles() {
        let csv = "\"test\",\"rps\",\"avg_latency_ms\",\"min_latency_ms\",\"p50_latency_ms\",\"p95_latency_ms\",\
                   \"p99_latency_ms\",\"max_latency_ms\"\n\"SET\",\"136054.42\",\"0.235\",\"0.016\",\"0.207\",\"0.343\",\"0.903\",\"7.175\"\n";
        let b = parse_redis_csv(csv, "set").unwrap();
        assert_eq!((b.rps, b.p50_ms, b.p99_ms), (136054.42, 0.207, 0.903));
        assert!(parse_redis_csv(csv, "get").is_none());
    }

    #[test]
    fn pgbench_output_gives_tps_without_connection_time() {
        let out = "latency average = 1.1 ms\ninitial connection time = 3.2 ms\ntps = 889.123 (without initial connection time)\n";
        assert_eq!(parse_tps(out), Some(889.123));
    }
}
