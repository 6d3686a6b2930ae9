//! A local Kubernetes control plane for the cluster suite, the way controller-runtime projects
//! use envtest and scale tests use kwok: etcd, kube-apiserver (loopback only, RBAC, a generated
//! CA and serving certificate, service-account signing keys so TokenRequest works),
//! kube-controller-manager (garbage collector, Deployment/ReplicaSet/StatefulSet and volume
//! binding controllers), kube-scheduler and kwok, whose fake nodes run the pods the scheduler
//! binds to them. No kubelet and no container runtime: pods become Running and Ready through
//! kwok's stages.
//!
//! Everything lives in a state directory: certificates, kubeconfigs, each component's log,
//! pid file and command line (`<name>.argv`, so the suite can restart the apiserver under a
//! running operator), and `bin`, a link to the programs. Components are stopped by their
//! recorded PIDs, newest first.
//!
//! Storage: a default StorageClass `titan-local` (no provisioner, immediate binding) with
//! pre-created PersistentVolumes, so the PVCs of builtin datastores bind without a CSI driver.

pub mod build;
mod pki;

use std::fs;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use nix::sys::signal::Signal;
use serde::{Deserialize, Serialize};

use crate::process;
pub use build::Tools;

/// How long a component may take from spawn to ready on a loaded 2-core machine.
const READY_DEADLINE: Duration = Duration::from_secs(180);
/// How long a component gets to exit after SIGTERM before SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(20);
/// The fake nodes kwok manages (one per zone), and what each offers: large enough for the
/// 500-cell benchmark, whose pods only exist as API objects.
const NODES: usize = 3;
/// PersistentVolumes made at start; `provision_volumes` adds more (the benchmark).
pub const VOLUMES: usize = 48;
/// The StorageClass of the pre-made volumes, the cluster's default.
pub const STORAGE_CLASS: &str = "titan-local";
const RECORD: &str = "kube.json";

/// Components in start order; stopped in reverse.
const COMPONENTS: [&str; 5] = [
    "etcd",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kwok",
];

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    action: Action,
}

#[derive(Debug, clap::Subcommand)]
enum Action {
    /// Build the programs if needed, start the control plane in `target/kube/` and leave it
    /// running; prints the exports of `env`.
    Up,
    /// Stop exactly what `up` started, by PID, and remove its state.
    Down,
    /// Print `export` lines for a shell: `eval "$(cargo xtask kube env)"`, then `kubectl get
    /// nodes` or `cargo nextest run -p titan-e2e --test cluster`.
    Env,
    /// The scale benchmark: `cargo xtask kube bench --cells 500` (not a test; prints figures).
    Bench(crate::cmd::kube_bench::Args),
}

/// What `kube.json` records: who owns the control plane (an xtask that stops it when it ends,
/// or nobody: `kube up`) and where the apiserver listens.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Record {
    owner_pid: Option<u32>,
    server: String,
}

/// A running control plane; stopped when dropped unless `detach`ed.
#[derive(Debug)]
pub struct ControlPlane {
    dir: PathBuf,
    server: String,
    tools: Tools,
    running: bool,
}

impl ControlPlane {
    /// Starts every component in `dir` (which must not hold a running control plane).
    pub fn start(dir: &Path, tools: &Tools, owner_pid: Option<u32>) -> Result<Self> {
        if !running(dir).is_empty() {
            bail!(
                "a control plane already runs from {}; stop it first (`cargo xtask kube down`)",
                dir.display()
            );
        }
        if dir.exists() {
            fs::remove_dir_all(dir).with_context(|| format!("removing {}", dir.display()))?;
        }
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let started = Instant::now();
        eprintln!(
            "==> starting Kubernetes {} (etcd, apiserver, controller-manager, scheduler, kwok) \
             in {}",
            build::KUBERNETES,
            dir.display()
        );
        std::os::unix::fs::symlink(tools.bin(), dir.join("bin"))
            .context("linking the programs into the state directory")?;
        let ports = process::free_ports(3)?;
        let (etcd_client, etcd_peer, apiserver) = (ports[0], ports[1], ports[2]);
        let server = format!("https://127.0.0.1:{apiserver}");
        let record = Record {
            owner_pid,
            server: server.clone(),
        };
        fs::write(dir.join(RECORD), serde_json::to_string_pretty(&record)?)
            .context("writing kube.json")?;
        let mut plane = ControlPlane {
            dir: dir.to_owned(),
            server,
            tools: tools.clone(),
            running: true,
        };
        plane
            .boot(etcd_client, etcd_peer)
            .inspect_err(|_| plane.stop_quietly())?;
        eprintln!(
            "<== control plane ready at {} in {}",
            plane.server,
            process::secs(started.elapsed())
        );
        Ok(plane)
    }

