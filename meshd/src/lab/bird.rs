//! The lab's two BIRDs: their configurations, starting and stopping them, and asking them (over
//! their control sockets, read-only) what a check needs.
//!
//! The ISP (AS 65001) offers the border a default route and the Internet host's network, accepts
//! only the operator's block from it, and installs what it learns over BGP in its kernel, so packets
//! really flow. The border (AS 65000) includes the snippet `meshd bird-config` prints and exports to
//! the ISP only through its filter; what it learns from the ISP goes into its main table.

use std::net::Ipv4Addr;
use std::thread;
use std::time::Duration;

use anyhow::{Context, bail};
use meshd_packet::Ipv4Prefix;
use meshd_routing::bird::{ProtocolRow, Reply, protocols};

use super::command::{self, BIRD, in_ns, tail};
use super::{LabDir, process, topology};
use meshd_core::ingress::bird_config;
use meshd_wg::sys::bird::BirdClient;
use meshd_wg::sys::clock;

/// How long BIRD may take to start and answer on its socket.
pub const READY: Duration = Duration::from_secs(10);
/// How long one question to BIRD may take.
const QUERY_TIMEOUT: Duration = Duration::from_secs(2);
/// BGP timers: the session notices a dead peer in 6 s and reconnects every 2 s.
const TIMERS: &str = "hold time 6; keepalive time 2; connect retry time 2;";

/// A router of the lab that runs BIRD.
#[derive(Debug, PartialEq, Eq)]
pub struct Router {
    /// `isp` or `border`: its files are `<name>-bird.*`; `meshd lab start <name>-bird`.
    pub name: &'static str,
    pub ns: &'static str,
    pub asn: u32,
    pub router_id: Ipv4Addr,
    /// The name of its BGP protocol towards the other router.
    pub session: &'static str,
}

pub const ISP: &Router = &Router {
    name: "isp",
    ns: topology::ISP,
    asn: 65001,
    router_id: topology::ISP_TO_BORDER,
    session: "border",
};

pub const BORDER: &Router = &Router {
    name: "border",
    ns: topology::BORDER,
    asn: 65000,
    router_id: topology::BORDER_TO_ISP,
    session: "isp",
};

pub const ROUTERS: [&Router; 2] = [ISP, BORDER];

