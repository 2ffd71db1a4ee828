//! The ingress end to end, through `meshd lab`: the lab command builds the namespaces, BIRD on an
//! ISP and on the border, meshd on the border (controller and ingress) and two nodes; the tests
//! drive it with `meshd lab start|stop`, signals, the meshd CLI on the border, and `birdc`, and read
//! the results from BIRD (`birdc -s SOCK ...`) and the kernel (`ip -n NS ...`).
//!
//! The names below are the lab's (see `meshd lab up --help`): namespaces `meshd-*`, BIRD sockets
//! `<dir>/isp-bird.ctl` and `<dir>/border-bird.ctl`, BGP protocols `border` (at the ISP) and `isp`
//! (at the border), meshd's pid files `<dir>/<host>/meshd.pid`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::mesh::{CliOutput, cli_output, meshd_binary};
use crate::{Lab, tools};

/// The block the border announces.
pub const BLOCK: &str = "203.0.113.0/24";
/// The ingress's hold-down in the lab (`hold_down_secs` in the border's meshd.toml).
pub const HOLD_DOWN: Duration = Duration::from_secs(5);
/// The network the lab creates.
pub const NETWORK: &str = "lab";
pub const BORDER_NS: &str = "meshd-border";
pub const NODE1_NS: &str = "meshd-node1";
pub const ISP_NS: &str = "meshd-isp";
/// How long `meshd lab up` may take (it waits at most 60 s for the announcement itself).
const UP_TIMEOUT: Duration = Duration::from_secs(120);
/// How long another `meshd lab ...` command may take.
const LAB_TIMEOUT: Duration = Duration::from_secs(60);
/// How long one `birdc`, `ip` or meshd CLI call may take.
const SHORT: Duration = Duration::from_secs(10);
/// How often the scenarios poll BIRD and the kernel.
pub const POLL: Duration = Duration::from_millis(100);

/// A monotonic stopwatch for the measured times the tests print.
#[derive(Clone, Copy, Debug)]
pub struct Stopwatch(Instant);

impl Stopwatch {
    #[expect(
        clippy::disallowed_methods,
        reason = "the tests measure real withdrawal times of real daemons; not protocol code"
    )]
    pub fn start() -> Stopwatch {
        Stopwatch(Instant::now())
    }

    pub fn elapsed(&self) -> Duration {
        self.0.elapsed()
    }
}

/// A router of the lab that runs BIRD.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Router {
    Isp,
    Border,
}

impl Router {
    fn file(self) -> &'static str {
        match self {
            Router::Isp => "isp",
            Router::Border => "border",
        }
    }

    /// The name of its BGP session to the other router.
    pub fn session(self) -> &'static str {
        match self {
            Router::Isp => "border",
            Router::Border => "isp",
        }
    }
}

/// A lab built by `meshd lab up`, torn down (`meshd lab down`) when dropped.
pub struct IngressLab {
    dir: PathBuf,
    bin: PathBuf,
    down: bool,
}

