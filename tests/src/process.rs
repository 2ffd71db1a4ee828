//! Bounded waits and child processes that cannot outlive their test.

use std::fmt;
use std::fs::File;
use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;

/// How long a short command (`ip`, `wg`, `ping -c 1`) may take before it counts as hung.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);

#[expect(
    clippy::disallowed_methods,
    reason = "the harness bounds real waits on real processes; it is not protocol code and has no virtual clock"
)]
pub(crate) fn now() -> Instant {
    Instant::now()
}

/// A wait that ran out of time; the message names what was awaited.
#[derive(Debug)]
pub struct WaitTimeout {
    pub what: String,
    pub timeout: Duration,
}

impl fmt::Display for WaitTimeout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "timed out after {:?} waiting for {}", self.timeout, self.what)
    }
}

impl std::error::Error for WaitTimeout {}

/// Polls `cond` until it holds or `timeout` passes. `cond` runs at least once, and once more after
/// the deadline, so a slow poll never loses a condition that became true in time.
pub fn try_wait_until(
    what: &str,
    timeout: Duration,
    mut cond: impl FnMut() -> bool,
) -> Result<(), WaitTimeout> {
    let deadline = now() + timeout;
    let mut pause = Duration::from_millis(5);
    loop {
        if cond() {
            return Ok(());
        }
        if now() >= deadline {
            return Err(WaitTimeout {
                what: what.to_owned(),
                timeout,
            });
        }
        thread::sleep(pause.min(deadline.saturating_duration_since(now())));
        pause = (pause * 2).min(Duration::from_millis(100));
    }
}

/// [`try_wait_until`] for tests: panics with the name of what never happened.
#[track_caller]
pub fn wait_until(what: &str, timeout: Duration, cond: impl FnMut() -> bool) {
    if let Err(e) = try_wait_until(what, timeout, cond) {
        panic!("{e}");
    }
}

/// Why a command did not produce a successful [`Output`].
#[derive(Debug)]
pub enum CmdError {
    Spawn {
        cmd: String,
        error: std::io::Error,
    },
    Timeout {
        cmd: String,
        timeout: Duration,
        stdout: String,
        stderr: String,
    },
    Failed {
        cmd: String,
        status: ExitStatus,
        stdout: String,
        stderr: String,
    },
}

impl fmt::Display for CmdError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CmdError::Spawn { cmd, error } => write!(f, "could not start `{cmd}`: {error}"),
            CmdError::Timeout {
                cmd,
                timeout,
                stdout,
                stderr,
            } => {
                write!(f, "`{cmd}` did not finish within {timeout:?} and was killed")?;
                write_streams(f, stdout, stderr)
            }
            CmdError::Failed {
                cmd,
                status,
                stdout,
                stderr,
            } => {
                write!(f, "`{cmd}` failed ({status})")?;
                write_streams(f, stdout, stderr)
            }
        }
    }
}

fn write_streams(f: &mut fmt::Formatter<'_>, stdout: &str, stderr: &str) -> fmt::Result {
    for (name, text) in [("stdout", stdout), ("stderr", stderr)] {
        if !text.trim().is_empty() {
            write!(f, "\n--- {name} ---\n{}", text.trim_end())?;
        }
    }
    Ok(())
}

impl std::error::Error for CmdError {}

/// The command line as a person would type it, for messages.
pub fn display_command(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for arg in cmd.get_args() {
        s.push(' ');
        s.push_str(&arg.to_string_lossy());
    }
    s
}

/// Runs `cmd` to completion or kills it (and anything it started) after `timeout`.
/// Returns the output whatever the exit status; see [`run_checked`].
pub fn run_bounded(cmd: &mut Command, timeout: Duration) -> Result<Output, CmdError> {
    run_bounded_with_input(cmd, None, timeout)
}

