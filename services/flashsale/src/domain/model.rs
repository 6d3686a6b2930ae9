//! The reference model of one sale's stock: the rules the Redis scripts implement, written as
//! plain Rust so they can be property-tested and used to check the scripts' results.

use std::collections::HashMap;

use super::sale::Refusal;

/// A reservation in the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hold {
    pub user: u32,
    pub quantity: u32,
    pub expires_at: i64,
    pub status: super::ReservationStatus,
}

#[derive(Debug, Clone)]
pub struct StockModel {
    pub total: u32,
    pub max_per_user: u32,
    pub starts_at: i64,
    pub ends_at: i64,
    pub ttl: i64,
    pub available: u32,
    /// Units each user holds (reserved or bought).
    pub held: HashMap<u32, u32>,
    pub holds: Vec<Hold>,
}

impl StockModel {
    pub fn new(total: u32, max_per_user: u32, starts_at: i64, ends_at: i64, ttl: i64) -> Self {
        Self {
            total,
            max_per_user,
            starts_at,
            ends_at,
            ttl,
            available: total,
            held: HashMap::new(),
            holds: Vec::new(),
        }
    }

    /// An attempt at `now`; expired holds are released first, as the script does.
    pub fn attempt(&mut self, user: u32, quantity: u32, now: i64) -> Result<usize, Refusal> {
        if now < self.starts_at {
            return Err(Refusal::NotStarted {
                starts_at: chrono::DateTime::from_timestamp_millis(self.starts_at)
                    .unwrap_or_default(),
            });
        }
        if now >= self.ends_at {
            return Err(Refusal::Ended);
        }
        self.expire(now);
        let held = self.held.get(&user).copied().unwrap_or(0);
        if held + quantity > self.max_per_user {
            return Err(Refusal::LimitReached {
                held,
                max: self.max_per_user,
            });
        }
        if self.available == 0 {
            return Err(Refusal::SoldOut {
                held_by_reservations: self.reserved(),
            });
        }
        if self.available < quantity {
            return Err(Refusal::NotEnoughStock {
                remaining: self.available,
            });
        }
        self.available -= quantity;
        *self.held.entry(user).or_default() += quantity;
        self.holds.push(Hold {
            user,
            quantity,
            expires_at: now + self.ttl,
            status: super::ReservationStatus::Reserved,
        });
        Ok(self.holds.len() - 1)
    }

    fn release(&mut self, i: usize, to: super::ReservationStatus) {
        let hold = &mut self.holds[i];
        if hold.status.can_become(to) {
            hold.status = to;
            self.available += hold.quantity;
            if let Some(h) = self.held.get_mut(&hold.user) {
                *h -= hold.quantity;
            }
        }
    }

    /// Returns the stock of every reservation expired at `now`, once.
    pub fn expire(&mut self, now: i64) {
        for i in 0..self.holds.len() {
            if self.holds[i].expires_at <= now {
                self.release(i, super::ReservationStatus::Expired);
            }
        }
    }

    pub fn cancel(&mut self, i: usize) {
        self.release(i, super::ReservationStatus::Cancelled);
    }

    /// Confirms a live hold; false when it is gone or expired.
    pub fn confirm(&mut self, i: usize, now: i64) -> bool {
        if self.holds[i].status == super::ReservationStatus::Reserved
            && self.holds[i].expires_at > now
        {
            self.holds[i].status = super::ReservationStatus::Confirmed;
            return true;
        }
        self.holds[i].status == super::ReservationStatus::Confirmed
    }

    fn units(&self, status: super::ReservationStatus) -> u32 {
        self.holds
            .iter()
            .filter(|h| h.status == status)
            .map(|h| h.quantity)
            .sum()
    }

    pub fn reserved(&self) -> u32 {
        self.units(super::ReservationStatus::Reserved)
    }

    pub fn sold(&self) -> u32 {
        self.units(super::ReservationStatus::Confirmed)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[derive(Debug, Clone)]
    enum Op {
        Attempt { user: u32, quantity: u32 },
        Confirm(usize),
        Cancel(usize),
        Tick(i64),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (0u32..8, 1u32..4).prop_map(|(user, quantity)| Op::Attempt { user, quantity }),
            2 => (0usize..64).prop_map(Op::Confirm),
            1 => (0usize..64).prop_map(Op::Cancel),
            2 => (1i64..400).prop_map(Op::Tick),
        ]
    }

    proptest! {
        /// Never oversell, never undersell, never above the limit — whatever buyers do.
        #[test]
        fn stock_is_conserved(total in 1u32..40, max in 1u32..6, ops in prop::collection::vec(op(), 1..200)) {
            let mut m = StockModel::new(total, max, 0, 10_000, 300);
            let mut now = 0;
            for op in ops {
                match op {
                    Op::Attempt { user, quantity } => { let _ = m.attempt(user, quantity, now); }
                    Op::Confirm(i) if i < m.holds.len() => { m.confirm(i, now); }
                    Op::Cancel(i) if i < m.holds.len() => m.cancel(i),
                    Op::Tick(dt) => { now += dt; m.expire(now); }
                    _ => {}
                }
                prop_assert_eq!(m.available + m.reserved() + m.sold(), total);
                for (user, held) in &m.held {
                    prop_assert!(*held <= max, "user {} holds {} > {}", user, held, max);
                    let live: u32 = m.holds.iter()
                        .filter(|h| h.user == *user && matches!(h.status, super::super::ReservationStatus::Reserved | super::super::ReservationStatus::Confirmed))
                        .map(|h| h.quantity).sum();
                    prop_assert_eq!(*held, live);
                }
            }
        }
    }

    #[test]
    fn refusals_in_order() {
        let mut m = StockModel::new(3, 2, 100, 1_000, 50);
        assert!(matches!(
            m.attempt(1, 1, 99),
            Err(Refusal::NotStarted { .. })
        ));
        assert_eq!(m.attempt(1, 2, 100), Ok(0));
        assert!(matches!(
            m.attempt(1, 1, 100),
            Err(Refusal::LimitReached { held: 2, max: 2 })
        ));
        assert!(matches!(
            m.attempt(2, 2, 100),
            Err(Refusal::NotEnoughStock { remaining: 1 })
        ));
        assert_eq!(m.attempt(2, 1, 100), Ok(1));
        assert!(matches!(
            m.attempt(3, 1, 100),
            Err(Refusal::SoldOut {
                held_by_reservations: 3
            })
        ));
        assert!(m.confirm(0, 120));
        assert_eq!(
            m.attempt(3, 1, 150),
            Ok(2),
            "user 2's hold expired at 150 and came back"
        );
        assert!(!m.confirm(1, 150), "an expired hold cannot be confirmed");
        assert!(matches!(m.attempt(4, 1, 1_000), Err(Refusal::Ended)));
    }
}
