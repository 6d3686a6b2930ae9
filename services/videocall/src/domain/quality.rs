//! Quality samples clients report during a call (RTT, packet loss, jitter, bitrate,
//! resolution), their ranges, and the per-call aggregate (mean, p95, worst). Pure.

use serde::{Deserialize, Serialize};
use titan_kit::input::InputError;

/// Samples one call may collect: one a second from each party for half an hour, which bounds
/// the table and the aggregate's work.
pub const MAX_SAMPLES_PER_CALL: u32 = 3_600;

/// One validated sample.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sample {
    pub rtt_ms: u32,
    /// Basis points: 10,000 = every packet lost.
    pub packet_loss_bp: u32,
    pub jitter_ms: u32,
    pub bitrate_kbps: u32,
    pub width: u32,
    pub height: u32,
}

/// The request fields of a sample, in request order, with their upper bounds.
const BOUNDS: [(&str, u32); 6] = [
    ("rtt_ms", 60_000),
    ("packet_loss_bp", 10_000),
    ("jitter_ms", 60_000),
    ("bitrate_kbps", 1_000_000),
    ("width", 7_680),
    ("height", 4_320),
];

impl Sample {
    /// Checks every field against its range; the refusal names the first field out of it.
    pub fn parse(values: [u32; 6]) -> Result<Self, InputError> {
        for ((field, max), value) in BOUNDS.iter().zip(values) {
            if value > *max {
                return Err(InputError::new(
                    *field,
                    format!("{value} is out of range 0..={max}"),
                ));
            }
        }
        let [
            rtt_ms,
            packet_loss_bp,
            jitter_ms,
            bitrate_kbps,
            width,
            height,
        ] = values;
        Ok(Self {
            rtt_ms,
            packet_loss_bp,
            jitter_ms,
            bitrate_kbps,
            width,
            height,
        })
    }
}

/// Mean, 95th percentile and worst of one measure. `p95` is the value at least 95 % of the
/// samples are no worse than (nearest rank): the 95th percentile where higher is worse (RTT,
/// loss, jitter), the 5th where lower is worse (bitrate, resolution).
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct Aggregate {
    pub mean: f64,
    pub p95: f64,
    pub worst: f64,
}

/// Which direction is bad.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Worse {
    Higher,
    Lower,
}

fn aggregate(values: &mut [u32], worse: Worse) -> Aggregate {
    if values.is_empty() {
        return Aggregate::default();
    }
    values.sort_unstable();
    if worse == Worse::Lower {
        values.reverse();
    }
    let n = values.len();
    // Nearest rank: the smallest rank r with r / n >= 0.95, 1-based.
    let rank = (n * 95).div_ceil(100).max(1);
    let sum: u64 = values.iter().map(|&v| u64::from(v)).sum();
    Aggregate {
        #[allow(clippy::cast_precision_loss)] // at most 3,600 values below 2^20: exact in f64
        mean: sum as f64 / n as f64,
        p95: f64::from(values[rank - 1]),
        worst: f64::from(values[n - 1]),
    }
}

/// The aggregate of a call's samples.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct Summary {
    pub samples: u32,
    pub rtt_ms: Aggregate,
    pub packet_loss_bp: Aggregate,
    pub jitter_ms: Aggregate,
    pub bitrate_kbps: Aggregate,
    pub width: Aggregate,
    pub height: Aggregate,
}

/// Aggregates `samples` (any order).
pub fn summarize(samples: &[Sample]) -> Summary {
    let column = |f: fn(&Sample) -> u32, worse| {
        let mut values: Vec<u32> = samples.iter().map(f).collect();
        aggregate(&mut values, worse)
    };
    Summary {
        samples: u32::try_from(samples.len()).unwrap_or(u32::MAX),
        rtt_ms: column(|s| s.rtt_ms, Worse::Higher),
        packet_loss_bp: column(|s| s.packet_loss_bp, Worse::Higher),
        jitter_ms: column(|s| s.jitter_ms, Worse::Higher),
        bitrate_kbps: column(|s| s.bitrate_kbps, Worse::Lower),
        width: column(|s| s.width, Worse::Lower),
        height: column(|s| s.height, Worse::Lower),
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn rtt(v: u32) -> Sample {
        Sample::parse([v, 0, 0, 1_000, 640, 360]).expect("valid")
    }

    #[test]
    fn the_first_field_out_of_range_is_named() {
        assert_eq!(
            Sample::parse([0, 10_001, 0, 0, 0, 0]).map_err(|e| e.to_string()),
            Err("packet_loss_bp: 10001 is out of range 0..=10000".into())
        );
        assert_eq!(
            Sample::parse([60_001, 0, 0, 0, 0, 9_999]).map_err(|e| e.field),
            Err("rtt_ms".into())
        );
        assert_eq!(
            Sample::parse([0, 0, 0, 0, 7_680, 4_321]).map_err(|e| e.field),
            Err("height".into())
        );
        assert!(Sample::parse([60_000, 10_000, 60_000, 1_000_000, 7_680, 4_320]).is_ok());
    }

    #[test]
    fn mean_p95_and_worst_of_twenty_samples() {
        // RTT 1..=20: mean 10.5, nearest rank 19 of 20 → 19, worst 20.
        let samples: Vec<Sample> = (1..=20).map(rtt).collect();
        let s = summarize(&samples);
        assert_eq!(s.samples, 20);
        assert_eq!(
            s.rtt_ms,
            Aggregate {
                mean: 10.5,
                p95: 19.0,
                worst: 20.0
            }
        );
        // Bitrate the same for all: every figure is that value.
        assert_eq!(
            s.bitrate_kbps,
            Aggregate {
                mean: 1_000.0,
                p95: 1_000.0,
                worst: 1_000.0
            }
        );
    }

    #[test]
    fn for_bitrate_lower_is_worse() {
        let samples: Vec<Sample> = (1..=20)
            .map(|b| Sample::parse([0, 0, 0, b * 100, 0, 0]).expect("valid"))
            .collect();
        let s = summarize(&samples);
        assert_eq!(s.bitrate_kbps.worst, 100.0);
        assert_eq!(s.bitrate_kbps.p95, 200.0);
        assert_eq!(s.bitrate_kbps.mean, 1_050.0);
    }

    #[test]
    fn no_samples_no_figures() {
        assert_eq!(summarize(&[]), Summary::default());
    }

    proptest! {
        /// The mean lies between best and worst, and p95 is never worse than the worst nor
        /// better than the median.
        #[test]
        fn figures_are_ordered(values in proptest::collection::vec(0u32..=60_000, 1..200)) {
            let samples: Vec<Sample> = values.iter().map(|&v| rtt(v)).collect();
            let s = summarize(&samples).rtt_ms;
            let best = f64::from(*values.iter().min().expect("non-empty"));
            let mut sorted = values.clone();
            sorted.sort_unstable();
            let median = f64::from(sorted[(sorted.len() - 1) / 2]);
            prop_assert!(best <= s.mean && s.mean <= s.worst);
            prop_assert!(median <= s.p95 && s.p95 <= s.worst);
            prop_assert_eq!(s.worst, f64::from(sorted[sorted.len() - 1]));
        }
    }
}
