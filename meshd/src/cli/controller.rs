//! `meshd network|token|member ...`: the controller's commands, each one or two API calls; and
//! `meshd controller backup`, which reads the database file itself.

use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, Subcommand, value_parser};

use super::JsonFlag;
use super::format::{ago, field, out, out_json, parse_duration, span, table, when};
use crate::api::ApiClient;
use crate::api::controller::{CreateNetwork, CreateToken, MemberView, NetworkView, TokenState, TokenView};
use crate::config::Config;
use meshd_core::token::from_unix_secs;
use meshd_wg::sys::clock;

#[derive(Debug, Subcommand)]
pub enum NetworkCommand {
    /// Create a network with an IPv4 block (and optionally an IPv6 block) for its members.
    #[command(
        long_about = "Create a network. Members get addresses from its IPv4 block (and its IPv6 block, \
        if given), lowest free first; the first usable address of each block is kept for the \
        controller's own node. The name may hold letters, digits, '.', '_' and '-'.",
        after_help = "Examples:\n  meshd network create lab --ipv4 10.77.0.0/24\n  \
        meshd network create lab --ipv4 44.30.127.0/24 --ipv6 fd77:1::/64 --mtu 1280"
    )]
    Create(NetworkCreate),

    /// List the networks with their blocks and how many members and tokens they have.
    #[command(after_help = "Examples:\n  meshd network list\n  meshd network list --json")]
    List(JsonFlag),

    /// Show one network: blocks, controller addresses, MTU, members and tokens.
    #[command(after_help = "Examples:\n  meshd network show lab\n  meshd network show lab --json")]
    Show {
        /// The network's name.
        name: String,
        #[command(flatten)]
        out: JsonFlag,
    },

    /// Delete a network and its tokens; refused while it has members, unless --force.
    #[command(
        long_about = "Delete a network and its join tokens. While machines are members of it (other \
        than the controller's own node), it is refused unless --force is given; with --force its \
        members are removed too: they hear that they were removed, take its addresses off their \
        interfaces, and can join another network with a token.",
        after_help = "Examples:\n  meshd network delete old-lab\n  meshd network delete old-lab --force"
    )]
    Delete {
        /// The network's name.
        name: String,
        /// Delete it even though it has members, removing them.
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        out: JsonFlag,
    },
}

#[derive(Debug, Subcommand)]
pub enum ControllerCommand {
    /// Copy the controller's database to FILE, while the daemon runs.
    #[command(
        long_about = "Copy the controller's database (networks, members, tokens) to FILE with SQLite's \
        online backup: one consistent snapshot, taken while the daemon runs and writes, in a single \
        file made 0600 and checked before this command succeeds. FILE must not exist. Run it on the \
        controller as the daemon's user (it reads state_dir/controller.db). To restore: stop meshd, \
        copy FILE to state_dir/controller.db, remove controller.db-wal and controller.db-shm beside it, \
        and start meshd (docs/operations.md).",
        after_help = "Examples:\n  meshd controller backup /var/backups/meshd-$(date +%F).db"
    )]
    Backup {
        /// Where to write the copy; must not exist.
        file: std::path::PathBuf,
    },
}

#[derive(Debug, Args)]
pub struct NetworkCreate {
    /// The new network's name.
    pub name: String,
    /// The IPv4 block members get addresses from, in CIDR form (e.g. 10.77.0.0/24).
    #[arg(long, value_name = "CIDR")]
    pub ipv4: String,
    /// An IPv6 block members also get addresses from (e.g. fd77:1::/64).
    #[arg(long, value_name = "CIDR")]
    pub ipv6: Option<String>,
    /// The interface MTU of the network's members [default and most: 1376, what a packet relayed over
    /// a 1500-byte IPv6 underlay leaves; at least 1280 with --ipv6].
    #[arg(long, value_name = "BYTES", value_parser = value_parser!(u16).range(576..))]
    pub mtu: Option<u16>,
    #[command(flatten)]
    pub out: JsonFlag,
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create a join token; prints the token alone on stdout.
    #[command(
        long_about = "Create a join token for a network. The token text goes alone to stdout, so \
        `T=$(meshd token create)` works; what it allows goes to stderr. It is shown this once: the \
        controller keeps only a hash. By default a token admits one machine and does not expire.",
        after_help = "Examples:\n  meshd token create\n  meshd token create --network lab --uses 5 --expires 24h\n  \
        meshd token create --network lab --unlimited --expires 7d\n  T=$(meshd token create --expires 30m)"
    )]
    Create(TokenCreate),

    /// List join tokens (never their secrets): uses left, expiry, state.
    #[command(
        long_about = "List join tokens with their uses left, expiry and state (usable, revoked, expired, \
        used_up). Secrets are not stored, so they cannot be shown. Without --network, the tokens of \
        every network.",
        after_help = "Examples:\n  meshd token list\n  meshd token list --network lab --json"
    )]
    List {
        /// Only this network's tokens.
        #[arg(long, value_name = "NAME")]
        network: Option<String>,
        #[command(flatten)]
        out: JsonFlag,
    },

    /// Revoke a join token so that nobody else can join with it.
    #[command(
        long_about = "Revoke a join token: later joins with it are refused. Machines that joined with it \
        stay members (deauthorize or remove them for that).",
        after_help = "Examples:\n  meshd token revoke 0123456789abcdef"
    )]
    Revoke {
        /// The token's id: the 16 hex digits `meshd token list` shows.
        id: String,
        #[command(flatten)]
        out: JsonFlag,
    },
}

