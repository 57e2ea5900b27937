use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    #[cfg(feature = "failpoints")]
    let _failpoints = wbc_core::failpoint::setup();
    wbc_worker::Args::parse().run().await
}