    fn boot(&mut self, etcd_client: u16, etcd_peer: u16) -> Result<()> {
        let dir = self.dir.clone();
        let pki = pki::create(&dir.join("pki"))?;
        let pki_dir = dir.join("pki");
        let admin = pki::kubeconfig_for(
            &pki_dir,
            &self.server,
            pki::Identity {
                file: "admin",
                user: "titan-test-admin",
                groups: &["system:masters"],
            },
        )?;
        fs::rename(&admin, self.admin_kubeconfig()).context("placing admin.kubeconfig")?;
        let controller_manager = pki::kubeconfig_for(
            &pki_dir,
            &self.server,
            pki::Identity {
                file: "controller-manager",
                user: "system:kube-controller-manager",
                groups: &[],
            },
        )?;
        let scheduler = pki::kubeconfig_for(
            &pki_dir,
            &self.server,
            pki::Identity {
                file: "scheduler",
                user: "system:kube-scheduler",
                groups: &[],
            },
        )?;

        let etcd_url = format!("http://127.0.0.1:{etcd_client}");
        let peer_url = format!("http://127.0.0.1:{etcd_peer}");
        spawn(
            &dir,
            "etcd",
            &self.tools,
            &[
                "--name=titan-test".into(),
                format!("--data-dir={}", dir.join("etcd-data").display()),
                format!("--listen-client-urls={etcd_url}"),
                format!("--advertise-client-urls={etcd_url}"),
                format!("--listen-peer-urls={peer_url}"),
                format!("--initial-advertise-peer-urls={peer_url}"),
                format!("--initial-cluster=titan-test={peer_url}"),
                // Throw-away data: durability costs the suite seconds per write burst.
                "--unsafe-no-fsync=true".into(),
                "--quota-backend-bytes=8589934592".into(),
                "--log-level=warn".into(),
            ],
        )?;
        let etcd_health = format!("127.0.0.1:{etcd_client}");
        self.wait("etcd", || {
            let addr = etcd_health.parse().ok()?;
            crate::http::request("GET", addr, "/health", "", Duration::from_secs(2))
                .ok()
                .filter(|r| r.status == 200 && r.body.contains("true"))
        })?;

        let port = self
            .server
            .rsplit(':')
            .next()
            .context("apiserver URL without a port")?
            .to_owned();
        let issuer = "https://kubernetes.default.svc.cluster.local";
        spawn(
            &dir,
            "kube-apiserver",
            &self.tools,
            &[
                format!("--etcd-servers={etcd_url}"),
                "--bind-address=127.0.0.1".into(),
                "--advertise-address=127.0.0.1".into(),
                format!("--secure-port={port}"),
                format!("--cert-dir={}", pki_dir.display()),
                format!("--tls-cert-file={}", pki.serving_cert.display()),
                format!("--tls-private-key-file={}", pki.serving_key.display()),
                format!("--client-ca-file={}", pki.ca_cert.display()),
                format!(
                    "--service-account-key-file={}",
                    pki.service_account_pub.display()
                ),
                format!(
                    "--service-account-signing-key-file={}",
                    pki.service_account_key.display()
                ),
                format!("--service-account-issuer={issuer}"),
                "--authorization-mode=RBAC".into(),
                // No kube-proxy and no pod network: ClusterIPs are only allocated, never
                // routed, and the `kubernetes` Service gets no loopback endpoint (endpoints
                // may not point at 127.0.0.0/8).
                "--service-cluster-ip-range=10.96.0.0/16".into(),
                "--endpoint-reconciler-type=none".into(),
                "--allow-privileged=true".into(),
                "--profiling=false".into(),
                "--v=1".into(),
            ],
        )?;
        self.wait("kube-apiserver", || {
            self.kubectl(&["get", "--raw", "/readyz"]).ok()
        })?;

        spawn(
            &dir,
            "kube-controller-manager",
            &self.tools,
            &[
                format!("--kubeconfig={}", controller_manager.display()),
                "--bind-address=127.0.0.1".into(),
                "--secure-port=0".into(),
                "--leader-elect=false".into(),
                "--use-service-account-credentials=true".into(),
                format!("--root-ca-file={}", pki.ca_cert.display()),
                format!(
                    "--service-account-private-key-file={}",
                    pki.service_account_key.display()
                ),
                format!("--cluster-signing-cert-file={}", pki.ca_cert.display()),
                format!("--cluster-signing-key-file={}", pki.ca_key.display()),
                // The default 20/30 makes the 500-cell benchmark wait on the client, not on
                // the controllers.
                "--kube-api-qps=200".into(),
                "--kube-api-burst=400".into(),
                "--v=1".into(),
            ],
        )?;
        spawn(
            &dir,
            "kube-scheduler",
            &self.tools,
            &[
                format!("--kubeconfig={}", scheduler.display()),
                format!("--authentication-kubeconfig={}", scheduler.display()),
                format!("--authorization-kubeconfig={}", scheduler.display()),
                "--bind-address=127.0.0.1".into(),
                "--secure-port=0".into(),
                "--leader-elect=false".into(),
                "--v=1".into(),
            ],
        )?;
        // An explicit configuration, never a user's ~/.kwok/kwok.yaml; kwok's defaulting does
        // not run on a file, so the parallelism (the defaults, pods doubled) is spelled out.
        let kwok_config = dir.join("kwok.yaml");
        fs::write(
            &kwok_config,
            "apiVersion: config.kwok.x-k8s.io/v1alpha1\nkind: KwokConfiguration\noptions:\n  \
             podPlayStageParallelism: 8\n  nodePlayStageParallelism: 4\n  \
             nodeLeaseParallelism: 4\n  podsOnNodeSyncParallelism: 2\n",
        )
        .context("writing kwok.yaml")?;
        spawn(
            &dir,
            "kwok",
            &self.tools,
            &[
                format!("--kubeconfig={}", self.admin_kubeconfig().display()),
                "--manage-all-nodes=false".into(),
                "--manage-nodes-with-label-selector=type=kwok".into(),
                // Nothing ever connects to a fake node or pod: nodes say loopback; pod IPs come
                // from 198.18.0.0/16 (reserved for benchmarks), since EndpointSlices refuse
                // loopback addresses and the endpoints controller would fail on every Service.
                "--node-ip=127.0.0.1".into(),
                "--cidr=198.18.0.0/16".into(),
                format!("--config={}", kwok_config.display()),
                format!("--config={}", self.tools.kwok_stages().display()),
                "--node-lease-duration-seconds=40".into(),
            ],
        )?;
        let objects = dir.join("bootstrap.yaml");
        fs::write(&objects, bootstrap_objects(NODES, 0..VOLUMES, &dir))
            .context("writing bootstrap.yaml")?;
        self.kubectl(&["apply", "-f", &objects.display().to_string()])
            .context("creating the fake nodes, the StorageClass and the volumes")?;
        self.wait("kube-controller-manager", || {
            self.kubectl(&["get", "serviceaccount", "default", "-n", "default"])
                .ok()
        })?;
        self.wait("kwok nodes", || {
            let out = self
                .kubectl(&[
                    "get",
                    "nodes",
                    "-l",
                    "type=kwok",
                    "-o",
                    "jsonpath={range .items[*]}{.status.conditions[?(@.type==\"Ready\")].status}{\"\\n\"}{end}",
                ])
                .ok()?;
            (out.lines().filter(|l| *l == "True").count() == NODES).then_some(())
        })?;
        for component in ["kube-scheduler", "kwok", "kube-controller-manager"] {
            if !component_running(&dir, component) {
                bail!(
                    "{component} exited\n{}",
                    process::tail(&dir.join(format!("{component}.log")), 30)
                );
            }
        }
        Ok(())
    }

