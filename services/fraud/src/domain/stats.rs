//! Robust statistics: the logistic function and a z-score of an amount against the user's own
//! history by median and MAD, so one earlier outlier does not hide the next.

/// Fewest earlier amounts of a user before an amount can be anomalous.
pub const MIN_HISTORY: usize = 5;
/// Largest z kept: beyond it the anomaly is certain and a finite number stores as JSON.
pub const MAX_Z: f64 = 50.0;
/// Scales MAD to the standard deviation of a normal distribution.
const MAD_TO_SD: f64 = 1.4826;
/// Scales the mean absolute deviation to the standard deviation of a normal distribution.
const MEAN_AD_TO_SD: f64 = 1.2533;

pub fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

fn median(sorted: &[f64]) -> f64 {
    let n = sorted.len();
    if n % 2 == 1 {
        sorted[n / 2]
    } else {
        (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
    }
}

/// How many robust standard deviations `x` lies above (positive) or below the median of
/// `history`: `(x − median) / (1.4826 · MAD)`. When more than half the history is one value
/// (MAD 0) the mean absolute deviation scales instead; when every amount is the same, any
/// other amount is at [`MAX_Z`]. `None` with fewer than [`MIN_HISTORY`] amounts.
pub fn robust_z(history: &[f64], x: f64) -> Option<f64> {
    if history.len() < MIN_HISTORY {
        return None;
    }
    let mut sorted = history.to_vec();
    sorted.sort_by(f64::total_cmp);
    let m = median(&sorted);
    let mut deviations: Vec<f64> = sorted.iter().map(|v| (v - m).abs()).collect();
    deviations.sort_by(f64::total_cmp);
    let mad = median(&deviations);
    // The history is not empty (checked above), so the length is at least 1.
    let mean_ad = deviations.iter().sum::<f64>() / deviations.len() as f64;
    let scale = if mad > 0.0 {
        MAD_TO_SD * mad
    } else {
        MEAN_AD_TO_SD * mean_ad
    };
    let z = if scale > 0.0 {
        (x - m) / scale
    } else if x == m {
        0.0
    } else {
        (x - m).signum() * MAX_Z
    };
    Some(z.clamp(-MAX_Z, MAX_Z))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn z_is_measured_by_median_and_mad() {
        // median 30, deviations 20 10 0 10 20 → MAD 10.
        let h = [10.0, 20.0, 30.0, 40.0, 50.0];
        let z = robust_z(&h, 30.0 + 3.0 * 14.826).expect("valid in this test");
        assert!((z - 3.0).abs() < 1e-9, "{z}");
        assert_eq!(robust_z(&h, 30.0), Some(0.0));
        assert!(robust_z(&h, 10.0).expect("valid in this test") < 0.0);
    }

    #[test]
    fn an_outlier_in_the_history_barely_moves_the_scale() {
        let calm = [100.0, 101.0, 99.0, 100.0, 102.0, 98.0];
        let spiked = [100.0, 101.0, 99.0, 100.0, 102.0, 98.0, 100_000.0];
        let a = robust_z(&calm, 130.0).expect("valid in this test");
        let b = robust_z(&spiked, 130.0).expect("valid in this test");
        assert!(a > 10.0 && b > 10.0, "{a} {b}");
    }

    #[test]
    fn short_or_constant_histories() {
        assert_eq!(robust_z(&[1.0, 2.0, 3.0, 4.0], 100.0), None);
        assert_eq!(robust_z(&[5.0; 6], 5.0), Some(0.0));
        assert_eq!(robust_z(&[5.0; 6], 6.0), Some(MAX_Z));
        // MAD 0 but not constant: the mean absolute deviation (1/6 · 1.2533) scales.
        let z = robust_z(&[5.0, 5.0, 5.0, 5.0, 5.0, 6.0], 7.0).expect("valid in this test");
        assert!((z - 2.0 / (1.2533 / 6.0)).abs() < 1e-9, "{z}");
    }

    #[test]
    fn sigmoid_values() {
        assert_eq!(sigmoid(0.0), 0.5);
        assert!((sigmoid(2.0) - 0.880_797_077_977_882_3).abs() < 1e-15);
    }

    proptest! {
        #[test]
        fn z_grows_with_the_amount(h in prop::collection::vec(1.0f64..1e6, 5..40), a in 1.0f64..1e6, b in 1.0f64..1e6) {
            let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
            prop_assert!(robust_z(&h, lo).expect("valid in this test") <= robust_z(&h, hi).expect("valid in this test"));
        }
    }
}
