//! Running each end-to-end test in mount and PID namespaces of its own.
//!
//! `ip netns` keeps namespace names under `/run/netns`, and every userspace WireGuard keeps its
//! control socket under `/var/run/wireguard`; both are global on the host. Each test therefore runs
//! in a private mount namespace with a fresh tmpfs over both directories, so no test can see or
//! break the host's namespaces and sockets or another test's.
//!
//! `unshare(CLONE_NEWNS)` is refused in a multithreaded process, and the test harness is one, so
//! [`e2e`] re-executes the test binary for just the calling test under `unshare --mount --pid
//! --fork --mount-proc` (`unshare` itself is single-threaded; the test harness starts only after
//! it). The private PID namespace is the last line of cleanup: when the test process exits or is
//! killed, the kernel kills every process it left behind, daemonized or not, and with the last
//! process go the mount namespace, its tmpfs and the network namespaces bound there.
//! The parent waits for the child, bounded in time, and fails if the child failed or ran no test.
//! With this, `cargo test -p meshd-tests` runs every end-to-end test isolated; no wrapper is needed.

use std::fs::File;
use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::Duration;

use nix::mount::{MsFlags, mount};
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

use crate::netns::Netns;
use crate::process::{now, try_wait_until};
use crate::tools;

/// Set in the re-executed child to the parent's mount namespace.
const CHILD_ENV: &str = "MESHD_E2E_PARENT";
/// Set in the re-executed child to a name for this run that is unique on the host.
const RUN_ID_ENV: &str = "MESHD_E2E_RUN_ID";
/// Overrides [`DEFAULT_TEST_TIMEOUT`] for one whole isolated test, in seconds.
pub const TIMEOUT_ENV: &str = "MESHD_E2E_TIMEOUT_SECS";
pub const DEFAULT_TEST_TIMEOUT: Duration = Duration::from_secs(240);

/// Directories that must be private to one test run.
const PRIVATE_DIRS: [&str; 2] = ["/run/netns", "/var/run/wireguard"];

/// Runs `body` as an end-to-end test, isolated as the module documentation describes.
///
/// Call it as the whole body of a `#[test]` function; the function's name is how the child finds
/// the same test again.
#[track_caller]
pub fn e2e(body: impl FnOnce(&Lab)) {
    let test_name = current_test_name();
    match std::env::var(CHILD_ENV) {
        Ok(parent) => {
            let lab = Lab::enter(&test_name, &parent);
            body(&lab);
        }
        Err(_) => {
            check_prerequisites();
            match run_isolated(&test_name, &[]) {
                Ok(output) => print!("{output}"),
                Err(message) => panic!("{message}"),
            }
        }
    }
}

fn current_test_name() -> String {
    // libtest runs each test on a thread named after the test's path.
    match thread::current().name() {
        Some(name) if name != "main" => name.to_owned(),
        _ => panic!(
            "meshd_tests::e2e must be called from a #[test] function run by the standard test \
             harness, which names the test thread after the test"
        ),
    }
}

/// Root, a TUN device and the harness's own tools; a clear failure, never a silent pass.
#[track_caller]
pub fn check_prerequisites() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "the end-to-end tests need root (they create network namespaces, TUN devices and mounts); \
         run them as root, e.g. `sudo -E cargo test -p meshd-tests`"
    );
    if let Err(e) = File::options().read(true).write(true).open("/dev/net/tun") {
        panic!(
            "the end-to-end tests need /dev/net/tun, which cannot be opened ({e}); load the tun \
             module (`modprobe tun`) or give the container the device"
        );
    }
    tools::require_harness_tools();
}

/// Re-executes this test binary for the one test `test_name` in private mount and PID namespaces
/// and returns its output, or a message saying why it did not pass.
pub fn run_isolated(test_name: &str, env: &[(&str, &str)]) -> Result<String, String> {
    let exe = std::env::current_exe().map_err(|e| format!("cannot find the test binary: {e}"))?;
    // The same test may be run isolated twice at once (see the harness tests): number each run.
    static RUNS: AtomicUsize = AtomicUsize::new(0);
    let run = RUNS.fetch_add(1, Ordering::Relaxed);
    let run_id = format!("{}-{run}", std::process::id());
    let out_path = std::env::temp_dir().join(format!(
        "meshd-e2e-{}-{run}-{}.out",
        std::process::id(),
        sanitize(test_name, 40)
    ));
    let out = File::create(&out_path).map_err(|e| format!("cannot create {}: {e}", out_path.display()))?;
    let err = out
        .try_clone()
        .map_err(|e| format!("cannot duplicate an fd: {e}"))?;
    let timeout = test_timeout();

    let mut cmd = Command::new("unshare");
    cmd.args([
        "--mount",
        "--propagation",
        "private",
        "--pid",
        "--fork",
        "--mount-proc",
        "--",
    ])
    .arg(&exe)
    .args([
        "--exact",
        test_name,
        "--nocapture",
        "--test-threads=1",
        "--include-ignored",
    ])
    .env(CHILD_ENV, own_mount_namespace())
    .env(RUN_ID_ENV, &run_id)
    .envs(env.iter().copied())
    .stdin(Stdio::null())
    .stdout(out)
    .stderr(err)
    // Its own group, so a timeout can kill `unshare` and the test process together; the PID
    // namespace then takes everything the test started with it.
    .process_group(0);
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot run `unshare` for `{test_name}`: {e}"))?;

    let started = now();
    let what = format!("isolated run of `{test_name}`");
    let waited = try_wait_until(&what, timeout, || child.try_wait().ok().flatten().is_some());
    if waited.is_err() {
        if let Ok(pid) = i32::try_from(child.id()) {
            let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
        }
        let _ = child.wait();
    }
    let output = std::fs::read_to_string(&out_path).unwrap_or_default();
    let _ = std::fs::remove_file(&out_path);

    if let Err(timeout) = waited {
        return Err(format!(
            "end-to-end test `{test_name}`: {timeout} (override with {TIMEOUT_ENV}); it was killed with \
             everything it started. Its daemons' logs are in {}. Its output:\n{output}",
            lab_dir(test_name, &run_id).display()
        ));
    }
    let status = child
        .wait()
        .map_err(|e| format!("cannot reap the isolated run: {e}"))?;
    if !status.success() {
        return Err(format!(
            "end-to-end test `{test_name}` failed in its isolated run ({status}, after {:.1?}). \
             Its output:\n{output}",
            now() - started
        ));
    }
    // A filter that matched nothing also exits 0: insist that exactly this test ran and passed.
    if !output.contains("test result: ok. 1 passed;") {
        return Err(format!(
            "end-to-end test `{test_name}`: the isolated run did not run exactly one passing test. \
             Its output:\n{output}"
        ));
    }
    Ok(output)
}

