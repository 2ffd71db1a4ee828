//! `meshd lab check`: what the lab must show, each check bounded and retried a couple of times (the
//! mesh may still be settling just after `meshd lab up` or a restart).
//!
//! - both BGP sessions Established, as each BIRD reports them;
//! - the ISP routes the block to the border (in BIRD and in its kernel), and the border exports the
//!   block and nothing else;
//! - meshd on the border reports its ingress healthy and the block announced;
//! - the Internet host pings each node's public address, and the node sees the Internet host's own
//!   address as the source (no NAT on the way in);
//! - each node reaches the Internet host from its public address, which the Internet host sees, and
//!   cannot from its underlay address;
//! - the border's mesh address and each node ping each other, both ways.

use std::net::{IpAddr, Ipv4Addr};
use std::thread;
use std::time::Duration;

use super::command::{self, PING, in_ns};
use super::mesh::{self, BORDER, MeshHost, NODES};
use super::{LabDir, bird, echo, topology};

/// How many times a check is tried before it fails.
const ATTEMPTS: u32 = 3;
/// The pause between two tries.
const PAUSE: Duration = Duration::from_millis(500);
/// How long one UDP exchange waits for its answer.
const ECHO_TIMEOUT: Duration = Duration::from_millis(1500);
/// How long the exchange that must fail is given.
const NEGATIVE_TIMEOUT: Duration = Duration::from_secs(2);

/// One check's result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub name: String,
    pub pass: bool,
    pub detail: String,
}

type Check<'a> = Box<dyn FnMut() -> Result<String, String> + 'a>;

/// Runs every check; `each` sees each result as soon as it is known.
pub fn run(dir: &LabDir, each: &mut dyn FnMut(&Outcome)) -> Vec<Outcome> {
    let mut checks: Vec<(String, u32, Check<'_>)> = vec![
        (
            format!("BGP session `{}` at the border", bird::BORDER.session),
            ATTEMPTS,
            Box::new(|| bgp(dir, bird::BORDER)),
        ),
        (
            format!("BGP session `{}` at the ISP", bird::ISP.session),
            ATTEMPTS,
            Box::new(|| bgp(dir, bird::ISP)),
        ),
        (
            format!("ISP routes {} to the border", topology::BLOCK),
            ATTEMPTS,
            Box::new(|| isp_route(dir)),
        ),
        (
            format!("border exports only {}", topology::BLOCK),
            ATTEMPTS,
            Box::new(|| border_exports(dir)),
        ),
        (
            "border meshd: ingress healthy, block announced".to_string(),
            ATTEMPTS,
            Box::new(|| ingress(dir)),
        ),
    ];
    for node in NODES {
        checks.push((
            format!("Internet host pings {}", node.name),
            ATTEMPTS,
            Box::new(move || {
                let addr = mesh::mesh_addr(dir, node).map_err(|e| format!("{e:#}"))?;
                ping(topology::INET, None, addr).map(|()| format!("{} answers", addr))
            }),
        ));
        checks.push((
            format!("{} sees {} as the source", node.name, topology::INET_HOST),
            ATTEMPTS,
            Box::new(move || inbound_source(dir, node)),
        ));
        checks.push((
            format!("{} reaches the Internet from its public address", node.name),
            ATTEMPTS,
            Box::new(move || outbound(dir, node)),
        ));
        checks.push((
            format!("{} cannot reach the Internet from {}", node.name, node.underlay),
            1,
            Box::new(move || underlay_blocked(node)),
        ));
        checks.push((
            format!("border <-> {} over the mesh", node.name),
            ATTEMPTS,
            Box::new(move || border_and_node(dir, node)),
        ));
    }
    let mut outcomes = Vec::new();
    for (name, attempts, mut check) in checks {
        let mut result = check();
        for _ in 1..attempts {
            if result.is_ok() {
                break;
            }
            thread::sleep(PAUSE);
            result = check();
        }
        let (pass, detail) = match result {
            Ok(detail) => (true, detail),
            Err(detail) => (false, detail),
        };
        let outcome = Outcome {
            name,
            pass,
            detail: one_line(&detail),
        };
        each(&outcome);
        outcomes.push(outcome);
    }
    outcomes
}

