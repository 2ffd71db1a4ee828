//! The policy-routing rules and routes meshd installs, over rtnetlink.
//!
//! meshd steers traffic with two kinds of kernel objects:
//!
//! - rules (`ip rule`): traffic from a node's public addresses, or from an ingress block arriving on
//!   the mesh interface, is looked up in a table of meshd's own;
//! - routes (`ip route`) in those tables, tagged with meshd's `rtm_protocol` so that its routes can
//!   be told from everyone else's and swept after a crash.
//!
//! Every change here is idempotent, because meshd applies its whole state again on every start and
//! must leave exactly one copy behind however often it restarted. Routes are idempotent in the kernel
//! already (`NLM_F_CREATE | NLM_F_REPLACE` is `ip route replace`), but rules are not: the kernel
//! happily keeps any number of identical rules, so [`Netlink::ensure_rule`] looks for an identical
//! rule in the kernel's dump before adding one, and [`Netlink::remove_rule`] removes every copy.
//!
//! A route goes when its output interface goes: the kernel flushes it with the link, so a route on
//! the mesh interface (such as the ingress announcement) cannot outlive the interface.
//!
//! Everything talks to the kernel of the network namespace the socket was opened in, through one
//! rtnetlink socket whose connection task runs on the tokio runtime that called
//! [`Netlink::connect`].

use std::fmt;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use futures_util::StreamExt;
use rtnetlink::packet_core::{
    NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP, NLM_F_DUMP_INTR, NLM_F_EXCL, NLM_F_REPLACE, NLM_F_REQUEST,
    NetlinkMessage, NetlinkPayload,
};
use rtnetlink::packet_route::link::{LinkAttribute, LinkMessage};
use rtnetlink::packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteProtocol, RouteScope, RouteType, RouteVia,
};
use rtnetlink::packet_route::rule::{RuleAction, RuleAttribute, RuleFlags, RuleMessage};
use rtnetlink::packet_route::{AddressFamily, RouteNetlinkMessage};

/// The kernel's `RT_TABLE_COMPAT`: the header's table field of a rule or route whose table does not
/// fit in a byte (the real id is then in the `FRA_TABLE`/`RTA_TABLE` attribute).
const RT_TABLE_COMPAT: u8 = 252;

/// How often a dump that the kernel marked inconsistent (`NLM_F_DUMP_INTR`: the list changed while
/// it was being read) is read again before giving up.
const DUMP_ATTEMPTS: usize = 4;

/// A policy-routing rule: `ip rule add [not] from SRC/LEN [fwmark M] [iif DEV] lookup TABLE pref
/// PRIORITY`. The family is the source address's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleSpec {
    /// `pref`: rules are tried in increasing order of this. Give each rule its own priority; see
    /// [`Netlink::remove_rule`] for why.
    pub priority: u32,
    /// `lookup`: the table consulted when the rule matches.
    pub table: u32,
    /// `from`: the source prefix. `0.0.0.0/0` or `::/0` matches every source of that family. Host
    /// bits below the prefix length are ignored, as the kernel's match ignores them.
    pub source: (IpAddr, u8),
    /// `iif`: only packets arriving on this interface (by name; the interface need not exist yet).
    pub input_interface: Option<String>,
    /// `not ... fwmark M`: the fwmark selector (with mask `0xffffffff`) and the kernel's
    /// `FIB_RULE_INVERT` flag.
    ///
    /// The kernel inverts the rule's whole selector, not the fwmark alone: with a source prefix or
    /// an input interface as well, the rule matches every packet that does not carry the mark *or*
    /// does not come from the prefix *or* did not arrive on the interface. Only on its own (source
    /// `/0`, no `iif`) does it mean "every packet without the mark". `ip rule` prints such a rule as
    /// `not from SRC fwmark M`, and so does this type's `Display`.
    pub unless_fwmark: Option<u32>,
    /// `fwmark M`: only packets that carry the mark (mask `0xffffffff`). Not together with
    /// `unless_fwmark`.
    pub fwmark: Option<u32>,
}

