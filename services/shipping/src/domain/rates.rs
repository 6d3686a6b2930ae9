//! The flat-rate carrier's tables: destination zones (by country and postcode prefix, the
//! first matching zone wins, so specific zones go before broad ones), and per zone and
//! service level the delivery days and weight bands. A parcel pays the band with the smallest
//! upper bound that holds its chargeable weight (dimensional when the table sets a divisor);
//! a shipment pays the sum over its parcels. Amounts are integer minor units.

use serde::{Deserialize, Serialize};
use titan_crds::config::{FlatRateCarrier, ShippingLevel};

use super::{Address, InputError, Parcel};

/// How fast a shipment travels; every carrier's levels map onto these.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum ServiceLevel {
    Economy,
    Standard,
    Express,
    Overnight,
}

titan_kit::names!(ServiceLevel {
    Economy => "ECONOMY",
    Standard => "STANDARD",
    Express => "EXPRESS",
    Overnight => "OVERNIGHT",
});

/// Where a destination falls. An empty list matches anything.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Zone {
    pub name: String,
    /// ISO 3166-1 alpha-2 codes, upper case.
    pub countries: Vec<String>,
    /// Normalised (upper-case) postcode prefixes.
    pub postcode_prefixes: Vec<String>,
}

impl Zone {
    fn holds(&self, to: &Address) -> bool {
        (self.countries.is_empty() || self.countries.contains(&to.country))
            && (self.postcode_prefixes.is_empty()
                || self
                    .postcode_prefixes
                    .iter()
                    .any(|p| to.postcode.starts_with(p.as_str())))
    }
}

/// A parcel up to `max_g` chargeable grams costs `price_minor`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Band {
    pub max_g: u64,
    pub price_minor: u64,
}

/// One service level's price list in one zone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rate {
    pub zone: String,
    pub level: ServiceLevel,
    pub days: u32,
    pub bands: Vec<Band>,
}

impl Rate {
    /// The band price for `chargeable_g`, or `None` above the heaviest band.
    fn price(&self, chargeable_g: u64) -> Option<u64> {
        self.bands
            .iter()
            .filter(|b| b.max_g >= chargeable_g)
            .min_by_key(|b| b.max_g)
            .map(|b| b.price_minor)
    }
}

/// A complete flat-rate price list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlatRateTable {
    /// ISO 4217, upper case.
    pub currency: String,
    /// cm³ per kg when the table charges dimensional weight.
    pub dim_divisor: Option<u32>,
    pub zones: Vec<Zone>,
    pub rates: Vec<Rate>,
}

/// Why the table has no price for a shipment.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NoRate {
    #[error("no zone covers {country} {postcode}")]
    NoZone { country: String, postcode: String },
    #[error("no service level of zone {zone} carries a parcel of {chargeable_g} chargeable grams")]
    TooHeavy { zone: String, chargeable_g: u64 },
}

/// A price the table offers: level, days and the shipment's total.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Offer {
    pub level: ServiceLevel,
    pub days: u32,
    pub amount_minor: u64,
}

/// Heaviest band the configured table goes to: [`super::parcel::MAX_WEIGHT_G`].
const CONFIG_MAX_KG: u64 = 70;

impl From<ShippingLevel> for ServiceLevel {
    fn from(l: ShippingLevel) -> Self {
        match l {
            ShippingLevel::Economy => Self::Economy,
            ShippingLevel::Standard => Self::Standard,
            ShippingLevel::Express => Self::Express,
            ShippingLevel::Overnight => Self::Overnight,
        }
    }
}

impl FlatRateTable {
    /// The table the cell's `services.shipping.flatRate` describes: its `zones` and `rates`
    /// when it has them (the operator checked them), else the simple formula as a table.
    pub fn from_config(c: &FlatRateCarrier) -> Self {
        if c.zones.is_empty() {
            return Self::formula(c);
        }
        Self {
            currency: c.currency.clone(),
            dim_divisor: c.dim_divisor,
            zones: c
                .zones
                .iter()
                .map(|z| Zone {
                    name: z.name.clone(),
                    countries: z.countries.clone(),
                    postcode_prefixes: z.postcode_prefixes.clone(),
                })
                .collect(),
            rates: c
                .rates
                .iter()
                .map(|r| Rate {
                    zone: r.zone.clone(),
                    level: r.service_level.into(),
                    days: r.days,
                    bands: r
                        .bands
                        .iter()
                        .map(|b| Band {
                            max_g: b.max_grams,
                            price_minor: b.price_minor,
                        })
                        .collect(),
                })
                .collect(),
        }
    }