    /// Polls `ready` until it answers or the deadline passes; fails at once when the
    /// component's process is gone, with the end of its log.
    fn wait<T>(&self, component: &str, mut ready: impl FnMut() -> Option<T>) -> Result<T> {
        let started = Instant::now();
        let log = self.dir.join(format!("{}.log", log_of(component)));
        loop {
            crate::signals::check()?;
            if let Some(value) = ready() {
                eprintln!(
                    "  {component} ready in {}",
                    process::secs(started.elapsed())
                );
                return Ok(value);
            }
            if !component_running(&self.dir, log_of(component)) {
                bail!("{component} exited\n{}", process::tail(&log, 30));
            }
            if started.elapsed() > READY_DEADLINE {
                bail!(
                    "{component} not ready after {}\n{}",
                    process::secs(READY_DEADLINE),
                    process::tail(&log, 30)
                );
            }
            thread::sleep(Duration::from_millis(250));
        }
    }

    /// Runs the pinned kubectl as the cluster admin; stdout, or an error with stderr.
    pub fn kubectl(&self, args: &[&str]) -> Result<String> {
        process::output(
            Command::new(self.tools.path("kubectl"))
                .arg(format!(
                    "--kubeconfig={}",
                    self.admin_kubeconfig().display()
                ))
                .args(args),
        )
    }

