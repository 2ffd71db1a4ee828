//! `meshd lab up|check|down|start|stop`: the whole product on this machine, in network namespaces
//! (see [`crate::lab`]).

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand, ValueEnum};

use super::format::{out, table};
use crate::lab::{self, Component, LabDir, bird, mesh};

/// The lab as `meshd lab up --help` draws it (a string continued with `\` would lose the first
/// line's indentation, so it starts on the first line).
const TOPOLOGY: &str = "  meshd-inet    Internet host 198.51.100.10
  meshd-isp     ISP router, BIRD AS 65001
  meshd-border  border router: BIRD AS 65000 (BGP session `isp`), meshd controller + ingress
  meshd-wan     underlay bridge, 100.64.0.0/24
  meshd-node1   mesh node on the underlay
  meshd-nat     NAT router (MASQUERADE) in front of node2
  meshd-node2   mesh node behind the NAT
Every node's mesh address is a public address of 203.0.113.0/24, which the border announces to the
ISP over BGP while it is healthy. The nodes have no route to the Internet host through the underlay:
they reach it from their public addresses, through the mesh and the border.";

#[derive(Debug, Subcommand)]
pub enum LabCommand {
    /// Build the lab: namespaces, BIRD on an ISP and the border, meshd on the border and two nodes.
    #[command(
        long_about = "Build the lab on this machine (as root; no Internet needed): network namespaces \
        for an Internet host, an ISP running BIRD, the border router running BIRD and meshd (controller \
        and ingress), and two mesh nodes on an underlay, one behind NAT. It creates the network `lab` \
        with 203.0.113.0/24, makes the border its ingress, joins both nodes with tokens, and waits (at \
        most 60 s) until the ISP has the block. Then it prints what it built and what to try.\n\n\
        Everything goes into DIR: configurations, logs, pid files, BIRD's control sockets. It needs \
        `ip` (iproute2), `iptables`, `bird` and `birdc` (bird2) and `ping` (iputils-ping). If a step \
        fails it says which, with the end of the relevant log; `meshd lab down` then removes what was \
        built.",
        after_help = format!("The lab:\n{TOPOLOGY}\n\nExamples:\n  sudo meshd lab up\n  \
        sudo meshd lab up --dir /tmp/lab")
    )]
    Up(DirArg),

    /// Check the lab end to end: BGP, the announcement, traffic both ways; exit 0 only if all pass.
    #[command(
        long_about = "Run the lab's checks and print a table of them (check, PASS or FAIL, detail); the \
        exit status is 0 only when every check passes. Each check is bounded and tried up to three \
        times, since the mesh may still be settling after `up` or a restart.\n\nThe checks: both BGP \
        sessions Established; the ISP routes 203.0.113.0/24 to the border (in BIRD and in its kernel); \
        the border exports only the block; meshd on the border reports its ingress healthy and the \
        block announced; the Internet host pings each node's public address and the node sees \
        198.51.100.10 as the source (no NAT); each node reaches a UDP echo on the Internet host from \
        its public address, which the echo sees, and cannot from its underlay address; the border's \
        mesh address and each node ping each other both ways.",
        after_help = "Examples:\n  sudo meshd lab check\n  sudo meshd lab check --dir /tmp/lab && echo all good"
    )]
    Check(DirArg),

    /// Tear the lab down: stop its daemons, delete its namespaces, remove its directory.
    #[command(
        long_about = "Tear the lab down: stop every meshd and BIRD of the lab (SIGTERM, then SIGKILL \
        after 5 s), and anything else left running in its namespaces, delete the namespaces and \
        remove DIR. It also cleans up after a failed or partial `meshd lab up`; when nothing is up it \
        says so and exits 0.",
        after_help = "Examples:\n  sudo meshd lab down\n  sudo meshd lab down --dir /tmp/lab"
    )]
    Down(DirArg),

    /// Start one daemon of the lab again (after `meshd lab stop`, or a crash).
    #[command(
        long_about = "Start one daemon of a lab that is up, and wait until it answers (meshd: `meshd \
        status`; BIRD: its control socket). A component that runs already is an error.",
        after_help = "Examples:\n  sudo meshd lab start border\n  sudo meshd lab start isp-bird --dir /tmp/lab"
    )]
    Start(StartArgs),

    /// Stop one daemon of the lab, to see what the others do without it.
    #[command(
        long_about = "Stop one daemon of the lab: SIGTERM and a wait of at most 5 s (then SIGKILL), or \
        with --kill SIGKILL at once, as a crash would. For example, stopping `border` withdraws \
        203.0.113.0/24 at the ISP within about a second; `meshd lab start border` announces it again \
        after the hold-down (5 s in the lab).",
        after_help = "Examples:\n  sudo meshd lab stop border\n  sudo meshd lab stop border --kill\n  \
        sudo meshd lab stop border-bird && sudo meshd lab start border-bird"
    )]
    Stop(StopArgs),
}

#[derive(Debug, Args)]
pub struct DirArg {
    /// The lab's directory: configurations, logs, pid files, control sockets.
    #[arg(long, value_name = "DIR", default_value = lab::DEFAULT_DIR)]
    pub dir: PathBuf,
}

