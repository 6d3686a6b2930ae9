//! Child processes: building the `titan` binary, starting it, reading what it prints, and
//! stopping it by signal; a process is killed when its handle is dropped.

use std::{
    collections::HashMap,
    io::{BufRead, BufReader},
    path::PathBuf,
    process::{Child, ChildStderr, ChildStdout, Command, Stdio},
    sync::{Arc, Mutex, OnceLock, PoisonError},
    thread::JoinHandle,
    time::Duration,
};

use nix::{
    sys::signal::{self, Signal},
    unistd::Pid,
};

/// Builds `titan` once per process (a no-op when it is up to date) and returns its path.
/// The release build is for the load generator.
pub fn titan_binary(release: bool) -> PathBuf {
    workspace_binary("titan", "titan", release)
}

/// Builds executable `bin` of workspace package `package` once per process (a no-op when it
/// is up to date) and returns its path. `cargo test --workspace` does not always build the
/// executable of a package without integration tests, so the suite asks cargo for it instead
/// of guessing a path.
pub fn workspace_binary(package: &str, bin: &str, release: bool) -> PathBuf {
    static BUILT: OnceLock<Mutex<HashMap<(String, bool), PathBuf>>> = OnceLock::new();
    let built = BUILT.get_or_init(Default::default);
    let key = (bin.to_owned(), release);
    let mut built = built
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(path) = built.get(&key) {
        return path.clone();
    }
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut args = vec![
        "build",
        "--quiet",
        "-p",
        package,
        "--bin",
        bin,
        "--message-format=json",
    ];
    if release {
        args.push("--release");
    }
    let output = Command::new(cargo)
        .args(&args)
        .stderr(Stdio::inherit())
        .output()
        .unwrap_or_else(|e| panic!("run cargo build for {bin}: {e}"));
    assert!(output.status.success(), "cargo build -p {package} failed");
    let path = String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|msg| msg["reason"] == "compiler-artifact" && msg["target"]["name"] == bin)
        .find_map(|msg| msg["executable"].as_str().map(PathBuf::from))
        .unwrap_or_else(|| panic!("cargo reported no {bin} executable"));
    built.insert(key, path.clone());
    path
}

/// Runs `command` to completion and returns what it printed, killing it and failing the test
/// when it outlives `deadline` — a deadline, not a pace: a script that hangs fails instead of
/// hanging the suite. Both pipes are read while it runs, so a chatty child cannot block on a
/// full pipe buffer and be mistaken for a hung one.
pub fn output_within(command: &mut Command, deadline: Duration) -> std::process::Output {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {command:?}: {e}"));
    let stdout = child.stdout.take().map(read_to_end);
    let stderr = child.stderr.take().map(read_to_end);
    let started = std::time::Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for child") {
            break Some(status);
        }
        if started.elapsed() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let joined = |reader: Option<JoinHandle<Vec<u8>>>| {
        reader
            .map(|r| r.join().unwrap_or_default())
            .unwrap_or_default()
    };
    let (stdout, stderr) = (joined(stdout), joined(stderr));
    let Some(status) = status else {
        panic!(
            "{command:?} did not finish within {deadline:?}: {}",
            String::from_utf8_lossy(&stderr)
        );
    };
    std::process::Output {
        status,
        stdout,
        stderr,
    }
}

/// CPU time of `n` clock ticks as `/proc` counts them: 100 per second (USER_HZ, fixed by the
/// Linux ABI whatever the kernel's own tick rate).
pub fn ticks(n: u64) -> Duration {
    Duration::from_millis(n * 10)
}

/// utime + stime of a `/proc/<pid>/stat` line. The fields after the command, which is in
/// parentheses and may itself hold spaces and parentheses: state first, utime and stime 12th
/// and 13th (fields 14 and 15 of proc(5)), in [`ticks`].
fn cpu_of_stat(stat: &str) -> Option<Duration> {
    let mut fields = stat[stat.rfind(')')? + 1..].split_whitespace().skip(11);
    let user: u64 = fields.next()?.parse().ok()?;
    let system: u64 = fields.next()?.parse().ok()?;
    Some(ticks(user + system))
}

/// CPU time used so far by the machine's processes, summed by command name (`comm`, at most
/// 15 characters: `postgres`, `redis-server`, `titan`): what a benchmark reads before and
/// after a phase to show which program spent a saturated machine's cores. Processes that
/// vanish while it reads are skipped.
pub fn cpu_by_command() -> std::io::Result<std::collections::BTreeMap<String, Duration>> {
    let mut by = std::collections::BTreeMap::new();
    for entry in std::fs::read_dir("/proc")? {
        let entry = entry?;
        if !entry
            .file_name()
            .to_string_lossy()
            .bytes()
            .all(|b| b.is_ascii_digit())
        {
            continue;
        }
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        if let (Some(comm), Some(cpu)) = (comm_of_stat(&stat), cpu_of_stat(&stat)) {
            *by.entry(comm.to_owned()).or_default() += cpu;
        }
    }
    Ok(by)
}

/// The command name between the first `(` and the last `)` of a `/proc/<pid>/stat` line.
fn comm_of_stat(stat: &str) -> Option<&str> {
    stat.get(stat.find('(')? + 1..stat.rfind(')')?)
}

