//! Prices: money, exact from the JSON number a client wrote to Redis, PostgreSQL and back.
//!
//! serde_json reads a number as `f64`, whose binary value is not the decimal the client wrote,
//! and PostgreSQL's `NUMERIC(12, 2)` would then round it: the cache and the database would hold
//! different prices. So a price is read from the text of the number (a `RawValue`), refused
//! unless the column stores it as it is, and written back as a number with exactly two decimals.
use std::{fmt, str::FromStr};

use rust_decimal::Decimal;
use serde::{Deserialize, Deserializer, Serialize, Serializer, de, ser};
use serde_json::value::RawValue;

use crate::{Error, Result};

#[cfg(any(test, feature = "testkit"))]
pub mod cases;

/// Decimal places of a price, as the `NUMERIC(12, 2)` column stores it.
const SCALE: u32 = 2;
/// Most digits of a price in cents: the column's precision.
const MAX_DIGITS: i64 = 12;
/// Exponents past this size decide a price alone (a body holds at most 64 KiB of digits);
/// capping them keeps the arithmetic in range.
const EXPONENT_CAP: i64 = 1 << 40;

/// An amount of money from 0.00 to 9,999,999,999.99 with two decimals: exactly the values the
/// `NUMERIC(12, 2)` column stores without rounding.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Price(Decimal);

impl Price {
    /// 0.00, the price of a tombstone.
    pub const ZERO: Self = Self(Decimal::from_parts(0, 0, 0, false, SCALE));
    /// 9,999,999,999.99 in cents, the largest price the column holds.
    pub const MAX_CENTS: i64 = 999_999_999_999;

    /// The price of `cents` hundredths; refused outside 0 to `MAX_CENTS`.
    pub fn from_cents(cents: i64) -> Result<Self> {
        if cents < 0 {
            return Err(Error::invalid("price", "must not be negative"));
        }
        if cents > Self::MAX_CENTS {
            return Err(Error::invalid("price", too_large()));
        }
        Ok(Self(Decimal::new(cents, SCALE)))
    }

    /// The price in hundredths.
    pub fn cents(self) -> i64 {
        // The scale is always 2 and the value at most MAX_CENTS, so the mantissa is the cents.
        self.0.mantissa() as i64
    }

    /// The price as a decimal with two places, as PostgreSQL's `NUMERIC(12, 2)` takes it.
    pub fn decimal(self) -> Decimal {
        self.0
    }
}

/// Parses the text of a JSON number, in any spelling (`1e2`, `29.9`, `-0.0`).
impl FromStr for Price {
    type Err = Error;

    fn from_str(text: &str) -> Result<Self> {
        Self::from_cents(cents_of(text).map_err(|reason| Error::invalid("price", reason))?)
    }
}

/// A decimal as PostgreSQL returns it: refused if the column could not have held it as it is.
impl TryFrom<Decimal> for Price {
    type Error = Error;

    fn try_from(value: Decimal) -> Result<Self> {
        let normalized = value.normalize();
        if normalized.scale() > SCALE {
            return Err(Error::invalid("price", decimals()));
        }
        let mut cents = normalized;
        cents.rescale(SCALE);
        let cents = i64::try_from(cents.mantissa()).map_err(|_| Error::invalid("price", too_large()))?;
        Self::from_cents(cents)
    }
}

/// Two decimals always: `29.90`, `0.00`.
impl fmt::Display for Price {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:.2}", self.0)
    }
}

/// A JSON number with its two decimals (`29.90`), written as serde_json writes a `RawValue`:
/// without `arbitrary_precision` its own numbers are `f64`, which would drop the trailing zero
/// and, for other values, be a binary approximation.
impl Serialize for Price {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        RawValue::from_string(self.to_string()).map_err(ser::Error::custom)?.serialize(serializer)
    }
}

/// The text of the JSON number, never its `f64`; refused unless it is a price.
impl<'de> Deserialize<'de> for Price {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = Box::<RawValue>::deserialize(deserializer)?;
        // The field's name comes from the deserializer's path; only the reason is ours.
        raw.get().parse().map_err(|e| match e {
            Error::Invalid { reason, .. } => de::Error::custom(reason),
            other => de::Error::custom(other),
        })
    }
}

fn too_large() -> String {
    format!("must be at most {}", Price(Decimal::new(Price::MAX_CENTS, SCALE)))
}

