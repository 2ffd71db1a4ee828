//! Userspace WireGuard implementations driven the way an operator drives them: start the daemon in
//! the foreground with an interface name, configure it through its UAPI socket with the `wg` tool,
//! address it with `ip`.
//!
//! wireguard-go, boringtun-cli and meshd-wg all serve `/var/run/wireguard/IFNAME.sock`, a path none
//! of them (nor `wg`) lets us move; [`crate::e2e`] makes that directory private to the test run, and
//! within one test each interface name must be unique (checked in [`WgPeer::start`]).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};
use std::time::Duration;

use nix::sys::signal::Signal;

use crate::netns::Netns;
use crate::process::{
    Background, COMMAND_TIMEOUT, run_checked, run_checked_with_input, try_wait_until, wait_until,
};
use crate::{Lab, addr, tools};

/// Where every userspace WireGuard puts its control socket.
pub const SOCKET_DIR: &str = "/var/run/wireguard";
/// Overrides where [`WgImpl::meshd_wg`] looks for the binary.
pub const MESHD_WG_ENV: &str = "MESHD_WG_BIN";
/// Overrides where [`WgImpl::boringtun_cli`] looks for the binary.
pub const BORINGTUN_ENV: &str = "BORINGTUN_CLI_BIN";

/// How long a daemon may take to create its interface and socket, and to clean up on SIGTERM.
pub const DAEMON_STARTUP: Duration = Duration::from_secs(10);
pub const DAEMON_SHUTDOWN: Duration = Duration::from_secs(10);

/// A userspace WireGuard implementation: a program and the arguments that keep it in the foreground.
#[derive(Clone, Debug)]
pub struct WgImpl {
    pub name: String,
    pub program: PathBuf,
    /// Arguments before the interface name.
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
}

impl WgImpl {
    /// The reference peer: wireguard-go from Debian.
    #[track_caller]
    pub fn wireguard_go() -> WgImpl {
        WgImpl {
            name: "wireguard-go".into(),
            program: tools::require("wireguard-go", "wireguard-go"),
            args: vec!["-f".into()],
            // Only silences its "use the kernel module instead" banner.
            env: vec![("WG_PROCESS_FOREGROUND".into(), "1".into())],
        }
    }

    /// boringtun-cli, installed with `cargo install boringtun-cli --locked`: `$BORINGTUN_CLI_BIN`,
    /// else `PATH`, else cargo's bin directory.
    #[track_caller]
    pub fn boringtun_cli() -> WgImpl {
        let program = binary_from_env(BORINGTUN_ENV)
            .or_else(|| tools::find_on_path("boringtun-cli"))
            .or_else(|| {
                let cargo_home = std::env::var_os("CARGO_HOME")
                    .map(PathBuf::from)
                    .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cargo")))?;
                let candidate = cargo_home.join("bin/boringtun-cli");
                tools::is_executable(&candidate).then_some(candidate)
            })
            .unwrap_or_else(|| {
                panic!(
                    "boringtun-cli is not installed: `cargo install boringtun-cli --locked`, or set \
                     {BORINGTUN_ENV} to its path"
                )
            });
        WgImpl {
            name: "boringtun-cli".into(),
            program,
            // Two threads: one per core of the machines the figures in DESIGN.md come from.
            args: ["--foreground", "--disable-drop-privileges", "--threads", "2"]
                .map(String::from)
                .to_vec(),
            env: vec![],
        }
    }

    /// meshd-wg from this workspace: `$MESHD_WG_BIN`, else `meshd-wg` in the target directory of
    /// the profile these tests were built with (build it first: `cargo build -p meshd-wg`).
    #[track_caller]
    pub fn meshd_wg() -> WgImpl {
        let program = binary_from_env(MESHD_WG_ENV)
            .or_else(|| {
                // The test binary lives in target/<profile>/deps/.
                let exe = std::env::current_exe().ok()?;
                let candidate = exe.parent()?.parent()?.join("meshd-wg");
                tools::is_executable(&candidate).then_some(candidate)
            })
            .unwrap_or_else(|| {
                panic!(
                    "meshd-wg is not built: run `cargo build -p meshd-wg` with the same \
                     profile as the tests, or set {MESHD_WG_ENV} to its path"
                )
            });
        WgImpl {
            name: "meshd-wg".into(),
            program,
            args: vec!["-f".into()],
            env: vec![],
        }
    }
}

#[track_caller]
fn binary_from_env(var: &str) -> Option<PathBuf> {
    let path = PathBuf::from(std::env::var_os(var)?);
    assert!(
        tools::is_executable(&path),
        "{var}={} is not an executable file",
        path.display()
    );
    Some(path)
}

/// A key pair made by `wg genkey` / `wg pubkey`.
#[derive(Clone)]
pub struct KeyPair {
    pub private: String,
    pub public: String,
}

