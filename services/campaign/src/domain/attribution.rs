//! Attribution and ROI. A touch is a message a user was sent (or shown); a purchase is a
//! verified order from the bus. A purchase is credited among the touches of the attribution
//! window before it: all to the newest (last touch), all to the oldest (first touch), equal
//! shares (linear), or shares halving with age every half-life (time decay). Money stays in
//! integer minor units: a campaign's share of an order is rounded down.

use chrono::{DateTime, Duration, Utc};

use super::campaign::CampaignId;

/// How a purchase's revenue is shared among touches.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Model {
    LastTouch,
    FirstTouch,
    Linear,
    /// Shares halve every `half_life`.
    TimeDecay {
        half_life: Duration,
    },
}

/// A campaign reaching a user at a time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Touch {
    pub campaign: CampaignId,
    pub at: DateTime<Utc>,
}

/// A verified order of a user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Purchase {
    pub order_id: String,
    pub amount: i64,
    pub at: DateTime<Utc>,
}

/// The revenue of `purchase` credited to `campaign` from `touches` (the buyer's touches, any
/// campaign); touches outside `(at − window, at]` do not count. `None` when the campaign has
/// no touch in the window (the purchase is not its conversion).
pub fn attributed(
    model: Model,
    window: Duration,
    campaign: CampaignId,
    purchase: &Purchase,
    touches: &[Touch],
) -> Option<i64> {
    let mut inside: Vec<Touch> = touches
        .iter()
        .copied()
        .filter(|t| t.at <= purchase.at && t.at > purchase.at - window)
        .collect();
    if !inside.iter().any(|t| t.campaign == campaign) {
        return None;
    }
    // Ties broken by campaign id so every replica credits the same touch.
    inside.sort_by_key(|t| (t.at, t.campaign));
    let amount = i128::from(purchase.amount);
    let share = match model {
        Model::LastTouch => {
            if inside.last().is_some_and(|t| t.campaign == campaign) {
                amount
            } else {
                0
            }
        }
        Model::FirstTouch => {
            if inside.first().is_some_and(|t| t.campaign == campaign) {
                amount
            } else {
                0
            }
        }
        Model::Linear => {
            let mine = inside.iter().filter(|t| t.campaign == campaign).count();
            amount * i128::try_from(mine).unwrap_or(0) / i128::try_from(inside.len()).unwrap_or(1)
        }
        Model::TimeDecay { half_life } => {
            let half = half_life.num_seconds().max(1) as f64;
            let weight = |t: &Touch| 0.5_f64.powf((purchase.at - t.at).num_seconds() as f64 / half);
            let total: f64 = inside.iter().map(weight).sum();
            let mine: f64 = inside
                .iter()
                .filter(|t| t.campaign == campaign)
                .map(weight)
                .sum();
            (purchase.amount as f64 * mine / total).floor() as i128
        }
    };
    Some(i64::try_from(share).unwrap_or(i64::MAX))
}

/// (revenue − cost) / cost, or `None` while nothing was spent.
pub fn roi(revenue: i64, cost: i64) -> Option<f64> {
    (cost > 0).then(|| (revenue as f64 - cost as f64) / cost as f64)
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use proptest::prelude::*;

    use super::*;

    fn t(h: i64) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 12, 1, 0, 0, 0)
            .single()
            .expect("time")
            + Duration::hours(h)
    }

    #[test]
    fn the_models_share_one_order_as_documented() {
        let (a, b, c) = (
            CampaignId::generate(),
            CampaignId::generate(),
            CampaignId::generate(),
        );
        // Touches: a at 0 h, b at 10 h, a at 20 h, c at 200 h (after the purchase), and the
        // purchase of 10,000 at 24 h with a 7-day window.
        let touches = [
            Touch {
                campaign: a,
                at: t(0),
            },
            Touch {
                campaign: b,
                at: t(10),
            },
            Touch {
                campaign: a,
                at: t(20),
            },
            Touch {
                campaign: c,
                at: t(200),
            },
        ];
        let p = Purchase {
            order_id: "o1".into(),
            amount: 10_000,
            at: t(24),
        };
        let w = Duration::days(7);
        // Last touch: a's touch at 20 h is the newest → all 10,000 to a, 0 to b.
        assert_eq!(
            attributed(Model::LastTouch, w, a, &p, &touches),
            Some(10_000)
        );
        assert_eq!(attributed(Model::LastTouch, w, b, &p, &touches), Some(0));
        // First touch: a at 0 h.
        assert_eq!(
            attributed(Model::FirstTouch, w, a, &p, &touches),
            Some(10_000)
        );
        // Linear: 3 touches in the window, a has 2 → 6,666 (rounded down), b 3,333.
        assert_eq!(attributed(Model::Linear, w, a, &p, &touches), Some(6_666));
        assert_eq!(attributed(Model::Linear, w, b, &p, &touches), Some(3_333));
        // c touched after the purchase: not its conversion.
        assert_eq!(attributed(Model::Linear, w, c, &p, &touches), None);
        // Time decay, half-life 12 h: weights 2^-2 = 0.25 (a, 24 h old), 2^-(14/12) ≈ 0.4454
        // (b), 2^-(4/12) ≈ 0.7937 (a): a gets 1.0437 / 1.4891 of 10,000 ≈ 7,008.
        let decay = Model::TimeDecay {
            half_life: Duration::hours(12),
        };
        let (wa1, wb, wa2) = (
            0.25_f64,
            0.5_f64.powf(14.0 / 12.0),
            0.5_f64.powf(4.0 / 12.0),
        );
        let expected = (10_000.0 * (wa1 + wa2) / (wa1 + wb + wa2)).floor() as i64;
        assert_eq!(attributed(decay, w, a, &p, &touches), Some(expected));
        assert_eq!(expected, 7_008);
        // A window of 5 h keeps only a's 20 h touch.
        assert_eq!(
            attributed(Model::Linear, Duration::hours(5), b, &p, &touches),
            None
        );
    }

    #[test]
    fn roi_is_revenue_less_cost_over_cost() {
        // 15,000 attributed, 5,000 spent: (15,000 − 5,000) / 5,000 = 2.
        assert_eq!(roi(15_000, 5_000), Some(2.0));
        assert_eq!(roi(1_000, 4_000), Some(-0.75));
        assert_eq!(roi(1_000, 0), None);
    }

    proptest! {
        #[test]
        fn linear_shares_never_exceed_the_order(n in 1usize..8, amount in 0i64..1_000_000_000) {
            let ids: Vec<CampaignId> = (0..n).map(|_| CampaignId::generate()).collect();
            let touches: Vec<Touch> = ids.iter().enumerate()
                .map(|(i, c)| Touch { campaign: *c, at: t(i64::try_from(i).unwrap_or(0)) })
                .collect();
            let p = Purchase { order_id: "o".into(), amount, at: t(10) };
            let total: i64 = ids.iter()
                .filter_map(|c| attributed(Model::Linear, Duration::days(7), *c, &p, &touches))
                .sum();
            prop_assert!(total <= amount && amount - total < i64::try_from(n).unwrap_or(0));
        }
    }
}
