//! What the binaries run with: the settings as they read them (with the seed's legacy switch), checked
//! into a [`Pipeline`].
use std::time::Duration;

use clap::{Arg, ArgMatches, Args, Command, FromArgMatches, builder::BoolishValueParser, parser::ValueSource};
use serde::{Serialize, ser::SerializeMap};

use super::{Settings, WriteMode, leaf};
use crate::{Error, Result};

/// The legacy switch's clap id and variable.
const LEGACY_ID: &str = "write_behind_enabled";
const LEGACY_ENV: &str = "WRITE_BEHIND_ENABLED";

/// The pipeline settings as the API and the worker read them: the model, and the seed's switch.
#[derive(Clone, Debug)]
pub struct PipelineArgs {
    /// Every setting, with clap's defaults where nothing was given.
    pub settings: Settings,
    /// `WRITE_BEHIND_ENABLED`: false means write-through, unless `WRITE_MODE` says otherwise.
    pub write_behind_enabled: Option<bool>,
    /// Whether `WRITE_MODE` was given, rather than defaulted.
    pub write_mode_given: bool,
}

/// Settings that passed every check: what the API and the worker run with.
#[derive(Clone, Debug, PartialEq)]
pub struct Pipeline(Settings);

impl std::ops::Deref for Pipeline {
    type Target = Settings;

    fn deref(&self) -> &Settings {
        &self.0
    }
}

/// `/admin/config`: one flat object of every setting, enums and durations as the environment spells them.
impl Serialize for Pipeline {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        let flat = self.0.flat();
        let mut map = s.serialize_map(Some(flat.len()))?;
        for (name, value) in &flat {
            map.serialize_entry(name, value)?;
        }
        map.end()
    }
}

impl Args for PipelineArgs {
    fn augment_args(cmd: Command) -> Command {
        // `--write-mode <WRITE_MODE>` in --help, rather than clap's `<MODE>` from the field's name
        let named = leaf::leaves().iter().fold(Settings::augment_args(cmd), |cmd, leaf| {
            cmd.mut_arg(&leaf.id, |arg| arg.value_name(leaf.env.as_str()))
        });
        named.arg(
            Arg::new(LEGACY_ID)
                .long("write-behind-enabled")
                .env(LEGACY_ENV)
                .value_name(LEGACY_ENV)
                .value_parser(BoolishValueParser::new())
                .help("Legacy switch: false means write-through. WRITE_MODE wins where both are set and agree"),
        )
    }

    fn augment_args_for_update(cmd: Command) -> Command {
        Self::augment_args(cmd)
    }
}

impl FromArgMatches for PipelineArgs {
    fn from_arg_matches(matches: &ArgMatches) -> std::result::Result<Self, clap::Error> {
        Ok(Self {
            settings: Settings::from_arg_matches(matches)?,
            write_behind_enabled: matches.get_one::<bool>(LEGACY_ID).copied(),
            // the legacy switch decides only where WRITE_MODE was left to its default
            write_mode_given: matches.value_source("mode").is_some_and(|s| s != ValueSource::DefaultValue),
        })
    }

    fn update_from_arg_matches(&mut self, matches: &ArgMatches) -> std::result::Result<(), clap::Error> {
        *self = Self::from_arg_matches(matches)?;
        Ok(())
    }
}

impl PipelineArgs {
    /// Resolves the write mode from both switches, then checks every rule.
    pub fn validate(&self) -> Result<Pipeline> {
        let mut settings = self.settings.clone();
        settings.mode = match (self.write_mode_given, self.write_behind_enabled) {
            (true, None) | (false, None) => settings.mode,
            (false, Some(true)) => WriteMode::WriteBehind,
            (false, Some(false)) => WriteMode::WriteThrough,
            (true, Some(enabled)) if (settings.mode == WriteMode::WriteBehind) == enabled => settings.mode,
            (true, Some(enabled)) => {
                let mode = settings.mode.env_name();
                let reason = format!("{enabled} contradicts WRITE_MODE={mode}; set only one of them");
                return Err(Error::Config { setting: LEGACY_ENV, field: None, reason });
            }
        };
        settings.validate()
    }

    /// Parses and checks pipeline settings given as environment variables (`FLUSH_INTERVAL=2s`) with the
    /// binaries' own arguments, so that a ConfigMap can be read back as they will read it. (clap reads
    /// variables only from the process's environment, so each is passed as its argument's flag.)
    pub fn from_env<'a>(vars: impl IntoIterator<Item = (&'a str, &'a str)>) -> Result<Pipeline> {
        let refused = |reason: String| Error::Config { setting: "pipeline", field: None, reason };
        let command = leaf::ignoring_env::<Self>();
        let flags = Self::augment_args(Command::new("wbc"));
        let flag_of = |name: &str| {
            let arg = flags.get_arguments().find(|arg| arg.get_env().is_some_and(|env| env == name))?;
            arg.get_long()
        };
        let args = vars
            .into_iter()
            .map(|(name, value)| {
                Ok(format!("--{}={value}", flag_of(name).ok_or_else(|| refused(format!("{name} is not a setting")))?))
            })
            .collect::<Result<Vec<_>>>()?;
        let matches = command.try_get_matches_from(args).map_err(|e| {
            let first_line = e.render().to_string().lines().next().unwrap_or_default().to_owned();
            refused(first_line.trim_start_matches("error: ").to_owned())
        })?;
        Self::from_arg_matches(&matches).map_err(|e| refused(e.to_string()))?.validate()
    }

    /// Every variable the API and worker read their pipeline from, the legacy switch included.
    pub fn env_names() -> Vec<String> {
        let command = Self::augment_args(Command::new("wbc"));
        command.get_arguments().filter_map(|arg| Some(arg.get_env()?.to_str()?.to_owned())).collect()
    }
}

impl Settings {
    /// Checks every rule on the typed values. An error names the setting both ways: its variable, and
    /// its field of the resource's spec.
    pub fn validate(self) -> Result<Pipeline> {
        for (id, checked) in self.range_checks() {
            checked.map_err(|reason| invalid(id, reason))?;
        }
        if self.retry.initial_delay > self.retry.max_delay {
            return Err(invalid("initial_delay", "must not be longer than the largest retry delay".into()));
        }
        // a lease must outlast a batch's commit; short flush intervals need no longer leases than 1s
        if self.lease_timeout <= self.flush_interval.min(Duration::from_secs(1)) {
            let reason = "must be longer than the flush interval, or than 1s when the flush interval is longer";
            return Err(invalid("lease_timeout", reason.into()));
        }
        Ok(Pipeline(self))
    }
}

/// The error of the setting with clap id `id`.
fn invalid(id: &str, reason: String) -> Error {
    let leaf = leaf::by_id(id);
    Error::Config { setting: &leaf.env, field: Some(&leaf.field), reason }
}
