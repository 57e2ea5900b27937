//! The committed YAML (the CRD, the chart's copy, the chart's list of pipeline variables) is what the code
//! generates, and the sample is a valid resource.
use std::path::PathBuf;

use wbc_controller::{
    WriteBehindCache,
    manifests::{CHART_CRD_PATH, CRD_PATH, PIPELINE_ENV_PATH, REGENERATE, chart_crd_yaml, crd_yaml, pipeline_env_yaml},
    render::render,
};

fn repository_file(path: &str) -> String {
    let full = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..").join(path);
    std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("{}: {e}; run `{REGENERATE}`", full.display()))
}

fn assert_fresh(path: &str, generated: &str) {
    let committed = repository_file(path);
    if committed != generated {
        let line = committed.lines().zip(generated.lines()).position(|(a, b)| a != b).map_or(0, |n| n + 1);
        panic!("{path} differs from what crdgen generates (first at line {line}); run `{REGENERATE}` and commit it");
    }
}

#[test]
fn the_committed_crd_is_the_one_crdgen_prints() {
    assert_fresh(CRD_PATH, &crd_yaml().unwrap());
}

#[test]
fn the_charts_crd_is_the_one_crdgen_prints() {
    assert_fresh(CHART_CRD_PATH, &chart_crd_yaml().unwrap());
}

#[test]
fn the_charts_list_of_pipeline_variables_is_the_one_crdgen_prints() {
    assert_fresh(PIPELINE_ENV_PATH, &pipeline_env_yaml().unwrap());
}

#[test]
fn the_sample_resource_is_valid_and_renders() {
    let sample: WriteBehindCache = serde_yaml::from_str(&repository_file("manifests/sample-wbc.yaml")).unwrap();
    let rendered = render(&sample).unwrap();
    assert_eq!(rendered.data["FLUSH_INTERVAL"], "500ms");
    assert_eq!(rendered.data["WRITE_MODE"], "write-behind");
}
