//! Running in the background the way wireguard-go does: the command starts a copy of itself in the
//! foreground mode, detached into its own session, and returns once that copy is serving (or has failed,
//! with its error on the terminal).

use std::ffi::OsString;
use std::io::{self, BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};

/// Set in the background copy's environment; its standard output is then the readiness pipe.
const READY_ENV: &str = "MESHD_DAEMON_READY";
const READY_LINE: &str = "ready";

/// Starts the current executable with `args` in a new session and waits until it calls
/// [`notify_ready`]. Its standard error stays on ours until then, so start-up errors are seen.
pub fn spawn_background(args: &[OsString]) -> io::Result<()> {
    let exe = std::env::current_exe()?;
    let mut command = Command::new(exe);
    command
        .args(args)
        .env(READY_ENV, "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped());
    // SAFETY: setsid is async-signal-safe and touches no memory of the parent; it detaches the child
    // from the controlling terminal so closing the shell does not stop the daemon.
    unsafe {
        command.pre_exec(|| {
            if libc::setsid() < 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = command.spawn()?;
    let stdout = child.stdout.take().expect("stdout is piped");
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line)?;
    if line.trim_end() == READY_LINE {
        return Ok(());
    }
    let status = child.wait()?;
    Err(io::Error::other(format!(
        "the background daemon exited during start-up ({status})"
    )))
}

/// In the background copy: tells the waiting parent the daemon serves, then detaches standard output
/// and error from the terminal. Does nothing in the foreground.
pub fn notify_ready() -> io::Result<()> {
    if std::env::var_os(READY_ENV).is_none() {
        return Ok(());
    }
    use std::io::Write;
    let mut out = io::stdout().lock();
    writeln!(out, "{READY_LINE}")?;
    out.flush()?;
    let devnull = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")?;
    use std::os::fd::AsRawFd;
    for fd in [libc::STDOUT_FILENO, libc::STDERR_FILENO] {
        // SAFETY: both descriptors are valid for the duration of the call; dup2 replaces the standard
        // stream atomically and the file behind `devnull` stays open through the new descriptor.
        if unsafe { libc::dup2(devnull.as_raw_fd(), fd) } < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}
