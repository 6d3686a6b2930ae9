//! `cargo xtask kube bench --cells 500`: the operator's scale benchmark (issue 13). Not a
//! test: it prints figures. A fresh control plane in `target/kube-bench` (kwok nodes, so the
//! pods of 500 dev cells are only API objects), the chart's RBAC from manifests/install.yaml,
//! and the release `titan-operator` as a process with a TokenRequest token of its
//! ServiceAccount (as the cluster suite runs it). Then N dev cells, and the figures: time
//! until every Cell is Ready for its latest generation, the operator's API writes per cell,
//! its writes in a following idle period (must be zero), its peak RSS (target < 250 MiB for
//! 500 cells) and the p50/p99 of its own reconcile-duration histogram.
//!
//! Everything is read the way an operator's user could: the apiserver's
//! `apiserver_request_total` through `kubectl get --raw /metrics`, the operator's admin port,
//! and `/proc/<pid>/status`.

use std::collections::BTreeMap;
use std::fs;
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use nix::sys::signal::Signal;
use serde_json::Value;

use crate::kube::{self, ControlPlane};
use crate::{process, signals};

/// How long the cells may take to become Ready: generous for 500 cells on a shared 2-core
/// machine, where the apiserver, etcd, the controller-manager and kwok compete with the
/// operator.
const READY_DEADLINE: Duration = Duration::from_secs(45 * 60);
/// How long the operator may keep writing after the last Cell turned Ready (status rounds
/// that trail the last Ready) before the idle period starts anyway.
const QUIET_DEADLINE: Duration = Duration::from_secs(5 * 60);
/// Between two looks at the Cells, or at the apiserver's write counters.
const POLL: Duration = Duration::from_secs(5);
/// A progress line at least this often even when nothing changed.
const PROGRESS_EVERY: Duration = Duration::from_secs(30);
/// Cells per `kubectl apply`: one request burst each, and a batch never outgrows kubectl's
/// patience on a loaded machine.
const BATCH: usize = 50;
/// PersistentVolumeClaims of one dev cell: PostgreSQL, Redis and ClickHouse are builtin, one
/// StatefulSet replica each with one claim (checked with a 20-cell run: 60 bound claims).
const CLAIMS_PER_CELL: usize = 3;
/// The issue 13 target for the operator's peak RSS at 500 cells.
const RSS_TARGET_MIB: f64 = 250.0;
const OPERATOR_NAMESPACE: &str = "titan-system";
const OPERATOR_ACCOUNT: &str = "titan-operator";
/// The API group of Cells and Services; core Services share the resource name `services`.
const TITAN_GROUP: &str = "commerce.titan.dev";

/// The kinds the operator writes, as `(group, resource, subresource)` of
/// `apiserver_request_total` ("" is the core group). Built-in kinds count their main resource
/// only: their `status` subresources are the controller-manager's.
const OPERATOR_KINDS: [(&str, &str, &str); 15] = [
    (TITAN_GROUP, "cells", ""),
    (TITAN_GROUP, "cells", "status"),
    (TITAN_GROUP, "services", ""),
    (TITAN_GROUP, "services", "status"),
    ("", "services", ""),
    ("", "namespaces", ""),
    ("", "secrets", ""),
    ("", "configmaps", ""),
    ("", "resourcequotas", ""),
    ("", "limitranges", ""),
    ("apps", "deployments", ""),
    ("apps", "statefulsets", ""),
    ("networking.k8s.io", "networkpolicies", ""),
    ("policy", "poddisruptionbudgets", ""),
    ("autoscaling", "horizontalpodautoscalers", ""),
];

/// The write counter of the benchmark's own `kubectl apply` of new Cells.
const CELL_CREATES: &str = "POST commerce.titan.dev/cells";
/// The operator's histogram of reconcile rounds (operator/src/metrics.rs).
const RECONCILE_HISTOGRAM: &str = "titan_operator_reconcile_duration_seconds";

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Dev-sized cells to create (manifests/examples/dev-cell.yaml, renamed bench-0001…).
    #[arg(long, default_value_t = 500)]
    cells: usize,
    /// Seconds of idling after every cell is Ready, during which the operator must write
    /// nothing.
    #[arg(long, default_value_t = 60)]
    idle_seconds: u64,
    /// Leave the control plane running in target/kube-bench afterwards, to look around (the
    /// next `kube bench` stops it).
    #[arg(long)]
    keep: bool,
}

