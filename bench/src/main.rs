use clap::Parser;

fn main() -> anyhow::Result<()> {
    wbc_bench::Args::parse().run()?;
    Ok(())
}
