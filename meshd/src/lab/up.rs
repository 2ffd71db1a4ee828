//! `meshd lab up`: builds the lab, step by step, saying what it does.
//!
//! 1. the namespaces, cables, addresses, routes and the NAT ([`topology::build`]);
//! 2. both BIRDs, with their configurations (the border's includes `meshd bird-config`'s snippet);
//! 3. meshd on the border (controller and ingress), the network `lab` with the block, the border made
//!    its ingress (`meshd member ingress`);
//! 4. meshd on node1 and node2, each joined with a token of its own;
//! 5. a bounded wait until the ISP has the block: the whole chain works.

use std::path::PathBuf;
use std::thread;
use std::time::Duration;

use anyhow::{Context, anyhow, bail};

use super::command::{self, BIRD, BIRDC, IP, IPTABLES, PING, tail};
use super::mesh::{self, BORDER, MeshHost, NETWORK, NODES};
use super::topology::{self, Machine};
use super::{LabDir, bird, dir_flag, require_root};
use crate::config::DEFAULT_LISTEN_PORT;
use meshd_wg::sys::clock;

/// How long the ISP may take to learn the block once everything runs.
pub const ANNOUNCED_WITHIN: Duration = Duration::from_secs(60);
/// How often the wait says what it is still waiting for.
const PROGRESS_EVERY: Duration = Duration::from_secs(5);

/// Builds the lab in `dir`. `say` gets one line per step. Returns the machines with their addresses
/// (the mesh addresses included).
pub fn up(dir: &LabDir, say: &mut dyn FnMut(&str)) -> anyhow::Result<Vec<Machine>> {
    require_root()?;
    command::require(&[IP, IPTABLES, BIRD, BIRDC, PING])?;
    refuse_if_up(dir)?;
    say(&format!("Building the meshd lab in {}", dir.root().display()));
    let started = clock::now();
    let mut step = |text: &str| {
        say(&format!(
            "[{:5.1}s] {text}",
            (clock::now() - started).as_secs_f64()
        ))
    };

    dir.create()
        .with_context(|| format!("cannot create the lab directory {}", dir.root().display()))?;
    topology::build().context("building the namespaces and links")?;
    step(&format!(
        "namespaces {} with their links, the underlay bridge and the NAT",
        topology::NAMESPACES.join(", ")
    ));

    bird::write_configs(dir, mesh::announce_table())?;
    for router in bird::ROUTERS {
        let pid = bird::start(dir, router)?;
        step(&format!(
            "BIRD on {} (AS {}, pid {pid}): {}",
            router.ns,
            router.asn,
            dir.bird_config(router).display()
        ));
    }

    for host in mesh::HOSTS {
        mesh::write_config(dir, host)?;
    }
    let pid = mesh::start(dir, BORDER)?;
    step(&format!(
        "meshd on the border (controller and ingress, pid {pid}): {}",
        dir.meshd_config(BORDER).display()
    ));
    let create = ["network", "create", NETWORK, "--ipv4", topology::BLOCK];
    with_logs(mesh::cli_ok(dir, BORDER, &create), &[dir.meshd_log(BORDER)])?;
    step(&format!("border: meshd {}", create.join(" ")));
    let status = mesh::status(dir, BORDER)?;
    let key = status
        .get("public_key")
        .and_then(serde_json::Value::as_str)
        .context("`meshd status --json` on the border has no public_key")?
        .to_string();
    let ingress = ["member", "ingress", &key, "--network", NETWORK];
    with_logs(mesh::cli_ok(dir, BORDER, &ingress), &[dir.meshd_log(BORDER)])?;
    step(&format!(
        "border: meshd {} (the border's own key)",
        ingress.join(" ")
    ));

    let controller = format!("{}:{DEFAULT_LISTEN_PORT}", topology::BORDER_UNDERLAY);
    for node in NODES {
        let pid = mesh::start(dir, node)?;
        let create_token = ["token", "create", "--network", NETWORK];
        let token = with_logs(mesh::cli_ok(dir, BORDER, &create_token), &[dir.meshd_log(BORDER)])?
            .trim()
            .to_string();
        let join = ["join", &token, "--controller", &controller, "--name", node.name];
        with_logs(
            mesh::cli_ok(dir, node, &join).with_context(|| format!("{} could not join", node.name)),
            &[dir.meshd_log(node), dir.meshd_log(BORDER)],
        )?;
        let addr = mesh::mesh_addr(dir, node)?;
        step(&format!(
            "meshd on {} (pid {pid}) joined as {addr}: meshd join <token> --controller {controller} --name {}",
            node.name, node.name
        ));
    }

    wait_announced(dir, &mut step)?;

    let mut machines = topology::machines();
    for machine in &mut machines {
        if let Some(host) = mesh::HOSTS.iter().find(|h| h.ns == machine.ns)
            && let Ok(addr) = mesh::mesh_addr(dir, host)
        {
            machine.addresses.push(format!("{addr} (mesh)"));
        }
    }
    Ok(machines)
}

