//! The cluster suite's plumbing: the local control plane `cargo xtask kube up` (or `cargo
//! xtask test`) started, its pinned kubectl and helm, the operator as a real process with a
//! ServiceAccount token for identity, and polling with deadlines.

use std::{
    collections::BTreeMap,
    fs,
    net::TcpListener,
    os::unix::process::CommandExt,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use nix::{
    sys::signal::{self, Signal},
    unistd::Pid,
};
use serde_json::Value;

/// The variable `cargo xtask test` and `cargo xtask kube env` set to the control plane's
/// state directory.
pub const KUBE_DIR: &str = "TITAN_TEST_KUBE_DIR";

pub fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(path)
}

/// The control plane of `TITAN_TEST_KUBE_DIR`, driven as its admin.
#[derive(Debug, Clone)]
pub struct Kube {
    pub dir: PathBuf,
    pub kubeconfig: PathBuf,
}

impl Kube {
    /// The control plane named by the environment, or why the suite cannot run.
    pub fn from_env() -> Result<Self, String> {
        let dir = std::env::var_os(KUBE_DIR).map(PathBuf::from).ok_or_else(|| {
            format!(
                "{KUBE_DIR} is not set: `cargo xtask test` starts a local control plane for this \
                 suite (it needs Go), or run `cargo xtask kube up` and \
                 `eval \"$(cargo xtask kube env)\"` first"
            )
        })?;
        let kubeconfig = dir.join("admin.kubeconfig");
        if !kubeconfig.is_file() {
            return Err(format!(
                "{} has no admin.kubeconfig: is the control plane running?",
                dir.display()
            ));
        }
        Ok(Self { dir, kubeconfig })
    }

    pub fn bin(&self, program: &str) -> PathBuf {
        self.dir.join("bin").join(program)
    }

    /// Runs kubectl with `kubeconfig`; stdout, or an error carrying stderr.
    pub fn kubectl_as(&self, kubeconfig: &Path, args: &[&str]) -> Result<String, String> {
        run(Command::new(self.bin("kubectl"))
            .arg(format!("--kubeconfig={}", kubeconfig.display()))
            .args(args))
    }

    /// kubectl as the cluster admin.
    pub fn kubectl(&self, args: &[&str]) -> Result<String, String> {
        self.kubectl_as(&self.kubeconfig, args)
    }

    /// kubectl that must succeed.
    pub fn k(&self, args: &[&str]) -> String {
        eprintln!("$ kubectl {}", args.join(" "));
        self.kubectl(args).unwrap_or_else(|e| panic!("{e}"))
    }