pub fn run(args: &Args) -> Result<ExitCode> {
    if args.cells == 0 {
        bail!("--cells must be at least 1");
    }
    eprintln!("==> building the release operator");
    let status = process::run(
        "cargo build",
        crate::cargo().args(["build", "--release", "-p", "titan-operator"]),
    )?;
    signals::check()?;
    if !status.success() {
        bail!("cargo build --release -p titan-operator failed ({status})");
    }
    let operator_binary = crate::target_dir().join("release").join("titan-operator");

    let tools = kube::build::ensure()?;
    let dir = crate::target_dir().join("kube-bench");
    // A control plane a previous `--keep` left behind: the benchmark starts from scratch.
    kube::stop_all(&dir).context("stopping the previous benchmark's control plane")?;
    let plane = ControlPlane::start(&dir, &tools, Some(std::process::id()))?;

    let install = crate::repo_root().join("manifests").join("install.yaml");
    plane
        .kubectl(&[
            "apply",
            "--server-side",
            "-f",
            &install.display().to_string(),
        ])
        .context("installing manifests/install.yaml")?;
    let claims = args.cells * CLAIMS_PER_CELL;
    if claims > kube::VOLUMES {
        eprintln!("==> adding {} PersistentVolumes", claims - kube::VOLUMES);
        plane.provision_volumes(kube::VOLUMES..claims)?;
    }
    let kubeconfig = service_account_kubeconfig(&plane)?;
    let operator = Operator::start(&operator_binary, &kubeconfig, plane.dir())?;
    operator.wait_leading()?;

    let figures = measure(args, &plane, &operator)?;
    drop(operator);
    print!("{}", figures.render(args.cells));

    if args.keep {
        eprintln!(
            "the control plane stays in {}: export KUBECONFIG={}",
            plane.dir().display(),
            plane.admin_kubeconfig().display()
        );
        plane.detach();
    } else {
        plane.stop()?;
    }
    Ok(if figures.idle_writes.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// What the benchmark found.
#[derive(Debug)]
struct Figures {
    created_in: Duration,
    ready_in: Duration,
    quiet_in: Duration,
    writes: BTreeMap<String, f64>,
    idle_seconds: u64,
    idle_writes: BTreeMap<String, (f64, f64)>,
    peak_rss_kib: u64,
    rss_kib: u64,
    reconcile: BTreeMap<String, Histogram>,
    reconciliations: BTreeMap<String, f64>,
    errors: BTreeMap<String, f64>,
    components: Vec<(String, u64)>,
    storage_objects: BTreeMap<String, f64>,
}

impl Figures {
    fn render(&self, cells: usize) -> String {
        let mut out = String::new();
        let total: f64 = self.writes.values().sum();
        let per_cell = |v: f64| v / cells as f64;
        let mib = |kib: u64| kib as f64 / 1024.0;
        out.push_str(&format!(
            "\n==== titan-operator scale benchmark: {cells} dev cells ====\n"
        ));
        out.push_str(&format!(
            "cells created (kubectl apply)   {}\n",
            process::secs(self.created_in)
        ));
        out.push_str(&format!(
            "all cells Ready                 {} after the first apply\n",
            process::secs(self.ready_in)
        ));
        out.push_str(&format!(
            "operator quiet                  {} after the first apply\n",
            process::secs(self.quiet_in)
        ));
        out.push_str(&format!(
            "API writes on operator kinds    {total:.0} ({:.1} per cell; every client but the \
             benchmark's, the controller-manager's included)\n",
            per_cell(total)
        ));
        for (key, value) in &self.writes {
            out.push_str(&format!(
                "    {key:<48} {value:>8.0}  {:>6.2}/cell\n",
                per_cell(*value)
            ));
        }
        if self.idle_writes.is_empty() {
            out.push_str(&format!(
                "writes while idle ({} s)        0\n",
                self.idle_seconds
            ));
        } else {
            out.push_str(&format!(
                "writes while idle ({} s)        NON-ZERO:\n",
                self.idle_seconds
            ));
            for (key, (before, after)) in &self.idle_writes {
                out.push_str(&format!("    {key:<48} {before:.0} -> {after:.0}\n"));
            }
        }
        let verdict = if mib(self.peak_rss_kib) < RSS_TARGET_MIB {
            "under"
        } else {
            "OVER"
        };
        out.push_str(&format!(
            "operator peak RSS (VmHWM)       {:.1} MiB ({verdict} the {RSS_TARGET_MIB:.0} MiB \
             target)\n",
            mib(self.peak_rss_kib)
        ));
        out.push_str(&format!(
            "operator RSS at the end         {:.1} MiB\n",
            mib(self.rss_kib)
        ));
        for (controller, histogram) in &self.reconcile {
            let rounds = self.reconciliations.get(controller).copied().unwrap_or(0.0);
            let quantile = |q: f64| {
                histogram
                    .quantile(q)
                    .map_or_else(|| "-".to_owned(), |s| format!("{:.1} ms", s * 1000.0))
            };
            out.push_str(&format!(
                "reconcile {controller:<8} p50 {:>9}  p99 {:>9}  ({rounds:.0} rounds)\n",
                quantile(0.5),
                quantile(0.99)
            ));
        }
        for (key, value) in &self.errors {
            out.push_str(&format!("reconcile errors {key:<30} {value:.0}\n"));
        }
        let components: Vec<String> = self
            .components
            .iter()
            .map(|(name, kib)| format!("{name} {:.0}", mib(*kib)))
            .collect();
        out.push_str(&format!(
            "control plane peak RSS (MiB)    {}\n",
            components.join(", ")
        ));
        let objects: Vec<String> = self
            .storage_objects
            .iter()
            .map(|(resource, count)| format!("{resource} {count:.0}"))
            .collect();
        out.push_str(&format!(
            "objects in etcd                 {}\n",
            objects.join(", ")
        ));
        out
    }
}

/// Creates the cells, waits for them, idles, and collects the figures.
fn measure(args: &Args, plane: &ControlPlane, operator: &Operator) -> Result<Figures> {
    let template = fs::read_to_string(crate::repo_root().join("manifests/examples/dev-cell.yaml"))
        .context("reading manifests/examples/dev-cell.yaml")?;
    let baseline = operator_writes(plane)?;

    eprintln!(
        "==> creating {} dev cells, {BATCH} per kubectl apply",
        args.cells
    );
    let started = Instant::now();
    let names: Vec<String> = (1..=args.cells).map(|i| format!("bench-{i:04}")).collect();
    for (index, batch) in names.chunks(BATCH).enumerate() {
        signals::check()?;
        let documents = batch
            .iter()
            .map(|name| renamed(&template, name))
            .collect::<Result<Vec<_>>>()?;
        let file = plane.dir().join(format!("cells-{index:03}.yaml"));
        fs::write(&file, documents.join("---\n"))
            .with_context(|| format!("writing {}", file.display()))?;
        plane
            .kubectl(&["apply", "-f", &file.display().to_string()])
            .with_context(|| format!("creating the cells of {}", file.display()))?;
    }
    let created_in = started.elapsed();
    eprintln!(
        "  {} cells created in {}",
        args.cells,
        process::secs(created_in)
    );

    let ready_in = wait_ready(plane, operator, &names, started)?;
    eprintln!("==> waiting until the operator stops writing");
    let before_idle = wait_quiet(plane)?;
    let quiet_in = started.elapsed();
    eprintln!(
        "==> idling {} s: the operator must write nothing",
        args.idle_seconds
    );
    signals::pause(Duration::from_secs(args.idle_seconds))?;
    let after_idle = operator_writes(plane)?;
    operator.check_running()?;

    let mut writes = difference(&baseline, &before_idle);
    // The benchmark's own creations (kubectl apply POSTs a new Cell) are not the operator's.
    if let Some(posts) = writes.get_mut(CELL_CREATES) {
        *posts -= args.cells as f64;
    }
    writes.retain(|_, count| *count != 0.0);
    let idle_writes: BTreeMap<String, (f64, f64)> = after_idle
        .iter()
        .filter_map(|(key, after)| {
            let before = before_idle.get(key).copied().unwrap_or(0.0);
            (*after != before).then(|| (key.clone(), (before, *after)))
        })
        .collect();
    let (peak_rss_kib, rss_kib) = operator.memory()?;
    let metrics = operator.metrics()?;
    let samples = parse_samples(&metrics);
    let apiserver = plane
        .kubectl(&["get", "--raw", "/metrics"])
        .context("reading the apiserver's metrics")?;
    let components = kube::running(plane.dir())
        .into_iter()
        .filter_map(|(name, pid)| memory(pid).ok().map(|(peak, _)| (name.to_owned(), peak)))
        .collect();
    Ok(Figures {
        created_in,
        ready_in,
        quiet_in,
        writes,
        idle_seconds: args.idle_seconds,
        idle_writes,
        peak_rss_kib,
        rss_kib,
        reconcile: histograms(&samples, RECONCILE_HISTOGRAM),
        reconciliations: by_label(
            &samples,
            "titan_operator_reconciliations_total",
            &["controller"],
        ),
        errors: by_label(
            &samples,
            "titan_operator_reconcile_errors_total",
            &["controller", "reason"],
        ),
        components,
        storage_objects: storage_objects(&apiserver),
    })
}

/// The dev cell renamed `name`: its `metadata.name` is the only line `  name: dev`.
fn renamed(template: &str, name: &str) -> Result<String> {
    const LINE: &str = "\n  name: dev\n";
    if template.matches(LINE).count() != 1 {
        bail!("manifests/examples/dev-cell.yaml no longer has exactly one `  name: dev` line");
    }
    Ok(template.replacen(LINE, &format!("\n  name: {name}\n"), 1))
}

/// Polls the Cells until every one of `names` is Ready for its latest generation; the time
/// from `started`.
fn wait_ready(
    plane: &ControlPlane,
    operator: &Operator,
    names: &[String],
    started: Instant,
) -> Result<Duration> {
    eprintln!("==> waiting until every cell is Ready for its latest generation");
    let mut last_report: Option<(usize, Instant)> = None;
    loop {
        signals::check()?;
        operator.check_running()?;
        let text = plane
            .kubectl(&["get", "cells", "-o", "json"])
            .context("listing the cells")?;
        let list: Value = serde_json::from_str(&text).context("`kubectl get cells` is not JSON")?;
        let ready = ready_cells(&list, names);
        let elapsed = started.elapsed();
        let due =
            last_report.is_none_or(|(count, at)| count != ready || at.elapsed() >= PROGRESS_EVERY);
        if due || ready == names.len() {
            let rss = operator
                .memory()
                .map(|(_, now)| format!("{:.0} MiB", now as f64 / 1024.0))
                .unwrap_or_else(|_| "?".to_owned());
            eprintln!(
                "  ready {ready}/{} after {} (operator RSS {rss})",
                names.len(),
                process::secs(elapsed)
            );
            last_report = Some((ready, Instant::now()));
        }
        if ready == names.len() {
            return Ok(elapsed);
        }
        if elapsed > READY_DEADLINE {
            bail!(
                "only {ready} of {} cells Ready after {}; the operator's log: {}",
                names.len(),
                process::secs(READY_DEADLINE),
                operator.log.display()
            );
        }
        signals::pause(POLL)?;
    }
}

/// How many of `names` in a `kubectl get cells -o json` list are Ready with
/// `status.observedGeneration` equal to `metadata.generation`.
fn ready_cells(list: &Value, names: &[String]) -> usize {
    let Some(items) = list["items"].as_array() else {
        return 0;
    };
    items
        .iter()
        .filter(|cell| {
            cell["metadata"]["name"]
                .as_str()
                .is_some_and(|name| names.iter().any(|n| n == name))
        })
        .filter(|cell| {
            let ready = cell["status"]["conditions"]
                .as_array()
                .is_some_and(|conditions| {
                    conditions
                        .iter()
                        .any(|c| c["type"] == "Ready" && c["status"] == "True")
                });
            ready
                && !cell["metadata"]["generation"].is_null()
                && cell["status"]["observedGeneration"] == cell["metadata"]["generation"]
        })
        .count()
}

/// Waits until the operator's write counters hold still for one poll, and returns them.
fn wait_quiet(plane: &ControlPlane) -> Result<BTreeMap<String, f64>> {
    let started = Instant::now();
    let mut before = operator_writes(plane)?;
    loop {
        signals::pause(POLL)?;
        let now = operator_writes(plane)?;
        if now == before {
            eprintln!("  quiet after {}", process::secs(started.elapsed()));
            return Ok(now);
        }
        if started.elapsed() > QUIET_DEADLINE {
            eprintln!(
                "  still writing after {}: idling anyway",
                process::secs(QUIET_DEADLINE)
            );
            return Ok(now);
        }
        before = now;
    }
}

/// The apiserver's write counts on the operator's kinds.
fn operator_writes(plane: &ControlPlane) -> Result<BTreeMap<String, f64>> {
    let text = plane
        .kubectl(&["get", "--raw", "/metrics"])
        .context("reading the apiserver's metrics")?;
    Ok(write_counts(&text))
}

/// Sums `apiserver_request_total` of write verbs on `OPERATOR_KINDS`, keyed `VERB
/// group/resource[/subresource]` (`core` for the core group: core and Titan `services`
/// differ only there).
fn write_counts(metrics: &str) -> BTreeMap<String, f64> {
    let mut counts = BTreeMap::new();
    for sample in parse_samples(metrics) {
        if sample.name != "apiserver_request_total" {
            continue;
        }
        let verb = sample.label("verb");
        if !matches!(verb, "POST" | "PUT" | "PATCH" | "DELETE" | "APPLY") {
            continue;
        }
        let (group, resource, subresource) = (
            sample.label("group"),
            sample.label("resource"),
            sample.label("subresource"),
        );
        if !OPERATOR_KINDS.contains(&(group, resource, subresource)) {
            continue;
        }
        let group = if group.is_empty() { "core" } else { group };
        let mut key = format!("{verb} {group}/{resource}");
        if !subresource.is_empty() {
            key.push('/');
            key.push_str(subresource);
        }
        *counts.entry(key).or_insert(0.0) += sample.value;
    }
    counts
}

/// `after - before`, per key, without the keys that did not move.
fn difference(
    before: &BTreeMap<String, f64>,
    after: &BTreeMap<String, f64>,
) -> BTreeMap<String, f64> {
    after
        .iter()
        .map(|(key, value)| (key.clone(), value - before.get(key).copied().unwrap_or(0.0)))
        .filter(|(_, delta)| *delta != 0.0)
        .collect()
}

/// `apiserver_storage_objects` of the kinds a cell makes most of.
fn storage_objects(metrics: &str) -> BTreeMap<String, f64> {
    const SHOWN: [&str; 7] = [
        "cells.commerce.titan.dev",
        "services.commerce.titan.dev",
        "pods",
        "deployments.apps",
        "statefulsets.apps",
        "secrets",
        "persistentvolumeclaims",
    ];
    parse_samples(metrics)
        .into_iter()
        .filter(|s| s.name == "apiserver_storage_objects" && SHOWN.contains(&s.label("resource")))
        .map(|s| (s.label("resource").to_owned(), s.value))
        .collect()
}

/// One sample of the Prometheus text format.
#[derive(Debug, Clone, PartialEq)]
struct Sample {
    name: String,
    labels: Vec<(String, String)>,
    value: f64,
}

impl Sample {
    /// The label's value, "" when absent (as Prometheus treats it).
    fn label(&self, name: &str) -> &str {
        self.labels
            .iter()
            .find(|(k, _)| k == name)
            .map_or("", |(_, v)| v.as_str())
    }
}

/// The samples of a Prometheus text exposition; comments and lines that do not parse are
/// skipped (the apiserver's and the operator's own output, never an attacker's).
fn parse_samples(text: &str) -> Vec<Sample> {
    text.lines()
        .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
        .filter_map(parse_sample)
        .collect()
}

fn parse_sample(line: &str) -> Option<Sample> {
    let (name, labels, rest) = match line.find('{') {
        Some(open) => {
            let (labels, rest) = parse_labels(&line[open + 1..])?;
            (&line[..open], labels, rest)
        }
        None => {
            let (name, rest) = line.split_once(' ')?;
            (name, Vec::new(), rest)
        }
    };
    // A timestamp may follow the value.
    let value = rest.split_whitespace().next()?;
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        other => other.parse().ok()?,
    };
    Some(Sample {
        name: name.trim().to_owned(),
        labels,
        value,
    })
}

/// `k="v",k2="v2"} rest` → the pairs and `rest`; values may hold escaped `\"`, `\\`, `\n`.
fn parse_labels(text: &str) -> Option<(Vec<(String, String)>, &str)> {
    let mut labels = Vec::new();
    let mut rest = text;
    loop {
        rest = rest.trim_start_matches([',', ' ']);
        if let Some(after) = rest.strip_prefix('}') {
            return Some((labels, after));
        }
        let (key, after) = rest.split_once("=\"")?;
        let mut value = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            let (i, c) = chars.next()?;
            match c {
                '"' => break i,
                '\\' => match chars.next()?.1 {
                    'n' => value.push('\n'),
                    other => value.push(other),
                },
                other => value.push(other),
            }
        };
        labels.push((key.trim().to_owned(), value));
        rest = &after[end + 1..];
    }
}

