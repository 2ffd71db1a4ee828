//! The mesh as an operator runs it: `meshd up` daemons in namespaces, a controller among them, nodes
//! that join with tokens, some behind NAT, and the CLI (`meshd --config FILE ...`) to drive and
//! inspect them.
//!
//! ```text
//!                                 namespace inet (a router)
//!        192.0.2.0/29      192.0.2.8/29          192.0.2.16/29          192.0.2.24/29
//!     ctl 192.0.2.1    n1 192.0.2.11      n2-nat 192.0.2.19      n3-nat 192.0.2.27 ...
//!     (controller,     (public)           MASQUERADE             MASQUERADE
//!      mesh0)           mesh1             198.51.100.0/28        198.51.100.16/28
//!                                         n2 198.51.100.2        n3 198.51.100.18
//!                                          mesh2                  mesh3
//! ```
//!
//! Every public host has a /29 of 192.0.2.0/24 to itself, shared only with the `inet` router (at
//! `.6` of the /29), which routes between them; no bridge module is needed. A host behind NAT sits
//! on a /28 of 198.51.100.0/24 with its router (a namespace of its own) that masquerades towards
//! `inet`, keeping ports where it can (plain MASQUERADE). The mesh itself uses 203.0.113.0/24 and
//! 2001:db8:1000::/64. The underlay carries IPv6 too: each /29 has a /64 `2001:db8:0:B::/64` (`B`
//! the /29's first address, in hex; a host `192.0.2.d` is `2001:db8:0:B::d`, `inet` is `::fe`), each NAT LAN
//! `2001:db8:100:N::/64`, masqueraded by its router like IPv4 (NAT66). Nodes join over IPv4 unless
//! the mesh is started over IPv6 ([`Mesh::start_over`]), which moves every path to IPv6.
//!
//! Each daemon runs in its own network namespace but all share the test's mount namespace, where
//! every WireGuard-compatible daemon keeps its UAPI socket under `/var/run/wireguard`: so each
//! gets its own interface name (`mesh0` for the controller, `mesh1`, `mesh2`, ... for nodes). The
//! admin API listens on the default `127.0.0.1:7450`, which is per namespace.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use nix::sys::signal::Signal;

use crate::json::Value;
use crate::netns::{End, Nat, Netns, veth};
use crate::process::{Background, display_command, run_bounded, try_wait_until};
use crate::{Family, Lab, addr, tools};

/// Overrides where [`meshd_binary`] looks for the daemon.
pub const MESHD_ENV: &str = "MESHD_BIN";
/// The mesh's address blocks.
pub const MESH_V4: &str = "203.0.113.0/24";
pub const MESH_V6: &str = "2001:db8:1000::/64";
/// The name of the network the scenarios create.
pub const NETWORK: &str = "lab";
/// Where the controller is on the underlay; nodes join with `--controller` this.
pub const CONTROLLER_UNDERLAY: &str = "192.0.2.1";
/// meshd's UDP port (tunnel and control messages) on every host.
pub const PORT: u16 = 51820;
/// How long `meshd up` may take until `meshd status` answers and its interface exists.
pub const DAEMON_READY: Duration = Duration::from_secs(10);
/// How long one CLI command may take (a join waits for the controller's answer).
pub const CLI_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the first ping between two mesh addresses may wait (handshakes, map distribution).
pub const FIRST_PING: Duration = Duration::from_secs(15);

/// The `meshd` binary: `$MESHD_BIN`, else `meshd` in the target directory of the profile these
/// tests were built with.
#[track_caller]
pub fn meshd_binary() -> PathBuf {
    if let Some(path) = std::env::var_os(MESHD_ENV) {
        let path = PathBuf::from(path);
        assert!(
            tools::is_executable(&path),
            "{MESHD_ENV}={} is not an executable file",
            path.display()
        );
        return path;
    }
    // The test binary lives in target/<profile>/deps/.
    std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.parent()?.join("meshd")))
        .filter(|candidate| tools::is_executable(candidate))
        .unwrap_or_else(|| {
            panic!(
                "meshd is not built: run `cargo build -p meshd --bin meshd` with the same profile as the \
                 tests, or set {MESHD_ENV} to its path"
            )
        })
}

/// Seconds since the Unix epoch, as `ping -D` prints them.
#[expect(
    clippy::disallowed_methods,
    reason = "the harness compares its own wall-clock instants with ping's timestamps; not protocol code"
)]
pub fn unix_time() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("the clock is after 1970")
        .as_secs_f64()
}

