//! `titan-bench routes`: the VRPTW solver (`titan-route`) on Solomon's 100-customer instances
//! at each budget, one instance at a time on this machine, every solution verified by the
//! independent checker of the solver's tests (`services/route/tests/route/checker.rs`, which
//! reads the instance file itself). Per instance: vehicles, distance, the gap to the
//! `distance-double` best-known, vehicles against the `hierarchical` row, time; the mean gap
//! per class and overall; one instance's routes drawn as a PNG.

use std::{
    collections::BTreeMap,
    fmt,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use anyhow::{Context, ensure};
use plotters::prelude::*;
use titan_route::{Objective, Settings, solomon};

#[path = "../../../services/route/tests/route/checker.rs"]
mod checker;

/// What to run.
#[derive(Debug, Clone)]
pub struct RoutesOptions {
    /// The folder of `<NAME>.txt` files and `best-known.csv`.
    pub data: PathBuf,
    /// Each instance is solved once per budget.
    pub budgets: Vec<Duration>,
    /// Instances whose name starts with one of these (all when empty).
    pub only: Vec<String>,
    pub seed: u64,
    /// `Distance` for the gap; `VehiclesThenDistance` to compare fleets with the
    /// `hierarchical` rows.
    pub objective: Objective,
    /// The instance whose routes are drawn (at the last budget); the first one when absent.
    pub draw: Option<String>,
    pub png: PathBuf,
}

impl RoutesOptions {
    /// The Solomon instances shipped with the route crate.
    pub fn data() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../services/route/data/solomon")
    }

    /// CI's short mode: one instance of each class family at a short budget, every solution
    /// through the checker, one drawn.
    pub fn quick(png: PathBuf) -> Self {
        Self {
            data: Self::data(),
            budgets: vec![Duration::from_millis(200)],
            only: vec!["C101".into(), "R101".into(), "RC102".into()],
            seed: 1,
            objective: Objective::Distance,
            draw: None,
            png,
        }
    }
}

/// One solve.
#[derive(Debug, Clone)]
pub struct Row {
    pub instance: String,
    pub budget: Duration,
    pub vehicles: usize,
    pub distance: f64,
    /// `(distance - best) / best`, in percent, against the `distance-double` row (the
    /// `hierarchical` one when vehicles come first).
    pub gap: f64,
    /// The `hierarchical` row's vehicle count.
    pub fewest_vehicles: usize,
    pub seconds: f64,
    pub iterations: u64,
    /// The checker's refusal, if any.
    pub infeasible: Option<String>,
}

/// Every solve and the PNG drawn.
#[derive(Debug)]
pub struct RoutesReport {
    pub objective: Objective,
    pub rows: Vec<Row>,
    pub png: PathBuf,
}

impl RoutesReport {
    /// Solutions the checker refused (the run fails if any).
    pub fn infeasible(&self) -> usize {
        self.rows.iter().filter(|r| r.infeasible.is_some()).count()
    }
}

/// Solomon's class of an instance: its name without the two-digit number (R101 → R1).
fn class(instance: &str) -> &str {
    &instance[..instance.len().saturating_sub(2)]
}

