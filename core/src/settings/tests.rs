use std::time::Duration;

use clap::Parser;
use serde_json::json;

use super::*;
use crate::Error;

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    pipeline: PipelineArgs,
}

fn parse(args: &[&str]) -> std::result::Result<PipelineArgs, clap::Error> {
    Cli::try_parse_from(std::iter::once("wbc").chain(args.iter().copied())).map(|c| c.pipeline)
}

fn spec(value: serde_json::Value) -> Settings {
    serde_json::from_value(value).unwrap()
}

#[test]
fn defaults_are_write_behind_and_valid() {
    let p = parse(&[]).unwrap().validate().unwrap();
    assert_eq!(p.mode, WriteMode::WriteBehind);
    assert_eq!(p.flush_interval, Duration::from_secs(1));
    assert_eq!(*p, Settings::default());
}

#[test]
fn legacy_switch_selects_write_through() {
    let p = parse(&["--write-behind-enabled", "false"]).unwrap().validate().unwrap();
    assert_eq!(p.mode, WriteMode::WriteThrough);
    let p = parse(&["--write-behind-enabled", "off", "--write-mode", "write-through"]).unwrap().validate().unwrap();
    assert_eq!(p.mode, WriteMode::WriteThrough);
}

#[test]
fn contradicting_mode_switches_are_refused_by_name() {
    let err =
        parse(&["--write-mode", "write-behind", "--write-behind-enabled", "false"]).unwrap().validate().unwrap_err();
    assert!(err.to_string().contains("WRITE_BEHIND_ENABLED"), "{err}");
}

#[test]
fn bad_durations_and_modes_are_refused() {
    for bad in [
        &["--flush-interval", "soon"][..],
        &["--flush-interval", "0s"],
        &["--flush-interval", "2h"],
        &["--write-mode", "write-sideways"],
        &["--batch-size", "0"],
        &["--retry-multiplier", "NaN"],
        &["--failure-rate", "1.5"],
    ] {
        let err = parse(bad).err().unwrap_or_else(|| panic!("{bad:?} was accepted"));
        let flag = bad[0];
        assert!(err.to_string().contains(flag), "{bad:?}: {err}");
    }
}

#[test]
fn a_pipeline_round_trips_through_its_environment() {
    let p = parse(&["--flush-interval", "250ms", "--write-mode", "write-through", "--failure-kind", "permanent"])
        .unwrap()
        .validate()
        .unwrap();
    let env = p.to_env();
    let again = PipelineArgs::from_env(env.iter().map(|(k, v)| (*k, v.as_str()))).unwrap();
    assert_eq!(again, p);
    assert_eq!(env["FLUSH_INTERVAL"], "250ms");
    assert_eq!(env["WRITE_MODE"], "write-through");
    assert_eq!(env["FAILURE_KIND"], "permanent");
    assert_eq!(env["RETRY_MULTIPLIER"], "2");
}

#[test]
fn bad_environment_values_are_refused_by_name() {
    let err = PipelineArgs::from_env([("FLUSH_INTERVAL", "soon")]).unwrap_err().to_string();
    assert!(err.contains("--flush-interval"), "{err}");
    let err = PipelineArgs::from_env([("NO_SUCH_SETTING", "1")]).unwrap_err().to_string();
    assert!(err.contains("NO_SUCH_SETTING is not a setting"), "{err}");
}

#[test]
fn the_database_statement_timeout_defaults_to_30s_is_bounded_and_travels_from_the_resource_to_the_binaries() {
    assert_eq!(parse(&[]).unwrap().settings.database_statement_timeout, Duration::from_secs(30));
    for bad in ["0s", "50ms", "2h", "soon"] {
        let err = parse(&["--database-statement-timeout", bad]).err().unwrap_or_else(|| panic!("{bad} was accepted"));
        assert!(err.to_string().contains("--database-statement-timeout"), "{bad}: {err}");
    }
    let err = spec(json!({"databaseStatementTimeout": "50ms"})).validate().unwrap_err();
    assert!(err.to_string().contains("DATABASE_STATEMENT_TIMEOUT"), "{err}");
    // from the resource, through the ConfigMap, to the binaries
    let env = spec(json!({"databaseStatementTimeout": "5s"})).validate().unwrap().to_env();
    assert_eq!(env["DATABASE_STATEMENT_TIMEOUT"], "5s");
    let read = PipelineArgs::from_env(env.iter().map(|(k, v)| (*k, v.as_str()))).unwrap();
    assert_eq!(read.database_statement_timeout, Duration::from_secs(5));
}

#[test]
fn initial_delay_longer_than_max_is_refused() {
    let err = parse(&["--retry-initial-delay", "10s", "--retry-max-delay", "1s"]).unwrap().validate().unwrap_err();
    assert!(err.to_string().contains("RETRY_INITIAL_DELAY"), "{err}");
}

