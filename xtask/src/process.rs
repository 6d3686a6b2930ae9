//! Process plumbing shared by the commands: free ports, liveness of recorded PIDs, stopping a
//! PID with a deadline, and running a child that Ctrl-C can interrupt.

use std::fs;
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use nix::sys::signal::Signal;
use nix::unistd::Pid;

use crate::signals;

/// How long a foreground child gets to exit after a forwarded Ctrl-C before it is killed.
const CHILD_GRACE: Duration = Duration::from_secs(15);

/// Sends `signal` to `pid`, or to its whole process group when `group` is set.
pub fn kill(pid: u32, signal: Signal, group: bool) -> Result<()> {
    let raw = i32::try_from(pid).with_context(|| format!("pid {pid} out of range"))?;
    let target = if group {
        Pid::from_raw(-raw)
    } else {
        Pid::from_raw(raw)
    };
    nix::sys::signal::kill(target, signal).with_context(|| format!("sending {signal} to {pid}"))
}

/// Whether `pid` names a running process. A zombie counts as gone: a stopped daemon stays one
/// until PID 1 reaps it, which some init processes do late, and a zombie holds no port or file.
pub fn alive(pid: u32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state letter follows the command name, which is in parentheses and may itself
        // hold spaces and parentheses.
        Ok(stat) => match stat
            .rfind(')')
            .and_then(|i| stat[i + 1..].split_whitespace().next())
        {
            Some(state) => state != "Z" && state != "X",
            None => false,
        },
        Err(_) => false,
    }
}

/// The kernel's short name of `pid` (`/proc/PID/comm`, at most 15 bytes).
pub fn comm(pid: u32) -> Option<String> {
    fs::read_to_string(format!("/proc/{pid}/comm"))
        .ok()
        .map(|s| s.trim_end().to_owned())
}

/// Whether `pid` is alive and still the program we recorded, not a reused PID.
pub fn alive_as(pid: u32, comm_prefix: &str) -> bool {
    alive(pid) && comm(pid).is_some_and(|c| c.starts_with(comm_prefix))
}

/// The working directory of `pid`, when we may read it.
pub fn cwd(pid: u32) -> Option<std::path::PathBuf> {
    fs::read_link(format!("/proc/{pid}/cwd")).ok()
}

fn process_group(pid: u32) -> Option<u32> {
    let raw = i32::try_from(pid).ok()?;
    nix::unistd::getpgid(Some(Pid::from_raw(raw)))
        .ok()
        .and_then(|g| u32::try_from(g.as_raw()).ok())
}

fn wait_gone(pid: u32, deadline: Duration) -> bool {
    let start = Instant::now();
    while alive(pid) {
        if start.elapsed() > deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(20));
    }
    true
}

/// Stops `pid` with `signal`, polls until it is gone, and kills it (with its process group when
/// it leads one, as daemons do, so no worker outlives it) once `grace` has passed.
pub fn stop(label: &str, pid: u32, signal: Signal, grace: Duration) -> Result<()> {
    if !alive(pid) {
        return Ok(());
    }
    let started = Instant::now();
    // ESRCH here means it went away in between, which is what we want.
    let _ = kill(pid, signal, false);
    if wait_gone(pid, grace) {
        eprintln!(
            "  stopped {label} (pid {pid}) in {}",
            secs(started.elapsed())
        );
        return Ok(());
    }
    let group = process_group(pid) == Some(pid);
    eprintln!(
        "  {label} (pid {pid}) ignored {signal} for {}; killing it",
        secs(grace)
    );
    let _ = kill(pid, Signal::SIGKILL, group);
    if wait_gone(pid, Duration::from_secs(5)) {
        return Ok(());
    }
    bail!("{label} (pid {pid}) is still running after SIGKILL")
}

/// Picks `n` distinct free ports on 127.0.0.1. All listeners are held until every port is
/// chosen so the kernel cannot hand out the same one twice.
pub fn free_ports(n: usize) -> Result<Vec<u16>> {
    let listeners = (0..n)
        .map(|_| {
            TcpListener::bind("127.0.0.1:0").context("binding 127.0.0.1:0 to find a free port")
        })
        .collect::<Result<Vec<_>>>()?;
    listeners
        .iter()
        .map(|l| Ok(l.local_addr().context("reading a bound port")?.port()))
        .collect()
}

/// Whether nothing listens on 127.0.0.1:`port` (and we may bind it).
pub fn port_free(port: u16) -> bool {
    TcpListener::bind(("127.0.0.1", port)).is_ok()
}