#[derive(Debug, Args)]
pub struct TokenCreate {
    /// The network the token admits to [default: the only network, if there is exactly one].
    #[arg(long, value_name = "NAME")]
    pub network: Option<String>,
    /// How many machines may join with it [default: 1].
    #[arg(long, value_name = "N", conflicts_with = "unlimited", value_parser = value_parser!(u32).range(1..))]
    pub uses: Option<u32>,
    /// Any number of machines may join with it.
    #[arg(long)]
    pub unlimited: bool,
    /// The token stops working after this long: e.g. 30m, 24h, 7d, 1h30m (s, m, h, d, w)
    /// [default: never].
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub expires: Option<Duration>,
    #[command(flatten)]
    pub out: JsonFlag,
}

#[derive(Debug, Subcommand)]
pub enum MemberCommand {
    /// List members: name, key, addresses, authorized, last seen.
    #[command(
        long_about = "List members with their names, public keys, addresses, whether they are \
        authorized, and when and from where the controller last saw them. Without --network, the \
        members of every network.",
        after_help = "Examples:\n  meshd member list\n  meshd member list --network lab --json"
    )]
    List {
        /// Only this network's members.
        #[arg(long, value_name = "NAME")]
        network: Option<String>,
        #[command(flatten)]
        out: JsonFlag,
    },

    /// Show one member.
    #[command(after_help = "Examples:\n  meshd member show laptop\n  \
        meshd member show 'xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg=' --network lab --json")]
    Show(MemberArgs),

    /// Authorize a member again: it gets its peers and addresses back.
    #[command(
        long_about = "Authorize a member: the controller puts it back in its network's map, with the \
        addresses it had, and the other members get it as a peer again.",
        after_help = "Examples:\n  meshd member authorize laptop\n  meshd member authorize laptop --network lab"
    )]
    Authorize(MemberArgs),

    /// Deauthorize a member: cut it off but keep its addresses.
    #[command(
        long_about = "Deauthorize a member: the controller takes it out of its network's map, so the \
        other members drop it as a peer. It keeps its addresses and its membership; `meshd member \
        authorize` restores it.",
        after_help = "Examples:\n  meshd member deauthorize laptop"
    )]
    Deauthorize(MemberArgs),

    /// Make a member an ingress (border router) of its network, or with --off an ordinary member.
    #[command(
        long_about = "Make a member an ingress of its network: a border router that announces the \
        network's block to its upstream (BIRD, `[ingress]` in that machine's meshd.toml) and forwards \
        the block's traffic. Every other member then sends traffic from its address to destinations \
        outside the mesh through the first ingress of the map, and accepts any source address from it. \
        With --off the member becomes an ordinary member again.",
        after_help = "Examples:\n  meshd member ingress border\n  meshd member ingress border --network lab --off"
    )]
    Ingress {
        #[command(flatten)]
        member: MemberArgs,
        /// Make it an ordinary member again.
        #[arg(long)]
        off: bool,
    },

    /// Remove a member; its addresses become free.
    #[command(
        long_about = "Remove a member from its network: it is cut off like a deauthorized member, and its \
        addresses go to the next machine that joins. To come back it needs a new token.",
        after_help = "Examples:\n  meshd member remove old-laptop --network lab"
    )]
    Remove(MemberArgs),
}

