//! Ctrl-C, SIGTERM and SIGHUP handling for every command.
//!
//! signal-hook's handler writes to a pipe that one thread reads. Not `sigwait` on blocked
//! signals: std does not reset the signal mask in the processes it spawns, so servers started
//! by xtask would inherit SIGTERM blocked and ignore it. The first signal only sets a flag: the
//! main thread sees it in its wait loops, forwards it to its foreground child and stops the
//! servers itself, in order. A second signal means "now": the signal thread kills what is
//! registered here and exits.

use std::sync::Mutex;
use std::sync::atomic::{AtomicI32, Ordering};
use std::thread;
use std::time::Duration;

use anyhow::{Context, Result};
use nix::sys::signal::Signal;
use signal_hook::iterator::Signals;

use crate::process;

/// The number of the first signal received, 0 while none was.
static RECEIVED: AtomicI32 = AtomicI32::new(0);

/// What a second signal must kill, newest last.
static EMERGENCY: Mutex<Vec<Registered>> = Mutex::new(Vec::new());

#[derive(Debug, Clone)]
struct Registered {
    label: String,
    pid: u32,
    group: bool,
}

/// Installs the handlers and starts the signal thread; call first thing in `main`.
pub fn install() -> Result<()> {
    let wanted = [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP].map(|s| s as i32);
    let mut signals = Signals::new(wanted).context("installing signal handlers")?;
    thread::Builder::new()
        .name("signals".to_owned())
        .spawn(move || {
            for raw in signals.forever() {
                if let Ok(signal) = Signal::try_from(raw) {
                    on_signal(signal);
                }
            }
        })
        .context("starting the signal thread")?;
    Ok(())
}

fn on_signal(signal: Signal) {
    if RECEIVED
        .compare_exchange(0, signal as i32, Ordering::SeqCst, Ordering::SeqCst)
        .is_ok()
    {
        eprintln!("\nxtask: {signal} received: stopping (send it again to kill at once)");
        return;
    }
    eprintln!("\nxtask: {signal} received again: killing everything xtask started");
    let registered = match EMERGENCY.lock() {
        Ok(list) => list.clone(),
        Err(poisoned) => poisoned.into_inner().clone(),
    };
    for r in registered.iter().rev() {
        let _ = process::kill(r.pid, Signal::SIGKILL, r.group);
        eprintln!("xtask: killed {} (pid {})", r.label, r.pid);
    }
    std::process::exit(130);
}

/// The signal received so far, if any.
pub fn received() -> Option<Signal> {
    match RECEIVED.load(Ordering::SeqCst) {
        0 => None,
        n => Signal::try_from(n).ok(),
    }
}

pub fn interrupted() -> bool {
    received().is_some()
}

/// Fails with a plain message when a signal arrived; used between steps and in poll loops.
pub fn check() -> Result<()> {
    match received() {
        Some(signal) => anyhow::bail!("interrupted by {signal}"),
        None => Ok(()),
    }
}

/// Sleeps up to `pause`, but returns early (with an error) when a signal arrives, so poll
/// loops stop at once on Ctrl-C.
pub fn pause(pause: Duration) -> Result<()> {
    let step = Duration::from_millis(10).min(pause);
    let mut slept = Duration::ZERO;
    while slept < pause {
        check()?;
        thread::sleep(step);
        slept += step;
    }
    check()
}

/// Registers a process for a second-signal kill; `group` kills its whole process group.
pub fn register(label: &str, pid: u32, group: bool) {
    let mut list = EMERGENCY
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    list.push(Registered {
        label: label.to_owned(),
        pid,
        group,
    });
}

pub fn unregister(pid: u32) {
    let mut list = EMERGENCY
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    list.retain(|r| r.pid != pid);
}
