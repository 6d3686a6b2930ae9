//! A flash sale: its validated spec, its admin state, the status a buyer sees at a given time,
//! and the refusals a purchase attempt can meet.

use std::fmt;

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use titan_kit::money::{Money, MoneyError};
use uuid::Uuid;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct SaleId(Uuid);

impl SaleId {
    pub fn new() -> Self {
        Self(Uuid::now_v7())
    }

    pub fn parse(s: &str) -> Result<Self, SaleError> {
        Uuid::parse_str(s)
            .map(Self)
            .map_err(|_| SaleError::BadId(s.to_owned()))
    }

    pub fn uuid(self) -> Uuid {
        self.0
    }
}

impl Default for SaleId {
    fn default() -> Self {
        Self::new()
    }
}

impl From<Uuid> for SaleId {
    fn from(u: Uuid) -> Self {
        Self(u)
    }
}

impl fmt::Display for SaleId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Why a sale definition is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SaleError {
    #[error("sale id {0:?} is not a UUID")]
    BadId(String),
    #[error("product_id must be 1 to 128 characters of letters, digits, '-', '_', '.' or ':'")]
    BadProduct,
    #[error("{field}: {source}")]
    Money {
        field: &'static str,
        #[source]
        source: MoneyError,
    },
    #[error("original_price and sale_price must be in the same currency")]
    CurrencyMismatch,
    #[error("sale_price ({sale}) must be above 0 and below original_price ({original})")]
    NotADiscount { sale: i64, original: i64 },
    #[error("total_quantity must be between 1 and {max}, got {got}")]
    BadTotal { got: u32, max: u32 },
    #[error("max_per_user must be between 1 and {max}, got {got}")]
    BadMaxPerUser { got: u32, max: u32 },
    #[error("ends_at must be after starts_at")]
    EmptyWindow,
    #[error("a sale may last at most {0} days")]
    TooLong(i64),
    #[error("pow_difficulty must be between 0 and {max}, got {got}")]
    BadDifficulty { got: u32, max: u32 },
}

pub const MAX_TOTAL: u32 = 100_000_000;
pub const MAX_PER_USER: u32 = 10_000;
pub const MAX_DAYS: i64 = 31;
pub const MAX_DIFFICULTY: u32 = 8;

/// What an admin defines; valid by construction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SaleSpec {
    pub product_id: String,
    pub original_price: Money,
    pub sale_price: Money,
    pub total_quantity: u32,
    pub max_per_user: u32,
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
    pub pow_difficulty: u32,
}

/// The unchecked input of [`SaleSpec::new`].
#[derive(Debug, Clone)]
pub struct RawSaleSpec {
    pub product_id: String,
    pub currency: String,
    pub original_minor: i64,
    pub sale_currency: String,
    pub sale_minor: i64,
    pub total_quantity: u32,
    /// 0 = the configured default.
    pub max_per_user: u32,
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
    pub pow_difficulty: u32,
}