/// A unicast route: `ip route replace DST/LEN [via GW] dev IFINDEX table TABLE proto PROTO`.
/// The family is the destination's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteSpec {
    /// The table the route lives in.
    pub table: u32,
    /// The destination prefix; `0.0.0.0/0` or `::/0` for a default route. The kernel refuses an
    /// IPv4 prefix with host bits set.
    pub destination: (IpAddr, u8),
    /// The next hop, which the kernel requires to be reachable on `interface`. An IPv6 gateway on an
    /// IPv4 route is sent as `RTA_VIA`. `None` for a route straight onto the link.
    pub gateway: Option<IpAddr>,
    /// The output interface's index; 0 with a gateway lets the kernel find the interface that
    /// reaches it (`ip route add default via GW`). [`Netlink::routes`] reports 0 for a route that has no single
    /// output interface (multipath, blackhole); [`Netlink::remove_route`] then matches any.
    pub interface: u32,
    /// `rtm_protocol`: who installed the route. meshd uses an id of its own so that it only ever
    /// sweeps its own routes.
    pub protocol: u8,
}

impl fmt::Display for RuleSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.unless_fwmark.is_some() {
            f.write_str("not ")?;
        }
        write!(f, "from {}/{}", self.source.0, self.source.1)?;
        if let Some(mark) = self.unless_fwmark.or(self.fwmark) {
            write!(f, " fwmark {mark:#x}")?;
        }
        if let Some(iif) = &self.input_interface {
            write!(f, " iif {iif}")?;
        }
        write!(f, " lookup {} pref {}", self.table, self.priority)
    }
}

/// The interface is written `ifN`, as iproute2 writes an interface it knows only by index (and left
/// out when it is 0).
impl fmt::Display for RouteSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.destination.0, self.destination.1)?;
        match self.gateway {
            Some(IpAddr::V6(gw)) if self.destination.0.is_ipv4() => write!(f, " via inet6 {gw}")?,
            Some(gw) => write!(f, " via {gw}")?,
            None => {}
        }
        if self.interface != 0 {
            write!(f, " dev if{}", self.interface)?;
        }
        write!(f, " table {} proto {}", self.table, self.protocol)
    }
}

