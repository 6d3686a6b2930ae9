//! The ordered checks and the discount of one coupon on one cart, and the stacking rules of
//! several. Checks run in the spec's order and the first that fails is the answer: exists →
//! active and inside its window → global limit → (currency) → min order value → per-user limit →
//! product/category restriction. Percentages round half-up to the minor unit.

use chrono::{DateTime, Utc};
use titan_kit::money::Currency;

use super::{
    cart::{Cart, CartItem},
    code::CouponCode,
    coupon::{Coupon, CouponKind, CouponSpec},
};

/// Why a coupon does not apply; each has its own stable reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("coupon {0} does not exist")]
    NotFound(CouponCode),
    #[error("coupon {0} is paused")]
    Paused(CouponCode),
    #[error("coupon {code} is valid from {from}")]
    NotStarted {
        code: CouponCode,
        from: DateTime<Utc>,
    },
    #[error("coupon {code} expired at {until}")]
    Expired {
        code: CouponCode,
        until: DateTime<Utc>,
    },
    #[error("coupon {code} has been used its {limit} times")]
    Depleted { code: CouponCode, limit: u32 },
    #[error("coupon {code} is in {coupon}; the cart is in {cart}")]
    CurrencyMismatch {
        code: CouponCode,
        coupon: Currency,
        cart: Currency,
    },
    #[error("coupon {code} needs an order of at least {min} minor units; the cart has {subtotal}")]
    MinOrderNotMet {
        code: CouponCode,
        min: i64,
        subtotal: i64,
    },
    #[error("you have used coupon {code} its {limit} times allowed per shopper")]
    UserLimitReached { code: CouponCode, limit: u32 },
    #[error("coupon {0} applies to none of the cart's products or categories")]
    NotApplicable(CouponCode),
    #[error("coupon {code} needs {needed} matching units in the cart; it has {have}")]
    BogoQuantityNotMet {
        code: CouponCode,
        needed: u32,
        have: u64,
    },
    #[error("an order may combine at most {0} coupons")]
    TooMany(u32),
    #[error("coupon {0} is given twice")]
    DuplicateCode(CouponCode),
    #[error("coupons {0} and {1} are both {2}; an order takes one coupon per type")]
    DuplicateType(CouponCode, CouponCode, &'static str),
    #[error("coupon {0} is exclusive and cannot be combined with other coupons")]
    Exclusive(CouponCode),
}

impl Refusal {
    pub fn reason(&self) -> &'static str {
        match self {
            Self::NotFound(_) => "COUPON_NOT_FOUND",
            Self::Paused(_) => "COUPON_PAUSED",
            Self::NotStarted { .. } => "COUPON_NOT_STARTED",
            Self::Expired { .. } => "COUPON_EXPIRED",
            Self::Depleted { .. } => "COUPON_DEPLETED",
            Self::CurrencyMismatch { .. } => "CURRENCY_MISMATCH",
            Self::MinOrderNotMet { .. } => "MIN_ORDER_NOT_MET",
            Self::UserLimitReached { .. } => "USER_LIMIT_REACHED",
            Self::NotApplicable(_) => "NOT_APPLICABLE",
            Self::BogoQuantityNotMet { .. } => "BOGO_QUANTITY_NOT_MET",
            Self::TooMany(_) => "TOO_MANY_COUPONS",
            Self::DuplicateCode(_) => "DUPLICATE_COUPON",
            Self::DuplicateType(..) => "DUPLICATE_COUPON_TYPE",
            Self::Exclusive(_) => "EXCLUSIVE_COUPON",
        }
    }
}

/// Uses of a coupon at the time of the check: in all, and by the shopper.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UsageSnapshot {
    pub uses: u32,
    pub user_uses: u32,
}

fn matches(spec: &CouponSpec, item: &CartItem) -> bool {
    (spec.product_ids.is_empty() && spec.category_ids.is_empty())
        || spec.product_ids.binary_search(&item.product_id).is_ok()
        || spec.category_ids.binary_search(&item.category_id).is_ok()
}

