//! Solomon's VRPTW benchmark format: a name, the fleet (number and capacity) and a customer
//! table whose first row is the depot. Columns are split on whitespace, as the public copies
//! differ in widths.

use std::fmt::Write as _;

use serde::Serialize;
use thiserror::Error;

use crate::{
    metric::Euclidean,
    model::{Job, ModelError, Problem, Solution, Vehicle},
};

/// A file the parser refuses, with the line it stopped at.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum SolomonError {
    /// The file does not follow the layout.
    #[error("line {line}: {reason}")]
    Format { line: usize, reason: String },
    /// The numbers parse but do not make a valid problem.
    #[error(transparent)]
    Model(#[from] ModelError),
}

/// A parsed instance: the problem plus the file's own customer numbers (job `i` is customer
/// `customers[i]`), so a solution can be printed in the file's terms.
#[derive(Debug, Clone)]
pub struct Instance {
    /// The first line of the file.
    pub name: String,
    /// Customer number of each job, in job order.
    pub customers: Vec<u32>,
    /// Jobs are the customers; the depot is location 0; every vehicle of the fleet starts and
    /// ends there within the depot's window.
    pub problem: Problem<Euclidean>,
}

/// Largest text accepted: a 1,000-customer file is about 80 kB.
pub const MAX_BYTES: usize = 1 << 20;

/// Parses a Solomon file's text.
pub fn parse(text: &str) -> Result<Instance, SolomonError> {
    let format = |line: usize, reason: &str| SolomonError::Format {
        line,
        reason: reason.to_owned(),
    };
    if text.len() > MAX_BYTES {
        return Err(format(0, "file is larger than 1 MiB"));
    }
    let mut lines = text
        .lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l.trim()))
        .filter(|(_, l)| !l.is_empty());
    let (_, name) = lines.next().ok_or_else(|| format(1, "empty file"))?;
    let mut expect = |word: &str| -> Result<(), SolomonError> {
        match lines.next() {
            Some((_, l)) if l.to_ascii_uppercase().starts_with(word) => Ok(()),
            Some((n, _)) => Err(format(n, &format!("expected {word}"))),
            None => Err(format(0, &format!("expected {word} before the end"))),
        }
    };
    expect("VEHICLE")?;
    expect("NUMBER")?;
    let (n, fleet) = lines
        .next()
        .ok_or_else(|| format(0, "expected the fleet line"))?;
    let fleet: Vec<u32> = numbers(n, fleet)?;
    let &[count, capacity] = fleet.as_slice() else {
        return Err(format(n, "expected NUMBER and CAPACITY"));
    };
    let mut expect = |word: &str| -> Result<(), SolomonError> {
        match lines.next() {
            Some((_, l)) if l.to_ascii_uppercase().starts_with(word) => Ok(()),
            Some((n, _)) => Err(format(n, &format!("expected {word}"))),
            None => Err(format(0, &format!("expected {word} before the end"))),
        }
    };
    expect("CUSTOMER")?;
    expect("CUST")?;
    let mut rows = Vec::new();
    for (n, l) in lines {
        let row: Vec<f64> = numbers(n, l)?;
        if row.len() != 7 {
            return Err(format(n, "expected 7 columns"));
        }
        rows.push((n, row));
    }
    let Some(((_, depot), customers)) = rows.split_first() else {
        return Err(format(0, "no depot row"));
    };
    let mut points = vec![(depot[1], depot[2])];
    let mut jobs = Vec::with_capacity(customers.len());
    let mut numbers_of = Vec::with_capacity(customers.len());
    for (n, row) in customers {
        let number =
            whole(row[0]).ok_or_else(|| format(*n, "customer number is not a whole number"))?;
        let demand = whole(row[3]).ok_or_else(|| format(*n, "demand is not a whole number"))?;
        numbers_of.push(number);
        points.push((row[1], row[2]));
        jobs.push(Job {
            location: points.len() - 1,
            demand,
            ready: row[4],
            due: row[5],
            service: row[6],
        });
    }
    let vehicle = Vehicle {
        start: 0,
        end: 0,
        capacity,
        shift_start: depot[4],
        shift_end: depot[5],
    };
    let problem = Problem::new(Euclidean::new(points)?, jobs, vec![vehicle; count as usize])?;
    Ok(Instance {
        name: name.to_owned(),
        customers: numbers_of,
        problem,
    })
}