impl fmt::Display for RoutesReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "objective: {:?}", self.objective)?;
        writeln!(
            f,
            "{:<7} {:>7} {:>4} {:>9} {:>7} {:>5} {:>6} {:>8}",
            "inst", "budget", "veh", "distance", "gap %", "bk v", "time s", "iters"
        )?;
        for r in &self.rows {
            writeln!(
                f,
                "{:<7} {:>6}ms {:>4} {:>9.2} {:>7.2} {:>5} {:>6.3} {:>8}{}",
                r.instance,
                r.budget.as_millis(),
                r.vehicles,
                r.distance,
                r.gap,
                r.fewest_vehicles,
                r.seconds,
                r.iterations,
                r.infeasible
                    .as_deref()
                    .map(|e| format!("  INFEASIBLE: {e}"))
                    .unwrap_or_default()
            )?;
        }
        let mut budgets: Vec<Duration> = self.rows.iter().map(|r| r.budget).collect();
        budgets.dedup();
        for budget in budgets {
            let rows: Vec<&Row> = self.rows.iter().filter(|r| r.budget == budget).collect();
            let mut classes: BTreeMap<&str, Vec<&Row>> = BTreeMap::new();
            for r in &rows {
                classes.entry(class(&r.instance)).or_default().push(r);
            }
            let mean = |rows: &[&Row]| rows.iter().map(|r| r.gap).sum::<f64>() / rows.len() as f64;
            let per_class: Vec<String> = classes
                .iter()
                .map(|(c, rows)| format!("{c} {:.2}%", mean(rows)))
                .collect();
            let vehicles: usize = rows.iter().map(|r| r.vehicles).sum();
            let fewest: usize = rows.iter().map(|r| r.fewest_vehicles).sum();
            writeln!(
                f,
                "budget {} ms: mean gap {:.3}% over {} instances ({}); vehicles {vehicles} against {fewest} best-known hierarchical; mean iterations {:.0}",
                budget.as_millis(),
                mean(&rows),
                rows.len(),
                per_class.join(", "),
                rows.iter().map(|r| r.iterations as f64).sum::<f64>() / rows.len() as f64
            )?;
        }
        writeln!(f, "infeasible solutions: {}", self.infeasible())?;
        write!(f, "routes drawn: {}", self.png.display())
    }
}

/// `(instance, objective) -> (vehicles, distance)` from best-known.csv.
fn best_known(data: &Path) -> anyhow::Result<BTreeMap<(String, String), (usize, f64)>> {
    let path = data.join("best-known.csv");
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("read {}", path.display()))?;
    let mut known = BTreeMap::new();
    for line in text.lines().skip(1) {
        let f: Vec<&str> = line.split(',').collect();
        ensure!(f.len() >= 4, "{}: short line {line:?}", path.display());
        known.insert(
            (f[0].to_owned(), f[1].to_owned()),
            (f[2].parse()?, f[3].parse()?),
        );
    }
    Ok(known)
}

/// Solves every selected instance at every budget, one at a time.
pub fn routes(options: &RoutesOptions) -> anyhow::Result<RoutesReport> {
    let known = best_known(&options.data)?;
    let mut names: Vec<&String> = known
        .keys()
        .filter(|(_, objective)| objective == "distance-double")
        .map(|(name, _)| name)
        .filter(|n| options.only.is_empty() || options.only.iter().any(|o| n.starts_with(o)))
        .collect();
    names.dedup();
    ensure!(!names.is_empty(), "no instance matches {:?}", options.only);
    let to_draw = options.draw.as_ref().unwrap_or(names[0]);
    // The gap is against the best-known of the same objective.
    let reference = match options.objective {
        Objective::Distance => "distance-double",
        Objective::VehiclesThenDistance => "hierarchical",
    };
    let mut rows = Vec::new();
    let mut drawn = false;
    for &budget in &options.budgets {
        for name in &names {
            let path = options.data.join(format!("{name}.txt"));
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("read {}", path.display()))?;
            let instance = solomon::parse(&text).with_context(|| format!("parse {name}"))?;
            let settings = Settings {
                objective: options.objective,
                seed: options.seed,
                time_limit: Some(budget),
                max_iterations: None,
            };
            let started = Instant::now();
            let solution = titan_route::solve(&instance.problem, &settings)?;
            let seconds = started.elapsed().as_secs_f64();
            let answer = instance.answer(&solution);
            let checked = checker::check(&text, &answer.routes);
            let (_, best) = known[&((*name).clone(), reference.to_owned())];
            let fewest = known
                .get(&((*name).clone(), "hierarchical".to_owned()))
                .map_or(0, |(v, _)| *v);
            let infeasible = match &checked {
                Ok(c)
                    if (c.distance - solution.distance).abs() > 1e-6
                        || c.vehicles != solution.vehicles() =>
                {
                    Some(format!(
                        "solver says {} vehicles and {}, checker {} and {}",
                        solution.vehicles(),
                        solution.distance,
                        c.vehicles,
                        c.distance
                    ))
                }
                Ok(_) => None,
                Err(e) => Some(e.clone()),
            };
            let distance = checked.map_or(solution.distance, |c| c.distance);
            rows.push(Row {
                instance: (*name).clone(),
                budget,
                vehicles: solution.vehicles(),
                distance,
                gap: (distance - best) / best * 100.0,
                fewest_vehicles: fewest,
                seconds,
                iterations: solution.iterations,
                infeasible,
            });
            if *name == to_draw && budget == options.budgets[options.budgets.len() - 1] {
                draw(&text, name, &answer, budget, &options.png)?;
                drawn = true;
            }
            let row = &rows[rows.len() - 1];
            eprintln!(
                "{name} at {} ms: gap {:.2}%{}",
                budget.as_millis(),
                row.gap,
                if row.infeasible.is_some() {
                    ", infeasible"
                } else {
                    ""
                }
            );
        }
    }
    ensure!(drawn, "{to_draw} was not solved, so nothing was drawn");
    Ok(RoutesReport {
        objective: options.objective,
        rows,
        png: options.png.clone(),
    })
}

