//! The range of a setting, written once: clap parses with it, schemars puts it in the CRD's schema, and
//! [`Settings::validate`](super::Settings::validate) checks typed values against it.
use std::{ffi::OsStr, time::Duration};

use clap::{Arg, Command, builder::TypedValueParser};

use crate::config::{duration_in, float_in};

/// The inclusive range `min..=max` of a setting.
#[derive(Clone, Copy, Debug)]
pub struct Within<T> {
    /// Smallest value allowed.
    pub min: T,
    /// Largest value allowed.
    pub max: T,
}

/// A value a range can bound, and how a message writes it.
pub trait Bounded: Copy + PartialOrd {
    /// The value as people (and the environment) write it.
    fn show(self) -> String;
}

impl Bounded for u32 {
    fn show(self) -> String {
        self.to_string()
    }
}

impl Bounded for u64 {
    fn show(self) -> String {
        self.to_string()
    }
}

impl Bounded for f64 {
    fn show(self) -> String {
        self.to_string()
    }
}

impl Bounded for Duration {
    fn show(self) -> String {
        humantime::format_duration(self).to_string()
    }
}

impl<T: Bounded> Within<T> {
    /// The range `min..=max`.
    pub const fn new(min: T, max: T) -> Self {
        Self { min, max }
    }

    /// Whether `value` is in range (NaN never is), and why not.
    pub fn check(&self, value: T) -> Result<(), String> {
        if self.min <= value && value <= self.max {
            return Ok(());
        }
        Err(format!("{} is out of range {}..={}", value.show(), self.min.show(), self.max.show()))
    }
}

// clap's own parsers do the parsing, so the binaries' messages name the flag as they always have.

impl TypedValueParser for Within<Duration> {
    type Value = Duration;

    fn parse_ref(&self, cmd: &Command, arg: Option<&Arg>, value: &OsStr) -> Result<Duration, clap::Error> {
        duration_in(self.min, self.max).parse_ref(cmd, arg, value)
    }
}

impl TypedValueParser for Within<f64> {
    type Value = f64;

    fn parse_ref(&self, cmd: &Command, arg: Option<&Arg>, value: &OsStr) -> Result<f64, clap::Error> {
        float_in(self.min, self.max).parse_ref(cmd, arg, value)
    }
}

impl TypedValueParser for Within<u32> {
    type Value = u32;

    fn parse_ref(&self, cmd: &Command, arg: Option<&Arg>, value: &OsStr) -> Result<u32, clap::Error> {
        clap::value_parser!(u32).range(i64::from(self.min)..=i64::from(self.max)).parse_ref(cmd, arg, value)
    }
}

impl TypedValueParser for Within<u64> {
    type Value = u64;

    fn parse_ref(&self, cmd: &Command, arg: Option<&Arg>, value: &OsStr) -> Result<u64, clap::Error> {
        clap::value_parser!(u64).range(self.min..=self.max).parse_ref(cmd, arg, value)
    }
}
