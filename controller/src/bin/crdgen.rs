//! Prints the CustomResourceDefinition of `WriteBehindCache` as YAML (`--chart`: the Helm chart's copy).
use clap::Parser;

/// Command line of `crdgen`.
#[derive(Parser, Debug)]
#[command(name = "crdgen", about = "Prints the WriteBehindCache CRD as YAML")]
struct Args {
    /// Print the Helm chart's template instead: the CRD behind `crds.create`, kept on uninstall.
    #[arg(long, env = "CRDGEN_CHART", default_value_t = false)]
    chart: bool,
}

fn main() -> anyhow::Result<()> {
    let Args { chart } = Args::parse();
    let yaml =
        if chart { wbc_controller::manifests::chart_crd_yaml()? } else { wbc_controller::manifests::crd_yaml()? };
    print!("{yaml}");
    Ok(())
}
