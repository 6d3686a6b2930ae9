//! Levels from lifetime points: level n starts at the n-th threshold (default 0, 500, 2000,
//! 5000, 10000, 25000, 50000, 100000, 250000, 500000 → levels 1..10).

/// The 1-based level of `lifetime` points, and the points at which the next level starts
/// (`None` at the top).
pub fn level_for(lifetime: i64, thresholds: &[u64]) -> (u32, Option<u64>) {
    let lifetime = u64::try_from(lifetime).unwrap_or(0);
    let reached = thresholds
        .iter()
        .take_while(|t| **t <= lifetime)
        .count()
        .max(1);
    (
        u32::try_from(reached).unwrap_or(u32::MAX),
        thresholds.get(reached).copied(),
    )
}

#[cfg(test)]
mod tests {
    use titan_crds::config::GamificationConfig;

    use super::*;

    #[test]
    fn levels_change_exactly_at_their_thresholds() {
        let t = GamificationConfig::default().level_thresholds;
        assert_eq!(level_for(0, &t), (1, Some(500)));
        assert_eq!(level_for(499, &t), (1, Some(500)));
        assert_eq!(level_for(500, &t), (2, Some(2000)));
        assert_eq!(level_for(1999, &t), (2, Some(2000)));
        assert_eq!(level_for(2000, &t), (3, Some(5000)));
        assert_eq!(level_for(249_999, &t), (8, Some(250_000)));
        assert_eq!(level_for(500_000, &t), (10, None));
        assert_eq!(level_for(9_000_000, &t), (10, None));
    }
}
