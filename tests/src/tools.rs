//! Finding the external programs the tests drive, and saying how to get them when they are missing.

use std::path::{Path, PathBuf};

/// The first executable called `program` on `PATH` (or in the sbin directories, which a plain
/// user's `PATH` often lacks).
pub fn find_on_path(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/local/sbin", "/usr/sbin", "/sbin"].map(PathBuf::from))
        .map(|dir| dir.join(program))
        .find(|candidate| is_executable(candidate))
}

pub fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// The path of `program`, or a panic that names the Debian package providing it.
#[track_caller]
pub fn require(program: &str, debian_package: &str) -> PathBuf {
    find_on_path(program).unwrap_or_else(|| {
        panic!(
            "`{program}` is not installed (not on PATH); the end-to-end tests need it: \
             apt-get install {debian_package}"
        )
    })
}

/// Checks every program the namespace harness itself uses.
#[track_caller]
pub fn require_harness_tools() {
    for (program, package) in [
        ("ip", "iproute2"),
        ("unshare", "util-linux"),
        ("ping", "iputils-ping"),
    ] {
        require(program, package);
    }
}
