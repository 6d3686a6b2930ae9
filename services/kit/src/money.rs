//! Money as every service handles it: integer minor units with an ISO 4217 currency, never
//! floats. Arithmetic is checked; amounts of different currencies never mix.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A three-letter upper-case ISO 4217 code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Currency([u8; 3]);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MoneyError {
    #[error("currency {0:?} is not a three-letter ISO 4217 code like USD")]
    BadCurrency(String),
    #[error("amounts in {0} and {1} cannot be combined")]
    CurrencyMismatch(Currency, Currency),
    #[error("amount out of range")]
    Overflow,
    #[error("amount must not be negative, got {0}")]
    Negative(i64),
}

impl Currency {
    pub fn parse(code: &str) -> Result<Self, MoneyError> {
        match code.as_bytes() {
            [a, b, c] if [a, b, c].iter().all(|x| x.is_ascii_uppercase()) => Ok(Self([*a, *b, *c])),
            _ => Err(MoneyError::BadCurrency(code.to_owned())),
        }
    }

    pub fn as_str(&self) -> &str {
        // Only ASCII upper-case letters are ever stored.
        std::str::from_utf8(&self.0).unwrap_or("XXX")
    }

    /// Digits after the decimal point of the currency's minor unit (ISO 4217): 2 for USD (cents),
    /// 0 for JPY, 3 for KWD. Currencies not listed have 2, as most do.
    pub fn minor_unit_exponent(&self) -> u32 {
        match self.as_str() {
            "BIF" | "CLP" | "DJF" | "GNF" | "ISK" | "JPY" | "KMF" | "KRW" | "PYG" | "RWF"
            | "UGX" | "UYI" | "VND" | "VUV" | "XAF" | "XOF" | "XPF" => 0,
            "BHD" | "IQD" | "JOD" | "KWD" | "LYD" | "OMR" | "TND" => 3,
            "CLF" | "UYW" => 4,
            _ => 2,
        }
    }

    /// Whole currency units in `minor_units`, rounded down (1999 USD cents → 19 dollars).
    pub fn whole_units(&self, minor_units: i64) -> i64 {
        minor_units.div_euclid(10_i64.pow(self.minor_unit_exponent()))
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl TryFrom<String> for Currency {
    type Error = MoneyError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s)
    }
}

impl From<Currency> for String {
    fn from(c: Currency) -> Self {
        c.as_str().to_owned()
    }
}

/// A non-negative amount in minor units.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Money {
    pub minor_units: i64,
    pub currency: Currency,
}

impl Money {
    pub fn new(minor_units: i64, currency: Currency) -> Result<Self, MoneyError> {
        if minor_units < 0 {
            return Err(MoneyError::Negative(minor_units));
        }
        Ok(Self {
            minor_units,
            currency,
        })
    }

    pub fn parse(minor_units: i64, currency: &str) -> Result<Self, MoneyError> {
        Self::new(minor_units, Currency::parse(currency)?)
    }

    pub fn times(self, n: u32) -> Result<Self, MoneyError> {
        let minor_units = self
            .minor_units
            .checked_mul(i64::from(n))
            .ok_or(MoneyError::Overflow)?;
        Ok(Self {
            minor_units,
            ..self
        })
    }

    pub fn checked_add(self, other: Self) -> Result<Self, MoneyError> {
        if self.currency != other.currency {
            return Err(MoneyError::CurrencyMismatch(self.currency, other.currency));
        }
        let minor_units = self
            .minor_units
            .checked_add(other.minor_units)
            .ok_or(MoneyError::Overflow)?;
        Ok(Self {
            minor_units,
            ..self
        })
    }
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.minor_units, self.currency)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn currencies_and_arithmetic() {
        assert!(Currency::parse("usd").is_err());
        assert!(Currency::parse("USDT").is_err());
        let usd = Money::parse(1999, "USD").expect("usd");
        assert_eq!(usd.times(3).expect("times").minor_units, 5997);
        assert_eq!(Money::parse(-1, "USD"), Err(MoneyError::Negative(-1)));
        let eur = Money::parse(1, "EUR").expect("eur");
        assert!(matches!(
            usd.checked_add(eur),
            Err(MoneyError::CurrencyMismatch(..))
        ));
        assert_eq!(
            Money::parse(i64::MAX, "USD").expect("max").times(2),
            Err(MoneyError::Overflow)
        );
        let (jpy, kwd) = (
            Currency::parse("JPY").expect("jpy"),
            Currency::parse("KWD").expect("kwd"),
        );
        assert_eq!(usd.currency.minor_unit_exponent(), 2);
        assert_eq!(
            (jpy.minor_unit_exponent(), kwd.minor_unit_exponent()),
            (0, 3)
        );
        assert_eq!(usd.currency.whole_units(1999), 19);
        assert_eq!((jpy.whole_units(1999), kwd.whole_units(1999)), (1999, 1));
        assert_eq!(
            serde_json::to_string(&usd).expect("json"),
            r#"{"minor_units":1999,"currency":"USD"}"#
        );
    }
}
