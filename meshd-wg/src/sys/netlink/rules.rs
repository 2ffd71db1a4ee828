//! Policy-routing rules (`ip rule`): the spec, adding a rule only once, removing every copy without
//! taking someone else's, and reading the kernel's dump back as specs.

use std::fmt;
use std::io;
use std::net::IpAddr;

use meshd_packet::{IpPrefix, Ipv4Prefix, Ipv6Prefix};
use rtnetlink::packet_core::{NLM_F_ACK, NLM_F_CREATE, NLM_F_EXCL, NLM_F_REQUEST};
use rtnetlink::packet_route::route::RouteHeader;
use rtnetlink::packet_route::rule::{RuleAction, RuleAttribute, RuleFlags, RuleMessage};
use rtnetlink::packet_route::{AddressFamily, RouteNetlinkMessage};

use super::{Netlink, family_of, invalid, with_context};

/// A policy-routing rule: `ip rule add [not] from SRC/LEN [fwmark M] [iif DEV] lookup TABLE pref
/// PRIORITY`. The family is the source address's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleSpec {
    /// `pref`: rules are tried in increasing order of this. Give each rule its own priority; see
    /// [`Netlink::remove_rule`] for why.
    pub priority: u32,
    /// `lookup`: the table consulted when the rule matches.
    pub table: u32,
    /// `from`: the source prefix. `0.0.0.0/0` or `::/0` matches every source of that family.
    pub source: IpPrefix,
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

impl fmt::Display for RuleSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.unless_fwmark.is_some() {
            f.write_str("not ")?;
        }
        write!(f, "from {}", self.source)?;
        if let Some(mark) = self.unless_fwmark.or(self.fwmark) {
            write!(f, " fwmark {mark:#x}")?;
        }
        if let Some(iif) = &self.input_interface {
            write!(f, " iif {iif}")?;
        }
        write!(f, " lookup {} pref {}", self.table, self.priority)
    }
}

impl Netlink {
    /// How many rules identical to `spec` the kernel holds now: same family, priority, table, source
    /// prefix, input interface and fwmark/invert, with action "lookup" and no other selector.
    pub async fn rules(&self, spec: &RuleSpec) -> io::Result<usize> {
        check_rule(spec).map_err(|e| with_context(format!("listing rule `{spec}`"), e))?;
        let dump = self
            .rule_dump(family_of(spec.source))
            .await
            .map_err(|e| with_context(format!("listing rule `{spec}`"), e))?;
        Ok(dump
            .iter()
            .filter(|m| parse_rule(m).as_ref() == Some(spec))
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
        check_rule(spec).map_err(|e| with_context(what(), e))?;
        let family = family_of(spec.source);
        let present = |dump: &[RuleMessage]| dump.iter().any(|m| parse_rule(m).as_ref() == Some(spec));
        if present(
            &self
                .rule_dump(family)
                .await
                .map_err(|e| with_context(what(), e))?,
        ) {
            return Ok(false);
        }
        let message = RouteNetlinkMessage::NewRule(rule_message(spec));
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
        check_rule(spec).map_err(|e| with_context(what(), e))?;
        let dump = self
            .rule_dump(family_of(spec.source))
            .await
            .map_err(|e| with_context(what(), e))?;
        let mut targets = Vec::new();
        for (i, message) in dump.iter().enumerate() {
            if parse_rule(message).as_ref() != Some(spec) {
                continue;
            }
            if let Some(other) = dump[..i].iter().find(|earlier| {
                parse_rule(earlier).as_ref() != Some(spec) && kernel_would_pick(earlier, message)
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
}

/// Refuses the one spec no kernel rule reads back as: a rule has one fwmark selector, either way.
fn check_rule(spec: &RuleSpec) -> io::Result<()> {
    if spec.fwmark.is_some() && spec.unless_fwmark.is_some() {
        return Err(invalid(
            "a rule has either fwmark or unless_fwmark, not both".to_string(),
        ));
    }
    Ok(())
}

fn rule_message(spec: &RuleSpec) -> RuleMessage {
    let mut message = RuleMessage::default();
    message.header.family = family_of(spec.source);
    message.header.src_len = spec.source.len();
    message.header.action = RuleAction::ToTable;
    // As `ip rule` does: a table that fits in the header goes there, any other only in FRA_TABLE.
    message.header.table = u8::try_from(spec.table).unwrap_or(RouteHeader::RT_TABLE_UNSPEC);
    message.attributes.push(RuleAttribute::Table(spec.table));
    message.attributes.push(RuleAttribute::Priority(spec.priority));
    if spec.source.len() > 0 {
        message.attributes.push(RuleAttribute::Source(spec.source.addr()));
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
    let any = match header.family {
        AddressFamily::Inet => IpPrefix::V4(Ipv4Prefix::ANY),
        AddressFamily::Inet6 => IpPrefix::V6(Ipv6Prefix::ANY),
        _ => return None,
    };
    let source = match (header.src_len, rule.source) {
        (0, _) => any,
        (_, None) => return None,
        // The kernel keeps the host bits a rule was added with; its match ignores them, and the
        // prefix clears them.
        (len, Some(addr)) => IpPrefix::new(addr, len)
            .ok()
            .filter(|source| family_of(*source) == header.family)?,
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
        source,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::netlink::RT_TABLE_COMPAT;

    fn spec() -> RuleSpec {
        RuleSpec {
            priority: 1000,
            table: 200,
            source: "203.0.113.10/32".parse().unwrap(),
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
    fn rules_read_back_as_their_spec() {
        for spec in [
            spec(),
            RuleSpec {
                table: 1000,
                input_interface: Some("mesh0".into()),
                ..spec()
            },
            RuleSpec {
                source: "2001:db8::/48".parse().unwrap(),
                unless_fwmark: Some(7),
                fwmark: None,
                ..spec()
            },
            RuleSpec {
                source: "0.0.0.0/0".parse().unwrap(),
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
        let loose = IpPrefix::new("10.1.2.3".parse().unwrap(), 8).unwrap();
        let tight = RuleSpec {
            source: "10.0.0.0/8".parse().unwrap(),
            ..spec()
        };
        assert_eq!(
            RuleSpec {
                source: loose,
                ..spec()
            },
            tight
        );
        // A rule added with host bits (`ip rule add from 10.1.2.3/8`) keeps them in the kernel.
        let mut message = rule_message(&tight);
        for attribute in &mut message.attributes {
            if let RuleAttribute::Source(addr) = attribute {
                *addr = "10.1.2.3".parse().unwrap();
            }
        }
        assert_eq!(parse_rule(&message), Some(tight));
        // A length beyond the family is neither a source nor a dumped rule's.
        assert!(IpPrefix::new("10.0.0.0".parse().unwrap(), 33).is_err());
        message.header.src_len = 33;
        assert_eq!(parse_rule(&message), None);
    }

    #[test]
    fn a_rule_has_one_fwmark_selector() {
        assert!(check_rule(&spec()).is_ok());
        let both = RuleSpec {
            fwmark: Some(1),
            unless_fwmark: Some(1),
            ..spec()
        };
        assert_eq!(check_rule(&both).unwrap_err().kind(), io::ErrorKind::InvalidInput);
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
