//! The `meshd` command line: `meshd up` runs the daemon; every other command is a client of the
//! running daemon's admin API ([`crate::api`]), found through the same configuration file.
//!
//! Exit status: 0 done, 1 the operation failed (the reason on stderr, as the API gave it), 2 the
//! command line was wrong (clap's usage error). Output meant for scripts: `--json` on every command that
//! prints data, and `meshd token create` prints the bare token on stdout.

mod controller;
pub mod format;
mod lab;
mod node;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use crate::api::ApiClient;
use crate::config::{Config, DEFAULT_CONFIG};

const AFTER_HELP: &str = "\
Getting started:
  # on the machine that runs the controller ([controller] enabled = true in its config):
  meshd up &
  meshd network create lab --ipv4 10.77.0.0/24
  T=$(meshd token create)

  # on a machine that joins (its daemon running):
  meshd join \"$T\" --controller router.example.net:51820
  meshd status

`meshd COMMAND --help` has the details of each command.";

/// Self-hosted mesh VPN: a WireGuard-compatible data plane and the controller that hands out
/// addresses and peers.
#[derive(Debug, Parser)]
#[command(name = "meshd", version, after_help = AFTER_HELP)]
pub struct Cli {
    /// The configuration file, which says where the daemon's API and token are [default:
    /// /etc/meshd/meshd.toml; if it is missing, the defaults]
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon in the foreground.
    #[command(
        long_about = "Run the daemon in the foreground (as systemd expects; stop it with SIGTERM or \
        Ctrl-C).\n\nIt brings up the interface named in the configuration (`wg show` works on it), \
        serves the admin API on loopback, keeps this node's peers in step with its network's map, and \
        runs the controller when `[controller] enabled = true`. Logs go to stderr (in colour only on a \
        terminal, and not when NO_COLOR is set); LOG_LEVEL=debug (or verbose, info, warn, error, \
        silent) sets how much.\n\nOne daemon per state directory: a second one on the same directory \
        exits with an error naming the first one's pid. The configuration keys are described in \
        docs/config.md.",
        after_help = "Examples:\n  meshd up\n  meshd up --config /etc/meshd/lab.toml\n  LOG_LEVEL=debug meshd up\n  \
        meshd up --print-config > /etc/meshd/meshd.toml\n  \
        meshd up --new-key   # only after node.key is lost for good"
    )]
    Up(UpArgs),

    /// Create, list and show networks (controller).
    #[command(subcommand)]
    Network(controller::NetworkCommand),

    /// Create, list and revoke join tokens (controller).
    #[command(subcommand)]
    Token(controller::TokenCommand),

    /// List, show, authorize, deauthorize, make ingress and remove members (controller).
    #[command(subcommand)]
    Member(controller::MemberCommand),

    /// Back up the controller's database (controller).
    #[command(subcommand)]
    Controller(controller::ControllerCommand),

    /// Join this machine to a network with a token.
    #[command(
        long_about = "Join this machine to a network with a token made by `meshd token create` on \
        the controller.\n\nThe daemon (`meshd up`) must be running here. It contacts the controller at \
        HOST:PORT (its UDP listen port, 51820 unless configured otherwise; the port may be left out \
        then), checks that the controller holds the key the token names, and gets this node's addresses \
        and peers. On success it prints the network, the name and the addresses; if the controller \
        refuses the token, the reason goes to stderr and the exit status is 1.",
        after_help = "Examples:\n  meshd join meshd1-abcd... --controller router.example.net:51820\n  \
        meshd join \"$T\" --controller 192.0.2.1 --name laptop\n  meshd join \"$T\" --controller [2001:db8::1]:51820 --json"
    )]
    Join(node::JoinArgs),

    /// Leave this machine's network: the controller removes it, and it forgets its membership.
    #[command(
        long_about = "Leave the network this machine joined. The daemon asks the controller to remove \
        this node; once the controller confirms, the node takes its mesh addresses off the interface, \
        drops its peers and forgets its saved membership and map. It can join again (this or another \
        network) with a new token. If the controller does not answer within about 10 s, the node stays \
        a member and the exit status is 1.",
        after_help = "Examples:\n  meshd leave\n  meshd leave --json"
    )]
    Leave(JsonFlag),

    /// Show this node: its key, interface, membership, addresses and peers.
    #[command(
        long_about = "Show this node: its public key, interface and listen port, whether it runs the \
        controller, its membership (network, controller, authorized, map version, when the controller \
        was last heard from), its addresses, and a table of its peers with the path packets take \
        (direct, or relayed through the controller), the last handshake and the bytes received and sent.",
        after_help = "Examples:\n  meshd status\n  meshd status --json | jq '.peers[] | select(.path == \"relayed\")'"
    )]
    Status(JsonFlag),

    /// Print the BIRD configuration that announces this ingress's blocks.
    #[command(
        long_about = "Print the BIRD 2 configuration an ingress's BIRD includes so that it announces \
        the network's blocks while meshd is healthy. meshd never edits bird.conf: save this output \
        (for example as /etc/bird/meshd.conf), `include` it from bird.conf, give the BGP protocol \
        towards your upstream `export filter meshd_export;` (and `meshd_export6` for IPv6), and \
        `birdc configure`.\n\nWhile healthy, meshd keeps each block as a route on its interface in \
        the kernel table `[ingress] announce_table` (201); the snippet makes BIRD learn it from there \
        (`learn`, preference 250, a table of its own piped into master4) and export only the block. \
        Without --prefix the blocks come from the running daemon.",
        after_help = "Examples:\n  meshd bird-config > /etc/bird/meshd.conf\n  \
        meshd bird-config --prefix 203.0.113.0/24 --prefix 2001:db8:1::/48"
    )]
    BirdConfig(node::BirdConfigArgs),

    /// Build, check and tear down a lab of the whole product in network namespaces (root).
    #[command(
        subcommand,
        long_about = "Build, check and tear down a lab of the whole product on this machine, in network \
        namespaces (as root, no Internet needed): an Internet host, an ISP and the border router running \
        BIRD, meshd on the border (controller and ingress) and on two nodes, one behind NAT. The nodes' \
        public addresses of 203.0.113.0/24 reach the Internet host through the mesh and the border, which \
        announces the block to the ISP over BGP while it is healthy.",
        after_help = "Examples:\n  sudo meshd lab up\n  sudo meshd lab check\n  sudo meshd lab stop border\n  \
        sudo meshd lab start border\n  sudo meshd lab down"
    )]
    Lab(lab::LabCommand),
}

