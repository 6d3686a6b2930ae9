//! The logistic model over the signal strengths, its fit by iteratively reweighted least
//! squares (Newton's method on the log-likelihood, a tiny ridge keeping the system solvable),
//! and the held-out measures reported by `titan fraud train`: AUC and calibration by decile.

use serde::{Deserialize, Serialize};

use super::stats::sigmoid;

/// A logistic model: P(fraud) = sigmoid(intercept + Σ weights·x).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Model {
    pub intercept: f64,
    pub weights: Vec<f64>,
}

impl Model {
    pub fn predict(&self, x: &[f64]) -> f64 {
        sigmoid(self.intercept + self.weights.iter().zip(x).map(|(w, v)| w * v).sum::<f64>())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FitError {
    #[error("need at least {need} labelled examples, have {have}")]
    TooFew { need: usize, have: usize },
    #[error("every label is the same; a model needs both fraud and legitimate examples")]
    OneClass,
    #[error("example {0} has a different number of features")]
    Ragged(usize),
    #[error("the fit did not converge in {0} iterations")]
    NoConvergence(usize),
}

/// How the fit runs.
#[derive(Debug, Clone, Copy)]
pub struct FitOptions {
    pub max_iterations: usize,
    /// Stop when no coefficient moves more than this.
    pub tolerance: f64,
    /// Added to the diagonal of XᵀWX (not to the intercept's).
    pub ridge: f64,
}

impl Default for FitOptions {
    fn default() -> Self {
        Self {
            max_iterations: 100,
            tolerance: 1e-10,
            ridge: 1e-8,
        }
    }
}

/// Solves `a · x = b` by Gaussian elimination with partial pivoting; `None` if singular.
fn solve(mut a: Vec<Vec<f64>>, mut b: Vec<f64>) -> Option<Vec<f64>> {
    let n = b.len();
    for col in 0..n {
        let pivot = (col..n).max_by(|&i, &j| a[i][col].abs().total_cmp(&a[j][col].abs()))?;
        if a[pivot][col].abs() < 1e-300 {
            return None;
        }
        a.swap(col, pivot);
        b.swap(col, pivot);
        let (top, rest) = a.split_at_mut(col + 1);
        let pivot_row = &top[col];
        for (offset, row) in rest.iter_mut().enumerate() {
            let f = row[col] / pivot_row[col];
            for (cell, p) in row.iter_mut().zip(pivot_row).skip(col) {
                *cell -= f * p;
            }
            b[col + 1 + offset] -= f * b[col];
        }
    }
    let mut x = vec![0.0; n];
    for row in (0..n).rev() {
        let s: f64 = (row + 1..n).map(|k| a[row][k] * x[k]).sum();
        x[row] = (b[row] - s) / a[row][row];
    }
    Some(x)
}

/// Fits a logistic regression of `ys` (0 or 1) on `xs` by IRLS.
pub fn fit(xs: &[Vec<f64>], ys: &[f64], opts: FitOptions) -> Result<Model, FitError> {
    let d = xs.first().map_or(0, Vec::len);
    let need = d + 2;
    if xs.len() < need || ys.len() != xs.len() {
        return Err(FitError::TooFew {
            need,
            have: xs.len().min(ys.len()),
        });
    }
    if let Some(i) = xs.iter().position(|x| x.len() != d) {
        return Err(FitError::Ragged(i));
    }
    if ys.iter().all(|&y| y == ys[0]) {
        return Err(FitError::OneClass);
    }
    let p = d + 1;
    let mut beta = vec![0.0; p];
    for _ in 0..opts.max_iterations {
        let mut h = vec![vec![0.0; p]; p];
        let mut g = vec![0.0; p];
        for (x, &y) in xs.iter().zip(ys) {
            let row: Vec<f64> = std::iter::once(1.0).chain(x.iter().copied()).collect();
            let mu = sigmoid(row.iter().zip(&beta).map(|(a, b)| a * b).sum());
            let w = (mu * (1.0 - mu)).max(1e-12);
            for i in 0..p {
                g[i] += row[i] * (y - mu);
                for j in 0..p {
                    h[i][j] += w * row[i] * row[j];
                }
            }
        }
        for (i, row) in h.iter_mut().enumerate().skip(1) {
            row[i] += opts.ridge;
            g[i] -= opts.ridge * beta[i];
        }
        let step = solve(h, g).ok_or(FitError::NoConvergence(0))?;
        let mut moved: f64 = 0.0;
        for (b, s) in beta.iter_mut().zip(&step) {
            *b += s;
            moved = moved.max(s.abs());
        }
        if moved < opts.tolerance {
            return Ok(Model {
                intercept: beta[0],
                weights: beta[1..].to_vec(),
            });
        }
    }
    Err(FitError::NoConvergence(opts.max_iterations))
}

/// Area under the ROC curve: the chance that a random fraud scores above a random legitimate
/// case (ties count half). `None` without both classes.
pub fn auc(scores: &[f64], labels: &[bool]) -> Option<f64> {
    let mut pairs: Vec<(f64, bool)> = scores.iter().copied().zip(labels.iter().copied()).collect();
    pairs.sort_by(|a, b| a.0.total_cmp(&b.0));
    let pos = pairs.iter().filter(|p| p.1).count();
    let neg = pairs.len() - pos;
    if pos == 0 || neg == 0 {
        return None;
    }
    // Sum of the ranks of the positives, tied scores sharing their mean rank.
    let mut rank_sum = 0.0;
    let mut i = 0;
    while i < pairs.len() {
        let j = pairs[i..].iter().take_while(|p| p.0 == pairs[i].0).count() + i;
        let mean_rank = (i + 1 + j) as f64 / 2.0;
        rank_sum += mean_rank * pairs[i..j].iter().filter(|p| p.1).count() as f64;
        i = j;
    }
    let (pos, neg) = (pos as f64, neg as f64);
    Some((rank_sum - pos * (pos + 1.0) / 2.0) / (pos * neg))
}

/// One calibration bin: predictions in `[lower, lower + 0.1)`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Bin {
    pub lower: f64,
    pub count: usize,
    pub mean_predicted: f64,
    pub observed_rate: f64,
}

/// Calibration by tenths of the predicted probability (empty bins left out) and the Brier score.
pub fn calibration(scores: &[f64], labels: &[bool]) -> (Vec<Bin>, f64) {
    let mut sums = [(0usize, 0.0, 0.0); 10];
    let mut brier = 0.0;
    for (&s, &l) in scores.iter().zip(labels) {
        let y = if l { 1.0 } else { 0.0 };
        // s is in 0..1, so the bin is 0..=9.
        let b = ((s * 10.0) as usize).min(9);
        sums[b].0 += 1;
        sums[b].1 += s;
        sums[b].2 += y;
        brier += (s - y) * (s - y);
    }
    let bins = sums
        .iter()
        .enumerate()
        .filter(|(_, s)| s.0 > 0)
        .map(|(i, s)| Bin {
            lower: i as f64 / 10.0,
            count: s.0,
            mean_predicted: s.1 / s.0 as f64,
            observed_rate: s.2 / s.0 as f64,
        })
        .collect();
    (bins, brier / scores.len().max(1) as f64)
}

/// Whether an example belongs to the held-out fifth, from its id (FNV-1a), so a re-run splits
/// the same way.
pub fn held_out(id: &str) -> bool {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in id.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h.is_multiple_of(5)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A deterministic generator (SplitMix64) so the synthetic data is the same on every run.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> f64 {
            self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
        }
    }