/// `amount × basis_points / 10000`, rounded half-up to the minor unit (amounts are never
/// negative, so half-up and half-away-from-zero agree).
pub fn percent_of(amount: i64, basis_points: i64) -> i64 {
    let exact = i128::from(amount) * i128::from(basis_points);
    i64::try_from((exact + 5_000) / 10_000).unwrap_or(i64::MAX)
}

/// Runs the ordered checks and answers the discount in minor units of the cart's currency.
pub fn evaluate(
    coupon: &Coupon,
    usage: UsageSnapshot,
    cart: &Cart,
    now: DateTime<Utc>,
) -> Result<i64, Refusal> {
    let s = &coupon.spec;
    let code = || s.code.clone();
    if coupon.paused {
        return Err(Refusal::Paused(code()));
    }
    if now < s.valid_from {
        return Err(Refusal::NotStarted {
            code: code(),
            from: s.valid_from,
        });
    }
    if now >= s.valid_until {
        return Err(Refusal::Expired {
            code: code(),
            until: s.valid_until,
        });
    }
    if s.total_limit > 0 && usage.uses >= s.total_limit {
        return Err(Refusal::Depleted {
            code: code(),
            limit: s.total_limit,
        });
    }
    // Amounts of the coupon only compare with a cart in the same currency.
    if let Some(currency) = s.currency
        && currency != cart.currency()
    {
        return Err(Refusal::CurrencyMismatch {
            code: code(),
            coupon: currency,
            cart: cart.currency(),
        });
    }
    if cart.subtotal() < s.min_order_value {
        return Err(Refusal::MinOrderNotMet {
            code: code(),
            min: s.min_order_value,
            subtotal: cart.subtotal(),
        });
    }
    if s.per_user_limit > 0 && usage.user_uses >= s.per_user_limit {
        return Err(Refusal::UserLimitReached {
            code: code(),
            limit: s.per_user_limit,
        });
    }
    let eligible: Vec<&CartItem> = cart.items().iter().filter(|i| matches(s, i)).collect();
    if eligible.is_empty() {
        return Err(Refusal::NotApplicable(code()));
    }
    // A cart's sums cannot overflow (checked when it was built), so neither can a part of one.
    let eligible_subtotal: i64 = eligible
        .iter()
        .map(|i| i.unit_price * i64::from(i.quantity))
        .sum();
    let discount = match s.kind {
        CouponKind::Percentage => percent_of(eligible_subtotal, s.value),
        CouponKind::FixedAmount => s.value.min(eligible_subtotal),
        CouponKind::FreeShipping => cart.shipping_fee(),
        CouponKind::Bogo => bogo(s, &eligible)?,
    };
    Ok(if s.max_discount > 0 {
        discount.min(s.max_discount)
    } else {
        discount
    })
}

/// Buy X get Y: of the matching units, every full group of X + Y makes Y units free, and the
/// free ones are the cheapest units of the cart.
fn bogo(s: &CouponSpec, eligible: &[&CartItem]) -> Result<i64, Refusal> {
    let group = u64::from(s.buy_quantity) + u64::from(s.get_quantity);
    let units: u64 = eligible.iter().map(|i| u64::from(i.quantity)).sum();
    let mut free = units / group * u64::from(s.get_quantity);
    if free == 0 {
        return Err(Refusal::BogoQuantityNotMet {
            code: s.code.clone(),
            needed: s.buy_quantity + s.get_quantity,
            have: units,
        });
    }
    let mut by_price: Vec<&&CartItem> = eligible.iter().collect();
    by_price.sort_by_key(|i| i.unit_price);
    let mut discount = 0;
    for item in by_price {
        let take = free.min(u64::from(item.quantity));
        // `take` ≤ the item's quantity, a u32.
        discount += item.unit_price * i64::try_from(take).unwrap_or(0);
        free -= take;
        if free == 0 {
            break;
        }
    }
    Ok(discount)
}