/// Fails if a lab is up already (its namespaces or its directory), or if `dir` is someone else's.
fn refuse_if_up(dir: &LabDir) -> anyhow::Result<()> {
    let existing = topology::existing();
    if !existing.is_empty() || dir.is_lab() {
        let what = if existing.is_empty() {
            format!("its directory {} exists", dir.root().display())
        } else {
            format!("namespaces {} exist", existing.join(", "))
        };
        bail!(
            "the lab is already up ({what}); run `meshd lab down{}` first",
            dir_flag(dir)
        );
    }
    let occupied = std::fs::read_dir(dir.root()).is_ok_and(|mut entries| entries.next().is_some());
    if occupied {
        bail!(
            "{} exists and holds files that are not a lab's; choose another directory with --dir, or \
             empty it",
            dir.root().display()
        );
    }
    Ok(())
}

/// `result`, its error followed by the ends of `logs`.
fn with_logs<T>(result: anyhow::Result<T>, logs: &[PathBuf]) -> anyhow::Result<T> {
    result.map_err(|e| {
        let tails: Vec<String> = logs.iter().map(|log| tail(log, 15)).collect();
        anyhow!("{e:#}\n{}", tails.join("\n"))
    })
}

/// Waits (bounded) until the ISP's BIRD has the block from the border, saying what is missing
/// every few seconds.
fn wait_announced(dir: &LabDir, step: &mut dyn FnMut(&str)) -> anyhow::Result<()> {
    let started = clock::now();
    let mut next_progress = started + PROGRESS_EVERY;
    step(&format!(
        "waiting (at most {} s) for the ISP to learn {} from the border",
        ANNOUNCED_WITHIN.as_secs(),
        topology::BLOCK
    ));
    loop {
        if isp_has_block(dir) {
            step(&format!("the ISP routes {} to the border", topology::BLOCK));
            return Ok(());
        }
        let now = clock::now();
        if now - started >= ANNOUNCED_WITHIN {
            bail!(
                "the ISP did not learn {} within {} s: {}\n{}\n{}",
                topology::BLOCK,
                ANNOUNCED_WITHIN.as_secs(),
                waiting_for(dir),
                tail(&dir.meshd_log(BORDER), 20),
                tail(&dir.bird_log(bird::BORDER), 10)
            );
        }
        if now >= next_progress {
            next_progress = now + PROGRESS_EVERY;
            step(&format!("  still waiting: {}", waiting_for(dir)));
        }
        thread::sleep(Duration::from_millis(250));
    }
}

/// Whether the ISP's BIRD has the block with the border as next hop.
pub fn isp_has_block(dir: &LabDir) -> bool {
    bird::isp_route_to_block(dir).is_ok_and(|route| route.is_some())
}

/// What the announcement waits for: the BGP session, and what the border's meshd says.
fn waiting_for(dir: &LabDir) -> String {
    let session = match bird::session(dir, bird::BORDER) {
        Ok(row) => bird::session_state(&row),
        Err(e) => format!("unknown ({e:#})"),
    };
    let ingress = match mesh::status(dir, BORDER) {
        Ok(status) => match status.get("ingress") {
            Some(i) if !i.is_null() => format!(
                "healthy {}, announced {}, {}",
                i.get("healthy").map_or("?".into(), ToString::to_string),
                i.get("announced").map_or("?".into(), ToString::to_string),
                i.get("reason").and_then(serde_json::Value::as_str).unwrap_or("")
            ),
            _ => "meshd reports no ingress".to_string(),
        },
        Err(e) => format!("meshd does not answer ({e:#})"),
    };
    format!(
        "BGP session {} at the border: {session}; ingress: {ingress}",
        bird::BORDER.session
    )
}

/// What to try in the lab: commands, each with what it shows.
pub fn explore(dir: &LabDir, node1: Option<String>) -> Vec<(String, &'static str)> {
    let flag = dir_flag(dir);
    // As the user called it (`./target/debug/meshd lab up` works without meshd on PATH).
    let meshd = std::env::args()
        .next()
        .filter(|arg0| arg0.contains('/'))
        .unwrap_or_else(|| "meshd".to_string());
    let node1 = node1.unwrap_or_else(|| "203.0.113.2".to_string());
    vec![
        (
            format!(
                "ip netns exec {} ping {} -I {node1}",
                topology::NODE1,
                topology::INET_HOST
            ),
            "node1 to the Internet host, from its public address",
        ),
        (
            format!("ip netns exec {} ping {node1}", topology::INET),
            "the Internet host to node1",
        ),
        (
            format!(
                "ip netns exec {} {meshd} --config {} status",
                topology::BORDER,
                dir.meshd_config(BORDER).display()
            ),
            "the border: ingress health, peers",
        ),
        (
            format!(
                "ip netns exec {} birdc -s {} show route",
                topology::ISP,
                dir.bird_socket(bird::ISP).display()
            ),
            "what the ISP learned over BGP",
        ),
        (format!("{meshd} lab check{flag}"), "every check, PASS or FAIL"),
        (
            format!("{meshd} lab stop border{flag}"),
            "the ISP loses the block; `meshd lab start border` brings it back",
        ),
        (format!("{meshd} lab down{flag}"), "remove it all"),
    ]
}

/// `host`'s mesh address, if it has one now.
pub fn mesh_addr_text(dir: &LabDir, host: &MeshHost) -> Option<String> {
    mesh::mesh_addr(dir, host).ok().map(|a| a.to_string())
}