/// A cumulative histogram: `(upper bound, count)` in increasing bound order, `+Inf` last.
#[derive(Debug, Clone, Default, PartialEq)]
struct Histogram {
    buckets: Vec<(f64, f64)>,
}

impl Histogram {
    /// The `q` quantile by linear interpolation inside its bucket, as Prometheus's
    /// `histogram_quantile` does (the first bucket starts at 0; a rank in `+Inf` answers the
    /// largest finite bound). `None` without observations.
    fn quantile(&self, q: f64) -> Option<f64> {
        let total = self.buckets.last()?.1;
        if total <= 0.0 {
            return None;
        }
        let rank = q * total;
        let mut lower = (0.0, 0.0);
        for &(bound, count) in &self.buckets {
            if count >= rank {
                if bound.is_infinite() {
                    return Some(lower.0);
                }
                let width = count - lower.1;
                let fraction = if width > 0.0 {
                    (rank - lower.1) / width
                } else {
                    1.0
                };
                return Some(lower.0 + (bound - lower.0) * fraction);
            }
            lower = (bound, count);
        }
        Some(lower.0)
    }
}

/// The histograms of `family` per `controller` label.
fn histograms(samples: &[Sample], family: &str) -> BTreeMap<String, Histogram> {
    let bucket = format!("{family}_bucket");
    let mut found: BTreeMap<String, Histogram> = BTreeMap::new();
    for sample in samples.iter().filter(|s| s.name == bucket) {
        let bound = match sample.label("le") {
            "+Inf" => f64::INFINITY,
            other => match other.parse() {
                Ok(bound) => bound,
                Err(_) => continue,
            },
        };
        found
            .entry(sample.label("controller").to_owned())
            .or_default()
            .buckets
            .push((bound, sample.value));
    }
    for histogram in found.values_mut() {
        histogram.buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    }
    found
}

