//! The demand score (0..100) of a product from its analytics signals, by the design's
//! reference formula:
//! `min(30, 10·v24/(v7/7+1)) + min(40, 20·p24/(p7/7+1)) + 20·conversion + 10·(1 − inventory)`
//! where v are product views, p verified orders, conversion = p24 / v24 (0 without views,
//! at most 1) and inventory the stock level 0..1. Cart adds are counted and kept with the
//! inputs of a price, but the reference formula does not weigh them.

use serde::Serialize;

/// One product's signals over the last 24 hours and 7 days (the 7 days include the 24 hours).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Signals {
    pub views_24h: u64,
    pub views_7d: u64,
    pub carts_24h: u64,
    pub purchases_24h: u64,
    pub purchases_7d: u64,
    /// Stock level, 0 (sold out) ..= 1 (full).
    pub inventory: f64,
}

#[allow(clippy::cast_precision_loss)] // counts far below 2^52
fn f(n: u64) -> f64 {
    n as f64
}

impl Signals {
    pub fn conversion(&self) -> f64 {
        if self.views_24h == 0 {
            0.0
        } else {
            (f(self.purchases_24h) / f(self.views_24h)).min(1.0)
        }
    }

    /// The score, 0..=100.
    pub fn score(&self) -> f64 {
        let views = (10.0 * f(self.views_24h) / (f(self.views_7d) / 7.0 + 1.0)).min(30.0);
        let purchases =
            (20.0 * f(self.purchases_24h) / (f(self.purchases_7d) / 7.0 + 1.0)).min(40.0);
        let stock = 10.0 * (1.0 - self.inventory.clamp(0.0, 1.0));
        (views + purchases + 20.0 * self.conversion() + stock).clamp(0.0, 100.0)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn worked_numbers() {
        // views: 10·70/(140/7+1) = 700/21 = 33.3 → 30; purchases: 20·7/(14/7+1) = 46.7 → 40;
        // conversion 7/70 = 0.1 → 2; inventory 0.25 → 7.5. Total 79.5.
        let s = Signals {
            views_24h: 70,
            views_7d: 140,
            carts_24h: 12,
            purchases_24h: 7,
            purchases_7d: 14,
            inventory: 0.25,
        };
        assert!((s.score() - 79.5).abs() < 1e-12, "{}", s.score());
        // views: 10·20/(700/7+1) = 200/101; purchases: 20·1/(70/7+1) = 20/11;
        // conversion 1/20 → 1; full stock → 0.
        let s = Signals {
            views_24h: 20,
            views_7d: 700,
            carts_24h: 0,
            purchases_24h: 1,
            purchases_7d: 70,
            inventory: 1.0,
        };
        let want = 200.0 / 101.0 + 20.0 / 11.0 + 1.0;
        assert!((s.score() - want).abs() < 1e-12, "{} vs {want}", s.score());
        assert_eq!(Signals::default().score(), 10.0); // nothing, inventory 0: only scarcity
    }

    proptest! {
        #[test]
        fn the_score_stays_in_range(v24 in 0_u64..1_000_000, v7 in 0_u64..10_000_000,
                                    p24 in 0_u64..1_000_000, p7 in 0_u64..10_000_000,
                                    inventory in -1.0_f64..2.0) {
            let s = Signals { views_24h: v24, views_7d: v7, carts_24h: 0, purchases_24h: p24,
                              purchases_7d: p7, inventory };
            prop_assert!((0.0..=100.0).contains(&s.score()));
        }
    }
}