/// Checks that `coupons` may go on one order: at most `max`, no code twice, one per type, and an
/// exclusive coupon alone.
pub fn stack(coupons: &[&CouponSpec], max: u32) -> Result<(), Refusal> {
    if coupons.len() > max as usize {
        return Err(Refusal::TooMany(max));
    }
    for (i, a) in coupons.iter().enumerate() {
        for b in &coupons[..i] {
            if a.code == b.code {
                return Err(Refusal::DuplicateCode(a.code.clone()));
            }
            if a.kind == b.kind {
                return Err(Refusal::DuplicateType(
                    b.code.clone(),
                    a.code.clone(),
                    a.kind.as_str(),
                ));
            }
        }
    }
    if coupons.len() > 1
        && let Some(c) = coupons.iter().find(|c| c.exclusive)
    {
        return Err(Refusal::Exclusive(c.code.clone()));
    }
    Ok(())
}

/// Discounts of coupons stacked on one order, each computed on the cart as given, trimmed so
/// that together they never take more than the items' subtotal (shipping is only ever taken by
/// FREE_SHIPPING). Item discounts are applied in a fixed order: BOGO, percentage, fixed amount.
pub fn combine(cart: &Cart, discounts: &mut [(CouponKind, i64)]) {
    let mut left = cart.subtotal();
    for kind in [
        CouponKind::Bogo,
        CouponKind::Percentage,
        CouponKind::FixedAmount,
    ] {
        for (k, d) in discounts.iter_mut() {
            if *k == kind {
                *d = (*d).min(left);
                left -= *d;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::Duration;
    use proptest::prelude::*;

    use super::*;
    use crate::domain::coupon::{RawSpec, tests::raw};

    fn item(product: &str, category: &str, price: i64, quantity: u32) -> CartItem {
        CartItem {
            product_id: product.into(),
            category_id: category.into(),
            unit_price: price,
            quantity,
        }
    }

    fn coupon(r: RawSpec) -> Coupon {
        Coupon {
            spec: CouponSpec::new(r, 32).expect("valid spec"),
            paused: false,
        }
    }

    fn during(c: &Coupon) -> DateTime<Utc> {
        c.spec.valid_from + Duration::hours(1)
    }

    fn cart(items: Vec<CartItem>, shipping: i64) -> Cart {
        Cart::new(items, shipping, "USD").expect("valid cart")
    }

    #[test]
    fn percentage_rounds_half_up_and_is_capped() {
        // 15% of 19.99 = 2.9985 → 3.00; 10% of 10.05 = 1.005 → 1.01; 10% of 10.04 = 1.004 → 1.00.
        assert_eq!(percent_of(1999, 1500), 300);
        assert_eq!(percent_of(1005, 1000), 101);
        assert_eq!(percent_of(1004, 1000), 100);
        assert_eq!(percent_of(5, 1000), 1, "0.5 cent rounds up");
        assert_eq!(percent_of(4, 1000), 0);
        let mut r = raw(CouponKind::Percentage, 2000);
        r.max_discount = 1500;
        let c = coupon(r);
        let small = cart(vec![item("a", "x", 5000, 1)], 0);
        assert_eq!(
            evaluate(&c, UsageSnapshot::default(), &small, during(&c)),
            Ok(1000)
        );
        let big = cart(vec![item("a", "x", 10_000, 1)], 0);
        assert_eq!(
            evaluate(&c, UsageSnapshot::default(), &big, during(&c)),
            Ok(1500),
            "20% of 100.00 is capped at 15.00"
        );
    }

    #[test]
    fn fixed_amount_never_exceeds_the_eligible_subtotal() {
        let mut r = raw(CouponKind::FixedAmount, 2000);
        r.product_ids = vec!["a".into()];
        let c = coupon(r);
        // Only product a (2 × 7.00) is eligible: 20.00 off becomes 14.00.
        let cart = cart(vec![item("a", "x", 700, 2), item("b", "x", 9000, 1)], 0);
        assert_eq!(
            evaluate(&c, UsageSnapshot::default(), &cart, during(&c)),
            Ok(1400)
        );
    }

    #[test]
    fn free_shipping_takes_the_fee() {
        let c = coupon(raw(CouponKind::FreeShipping, 0));
        let cart = cart(vec![item("a", "x", 1000, 1)], 799);
        assert_eq!(
            evaluate(&c, UsageSnapshot::default(), &cart, during(&c)),
            Ok(799)
        );
    }

    #[test]
    fn bogo_frees_the_cheapest_matching_units() {
        let mut r = raw(CouponKind::Bogo, 0);
        (r.buy_quantity, r.get_quantity) = (2, 1);
        r.category_ids = vec!["shoes".into()];
        let c = coupon(r);
        // Matching units: 30, 20, 20, 10, 10, 10, 5 (7 units) → 2 groups of 3 → 2 free, the
        // cheapest: 5 + 10. The 1.00 hat is not a shoe.
        let cart = cart(
            vec![
                item("boot", "shoes", 3000, 1),
                item("sneaker", "shoes", 2000, 2),
                item("sandal", "shoes", 1000, 3),
                item("flip", "shoes", 500, 1),
                item("hat", "hats", 100, 5),
            ],
            0,
        );
        assert_eq!(
            evaluate(&c, UsageSnapshot::default(), &cart, during(&c)),
            Ok(1500)
        );
        let short = super::Cart::new(vec![item("boot", "shoes", 3000, 2)], 0, "USD").expect("cart");
        assert_eq!(
            evaluate(&c, UsageSnapshot::default(), &short, during(&c)).map_err(|r| r.reason()),
            Err("BOGO_QUANTITY_NOT_MET")
        );
    }

    #[test]
    fn checks_run_in_the_spec_order() {
        let mut r = raw(CouponKind::Percentage, 1000);
        r.total_limit = 5;
        r.per_user_limit = 1;
        r.min_order_value = 5000;
        r.product_ids = vec!["a".into()];
        let c = coupon(r);
        let now = during(&c);
        let small_other = cart(vec![item("b", "x", 100, 1)], 0);
        let reason = |c: &Coupon, u: UsageSnapshot, cart: &Cart, now| {
            evaluate(c, u, cart, now).map_err(|r| r.reason())
        };
        let exhausted = UsageSnapshot {
            uses: 5,
            user_uses: 1,
        };
        // Everything is wrong: the earliest check wins, and fixing it reveals the next.
        let mut paused = c.clone();
        paused.paused = true;
        assert_eq!(
            reason(&paused, exhausted, &small_other, now),
            Err("COUPON_PAUSED")
        );
        assert_eq!(
            reason(
                &c,
                exhausted,
                &small_other,
                c.spec.valid_from - Duration::seconds(1)
            ),
            Err("COUPON_NOT_STARTED")
        );
        assert_eq!(
            reason(&c, exhausted, &small_other, c.spec.valid_until),
            Err("COUPON_EXPIRED")
        );
        assert_eq!(
            reason(&c, exhausted, &small_other, now),
            Err("COUPON_DEPLETED")
        );
        let user_done = UsageSnapshot {
            uses: 4,
            user_uses: 1,
        };
        let eur = Cart::new(vec![item("a", "x", 9000, 1)], 0, "EUR").expect("cart");
        assert_eq!(reason(&c, user_done, &eur, now), Err("CURRENCY_MISMATCH"));
        assert_eq!(
            reason(&c, user_done, &small_other, now),
            Err("MIN_ORDER_NOT_MET")
        );
        let big_other = cart(vec![item("b", "x", 9000, 1)], 0);
        assert_eq!(
            reason(&c, user_done, &big_other, now),
            Err("USER_LIMIT_REACHED")
        );
        assert_eq!(
            reason(&c, UsageSnapshot::default(), &big_other, now),
            Err("NOT_APPLICABLE")
        );
        let mixed = cart(vec![item("b", "x", 9000, 1), item("a", "x", 1234, 1)], 0);
        // 10% of the eligible 12.34 = 1.234 → 1.23.
        assert_eq!(reason(&c, UsageSnapshot::default(), &mixed, now), Ok(123));
        // The minimum is exactly met at 50.00.
        let edge = cart(vec![item("a", "x", 5000, 1)], 0);
        assert_eq!(reason(&c, UsageSnapshot::default(), &edge, now), Ok(500));
    }

    #[test]
    fn stacking_rules() {
        let pct = CouponSpec::new(raw(CouponKind::Percentage, 1000), 32).expect("spec");
        let mut r = raw(CouponKind::FreeShipping, 0);
        r.code = "SHIP".into();
        let ship = CouponSpec::new(r, 32).expect("spec");
        let mut r = raw(CouponKind::Percentage, 500);
        r.code = "MORE".into();
        let pct2 = CouponSpec::new(r, 32).expect("spec");
        assert_eq!(stack(&[&pct, &ship], 4), Ok(()));
        assert_eq!(stack(&[&pct, &ship], 1), Err(Refusal::TooMany(1)));
        assert_eq!(
            stack(&[&pct, &pct], 4).map_err(|r| r.reason()),
            Err("DUPLICATE_COUPON")
        );
        assert_eq!(
            stack(&[&pct, &ship, &pct2], 4).map_err(|r| r.reason()),
            Err("DUPLICATE_COUPON_TYPE")
        );
        let mut exclusive = ship.clone();
        exclusive.exclusive = true;
        assert_eq!(stack(&[&exclusive], 4), Ok(()));
        assert_eq!(
            stack(&[&pct, &exclusive], 4).map_err(|r| r.reason()),
            Err("EXCLUSIVE_COUPON")
        );
    }

    #[test]
    fn stacked_item_discounts_never_exceed_the_subtotal() {
        let cart = cart(vec![item("a", "x", 1000, 1)], 500);
        let mut d = vec![
            (CouponKind::FixedAmount, 800),
            (CouponKind::Percentage, 500),
            (CouponKind::FreeShipping, 500),
        ];
        combine(&cart, &mut d);
        assert_eq!(
            d,
            vec![
                (CouponKind::FixedAmount, 500),
                (CouponKind::Percentage, 500),
                (CouponKind::FreeShipping, 500)
            ]
        );
    }

    proptest! {
        #[test]
        fn percentage_is_within_half_a_unit_and_never_above_the_amount(
            amount in 0i64..1_000_000_000_000, bp in 1i64..=10_000
        ) {
            let d = percent_of(amount, bp);
            prop_assert!(d <= amount);
            let exact = i128::from(amount) * i128::from(bp);
            let diff = i128::from(d) * 10_000 - exact;
            // Half-up: below by less than half a unit, or above by at most half (an exact half).
            prop_assert!((-4_999..=5_000).contains(&diff), "{d} vs {exact}/10000");
        }

        #[test]
        fn a_discount_never_exceeds_what_it_applies_to(
            prices in proptest::collection::vec((0i64..100_000, 1u32..5), 1..10),
            kind in 0usize..4, value in 1i64..20_000, shipping in 0i64..5_000,
        ) {
            let kind = [CouponKind::Percentage, CouponKind::FixedAmount, CouponKind::FreeShipping, CouponKind::Bogo][kind];
            let mut r = raw(kind, match kind {
                CouponKind::Percentage => value.min(10_000),
                CouponKind::FixedAmount => value,
                _ => 0,
            });
            if kind == CouponKind::Bogo { (r.buy_quantity, r.get_quantity) = (1, 1); }
            let c = coupon(r);
            let items: Vec<CartItem> = prices.iter().map(|(p, q)| item("a", "x", *p, *q)).collect();
            let cart = cart(items, shipping);
            if let Ok(d) = evaluate(&c, UsageSnapshot::default(), &cart, during(&c)) {
                prop_assert!(d >= 0);
                let bound = if kind == CouponKind::FreeShipping { shipping } else { cart.subtotal() };
                prop_assert!(d <= bound);
            }
        }
    }
}