/// The ISP's `bird.conf`.
pub fn isp_config(dir: &LabDir) -> String {
    format!(
        "# meshd lab: the ISP, AS {isp_as}. Written by `meshd lab up`.
log \"{log}\" all;
router id {isp_id};
timeformat protocol iso long;

protocol device {{ scan time 2; }}

# The Internet host's network, offered to the border.
protocol direct internet {{ ipv4; interface \"inet0\"; }}

# The default route the ISP offers its customer (the ISP itself has nowhere to send it).
protocol static default_route {{ ipv4; route 0.0.0.0/0 blackhole; }}

# What BGP learns goes into this namespace's kernel, so packets to the block really flow.
protocol kernel {{ ipv4 {{ import none; export where source = RTS_BGP; }}; }}

protocol bgp {session} {{
\tdescription \"the customer: the mesh's border router\";
\tlocal {isp_id} as {isp_as};
\tneighbor {border_id} as {border_as};
\t{TIMERS}
\tipv4 {{
\t\timport filter {{ if net = {block} then accept; reject; }};
\t\texport where proto = \"default_route\" || proto = \"internet\";
\t}};
}}
",
        isp_as = ISP.asn,
        log = dir.bird_log(ISP).display(),
        isp_id = ISP.router_id,
        session = ISP.session,
        border_id = BORDER.router_id,
        border_as = BORDER.asn,
        block = topology::BLOCK,
    )
}

/// The border's `bird.conf`.
pub fn border_config(dir: &LabDir) -> String {
    format!(
        "# meshd lab: the border router, AS {border_as}. Written by `meshd lab up`.
log \"{log}\" all;
router id {border_id};
timeformat protocol iso long;

protocol device {{ scan time 2; }}

# Routes from the ISP go into this namespace's main table.
protocol kernel {{ ipv4 {{ import none; export where source = RTS_BGP; }}; }}

# What `meshd bird-config` prints: BIRD learns the block from meshd's kernel table.
include \"{snippet}\";

protocol bgp {session} {{
\tdescription \"the upstream ISP\";
\tlocal {border_id} as {border_as};
\tneighbor {isp_id} as {isp_as};
\t{TIMERS}
\tipv4 {{
\t\timport filter {{ if net = 0.0.0.0/0 || net = {internet} then accept; reject; }};
\t\texport filter {filter};
\t}};
}}
",
        border_as = BORDER.asn,
        log = dir.bird_log(BORDER).display(),
        border_id = BORDER.router_id,
        snippet = dir.bird_snippet().display(),
        session = BORDER.session,
        isp_id = ISP.router_id,
        isp_as = ISP.asn,
        internet = topology::INTERNET,
        filter = bird_config::EXPORT_FILTER_V4,
    )
}

/// The block the lab announces.
pub fn block() -> Ipv4Prefix {
    topology::BLOCK.parse().expect("the lab's block is a prefix")
}

/// Writes both configurations and the border's meshd snippet.
pub fn write_configs(dir: &LabDir, announce_table: u32) -> anyhow::Result<()> {
    let files = [
        (dir.bird_config(ISP), isp_config(dir)),
        (dir.bird_config(BORDER), border_config(dir)),
        (
            dir.bird_snippet(),
            bird_config::render(&[block()], &[], announce_table),
        ),
    ];
    for (path, text) in files {
        std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(())
}

/// The BIRD of `router`, if it runs.
pub fn running(dir: &LabDir, router: &Router) -> Option<u32> {
    let socket = dir.bird_socket(router);
    process::running(&dir.bird_pid(router), &socket.to_string_lossy())
}

/// Starts BIRD on `router` (`ip netns exec NS bird -c CONF -s SOCK -P PIDFILE`; it detaches itself)
/// and waits until it answers on its control socket.
pub fn start(dir: &LabDir, router: &Router) -> anyhow::Result<u32> {
    let mut cmd = in_ns(router.ns, BIRD.program);
    cmd.arg("-c")
        .arg(dir.bird_config(router))
        .arg("-s")
        .arg(dir.bird_socket(router))
        .arg("-P")
        .arg(dir.bird_pid(router));
    let shown = command::display(&cmd);
    let start_log = dir.bird_start_log(router);
    let status = command::run_logged(&mut cmd, &start_log, READY)?;
    if !status.success() {
        bail!(
            "BIRD on {} did not start: `{shown}` failed ({status})\n{}\n{}",
            router.ns,
            tail(&start_log, 20),
            tail(&dir.bird_log(router), 20)
        );
    }
    let deadline = clock::now() + READY;
    loop {
        let pid = running(dir, router);
        if let Some(pid) = pid
            && query(dir, router, "show status").is_ok()
        {
            return Ok(pid);
        }
        if clock::now() >= deadline {
            bail!(
                "BIRD on {} was started but {}; `{shown}`\n{}\n{}",
                router.ns,
                if pid.is_some() {
                    format!("does not answer on {}", dir.bird_socket(router).display())
                } else {
                    format!("is not running (see {})", dir.bird_pid(router).display())
                },
                tail(&start_log, 20),
                tail(&dir.bird_log(router), 20)
            );
        }
        thread::sleep(Duration::from_millis(50));
    }
}

/// Asks `router`'s BIRD one read-only question.
pub fn query(dir: &LabDir, router: &Router, question: &str) -> anyhow::Result<Reply> {
    let socket = dir.bird_socket(router);
    let mut client = BirdClient::connect_restricted(&socket, QUERY_TIMEOUT)?;
    let reply = client.command(question)?;
    Ok(reply)
}

/// The row of `router`'s BGP session in `show protocols`.
pub fn session(dir: &LabDir, router: &Router) -> anyhow::Result<ProtocolRow> {
    let reply = query(dir, router, &format!("show protocols {}", router.session))?;
    protocols(&reply)
        .into_iter()
        .find(|row| row.name == router.session)
        .with_context(|| {
            format!(
                "BIRD on {} has no protocol {} ({:04} {})",
                router.ns,
                router.session,
                reply.code(),
                reply.message()
            )
        })
}

/// The ISP's route to the block through the border, if it has one: `show route 203.0.113.0/24`
/// (the exact prefix; `show route for` would find the default route when the block is gone).
pub fn isp_route_to_block(dir: &LabDir) -> anyhow::Result<Option<String>> {
    let reply = query(dir, ISP, &format!("show route {}", topology::BLOCK))?;
    let via = format!("via {}", BORDER.router_id);
    Ok(routes(&reply)
        .into_iter()
        .find(|r| r.starts_with(topology::BLOCK) && r.contains(&via)))
}

/// A session's state as a person reads it: `Established`, `Active`, `down`...
pub fn session_state(row: &ProtocolRow) -> String {
    if row.bgp_established() {
        return "Established".to_string();
    }
    // Info is the last words after Since (a date and a time with `timeformat ... iso long`).
    match row.rest.get(2..) {
        Some(info) if !info.is_empty() => format!("{} {}", row.state, info.join(" ")),
        _ => row.state.clone(),
    }
}

/// The routes of `reply` to a `show route ...`: each route's first line (prefix, type, protocol,
/// ...) followed by its next-hop lines, one string per route.
pub fn routes(reply: &Reply) -> Vec<String> {
    let mut routes: Vec<String> = Vec::new();
    for text in reply.lines_with(1007) {
        if text.starts_with("Table ") {
            continue;
        }
        match routes.last_mut() {
            Some(route) if text.starts_with(char::is_whitespace) => {
                route.push(' ');
                route.push_str(text.trim());
            }
            _ => routes.push(text.trim().to_string()),
        }
    }
    routes
}

/// The prefixes of the routes in `reply` (a route line's first word).
pub fn prefixes(reply: &Reply) -> Vec<String> {
    routes(reply)
        .iter()
        .filter_map(|r| r.split_whitespace().next())
        .filter(|p| p.contains('/'))
        .map(str::to_string)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use meshd_routing::bird::ReplyReader;
    use std::path::Path;

    fn reply(lines: &[&str]) -> Reply {
        let mut reader = ReplyReader::new();
        lines.iter().find_map(|l| reader.feed(l).unwrap()).unwrap()
    }

    #[test]
    fn configurations_name_the_lab_files_and_the_sessions() {
        let dir = LabDir::new(Path::new("/run/meshd-lab")).unwrap();
        let isp = isp_config(&dir);
        assert!(isp.contains("log \"/run/meshd-lab/isp-bird.log\" all;"), "{isp}");
        assert!(isp.contains("protocol bgp border {"), "{isp}");
        assert!(isp.contains("neighbor 192.0.2.2 as 65000;"), "{isp}");
        assert!(isp.contains("if net = 203.0.113.0/24 then accept;"), "{isp}");
        assert!(isp.contains(TIMERS), "{isp}");
        let border = border_config(&dir);
        assert!(
            border.contains("include \"/run/meshd-lab/border-meshd.conf\";"),
            "{border}"
        );
        assert!(border.contains("protocol bgp isp {"), "{border}");
        assert!(border.contains("export filter meshd_export;"), "{border}");
        assert!(border.contains("timeformat protocol iso long;"), "{border}");
    }

    #[test]
    fn routes_and_their_prefixes_are_read_from_show_route() {
        let r = reply(&[
            "1007-Table master4:",
            " 203.0.113.0/24       unicast [border 2026-11-22 07:30:01] * (100) [AS65000i]",
            " \tvia 192.0.2.2 on border0",
            "0000 ",
        ]);
        assert_eq!(
            routes(&r),
            [
                "203.0.113.0/24       unicast [border 2026-11-22 07:30:01] * (100) [AS65000i] via 192.0.2.2 on border0"
            ]
        );
        assert_eq!(prefixes(&r), ["203.0.113.0/24"]);
        assert!(prefixes(&reply(&["8001 Network not found"])).is_empty());
    }
}