/// An rtnetlink socket and the task that drives it. Dropping it stops the task and closes the socket.
#[derive(Debug)]
pub struct Netlink {
    handle: rtnetlink::Handle,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Netlink {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Netlink {
    /// Opens an rtnetlink socket in the calling thread's network namespace and spawns its
    /// connection task on the current tokio runtime (multi-thread or current-thread; it needs the
    /// IO driver, as every runtime of the daemon has).
    pub fn connect() -> io::Result<Netlink> {
        let runtime = tokio::runtime::Handle::try_current()
            .map_err(|e| io::Error::other(format!("opening the rtnetlink socket: no tokio runtime: {e}")))?;
        let (mut connection, handle, _) =
            rtnetlink::new_connection().map_err(|e| with_context("opening the rtnetlink socket", e))?;
        // Hand acknowledgements and end-of-dump markers to the requests, so that an answer cut short
        // by a closing connection is an error rather than an empty success.
        connection.set_forward_ack(true);
        connection.set_forward_done(true);
        let task = runtime.spawn(connection);
        Ok(Netlink { handle, task })
    }

    /// The index of the interface called `name`, or `None` if there is none.
    pub async fn link_index(&self, name: &str) -> io::Result<Option<u32>> {
        // The kernel's names are shorter than IFNAMSIZ; it refuses to look up a longer one.
        if name.is_empty() || name.len() >= libc::IFNAMSIZ {
            return Ok(None);
        }
        let mut message = LinkMessage::default();
        message.attributes.push(LinkAttribute::IfName(name.to_owned()));
        let what = || format!("looking up interface `{name}`");
        match self
            .request(RouteNetlinkMessage::GetLink(message), NLM_F_REQUEST | NLM_F_ACK)
            .await
        {
            Ok(answer) => Ok(answer.into_iter().find_map(|m| match m {
                RouteNetlinkMessage::NewLink(link) => Some(link.header.index),
                _ => None,
            })),
            Err(e) if e.raw_os_error() == Some(libc::ENODEV) => Ok(None),
            Err(e) => Err(with_context(what(), e)),
        }
    }

    /// How many rules identical to `spec` the kernel holds now: same family, priority, table, source
    /// prefix, input interface and fwmark/invert, with action "lookup" and no other selector.
    pub async fn rules(&self, spec: &RuleSpec) -> io::Result<usize> {
        let wanted = normalize_rule(spec).map_err(|e| with_context(format!("listing rule `{spec}`"), e))?;
        let dump = self
            .rule_dump(family_of(spec.source.0))
            .await
            .map_err(|e| with_context(format!("listing rule `{spec}`"), e))?;
        Ok(dump
            .iter()
            .filter(|m| parse_rule(m).as_ref() == Some(&wanted))
            .count())
    }

    /// Every rule of both families that a [`RuleSpec`] can describe, in the kernel's order: to find
    /// rules a previous run left behind.
    pub async fn list_rules(&self) -> io::Result<Vec<RuleSpec>> {
        let mut rules = Vec::new();
        for family in [AddressFamily::Inet, AddressFamily::Inet6] {
            let dump = self
                .rule_dump(family)
                .await
                .map_err(|e| with_context("listing rules", e))?;
            rules.extend(dump.iter().filter_map(parse_rule));
        }
        Ok(rules)
    }

    /// Adds the rule unless an identical one (see [`Netlink::rules`]) exists. True if it added one.
    pub async fn ensure_rule(&self, spec: &RuleSpec) -> io::Result<bool> {
        let what = || format!("adding rule `{spec}`");
        let wanted = normalize_rule(spec).map_err(|e| with_context(what(), e))?;
        let family = family_of(spec.source.0);
        let present = |dump: &[RuleMessage]| dump.iter().any(|m| parse_rule(m).as_ref() == Some(&wanted));
        if present(
            &self
                .rule_dump(family)
                .await
                .map_err(|e| with_context(what(), e))?,
        ) {
            return Ok(false);
        }
        let message = RouteNetlinkMessage::NewRule(rule_message(&wanted));
        let exclusive = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL;
        match self.request(message.clone(), exclusive).await {
            Ok(_) => Ok(true),
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {
                // Either a concurrent add won, or the kernel calls a rule "the same" that we do not
                // (its comparison leaves out the invert flag): look again.
                if present(
                    &self
                        .rule_dump(family)
                        .await
                        .map_err(|e| with_context(what(), e))?,
                ) {
                    return Ok(false);
                }
                self.request(message, NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE)
                    .await
                    .map(|_| true)
                    .map_err(|e| with_context(what(), e))
            }
            Err(e) => Err(with_context(what(), e)),
        }
    }

    /// Deletes every rule identical to `spec`; returns how many it deleted (0 if there were none).
    ///
    /// The kernel deletes the first rule in its list that matches the attributes it is sent and
    /// treats the ones it is not sent as wildcards, so a rule at the same priority and table that
    /// differs only by a selector this one lacks (an `iif`, a `fwmark`, a narrower `from`) or by the
    /// invert flag, listed before the identical one, would be deleted instead. Rather than take
    /// someone else's rule, this then fails and deletes nothing.
    pub async fn remove_rule(&self, spec: &RuleSpec) -> io::Result<usize> {
        let what = || format!("deleting rule `{spec}`");
        let wanted = normalize_rule(spec).map_err(|e| with_context(what(), e))?;
        let dump = self
            .rule_dump(family_of(spec.source.0))
            .await
            .map_err(|e| with_context(what(), e))?;
        let mut targets = Vec::new();
        for (i, message) in dump.iter().enumerate() {
            if parse_rule(message).as_ref() != Some(&wanted) {
                continue;
            }
            if let Some(other) = dump[..i].iter().find(|earlier| {
                parse_rule(earlier).as_ref() != Some(&wanted) && kernel_would_pick(earlier, message)
            }) {
                return Err(io::Error::other(format!(
                    "{}: the kernel would delete `{}` instead, which comes first at the same priority",
                    what(),
                    describe_rule(other)
                )));
            }
            targets.push(message);
        }
        let mut deleted = 0;
        for message in targets {
            match self
                .request(
                    RouteNetlinkMessage::DelRule(message.clone()),
                    NLM_F_REQUEST | NLM_F_ACK,
                )
                .await
            {
                Ok(_) => deleted += 1,
                // Gone already: someone else deleted it since the dump.
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
                Err(e) => return Err(with_context(what(), e)),
            }
        }
        Ok(deleted)
    }

    /// Adds the route, or replaces the route to the same destination (and metric) in that table:
    /// `ip route replace`, so applying it again changes nothing.
    pub async fn ensure_route(&self, spec: &RouteSpec) -> io::Result<()> {
        let what = || format!("adding route `{spec}`");
        let mut message = route_message(spec).map_err(|e| with_context(what(), e))?;
        if spec.interface == 0 && spec.gateway.is_none() {
            return Err(with_context(
                what(),
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "a route without a gateway needs an output interface",
                ),
            ));
        }
        message.header.kind = RouteType::Unicast;
        // As `ip route` does: a route with a gateway reaches beyond the link, one without stays on it.
        message.header.scope = match spec.gateway {
            Some(_) => RouteScope::Universe,
            None => RouteScope::Link,
        };
        let flags = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE;
        self.request(RouteNetlinkMessage::NewRoute(message), flags)
            .await
            .map(drop)
            .map_err(|e| with_context(what(), e))
    }

    /// Deletes the route with this destination, gateway, interface and protocol from the table. False
    /// if there was none. A spec with interface 0 matches a route on any interface.
    pub async fn remove_route(&self, spec: &RouteSpec) -> io::Result<bool> {
        let what = || format!("deleting route `{spec}`");
        let mut message = route_message(spec).map_err(|e| with_context(what(), e))?;
        // As `ip route del` does: any type, any scope; the protocol given must match.
        message.header.kind = RouteType::Unspec;
        message.header.scope = RouteScope::NoWhere;
        match self
            .request(RouteNetlinkMessage::DelRoute(message), NLM_F_REQUEST | NLM_F_ACK)
            .await
        {
            Ok(_) => Ok(true),
            Err(e) if matches!(e.raw_os_error(), Some(libc::ENOENT | libc::ESRCH)) => Ok(false),
            Err(e) => Err(with_context(what(), e)),
        }
    }

    /// The IPv4 and IPv6 routes in `table` whose `rtm_protocol` is `protocol`, in the kernel's order.
    pub async fn routes(&self, table: u32, protocol: u8) -> io::Result<Vec<RouteSpec>> {
        let what = || format!("listing routes of table {table} proto {protocol}");
        let mut routes = Vec::new();
        for family in [AddressFamily::Inet, AddressFamily::Inet6] {
            let mut request = RouteMessage::default();
            request.header.address_family = family;
            let dump = self
                .dump(RouteNetlinkMessage::GetRoute(request))
                .await
                .map_err(|e| with_context(what(), e))?;
            routes.extend(dump.into_iter().filter_map(|m| match m {
                RouteNetlinkMessage::NewRoute(route) => parse_route(&route),
                _ => None,
            }));
        }
        routes.retain(|r| r.table == table && r.protocol == protocol);
        Ok(routes)
    }

    async fn rule_dump(&self, family: AddressFamily) -> io::Result<Vec<RuleMessage>> {
        let mut request = RuleMessage::default();
        request.header.family = family;
        let dump = self.dump(RouteNetlinkMessage::GetRule(request)).await?;
        Ok(dump
            .into_iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewRule(rule) if rule.header.family == family => Some(rule),
                _ => None,
            })
            .collect())
    }

    /// A whole dump, read again if the kernel says the list changed while it was being read.
    async fn dump(&self, request: RouteNetlinkMessage) -> io::Result<Vec<RouteNetlinkMessage>> {
        for _ in 0..DUMP_ATTEMPTS {
            match self.exchange(request.clone(), NLM_F_REQUEST | NLM_F_DUMP).await? {
                (answer, false) => return Ok(answer),
                (_, true) => continue,
            }
        }
        Err(io::Error::other(format!(
            "the list kept changing while it was read ({DUMP_ATTEMPTS} attempts)"
        )))
    }

    async fn request(
        &self,
        message: RouteNetlinkMessage,
        flags: u16,
    ) -> io::Result<Vec<RouteNetlinkMessage>> {
        self.exchange(message, flags).await.map(|(answer, _)| answer)
    }

    /// Sends one request and reads its whole answer: the messages, and whether any was marked as
    /// part of an interrupted dump. The answer must end in an acknowledgement, the end of a dump,
    /// or (for a plain get) the one message asked for; an error from the kernel becomes an
    /// `io::Error` with its errno.
    async fn exchange(
        &self,
        message: RouteNetlinkMessage,
        flags: u16,
    ) -> io::Result<(Vec<RouteNetlinkMessage>, bool)> {
        let mut request = NetlinkMessage::from(message);
        request.header.flags = flags;
        let mut answer = self
            .handle
            .clone()
            .request(request)
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the netlink connection is closed"))?;
        let mut messages = Vec::new();
        let mut interrupted = false;
        let mut finished = false;
        while let Some(reply) = answer.next().await {
            interrupted |= reply.header.flags & NLM_F_DUMP_INTR != 0;
            match reply.payload {
                NetlinkPayload::InnerMessage(inner) => messages.push(inner),
                NetlinkPayload::Error(e) => match e.code {
                    None => finished = true,
                    Some(code) => return Err(io::Error::from_raw_os_error(code.get().saturating_neg())),
                },
                NetlinkPayload::Done(done) if done.code != 0 => {
                    return Err(io::Error::from_raw_os_error(done.code.saturating_neg()));
                }
                NetlinkPayload::Done(_) => finished = true,
                NetlinkPayload::Overrun(_) => {
                    return Err(io::Error::other(
                        "the netlink socket overran and lost part of the answer",
                    ));
                }
                NetlinkPayload::Noop => {}
                _ => {}
            }
        }
        if !finished {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the netlink connection closed before the kernel's answer was complete",
            ));
        }
        Ok((messages, interrupted))
    }
}

