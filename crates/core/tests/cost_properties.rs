//! Property tests of the cost (docs/accounting.md): the integer computation in `cost.rs` against
//! independent ones written here — schoolbook decimal arithmetic on digit strings for any
//! amounts, a `u128` fraction for smaller ones — and the tariff's parser against what the
//! setting accepted when it was read as an `f64`. No expectation is computed by the code under
//! test.

use energy_core::{Cost, Price, Tariff, Usage};
use proptest::prelude::*;

fn tariff(per_kwh: Price) -> Tariff {
    Tariff {
        per_kwh,
        currency: "EUR".into(),
    }
}

/// The decimal digits of `a × b`, most significant first, by long multiplication.
fn product_digits(a: u128, b: u128) -> Vec<u8> {
    let digits = |n: u128| -> Vec<u32> {
        n.to_string()
            .bytes()
            .rev()
            .map(|d| u32::from(d - b'0'))
            .collect()
    };
    let (a, b) = (digits(a), digits(b));
    let mut columns = vec![0u32; a.len() + b.len()];
    for (i, x) in a.iter().enumerate() {
        for (j, y) in b.iter().enumerate() {
            columns[i + j] += x * y; // at most 39 × 81 per column
        }
    }
    let mut carry = 0;
    for column in columns.iter_mut() {
        let total = *column + carry;
        *column = total % 10;
        carry = total / 10;
    }
    assert_eq!(carry, 0);
    let mut out: Vec<u8> = columns
        .into_iter()
        .rev()
        .map(|d| d as u8)
        .skip_while(|&d| d == 0)
        .collect();
    if out.is_empty() {
        out.push(0);
    }
    out
}

/// Adds one to a decimal digit string.
fn increment(digits: &mut Vec<u8>) {
    for digit in digits.iter_mut().rev() {
        if *digit == 9 {
            *digit = 0;
        } else {
            *digit += 1;
            return;
        }
    }
    digits.insert(0, 1);
}

/// The cost in hundredths of `nano_kwh × mantissa × 10^exponent / 10^9`, rounded half away
/// from zero, as decimal text (`None` when it does not fit an `i128`): the digits of the
/// product, shifted by `exponent − 7` places, the first dropped digit deciding the rounding.
fn reference(nano_kwh: i128, mantissa: u128, exponent: i32) -> Option<i128> {
    let mut digits = product_digits(nano_kwh.unsigned_abs(), mantissa);
    let shift = i64::from(exponent) - 7;
    if shift >= 0 {
        if digits != [0] {
            // Past 40 digits it cannot fit anyway; no need to write millions of zeros.
            digits.extend(std::iter::repeat_n(0, shift.min(60) as usize));
        }
    } else {
        let cut = digits.len() as i64 + shift; // digits kept
        if cut < 0 {
            digits = vec![0];
        } else {
            let first_dropped = digits[cut as usize];
            digits.truncate(cut as usize);
            if first_dropped >= 5 {
                increment(&mut digits);
            }
        }
    }
    let text: String = digits.iter().map(|d| char::from(b'0' + d)).collect();
    let magnitude: i128 = if text.is_empty() { Ok(0) } else { text.parse() }.ok()?;
    Some(if nano_kwh < 0 { -magnitude } else { magnitude })
}

fn any_usage() -> impl Strategy<Value = i128> {
    prop_oneof![
        // Up to about 10^10 kWh, the range of real panels.
        -(10i128.pow(19))..10i128.pow(19),
        any::<i64>().prop_map(i128::from),
        any::<i128>(),
    ]
}

fn any_mantissa() -> impl Strategy<Value = u128> {
    prop_oneof![
        0u128..1_000_000,
        0u128..10u128.pow(18),
        0u128..10u128.pow(38),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4096))]

    #[test]
    fn the_cost_is_the_exact_product_rounded_once(
        nano_kwh in any_usage(),
        mantissa in any_mantissa(),
        exponent in -80i32..50,
    ) {
        let price = Price::new(mantissa, exponent);
        let cost = tariff(price).cost(Usage::from_nano_kwh(nano_kwh));
        match reference(nano_kwh, mantissa, exponent) {
            Some(expected) => prop_assert_eq!(cost.minor_units(), expected),
            None if nano_kwh < 0 => prop_assert_eq!(cost, Cost::MIN),
            None => prop_assert_eq!(cost, Cost::MAX),
        }
    }

    /// A price with up to 12 decimals written as `units / 10^decimals`, and a usage of up to
    /// about 9 × 10^9 kWh: the cost in hundredths is the fraction
    /// `nano_kwh × units × 100 / 10^(9 + decimals)`, rounded half up on its magnitude as
    /// `(2n + d) / 2d` — everything fits a u128.
    #[test]
    fn the_cost_of_everyday_amounts_is_the_rounded_fraction(
        nano_kwh in any::<i64>(),
        units in 0u128..(1 << 40),
        decimals in 0u32..=12,
    ) {
        let numerator = u128::from(nano_kwh.unsigned_abs()) * units * 100;
        let denominator = 10u128.pow(9 + decimals);
        let magnitude = ((2 * numerator + denominator) / (2 * denominator)) as i128;
        let expected = if nano_kwh < 0 { -magnitude } else { magnitude };
        let price: Price = format!("{units}e-{decimals}").parse().unwrap();
        let cost = tariff(price).cost(Usage::from_nano_kwh(i128::from(nano_kwh)));
        prop_assert_eq!(cost.minor_units(), expected);
    }

    /// The same price written as an integer, a decimal with a point, with leading and trailing
    /// zeros, or with an exponent reads as the same exact value.
    #[test]
    fn every_spelling_of_a_price_reads_the_same(
        mantissa in 0u128..10u128.pow(30),
        decimals in 0usize..20,
        padding in 0usize..5,
        exponent in -5i32..5,
    ) {
        let digits = mantissa.to_string();
        let digits = "0".repeat(decimals.saturating_sub(digits.len()) + 1) + &digits;
        let (whole, fraction) = digits.split_at(digits.len() - decimals);
        let zeros = "0".repeat(padding);
        let value = Price::new(mantissa, -(decimals as i32));
        for (text, expected) in [
            (format!("{zeros}{whole}.{fraction}{zeros}"), value),
            (format!("+{whole}.{fraction}"), value),
            (format!("{mantissa}e-{decimals}"), value),
            (format!("{mantissa}{zeros}E-{}", decimals + padding), value),
            (
                format!("{whole}.{fraction}e{exponent}"),
                Price::new(mantissa, exponent - decimals as i32),
            ),
        ] {
            let parsed: Price = text.parse().unwrap();
            prop_assert_eq!(parsed, expected, "{}", text);
        }
    }

    /// `TARIFF_PER_KWH` took whatever Rust's f64 parser read as a finite number >= 0; it still
    /// takes exactly those, and reads them to the same nearest f64.
    #[test]
    fn the_setting_accepts_exactly_what_it_accepted_as_an_f64(
        text in "[-+]?[0-9]{0,25}(\\.[0-9]{0,12})?([eE][-+]?[0-9]{0,4})?|[-+0-9.eEaInfy ]{0,12}",
    ) {
        let old = text.parse::<f64>().ok().filter(|v| v.is_finite() && *v >= 0.0);
        let new = text.parse::<Price>().ok();
        prop_assert_eq!(old.is_some(), new.is_some(), "{:?}", text);
        if let (Some(old), Some(new)) = (old, new) {
            // Up to 37 significant digits here, so the price is the exact value and both are its
            // nearest f64 (0 for "-0" and the like).
            prop_assert_eq!(new.to_f64(), old.abs(), "{:?}", text);
        }
    }
}
