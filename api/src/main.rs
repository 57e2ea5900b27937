use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    wbc_api::Args::parse().run().await
}
