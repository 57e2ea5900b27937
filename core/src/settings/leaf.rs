//! The settings as a flat list of leaves: each clap argument of [`Settings`] joined to the spec field
//! serde gives the same Rust field (serde's camelCase name of it is clap's id in snake case). The
//! ConfigMap, `/admin/config`, the error messages and the chart's list of variables walk this list, so
//! a new field needs nothing here.
use std::{collections::BTreeMap, sync::LazyLock};

use clap::{Args, Command, FromArgMatches};
use serde_json::Value;

use super::Settings;

/// One setting: its clap argument and its place in the resource's spec.
#[derive(Debug)]
pub struct Leaf {
    /// clap's id, the Rust field's name: `initial_delay`.
    pub id: String,
    /// Its environment variable: `RETRY_INITIAL_DELAY`.
    pub env: String,
    /// Its flag without the dashes: `retry-initial-delay`.
    pub long: String,
    /// Its spec field: `retry.initialDelay`.
    pub field: String,
    /// Whether it sits in a group of the spec (`retry`, `failureSimulation`).
    nested: bool,
    /// clap's spellings of an enum's values (`write-behind`); empty for other settings.
    env_values: Vec<String>,
}

struct Model {
    leaves: Vec<Leaf>,
    defaults: Settings,
}

static MODEL: LazyLock<Model> = LazyLock::new(Model::new);

/// Every setting, in the order of its declaration.
pub fn leaves() -> &'static [Leaf] {
    &MODEL.leaves
}

/// The setting of a clap id (a Rust field's name); a name that is none is a bug of this crate.
pub fn by_id(id: &str) -> &'static Leaf {
    leaves().iter().find(|leaf| leaf.id == id).unwrap_or_else(|| panic!("no setting has the id {id}"))
}

/// The defaults, as clap's attributes declare them.
pub(crate) fn defaults() -> &'static Settings {
    &MODEL.defaults
}

/// The command of `A` with no variable attached to its arguments, so that only what is passed counts.
pub(crate) fn ignoring_env<A: Args>() -> Command {
    A::augment_args(Command::new("wbc").no_binary_name(true)).mut_args(|arg| arg.env(None::<&str>))
}

impl Model {
    fn new() -> Self {
        let matches = ignoring_env::<Settings>().try_get_matches_from(std::iter::empty::<String>());
        let defaults = matches
            .and_then(|m| Settings::from_arg_matches(&m))
            .unwrap_or_else(|e| panic!("the settings' defaults do not parse: {e}"));
        let mut fields = Vec::new();
        spec_fields(&serde_json::to_value(&defaults).expect("settings serialize"), "", &mut fields);
        let leaves: Vec<Leaf> = Settings::augment_args(Command::new("wbc"))
            .get_arguments()
            .map(|arg| {
                let id = arg.get_id().as_str();
                let field = fields.iter().find(|f| snake_case(f.rsplit('.').next().unwrap_or(f)) == id);
                let field = field.unwrap_or_else(|| panic!("the setting {id} has no spec field of that name"));
                Leaf {
                    id: id.to_owned(),
                    env: arg.get_env().and_then(|e| e.to_str()).unwrap_or_else(|| panic!("{id} has no env")).to_owned(),
                    long: arg.get_long().unwrap_or_else(|| panic!("{id} has no flag")).to_owned(),
                    field: field.clone(),
                    nested: field.contains('.'),
                    env_values: arg.get_possible_values().iter().map(|v| v.get_name().to_owned()).collect(),
                }
            })
            .collect();
        assert_eq!(leaves.len(), fields.len(), "every spec field of the settings is a clap argument");
        Self { leaves, defaults }
    }
}

/// The dotted paths of the scalars of `value`.
fn spec_fields(value: &Value, prefix: &str, out: &mut Vec<String>) {
    match value {
        Value::Object(fields) => {
            for (name, inner) in fields {
                let path = if prefix.is_empty() { name.clone() } else { format!("{prefix}.{name}") };
                spec_fields(inner, &path, out);
            }
        }
        _ => out.push(prefix.to_owned()),
    }
}

/// `initialDelay` → `initial_delay`: the inverse of serde's camelCase.
fn snake_case(camel: &str) -> String {
    camel
        .chars()
        .flat_map(|c| if c.is_ascii_uppercase() { vec!['_', c.to_ascii_lowercase()] } else { vec![c] })
        .collect()
}

impl Leaf {
    /// Its value in the spec's JSON form of some settings.
    fn json<'a>(&self, spec: &'a Value) -> &'a Value {
        let pointer = format!("/{}", self.field.replace('.', "/"));
        spec.pointer(&pointer).unwrap_or_else(|| panic!("settings serialize without {}", self.field))
    }

    /// An enum's value as the environment spells it (`WriteBehind` → `write-behind`); others unchanged.
    fn env_spelling(&self, value: &str) -> Option<String> {
        self.env_values.iter().find(|v| v.replace('-', "").eq_ignore_ascii_case(value)).cloned()
    }

    /// Its value in the environment: what the ConfigMap holds and the binaries parse.
    fn env_value(&self, spec: &Value) -> String {
        match self.json(spec) {
            Value::String(s) => self.env_spelling(s).unwrap_or_else(|| s.clone()),
            // a float as Rust writes it (2, not 2.0), as the ConfigMap always had it
            Value::Number(n) if n.is_f64() => n.as_f64().unwrap_or_default().to_string(),
            other => other.to_string(),
        }
    }

    /// Its name in `/admin/config`: a top-level setting by its field, a nested one by its variable
    /// (`retry_initial_delay`), whose name carries the group.
    pub fn flat_name(&self) -> String {
        if self.nested { self.env.to_ascii_lowercase() } else { self.id.clone() }
    }

    /// Its value in `/admin/config`: typed, with enums as the environment spells them.
    fn flat_value(&self, spec: &Value) -> Value {
        match self.json(spec) {
            Value::String(s) => Value::String(self.env_spelling(s).unwrap_or_else(|| s.clone())),
            other => other.clone(),
        }
    }
}

impl Settings {
    /// The environment that reproduces these settings in the API and the worker: the ConfigMap's data.
    pub fn to_env(&self) -> BTreeMap<&'static str, String> {
        let spec = serde_json::to_value(self).expect("settings serialize");
        leaves().iter().map(|leaf| (leaf.env.as_str(), leaf.env_value(&spec))).collect()
    }

    /// The settings as `/admin/config` shows them: one flat object, in declaration order.
    pub(crate) fn flat(&self) -> Vec<(String, Value)> {
        let spec = serde_json::to_value(self).expect("settings serialize");
        leaves().iter().map(|leaf| (leaf.flat_name(), leaf.flat_value(&spec))).collect()
    }
}
