//! Parcels: actual weight in grams and outside dimensions in millimetres, bounded to what a
//! parcel carrier takes, and the dimensional weight a rate table may charge instead.

use serde::{Deserialize, Serialize};

use super::InputError;

/// Most parcels in one shipment.
pub const MAX_PARCELS: usize = 20;
/// Heaviest parcel, in grams: the common parcel-carrier limit.
pub const MAX_WEIGHT_G: u32 = 70_000;
/// Longest side, in millimetres.
pub const MAX_SIDE_MM: u32 = 3_000;

/// One checked parcel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Parcel {
    pub weight_g: u32,
    pub length_mm: u32,
    pub width_mm: u32,
    pub height_mm: u32,
}

impl Parcel {
    /// Checks the parcel sent as `field` (`parcels[2]`), naming the bad member.
    pub fn parse(field: &str, raw: Parcel) -> Result<Self, InputError> {
        if !(1..=MAX_WEIGHT_G).contains(&raw.weight_g) {
            return Err(InputError::new(
                format!("{field}.weight_g"),
                format!("{} is not within 1..={MAX_WEIGHT_G} grams", raw.weight_g),
            ));
        }
        for (name, mm) in [
            ("length_mm", raw.length_mm),
            ("width_mm", raw.width_mm),
            ("height_mm", raw.height_mm),
        ] {
            if !(1..=MAX_SIDE_MM).contains(&mm) {
                return Err(InputError::new(
                    format!("{field}.{name}"),
                    format!("{mm} is not within 1..={MAX_SIDE_MM} millimetres"),
                ));
            }
        }
        Ok(raw)
    }

    /// Volume in cubic millimetres (at most 2.7e10, so it fits a u64 with room).
    pub fn volume_mm3(&self) -> u64 {
        u64::from(self.length_mm) * u64::from(self.width_mm) * u64::from(self.height_mm)
    }

    /// The dimensional weight in grams for a divisor in cm³ per kg (5000 is common): volume
    /// in cm³ / divisor kg, i.e. mm³ / divisor g, rounded up so a carrier never undercharges.
    pub fn dimensional_g(&self, divisor_cm3_per_kg: u32) -> u64 {
        self.volume_mm3()
            .div_ceil(u64::from(divisor_cm3_per_kg.max(1)))
    }

    /// The weight a table charges: the greater of actual and dimensional weight when the
    /// table uses dimensional weight, the actual weight otherwise.
    pub fn chargeable_g(&self, divisor: Option<u32>) -> u64 {
        let actual = u64::from(self.weight_g);
        divisor.map_or(actual, |d| actual.max(self.dimensional_g(d)))
    }
}

/// Checks a shipment's parcel list: 1 to [`MAX_PARCELS`], each one named by its index.
pub fn parcels(raw: &[Parcel]) -> Result<Vec<Parcel>, InputError> {
    if raw.is_empty() {
        return Err(InputError::new(
            "parcels",
            "at least one parcel is required",
        ));
    }
    if raw.len() > MAX_PARCELS {
        return Err(InputError::new(
            "parcels",
            format!("{} parcels; at most {MAX_PARCELS} per shipment", raw.len()),
        ));
    }
    raw.iter()
        .enumerate()
        .map(|(i, p)| Parcel::parse(&format!("parcels[{i}]"), *p))
        .collect()
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn parcel(weight_g: u32, l: u32, w: u32, h: u32) -> Parcel {
        Parcel {
            weight_g,
            length_mm: l,
            width_mm: w,
            height_mm: h,
        }
    }

    #[test]
    fn dimensional_weight_rounds_up() {
        // 400 × 300 × 200 mm = 24,000 cm³; at 5000 cm³/kg that is 4.8 kg.
        let p = parcel(1_000, 400, 300, 200);
        assert_eq!(p.dimensional_g(5000), 4_800);
        assert_eq!(p.chargeable_g(Some(5000)), 4_800);
        assert_eq!(p.chargeable_g(None), 1_000);
        // 1 mm³ over a gram is a gram more.
        assert_eq!(parcel(1, 1, 1, 5001).dimensional_g(5000), 2);
        // A dense parcel pays its actual weight.
        assert_eq!(parcel(9_000, 100, 100, 100).chargeable_g(Some(5000)), 9_000);
    }

    #[test]
    fn bad_parcels_are_named() {
        let field = |raw: &[Parcel]| parcels(raw).map_err(|e| e.field);
        assert_eq!(field(&[]), Err("parcels".into()));
        assert_eq!(
            field(&[parcel(100, 1, 1, 1), parcel(0, 1, 1, 1)]),
            Err("parcels[1].weight_g".into())
        );
        assert_eq!(
            field(&[parcel(MAX_WEIGHT_G + 1, 1, 1, 1)]),
            Err("parcels[0].weight_g".into())
        );
        assert_eq!(
            field(&[parcel(100, 1, MAX_SIDE_MM + 1, 1)]),
            Err("parcels[0].width_mm".into())
        );
        assert_eq!(
            field(&[parcel(100, 1, 1, 0)]),
            Err("parcels[0].height_mm".into())
        );
        assert_eq!(
            field(&vec![parcel(100, 1, 1, 1); MAX_PARCELS + 1]),
            Err("parcels".into())
        );
        assert_eq!(
            parcels(&[parcel(100, 1, 2, 3)]),
            Ok(vec![parcel(100, 1, 2, 3)])
        );
    }

    proptest! {
        #[test]
        fn chargeable_weight_is_never_below_either(
            w in 1..=MAX_WEIGHT_G, l in 1..=MAX_SIDE_MM, b in 1..=MAX_SIDE_MM,
            h in 1..=MAX_SIDE_MM, d in 1000u32..10_000,
        ) {
            let p = parcel(w, l, b, h);
            let c = p.chargeable_g(Some(d));
            prop_assert!(c >= u64::from(w));
            prop_assert!(c >= p.dimensional_g(d));
            prop_assert!(c == u64::from(w) || c == p.dimensional_g(d));
            // Rounded up, by less than a gram.
            prop_assert!(p.dimensional_g(d) * u64::from(d) >= p.volume_mm3());
            prop_assert!((p.dimensional_g(d) - 1) * u64::from(d) < p.volume_mm3());
        }
    }
}