    /// One zone for every destination, STANDARD in `deliveryDays`, and a band per started
    /// kilogram up to 70 kg priced `base + perKg × kg` — the configured formula, as a table
    /// (with dimensional weight when `dimDivisor` is set).
    fn formula(c: &FlatRateCarrier) -> Self {
        let bands = (1..=CONFIG_MAX_KG)
            .map(|kg| Band {
                max_g: kg * 1000,
                price_minor: c
                    .base_minor
                    .saturating_add(c.per_kg_minor.saturating_mul(kg)),
            })
            .collect();
        Self {
            currency: c.currency.clone(),
            dim_divisor: c.dim_divisor,
            zones: vec![Zone {
                name: "everywhere".into(),
                countries: Vec::new(),
                postcode_prefixes: Vec::new(),
            }],
            rates: vec![Rate {
                zone: "everywhere".into(),
                level: ServiceLevel::Standard,
                days: c.delivery_days,
                bands,
            }],
        }
    }

    /// The zone `to` falls in: the first that holds it.
    pub fn zone_of(&self, to: &Address) -> Result<&Zone, NoRate> {
        self.zones
            .iter()
            .find(|z| z.holds(to))
            .ok_or_else(|| NoRate::NoZone {
                country: to.country.clone(),
                postcode: to.postcode.clone(),
            })
    }

    /// Every level the table offers to `to` for `parcels`, in the table's order. A level whose
    /// heaviest band is below some parcel is left out; none left is [`NoRate::TooHeavy`].
    pub fn offers(&self, to: &Address, parcels: &[Parcel]) -> Result<Vec<Offer>, NoRate> {
        let zone = self.zone_of(to)?;
        let charged: Vec<u64> = parcels
            .iter()
            .map(|p| p.chargeable_g(self.dim_divisor))
            .collect();
        let offers: Vec<Offer> = self
            .rates
            .iter()
            .filter(|r| r.zone == zone.name)
            .filter_map(|r| {
                let prices: Option<Vec<u64>> = charged.iter().map(|&g| r.price(g)).collect();
                Some(Offer {
                    level: r.level,
                    days: r.days,
                    amount_minor: prices?
                        .into_iter()
                        .fold(0u64, |sum, p| sum.saturating_add(p)),
                })
            })
            .collect();
        if offers.is_empty() {
            return Err(NoRate::TooHeavy {
                zone: zone.name.clone(),
                chargeable_g: charged.iter().copied().max().unwrap_or_default(),
            });
        }
        Ok(offers)
    }
}

