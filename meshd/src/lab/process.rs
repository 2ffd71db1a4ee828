//! The lab's daemons as processes: started detached with a pid file, found again through it, and
//! stopped with a bounded wait.
//!
//! A pid file alone proves little (the daemon may have died and its number been reused), so a
//! process counts as the daemon only if it is alive and its command line names the lab file it was
//! started with (meshd's configuration, BIRD's control socket). A zombie counts as gone: whoever
//! inherited a stopped daemon may not have reaped it yet.

use std::path::Path;
use std::process::{Command, Stdio};
use std::thread;
use std::time::Duration;

use anyhow::{Context, bail};

use meshd_wg::sys::clock;
use meshd_wg::sys::netns::{self, Signal};

/// How long a daemon has to exit after SIGTERM before it gets SIGKILL.
pub const STOP_GRACE: Duration = Duration::from_secs(5);
/// How long a process may take to vanish after SIGKILL.
const KILL_WAIT: Duration = Duration::from_secs(2);

/// The number in a pid file, if it holds one.
pub fn read_pid(path: &Path) -> Option<u32> {
    std::fs::read_to_string(path)
        .ok()?
        .trim()
        .parse()
        .ok()
        .filter(|&p| p > 0)
}

/// Whether `pid` is a live process (not a zombie).
pub fn alive(pid: u32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // `pid (comm) S ...`: the state follows the last parenthesis (comm may hold any character).
    let state = stat
        .rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().next());
    !matches!(state, None | Some("Z" | "X" | "x"))
}

/// The command line of `pid`, its arguments joined by spaces.
pub fn cmdline(pid: u32) -> Option<String> {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let args: Vec<String> = raw
        .split(|&b| b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    Some(args.join(" "))
}

/// The live process named in `pid_file` whose command line contains `marker`.
pub fn running(pid_file: &Path, marker: &str) -> Option<u32> {
    let pid = read_pid(pid_file)?;
    (alive(pid) && cmdline(pid).is_some_and(|c| c.contains(marker))).then_some(pid)
}

/// Waits (at most `timeout`) for the process named in `pid_file` to finish exiting, if it is in the
/// middle of it: a killed or stopping process loses its command line before it closes its
/// descriptors, so [`running`] no longer names it while it still holds what a successor needs (meshd's
/// state-directory lock, its interface, its socket). A live process with a command line is left
/// alone: that is either the daemon, which [`running`] finds, or another process that reused the pid.
pub fn wait_exiting(pid_file: &Path, timeout: Duration) -> anyhow::Result<()> {
    let Some(pid) = read_pid(pid_file) else {
        return Ok(());
    };
    let exiting = alive(pid) && cmdline(pid).is_some_and(|c| c.is_empty());
    if exiting && !wait_gone(pid, timeout) {
        bail!("pid {pid} is still exiting {timeout:?} later");
    }
    Ok(())
}

/// Starts `cmd` as a daemon: in a session of its own, standard input from /dev/null, standard output
/// and error appended to `log`. Its pid goes to `pid_file`. Does not wait for it.
pub fn spawn_detached(cmd: &mut Command, log: &Path, pid_file: &Path) -> anyhow::Result<u32> {
    let (out, err) = super::command::append_to(log)?;
    netns::new_session(cmd);
    let child = cmd
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .with_context(|| format!("cannot run `{}`", super::command::display(cmd)))?;
    let pid = child.id();
    // The daemon outlives this command; whoever inherits it reaps it (see `alive` for zombies).
    drop(child);
    std::fs::write(pid_file, format!("{pid}\n"))
        .with_context(|| format!("cannot write {}", pid_file.display()))?;
    Ok(pid)
}

/// How to stop a daemon.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum How {
    /// SIGTERM, then SIGKILL if it is still there after the grace period.
    Term,
    /// SIGKILL at once.
    Kill,
}

/// How a daemon ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stopped {
    /// It exited after SIGTERM.
    Exited { pid: u32, after: Duration },
    /// It got SIGKILL: asked for, or it ignored SIGTERM for the whole grace period.
    Killed { pid: u32, after_term: bool },
}

impl std::fmt::Display for Stopped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Stopped::Exited { pid, after } => {
                write!(f, "pid {pid} exited {:.1} s after SIGTERM", after.as_secs_f64())
            }
            Stopped::Killed {
                pid,
                after_term: true,
            } => write!(f, "pid {pid} ignored SIGTERM and was killed"),
            Stopped::Killed {
                pid,
                after_term: false,
            } => write!(f, "pid {pid} killed (SIGKILL)"),
        }
    }
}

