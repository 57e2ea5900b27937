//! Numbers for property tests of prices: every JSON spelling of prices over the whole range, and
//! numbers that are no price (more decimals near every power of ten, negatives, too large).
use proptest::{prelude::*, sample::Index};

use super::Price;

/// A price to accept: the spelling to send, and the normalised text every store must hold.
pub fn accepted() -> impl Strategy<Value = (String, String)> {
    let cents = prop_oneof![0..=Price::MAX_CENTS, near_powers_of_ten(0..=12).prop_map(|c| c.min(Price::MAX_CENTS))];
    (cents, spelling()).prop_map(|(cents, spelling)| {
        let normalised = Price::from_cents(cents).expect("cents in range").to_string();
        (spelling.write(cents as u128, 2), normalised)
    })
}

/// A number to refuse, naming `price`.
pub fn refused() -> impl Strategy<Value = String> {
    let too_large = prop_oneof![
        Price::MAX_CENTS + 1..=Price::MAX_CENTS * 1_000_000,
        near_powers_of_ten(12..=18).prop_map(|c| c.max(Price::MAX_CENTS + 1)),
    ];
    prop_oneof![
        4 => more_decimals(),
        1 => (1..=Price::MAX_CENTS, spelling()).prop_map(|(c, s)| format!("-{}", s.write(c as u128, 2))),
        1 => (too_large, spelling()).prop_map(|(c, s)| s.write(c as u128, 2)),
        1 => (13_u32..400).prop_map(|e| format!("1e{e}")),
    ]
}

/// Hundredths within 2 of a power of ten.
fn near_powers_of_ten(powers: std::ops::RangeInclusive<u32>) -> impl Strategy<Value = i64> {
    (powers, -2_i64..=2).prop_map(|(power, offset)| (10_i64.pow(power) + offset).max(0))
}

/// Values with 3 to 15 decimal places, the last one not zero, near each power of ten from 0.001
/// to 10^10: close to it, or anywhere from half to one and a half times it.
fn more_decimals() -> impl Strategy<Value = String> {
    (-3_i32..=10, 3_u32..=15, -1000_i64..=1000, any::<u64>(), any::<bool>(), spelling()).prop_map(
        |(power, places, offset, spread, close, spelling)| {
            let unit = 10_u128.pow(places);
            let near = if power >= 0 { 10_u128.pow(power as u32) * unit } else { unit / 10_u128.pow(-power as u32) };
            let units = if close {
                near.saturating_add_signed(offset.into()).max(1)
            } else {
                near / 2 + u128::from(spread) % near
            };
            let units = if units % 10 == 0 { units + 1 } else { units };
            spelling.write(units, places)
        },
    )
}

/// How a number is written: as is, without its trailing zeros, or with an exponent.
#[derive(Clone, Debug)]
pub struct Spelling {
    style: u8,
    zeros: usize,
    point: Index,
    upper: bool,
    plus: bool,
}

fn spelling() -> impl Strategy<Value = Spelling> {
    (0_u8..4, 0_usize..4, any::<Index>(), any::<bool>(), any::<bool>())
        .prop_map(|(style, zeros, point, upper, plus)| Spelling { style, zeros, point, upper, plus })
}

impl Spelling {
    /// `units × 10^-places` as JSON, spelled this way.
    pub fn write(&self, units: u128, places: u32) -> String {
        let (whole, fraction) = (units / 10_u128.pow(places), units % 10_u128.pow(places));
        let fraction = format!("{fraction:0>width$}", width = places as usize);
        let mut digits = units.to_string();
        if units > 0 {
            digits.push_str(&"0".repeat(self.zeros));
        }
        // The power of ten of the last digit written.
        let last = -(places as i64) - (digits.len() - units.to_string().len()) as i64;
        match self.style {
            0 => format!("{whole}.{fraction}"),
            1 => match fraction.trim_end_matches('0') {
                "" => whole.to_string(),
                kept => format!("{whole}.{kept}"),
            },
            2 => {
                let point = 1 + self.point.index(digits.len());
                let (lead, rest) = digits.split_at(point);
                let mantissa = if rest.is_empty() { lead.to_owned() } else { format!("{lead}.{rest}") };
                self.exponent(&mantissa, last + rest.len() as i64)
            }
            _ if units == 0 => "-0.0".to_owned(),
            _ => self.exponent(&format!("0.{digits}"), last + digits.len() as i64),
        }
    }

    fn exponent(&self, mantissa: &str, exponent: i64) -> String {
        let e = if self.upper { 'E' } else { 'e' };
        let sign = if exponent >= 0 && self.plus { "+" } else { "" };
        format!("{mantissa}{e}{sign}{exponent}")
    }
}