fn with_context(what: impl fmt::Display, e: io::Error) -> io::Error {
    io::Error::new(e.kind(), format!("{what}: {e}"))
}

fn family_of(addr: IpAddr) -> AddressFamily {
    match addr {
        IpAddr::V4(_) => AddressFamily::Inet,
        IpAddr::V6(_) => AddressFamily::Inet6,
    }
}

fn max_prefix(addr: IpAddr) -> u8 {
    match addr {
        IpAddr::V4(_) => 32,
        IpAddr::V6(_) => 128,
    }
}

fn invalid(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, message)
}

/// `addr` with the bits below `len` cleared (`len` at most the address's width).
fn masked(addr: IpAddr, len: u8) -> IpAddr {
    match addr {
        IpAddr::V4(a) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
            IpAddr::V4(Ipv4Addr::from_bits(a.to_bits() & mask))
        }
        IpAddr::V6(a) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0);
            IpAddr::V6(Ipv6Addr::from_bits(a.to_bits() & mask))
        }
    }
}

/// The spec as it reads back from the kernel: the source with its host bits cleared.
fn normalize_rule(spec: &RuleSpec) -> io::Result<RuleSpec> {
    let (addr, len) = spec.source;
    if len > max_prefix(addr) {
        return Err(invalid(format!("prefix length {len} is longer than the address")));
    }
    if spec.fwmark.is_some() && spec.unless_fwmark.is_some() {
        return Err(invalid(
            "a rule has either fwmark or unless_fwmark, not both".to_string(),
        ));
    }
    Ok(RuleSpec {
        source: (masked(addr, len), len),
        ..spec.clone()
    })
}