/// Stops `pid` and waits (bounded) until it is gone.
pub fn stop(pid: u32, how: How, grace: Duration) -> anyhow::Result<Stopped> {
    let started = clock::now();
    if how == How::Term {
        send(pid, Signal::Term)?;
        if wait_gone(pid, grace) {
            return Ok(Stopped::Exited {
                pid,
                after: clock::now() - started,
            });
        }
    }
    send(pid, Signal::Kill)?;
    if !wait_gone(pid, KILL_WAIT) {
        bail!("pid {pid} is still there {KILL_WAIT:?} after SIGKILL");
    }
    Ok(Stopped::Killed {
        pid,
        after_term: how == How::Term,
    })
}

/// Sends SIGTERM to each of `pids`, waits for all of them together (bounded by `grace`), and kills
/// the ones left. Returns how each ended.
pub fn stop_all(pids: &[u32], grace: Duration) -> Vec<anyhow::Result<Stopped>> {
    let started = clock::now();
    let sent: Vec<anyhow::Result<()>> = pids.iter().map(|&pid| send(pid, Signal::Term)).collect();
    let deadline = started + grace;
    while pids.iter().any(|&p| alive(p)) && clock::now() < deadline {
        thread::sleep(Duration::from_millis(20));
    }
    pids.iter()
        .zip(sent)
        .map(|(&pid, sent)| {
            sent?;
            if !alive(pid) {
                return Ok(Stopped::Exited {
                    pid,
                    after: clock::now() - started,
                });
            }
            stop(pid, How::Kill, Duration::ZERO).map(|_| Stopped::Killed {
                pid,
                after_term: true,
            })
        })
        .collect()
}

fn send(pid: u32, signal: Signal) -> anyhow::Result<()> {
    match netns::signal(pid, signal) {
        Ok(()) => Ok(()),
        // Gone already (between the look and the signal): what was wanted.
        Err(e) if e.raw_os_error() == Some(libc::ESRCH) => Ok(()),
        Err(e) => Err(e).with_context(|| format!("cannot signal pid {pid}")),
    }
}

/// Waits at most `timeout` for `pid` to be gone; whether it is.
fn wait_gone(pid: u32, timeout: Duration) -> bool {
    let deadline = clock::now() + timeout;
    loop {
        if !alive(pid) {
            return true;
        }
        if clock::now() >= deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(10));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_alive_and_found_by_its_command_line() {
        let me = std::process::id();
        assert!(alive(me));
        let line = cmdline(me).unwrap();
        let dir = std::env::temp_dir().join(format!("meshd-lab-process-{me}"));
        std::fs::create_dir_all(&dir).unwrap();
        let pid_file = dir.join("x.pid");
        std::fs::write(&pid_file, format!("{me}\n")).unwrap();
        let word = line.split_whitespace().next().unwrap();
        assert_eq!(running(&pid_file, word), Some(me));
        assert_eq!(running(&pid_file, "no-such-marker-in-the-command-line"), None);
        // A live process with its command line is not exiting: no wait, whatever it is.
        let started = clock::now();
        wait_exiting(&pid_file, Duration::from_secs(5)).unwrap();
        assert!(clock::now() - started < Duration::from_secs(1));
        std::fs::write(&pid_file, "garbage").unwrap();
        assert_eq!(running(&pid_file, word), None);
        wait_exiting(&pid_file, Duration::from_secs(5)).unwrap();
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn a_daemon_is_stopped_with_term_and_a_stubborn_one_with_kill() {
        let dir = std::env::temp_dir().join(format!("meshd-lab-stop-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let log = dir.join("log");
        let pid_file = dir.join("pid");
        let pid = spawn_detached(Command::new("sleep").arg("30"), &log, &pid_file).unwrap();
        assert_eq!(running(&pid_file, "sleep 30"), Some(pid));
        let stopped = stop(pid, How::Term, Duration::from_secs(5)).unwrap();
        assert!(matches!(stopped, Stopped::Exited { .. }), "{stopped}");
        assert!(!alive(pid));

        let stubborn = spawn_detached(
            Command::new("sh").args(["-c", "trap '' TERM; while :; do sleep 0.1; done"]),
            &log,
            &pid_file,
        )
        .unwrap();
        thread::sleep(Duration::from_millis(100));
        let stopped = stop(stubborn, How::Term, Duration::from_millis(300)).unwrap();
        assert_eq!(
            stopped,
            Stopped::Killed {
                pid: stubborn,
                after_term: true
            }
        );
        let _ = std::fs::remove_dir_all(dir);
    }
}
