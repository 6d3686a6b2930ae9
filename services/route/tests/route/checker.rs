//! An independent feasibility checker for Solomon instances. It shares no code with the
//! solver: it reads the instance text itself, recomputes every distance and every arrival
//! from the routes given as the file's customer numbers, and checks capacity, time windows,
//! the return to the depot within its window, and that every customer is served exactly once.
//! `titan-bench routes` includes this file too, so the benchmark checks with the same rules.

use std::collections::BTreeMap;

/// One row of the customer table.
#[derive(Debug, Clone, Copy)]
struct Row {
    x: f64,
    y: f64,
    demand: f64,
    ready: f64,
    due: f64,
    service: f64,
}

/// What a feasible solution measures.
#[derive(Debug, Clone, PartialEq)]
pub struct Checked {
    pub vehicles: usize,
    pub distance: f64,
}

/// Rounding allowed on a time comparison: arrivals are sums of square roots.
const TOLERANCE: f64 = 1e-6;

/// Checks `routes` (customer numbers in visit order) against the instance text.
pub fn check(instance: &str, routes: &[Vec<u32>]) -> Result<Checked, String> {
    let mut fleet = None;
    let mut rows: BTreeMap<u32, Row> = BTreeMap::new();
    let mut depot = None;
    for line in instance.lines() {
        let cols: Vec<f64> = match line.split_whitespace().map(str::parse).collect() {
            Ok(c) => c,
            Err(_) => continue,
        };
        match cols.len() {
            2 if fleet.is_none() => fleet = Some((cols[0] as usize, cols[1])),
            7 => {
                let row = Row {
                    x: cols[1],
                    y: cols[2],
                    demand: cols[3],
                    ready: cols[4],
                    due: cols[5],
                    service: cols[6],
                };
                if depot.is_none() {
                    depot = Some(row);
                } else if rows.insert(cols[0] as u32, row).is_some() {
                    return Err(format!("customer {} twice in the instance", cols[0]));
                }
            }
            _ => {}
        }
    }
    let (count, capacity) = fleet.ok_or("no fleet line")?;
    let depot = depot.ok_or("no depot row")?;
    let non_empty: Vec<&Vec<u32>> = routes.iter().filter(|r| !r.is_empty()).collect();
    if non_empty.len() > count {
        return Err(format!("{} routes for a fleet of {count}", non_empty.len()));
    }
    let mut seen: BTreeMap<u32, usize> = BTreeMap::new();
    let mut total = 0.0;
    for (r, route) in non_empty.iter().enumerate() {
        let (mut at, mut time, mut load) = (depot, depot.ready, 0.0);
        for &c in route.iter() {
            let row = *rows
                .get(&c)
                .ok_or_else(|| format!("route {r}: customer {c} is not in the instance"))?;
            if let Some(other) = seen.insert(c, r) {
                return Err(format!("customer {c} on routes {other} and {r}"));
            }
            let leg = (at.x - row.x).hypot(at.y - row.y);
            total += leg;
            time = (time + leg).max(row.ready);
            if time > row.due + TOLERANCE {
                return Err(format!(
                    "route {r}: customer {c} served at {time} after its due time {}",
                    row.due
                ));
            }
            time += row.service;
            load += row.demand;
            at = row;
        }
        if load > capacity {
            return Err(format!("route {r}: load {load} above capacity {capacity}"));
        }
        let back = (at.x - depot.x).hypot(at.y - depot.y);
        total += back;
        if time + back > depot.due + TOLERANCE {
            return Err(format!(
                "route {r}: back at the depot at {} after it closes at {}",
                time + back,
                depot.due
            ));
        }
    }
    if let Some(missing) = rows.keys().find(|c| !seen.contains_key(c)) {
        return Err(format!(
            "customer {missing} is on no route ({} of {} served)",
            seen.len(),
            rows.len()
        ));
    }
    Ok(Checked {
        vehicles: non_empty.len(),
        distance: total,
    })
}
