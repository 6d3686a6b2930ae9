//! `cargo xtask chart` (check the Helm chart and the generated manifests) and `cargo xtask gen`
//! (regenerate them). Both run `charts/check.py` with the real Helm engine (the PyPI package
//! helm-python-sdk) from a private virtualenv under `target/xtask-ci/chart-venv`, built from
//! the pinned `charts/requirements.txt` and rebuilt whenever that file changes.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use anyhow::{Context, Result, bail};

use crate::{packages, process};

/// What `cargo xtask test` prints when the chart step fails, so nobody has to read check.py
/// to know what to do.
pub const FAILURE_HINT: &str = "the Helm chart check failed: fix charts/titan-operator, or \
     run `cargo xtask gen` and commit what it changes (files/crds, manifests/install.yaml)";

/// Where the virtualenv lives, and the copy of the requirements it was built from.
#[derive(Debug, Clone)]
pub struct Venv {
    dir: PathBuf,
}

impl Venv {
    /// The venv xtask uses for the chart tools (inside cargo's target directory, so
    /// `cargo clean` removes it and git never sees it).
    pub fn default_location() -> Self {
        Self::at(crate::target_dir().join("xtask-ci").join("chart-venv"))
    }

    fn at(dir: PathBuf) -> Self {
        Self { dir }
    }

    /// The venv's interpreter.
    pub fn python(&self) -> PathBuf {
        self.dir.join("bin").join("python")
    }

    /// The requirements the venv was built from, recorded after a successful install.
    fn stamp(&self) -> PathBuf {
        self.dir.join("titan-requirements.txt")
    }

    /// Whether the venv exists and was built from exactly `requirements`.
    fn is_current(&self, requirements: &str) -> bool {
        self.python().exists()
            && fs::read_to_string(self.stamp()).is_ok_and(|built| built == requirements)
    }

    /// Builds the venv unless it is current. It is built beside the final place and renamed
    /// into it only once pip succeeded, so an interrupted or failed install never leaves a
    /// half-built venv that looks usable.
    pub fn ensure(&self, requirements_file: &Path) -> Result<()> {
        let requirements = fs::read_to_string(requirements_file)
            .with_context(|| format!("reading {}", requirements_file.display()))?;
        if self.is_current(&requirements) {
            return Ok(());
        }
        let python3 = process::which("python3").context(
            "python3 is not on PATH: install it (Debian: apt-get install python3 python3-venv)",
        )?;
        let building = self
            .dir
            .with_file_name(format!("chart-venv.building-{}", std::process::id()));
        if building.exists() {
            fs::remove_dir_all(&building)
                .with_context(|| format!("removing {}", building.display()))?;
        }
        eprintln!(
            "==> building the chart tools' virtualenv ({})",
            self.dir.display()
        );
        let status = process::run(
            "python3 -m venv",
            Command::new(&python3).args(["-m", "venv"]).arg(&building),
        )?;
        if !status.success() {
            let _ = fs::remove_dir_all(&building);
            bail!(
                "`python3 -m venv` failed ({status}); on Debian it needs the python3-venv package"
            );
        }
        let pip = process::run(
            "pip install",
            Command::new(building.join("bin").join("python"))
                .args(["-m", "pip", "install", "--quiet", "--no-input"])
                .args(["--disable-pip-version-check", "-r"])
                .arg(requirements_file),
        )?;
        if !pip.success() {
            let _ = fs::remove_dir_all(&building);
            bail!(
                "pip could not install {} ({pip}); is PyPI reachable?",
                requirements_file.display()
            );
        }
        fs::write(building.join("titan-requirements.txt"), &requirements)
            .context("recording the venv's requirements")?;
        if self.dir.exists() {
            fs::remove_dir_all(&self.dir)
                .with_context(|| format!("removing the old {}", self.dir.display()))?;
        }
        fs::rename(&building, &self.dir)
            .with_context(|| format!("moving the new venv to {}", self.dir.display()))?;
        Ok(())
    }
}

/// The files of the chart check, relative to the repository root.
pub fn requirements_file() -> PathBuf {
    crate::repo_root().join("charts").join("requirements.txt")
}