/// Runs `cmd` to completion as a foreground step, with stdin closed, in a process group of its
/// own: Ctrl-C reaches xtask alone, which forwards it to the whole group (cargo and the test
/// binaries under it) and kills the group if it lingers. Returns the exit status; the caller
/// checks `signals::interrupted()` to tell an interrupted step from a failed one.
pub fn run(label: &str, cmd: &mut Command) -> Result<ExitStatus> {
    signals::check()?;
    cmd.stdin(Stdio::null()).process_group(0);
    let child = cmd
        .spawn()
        .with_context(|| format!("starting {label} ({})", describe(cmd)))?;
    wait(label, child, true)
}

/// Waits for `child` (which leads its own process group when `group` is set). On a signal,
/// forwards it (SIGTERM for anything but SIGINT), waits `CHILD_GRACE`, then SIGKILLs.
pub fn wait(label: &str, mut child: Child, group: bool) -> Result<ExitStatus> {
    let pid = child.id();
    signals::register(label, pid, group);
    let result = (|| loop {
        if let Some(status) = child
            .try_wait()
            .with_context(|| format!("waiting for {label}"))?
        {
            return Ok(status);
        }
        if let Some(received) = signals::received() {
            let forward = if received == Signal::SIGINT {
                Signal::SIGINT
            } else {
                Signal::SIGTERM
            };
            let _ = kill(pid, forward, group);
            let start = Instant::now();
            let status = loop {
                if let Some(status) = child
                    .try_wait()
                    .with_context(|| format!("waiting for {label}"))?
                {
                    break status;
                }
                if start.elapsed() > CHILD_GRACE {
                    eprintln!(
                        "  {label} (pid {pid}) did not exit within {}; killing it",
                        secs(CHILD_GRACE)
                    );
                    let _ = kill(pid, Signal::SIGKILL, group);
                    break child
                        .wait()
                        .with_context(|| format!("waiting for {label}"))?;
                }
                thread::sleep(Duration::from_millis(20));
            };
            if group {
                // Whatever the leader left in its group (a test binary that ignored the
                // signal, a shell's background job) goes too; ESRCH when nothing is left.
                let _ = kill(pid, Signal::SIGKILL, true);
            }
            return Ok(status);
        }
        thread::sleep(Duration::from_millis(20));
    })();
    signals::unregister(pid);
    result
}

/// Runs a short helper command (no Ctrl-C forwarding needed) and returns its stdout; a
/// non-zero exit becomes an error carrying its stderr.
pub fn output(cmd: &mut Command) -> Result<String> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {}", describe(cmd)))?;
    if !out.status.success() {
        bail!(
            "{} failed ({}): {}",
            describe(cmd),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    String::from_utf8(out.stdout)
        .with_context(|| format!("output of {} is not UTF-8", describe(cmd)))
}

/// A shell-like rendering of `cmd` for messages; a program given by path is shown by name
/// (`cargo`, not the toolchain's full path).
pub fn describe(cmd: &Command) -> String {
    let program = cmd.get_program();
    let program = Path::new(program).file_name().unwrap_or(program);
    std::iter::once(program)
        .chain(cmd.get_args())
        .map(|a| {
            let a = a.to_string_lossy();
            if a.is_empty() || a.contains(|c: char| c.is_whitespace() || c == '\'' || c == '"') {
                format!("'{}'", a.replace('\'', r"'\''"))
            } else {
                a.into_owned()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// The last `lines` lines of a log file, for error messages; a note when it cannot be read.
pub fn tail(path: &Path, lines: usize) -> String {
    match fs::read(path) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let all: Vec<&str> = text.lines().collect();
            let from = all.len().saturating_sub(lines);
            format!(
                "--- last lines of {} ---\n{}",
                path.display(),
                all[from..].join("\n")
            )
        }
        Err(e) => format!("--- {} cannot be read: {e} ---", path.display()),
    }
}

/// `1.23s` for timing lines.
pub fn secs(d: Duration) -> String {
    format!("{:.2}s", d.as_secs_f64())
}

/// Finds `program` on PATH.
pub fn which(program: &str) -> Option<std::path::PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn describe_quotes_only_what_needs_it() {
        let mut cmd = Command::new("redis-server");
        cmd.args(["--save", "", "--logfile", "/a b/r.log", "--port", "1"]);
        assert_eq!(
            describe(&cmd),
            "redis-server --save '' --logfile '/a b/r.log' --port 1"
        );
    }

    #[test]
    fn secs_has_two_decimals() {
        assert_eq!(secs(Duration::from_millis(1234)), "1.23s");
    }
}
