//! The control plane's programs, built from the Go module in `xtask/kube` (one pinned
//! Kubernetes release: kube-apiserver, kube-controller-manager, kube-scheduler, kubectl; etcd;
//! kwok; Helm) into a cache outside the clone, `~/.cache/titan/kube-<version>/`, so a second
//! run and a fresh clone's CI on the same machine build nothing. A stamp of the module files
//! and the build flags says whether the cache is current; a build goes to a sibling directory
//! and is renamed into place only when every program built.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use sha2::{Digest, Sha256};

use crate::process;

/// The Kubernetes release the module pins (`xtask/kube/go.mod` requires it).
pub const KUBERNETES: &str = "v1.36.3";

/// Every program of the control plane: (file name, Go package).
const PROGRAMS: &[(&str, &str)] = &[
    ("kube-apiserver", "k8s.io/kubernetes/cmd/kube-apiserver"),
    (
        "kube-controller-manager",
        "k8s.io/kubernetes/cmd/kube-controller-manager",
    ),
    ("kube-scheduler", "k8s.io/kubernetes/cmd/kube-scheduler"),
    ("kubectl", "k8s.io/kubernetes/cmd/kubectl"),
    ("etcd", "go.etcd.io/etcd/server/v3"),
    ("kwok", "sigs.k8s.io/kwok/cmd/kwok"),
    ("helm", "helm.sh/helm/v4/cmd/helm"),
];

/// kwok's own stage definitions (from its module, as `kwokctl` uses them): nodes become Ready
/// and keep a Lease, pods become Running and Ready, finish, and go when deleted.
const KWOK_STAGES: &[&str] = &[
    "kustomize/stage/node/fast/node-initialize.yaml",
    "kustomize/stage/node/heartbeat-with-lease/node-heartbeat-with-lease.yaml",
    "kustomize/stage/pod/fast/pod-ready.yaml",
    "kustomize/stage/pod/fast/pod-complete.yaml",
    "kustomize/stage/pod/fast/pod-delete.yaml",
];

/// The version the programs report: built outside Kubernetes' own tree, they would say
/// `v0.0.0-master`, which Helm's `kubeVersion` checks and kubectl's skew warnings misread.
fn ldflags() -> String {
    let (major, minor) = major_minor(KUBERNETES);
    let mut flags = vec!["-s".to_owned(), "-w".to_owned()];
    for package in [
        "k8s.io/component-base/version",
        "k8s.io/client-go/pkg/version",
    ] {
        flags.extend([
            format!("-X {package}.gitVersion={KUBERNETES}"),
            format!("-X {package}.gitMajor={major}"),
            format!("-X {package}.gitMinor={minor}"),
            format!("-X {package}.gitTreeState=clean"),
        ]);
    }
    flags.join(" ")
}

fn major_minor(version: &str) -> (&str, &str) {
    let mut parts = version.trim_start_matches('v').split('.');
    (parts.next().unwrap_or("1"), parts.next().unwrap_or("0"))
}

/// The built programs.
#[derive(Debug, Clone)]
pub struct Tools {
    bin: PathBuf,
}

impl Tools {
    /// The path of program `name` (one of `PROGRAMS`).
    pub fn path(&self, name: &str) -> PathBuf {
        self.bin.join(name)
    }

    pub fn bin(&self) -> &Path {
        &self.bin
    }

    /// kwok's stages, one YAML stream.
    pub fn kwok_stages(&self) -> PathBuf {
        self.bin.with_file_name("kwok-stages.yaml")
    }
}

/// Why the tools cannot be had here (no Go), or `None` when they can.
pub fn unavailable() -> Option<String> {
    go().is_none().then(|| {
        "Go is not installed (the control plane is built from Go modules; install Go ≥ 1.26 \
         from go.dev or Debian backports)"
            .to_owned()
    })
}

fn go() -> Option<PathBuf> {
    process::which("go").or_else(|| {
        let default = PathBuf::from("/usr/local/go/bin/go");
        default.is_file().then_some(default)
    })
}

fn module_dir() -> PathBuf {
    crate::repo_root().join("xtask").join("kube")
}

/// `$XDG_CACHE_HOME/titan` or `~/.cache/titan`.
fn cache_root() -> Result<PathBuf> {
    if let Some(dir) = std::env::var_os("XDG_CACHE_HOME").filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(dir).join("titan"));
    }
    let home = std::env::var_os("HOME").context("HOME is not set: cannot place the cache")?;
    Ok(PathBuf::from(home).join(".cache").join("titan"))
}