#[derive(Debug, Args)]
pub struct StartArgs {
    /// Which daemon.
    #[arg(value_enum)]
    pub component: ComponentArg,
    #[command(flatten)]
    pub dir: DirArg,
}

#[derive(Debug, Args)]
pub struct StopArgs {
    /// Which daemon.
    #[arg(value_enum)]
    pub component: ComponentArg,
    /// SIGKILL at once instead of SIGTERM: no chance to clean up, as a crash.
    #[arg(long)]
    pub kill: bool,
    #[command(flatten)]
    pub dir: DirArg,
}

/// The daemons `start` and `stop` take.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ComponentArg {
    /// meshd on the border router (controller and ingress).
    Border,
    /// meshd on node1.
    Node1,
    /// meshd on node2 (behind the NAT).
    Node2,
    /// BIRD on the border router.
    BorderBird,
    /// BIRD on the ISP.
    IspBird,
}

impl ComponentArg {
    fn component(self) -> Component {
        match self {
            ComponentArg::Border => Component::Meshd(mesh::BORDER),
            ComponentArg::Node1 => Component::Meshd(mesh::NODE1),
            ComponentArg::Node2 => Component::Meshd(mesh::NODE2),
            ComponentArg::BorderBird => Component::Bird(bird::BORDER),
            ComponentArg::IspBird => Component::Bird(bird::ISP),
        }
    }
}

pub fn lab(command: LabCommand) -> anyhow::Result<()> {
    match command {
        LabCommand::Up(arg) => up(&LabDir::new(&arg.dir)?),
        LabCommand::Check(arg) => check(&LabDir::new(&arg.dir)?),
        LabCommand::Down(arg) => {
            let dir = LabDir::new(&arg.dir)?;
            lab::down::down(&dir, &mut |line| say(line))?;
            Ok(())
        }
        LabCommand::Start(args) => {
            let dir = LabDir::new(&args.dir.dir)?;
            lab::require_root()?;
            let component = args.component.component();
            let pid = lab::start(&dir, component)?;
            say(&format!("started {} (pid {pid})", component.name()));
            Ok(())
        }
        LabCommand::Stop(args) => {
            let dir = LabDir::new(&args.dir.dir)?;
            lab::require_root()?;
            let component = args.component.component();
            let stopped = lab::stop(&dir, component, args.kill)?;
            say(&format!("stopped {}: {stopped}", component.name()));
            Ok(())
        }
    }
}

/// One line on stdout (a closed pipe is not an error).
fn say(line: &str) {
    let _ = out(&format!("{line}\n"));
}

fn up(dir: &LabDir) -> anyhow::Result<()> {
    let there_before = dir.is_lab() || !lab::topology::existing().is_empty();
    let machines = match lab::up::up(dir, &mut |line| say(line)) {
        Ok(machines) => machines,
        Err(e) => {
            let built = !there_before && (dir.is_lab() || !lab::topology::existing().is_empty());
            return Err(if built {
                e.context(format!(
                    "meshd lab up failed; the lab is partly built: `meshd lab down{}` removes it",
                    lab::dir_flag(dir)
                ))
            } else {
                e.context("meshd lab up failed")
            });
        }
    };
    let rows: Vec<Vec<String>> = machines
        .iter()
        .map(|m| {
            vec![
                m.ns.to_string(),
                m.role.to_string(),
                if m.addresses.is_empty() {
                    "-".to_string()
                } else {
                    m.addresses.join(", ")
                },
            ]
        })
        .collect();
    let mut text = String::from("\nThe lab is up:\n\n");
    text.push_str(&table(&["NAMESPACE", "ROLE", "ADDRESSES"], &rows));
    text.push_str("\nTry:\n");
    let node1 = lab::up::mesh_addr_text(dir, mesh::NODE1);
    let tries = lab::up::explore(dir, node1);
    let width = tries.iter().map(|(command, _)| command.len()).max().unwrap_or(0);
    for (command, what) in tries {
        text.push_str(&format!("  {command:<width$}  # {what}\n"));
    }
    Ok(out(&text)?)
}

fn check(dir: &LabDir) -> anyhow::Result<()> {
    lab::require_root()?;
    lab::command::require(&[lab::command::IP, lab::command::PING])?;
    lab::require_lab(dir)?;
    let outcomes = lab::check::run(dir, &mut |o| {
        // Progress on stderr, so that stdout is the table alone.
        eprintln!("{} {}", if o.pass { "PASS" } else { "FAIL" }, o.name);
    });
    let rows: Vec<Vec<String>> = outcomes
        .iter()
        .map(|o| {
            vec![
                o.name.clone(),
                if o.pass { "PASS" } else { "FAIL" }.to_string(),
                o.detail.clone(),
            ]
        })
        .collect();
    out(&table(&["CHECK", "RESULT", "DETAIL"], &rows))?;
    let failed = outcomes.iter().filter(|o| !o.pass).count();
    if failed > 0 {
        anyhow::bail!(
            "{failed} of {} checks failed; the logs are in {}",
            outcomes.len(),
            dir.root().display()
        );
    }
    out(&format!("all {} checks passed\n", outcomes.len())).context("writing to stdout")
}
