use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    wbc_controller::Args::parse().run().await
}
