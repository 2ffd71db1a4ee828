//! What a data thread does with a failed system call: stop only when the interface is gone; pause
//! and go on when the host is short of descriptors, memory or buffers (something else holds them,
//! and will let go); count and go on otherwise.

use std::io;
use std::time::Duration;

/// How long a data thread pauses after running out of a resource: long enough not to spin, short
/// enough that traffic resumes at once when the resource is back.
pub const EXHAUSTED_PAUSE: Duration = Duration::from_millis(10);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OsErrorKind {
    /// The TUN device was deleted or its descriptor is dead: the thread ends, the daemon stops.
    Gone,
    /// EMFILE, ENFILE, ENOMEM, ENOBUFS: count, pause [`EXHAUSTED_PAUSE`], go on.
    Exhausted,
    /// Anything else (EIO while the link is down, EINTR, a refused packet): count or log, go on.
    Other,
}

pub fn classify(e: &io::Error) -> OsErrorKind {
    match e.raw_os_error() {
        Some(libc::EBADFD | libc::EBADF | libc::ENODEV | libc::ENXIO) => OsErrorKind::Gone,
        Some(libc::EMFILE | libc::ENFILE | libc::ENOMEM | libc::ENOBUFS) => OsErrorKind::Exhausted,
        _ if e.kind() == io::ErrorKind::BrokenPipe => OsErrorKind::Gone,
        _ => OsErrorKind::Other,
    }
}

/// Errors after which the TUN device is unusable: it was deleted, or the descriptor is dead.
pub fn is_gone(e: &io::Error) -> bool {
    classify(e) == OsErrorKind::Gone
}

pub fn is_exhausted(e: &io::Error) -> bool {
    classify(e) == OsErrorKind::Exhausted
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_dead_device_stops_a_data_thread() {
        let os = io::Error::from_raw_os_error;
        for errno in [libc::EMFILE, libc::ENFILE, libc::ENOMEM, libc::ENOBUFS] {
            assert_eq!(classify(&os(errno)), OsErrorKind::Exhausted, "errno {errno}");
        }
        for errno in [libc::EBADFD, libc::EBADF, libc::ENODEV, libc::ENXIO] {
            assert_eq!(classify(&os(errno)), OsErrorKind::Gone, "errno {errno}");
        }
        // The wait reports a hung-up device this way.
        assert!(is_gone(&io::Error::new(
            io::ErrorKind::BrokenPipe,
            "TUN device is gone"
        )));
        for errno in [
            libc::EIO,
            libc::EINTR,
            libc::EAGAIN,
            libc::EMSGSIZE,
            libc::ECONNREFUSED,
        ] {
            assert_eq!(classify(&os(errno)), OsErrorKind::Other, "errno {errno}");
        }
        assert!(is_exhausted(&os(libc::EMFILE)));
        assert!(!is_gone(&os(libc::EMFILE)));
    }
}
