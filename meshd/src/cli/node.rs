//! `meshd join` and `meshd status`: this node, through the daemon's mesh task.

use std::net::{IpAddr, SocketAddr, ToSocketAddrs};

use anyhow::{Context, bail};
use clap::Args;

use super::JsonFlag;
use super::format::{ago, bytes, field, out, out_json, table};
use crate::api::ApiClient;
use crate::api::node::{JoinRequest, MemberStanding, NodeStatus, PathKind};
use crate::api::server::sort_peers;
use crate::config::{Config, DEFAULT_LISTEN_PORT};
use meshd_core::ingress::bird_config;
use meshd_packet::{IpPrefix, Ipv4Prefix, Ipv6Prefix};

#[derive(Debug, Args)]
pub struct JoinArgs {
    /// The join token (`meshd1-...`) from `meshd token create` on the controller.
    pub token: String,
    /// The controller's UDP endpoint, HOST:PORT; a host name is resolved here. Without a port, 51820.
    #[arg(long, value_name = "HOST:PORT")]
    pub controller: String,
    /// The name this machine asks for in the network [default: its host name]; the controller makes
    /// it unique and DNS-safe (`Laptop` becomes `laptop`, a second one `laptop-2`).
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
    #[command(flatten)]
    pub out: JsonFlag,
}

pub fn join(client: &ApiClient, args: JoinArgs) -> anyhow::Result<()> {
    let controller = resolve(&args.controller)?;
    let joined = client.join(&JoinRequest {
        token: args.token,
        controller,
        name: args.name,
    })?;
    if args.out.json {
        return out_json(&joined);
    }
    let addresses = std::iter::once(joined.ipv4.to_string())
        .chain(joined.ipv6.map(|a| a.to_string()))
        .collect::<Vec<_>>()
        .join(", ");
    Ok(out(&format!(
        "Joined network {:?} as {:?}: {addresses}\nController {} (key {}).\n",
        joined.network, joined.name, joined.controller, joined.controller_key
    ))?)
}

pub fn leave(client: &ApiClient, flag: JsonFlag) -> anyhow::Result<()> {
    let left = client.leave()?;
    if flag.json {
        return out_json(&left);
    }
    Ok(out(&format!(
        "Left network {:?}: the controller removed this node, and its addresses and peers are gone.\n\
         Join again with `meshd join TOKEN --controller HOST:PORT`.\n",
        left.network
    ))?)
}

/// `HOST:PORT`, `HOST`, `[V6]:PORT` or a bare address; a name is looked up, and its first address
/// used.
fn resolve(text: &str) -> anyhow::Result<SocketAddr> {
    let text = text.trim();
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return Ok(addr);
    }
    if let Ok(ip) = text
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<IpAddr>()
    {
        return Ok(SocketAddr::new(ip, DEFAULT_LISTEN_PORT));
    }
    let with_port = if text.contains(':') {
        text.to_string()
    } else {
        format!("{text}:{DEFAULT_LISTEN_PORT}")
    };
    let mut addrs = with_port.to_socket_addrs().with_context(|| {
        format!("cannot resolve the controller {text:?}; give HOST:PORT, e.g. router.example.net:51820")
    })?;
    match addrs.next() {
        Some(addr) => Ok(addr),
        None => bail!("the controller {text:?} has no address"),
    }
}

pub fn status(client: &ApiClient, flag: JsonFlag) -> anyhow::Result<()> {
    let mut status = client.status()?;
    // The daemon sorts them too; a daemon of an older version may not.
    sort_peers(&mut status);
    if flag.json {
        return out_json(&status);
    }
    Ok(out(&status_text(&status))?)
}

/// The nonzero drop counters, largest first: "control_bad_auth 12, no_route 3", or "none".
fn drops_text(drops: &std::collections::BTreeMap<String, u64>) -> String {
    let mut nonzero: Vec<(&String, &u64)> = drops.iter().filter(|(_, n)| **n > 0).collect();
    if nonzero.is_empty() {
        return "none".to_string();
    }
    nonzero.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    let parts: Vec<String> = nonzero.iter().map(|(name, n)| format!("{name} {n}")).collect();
    parts.join(", ")
}