/// What one CLI command did.
#[derive(Debug)]
pub struct CliOutput {
    pub command: String,
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl CliOutput {
    pub fn success(&self) -> bool {
        self.status.success()
    }
}

impl std::fmt::Display for CliOutput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "`{}` ({})\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.command,
            self.status,
            self.stdout.trim_end(),
            self.stderr.trim_end()
        )
    }
}

/// How a host reaches the underlay.
#[derive(Clone, Copy, Debug)]
pub enum Uplink {
    /// A public address of 192.0.2.0/24 (its /29 must be free).
    Public(&'static str),
    /// Behind its own NAT router, whose outside address (192.0.2.0/24, a free /29) is given.
    Nat(&'static str),
}

/// One daemon to start: its name in the mesh, its interface, its uplink.
#[derive(Clone, Copy, Debug)]
pub struct NodeSpec {
    pub name: &'static str,
    pub interface: &'static str,
    pub uplink: Uplink,
}

/// One `meshd up` in its namespace, with its configuration file and state directory.
pub struct MeshNode {
    name: String,
    ns: Netns,
    interface: String,
    /// The address the outside sees: its own, or its NAT router's.
    public_addr: Ipv4Addr,
    config: PathBuf,
    bin: PathBuf,
    daemon: Option<Background>,
    starts: u32,
}

impl MeshNode {
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn netns(&self) -> &Netns {
        &self.ns
    }

    pub fn interface(&self) -> &str {
        &self.interface
    }

    pub fn public_addr(&self) -> Ipv4Addr {
        self.public_addr
    }

    pub fn config_path(&self) -> &Path {
        &self.config
    }

    /// Starts `meshd up --config FILE` and waits (bounded) until `meshd status` answers and the
    /// interface exists. Panics with the daemon's log if it exits or does not get there.
    #[track_caller]
    pub fn start(&mut self) {
        assert!(self.daemon.is_none(), "{} is already running", self.name);
        self.starts += 1;
        let bin = self.bin.to_string_lossy().into_owned();
        let config = self.config.to_string_lossy().into_owned();
        let mut daemon = self.ns.spawn(
            &format!("meshd-{}", self.interface),
            &[&bin, "up", "--config", &config],
            &[("LOG_LEVEL", "debug"), ("RUST_BACKTRACE", "1")],
        );
        let what = format!(
            "meshd on {} (start {}) to answer `meshd status` and create {}",
            self.name, self.starts, self.interface
        );
        let mut last = String::new();
        let ready = try_wait_until(&what, DAEMON_READY, || {
            if let Some(status) = daemon.exited() {
                panic!(
                    "meshd on {} exited ({status}) before it was ready:\n{}",
                    self.name,
                    daemon.log_tail(60)
                );
            }
            let out = self.cli(&["status", "--json"]);
            if !out.success() {
                last = out.to_string();
                return false;
            }
            if !self.ns.has_link(&self.interface) {
                last = format!("`meshd status` answers, but there is no {} yet", self.interface);
                return false;
            }
            true
        });
        if let Err(e) = ready {
            panic!(
                "{e}\nlast attempt: {last}\n--- daemon log ---\n{}",
                daemon.log_tail(60)
            );
        }
        self.daemon = Some(daemon);
    }

    /// `kill -9` of the daemon, as a crash or the OOM killer would: no chance to clean up.
    #[track_caller]
    pub fn kill9(&mut self) {
        let mut daemon = self.daemon.take().expect("the daemon runs");
        daemon.signal(Signal::SIGKILL);
        daemon
            .wait_exit(Duration::from_secs(5))
            .unwrap_or_else(|e| panic!("{e}"));
    }

    /// The running daemon's process id.
    pub fn pid(&self) -> Option<u32> {
        self.daemon
            .as_ref()
            .and_then(|d| u32::try_from(d.pid().as_raw()).ok())
    }

    /// Whether the daemon has exited (it is reaped here).
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.daemon.as_mut().and_then(Background::exited)
    }

    /// The last lines of the daemon's log (every start appends to the same file).
    pub fn log_tail(&self, lines: usize) -> String {
        match &self.daemon {
            Some(d) => d.log_tail(lines),
            None => {
                let log = self.ns.log_path(&format!("meshd-{}", self.interface));
                let text = std::fs::read_to_string(log).unwrap_or_default();
                let all: Vec<&str> = text.lines().collect();
                all[all.len().saturating_sub(lines)..].join("\n")
            }
        }
    }

    /// `meshd --config FILE ARGS` in this node's namespace, whatever its exit status.
    pub fn cli(&self, args: &[&str]) -> CliOutput {
        let mut cmd = self.ns.command(&self.bin);
        cmd.arg("--config").arg(&self.config).args(args);
        cli_output(&mut cmd, CLI_TIMEOUT)
    }

    /// [`MeshNode::cli`] that must succeed; returns stdout.
    #[track_caller]
    pub fn cli_ok(&self, args: &[&str]) -> String {
        let out = self.cli(args);
        if !out.success() {
            panic!(
                "on {}: {out}\n--- daemon log ---\n{}",
                self.name,
                self.log_tail(30)
            );
        }
        out.stdout
    }

    /// [`MeshNode::cli_ok`] with `--json` appended, parsed.
    #[track_caller]
    pub fn cli_json(&self, args: &[&str]) -> Value {
        let mut argv = args.to_vec();
        argv.push("--json");
        let text = self.cli_ok(&argv);
        Value::parse(&text).unwrap_or_else(|e| {
            panic!(
                "on {}: `meshd {}` printed no JSON: {e}\n{text}",
                self.name,
                argv.join(" ")
            )
        })
    }

    /// `meshd status --json`.
    #[track_caller]
    pub fn status(&self) -> Value {
        self.cli_json(&["status"])
    }

    #[track_caller]
    pub fn public_key(&self) -> String {
        self.status().str_field("public_key").to_owned()
    }

    /// This node's mesh addresses as `meshd status` lists them (`None` before it has any).
    #[track_caller]
    pub fn mesh_addrs(&self) -> (Option<Ipv4Addr>, Option<Ipv6Addr>) {
        mesh_addrs(&self.status())
    }

    /// The node's mesh IPv4 address, which it must have.
    #[track_caller]
    pub fn mesh_v4(&self) -> Ipv4Addr {
        let status = self.status();
        mesh_addrs(&status)
            .0
            .unwrap_or_else(|| panic!("{} has no mesh IPv4 address: {status}", self.name))
    }

    /// The node's mesh IPv6 address, which it must have.
    #[track_caller]
    pub fn mesh_v6(&self) -> Ipv6Addr {
        let status = self.status();
        mesh_addrs(&status)
            .1
            .unwrap_or_else(|| panic!("{} has no mesh IPv6 address: {status}", self.name))
    }

    /// `meshd join TOKEN --controller HOST:PORT --name NAME`, whatever its exit status.
    pub fn join(&self, token: &str, controller: SocketAddr) -> CliOutput {
        self.cli(&[
            "join",
            token,
            "--controller",
            &controller.to_string(),
            "--name",
            &self.name,
        ])
    }

    /// The entry for the peer with `public_key` in this node's `meshd status`, if it lists one.
    #[track_caller]
    pub fn peer_status(&self, public_key: &str) -> Option<Value> {
        self.status()
            .array_field("peers")
            .iter()
            .find(|p| p.get("public_key").and_then(Value::as_str) == Some(public_key))
            .cloned()
    }
}

impl Drop for MeshNode {
    fn drop(&mut self) {
        // Before the namespace handle goes: stopping the daemon with SIGTERM (the guard's way) lets it
        // clean up, where deleting the namespace would kill it outright.
        drop(self.daemon.take());
    }
}

/// The first IPv4 and IPv6 address in a status's `addresses` (written `ADDR` or `ADDR/LEN`).
pub fn mesh_addrs(status: &Value) -> (Option<Ipv4Addr>, Option<Ipv6Addr>) {
    let mut v4 = None;
    let mut v6 = None;
    for a in status
        .get("addresses")
        .and_then(Value::as_array)
        .unwrap_or_default()
    {
        let text = a.as_str().unwrap_or_default();
        match text.split('/').next().unwrap_or_default().parse::<IpAddr>() {
            Ok(IpAddr::V4(a)) if v4.is_none() => v4 = Some(a),
            Ok(IpAddr::V6(a)) if v6.is_none() => v6 = Some(a),
            _ => {}
        }
    }
    (v4, v6)
}

/// Runs a command to completion within `timeout` and keeps what it printed.
pub(crate) fn cli_output(cmd: &mut Command, timeout: Duration) -> CliOutput {
    let command = display_command(cmd);
    match run_bounded(cmd, timeout) {
        Ok(out) => CliOutput {
            command,
            status: out.status,
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        },
        Err(e) => panic!("{e}"),
    }
}

/// The underlay: the `inet` router and every host and NAT router cabled to it.
pub struct Underlay<'l> {
    lab: &'l Lab,
    inet: Netns,
    /// The /29s of 192.0.2.0/24 handed out (by their first address's last octet).
    slots: Vec<u8>,
    /// NAT LANs handed out (the n-th /28 of 198.51.100.0/24).
    lans: u8,
    routers: Vec<Netns>,
}