/// Reads a pipe to its end on a thread of its own.
fn read_to_end(mut pipe: impl std::io::Read + Send + 'static) -> JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        // A read error ends the capture; what was read so far is still worth printing.
        let _ = pipe.read_to_end(&mut bytes);
        bytes
    })
}

/// A child process that is killed when dropped, so a failing test leaves nothing running.
#[derive(Debug)]
pub struct Process {
    child: Child,
    pub stdout: Option<BufReader<ChildStdout>>,
    pub stderr: Option<BufReader<ChildStderr>>,
    /// Every stderr line read so far, by [`Self::log_line`] or the drain thread: what a test
    /// inspects after the fact (e.g. that no secret was ever logged).
    log: Arc<Mutex<String>>,
    drain: Option<JoinHandle<()>>,
}

impl Process {
    pub fn spawn(command: &mut Command) -> Self {
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {command:?}: {e}"));
        let stdout = child.stdout.take().map(BufReader::new);
        let stderr = child.stderr.take().map(BufReader::new);
        Self {
            child,
            stdout,
            stderr,
            log: Arc::default(),
            drain: None,
        }
    }

    /// The operating system's process id (for reading `/proc/<id>/status`).
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// CPU time the process has used so far, all its threads, user and system: what a
    /// benchmark divides by the work done, a figure that other load on the machine does not
    /// inflate the way it inflates latency.
    pub fn cpu_time(&self) -> std::io::Result<Duration> {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.id()))?;
        cpu_of_stat(&stat)
            .ok_or_else(|| std::io::Error::other(format!("unexpected /proc stat: {stat}")))
    }

    fn pid(&self) -> Pid {
        Pid::from_raw(i32::try_from(self.id()).expect("pid fits i32"))
    }

    /// Sends `sig` (SIGTERM for a graceful stop, SIGKILL for a crash).
    pub fn signal(&self, sig: Signal) {
        signal::kill(self.pid(), sig).expect("signal child");
    }

    /// Waits for the exit, failing after `deadline`.
    pub fn wait_exit(&mut self, deadline: Duration) -> std::process::ExitStatus {
        let until = std::time::Instant::now() + deadline;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait child") {
                return status;
            }
            assert!(
                std::time::Instant::now() < until,
                "process {} did not exit within {deadline:?}",
                self.child.id()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Reads stdout lines until one starts with `prefix`; returns the rest of that line.
    pub fn stdout_line(&mut self, prefix: &str) -> String {
        let out = self.stdout.as_mut().expect("stdout piped");
        let mut line = String::new();
        loop {
            line.clear();
            let n = out.read_line(&mut line).expect("read stdout");
            assert!(n > 0, "process ended before printing {prefix:?}");
            if let Some(rest) = line.trim_end().strip_prefix(prefix) {
                return rest.trim().to_owned();
            }
        }
    }

    /// Reads JSON log lines on stderr until `pick` finds what it wants in one.
    pub fn log_line<T>(&mut self, mut pick: impl FnMut(&serde_json::Value) -> Option<T>) -> T {
        let err = self.stderr.as_mut().expect("stderr piped");
        let mut line = String::new();
        loop {
            line.clear();
            let n = err.read_line(&mut line).expect("read stderr");
            assert!(
                n > 0,
                "process ended before logging what the test waits for"
            );
            keep(&self.log, &line);
            if let Ok(json) = serde_json::from_str::<serde_json::Value>(&line)
                && let Some(found) = pick(&json)
            {
                return found;
            } else {
                eprint!("{line}");
            }
        }
    }

    /// Forwards the rest of stderr to the test's output in the background, so the pipe never fills.
    pub fn drain_stderr(&mut self) {
        if let Some(err) = self.stderr.take() {
            let log = Arc::clone(&self.log);
            self.drain = Some(std::thread::spawn(move || {
                for line in err.lines().map_while(Result::ok) {
                    eprintln!("{line}");
                    keep(&log, &line);
                }
            }));
        }
    }

    /// Everything the process wrote to stderr, once it has exited (waits up to `deadline`).
    pub fn log_after_exit(&mut self, deadline: Duration) -> String {
        self.wait_exit(deadline);
        if let Some(drain) = self.drain.take() {
            drain.join().expect("stderr drain thread");
        }
        self.log
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn keep(log: &Mutex<String>, line: &str) {
    let mut log = log.lock().unwrap_or_else(PoisonError::into_inner);
    log.push_str(line.trim_end());
    log.push('\n');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_time_is_utime_plus_stime_after_the_command() {
        // A command with a space and a parenthesis, as a thread may name itself.
        let stat = "4242 (tokio (rt) 1) S 1 4242 4242 0 -1 4194560 2195 0 0 0 \
                    731 269 0 0 20 0 9 0 123456 0 0";
        assert_eq!(cpu_of_stat(stat), Some(Duration::from_millis(10_000)));
        assert_eq!(cpu_of_stat("4242 (titan) S 1"), None);
        assert_eq!(cpu_of_stat("no parenthesis"), None);
        assert_eq!(comm_of_stat(stat), Some("tokio (rt) 1"));
        assert_eq!(comm_of_stat("no parenthesis"), None);
    }

    #[test]
    fn this_process_is_found_by_its_command() {
        let me = std::fs::read_to_string("/proc/self/stat").expect("own stat");
        let comm = comm_of_stat(&me).expect("own command").to_owned();
        let by = cpu_by_command().expect("read /proc");
        assert!(by.contains_key(&comm), "{comm} missing from {by:?}");
    }
}