impl IngressLab {
    /// `meshd lab up --dir <lab dir>/lab`; prints its output and how long it took.
    #[track_caller]
    pub fn up(lab: &Lab) -> IngressLab {
        tools::require("bird", "bird2");
        tools::require("birdc", "bird2");
        tools::require("iptables", "iptables");
        let lab = IngressLab {
            dir: lab.dir().join("lab"),
            bin: meshd_binary(),
            down: false,
        };
        let started = Stopwatch::start();
        let out = lab.lab_with(&["up"], UP_TIMEOUT);
        let took = started.elapsed();
        if !out.success() {
            panic!(
                "`meshd lab up` failed after {took:.1?}:\n{out}\n{}",
                lab.diagnostics()
            );
        }
        println!("{}", out.stdout.trim_end());
        println!("measured: `meshd lab up` took {:.1} s", took.as_secs_f64());
        lab
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn lab_with(&self, args: &[&str], timeout: Duration) -> CliOutput {
        let mut cmd = Command::new(&self.bin);
        cmd.arg("lab").args(args).arg("--dir").arg(&self.dir);
        cli_output(&mut cmd, timeout)
    }

    /// `meshd lab ARGS --dir DIR`, whatever its exit status.
    pub fn lab(&self, args: &[&str]) -> CliOutput {
        self.lab_with(args, LAB_TIMEOUT)
    }

    /// [`IngressLab::lab`] that must succeed.
    #[track_caller]
    pub fn lab_ok(&self, args: &[&str]) -> String {
        let out = self.lab(args);
        if !out.success() {
            panic!("{out}\n{}", self.diagnostics());
        }
        out.stdout
    }

    /// `meshd --config <dir>/border/meshd.toml ARGS` in the border's namespace, which must succeed.
    #[track_caller]
    pub fn border_cli(&self, args: &[&str]) -> String {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", BORDER_NS])
            .arg(&self.bin)
            .arg("--config")
            .arg(self.dir.join("border/meshd.toml"))
            .args(args);
        let out = cli_output(&mut cmd, SHORT);
        if !out.success() {
            panic!("{out}\n{}", self.diagnostics());
        }
        out.stdout
    }

    /// The BIRD control socket of `router`.
    pub fn bird_socket(&self, router: Router) -> PathBuf {
        self.dir.join(format!("{}-bird.ctl", router.file()))
    }

    /// `birdc -s SOCK ARGS`, whatever its exit status (birdc exits 0 on most errors); stdout.
    pub fn birdc(&self, router: Router, args: &[&str]) -> String {
        let mut cmd = Command::new("birdc");
        cmd.arg("-s").arg(self.bird_socket(router)).args(args);
        let out = cli_output(&mut cmd, SHORT);
        format!("{}{}", out.stdout, out.stderr)
    }

    /// Whether the ISP's BIRD has the block (`show route for 203.0.113.0/24` names it).
    pub fn isp_has_block(&self) -> bool {
        let text = self.birdc(Router::Isp, &["show", "route", "for", BLOCK]);
        text.lines()
            .any(|l| l.split_whitespace().next() == Some(BLOCK) && !l.contains("unreachable"))
    }

    /// The `Since` of `router`'s BGP session in `show protocols` (a date and a time, with
    /// `timeformat protocol iso long`), if BIRD lists the session.
    pub fn session_since(&self, router: Router) -> Option<String> {
        let text = self.birdc(router, &["show", "protocols", router.session()]);
        let row: Vec<&str> = text
            .lines()
            .find(|l| l.split_whitespace().next() == Some(router.session()))?
            .split_whitespace()
            .collect();
        // Name Proto Table State Since(date time) Info
        Some(row.get(4..6)?.join(" "))
    }

    /// `ip -n NS ARGS` as lines (an error such as a table that does not exist yet reads as none).
    pub fn ip_lines(&self, ns: &str, args: &[&str]) -> Vec<String> {
        let mut cmd = Command::new("ip");
        cmd.args(["-n", ns]).args(args);
        let out = cli_output(&mut cmd, SHORT);
        if !out.success() {
            return Vec::new();
        }
        out.stdout
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(str::to_owned)
            .collect()
    }

    /// The routes in kernel table `table` of `ns`.
    pub fn table(&self, ns: &str, table: u32) -> Vec<String> {
        self.ip_lines(ns, &["-4", "route", "show", "table", &table.to_string()])
    }

    /// The IPv4 rules of `ns` that contain `text`.
    pub fn rules_with(&self, ns: &str, text: &str) -> Vec<String> {
        self.ip_lines(ns, &["-4", "rule", "show"])
            .into_iter()
            .filter(|l| l.contains(text))
            .collect()
    }

    /// Whether the border's meshd holds the announcement route in table 201.
    pub fn announced(&self) -> bool {
        self.table(BORDER_NS, 201)
            .iter()
            .any(|r| r.starts_with(BLOCK) && r.contains("dev mesh0"))
    }

    /// The pid of meshd on `host` (`border`, `node1`, `node2`), from its pid file.
    #[track_caller]
    pub fn meshd_pid(&self, host: &str) -> i32 {
        let path = self.dir.join(host).join("meshd.pid");
        let text =
            std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
        text.trim()
            .parse()
            .unwrap_or_else(|_| panic!("{} holds no pid: {text:?}", path.display()))
    }

    /// Sends `signal` to meshd on `host` and waits (bounded) until it is gone. Returns the stopwatch
    /// started just before the signal.
    #[track_caller]
    pub fn signal_meshd(&self, host: &str, signal: Signal) -> Stopwatch {
        let pid = self.meshd_pid(host);
        let watch = Stopwatch::start();
        kill(Pid::from_raw(pid), signal)
            .unwrap_or_else(|e| panic!("cannot send {signal} to meshd on {host}: {e}"));
        // Finer than POLL, so that the times measured from the signal are not rounded up by it.
        while alive(pid) {
            if watch.elapsed() > SHORT {
                panic!(
                    "meshd on {host} (pid {pid}) is still running {SHORT:?} after {signal}\n{}",
                    self.diagnostics()
                );
            }
            thread::sleep(Duration::from_millis(5));
        }
        watch
    }

    /// Polls `cond` every [`POLL`] until it holds; returns how long that took, or panics with the
    /// lab's state after `timeout`.
    #[track_caller]
    pub fn wait(&self, what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) -> Duration {
        let watch = Stopwatch::start();
        loop {
            if cond() {
                return watch.elapsed();
            }
            if watch.elapsed() >= timeout {
                panic!(
                    "timed out after {timeout:?} waiting for {what}\n{}",
                    self.diagnostics()
                );
            }
            thread::sleep(POLL);
        }
    }

    /// What a failure shows: both BGP sessions, the ISP's route, the border's tables and rules,
    /// the border's status and the ends of the logs.
    pub fn diagnostics(&self) -> String {
        let mut text = String::new();
        for router in [Router::Isp, Router::Border] {
            text.push_str(&format!(
                "--- {}: show protocols ---\n{}\n",
                router.file(),
                self.birdc(router, &["show", "protocols"]).trim_end()
            ));
        }
        text.push_str(&format!(
            "--- isp: show route for {BLOCK} ---\n{}\n",
            self.birdc(Router::Isp, &["show", "route", "for", BLOCK])
                .trim_end()
        ));
        for (what, lines) in [
            ("border: table 201", self.table(BORDER_NS, 201)),
            ("border: table 123", self.table(BORDER_NS, 123)),
            ("border: rules", self.ip_lines(BORDER_NS, &["-4", "rule", "show"])),
            ("node1: rules", self.ip_lines(NODE1_NS, &["-4", "rule", "show"])),
            ("node1: table 200", self.table(NODE1_NS, 200)),
        ] {
            text.push_str(&format!("--- {what} ---\n{}\n", lines.join("\n")));
        }
        let mut status = Command::new("ip");
        status
            .args(["netns", "exec", BORDER_NS])
            .arg(&self.bin)
            .arg("--config")
            .arg(self.dir.join("border/meshd.toml"))
            .arg("status");
        text.push_str(&format!(
            "--- border: meshd status ---\n{}\n",
            cli_output(&mut status, SHORT)
        ));
        for log in [
            "border/meshd.log",
            "node1/meshd.log",
            "border-bird.log",
            "isp-bird.log",
        ] {
            text.push_str(&format!("--- {log} ---\n{}\n", tail(&self.dir.join(log), 25)));
        }
        text
    }

    /// `meshd lab down`, which must succeed.
    #[track_caller]
    pub fn down(mut self) {
        self.down = true;
        let out = self.lab(&["down"]);
        assert!(out.success(), "`meshd lab down` failed:\n{out}");
        assert!(!self.dir.exists(), "`meshd lab down` left {}", self.dir.display());
    }
}

impl Drop for IngressLab {
    fn drop(&mut self) {
        if !self.down {
            // A failed test: stop the daemons cleanly; the PID namespace takes whatever remains.
            let _ = self.lab(&["down"]);
        }
    }
}

/// Whether `pid` is a live process (a zombie left for the test process to reap is not).
pub fn alive(pid: i32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    let state = stat
        .rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().next());
    !matches!(state, None | Some("Z" | "X"))
}

fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| format!("(cannot read: {e})"));
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
