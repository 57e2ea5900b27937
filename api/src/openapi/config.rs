//! The schema of `/admin/config`, derived from the settings model as `/admin/config` itself is: one
//! property per setting ([`leaf::leaves`]), typed, ranged and described as schemars describes its spec
//! field, and an enum's values as the environment spells them (clap's).
use std::borrow::Cow;

use clap::Args;
use serde_json::{Map, Value};
use utoipa::{
    PartialSchema, ToSchema,
    openapi::{ObjectBuilder, RefOr, Schema, Type, schema::AdditionalProperties},
};
use wbc_core::{Settings, settings::leaf};

/// The body of `GET /admin/config`.
pub struct ConfigSchema;

impl ToSchema for ConfigSchema {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("Config")
    }
}

impl PartialSchema for ConfigSchema {
    fn schema() -> RefOr<Schema> {
        let spec = serde_json::to_value(schemars::schema_for!(Settings)).expect("the settings' schema serializes");
        let command = Settings::augment_args(clap::Command::new("wbc"));
        let object = ObjectBuilder::new()
            .schema_type(Type::Object)
            .description(Some("The effective configuration: every pipeline setting"))
            .additional_properties(Some(AdditionalProperties::FreeForm(false)));
        leaf::leaves()
            .iter()
            .fold(object, |object, leaf| {
                let name = leaf.flat_name();
                let arg = command.get_arguments().find(|a| a.get_id() == leaf.id.as_str());
                let values: Vec<String> = arg
                    .map(|a| a.get_possible_values().iter().map(|v| v.get_name().to_owned()).collect())
                    .unwrap_or_default();
                object.property(&name, setting(field(&spec, &leaf.field), &values)).required(&name)
            })
            .into()
    }
}

/// The schemars schema of a spec field (`retry.initialDelay`), through the `$defs` of its groups.
fn field<'a>(root: &'a Value, path: &str) -> &'a Value {
    let resolve = |node: &'a Value| -> &'a Value {
        let reference = node["$ref"].as_str().or_else(|| node["allOf"][0]["$ref"].as_str());
        match reference.and_then(|r| r.strip_prefix("#/$defs/")) {
            Some(name) => &root["$defs"][name],
            None => node,
        }
    };
    path.split('.').fold(root, |node, name| {
        let inner = &resolve(node)["properties"][name];
        assert!(!inner.is_null(), "the settings' schema has no field {path}");
        resolve(inner)
    })
}

/// A setting's schema: its type, range, pattern and description from schemars, or, for an enum, the
/// environment's spellings of its values.
fn setting(field: &Value, env_values: &[String]) -> Schema {
    let mut kept: Map<String, Value> = ["type", "minimum", "maximum", "pattern", "description"]
        .into_iter()
        .filter_map(|key| field.get(key).map(|v| (key.to_owned(), v.clone())))
        .collect();
    // An enum is a string of the environment's spellings; a switch (`bool`) stays a boolean.
    if !env_values.is_empty() && field.get("type") != Some(&Value::from("boolean")) {
        kept.insert("type".into(), "string".into());
        kept.insert("enum".into(), env_values.into());
    }
    serde_json::from_value(Value::Object(kept)).expect("a setting's schema is a schema")
}