fn rule_message(spec: &RuleSpec) -> RuleMessage {
    let mut message = RuleMessage::default();
    let (source, len) = spec.source;
    message.header.family = family_of(source);
    message.header.src_len = len;
    message.header.action = RuleAction::ToTable;
    // As `ip rule` does: a table that fits in the header goes there, any other only in FRA_TABLE.
    message.header.table = u8::try_from(spec.table).unwrap_or(RouteHeader::RT_TABLE_UNSPEC);
    message.attributes.push(RuleAttribute::Table(spec.table));
    message.attributes.push(RuleAttribute::Priority(spec.priority));
    if len > 0 {
        message.attributes.push(RuleAttribute::Source(source));
    }
    if let Some(iif) = &spec.input_interface {
        message.attributes.push(RuleAttribute::Iifname(iif.clone()));
    }
    if let Some(mark) = spec.unless_fwmark {
        message.header.flags = RuleFlags::Invert;
        message.attributes.push(RuleAttribute::FwMark(mark));
        message.attributes.push(RuleAttribute::FwMask(u32::MAX));
    }
    if let Some(mark) = spec.fwmark {
        message.attributes.push(RuleAttribute::FwMark(mark));
        message.attributes.push(RuleAttribute::FwMask(u32::MAX));
    }
    message
}

/// The fields of a dumped rule that [`RuleSpec`] describes and the kernel matches on.
#[derive(Default)]
struct DumpedRule {
    table: u32,
    priority: u32,
    source: Option<IpAddr>,
    destination: bool,
    iif: Option<String>,
    oif: bool,
    mark: u32,
    mask: u32,
    /// Any other selector (or action argument) that a [`RuleSpec`] cannot express.
    other_selector: bool,
}