impl SaleSpec {
    pub fn new(raw: RawSaleSpec, default_max_per_user: u32) -> Result<Self, SaleError> {
        let product_ok = !raw.product_id.is_empty()
            && raw.product_id.len() <= 128
            && raw
                .product_id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b));
        if !product_ok {
            return Err(SaleError::BadProduct);
        }
        let original =
            Money::parse(raw.original_minor, &raw.currency).map_err(|source| SaleError::Money {
                field: "original_price",
                source,
            })?;
        let sale = Money::parse(raw.sale_minor, &raw.sale_currency).map_err(|source| {
            SaleError::Money {
                field: "sale_price",
                source,
            }
        })?;
        if original.currency != sale.currency {
            return Err(SaleError::CurrencyMismatch);
        }
        if sale.minor_units <= 0 || sale.minor_units >= original.minor_units {
            return Err(SaleError::NotADiscount {
                sale: sale.minor_units,
                original: original.minor_units,
            });
        }
        if raw.total_quantity == 0 || raw.total_quantity > MAX_TOTAL {
            return Err(SaleError::BadTotal {
                got: raw.total_quantity,
                max: MAX_TOTAL,
            });
        }
        let max_per_user = if raw.max_per_user == 0 {
            default_max_per_user
        } else {
            raw.max_per_user
        };
        if max_per_user == 0 || max_per_user > MAX_PER_USER {
            return Err(SaleError::BadMaxPerUser {
                got: max_per_user,
                max: MAX_PER_USER,
            });
        }
        if raw.ends_at <= raw.starts_at {
            return Err(SaleError::EmptyWindow);
        }
        if raw.ends_at - raw.starts_at > Duration::days(MAX_DAYS) {
            return Err(SaleError::TooLong(MAX_DAYS));
        }
        if raw.pow_difficulty > MAX_DIFFICULTY {
            return Err(SaleError::BadDifficulty {
                got: raw.pow_difficulty,
                max: MAX_DIFFICULTY,
            });
        }
        Ok(Self {
            product_id: raw.product_id,
            original_price: original,
            sale_price: sale,
            total_quantity: raw.total_quantity,
            max_per_user,
            starts_at: raw.starts_at,
            ends_at: raw.ends_at,
            pow_difficulty: raw.pow_difficulty,
        })
    }

    /// truncate((1 − sale/original) × 100), in integers so no float rounds it.
    pub fn discount_percent(&self) -> u32 {
        let (o, s) = (
            i128::from(self.original_price.minor_units),
            i128::from(self.sale_price.minor_units),
        );
        u32::try_from((o - s) * 100 / o).unwrap_or(0)
    }
}

/// What an admin did to a sale; the rest of its status follows from time and stock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum AdminState {
    Scheduled,
    Cancelled,
    Ended,
}

impl AdminState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Scheduled => "scheduled",
            Self::Cancelled => "cancelled",
            Self::Ended => "ended",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "scheduled" => Some(Self::Scheduled),
            "cancelled" => Some(Self::Cancelled),
            "ended" => Some(Self::Ended),
            _ => None,
        }
    }
}

/// The status a buyer sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SaleStatus {
    Scheduled,
    Active,
    Ended,
    SoldOut,
    Cancelled,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlashSale {
    pub id: SaleId,
    pub spec: SaleSpec,
    pub state: AdminState,
    pub warmed_up: bool,
}

/// Units of a sale, as Redis knows them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StockLevel {
    pub available: u32,
    pub reserved: u32,
    pub sold: u32,
}

impl FlashSale {
    /// SCHEDULED → ACTIVE → ENDED | SOLD_OUT, by time and stock; CANCELLED and an early END win.
    pub fn status(&self, now: DateTime<Utc>, stock: Option<StockLevel>) -> SaleStatus {
        match self.state {
            AdminState::Cancelled => return SaleStatus::Cancelled,
            AdminState::Ended => return SaleStatus::Ended,
            AdminState::Scheduled => {}
        }
        if now >= self.spec.ends_at {
            return SaleStatus::Ended;
        }
        if let Some(s) = stock
            && s.available == 0
            && s.reserved == 0
        {
            return SaleStatus::SoldOut;
        }
        if now < self.spec.starts_at {
            SaleStatus::Scheduled
        } else {
            SaleStatus::Active
        }
    }

    /// An admin may change a sale only before it starts.
    pub fn editable(&self, now: DateTime<Utc>) -> bool {
        self.state == AdminState::Scheduled && now < self.spec.starts_at
    }
}

/// Why an attempt was refused; each is a stable reason clients act on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("the sale is sold out{}", if *.held_by_reservations > 0 { format!("; {} units are held by reservations and may come back", .held_by_reservations) } else { String::new() })]
    SoldOut { held_by_reservations: u32 },
    #[error("only {remaining} units are left")]
    NotEnoughStock { remaining: u32 },
    #[error("the limit is {max} units per buyer and you already hold {held}")]
    LimitReached { held: u32, max: u32 },
    #[error("the sale has not started; it starts at {starts_at}")]
    NotStarted { starts_at: DateTime<Utc> },
    #[error("the sale has ended")]
    Ended,
    #[error("too many attempts; retry in {retry_after_ms} ms")]
    RateLimited { retry_after_ms: u64 },
    #[error("the proof of work is missing, wrong, expired or already used; get a new challenge")]
    BadProof,
    #[error("the sale is not open for purchases yet (not warmed up)")]
    NotWarmedUp,
}

