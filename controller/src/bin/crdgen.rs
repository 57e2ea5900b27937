//! Prints the CustomResourceDefinition of `WriteBehindCache` as YAML (`--chart`: the Helm chart's copy;
//! `--pipeline-env`: the chart's list of the pipeline's variables).
use clap::Parser;

/// Command line of `crdgen`.
#[derive(Parser, Debug)]
#[command(name = "crdgen", about = "Prints the WriteBehindCache CRD as YAML")]
struct Args {
    /// Print the Helm chart's template instead: the CRD behind `crds.create`, kept on uninstall.
    #[arg(long, env = "CRDGEN_CHART", default_value_t = false)]
    chart: bool,
    /// Print the chart's list of the variables of the pipeline settings instead.
    #[arg(long, env = "CRDGEN_PIPELINE_ENV", default_value_t = false, conflicts_with = "chart")]
    pipeline_env: bool,
}

fn main() -> anyhow::Result<()> {
    let Args { chart, pipeline_env } = Args::parse();
    let yaml = match (chart, pipeline_env) {
        (true, _) => wbc_controller::manifests::chart_crd_yaml()?,
        (_, true) => wbc_controller::manifests::pipeline_env_yaml()?,
        _ => wbc_controller::manifests::crd_yaml()?,
    };
    print!("{yaml}");
    Ok(())
}