impl<'l> Underlay<'l> {
    pub fn new(lab: &'l Lab) -> Underlay<'l> {
        tools::require("iptables", "iptables");
        let inet = lab.netns("inet");
        inet.enable_forwarding();
        Underlay {
            lab,
            inet,
            slots: Vec::new(),
            lans: 0,
            routers: Vec::new(),
        }
    }

    pub fn lab(&self) -> &'l Lab {
        self.lab
    }

    /// The router every public host and NAT is cabled to: where an attacker on the Internet stands.
    pub fn inet(&self) -> &Netns {
        &self.inet
    }

    /// Cables `ns` (interface `dev`) to `inet` with `addr` on its /29 and a default route via `inet`.
    #[track_caller]
    fn attach(&mut self, ns: &Netns, dev: &str, addr_text: &str) -> Ipv4Addr {
        let IpAddr::V4(ip) = addr::checked(addr_text) else {
            panic!("{addr_text} is not IPv4")
        };
        let [a, b, c, d] = ip.octets();
        assert_eq!((a, b, c), (192, 0, 2), "public addresses come from 192.0.2.0/24");
        let base = d & !7;
        let gateway = Ipv4Addr::new(192, 0, 2, base + 6);
        assert!(
            d != base && d != base + 7 && d != base + 6,
            "{ip} is the network, broadcast or router address of its /29"
        );
        assert!(!self.slots.contains(&base), "192.0.2.{base}/29 is taken already");
        self.slots.push(base);
        let host_cidr = format!("{ip}/29");
        let gateway_cidr = format!("{gateway}/29");
        let host6_cidr = format!("{}/64", public_v6(ip));
        let gateway6 = slot_v6(base, 0xfe);
        let gateway6_cidr = format!("{gateway6}/64");
        veth(
            End {
                ns,
                dev,
                addrs: &[&host_cidr, &host6_cidr],
            },
            End {
                ns: &self.inet,
                dev: &format!("to-{base}"),
                addrs: &[&gateway_cidr, &gateway6_cidr],
            },
        );
        ns.add_route("default", &gateway.to_string());
        ns.add_route("default", &gateway6.to_string());
        ip
    }