impl KeyPair {
    #[track_caller]
    pub fn generate() -> KeyPair {
        let wg = tools::require("wg", "wireguard-tools");
        let private = run_checked(Command::new(&wg).arg("genkey"), COMMAND_TIMEOUT)
            .unwrap_or_else(|e| panic!("{e}"))
            .stdout;
        let private = String::from_utf8(private)
            .expect("wg genkey prints base64")
            .trim()
            .to_owned();
        let input = format!("{private}\n");
        let public = run_checked_with_input(
            Command::new(&wg).arg("pubkey"),
            Some(input.as_bytes()),
            COMMAND_TIMEOUT,
        )
        .unwrap_or_else(|e| panic!("{e}"))
        .stdout;
        let public = String::from_utf8(public)
            .expect("wg pubkey prints base64")
            .trim()
            .to_owned();
        KeyPair { private, public }
    }
}

/// How one peer is told about another.
#[derive(Clone, Debug, Default)]
pub struct PeerConfig {
    pub public_key: String,
    pub allowed_ips: Vec<String>,
    pub endpoint: Option<SocketAddr>,
    pub persistent_keepalive: Option<u16>,
}

/// What `wg show IFNAME dump` says about one peer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerStats {
    pub public_key: String,
    pub endpoint: Option<String>,
    pub allowed_ips: Vec<String>,
    /// Seconds since the Unix epoch; 0 for never.
    pub latest_handshake: u64,
    pub rx_bytes: u64,
    pub tx_bytes: u64,
}

/// One running WireGuard interface in a namespace. Dropping it stops the daemon.
pub struct WgPeer {
    ns: Netns,
    ifname: String,
    implementation: String,
    keys: KeyPair,
    listen_port: u16,
    daemon: Background,
}

impl WgPeer {
    /// Starts `implementation` for interface `ifname` in `ns`, waits (bounded) for the interface
    /// and its UAPI socket, and gives it a fresh private key and `listen_port`.
    #[track_caller]
    pub fn start(lab: &Lab, ns: &Netns, implementation: &WgImpl, ifname: &str, listen_port: u16) -> WgPeer {
        tools::require("wg", "wireguard-tools");
        assert!(
            ifname.len() <= 15,
            "interface name {ifname:?} is longer than IFNAMSIZ allows"
        );
        let socket = socket_path(ifname);
        assert!(
            !socket.exists(),
            "{} already exists: interface names must be unique within a test, because every \
             userspace WireGuard keeps its socket in {SOCKET_DIR}",
            socket.display()
        );

        let program = implementation.program.to_string_lossy();
        let mut argv: Vec<&str> = vec![&program];
        argv.extend(implementation.args.iter().map(String::as_str));
        argv.push(ifname);
        let env: Vec<(&str, &str)> = implementation
            .env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let label = format!("{}-{ifname}", implementation.name);
        let mut daemon = ns.spawn(&label, &argv, &env);

        let what = format!(
            "{} to create {ifname} in {} and serve {}",
            label,
            ns.name(),
            socket.display()
        );
        wait_until(&what, DAEMON_STARTUP, || {
            if let Some(status) = daemon.exited() {
                panic!(
                    "{} exited ({status}) before it was ready:\n{}",
                    daemon.label(),
                    daemon.log_tail(40)
                );
            }
            socket.exists() && ns.has_link(ifname)
        });

        let keys = KeyPair::generate();
        let key_file = lab.write_private(&format!("{ifname}.key"), &keys.private);
        let peer = WgPeer {
            ns: ns.clone(),
            ifname: ifname.to_owned(),
            implementation: implementation.name.clone(),
            keys,
            listen_port,
            daemon,
        };
        let key_file = key_file.to_string_lossy();
        peer.wg(&[
            "set",
            ifname,
            "private-key",
            &key_file,
            "listen-port",
            &listen_port.to_string(),
        ]);
        peer
    }

    pub fn ifname(&self) -> &str {
        &self.ifname
    }

    pub fn netns(&self) -> &Netns {
        &self.ns
    }

    pub fn implementation(&self) -> &str {
        &self.implementation
    }

    pub fn public_key(&self) -> &str {
        &self.keys.public
    }

    pub fn listen_port(&self) -> u16 {
        self.listen_port
    }

    pub fn daemon(&mut self) -> &mut Background {
        &mut self.daemon
    }

    /// Runs the `wg` tool in this peer's namespace; panics on failure and returns stdout.
    #[track_caller]
    pub fn wg(&self, args: &[&str]) -> String {
        let mut argv = vec!["wg"];
        argv.extend_from_slice(args);
        self.ns.run(&argv)
    }