/// [`run_bounded`] with `input` written to the command's standard input.
pub fn run_bounded_with_input(
    cmd: &mut Command,
    input: Option<&[u8]>,
    timeout: Duration,
) -> Result<Output, CmdError> {
    let shown = display_command(cmd);
    let stdin = if input.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    };
    // Its own process group, so that a timeout also kills whatever the command forked.
    cmd.stdin(stdin)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    let mut child = cmd.spawn().map_err(|error| CmdError::Spawn {
        cmd: shown.clone(),
        error,
    })?;
    if let (Some(input), Some(mut pipe)) = (input, child.stdin.take()) {
        let input = input.to_vec();
        // A thread, so a command that never reads cannot block us on a full pipe.
        thread::spawn(move || {
            let _ = std::io::Write::write_all(&mut pipe, &input);
        });
    }
    let stdout = drain(child.stdout.take());
    let stderr = drain(child.stderr.take());
    let deadline = now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if now() >= deadline => break None,
            Ok(None) => thread::sleep(Duration::from_millis(2)),
            Err(error) => return Err(CmdError::Spawn { cmd: shown, error }),
        }
    };
    let Some(status) = status else {
        kill_group(&mut child);
        return Err(CmdError::Timeout {
            cmd: shown,
            timeout,
            stdout: collect(stdout, Duration::from_secs(1)),
            stderr: collect(stderr, Duration::from_secs(1)),
        });
    };
    // A daemon the command left behind may hold the pipes open; don't wait for it forever.
    let stdout = collect(stdout, Duration::from_secs(5)).into_bytes();
    let stderr = collect(stderr, Duration::from_secs(5)).into_bytes();
    Ok(Output {
        status,
        stdout,
        stderr,
    })
}

/// [`run_bounded`], and a non-zero exit is an error too.
pub fn run_checked(cmd: &mut Command, timeout: Duration) -> Result<Output, CmdError> {
    run_checked_with_input(cmd, None, timeout)
}

/// [`run_bounded_with_input`], and a non-zero exit is an error too.
pub fn run_checked_with_input(
    cmd: &mut Command,
    input: Option<&[u8]>,
    timeout: Duration,
) -> Result<Output, CmdError> {
    let shown = display_command(cmd);
    let output = run_bounded_with_input(cmd, input, timeout)?;
    if output.status.success() {
        Ok(output)
    } else {
        Err(CmdError::Failed {
            cmd: shown,
            status: output.status,
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        })
    }
}

fn drain(pipe: Option<impl Read + Send + 'static>) -> mpsc::Receiver<Vec<u8>> {
    let (tx, rx) = mpsc::channel();
    if let Some(mut pipe) = pipe {
        thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = pipe.read_to_end(&mut buf);
            let _ = tx.send(buf);
        });
    }
    rx
}

fn collect(rx: mpsc::Receiver<Vec<u8>>, patience: Duration) -> String {
    String::from_utf8_lossy(&rx.recv_timeout(patience).unwrap_or_default()).into_owned()
}

