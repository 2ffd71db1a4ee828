//! The lab's machines and cables: network namespaces, veth pairs, the underlay bridge, addresses,
//! routes, forwarding and the NAT rule (the picture is in the module above).
//!
//! Only documentation ranges: 198.51.100.0/24 is the Internet, 192.0.2.0/30 the link between the
//! ISP and the border, 100.64.0.0/10 the underlay, 203.0.113.0/24 the operator's block.

use std::net::Ipv4Addr;

use anyhow::Context;

use super::command::{self, IPTABLES, in_ns, ip, ip_in};
use meshd_wg::sys::netns;

pub const INET: &str = "meshd-inet";
pub const ISP: &str = "meshd-isp";
pub const BORDER: &str = "meshd-border";
pub const WAN: &str = "meshd-wan";
pub const NAT: &str = "meshd-nat";
pub const NODE1: &str = "meshd-node1";
pub const NODE2: &str = "meshd-node2";

/// Every namespace of the lab, in the order they are built.
pub const NAMESPACES: [&str; 7] = [INET, ISP, BORDER, WAN, NAT, NODE1, NODE2];

/// The operator's block: the mesh addresses, announced by the border.
pub const BLOCK: &str = "203.0.113.0/24";
/// The Internet as the lab has it: the Internet host's network behind the ISP.
pub const INTERNET: &str = "198.51.100.0/24";
/// The Internet host.
pub const INET_HOST: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 10);
pub const ISP_TO_INET: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);
/// The ISP's end of the link to the border: BGP neighbor and the border's egress gateway.
pub const ISP_TO_BORDER: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
pub const BORDER_TO_ISP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);
/// The border on the underlay: where nodes find the controller.
pub const BORDER_UNDERLAY: Ipv4Addr = Ipv4Addr::new(100, 64, 0, 1);
pub const NODE1_UNDERLAY: Ipv4Addr = Ipv4Addr::new(100, 64, 0, 11);
pub const NAT_OUTSIDE: Ipv4Addr = Ipv4Addr::new(100, 64, 0, 12);
pub const NAT_INSIDE: Ipv4Addr = Ipv4Addr::new(100, 64, 1, 1);
pub const NODE2_UNDERLAY: Ipv4Addr = Ipv4Addr::new(100, 64, 1, 2);

/// One machine of the lab, for the table `meshd lab up` prints.
pub struct Machine {
    pub ns: &'static str,
    pub role: &'static str,
    pub addresses: Vec<String>,
}

/// The machines and their underlay and Internet addresses (mesh addresses are added by the caller).
pub fn machines() -> Vec<Machine> {
    vec![
        Machine {
            ns: INET,
            role: "Internet host",
            addresses: vec![format!("{INET_HOST}/24")],
        },
        Machine {
            ns: ISP,
            role: "ISP router, BIRD AS 65001",
            addresses: vec![format!("{ISP_TO_INET}/24"), format!("{ISP_TO_BORDER}/30")],
        },
        Machine {
            ns: BORDER,
            role: "border router: BIRD AS 65000, meshd controller + ingress (mesh0)",
            addresses: vec![format!("{BORDER_TO_ISP}/30"), format!("{BORDER_UNDERLAY}/24")],
        },
        Machine {
            ns: WAN,
            role: "underlay switch (bridge br0)",
            addresses: vec![],
        },
        Machine {
            ns: NODE1,
            role: "mesh node on the underlay (mesh1)",
            addresses: vec![format!("{NODE1_UNDERLAY}/24")],
        },
        Machine {
            ns: NAT,
            role: "NAT router (MASQUERADE)",
            addresses: vec![format!("{NAT_OUTSIDE}/24"), format!("{NAT_INSIDE}/24")],
        },
        Machine {
            ns: NODE2,
            role: "mesh node behind the NAT (mesh2)",
            addresses: vec![format!("{NODE2_UNDERLAY}/24")],
        },
    ]
}

/// The namespaces of the lab that exist now.
pub fn existing() -> Vec<&'static str> {
    NAMESPACES.into_iter().filter(|ns| netns::exists(ns)).collect()
}

