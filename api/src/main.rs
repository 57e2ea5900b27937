use clap::Parser;

// Every request allocates many small objects; mimalloc serves them with less CPU than glibc.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    #[cfg(feature = "failpoints")]
    let _failpoints = wbc_core::failpoint::setup();
    let args = wbc_api::Args::parse();
    args.runtime()?.block_on(args.run())
}