impl ServiceLevel {
    /// The level a client named, if it named one (empty means any).
    pub fn optional(field: &str, s: &str) -> Result<Option<Self>, InputError> {
        if s.is_empty() {
            Ok(None)
        } else {
            Self::parse(field, s).map(Some)
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::domain::address::tests::address;

    fn parcel(weight_g: u32, l: u32, w: u32, h: u32) -> Parcel {
        Parcel {
            weight_g,
            length_mm: l,
            width_mm: w,
            height_mm: h,
        }
    }

    /// Singapore's 01–09 postcodes (the centre) are zone `central`, the rest of Singapore
    /// `sg`, Malaysia `my`; dimensional weight at 5000 cm³/kg.
    pub(crate) fn table() -> FlatRateTable {
        let zone = |name: &str, countries: &[&str], prefixes: &[&str]| Zone {
            name: name.into(),
            countries: countries.iter().map(|s| s.to_string()).collect(),
            postcode_prefixes: prefixes.iter().map(|s| s.to_string()).collect(),
        };
        let rate = |zone: &str, level, days, bands: &[(u64, u64)]| Rate {
            zone: zone.into(),
            level,
            days,
            bands: bands
                .iter()
                .map(|&(max_g, price_minor)| Band { max_g, price_minor })
                .collect(),
        };
        FlatRateTable {
            currency: "SGD".into(),
            dim_divisor: Some(5000),
            zones: vec![
                zone(
                    "central",
                    &["SG"],
                    &["01", "02", "03", "04", "05", "06", "07", "08", "09"],
                ),
                zone("sg", &["SG"], &[]),
                zone("my", &["MY"], &[]),
            ],
            rates: vec![
                rate(
                    "central",
                    ServiceLevel::Standard,
                    1,
                    &[(1_000, 300), (5_000, 600)],
                ),
                rate(
                    "sg",
                    ServiceLevel::Standard,
                    2,
                    &[(5_000, 700), (1_000, 400)],
                ),
                rate("sg", ServiceLevel::Express, 1, &[(2_000, 1_200)]),
                rate("my", ServiceLevel::Economy, 6, &[(30_000, 2_500)]),
            ],
        }
    }

    #[test]
    fn zones_match_by_country_then_postcode_first_match_wins() {
        let t = table();
        let zone = |c: &str, p: &str| t.zone_of(&address(c, p)).map(|z| z.name.clone());
        assert_eq!(zone("SG", "098585"), Ok("central".into()));
        assert_eq!(zone("SG", "530123"), Ok("sg".into()));
        assert_eq!(zone("MY", "50450"), Ok("my".into()));
        assert_eq!(
            zone("TH", "10110"),
            Err(NoRate::NoZone {
                country: "TH".into(),
                postcode: "10110".into()
            })
        );
    }

    #[test]
    fn bands_price_each_parcel_and_dimensional_weight_counts() {
        let t = table();
        let to = address("SG", "530123");
        // 800 g in a small box: the 1 kg band; 1,001 g: the 5 kg band (bands need no order).
        let offers = t
            .offers(
                &to,
                &[parcel(800, 100, 100, 100), parcel(1_001, 100, 100, 100)],
            )
            .expect("priced");
        assert_eq!(
            offers,
            vec![
                Offer {
                    level: ServiceLevel::Standard,
                    days: 2,
                    amount_minor: 400 + 700
                },
                Offer {
                    level: ServiceLevel::Express,
                    days: 1,
                    amount_minor: 2_400
                },
            ]
        );
        // 500 g in a 400 × 300 × 200 mm box charges 4.8 kg: STANDARD 700, too heavy for EXPRESS.
        let offers = t
            .offers(&to, &[parcel(500, 400, 300, 200)])
            .expect("priced");
        assert_eq!(
            offers,
            vec![Offer {
                level: ServiceLevel::Standard,
                days: 2,
                amount_minor: 700
            }]
        );
        assert_eq!(
            t.offers(&to, &[parcel(6_000, 10, 10, 10)]),
            Err(NoRate::TooHeavy {
                zone: "sg".into(),
                chargeable_g: 6_000
            })
        );
    }

    #[test]
    fn the_configured_formula_is_a_table() {
        let c = FlatRateCarrier::default();
        let t = FlatRateTable::from_config(&c);
        let to = address("US", "94103");
        let price = |g| {
            t.offers(&to, &[parcel(g, 10, 10, 10)])
                .map(|o| o[0].amount_minor)
        };
        // base 500 + 100 per started kg.
        assert_eq!(price(1), Ok(600));
        assert_eq!(price(1_000), Ok(600));
        assert_eq!(price(1_001), Ok(700));
        assert_eq!(price(70_000), Ok(500 + 7_000));
        assert_eq!(
            t.offers(&to, &[parcel(1, 10, 10, 10)]).map(|o| o[0].days),
            Ok(c.delivery_days)
        );
    }

    #[test]
    fn configured_zone_tables_are_the_table() {
        use titan_crds::config::{FlatRateRate, FlatRateZone, WeightBand};
        let t = table();
        let c = FlatRateCarrier {
            currency: t.currency.clone(),
            dim_divisor: t.dim_divisor,
            zones: t
                .zones
                .iter()
                .map(|z| FlatRateZone {
                    name: z.name.clone(),
                    countries: z.countries.clone(),
                    postcode_prefixes: z.postcode_prefixes.clone(),
                })
                .collect(),
            rates: t
                .rates
                .iter()
                .map(|r| FlatRateRate {
                    zone: r.zone.clone(),
                    service_level: match r.level {
                        ServiceLevel::Economy => ShippingLevel::Economy,
                        ServiceLevel::Standard => ShippingLevel::Standard,
                        ServiceLevel::Express => ShippingLevel::Express,
                        ServiceLevel::Overnight => ShippingLevel::Overnight,
                    },
                    days: r.days,
                    bands: r
                        .bands
                        .iter()
                        .map(|b| WeightBand {
                            max_grams: b.max_g,
                            price_minor: b.price_minor,
                        })
                        .collect(),
                })
                .collect(),
            ..FlatRateCarrier::default()
        };
        assert_eq!(FlatRateTable::from_config(&c), t);
        // The formula with a divisor charges dimensional weight: 400 × 300 × 200 mm is 4.8 kg.
        let dims = FlatRateTable::from_config(&FlatRateCarrier {
            dim_divisor: Some(5000),
            ..FlatRateCarrier::default()
        });
        assert_eq!(
            dims.offers(&address("US", "94103"), &[parcel(500, 400, 300, 200)])
                .map(|o| o[0].amount_minor),
            Ok(500 + 5 * 100)
        );
    }

    proptest! {
        #[test]
        fn a_heavier_parcel_never_costs_less(a in 1u32..=70_000, b in 1u32..=70_000) {
            let t = FlatRateTable::from_config(&FlatRateCarrier::default());
            let to = address("SG", "530123");
            let price = |g| t.offers(&to, &[parcel(g, 10, 10, 10)]).map(|o| o[0].amount_minor);
            let (lo, hi) = (a.min(b), a.max(b));
            prop_assert!(price(lo)? <= price(hi)?);
        }

        #[test]
        fn a_shipment_costs_the_sum_of_its_parcels(ws in proptest::collection::vec(1u32..=1_000, 1..10)) {
            let t = table();
            let to = address("SG", "098585");
            let parcels: Vec<Parcel> = ws.iter().map(|&w| parcel(w, 10, 10, 10)).collect();
            let offers = t.offers(&to, &parcels).expect("priced");
            prop_assert_eq!(offers[0].amount_minor, 300 * ws.len() as u64);
        }
    }
}
