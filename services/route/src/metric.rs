//! Distances and travel times between locations, behind one trait so the solver never knows
//! where they come from: plane coordinates (the benchmarks), great-circle distances on the
//! Earth (the service's default) or a matrix the caller measured on a road network.

use crate::ModelError;

/// Distances and travel times between the locations `0..len()`.
///
/// The solver reads every pair once, into its own matrix, before it searches: an
/// implementation may be slow, but it must be deterministic and return finite, non-negative
/// values.
pub trait Metric {
    /// How many locations there are.
    fn len(&self) -> usize;
    /// Whether there are no locations at all.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Distance from `from` to `to` (the objective's unit).
    fn distance(&self, from: usize, to: usize) -> f64;
    /// Travel time from `from` to `to`, in the unit of the time windows.
    fn duration(&self, from: usize, to: usize) -> f64;
}

/// Straight-line distance in the plane; travel time is distance divided by `speed`
/// (Solomon's convention is speed 1: travel time equals distance).
#[derive(Debug, Clone)]
pub struct Euclidean {
    points: Vec<(f64, f64)>,
    speed: f64,
}

impl Euclidean {
    /// Points `(x, y)`; travel time equals distance.
    pub fn new(points: Vec<(f64, f64)>) -> Result<Self, ModelError> {
        Self::with_speed(points, 1.0)
    }

    /// Points `(x, y)` travelled at `speed` distance units per time unit.
    pub fn with_speed(points: Vec<(f64, f64)>, speed: f64) -> Result<Self, ModelError> {
        if !(speed.is_finite() && speed > 0.0) {
            return Err(ModelError::Metric(
                "speed must be finite and positive".into(),
            ));
        }
        if let Some(i) = points
            .iter()
            .position(|(x, y)| !(x.is_finite() && y.is_finite()))
        {
            return Err(ModelError::Metric(format!("point {i} is not finite")));
        }
        Ok(Self { points, speed })
    }
}

impl Metric for Euclidean {
    fn len(&self) -> usize {
        self.points.len()
    }

    fn distance(&self, from: usize, to: usize) -> f64 {
        let (a, b) = (self.points[from], self.points[to]);
        (a.0 - b.0).hypot(a.1 - b.1)
    }

    fn duration(&self, from: usize, to: usize) -> f64 {
        self.distance(from, to) / self.speed
    }
}

/// Mean Earth radius in metres (IUGG), the radius of the haversine formula.
const EARTH_RADIUS_M: f64 = 6_371_008.8;

/// Great-circle distance in metres between `(latitude, longitude)` points in degrees;
/// travel time in seconds at `speed_mps` metres per second.
#[derive(Debug, Clone)]
pub struct Haversine {
    points: Vec<(f64, f64)>,
    speed_mps: f64,
}

impl Haversine {
    /// Points `(latitude, longitude)` in degrees, checked to be on the globe.
    pub fn new(points: Vec<(f64, f64)>, speed_mps: f64) -> Result<Self, ModelError> {
        if !(speed_mps.is_finite() && speed_mps > 0.0) {
            return Err(ModelError::Metric(
                "speed must be finite and positive".into(),
            ));
        }
        if let Some(i) = points.iter().position(|&(lat, lon)| {
            !((-90.0..=90.0).contains(&lat) && (-180.0..=180.0).contains(&lon))
        }) {
            return Err(ModelError::Metric(format!(
                "point {i} is not a latitude in [-90, 90] and a longitude in [-180, 180]"
            )));
        }
        Ok(Self { points, speed_mps })
    }
}

impl Metric for Haversine {
    fn len(&self) -> usize {
        self.points.len()
    }

    fn distance(&self, from: usize, to: usize) -> f64 {
        let (lat1, lon1) = self.points[from];
        let (lat2, lon2) = self.points[to];
        let (p1, p2) = (lat1.to_radians(), lat2.to_radians());
        let dp = p2 - p1;
        let dl = (lon2 - lon1).to_radians();
        let h = (dp / 2.0).sin().powi(2) + p1.cos() * p2.cos() * (dl / 2.0).sin().powi(2);
        // min: rounding can push h a hair above 1 for antipodal points, and asin would be NaN.
        2.0 * EARTH_RADIUS_M * h.sqrt().min(1.0).asin()
    }

    fn duration(&self, from: usize, to: usize) -> f64 {
        self.distance(from, to) / self.speed_mps
    }
}

/// Distances and travel times the caller measured (a road network), row-major `n × n`.
#[derive(Debug, Clone)]
pub struct Matrix {
    n: usize,
    distances: Vec<f64>,
    durations: Vec<f64>,
}

impl Matrix {
    /// `distances[i * n + j]` and `durations[i * n + j]` from `i` to `j`; both must be
    /// `n × n`, finite and non-negative (they need not be symmetric).
    pub fn new(n: usize, distances: Vec<f64>, durations: Vec<f64>) -> Result<Self, ModelError> {
        for (name, m) in [("distances", &distances), ("durations", &durations)] {
            if Some(m.len()) != n.checked_mul(n) {
                return Err(ModelError::Metric(format!(
                    "{name} has {} entries where {n} locations need {n}×{n}",
                    m.len()
                )));
            }
            if let Some(i) = m.iter().position(|v| !(v.is_finite() && *v >= 0.0)) {
                return Err(ModelError::Metric(format!(
                    "{name}[{i}] is not finite and non-negative"
                )));
            }
        }
        Ok(Self {
            n,
            distances,
            durations,
        })
    }
}

impl Metric for Matrix {
    fn len(&self) -> usize {
        self.n
    }

    fn distance(&self, from: usize, to: usize) -> f64 {
        self.distances[from * self.n + to]
    }

    fn duration(&self, from: usize, to: usize) -> f64 {
        self.durations[from * self.n + to]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn euclidean_is_the_plane_distance_and_time_follows_speed() {
        let m = Euclidean::with_speed(vec![(0.0, 0.0), (3.0, 4.0)], 2.0).expect("valid");
        assert_eq!(m.distance(0, 1), 5.0);
        assert_eq!(m.duration(1, 0), 2.5);
        assert!(Euclidean::new(vec![(f64::NAN, 0.0)]).is_err());
        assert!(Euclidean::with_speed(vec![], 0.0).is_err());
    }

    #[test]
    fn haversine_matches_a_known_distance() {
        // Paris (48.8566, 2.3522) to London (51.5074, -0.1278): about 343.5 km.
        let m = Haversine::new(vec![(48.8566, 2.3522), (51.5074, -0.1278)], 10.0).expect("valid");
        let d = m.distance(0, 1);
        assert!((d - 343_500.0).abs() < 1_000.0, "{d}");
        assert_eq!(m.duration(0, 1), d / 10.0);
        assert_eq!(m.distance(0, 0), 0.0);
        assert!(Haversine::new(vec![(91.0, 0.0)], 10.0).is_err());
    }

    #[test]
    fn matrix_checks_its_shape_and_values() {
        let m = Matrix::new(2, vec![0.0, 1.0, 2.0, 0.0], vec![0.0, 3.0, 4.0, 0.0]).expect("valid");
        assert_eq!((m.distance(1, 0), m.duration(0, 1)), (2.0, 3.0));
        assert!(Matrix::new(2, vec![0.0; 3], vec![0.0; 4]).is_err());
        assert!(Matrix::new(1, vec![-1.0], vec![0.0]).is_err());
    }
}