    /// A new namespace `name` on the underlay: on `eth0` with its public address, or on `eth0` of a
    /// NAT LAN behind a router namespace `<name>-nat`. Returns it and the address the outside sees.
    #[track_caller]
    pub fn host(&mut self, name: &str, uplink: Uplink) -> (Netns, Ipv4Addr) {
        let ns = self.lab.netns(name);
        match uplink {
            Uplink::Public(address) => {
                let public = self.attach(&ns, "eth0", address);
                (ns, public)
            }
            Uplink::Nat(wan) => {
                let router = self.lab.netns(&format!("{name}-nat"));
                let public = self.attach(&router, "wan", wan);
                let base = 16 * self.lans;
                self.lans += 1;
                assert!(self.lans <= 16, "198.51.100.0/24 has 16 /28s");
                let router_lan = Ipv4Addr::new(198, 51, 100, base + 1);
                let host_lan = Ipv4Addr::new(198, 51, 100, base + 2);
                let lan6 = |n: u16| Ipv6Addr::new(0x2001, 0xdb8, 0x100, u16::from(self.lans), 0, 0, 0, n);
                veth(
                    End {
                        ns: &router,
                        dev: "lan",
                        addrs: &[&format!("{router_lan}/28"), &format!("{}/64", lan6(1))],
                    },
                    End {
                        ns: &ns,
                        dev: "eth0",
                        addrs: &[&format!("{host_lan}/28"), &format!("{}/64", lan6(2))],
                    },
                );
                router.enable_forwarding();
                router.masquerade("wan", Nat::PortPreserving);
                // The same NAT for IPv6 (NAT66), so a NATed host is reached alike in both families.
                tools::require("ip6tables", "iptables");
                router.run(&[
                    "ip6tables",
                    "-t",
                    "nat",
                    "-A",
                    "POSTROUTING",
                    "-o",
                    "wan",
                    "-j",
                    "MASQUERADE",
                ]);
                ns.add_route("default", &router_lan.to_string());
                ns.add_route("default", &lan6(1).to_string());
                self.routers.push(router);
                (ns, public)
            }
        }
    }
}

