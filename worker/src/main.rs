use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    wbc_worker::Args::parse().run().await
}
