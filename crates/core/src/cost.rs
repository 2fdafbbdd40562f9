//! Prices: cost = usage × tariff, rounded to 2 decimals (CONTRACT §5).

use crate::usage::Usage;

/// The price of one kWh, in `currency`.
#[derive(Clone, Debug, PartialEq)]
pub struct Tariff {
    pub per_kwh: f64,
    pub currency: String,
}

impl Tariff {
    /// The cost of `usage`, from its exact value, rounded to 2 decimals.
    pub fn cost(&self, usage: Usage) -> f64 {
        round_to(usage.kwh() * self.per_kwh, 2)
    }
}

/// Rounds half away from zero to `decimals` places.
pub fn round_to(value: f64, decimals: i32) -> f64 {
    let scale = 10f64.powi(decimals);
    (value * scale).round() / scale
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contract_example_costs() {
        let tariff = Tariff {
            per_kwh: 1500.0,
            currency: "IDR".into(),
        };
        assert_eq!(tariff.cost(Usage::from_kwh(42.125)), 63187.5);
        assert_eq!(tariff.cost(Usage::from_kwh(750.0)), 1_125_000.0);
        assert_eq!(tariff.cost(Usage::from_kwh(9000.5)), 13_500_750.0);
    }

    #[test]
    fn cents_are_rounded() {
        let tariff = Tariff {
            per_kwh: 0.3,
            currency: "EUR".into(),
        };
        assert_eq!(tariff.cost(Usage::from_kwh(1.234)), 0.37);
        assert_eq!(round_to(2.675_000_1, 2), 2.68);
    }
}