/// `check.py` (with `--write` when `write`) run by the venv's interpreter from the repo root.
pub fn check_command(venv: &Venv, write: bool) -> Command {
    let mut cmd = Command::new(venv.python());
    cmd.current_dir(crate::repo_root())
        .arg(crate::repo_root().join("charts").join("check.py"));
    if write {
        cmd.arg("--write");
    }
    cmd
}

/// The system packages the venv needs (Debian splits `venv` out of python3).
fn ensure_python() -> Result<()> {
    packages::ensure(packages::PYTHON)
}

/// `cargo xtask chart`: lint, render and validate the chart, and check the generated files.
pub fn check() -> Result<ExitCode> {
    ensure_python()?;
    let venv = Venv::default_location();
    venv.ensure(&requirements_file())?;
    let mut cmd = check_command(&venv, false);
    eprintln!("==> chart: {}", process::describe(&cmd));
    if process::run("chart check", &mut cmd)?.success() {
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!("xtask chart: {FAILURE_HINT}");
        Ok(ExitCode::FAILURE)
    }
}

/// `cargo xtask gen`: every generated, committed file, in dependency order: the CRDs from the
/// operator's types, then the chart's copy of them and `manifests/install.yaml` from Helm.
pub fn generate() -> Result<ExitCode> {
    let mut crds = crate::cargo();
    crds.args(["run", "--quiet", "-p", "titan-operator", "--"])
        .args(["crd", "--out", "manifests/crds"]);
    eprintln!("==> CRDs: {}", process::describe(&crds));
    let status = process::run("titan-operator crd", &mut crds)?;
    if !status.success() {
        bail!("`titan-operator crd` failed ({status})");
    }
    ensure_python()?;
    let venv = Venv::default_location();
    venv.ensure(&requirements_file())?;
    let mut write = check_command(&venv, true);
    eprintln!("==> chart files: {}", process::describe(&write));
    if !process::run("chart gen", &mut write)?.success() {
        bail!("charts/check.py --write failed: the chart does not lint or render (see above)");
    }
    eprintln!("xtask gen: up to date; commit whatever `git status` shows");
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("xtask-chart-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("scratch dir");
        dir
    }

    #[test]
    fn a_venv_is_current_only_when_built_from_the_same_requirements() {
        let dir = scratch("current");
        let venv = Venv::at(dir.join("venv"));
        assert!(!venv.is_current("a==1\n"), "nothing built yet");

        fs::create_dir_all(dir.join("venv/bin")).expect("bin");
        fs::write(venv.python(), "").expect("python");
        assert!(
            !venv.is_current("a==1\n"),
            "an interpreter without a stamp is a half-built venv"
        );

        fs::write(venv.stamp(), "a==1\n").expect("stamp");
        assert!(venv.is_current("a==1\n"));
        assert!(
            !venv.is_current("a==2\n"),
            "a changed pin rebuilds the venv"
        );
        fs::remove_dir_all(&dir).expect("cleanup");
    }

    #[test]
    fn the_check_runs_check_py_with_the_venv_python_from_the_repo_root() {
        let venv = Venv::at(PathBuf::from("/v"));
        let check = check_command(&venv, false);
        assert_eq!(check.get_program(), "/v/bin/python");
        let args: Vec<_> = check.get_args().collect();
        assert_eq!(args.len(), 1);
        assert!(Path::new(args[0]).ends_with("charts/check.py"));
        assert_eq!(check.get_current_dir(), Some(crate::repo_root().as_path()));

        let write = check_command(&venv, true);
        assert_eq!(write.get_args().last(), Some("--write".as_ref()));
    }

    #[test]
    fn the_files_it_names_exist() {
        assert!(requirements_file().is_file());
        assert!(crate::repo_root().join("charts/check.py").is_file());
        let pins = fs::read_to_string(requirements_file()).expect("requirements");
        for line in pins
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
        {
            assert!(
                line.contains("=="),
                "{line}: every requirement is pinned, so CI renders the same everywhere"
            );
        }
    }
}