fn bgp(dir: &LabDir, router: &bird::Router) -> Result<String, String> {
    let row = bird::session(dir, router).map_err(|e| format!("{e:#}"))?;
    let since = row.rest.iter().take(2).cloned().collect::<Vec<_>>().join(" ");
    if row.bgp_established() {
        Ok(format!("Established since {since}"))
    } else {
        Err(format!(
            "{} (see {})",
            bird::session_state(&row),
            dir.bird_log(router).display()
        ))
    }
}

fn isp_route(dir: &LabDir) -> Result<String, String> {
    let Some(route) = bird::isp_route_to_block(dir).map_err(|e| format!("{e:#}"))? else {
        return Err(format!(
            "the ISP's BIRD has no route for {} through the border",
            topology::BLOCK
        ));
    };
    let via = format!("via {}", topology::BORDER_TO_ISP);
    let kernel =
        command::ip_in(topology::ISP, &["route", "show", topology::BLOCK]).map_err(|e| format!("{e:#}"))?;
    if !kernel.contains(&via) {
        return Err(format!(
            "BIRD has the route, but the ISP's kernel has {:?}",
            kernel.trim()
        ));
    }
    Ok(compact(&route))
}

fn border_exports(dir: &LabDir) -> Result<String, String> {
    let question = format!("show route export {}", bird::BORDER.session);
    let reply = bird::query(dir, bird::BORDER, &question).map_err(|e| format!("{e:#}"))?;
    let prefixes = bird::prefixes(&reply);
    if prefixes == [topology::BLOCK] {
        Ok(format!("`{question}`: {}", topology::BLOCK))
    } else if prefixes.is_empty() {
        Err(format!("`{question}` is empty: nothing is announced"))
    } else {
        Err(format!("`{question}` has {}", prefixes.join(", ")))
    }
}

fn ingress(dir: &LabDir) -> Result<String, String> {
    let status = mesh::status(dir, BORDER).map_err(|e| format!("{e:#}"))?;
    let Some(ingress) = status.get("ingress").filter(|i| !i.is_null()) else {
        return Err(
            "`meshd status` on the border reports no ingress; is `[ingress] enabled = true` in \
                    its configuration, and does this meshd have the ingress role?"
                .to_string(),
        );
    };
    let flag = |key: &str| ingress.get(key).and_then(serde_json::Value::as_bool);
    let text = |key: &str| {
        ingress
            .get(key)
            .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_string))
            .unwrap_or_else(|| "?".to_string())
    };
    let summary = format!(
        "upstream {} {}, {} live peers",
        text("upstream"),
        text("upstream_state"),
        text("live_peers")
    );
    match (flag("healthy"), flag("announced")) {
        (Some(true), Some(true)) => Ok(summary),
        (healthy, announced) => Err(format!(
            "healthy {}, announced {}: {} ({summary})",
            healthy.map_or("?".to_string(), |b| b.to_string()),
            announced.map_or("?".to_string(), |b| b.to_string()),
            text("reason")
        )),
    }
}

fn inbound_source(dir: &LabDir, node: &MeshHost) -> Result<String, String> {
    let addr = mesh::mesh_addr(dir, node).map_err(|e| format!("{e:#}"))?;
    let echo = echo::exchange(
        topology::INET,
        IpAddr::V4(topology::INET_HOST),
        node.ns,
        IpAddr::V4(addr),
        ECHO_TIMEOUT,
    )
    .map_err(|e| e.to_string())?;
    let seen: Vec<String> = echo.seen_by_server.iter().map(|a| a.ip().to_string()).collect();
    if seen.iter().any(|ip| *ip == topology::INET_HOST.to_string()) {
        Ok(format!(
            "UDP to {addr}: source {}{}",
            topology::INET_HOST,
            if echo.answered.is_some() {
                ", answered"
            } else {
                ", not answered"
            }
        ))
    } else if seen.is_empty() {
        Err(format!(
            "a UDP datagram from the Internet host to {addr} did not arrive{}",
            echo.send_error.map(|e| format!(" ({e})")).unwrap_or_default()
        ))
    } else {
        Err(format!("UDP to {addr} arrived from {} (NAT?)", seen.join(", ")))
    }
}