fn dumped_rule(message: &RuleMessage) -> DumpedRule {
    let mut rule = DumpedRule {
        table: u32::from(message.header.table),
        ..DumpedRule::default()
    };
    for attribute in &message.attributes {
        match attribute {
            RuleAttribute::Table(table) => rule.table = *table,
            RuleAttribute::Priority(priority) => rule.priority = *priority,
            RuleAttribute::Source(addr) => rule.source = Some(*addr),
            RuleAttribute::Destination(_) => rule.destination = true,
            RuleAttribute::Iifname(name) => rule.iif = Some(name.clone()),
            RuleAttribute::Oifname(_) => rule.oif = true,
            RuleAttribute::FwMark(mark) => rule.mark = *mark,
            RuleAttribute::FwMask(mask) => rule.mask = *mask,
            // Says who added the rule, not what it matches.
            RuleAttribute::Protocol(_) => {}
            // The kernel sends these with every rule, -1 meaning "not set".
            RuleAttribute::SuppressIfGroup(u32::MAX) | RuleAttribute::SuppressPrefixLen(u32::MAX) => {}
            RuleAttribute::Goto(_)
            | RuleAttribute::Realm(_)
            | RuleAttribute::TunId(_)
            | RuleAttribute::SuppressIfGroup(_)
            | RuleAttribute::SuppressPrefixLen(_)
            | RuleAttribute::UidRange(_)
            | RuleAttribute::IpProtocol(_)
            | RuleAttribute::SourcePortRange(_)
            | RuleAttribute::DestinationPortRange(_) => rule.other_selector = true,
            // Attributes newer than this code. The kernel sends new selectors only when they are
            // set, but it also sends new descriptive attributes always (as it did FRA_PROTOCOL), and
            // counting those as selectors would make every restart add another copy.
            _ => {}
        }
    }
    // A mark without a mask is matched exactly (the kernel fills in 0xffffffff).
    if rule.mark != 0 && rule.mask == 0 {
        rule.mask = u32::MAX;
    }
    rule
}

/// The dumped rule as a [`RuleSpec`], or `None` if it is something a spec cannot describe.
fn parse_rule(message: &RuleMessage) -> Option<RuleSpec> {
    let header = &message.header;
    let rule = dumped_rule(message);
    if header.action != RuleAction::ToTable
        || header.dst_len != 0
        || header.tos != 0
        || rule.destination
        || rule.oif
        || rule.other_selector
    {
        return None;
    }
    let unspecified = match header.family {
        AddressFamily::Inet => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        AddressFamily::Inet6 => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
        _ => return None,
    };
    let source = match (header.src_len, rule.source) {
        (0, _) => unspecified,
        (_, None) => return None,
        (len, Some(addr)) => {
            if family_of(addr) != header.family || len > max_prefix(addr) {
                return None;
            }
            masked(addr, len)
        }
    };
    let inverted = header.flags.contains(RuleFlags::Invert);
    let (fwmark, unless_fwmark) = match (inverted, rule.mark != 0 || rule.mask != 0) {
        (false, false) => (None, None),
        (false, true) if rule.mask == u32::MAX => (Some(rule.mark), None),
        (true, true) if rule.mask == u32::MAX => (None, Some(rule.mark)),
        _ => return None,
    };
    Some(RuleSpec {
        priority: rule.priority,
        table: rule.table,
        source: (source, header.src_len),
        input_interface: rule.iif,
        unless_fwmark,
        fwmark,
    })
}

/// A dumped rule in `ip rule` syntax, as far as this module knows its attributes.
fn describe_rule(message: &RuleMessage) -> String {
    if let Some(spec) = parse_rule(message) {
        return spec.to_string();
    }
    let rule = dumped_rule(message);
    let header = &message.header;
    let mut text = String::new();
    if header.flags.contains(RuleFlags::Invert) {
        text.push_str("not ");
    }
    match rule.source {
        Some(addr) if header.src_len > 0 => text.push_str(&format!("from {addr}/{}", header.src_len)),
        _ => text.push_str("from all"),
    }
    if rule.mark != 0 || rule.mask != 0 {
        text.push_str(&format!(" fwmark {:#x}/{:#x}", rule.mark, rule.mask));
    }
    if let Some(iif) = &rule.iif {
        text.push_str(&format!(" iif {iif}"));
    }
    if header.dst_len > 0 || rule.destination || rule.oif || rule.other_selector || header.tos != 0 {
        text.push_str(" (and other selectors)");
    }
    text.push_str(&format!(" lookup {} pref {}", rule.table, rule.priority));
    text
}

