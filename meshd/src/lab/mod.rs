//! `meshd lab`: the whole product on one Linux machine, without the Internet. Network namespaces
//! stand in for the machines: an Internet host, an ISP running BIRD, the border router running
//! BIRD and meshd (controller and ingress), and two mesh nodes on an underlay, one of them behind
//! NAT. Every mesh node's address is a public address of the operator's block, 203.0.113.0/24,
//! which the border announces to the ISP over BGP while it is healthy.
//!
//! ```text
//!  meshd-inet            meshd-isp                      meshd-border
//!  198.51.100.10/24 ---- 198.51.100.1/24                BIRD AS 65000, protocol bgp "isp"
//!  (the Internet)        BIRD AS 65001  192.0.2.1/30 -- 192.0.2.2/30
//!                        protocol bgp "border"          meshd: controller + ingress, mesh0
//!                                                       100.64.0.1/24
//!                                                           |
//!                                      meshd-wan: bridge br0 (the underlay, 100.64.0.0/24)
//!                                        |                        |
//!                                  meshd-node1               meshd-nat  100.64.0.12/24
//!                                  100.64.0.11/24            MASQUERADE 100.64.1.1/24
//!                                  meshd, mesh1                   |
//!                                                            meshd-node2 100.64.1.2/24
//!                                                            meshd, mesh2
//! ```
//!
//! The nodes have no route to 198.51.100.0/24 through the underlay, and neither has the NAT router:
//! the only way from a node to the Internet host is from its public address, through the mesh and
//! the border. The border's meshd holds `203.0.113.0/24 dev mesh0 table 201` while healthy; BIRD
//! learns it from there and exports it to the ISP, whose BIRD installs it in its kernel.
//!
//! Everything lives in the lab's directory (default [`DEFAULT_DIR`]): configurations, logs, pid
//! files, BIRD's control sockets, the daemons' state. `meshd lab down` removes it with the
//! namespaces. Each meshd has an interface name of its own (`mesh0`, `mesh1`, `mesh2`): every
//! WireGuard-compatible daemon keeps its control socket in `/var/run/wireguard`, which all network
//! namespaces share.
//!
//! - [`topology`]: the namespaces, links, addresses and routes.
//! - [`bird`]: the two BIRD configurations, and starting, stopping and asking BIRD.
//! - [`mesh`]: the three meshd daemons, their configurations, and the CLI run inside their namespaces.
//! - [`process`]: daemons as processes: pid files, detached starts, bounded stops.
//! - [`command`]: the external programs the lab runs, each bounded in time.
//! - [`up`], [`down`], [`check`]: the subcommands; [`echo`]: a UDP echo across namespaces.

pub mod bird;
pub mod check;
pub mod command;
pub mod down;
pub mod echo;
pub mod mesh;
pub mod process;
pub mod topology;
pub mod up;

use std::path::{Path, PathBuf};

use anyhow::bail;

/// Where the lab lives unless `--dir` says otherwise.
pub const DEFAULT_DIR: &str = "/run/meshd-lab";
/// The file that marks a directory as a lab's; `meshd lab down` removes only a directory holding it.
const MARKER: &str = "meshd-lab.txt";
/// What the marker says.
const MARKER_TEXT: &str = "\
This directory holds a lab built by `meshd lab up`; `meshd lab down` stops it and removes the directory.
  isp-bird.*, border-bird.*    BIRD of the ISP and of the border: .conf, .ctl (control socket), .log, .pid
  border-meshd.conf            the snippet `meshd bird-config` prints, included by border-bird.conf
  border/, node1/, node2/      each meshd: meshd.toml, meshd.log, meshd.pid, state/
";

/// The lab's directory and the paths of everything in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabDir {
    root: PathBuf,
}

impl LabDir {
    /// The longest a control socket's path may be (`sun_path` holds 108 bytes with the final zero).
    const MAX_SOCKET_PATH: usize = 107;