#[test]
fn every_setting_has_a_variable_a_flag_and_a_spec_field() {
    let fields: Vec<(&str, &str)> = leaf::leaves().iter().map(|l| (l.env.as_str(), l.field.as_str())).collect();
    assert!(fields.contains(&("WRITE_MODE", "mode")), "{fields:?}");
    assert!(fields.contains(&("RETRY_INITIAL_DELAY", "retry.initialDelay")), "{fields:?}");
    assert!(fields.contains(&("SIMULATE_DB_FAILURE", "failureSimulation.enabled")), "{fields:?}");
    assert_eq!(leaf::by_id("rate").long, "failure-rate");
    let mut envs = PipelineArgs::env_names();
    envs.retain(|e| e != "WRITE_BEHIND_ENABLED");
    assert_eq!(envs, fields.iter().map(|(env, _)| env.to_string()).collect::<Vec<_>>());
}

#[test]
fn every_range_check_is_of_a_setting() {
    for (id, checked) in Settings::default().range_checks() {
        assert!(checked.is_ok(), "{id}: the default is out of its range");
        leaf::by_id(id);
    }
}

#[test]
fn an_empty_spec_takes_the_defaults_and_a_spec_spells_enums_as_the_resource_does() {
    assert_eq!(spec(json!({})), Settings::default());
    let settings = spec(json!({"mode": "WriteThrough", "failureSimulation": {"kind": "Permanent"}}));
    assert_eq!(settings.mode, WriteMode::WriteThrough);
    assert_eq!(settings.failure_simulation.rate, 0.1, "a group takes the defaults of what it leaves out");
    let written = serde_json::to_value(&settings).unwrap();
    assert_eq!((written["mode"].as_str(), written["flushInterval"].as_str()), (Some("WriteThrough"), Some("1s")));
    assert_eq!(settings.to_env()["FAILURE_KIND"], "permanent");
    assert_eq!(WriteMode::WriteThrough.env_name(), "write-through");
}

#[test]
fn a_typed_value_out_of_range_is_refused_with_its_variable_and_its_spec_field() {
    for (value, env, field) in [
        (json!({"flushInterval": "2h"}), "FLUSH_INTERVAL", "flushInterval"),
        (json!({"cacheTtl": "90d"}), "CACHE_TTL", "cacheTtl"),
        (json!({"retry": {"initialDelay": "0ms"}}), "RETRY_INITIAL_DELAY", "retry.initialDelay"),
        (json!({"leaseTimeout": "99999999999999999999999s"}), "LEASE_TIMEOUT", "leaseTimeout"),
        (json!({"batchSize": 0}), "BATCH_SIZE", "batchSize"),
        (json!({"failureSimulation": {"rate": 2.0}}), "FAILURE_RATE", "failureSimulation.rate"),
        (json!({"retry": {"initialDelay": "10s", "maxDelay": "1s"}}), "RETRY_INITIAL_DELAY", "retry.initialDelay"),
        (json!({"leaseTimeout": "500ms"}), "LEASE_TIMEOUT", "leaseTimeout"),
    ] {
        match spec(value.clone()).validate() {
            Err(Error::Config { setting, field: Some(at), reason }) => {
                assert_eq!((setting, at), (env, field), "{value}: {reason}");
            }
            other => panic!("{value}: {other:?}"),
        }
    }
}

#[test]
fn admin_config_shows_every_setting_flat_as_it_always_has() {
    let shown = serde_json::to_string(&Settings::default().validate().unwrap()).unwrap();
    let before = concat!(
        r#"{"mode":"write-behind","flush_interval":"1s","batch_size":500,"max_retries":3,"#,
        r#""retry_initial_delay":"100ms","retry_max_delay":"30s","retry_multiplier":2.0,"queue_capacity":100000,"#,
        r#""overflow_policy":"reject","redis_down_policy":"reject","lease_timeout":"30s","cache_ttl":"1h","#,
        r#""database_statement_timeout":"30s","#,
        r#""simulate_db_failure":false,"failure_rate":0.1,"failure_kind":"transient"}"#
    );
    assert_eq!(shown, before);
}

#[test]
fn the_documentation_of_a_bounded_number_states_its_bounds() {
    fn walk(schema: &serde_json::Value, path: &str) -> usize {
        let mut bounded = 0;
        for (name, field) in schema["properties"].as_object().into_iter().flatten() {
            let path = format!("{path}.{name}");
            if let (Some(min), Some(max)) = (field["minimum"].as_f64(), field["maximum"].as_f64()) {
                let range = format!("({min} to {max})");
                let description = field["description"].as_str().unwrap_or_default();
                assert!(description.contains(&range), "{path}: {description:?} does not say {range}");
                bounded += 1;
            }
            bounded += walk(field, &path);
        }
        bounded
    }
    let schema = serde_json::to_value(schemars::schema_for!(Settings)).unwrap();
    let groups = schema["$defs"].as_object().cloned().unwrap_or_default();
    let bounded = walk(&schema, "spec") + groups.iter().map(|(name, group)| walk(group, name)).sum::<usize>();
    assert_eq!(bounded, 5, "batchSize, maxRetries, queueCapacity, retry.multiplier, failureSimulation.rate");
}