/// Creates every namespace and cable, with addresses, routes, forwarding and NAT.
pub fn build() -> anyhow::Result<()> {
    for ns in NAMESPACES {
        ip(&["netns", "add", ns])?;
        ip_in(ns, &["link", "set", "lo", "up"])?;
    }
    // The Internet host and the ISP.
    veth(
        (INET, "isp0", &format!("{INET_HOST}/24")),
        (ISP, "inet0", &format!("{ISP_TO_INET}/24")),
    )?;
    ip_in(
        INET,
        &["route", "add", "default", "via", &ISP_TO_INET.to_string()],
    )?;
    // The ISP and the border: the BGP session and the border's way out.
    veth(
        (ISP, "border0", &format!("{ISP_TO_BORDER}/30")),
        (BORDER, "isp0", &format!("{BORDER_TO_ISP}/30")),
    )?;
    // The underlay: a bridge in its own namespace, a port for the border, node1 and the NAT router.
    ip_in(WAN, &["link", "add", "br0", "type", "bridge"])?;
    ip_in(WAN, &["link", "set", "br0", "up"])?;
    bridge_port(BORDER, "wan0", &format!("{BORDER_UNDERLAY}/24"), "border")?;
    bridge_port(NODE1, "wan0", &format!("{NODE1_UNDERLAY}/24"), "node1")?;
    bridge_port(NAT, "wan0", &format!("{NAT_OUTSIDE}/24"), "nat")?;
    // node2 behind the NAT router; its default route goes there, and stops there for the Internet.
    veth(
        (NAT, "lan0", &format!("{NAT_INSIDE}/24")),
        (NODE2, "eth0", &format!("{NODE2_UNDERLAY}/24")),
    )?;
    ip_in(
        NODE2,
        &["route", "add", "default", "via", &NAT_INSIDE.to_string()],
    )?;
    for ns in [ISP, BORDER, NAT] {
        forward(ns)?;
    }
    command::run_ok(
        in_ns(NAT, IPTABLES.program).args([
            "-w",
            "5",
            "-t",
            "nat",
            "-A",
            "POSTROUTING",
            "-o",
            "wan0",
            "-j",
            "MASQUERADE",
        ]),
        command::TIMEOUT,
    )?;
    Ok(())
}

/// A veth pair between two namespaces, each end with its address and up.
fn veth(a: (&str, &str, &str), b: (&str, &str, &str)) -> anyhow::Result<()> {
    let (a_ns, a_dev, _) = a;
    let (b_ns, b_dev, _) = b;
    ip_in(
        a_ns,
        &[
            "link", "add", a_dev, "type", "veth", "peer", "name", b_dev, "netns", b_ns,
        ],
    )?;
    for (ns, dev, addr) in [a, b] {
        ip_in(ns, &["addr", "add", addr, "dev", dev])?;
        ip_in(ns, &["link", "set", dev, "up"])?;
    }
    Ok(())
}

/// Cables `ns` (interface `dev`, address `addr`) to the underlay bridge, on its port `port`.
fn bridge_port(ns: &str, dev: &str, addr: &str, port: &str) -> anyhow::Result<()> {
    ip_in(
        ns,
        &[
            "link", "add", dev, "type", "veth", "peer", "name", port, "netns", WAN,
        ],
    )?;
    ip_in(WAN, &["link", "set", port, "master", "br0"])?;
    ip_in(WAN, &["link", "set", port, "up"])?;
    ip_in(ns, &["addr", "add", addr, "dev", dev])?;
    ip_in(ns, &["link", "set", dev, "up"])?;
    Ok(())
}

/// Makes `ns` forward IPv4.
fn forward(ns: &str) -> anyhow::Result<()> {
    let key = "/proc/sys/net/ipv4/ip_forward";
    // /proc/sys/net belongs to the namespace of the thread that opens it.
    netns::run_in(ns, || std::fs::write(key, "1"))?
        .with_context(|| format!("cannot turn on forwarding in {ns} ({key})"))
}

/// Deletes the namespace `ns` (its links go with it).
pub fn delete(ns: &str) -> anyhow::Result<()> {
    ip(&["netns", "del", ns]).map(drop)
}