impl Refusal {
    pub fn reason(&self) -> &'static str {
        match self {
            Self::SoldOut { .. } => "SOLD_OUT",
            Self::NotEnoughStock { .. } => "NOT_ENOUGH_STOCK",
            Self::LimitReached { .. } => "LIMIT_REACHED",
            Self::NotStarted { .. } => "NOT_STARTED",
            Self::Ended => "ENDED",
            Self::RateLimited { .. } => "RATE_LIMITED",
            Self::BadProof => "BAD_PROOF",
            Self::NotWarmedUp => "NOT_STARTED",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub fn raw() -> RawSaleSpec {
        let start = DateTime::from_timestamp(1_800_000_000, 0).expect("time");
        RawSaleSpec {
            product_id: "sku-1".into(),
            currency: "USD".into(),
            original_minor: 10_000,
            sale_currency: "USD".into(),
            sale_minor: 6_667,
            total_quantity: 100,
            max_per_user: 0,
            starts_at: start,
            ends_at: start + Duration::hours(1),
            pow_difficulty: 0,
        }
    }

    #[test]
    fn specs_are_validated() {
        let ok = SaleSpec::new(raw(), 5).expect("valid");
        assert_eq!(ok.max_per_user, 5);
        assert_eq!(ok.discount_percent(), 33, "33.33% truncates to 33");
        let cases: Vec<(RawSaleSpec, &str)> = vec![
            (
                RawSaleSpec {
                    product_id: "".into(),
                    ..raw()
                },
                "product_id",
            ),
            (
                RawSaleSpec {
                    sale_minor: 10_000,
                    ..raw()
                },
                "below original_price",
            ),
            (
                RawSaleSpec {
                    sale_minor: 0,
                    ..raw()
                },
                "above 0",
            ),
            (
                RawSaleSpec {
                    sale_currency: "EUR".into(),
                    ..raw()
                },
                "same currency",
            ),
            (
                RawSaleSpec {
                    currency: "usd".into(),
                    ..raw()
                },
                "ISO 4217",
            ),
            (
                RawSaleSpec {
                    total_quantity: 0,
                    ..raw()
                },
                "total_quantity",
            ),
            (
                RawSaleSpec {
                    ends_at: raw().starts_at,
                    ..raw()
                },
                "after starts_at",
            ),
            (
                RawSaleSpec {
                    ends_at: raw().starts_at + Duration::days(40),
                    ..raw()
                },
                "31 days",
            ),
            (
                RawSaleSpec {
                    pow_difficulty: 9,
                    ..raw()
                },
                "pow_difficulty",
            ),
        ];
        for (input, want) in cases {
            let err = SaleSpec::new(input, 5).expect_err(want);
            assert!(
                err.to_string().contains(want),
                "{err} should mention {want}"
            );
        }
    }

    #[test]
    fn status_follows_time_stock_and_admin() {
        let spec = SaleSpec::new(raw(), 5).expect("valid");
        let mut sale = FlashSale {
            id: SaleId::new(),
            spec: spec.clone(),
            state: AdminState::Scheduled,
            warmed_up: true,
        };
        let before = spec.starts_at - Duration::seconds(1);
        let during = spec.starts_at;
        let stock = |available, reserved| {
            Some(StockLevel {
                available,
                reserved,
                sold: 0,
            })
        };
        assert_eq!(sale.status(before, stock(10, 0)), SaleStatus::Scheduled);
        assert_eq!(sale.status(during, stock(10, 0)), SaleStatus::Active);
        assert_eq!(
            sale.status(during, stock(0, 2)),
            SaleStatus::Active,
            "reservations may come back"
        );
        assert_eq!(sale.status(during, stock(0, 0)), SaleStatus::SoldOut);
        assert_eq!(sale.status(spec.ends_at, stock(10, 0)), SaleStatus::Ended);
        assert!(sale.editable(before) && !sale.editable(during));
        sale.state = AdminState::Cancelled;
        assert_eq!(sale.status(during, stock(10, 0)), SaleStatus::Cancelled);
    }
}