    pub fn json(&self, args: &[&str]) -> Value {
        let mut with_output = args.to_vec();
        with_output.extend(["-o", "json"]);
        let text = self.k(&with_output);
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("kubectl printed no JSON ({e})"))
    }

    /// The object, or `None` when it does not exist.
    pub fn get(&self, args: &[&str]) -> Option<Value> {
        let mut with_output = vec!["get"];
        with_output.extend(args);
        with_output.extend(["-o", "json", "--ignore-not-found"]);
        let text = self.kubectl(&with_output).unwrap_or_else(|e| panic!("{e}"));
        (!text.trim().is_empty())
            .then(|| serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON: {e}")))
    }

    /// helm (the real engine, built with the control plane) as the cluster admin.
    pub fn helm(&self, args: &[&str]) -> String {
        eprintln!("$ helm {}", args.join(" "));
        let home = self.dir.join("helm-home");
        run(Command::new(self.bin("helm"))
            .arg(format!("--kubeconfig={}", self.kubeconfig.display()))
            .args(args)
            .env("HELM_CONFIG_HOME", home.join("config"))
            .env("HELM_CACHE_HOME", home.join("cache"))
            .env("HELM_DATA_HOME", home.join("data")))
        .unwrap_or_else(|e| panic!("{e}"))
    }

    /// A kubeconfig whose identity is ServiceAccount `namespace/name`, through a TokenRequest:
    /// what the operator's pod would get.
    pub fn service_account_kubeconfig(&self, namespace: &str, name: &str) -> PathBuf {
        let token = self.k(&["create", "token", name, "-n", namespace, "--duration=6h"]);
        let server = self.k(&[
            "config",
            "view",
            "--minify",
            "-o",
            "jsonpath={.clusters[0].cluster.server}",
        ]);
        let path = self.dir.join(format!("sa-{namespace}-{name}.kubeconfig"));
        let text = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: titan-test\n  cluster:\n    \
             server: {server}\n    certificate-authority: {ca}\nusers:\n- name: {name}\n  \
             user:\n    token: {token}\ncontexts:\n- name: titan-test\n  context:\n    cluster: \
             titan-test\n    user: {name}\n    namespace: {namespace}\ncurrent-context: \
             titan-test\n",
            ca = self.dir.join("pki").join("ca.crt").display(),
            token = token.trim()
        );
        fs::write(&path, text).expect("write the ServiceAccount kubeconfig");
        path
    }

    /// The apiserver's `apiserver_request_total` write counts, by `verb resource/subresource`.
    pub fn write_counts(&self) -> BTreeMap<String, f64> {
        write_counts(&self.metrics())
    }

    /// LIST requests the API server has served, per `LIST resource`.
    pub fn list_counts(&self) -> BTreeMap<String, f64> {
        request_counts(&self.metrics(), &["LIST"])
    }

    fn metrics(&self) -> String {
        self.kubectl(&["get", "--raw", "/metrics"])
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// The apiserver SIGKILLed (a crash: no graceful goodbye to the watches) and started again
    /// with its recorded command line; waits until it answers.
    pub fn restart_apiserver(&self) {
        let pid_file = self.dir.join("kube-apiserver.pid");
        let pid: i32 = fs::read_to_string(&pid_file)
            .expect("kube-apiserver.pid")
            .trim()
            .parse()
            .expect("a pid");
        signal::kill(Pid::from_raw(pid), Signal::SIGKILL).expect("signal the apiserver");
        let argv: Vec<String> = serde_json::from_str(
            &fs::read_to_string(self.dir.join("kube-apiserver.argv")).expect("argv"),
        )
        .expect("argv is a JSON list");
        let port: u16 = argv
            .iter()
            .find_map(|a| a.strip_prefix("--secure-port="))
            .and_then(|p| p.parse().ok())
            .expect("the apiserver's --secure-port");
        // Gone means its port is free: a killed multi-threaded process can show as a zombie
        // while its other threads still hold the listener.
        eventually(
            "the killed apiserver has let go of its port",
            Duration::from_secs(30),
            || TcpListener::bind(("127.0.0.1", port)).is_ok(),
        );
        let log = fs::OpenOptions::new()
            .append(true)
            .open(self.dir.join("kube-apiserver.log"))
            .expect("apiserver log");
        // Never waited for here: the restarted apiserver belongs to the control plane, which
        // `cargo xtask kube down` / `test` stops by the PID recorded below.
        #[expect(
            clippy::zombie_processes,
            reason = "stopped by xtask through its pid file"
        )]
        let child = Command::new(&argv[0])
            .args(&argv[1..])
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .process_group(0)
            .spawn()
            .expect("start the apiserver again");
        // Recorded for `cargo xtask kube down`/`test`, which stop the control plane by PID.
        fs::write(&pid_file, format!("{}\n", child.id())).expect("write kube-apiserver.pid");
        eventually(
            "the restarted apiserver answers",
            Duration::from_secs(120),
            || self.kubectl(&["get", "--raw", "/readyz"]).is_ok(),
        );
    }
}

/// Sums `apiserver_request_total` samples of write verbs by `VERB resource[/subresource]`.
pub fn write_counts(metrics: &str) -> BTreeMap<String, f64> {
    request_counts(metrics, &["POST", "PUT", "PATCH", "DELETE", "APPLY"])
}

/// `apiserver_request_total` summed per `VERB resource[/subresource]`, for the `verbs` given.
pub fn request_counts(metrics: &str, verbs: &[&str]) -> BTreeMap<String, f64> {
    let mut counts = BTreeMap::new();
    for line in metrics.lines() {
        let Some(rest) = line.strip_prefix("apiserver_request_total{") else {
            continue;
        };
        let Some((labels, value)) = rest.rsplit_once("} ") else {
            continue;
        };
        let label = |name: &str| {
            labels
                .split("\",")
                .find_map(|pair| pair.strip_prefix(&format!("{name}=\"")))
                .map(|v| v.trim_end_matches('"').to_owned())
                .unwrap_or_default()
        };
        let verb = label("verb");
        if !verbs.contains(&verb.as_str()) {
            continue;
        }
        let mut key = format!("{verb} {}", label("resource"));
        let subresource = label("subresource");
        if !subresource.is_empty() {
            key.push('/');
            key.push_str(&subresource);
        }
        *counts.entry(key).or_insert(0.0) += value.trim().parse::<f64>().unwrap_or(0.0);
    }
    counts
}

fn run(cmd: &mut Command) -> Result<String, String> {
    let output = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {:?}: {e}", cmd.get_program()))?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(format!(
            "{} {} failed: {}",
            Path::new(cmd.get_program())
                .file_name()
                .unwrap_or_default()
                .to_string_lossy(),
            cmd.get_args()
                .map(|a| a.to_string_lossy().into_owned())
                .collect::<Vec<_>>()
                .join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    }
}