#[derive(Debug, Args)]
pub struct MemberArgs {
    /// The member: its name (unique in the network), its public key (base64, as `wg show` prints
    /// it), or one of its mesh addresses.
    pub member: String,
    /// The member's network [default: the only network, if there is exactly one].
    #[arg(long, value_name = "NAME")]
    pub network: Option<String>,
    #[command(flatten)]
    pub out: JsonFlag,
}

pub fn network(client: &ApiClient, command: NetworkCommand) -> anyhow::Result<()> {
    match command {
        NetworkCommand::Create(args) => {
            let network = client.create_network(&CreateNetwork {
                name: args.name,
                ipv4: args.ipv4,
                ipv6: args.ipv6,
                mtu: args.mtu,
            })?;
            if args.out.json {
                return out_json(&network);
            }
            out(&network_text(&network))?;
            eprintln!(
                "Machines join with a token: `meshd token create --network {}`",
                network.name
            );
            Ok(())
        }
        NetworkCommand::List(flag) => {
            let networks = client.networks()?;
            if flag.json {
                return out_json(&networks);
            }
            if networks.is_empty() {
                eprintln!(
                    "There are no networks yet; create one with `meshd network create NAME --ipv4 CIDR`."
                );
                return Ok(());
            }
            let rows: Vec<Vec<String>> = networks
                .iter()
                .map(|n| {
                    vec![
                        n.name.clone(),
                        n.ipv4.clone(),
                        n.ipv6.clone().unwrap_or_else(|| "-".into()),
                        n.mtu.to_string(),
                        n.member_count.to_string(),
                        n.authorized_count.to_string(),
                        n.usable_token_count.to_string(),
                    ]
                })
                .collect();
            Ok(out(&table(
                &[
                    "NAME",
                    "IPV4",
                    "IPV6",
                    "MTU",
                    "MEMBERS",
                    "AUTHORIZED",
                    "USABLE-TOKENS",
                ],
                &rows,
            ))?)
        }
        NetworkCommand::Show { name, out: flag } => {
            let network = client.network(&name)?;
            if flag.json {
                return out_json(&network);
            }
            Ok(out(&network_text(&network))?)
        }
        NetworkCommand::Delete {
            name,
            force,
            out: flag,
        } => {
            let deleted = client.delete_network(&name, force)?;
            if flag.json {
                return out_json(&deleted);
            }
            Ok(out(&format!(
                "Network {:?} is deleted, with its tokens{}.\n",
                deleted.name,
                match deleted.members_removed {
                    0 => String::new(),
                    1 => " and its 1 member, which hears it was removed".to_string(),
                    n => format!(" and its {n} members, which hear they were removed"),
                }
            ))?)
        }
    }
}

pub fn controller(config: &Config, command: ControllerCommand) -> anyhow::Result<()> {
    match command {
        ControllerCommand::Backup { file } => {
            let info = meshd_controller::store::backup(&config.state_dir, &file)
                .with_context(|| format!("cannot back up the controller database to {}", file.display()))?;
            let count = |n: i64, what: &str| format!("{n} {what}{}", if n == 1 { "" } else { "s" });
            Ok(out(&format!(
                "Backed up the controller database to {}: {}, {}, schema version {}, {} bytes.\n",
                file.display(),
                count(info.networks, "network"),
                count(info.members, "member"),
                info.schema_version,
                info.bytes
            ))?)
        }
    }
}

fn network_text(n: &NetworkView) -> String {
    let now = clock::wall();
    let mut text = String::new();
    field(&mut text, "network", &n.name);
    field(&mut text, "id", &n.id);
    let with_controller = |block: &str, controller: Option<String>| match controller {
        Some(a) => format!("{block} (controller {a})"),
        None => block.to_string(),
    };
    field(
        &mut text,
        "ipv4",
        with_controller(&n.ipv4, n.controller_ipv4.map(|a| a.to_string())),
    );
    if let Some(v6) = &n.ipv6 {
        field(
            &mut text,
            "ipv6",
            with_controller(v6, n.controller_ipv6.map(|a| a.to_string())),
        );
    }
    field(&mut text, "mtu", n.mtu);
    field(&mut text, "created", when(n.created, now));
    field(
        &mut text,
        "members",
        format!("{} ({} authorized)", n.member_count, n.authorized_count),
    );
    field(
        &mut text,
        "tokens",
        format!("{} ({} usable)", n.token_count, n.usable_token_count),
    );
    text
}

