//! The lab's three meshd daemons: the border (controller and ingress), node1 on the underlay, node2
//! behind the NAT. Their configurations, starting and stopping them, and the meshd CLI run inside
//! their namespaces (`ip netns exec NS meshd --config FILE ...`), as an operator would type it.

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::thread;
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use serde_json::Value;

use super::command::{self, Ran, in_ns, tail};
use super::{LabDir, bird, process, topology};
use crate::config::{DEFAULT_LISTEN_PORT, IngressConfig};
use meshd_wg::sys::clock;

/// How long `meshd up` may take until `meshd status` answers.
pub const READY: Duration = Duration::from_secs(15);
/// The ingress's hold-down in the lab: short, so that a demonstration does not wait long.
pub const HOLD_DOWN_SECS: u64 = 5;
/// The network the lab creates.
pub const NETWORK: &str = "lab";

/// One host that runs meshd.
#[derive(Debug, PartialEq, Eq)]
pub struct MeshHost {
    /// `border`, `node1`, `node2`: its directory, its member name, `meshd lab start <name>`.
    pub name: &'static str,
    pub ns: &'static str,
    /// Each its own: the UAPI socket directory is shared by all namespaces.
    pub interface: &'static str,
    pub underlay: Ipv4Addr,
    /// The border: controller and ingress.
    pub border: bool,
}

pub const BORDER: &MeshHost = &MeshHost {
    name: "border",
    ns: topology::BORDER,
    interface: "mesh0",
    underlay: topology::BORDER_UNDERLAY,
    border: true,
};

pub const NODE1: &MeshHost = &MeshHost {
    name: "node1",
    ns: topology::NODE1,
    interface: "mesh1",
    underlay: topology::NODE1_UNDERLAY,
    border: false,
};

pub const NODE2: &MeshHost = &MeshHost {
    name: "node2",
    ns: topology::NODE2,
    interface: "mesh2",
    underlay: topology::NODE2_UNDERLAY,
    border: false,
};

pub const HOSTS: [&MeshHost; 3] = [BORDER, NODE1, NODE2];
pub const NODES: [&MeshHost; 2] = [NODE1, NODE2];

/// `host`'s meshd.toml.
pub fn config_text(dir: &LabDir, host: &MeshHost) -> String {
    let mut text = format!(
        "# meshd lab: {name}. Written by `meshd lab up`.
state_dir = \"{state}\"
interface = \"{interface}\"
listen_port = {DEFAULT_LISTEN_PORT}
api = \"127.0.0.1:7450\"
",
        name = host.name,
        state = dir.meshd_state(host).display(),
        interface = host.interface,
    );
    if host.border {
        text.push_str(&format!(
            "
[controller]
enabled = true

[ingress]
enabled = true
bird_socket = \"{socket}\"
upstream = \"{upstream}\"
hold_down_secs = {HOLD_DOWN_SECS}
egress_gateway = \"{gateway}\"
",
            socket = dir.bird_socket(bird::BORDER).display(),
            upstream = bird::BORDER.session,
            gateway = topology::ISP_TO_BORDER,
        ));
    }
    text
}

/// The kernel table the border's meshd announces from (the configuration's default).
pub fn announce_table() -> u32 {
    IngressConfig::default().announce_table
}

/// Creates `host`'s directory and writes its configuration.
pub fn write_config(dir: &LabDir, host: &MeshHost) -> anyhow::Result<()> {
    let path = dir.meshd_config(host);
    std::fs::create_dir_all(dir.host(host))
        .with_context(|| format!("cannot create {}", dir.host(host).display()))?;
    std::fs::write(&path, config_text(dir, host)).with_context(|| format!("cannot write {}", path.display()))
}

/// meshd on `host`, if it runs.
pub fn running(dir: &LabDir, host: &MeshHost) -> Option<u32> {
    let config = dir.meshd_config(host);
    process::running(&dir.meshd_pid(host), &config.to_string_lossy())
}

fn exe() -> anyhow::Result<PathBuf> {
    std::env::current_exe().context("cannot find the meshd executable this command runs from")
}