/// Polls `check` every second until it returns true; fails after `timeout`.
pub fn eventually(what: &str, timeout: Duration, mut check: impl FnMut() -> bool) {
    let start = Instant::now();
    while !check() {
        assert!(
            start.elapsed() < timeout,
            "timed out after {timeout:?} waiting until {what}"
        );
        std::thread::sleep(Duration::from_secs(1));
    }
    eprintln!("  ok: {what} ({:.1}s)", start.elapsed().as_secs_f64());
}

/// A `titan-operator run` process: what the chart's pod runs, here outside the cluster with
/// the chart's ServiceAccount for identity. Killed (SIGKILL) when dropped.
#[derive(Debug)]
pub struct Operator {
    child: Child,
    pub name: String,
    pub log: PathBuf,
}

impl Operator {
    /// Starts replica `name` against the cluster with `kubeconfig`.
    pub fn start(kube: &Kube, kubeconfig: &Path, name: &str) -> Self {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let admin = format!("127.0.0.1:{port}");
        let log = kube.dir.join(format!("operator-{name}.log"));
        let file = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .expect("operator log");
        let child = Command::new(operator_binary())
            .args(["run", "--concurrency=8"])
            .env("KUBECONFIG", kubeconfig)
            .env("POD_NAMESPACE", "titan-system")
            .env("POD_NAME", name)
            .env("TITAN_OPERATOR_ADMIN_ADDR", &admin)
            // A failing run is read from these logs: `TITAN_E2E_OPERATOR_LOG` raises their
            // level (say `info,kube_runtime=debug`) without a rebuild.
            .env(
                "TITAN_LOG",
                std::env::var("TITAN_E2E_OPERATOR_LOG").unwrap_or_else(|_| "info".to_owned()),
            )
            .stdin(Stdio::null())
            .stdout(file.try_clone().expect("log"))
            .stderr(file)
            .spawn()
            .expect("start titan-operator");
        eprintln!(
            "started operator {name} (pid {}), log {}",
            child.id(),
            log.display()
        );
        Self {
            child,
            name: name.to_owned(),
            log,
        }
    }

    /// SIGKILL, as a node loss or an OOM kill would: no lease release, no clean-up.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, as Kubernetes stops a pod; returns how long it took to exit.
    pub fn terminate(&mut self, deadline: Duration) -> Duration {
        let pid = Pid::from_raw(i32::try_from(self.child.id()).expect("a pid"));
        let started = Instant::now();
        signal::kill(pid, Signal::SIGTERM).expect("signal the operator");
        loop {
            if let Some(status) = self.child.try_wait().expect("wait for the operator") {
                assert!(
                    status.success(),
                    "operator {} exited with {status}",
                    self.name
                );
                return started.elapsed();
            }
            assert!(
                started.elapsed() < deadline,
                "operator {} still runs {deadline:?} after SIGTERM:\n{}",
                self.name,
                self.tail()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// The end of its log, for a failure message.
    pub fn tail(&self) -> String {
        let text = fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The `titan-operator` executable, built by cargo on first use (like `titan_binary`).
fn operator_binary() -> PathBuf {
    titan_e2e::process::workspace_binary("titan-operator", "titan-operator", false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_counts_sum_write_verbs_by_resource() {
        let text = "\
# HELP apiserver_request_total x
apiserver_request_total{code=\"200\",component=\"apiserver\",dry_run=\"\",group=\"apps\",resource=\"deployments\",scope=\"resource\",subresource=\"\",verb=\"APPLY\",version=\"v1\"} 3
apiserver_request_total{code=\"409\",component=\"apiserver\",dry_run=\"\",group=\"apps\",resource=\"deployments\",scope=\"resource\",subresource=\"\",verb=\"APPLY\",version=\"v1\"} 1
apiserver_request_total{code=\"200\",component=\"apiserver\",dry_run=\"\",group=\"commerce.titan.dev\",resource=\"cells\",scope=\"resource\",subresource=\"status\",verb=\"PATCH\",version=\"v1alpha1\"} 2
apiserver_request_total{code=\"200\",component=\"apiserver\",dry_run=\"\",group=\"apps\",resource=\"deployments\",scope=\"resource\",subresource=\"\",verb=\"GET\",version=\"v1\"} 50
";
        let counts = write_counts(text);
        assert_eq!(
            counts,
            BTreeMap::from([
                ("APPLY deployments".to_owned(), 4.0),
                ("PATCH cells/status".to_owned(), 2.0)
            ])
        );
    }
}
