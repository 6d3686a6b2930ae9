//! A coupon's spec (what an admin sets, checked by [`CouponSpec::new`]) and its status over time
//! and uses: ACTIVE, PAUSED, SCHEDULED (before its window), EXPIRED (after it), DEPLETED (at its
//! global limit).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use titan_kit::money::{Currency, MoneyError};

use super::code::{BadCode, CouponCode};

/// Most products or categories one coupon may name.
pub const MAX_TARGETS: usize = 1_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum CouponKind {
    /// `value` basis points of the eligible subtotal.
    Percentage,
    /// `value` minor units, never above the eligible subtotal.
    FixedAmount,
    /// The cart's shipping fee.
    FreeShipping,
    /// Buy `buy_quantity`, get `get_quantity` of the matching items free, the cheapest.
    Bogo,
}

impl CouponKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Percentage => "PERCENTAGE",
            Self::FixedAmount => "FIXED_AMOUNT",
            Self::FreeShipping => "FREE_SHIPPING",
            Self::Bogo => "BOGO",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [
            Self::Percentage,
            Self::FixedAmount,
            Self::FreeShipping,
            Self::Bogo,
        ]
        .into_iter()
        .find(|k| k.as_str() == s)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum CouponStatus {
    Active,
    Paused,
    Scheduled,
    Expired,
    Depleted,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpecError {
    #[error(transparent)]
    Code(#[from] BadCode),
    #[error("coupon type is required: PERCENTAGE, FIXED_AMOUNT, FREE_SHIPPING or BOGO")]
    MissingKind,
    #[error("a percentage is given in basis points from 1 to 10000 (1500 = 15%), got {0}")]
    Percentage(i64),
    #[error("a fixed amount must be more than 0 minor units, got {0}")]
    FixedAmount(i64),
    #[error("a {0} coupon takes no value, got {1}")]
    NoValue(&'static str, i64),
    #[error("a BOGO coupon needs buy_quantity and get_quantity of at least 1")]
    BogoQuantities,
    #[error("buy_quantity and get_quantity are only for BOGO coupons")]
    QuantitiesNotBogo,
    #[error("{0} must not be negative, got {1}")]
    Negative(&'static str, i64),
    #[error("currency is required when value, min_order_value or max_discount is an amount")]
    MissingCurrency,
    #[error(transparent)]
    Currency(#[from] MoneyError),
    #[error("valid_until {until} must be after valid_from {from}")]
    Window {
        from: DateTime<Utc>,
        until: DateTime<Utc>,
    },
    #[error("{0} may name at most {MAX_TARGETS} ids, each non-empty and at most 128 characters")]
    Targets(&'static str),
    #[error("campaign must be at most 64 characters")]
    Campaign,
}

/// A coupon spec as received, before checking.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RawSpec {
    pub code: String,
    pub kind: Option<CouponKind>,
    pub value: i64,
    pub currency: String,
    pub min_order_value: i64,
    pub max_discount: i64,
    pub total_limit: u32,
    pub per_user_limit: u32,
    pub valid_from: DateTime<Utc>,
    pub valid_until: DateTime<Utc>,
    pub product_ids: Vec<String>,
    pub category_ids: Vec<String>,
    pub exclusive: bool,
    pub campaign: String,
    pub buy_quantity: u32,
    pub get_quantity: u32,
}

/// A checked coupon spec. Amounts are minor units of `currency`; limits of 0 mean unlimited.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CouponSpec {
    pub code: CouponCode,
    pub kind: CouponKind,
    pub value: i64,
    pub currency: Option<Currency>,
    pub min_order_value: i64,
    pub max_discount: i64,
    pub total_limit: u32,
    pub per_user_limit: u32,
    pub valid_from: DateTime<Utc>,
    pub valid_until: DateTime<Utc>,
    pub product_ids: Vec<String>,
    pub category_ids: Vec<String>,
    pub exclusive: bool,
    pub campaign: String,
    pub buy_quantity: u32,
    pub get_quantity: u32,
}

fn targets(field: &'static str, mut ids: Vec<String>) -> Result<Vec<String>, SpecError> {
    ids.iter_mut().for_each(|id| *id = id.trim().to_owned());
    if ids.len() > MAX_TARGETS || ids.iter().any(|id| id.is_empty() || id.len() > 128) {
        return Err(SpecError::Targets(field));
    }
    ids.sort();
    ids.dedup();
    Ok(ids)
}

impl CouponSpec {
    pub fn new(raw: RawSpec, max_code_len: u32) -> Result<Self, SpecError> {
        let code = CouponCode::parse(&raw.code, max_code_len)?;
        let kind = raw.kind.ok_or(SpecError::MissingKind)?;
        match kind {
            CouponKind::Percentage if !(1..=10_000).contains(&raw.value) => {
                return Err(SpecError::Percentage(raw.value));
            }
            CouponKind::FixedAmount if raw.value <= 0 => {
                return Err(SpecError::FixedAmount(raw.value));
            }
            CouponKind::FreeShipping | CouponKind::Bogo if raw.value != 0 => {
                return Err(SpecError::NoValue(kind.as_str(), raw.value));
            }
            _ => {}
        }
        if kind == CouponKind::Bogo {
            if raw.buy_quantity == 0 || raw.get_quantity == 0 {
                return Err(SpecError::BogoQuantities);
            }
        } else if raw.buy_quantity != 0 || raw.get_quantity != 0 {
            return Err(SpecError::QuantitiesNotBogo);
        }
        for (field, v) in [
            ("min_order_value", raw.min_order_value),
            ("max_discount", raw.max_discount),
        ] {
            if v < 0 {
                return Err(SpecError::Negative(field, v));
            }
        }
        let currency = match raw.currency.trim() {
            "" => None,
            c => Some(Currency::parse(c)?),
        };
        let needs_currency =
            kind == CouponKind::FixedAmount || raw.min_order_value > 0 || raw.max_discount > 0;
        if needs_currency && currency.is_none() {
            return Err(SpecError::MissingCurrency);
        }
        if raw.valid_until <= raw.valid_from {
            return Err(SpecError::Window {
                from: raw.valid_from,
                until: raw.valid_until,
            });
        }
        let campaign = raw.campaign.trim().to_owned();
        if campaign.chars().count() > 64 {
            return Err(SpecError::Campaign);
        }
        Ok(Self {
            code,
            kind,
            value: raw.value,
            currency,
            min_order_value: raw.min_order_value,
            max_discount: raw.max_discount,
            total_limit: raw.total_limit,
            per_user_limit: raw.per_user_limit,
            valid_from: raw.valid_from,
            valid_until: raw.valid_until,
            product_ids: targets("product_ids", raw.product_ids)?,
            category_ids: targets("category_ids", raw.category_ids)?,
            exclusive: raw.exclusive,
            campaign,
            buy_quantity: raw.buy_quantity,
            get_quantity: raw.get_quantity,
        })
    }
}

/// A coupon as stored: its spec and whether an admin paused it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Coupon {
    pub spec: CouponSpec,
    pub paused: bool,
}

impl Coupon {
    /// The status at `now` with `uses` consumed; a pause shows before anything time-based.
    pub fn status(&self, now: DateTime<Utc>, uses: u32) -> CouponStatus {
        let s = &self.spec;
        if self.paused {
            CouponStatus::Paused
        } else if now < s.valid_from {
            CouponStatus::Scheduled
        } else if now >= s.valid_until {
            CouponStatus::Expired
        } else if s.total_limit > 0 && uses >= s.total_limit {
            CouponStatus::Depleted
        } else {
            CouponStatus::Active
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use chrono::Duration;

    use super::*;

    pub(crate) fn raw(kind: CouponKind, value: i64) -> RawSpec {
        let from = DateTime::from_timestamp(1_800_000_000, 0).unwrap_or_default();
        RawSpec {
            code: "save".into(),
            kind: Some(kind),
            value,
            currency: "USD".into(),
            valid_from: from,
            valid_until: from + Duration::days(30),
            ..RawSpec::default()
        }
    }

    #[test]
    fn specs_are_checked_per_type() {
        let ok = CouponSpec::new(raw(CouponKind::Percentage, 1500), 32).expect("valid");
        assert_eq!(ok.code.as_str(), "SAVE");
        assert_eq!(
            CouponSpec::new(raw(CouponKind::Percentage, 10_001), 32),
            Err(SpecError::Percentage(10_001))
        );
        assert_eq!(
            CouponSpec::new(raw(CouponKind::FixedAmount, 0), 32),
            Err(SpecError::FixedAmount(0))
        );
        assert_eq!(
            CouponSpec::new(raw(CouponKind::FreeShipping, 5), 32),
            Err(SpecError::NoValue("FREE_SHIPPING", 5))
        );
        assert_eq!(
            CouponSpec::new(raw(CouponKind::Bogo, 0), 32),
            Err(SpecError::BogoQuantities)
        );
        let mut no_currency = raw(CouponKind::FixedAmount, 500);
        no_currency.currency.clear();
        assert_eq!(
            CouponSpec::new(no_currency, 32),
            Err(SpecError::MissingCurrency)
        );
        let mut backwards = raw(CouponKind::Percentage, 10);
        backwards.valid_until = backwards.valid_from;
        assert!(matches!(
            CouponSpec::new(backwards, 32),
            Err(SpecError::Window { .. })
        ));
    }

    #[test]
    fn status_follows_pause_window_and_uses() {
        let mut raw = raw(CouponKind::Percentage, 1000);
        raw.total_limit = 2;
        let spec = CouponSpec::new(raw, 32).expect("valid");
        let (from, until) = (spec.valid_from, spec.valid_until);
        let mut c = Coupon {
            spec,
            paused: false,
        };
        assert_eq!(
            c.status(from - Duration::seconds(1), 0),
            CouponStatus::Scheduled
        );
        assert_eq!(c.status(from, 1), CouponStatus::Active);
        assert_eq!(c.status(from, 2), CouponStatus::Depleted);
        assert_eq!(c.status(until, 0), CouponStatus::Expired);
        c.paused = true;
        assert_eq!(c.status(from, 0), CouponStatus::Paused);
    }
}