/// Whether the kernel, asked to delete `target` (sent back as dumped), would take `earlier` if it
/// met it first: the kernel compares only what the request carries (`rule_find` in
/// net/core/fib_rules.c), and not the invert flag.
fn kernel_would_pick(earlier: &RuleMessage, target: &RuleMessage) -> bool {
    let (e, t) = (dumped_rule(earlier), dumped_rule(target));
    let (eh, th) = (&earlier.header, &target.header);
    eh.family == th.family
        && eh.action == th.action
        && (t.table == 0 || e.table == t.table)
        && (t.priority == 0 || e.priority == t.priority)
        && (t.iif.is_none() || e.iif == t.iif)
        && (t.mark == 0 || e.mark == t.mark)
        && (t.mask == 0 || e.mask == t.mask)
        && (th.src_len == 0 || (eh.src_len == th.src_len && e.source == t.source))
}

/// The request's header and attributes for a route: family, destination, table, protocol, gateway
/// and output interface (type and scope are the caller's).
fn route_message(spec: &RouteSpec) -> io::Result<RouteMessage> {
    let (destination, len) = spec.destination;
    if len > max_prefix(destination) {
        return Err(invalid(format!("prefix length {len} is longer than the address")));
    }
    let mut message = RouteMessage::default();
    message.header.address_family = family_of(destination);
    message.header.destination_prefix_length = len;
    message.header.protocol = RouteProtocol::from(spec.protocol);
    message.header.table = u8::try_from(spec.table).unwrap_or(RouteHeader::RT_TABLE_UNSPEC);
    message.attributes.push(RouteAttribute::Table(spec.table));
    if len > 0 {
        message
            .attributes
            .push(RouteAttribute::Destination(destination.into()));
    }
    match (destination, spec.gateway) {
        (_, None) => {}
        (IpAddr::V4(_), Some(IpAddr::V4(gw))) => message
            .attributes
            .push(RouteAttribute::Gateway(RouteAddress::Inet(gw))),
        (IpAddr::V6(_), Some(IpAddr::V6(gw))) => message
            .attributes
            .push(RouteAttribute::Gateway(RouteAddress::Inet6(gw))),
        (IpAddr::V4(_), Some(IpAddr::V6(gw))) => {
            message.attributes.push(RouteAttribute::Via(RouteVia::Inet6(gw)))
        }
        (IpAddr::V6(_), Some(IpAddr::V4(gw))) => {
            return Err(invalid(format!(
                "an IPv6 route cannot have the IPv4 gateway {gw}"
            )));
        }
    }
    if spec.interface != 0 {
        message.attributes.push(RouteAttribute::Oif(spec.interface));
    }
    Ok(message)
}