fn status_text(s: &NodeStatus) -> String {
    let mut text = String::new();
    field(&mut text, "public key", &s.public_key);
    field(&mut text, "interface", &s.interface);
    field(&mut text, "listen port", s.listen_port);
    field(
        &mut text,
        "role",
        if s.controller_role { "controller" } else { "member" },
    );
    match &s.membership {
        Some(m) => {
            field(&mut text, "network", format!("{} (as {:?})", m.network, m.name));
            field(
                &mut text,
                "controller",
                format!("{} (key {})", m.controller, m.controller_key),
            );
            field(
                &mut text,
                "authorized",
                if m.authorized {
                    "yes"
                } else {
                    "no (the controller cut this node off; ask its operator)"
                },
            );
            if m.standing == MemberStanding::Disowned {
                field(
                    &mut text,
                    "WARNING",
                    "the controller says it does not know this node; keeping the peers and last \
                     map (its database may be lost: see docs/operations.md)",
                );
            }
            field(
                &mut text,
                "map version",
                if m.map_version == 0 {
                    "none yet".to_string()
                } else {
                    m.map_version.to_string()
                },
            );
            field(
                &mut text,
                "last heard",
                m.controller_last_heard_secs
                    .map_or_else(|| "not since the daemon started".to_string(), ago),
            );
        }
        None if s.controller_role => {}
        None if s.removed_from.is_some() => field(
            &mut text,
            "network",
            format!(
                "none: removed from {:?} by its controller; join again with `meshd join TOKEN \
                 --controller HOST:PORT`",
                s.removed_from.as_deref().unwrap_or_default()
            ),
        ),
        None => field(
            &mut text,
            "network",
            "none; join one with `meshd join TOKEN --controller HOST:PORT`",
        ),
    }
    field(
        &mut text,
        "addresses",
        if s.addresses.is_empty() {
            "-".to_string()
        } else {
            s.addresses.join(", ")
        },
    );
    if let Some(r) = &s.routing {
        let how = match &r.error {
            None => format!("through the ingress (table {}: {})", r.table, r.rules.join("; ")),
            Some(e) => format!("NOT INSTALLED: {e}"),
        };
        field(&mut text, "public traffic", how);
    }
    if let Some(i) = &s.ingress {
        field(
            &mut text,
            "ingress",
            if i.healthy {
                i.reason.clone()
            } else {
                format!("unhealthy: {}", i.reason)
            },
        );
        field(
            &mut text,
            "announced",
            format!(
                "{} {}",
                if i.announced { "yes:" } else { "no:" },
                i.blocks.join(", ")
            ),
        );
        field(
            &mut text,
            "bgp upstream",
            format!("{} {}", i.upstream, i.upstream_state),
        );
        field(
            &mut text,
            "live peers",
            format!(
                "{} (interface {})",
                i.live_peers,
                if i.tun_up { "up" } else { "down" }
            ),
        );
    }
    field(&mut text, "dropped", drops_text(&s.drops));
    text.push('\n');
    if s.peers.is_empty() {
        text.push_str("no peers\n");
        return text;
    }
    let rows: Vec<Vec<String>> = s
        .peers
        .iter()
        .map(|p| {
            let mesh_ip = match (p.mesh_ipv4, p.mesh_ipv6) {
                (Some(v4), _) => v4.to_string(),
                (None, Some(v6)) => v6.to_string(),
                (None, None) => "-".to_string(),
            };
            vec![
                p.name.clone(),
                mesh_ip,
                p.endpoint.map_or_else(|| "-".into(), |e| e.to_string()),
                match p.path {
                    PathKind::Direct => "direct",
                    PathKind::Relayed => "relayed",
                    PathKind::None => "-",
                }
                .to_string(),
                p.last_handshake_secs.map_or_else(|| "never".into(), ago),
                bytes(p.rx_bytes),
                bytes(p.tx_bytes),
            ]
        })
        .collect();
    text.push_str(&table(
        &["NAME", "MESH-IP", "ENDPOINT", "PATH", "HANDSHAKE", "RX", "TX"],
        &rows,
    ));
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_names_the_nonzero_drops_largest_first() {
        let drops = [
            ("no_route", 3),
            ("control_bad_auth", 12),
            ("malformed", 0),
            ("control_stale", 3),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        assert_eq!(
            drops_text(&drops),
            "control_bad_auth 12, control_stale 3, no_route 3"
        );
        assert_eq!(drops_text(&Default::default()), "none");
    }

    #[test]
    fn controller_endpoints() {
        assert_eq!(
            resolve("192.0.2.1:4000").unwrap(),
            "192.0.2.1:4000".parse().unwrap()
        );
        assert_eq!(resolve("192.0.2.1").unwrap(), "192.0.2.1:51820".parse().unwrap());
        assert_eq!(
            resolve("[2001:db8::1]:9").unwrap(),
            "[2001:db8::1]:9".parse().unwrap()
        );
        assert_eq!(
            resolve("2001:db8::1").unwrap(),
            "[2001:db8::1]:51820".parse().unwrap()
        );
        assert_eq!(resolve("localhost:7").unwrap().port(), 7);
        assert!(resolve("host:notaport").is_err());
    }
}

#[derive(Debug, Args)]
pub struct BirdConfigArgs {
    /// A block to announce (repeat for IPv4 and IPv6) [default: the blocks of the running
    /// ingress, from `meshd status`].
    #[arg(long = "prefix", value_name = "CIDR")]
    pub prefixes: Vec<IpPrefix>,
}

/// `meshd bird-config`: the BIRD snippet for this ingress's blocks and announcement table.
pub fn bird_config(config: &Config, args: BirdConfigArgs) -> anyhow::Result<()> {
    let prefixes = if args.prefixes.is_empty() {
        let status = ApiClient::from_config(config)
            .map_err(anyhow::Error::from)
            .and_then(|client| Ok(client.status()?))
            .context("cannot ask the running daemon for its blocks; give them with --prefix CIDR")?;
        let Some(ingress) = status.ingress else {
            bail!(
                "this daemon is not an ingress (yet): set `[ingress] enabled = true` in its \
                 configuration and `meshd member ingress` on the controller, or give the blocks \
                 with --prefix CIDR"
            );
        };
        ingress
            .blocks
            .iter()
            .map(|b| b.parse::<IpPrefix>())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| anyhow::anyhow!("the daemon reported a block that is not a prefix: {e}"))?
    } else {
        args.prefixes
    };
    let mut v4: Vec<Ipv4Prefix> = Vec::new();
    let mut v6: Vec<Ipv6Prefix> = Vec::new();
    for p in prefixes {
        match p {
            IpPrefix::V4(p) => v4.push(p),
            IpPrefix::V6(p) => v6.push(p),
        }
    }
    Ok(out(&bird_config::render(
        &v4,
        &v6,
        config.ingress.announce_table,
    ))?)
}