    /// `wg set IF peer ...`
    #[track_caller]
    pub fn add_peer(&self, peer: &PeerConfig) {
        for allowed in &peer.allowed_ips {
            addr::checked(allowed);
        }
        let allowed = peer.allowed_ips.join(",");
        let mut args = vec![
            "set",
            &self.ifname,
            "peer",
            &peer.public_key,
            "allowed-ips",
            &allowed,
        ];
        let endpoint = peer.endpoint.map(|e| {
            addr::checked(&e.ip().to_string());
            e.to_string()
        });
        if let Some(endpoint) = &endpoint {
            args.extend(["endpoint", endpoint]);
        }
        let keepalive = peer.persistent_keepalive.map(|k| k.to_string());
        if let Some(keepalive) = &keepalive {
            args.extend(["persistent-keepalive", keepalive]);
        }
        self.wg(&args);
    }

    /// Gives the interface its addresses and MTU and brings it up.
    #[track_caller]
    pub fn up(&self, addrs: &[&str], mtu: u16) {
        for cidr in addrs {
            self.ns.add_addr(&self.ifname, cidr);
        }
        self.ns
            .ip(&["link", "set", &self.ifname, "mtu", &mtu.to_string(), "up"]);
    }

    /// Every peer as `wg show IF dump` reports it.
    #[track_caller]
    pub fn peers(&self) -> Vec<PeerStats> {
        let dump = self.wg(&["show", &self.ifname, "dump"]);
        // The first line is the interface itself.
        dump.lines()
            .skip(1)
            .map(|line| parse_peer_line(line).unwrap_or_else(|e| panic!("{e}")))
            .collect()
    }

    #[track_caller]
    pub fn peer(&self, public_key: &str) -> PeerStats {
        self.peers()
            .into_iter()
            .find(|p| p.public_key == public_key)
            .unwrap_or_else(|| {
                panic!(
                    "{} on {} does not list peer {public_key}",
                    self.implementation, self.ifname
                )
            })
    }

    /// Stops the daemon with SIGTERM, as an init system would, and checks that it cleans up: it
    /// exits with status 0 within [`DAEMON_SHUTDOWN`], its interface is gone and its UAPI socket
    /// removed. Panics naming whichever of these did not happen.
    #[track_caller]
    pub fn shutdown_checked(mut self) -> ExitStatus {
        self.daemon.signal(Signal::SIGTERM);
        let status = self.daemon.wait_exit(DAEMON_SHUTDOWN).unwrap_or_else(|e| {
            panic!(
                "{} ignored SIGTERM: {e}\n{}",
                self.implementation,
                self.daemon.log_tail(40)
            )
        });
        assert!(
            status.success(),
            "{} exited with {status} after SIGTERM:\n{}",
            self.implementation,
            self.daemon.log_tail(40)
        );
        let socket = socket_path(&self.ifname);
        let gone = try_wait_until(
            &format!(
                "{} to be removed after {} exited",
                self.ifname, self.implementation
            ),
            Duration::from_secs(2),
            || !self.ns.has_link(&self.ifname),
        );
        gone.unwrap_or_else(|e| panic!("{e}"));
        assert!(
            !socket.exists(),
            "{} left its UAPI socket {} behind after SIGTERM",
            self.implementation,
            socket.display()
        );
        status
    }
}

pub fn socket_path(ifname: &str) -> PathBuf {
    Path::new(SOCKET_DIR).join(format!("{ifname}.sock"))
}

fn parse_peer_line(line: &str) -> Result<PeerStats, String> {
    let f: Vec<&str> = line.split('\t').collect();
    let bad = || format!("unexpected `wg show dump` peer line: {line:?}");
    if f.len() != 8 {
        return Err(bad());
    }
    let none_if = |s: &str| (s != "(none)").then(|| s.to_owned());
    Ok(PeerStats {
        public_key: f[0].to_owned(),
        endpoint: none_if(f[2]),
        allowed_ips: none_if(f[3])
            .map(|s| s.split(',').map(str::to_owned).collect())
            .unwrap_or_default(),
        latest_handshake: f[4].parse().map_err(|_| bad())?,
        rx_bytes: f[5].parse().map_err(|_| bad())?,
        tx_bytes: f[6].parse().map_err(|_| bad())?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_dump_peer_line() {
        let line = "Fm8MMwIvnUv9wvNIcVjX7gime7I+uJ+gfuAZseqEglc=\t(none)\t192.0.2.2:51820\t\
                    198.51.100.2/32,2001:db8:1::2/128\t1763781793\t636\t692\toff";
        let stats = parse_peer_line(line).unwrap();
        assert_eq!(stats.endpoint.as_deref(), Some("192.0.2.2:51820"));
        assert_eq!(stats.allowed_ips, ["198.51.100.2/32", "2001:db8:1::2/128"]);
        assert_eq!(
            (stats.latest_handshake, stats.rx_bytes, stats.tx_bytes),
            (1763781793, 636, 692)
        );

        let never = "k=\t(none)\t(none)\t(none)\t0\t0\t0\toff";
        let stats = parse_peer_line(never).unwrap();
        assert_eq!((stats.endpoint, stats.allowed_ips.len()), (None, 0));
        assert!(parse_peer_line("k=\t(none)").is_err());
    }
}