/// What the cache must have been built from: the module files and the flags.
fn stamp() -> Result<String> {
    let mut hash = Sha256::new();
    for file in ["go.mod", "go.sum"] {
        let path = module_dir().join(file);
        hash.update(fs::read(&path).with_context(|| format!("reading {}", path.display()))?);
    }
    hash.update(ldflags());

    for (name, package) in PROGRAMS {
        hash.update(format!("{name}={package}\n"));
    }
    Ok(format!("{:x}\n", hash.finalize()))
}

/// The tools, built first when the cache lacks them or is stale.
pub fn ensure() -> Result<Tools> {
    let go = go().with_context(|| unavailable().unwrap_or_default())?;
    let dir = cache_root()?.join(format!("kube-{KUBERNETES}"));
    let stamp = stamp()?;
    let bin = dir.join("bin");
    let current = fs::read_to_string(dir.join("stamp")).is_ok_and(|s| s == stamp)
        && PROGRAMS.iter().all(|(name, _)| bin.join(name).is_file());
    if current {
        let tools = Tools { bin };
        // Pinned by go.sum like the programs; copied again only if someone removed them.
        if !tools.kwok_stages().is_file() {
            copy_kwok_stages(&go, &tools.kwok_stages())?;
        }
        return Ok(tools);
    }
    let building = dir.with_file_name(format!("kube-{KUBERNETES}.building-{}", std::process::id()));
    if building.exists() {
        fs::remove_dir_all(&building)
            .with_context(|| format!("removing {}", building.display()))?;
    }
    fs::create_dir_all(building.join("bin"))
        .with_context(|| format!("creating {}", building.display()))?;
    eprintln!(
        "==> building Kubernetes {KUBERNETES}, etcd, kwok and helm from xtask/kube into {} \
         (once per machine; a cold build takes a while on 2 cores)",
        dir.display()
    );
    let started = Instant::now();
    for (name, package) in PROGRAMS {
        let one = Instant::now();
        eprintln!("  go build {package}");
        let mut cmd = Command::new(&go);
        cmd.current_dir(module_dir())
            .args(["build", "-trimpath", "-buildvcs=false", "-ldflags"])
            .arg(ldflags())
            .arg("-o")
            .arg(building.join("bin").join(name))
            .arg(package);
        let status = process::run(&format!("go build {name}"), &mut cmd)?;
        if !status.success() {
            let _ = fs::remove_dir_all(&building);
            bail!("go build {package} failed ({status}); its errors are above");
        }
        eprintln!("  built {name} in {}", process::secs(one.elapsed()));
    }
    copy_kwok_stages(&go, &building.join("kwok-stages.yaml"))?;
    fs::write(building.join("stamp"), &stamp).context("writing the build stamp")?;
    if dir.exists() {
        fs::remove_dir_all(&dir).with_context(|| format!("removing stale {}", dir.display()))?;
    }
    fs::rename(&building, &dir)
        .with_context(|| format!("moving {} into place", building.display()))?;
    eprintln!(
        "<== control plane programs built in {}",
        process::secs(started.elapsed())
    );
    Ok(Tools { bin })
}

/// Joins kwok's stage files, from its module as the build downloaded it, into `to`.
fn copy_kwok_stages(go: &Path, to: &Path) -> Result<()> {
    let module = process::output(Command::new(go).current_dir(module_dir()).args([
        "list",
        "-m",
        "-f",
        "{{.Dir}}",
        "sigs.k8s.io/kwok",
    ]))?;
    let module = PathBuf::from(module.trim());
    let mut stream = String::new();
    for stage in KWOK_STAGES {
        let path = module.join(stage);
        let text =
            fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
        stream.push_str("---\n");
        stream.push_str(&text);
        if !text.ends_with('\n') {
            stream.push('\n');
        }
    }
    fs::write(to, stream).with_context(|| format!("writing {}", to.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_programs_report_the_pinned_release() {
        assert_eq!(major_minor("v1.36.3"), ("1", "36"));
        let flags = ldflags();
        assert!(
            flags.contains("-X k8s.io/component-base/version.gitVersion=v1.36.3"),
            "{flags}"
        );
        assert!(
            flags.contains("-X k8s.io/client-go/pkg/version.gitMinor=36"),
            "{flags}"
        );
    }

    #[test]
    fn the_module_pins_the_same_release() -> Result<()> {
        let go_mod = fs::read_to_string(module_dir().join("go.mod"))?;
        assert!(
            go_mod.contains(&format!("k8s.io/kubernetes {KUBERNETES}")),
            "xtask/kube/go.mod must require k8s.io/kubernetes {KUBERNETES}"
        );
        for (_, package) in PROGRAMS {
            assert!(
                go_mod.contains(&format!("\t{package}\n")),
                "xtask/kube/go.mod must list {package} as a tool"
            );
        }
        Ok(())
    }
}