    /// Checks that `root` can be written into BIRD's and meshd's configuration files as it is: an
    /// absolute path of plain characters, short enough for a control socket.
    pub fn new(root: &Path) -> anyhow::Result<LabDir> {
        let Some(text) = root.to_str() else {
            bail!(
                "--dir {} is not UTF-8; choose a plain path such as {DEFAULT_DIR}",
                root.display()
            );
        };
        if !root.is_absolute() {
            bail!("--dir {text:?} is relative; give an absolute path such as {DEFAULT_DIR}");
        }
        if text
            .chars()
            .any(|c| c.is_control() || matches!(c, '"' | '\\' | '\''))
        {
            bail!(
                "--dir {text:?} holds a quote, a backslash or a control character, which the BIRD and \
                 meshd configuration files cannot carry; choose a plain path such as {DEFAULT_DIR}"
            );
        }
        let root = PathBuf::from(text.trim_end_matches('/'));
        let root = if root.as_os_str().is_empty() {
            PathBuf::from("/")
        } else {
            root
        };
        if root == Path::new("/") {
            bail!("--dir / would put the lab's files into the root directory; choose one of its own");
        }
        let dir = LabDir { root };
        let longest = dir.bird_socket(bird::BORDER);
        if longest.as_os_str().len() > Self::MAX_SOCKET_PATH {
            bail!(
                "--dir {text:?} is too long: BIRD's control socket {} would pass the {} bytes a Unix \
                 socket path may have; choose a shorter directory",
                longest.display(),
                Self::MAX_SOCKET_PATH
            );
        }
        Ok(dir)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn marker(&self) -> PathBuf {
        self.root.join(MARKER)
    }

    /// Whether the directory holds a lab (its marker).
    pub fn is_lab(&self) -> bool {
        self.marker().exists()
    }

    /// Creates the directory and its marker.
    pub fn create(&self) -> std::io::Result<()> {
        std::fs::create_dir_all(&self.root)?;
        std::fs::write(self.marker(), MARKER_TEXT)
    }

    /// A meshd host's directory.
    pub fn host(&self, host: &mesh::MeshHost) -> PathBuf {
        self.root.join(host.name)
    }

    pub fn meshd_config(&self, host: &mesh::MeshHost) -> PathBuf {
        self.host(host).join("meshd.toml")
    }

    pub fn meshd_log(&self, host: &mesh::MeshHost) -> PathBuf {
        self.host(host).join("meshd.log")
    }

    pub fn meshd_pid(&self, host: &mesh::MeshHost) -> PathBuf {
        self.host(host).join("meshd.pid")
    }

    pub fn meshd_state(&self, host: &mesh::MeshHost) -> PathBuf {
        self.host(host).join("state")
    }

    fn bird_file(&self, router: &bird::Router, extension: &str) -> PathBuf {
        self.root.join(format!("{}-bird.{extension}", router.name))
    }

    pub fn bird_config(&self, router: &bird::Router) -> PathBuf {
        self.bird_file(router, "conf")
    }

    pub fn bird_socket(&self, router: &bird::Router) -> PathBuf {
        self.bird_file(router, "ctl")
    }

    pub fn bird_pid(&self, router: &bird::Router) -> PathBuf {
        self.bird_file(router, "pid")
    }

    /// BIRD's own log (`log "..." all;`).
    pub fn bird_log(&self, router: &bird::Router) -> PathBuf {
        self.bird_file(router, "log")
    }

    /// What `bird` printed while starting (configuration errors, before it detaches).
    pub fn bird_start_log(&self, router: &bird::Router) -> PathBuf {
        self.bird_file(router, "start.log")
    }

    /// The BIRD snippet of `meshd bird-config`, included by the border's configuration.
    pub fn bird_snippet(&self) -> PathBuf {
        self.root.join("border-meshd.conf")
    }
}

/// One daemon of the lab, as `meshd lab start|stop` name them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Component {
    /// meshd on a host.
    Meshd(&'static mesh::MeshHost),
    /// BIRD on a router.
    Bird(&'static bird::Router),
}

impl Component {
    pub fn name(&self) -> String {
        match self {
            Component::Meshd(host) => host.name.to_string(),
            Component::Bird(router) => format!("{}-bird", router.name),
        }
    }

    /// Whether it runs, and its pid.
    pub fn running(&self, dir: &LabDir) -> Option<u32> {
        match self {
            Component::Meshd(host) => mesh::running(dir, host),
            Component::Bird(router) => bird::running(dir, router),
        }
    }
}

/// `meshd lab start COMPONENT`: starts one daemon of a lab that is up, and waits until it answers.
pub fn start(dir: &LabDir, component: Component) -> anyhow::Result<u32> {
    require_lab(dir)?;
    if let Some(pid) = component.running(dir) {
        bail!(
            "{} runs already (pid {pid}); stop it first with `meshd lab stop {}`",
            component.name(),
            component.name()
        );
    }
    let pid_file = match component {
        Component::Meshd(host) => dir.meshd_pid(host),
        Component::Bird(router) => dir.bird_pid(router),
    };
    process::wait_exiting(&pid_file, process::STOP_GRACE)?;
    match component {
        Component::Meshd(host) => mesh::start(dir, host),
        Component::Bird(router) => bird::start(dir, router),
    }
}

/// `meshd lab stop COMPONENT`: SIGTERM and a bounded wait (SIGKILL after it), or SIGKILL at once.
pub fn stop(dir: &LabDir, component: Component, kill: bool) -> anyhow::Result<process::Stopped> {
    require_lab(dir)?;
    let Some(pid) = component.running(dir) else {
        bail!(
            "{} is not running; start it with `meshd lab start {}`",
            component.name(),
            component.name()
        );
    };
    let how = if kill {
        process::How::Kill
    } else {
        process::How::Term
    };
    process::stop(pid, how, process::STOP_GRACE)
}

/// Fails unless `dir` holds a lab whose namespaces exist.
pub fn require_lab(dir: &LabDir) -> anyhow::Result<()> {
    if !dir.is_lab() {
        bail!(
            "no lab in {} (no {MARKER} there); build one with `meshd lab up{}`",
            dir.root().display(),
            dir_flag(dir)
        );
    }
    if let Some(missing) = topology::NAMESPACES
        .iter()
        .find(|ns| !meshd_wg::sys::netns::exists(ns))
    {
        bail!(
            "the lab in {} is incomplete: namespace {missing} is missing; run `meshd lab down{}` and \
             `meshd lab up{}` again",
            dir.root().display(),
            dir_flag(dir),
            dir_flag(dir)
        );
    }
    Ok(())
}

/// ` --dir DIR` when the lab is not in the default directory, for the commands the lab suggests.
pub fn dir_flag(dir: &LabDir) -> String {
    if dir.root() == Path::new(DEFAULT_DIR) {
        String::new()
    } else {
        format!(" --dir {}", dir.root().display())
    }
}

/// Whether this process may build namespaces: its effective user is root.
pub fn require_root() -> anyhow::Result<()> {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let euid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().nth(1))
        .and_then(|id| id.parse::<u32>().ok());
    match euid {
        Some(0) => Ok(()),
        _ => bail!(
            "meshd lab needs root: it creates network namespaces, links, TUN devices and firewall rules; \
             run it as root (e.g. `sudo meshd lab up`)"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directories_that_cannot_be_written_into_configurations_are_refused() {
        for (bad, word) in [
            ("relative/dir", "relative"),
            ("/tmp/a\"b", "quote"),
            ("/", "root directory"),
            ("//", "root directory"),
        ] {
            let e = LabDir::new(Path::new(bad)).unwrap_err().to_string();
            assert!(e.contains(word), "{bad}: {e}");
        }
        let long = format!("/tmp/{}", "x".repeat(100));
        let e = LabDir::new(Path::new(&long)).unwrap_err().to_string();
        assert!(e.contains("too long"), "{e}");
        let dir = LabDir::new(Path::new("/run/meshd-lab/")).unwrap();
        assert_eq!(dir.root(), Path::new("/run/meshd-lab"));
        assert_eq!(
            dir.bird_socket(bird::ISP),
            Path::new("/run/meshd-lab/isp-bird.ctl")
        );
        assert_eq!(
            dir.meshd_config(mesh::NODE1),
            Path::new("/run/meshd-lab/node1/meshd.toml")
        );
    }

    #[test]
    fn suggested_commands_name_a_directory_only_when_it_is_not_the_default() {
        assert_eq!(dir_flag(&LabDir::new(Path::new(DEFAULT_DIR)).unwrap()), "");
        assert_eq!(
            dir_flag(&LabDir::new(Path::new("/tmp/lab")).unwrap()),
            " --dir /tmp/lab"
        );
    }
}
