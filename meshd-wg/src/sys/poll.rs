//! Waiting on one file descriptor with poll(2): the data threads block here, with a timeout so they
//! notice shutdown and replaced sockets.

use std::io;
use std::os::fd::AsFd;
use std::os::fd::AsRawFd;

/// Waits until `fd` reports one of `events`, at most `timeout_ms` milliseconds (negative: no limit).
/// Returns the reported events, or `None` on timeout or a signal.
pub fn wait(
    fd: impl AsFd,
    events: libc::c_short,
    timeout_ms: libc::c_int,
) -> io::Result<Option<libc::c_short>> {
    let mut pfd = libc::pollfd {
        fd: fd.as_fd().as_raw_fd(),
        events,
        revents: 0,
    };
    // SAFETY: `pfd` is a valid, initialised pollfd for a descriptor borrowed for the whole call, and
    // the count passed is 1.
    let n = unsafe { libc::poll(&mut pfd, 1, timeout_ms) };
    if n < 0 {
        let err = io::Error::last_os_error();
        return if err.kind() == io::ErrorKind::Interrupted {
            Ok(None)
        } else {
            Err(err)
        };
    }
    Ok((n > 0).then_some(pfd.revents))
}