/// The IPv6 address of a public host (or a NAT router's outside end) of the underlay, beside its IPv4
/// `192.0.2.d`: `2001:db8:0:B::d`, where `B` is the first address of its /29.
pub fn public_v6(v4: Ipv4Addr) -> Ipv6Addr {
    let d = v4.octets()[3];
    slot_v6(d & !7, u16::from(d))
}

fn slot_v6(base: u8, host: u16) -> Ipv6Addr {
    Ipv6Addr::new(0x2001, 0xdb8, 0, u16::from(base), 0, 0, 0, host)
}

/// Writes a meshd configuration for `name` in the lab directory and returns its path;
/// `controller_keys` are more lines of its `[controller]` table.
fn write_config(lab: &Lab, name: &str, interface: &str, controller: bool, controller_keys: &str) -> PathBuf {
    let state_dir = lab.dir().join(format!("{name}-state"));
    let text = format!(
        "state_dir = \"{}\"\ninterface = \"{interface}\"\nlisten_port = {PORT}\n\
         api = \"127.0.0.1:7450\"\n\n[controller]\nenabled = {controller}\n{controller_keys}",
        state_dir.display()
    );
    let path = lab.dir().join(format!("{name}.toml"));
    std::fs::write(&path, text).unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
    path
}

/// A controller and nodes on an [`Underlay`], with the network [`NETWORK`] created on the controller.
/// Fields drop in order: the daemons stop before the underlay goes.
pub struct Mesh<'l> {
    pub ctl: MeshNode,
    pub nodes: Vec<MeshNode>,
    pub underlay: Underlay<'l>,
    bin: PathBuf,
    /// How many nodes have joined (the controller's own node is address .1; the n-th joiner .n+1).
    joined: u8,
    /// The underlay family nodes join (and so reach the controller, the relay and each other) over.
    family: Family,
}

/// The scenario of most tests: n1 public, n2 and n3 each behind its own NAT.
pub const THREE_NODES: [NodeSpec; 3] = [
    NodeSpec {
        name: "n1",
        interface: "mesh1",
        uplink: Uplink::Public("192.0.2.11"),
    },
    NodeSpec {
        name: "n2",
        interface: "mesh2",
        uplink: Uplink::Nat("192.0.2.19"),
    },
    NodeSpec {
        name: "n3",
        interface: "mesh3",
        uplink: Uplink::Nat("192.0.2.27"),
    },
];