/// Draws the depot, the customers and each route in its own colour.
fn draw(
    text: &str,
    name: &str,
    answer: &solomon::Answer,
    budget: Duration,
    path: &Path,
) -> anyhow::Result<()> {
    crate::plot::prepare(path)?;
    // Coordinates by customer number, read from the table (the depot is the first row).
    let mut xy: BTreeMap<u32, (f64, f64)> = BTreeMap::new();
    let mut depot = None;
    for line in text.lines() {
        let cols: Vec<f64> = match line.split_whitespace().map(str::parse).collect() {
            Ok(c) => c,
            Err(_) => continue,
        };
        if cols.len() == 7 {
            if depot.is_none() {
                depot = Some((cols[1], cols[2]));
            } else {
                xy.insert(cols[0] as u32, (cols[1], cols[2]));
            }
        }
    }
    let depot = depot.context("no depot row")?;
    let (mut hi_x, mut hi_y) = depot;
    for &(x, y) in xy.values() {
        hi_x = hi_x.max(x);
        hi_y = hi_y.max(y);
    }
    let root = BitMapBackend::new(path, (900, 900)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!(
                "{name}: {} vehicles, distance {:.2} ({} ms)",
                answer.vehicles,
                answer.distance,
                budget.as_millis()
            ),
            ("sans-serif", 22),
        )
        .margin(15)
        .x_label_area_size(35)
        .y_label_area_size(45)
        .build_cartesian_2d(0.0..hi_x + 5.0, 0.0..hi_y + 5.0)?;
    chart
        .configure_mesh()
        .label_style(("sans-serif", 14))
        .draw()?;
    for (i, route) in answer.routes.iter().enumerate() {
        let colour = Palette99::pick(i).to_rgba();
        let points = std::iter::once(depot)
            .chain(route.iter().filter_map(|c| xy.get(c).copied()))
            .chain(std::iter::once(depot));
        chart.draw_series(LineSeries::new(points, colour.stroke_width(2)))?;
        chart.draw_series(
            route
                .iter()
                .filter_map(|c| xy.get(c))
                .map(|&p| Circle::new(p, 3, colour.filled())),
        )?;
    }
    chart.draw_series(std::iter::once(Rectangle::new(
        [
            (depot.0 - 1.2, depot.1 - 1.2),
            (depot.0 + 1.2, depot.1 + 1.2),
        ],
        BLACK.filled(),
    )))?;
    root.present()
        .with_context(|| format!("write {}", path.display()))?;
    Ok(())
}