/// `meshd up`'s options.
#[derive(Debug, Clone, Copy, Default, Args)]
pub struct UpArgs {
    /// Print the configuration in effect (the file's keys with every default filled in) as TOML,
    /// and exit without starting.
    #[arg(long)]
    pub print_config: bool,
    /// Make a new node key although the state directory shows this node had one (its node.key is
    /// lost). The node then is a new machine to its controller and must join again with a token; on
    /// a controller, every join token and every member names the old key and must be made or join
    /// again. Refused when node.key exists.
    #[arg(long)]
    pub new_key: bool,
}

/// `--json` for commands that print data.
#[derive(Debug, Clone, Copy, Default, Args)]
pub struct JsonFlag {
    /// Print the result as JSON (the admin API's own objects) instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Runs the command line of this process. Usage errors exit with 2 (and `--help` with 0) inside.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("meshd: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Runs a parsed command line.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    let config = match &cli.config {
        Some(path) => Config::load(path, true)?,
        None => Config::load(Path::new(DEFAULT_CONFIG), false)?,
    };
    match cli.command {
        Command::Up(args) if args.print_config => Ok(format::out(&config.to_toml())?),
        Command::Up(args) => {
            meshd_wg::sys::logging::init();
            crate::daemon::up(
                config,
                crate::daemon::UpOptions {
                    new_key: args.new_key,
                },
            )
        }
        Command::Network(command) => controller::network(&client(&config)?, command),
        Command::Token(command) => controller::token(&client(&config)?, &config, command),
        Command::Member(command) => controller::member(&client(&config)?, command),
        Command::Join(args) => node::join(&client(&config)?, args),
        Command::Leave(flag) => node::leave(&client(&config)?, flag),
        Command::Controller(command) => controller::controller(&config, command),
        Command::Status(flag) => node::status(&client(&config)?, flag),
        Command::Lab(command) => lab::lab(command),
        Command::BirdConfig(args) => node::bird_config(&config, args),
    }
}

fn client(config: &Config) -> anyhow::Result<ApiClient> {
    Ok(ApiClient::from_config(config)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }
}
