//! Viewer figures: concurrent viewers are the members of a stream's heartbeat set seen within
//! the window (`livestream.viewerTtlSeconds`), peak is the largest concurrent count a
//! heartbeat saw, unique viewers a HyperLogLog count, likes and shares counters.

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub struct ViewerStats {
    pub concurrent: u64,
    pub peak: u64,
    pub unique: u64,
    pub likes: u64,
    pub shares: u64,
}

/// A like or a share.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reaction {
    Like,
    Share,
}

impl Reaction {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Like => "likes",
            Self::Share => "shares",
        }
    }
}

/// The oldest heartbeat, in ms since the epoch, that still counts at `now_ms`.
pub fn window_start(now_ms: i64, ttl_seconds: u32) -> i64 {
    now_ms.saturating_sub(i64::from(ttl_seconds) * 1000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_window_reaches_back_one_ttl() {
        assert_eq!(window_start(100_000, 30), 70_000);
        assert_eq!(window_start(i64::MIN + 5, 30), i64::MIN);
    }
}