    #[test]
    fn recovers_known_coefficients() {
        let truth = Model {
            intercept: -2.0,
            weights: vec![1.5, -1.0, 3.0],
        };
        let mut rng = Rng(7);
        let mut xs = Vec::new();
        let mut ys = Vec::new();
        for _ in 0..20_000 {
            let x = vec![rng.next(), rng.next() * 2.0, f64::from(rng.next() < 0.3)];
            let y = f64::from(rng.next() < truth.predict(&x));
            xs.push(x);
            ys.push(y);
        }
        let m = fit(&xs, &ys, FitOptions::default()).expect("valid in this test");
        assert!((m.intercept - truth.intercept).abs() < 0.15, "{m:?}");
        for (w, t) in m.weights.iter().zip(&truth.weights) {
            assert!((w - t).abs() < 0.15, "{m:?}");
        }
    }

    #[test]
    fn refuses_what_cannot_be_fitted() {
        assert_eq!(
            fit(&[vec![1.0]], &[1.0], FitOptions::default()),
            Err(FitError::TooFew { need: 3, have: 1 })
        );
        let xs = vec![vec![0.0], vec![1.0], vec![2.0]];
        assert_eq!(
            fit(&xs, &[1.0, 1.0, 1.0], FitOptions::default()),
            Err(FitError::OneClass)
        );
        let ragged = vec![vec![0.0], vec![1.0, 2.0], vec![2.0]];
        assert_eq!(
            fit(&ragged, &[0.0, 1.0, 1.0], FitOptions::default()),
            Err(FitError::Ragged(1))
        );
    }

    #[test]
    fn auc_counts_ordered_pairs_and_ties() {
        assert_eq!(
            auc(&[0.1, 0.4, 0.35, 0.8], &[false, false, true, true]),
            Some(0.75)
        );
        assert_eq!(auc(&[0.5, 0.5], &[false, true]), Some(0.5));
        assert_eq!(auc(&[0.1, 0.9], &[false, true]), Some(1.0));
        assert_eq!(auc(&[0.1], &[true]), None);
    }

    #[test]
    fn calibration_bins_by_tenths() {
        let (bins, brier) = calibration(&[0.05, 0.15, 0.12, 1.0], &[false, true, false, true]);
        assert_eq!(bins.len(), 3);
        assert_eq!(
            (bins[1].lower, bins[1].count, bins[1].observed_rate),
            (0.1, 2, 0.5)
        );
        assert_eq!((bins[2].lower, bins[2].count), (0.9, 1));
        let expected = (0.05f64.powi(2) + 0.85f64.powi(2) + 0.12f64.powi(2)) / 4.0;
        assert!((brier - expected).abs() < 1e-12);
    }

    #[test]
    fn the_split_is_stable_and_about_a_fifth() {
        let n = (0..10_000).filter(|i| held_out(&format!("t{i}"))).count();
        assert!((1800..2200).contains(&n), "{n}");
        assert_eq!(held_out("t42"), held_out("t42"));
    }
}
