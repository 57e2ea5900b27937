use clap::Parser;

// Every request allocates many small objects; mimalloc serves them with less CPU than glibc.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    wbc_api::Args::parse().run().await
}
