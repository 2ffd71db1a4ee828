//! Routes (`ip route`) in meshd's tables: the spec, `ip route replace` and `del`, and the routes of
//! one table and protocol read back from the kernel's dump.

use std::fmt;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use meshd_packet::IpPrefix;
use rtnetlink::packet_core::{NLM_F_ACK, NLM_F_CREATE, NLM_F_REPLACE, NLM_F_REQUEST};
use rtnetlink::packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteProtocol, RouteScope, RouteType, RouteVia,
};
use rtnetlink::packet_route::{AddressFamily, RouteNetlinkMessage};

use super::{Netlink, RT_TABLE_COMPAT, family_of, invalid, with_context};

/// A unicast route: `ip route replace DST/LEN [via GW] dev IFINDEX table TABLE proto PROTO`.
/// The family is the destination's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteSpec {
    /// The table the route lives in.
    pub table: u32,
    /// The destination prefix; `0.0.0.0/0` or `::/0` for a default route.
    pub destination: IpPrefix,
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

/// The interface is written `ifN`, as iproute2 writes an interface it knows only by index (and left
/// out when it is 0).
impl fmt::Display for RouteSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.destination)?;
        match self.gateway {
            Some(IpAddr::V6(gw)) if self.destination.is_ipv4() => write!(f, " via inet6 {gw}")?,
            Some(gw) => write!(f, " via {gw}")?,
            None => {}
        }
        if self.interface != 0 {
            write!(f, " dev if{}", self.interface)?;
        }
        write!(f, " table {} proto {}", self.table, self.protocol)
    }
}

impl Netlink {
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
}

/// The request's header and attributes for a route: family, destination, table, protocol, gateway
/// and output interface (type and scope are the caller's).
fn route_message(spec: &RouteSpec) -> io::Result<RouteMessage> {
    let destination = spec.destination;
    let mut message = RouteMessage::default();
    message.header.address_family = family_of(destination);
    message.header.destination_prefix_length = destination.len();
    message.header.protocol = RouteProtocol::from(spec.protocol);
    message.header.table = u8::try_from(spec.table).unwrap_or(RouteHeader::RT_TABLE_UNSPEC);
    message.attributes.push(RouteAttribute::Table(spec.table));
    if destination.len() > 0 {
        message
            .attributes
            .push(RouteAttribute::Destination(destination.addr().into()));
    }
    match (destination, spec.gateway) {
        (_, None) => {}
        (IpPrefix::V4(_), Some(IpAddr::V4(gw))) => message
            .attributes
            .push(RouteAttribute::Gateway(RouteAddress::Inet(gw))),
        (IpPrefix::V6(_), Some(IpAddr::V6(gw))) => message
            .attributes
            .push(RouteAttribute::Gateway(RouteAddress::Inet6(gw))),
        (IpPrefix::V4(_), Some(IpAddr::V6(gw))) => {
            message.attributes.push(RouteAttribute::Via(RouteVia::Inet6(gw)))
        }
        (IpPrefix::V6(_), Some(IpAddr::V4(gw))) => {
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
        destination: IpPrefix::new(destination, len).ok()?,
        gateway,
        interface,
        protocol: u8::from(header.protocol),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn route_display_is_ip_route_syntax() {
        let route = RouteSpec {
            table: 201,
            destination: "198.51.100.0/24".parse().unwrap(),
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
}
