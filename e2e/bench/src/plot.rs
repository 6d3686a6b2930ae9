//! The load generators' PNGs: a latency histogram (the WebSocket fan-out's, and every figure of
//! `titan-bench all` that has latencies) and throughput over time (completions per second).
//! The font travels with the binary, so drawing needs nothing from the system.

use std::{path::Path, time::Duration};

use anyhow::Context;
use plotters::prelude::*;

use crate::Latencies;

/// Registers the embedded DejaVu Sans as "sans-serif" and makes `path`'s directory.
pub fn prepare(path: &Path) -> anyhow::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    }
    plotters::style::register_font("sans-serif", FontStyle::Normal, dejavu::sans::regular())
        .map_err(|_| anyhow::anyhow!("the embedded DejaVu Sans font did not load"))
}

/// What a histogram shows: "WebSocket fan-out latency" of "deliveries", x described as
/// "publish to subscriber".
#[derive(Debug, Clone, Copy)]
pub struct Labels<'a> {
    pub title: &'a str,
    /// What is counted, plural.
    pub items: &'a str,
    /// What the latency spans.
    pub span: &'a str,
}

/// Draws the latency histogram: 100 bins up to the p99.9, counts on a log scale so the tail
/// shows beside the peak, with the p50 and p99 marked. 1000 × 600 pixels.
pub fn histogram(latencies: &Latencies, labels: Labels<'_>, path: &Path) -> anyhow::Result<()> {
    prepare(path)?;
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let top = ms(latencies.quantile(0.999)).max(0.1);
    let bins = 100u32;
    let width = top / f64::from(bins);
    let mut counts = vec![0u64; bins as usize];
    for &micros in &latencies.0 {
        let bin = (f64::from(micros) / 1000.0 / width) as usize;
        if let Some(c) = counts.get_mut(bin) {
            *c += 1;
        }
    }
    let peak = counts.iter().copied().max().unwrap_or(1).max(1) as f64;
    let root = BitMapBackend::new(path, (1000, 600)).into_drawing_area();
    root.fill(&WHITE)?;
    let (p50, p99) = (ms(latencies.quantile(0.5)), ms(latencies.quantile(0.99)));
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!(
                "{}, {} {}: p50 {p50:.2} ms, p99 {p99:.2} ms",
                labels.title,
                latencies.0.len(),
                labels.items
            ),
            ("sans-serif", 22),
        )
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(70)
        // Bars start at half a count, so that a bin of one still shows on the log axis.
        .build_cartesian_2d(0.0..top, (0.5..peak * 2.0).log_scale())?;
    chart
        .configure_mesh()
        .x_desc(format!("{}, ms (up to the p99.9)", labels.span))
        .y_desc(format!("{} (log scale)", labels.items))
        .y_label_formatter(&|n| format!("{n:.0}"))
        .label_style(("sans-serif", 15))
        .draw()?;
    chart.draw_series(
        counts
            .iter()
            .enumerate()
            .filter(|(_, n)| **n > 0)
            .map(|(i, &n)| {
                let x0 = i as f64 * width;
                Rectangle::new([(x0, 0.5), (x0 + width, n as f64)], BLUE.mix(0.6).filled())
            }),
    )?;
    for (label, at, colour) in [("p50", p50, GREEN), ("p99", p99, RED)] {
        chart
            .draw_series(LineSeries::new(
                [(at, 0.5), (at, peak)],
                colour.stroke_width(2),
            ))?
            .label(format!("{label} {at:.2} ms"))
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], colour));
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .label_font(("sans-serif", 15))
        .draw()?;
    root.present()
        .with_context(|| format!("write {}", path.display()))?;
    Ok(())
}

/// Draws `counts[s]`, what completed in second `s`, as a line with the mean marked.
pub fn throughput(counts: &[u64], title: &str, items: &str, path: &Path) -> anyhow::Result<()> {
    prepare(path)?;
    let peak = counts.iter().copied().max().unwrap_or(1).max(1) as f64;
    let mean = counts.iter().sum::<u64>() as f64 / counts.len().max(1) as f64;
    let seconds = counts.len().max(1) as f64;
    let root = BitMapBackend::new(path, (1000, 600)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!("{title}: {items} per second, mean {mean:.0}"),
            ("sans-serif", 22),
        )
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(80)
        .build_cartesian_2d(0.0..seconds, 0.0..peak * 1.1)?;
    chart
        .configure_mesh()
        .x_desc("seconds since the start")
        .y_desc(format!("{items} per second"))
        .y_label_formatter(&|n| format!("{n:.0}"))
        .label_style(("sans-serif", 15))
        .draw()?;
    // Each count is drawn at the middle of its second.
    chart.draw_series(LineSeries::new(
        counts
            .iter()
            .enumerate()
            .map(|(s, &n)| (s as f64 + 0.5, n as f64)),
        BLUE.stroke_width(2),
    ))?;
    chart.draw_series(LineSeries::new(
        [(0.0, mean), (seconds, mean)],
        GREEN.stroke_width(1),
    ))?;
    root.present()
        .with_context(|| format!("write {}", path.display()))?;
    Ok(())
}