/// A solution in the file's terms, as `titan route solve --json` prints it: any checker can
/// verify it against the instance file alone.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Answer {
    /// Routes used.
    pub vehicles: usize,
    /// Total Euclidean distance, unrounded.
    pub distance: f64,
    /// Each route's customer numbers in visit order (the depot left out).
    pub routes: Vec<Vec<u32>>,
}

impl Instance {
    /// The solution in the file's customer numbers.
    pub fn answer(&self, solution: &Solution) -> Answer {
        Answer {
            vehicles: solution.vehicles(),
            distance: solution.distance,
            routes: solution
                .routes
                .iter()
                .map(|r| r.stops.iter().map(|s| self.customers[s.job]).collect())
                .collect(),
        }
    }

    /// A human-readable summary: vehicles, distance, the search's time and iterations, then
    /// one line per route with its customers and load.
    pub fn report(&self, solution: &Solution, seconds: f64) -> String {
        let mut out = format!(
            "{}: {} vehicles, distance {:.2}, {seconds:.3} s, {} iterations\n",
            self.name,
            solution.vehicles(),
            solution.distance,
            solution.iterations
        );
        for (i, (route, customers)) in solution
            .routes
            .iter()
            .zip(self.answer(solution).routes)
            .enumerate()
        {
            let list: Vec<String> = customers.iter().map(u32::to_string).collect();
            // Writing to a String cannot fail.
            let _ = writeln!(
                out,
                "route {:>2}: load {:>4}, distance {:>8.2}: {}",
                i + 1,
                route.load,
                route.distance,
                list.join(" ")
            );
        }
        for u in &solution.unassigned {
            let _ = writeln!(
                out,
                "unassigned: customer {} ({:?})",
                self.customers[u.job], u.reason
            );
        }
        out
    }
}

fn numbers<T: std::str::FromStr>(line: usize, text: &str) -> Result<Vec<T>, SolomonError> {
    text.split_whitespace()
        .map(|w| {
            w.parse().map_err(|_| SolomonError::Format {
                line,
                reason: format!("{w:?} is not a number"),
            })
        })
        .collect()
}

/// `v` as a u32 when it is a whole number in range.
fn whole(v: f64) -> Option<u32> {
    (v.fract() == 0.0 && (0.0..=f64::from(u32::MAX)).contains(&v)).then_some(v as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TINY: &str = "TINY\n\nVEHICLE\nNUMBER     CAPACITY\n  2         10\n\nCUSTOMER\nCUST NO.  XCOORD.   YCOORD.    DEMAND   READY TIME  DUE DATE   SERVICE TIME\n\n    0      0   0   0   0   100   0\n    7      3   4   5   0   50    2\n    9      6   8   4   10  60    2\n";

    #[test]
    fn parses_the_layout() {
        let i = parse(TINY).expect("valid");
        assert_eq!(i.name, "TINY");
        assert_eq!(i.customers, vec![7, 9]);
        assert_eq!(i.problem.vehicles().len(), 2);
        assert_eq!(i.problem.vehicles()[0].capacity, 10);
        assert_eq!(i.problem.vehicles()[0].shift_end, 100.0);
        assert_eq!(
            i.problem.jobs()[1],
            Job {
                location: 2,
                demand: 4,
                ready: 10.0,
                due: 60.0,
                service: 2.0
            }
        );
    }

    #[test]
    fn refusals_name_the_line() {
        let short = TINY.replace("    9      6   8   4   10  60    2", "    9  6  8");
        assert_eq!(
            parse(&short).expect_err("refused").to_string(),
            "line 12: expected 7 columns"
        );
        let text = TINY
            .replace("VEHICLE", "VEHICLES?")
            .replace("NUMBER", "NUM");
        assert_eq!(
            parse(&text).expect_err("refused").to_string(),
            "line 4: expected NUMBER"
        );
        let bad = TINY.replace("  2         10", "  2   x");
        assert_eq!(
            parse(&bad).expect_err("refused").to_string(),
            "line 5: \"x\" is not a number"
        );
    }
}