/// A dumped route as a [`RouteSpec`], or `None` if it is not an IPv4 or IPv6 route.
fn parse_route(message: &RouteMessage) -> Option<RouteSpec> {
    let header = &message.header;
    let len = header.destination_prefix_length;
    let mut destination = match header.address_family {
        AddressFamily::Inet if len <= 32 => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        AddressFamily::Inet6 if len <= 128 => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
        _ => return None,
    };
    let mut table = match header.table {
        RT_TABLE_COMPAT => None,
        table => Some(u32::from(table)),
    };
    let mut gateway = None;
    let mut interface = 0;
    for attribute in &message.attributes {
        match attribute {
            RouteAttribute::Table(t) => table = Some(*t),
            RouteAttribute::Destination(RouteAddress::Inet(a)) if destination.is_ipv4() => {
                destination = IpAddr::V4(*a)
            }
            RouteAttribute::Destination(RouteAddress::Inet6(a)) if destination.is_ipv6() => {
                destination = IpAddr::V6(*a)
            }
            RouteAttribute::Gateway(RouteAddress::Inet(a)) | RouteAttribute::Via(RouteVia::Inet(a)) => {
                gateway = Some(IpAddr::V4(*a));
            }
            RouteAttribute::Gateway(RouteAddress::Inet6(a)) | RouteAttribute::Via(RouteVia::Inet6(a)) => {
                gateway = Some(IpAddr::V6(*a));
            }
            RouteAttribute::Oif(index) => interface = *index,
            _ => {}
        }
    }
    Some(RouteSpec {
        table: table.unwrap_or(u32::from(RT_TABLE_COMPAT)),
        destination: (destination, len),
        gateway,
        interface,
        protocol: u8::from(header.protocol),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> RuleSpec {
        RuleSpec {
            priority: 1000,
            table: 200,
            source: ("203.0.113.10".parse().unwrap(), 32),
            input_interface: None,
            unless_fwmark: None,
            fwmark: None,
        }
    }

    #[test]
    fn rule_display_is_ip_rule_syntax() {
        assert_eq!(spec().to_string(), "from 203.0.113.10/32 lookup 200 pref 1000");
        let full = RuleSpec {
            input_interface: Some("mesh0".into()),
            unless_fwmark: Some(0x4d53),
            fwmark: None,
            ..spec()
        };
        assert_eq!(
            full.to_string(),
            "not from 203.0.113.10/32 fwmark 0x4d53 iif mesh0 lookup 200 pref 1000"
        );
    }

    #[test]
    fn route_display_is_ip_route_syntax() {
        let route = RouteSpec {
            table: 201,
            destination: ("198.51.100.0".parse().unwrap(), 24),
            gateway: Some("192.0.2.1".parse().unwrap()),
            interface: 7,
            protocol: 201,
        };
        assert_eq!(
            route.to_string(),
            "198.51.100.0/24 via 192.0.2.1 dev if7 table 201 proto 201"
        );
        let v6_gateway = RouteSpec {
            gateway: Some("fe80::1".parse().unwrap()),
            ..route
        };
        assert_eq!(
            v6_gateway.to_string(),
            "198.51.100.0/24 via inet6 fe80::1 dev if7 table 201 proto 201"
        );
        let any_interface = RouteSpec {
            gateway: None,
            interface: 0,
            ..v6_gateway
        };
        assert_eq!(any_interface.to_string(), "198.51.100.0/24 table 201 proto 201");
    }

    #[test]
    fn rules_read_back_as_their_spec() {
        for spec in [
            spec(),
            RuleSpec {
                table: 1000,
                input_interface: Some("mesh0".into()),
                ..spec()
            },
            RuleSpec {
                source: ("2001:db8::".parse().unwrap(), 48),
                unless_fwmark: Some(7),
                fwmark: None,
                ..spec()
            },
            RuleSpec {
                source: ("0.0.0.0".parse().unwrap(), 0),
                unless_fwmark: Some(0),
                fwmark: None,
                ..spec()
            },
        ] {
            assert_eq!(parse_rule(&rule_message(&spec)), Some(spec.clone()), "{spec}");
        }
    }

    #[test]
    fn large_tables_read_back_from_the_attribute() {
        let mut message = rule_message(&RuleSpec {
            table: 100_000,
            ..spec()
        });
        message.header.table = RT_TABLE_COMPAT;
        assert_eq!(parse_rule(&message).map(|s| s.table), Some(100_000));
    }

    #[test]
    fn host_bits_are_ignored() {
        let loose = RuleSpec {
            source: ("10.1.2.3".parse().unwrap(), 8),
            ..spec()
        };
        let tight = RuleSpec {
            source: ("10.0.0.0".parse().unwrap(), 8),
            ..spec()
        };
        assert_eq!(normalize_rule(&loose).unwrap(), tight);
        assert_eq!(parse_rule(&rule_message(&loose)), Some(tight));
        assert!(
            normalize_rule(&RuleSpec {
                source: ("10.0.0.0".parse().unwrap(), 33),
                ..spec()
            })
            .is_err()
        );
    }

    #[test]
    fn rules_with_other_selectors_are_not_specs() {
        let mut message = rule_message(&spec());
        message.attributes.push(RuleAttribute::Oifname("eth0".into()));
        assert_eq!(parse_rule(&message), None);
        let mut message = rule_message(&spec());
        message.header.flags = RuleFlags::Invert;
        assert_eq!(parse_rule(&message), None, "invert without a mark");
        let mut message = rule_message(&spec());
        message.header.action = RuleAction::Unreachable;
        assert_eq!(parse_rule(&message), None);
    }

    #[test]
    fn the_kernel_would_delete_a_wider_match_first() {
        let ours = rule_message(&spec());
        let with_iif = rule_message(&RuleSpec {
            input_interface: Some("eth0".into()),
            ..spec()
        });
        let other_pref = rule_message(&RuleSpec {
            priority: 999,
            input_interface: Some("eth0".into()),
            ..spec()
        });
        assert!(kernel_would_pick(&with_iif, &ours));
        assert!(!kernel_would_pick(&ours, &with_iif));
        assert!(!kernel_would_pick(&other_pref, &ours));
    }
}
