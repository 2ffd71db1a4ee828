//! Network namespaces as hosts, veth pairs as cables, and a NAT router.
//!
//! Nothing here touches the namespace the test process runs in: veth pairs are created inside one
//! test namespace with their far end moved straight into the other, and every command runs with
//! `ip -n` or `ip netns exec`.

use std::fs::File;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use nix::sched::{CloneFlags, setns};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::addr;
use crate::process::{Background, COMMAND_TIMEOUT, CmdError, run_checked, try_wait_until};

/// A network namespace made by [`crate::Lab::netns`]. Cheap to clone; the namespace is deleted
/// (and every process still inside it killed) when the last clone drops.
#[derive(Clone)]
pub struct Netns(Arc<Inner>);

struct Inner {
    name: String,
    dir: PathBuf,
}

impl Netns {
    pub(crate) fn create(name: &str, dir: &Path) -> Netns {
        run_checked(Command::new("ip").args(["netns", "add", name]), COMMAND_TIMEOUT)
            .unwrap_or_else(|e| panic!("cannot create network namespace {name}: {e}"));
        let ns = Netns(Arc::new(Inner {
            name: name.to_owned(),
            dir: dir.to_owned(),
        }));
        ns.ip(&["link", "set", "lo", "up"]);
        ns
    }

    pub fn name(&self) -> &str {
        &self.0.name
    }

    /// A command that runs `program` inside this namespace.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", self.name()]).arg(program);
        cmd
    }

    /// Runs `argv` inside the namespace, bounded by `timeout`; a non-zero exit is an error.
    pub fn try_run(&self, argv: &[&str], timeout: Duration) -> Result<Output, CmdError> {
        let (program, args) = argv.split_first().expect("a command line is never empty");
        run_checked(self.command(program).args(args), timeout)
    }

    /// [`Netns::try_run`] with the default timeout, panicking on any failure; returns stdout.
    #[track_caller]
    pub fn run(&self, argv: &[&str]) -> String {
        match self.try_run(argv, COMMAND_TIMEOUT) {
            Ok(out) => String::from_utf8_lossy(&out.stdout).into_owned(),
            Err(e) => panic!("in namespace {}: {e}", self.name()),
        }
    }

    /// `ip -n NAME ARGS`; panics on failure and returns stdout.
    #[track_caller]
    pub fn ip(&self, args: &[&str]) -> String {
        let mut cmd = Command::new("ip");
        cmd.args(["-n", self.name()]).args(args);
        match run_checked(&mut cmd, COMMAND_TIMEOUT) {
            Ok(out) => String::from_utf8_lossy(&out.stdout).into_owned(),
            Err(e) => panic!("{e}"),
        }
    }

    /// Starts `argv` inside the namespace in the background; it is stopped when the guard drops.
    /// Its output goes to `<lab dir>/<namespace>-<label>.log`.
    pub fn spawn(&self, label: &str, argv: &[&str], env: &[(&str, &str)]) -> Background {
        let (program, args) = argv.split_first().expect("a command line is never empty");
        let mut cmd = self.command(program);
        cmd.args(args).envs(env.iter().copied());
        let log = self.log_path(label);
        Background::spawn(&format!("{label} in {}", self.name()), &mut cmd, &log)
    }

    pub(crate) fn log_path(&self, label: &str) -> PathBuf {
        self.0.dir.join(format!("{}-{label}.log", self.name()))
    }

    /// Runs `f` on a thread that has entered this namespace. Sockets created in `f` stay in this
    /// namespace wherever they are used afterwards, which is how the tests talk TCP and UDP from
    /// inside the namespaces without helper programs.
    pub fn enter<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        let path = format!("/run/netns/{}", self.name());
        thread::scope(|s| {
            s.spawn(|| {
                let ns = File::open(&path).unwrap_or_else(|e| panic!("cannot open {path}: {e}"));
                // Affects only this thread: network namespaces are per task.
                setns(&ns, CloneFlags::CLONE_NEWNET).unwrap_or_else(|e| panic!("setns({path}): {e}"));
                f()
            })
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        })
    }

    /// Adds `cidr` (a documentation-range address with its prefix length) to `dev`. IPv6
    /// addresses skip duplicate address detection, so they are usable at once.
    #[track_caller]
    pub fn add_addr(&self, dev: &str, cidr: &str) {
        let ip = addr::checked(cidr);
        let mut args = vec!["addr", "add", cidr, "dev", dev];
        if ip.is_ipv6() {
            args.push("nodad");
        }
        self.ip(&args);
    }

    #[track_caller]
    pub fn link_up(&self, dev: &str) {
        self.ip(&["link", "set", dev, "up"]);
    }

    /// `ip route add DEST via GATEWAY`; `dest` may be `default`.
    #[track_caller]
    pub fn add_route(&self, dest: &str, via: &str) {
        if dest != "default" {
            addr::checked(dest);
        }
        let gateway = addr::checked(via);
        let family = if gateway.is_ipv6() { "-6" } else { "-4" };
        self.ip(&[family, "route", "add", dest, "via", via]);
    }

    pub fn has_link(&self, dev: &str) -> bool {
        let mut cmd = Command::new("ip");
        cmd.args(["-n", self.name(), "link", "show", "dev", dev]);
        run_checked(&mut cmd, COMMAND_TIMEOUT).is_ok()
    }

    #[track_caller]
    pub fn sysctl(&self, key: &str, value: &str) {
        self.run(&["sysctl", "-q", "-w", &format!("{key}={value}")]);
    }

    /// Makes this namespace forward IPv4 and IPv6 between its links.
    pub fn enable_forwarding(&self) {
        self.sysctl("net.ipv4.ip_forward", "1");
        self.sysctl("net.ipv6.conf.all.forwarding", "1");
    }

    /// Source-NATs IPv4 that leaves through `out_dev` to that link's address.
    pub fn masquerade(&self, out_dev: &str, nat: Nat) {
        crate::tools::require("iptables", "iptables");
        let mut rule = vec![
            "iptables",
            "-t",
            "nat",
            "-A",
            "POSTROUTING",
            "-o",
            out_dev,
            "-j",
            "MASQUERADE",
        ];
        if nat == Nat::Symmetric {
            rule.push("--random-fully");
        }
        self.run(&rule);
    }

    /// One `ping` of `dest` that must be answered within a second.
    pub fn ping_once(&self, dest: IpAddr) -> Result<(), CmdError> {
        self.try_run(
            &["ping", "-n", "-q", "-c", "1", "-W", "1", &dest.to_string()],
            COMMAND_TIMEOUT,
        )
        .map(drop)
    }

    /// Waits (bounded) until `dest` answers a ping, then requires `count` more pings without loss.
    #[track_caller]
    pub fn ping_ok(&self, dest: IpAddr, count: u32, first_answer_within: Duration) {
        let what = format!("a ping reply from {dest} in namespace {}", self.name());
        if let Err(e) = try_wait_until(&what, first_answer_within, || self.ping_once(dest).is_ok()) {
            let last = self
                .ping_once(dest)
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            panic!("{e}\nlast attempt: {last}");
        }
        let count = count.to_string();
        self.run(&[
            "ping",
            "-n",
            "-q",
            "-c",
            &count,
            "-i",
            "0.2",
            "-W",
            "2",
            &dest.to_string(),
        ]);
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        // A daemon that outlived its guard would keep the namespace alive after `ip netns del`.
        let pids = run_checked(
            Command::new("ip").args(["netns", "pids", &self.name]),
            COMMAND_TIMEOUT,
        );
        if let Ok(out) = pids {
            for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                if let Ok(pid) = pid.parse() {
                    eprintln!("killing pid {pid}, left running in namespace {}", self.name);
                    let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
                }
            }
        }
        if let Err(e) = run_checked(
            Command::new("ip").args(["netns", "del", &self.name]),
            COMMAND_TIMEOUT,
        ) {
            eprintln!("cannot delete network namespace {}: {e}", self.name);
        }
    }
}