/// The samples of `name` summed by the values of `labels`, joined with `/`.
fn by_label(samples: &[Sample], name: &str, labels: &[&str]) -> BTreeMap<String, f64> {
    let mut sums = BTreeMap::new();
    for sample in samples.iter().filter(|s| s.name == name) {
        let key = labels
            .iter()
            .map(|l| sample.label(l))
            .collect::<Vec<_>>()
            .join("/");
        *sums.entry(key).or_insert(0.0) += sample.value;
    }
    sums
}

/// `(VmHWM, VmRSS)` of `pid` in KiB.
fn memory(pid: u32) -> Result<(u64, u64)> {
    let status = fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    let field = |name: &str| -> Result<u64> {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
            .with_context(|| format!("no {name} in /proc/{pid}/status"))
    };
    Ok((field("VmHWM:")?, field("VmRSS:")?))
}

/// A kubeconfig whose identity is the operator's ServiceAccount, through a TokenRequest:
/// what its pod would get, so the chart's RBAC is what the benchmark exercises.
fn service_account_kubeconfig(plane: &ControlPlane) -> Result<PathBuf> {
    let token = plane
        .kubectl(&[
            "create",
            "token",
            OPERATOR_ACCOUNT,
            "-n",
            OPERATOR_NAMESPACE,
            "--duration=6h",
        ])
        .context("requesting a token of the operator's ServiceAccount")?;
    let server = plane
        .kubectl(&[
            "config",
            "view",
            "--minify",
            "-o",
            "jsonpath={.clusters[0].cluster.server}",
        ])
        .context("reading the apiserver's address")?;
    let path = plane.dir().join("operator.kubeconfig");
    let text = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: bench\n  cluster:\n    server: \
         {server}\n    certificate-authority: {ca}\nusers:\n- name: {OPERATOR_ACCOUNT}\n  \
         user:\n    token: {token}\ncontexts:\n- name: bench\n  context:\n    cluster: bench\n    \
         user: {OPERATOR_ACCOUNT}\n    namespace: {OPERATOR_NAMESPACE}\ncurrent-context: bench\n",
        server = server.trim(),
        ca = plane.dir().join("pki").join("ca.crt").display(),
        token = token.trim()
    );
    fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