impl<'l> Mesh<'l> {
    /// Builds the underlay, starts the controller (`ctl`, public at [`CONTROLLER_UNDERLAY`], interface
    /// `mesh0`) and creates the network with both blocks; starts every node in `specs` without
    /// joining it.
    #[track_caller]
    pub fn start(lab: &'l Lab, specs: &[NodeSpec]) -> Mesh<'l> {
        Mesh::build(lab, specs, "", Family::V4)
    }

    /// [`Mesh::start`] with more lines in the controller's `[controller]` table (`name = "border"`).
    #[track_caller]
    pub fn start_with(lab: &'l Lab, specs: &[NodeSpec], controller_keys: &str) -> Mesh<'l> {
        Mesh::build(lab, specs, controller_keys, Family::V4)
    }

    /// [`Mesh::start`], with nodes that will join over the underlay's `family`: over IPv6 every path
    /// (to the controller, through the relay, direct) runs over IPv6, the relay through NAT66.
    #[track_caller]
    pub fn start_over(lab: &'l Lab, specs: &[NodeSpec], family: Family) -> Mesh<'l> {
        Mesh::build(lab, specs, "", family)
    }

    #[track_caller]
    fn build(lab: &'l Lab, specs: &[NodeSpec], controller_keys: &str, family: Family) -> Mesh<'l> {
        let bin = meshd_binary();
        let mut underlay = Underlay::new(lab);
        let ctl = start_node(
            &mut underlay,
            &bin,
            NodeSpec {
                name: "ctl",
                interface: "mesh0",
                uplink: Uplink::Public(CONTROLLER_UNDERLAY),
            },
            true,
            controller_keys,
        );
        let mut mesh = Mesh {
            ctl,
            nodes: Vec::new(),
            underlay,
            bin,
            joined: 0,
            family,
        };
        mesh.ctl
            .cli_ok(&["network", "create", NETWORK, "--ipv4", MESH_V4, "--ipv6", MESH_V6]);
        let first = mesh_host(1);
        let what = format!("the controller's own node to take {first} in network {NETWORK}");
        let mut last = Value::Null;
        let got = try_wait_until(&what, Duration::from_secs(10), || {
            last = mesh.ctl.status();
            mesh_addrs(&last).0 == Some(first)
        });
        if let Err(e) = got {
            panic!("{e}; its status: {last}");
        }
        for spec in specs {
            mesh.add_node(*spec);
        }
        mesh
    }

    /// [`Mesh::start`] with [`THREE_NODES`], each joined in order with a token of its own.
    #[track_caller]
    pub fn three_nodes(lab: &'l Lab) -> Mesh<'l> {
        Mesh::three_nodes_over(lab, Family::V4)
    }

    /// [`Mesh::three_nodes`] joined over the underlay's `family`.
    #[track_caller]
    pub fn three_nodes_over(lab: &'l Lab, family: Family) -> Mesh<'l> {
        let mut mesh = Mesh::start_over(lab, &THREE_NODES, family);
        for i in 0..mesh.nodes.len() {
            let token = mesh.token(&[]);
            mesh.join_ok(i, &token);
        }
        mesh
    }

    /// Starts one more node (not joined).
    #[track_caller]
    pub fn add_node(&mut self, spec: NodeSpec) -> &MeshNode {
        let node = start_node(&mut self.underlay, &self.bin, spec, false, "");
        self.nodes.push(node);
        self.nodes.last().expect("just pushed")
    }

    #[track_caller]
    pub fn node(&self, name: &str) -> &MeshNode {
        self.nodes
            .iter()
            .find(|n| n.name == name)
            .unwrap_or_else(|| panic!("no node {name}"))
    }

    /// The controller and every node, the controller first.
    pub fn all(&self) -> Vec<&MeshNode> {
        std::iter::once(&self.ctl).chain(&self.nodes).collect()
    }

    /// Where nodes send their join over IPv4.
    pub fn controller_endpoint() -> SocketAddr {
        SocketAddr::new(addr::checked(CONTROLLER_UNDERLAY), PORT)
    }

    /// Where nodes of this mesh send their join: the controller's address in the underlay family
    /// the mesh runs over.
    pub fn controller_at(&self) -> SocketAddr {
        match self.family {
            Family::V4 => Mesh::controller_endpoint(),
            Family::V6 => {
                let v4: Ipv4Addr = CONTROLLER_UNDERLAY.parse().expect("an IPv4 address");
                SocketAddr::new(IpAddr::V6(public_v6(v4)), PORT)
            }
        }
    }

    /// `meshd token create --network lab ARGS` on the controller: the token alone.
    #[track_caller]
    pub fn token(&self, args: &[&str]) -> String {
        let mut argv = vec!["token", "create", "--network", NETWORK];
        argv.extend_from_slice(args);
        let out = self.ctl.cli_ok(&argv);
        let token = out.trim().to_owned();
        assert!(
            token.starts_with(crate::token::PREFIX) && !token.contains(char::is_whitespace),
            "`meshd token create` must print the token alone; it printed {out:?}"
        );
        token
    }

    /// Joins node `index` with `token` and checks what it got: exit 0, the next IPv4 address of the
    /// block in join order, an IPv6 address of the block, the same in its status and in the
    /// controller's member list.
    #[track_caller]
    pub fn join_ok(&mut self, index: usize, token: &str) {
        let node = &self.nodes[index];
        let out = node.join(token, self.controller_at());
        if !out.success() {
            panic!(
                "{} could not join: {out}\n--- its log ---\n{}\n--- controller log ---\n{}",
                node.name,
                node.log_tail(30),
                self.ctl.log_tail(30)
            );
        }
        let number = self.joined + 1;
        let expected_v4 = mesh_host(number + 1);
        assert!(
            out.stdout.contains(NETWORK) && out.stdout.contains(&expected_v4.to_string()),
            "`meshd join` on {} must print the network {NETWORK} and its address {expected_v4}:\n{out}",
            node.name
        );
        let status = node.status();
        let (v4, v6) = mesh_addrs(&status);
        assert_eq!(
            v4,
            Some(expected_v4),
            "{} (joined as number {}) has the wrong IPv4 address: {status}",
            node.name,
            number
        );
        let v6 = v6.unwrap_or_else(|| panic!("{} has no IPv6 address: {status}", node.name));
        let v6_block: Ipv6Addr = "2001:db8:1000::".parse().expect("an IPv6 address");
        assert_eq!(
            v6.segments()[..4],
            v6_block.segments()[..4],
            "{}'s IPv6 address is outside {MESH_V6}: {status}",
            node.name
        );
        let membership = status.field("membership");
        assert_eq!(
            membership.get("network").and_then(Value::as_str),
            Some(NETWORK),
            "{}'s status must show its membership: {status}",
            node.name
        );
        let member = self.member(&node.name);
        assert_eq!(
            (member.str_field("ipv4"), member.field("ipv6").as_str()),
            (expected_v4.to_string().as_str(), Some(v6.to_string().as_str())),
            "the controller's member list disagrees with {}'s status: {member} vs {status}",
            node.name
        );
        assert_eq!(
            member.str_field("public_key"),
            status.str_field("public_key"),
            "the member named {} has another key than the node: {member} vs {status}",
            node.name
        );
        self.joined = number;
    }

    /// `meshd member list --json` on the controller.
    #[track_caller]
    pub fn members(&self) -> Value {
        self.ctl.cli_json(&["member", "list"])
    }

    /// The member called `name` in the controller's list.
    #[track_caller]
    pub fn member(&self, name: &str) -> Value {
        let members = self.members();
        let list = members
            .as_array()
            .or_else(|| members.get("members").and_then(Value::as_array))
            .unwrap_or_else(|| panic!("`meshd member list --json` is not a list: {members}"));
        list.iter()
            .find(|m| m.get("name").and_then(Value::as_str) == Some(name))
            .cloned()
            .unwrap_or_else(|| panic!("no member {name} in {members}"))
    }
}

#[track_caller]
fn start_node(
    underlay: &mut Underlay<'_>,
    bin: &Path,
    spec: NodeSpec,
    controller: bool,
    controller_keys: &str,
) -> MeshNode {
    assert!(
        !crate::wg::socket_path(spec.interface).exists(),
        "interface names must be unique within a test: {} is taken",
        spec.interface
    );
    let (ns, public_addr) = underlay.host(spec.name, spec.uplink);
    let config = write_config(
        underlay.lab(),
        spec.name,
        spec.interface,
        controller,
        controller_keys,
    );
    let mut node = MeshNode {
        name: spec.name.to_owned(),
        ns,
        interface: spec.interface.to_owned(),
        public_addr,
        config,
        bin: bin.to_owned(),
        daemon: None,
        starts: 0,
    };
    node.start();
    node
}

/// The `n`-th address of the mesh IPv4 block (203.0.113.n).
pub fn mesh_host(n: u8) -> Ipv4Addr {
    Ipv4Addr::new(203, 0, 113, n)
}

/// The replies one `ping` run got, with the times `ping -D` stamped on them.
#[derive(Debug, Clone)]
pub struct PingRun {
    pub from: String,
    pub to: IpAddr,
    pub transmitted: u32,
    /// (Unix time of the reply, icmp_seq).
    pub replies: Vec<(f64, u32)>,
    pub output: String,
}

impl PingRun {
    /// The time of the last reply, if any came.
    pub fn last_reply(&self) -> Option<f64> {
        self.replies.iter().map(|(t, _)| *t).reduce(f64::max)
    }

    pub fn replies_after(&self, t: f64) -> usize {
        self.replies.iter().filter(|(at, _)| *at > t).count()
    }

    pub fn replies_before(&self, t: f64) -> usize {
        self.replies.iter().filter(|(at, _)| *at <= t).count()
    }
}

/// `ping -D -c COUNT -i INTERVAL -W 1 TO` from `from`, to the end (bounded), replies parsed.
#[track_caller]
pub fn ping_run(from: &MeshNode, to: IpAddr, count: u32, interval: Duration) -> PingRun {
    let count_text = count.to_string();
    let interval_text = format!("{:.3}", interval.as_secs_f64());
    let to_text = to.to_string();
    let mut cmd = from.ns.command("ping");
    cmd.args([
        "-n",
        "-D",
        "-c",
        &count_text,
        "-i",
        &interval_text,
        "-W",
        "1",
        &to_text,
    ]);
    let limit = interval * count + Duration::from_secs(10);
    let out = run_bounded(&mut cmd, limit).unwrap_or_else(|e| panic!("{e}"));
    let output = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut replies = Vec::new();
    let mut transmitted = 0;
    for line in output.lines() {
        if line.contains("bytes from")
            && let Some(rest) = line.strip_prefix('[')
            && let Some((stamp, rest)) = rest.split_once(']')
            && let Ok(stamp) = stamp.parse::<f64>()
            && let Some(seq) = rest
                .split_whitespace()
                .find_map(|w| w.strip_prefix("icmp_seq="))
                .and_then(|s| s.parse::<u32>().ok())
        {
            replies.push((stamp, seq));
        }
        if let Some((sent, _)) = line.split_once(" packets transmitted") {
            transmitted = sent.trim().parse().unwrap_or(0);
        }
    }
    PingRun {
        from: from.name.clone(),
        to,
        transmitted,
        replies,
        output,
    }
}

/// Pings between every ordered pair of `nodes`, over IPv4 and IPv6 mesh addresses: the first answer
/// within [`FIRST_PING`], then two more without loss.
#[track_caller]
pub fn ping_every_pair(nodes: &[&MeshNode]) {
    let addrs: Vec<(Ipv4Addr, Ipv6Addr)> = nodes.iter().map(|n| (n.mesh_v4(), n.mesh_v6())).collect();
    for (i, from) in nodes.iter().enumerate() {
        for (j, to) in nodes.iter().enumerate() {
            if i == j {
                continue;
            }
            for dest in [IpAddr::V4(addrs[j].0), IpAddr::V6(addrs[j].1)] {
                ping_mesh(from, to, dest);
            }
        }
    }
}

/// [`Netns::ping_ok`] from one node to another's mesh address (the first answer within
/// [`FIRST_PING`]), with both daemons' state and logs on failure.
#[track_caller]
pub fn ping_mesh(from: &MeshNode, to: &MeshNode, dest: IpAddr) {
    ping_mesh_within(from, to, dest, FIRST_PING);
}

/// [`ping_mesh`] with the first answer due within `first_answer_within`.
#[track_caller]
pub fn ping_mesh_within(from: &MeshNode, to: &MeshNode, dest: IpAddr, first_answer_within: Duration) {
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        from.ns.ping_ok(dest, 2, first_answer_within);
    }));
    if let Err(panic) = result {
        let message = panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
            .unwrap_or_default();
        panic!(
            "{} cannot ping {} at {dest}: {message}\n{}\n{}",
            from.name,
            to.name,
            diagnostics(from),
            diagnostics(to)
        );
    }
}

/// What a failure message shows about a node: its status, its interface as `wg` and `ip` see it, and
/// the end of its log.
pub fn diagnostics(node: &MeshNode) -> String {
    let run = |argv: &[&str]| match node.ns.try_run(argv, Duration::from_secs(5)) {
        Ok(out) => String::from_utf8_lossy(&out.stdout).trim_end().to_owned(),
        Err(e) => e.to_string(),
    };
    format!(
        "--- {name}: meshd status ---\n{}\n--- {name}: wg show {iface} dump ---\n{}\n\
         --- {name}: ip route ---\n{}\n{}\n--- {name}: log ---\n{}",
        status_or_error(node),
        run(&["wg", "show", &node.interface, "dump"]),
        run(&["ip", "-4", "route"]),
        run(&["ip", "-6", "route", "show", "dev", &node.interface]),
        node.log_tail(25),
        name = node.name,
        iface = node.interface,
    )
}

fn status_or_error(node: &MeshNode) -> String {
    let out = node.cli(&["status", "--json"]);
    if out.success() {
        out.stdout.trim().to_owned()
    } else {
        out.to_string()
    }
}

/// Waits (bounded) until `a`'s status shows its peer `b` with `path`, and panics with both statuses
/// otherwise.
#[track_caller]
pub fn expect_path(a: &MeshNode, b: &MeshNode, path: &str, timeout: Duration) {
    let key = b.public_key();
    let mut last = None;
    let what = format!("{}'s status to show peer {} with path {path:?}", a.name, b.name);
    let result = try_wait_until(&what, timeout, || {
        last = a.peer_status(&key);
        last.as_ref().and_then(|p| p.get("path")).and_then(Value::as_str) == Some(path)
    });
    if let Err(e) = result {
        match last {
            Some(peer) => panic!("{e}; it shows {peer}"),
            None => panic!("{e}; it does not list {} ({key}) at all: {}", b.name, a.status()),
        }
    }
}

/// Asserts that a refused CLI command said why: non-zero exit, and its output contains one of
/// `words` (case-insensitive). Returns the message.
#[track_caller]
pub fn expect_refusal(out: &CliOutput, what: &str, words: &[&str]) -> String {
    let text = format!("{}\n{}", out.stderr, out.stdout).to_lowercase();
    assert!(
        !out.success(),
        "{what}: must be refused with a non-zero exit, but it succeeded:\n{out}"
    );
    assert!(
        words.iter().any(|w| text.contains(&w.to_lowercase())),
        "{what}: refused, but the message does not say why (expected one of {words:?}):\n{out}"
    );
    out.stderr.trim().to_owned()
}