pub fn token(client: &ApiClient, config: &Config, command: TokenCommand) -> anyhow::Result<()> {
    match command {
        TokenCommand::Create(args) => {
            let network = pick_network(client, args.network)?;
            let created = client.create_token(
                &network,
                &CreateToken {
                    uses: args.uses,
                    unlimited: args.unlimited,
                    expires_in_secs: args.expires.map(|d| d.as_secs()),
                },
            )?;
            if args.out.json {
                return out_json(&created);
            }
            out(&format!("{}\n", created.token))?;
            let info = &created.info;
            let expiry = match info.expires {
                Some(at) => format!("expires {}", when(at, clock::wall())),
                None => "does not expire".to_string(),
            };
            eprintln!(
                "Join token {} for network {:?}: {}, {expiry}. It is shown only now.\n\
                 On the machine to join: meshd join TOKEN --controller <this machine's address>:{}",
                info.id,
                info.network,
                uses_text(info.max_uses),
                config.listen_port
            );
            Ok(())
        }
        TokenCommand::List { network, out: flag } => {
            let networks = match network {
                Some(name) => vec![name],
                None => client.networks()?.into_iter().map(|n| n.name).collect(),
            };
            let mut tokens = Vec::new();
            for name in &networks {
                tokens.extend(client.tokens(name)?);
            }
            if flag.json {
                return out_json(&tokens);
            }
            if tokens.is_empty() {
                eprintln!("There are no tokens; make one with `meshd token create`.");
                return Ok(());
            }
            let now = clock::wall();
            let rows: Vec<Vec<String>> = tokens.iter().map(|t| token_row(t, now)).collect();
            Ok(out(&table(
                &["ID", "NETWORK", "USES-LEFT", "EXPIRES", "STATE", "CREATED"],
                &rows,
            ))?)
        }
        TokenCommand::Revoke { id, out: flag } => {
            let token = client.revoke_token(&id)?;
            if flag.json {
                return out_json(&token);
            }
            Ok(out(&format!(
                "Token {} of network {:?} is revoked; machines that joined with it stay members.\n",
                token.id, token.network
            ))?)
        }
    }
}

fn uses_text(max_uses: Option<u32>) -> String {
    match max_uses {
        None => "any number of machines may join with it".to_string(),
        Some(1) => "single use".to_string(),
        Some(n) => format!("{n} uses"),
    }
}

fn token_row(t: &TokenView, now: std::time::SystemTime) -> Vec<String> {
    let uses = match (t.uses_left, t.max_uses) {
        (Some(left), Some(max)) => format!("{left}/{max}"),
        _ => "unlimited".to_string(),
    };
    let expires = match t.expires {
        None => "never".to_string(),
        Some(at) => match now.duration_since(from_unix_secs(at)) {
            Ok(past) => ago(past.as_secs()),
            Err(future) => format!("in {}", span(future.duration().as_secs())),
        },
    };
    let state = match t.state {
        TokenState::Usable => "usable",
        TokenState::Revoked => "revoked",
        TokenState::Expired => "expired",
        TokenState::UsedUp => "used up",
    };
    let created = now
        .duration_since(from_unix_secs(t.created))
        .map_or_else(|_| "just now".to_string(), |d| ago(d.as_secs()));
    vec![
        t.id.clone(),
        t.network.clone(),
        uses,
        expires,
        state.to_string(),
        created,
    ]
}

pub fn member(client: &ApiClient, command: MemberCommand) -> anyhow::Result<()> {
    let (args, change) = match command {
        MemberCommand::List { network, out: flag } => return list_members(client, network, flag),
        MemberCommand::Show(args) => {
            let network = pick_network(client, args.network.clone())?;
            let member = client.member(&network, &args.member)?;
            if args.out.json {
                return out_json(&member);
            }
            return Ok(out(&member_text(&member))?);
        }
        MemberCommand::Ingress { member: args, off } => (args, MemberChange::Ingress(!off)),
        MemberCommand::Authorize(args) => (args, MemberChange::Authorize),
        MemberCommand::Deauthorize(args) => (args, MemberChange::Deauthorize),
        MemberCommand::Remove(args) => (args, MemberChange::Remove),
    };
    let network = pick_network(client, args.network)?;
    let member = &args.member;
    let (member, done) = match change {
        MemberChange::Authorize => (client.authorize(&network, member)?, "is authorized"),
        MemberChange::Deauthorize => (
            client.deauthorize(&network, member)?,
            "is deauthorized (it keeps its addresses; `meshd member authorize` restores it)",
        ),
        MemberChange::Ingress(true) => (
            client.set_ingress(&network, member, true)?,
            "is an ingress; the other members send their Internet traffic through it",
        ),
        MemberChange::Ingress(false) => (
            client.set_ingress(&network, member, false)?,
            "is no longer an ingress",
        ),
        MemberChange::Remove => (
            client.remove_member(&network, member)?,
            "is removed; its addresses are free",
        ),
    };
    if args.out.json {
        return out_json(&member);
    }
    Ok(out(&format!(
        "Member {:?} ({}) of network {:?} {done}.\n",
        member.name, member.public_key, member.network
    ))?)
}

