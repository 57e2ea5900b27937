//! `wbc-verify`: judges a load's ledger against what PostgreSQL and the dead-letter list hold, with
//! the rules of `wbc_core::testkit::verdict`. Prints a summary on stderr and the verdict as JSON on
//! stdout; exits 0 when every guarantee holds, 1 on a violation, 2 when it cannot judge.
use std::{path::PathBuf, process::ExitCode, time::Duration};

use anyhow::Context;
use clap::Parser;
use wbc_core::{
    Store,
    endpoint::RedisEndpoint,
    testkit::{
        evidence::{self, DeadLetters, Rows},
        ledger::Ledger,
        verdict,
    },
};

/// Bounds the read of every product: a hung database must end the run, not stall it.
const STATEMENT_TIMEOUT: Duration = Duration::from_secs(60);

/// Where each piece of evidence comes from. No source reads the environment: a DATABASE_URL left
/// in a shell must not silently replace the files a suite dumped.
#[derive(Parser)]
#[command(version, about = "Checks a load's ledger against PostgreSQL and the dead-letter list")]
struct Args {
    /// Prints the query whose output `--rows` reads, and exits: the suites dump with it.
    #[arg(long, exclusive = true)]
    rows_query: bool,
    /// The ledger: JSON lines of acknowledged and unsure writes (`tests/e2e/load.py` writes it).
    #[arg(long, required = true)]
    ledger: Option<PathBuf>,
    /// PostgreSQL to read the products from.
    #[arg(long, required_unless_present = "rows", conflicts_with = "rows")]
    database_url: Option<String>,
    /// The products as JSON lines (`row_to_json` of id, name, price, quantity, version, deleted).
    #[arg(long)]
    rows: Option<PathBuf>,
    /// Redis to read the dead-letter list from.
    #[arg(long, required_unless_present = "dead_letters", conflicts_with = "dead_letters")]
    redis_url: Option<String>,
    /// The dead-letter list as `GET /admin/dlq?limit=…` answered it; a truncated listing is refused.
    #[arg(long)]
    dead_letters: Option<PathBuf>,
}

impl Args {
    /// Reads the ledger and the evidence, judges, and reports.
    async fn run(self) -> anyhow::Result<bool> {
        let Self { rows_query, ledger, database_url, rows, redis_url, dead_letters } = self;
        if rows_query {
            println!("{}", evidence::ROWS_JSON_SQL);
            return Ok(true);
        }
        let ledger = ledger.expect("clap requires a ledger");
        let ledger = Ledger::read(&ledger)?;
        let rows: Rows = match (database_url, rows) {
            (Some(url), _) => evidence::rows(&wbc_core::db::connect(&url, 1, STATEMENT_TIMEOUT).await?)
                .await
                .context("reading products")?,
            (None, Some(path)) => evidence::read_rows(&path)?,
            (None, None) => unreachable!("clap requires one source of rows"),
        };
        let dead_letters = match (redis_url, dead_letters) {
            (Some(url), _) => DeadLetters::read(&Store::connect(&RedisEndpoint::new(url)).await?)
                .await
                .context("reading dead letters")?,
            (None, Some(path)) => DeadLetters::read_listing(&path)?,
            (None, None) => unreachable!("clap requires one source of dead letters"),
        };
        let verdict = verdict::judge(&ledger, &rows, &dead_letters);
        eprintln!("{}", verdict.summary());
        println!("{}", verdict.to_json());
        Ok(verdict.holds())
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    match Args::parse().run().await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("wbc-verify: cannot judge: {e:#}");
            ExitCode::from(2)
        }
    }
}