fn kill_group(child: &mut Child) {
    if let Ok(pid) = i32::try_from(child.id()) {
        let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// A long-running process (a daemon, a server) that is stopped when this guard drops, also when
/// the test panics. Its stdout and stderr go to a log file that is shown if the test fails.
pub struct Background {
    label: String,
    child: Child,
    log: PathBuf,
    exit: Option<ExitStatus>,
}

impl Background {
    /// Starts `cmd` with its output appended to `log`.
    pub fn spawn(label: &str, cmd: &mut Command, log: &Path) -> Background {
        let shown = display_command(cmd);
        let out = File::options()
            .create(true)
            .append(true)
            .open(log)
            .unwrap_or_else(|e| panic!("cannot open log {}: {e}", log.display()));
        let err = out
            .try_clone()
            .unwrap_or_else(|e| panic!("cannot duplicate log fd: {e}"));
        cmd.stdin(Stdio::null()).stdout(out).stderr(err).process_group(0);
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("could not start {label} (`{shown}`): {e}"));
        Background {
            label: label.to_owned(),
            child,
            log: log.to_owned(),
            exit: None,
        }
    }

    pub fn label(&self) -> &str {
        &self.label
    }

    pub fn pid(&self) -> Pid {
        Pid::from_raw(i32::try_from(self.child.id()).expect("pid fits in i32"))
    }

    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// The exit status if the process has ended (it is reaped here).
    pub fn exited(&mut self) -> Option<ExitStatus> {
        if self.exit.is_none() {
            self.exit = self.child.try_wait().ok().flatten();
        }
        self.exit
    }

    /// Sends `signal` to the process itself (not its group), as an operator would.
    pub fn signal(&mut self, signal: Signal) {
        if self.exited().is_none() {
            kill(self.pid(), signal).unwrap_or_else(|e| panic!("cannot signal {}: {e}", self.label));
        }
    }

    /// Waits up to `timeout` for the process to exit on its own.
    pub fn wait_exit(&mut self, timeout: Duration) -> Result<ExitStatus, WaitTimeout> {
        let what = format!("{} (pid {}) to exit", self.label, self.pid());
        try_wait_until(&what, timeout, || self.exited().is_some())?;
        Ok(self.exit.expect("exited() just returned Some"))
    }

    /// The last `lines` lines of the process's output.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        if thread::panicking() {
            eprintln!(
                "--- last output of {} ({}) ---\n{}\n---",
                self.label,
                self.log.display(),
                self.log_tail(40)
            );
        }
        if self.exited().is_some() {
            return;
        }
        // A graceful stop first so the daemon removes its device and socket, then no more patience.
        let _ = kill(self.pid(), Signal::SIGTERM);
        if self.wait_exit(Duration::from_secs(3)).is_err() {
            eprintln!(
                "{} ignored SIGTERM for 3 s; killing its process group",
                self.label
            );
            kill_group(&mut self.child);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wait_until_names_what_it_awaited() {
        let started = now();
        let err = try_wait_until("the moon to turn blue", Duration::from_millis(50), || false).unwrap_err();
        assert!(now() - started >= Duration::from_millis(50));
        assert_eq!(
            err.to_string(),
            "timed out after 50ms waiting for the moon to turn blue"
        );
    }

    #[test]
    fn wait_until_returns_once_the_condition_holds() {
        let mut polls = 0;
        try_wait_until("three polls", Duration::from_secs(5), || {
            polls += 1;
            polls == 3
        })
        .unwrap();
        assert_eq!(polls, 3);
    }

    #[test]
    fn run_bounded_kills_a_hung_command_and_its_children() {
        let started = now();
        // The shell forks a sleep into the background: the group kill has to reach it too, or the
        // pipes it holds would keep the output readers waiting.
        let err = run_bounded(
            Command::new("sh").args(["-c", "sleep 30 & echo started; wait"]),
            Duration::from_millis(300),
        )
        .unwrap_err();
        let elapsed = now() - started;
        assert!(elapsed < Duration::from_secs(5), "took {elapsed:?}");
        match err {
            CmdError::Timeout { stdout, .. } => assert_eq!(stdout.trim(), "started"),
            other => panic!("expected a timeout, got {other}"),
        }
    }

    #[test]
    fn run_checked_feeds_stdin() {
        let out = run_checked_with_input(
            Command::new("tr").args(["a-z", "A-Z"]),
            Some(b"abc"),
            COMMAND_TIMEOUT,
        )
        .unwrap();
        assert_eq!(out.stdout, b"ABC");
    }

    #[test]
    fn run_checked_reports_status_and_stderr() {
        let err = run_checked(
            Command::new("sh").args(["-c", "echo oops >&2; exit 3"]),
            COMMAND_TIMEOUT,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("`sh -c echo oops >&2; exit 3` failed"), "{err}");
        assert!(err.contains("exit status: 3"), "{err}");
        assert!(err.contains("oops"), "{err}");
    }

    #[test]
    fn background_is_stopped_on_drop() {
        let log = std::env::temp_dir().join(format!("meshd-tests-bg-{}.log", std::process::id()));
        let bg = Background::spawn("sleeper", Command::new("sleep").arg("600"), &log);
        let pid = bg.pid();
        drop(bg);
        // Reaped by the guard, so the pid no longer exists at all.
        assert!(kill(pid, None).is_err(), "sleep {pid} still exists after drop");
        let _ = std::fs::remove_file(log);
    }
}