    pub fn admin_kubeconfig(&self) -> PathBuf {
        self.dir.join("admin.kubeconfig")
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Adds PersistentVolumes `from..to` (names are numbered, so a second call extends).
    pub fn provision_volumes(&self, range: std::ops::Range<usize>) -> Result<()> {
        let file = self
            .dir
            .join(format!("volumes-{}-{}.yaml", range.start, range.end));
        fs::write(&file, bootstrap_objects(0, range, &self.dir)).context("writing volumes")?;
        self.kubectl(&["apply", "-f", &file.display().to_string()])
            .map(drop)
    }

    /// The variables the cluster suite reads.
    pub fn test_env(&self) -> Vec<(String, String)> {
        vec![
            (
                "TITAN_TEST_KUBE_DIR".to_owned(),
                self.dir.display().to_string(),
            ),
            (
                "TITAN_TEST_KUBECONFIG".to_owned(),
                self.admin_kubeconfig().display().to_string(),
            ),
        ]
    }

    /// Stops every component, newest first.
    pub fn stop(mut self) -> Result<()> {
        self.running = false;
        stop_all(&self.dir)
    }

    /// Leaves the control plane running after xtask exits (`kube up`).
    pub fn detach(mut self) {
        self.running = false;
        let record = Record {
            owner_pid: None,
            server: self.server.clone(),
        };
        if let Ok(text) = serde_json::to_string_pretty(&record) {
            let _ = fs::write(self.dir.join(RECORD), text);
        }
    }

    fn stop_quietly(&mut self) {
        if self.running {
            self.running = false;
            if let Err(e) = stop_all(&self.dir) {
                eprintln!("xtask: {e:#}");
            }
        }
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        self.stop_quietly();
    }
}

/// The log file of a readiness step (the kwok nodes are kwok's business).
fn log_of(component: &str) -> &str {
    if component == "kwok nodes" {
        "kwok"
    } else {
        component
    }
}

/// Starts `name` from the programs with `args` in its own process group (a Ctrl-C in the
/// terminal reaches xtask, which stops it in order), logging to `<name>.log`; records its
/// command line and PID.
fn spawn(dir: &Path, name: &str, tools: &Tools, args: &[String]) -> Result<u32> {
    let program = tools.path(name);
    let argv: Vec<String> = std::iter::once(program.display().to_string())
        .chain(args.iter().cloned())
        .collect();
    fs::write(
        dir.join(format!("{name}.argv")),
        serde_json::to_string(&argv)?,
    )
    .with_context(|| format!("writing {name}.argv"))?;
    let log_path = dir.join(format!("{name}.log"));
    let log = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .with_context(|| format!("opening {}", log_path.display()))?;
    let child = Command::new(&program)
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(log.try_clone().context("duplicating the log handle")?)
        .stderr(log)
        .process_group(0)
        .spawn()
        .with_context(|| format!("starting {}", program.display()))?;
    let pid = child.id();
    fs::write(dir.join(format!("{name}.pid")), format!("{pid}\n"))
        .with_context(|| format!("writing {name}.pid"))?;
    crate::signals::register(name, pid, true);
    Ok(pid)
}

/// The recorded PID of `component`, when that process still runs as it.
fn component_pid(dir: &Path, component: &str) -> Option<u32> {
    let pid: u32 = fs::read_to_string(dir.join(format!("{component}.pid")))
        .ok()?
        .trim()
        .parse()
        .ok()?;
    // comm is cut at 15 bytes: "kube-controller".
    let comm: String = component.chars().take(15).collect();
    process::alive_as(pid, &comm).then_some(pid)
}

fn component_running(dir: &Path, component: &str) -> bool {
    component_pid(dir, component).is_some()
}

/// The components of `dir` that still run, with their PIDs.
pub fn running(dir: &Path) -> Vec<(&'static str, u32)> {
    COMPONENTS
        .iter()
        .filter_map(|c| component_pid(dir, c).map(|pid| (*c, pid)))
        .collect()
}

/// Stops every component recorded in `dir`, newest first; the first failure is reported
/// after all were tried.
pub fn stop_all(dir: &Path) -> Result<()> {
    let mut failures = Vec::new();
    for component in COMPONENTS.iter().rev() {
        if let Some(pid) = component_pid(dir, component) {
            if let Err(e) = process::stop(component, pid, Signal::SIGTERM, STOP_GRACE) {
                failures.push(format!("{e:#}"));
            }
            crate::signals::unregister(pid);
        }
    }
    if failures.is_empty() {
        Ok(())
    } else {
        Err(anyhow!("{}", failures.join("\n")))
    }
}

/// The fake nodes (labelled for kwok, one zone each), the default StorageClass and
/// `volumes` PersistentVolumes of 100Gi each (hostPath in the state directory: no pod ever
/// mounts one).
fn bootstrap_objects(nodes: usize, volumes: std::ops::Range<usize>, dir: &Path) -> String {
    let mut docs = Vec::new();
    for i in 0..nodes {
        docs.push(format!(
            "apiVersion: v1\nkind: Node\nmetadata:\n  name: kwok-node-{i}\n  labels:\n    \
             type: kwok\n    kubernetes.io/hostname: kwok-node-{i}\n    kubernetes.io/os: \
             linux\n    kubernetes.io/arch: amd64\n    topology.kubernetes.io/zone: zone-{i}\n  \
             annotations:\n    kwok.x-k8s.io/node: fake\n    node.alpha.kubernetes.io/ttl: \
             \"0\"\nspec: {{}}\nstatus:\n  allocatable: {{cpu: \"2000\", memory: 8Ti, pods: \
             \"6000\"}}\n  capacity: {{cpu: \"2000\", memory: 8Ti, pods: \"6000\"}}\n"
        ));
    }
    if nodes > 0 {
        docs.push(format!(
            "apiVersion: storage.k8s.io/v1\nkind: StorageClass\nmetadata:\n  name: \
             {STORAGE_CLASS}\n  annotations:\n    storageclass.kubernetes.io/is-default-class: \
             \"true\"\nprovisioner: kubernetes.io/no-provisioner\nvolumeBindingMode: \
             Immediate\nreclaimPolicy: Retain\n"
        ));
    }
    for i in volumes {
        docs.push(format!(
            "apiVersion: v1\nkind: PersistentVolume\nmetadata:\n  name: titan-pv-{i:05}\n  \
             labels:\n    titan.dev/test-volume: \"true\"\nspec:\n  storageClassName: \
             {STORAGE_CLASS}\n  capacity: {{storage: 100Gi}}\n  accessModes: [ReadWriteOnce]\n  \
             persistentVolumeReclaimPolicy: Retain\n  hostPath:\n    path: {}\n",
            dir.join("volumes").join(format!("{i:05}")).display()
        ));
    }
    docs.join("---\n")
}

/// `target/kube`, where `kube up` keeps its control plane.
fn up_dir() -> PathBuf {
    crate::target_dir().join("kube")
}

pub fn run(args: &Args) -> Result<ExitCode> {
    match &args.action {
        Action::Up => {
            let dir = up_dir();
            if !running(&dir).is_empty() {
                eprintln!("the control plane already runs in {}", dir.display());
            } else {
                let tools = build::ensure()?;
                ControlPlane::start(&dir, &tools, None)?.detach();
                eprintln!("stop it with `cargo xtask kube down`");
            }
            print!("{}", exports(&dir));
            Ok(ExitCode::SUCCESS)
        }
        Action::Down => {
            let dir = up_dir();
            stop_all(&dir)?;
            if dir.exists() {
                fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))?;
            }
            eprintln!("control plane stopped");
            Ok(ExitCode::SUCCESS)
        }
        Action::Env => {
            let dir = up_dir();
            if running(&dir).len() != COMPONENTS.len() {
                bail!("the control plane is not running: start it with `cargo xtask kube up`");
            }
            print!("{}", exports(&dir));
            Ok(ExitCode::SUCCESS)
        }
        Action::Bench(args) => crate::cmd::kube_bench::run(args),
    }
}