/// How a NAT router maps ports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Nat {
    /// Plain MASQUERADE: keeps the source port when it can (endpoint-independent in practice).
    PortPreserving,
    /// MASQUERADE `--random-fully`: a new random port per connection, which cannot be punched.
    Symmetric,
}

/// One end of a cable: a namespace, the interface name there, and its addresses.
pub struct End<'a> {
    pub ns: &'a Netns,
    pub dev: &'a str,
    pub addrs: &'a [&'a str],
}

/// Joins two namespaces with a veth pair, addresses both ends and brings them up.
#[track_caller]
pub fn veth(a: End<'_>, b: End<'_>) {
    a.ns.ip(&[
        "link",
        "add",
        a.dev,
        "type",
        "veth",
        "peer",
        "name",
        b.dev,
        "netns",
        b.ns.name(),
    ]);
    for end in [&a, &b] {
        for cidr in end.addrs {
            end.ns.add_addr(end.dev, cidr);
        }
        end.ns.link_up(end.dev);
    }
}

/// A host behind a NAT router, and the router, joined to an outside namespace. Addresses:
/// inside `192.0.2.0/24` (host .2, router .1), outside `203.0.113.0/24` (router at `outside_addr`).
pub struct NatRouter {
    pub router: Netns,
    /// The router's address on the outside link; what the outside sees as the source.
    pub public_addr: IpAddr,
}

impl NatRouter {
    pub const INSIDE_ROUTER: &'static str = "192.0.2.1";
    pub const INSIDE_HOST: &'static str = "192.0.2.2";

    /// Creates the router namespace `<prefix>-<name>`, cables it to `inside` (which gets
    /// [`NatRouter::INSIDE_HOST`] and a default route through the router) and to `outside`
    /// (`outside_addr` on the router's end, `outside_peer_addr` on `outside`'s end, both /24 in
    /// 203.0.113.0/24), and masquerades what leaves towards `outside`.
    pub fn new(
        lab: &crate::Lab,
        name: &str,
        inside: &Netns,
        outside: &Netns,
        outside_addr: &str,
        outside_peer_addr: &str,
        nat: Nat,
    ) -> NatRouter {
        let router = lab.netns(name);
        let inside_cidr = format!("{}/24", Self::INSIDE_HOST);
        let router_inside_cidr = format!("{}/24", Self::INSIDE_ROUTER);
        veth(
            End {
                ns: &router,
                dev: "lan",
                addrs: &[&router_inside_cidr],
            },
            End {
                ns: inside,
                dev: &format!("up-{name}"),
                addrs: &[&inside_cidr],
            },
        );
        let router_outside_cidr = format!("{outside_addr}/24");
        let peer_cidr = format!("{outside_peer_addr}/24");
        veth(
            End {
                ns: &router,
                dev: "wan",
                addrs: &[&router_outside_cidr],
            },
            End {
                ns: outside,
                dev: &format!("dn-{name}"),
                addrs: &[&peer_cidr],
            },
        );
        router.enable_forwarding();
        router.masquerade("wan", nat);
        inside.add_route("default", Self::INSIDE_ROUTER);
        NatRouter {
            router,
            public_addr: addr::checked(outside_addr),
        }
    }
}