fn test_timeout() -> Duration {
    match std::env::var(TIMEOUT_ENV) {
        Ok(secs) => Duration::from_secs(
            secs.parse()
                .unwrap_or_else(|_| panic!("{TIMEOUT_ENV}={secs:?} is not a number of seconds")),
        ),
        Err(_) => DEFAULT_TEST_TIMEOUT,
    }
}

fn own_mount_namespace() -> String {
    std::fs::read_link("/proc/self/ns/mnt")
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_else(|e| panic!("cannot read /proc/self/ns/mnt: {e}"))
}

fn lab_prefix(test_name: &str, run_id: &str) -> String {
    let short = sanitize(test_name.rsplit("::").next().unwrap_or(test_name), 24);
    format!("{}-{run_id}", short.trim_matches('-'))
}

fn lab_dir(test_name: &str, run_id: &str) -> PathBuf {
    std::env::temp_dir().join(format!("meshd-e2e-{}", lab_prefix(test_name, run_id)))
}

/// Lower-case letters, digits and dashes only, at most `max` of them.
fn sanitize(name: &str, max: usize) -> String {
    let mut s: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    s.truncate(max);
    s
}

/// The context of one isolated end-to-end test: a unique name prefix for its namespaces and a
/// scratch directory for keys and logs (kept if the test fails).
pub struct Lab {
    test_name: String,
    prefix: String,
    dir: PathBuf,
}

impl Lab {
    fn enter(test_name: &str, parent_mnt: &str) -> Lab {
        // The variable alone proves nothing: make sure unshare really gave us our own mounts.
        assert_ne!(
            own_mount_namespace(),
            parent_mnt,
            "{CHILD_ENV} is set but this process shares its parent's mount namespace; run the tests \
             with plain `cargo test`, which isolates each one itself"
        );
        for dir in PRIVATE_DIRS {
            std::fs::create_dir_all(dir).unwrap_or_else(|e| panic!("cannot create {dir}: {e}"));
            mount(
                Some("meshd-e2e"),
                dir,
                Some("tmpfs"),
                MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
                Some("mode=0755,size=16m"),
            )
            .unwrap_or_else(|e| panic!("cannot mount a private tmpfs on {dir}: {e}"));
        }

        // Our own pid is 1 in the private PID namespace, so the run is named by the parent. Unique
        // on the host, which matters for the scratch directory, the one thing outside our mounts.
        let run_id = std::env::var(RUN_ID_ENV).unwrap_or_else(|_| panic!("{RUN_ID_ENV} is not set"));
        let prefix = lab_prefix(test_name, &run_id);
        let dir = lab_dir(test_name, &run_id);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
        Lab {
            test_name: test_name.to_owned(),
            prefix,
            dir,
        }
    }

    pub fn test_name(&self) -> &str {
        &self.test_name
    }

    /// Prepended to every namespace this test creates.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Scratch space for keys and logs.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// A new network namespace `<prefix>-<host>` with its loopback up, deleted when the last handle
    /// to it drops.
    pub fn netns(&self, host: &str) -> Netns {
        Netns::create(&format!("{}-{host}", self.prefix), &self.dir)
    }

    /// Writes `contents` to a file in [`Lab::dir`] readable only by its owner (keys live there).
    pub fn write_private(&self, name: &str, contents: &str) -> PathBuf {
        use std::os::unix::fs::OpenOptionsExt;
        let path = self.dir.join(name);
        let mut f = File::options()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", path.display()));
        f.write_all(contents.as_bytes())
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
        path
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if thread::panicking() {
            eprintln!(
                "end-to-end test `{}` failed; its files are kept in {}",
                self.test_name,
                self.dir.display()
            );
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::sanitize;

    #[test]
    fn sanitize_keeps_names_short_and_plain() {
        assert_eq!(sanitize("reference_peers::Wg_Go", 40), "reference-peers--wg-go");
        assert_eq!(sanitize("abcdef", 3), "abc");
    }
}