/// The exports of `kube env`: the suite's variables, plus KUBECONFIG and PATH for a shell.
fn exports(dir: &Path) -> String {
    let vars = [
        ("TITAN_TEST_KUBE_DIR", dir.display().to_string()),
        (
            "TITAN_TEST_KUBECONFIG",
            dir.join("admin.kubeconfig").display().to_string(),
        ),
        (
            "KUBECONFIG",
            dir.join("admin.kubeconfig").display().to_string(),
        ),
    ]
    .map(|(k, v)| (k.to_owned(), v));
    let mut text = crate::datastores::exports(&vars);
    text.push_str(&format!(
        "export PATH={}:\"$PATH\"\n",
        shell_quote(&dir.join("bin").display().to_string())
    ));
    text
}

fn shell_quote(value: &str) -> String {
    format!("'{}'", value.replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bootstrap_objects_make_nodes_a_default_class_and_numbered_volumes() {
        let text = bootstrap_objects(2, 3..5, Path::new("/k"));
        assert_eq!(text.matches("kind: Node\n").count(), 2);
        assert!(text.contains("topology.kubernetes.io/zone: zone-1"));
        assert_eq!(text.matches("kind: StorageClass\n").count(), 1);
        assert!(text.contains("storageclass.kubernetes.io/is-default-class: \"true\""));
        assert_eq!(text.matches("kind: PersistentVolume\n").count(), 2);
        assert!(text.contains("name: titan-pv-00003\n") && text.contains("name: titan-pv-00004\n"));
        assert!(text.contains("path: /k/volumes/00004\n"));
        // Extra volumes alone: no second StorageClass, no nodes.
        let more = bootstrap_objects(0, 5..6, Path::new("/k"));
        assert_eq!(more.matches("kind: ").count(), 1, "{more}");
    }

    #[test]
    fn components_stop_in_reverse_start_order() {
        let reversed: Vec<_> = COMPONENTS.iter().rev().copied().collect();
        assert_eq!(
            reversed,
            [
                "kwok",
                "kube-scheduler",
                "kube-controller-manager",
                "kube-apiserver",
                "etcd"
            ]
        );
    }
}