/// The release `titan-operator run` process, stopped (SIGTERM, then SIGKILL) when dropped.
#[derive(Debug)]
struct Operator {
    child: Child,
    admin: SocketAddr,
    log: PathBuf,
}

impl Operator {
    fn start(binary: &Path, kubeconfig: &Path, dir: &Path) -> Result<Self> {
        let port = process::free_ports(1)?
            .first()
            .copied()
            .context("no free port for the admin server")?;
        let admin = SocketAddr::from(([127, 0, 0, 1], port));
        let log = dir.join("operator.log");
        let file = fs::File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        let child = Command::new(binary)
            .arg("run")
            .env("KUBECONFIG", kubeconfig)
            .env("POD_NAMESPACE", OPERATOR_NAMESPACE)
            .env("POD_NAME", "bench")
            .env("TITAN_OPERATOR_ADMIN_ADDR", admin.to_string())
            .env("TITAN_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(file.try_clone().context("duplicating the log handle")?)
            .stderr(file)
            // Ctrl-C reaches xtask alone, which stops the operator before the control plane.
            .process_group(0)
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        signals::register("titan-operator", child.id(), false);
        eprintln!(
            "==> started titan-operator (pid {}, admin {admin}, log {})",
            child.id(),
            log.display()
        );
        Ok(Self { child, admin, log })
    }

    /// Waits until the operator holds the lease and runs its controllers.
    fn wait_leading(&self) -> Result<()> {
        let started = Instant::now();
        loop {
            signals::check()?;
            self.check_running()?;
            let answer =
                crate::http::request("GET", self.admin, "/readyz", "", Duration::from_secs(2));
            if answer.is_ok_and(|r| r.status == 200 && r.body.trim() == "leader") {
                eprintln!("  leading after {}", process::secs(started.elapsed()));
                return Ok(());
            }
            if started.elapsed() > Duration::from_secs(120) {
                bail!(
                    "the operator is not leading after 120s\n{}",
                    process::tail(&self.log, 30)
                );
            }
            signals::pause(Duration::from_millis(250))?;
        }
    }

    fn check_running(&self) -> Result<()> {
        if process::alive(self.child.id()) {
            Ok(())
        } else {
            bail!("the operator exited\n{}", process::tail(&self.log, 30))
        }
    }

    fn memory(&self) -> Result<(u64, u64)> {
        memory(self.child.id())
    }

    /// Its admin port's `/metrics`.
    fn metrics(&self) -> Result<String> {
        let answer =
            crate::http::request("GET", self.admin, "/metrics", "", Duration::from_secs(10))?;
        if answer.status != 200 {
            bail!("the operator's /metrics answered {}", answer.status);
        }
        Ok(answer.body)
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        let pid = self.child.id();
        if let Err(e) = process::stop(
            "titan-operator",
            pid,
            Signal::SIGTERM,
            Duration::from_secs(20),
        ) {
            eprintln!("xtask: {e:#}");
        }
        // Reaps it (a zombie otherwise until xtask exits).
        let _ = self.child.wait();
        signals::unregister(pid);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const APISERVER: &str = "\
# HELP apiserver_request_total x
# TYPE apiserver_request_total counter
apiserver_request_total{code=\"201\",component=\"apiserver\",dry_run=\"\",group=\"\",resource=\"services\",scope=\"resource\",subresource=\"\",verb=\"APPLY\",version=\"v1\"} 3
apiserver_request_total{code=\"200\",component=\"apiserver\",dry_run=\"\",group=\"commerce.titan.dev\",resource=\"services\",scope=\"resource\",subresource=\"status\",verb=\"PATCH\",version=\"v1alpha1\"} 2
apiserver_request_total{code=\"409\",component=\"apiserver\",dry_run=\"\",group=\"commerce.titan.dev\",resource=\"services\",scope=\"resource\",subresource=\"status\",verb=\"PATCH\",version=\"v1alpha1\"} 1
apiserver_request_total{code=\"200\",component=\"apiserver\",dry_run=\"\",group=\"apps\",resource=\"deployments\",scope=\"resource\",subresource=\"status\",verb=\"PUT\",version=\"v1\"} 40
apiserver_request_total{code=\"200\",component=\"apiserver\",dry_run=\"\",group=\"apps\",resource=\"deployments\",scope=\"resource\",subresource=\"\",verb=\"GET\",version=\"v1\"} 50
apiserver_request_total{code=\"201\",component=\"apiserver\",dry_run=\"\",group=\"\",resource=\"pods\",scope=\"resource\",subresource=\"\",verb=\"POST\",version=\"v1\"} 7
";

    #[test]
    fn write_counts_tell_core_from_titan_services_and_skip_status_of_builtins() {
        assert_eq!(
            write_counts(APISERVER),
            BTreeMap::from([
                ("APPLY core/services".to_owned(), 3.0),
                ("PATCH commerce.titan.dev/services/status".to_owned(), 3.0),
            ])
        );
    }

    #[test]
    fn labels_with_escapes_and_samples_without_labels_parse() {
        let samples = parse_samples(
            "# TYPE x counter\nx{a=\"q\\\"uote\",b=\"back\\\\slash\"} 2 1700000000\nup 1\nbad{a=\"1\"}\n",
        );
        assert_eq!(samples.len(), 2, "{samples:?}");
        assert_eq!(samples[0].label("a"), "q\"uote");
        assert_eq!(samples[0].label("b"), "back\\slash");
        assert_eq!(samples[0].label("missing"), "");
        assert_eq!(samples[1].name, "up");
        assert_eq!(samples[1].value, 1.0);
    }

    #[test]
    fn quantiles_interpolate_inside_the_bucket() {
        let text = "\
titan_operator_reconcile_duration_seconds_bucket{controller=\"cell\",le=\"0.1\"} 50
titan_operator_reconcile_duration_seconds_bucket{controller=\"cell\",le=\"0.5\"} 90
titan_operator_reconcile_duration_seconds_bucket{controller=\"cell\",le=\"1\"} 100
titan_operator_reconcile_duration_seconds_bucket{controller=\"cell\",le=\"+Inf\"} 100
titan_operator_reconcile_duration_seconds_bucket{controller=\"service\",le=\"0.1\"} 0
titan_operator_reconcile_duration_seconds_bucket{controller=\"service\",le=\"+Inf\"} 4
";
        let found = histograms(&parse_samples(text), RECONCILE_HISTOGRAM);
        let cell = &found["cell"];
        // Rank 50 ends the first bucket, which starts at 0.
        assert_eq!(cell.quantile(0.5), Some(0.1));
        // Rank 99 is 9/10 of the way through (0.5, 1].
        let p99 = cell.quantile(0.99).unwrap_or_default();
        assert!((p99 - 0.95).abs() < 1e-9, "{p99}");
        // Every observation above the last finite bound: that bound.
        assert_eq!(found["service"].quantile(0.5), Some(0.1));
        assert_eq!(Histogram::default().quantile(0.5), None);
    }

    #[test]
    fn the_dev_cell_is_renamed_once() -> Result<()> {
        let template = "kind: Cell\nmetadata:\n  name: dev\nspec:\n  x:\n    name: dev\n";
        let cell = renamed(template, "bench-0001")?;
        assert!(cell.contains("\n  name: bench-0001\n"));
        assert!(cell.contains("\n    name: dev\n"));
        assert!(renamed("metadata: {}\n", "bench-0001").is_err());
        Ok(())
    }

    #[test]
    fn ready_means_ready_for_the_latest_generation() {
        let list = serde_json::json!({"items": [
            {"metadata": {"name": "bench-0001", "generation": 2},
             "status": {"observedGeneration": 2, "conditions": [{"type": "Ready", "status": "True"}]}},
            {"metadata": {"name": "bench-0002", "generation": 3},
             "status": {"observedGeneration": 2, "conditions": [{"type": "Ready", "status": "True"}]}},
            {"metadata": {"name": "bench-0003", "generation": 1},
             "status": {"observedGeneration": 1, "conditions": [{"type": "Ready", "status": "False"}]}},
            {"metadata": {"name": "other", "generation": 1},
             "status": {"observedGeneration": 1, "conditions": [{"type": "Ready", "status": "True"}]}}
        ]});
        let names: Vec<String> = ["bench-0001", "bench-0002", "bench-0003"]
            .map(String::from)
            .to_vec();
        assert_eq!(ready_cells(&list, &names), 1);
    }
}