fn outbound(dir: &LabDir, node: &MeshHost) -> Result<String, String> {
    let addr = mesh::mesh_addr(dir, node).map_err(|e| format!("{e:#}"))?;
    let echo = echo::exchange(
        node.ns,
        IpAddr::V4(addr),
        topology::INET,
        IpAddr::V4(topology::INET_HOST),
        ECHO_TIMEOUT,
    )
    .map_err(|e| e.to_string())?;
    match echo.answered {
        Some(seen) if seen.ip() == IpAddr::V4(addr) => Ok(format!(
            "UDP from {addr} to {}: the Internet host saw {}",
            topology::INET_HOST,
            seen.ip()
        )),
        Some(seen) => Err(format!("the Internet host saw {} instead of {addr}", seen.ip())),
        None => Err(match (echo.send_error, echo.seen_by_server.first()) {
            (Some(e), _) => format!("cannot send from {addr} to {}: {e}", topology::INET_HOST),
            (None, Some(seen)) => format!(
                "the Internet host got the datagram from {} but its answer did not come back",
                seen.ip()
            ),
            (None, None) => {
                format!("no answer from the Internet host to UDP from {addr} within {ECHO_TIMEOUT:?}")
            }
        }),
    }
}

fn underlay_blocked(node: &MeshHost) -> Result<String, String> {
    let echo = echo::exchange(
        node.ns,
        IpAddr::V4(node.underlay),
        topology::INET,
        IpAddr::V4(topology::INET_HOST),
        NEGATIVE_TIMEOUT,
    )
    .map_err(|e| e.to_string())?;
    match (echo.seen_by_server.first(), echo.send_error) {
        (Some(seen), _) => Err(format!(
            "the Internet host got UDP from {} through the underlay: the only way there must be the mesh",
            seen.ip()
        )),
        (None, Some(e)) => Ok(format!("as it must: {e}")),
        (None, None) => Ok(format!("as it must: no answer within {NEGATIVE_TIMEOUT:?}")),
    }
}

fn border_and_node(dir: &LabDir, node: &MeshHost) -> Result<String, String> {
    let border = mesh::mesh_addr(dir, BORDER).map_err(|e| format!("{e:#}"))?;
    let addr = mesh::mesh_addr(dir, node).map_err(|e| format!("{e:#}"))?;
    ping(BORDER.ns, Some(border), addr).map_err(|e| format!("border -> {}: {e}", node.name))?;
    ping(node.ns, Some(addr), border).map_err(|e| format!("{} -> border: {e}", node.name))?;
    Ok(format!("{border} <-> {addr}"))
}

/// One ping from namespace `ns` (from `source`, if given) that must be answered within a second.
fn ping(ns: &str, source: Option<Ipv4Addr>, dest: Ipv4Addr) -> Result<(), String> {
    let mut cmd = in_ns(ns, PING.program);
    cmd.args(["-n", "-q", "-c", "1", "-W", "1"]);
    if let Some(source) = source {
        cmd.arg("-I").arg(source.to_string());
    }
    cmd.arg(dest.to_string());
    let ran = command::run(&mut cmd, Duration::from_secs(5)).map_err(|e| format!("{e:#}"))?;
    if ran.success() {
        Ok(())
    } else {
        let why = ran
            .stdout
            .lines()
            .chain(ran.stderr.lines())
            .find(|l| l.contains("packet loss") || l.contains("nreachable") || l.contains("Cannot"));
        Err(format!(
            "no answer from {dest}{}",
            why.map(|w| format!(" ({})", w.trim())).unwrap_or_default()
        ))
    }
}

/// `text` on one line, for a table cell.
fn one_line(text: &str) -> String {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ")
}

/// A route line with runs of spaces squeezed.
fn compact(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}