/// Starts `meshd up --config FILE` in `host`'s namespace, detached, and waits until it answers
/// `meshd status`.
pub fn start(dir: &LabDir, host: &MeshHost) -> anyhow::Result<u32> {
    let mut cmd = in_ns(host.ns, exe()?);
    cmd.arg("up").arg("--config").arg(dir.meshd_config(host));
    let log = dir.meshd_log(host);
    let pid = process::spawn_detached(&mut cmd, &log, &dir.meshd_pid(host))?;
    let deadline = clock::now() + READY;
    let mut last;
    loop {
        if !process::alive(pid) {
            bail!(
                "meshd on {} (pid {pid}) exited during start-up\n{}",
                host.name,
                tail(&log, 20)
            );
        }
        match cli(dir, host, &["status", "--json"]) {
            Ok(ran) if ran.success() => return Ok(pid),
            Ok(ran) => last = ran.describe(),
            Err(e) => last = format!("{e:#}"),
        }
        if clock::now() >= deadline {
            bail!(
                "meshd on {} (pid {pid}) does not answer `meshd status` {READY:?} after it started; \
                 last: {last}\n{}",
                host.name,
                tail(&log, 20)
            );
        }
        thread::sleep(Duration::from_millis(100));
    }
}

/// `ip netns exec NS meshd --config FILE ARGS`, whatever its exit status.
pub fn cli(dir: &LabDir, host: &MeshHost, args: &[&str]) -> anyhow::Result<Ran> {
    let mut cmd = in_ns(host.ns, exe()?);
    cmd.arg("--config").arg(dir.meshd_config(host)).args(args);
    command::run(&mut cmd, command::TIMEOUT)
}

/// [`cli`] that must succeed; returns stdout.
pub fn cli_ok(dir: &LabDir, host: &MeshHost, args: &[&str]) -> anyhow::Result<String> {
    let ran = cli(dir, host, args)?;
    if !ran.success() {
        return Err(anyhow!(ran.describe()));
    }
    Ok(ran.stdout)
}

/// `meshd status --json` on `host`.
pub fn status(dir: &LabDir, host: &MeshHost) -> anyhow::Result<Value> {
    let ran = cli(dir, host, &["status", "--json"])?;
    if !ran.success() {
        let why = ran.stderr.trim();
        bail!(
            "meshd on {} does not answer `meshd status`: {}",
            host.name,
            why.strip_prefix("meshd: ").unwrap_or(why)
        );
    }
    let text = ran.stdout;
    serde_json::from_str(&text)
        .with_context(|| format!("`meshd status --json` on {} printed no JSON", host.name))
}

/// The first IPv4 address in a status's `addresses` (`ADDR` or `ADDR/LEN`).
pub fn mesh_v4(status: &Value) -> Option<Ipv4Addr> {
    status
        .get("addresses")?
        .as_array()?
        .iter()
        .filter_map(Value::as_str)
        .find_map(|a| a.split('/').next()?.parse().ok())
}

/// `host`'s mesh IPv4 address, which it must have.
pub fn mesh_addr(dir: &LabDir, host: &MeshHost) -> anyhow::Result<Ipv4Addr> {
    let status = status(dir, host)?;
    mesh_v4(&status).with_context(|| format!("{} has no mesh IPv4 address yet: {status}", host.name))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use std::path::Path;

    #[test]
    fn every_configuration_is_one_meshd_accepts() {
        let dir = LabDir::new(Path::new("/run/meshd-lab")).unwrap();
        for host in HOSTS {
            let config = Config::parse(&config_text(&dir, host)).unwrap();
            assert_eq!(config.interface, host.interface);
            assert_eq!(
                config.state_dir,
                Path::new("/run/meshd-lab").join(host.name).join("state")
            );
            assert_eq!(config.controller.enabled, host.border);
            assert_eq!(config.ingress.enabled, host.border);
        }
        let border = Config::parse(&config_text(&dir, BORDER)).unwrap();
        assert_eq!(border.ingress.upstream, "isp");
        assert_eq!(
            border.ingress.bird_socket,
            Path::new("/run/meshd-lab/border-bird.ctl")
        );
        assert_eq!(border.ingress.egress_gateway, Some("192.0.2.1".parse().unwrap()));
        assert_eq!(border.ingress.hold_down_secs, HOLD_DOWN_SECS);
    }

    #[test]
    fn the_mesh_address_is_read_from_a_status() {
        let status: Value =
            serde_json::from_str(r#"{"addresses":["2001:db8::2/64","203.0.113.2/24"]}"#).unwrap();
        assert_eq!(mesh_v4(&status), Some(Ipv4Addr::new(203, 0, 113, 2)));
        assert_eq!(mesh_v4(&serde_json::json!({"addresses": []})), None);
    }
}