/// What `meshd member ...` changes about one member.
#[derive(Debug, Clone, Copy)]
enum MemberChange {
    Authorize,
    Deauthorize,
    Ingress(bool),
    Remove,
}

fn list_members(client: &ApiClient, network: Option<String>, flag: JsonFlag) -> anyhow::Result<()> {
    let all = network.is_none();
    let networks = match network {
        Some(name) => vec![name],
        None => client.networks()?.into_iter().map(|n| n.name).collect(),
    };
    let mut members = Vec::new();
    for name in &networks {
        members.extend(client.members(name)?);
    }
    if flag.json {
        return out_json(&members);
    }
    if members.is_empty() {
        eprintln!("There are no members yet; machines join with `meshd join TOKEN --controller HOST:PORT`.");
        return Ok(());
    }
    let now = clock::wall();
    let with_network = all && networks.len() > 1;
    let mut headers = vec![
        "NAME",
        "PUBLIC-KEY",
        "IPV4",
        "IPV6",
        "AUTHORIZED",
        "INGRESS",
        "LAST-SEEN",
        "ENDPOINT",
    ];
    if with_network {
        headers.insert(0, "NETWORK");
    }
    let rows: Vec<Vec<String>> = members
        .iter()
        .map(|m| {
            let mut row = vec![
                m.name.clone(),
                m.public_key.clone(),
                m.ipv4.to_string(),
                m.ipv6.map_or_else(|| "-".into(), |a| a.to_string()),
                if m.authorized { "yes" } else { "no" }.to_string(),
                if m.ingress { "yes" } else { "no" }.to_string(),
                m.last_seen.map_or_else(|| "never".into(), |t| since(t, now)),
                m.last_endpoint.map_or_else(|| "-".into(), |e| e.to_string()),
            ];
            if with_network {
                row.insert(0, m.network.clone());
            }
            row
        })
        .collect();
    Ok(out(&table(&headers, &rows))?)
}

fn member_text(m: &MemberView) -> String {
    let now = clock::wall();
    let mut text = String::new();
    field(&mut text, "name", &m.name);
    if m.label != m.name {
        field(&mut text, "asked for", format!("{:?}", m.label));
    }
    field(&mut text, "network", &m.network);
    field(&mut text, "public key", &m.public_key);
    field(&mut text, "authorized", if m.authorized { "yes" } else { "no" });
    field(&mut text, "ingress", if m.ingress { "yes" } else { "no" });
    field(&mut text, "ipv4", m.ipv4);
    if let Some(v6) = m.ipv6 {
        field(&mut text, "ipv6", v6);
    }
    field(&mut text, "joined", when(m.created, now));
    let seen = match (m.last_seen, m.last_endpoint) {
        (None, _) => "never".to_string(),
        (Some(t), None) => when(t, now),
        (Some(t), Some(e)) => format!("{} from {e}", when(t, now)),
    };
    field(&mut text, "last seen", seen);
    text
}

fn since(unix: i64, now: std::time::SystemTime) -> String {
    now.duration_since(from_unix_secs(unix))
        .map_or_else(|_| "just now".to_string(), |d| ago(d.as_secs()))
}

/// The network a command acts on: the one given, or the only one there is.
fn pick_network(client: &ApiClient, given: Option<String>) -> anyhow::Result<String> {
    if let Some(name) = given {
        return Ok(name);
    }
    let networks = client.networks()?;
    match networks.as_slice() {
        [only] => Ok(only.name.clone()),
        [] => bail!("there is no network yet; create one with `meshd network create NAME --ipv4 CIDR`"),
        many => {
            let names: Vec<&str> = many.iter().map(|n| n.name.as_str()).collect();
            bail!(
                "there are {} networks ({}); say which with --network NAME",
                many.len(),
                names.join(", ")
            )
        }
    }
}
