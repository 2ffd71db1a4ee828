//! Working in named network namespaces (`ip netns add NAME` keeps each as a file under
//! `/run/netns`), as `meshd lab` does: a thread that enters one to open sockets there, daemons
//! started in one and detached from the terminal, and the signals that stop them.
//!
//! A socket belongs to the namespace it was created in, whichever thread uses it later. So a thread
//! that has entered namespace A creates a socket, hands it back, and the process then talks from A
//! to a socket it created the same way in B: a client and a server in two namespaces, in one process.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread;

/// Where `ip netns` keeps the namespaces it names.
pub const NETNS_DIR: &str = "/run/netns";

/// The file of the namespace `name`.
pub fn path(name: &str) -> PathBuf {
    Path::new(NETNS_DIR).join(name)
}

/// Whether the namespace `name` exists.
pub fn exists(name: &str) -> bool {
    path(name).exists()
}

/// Runs `f` on a new thread that has entered the network namespace `name` and returns its result.
/// The calling thread stays where it is; a panic in `f` is passed on.
pub fn run_in<T: Send>(name: &str, f: impl FnOnce() -> T + Send) -> io::Result<T> {
    let path = path(name);
    let ns = File::open(&path).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("cannot open the network namespace {}: {e}", path.display()),
        )
    })?;
    thread::scope(|s| {
        let worker = s.spawn(move || {
            // SAFETY: `ns` is an open file for the whole call, and setns with CLONE_NEWNET changes
            // only this thread's network namespace (it is per task); no memory is touched.
            let rc = unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) };
            if rc != 0 {
                let e = io::Error::last_os_error();
                return Err(io::Error::new(
                    e.kind(),
                    format!("cannot enter the network namespace {}: {e}", path.display()),
                ));
            }
            Ok(f())
        });
        match worker.join() {
            Ok(result) => result,
            Err(panic) => std::panic::resume_unwind(panic),
        }
    })
}

/// Makes `command` start in a session of its own, so that neither Ctrl-C nor closing the terminal
/// reaches it: how a daemon is left running after the command that started it returns.
pub fn new_session(command: &mut Command) -> &mut Command {
    // SAFETY: the closure runs in the child between fork and exec; setsid is async-signal-safe and
    // touches no memory of the parent.
    unsafe {
        command.pre_exec(|| {
            if libc::setsid() < 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        })
    }
}

/// The signals the lab sends its daemons.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// SIGTERM: stop cleanly.
    Term,
    /// SIGKILL: stop at once, as a crash would.
    Kill,
}

/// Sends `signal` to the process `pid`.
pub fn signal(pid: u32, signal: Signal) -> io::Result<()> {
    let pid = libc::pid_t::try_from(pid)
        .ok()
        .filter(|&p| p > 0)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, format!("{pid} is not a process id")))?;
    let number = match signal {
        Signal::Term => libc::SIGTERM,
        Signal::Kill => libc::SIGKILL,
    };
    // SAFETY: kill takes plain integers and touches no memory; `pid` is positive, so it never
    // addresses a process group or every process.
    if unsafe { libc::kill(pid, number) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_namespace_is_named_in_the_error() {
        let e = run_in("meshd-no-such-namespace", || ()).unwrap_err().to_string();
        assert!(e.contains("/run/netns/meshd-no-such-namespace"), "{e}");
        assert!(!exists("meshd-no-such-namespace"));
    }

    #[test]
    fn no_signal_for_pid_zero_or_negative() {
        assert!(signal(0, Signal::Term).is_err());
        assert!(signal(u32::MAX, Signal::Term).is_err());
    }
}