fn decimals() -> String {
    format!("must have at most {SCALE} decimal places")
}

/// The cents a JSON number's text spells, exactly, whatever its size; or why it is no price.
fn cents_of(text: &str) -> Result<i64, String> {
    scaled(text, SCALE, MAX_DIGITS).map_err(|why| match why {
        NotExact::NotANumber => "must be a number".into(),
        NotExact::Negative => "must not be negative".into(),
        NotExact::TooPrecise => decimals(),
        NotExact::TooLarge => too_large(),
    })
}

/// Why a JSON number's text is not an exact amount of the wanted precision.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum NotExact {
    /// Not a JSON number.
    NotANumber,
    /// Below zero (`-0` and `-0.0` are zero).
    Negative,
    /// More decimals than the scale.
    TooPrecise,
    /// More digits than the most allowed.
    TooLarge,
}

/// The integer `value × 10^scale` that a JSON number's text spells, exactly, whatever its size, if it
/// has at most `max_digits` digits: prices are cents (scale 2), quantities integers (scale 0). The
/// value is `digits × 10^power`, with the digits' zeros at either end taken off, so that `2990e-2`,
/// `29.9` and `0.299E+2` are all 2990 cents and `-0.0` is 0.
pub(crate) fn scaled(text: &str, scale: u32, max_digits: i64) -> Result<i64, NotExact> {
    let (negative, unsigned) = text.strip_prefix('-').map_or((false, text), |rest| (true, rest));
    let (mantissa, exponent) = unsigned.split_once(['e', 'E']).unwrap_or((unsigned, "0"));
    let (whole, fraction) = mantissa.split_once('.').unwrap_or((mantissa, "0"));
    let is_digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let exponent_digits = exponent.strip_prefix(['+', '-']).unwrap_or(exponent);
    if !is_digits(whole) || !is_digits(fraction) || !is_digits(exponent_digits) {
        return Err(NotExact::NotANumber);
    }
    let magnitude = exponent_digits.parse::<i64>().unwrap_or(i64::MAX).min(EXPONENT_CAP);
    let exponent = if exponent.starts_with('-') { -magnitude } else { magnitude };
    // The digits as one run, without copying them (a body may hold 64 KiB of them).
    let digits = || whole.bytes().chain(fraction.bytes());
    let leading = digits().take_while(|&d| d == b'0').count();
    let total = whole.len() + fraction.len();
    if leading == total {
        return Ok(0);
    }
    if negative {
        return Err(NotExact::Negative);
    }
    let trailing = digits().rev().take_while(|&d| d == b'0').count();
    let significant = total - leading - trailing;
    let power = exponent - fraction.len() as i64 + trailing as i64;
    if power < -(scale as i64) {
        return Err(NotExact::TooPrecise);
    }
    let zeros = power + scale as i64;
    if significant as i64 + zeros > max_digits {
        return Err(NotExact::TooLarge);
    }
    let value = digits().skip(leading).take(significant).fold(0_i64, |v, d| v * 10 + i64::from(d - b'0'));
    Ok(value * 10_i64.pow(zeros as u32))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reason(text: &str) -> String {
        match text.parse::<Price>() {
            Err(Error::Invalid { field, reason }) if field == "price" => reason,
            other => panic!("{text} gave {other:?}"),
        }
    }

    #[test]
    fn every_spelling_of_a_price_normalises_to_two_decimals() {
        for (text, want) in [
            ("1e2", "100.00"),
            ("1E+2", "100.00"),
            ("29.9", "29.90"),
            ("29.90", "29.90"),
            ("2990e-2", "29.90"),
            ("0.299e2", "29.90"),
            ("-0.0", "0.00"),
            ("-0", "0.00"),
            ("0", "0.00"),
            ("0e999999999999999999999", "0.00"),
            ("-0.000e-99", "0.00"),
            ("0.01", "0.01"),
            ("1e-2", "0.01"),
            ("29.990000000000000000000000000000000", "29.99"),
            ("0.0000000000000000000000000000000001e34", "1.00"),
            ("9999999999.99", "9999999999.99"),
            ("9.99999999999e9", "9999999999.99"),
            ("123456789.12", "123456789.12"),
        ] {
            assert_eq!(text.parse::<Price>().map(|p| p.to_string()).ok().as_deref(), Some(want), "{text}");
        }
    }

    #[test]
    fn more_than_two_decimals_are_refused_at_every_magnitude() {
        for text in [
            "123456789.125",
            "99999999.994",
            "29.990000000001",
            "19.999",
            "0.001",
            "1e-3",
            "5e-324",
            "9999999999.991",
            "1.0000000000000000000000000001",
            "1e-99999999999999999999",
        ] {
            assert_eq!(reason(text), "must have at most 2 decimal places", "{text}");
        }
    }

    #[test]
    fn negatives_are_refused_but_negative_zero_is_zero() {
        for text in ["-0.01", "-1", "-1e-9", "-9999999999.99"] {
            assert_eq!(reason(text), "must not be negative", "{text}");
        }
        assert_eq!("-0.00".parse::<Price>().unwrap(), Price::ZERO);
    }

    #[test]
    fn prices_the_column_cannot_hold_are_refused() {
        for text in ["10000000000", "1e10", "1e400", "1e99999999999999999999", "99999999999999999999999999999999"] {
            assert_eq!(reason(text), "must be at most 9999999999.99", "{text}");
        }
    }

    #[test]
    fn json_that_is_not_a_number_is_refused() {
        for text in [r#""1""#, "null", "true", "[1]", "{}", "", "1.", ".5", "+1", "1e", "1e+", "-", "0x10"] {
            assert_eq!(reason(text), "must be a number", "{text}");
        }
    }

    #[test]
    fn a_price_serializes_as_a_json_number_with_two_decimals_and_reads_back() {
        let price: Price = "29.9".parse().unwrap();
        assert_eq!(serde_json::to_string(&price).unwrap(), "29.90");
        assert_eq!(serde_json::to_string(&[Price::ZERO]).unwrap(), "[0.00]");
        assert_eq!(serde_json::from_str::<Price>("29.90").unwrap(), price);
        assert_eq!(serde_json::from_value::<Price>(serde_json::json!(29.9)).unwrap(), price);
    }

    #[test]
    fn a_decimal_from_postgresql_is_a_price_only_if_the_column_holds_it_as_is() {
        assert_eq!(Price::try_from(Decimal::new(2990, 2)).unwrap().to_string(), "29.90");
        assert_eq!(Price::try_from(Decimal::new(3, 0)).unwrap().to_string(), "3.00");
        assert_eq!(Price::try_from(Decimal::new(1000, 4)).unwrap().cents(), 10);
        assert!(Price::try_from(Decimal::new(1001, 4)).is_err());
        assert!(Price::try_from(Decimal::new(-1, 2)).is_err());
        assert!(Price::try_from(Decimal::new(1_000_000_000_000, 2)).is_err());
    }

    proptest::proptest! {
        #[test]
        fn every_spelling_of_a_price_in_range_parses_to_its_normalised_text((text, want) in cases::accepted()) {
            proptest::prop_assert_eq!(text.parse::<Price>().map(|p| p.to_string()).ok(), Some(want), "{}", text);
        }

        #[test]
        fn every_number_that_is_no_price_is_refused_naming_price(text in cases::refused()) {
            let refused = matches!(text.parse::<Price>(), Err(Error::Invalid { field, .. }) if field == "price");
            proptest::prop_assert!(refused, "{} accepted", text);
        }

        #[test]
        fn a_price_written_as_json_reads_back_unchanged(cents in 0..=Price::MAX_CENTS) {
            let price = Price::from_cents(cents).unwrap();
            let json = serde_json::to_string(&price).unwrap();
            proptest::prop_assert_eq!(serde_json::from_str::<Price>(&json).unwrap(), price);
            proptest::prop_assert_eq!(Price::try_from(price.decimal()).unwrap(), price);
        }
    }

    #[test]
    fn cents_and_decimals_agree() {
        let max = Price::from_cents(Price::MAX_CENTS).unwrap();
        assert_eq!((max.to_string(), max.cents()), ("9999999999.99".to_owned(), Price::MAX_CENTS));
        assert_eq!(max.decimal(), Decimal::new(Price::MAX_CENTS, 2));
        assert!(Price::from_cents(Price::MAX_CENTS + 1).is_err());
        assert_eq!(Price::ZERO.to_string(), "0.00");
    }
}
